#!/usr/bin/env python3
"""Baseline for `make bench-compare`: an agent built the way avocado-vt's is.

Written for this benchmark from the design described in
shared/reference/avocado-vt-multihost.md section 4 (no upstream code): a
socketserver.ThreadingMixIn + xmlrpc.server.SimpleXMLRPCServer with
allow_none=True, use_builtin_types=False and logRequests=True (one stderr line
per request), one thread per request (daemon threads), HTTP/1.0 (so one
connection per call), every exception turned into avocado-vt's JSON fault, and
the agent's logging: logger "avocado.agent" to stdout at INFO and to a rotating
agent.log at DEBUG. It registers examples.hello.ping and core.is_alive, the two
calls the comparison makes.

    python3 pyagent.py --port 9999 --pid-file /tmp/a.pid --data-dir /tmp/a

Only the standard library is used, as on a node without avocado-vt.
"""

import argparse
import json
import logging
import logging.handlers
import os
import signal
import socket
import socketserver
import sys
import traceback
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCServer

LOG_NAME = "avocado.agent"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)-5.5s| %(message)s"
LOG = logging.getLogger(LOG_NAME)


def fault_json(exc):
    """Return avocado-vt's fault string for exc: JSON with exc_type,
    exc_value and tb_info, in that key order."""
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        exc_type = cls.__name__
    else:
        exc_type = f"{cls.__module__}.{cls.__name__}"
    tb_info = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    return json.dumps({"exc_type": exc_type, "exc_value": str(exc), "tb_info": tb_info})


class AgentServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """One daemon thread per request; JSON faults for every exception."""

    daemon_threads = True

    def _marshaled_dispatch(self, data, dispatch_method=None, path=None):
        try:
            params, method = xmlrpc.client.loads(
                data, use_builtin_types=self.use_builtin_types
            )
            if dispatch_method is not None:
                result = dispatch_method(method, params)
            else:
                result = self._dispatch(method, params)
            out = xmlrpc.client.dumps(
                (result,),
                methodresponse=True,
                allow_none=self.allow_none,
                encoding=self.encoding,
            )
        except xmlrpc.client.Fault as fault:
            out = xmlrpc.client.dumps(
                fault, allow_none=self.allow_none, encoding=self.encoding
            )
        except BaseException as exc:  # the agent answers a fault for anything
            LOG.error("Server Error: %s", exc)
            try:
                fault = xmlrpc.client.Fault(1, fault_json(exc))
            except Exception:
                fault = xmlrpc.client.Fault(
                    1,
                    "Server error: An internal error occurred while processing "
                    "the request and formatting the error response.",
                )
            out = xmlrpc.client.dumps(
                fault, allow_none=self.allow_none, encoding=self.encoding
            )
        return out.encode(self.encoding, "xmlcharrefreplace")


# The services, as module-level functions registered under dotted names.
def ping():
    hostname = socket.gethostname()
    logging.getLogger(f"{LOG_NAME}.services.examples.hello").info(
        "%s: Executing ping", hostname
    )
    return f"Pong from {hostname}"


def is_alive():
    return True


def setup_logging(data_dir):
    log_dir = os.path.join(data_dir, "log")
    os.makedirs(log_dir, exist_ok=True)
    fmt = logging.Formatter(LOG_FORMAT)
    LOG.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    console.setFormatter(fmt)
    LOG.addHandler(console)
    rotating = logging.handlers.RotatingFileHandler(
        os.path.join(log_dir, "agent.log"),
        maxBytes=10 << 20,
        backupCount=5,
        encoding="utf-8",
    )
    rotating.setLevel(logging.DEBUG)
    rotating.setFormatter(fmt)
    LOG.addHandler(rotating)


def on_signal(signum, _frame):
    LOG.info("Received signal %d, stopping", signum)
    sys.exit(0)


def main(argv=None):
    p = argparse.ArgumentParser(prog="pyagent", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9999)
    p.add_argument("--pid-file", required=True)
    p.add_argument("--data-dir", required=True)
    args = p.parse_args(argv)

    setup_logging(args.data_dir)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    LOG.info("Agent daemon starting with PID %d", os.getpid())
    try:
        server = AgentServer(
            (args.host, args.port),
            allow_none=True,
            use_builtin_types=False,
            logRequests=True,
        )
    except OSError as exc:
        LOG.error("Cannot bind to %s:%d: %s", args.host, args.port, exc)
        return 1
    try:
        server.register_function(ping, "examples.hello.ping")
        server.register_function(is_alive, "core.is_alive")
        with open(args.pid_file, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        server.serve_forever()
    finally:
        server.server_close()
        try:
            os.unlink(args.pid_file)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run upstream's log receiver, virttest.vt_cluster.logger.LoggerServer, for
`make bench-compare`.

It is imported from the avocado-framework-plugin-vt==113.0 installed in the
benchmark's own venv (scripts/bench/.venv); nothing of it is copied here. The
server's logger writes each line through a FileHandler to --out, as the job
log's handler would. Prints "ready" once listening; stops on SIGTERM.

    scripts/bench/.venv/bin/python pylogserver.py --port 8888 --out server.log
"""

import argparse
import logging
import signal
import sys
import threading


def main(argv=None):
    p = argparse.ArgumentParser(prog="pylogserver")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from virttest.vt_cluster.logger import LoggerServer

    logger = logging.getLogger("avocado.test")
    logger.propagate = False
    handler = logging.FileHandler(args.out, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(name)s %(levelname)-5.5s| %(message)s")
    )
    logger.addHandler(handler)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = LoggerServer((args.host, args.port), logger)
    server.start()
    print("ready", flush=True)
    stop.wait()
    server.stop()
    handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

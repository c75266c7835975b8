"""``LoggerServer``: receives the agents' log streams, as upstream's
``virttest.vt_cluster.logger.LoggerServer``.

The server is ``vtcluster logs serve`` running as a child process: it
listens from the constructor on (as upstream binds in its constructor),
and ``start()`` begins passing each unified line it prints,
``<node>(<ip>) <asctime> <name> <levelname> | <msg>``, to the given
logger, at the record's own level (upstream flattened every record to
INFO). ``stop()`` ends the child and passes on what it had left. Agents
are pointed at it with ``node.proxy.core.start_log_redirection(host, port)``.
"""

import atexit
import logging
import re
import subprocess
import threading
import weakref

from . import ClusterError
from . import _binary

__all__ = ["LoggerServer", "LoggerServerError"]

#: How long the child may take to report that it listens.
_READY_SECONDS = 30

_LEVEL_RE = re.compile(r"^\S+\(\S*\) \S+ \S+ \S+ ([A-Z]+) \| ")

#: The controller-side half some vtcluster versions print before the
#: worker's ("<asctime> logserver L0436 INFO | "); the logger given to
#: LoggerServer adds its own, as upstream's does.
_CONTROLLER_PREFIX_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \S+ L\d+ [A-Z]+ \| (?=\S+\(\S*\) )")


def _kill(proc_ref):
    proc = proc_ref()
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LoggerServerError(ClusterError):
    """The log server could not be started."""


class LoggerServer:
    """A log server on ``address`` = (host, port); port 0 picks a free one.

    :param logger: where the unified lines go; default
        ``logging.getLogger("LoggerServer")``. Its level is left alone.
    :raises LoggerServerError: when vtcluster cannot listen there.
    """

    def __init__(self, address, logger=None):
        host, port = address
        self._logger = logger or logging.getLogger("LoggerServer")
        self._requested = (host, port)
        argv = [_binary.locate(), "logs", "serve", "--listen", f"{host}:{port}"]
        self._proc = _binary.spawn_long_lived(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", bufsize=1,
        )
        # Upstream's server was a daemon thread, gone with the process; a
        # child process must be ended explicitly, also when the caller
        # never calls stop() (the seed's second example does not).
        atexit.register(_kill, weakref.ref(self._proc))
        self._address = self._wait_ready()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="logger_server_stderr", daemon=True)
        self._stderr_thread.start()
        self._thread = None

    def _wait_ready(self):
        timer = threading.Timer(_READY_SECONDS, self._proc.kill)
        timer.start()
        seen = []
        try:
            for line in self._proc.stderr:
                seen.append(line.rstrip("\n"))
                m = re.search(r"log server listening on (\S+):(\d+)$", line.strip())
                if m:
                    return (m.group(1).strip("[]"), int(m.group(2)))
        finally:
            timer.cancel()
        self._proc.wait()
        raise LoggerServerError(
            f"log server on {self._requested[0]}:{self._requested[1]} did not start: " + " ".join(seen[-5:])
        )

    def _drain_stderr(self):
        for line in self._proc.stderr:
            line = line.rstrip("\n")
            if line and "log server stopped" not in line:
                self._logger.warning("LoggerServer: %s", line)

    def _pump(self):
        level = logging.INFO
        for line in self._proc.stdout:
            line = _CONTROLLER_PREFIX_RE.sub("", line.rstrip("\n"), count=1)
            m = _LEVEL_RE.match(line)
            if m:
                level = logging.getLevelName(m.group(1))
                if not isinstance(level, int):
                    level = logging.INFO
            self._logger.log(level, "%s", line)

    @property
    def address(self):
        """(host, port) the server listens on (the real port when 0 was asked)."""
        return self._address

    def start(self):
        """Begin passing received lines to the logger."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._pump, name="logger_server", daemon=True)
            self._thread.start()

    def stop(self):
        """Stop the server; lines already received still reach the logger."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is None:
            self.start()  # hand over what arrived before start()
        self._thread.join(timeout=10)
        self._stderr_thread.join(timeout=10)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream:
                stream.close()

    def __del__(self):
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

"""The proxy a Node hands out: ``node.proxy.a.b.c(*args)`` calls the agent
method ``a.b.c`` on that node.

Behaves like upstream's ``virttest.vt_cluster.proxy``: positional
arguments only, ``None`` allowed both ways, bytes and datetimes come back
as ``bytes`` and ``datetime.datetime`` (``use_builtin_types=True``), and
every exception raised in the agent surfaces as :class:`ServerProxyError`
whose ``message`` is the remote traceback (``str(err)`` is a newline plus
that traceback) and whose ``__cause__`` is the ``xmlrpc.client.Fault``.
Failures to reach the agent are not wrapped: they raise
:class:`ProxyConnectionError`, a ``ConnectionError``.

Unlike upstream, nothing talks to an agent port from Python: calls go to a
``vtcluster call --serve NODE`` child per node (JSON lines on its stdin
and stdout, one connection to the node for all calls), so the binary
chooses the route (SSH tunnel or the agent's authenticated port) and the
credentials, and arguments never appear on a command line. Upstream's
reconstruction of remote exception classes (import plus ``eval`` of a
name sent by the agent) is deliberately not reproduced; upstream's net
effect is a ServerProxyError anyway.
"""

import atexit
import base64
import collections
import datetime
import json
import logging
import math
import os
import subprocess
import threading
import xmlrpc.client

from . import ClusterError
from . import _binary

LOG = logging.getLogger("avocado." + __name__)

__all__ = ["ServerProxyError", "ProxyConnectionError", "get_server_proxy"]


class ServerProxyError(ClusterError):
    """An exception raised by the remote agent method.

    :ivar code: the XML-RPC fault code (1 for agent exceptions).
    :ivar message: the remote traceback text.
    :ivar exc_type: the remote exception's type name, e.g. ``"ValueError"``.
    :ivar exc_value: ``str()`` of the remote exception.
    """

    def __init__(self, code, message, exc_type=None, exc_value=None):
        self.code = code
        self.message = message
        self.exc_type = exc_type
        self.exc_value = exc_value
        super().__init__(f"ServerProxyError (Code: {code}): {message}")

    def __str__(self):
        return f"\n{self.message}"


class ProxyConnectionError(ConnectionError):
    """The agent could not be reached or the call could not be made;
    str() is vtcluster's explanation."""


def _encode(value, path="$"):
    """A Python value as call's JSON argument form (see ``vtcluster call --help``)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"__float__": "nan"}
        if math.isinf(value):
            return {"__float__": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"__base64__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, xmlrpc.client.Binary):
        return {"__base64__": base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"__datetime__": value.strftime("%Y-%m-%dT%H:%M:%S")}
    if isinstance(value, xmlrpc.client.DateTime):
        parsed = datetime.datetime.strptime(value.value, "%Y%m%dT%H:%M:%S")
        return {"__datetime__": parsed.strftime("%Y-%m-%dT%H:%M:%S")}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: dictionary key must be string, got {type(key).__name__}")
            out[key] = _encode(item, f"{path}.{key}")
        return out
    raise TypeError(f"{path}: cannot marshal {type(value)} objects")


def _decode(value):
    """call's JSON result form back into Python values."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, item), = value.items()
            if key == "__base64__" and isinstance(item, str):
                return base64.b64decode(item)
            if key == "__datetime__" and isinstance(item, str):
                return datetime.datetime.strptime(item, "%Y-%m-%dT%H:%M:%S")
            if key == "__float__" and isinstance(item, str):
                return float(item)
        return {k: _decode(v) for k, v in value.items()}
    return value


class _ClientMethod:
    """One dotted method name; attribute access extends it, calling sends it."""

    def __init__(self, send, name):
        self.__send = send
        self.__name = name

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _ClientMethod(self.__send, f"{self.__name}.{name}")

    def __call__(self, *args):
        return self.__send(self.__name, args)

    def __repr__(self):
        return f"<_ClientMethod {self.__name}>"


#: Default bound on one call, in seconds. Upstream's proxy has none; an
#: hour lets process.run/process.wait with long timeouts of their own
#: through while a hung agent still cannot block a caller forever.
#: $VTCLUSTER_TIMEOUT (vtcluster's own setting, seconds or a duration
#: such as 90s) overrides it.
DEFAULT_CALL_TIMEOUT = 3600


def call_timeout():
    """Seconds one proxy call may take: $VTCLUSTER_TIMEOUT, else DEFAULT_CALL_TIMEOUT."""
    raw = os.environ.get("VTCLUSTER_TIMEOUT", "").strip()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if raw and raw[-1] in units:
            return float(raw[:-1]) * units[raw[-1]]
        if raw:
            return float(raw)
    except ValueError:
        pass
    return DEFAULT_CALL_TIMEOUT


class _Child:
    """One ``vtcluster call --serve`` process and the calls waiting on it."""

    def __init__(self, proc):
        self.proc = proc
        self.pending = {}  # call id -> [threading.Event, reply or None]
        self.write_lock = threading.Lock()
        self.stderr = collections.deque(maxlen=20)


class _Channel:
    """One ``vtcluster call --serve NODE`` child: one connection to the
    node's agent for every call of this process, requests and replies as
    JSON lines on its stdin/stdout (no listening port). Calls from several
    threads run at once; a dead child fails its pending calls and is
    replaced on the next call."""

    def __init__(self, node_name):
        self._node_name = node_name
        self._lock = threading.Lock()  # guards _child, _next_id and every pending dict
        self._child = None
        self._next_id = 0

    def _spawn(self):
        argv = [_binary.locate(), "call", "--serve", "--timeout", f"{call_timeout()}s", "--", self._node_name]
        # The node is named by its registered name; inside a test, the
        # partition file would let a tag of the same spelling win.
        env = _binary.env_without_partition()
        # Its own session: a signal to our process group (the runner ending
        # a test) must leave the channel working for our clean-up calls.
        # It still ends with us: at the end of its input, or by the
        # parent-death signal.
        child = _Child(_binary.spawn_long_lived(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", bufsize=1, env=env, start_new_session=True,
        ))
        threading.Thread(target=self._read, args=(child,), daemon=True,
                         name=f"proxy-{self._node_name}").start()
        threading.Thread(target=self._drain_stderr, args=(child,), daemon=True).start()
        return child

    @staticmethod
    def _drain_stderr(child):
        for line in child.proc.stderr:
            if line.strip():
                child.stderr.append(line.rstrip("\n"))

    def _read(self, child):
        for line in child.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                waiter = child.pending.pop(reply.get("id"), None)
            if waiter is not None:
                waiter[1] = reply
                waiter[0].set()
        child.proc.wait()
        with self._lock:
            pending, child.pending = child.pending, {}
            if self._child is child:
                self._child = None
        for waiter in pending.values():
            waiter[0].set()  # no reply: the caller reports the child's end

    def call(self, method, params, timeout):
        payload = _encode(list(params))
        waiter = [threading.Event(), None]
        with self._lock:
            if self._child is None or self._child.proc.poll() is not None:
                self._child = self._spawn()
            child = self._child
            self._next_id += 1
            call_id = self._next_id
            child.pending[call_id] = waiter
        line = json.dumps({"id": call_id, "method": method, "params": payload}) + "\n"
        # Written outside _lock: a child busy with replies may take a
        # while to read, and the reader thread needs _lock to hand them out.
        with child.write_lock:
            try:
                child.proc.stdin.write(line)
                child.proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the reader sees the child's end and releases us
        if not waiter[0].wait(timeout):
            with self._lock:
                child.pending.pop(call_id, None)
            raise ProxyConnectionError(
                f"calling {method} on node {self._node_name}: no reply within {timeout:.0f}s")
        if waiter[1] is None:
            detail = " ".join(child.stderr) or f"vtcluster call --serve exited with status {child.proc.poll()}"
            raise ProxyConnectionError(f"calling {method} on node {self._node_name} failed: {detail}")
        return waiter[1]

    def close(self):
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child.proc.poll() is None:
            try:
                with child.write_lock:
                    child.proc.stdin.close()  # end of input: the child finishes and exits
                child.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                child.proc.kill()
                child.proc.wait()


#: (node name, id) of every background process this process started
#: through process.start, for stop_started_processes.
_STARTED = []
_STARTED_LOCK = threading.Lock()


def stop_started_processes(log=None):
    """SIGTERM every background process this Python process started on a
    node (``process.start``) that still runs; the test child calls it
    after tearDown, so a test that forgot one, or was interrupted, leaves
    nothing running on its nodes."""
    with _STARTED_LOCK:
        started, _STARTED[:] = list(_STARTED), []
    for node_name, proc_id in started:
        try:
            if _ClientProxy(node_name, timeout=30).process.kill(proc_id):
                if log is not None:
                    log.info("stopped background process %s on %s, left running by the test", proc_id, node_name)
        except (ServerProxyError, ProxyConnectionError) as exc:
            if log is not None:
                log.warning("could not stop background process %s on %s: %s", proc_id, node_name, exc)


#: node name -> _Channel, for this process (a fork gets its own).
_CHANNELS = {}
_CHANNELS_LOCK = threading.Lock()
_CHANNELS_PID = [os.getpid()]


def _channel(node_name):
    with _CHANNELS_LOCK:
        if _CHANNELS_PID[0] != os.getpid():  # forked: the parent's children are not ours
            _CHANNELS.clear()
            _CHANNELS_PID[0] = os.getpid()
        ch = _CHANNELS.get(node_name)
        if ch is None:
            ch = _CHANNELS[node_name] = _Channel(node_name)
        return ch


@atexit.register
def _close_channels():
    with _CHANNELS_LOCK:
        channels = list(_CHANNELS.values())
    for ch in channels:
        ch.close()


class _ClientProxy:
    """Proxy for the agent of registered node ``node_name``.

    :param timeout: seconds to wait for one reply; the binary bounds each
        call by call_timeout() and this process waits a grace period longer.
    """

    def __init__(self, node_name, timeout=None):
        self._node_name = node_name
        self._timeout = timeout

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _ClientMethod(self._request, name)

    def __repr__(self):
        return f"<_ClientProxy for node {self._node_name}>"

    def _request(self, method, params):
        reply = _channel(self._node_name).call(method, params, (self._timeout or call_timeout()) + 30)
        if "result" in reply:
            result = _decode(reply["result"])
            if method == "process.start" and isinstance(result, str):
                with _STARTED_LOCK:
                    _STARTED.append((self._node_name, result))
            return result
        if "fault" in reply:
            fault = reply["fault"]
            tb_info = fault.get("tb_info") or (
                f"{fault.get('exc_type')}: {fault.get('exc_value')}\n"
            )
            raw = xmlrpc.client.Fault(1, json.dumps(
                {"exc_type": fault.get("exc_type"), "exc_value": fault.get("exc_value"), "tb_info": tb_info}
            ))
            LOG.error("Remote call %s on %s raised:\n%s", method, self._node_name, tb_info.rstrip("\n"))
            raise ServerProxyError(1, tb_info, fault.get("exc_type"), fault.get("exc_value")) from raw
        if "wire_fault" in reply:
            wf = reply["wire_fault"]
            # As upstream: a fault string that is not avocado-vt's JSON
            # cannot be decoded, and that error is what the caller gets.
            raw = xmlrpc.client.Fault(wf.get("code"), wf.get("string"))
            try:
                json.loads(wf.get("string") or "")
            except ValueError as exc:
                raise exc from raw
            raise ServerProxyError(wf.get("code"), wf.get("string")) from raw
        raise ProxyConnectionError(
            f"calling {method} on node {self._node_name} failed: {reply.get('error', reply)}")


def get_server_proxy(node_name, timeout=None):
    """The proxy for registered node ``node_name`` (upstream took a URI)."""
    return _ClientProxy(node_name, timeout=timeout)

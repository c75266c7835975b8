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

Unlike upstream, nothing talks to an agent port from Python: each call is
``vtcluster call NODE METHOD --json --params-stdin``, so the binary
chooses the route (SSH tunnel or the agent's authenticated port) and the
credentials, and arguments never appear on a command line. Upstream's
reconstruction of remote exception classes (import plus ``eval`` of a
name sent by the agent) is deliberately not reproduced; upstream's net
effect is a ServerProxyError anyway.
"""

import base64
import datetime
import json
import logging
import math
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


class _ClientProxy:
    """Proxy for the agent of registered node ``node_name``.

    :param timeout: seconds one call may take (vtcluster call --timeout);
        None keeps the binary's default.
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
        args = ["call", "--json", "--params-stdin", self._node_name, method]
        if self._timeout is not None:
            args[1:1] = ["--timeout", f"{self._timeout}s"]
        payload = json.dumps(_encode(list(params)))
        code, out, err = _binary.run(args, stdin=payload, timeout=self._timeout or 120)
        reply = None
        if out.strip():
            try:
                reply = json.loads(out)
            except ValueError:
                reply = None
        if code == 0 and isinstance(reply, dict) and "result" in reply:
            return _decode(reply["result"])
        if isinstance(reply, dict) and "fault" in reply:
            fault = reply["fault"]
            tb_info = fault.get("tb_info") or (
                f"{fault.get('exc_type')}: {fault.get('exc_value')}\n"
            )
            raw = xmlrpc.client.Fault(1, json.dumps(
                {"exc_type": fault.get("exc_type"), "exc_value": fault.get("exc_value"), "tb_info": tb_info}
            ))
            LOG.error("Remote call %s on %s raised:\n%s", method, self._node_name, tb_info.rstrip("\n"))
            raise ServerProxyError(1, tb_info, fault.get("exc_type"), fault.get("exc_value")) from raw
        if isinstance(reply, dict) and "wire_fault" in reply:
            wf = reply["wire_fault"]
            # As upstream: a fault string that is not avocado-vt's JSON
            # cannot be decoded, and that error is what the caller gets.
            raw = xmlrpc.client.Fault(wf.get("code"), wf.get("string"))
            try:
                json.loads(wf.get("string") or "")
            except ValueError as exc:
                raise exc from raw
            raise ServerProxyError(wf.get("code"), wf.get("string")) from raw
        detail = "\n".join(line for line in err.splitlines() if line.strip())
        raise ProxyConnectionError(
            f"calling {method} on node {self._node_name} failed (vtcluster exit {code})"
            + (f": {detail}" if detail else "")
        )


def get_server_proxy(node_name, timeout=None):
    """The proxy for registered node ``node_name`` (upstream took a URI)."""
    return _ClientProxy(node_name, timeout=timeout)

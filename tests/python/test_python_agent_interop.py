"""Our controller drives an agent built the way avocado-vt's Python agent is.

avocado-vt's agent is not shipped in its wheel, so this test runs a small
agent written here from upstream's design (SimpleXMLRPCServer +
ThreadingMixIn, allow_none=True, use_builtin_types=False, HTTP/1.0, every
exception as the JSON fault, upstream's method names) and points the real
vtcluster CLI at it as a `direct` node without a token: the case of an
upstream agent that is already running, which vtcluster must call without
starting anything.
"""

import json
import platform
import socket
import socketserver
import subprocess
import threading
import traceback
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCServer

import pytest


class UpstreamStyleAgent(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True

    def _marshaled_dispatch(self, data, dispatch_method=None, path=None):
        try:
            params, method = xmlrpc.client.loads(data, use_builtin_types=False)
            result = self._dispatch(method, params)
            out = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
        except Exception as exc:  # upstream turns everything into this fault
            cls = type(exc)
            name = cls.__name__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__name__}"
            fault = json.dumps({"exc_type": name, "exc_value": str(exc),
                                "tb_info": "".join(traceback.format_exception(exc))})
            out = xmlrpc.client.dumps(xmlrpc.client.Fault(1, fault), allow_none=True)
        return out.encode("utf-8", "xmlcharrefreplace")


def fail():
    raise ValueError("deliberate failure")


@pytest.fixture
def upstream_agent():
    srv = UpstreamStyleAgent(("127.0.0.1", 0), allow_none=True, use_builtin_types=False, logRequests=False)
    # upstream's names: core.*, examples.hello.*, host.cpu.*, host.platform.*
    srv.register_function(lambda: True, "core.is_alive")
    srv.register_function(lambda: f"Pong from {socket.gethostname()}", "examples.hello.ping")
    srv.register_function(socket.gethostname, "host.platform.get_hostname")
    srv.register_function(platform.machine, "host.platform.get_arch")
    srv.register_function(lambda: "GenuineIntel", "host.cpu.get_cpu_vendor_id")
    srv.register_function(lambda: "Test CPU", "host.cpu.get_cpu_model_name")
    srv.register_function(lambda: None, "core.quit")
    srv.register_function(fail, "test.fail")
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def vtc(binary, state, *args):
    return subprocess.run([binary, "--state-dir", str(state), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_controller_drives_upstream_style_agent_without_starting_anything(vtcluster_bin, upstream_agent, tmp_path):
    state = tmp_path / "state"
    r = vtc(vtcluster_bin, state, "node", "add", "py", "--address", "127.0.0.1",
            "--proxy-port", str(upstream_agent), "--agent-bind", "direct")
    assert r.returncode == 0, r.stderr

    r = vtc(vtcluster_bin, state, "call", "py", "examples.hello.ping")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == f"Pong from {socket.gethostname()}"

    # A remote exception reaches the user as exc_type: exc_value, exit 1.
    r = vtc(vtcluster_bin, state, "call", "py", "test.fail")
    assert r.returncode == 1
    assert "ValueError: deliberate failure" in r.stderr

    # An unknown method: the Python server's own wording, through the fault.
    r = vtc(vtcluster_bin, state, "call", "py", "no.such.method")
    assert r.returncode == 1
    assert 'method "no.such.method" is not supported' in r.stderr

    # agents start reuses the running agent and collects upstream's
    # properties; ours that the Python agent lacks are simply absent.
    r = vtc(vtcluster_bin, state, "agents", "start", "py")
    assert r.returncode == 0, r.stderr
    r = vtc(vtcluster_bin, state, "status", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    row = rows[0] if isinstance(rows, list) else rows["nodes"][0]
    assert row["agent_up"] is True
    props = row["properties"]
    assert props["hostname"] == socket.gethostname()
    assert props["cpu_vendor_id"] == "GenuineIntel"
    assert props["cpu_model_name"] == "Test CPU"
    assert props["arch"] == platform.machine()
    assert "cpu_count" not in props

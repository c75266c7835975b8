"""avocado-vt's own controller code (virttest.vt_cluster, from
avocado-framework-plugin-vt==113.0) driving our agent: the proxy that
upstream's cluster, plugin and resource manager use for every call, and
the LoggerServer that receives the agent's log stream.

Skipped when virttest cannot be imported (the plain test venv); the venv
built by ``scripts/venv.sh --vt`` has it.
"""

import logging
import socket
import threading
import time

import pytest
from conftest import import_virttest

# agent is test_agent's fixture (one agent for the module), found by name.
from test_agent import HANG_GUARD, agent, free_port  # noqa: F401

vt_logger, vt_proxy = import_virttest("virttest.vt_cluster.logger", "virttest.vt_cluster.proxy")


@pytest.fixture
def proxy(agent):
    # How upstream's Node builds its proxy ("http://<host>:<port>/"), with
    # the token as the URL's password, as a direct-mode controller gives it.
    return vt_proxy.get_server_proxy(f"http://vtc:{agent.token}@127.0.0.1:{agent.port}/")


def test_ping_and_is_alive(proxy):
    assert proxy.examples.hello.ping() == f"Pong from {socket.gethostname()}"
    assert proxy.core.is_alive() is True


def test_node_properties_calls(proxy):
    """The three calls upstream's node_properties.save_properties makes."""
    assert proxy.host.platform.get_hostname() == socket.gethostname()
    assert isinstance(proxy.host.cpu.get_cpu_model_name(), str)
    try:
        assert isinstance(proxy.host.cpu.get_cpu_vendor_id(), str)
    except vt_proxy.ServerProxyError as e:  # no vendor_id on this arch, as upstream
        assert "OSError" in e.message


def test_unknown_method_is_server_proxy_error(proxy):
    with pytest.raises(vt_proxy.ServerProxyError) as excinfo:
        proxy.no.such.method()
    err = excinfo.value
    assert err.code == 1
    assert err.message.startswith("Traceback (most recent call last):")
    assert err.message.rstrip().endswith('Exception: method "no.such.method" is not supported')
    assert str(err) == "\n" + err.message
    # The Fault is kept as the cause, as with upstream's agent.
    assert err.__cause__ is not None and err.__cause__.faultCode == 1


def test_value_error_is_server_proxy_error(proxy):
    with pytest.raises(vt_proxy.ServerProxyError) as excinfo:
        proxy.core.start_log_redirection("127.0.0.1", 0)
    assert "ValueError: Invalid port parameter: 0" in excinfo.value.message


def test_job_data_through_upstream_proxy(proxy):
    state = {"vms": ["vm1"], "size": 1.5}
    assert proxy.core.save_job_data("upstream-job", state) is True
    assert proxy.core.load_job_data("upstream-job") == state
    assert proxy.core.delete_job_data("upstream-job") is True


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []
        self.seen = threading.Event()

    def emit(self, record):
        line = record.getMessage()
        self.lines.append(line)
        if "Executing ping" in line:
            self.seen.set()


def test_upstream_logger_server_receives_agent_records(proxy):
    port = free_port()
    log = logging.getLogger("vtcluster-test-logger-server")
    log.propagate = False
    collect = _Collect()
    log.addHandler(collect)
    server = vt_logger.LoggerServer(("127.0.0.1", port), log)
    server.start()
    try:
        assert proxy.core.start_log_redirection("127.0.0.1", port) is None
        deadline = time.monotonic() + HANG_GUARD
        # Records logged before the connection is up are queued, not lost;
        # ping once and wait for its record.
        proxy.examples.hello.ping()
        while not collect.seen.is_set() and time.monotonic() < deadline:
            collect.seen.wait(0.1)
        assert collect.seen.is_set(), f"no ping record; got {collect.lines}"
        line = next(l for l in collect.lines if "Executing ping" in l)
        # "<tag>(<ip>) <asctime> <name> <levelname> | <msg>"
        assert line.startswith("Unknown(127.0.0.1) ")
        assert " avocado.service.examples INFO | " in line
    finally:
        proxy.core.stop_log_redirection()
        server.stop()
        log.removeHandler(collect)

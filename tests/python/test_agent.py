"""The Go agent seen from Python's standard xmlrpc.client, the way
avocado-vt's controller talks to an agent (allow_none, builtin types).

Each test drives a real ``vtcluster agent`` process over loopback.
"""

import base64
import gzip
import http.client
import json
import os
import platform
import select
import signal
import socket
import struct
import subprocess
import threading
import xmlrpc.client

import pytest

#: Bounds waits that only run out when something is broken.
HANG_GUARD = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The token of agents started without one: on TCP the agent requires a
#: token, loopback included.
TEST_TOKEN = "python-test-token-0123456789"


class Agent:
    """A running agent process: its URL (with its token), pid file and data dir."""

    def __init__(self, binary, tmp_path, extra_args=(), env=None, user=None):
        env = dict(env or {})
        self.token = env.get("VTCLUSTER_AGENT_TOKEN")
        if self.token is None and "--token-file" not in extra_args:
            self.token = env["VTCLUSTER_AGENT_TOKEN"] = TEST_TOKEN
        if user is None:
            user = f"vtc:{self.token}@" if self.token else ""
        #: Headers that authenticate a raw http.client request.
        self.auth = {}
        if self.token:
            cred = base64.b64encode(f"vtc:{self.token}".encode()).decode()
            self.auth = {"Authorization": f"Basic {cred}"}
        self.port = free_port()
        self.pid_file = tmp_path / "agent.pid"
        self.data_dir = tmp_path / "data"
        self.stderr_path = tmp_path / "agent.stderr"
        args = [
            binary, "agent", "--port", str(self.port),
            "--pid-file", str(self.pid_file), "--data-dir", str(self.data_dir),
            *extra_args,
        ]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                env={**os.environ, **env},
            )
        self.banner = self._read_banner()
        self.url = f"http://{user}127.0.0.1:{self.port}/"

    def _read_banner(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], HANG_GUARD)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("Agent daemon starting with PID"):
            self.stop()
            raise AssertionError(f"agent did not start: {line!r}\n{self.stderr()}")
        return line

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def proxy(self, url=None):
        return xmlrpc.client.ServerProxy(url or self.url, allow_none=True, use_builtin_types=True)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def agent(vtcluster_bin, tmp_path_factory):
    a = Agent(vtcluster_bin, tmp_path_factory.mktemp("agent"))
    yield a
    a.stop()


@pytest.fixture
def proxy(agent):
    return agent.proxy()


def fault_json(excinfo):
    fault = excinfo.value
    assert fault.faultCode == 1
    return json.loads(fault.faultString)


CORE_METHODS = [
    "is_alive", "quit", "start_log_redirection", "stop_log_redirection",
    "get_agent_log_filename", "get_service_log_filename", "get_log_dir",
    "save_job_data", "load_job_data", "delete_job_data", "get_job_data_log",
    "get_job_results_dir", "get_latest_job_results_dir", "get_test_result_log_dir",
    "save_suite_data", "load_suite_data", "delete_suite_data",
]
OTHER_METHODS = [
    "examples.hello.ping",
    "host.cpu.get_cpu_vendor_id", "host.cpu.get_cpu_model_name", "host.cpu.get_cpu_count",
    "host.platform.get_arch", "host.platform.get_hostname",
    "host.platform.get_kernel_release", "host.platform.has_kvm",
    "host.memory.get_mem_total",
]


def test_banner_and_pid_file(agent):
    pid = agent.proc.pid
    assert agent.banner == f"Agent daemon starting with PID {pid}\n"
    assert agent.pid_file.read_text() == f"{pid}\n"


def test_every_method_is_exposed(proxy):
    names = set(proxy.system.listMethods())
    for m in CORE_METHODS:
        assert f"core.{m}" in names
        assert f"agent.services.core.{m}" in names
    for m in OTHER_METHODS:
        assert m in names


def test_ping_and_is_alive(proxy):
    assert proxy.examples.hello.ping() == f"Pong from {socket.gethostname()}"
    assert proxy.core.is_alive() is True
    assert proxy.agent.services.core.is_alive() is True


def test_host_facts_match_python(proxy):
    assert proxy.host.platform.get_arch() == platform.machine()
    assert proxy.host.platform.get_hostname() == socket.gethostname()
    assert proxy.host.platform.get_kernel_release() == platform.release()
    assert proxy.host.platform.has_kvm() is os.path.exists("/dev/kvm")
    assert proxy.host.cpu.get_cpu_count() == os.cpu_count()
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    mem = proxy.host.memory.get_mem_total()
    assert mem == kib * 1024
    model = proxy.host.cpu.get_cpu_model_name()
    assert isinstance(model, str) and model
    try:
        vendor = proxy.host.cpu.get_cpu_vendor_id()
        assert isinstance(vendor, str) and vendor.isidentifier()
    except xmlrpc.client.Fault as e:  # no vendor_id line on this arch, like upstream
        assert json.loads(e.faultString)["exc_type"] == "OSError"


def test_big_int_arrives_as_python_int(agent, proxy):
    """Sizes of 2 GiB and more come as <i8>; Python's own server would fault."""
    mem = proxy.host.memory.get_mem_total()
    if mem < 2**31:
        pytest.skip("this machine has less than 2 GiB of memory")
    assert isinstance(mem, int) and mem >= 2**31
    body = xmlrpc.client.dumps((), "host.memory.get_mem_total")
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=HANG_GUARD)
    conn.request("POST", "/", body, {"Content-Type": "text/xml", **agent.auth})
    raw = conn.getresponse().read().decode()
    conn.close()
    assert f"<i8>{mem}</i8>" in raw


def test_log_file_paths(agent, proxy):
    log_dir = agent.data_dir / "log"
    assert proxy.core.get_log_dir() == str(log_dir)
    assert proxy.core.get_agent_log_filename() == str(log_dir / "agent.log")
    assert proxy.core.get_service_log_filename() == str(log_dir / "service.log")
    assert (log_dir / "agent.log").exists()


def test_unknown_method_fault(proxy):
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        proxy.no.such.method()
    info = fault_json(excinfo)
    assert list(info) == ["exc_type", "exc_value", "tb_info"]
    assert info["exc_type"] == "Exception"
    assert info["exc_value"] == 'method "no.such.method" is not supported'
    assert isinstance(info["tb_info"], str) and info["tb_info"]


@pytest.mark.parametrize("host, port", [
    ("", 9), (5, 9), (None, 9), ("127.0.0.1", "9"), ("127.0.0.1", 0),
    ("127.0.0.1", 65536), ("a;b", 9), ("a|b", 9), ("$(id)", 9), ("a`b`", 9), ("a&b", 9),
])
def test_start_log_redirection_value_error(proxy, host, port):
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        proxy.core.start_log_redirection(host, port)
    assert fault_json(excinfo)["exc_type"] == "ValueError"


def read_frames(conn, want_msg):
    """Read upstream's log frames (>L length + JSON) until want_msg arrives."""
    buf = b""
    conn.settimeout(HANG_GUARD)
    while True:
        while len(buf) < 4:
            chunk = conn.recv(65536)
            assert chunk, "log connection closed before the record arrived"
            buf += chunk
        (size,) = struct.unpack(">L", buf[:4])
        while len(buf) < 4 + size:
            chunk = conn.recv(65536)
            assert chunk, "log connection closed mid-frame"
            buf += chunk
        record = json.loads(buf[4:4 + size])
        buf = buf[4 + size:]
        if want_msg in record["msg"]:
            return record


def test_log_redirection_streams_service_records(proxy):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(HANG_GUARD)
        assert proxy.core.start_log_redirection("127.0.0.1", server.getsockname()[1]) is None
        conn, _ = server.accept()
        with conn:
            proxy.examples.hello.ping()
            record = read_frames(conn, "Executing ping")
        assert record["name"] == "avocado.service.examples"
        assert record["levelname"] == "INFO" and record["args"] is None
        assert proxy.core.stop_log_redirection() is None


def test_nil_both_ways(proxy):
    # None as an argument (job_id=None means the latest job) and as a result.
    assert proxy.core.get_test_result_log_dir("no-suite", None) is None
    assert proxy.core.get_job_data_log("no-such-job") is None


def test_bytes_both_ways(proxy):
    payload = bytes(range(256)) * 8
    res = proxy.process.run(["cat"], {"stdin": payload})
    assert res["exit_code"] == 0
    assert isinstance(res["stdout"], bytes) and res["stdout"] == payload


def test_gzip_reply(agent, proxy):
    # The stock client asks for gzip and decompresses transparently.
    names = proxy.system.listMethods()
    body = xmlrpc.client.dumps((), "system.listMethods")
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=HANG_GUARD)
    conn.request("POST", "/", body, {"Content-Type": "text/xml", "Accept-Encoding": "gzip", **agent.auth})
    resp = conn.getresponse()
    raw = resp.read()
    assert resp.status == 200 and resp.getheader("Content-Encoding") == "gzip"
    plain = gzip.decompress(raw)
    assert len(plain) > 1400
    assert xmlrpc.client.loads(plain)[0][0] == names
    conn.request("POST", "/", body, {"Content-Type": "text/xml", **agent.auth})
    resp = conn.getresponse()
    resp.read()
    assert resp.getheader("Content-Encoding") is None
    # A small reply is never compressed.
    conn.request("POST", "/", xmlrpc.client.dumps((), "core.is_alive"),
                 {"Content-Type": "text/xml", "Accept-Encoding": "gzip", **agent.auth})
    resp = conn.getresponse()
    resp.read()
    assert resp.getheader("Content-Encoding") is None
    conn.close()


def test_http_paths_and_verbs(agent):
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=HANG_GUARD)
    body = xmlrpc.client.dumps((), "core.is_alive")
    conn.request("POST", "/elsewhere", body, {"Content-Type": "text/xml", **agent.auth})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    conn.request("GET", "/", headers=agent.auth)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 501
    conn.close()
    # Without a path, ServerProxy posts to /RPC2.
    no_path = xmlrpc.client.ServerProxy(f"http://vtc:{agent.token}@127.0.0.1:{agent.port}", allow_none=True)
    assert no_path.core.is_alive() is True


def test_parallel_calls_from_threads(agent, tmp_path):
    """Each call waits until every call has started, so they must overlap."""
    n = 6
    script = (
        f'touch "{tmp_path}/$0"; '
        f'while [ "$(ls "{tmp_path}" | wc -l)" -lt {n} ]; do sleep 0.01; done'
    )
    results, errors = [], []

    def worker(i):
        try:
            res = agent.proxy().process.run(["sh", "-c", script, str(i)], {"timeout": float(HANG_GUARD)})
            results.append(res)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD * 2)
    assert not errors
    assert len(results) == n
    assert all(r["exit_code"] == 0 and not r["timed_out"] for r in results)


def test_many_pings_from_threads(agent):
    host = socket.gethostname()
    errors = []

    def worker():
        p = agent.proxy()  # ServerProxy is not thread-safe: one per thread
        for _ in range(20):
            if p.examples.hello.ping() != f"Pong from {host}":
                errors.append("bad pong")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    assert not errors


def test_job_data_save_load_delete(agent, proxy):
    state = {"vms": ["vm1", "vm2"], "ratio": 1.0, "count": 3, "none": None, "ok": True}
    assert proxy.core.save_job_data("job-a", state) is True
    job_dir = agent.data_dir / "job_data" / "job-a"
    # The bytes json.dump(state, f, indent=4) writes (keys sorted: an
    # XML-RPC struct reaches the agent without its order).
    assert (job_dir / "data" / "state.json").read_text() == json.dumps(dict(sorted(state.items())), indent=4)
    assert proxy.core.load_job_data("job-a") == state
    assert proxy.core.load_job_data("latest") == state
    assert proxy.core.get_job_data_log("job-a") == str(job_dir / "data")
    assert proxy.core.get_job_results_dir("job-a") == str(job_dir / "test_results")
    assert proxy.core.get_latest_job_results_dir() == str(job_dir / "test_results")

    assert proxy.core.save_suite_data("suite-1", {"s": 1}, {"r": [1, 2]}) is True
    assert proxy.core.load_suite_data("suite-1") == {"state": {"s": 1}, "results": {"r": [1, 2]}}
    assert proxy.core.load_suite_data("suite-1", "job-a") == {"state": {"s": 1}, "results": {"r": [1, 2]}}
    assert proxy.core.get_test_result_log_dir("suite-1") == str(job_dir / "test_results" / "suite-1")
    assert proxy.core.delete_suite_data("suite-1") is True
    assert proxy.core.load_suite_data("suite-1") is None

    assert proxy.core.delete_job_data("job-a") is True
    assert proxy.core.delete_job_data("job-a") is False
    assert proxy.core.load_job_data("job-a") is None
    # Binary state cannot be JSON: False, as upstream answers.
    assert proxy.core.save_job_data("job-b", {"blob": b"\x00"}) is False


def vm_hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_job_data_amplification_is_capped(vtcluster_bin, tmp_path):
    # Security audit M3: indent=4 costs four bytes per nesting level on every
    # line, so this 1.9 MB call (250,000 empty values 98 levels deep, under
    # the agent's cap on values per call) would be a 100 MB state.json; the
    # agent used to build it in memory. Now the text is streamed to disk and
    # stops at 16 MiB: False, as for any state upstream cannot serialise,
    # and nothing is left behind.
    a = Agent(vtcluster_bin, tmp_path)
    try:
        depth, leaves = 98, 250_000
        body = (
            "<?xml version='1.0'?>\n<methodCall>\n<methodName>core.save_job_data</methodName>\n<params>\n"
            "<param>\n<value><string>big</string></value>\n</param>\n<param>\n"
            + "<value><array><data>\n" * depth + "<value/>" * leaves + "</data></array></value>\n" * depth
            + "</param>\n</params>\n</methodCall>\n"
        )
        assert len(body) > 1 << 20
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=HANG_GUARD)
        conn.request("POST", "/", body, {"Content-Type": "text/xml", **a.auth})
        resp = conn.getresponse()
        reply = resp.read()
        conn.close()
        assert resp.status == 200
        assert xmlrpc.client.loads(reply)[0][0] is False
        assert not (a.data_dir / "job_data" / "big").exists()
        # Decoding the call is most of what remains.
        assert vm_hwm_kib(a.proc.pid) < 128 << 10
        # Under the cap the same shape is saved and read back.
        small = ""
        for _ in range(depth):
            small = [small]
        assert a.proxy().core.save_job_data("small", small) is True
        assert a.proxy().core.load_job_data("small") == small
    finally:
        a.stop()


# (A NUL cannot even travel: Python writes it raw and the XML is refused.)
@pytest.mark.parametrize("job_id", ["/", "..", "../x", "a/b", "", ".", "../../etc"])
def test_job_ids_cannot_escape_the_data_dir(proxy, tmp_path, job_id):
    sentinel = tmp_path / "keep"
    sentinel.mkdir()
    for call in (
        lambda i: proxy.core.delete_job_data(i),
        lambda i: proxy.core.save_job_data(i, {}),
        lambda i: proxy.core.load_job_data(i),
        lambda i: proxy.core.delete_suite_data(i, "job"),
    ):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            call(job_id)
        assert fault_json(excinfo)["exc_type"] == "ValueError"
    # Upstream rmtree'd an absolute path given as a job id.
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        proxy.core.delete_job_data(str(sentinel))
    assert fault_json(excinfo)["exc_type"] == "ValueError"
    assert sentinel.is_dir()


def test_token_required(vtcluster_bin, tmp_path):
    tok = "tok3n-of-at-least-16-bytes"
    a = Agent(vtcluster_bin, tmp_path, env={"VTCLUSTER_AGENT_TOKEN": tok}, user=f"vtc:{tok}@")
    try:
        assert a.proxy().examples.hello.ping().startswith("Pong from ")
        bare = f"http://127.0.0.1:{a.port}/"
        with pytest.raises(xmlrpc.client.ProtocolError) as excinfo:
            a.proxy(bare).examples.hello.ping()
        assert excinfo.value.errcode == 401
        with pytest.raises(xmlrpc.client.ProtocolError):
            a.proxy(f"http://vtc:wrong@127.0.0.1:{a.port}/").examples.hello.ping()
    finally:
        a.stop()


def test_quit_stops_the_agent(vtcluster_bin, tmp_path):
    a = Agent(vtcluster_bin, tmp_path)
    try:
        assert a.proxy().core.quit() is None
        assert a.proc.wait(HANG_GUARD) == 0
        assert not a.pid_file.exists()
    finally:
        a.stop()

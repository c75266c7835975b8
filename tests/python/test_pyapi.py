"""The seed's Python API (avocado_multihost.vt_cluster) on a lab of real
SSH hosts: the two usage examples of upstream's documentation, run from
examples/python/ as files, and the proxy, selector and log server
behaviours they rely on.

Each test gets its own vtcluster state (cluster_env) and stops what it
started; the API itself keeps no state, so what a test checks afterwards
is vtcluster's state and the lab's process table.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import xmlrpc.client

import pytest
from conftest import REPO_ROOT, RUN_TIMEOUT_SECONDS

EXAMPLES = REPO_ROOT / "examples" / "python"
PYSHIM = REPO_ROOT / "pyshim"


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Site:
    """A lab plus a private state, seen from Python."""

    def __init__(self, lab, env, tmp_path):
        self.lab = lab
        self.env = dict(os.environ)
        self.env.update(env)
        self.env["VTCLUSTER_BIN"] = str(lab.binary)
        self.env["PYTHONPATH"] = os.pathsep.join([str(PYSHIM), self.env.get("PYTHONPATH", "")])
        hosts = json.loads(lab.cluster_config.read_text(encoding="utf-8"))["hosts"]
        self.gateway = lab.info["gateway"]
        self.config = tmp_path / "site.json"
        self.config.write_text(json.dumps({
            "logger_host": self.gateway, "logger_port": free_port(self.gateway), "hosts": hosts,
        }), encoding="utf-8")
        self.env["VTCLUSTER_EXAMPLE_CONFIG"] = str(self.config)
        self.hosts = hosts

    def vtcluster(self, *args, check=True):
        res = subprocess.run([self.lab.binary, *args], env=self.env, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT_SECONDS, check=False)
        if check:
            assert res.returncode == 0, f"vtcluster {' '.join(args)}: {res.stdout}{res.stderr}"
        return res

    def json(self, *args):
        return json.loads(self.vtcluster(*args, "--json").stdout)

    def python(self, *args):
        return subprocess.run([sys.executable, *args], env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT_SECONDS, check=False)

    def cleanup(self):
        nodes = [n["name"] for n in self.json("node", "list")]
        if nodes:
            self.vtcluster("agents", "stop", *nodes, check=False)
        self.vtcluster("partition", "release", "--all-dead", check=False)
        for p in self.json("partition", "list"):
            self.vtcluster("partition", "release", p["id"], check=False)
        if nodes:
            self.vtcluster("node", "remove", "--force", *nodes, check=False)


@pytest.fixture
def site(lab, cluster_env, tmp_path):
    s = Site(lab, cluster_env, tmp_path)
    yield s
    s.cleanup()
    assert lab.agent_processes() == [], "agent processes left behind"


def test_readme_example_runs_unchanged(site):
    """virttest/vt_cluster/README.md's example, `virttest.` → `avocado_multihost.`."""
    res = site.python(str(EXAMPLES / "vt_cluster_readme.py"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "An error occurred" not in out, out
    for name in ("node1", "node2"):
        assert f"Agent on {name} is alive." in out, out
    pongs = [line for line in out.splitlines() if "Service Response: Pong from " in line]
    assert len(pongs) == 2, out
    # The example unregisters its nodes and removes its partition: nothing
    # is left in the state, and its agents are stopped.
    assert site.json("node", "list") == []
    assert site.json("partition", "list") == []
    assert site.lab.agent_processes() == []


def test_multihost_testing_example_runs_unchanged(site):
    """docs/source/MultiHostTesting.rst's complete example."""
    res = site.python(str(EXAMPLES / "multihost_testing_setup.py"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    # logging.error is the only output the example's unconfigured root
    # logger lets through: no node failed to set up.
    assert "Failed to setup node" not in out, out
    nodes = {n["name"]: n for n in site.json("node", "list")}
    assert set(nodes) == {"node1", "node2"}
    for n in nodes.values():
        # save_properties collected upstream's three properties.
        assert {"hostname", "cpu_vendor_id", "cpu_model_name"} <= set(n["properties"]), n
    # Its partition was removed, whichever node the selector picked.
    assert site.json("partition", "list") == []
    # The example never stops its LoggerServer: the child must still be
    # gone with the Python process.
    leftover = subprocess.run(["pgrep", "-f", f"logs serve --listen {site.gateway}:"],
                              capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == "", "vtcluster logs serve outlived the example"


API_SCRIPT = r"""
import json, logging, os, sys, xmlrpc.client
from avocado_multihost.vt_cluster import cluster, node_properties
from avocado_multihost.vt_cluster.node import Node, NodeError
from avocado_multihost.vt_cluster.proxy import ServerProxyError
from avocado_multihost.vt_cluster.logger import LoggerServer
from avocado_multihost.vt_cluster.selector import select_node

site = json.load(open(os.environ["VTCLUSTER_EXAMPLE_CONFIG"]))
out = {}
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append((record.levelname, record.getMessage()))

log = logging.getLogger("collector")
log.setLevel(logging.DEBUG)
log.addHandler(Keep())

for name in ("node1", "node2", "node3"):
    cluster.register_node(name, Node(site["hosts"][name], name))
n1 = cluster.get_node("node1")
n1.setup_agent_env()
n1.start_agent_server()

# Remote exceptions: ServerProxyError with the traceback, from a Fault.
try:
    n1.proxy.no.such.method()
except ServerProxyError as e:
    out["unknown"] = {"code": e.code, "str": str(e), "message": e.message,
                      "cause": type(e.__cause__).__name__, "exc_type": e.exc_type}
try:
    n1.proxy.core.start_log_redirection("", 1)
except ServerProxyError as e:
    out["value_error"] = {"exc_type": e.exc_type, "message": e.message}

# Values both ways, through nested dotted names.
res = n1.proxy.process.run(["cat"], {"stdin": b"\x00\xffbytes", "timeout": 30})
out["cat"] = {"stdout_type": type(res["stdout"]).__name__, "stdout": list(res["stdout"]),
              "exit": res["exit_code"]}

# The log server gets the agent's records, tagged with the node's name.
server = LoggerServer((site["logger_host"], 0), logger=log)
server.start()
n1.proxy.core.start_log_redirection(server.address[0], server.address[1])
n1.proxy.process.run(["echo", "pyapi-log-marker"], {"timeout": 30})
n1.proxy.core.stop_log_redirection()
server.stop()
out["records"] = records

# Partitions are real reservations, visible to every process.
p = cluster.create_partition()
out["empty_nodes"] = len(p.nodes)
n2 = cluster.get_node("node2")
n2.tag = "dst"
p.add_node(n2)
out["idle"] = sorted(n.name for n in cluster.idle_nodes)
out["by_tag"] = repr(cluster.get_node_by_tag("dst"))
out["partition_nodes"] = sorted(repr(n) for n in p.nodes)
out["partitions"] = [q.uuid for q in cluster.partitions] == [p.uuid]
try:
    p.del_node(cluster.get_node("node3"))
except ValueError as e:
    out["del_missing"] = str(e)
other = cluster.create_partition()
try:
    other.add_node(cluster.get_node("node2"))
except Exception as e:
    out["double_booked"] = type(e).__name__
p.del_node(n2)
out["after_del"] = len(cluster.partitions)
cluster.remove_partition(p)

# Selectors see the collected properties.
props = node_properties.load_properties()["node1"]
sel = "[{'key': 'hostname', 'operator': '==', 'values': '%s'}]" % props["hostname"]
out["selected"] = select_node(cluster.get_all_nodes(), selectors=sel).name
out["none"] = select_node(cluster.get_all_nodes(), "[{'key': 'hostname', 'operator': '==', 'values': 'nope'}]")
try:
    select_node(cluster.get_all_nodes(), "[{'key': 'x', 'operator': 'bogus', 'values': 1}]")
except Exception as e:
    out["bad_selector"] = type(e).__name__
try:
    Node({"address": "10.0.0.1", "pasword": "typo"}, "bad")
except NodeError as e:
    out["bad_key"] = str(e)
# Calls from several threads share the node's channel; replies find their caller.
import threading
echoes = {}
def echo(i):
    echoes[i] = n1.proxy.process.run(["sh", "-c", "sleep 0.$1; echo $1", "sh", str(i)], {"timeout": 30})["stdout"]
threads = [threading.Thread(target=echo, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["echoes"] = {str(i): v.decode() for i, v in echoes.items()}

import time
start = time.monotonic()
for _ in range(5):
    n1.proxy.core.is_alive()
out["call_seconds"] = (time.monotonic() - start) / 5
n1.stop_agent_server()
from avocado_multihost.vt_cluster.proxy import ProxyConnectionError
try:
    n1.proxy.core.is_alive()
except ProxyConnectionError as e:
    out["down"] = str(e)
print(json.dumps(out))
"""


def test_api_against_a_lab(site, tmp_path):
    script = tmp_path / "api.py"
    script.write_text(API_SCRIPT, encoding="utf-8")
    res = site.python(str(script))
    leftovers = subprocess.run(["pgrep", "-f", f"{site.lab.binary} (call --serve|logs serve)"],
                               capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == "", "vtcluster children outlived the script"
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])

    unknown = out["unknown"]
    assert unknown["code"] == 1
    assert unknown["cause"] == "Fault"
    assert unknown["str"] == "\n" + unknown["message"]
    assert unknown["message"].startswith("Traceback (most recent call last):")
    assert 'method "no.such.method" is not supported' in unknown["message"]
    assert out["value_error"]["exc_type"] == "ValueError"
    # The remote traceback is also logged, as upstream's proxy does.
    assert "Remote call no.such.method on node1 raised:" in res.stderr

    assert out["cat"] == {"stdout_type": "bytes", "stdout": list(b"\x00\xffbytes"), "exit": 0}

    lines = [msg for _, msg in out["records"] if "pyapi-log-marker" in msg]
    assert lines, out["records"]
    assert lines[0].startswith(f"node1({site.hosts['node1']['address']}) "), lines
    assert " avocado.service.process INFO | " in lines[0], lines

    assert out["empty_nodes"] == 0
    assert out["idle"] == ["node1", "node3"]
    assert out["by_tag"] == f"<Node(Name='node2', Host='{site.hosts['node2']['address']}', Tag='dst')>"
    assert out["partition_nodes"] == [out["by_tag"]]
    assert out["partitions"] is True
    assert out["del_missing"] == "Node node3 is not in this partition"
    assert out["double_booked"] == "ClusterError"
    assert out["after_del"] == 1  # only the empty "other" partition is left
    assert out["selected"] == "node1"
    assert out["none"] is None
    assert out["bad_selector"] == "NodeSelectorError"
    assert "unknown params key(s) pasword" in out["bad_key"]
    assert out["echoes"] == {str(i): f"{i}\n" for i in range(8)}
    # A stopped agent is a connection error, not a ServerProxyError.
    assert out["down"].startswith("calling core.is_alive on node node1 failed"), out["down"]
    print(f"one proxy call through vtcluster call: {out['call_seconds'] * 1000:.0f} ms")


# --- multi-host tests as Python classes, under the real `avocado run` --------

TRANSFER = EXAMPLES / "transfer_test.py"
PYCLASS = REPO_ROOT / "testdata" / "multihost" / "pyclass" / "lifecycle_test.py"


def session_pids(cluster, pattern):
    """pids matching pattern (as pgrep -f) that belong to this session: in
    one of its lab hosts' network namespaces (commands on nodes), or with
    its state dir in their environment (processes on the controller). Two
    suites running at once on one machine never count each other's."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    netns = {os.stat(f"/run/netns/{h['netns']}").st_ino for h in cluster.lab.hosts.values()}
    mark = f"VTCLUSTER_STATE_DIR={cluster.env['VTCLUSTER_STATE_DIR']}".encode()
    ours = []
    for pid in found.stdout.split():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in netns:
                ours.append(pid)
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    ours.append(pid)
        except OSError:
            pass  # exited while we looked
    return ours


@pytest.fixture
def registered(lab, cluster_bin_dir, tmp_path):
    """The lab's hosts registered (vtcluster bootstrap) in a private state."""
    from test_e2e import Cluster  # pylint: disable=import-outside-toplevel

    from conftest import cluster_env_for  # pylint: disable=import-outside-toplevel

    cluster = Cluster(lab, cluster_env_for(tmp_path / "state", cluster_bin_dir))
    cluster.vtcluster("bootstrap", "--vt-cluster-config", str(lab.cluster_config), "--accept-new-host-keys")
    yield cluster
    cluster.vtcluster("agents", "stop", check=False)
    for partition in cluster.partitions():
        cluster.vtcluster("partition", "release", partition["id"], check=False)


def test_avocado_list_shows_python_classes_as_multihost(registered, tmp_path):
    cli = registered.avocado(tmp_path / "avocado")
    res = cli("-V", "list", str(TRANSFER), env=registered.env)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = {line.split()[1]: line for line in res.stdout.splitlines()
             if line.startswith("multihost ")}
    ids = {f"{TRANSFER}:Transfer.{m}" for m in ("test_copy", "test_wrong_checksum", "test_needs_ipv6")}
    assert set(lines) == ids, res.stdout
    assert "net" in lines[f"{TRANSFER}:Transfer.test_copy"], res.stdout
    # FILE.py:Class and FILE.py:Class.method narrow the references.
    for ref, want in ((f"{TRANSFER}:Transfer", 3), (f"{TRANSFER}:Transfer.test_copy", 1)):
        res = cli("list", ref, env=registered.env)
        assert len([line for line in res.stdout.splitlines() if line.startswith("multihost ")]) == want, res.stdout
    # Tags filter as they do for any Avocado test.
    res = cli("list", "-t", "fails", str(TRANSFER), env=registered.env)
    assert [line.split()[1] for line in res.stdout.splitlines() if line.startswith("multihost ")] == [
        f"{TRANSFER}:Transfer.test_wrong_checksum"], res.stdout


def test_avocado_run_python_class_statuses_logs_and_teardown(registered, tmp_path):
    cli = registered.avocado(tmp_path / "avocado")
    res = cli("run", "--job-results-dir", str(cli.results), str(TRANSFER), env=registered.env)
    output = res.stdout + res.stderr
    results = json.loads((cli.results / "latest" / "results.json").read_text(encoding="utf-8"))
    tests = {t["name"].rsplit(":", 1)[1]: t for t in results["tests"]}
    assert {n: t["status"] for n, t in tests.items()} == {
        "Transfer.test_copy": "PASS",
        "Transfer.test_wrong_checksum": "FAIL",
        "Transfer.test_needs_ipv6": "CANCEL",
    }, (output, {n: t.get("fail_reason") for n, t in tests.items()})
    assert "deliberate failure" in tests["Transfer.test_wrong_checksum"]["fail_reason"]
    assert "deliberate cancel" in tests["Transfer.test_needs_ipv6"]["fail_reason"]
    copy = tests["Transfer.test_copy"]
    logdir = REPO_ROOT / copy["logdir"] if not os.path.isabs(copy["logdir"]) else copy["logdir"]
    from pathlib import Path  # pylint: disable=import-outside-toplevel

    logdir = Path(logdir)
    debug = (logdir / "debug.log").read_text(encoding="utf-8")
    assert "sent 1048576 bytes, dst received sha256" in debug, debug[-3000:]
    # dst sent its port, and both roles met at the barrier.
    assert re.search(r"role-dst: sent 'port' = \d+", debug), debug[-3000:]
    for role in ("src", "dst"):
        assert f"role-{role}: at barrier 'listening'" in debug, debug[-3000:]
    # The nodes' own log lines are interleaved: the client ran on src.
    partition = json.loads((logdir / "partition.json").read_text(encoding="utf-8"))
    src = partition["nodes"]["src"]["address"]
    assert f"src({src}) " in debug, debug[-3000:]
    # The whiteboard reaches Avocado: results.json and the task's file.
    assert re.fullmatch(r"[0-9a-f]{64}", copy["whiteboard"]), copy["whiteboard"]
    assert (logdir / "whiteboard").read_text(encoding="utf-8").strip() == copy["whiteboard"]
    # Every test gave its nodes back.
    assert registered.partitions() == []


def test_avocado_run_python_class_every_ending(registered, tmp_path):
    """setUp errors name setUp, remote exceptions carry the agent's
    traceback, assertions FAIL, skip SKIPs, a timeout kills the child;
    tearDown ran in every test that got past loading, and every partition
    was released."""
    from pathlib import Path  # pylint: disable=import-outside-toplevel

    cli = registered.avocado(tmp_path / "avocado")
    res = cli("run", "--job-results-dir", str(cli.results), str(PYCLASS), env=registered.env)
    output = res.stdout + res.stderr
    results = json.loads((cli.results / "latest" / "results.json").read_text(encoding="utf-8"))
    tests = {t["name"].rsplit(":", 1)[1]: t for t in results["tests"]}
    got = {n: t["status"] for n, t in tests.items()}
    reasons = {n: t.get("fail_reason") for n, t in tests.items()}
    lifecycle = {
        "test_setup_error": "ERROR", "test_remote_exception": "ERROR",
        "test_remote_exception_caught": "PASS", "test_assertion": "FAIL", "test_skip": "SKIP",
    }
    want = {f"Lifecycle.{m}": s for m, s in lifecycle.items()}
    want.update({f"Slow.{m}": s for m, s in lifecycle.items()})
    want["Slow.test_sleeps"] = "INTERRUPTED"
    sync = {"TwoRoles.test_broken_role_releases_the_others": "ERROR",
            "TwoRoles.test_wait_for_times_out": "ERROR"}
    assert got == dict(want, **sync), (output, reasons)
    # The root cause, not the released waiter's SyncError, and at once,
    # not after the 60 s test timeout.
    broken = tests["TwoRoles.test_broken_role_releases_the_others"]
    assert reasons["TwoRoles.test_broken_role_releases_the_others"].startswith("role a on "), reasons
    assert broken["time_elapsed"] < 30, broken["time_elapsed"]
    assert reasons["TwoRoles.test_wait_for_times_out"] == "waiting for 'never': timed out after 1 s"
    assert reasons["Lifecycle.test_setup_error"] == "setUp: ValueError: no such device in setUp"
    assert "1 != 2" in reasons["Lifecycle.test_assertion"]
    assert "timeout" in reasons["Slow.test_sleeps"], reasons["Slow.test_sleeps"]

    def logdir(name):
        return Path(tests[name]["logdir"])

    debug = (logdir("Lifecycle.test_remote_exception") / "debug.log").read_text(encoding="utf-8")
    assert "Remote call core.start_log_redirection on" in debug
    assert "Traceback (most recent call last):" in debug
    assert "ValueError" in debug
    # The background process the interrupted test left on its node was
    # stopped by the child itself (the job's end would stop the agents,
    # and with them everything, only later).
    slow = (logdir("Slow.test_sleeps") / "debug.log").read_text(encoding="utf-8")
    assert re.search(r"stopped background process \S+ on \S+, left running by the test", slow), slow[-3000:]
    caught = (logdir("Lifecycle.test_remote_exception_caught") / "debug.log").read_text(encoding="utf-8")
    assert "caught ValueError from the agent" in caught
    for name in want:
        marker = logdir(name) / "data" / "teardown-ran"
        assert marker.read_text(encoding="utf-8") == name, name
    assert registered.partitions() == []
    for pattern in ("avocado_multihost.mhtest", f"{registered.lab.binary} call --serve", "^sleep 7933$"):
        leftovers = session_pids(registered, pattern)
        assert leftovers == [], f"{pattern} outlived its test: {leftovers}"


@pytest.fixture
def pooled(site, tmp_path):
    """The site's lab hosts registered, with one filesystem pool every node
    reaches (lab hosts share this machine's filesystem) attached."""
    shared = tmp_path / "shared"
    config = json.loads(site.lab.cluster_config.read_text(encoding="utf-8"))
    config["pools"] = {"storage": {"shared": {"type": "filesystem", "path": str(shared)}}}
    config_path = tmp_path / "cluster.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    site.vtcluster("bootstrap", "--vt-cluster-config", str(config_path), "--accept-new-host-keys")
    site.vtcluster("agents", "start")
    site.vtcluster("pool", "attach", "shared")
    yield shared
    site.vtcluster("pool", "detach", "shared", check=False)


def test_resource_management_example_runs_unchanged(site, pooled):
    """docs/source/MultiHostTesting.rst's resource management example: a
    volume defined from params, bound to node1 and node2, allocated on
    node1, read back, released, unbound and destroyed through the real
    `vtcluster resource` CLI. The volume is qcow2, so qemu-img makes it."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img not installed (apt-get install qemu-utils): the example's volume is qcow2")
    # The example logs its result with logging.info on an unconfigured root
    # logger; configure it here rather than change the example.
    res = site.python("-c", "import logging, runpy, sys\n"
                            "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
                            "runpy.run_path(sys.argv[1], run_name='__main__')\n",
                      str(EXAMPLES / "resource_management.py"))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    info = [line for line in res.stdout.splitlines() if line.startswith("Resource info: ")]
    assert len(info) == 1, out
    spec = eval(info[0][len("Resource info: "):], {})  # pylint: disable=eval-used  # a printed dict
    assert set(spec) == {"spec"}, spec
    # upstream's volume params are image_size/image_format (the example's
    # "size"/"format" are ignored upstream too): a 20G qcow2 file.
    assert spec["spec"]["size"] == str(20 << 30), spec
    assert spec["spec"]["filename"] == "image.qcow2", spec
    assert spec["spec"]["allocation"] is not None, spec
    assert spec["spec"]["uri"]["node1"] == str(pooled / "image.qcow2"), spec
    # Released, unbound and destroyed: nothing left in the state or the pool.
    assert site.json("resource", "list") == []
    assert list(pooled.iterdir()) == []


def test_resmgr_errors_carry_vtcluster_message(site, pooled):
    """A refused call raises ResourceManagerError with vtcluster's reason;
    select_pool returns None when no pool fits, and inside a test node
    names are the partition's tags, as upstream."""
    res = site.python("-c", """
import json
from avocado_multihost.vt_resmgr import resmgr, ResourceManagerError
out = {}
rid = resmgr.create_resource_from_params("d", "volume", {"image_size": "1M", "image_format": "raw"})
resmgr.bind_resource(rid, node_names=["node2"])
resmgr.update_resource(rid, "allocate", arguments={"node": "node2"})
try:
    resmgr.destroy_resource(rid)
except ResourceManagerError as e:
    out["destroy"] = str(e)
out["nodes"] = resmgr.get_resource_binding_nodes(rid)
out["size"] = resmgr.get_resource_info(rid, request="spec.size")
resmgr.update_resource(rid, "resize", arguments={"size": 2 << 20})
out["resized"] = resmgr.get_resource_info(rid, request="spec.size")
out["select_nfs"] = resmgr.select_pool("volume", {"storage_type": "nfs"})
out["select_fs"] = resmgr.get_pool_info(resmgr.select_pool("volume", {"storage_type": "filesystem"}), request="meta.name")
resmgr.update_resource(rid, "release")
resmgr.unbind_resource(rid)
resmgr.destroy_resource(rid)
try:
    resmgr.get_resource_info(rid)
except ResourceManagerError as e:
    out["gone"] = str(e)
# Inside a test body: tags, and no names binds the partition's nodes only.
import os, tempfile
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump({"nodes": {"src": {"name": "node3"}}}, f)
os.environ["VTCLUSTER_PARTITION_FILE"] = f.name
rid = resmgr.create_resource_from_params("e", "volume", {"image_size": "1M"})
resmgr.bind_resource(rid)
out["in_test_nodes"] = resmgr.get_resource_binding_nodes(rid)
resmgr.unbind_resource(rid)
resmgr.destroy_resource(rid)
print(json.dumps(out))
""")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["destroy"].startswith("vtcluster resource destroy: resmgr: "), out
    assert "Cannot destroy an allocated resource object" in out["destroy"], out
    assert out["nodes"] == ["node2"]
    assert out["size"] == {"size": "1048576"}
    assert out["resized"] == {"size": "2097152"}
    assert out["select_nfs"] is None
    assert out["select_fs"] == {"name": "shared"}
    assert "no resource" in out["gone"], out
    assert out["in_test_nodes"] == ["src"]
    assert site.json("resource", "list") == []


def test_copy_files_to_and_from_a_node(site, tmp_path):
    """Node.copy_files_to/copy_files_from run `vtcluster cp`."""
    src = tmp_path / "payload"
    src.mkdir()
    (src / "a.txt").write_text("hello from the controller\n", encoding="utf-8")
    remote = tmp_path / "remote-copy"  # lab hosts share this filesystem
    back = tmp_path / "back"
    script = (
        "import json, os, sys\n"
        "from avocado_multihost.vt_cluster import cluster\n"
        "from avocado_multihost.vt_cluster.node import Node, NodeError\n"
        "site = json.load(open(os.environ['VTCLUSTER_EXAMPLE_CONFIG']))\n"
        "cluster.register_node('node1', Node(site['hosts']['node1'], 'node1'))\n"
        "n = cluster.get_node('node1')\n"
        f"n.copy_files_to({str(src)!r}, {str(remote)!r})\n"
        f"ok = n.copy_files_from({str(back)!r}, {str(remote)!r})\n"
        "bad = n.copy_files_from('/nonexistent/dir/x', '/no/such/remote/file')\n"
        "try:\n"
        "    n.copy_files_to('/no/such/local/file', '/tmp/x')\n"
        "    raised = None\n"
        "except NodeError as e:\n"
        "    raised = str(e)\n"
        "print(json.dumps({'ok': ok, 'bad': bad, 'raised': raised}))\n"
    )
    res = site.python("-c", script)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ok"] is True and out["bad"] is False
    assert out["raised"].startswith("SCP failed: "), out
    copied = list(back.rglob("a.txt"))
    assert copied and copied[0].read_text(encoding="utf-8") == "hello from the controller\n"

"""End to end: the real Avocado 113.0, the shim, the Go runner and agents on
a lab of real SSH hosts (network namespaces with sshd, see conftest.lab).

One lab serves the whole session; nodes are registered once (the
``bootstrapped`` fixture) and every test leaves the lab as it found it (the
``cluster`` fixture: links up, agents stopped, partitions released), so one
failure does not cascade. Specs and bodies live in testdata/multihost/e2e/.

Lab hosts share this machine's process table, so "no process left on the
node" is checked by scanning /proc; the sleeps the specs start have
distinctive durations so they can be told apart from anything else.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from conftest import (
    REPO_ROOT,
    RUN_TIMEOUT_SECONDS,
    AvocadoCLI,
    cluster_env_for,
    read_proc_table,
    run_bounded,
    venv_bin_dir,
)

E2E = REPO_ROOT / "testdata" / "multihost" / "e2e"
NETWORK = REPO_ROOT / "examples" / "network.json"
VENV_VT = REPO_ROOT / ".venv-vt"

#: argv of the sleeps the specs start, by where they run.
NODE_SLEEP = ["sleep", "7919"]  # interrupt.json node-sleep, through the agent
CONTROLLER_SLEEP = ["sleep", "7907"]  # bodies/sleep_controller.sh
DEATH_SLEEPS = (["sleep", "7901"], ["sleep", "7927"])  # node-death.json
MARKERS = (NODE_SLEEP, CONTROLLER_SLEEP, *DEATH_SLEEPS, ["sleep", "7949"])

#: --job-timeout for the interrupt test: long enough for the job's set-up
#: (agents, sysinfo, allocation) on a busy two-core machine, after which
#: both tests sleep until killed.
JOB_TIMEOUT_SECONDS = 15


# --- helpers ------------------------------------------------------------------


class Cluster:
    """A vtcluster state with the lab's nodes registered, and ways to drive it."""

    def __init__(self, lab, env):
        self.lab = lab
        self.env = env

    def vtcluster(self, *args, check=True):
        result = run_bounded(
            ["vtcluster", *args],
            env=dict(os.environ, **self.env),
        )
        if check:
            assert result.returncode == 0, (
                f"vtcluster {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def nodes(self):
        return json.loads(self.vtcluster("node", "list", "--json").stdout)

    def partitions(self):
        return json.loads(self.vtcluster("partition", "list", "--json").stdout)

    def avocado(self, tmp_path, **multihost):
        """An AvocadoCLI (private HOME and results) for the venv, on this state."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        cli = AvocadoCLI(tmp_path, python=str(venv_bin_dir() / "python"))
        if multihost:
            cli.configure(**multihost)
        return cli

    def run_env(self, cli, **extra):
        return cli.env(dict(self.env, **extra))


#: What marks a process as this session's, so that two suites running at
#: once on one machine never count or kill each other's sleeps: the network
#: namespaces of this session's lab hosts (commands on nodes), and this
#: session's state dir in the environment (bodies on the controller).
_SESSION = {"netns": set(), "environ": None}


def _claim_session(lab, env):
    _SESSION["netns"] = {os.stat(f"/run/netns/{h['netns']}").st_ino for h in lab.hosts.values()}
    _SESSION["environ"] = f"VTCLUSTER_STATE_DIR={env['VTCLUSTER_STATE_DIR']}".encode()


def _ours(pid):
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino in _SESSION["netns"]:
            return True
        with open(f"/proc/{pid}/environ", "rb") as f:
            return _SESSION["environ"] in f.read().split(b"\0")
    except OSError:
        return False  # exited while we looked


def processes_with_argv(argv):
    """This session's live processes running argv, as (pid, ppid)."""
    return [(pid, ppid) for pid, ppid, a in read_proc_table() if a == argv and _ours(pid)]


def alive(pid):
    """Whether pid runs (a zombie does not: only its parent can reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_markers():
    """Kill leftovers of the specs' sleeps; return what was found."""
    found = []
    for argv in MARKERS:
        for pid, _ in processes_with_argv(argv):
            found.append((pid, argv))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return found


def latest_job(cli):
    return (cli.results / "latest").resolve()


def load_results(cli):
    return json.loads((latest_job(cli) / "results.json").read_text(encoding="utf-8"))


def by_test_name(results):
    """{test name inside the spec: result entry} (Avocado names are FILE:NAME)."""
    return {t["name"].rsplit(":", 1)[1]: t for t in results["tests"]}


def summary(results):
    return {
        t["name"].rsplit(":", 1)[1]: (t["status"], t.get("fail_reason"))
        for t in results["tests"]
    }


def debug_tail(entry, lines=25):
    path = Path(entry["logdir"]) / "debug.log"
    if not path.exists():
        return "(no debug.log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def wait_bounded(proc, seconds, what):
    """Wait for proc; a hang kills it and fails the test with its output."""
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish within {seconds} s (hang); output:\n{out}{err}")
    return proc.returncode, out, err


def run_jobs_together(jobs, spec):
    """Run spec in one avocado job per (name, cli, env) at the same time and
    wait for all; {name: (exit code, output, cli)}. A hang fails the test,
    and no job outlives it."""
    procs = []
    try:
        for name, cli, env in jobs:
            proc = subprocess.Popen(
                cli.argv("run", "--job-results-dir", str(cli.results), str(spec)),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )
            procs.append((name, cli, proc))
        outcomes = {}
        for name, cli, proc in procs:
            code, out, err = wait_bounded(proc, RUN_TIMEOUT_SECONDS, f"avocado {name}")
            outcomes[name] = (code, out + err, cli)
        return outcomes
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def assert_holder_came_and_went(job, test_dirs):
    """The job's SSH connection holder served the tests and ended with the
    job, leaving neither a process nor its socket."""
    holder_log = (job / "cluster" / "holder.log").read_text(encoding="utf-8")
    assert "holder: listening" in holder_log and "holder: asked to quit" in holder_log, holder_log
    job_id = (job / "id").read_text(encoding="utf-8").strip()
    sock = f"{os.environ.get('TMPDIR') or '/tmp'}/vtcluster-{os.getuid()}/holder-{hashlib.sha256(job_id.encode()).hexdigest()[:16]}.sock"
    assert not os.path.exists(sock), f"holder socket {sock} left behind"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        assert not (b"holder" in argv and job_id.encode() in argv), f"holder process {pid} outlived its job"
    for d in test_dirs:
        timing = json.loads((d / "timing.json").read_text(encoding="utf-8"))
        names = {s["name"] for s in timing["spans"]}
        assert {"partition", "body", "partition: connect", "partition: hand-over"} <= names, (d, names)
        assert "timing: " in (d / "debug.log").read_text(encoding="utf-8"), d


def assert_cluster_clean(cluster, job_output=""):
    """No partition held, no agent process of the lab left."""
    assert cluster.partitions() == [], f"partitions left behind\n{job_output}"
    assert cluster.lab.agent_processes() == [], f"agent processes left behind\n{job_output}"


def assert_lab_nodes_registered(cluster):
    nodes = {n["name"]: n for n in cluster.nodes()}
    assert set(nodes) == set(cluster.lab.hosts)
    for name, host in cluster.lab.hosts.items():
        assert nodes[name]["address"] == host["address"]


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def bootstrapped(lab, cluster_bin_dir, tmp_path_factory):
    """The lab's hosts registered in a session state dir (vtcluster bootstrap)."""
    env = cluster_env_for(tmp_path_factory.mktemp("cluster") / "state", cluster_bin_dir)
    cluster = Cluster(lab, env)
    _claim_session(lab, env)
    cluster.vtcluster(
        "bootstrap", "--vt-cluster-config", str(lab.cluster_config), "--accept-new-host-keys"
    )
    return cluster


@pytest.fixture
def cluster(bootstrapped):
    """The bootstrapped cluster, put back in order after the test whatever happened."""
    leftovers = kill_markers()
    assert not leftovers, f"processes of an earlier run were still there: {leftovers}"
    yield bootstrapped
    kill_markers()
    for host in bootstrapped.lab.hosts:
        bootstrapped.lab.set_link(host, up=True)
    bootstrapped.vtcluster("agents", "stop", check=False)
    # Nodes a test made fail (lost, agent killed) count towards
    # quarantine; the next test starts from healthy nodes.
    bootstrapped.vtcluster("node", "resume", *bootstrapped.lab.hosts, check=False)
    for partition in bootstrapped.partitions():
        bootstrapped.vtcluster("partition", "release", partition["id"], check=False)


# --- 1. vt-bootstrap --vt-cluster-config ---------------------------------------


def test_vt_bootstrap_without_avocado_vt_registers_the_lab(lab, cluster_env, tmp_path):
    cluster = Cluster(lab, cluster_env)
    cli = cluster.avocado(tmp_path)
    check = subprocess.run(
        [cli.python, "-c", "import avocado_vt"], capture_output=True, timeout=RUN_TIMEOUT_SECONDS
    )
    if check.returncode == 0:
        pytest.skip(f"{cli.python} has avocado-vt; this test needs a venv without it")
    assert cluster.nodes() == []
    result = cli(
        "vt-bootstrap", "--vt-cluster-config", str(lab.cluster_config), "--accept-new-host-keys",
        env=cluster_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_lab_nodes_registered(cluster)


# avocado-vt's vt-bootstrap, run for real except for two things this machine
# cannot do or must not do: its check for qemu and friends (absent here) is
# skipped, and its cluster step (_register_hosts/_setup_managers, which would
# deploy upstream's Python agent over SSH) is replaced by a recorder, so the
# test can tell whether upstream tried to deploy.
UPSTREAM_BOOTSTRAP = textwrap.dedent("""\
    import os, sys
    from virttest import bootstrap

    def recorder(name):
        def record(*args, **kwargs):
            with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as out:
                out.write(name + "\\n")
        return record

    bootstrap.verify_mandatory_programs = lambda *args, **kwargs: None
    bootstrap._register_hosts = recorder("_register_hosts")
    bootstrap._setup_managers = recorder("_setup_managers")
    from avocado.core.main import main
    sys.exit(main())
    """)


def test_vt_bootstrap_with_avocado_vt_registers_the_lab_and_upstream_does_not_deploy_fake_upstream_deploy(
    lab, cluster_bin_dir, tmp_path
):
    python = VENV_VT / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{VENV_VT} not present: create it with scripts/venv.sh --vt")
    wrapper = tmp_path / "upstream_bootstrap.py"
    wrapper.write_text(UPSTREAM_BOOTSTRAP, encoding="utf-8")
    record = tmp_path / "upstream-calls"
    upstream_args = ["--vt-type", "qemu", "--vt-no-downloads",
                     "--vt-skip-verify-download-assets", "--yes-to-all"]

    def setup(name):
        """A private HOME, config and cluster state for one run."""
        (tmp_path / name).mkdir()
        cli = AvocadoCLI(tmp_path / name, python=str(python))
        return cli, Cluster(lab, cluster_env_for(tmp_path / name / "state", cluster_bin_dir))

    def run(cli, cluster, *extra):
        return run_bounded(
            [cli.python, str(wrapper), "--config", str(cli.config), "vt-bootstrap",
             *upstream_args, "--vt-cluster-config", str(lab.cluster_config), *extra],
            env=cli.env(dict(cluster.env, RECORD_FILE=str(record))),
        )

    # Control: with the shim's CLI plugin disabled, upstream gets the option
    # and deploys, and vtcluster registers nothing.
    cli, control = setup("control")
    cli.write_user_config('[plugins]\ndisable = ["cli.multihost"]\n')
    result = run(cli, control)
    assert result.returncode == 0, result.stdout + result.stderr
    assert record.read_text(encoding="utf-8").split() == ["_register_hosts", "_setup_managers"]
    assert control.nodes() == []
    record.unlink()

    cli, cluster = setup("shim")
    result = run(cli, cluster, "--accept-new-host-keys")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "VT-BOOTSTRAP FINISHED" in output  # upstream's bootstrap ran to its end...
    assert not record.exists(), f"upstream deployed too: {record.read_text()}"  # ...without its cluster step
    assert "Setting up the cluster environment" not in output
    assert_lab_nodes_registered(cluster)


# --- 2. the examples ------------------------------------------------------------

#: The unified log line of a node record in debug.log:
#: <tag>(<ip>) <asctime> <logger name> <levelname> | <message>
UNIFIED = r"{tag}\({ip}\) \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} avocado\.service\.\w+ (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \| "


def test_examples_results_logs_and_cleanup(cluster, tmp_path):
    if shutil.which("ping") is None:
        pytest.skip("ping not installed (apt-get install iputils-ping); the ping example needs it")
    cli = cluster.avocado(tmp_path)
    result = cli("run", "--job-results-dir", str(cli.results), str(NETWORK), env=cluster.env)
    output = result.stdout + result.stderr
    results = load_results(cli)
    tests = by_test_name(results)
    assert {name: t["status"] for name, t in tests.items()} == {
        "ping": "PASS",
        "tcp-transfer": "PASS",
        "every-node": "PASS",
        "no-such-node": "ERROR",
    }, summary(results)
    assert result.returncode == 1, output  # the one ERROR, nothing else
    reason = tests["no-such-node"]["fail_reason"]
    assert 'tag "big"' in reason and "cpu_count" in reason and "100000" in reason, reason

    hosts = cluster.lab.hosts
    for name, tags in (("ping", {"src", "dst"}), ("tcp-transfer", {"src", "dst"}),
                       ("every-node", {"n1", "n2", "n3"})):
        logdir = Path(tests[name]["logdir"])
        partition = json.loads((logdir / "partition.json").read_text(encoding="utf-8"))
        assert set(partition["nodes"]) == tags, name
        names = [n["name"] for n in partition["nodes"].values()]
        assert len(set(names)) == len(names), f"{name}: a node given to two tags: {partition}"
        debug = (logdir / "debug.log").read_text(encoding="utf-8")
        for tag, node in partition["nodes"].items():
            assert node["address"] == hosts[node["name"]]["address"]
            service_log = logdir / "cluster" / tag / "service.log"
            assert service_log.stat().st_size > 0, f"{name}: empty {service_log}"
            pattern = UNIFIED.format(tag=re.escape(tag), ip=re.escape(node["address"])) + r"\S"
            assert re.search(pattern, debug), f"{name}: no unified log line of {tag} in debug.log"
        if name == "ping":
            dst = partition["nodes"]["dst"]["address"]
            ran = f"run ['ping', '-c', '3', '-i', '0.2', '{dst}']"
            assert ran in (logdir / "cluster" / "src" / "service.log").read_text(encoding="utf-8")
            src = partition["nodes"]["src"]["address"]
            assert re.search(UNIFIED.format(tag="src", ip=re.escape(src)) + re.escape(ran), debug)
        if name == "every-node":
            assert (logdir / "cluster" / "n1" / "os-release").stat().st_size > 0

    job = latest_job(cli)
    for node in cluster.lab.hosts:
        agent_log = job / "cluster" / node / "agent.log"
        assert agent_log.stat().st_size > 0, f"{agent_log} missing or empty"
    assert_holder_came_and_went(job, [Path(t["logdir"]) for t in tests.values() if t["status"] == "PASS"])
    assert_cluster_clean(cluster, output)


# --- 3 and 4. interrupted jobs --------------------------------------------------


class SleepWatch:
    """Watches /proc for the interrupt spec's sleeps while a job runs."""

    def __init__(self, lab):
        self.lab = lab
        self.node = set()  # pids of NODE_SLEEP run by one of the lab's agents
        self.controller = set()

    def look(self):
        agents = {pid for pid, _ in self.lab.agent_processes()}
        for pid, ppid, argv in read_proc_table():
            if argv == NODE_SLEEP and ppid in agents:
                self.node.add(pid)
            elif argv == CONTROLLER_SLEEP and _ours(pid):
                self.controller.add(pid)
        return bool(self.node and self.controller)


def run_interrupt_job(cluster, tmp_path, interrupt=None):
    """Run interrupt.json until it is interrupted; return (exit code, output, results, watch).

    With interrupt None, ``--job-timeout`` ends the job; otherwise
    interrupt(proc) is called once both sleeps run (or the wait for them
    gave up, which the caller's assertions then report).
    """
    cli = cluster.avocado(tmp_path)
    args = ["run", "--job-results-dir", str(cli.results), "--max-parallel-tasks", "2"]
    if interrupt is None:
        args += ["--job-timeout", str(JOB_TIMEOUT_SECONDS)]
    proc = subprocess.Popen(
        cli.argv(*args, str(E2E / "interrupt.json")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.run_env(cli),
    )
    watch = SleepWatch(cluster.lab)
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    try:
        # With --job-timeout, keep looking until the job ends on its own.
        while proc.poll() is None and time.monotonic() < deadline:
            if watch.look() and interrupt is not None:
                break
            time.sleep(0.2)
        if interrupt is not None and proc.poll() is None:
            interrupt(proc)
        code, out, err = wait_bounded(proc, RUN_TIMEOUT_SECONDS, "the interrupted avocado job")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out + err, load_results(cli), watch


def assert_interrupted_cleanly(cluster, code, output, results, watch):
    assert watch.node, f"the node's sleep was never seen running\n{output}"
    assert watch.controller, f"the controller's sleep was never seen running\n{output}"
    statuses = {name: t["status"] for name, t in by_test_name(results).items()}
    assert statuses == {"node-sleep": "INTERRUPTED", "controller-sleep": "INTERRUPTED"}, summary(results)
    for entry in results["tests"]:
        assert entry["fail_reason"].startswith("Test interrupted"), entry["fail_reason"]
    assert code == 8, output  # INTERRUPTED only: no FAIL/ERROR, no job failure

    body = by_test_name(results)["controller-sleep"]
    pids = [int(p) for p in (Path(body["logdir"]) / "pids").read_text().split()]
    assert len(pids) == 2
    assert [p for p in pids if alive(p)] == [], "body processes survived the job"
    assert [p for p in watch.node if alive(p)] == [], "the sleep on the node survived the job"
    assert processes_with_argv(NODE_SLEEP) == [] and processes_with_argv(CONTROLLER_SLEEP) == []
    assert_cluster_clean(cluster, output)


def test_job_timeout_interrupts_and_leaves_nothing_behind(cluster, tmp_path):
    code, output, results, watch = run_interrupt_job(cluster, tmp_path)
    assert_interrupted_cleanly(cluster, code, output, results, watch)
    # Said as the job timeout, not as the SIGTERM Avocado delivers it with.
    # (A machine too busy to tear down within the runner's budget adds a
    # note to the reason; what was left is checked above either way.)
    for entry in results["tests"]:
        assert entry["fail_reason"].startswith(
            f"Test interrupted: Timeout reached (the job timeout of {JOB_TIMEOUT_SECONDS} s, --job-timeout)"
        ), entry["fail_reason"]


def test_sigint_interrupts_and_leaves_nothing_behind(cluster, tmp_path):
    code, output, results, watch = run_interrupt_job(
        cluster, tmp_path, lambda proc: proc.send_signal(signal.SIGINT)
    )
    assert_interrupted_cleanly(cluster, code, output, results, watch)


# --- 5. two jobs at once --------------------------------------------------------


def overlapping_uses(records):
    """Pairs of records that held a common node at overlapping times."""
    clashes = []
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            shared = set(a["nodes"]) & set(b["nodes"])
            if shared and a["start"] < b["end"] and b["start"] < a["end"]:
                clashes.append((sorted(shared), a["test"], b["test"]))
    return clashes


def test_parallel_jobs_never_share_a_node(cluster, tmp_path):
    usage = tmp_path / "usage.jsonl"
    jobs = []
    for name in ("job-a", "job-b"):
        cli = cluster.avocado(tmp_path / name, alloc_timeout=240)
        jobs.append((name, cli, cluster.run_env(cli, E2E_USAGE_LOG=str(usage))))
    outcomes = run_jobs_together(jobs, E2E / "pairs.json")

    for name, (code, output, cli) in outcomes.items():
        job = latest_job(cli)
        results = load_results(cli) if (job / "results.json").exists() else None
        assert results is not None, f"{name} produced no results:\n{output}"
        assert {n: t["status"] for n, t in by_test_name(results).items()} == {
            "pair-1": "PASS", "pair-2": "PASS", "pair-3": "PASS"
        }, f"{name}: {summary(results)}\n{output}"
        assert code == 0, f"{name}:\n{output}"

    records = [json.loads(line) for line in usage.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 6
    assert len({r["test"] for r in records}) == 6
    assert len({r["partition"] for r in records}) == 6
    for r in records:
        assert len(r["nodes"]) == 2 and set(r["nodes"]) <= set(cluster.lab.hosts), r
    assert overlapping_uses(records) == []
    assert_cluster_clean(cluster)


# --- 6. a node that dies mid-test -----------------------------------------------


#: What "quickly" means for a lost node: Avocado's own per-task deadline
#: ([task.timeout] running), which covers the whole runner, teardown
#: included. The runner checks its nodes every few seconds; a runner that
#: does not notice, or notices but then waits on the dead node, is killed
#: by Avocado at this deadline and the test shows INTERRUPTED instead of
#: ERROR. Shorter than the spec's own 45 s test timeout on purpose.
NODE_LOSS_DEADLINE_SECONDS = 30


@pytest.mark.parametrize("test", ["dies-under-body", "dies-under-step"])
def test_node_death_errors_naming_the_node_and_releases_the_others(cluster, tmp_path, test):
    cli = cluster.avocado(tmp_path)
    cli.configure(extra=f"[task.timeout]\nrunning = {NODE_LOSS_DEADLINE_SECONDS}\n")
    result = cli(
        "run", "--job-results-dir", str(cli.results), f"{E2E / 'node-death.json'}:{test}",
        env=cluster.env,
    )
    output = result.stdout + result.stderr
    results = load_results(cli)
    (entry,) = results["tests"]
    logdir = Path(entry["logdir"])
    partition = json.loads((logdir / "partition.json").read_text(encoding="utf-8"))
    victim = partition["nodes"]["victim"]["name"]
    survivor = partition["nodes"]["survivor"]["name"]
    # The victim's link is down until the cluster fixture brings it back.
    assert entry["status"] == "ERROR", (
        f"want ERROR naming node {victim} within {NODE_LOSS_DEADLINE_SECONDS} s, got "
        f"{entry['status']}: {entry['fail_reason']}\ndebug.log tail:\n{debug_tail(entry)}"
    )
    assert victim in entry["fail_reason"] and survivor not in entry["fail_reason"], entry["fail_reason"]
    assert result.returncode == 1, output
    # The job ends soon after its test: the post-tests hook names the lost
    # node once and does not wait on it for every step.
    ended_after = time.time() - entry["actual_time_end"]
    assert ended_after < 20, f"the job ended {ended_after:.1f} s after its test\n{output}"
    assert output.count(f'node "{victim}" is unreachable') <= 1, output
    debug = (logdir / "debug.log").read_text(encoding="utf-8")
    # The runner itself gave the nodes back, not the job's post hook.
    assert f"released partition {partition['id']}" in debug, debug_tail(entry)
    if test == "dies-under-body":  # the controller body was stopped too
        pids = [int(p) for p in (logdir / "pids").read_text().split()]
        assert len(pids) == 2 and [p for p in pids if alive(p)] == []
    assert cluster.partitions() == []
    # The failure bundle has the survivor's side and says why not the
    # victim's; the timeline marks the loss on the victim's lane.
    readme = (logdir / "failure" / "README.txt").read_text(encoding="utf-8")
    assert f"victim ({victim}): nothing collected; not: agent: " in readme, readme
    assert (logdir / "failure" / "survivor" / "agent-service.log").exists(), readme
    events = json.loads((logdir / "events.json").read_text(encoding="utf-8"))["events"]
    lost = [(e["tag"], e["severity"]) for e in events if e["kind"] == "node-lost" and e.get("tag")]
    assert lost == [("victim", "error")], lost
    assert (logdir / "timeline.html").exists()


# --- resources: a volume two nodes share, a tap port on each ------------------

RESOURCES = E2E / "resources.json"
#: the body of resources.json's "killed" test, so it can be found and reaped.
RESOURCE_SLEEP = ["sleep", "7949"]


def netns(cluster, host, *argv, check=True):
    return subprocess.run(["ip", "netns", "exec", cluster.lab.hosts[host]["netns"], *argv],
                          capture_output=True, text=True, check=check)


@pytest.fixture
def resource_pools(cluster, tmp_path):
    """A filesystem pool at one path every lab host reaches (lab hosts share
    this machine's filesystem, so it stands in for shared storage) and a
    linux_bridge pool on a real bridge inside each host's namespace."""
    shared = tmp_path / "shared"
    hosts = cluster.lab.hosts
    for host in hosts:
        netns(cluster, host, "ip", "link", "add", "br-e2e", "type", "bridge")
    try:
        cluster.vtcluster("pool", "create", "e2e-shared",
                          json.dumps({"type": "filesystem", "path": str(shared)}))
        cluster.vtcluster("pool", "create", "e2e-br", json.dumps(
            {"type": "linux_bridge", "switch": {h: {"ifname": "br-e2e"} for h in hosts}}))
        yield shared
    finally:
        for pid, _ in processes_with_argv(RESOURCE_SLEEP):
            os.kill(pid, signal.SIGKILL)
        cluster.vtcluster("resource", "list", check=False)
        cluster.vtcluster("pool", "destroy", "e2e-shared", check=False)
        cluster.vtcluster("pool", "destroy", "e2e-br", check=False)
        for host in hosts:
            netns(cluster, host, "ip", "link", "del", "br-e2e", check=False)


def assert_no_resources_left(cluster, shared, output=""):
    """No volume file, tap, resource record, claim or attached pool left."""
    assert not shared.exists() or list(shared.iterdir()) == [], list(shared.iterdir())
    for host in cluster.lab.hosts:
        links = netns(cluster, host, "ip", "-o", "link", "show").stdout
        assert "tap_" not in links, f"{host}: {links}"
    assert json.loads(cluster.vtcluster("resource", "list", "--json").stdout) == [], output
    pools = json.loads(cluster.vtcluster("pool", "list", "--json").stdout)
    assert all(p["connected_nodes"] == [] for p in pools), pools
    assert_cluster_clean(cluster, output)


def test_resources_shared_volume_and_taps_leave_nothing(cluster, resource_pools, tmp_path):
    shared = resource_pools
    cli = cluster.avocado(tmp_path / "avocado")
    result = cli("run", "--job-results-dir", str(cli.results), f"{RESOURCES}:shared-disk-and-taps",
                 env=cluster.env)
    output = result.stdout + result.stderr
    results = load_results(cli)
    entry = by_test_name(results)["shared-disk-and-taps"]
    assert entry["status"] == "PASS", f"{summary(results)}\n{debug_tail(entry)}"
    partition = json.loads((Path(entry["logdir"]) / "partition.json").read_text(encoding="utf-8"))
    disk = partition["resources"]["disk"]["nodes"]
    assert disk["src"] == disk["dst"] and disk["src"].startswith(str(shared) + "/"), partition
    taps = partition["resources"]["net"]["nodes"]
    assert set(taps) == {"src", "dst"} and all(t.startswith("tap_") for t in taps.values()), partition
    assert_no_resources_left(cluster, shared, output)


def test_resources_of_a_killed_runner_are_removed_by_the_next_allocation(cluster, resource_pools, tmp_path):
    """kill -9 of the runner mid-test (and of its avocado job, as a crashed
    controller would be): nobody releases anything, yet the next job
    reclaims the dead runner's partition and removes its volume and taps on
    the nodes (its first allocation sweeps; its post hook would too)."""
    shared = resource_pools
    cli = cluster.avocado(tmp_path / "killed")
    proc = subprocess.Popen(
        cli.argv("run", "--job-results-dir", str(cli.results), f"{RESOURCES}:killed"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=cluster.run_env(cli),
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        runners = []
        while proc.poll() is None and time.monotonic() < deadline:
            if processes_with_argv(RESOURCE_SLEEP):
                runners = [pid for pid, _, argv in read_proc_table()
                           if argv and argv[0].endswith("avocado-runner-multihost") and "task-run" in argv
                           and _ours(pid)]
                break
            time.sleep(0.2)
        assert runners, "the test body never started"
        killed = list(shared.iterdir())
        assert len(killed) == 1, killed
        taps = {h: netns(cluster, h, "ip", "-o", "link", "show").stdout.count("tap_") for h in cluster.lab.hosts}
        assert sum(taps.values()) == 2, taps
        for pid in runners:
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        for pid, _ in processes_with_argv(RESOURCE_SLEEP):
            os.kill(pid, signal.SIGKILL)  # the body outlived its runner
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed[0].exists(), "nothing should have removed it yet"

    cli = cluster.avocado(tmp_path / "next")
    result = cli("run", "--job-results-dir", str(cli.results), f"{RESOURCES}:shared-disk-and-taps",
                 env=cluster.env)
    output = result.stdout + result.stderr
    assert by_test_name(load_results(cli))["shared-disk-and-taps"]["status"] == "PASS", output
    assert not killed[0].exists(), "the killed test's volume is still there"
    assert_no_resources_left(cluster, shared, output)

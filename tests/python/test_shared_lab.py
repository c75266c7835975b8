"""A shared lab under ``avocado run`` (issue 20): the fair queue.

A three-node test queued behind a running test is served before the
two-node tests that arrived after it, each in its own Avocado job, and
``vtcluster queue --json`` shows it waiting with the holder named: on one
machine's state file (the session lab and state of test_e2e, three hosts),
and across two controllers that share only etcd.
"""

import json
import socket
import subprocess
import time

import pytest
from conftest import RUN_TIMEOUT_SECONDS, cluster_env_for
from test_etcd_e2e import etcd  # noqa: F401  (fixture)
from test_e2e import (  # noqa: F401  (fixtures, shared with the session)
    E2E,
    Cluster,
    assert_cluster_clean,
    bootstrapped,
    by_test_name,
    cluster,
    latest_job,
    load_results,
    summary,
    wait_bounded,
)


def start_job(cluster, tmp_path, name, test, env, settings):
    cli = cluster.avocado(tmp_path / name, alloc_timeout=240, **settings)
    proc = subprocess.Popen(
        cli.argv("run", "--job-results-dir", str(cli.results), f"{E2E / 'queue.json'}:{test}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.run_env(cli, **env),
    )
    return name, cli, proc


def wait_until(what, cond, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def queue(cluster):
    return json.loads(cluster.vtcluster("queue", "--json").stdout)


def queue_scenario(cluster, tmp_path, controllers):
    """Runs the jobs hold, big, small-a and small-b (in that order, each on
    its (Cluster, Avocado settings) of controllers) and checks the queue
    through cluster."""
    usage, go = tmp_path / "usage.jsonl", tmp_path / "go"
    env = {"E2E_USAGE_LOG": str(usage), "E2E_GO": str(go)}
    ctl = dict(zip(("hold", "big", "small-a", "small-b"), controllers))

    def start(name, test):
        on, settings = ctl[name]
        return start_job(on, tmp_path, name, test, env, settings)

    jobs = [start("hold", "hold-1")]
    try:
        held = wait_until("the holding test's partition", lambda: cluster.partitions())
        jobs.append(start("big", "big-3"))
        wait_until("big-3 queued", lambda: len(queue(cluster)) == 1)
        jobs.append(start("small-a", "small-2"))
        wait_until("the first small-2 queued", lambda: len(queue(cluster)) == 2)
        jobs.append(start("small-b", "small-2"))
        waiting = wait_until("three requests queued", lambda: (lambda q: len(q) == 3 and q)(queue(cluster)))

        first = waiting[0]
        assert first["position"] == 1 and [t["tag"] for t in first["tags"]] == ["a", "b", "c"], waiting
        assert first["test_id"].endswith("big-3"), waiting
        held_node = held[0]["nodes"][0]["node"]
        assert set(first["fit"]["a"]) == set(cluster.lab.hosts), first
        assert f"partition {held[0]['id']}" in first["holders"][held_node], first
        # The two idle nodes are kept for big-3: no small test got them.
        assert len(cluster.partitions()) == 1
        status = cluster.vtcluster("status").stdout
        assert "Waiting for nodes (vtcluster queue):" in status, status
        go.touch()

        outcomes = {}
        for name, cli, proc in jobs:
            code, out, err = wait_bounded(proc, RUN_TIMEOUT_SECONDS, f"avocado {name}")
            outcomes[name] = (code, out + err, cli)
    finally:
        go.touch()
        for _, _, proc in jobs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for name, (code, output, cli) in outcomes.items():
        results = load_results(cli)
        assert [t["status"] for t in results["tests"]] == ["PASS"], f"{name}: {summary(results)}\n{output}"
        assert code == 0, output
    records = {r["test"]: r for r in map(json.loads, usage.read_text(encoding="utf-8").splitlines())}
    # Each job's results, and so its test's output dir, is under tmp_path/<job>.
    by_job = {name: next(r for t, r in records.items() if t.startswith(str(tmp_path / name) + "/")) for name in outcomes}
    big = by_job["big"]
    assert len(big["nodes"]) == 3
    for small in ("small-a", "small-b"):
        assert by_job[small]["start"] > big["end"], (by_job[small], big)
    # The waiting test said why, in its own log.
    big_log = (latest_job(outcomes["big"][2]) / "test-results").rglob("debug.log")
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in big_log)
    assert "waiting for nodes since" in text and f'node "{held_node}" is held by partition' in text, text[-3000:]


def test_big_request_served_before_later_small_ones(cluster, tmp_path):
    queue_scenario(cluster, tmp_path, [(cluster, {})] * 4)
    assert_cluster_clean(cluster)


def test_queue_across_two_controllers_on_etcd(lab, cluster_bin_dir, etcd, tmp_path):  # noqa: F811
    # Controller A reaches etcd by environment, B by Avocado's
    # multihost.state; they share nothing else.
    a = Cluster(lab, dict(cluster_env_for(tmp_path / "a" / "state", cluster_bin_dir), VTCLUSTER_STATE=etcd))
    b = Cluster(lab, cluster_env_for(tmp_path / "b" / "state", cluster_bin_dir))
    a.vtcluster("bootstrap", "--vt-cluster-config", str(lab.cluster_config), "--accept-new-host-keys")
    try:
        queue_scenario(a, tmp_path, [(a, {}), (b, {"state": etcd}), (a, {}), (b, {"state": etcd})])
    finally:
        a.vtcluster("agents", "stop", check=False)
    assert json.loads(a.vtcluster("partition", "list", "--json").stdout) == []


def test_two_controllers_with_separate_states(lab, cluster_bin_dir, tmp_path):
    """Two controllers on the same hosts with separate state files (a
    plausible mistake): the second one's test, which its own state gives
    the node the first one's test runs on, fails as an infrastructure
    failure naming the other controller's host, and the first test passes
    untouched (its body pings its agent at both ends)."""
    a = Cluster(lab, cluster_env_for(tmp_path / "a" / "state", cluster_bin_dir))
    b = Cluster(lab, cluster_env_for(tmp_path / "b" / "state", cluster_bin_dir))
    for c in (a, b):
        c.vtcluster("bootstrap", "--vt-cluster-config", str(lab.cluster_config), "--accept-new-host-keys")
    usage, go = tmp_path / "usage.jsonl", tmp_path / "go"
    env = {"E2E_USAGE_LOG": str(usage), "E2E_GO": str(go)}
    hold = start_job(a, tmp_path, "hold", "hold-1", env, {})
    try:
        held = wait_until("the first controller's partition", lambda: a.partitions())
        cli = b.avocado(tmp_path / "big", alloc_timeout=20)
        proc = subprocess.Popen(
            cli.argv("run", "--job-results-dir", str(cli.results), f"{E2E / 'queue.json'}:big-3"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=b.run_env(cli, **env),
        )
        _, out, err = wait_bounded(proc, RUN_TIMEOUT_SECONDS, "avocado on the second controller")
        second = out + err
        (entry,) = load_results(cli)["tests"]
        assert entry["status"] == "ERROR", f"{summary(load_results(cli))}\n{out}{err}"
        assert entry["fail_reason"].startswith("infrastructure: allocating nodes: "), entry["fail_reason"]
        assert f"held by controller host {socket.gethostname()} (partition {held[0]['id']}" in entry["fail_reason"], entry["fail_reason"]
        # The class of the failure is Avocado's fail_class, which its
        # xunit result (results.xml) keeps as the error's type.
        xunit = (latest_job(cli) / "results.xml").read_text(encoding="utf-8")
        assert '<error type="InfrastructureError" message="infrastructure: ' in xunit, xunit
        go.touch()
        code, out, err = wait_bounded(hold[2], RUN_TIMEOUT_SECONDS, "avocado on the first controller")
    finally:
        go.touch()
        if hold[2].poll() is None:
            hold[2].kill()
            hold[2].wait()
        a.vtcluster("agents", "stop", check=False)
    results = load_results(hold[1])
    assert [t["status"] for t in results["tests"]] == ["PASS"], f"{summary(results)}\n{out}{err}\nsecond controller:\n{second}"
    assert code == 0

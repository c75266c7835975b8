"""End to end with the state in etcd: two controllers that share nothing but
etcd (separate state directories, separate HOMEs, as if on two machines)
run Avocado jobs on one lab of real SSH hosts at the same time.

Needs Debian's etcd-server (``/usr/bin/etcd``); skipped without it.
"""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import cluster_env_for
from test_e2e import (
    E2E,
    Cluster,
    by_test_name,
    latest_job,
    load_results,
    overlapping_uses,
    run_jobs_together,
    summary,
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def etcd(tmp_path):
    """A one-member etcd on loopback; yields its --state URL."""
    binary = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)
    if binary is None:
        pytest.skip("etcd server not installed (apt-get install etcd-server)")
    client, peer = free_port(), free_port()
    log = open(tmp_path / "etcd.log", "w", encoding="utf-8")
    proc = subprocess.Popen(
        [binary, "--name", "e2e", "--data-dir", str(tmp_path / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"e2e=http://127.0.0.1:{peer}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1) as r:
                    if b"true" in r.read():
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "etcd.log").read_text()
            time.sleep(0.1)
        yield f"etcd://127.0.0.1:{client}/vtcluster-e2e"
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_two_controllers_sharing_only_etcd_never_share_a_node(lab, cluster_bin_dir, etcd, tmp_path):
    # Controller A chooses etcd by environment, controller B by Avocado's
    # multihost.state setting; each has its own (unused) state directory.
    a = Cluster(lab, dict(cluster_env_for(tmp_path / "a" / "state", cluster_bin_dir), VTCLUSTER_STATE=etcd))
    b = Cluster(lab, cluster_env_for(tmp_path / "b" / "state", cluster_bin_dir))
    a.vtcluster("bootstrap", "--vt-cluster-config", str(lab.cluster_config), "--accept-new-host-keys")
    nodes = json.loads(b.vtcluster("--state", etcd, "node", "list", "--json").stdout)
    assert {n["name"] for n in nodes} == set(lab.hosts)

    claims, usage = tmp_path / "claims", tmp_path / "usage.jsonl"
    claims.mkdir()
    jobs = []
    try:
        for name, cluster, settings in (("a", a, {}), ("b", b, {"state": etcd})):
            cli = cluster.avocado(tmp_path / f"job-{name}", alloc_timeout=240, **settings)
            jobs.append((f"controller {name}", cli,
                         cluster.run_env(cli, E2E_USAGE_LOG=str(usage), E2E_CLAIM_DIR=str(claims))))
        outcomes = run_jobs_together(jobs, E2E / "claims.json")
    finally:
        a.vtcluster("agents", "stop", check=False)

    for name, (code, output, cli) in outcomes.items():
        assert (latest_job(cli) / "results.json").exists(), f"{name} produced no results:\n{output}"
        results = load_results(cli)
        assert {n: t["status"] for n, t in by_test_name(results).items()} == {
            "claim-1": "PASS", "claim-2": "PASS", "claim-3": "PASS"
        }, f"{name}: {summary(results)}\n{output}"
        assert code == 0, output
    records = [json.loads(line) for line in usage.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 6 and len({r["partition"] for r in records}) == 6
    assert overlapping_uses(records) == []
    assert list(claims.iterdir()) == [], "claims left on the nodes"
    assert json.loads(a.vtcluster("partition", "list", "--json").stdout) == []
    # Neither controller wrote a state file: etcd was the only shared state.
    for c in (tmp_path / "a" / "state", tmp_path / "b" / "state"):
        assert not c.exists() or not any(c.glob("*.json")), list(c.iterdir())

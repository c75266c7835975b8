"""VMs under `avocado run`: the live migration examples on real lab hosts
with real QEMU (TCG here), a JSON spec and a MultiHostTest doing the same
(docs/vms.md). Both must PASS with the migration figures in their results
and leave nothing on the nodes."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, RUN_TIMEOUT_SECONDS, cluster_env_for, lab_requirements_missing, read_proc_table, venv_bin_dir


def vm_requirements_missing():
    missing = lab_requirements_missing()
    if missing:
        return missing
    for tool in ("qemu-system-x86_64", "qemu-img", "qemu-io", "busybox", "apt-get"):
        if shutil.which(tool) is None:
            return f"{tool} not found: the VM tests need qemu-system-x86, qemu-utils and busybox-static"
    if not (venv_bin_dir() / "avocado").exists():
        return "no avocado in the venv (make venv)"
    return None


def run(argv, env, timeout=RUN_TIMEOUT_SECONDS):
    return subprocess.run(argv, env={**os.environ, **env}, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def qemu_in(netns):
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout.split()
    return [pid for pid, _, argv in read_proc_table() if str(pid) in pids and os.path.basename(argv[0]).startswith("qemu-system")]


def test_avocado_run_vm_migration_examples(tmp_path, cluster_bin_dir):
    missing = vm_requirements_missing()
    if missing:
        pytest.skip(missing)
    guest = run(["bash", "scripts/guest.sh"], {}, timeout=600)
    assert guest.returncode == 0, guest.stderr
    env = cluster_env_for(tmp_path / "state", cluster_bin_dir)
    work = tmp_path / "vm"
    up = run(["bash", "scripts/vm-lab.sh", "up", str(work)], env)
    try:
        assert up.returncode == 0, up.stderr
        config = up.stdout.strip().splitlines()[-1]
        boot = run(["avocado", "vt-bootstrap", "--vt-cluster-config", config, "--accept-new-host-keys"], env)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        job = run(["avocado", "run", "--job-results-dir", str(tmp_path / "results"),
                   "examples/vm-migration.json", "examples/python/vm_migration.py"], env, timeout=900)
        results = Path(tmp_path / "results" / "latest").resolve()
        data = json.loads((results / "results.json").read_text())
        statuses = {t["name"].rsplit(":", 1)[-1]: t["status"] for t in data["tests"]}
        assert statuses == {"migrate": "PASS", "Migration.test_migrate": "PASS"}, ([(t["name"], t.get("fail_reason")) for t in data["tests"]], job.stdout[-3000:])
        for t in data["tests"]:
            figures = json.loads(t["whiteboard"])["migrations"]
            assert len(figures) == 1 and figures[0]["status"] == "completed", figures
            assert figures[0]["total_time_ms"] > 0 and figures[0]["transferred"] > 0, figures
            assert (figures[0]["from"], figures[0]["to"]) == ("src", "dst")
        spec_dir = next(p for p in (results / "test-results").iterdir() if p.name.endswith("migrate"))
        for tag in ("src", "dst"):
            console = (spec_dir / "cluster" / tag / "vm1.console").read_text(errors="replace")
            assert "tick " in console, console[-500:]
        assert (spec_dir / "vm-migrations.json").exists()
        assert "vm vm1: migration completed" in (spec_dir / "debug.log").read_text()
        lab = json.loads((work / "lab" / "lab.json").read_text())
        for host in lab["hosts"]:
            assert qemu_in(host["netns"]) == [], f"QEMU left on {host['name']}"
        assert not list((work / "pool").glob("**/*.qcow2")), "volumes left in the pool"
    finally:
        run(["vtcluster", "agents", "stop"], env)
        down = run(["bash", "scripts/vm-lab.sh", "down", str(work)], env)
        assert down.returncode == 0, down.stderr

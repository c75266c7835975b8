"""Debugging a failed multi-host test, end to end under ``avocado run`` on
real lab hosts: the event record and its timeline page (loaded in headless
chromium), the failure bundle, and hold-on-failure (nodes and volume kept,
the printed commands work, ``partition release`` or the hold's end gives
everything back).

The lab, the session's cluster and the shared pool come from test_e2e.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RUN_TIMEOUT_SECONDS
from test_e2e import (  # noqa: F401  (fixtures)
    E2E,
    RESOURCES,
    assert_no_resources_left,
    bootstrapped,
    by_test_name,
    cluster,
    debug_tail,
    load_results,
    resource_pools,
    summary,
)

DEBUGGING = E2E / "debugging.json"
FAILING = "fails-on-dst"


def run_failing(cluster, tmp_path, hold, flag=False):
    """Runs the failing test, held for hold (the setting, or with flag the
    option of avocado run)."""
    if flag:
        cli = cluster.avocado(tmp_path / "avocado")
        args = ["--multihost-hold-on-failure", hold]
    else:
        cli = cluster.avocado(tmp_path / "avocado", hold_on_failure=hold)
        args = []
    result = cli("run", "--job-results-dir", str(cli.results), *args, f"{DEBUGGING}:{FAILING}", env=cluster.env)
    output = result.stdout + result.stderr
    results = load_results(cli)
    entry = by_test_name(results)[FAILING]
    assert entry["status"] == "FAIL", f"{summary(results)}\n{debug_tail(entry)}\n{output}"
    assert "step 3 on dst" in entry["fail_reason"], entry["fail_reason"]
    return cli, entry, output


def load_page_in_chromium(page, tmp_path, screenshot=None):
    """(rendered DOM, browser stderr) of page in a real headless browser."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (scripts/system-packages.txt lists it)")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=3000"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_SECONDS, check=True)
    if screenshot:
        subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1400,900", page.as_uri()],
                       capture_output=True, timeout=RUN_TIMEOUT_SECONDS, check=True)
    return dom.stdout, dom.stderr


def test_failed_test_has_timeline_bundle_and_is_held_until_released(cluster, resource_pools, tmp_path):
    shared = resource_pools
    cli, entry, output = run_failing(cluster, tmp_path, "10m")
    logdir = Path(entry["logdir"])
    debug = (logdir / "debug.log").read_text(encoding="utf-8")

    # The record: every step's start and exit on its tag and node, the
    # failing one an error with the command's stderr.
    record = json.loads((logdir / "events.json").read_text(encoding="utf-8"))
    assert [n["tag"] for n in record["nodes"]] == ["src", "dst"], record["nodes"]
    steps = [e for e in record["events"] if e["kind"] == "step"]
    assert {(e["name"], e["tag"], e["phase"]) for e in steps} == {
        ("step 1", "src", "begin"), ("step 1", "src", "end"),
        ("step 2", "src", "begin"), ("step 2", "src", "end"),
        ("step 2", "dst", "begin"), ("step 2", "dst", "end"),
        ("step 3", "dst", "begin"), ("step 3", "dst", "end"),
    }, steps
    failed = [e for e in steps if e["severity"] == "error"]
    assert [(e["name"], e["tag"]) for e in failed] == [("step 3", "dst")], failed
    assert "exit status 3" in failed[0]["detail"] and "debug-marker-stderr" in failed[0]["detail"]
    kinds = {e["kind"] for e in record["events"]}
    assert {"allocation", "hand-over", "resource", "body", "failure-bundle", "hold", "teardown", "result"} <= kinds, kinds
    assert any("debug-marker-from-src" in line["text"] for line in record["logs"]), "the step's log line is not in the record"

    # The page: linked from debug.log and the job's results, loads in a
    # real browser without errors, one lane per node plus the controller's,
    # the failing step marked.
    page = logdir / "timeline.html"
    assert f"timeline of this test (open in a browser): {page}" in debug
    index = cli.results / "latest" / "multihost-timelines.html"
    assert index.exists(), list((cli.results / "latest").iterdir())
    assert f'href="test-results/{logdir.name}/timeline.html"' in index.read_text(encoding="utf-8")
    assert "MULTIHOST TIMELINES:" in output, output
    dom, console = load_page_in_chromium(page, tmp_path, os.environ.get("TIMELINE_SCREENSHOT"))
    assert not re.findall(r"CONSOLE\(\d+\)|Uncaught|Refused to", console), console
    assert 'data-rendered="yes"' in dom
    assert 'data-lanes="3"' in dom and dom.count('class="lane"') == 3
    assert re.search(r'class="mark failed"[^>]*>✗ step 3', dom), "the failing step is not marked"
    assert not re.search(r'id="errors"[^>]*>[^<]+<', dom)

    # The bundle: from both nodes, what explains the failure.
    bundle = logdir / "failure"
    readme = (bundle / "README.txt").read_text(encoding="utf-8")
    for tag in ("src", "dst"):
        files = {p.name for p in (bundle / tag).iterdir()}
        assert {"agent-service.log", "dmesg.txt", "processes.txt", "network.txt"} <= files, (tag, files, readme)
        assert (bundle / tag / "agent-service.log").stat().st_size > 0
    assert "debug-marker-stderr" in (bundle / "dst" / "agent-service.log").read_text(encoding="utf-8", errors="replace")

    # The hold: the partition and its volume stay, status says so.
    parts = cluster.partitions()
    assert len(parts) == 1, parts
    held = parts[0]["held_for_debugging"]
    assert FAILING in held["test"] and 500 < held["seconds_left"] <= 600, held
    volume = list(shared.iterdir())
    assert len(volume) == 1 and volume[0].read_bytes().startswith(b"left-by-src"), volume
    status = json.loads(cluster.vtcluster("status", "--json").stdout)
    held_nodes = {r["node"] for r in status if r.get("held_for_debugging")}
    assert held_nodes == {n["node"] for n in parts[0]["nodes"]}, status
    assert "Held for debugging" in cluster.vtcluster("status").stdout
    assert "is held for debugging until" in output, "the job's output does not show the hold"

    # The printed commands work as printed.
    hold_lines = [line.split("HOLD:", 1)[1].strip() for line in debug.splitlines() if "HOLD:" in line]
    export = next(line for line in hold_lines if line.startswith("export "))
    key, value = shlex.split(export.split("#")[0])[1].split("=", 1)
    env = dict(os.environ, **cluster.env, **{key: value})
    for tag in ("src", "dst"):
        block = hold_lines[hold_lines.index(next(line for line in hold_lines if line.startswith(f"{tag} = "))) + 1:][:3]
        exec_cmd, cp_cmd, ssh_cmd = (shlex.split(line) for line in block)
        assert exec_cmd[exec_cmd.index("exec") + 1] == tag, block
        got = subprocess.run(exec_cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
        assert got.returncode == 0 and "PID" in got.stdout, (exec_cmd, got.stdout, got.stderr)
        here = tmp_path / f"cp-{tag}"
        here.mkdir()
        got = subprocess.run(cp_cmd, env=env, cwd=here, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
        assert got.returncode == 0 and (here / "os-release").exists(), (cp_cmd, got.stderr)
        assert ssh_cmd[0] == "ssh", ssh_cmd
        got = subprocess.run([*ssh_cmd[:-1], "-o", "BatchMode=yes", ssh_cmd[-1], "cat", str(volume[0])],
                             capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
        assert got.returncode == 0 and got.stdout.startswith("left-by-src"), (ssh_cmd, got.stderr)

    # Release ends the hold and gives the volume back.
    release = next(line for line in hold_lines if line.startswith("end the hold: "))
    got = subprocess.run(shlex.split(release.split(": ", 1)[1]), env=env, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT_SECONDS)
    assert got.returncode == 0, got.stderr
    assert cluster.partitions() == []
    assert list(shared.iterdir()) == [], "the held volume is still there after release"
    assert json.loads(cluster.vtcluster("resource", "list", "--json").stdout) == []
    # The job's post hook left the agents up and the pools attached for
    # the hold; the next job's would stop and detach them, as this does.
    for pool in json.loads(cluster.vtcluster("pool", "list", "--json").stdout):
        if pool["connected_nodes"]:
            cluster.vtcluster("pool", "detach", pool["config"]["meta"]["name"])
    cluster.vtcluster("agents", "stop")
    assert_no_resources_left(cluster, shared, output)


def test_a_hold_ends_by_itself(cluster, resource_pools, tmp_path):
    """Nobody releases it: once its time is up the next allocation reclaims
    the partition and removes its volume."""
    shared = resource_pools
    run_failing(cluster, tmp_path, "3s", flag=True)
    parts = cluster.partitions()
    assert len(parts) == 1 and parts[0]["held_for_debugging"], parts
    assert len(list(shared.iterdir())) == 1
    deadline = time.monotonic() + 30
    while cluster.partitions()[0]["lease_seconds_left"] > 0:
        assert time.monotonic() < deadline, cluster.partitions()
        time.sleep(0.5)
    cli = cluster.avocado(tmp_path / "next")
    result = cli("run", "--job-results-dir", str(cli.results), f"{RESOURCES}:shared-disk-and-taps", env=cluster.env)
    output = result.stdout + result.stderr
    assert by_test_name(load_results(cli))["shared-disk-and-taps"]["status"] == "PASS", output
    assert_no_resources_left(cluster, shared, output)

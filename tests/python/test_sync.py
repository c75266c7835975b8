"""Synchronisation owned by the test (issue 19) on a lab of real SSH hosts,
under the real Avocado 113.0: JSON steps, processes on the nodes (vtcluster
sync and the LAVA/Beaker aliases), and waits that end when a peer is lost
or finished. The specs are testdata/multihost/e2e/sync.json.

Assertions look at the outcome, the errors' content and the order of the
events the runner records in sync.json, never at tight timers.
"""

import json
from datetime import datetime
from pathlib import Path

import pytest
from test_e2e import (  # noqa: F401  (fixtures)
    E2E,
    assert_cluster_clean,
    bootstrapped,
    by_test_name,
    cluster,
    debug_tail,
    load_results,
)

SYNC = E2E / "sync.json"


def run(cluster, tmp_path, *names, extra=""):  # noqa: F811
    cli = cluster.avocado(tmp_path)
    if extra:
        cli.configure(extra=extra)
    refs = [f"{SYNC}:{n}" for n in names]
    result = cli("run", "--job-results-dir", str(cli.results), *refs, env=cluster.env)
    tests = by_test_name(load_results(cli))
    assert set(tests) == set(names), result.stdout + result.stderr
    return tests, result.stdout + result.stderr


def events(entry):
    record = json.loads((Path(entry["logdir"]) / "sync.json").read_text(encoding="utf-8"))
    assert record["dropped"] == 0
    for ev in record["events"]:
        assert set(ev) >= {"time", "tag", "node", "kind", "name"}, ev
        ev["t"] = datetime.fromisoformat(ev["time"])
    return record["events"]


def debug(entry):
    return (Path(entry["logdir"]) / "debug.log").read_text(encoding="utf-8", errors="replace")


def partition_node(entry, tag):
    partition = json.loads((Path(entry["logdir"]) / "partition.json").read_text(encoding="utf-8"))
    return partition["nodes"][tag]["name"]


def test_transfer_message_before_waiter_mutex_and_lava_beaker_scripts(cluster, tmp_path):  # noqa: F811
    names = ("transfer", "lava-beaker", "message-before-waiter", "mutex")
    tests, output = run(cluster, tmp_path, *names)
    for name in names:
        assert tests[name]["status"] == "PASS", (name, tests[name]["fail_reason"], debug_tail(tests[name], 60))

    # Server in the background, barrier, client: the server's process
    # arrived at the barrier cli's step waited at; its port and checksum
    # reached cli's steps as {sync.port} and {sync.got}.
    t = tests["transfer"]
    evs = events(t)
    arrive = {(e["tag"], e["kind"]) for e in evs if e["name"] == "listening"}
    assert {("srv", "arrive"), ("cli", "arrive"), ("srv", "pass"), ("cli", "pass")} <= arrive, evs
    log = debug(t)
    assert "server received 1048576 bytes" in log or "transfer verified" in log, log[-3000:]
    assert "transfer verified " in log, log[-3000:]
    sends = [e for e in evs if e["kind"] == "send"]
    assert [(e["tag"], e["name"]) for e in sends] == [("srv", "port"), ("srv", "got")], sends
    assert f"sync: cli ({partition_node(t, 'cli')}) receive 'got'" in log
    assert (Path(t["logdir"]) / "sync.json").stat().st_size > 0

    # The LAVA/Beaker script ran unchanged on both roles.
    log = debug(tests["lava-beaker"])
    assert "client got: greeting=from-" in log and "port=5201" in log, log[-3000:]
    assert "server: client is DONE" in log, log[-3000:]
    server = partition_node(tests["lava-beaker"], "server")
    assert f"client wait-all: {server}:greeting=from-{server}" in log, log[-3000:]
    kinds = [(e["tag"], e["kind"], e["name"]) for e in events(tests["lava-beaker"])]
    assert ("server", "send", "rhts:READY") in kinds and ("client", "send", "rhts:DONE") in kinds, kinds

    # The message was sent before its waiter existed, and received.
    t = tests["message-before-waiter"]
    evs = events(t)
    send = next(e for e in evs if e["kind"] == "send" and e["name"] == "early")
    wait = next(e for e in evs if e["kind"] == "wait" and e["name"] == "early")
    assert send["t"] <= wait["t"] and send["tag"] == "a" and wait["tag"] == "b", evs
    assert f"b got sent-by-{partition_node(t, 'a')}" in debug(t)

    # The mutex serialised: b asked while a held it, and got it only after
    # a's unlock.
    evs = events(tests["mutex"])
    order = [(e["tag"], e["kind"]) for e in evs if e["name"] == "m"]
    assert order.index(("b", "lock")) < order.index(("a", "unlock")) < order.index(("b", "locked")), order
    assert order.index(("a", "locked")) < order.index(("b", "locked")), order
    assert_cluster_clean(cluster, output)


def test_strangers_cannot_join_send_or_unlock(cluster, tmp_path):  # noqa: F811
    tests, output = run(cluster, tmp_path, "strangers")
    t = tests["strangers"]
    assert t["status"] == "PASS", (t["fail_reason"], debug_tail(t, 60))
    log = debug(t)
    assert "no token: vtcluster: not started by a multihost test" in log, log[-3000:]
    assert "forged: vtcluster: sync: this process is not one of the test's" in log, log[-3000:]
    assert "forged unlock: vtcluster: sync: this process is not one of the test's" in log, log[-3000:]
    assert "forged barrier: vtcluster: sync: this process is not one of the test's" in log, log[-3000:]
    assert "other user: PermissionError" in log, log[-3000:]
    assert "unlock of a's mutex: vtcluster: mutex 'm' is held by tag 'a', not 'b'" in log, log[-3000:]
    # Nothing a stranger tried reached the hub.
    assert [e for e in events(t) if e["name"] in ("stolen", "joined")] == []
    assert_cluster_clean(cluster, output)


def test_a_peer_that_finishes_without_reaching_the_barrier_fails_the_waiter_at_once(cluster, tmp_path):  # noqa: F811
    names = ("finishes-without-barrier", "finishes-without-barrier-process")
    tests, output = run(cluster, tmp_path, *names)
    t = tests["finishes-without-barrier"]
    b = partition_node(t, "b")
    assert t["status"] == "ERROR", (t["fail_reason"], debug_tail(t, 40))
    assert t["fail_reason"] == (f"step 1 on a: barrier 'meet': tag 'b' (node {b}) finished without reaching it "
                                "(its steps in step 1 ended)"), t["fail_reason"]
    evs = events(t)
    finish = next(i for i, e in enumerate(evs) if e["kind"] == "finish" and e["tag"] == "b")
    fail = next(i for i, e in enumerate(evs) if e["kind"] == "fail" and e["tag"] == "a")
    assert finish < fail, evs

    # From a process on the node: vtcluster sync barrier exits 1 naming b.
    t = tests["finishes-without-barrier-process"]
    b = partition_node(t, "b")
    assert t["status"] == "FAIL", (t["fail_reason"], debug_tail(t, 40))
    assert t["fail_reason"] == "step 1 on a: 'sh' exited with status 1", t["fail_reason"]
    assert (f"vtcluster: barrier 'meet': tag 'b' (node {b}) finished without reaching it "
            "(its command of step 1 exited with status 0)") in debug(t), debug_tail(t, 40)
    assert_cluster_clean(cluster, output)


def test_a_lost_peer_ends_the_wait_naming_it(cluster, tmp_path):  # noqa: F811
    tests, _ = run(cluster, tmp_path, "lost-at-barrier", extra="[task.timeout]\nrunning = 40\n")
    t = tests["lost-at-barrier"]
    victim = partition_node(t, "victim")
    assert t["status"] == "ERROR", (t["fail_reason"], debug_tail(t, 40))
    assert f'node "{victim}" (tag victim) lost' in t["fail_reason"], t["fail_reason"]
    evs = events(t)
    lost = next(e for e in evs if e["kind"] == "lost")
    assert lost["tag"] == "victim" and lost["node"] == victim, evs
    fail = next(e for e in evs if e["kind"] == "fail" and e["tag"] == "waiter")
    # The waiter was released by the loss, naming the node: after it was
    # seen, with the loss as the reason (not a timeout or the test's end).
    assert evs.index(lost) < evs.index(fail), evs
    assert fail["name"] == "after-sleep" and fail["detail"].startswith(
        f"barrier 'after-sleep': tag 'victim' (node {victim}) was lost: its "), fail
    assert (fail["t"] - lost["t"]).total_seconds() < 2, (lost, fail)




PYSYNC = E2E.parent / "pyclass" / "sync_roles.py"


def test_python_roles_use_the_runners_sync(cluster, tmp_path):  # noqa: F811
    cli = cluster.avocado(tmp_path)
    result = cli("run", "--job-results-dir", str(cli.results), str(PYSYNC), env=cluster.env)
    tests = by_test_name(load_results(cli))
    want = {f"SyncRoles.{m}" for m in ("test_lock_serialises", "test_node_process_and_python_exchange_values",
                                        "test_role_ending_before_the_barrier_fails_the_waiter")}
    assert set(tests) == want, result.stdout + result.stderr
    for name, t in tests.items():
        assert t["status"] == "PASS", (name, t["fail_reason"], debug_tail(t, 60))
    t = tests["SyncRoles.test_lock_serialises"]
    order = [(e["tag"], e["kind"]) for e in events(t) if e["name"] == "m"]
    assert sorted(order) == sorted([(r, k) for r in "ab" for k in ("lock", "locked", "unlock")]), order
    first = order[order.index(next(o for o in order if o[1] == "locked"))][0]
    second = "b" if first == "a" else "a"
    assert order.index((first, "unlock")) < order.index((second, "locked")), order
    t = tests["SyncRoles.test_node_process_and_python_exchange_values"]
    sends = {(e["tag"], e["name"]) for e in events(t) if e["kind"] == "send"}
    assert sends == {("b", "from-python"), ("a", "from-node")}, sends
    assert_cluster_clean(cluster, result.stdout + result.stderr)

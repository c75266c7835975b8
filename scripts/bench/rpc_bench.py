#!/usr/bin/env python3
"""Agent RPC throughput and memory: our Go agent against a Python agent in
upstream's design (pyagent.py), under the same load (rpcload); and, at
--floor-clients, the agent's latency against the floor: a bare net/http
server answering a fixed reply (floor/main.go), measured by the same rpcload.

For every repeat, client count and server, a fresh server is started, warmed
up for --warmup seconds with the same load, its memory read, then loaded for
--seconds; calls/s, latency, the server's CPU time and its peak memory are
recorded. Servers alternate order between repeats so that drift in the
machine's load does not favour one. Exits 1 if any run failed (a server did
not start or exited badly, or any call failed); a missed target is reported,
not an error.

    rpc_bench.py --rpcload bin/bench/rpcload --go-agent "bin/vtcluster-agent agent" \\
        --floor bin/bench/floor --clients 1,4,16 --seconds 5 --repeats 3 --json rpc.json
"""

import argparse
import os
import secrets
import shlex
import sys
import tempfile

import benchlib as bl

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_SPEEDUP = 10.0
TARGET_RSS_FRACTION = 1 / 3
TARGET_FLOOR_RATIO = 1.3
# The fields of a run whose medians every table shows.
LATENCY = ("calls_per_sec", "p50_ms", "p99_ms", "server_cpu_us_per_call")


def agent_argv(prefix, port, pid_file, data_dir):
    return prefix + [
        "--host", "127.0.0.1",
        "--port", str(port),
        "--pid-file", pid_file,
        "--data-dir", data_dir,
    ]


def one_run(args, name, prefix, clients, repeat, workdir):
    run_dir = tempfile.mkdtemp(prefix=f"{name}-c{clients}-r{repeat}-", dir=workdir)
    port = bl.free_port()
    pid_file = os.path.join(run_dir, "agent.pid")
    argv = agent_argv(prefix, port, pid_file, os.path.join(run_dir, "data"))
    load = [args.rpcload, "-addr", f"127.0.0.1:{port}", "-clients", str(clients)]
    rec = {"server": name, "clients": clients, "repeat": repeat, "loadavg_before": bl.loadavg()}
    # Our agent refuses TCP without a token; every server gets the same
    # request bytes (the others ignore the Authorization header).
    env = dict(os.environ, VTCLUSTER_AGENT_TOKEN=secrets.token_hex(16))
    with bl.Server(argv, port, run_dir, env=env, pid_file=pid_file) as srv:
        rec["rss_idle_kb"] = bl.proc_status(srv.pid)["VmRSS"]
        if args.warmup > 0:
            warm = bl.run_tool(load + ["-duration", f"{args.warmup}s"], timeout=args.warmup + 60, env=env)
            if warm["errors"]:
                rec["warmup_errors"] = warm["errors"]
        st = bl.proc_status(srv.pid)
        rec["rss_warm_kb"], rec["rss_anon_warm_kb"] = st["VmRSS"], st["RssAnon"]
        cpu0 = bl.proc_cpu_seconds(srv.pid)
        res = bl.run_tool(load + ["-duration", f"{args.seconds}s"], timeout=args.seconds + 60, env=env)
        cpu = bl.proc_cpu_seconds(srv.pid) - cpu0
        st = bl.proc_status(srv.pid)
        rec["hwm_kb"], rec["rss_end_kb"] = st["VmHWM"], st["VmRSS"]
        rec["exit_code"] = srv.stop()
        rec["stderr_tail"] = srv.stderr_tail(200) if rec["exit_code"] else ""
    rec.update({
        "calls_per_sec": res["calls_per_sec"],
        "calls": res["calls"],
        "errors": res["errors"] + rec.get("warmup_errors", 0),
        "first_error": res.get("first_error", ""),
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "client_cpu_seconds": res["client_cpu_seconds"],
        "server_cpu_seconds": cpu,
        "server_cpu_us_per_call": cpu / res["calls"] * 1e6 if res["calls"] else None,
        "seconds": res["seconds"],
    })
    return rec


def stats(rs):
    return {
        **bl.medians(rs, *LATENCY, "rss_warm_kb", "rss_anon_warm_kb"),
        "calls_per_sec_range": bl.spread([r["calls_per_sec"] for r in rs]),
        "client_cpu_share": bl.median([r["client_cpu_seconds"] / r["seconds"] for r in rs]),
        "hwm_kb": max(r["hwm_kb"] for r in rs),
        "errors": sum(r["errors"] for r in rs),
    }


def floor_stats(rs):
    return {**bl.medians(rs, *LATENCY), "p50_ms_range": bl.spread([r["p50_ms"] for r in rs])}


def summarize(runs, labels, clients_list):
    rows = bl.rows_by_load(runs, labels, "clients", clients_list, stats)
    for row in rows:
        row["speedup"] = row["go"]["calls_per_sec"] / row["python"]["calls_per_sec"]
        row["cpu_per_call_ratio"] = (
            row["python"]["server_cpu_us_per_call"] / row["go"]["server_cpu_us_per_call"]
        )
    mem = {}
    for name in labels:
        rs = [r for r in runs if r["server"] == name]
        mem[name] = {
            **bl.medians(rs, "rss_warm_kb", "rss_anon_warm_kb"),
            "hwm_kb": max(r["hwm_kb"] for r in rs),
        }
    mem["rss_warm_ratio"] = mem["go"]["rss_warm_kb"] / mem["python"]["rss_warm_kb"]
    mem["hwm_ratio"] = mem["go"]["hwm_kb"] / mem["python"]["hwm_kb"]
    return rows, mem


def summarize_floor(runs, floor_clients):
    """Per client count, the agent's median p50 over the floor's."""
    rows = bl.rows_by_load(runs, ("go", "floor"), "clients", floor_clients, floor_stats)
    for row in rows:
        row["p50_ratio"] = row["go"]["p50_ms"] / row["floor"]["p50_ms"]
    return rows


def print_floor_table(rows, go_label, repeats):
    print(f"\nAgent RPC against the floor: p50 latency, median of {repeats} runs (min..max); "
          f"go = {go_label}, floor = bare net/http answering a fixed reply (floor/main.go)")
    print(f"{'clients':>7} | {'floor p50 us':>20} | {'go p50 us':>20} | {'go/floor':>8} | "
          f"{'target':>6} | {'CPU us/call floor / go':>22} | {'p99 us floor / go':>17}")
    for r in rows:
        fl, go = r["floor"], r["go"]
        fr, gr = fl["p50_ms_range"], go["p50_ms_range"]
        ok = "met" if r["p50_ratio"] <= TARGET_FLOOR_RATIO else "MISSED"
        print(f"{r['clients']:>7} | {fl['p50_ms'] * 1e3:>6.0f} ({fr[0] * 1e3:>5.0f}..{fr[1] * 1e3:>5.0f}) | "
              f"{go['p50_ms'] * 1e3:>6.0f} ({gr[0] * 1e3:>5.0f}..{gr[1] * 1e3:>5.0f}) | "
              f"{r['p50_ratio']:>7.2f}x | {ok:>6} | "
              f"{fl['server_cpu_us_per_call']:>10.0f} / {go['server_cpu_us_per_call']:>9.0f} | "
              f"{fl['p99_ms'] * 1e3:>7.0f} / {go['p99_ms'] * 1e3:>7.0f}")


def print_table(rows, mem, go_label, repeats):
    print(f"\nAgent RPC: examples.hello.ping, median of {repeats} runs (min..max); "
          f"go = {go_label}, python = pyagent.py (upstream's design)")
    print(f"{'clients':>7} | {'python calls/s':>22} | {'go calls/s':>24} | {'go/python':>9} | "
          f"{'target':>6} | {'CPU us/call py / go':>19} | {'p99 ms py / go':>15}")
    for r in rows:
        py, go = r["python"], r["go"]
        pr, gr = py["calls_per_sec_range"], go["calls_per_sec_range"]
        ok = "met" if r["speedup"] >= TARGET_SPEEDUP else "MISSED"
        print(f"{r['clients']:>7} | {py['calls_per_sec']:>7.0f} ({pr[0]:>5.0f}..{pr[1]:>5.0f}) | "
              f"{go['calls_per_sec']:>7.0f} ({gr[0]:>6.0f}..{gr[1]:>6.0f}) | {r['speedup']:>8.1f}x | "
              f"{ok:>6} | {py['server_cpu_us_per_call']:>8.0f} / {go['server_cpu_us_per_call']:>6.0f} | "
              f"{py['p99_ms']:>6.2f} / {go['p99_ms']:>6.2f}")
    ok = "met" if mem["rss_warm_ratio"] <= TARGET_RSS_FRACTION else "MISSED"
    print(f"memory after warm-up (median VmRSS): python {mem['python']['rss_warm_kb'] / 1024:.1f} MiB, "
          f"go {mem['go']['rss_warm_kb'] / 1024:.1f} MiB, ratio {mem['rss_warm_ratio']:.2f} "
          f"(target <= 0.33: {ok}); anonymous only: python "
          f"{mem['python']['rss_anon_warm_kb'] / 1024:.1f} MiB, go {mem['go']['rss_anon_warm_kb'] / 1024:.1f} MiB")
    ok = "met" if mem["hwm_ratio"] <= TARGET_RSS_FRACTION else "MISSED"
    print(f"peak memory (max VmHWM): python {mem['python']['hwm_kb'] / 1024:.1f} MiB, "
          f"go {mem['go']['hwm_kb'] / 1024:.1f} MiB, ratio {mem['hwm_ratio']:.2f} (target <= 0.33: {ok})")


def progress(rec):
    return (f"{rec['calls_per_sec']:8.0f} calls/s errors={rec['errors']} "
            f"rss={rec['rss_warm_kb']}KiB hwm={rec['hwm_kb']}KiB load={rec['loadavg_before']:.1f}")


def check(rec):
    if rec["errors"]:
        yield f"{rec['errors']} calls failed, first: {rec['first_error']}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rpcload", required=True, help="the built rpcload program")
    p.add_argument("--go-agent", required=True, help='argv prefix of our agent, e.g. "bin/vtcluster agent"')
    p.add_argument("--python", default=sys.executable, help="interpreter for pyagent.py")
    p.add_argument("--floor", help="the built floor program (bare net/http server); omit to skip the floor")
    p.add_argument("--floor-clients", default="1", help="client counts at which the floor is measured")
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--warmup", type=float, default=1)
    args = bl.parse_args(p, argv)
    clients_list = bl.int_list(args.clients)

    servers = {
        "python": [args.python, os.path.join(HERE, "pyagent.py")],
        "go": shlex.split(args.go_agent),
    }
    go_label = args.go_label or args.go_agent
    floor_clients = []
    if args.floor:
        floor_clients = [c for c in bl.int_list(args.floor_clients) if c in clients_list]
        if not floor_clients:
            print(f"rpc_bench: no floor run: --floor-clients {args.floor_clients} is not among "
                  f"--clients {args.clients}", file=sys.stderr)
        servers["floor"] = [args.floor]
    with bl.workdir(args.workdir, "vtc-rpcbench-") as workdir:
        runs, failures = bl.run_matrix(
            "rpc_bench", ["python", "go", "floor"], "clients", clients_list, args.repeats,
            lambda name, clients, repeat: one_run(args, name, servers[name], clients, repeat, workdir),
            progress, check,
            skip=lambda name, clients: name == "floor" and clients not in floor_clients)

    summary = None
    complete = bl.covered(runs, ("python", "go"), "clients", clients_list)
    if complete:
        rows, mem = summarize(runs, ["python", "go"], clients_list)
        summary = {"rows": rows, "memory": mem}
        print_table(rows, mem, go_label, args.repeats)
    if complete and floor_clients and bl.covered(runs, ("floor",), "clients", floor_clients):
        summary["floor"] = summarize_floor(runs, floor_clients)
        print_floor_table(summary["floor"], go_label, args.repeats)
    return bl.finish("rpc_bench", args, go_label, runs, summary, failures)


if __name__ == "__main__":
    sys.exit(main())

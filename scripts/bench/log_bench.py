#!/usr/bin/env python3
"""Log ingest throughput: our cluster.LogServer against upstream's
virttest.vt_cluster.logger.LoggerServer, fed the same frames by logload.

For every repeat, connection count and server, a fresh server writes its
lines to a fresh file; logload sends for --seconds over K connections, then
reads the file until every record arrived (or nothing came for --stall
seconds) and checks each record was written exactly once. Records/s is
records written / time from the first send to the last line. Server CPU
per record is the server process's utime+stime (/proc/PID/stat) over the run
divided by the records it wrote; logload sends one write per record, as
agents send them, so it counts the per-record syscalls and wake-ups a real
agent causes.

Upstream's server is run from a venv with avocado-framework-plugin-vt
installed (--upstream-python); ours is --go-server, an argv prefix that gets
"--listen 127.0.0.1:PORT" and writes its lines to stdout.

Exits 1 if a run could not be made, or if OUR server lost or duplicated a
record. Upstream losing records is a finding, reported in the table.

    log_bench.py --logload bin/bench/logload --go-server "bin/vtcluster logs serve" \\
        --upstream-python scripts/bench/.venv/bin/python --conns 1,4,16 --json log.json
"""

import argparse
import os
import shlex
import sys
import tempfile

import benchlib as bl

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_SPEEDUP = 5.0
TARGET_CPU_RATIO = 5.0  # upstream's server CPU per record over ours


def one_run(args, name, conns, repeat, workdir):
    run_dir = tempfile.mkdtemp(prefix=f"{name}-k{conns}-r{repeat}-", dir=workdir)
    port = bl.free_port()
    out = os.path.join(run_dir, "lines.log")
    open(out, "w").close()
    env = None
    if name == "upstream":
        argv = [args.upstream_python, os.path.join(HERE, "pylogserver.py"),
                "--port", str(port), "--out", out]
        # virttest reads and creates its data dirs under $HOME.
        home = os.path.join(run_dir, "home")
        os.mkdir(home)
        env = dict(os.environ, HOME=home)
        stdout = None
    else:
        argv = shlex.split(args.go_server) + ["--listen", f"127.0.0.1:{port}"]
        stdout = out
    rec = {"server": name, "conns": conns, "repeat": repeat, "loadavg_before": bl.loadavg()}
    with bl.Server(argv, port, run_dir, env=env, stdout_path=stdout) as srv:
        cpu0 = bl.proc_cpu_seconds(srv.pid)
        res = bl.run_tool(
            [args.logload, "-addr", f"127.0.0.1:{port}", "-conns", str(conns),
             "-duration", f"{args.seconds}s", "-out", out, "-stall", f"{args.stall}s"],
            timeout=args.seconds + args.stall + 120,
        )
        rec["server_cpu_seconds"] = bl.proc_cpu_seconds(srv.pid) - cpu0
        rec["hwm_kb"] = bl.proc_status(srv.pid)["VmHWM"]
        rec["exit_code"] = srv.stop()
        rec["stderr_tail"] = srv.stderr_tail(300) if rec["exit_code"] else ""
    os.remove(out)  # hundreds of MB per run
    rec.update(res)
    rec["server_cpu_us_per_record"] = (
        rec["server_cpu_seconds"] / res["received"] * 1e6 if res["received"] else None
    )
    return rec


def stats(rs):
    return {
        **bl.medians(rs, "records_per_sec", "server_cpu_us_per_record"),
        "records_per_sec_range": bl.spread([r["records_per_sec"] for r in rs]),
        "sent": sum(r["sent"] for r in rs),
        "missing": sum(r["missing"] for r in rs),
        "duplicated": sum(r["duplicated"] for r in rs),
        "runs_with_loss": sum(1 for r in rs if not r["complete"]),
        "runs": len(rs),
        "hwm_kb": max(r["hwm_kb"] for r in rs),
    }


def summarize(runs, conns_list):
    rows = bl.rows_by_load(runs, ("upstream", "go"), "conns", conns_list, stats)
    for row in rows:
        row["speedup"] = row["go"]["records_per_sec"] / row["upstream"]["records_per_sec"]
        up_cpu, go_cpu = row["upstream"]["server_cpu_us_per_record"], row["go"]["server_cpu_us_per_record"]
        row["cpu_ratio"] = up_cpu / go_cpu if up_cpu and go_cpu else None
    return rows


def print_table(rows, go_label, repeats, frame_bytes):
    print(f"\nLog ingest: {frame_bytes}-byte frames, median of {repeats} runs (min..max); "
          f"go = {go_label}, upstream = virttest.vt_cluster.logger.LoggerServer 113.0")
    print(f"{'conns':>5} | {'upstream records/s':>24} | {'go records/s':>26} | {'go/upstream':>11} | "
          f"{'target':>6} | {'CPU us/rec up / go':>18} | {'up/go CPU':>9} | {'target':>6} | "
          f"{'upstream lost (runs)':>26} | {'go lost':>7}")
    for r in rows:
        up, go = r["upstream"], r["go"]
        ur, gr = up["records_per_sec_range"], go["records_per_sec_range"]
        ok = "met" if r["speedup"] >= TARGET_SPEEDUP and go["runs_with_loss"] == 0 else "MISSED"
        cpu_ok = "met" if r["cpu_ratio"] is not None and r["cpu_ratio"] >= TARGET_CPU_RATIO else "MISSED"
        cpu_ratio = f"{r['cpu_ratio']:>8.1f}x" if r["cpu_ratio"] is not None else f"{'n/a':>9}"
        lost = f"{up['missing']}/{up['sent']} ({up['runs_with_loss']}/{up['runs']})"
        print(f"{r['conns']:>5} | {up['records_per_sec']:>8.0f} ({ur[0]:>6.0f}..{ur[1]:>6.0f}) | "
              f"{go['records_per_sec']:>8.0f} ({gr[0]:>7.0f}..{gr[1]:>7.0f}) | {r['speedup']:>10.1f}x | "
              f"{ok:>6} | {up['server_cpu_us_per_record']:>8.1f} / {go['server_cpu_us_per_record']:>5.1f} | "
              f"{cpu_ratio} | {cpu_ok:>6} | {lost:>26} | {go['missing'] + go['duplicated']:>7}")


def progress(rec):
    note = "" if rec["complete"] else (
        f" LOST {rec['missing']} of {rec['sent']}, dup {rec['duplicated']}, "
        f"send errors {rec['send_errors']}: {rec.get('first_send_error', '')}")
    return f"{rec['records_per_sec']:9.0f} records/s load={rec['loadavg_before']:.1f}{note}"


def check(rec):
    """Our server losing or duplicating a record fails the run; upstream's
    losses are a finding, shown in the table."""
    if rec["server"] == "go" and not rec["complete"]:
        yield (f"lost {rec['missing']}, duplicated {rec['duplicated']}, "
               f"send errors {rec['send_errors']}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logload", required=True, help="the built logload program")
    p.add_argument("--go-server", required=True, help='argv prefix of our server, e.g. "bin/vtcluster logs serve"')
    p.add_argument("--upstream-python", required=True, help="python of a venv with avocado-framework-plugin-vt")
    p.add_argument("--conns", default="1,4,16")
    p.add_argument("--stall", type=float, default=3)
    args = bl.parse_args(p, argv)
    conns_list = bl.int_list(args.conns)
    go_label = args.go_label or args.go_server

    with bl.workdir(args.workdir, "vtc-logbench-") as workdir:
        runs, failures = bl.run_matrix(
            "log_bench", ["upstream", "go"], "conns", conns_list, args.repeats,
            lambda name, conns, repeat: one_run(args, name, conns, repeat, workdir),
            progress, check)

    summary = None
    if bl.covered(runs, ("upstream", "go"), "conns", conns_list):
        summary = summarize(runs, conns_list)
        frame = next((r["frame_bytes"] for r in runs if r.get("frame_bytes")), 0)
        print_table(summary, go_label, args.repeats, frame)
    return bl.finish("log_bench", args, go_label, runs, summary, failures)


if __name__ == "__main__":
    sys.exit(main())

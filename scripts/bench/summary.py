#!/usr/bin/env python3
"""The goals of `make bench-compare` in one table: each row's figure,
its baseline from the same run, the ratio and the goal, from the JSON the
benchmarks wrote (rpc.json, log.json, alloc.json, avocado.json) and the
load average samples taken while they ran (loadavg.txt). A benchmark that
did not run is shown as such. Prints; never fails a run.

    summary.py DIR
"""

import json
import os
import statistics
import sys


def load(d, name):
    try:
        with open(os.path.join(d, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    d = sys.argv[1]
    rows = []  # (measure, ours, baseline, ratio, goal, met)

    def add(measure, ours, base, ratio, goal, met):
        rows.append((measure, ours, base, ratio, goal, "met" if met else "**missed**"))

    av = load(d, "avocado.json")
    if av:
        s = av["summary"]
        n = av["runs"][0]["tests"] if av.get("runs") else "?"
        add(f"avocado run, {n} one-node one-step tests, job wall time per test vs {n} exec-tests of /bin/true",
            f"{s['multihost_per_test_ms']:.0f} ms", f"{s['exec_test_per_test_ms']:.0f} ms",
            f"{s['ratio']:.2f}x", "<= 0.3x", s["ratio"] <= 0.3 and s["all_passed"])
        add("one such test's time_elapsed", f"{s['multihost_time_elapsed_ms']:.0f} ms",
            f"exec-test {s['exec_test_time_elapsed_ms']:.0f} ms", "-", "<= 60 ms",
            s["multihost_time_elapsed_ms"] <= 60)
    else:
        rows.append(("avocado run per test", "not measured (needs root for the lab)", "", "", "<= 0.3x", ""))
    al = load(d, "alloc.json")
    for r in (al or {}).get("rows", []):
        add(f"partition create + release, 1,024 nodes vs 16 ({r['store']} store)", f"{r['ms_1024']:.1f} ms",
            f"{r['ms_16']:.1f} ms", f"{r['ratio']:.2f}x", "<= 2x", r["ratio"] <= 2)
    rpc = load(d, "rpc.json")
    summ = (rpc or {}).get("summary") or {}
    for fr in summ.get("floor") or []:
        if fr["clients"] == 1:
            add("agent, 1 client, p50 vs bare net/http (floor)", f"{fr['go']['p50_ms'] * 1000:.0f} us",
                f"{fr['floor']['p50_ms'] * 1000:.0f} us", f"{fr['p50_ratio']:.2f}x", "<= 1.2x", fr["p50_ratio"] <= 1.2)
        if fr["clients"] == 16:
            ratio = fr["go"]["calls_per_sec"] / fr["floor"]["calls_per_sec"]
            add("agent, 16 clients, calls/s vs the floor", f"{fr['go']['calls_per_sec']:.0f}/s",
                f"{fr['floor']['calls_per_sec']:.0f}/s", f"{ratio:.2f}x", ">= 0.85x", ratio >= 0.85)
    for r in summ.get("rows") or []:
        if r["clients"] == 16:
            ratio = r["go"]["rss_warm_kb"] / r["python"]["rss_warm_kb"]
            add("agent memory (VmRSS) under 16-client load vs upstream's Python agent",
                f"{r['go']['rss_warm_kb'] / 1024:.1f} MiB", f"{r['python']['rss_warm_kb'] / 1024:.1f} MiB",
                f"{ratio:.2f}", "<= 0.5", ratio <= 0.5)
    idle = [x["rss_idle_kb"] for x in (rpc or {}).get("runs", []) if x.get("server") == "go" and "rss_idle_kb" in x]
    if idle:
        mib = statistics.median(idle) / 1024
        add("agent idle VmRSS", f"{mib:.1f} MiB", "-", "-", "<= 12 MiB", mib <= 12)
    lg = load(d, "log.json")
    for r in ((lg or {}).get("summary") or []):
        if r["conns"] == 1 and r["cpu_ratio"]:
            lost = r["go"]["missing"] + r["go"]["duplicated"]
            add("logs serve, server CPU per record, 1 connection vs upstream's LoggerServer",
                f"{r['go']['server_cpu_us_per_record']:.1f} us", f"{r['upstream']['server_cpu_us_per_record']:.1f} us",
                f"{r['cpu_ratio']:.1f}x cheaper, {lost} lost", ">= 5x, 0 lost", r["cpu_ratio"] >= 5 and lost == 0)
    loads = []
    try:
        with open(os.path.join(d, "loadavg.txt"), encoding="ascii") as f:
            loads = [float(l.split()[0]) for l in f if l.strip()]
    except OSError:
        pass
    print("\nGoals (issue 18), every baseline measured in this run:")
    print("| measure | vtcluster | baseline | ratio | goal | |")
    print("|---|---:|---:|---:|:--|:--|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if loads:
        print(f"\nLoad average (1 min) while the benchmarks ran: min {min(loads):.1f}, "
              f"median {statistics.median(loads):.1f}, max {max(loads):.1f} ({len(loads)} samples)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Partition create + release on 16 and 1,024 registered nodes, on the
file store and on a real etcd, in one run (cluster/etcdstore's
BenchmarkPartitionCreateRelease): the 1,024/16 ratio of each store says
whether allocation grows with the lab. Exits 1 when the benchmark fails.

    alloc_bench.py --repeats 3 --iterations 30 --json alloc.json
"""

import argparse
import json
import re
import statistics
import subprocess
import sys

TARGET = 2.0
LINE = re.compile(r"^BenchmarkPartitionCreateRelease/store=(\w+)/nodes=(\d+)\S*\s+\d+\s+([\d.]+) ns/op")


def loadavg():
    """The 1-minute load average, which moves every absolute time here."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--go", default="go")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--json")
    args = p.parse_args()
    argv = [args.go, "test", "-run", "^$", "-bench", "PartitionCreateRelease",
            "-benchtime", f"{args.iterations}x", "-count", str(args.repeats), "./cluster/etcdstore"]
    load_before = loadavg()
    out = subprocess.run(argv, capture_output=True, text=True)
    load_after = loadavg()
    samples = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if m:
            samples.setdefault((m.group(1), int(m.group(2))), []).append(float(m.group(3)) / 1e6)
    rows = []
    print(f"\nPartition create + release, ms per pair, median of {args.repeats} runs of {args.iterations}"
          f" (1-minute load average {load_before:.1f} before, {load_after:.1f} after)")
    print(f"{'store':>5} | {'16 nodes':>9} | {'1,024 nodes':>11} | {'ratio':>6} | target <= {TARGET:g}x")
    for store in ("file", "etcd"):
        small, big = samples.get((store, 16)), samples.get((store, 1024))
        if not small or not big:
            print(f"{store:>5} | not measured (see the benchmark's output)")
            continue
        row = {"store": store, "ms_16": statistics.median(small), "ms_1024": statistics.median(big),
               "samples_16": small, "samples_1024": big}
        row["ratio"] = row["ms_1024"] / row["ms_16"]
        rows.append(row)
        ok = "met" if row["ratio"] <= TARGET else "**missed**"
        print(f"{store:>5} | {row['ms_16']:>9.1f} | {row['ms_1024']:>11.1f} | {row['ratio']:>5.2f}x | {ok}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "target": TARGET, "load_before": load_before, "load_after": load_after,
                       "output": out.stdout[-4000:]}, f, indent=1)
    if out.returncode != 0:
        print(out.stdout[-2000:] + out.stderr[-2000:], file=sys.stderr)
        print("alloc_bench: FAILED: the benchmark failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Claim this test's nodes on the nodes themselves, for the etcd test.

For each node of $VTCLUSTER_PARTITION_FILE, runs ``mkdir <dir>/<node>``
on the node through its agent (``vtcluster exec TAG``) where <dir> is
$E2E_CLAIM_DIR: mkdir fails if the directory exists, so a node given to
two tests at once fails the second one, whatever the controllers believe.
Holds the nodes for a moment, then removes the claims and appends a usage
record to $E2E_USAGE_LOG like record_usage.py.
"""
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # the bodies run from the source tree: leave no cache in it
from record_usage import append_usage, load_partition  # noqa: E402

HOLD_SECONDS = 1.0


def on_node(tag, *argv):
    result = subprocess.run(
        [os.environ.get("VTCLUSTER_BIN", "vtcluster"), "exec", tag, "--", *argv],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )
    return result.returncode, result.stdout + result.stderr


def main():
    claims, log = os.environ.get("E2E_CLAIM_DIR"), os.environ.get("E2E_USAGE_LOG")
    if not claims or not log:
        sys.exit("E2E_CLAIM_DIR and E2E_USAGE_LOG must be set")
    partition = load_partition()
    nodes = partition["nodes"]
    claimed = []
    try:
        for tag, node in nodes.items():
            path = os.path.join(claims, node["name"])
            code, out = on_node(tag, "mkdir", path)
            if code != 0:
                sys.exit(f"node {node['name']} (tag {tag}) is already claimed by another test: {out}")
            claimed.append((tag, path))
        start = time.clock_gettime(time.CLOCK_MONOTONIC)
        time.sleep(HOLD_SECONDS)
        end = time.clock_gettime(time.CLOCK_MONOTONIC)
    finally:
        for tag, path in claimed:
            on_node(tag, "rmdir", path)
    record = append_usage(log, partition, start, end)
    print("claimed", record["nodes"], "for", round(end - start, 3), "s")


if __name__ == "__main__":
    main()

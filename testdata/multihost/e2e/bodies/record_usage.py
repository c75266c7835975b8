#!/usr/bin/env python3
"""Record which nodes this test holds and when, for the parallel-jobs test.

Appends one JSON line to the file named by $E2E_USAGE_LOG: the test's output
directory, its partition, the node names from $VTCLUSTER_PARTITION_FILE and
CLOCK_MONOTONIC times taken after the nodes were handed over and before
giving them back. In between the body holds its nodes for a moment (so that
two tests wrongly given the same node would overlap in time) and calls each
node's agent at both ends (so that an agent stopped under a running test,
e.g. by another job's cleanup, fails the test).
"""
import json
import os
import socket
import sys
import time
import xmlrpc.client

HOLD_SECONDS = 1.0


def ping_agents(nodes):
    for tag, node in nodes.items():
        proxy = xmlrpc.client.ServerProxy(node["agent_url"], allow_none=True)
        try:
            answer = proxy.examples.hello.ping()
        except (OSError, xmlrpc.client.Error) as details:
            sys.exit(f"agent of node {node['name']} (tag {tag}) does not answer: {details}")
        if not answer.startswith("Pong from "):
            sys.exit(f"agent of node {node['name']} (tag {tag}) answered {answer!r}")


def load_partition():
    """This test's partition, as the runner hands it over."""
    with open(os.environ["VTCLUSTER_PARTITION_FILE"], encoding="utf-8") as f:
        return json.load(f)


def append_usage(log, partition, start, end):
    """Append this test's usage record (see above) to log and return it."""
    record = {
        "test": os.environ["VTCLUSTER_OUTPUT_DIR"],
        "partition": partition["id"],
        "nodes": sorted(n["name"] for n in partition["nodes"].values()),
        "start": start,
        "end": end,
    }
    # One short write in append mode: lines of concurrent bodies never interleave.
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return record


def main():
    log = os.environ.get("E2E_USAGE_LOG")
    if not log:
        sys.exit("E2E_USAGE_LOG is not set: the test must tell where to record node usage")
    socket.setdefaulttimeout(30)
    partition = load_partition()
    start = time.clock_gettime(time.CLOCK_MONOTONIC)
    ping_agents(partition["nodes"])
    time.sleep(HOLD_SECONDS)
    ping_agents(partition["nodes"])
    end = time.clock_gettime(time.CLOCK_MONOTONIC)
    record = append_usage(log, partition, start, end)
    print("held", record["nodes"], "for", round(end - start, 3), "s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Move 1 MiB from src to dst over TCP and check it arrived intact.

The runner describes the partition in $VTCLUSTER_PARTITION_FILE; each
node's agent_url works with Python's stock xmlrpc.client. The receiver runs
in the background on dst (process.start), the sender on src (process.run).
"""
import json
import os
import sys
import xmlrpc.client

RECEIVER = r"""
import hashlib, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201))
s.listen(1)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
print(n, h.hexdigest())
"""

SENDER = r"""
import hashlib, os, socket, sys, time
data = os.urandom(1 << 20)
for _ in range(100):
    try:
        c = socket.create_connection((sys.argv[1], 5201), timeout=5)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("receiver never listened")
c.sendall(data)
c.close()
print(len(data), hashlib.sha256(data).hexdigest())
"""


def proxy(node):
    return xmlrpc.client.ServerProxy(node["agent_url"], allow_none=True, use_builtin_types=True)


def main():
    with open(os.environ["VTCLUSTER_PARTITION_FILE"]) as f:
        part = json.load(f)
    src, dst = part["nodes"]["src"], part["nodes"]["dst"]
    print(f"sending from {src['name']} ({src['address']}) to {dst['name']} ({dst['address']})")
    rx = proxy(dst)
    pid = rx.process.start(["python3", "-c", RECEIVER], {"timeout": 60})
    sent = proxy(src).process.run(["python3", "-c", SENDER, dst["address"]], {"timeout": 60})
    got = rx.process.wait(pid, 60)
    if sent["exit_code"] != 0:
        sys.exit(f"sender failed: {sent['stderr'].decode(errors='replace')}")
    if got["exit_code"] != 0:
        sys.exit(f"receiver failed: {got['stderr'].decode(errors='replace')}")
    s, r = sent["stdout"].decode().split(), got["stdout"].decode().split()
    print(f"sent {s[0]} bytes sha256 {s[1]}")
    print(f"received {r[0]} bytes sha256 {r[1]}")
    if s != r:
        sys.exit("data differs")


if __name__ == "__main__":
    main()

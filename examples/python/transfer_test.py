"""A multi-host test written as a Python class: a TCP transfer between
two nodes, plus a failing and a cancelled test to show the statuses.

    avocado run examples/python/transfer_test.py
    avocado list examples/python/transfer_test.py    # multihost examples/python/transfer_test.py:Transfer.test_copy ...

Each test method gets its own partition (one idle node per tag of
``nodes``), its nodes' logs in its debug.log, and its nodes back when it
ends, whatever the outcome.
"""

import hashlib

from avocado_multihost import MultiHostTest

# Runs on dst: accept one connection, print the SHA-256 of what arrives.
SERVER = r"""
import hashlib, socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
srv.settimeout(60)
conn, _ = srv.accept()
digest = hashlib.sha256()
while True:
    data = conn.recv(65536)
    if not data:
        break
    digest.update(data)
print(digest.hexdigest(), flush=True)
"""

# Runs on src: connect (retrying while dst's server starts) and send.
CLIENT = r"""
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for attempt in range(100):
    try:
        conn = socket.create_connection((host, port), timeout=10)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect to %s:%d" % (host, port))
conn.sendall(bytes(i % 251 for i in range(size)))
conn.close()
"""


class Transfer(MultiHostTest):
    """Moves bytes from src to dst over TCP and checks they arrived intact.

    :avocado: tags=net,example
    """

    nodes = {"src": None, "dst": None}
    timeout = 120
    params = {"size": 1 << 20, "port": 5201}

    def setUp(self):
        self.src = self.get_node("src")
        self.dst = self.get_node("dst")
        self.log.info("src is %s (%s), dst is %s (%s)", self.src.name, self.src.address,
                      self.dst.name, self.dst.address)

    def test_copy(self):
        size, port = self.params["size"], self.params["port"]
        server = self.dst.proxy.process.start(["python3", "-c", SERVER, str(port)], {})
        try:
            sent = self.src.proxy.process.run(
                ["python3", "-c", CLIENT, self.dst.address, str(port), str(size)], {"timeout": 60})
            self.assertEqual(sent["exit_code"], 0, sent["stderr"])
            got = self.dst.proxy.process.wait(server, 60)
            self.assertFalse(got["running"], "the server on dst did not finish")
            expected = hashlib.sha256(bytes(i % 251 for i in range(size))).hexdigest()
            received = got["stdout"].decode().strip()
            self.log.info("sent %d bytes, dst received sha256 %s", size, received)
            if received != expected:
                self.fail(f"dst received sha256 {received}, expected {expected}")
            self.whiteboard = received
        finally:
            self.dst.proxy.process.kill(server)

    def test_wrong_checksum(self):
        """:avocado: tags=fails"""
        self.fail("the checksum did not match (a deliberate failure, to show FAIL)")

    def test_needs_ipv6(self):
        self.cancel("no IPv6 on this lab (a deliberate cancel, to show CANCEL)")

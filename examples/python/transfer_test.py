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

# Runs on dst: listen on a free port, print it, accept one connection,
# print the SHA-256 of what arrives.
SERVER = r"""
import hashlib, socket
srv = socket.create_server(("0.0.0.0", 0))
print(srv.getsockname()[1], flush=True)
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

# Runs on src: connect and send SIZE bytes.
CLIENT = r"""
import socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = socket.create_connection((host, port), timeout=10)
conn.sendall(bytes(i % 251 for i in range(size)))
conn.close()
"""


class Transfer(MultiHostTest):
    """Moves bytes from src to dst over TCP and checks they arrived intact.

    :avocado: tags=net,example
    """

    nodes = {"src": None, "dst": None}
    timeout = 120
    params = {"size": 1 << 20}

    def setUp(self):
        self.src = self.get_node("src")
        self.dst = self.get_node("dst")
        self.log.info("src is %s (%s), dst is %s (%s)", self.src.name, self.src.address,
                      self.dst.name, self.dst.address)

    def test_copy(self):
        """The two roles run at once; dst sends src the port it listens
        on, and src connects only after the "listening" barrier."""
        size = self.params["size"]
        results = self.run_roles(src=self._send, dst=self._receive)
        expected = hashlib.sha256(bytes(i % 251 for i in range(size))).hexdigest()
        self.log.info("sent %d bytes, dst received sha256 %s", size, results["dst"])
        if results["dst"] != expected:
            self.fail(f"dst received sha256 {results['dst']}, expected {expected}")
        self.whiteboard = results["dst"]

    def _receive(self, node):
        server = node.proxy.process.start(["python3", "-c", SERVER], {})
        try:
            out = b""
            while b"\n" not in out:
                state = node.proxy.process.wait(server, 5)
                out += state["stdout"]
                if not state["running"] and b"\n" not in out:
                    self.error(f"the server on dst ended early: {state['stderr']!r}")
            port = int(out.split(b"\n", 1)[0])
            self.send("port", port)
            self.sync("listening")
            while True:
                state = node.proxy.process.wait(server, 60)
                out += state["stdout"]
                if not state["running"]:
                    break
            self.assertEqual(state["exit_code"], 0, state["stderr"])
            return out.split(b"\n")[1].decode().strip()
        finally:
            node.proxy.process.kill(server)

    def _send(self, node):
        port = self.wait_for("port")
        self.sync("listening")
        sent = node.proxy.process.run(
            ["python3", "-c", CLIENT, self.dst.address, str(port), str(self.params["size"])],
            {"timeout": 60})
        self.assertEqual(sent["exit_code"], 0, sent["stderr"])

    def test_wrong_checksum(self):
        """:avocado: tags=fails"""
        self.fail("the checksum did not match (a deliberate failure, to show FAIL)")

    def test_needs_ipv6(self):
        self.cancel("no IPv6 on this lab (a deliberate cancel, to show CANCEL)")

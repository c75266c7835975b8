"""Multi-host test classes using the runner's synchronisation from Python,
for tests/python/test_sync.py: mutexes, a process on a node joining the
test's sync, and a role that ends without reaching a barrier."""

import threading
import time

from avocado_multihost import MultiHostTest
from avocado_multihost.test import SyncError


class SyncRoles(MultiHostTest):
    """:avocado: tags=sync"""

    nodes = {"a": None, "b": None}
    timeout = 60

    def test_lock_serialises(self):
        held = []
        lock = threading.Lock()
        overlaps = []

        def section(tag):
            self.lock("m")
            with lock:
                if held:
                    overlaps.append((held[-1], tag))
                held.append(tag)
            time.sleep(0.3)
            with lock:
                held.remove(tag)
            self.unlock("m")

        def a(node):
            self.sync("start")
            section("a")

        def b(node):
            self.sync("start")
            section("b")

        self.run_roles(a=a, b=b)
        self.assertEqual(overlaps, [])
        self.log.info("lock serialised both roles")

    def test_node_process_and_python_exchange_values(self):
        def a(node):
            res = node.proxy.process.run(
                ["sh", "-c", 'vtcluster sync send from-node "$(lava-self)" && test "$(vtcluster sync wait from-python)" = 42'],
                {"env": self.sync_env("a"), "timeout": 30})
            self.assertEqual(res["exit_code"], 0, res)

        def b(node):
            self.send("from-python", 42)
            return self.wait_for("from-node")

        got = self.run_roles(a=a, b=b)
        self.assertEqual(got["b"], self.get_node("a").name)
        self.log.info("node process sent %s", got["b"])

    def test_role_ending_before_the_barrier_fails_the_waiter(self):
        def a(node):
            return "done early"

        def b(node):
            try:
                self.sync("never-reached-by-a")
            except SyncError as exc:
                return str(exc)
            raise AssertionError("the barrier passed without a")

        got = self.run_roles(a=a, b=b)
        self.log.info("b's barrier: %s", got["b"])
        self.assertIn(f"tag 'a' (node {self.get_node('a').name}) finished without reaching it (its role returned)", got["b"])

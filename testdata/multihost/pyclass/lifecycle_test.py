"""Multi-host test classes that end every way a test can, for
tests/python/test_pyapi.py. Each tearDown leaves a marker in the test's
data directory, so the test can tell that it ran."""

import os
import time

from avocado_multihost import MultiHostTest
from avocado_multihost.vt_cluster.proxy import ServerProxyError


class Lifecycle(MultiHostTest):
    """:avocado: tags=lifecycle"""

    nodes = {"a": None}
    timeout = 60

    def setUp(self):
        if self._method_name == "test_setup_error":
            raise ValueError("no such device in setUp")

    def tearDown(self):
        with open(os.path.join(self.outputdir, "teardown-ran"), "w", encoding="utf-8") as f:
            f.write(self.name)

    def test_setup_error(self):
        pass  # never reached

    def test_remote_exception(self):
        # Uncaught: the remote traceback is in debug.log, the test is ERROR.
        self.get_node("a").proxy.core.start_log_redirection("", 1)

    def test_remote_exception_caught(self):
        try:
            self.get_node("a").proxy.core.start_log_redirection("", 1)
        except ServerProxyError as err:
            self.log.info("caught %s from the agent", err.exc_type)
            self.assertIn("Traceback", err.message)
        else:
            self.fail("no ServerProxyError")

    def test_assertion(self):
        self.assertEqual(1, 2)

    def test_skip(self):
        self.skip("nothing to do here")


class Slow(Lifecycle):
    """:avocado: tags=slow"""

    timeout = 3

    def test_sleeps(self):
        # A background process on the node, never stopped by the test: it
        # must not outlive the test.
        self.get_node("a").proxy.process.start(["sleep", "7933"], {})
        self.log.info("sleeping past the timeout")
        time.sleep(300)


class TwoRoles(MultiHostTest):
    """Synchronisation failures end every role promptly."""

    nodes = {"a": None, "b": None}
    timeout = 60

    def test_broken_role_releases_the_others(self):
        def a(node):
            raise ValueError(f"role a on {node.name} broke")

        def b(node):
            self.wait_for("never")  # would wait for the whole test timeout

        self.run_roles(a=a, b=b)

    def test_wait_for_times_out(self):
        # b is still there (waiting itself), so a's wait can only time out.
        self.run_roles(a=lambda node: self.wait_for("never", timeout=1),
                       b=lambda node: self.wait_for("also-never", timeout=50))

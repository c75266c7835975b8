"""``MultiHostTest``: a multi-host test written as a Python class.

It looks like ``avocado.Test`` where authors touch it -- ``setUp``,
``test*`` methods, ``tearDown``, ``self.log``, ``self.fail``/``cancel``/
``skip``, ``self.params``, ``self.workdir``/``self.outputdir``,
``self.whiteboard`` -- plus upstream's per-test design: ``self.nodes`` (the
partition's nodes) and ``self.get_node(tag)``. The class declares its
roles and timeout in class attributes, read without importing the file
(see discovery.py)::

    from avocado_multihost import MultiHostTest

    class Ping(MultiHostTest):
        ''':avocado: tags=net'''
        nodes = {"src": None, "dst": "[{'key': 'kvm', 'operator': '==', 'values': True}]"}
        timeout = 120

        def test_ping(self):
            dst = self.get_node("dst")
            res = self.get_node("src").proxy.process.run(["ping", "-c1", dst.address], {"timeout": 30})
            self.assertEqual(res["exit_code"], 0)

``avocado run FILE.py`` (or ``FILE.py:Ping.test_ping``) hands each method
to avocado-runner-multihost, which reserves the nodes, streams their logs
into the test's debug.log, runs the method in a Python child
(``python -m avocado_multihost.mhtest``), and releases everything after.
Only the standard library is used here.
"""

import json
import logging
import threading
import time
import unittest

from . import vm as _vm
from . import vt_cluster as _vt_cluster  # noqa: F401  (the API the test uses)
from .vt_cluster.node import Node


class TestFail(AssertionError):
    """The test failed: FAIL."""


class TestCancel(Exception):
    """The test cannot run here and is cancelled: CANCEL."""


class TestSkipError(Exception):
    """The test is skipped: SKIP."""


class TestError(Exception):
    """The test could not do its job: ERROR."""


class SyncError(TestError):
    """A barrier or wait_for could not complete: timeout, or another role failed."""


class _Sync:
    """Barriers and a key/value exchange among the roles of one test.

    The roles are the functions ``run_roles`` runs at once, one thread
    each, all in the test's Python process (which drives every node
    through its agent). Waits end at the test's deadline, and at once when
    another role has failed, so that a broken role never leaves the others
    hanging until the runner's timeout.
    """

    def __init__(self, deadline):
        self._deadline = deadline
        self._cond = threading.Condition()
        self._values = {}
        self._arrived = {}
        self._generation = {}
        self._parties = 1
        self._broken = None

    def _wait(self, done, what, timeout):
        end = self._deadline
        if timeout is not None:
            end = min(end, time.monotonic() + timeout) if end is not None else time.monotonic() + timeout
        while not done():
            if self._broken is not None:
                raise SyncError(f"{what}: given up, {self._broken}")
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise SyncError(f"{what}: timed out")
            self._cond.wait(timeout=left)

    def start(self, parties):
        with self._cond:
            self._parties, self._broken = parties, None
            self._arrived.clear()

    def abort(self, why):
        with self._cond:
            self._broken = why
            self._cond.notify_all()

    def barrier(self, name, timeout):
        with self._cond:
            gen = self._generation.get(name, 0)
            self._arrived[name] = self._arrived.get(name, 0) + 1
            if self._arrived[name] >= self._parties:
                self._arrived[name] = 0
                self._generation[name] = gen + 1
                self._cond.notify_all()
                return
            try:
                self._wait(lambda: self._generation.get(name, 0) != gen,
                           f"barrier {name!r} ({self._parties} roles)", timeout)
            except SyncError:
                # This role no longer waits: it must not count as arrived.
                if self._generation.get(name, 0) == gen:
                    self._arrived[name] -= 1
                raise

    def send(self, key, value):
        with self._cond:
            self._values[key] = value
            self._cond.notify_all()

    def wait_for(self, key, timeout):
        with self._cond:
            self._wait(lambda: key in self._values, f"waiting for {key!r}", timeout)
            return self._values[key]


class _Assertions(unittest.TestCase):
    """Borrowed for its assert* methods; never run as a unittest."""

    def runTest(self):  # pragma: no cover - required by TestCase
        pass


_ASSERT = _Assertions()


class MultiHostTest:
    """Base class of multi-host test classes.

    Class attributes read by the resolver (literals only):

    * ``nodes``: ``{tag: selectors}``, selectors being None (any node), a
      selector list, or its text (upstream's Python-literal syntax or JSON);
    * ``timeout``: seconds for the whole test, setUp and tearDown included;
    * ``params``: default values of ``self.params``;
    * ``resources`` and ``vms``: as a JSON spec's (docs/vms.md); the VMs
      are ``self.vms[name]`` (vm.py) and ``self.migrate(name)`` moves one.
    """

    nodes = None
    timeout = None
    params = None

    def __init__(self, method_name, partition, outputdir, workdir, log):
        self._method_name = method_name
        self._partition = partition
        self.outputdir = outputdir
        self.workdir = workdir
        self.log = log
        self.whiteboard = ""
        self.params = dict(type(self).params or {})
        timeout = type(self).timeout
        self._sync = _Sync(time.monotonic() + timeout if timeout else None)
        # Attributes shadowing class declarations keep the declaration
        # reachable for the runner while tests see live objects.
        self.nodes = self._load_nodes()
        self.vms = _vm.load(partition)
        self._migrations = []

    def _load_nodes(self):
        by_name = {}
        for record in _vt_cluster._nodes_json():  # pylint: disable=protected-access
            by_name[record["name"]] = record
        out = set()
        for tag, entry in (self._partition.get("nodes") or {}).items():
            record = by_name.get(entry.get("name"))
            if record is None:
                raise TestError(f"node {entry.get('name')!r} of tag {tag!r} is no longer registered")
            out.add(Node._from_state(record, tag=tag))  # pylint: disable=protected-access
        return out

    @property
    def name(self):
        return f"{type(self).__name__}.{self._method_name}"

    def get_node(self, tag):
        """The partition's node for ``tag``; TestError if the test has no such tag."""
        for node in self.nodes:
            if node.tag == tag:
                return node
        raise TestError(f"this test has no node tagged {tag!r} (tags: {', '.join(sorted(n.tag for n in self.nodes))})")

    def migrate(self, name, to=None, **options):
        """Live-migrate VM ``name`` to tag ``to`` (default: its migrate_to)
        and return QMP's figures; they are also put in the whiteboard
        (results.json) as ``{"migrations": [...]}``. Options: see
        ``VM.migrate``."""
        vm = self.vms.get(name)
        if vm is None:
            raise TestError(f"this test has no VM {name!r} (VMs: {', '.join(sorted(self.vms)) or 'none'})")
        try:
            res = vm.migrate(to, **options)
        except _vm.VMError as exc:
            raise TestFail(str(exc)) from None
        self.log.info("vm %s migrated %s -> %s: total %s ms, downtime %s ms, %s bytes", name,
                      res.get("from"), res.get("to"), res.get("total_time_ms"), res.get("downtime_ms"), res.get("transferred"))
        self._migrations.append(res)
        self.whiteboard = json.dumps({"migrations": self._migrations})
        return res

    # --- roles and synchronisation -----------------------------------------

    def run_roles(self, **roles):
        """Run ``tag=function`` pairs at once, one thread per role; each
        function gets the tag's node. Returns ``{tag: return value}``.

        Inside the roles, ``self.sync(name)`` is a barrier of all of them,
        ``self.send(key, value)``/``self.wait_for(key)`` pass values. If a
        role raises, the others' waits end at once and the first error (in
        argument order) is raised here once every role has returned.
        """
        if not roles:
            return {}
        nodes = {tag: self.get_node(tag) for tag in roles}
        results, errors = {}, {}
        self._sync.start(len(roles))

        def role(tag, fn):
            try:
                results[tag] = fn(nodes[tag])
            except BaseException as exc:  # pylint: disable=broad-except
                errors[tag] = exc
                self._sync.abort(f"role {tag} failed: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=role, args=(tag, fn), name=f"role-{tag}", daemon=True)
                   for tag, fn in roles.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._sync.start(1)
        for tag in roles:
            if tag in errors and not isinstance(errors[tag], SyncError):
                raise errors[tag]
        for tag in roles:
            if tag in errors:
                raise errors[tag]
        return results

    def sync(self, name, timeout=None):
        """Barrier: return once every role of ``run_roles`` called ``sync(name)``."""
        self.log.debug("%s: at barrier %r", threading.current_thread().name, name)
        self._sync.barrier(name, timeout)

    def send(self, key, value):
        """Make ``value`` available to ``wait_for(key)`` in every role."""
        self.log.debug("%s: sent %r = %r", threading.current_thread().name, key, value)
        self._sync.send(key, value)

    def wait_for(self, key, timeout=None):
        """The value sent under ``key``, waiting for it until the test's
        timeout (or ``timeout`` seconds); SyncError when it does not come."""
        return self._sync.wait_for(key, timeout)

    def setUp(self):
        """Runs before the test method."""

    def tearDown(self):
        """Runs after the test method, whatever happened in it."""

    # --- outcomes, as avocado.Test ------------------------------------------

    def fail(self, message=None):
        raise TestFail(message)

    def error(self, message=None):
        raise TestError(message)

    def cancel(self, message=None):
        raise TestCancel(message)

    def skip(self, message=None):
        raise TestSkipError(message)

    def __getattr__(self, name):
        # assertEqual, assertIn, assertRaises... from unittest, raising
        # AssertionError (a FAIL) as in avocado.Test.
        if name.startswith("assert"):
            return getattr(_ASSERT, name)
        raise AttributeError(f"{type(self).__name__!s} object has no attribute {name!r}")


def default_log():
    """The logger ``self.log`` writes to: ``avocado.test``, as in avocado.Test."""
    return logging.getLogger("avocado.test")


__all__ = ["MultiHostTest", "TestFail", "TestCancel", "TestSkipError", "TestError", "SyncError"]

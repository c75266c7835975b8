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
import os
import socket
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
    """The test's barriers, messages and mutexes, held by the runner
    (avocado-runner-multihost) for the test's whole life: the same service
    JSON steps and the test's processes on its nodes use (docs/sync.md).

    The runner gives this process a Unix socket and a token in its
    environment; each call is one JSON line each way. Inside ``run_roles``
    every role thread acts for its tag; the runner knows when a role has
    returned or failed, so a wait that needs it ends at once, naming it.
    Waits also end at the test's deadline.
    """

    #: bound of a reply line (values of every tag)
    _MAX_REPLY = 8 << 20

    def __init__(self, deadline, tags):
        self._deadline = deadline
        self._tags = list(tags)
        self._roles = None
        self._local = threading.local()
        self._socket = os.environ.get("VTCLUSTER_SYNC_SOCKET")
        self._token = os.environ.get("VTCLUSTER_SYNC_TOKEN")

    def tag(self):
        """The tag this thread acts for: its role, else the test's first tag."""
        return getattr(self._local, "tag", None) or (self._tags[0] if self._tags else "")

    def call(self, op, what, timeout=None, **fields):
        if not self._socket or not self._token:
            raise SyncError(f"{what}: this test was not started by avocado-runner-multihost "
                            "with synchronisation ($VTCLUSTER_SYNC_SOCKET is not set)")
        left = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.001)
        if timeout is not None:
            left = timeout if left is None else min(left, timeout)
        req = dict(fields, token=self._token, op=op, tag=fields.get("tag") or self.tag(), timeout=left or 0)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self._socket)
                conn.sendall(json.dumps(req).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk or len(buf) > self._MAX_REPLY:
                        raise SyncError(f"{what}: the runner closed the connection without an answer")
                    buf += chunk
        except OSError as exc:
            raise SyncError(f"{what}: cannot reach the test's runner: {exc}") from exc
        reply = json.loads(buf)
        if reply.get("error"):
            raise SyncError(reply["error"])
        return reply

    def start(self, roles):
        """``run_roles`` begins: its tags run, the others take no part."""
        self._roles = list(roles)
        for tag in self._tags:
            if tag in roles:
                self.call("state", "run_roles", tag=tag, value="running")
            else:
                self.call("state", "run_roles", tag=tag, value="finished", name="not one of run_roles' roles")

    def enter(self, tag):
        self._local.tag = tag

    def finish(self, tag, why):
        """A role returned or failed: it will not arrive anywhere any more."""
        self.call("state", "run_roles", tag=tag, value="finished", name=why)

    def stop(self):
        self._roles = None
        for tag in self._tags:
            self.call("state", "run_roles", tag=tag, value="running")

    def barrier(self, name, timeout):
        self.call("barrier", f"barrier {name!r}", timeout, name=name, tags=self._roles)

    def send(self, key, value):
        text = value if isinstance(value, str) else json.dumps(value)
        self.call("send", f"send {key!r}", name=key, value=text)

    def wait_for(self, key, timeout):
        # A role waits for the others: its own thread cannot send meanwhile.
        reply = self.call("wait", f"waiting for {key!r}", timeout, name=key, others=self._roles is not None)
        (value,) = reply["values"].values()
        return _decode_value(value)

    def lock(self, name, timeout):
        self.call("lock", f"mutex {name!r}", timeout, name=name)

    def unlock(self, name):
        self.call("unlock", f"mutex {name!r}", name=name)


def _decode_value(text):
    """What ``send`` sent: strings as they are, other values as JSON."""
    if text[:1] in "-0123456789[{" or text in ("true", "false", "null"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


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
        # Attributes shadowing class declarations keep the declaration
        # reachable for the runner while tests see live objects.
        self.nodes = self._load_nodes()
        self._sync = _Sync(time.monotonic() + timeout if timeout else None, list((partition.get("nodes") or {})))
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
        ``self.send(key, value)``/``self.wait_for(key)`` pass values and
        ``self.lock(name)``/``self.unlock(name)`` guard a section. A role
        that returns or raises no longer counts as coming: waits that need
        it end at once, naming it. The first error (in argument order, root
        causes before the SyncErrors they caused) is raised here once every
        role has returned.
        """
        if not roles:
            return {}
        nodes = {tag: self.get_node(tag) for tag in roles}
        results, errors = {}, {}
        self._sync.start(list(roles))

        def role(tag, fn):
            self._sync.enter(tag)
            why = "its role returned"
            try:
                results[tag] = fn(nodes[tag])
            except BaseException as exc:  # pylint: disable=broad-except
                errors[tag] = exc
                why = f"its role failed: {type(exc).__name__}: {exc}"
            finally:
                try:
                    self._sync.finish(tag, why)
                except (OSError, SyncError) as exc:
                    errors.setdefault(tag, exc)

        threads = [threading.Thread(target=role, args=(tag, fn), name=f"role-{tag}", daemon=True)
                   for tag, fn in roles.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self._sync.stop()
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
        """Make ``value`` available to ``wait_for(key)`` in every role, and to
        the test's processes on its nodes (``vtcluster sync wait KEY``);
        values other than strings travel as JSON."""
        self.log.debug("%s: sent %r = %r", threading.current_thread().name, key, value)
        self._sync.send(key, value)

    def wait_for(self, key, timeout=None):
        """The value sent under ``key``, waiting for it until the test's
        timeout (or ``timeout`` seconds); SyncError when it does not come."""
        return self._sync.wait_for(key, timeout)

    def lock(self, name, timeout=None):
        """Take mutex ``name`` for this role, waiting while another holds it."""
        self._sync.lock(name, timeout)

    def unlock(self, name):
        """Free mutex ``name``, which this role holds."""
        self._sync.unlock(name)

    def sync_env(self, tag):
        """The environment that lets a process started on ``tag``'s node
        (``proxy.process.run(argv, {"env": ...})``) use ``vtcluster sync``
        and the lava-*/rhts-* commands as one of this test's processes."""
        return dict(self._sync.call("env", f"sync_env({tag!r})", tag=tag)["values"])

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

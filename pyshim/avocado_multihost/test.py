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

import logging
import unittest

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
    * ``params``: default values of ``self.params``.
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
        # Attributes shadowing class declarations keep the declaration
        # reachable for the runner while tests see live objects.
        self.nodes = self._load_nodes()

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


__all__ = ["MultiHostTest", "TestFail", "TestCancel", "TestSkipError", "TestError"]

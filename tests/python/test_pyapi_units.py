"""The parts of the Python API that need no lab: static discovery of test
classes, the proxy's value encoding, the status mapping of the test child,
and role synchronisation."""

import datetime
import json
import math
import os
import subprocess
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path

import pytest

PYSHIM = Path(__file__).resolve().parents[2] / "pyshim"
sys.path.insert(0, str(PYSHIM))

from avocado_multihost import discovery  # noqa: E402
from avocado_multihost import mhtest  # noqa: E402
from avocado_multihost import test as mt  # noqa: E402
from avocado_multihost.vt_cluster import proxy  # noqa: E402

SOURCE = '''
import avocado_multihost
from avocado_multihost import MultiHostTest

class Base(avocado_multihost.MultiHostTest):
    """:avocado: tags=net,arch:x86_64"""
    nodes = {"src": None, "dst": [{"key": "kvm", "operator": "==", "values": True}]}
    timeout = 30

    def test_inherited(self):
        pass

class Child(Base):
    """:avocado: tags=arch:aarch64"""
    timeout = 5

    def test_own(self):
        """:avocado: tags=slow"""

    def helper(self):
        pass

class NotATest:
    def test_x(self):
        pass

class NoMethods(MultiHostTest):
    nodes = {"a": None}
'''


def test_discovery_reads_classes_without_importing():
    tests = {t["name"]: t for t in discovery.discover("f.py", SOURCE)}
    assert list(tests) == ["Base.test_inherited", "Child.test_inherited", "Child.test_own"]
    base = tests["Base.test_inherited"]
    assert base["nodes"][0] == ["src", ""]
    assert json.loads(base["nodes"][1][1]) == [{"key": "kvm", "operator": "==", "values": True}]
    assert base["timeout"] == 30 and base["tags"] == {"net": None, "arch": ["x86_64"]}
    own = tests["Child.test_own"]
    assert own["timeout"] == 5
    assert own["tags"] == {"net": None, "arch": ["aarch64", "x86_64"], "slow": None}


def test_discovery_reads_vms_and_tests_see_them():
    source = (
        "from avocado_multihost import MultiHostTest\n"
        "class T(MultiHostTest):\n    nodes = {'a': None, 'b': None}\n"
        "    vms = [{'name': 'vm1', 'on': 'a', 'migrate_to': 'b', 'kernel': '/k'}]\n"
        "    def test_a(self):\n        pass\n"
    )
    (test,) = discovery.discover("v.py", source)
    assert test["vms"] == [{"name": "vm1", "on": "a", "migrate_to": "b", "kernel": "/k"}]
    from avocado_multihost import vm as vmmod
    vms = vmmod.load({"vms": {"vm1": {"on": "a", "migrate_to": "b", "specs": {}}}})
    assert vms["vm1"].tag == "a" and vms["vm1"].migrate_to == "b"
    with pytest.raises(vmmod.VMError, match="needs a destination"):
        vmmod.VM("vm2", "a").migrate()


def test_discovery_follows_import_aliases():
    source = (
        "from avocado_multihost import MultiHostTest as MHT\n"
        "class T(MHT):\n    nodes = {'a': None}\n    def test_a(self):\n        pass\n"
    )
    assert [t["name"] for t in discovery.discover("a.py", source)] == ["T.test_a"]


@pytest.mark.parametrize("body, message", [
    ("nodes = make_nodes()", "Bad.nodes must be a literal"),
    ("nodes = {}", "Bad.nodes must be a non-empty dict"),
    ("nodes = {'a': 3}", "Bad.nodes['a'] must be None, a selector list or its text"),
    ("nodes = {'a': None}\n    timeout = -1", "Bad.timeout must be a positive number"),
    ("pass", "Bad has test methods but no nodes"),
    ("nodes = {'a': None}\n    vms = {'vm1': {}}", "Bad.vms must be a list of dicts"),
])
def test_discovery_rejects_bad_declarations(body, message):
    source = f"class Bad(MultiHostTest):\n    {body}\n    def test_a(self):\n        pass\n"
    with pytest.raises(discovery.DiscoveryError, match=message.replace("[", r"\[").replace("(", r"\(")):
        discovery.discover("bad.py", source)


def test_proxy_values_round_trip():
    when = datetime.datetime(2026, 12, 1, 23, 0, 5)
    value = [None, True, 3, 2.5, "s", b"\x00\xff", {"k": [when, math.inf]}, (1, 2)]
    encoded = json.loads(json.dumps(proxy._encode(value)))  # pylint: disable=protected-access
    assert encoded[5] == {"__base64__": "AP8="}
    assert encoded[6]["k"] == [{"__datetime__": "2026-12-01T23:00:05"}, {"__float__": "inf"}]
    decoded = proxy._decode(encoded)  # pylint: disable=protected-access
    assert decoded == [None, True, 3, 2.5, "s", b"\x00\xff", {"k": [when, math.inf]}, [1, 2]]
    assert proxy._encode(xmlrpc.client.Binary(b"x")) == {"__base64__": "eA=="}  # pylint: disable=protected-access
    with pytest.raises(TypeError, match=r"\$\.k: cannot marshal"):
        proxy._encode({"k": object()})  # pylint: disable=protected-access
    with pytest.raises(TypeError, match="dictionary key must be string"):
        proxy._encode({1: 2})  # pylint: disable=protected-access


def test_server_proxy_error_reads_like_upstreams():
    err = proxy.ServerProxyError(1, "Traceback ...\nValueError: x\n", "ValueError", "x")
    assert str(err) == "\nTraceback ...\nValueError: x\n"
    assert err.args == ("ServerProxyError (Code: 1): Traceback ...\nValueError: x\n",)
    assert (err.code, err.exc_type, err.exc_value) == (1, "ValueError", "x")


def test_statuses():
    class TestSkip(Exception):  # Avocado's names are recognised without Avocado
        pass

    assert mhtest.classify(mt.TestFail("x")) == "FAIL"
    assert mhtest.classify(AssertionError("x")) == "FAIL"
    assert mhtest.classify(mt.TestCancel("x")) == "CANCEL"
    assert mhtest.classify(TestSkip("x")) == "SKIP"
    assert mhtest.classify(KeyError("x")) == "ERROR"
    assert mhtest._reason("setUp", ValueError("bad")) == "setUp: ValueError: bad"  # pylint: disable=protected-access


def test_sync_values_travel_as_text_or_json(monkeypatch):
    """send/wait_for go through the runner (tests/python/test_sync.py runs
    them there); what stays in Python is how values are written."""
    decode = mt._decode_value  # pylint: disable=protected-access
    assert decode("5201") == 5201
    assert decode('{"a": [1, true]}') == {"a": [1, True]}
    assert decode("null") is None
    assert decode("plain text") == "plain text"
    assert decode("-not-a-number") == "-not-a-number"
    monkeypatch.delenv("VTCLUSTER_SYNC_SOCKET", raising=False)
    sync = mt._Sync(None, ["a"])  # pylint: disable=protected-access
    with pytest.raises(mt.SyncError, match="not started by avocado-runner-multihost"):
        sync.barrier("x", None)


def test_logger_server_lines_with_or_without_the_controller_half():
    from avocado_multihost.vt_cluster import logger  # pylint: disable=import-outside-toplevel

    worker = "node1(10.0.0.2) 2026-12-01 23:23:36,587 avocado.service.process WARNING | a | b"
    full = "2026-12-01 23:23:36,588 logserver L0436 INFO | " + worker
    for line in (worker, full):
        stripped = logger._CONTROLLER_PREFIX_RE.sub("", line, count=1)  # pylint: disable=protected-access
        assert stripped == worker
        assert logger._LEVEL_RE.match(stripped).group(1) == "WARNING"  # pylint: disable=protected-access


def test_resmgr_node_names_are_partition_tags_inside_a_test(tmp_path, monkeypatch):
    """Inside a test body vt_resmgr takes and gives tags, as upstream; the
    CLI gets registered names."""
    from avocado_multihost import vt_resmgr  # pylint: disable=import-outside-toplevel

    monkeypatch.delenv("VTCLUSTER_PARTITION_FILE", raising=False)
    assert vt_resmgr._nodes(["node1"]) == ["--node=node1"]  # pylint: disable=protected-access
    partition = tmp_path / "partition.json"
    partition.write_text(json.dumps({"nodes": {"src": {"name": "host-a"}, "dst": {"name": "host-b"}}}))
    monkeypatch.setenv("VTCLUSTER_PARTITION_FILE", str(partition))
    assert vt_resmgr._nodes(["dst", "src"]) == ["--node=host-b", "--node=host-a"]  # pylint: disable=protected-access
    arguments = {"node": "src", "size": "1M"}
    assert vt_resmgr._node(arguments) == ["--node=host-a"]  # pylint: disable=protected-access
    assert arguments == {"size": "1M"}
    with pytest.raises(ValueError, match="Wrong node name host-a"):
        vt_resmgr._nodes(["host-a"])  # pylint: disable=protected-access


def test_test_child_forces_fork_start_method():
    """The test child makes multiprocessing fork even where the default is
    another method (Python 3.14: forkserver); spawn stands in for it here."""
    code = ("import multiprocessing, sys\n"
            "multiprocessing.set_start_method('spawn')\n"
            "from avocado_multihost import mhtest\n"
            "assert mhtest.main([]) == 2\n"
            "print(multiprocessing.get_start_method())\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, env=dict(os.environ, PYTHONPATH=str(PYSHIM)))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "fork"

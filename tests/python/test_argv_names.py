"""Audit 3 I1: every argv the shim builds from a name ends the options
before the name ("--", or the name joined to its flag as --flag=NAME), so a
name that starts with "-" is a name to the real vtcluster, never a flag."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pyshim"))

from avocado_multihost import vt_resmgr  # noqa: E402
from avocado_multihost.vt_cluster import _binary  # noqa: E402
from avocado_multihost.vt_cluster import node as vt_node  # noqa: E402

EVIL = "--state-dir=/nonexistent-i1"


@pytest.fixture
def recorded(tmp_path, monkeypatch, vtcluster_bin):
    """VTCLUSTER_BIN is a wrapper that records each argv, then runs the real
    binary on an empty state dir; returns a function giving the argvs."""
    log = tmp_path / "argv.jsonl"
    wrapper = tmp_path / "vtcluster"
    wrapper.write_text(
        "#!/usr/bin/python3\n"
        "import json, os, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"os.execv({str(vtcluster_bin)!r}, [{str(vtcluster_bin)!r}] + sys.argv[1:])\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("VTCLUSTER_BIN", str(wrapper))
    monkeypatch.setenv("VTCLUSTER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("VTCLUSTER_PARTITION_FILE", raising=False)

    def argvs():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
    return argvs


def _assert_names_after_options(argv, name):
    """name appears only after "--" or as the value of --flag=NAME."""
    end = argv.index("--") if "--" in argv else len(argv)
    for i, a in enumerate(argv[:end]):
        assert a != name and not a.endswith(" " + name), f"{name!r} before '--' in {argv}"
        if name in a:
            assert a.startswith("--") and a.endswith("=" + name), f"{name!r} as a flag in {argv}"


def test_resmgr_names_never_parsed_as_flags(recorded):
    rm = vt_resmgr.resmgr
    calls = [
        lambda: rm.create_pool_from_params(EVIL, {"type": "filesystem"}),
        lambda: rm.destroy_pool(EVIL), lambda: rm.attach_pool(EVIL), lambda: rm.detach_pool(EVIL),
        lambda: rm.get_pool_info(EVIL), lambda: rm.get_pool_info(EVIL, "meta.name"),
        lambda: rm.create_resource_from_params(EVIL, EVIL, {}),
        lambda: rm.create_resource_from_source(EVIL, EVIL),
        lambda: rm.destroy_resource(EVIL), lambda: rm.bind_resource(EVIL, [EVIL]),
        lambda: rm.unbind_resource(EVIL, [EVIL]), lambda: rm.get_resource_binding_nodes(EVIL),
        lambda: rm.get_resource_info(EVIL, "meta"), lambda: rm.clone_resource(EVIL, {"node": EVIL}),
        lambda: rm.update_resource(EVIL, EVIL, {"node": EVIL}),
    ]
    for call in calls:
        with pytest.raises(vt_resmgr.ResourceManagerError):
            call()
    # A type of that name is taken as a type, and refused as an unknown one
    # (not as a flag, and not as "no pool matches").
    with pytest.raises(vt_resmgr.ResourceManagerError, match="unknown resource type"):
        rm.select_pool(EVIL, {})
    argvs = recorded()
    assert len(argvs) == len(calls) + 1
    for argv in argvs:
        _assert_names_after_options(argv, EVIL)
    # The real binary took each name as a name: it never used the state
    # dir the "name" asked for.
    assert not os.path.exists("/nonexistent-i1")


def test_node_commands_put_names_after_options(recorded):
    n = vt_node.Node({"address": "127.0.0.1"}, "n1")
    n._name = EVIL  # pylint: disable=protected-access
    n.cleanup_agent_env()
    assert n.copy_files_from("/tmp/x", "/tmp/y") is False
    with pytest.raises(vt_node.NodeError):
        n.copy_files_to("/tmp/x", "/tmp/y")
    args = n._add_args(EVIL)  # pylint: disable=protected-access
    assert args[-2:] == ["--", EVIL] and all(a.startswith("--") for a in args[2:-2])
    argvs = recorded()
    assert len(argvs) == 3
    for argv in argvs:
        assert "--" in argv, argv
        end = argv.index("--")
        assert not any(EVIL in a for a in argv[:end]), argv


def test_cli_refuses_a_node_named_like_a_flag(recorded, vtcluster_bin):
    code, _, err = _binary.run(["node", "add", "--address=127.0.0.1", "--", "-x"])
    assert code != 0 and "not start with '-'" in err, err

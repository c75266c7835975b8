"""avocado-vt's own resource-manager classes (virttest.vt_resmgr, from
avocado-framework-plugin-vt==113.0) driving our agent's ``resource``
service through a filesystem-pool lifecycle: upstream's pool and volume
objects, upstream's proxy, our agent.

Skipped when virttest cannot be imported (the plain test venv); the venv
built by ``scripts/venv.sh --vt`` has it.
"""

import os

import pytest
from conftest import import_virttest

from test_agent import Agent

vt_proxy, dir_pool = import_virttest("virttest.vt_cluster.proxy", "virttest.vt_resmgr.resources.storage.dir.dir_pool")
DirPool = dir_pool.DirPool


class Node:
    """What upstream's pool and resource classes use of a cluster Node."""

    def __init__(self, name, url):
        self.name = name
        self.tag = name
        self.proxy = vt_proxy.get_server_proxy(url)


@pytest.fixture
def agent(vtcluster_bin, tmp_path):
    a = Agent(vtcluster_bin, tmp_path)
    yield a
    a.stop()


def test_upstream_dir_pool_lifecycle_on_our_agent(agent):
    node = Node("node1", agent.url)  # with the token: our agent serves no one without it
    assert node.proxy.resource.start_resource_backing_service() is None

    config = DirPool.define_default_config(["node1"])
    pool = DirPool(config)
    pool.attach_to(node)
    root = pool.spec["path"]
    assert root == os.path.join(str(agent.data_dir), "root_dir") and os.path.isdir(root)

    volume_cls = pool.get_resource_class("volume")
    res_config = volume_cls.define_config(
        "vol1", {"image_size": "20G", "image_format": "raw", "image_name": "vol1"})
    res_config["meta"]["uuid"] = "4a1f0c2e9b8d4e6f8a7b6c5d4e3f2a10"
    res_config["meta"]["pool"] = pool.uuid
    rid = pool.create_resource_object(res_config)
    pool.bind_resource_object(rid, [node])
    path = os.path.join(root, "vol1.raw")
    assert pool.get_resource_info(rid, "spec.uri") == {"uri": {"node1": path}}

    # 20 GiB: upstream's own agent cannot even reply to this (int32).
    pool.update_resource(rid, "allocate", None)
    pool.update_resource(rid, "sync", None)
    info = pool.get_resource_info(rid)
    assert info["meta"]["allocated"] is True
    assert info["spec"]["allocation"] == 20 * 1024**3
    st = os.stat(path)
    assert st.st_size == 20 * 1024**3 and st.st_blocks * 512 < 1024**2  # sparse

    # resize raises KeyError('out') against upstream's agent.
    pool.update_resource(rid, "resize", {"size": "21G"})
    assert os.stat(path).st_size == 21 * 1024**3

    clone_id = pool.clone_resource(rid, None)
    clone = pool.get_resource_info(clone_id)
    assert clone["meta"]["allocated"] is True
    clone_path = os.path.join(root, clone["spec"]["filename"])
    assert os.stat(clone_path).st_size == 21 * 1024**3

    with pytest.raises(Exception, match="Cannot destroy an allocated resource object"):
        pool.destroy_resource_object(rid)
    for r in (rid, clone_id):
        pool.update_resource(r, "release", None)
        with pytest.raises(Exception, match="Cannot destroy a bound resource object"):
            pool.destroy_resource_object(r)
        pool.unbind_resource_object(r)
        pool.destroy_resource_object(r)
    assert not os.path.exists(path) and not os.path.exists(clone_path)

    # Shell metacharacters in a size are refused, not run.
    bad = volume_cls.define_config("bad", {"image_size": "1M", "image_name": "bad"})
    bad["meta"]["uuid"] = "4a1f0c2e9b8d4e6f8a7b6c5d4e3f2a11"
    bad["meta"]["pool"] = pool.uuid
    bid = pool.create_resource_object(bad)
    pool.bind_resource_object(bid, [node])
    backing = pool.resources[bid].binding_backings[0]
    code, out = node.proxy.resource.update_resource_by_backing(
        backing, "allocate", {"size": "1M; touch /tmp/vtcluster-pwned #"})
    assert code == 1 and "size" in out["out"]
    assert not os.path.exists("/tmp/vtcluster-pwned")
    pool.unbind_resource_object(bid)

    pool.detach_from(node)
    assert not os.path.exists(root)
    assert node.proxy.resource.stop_resource_backing_service() is None

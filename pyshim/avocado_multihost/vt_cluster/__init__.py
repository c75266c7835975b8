"""avocado-vt's ``virttest.vt_cluster`` API, backed by vtcluster.

``from avocado_multihost.vt_cluster import cluster, node_properties`` gives
the names upstream's documentation uses. Unlike upstream, this module
keeps no copy of the cluster: nodes and partitions live in vtcluster's
state (``vtcluster node ...``, ``vtcluster partition ...``), shared by
every process on this host, and every call here asks the binary. So a
partition made here is a real reservation: no other test, in any
process, gets its nodes until it is removed or this process ends (a
daemon thread renews its lease every 5 minutes while the process lives).

Differences from upstream, on purpose:

* ``register_node`` writes the node to vtcluster's state (no pickle, no
  password: nodes log in with SSH keys, ``key_file``/``known_hosts``).
* ``Node`` objects are views: ``get_node``/``get_all_nodes`` return fresh
  objects each time, equal (``==``) to earlier ones for the same node.
* ``partition.nodes`` is a fresh set read from the state; adding to that
  set changes nothing, use ``add_node``.
* ``cluster.partitions`` lists the partitions of this process.
"""

import json
import logging
import os
import threading
import time
import uuid as _uuid


class ClusterError(Exception):
    """Base of every error of this API."""


LOG = logging.getLogger("avocado." + __name__)

from . import _binary  # noqa: E402  (ClusterError must exist first)
from .node import Node  # noqa: E402


def _nodes_json():
    return _binary.check_json(["node", "list", "--json"])


def _partitions_json():
    return _binary.check_json(["partition", "list", "--json"])


def _own(partition_json):
    owner = partition_json.get("owner") or {}
    return owner.get("pid") == os.getpid() and owner.get("host") == os.uname().nodename


def _tags_by_node(partitions):
    """Node name -> tag, from this process's partitions, then the test's."""
    tags = {}
    for p in partitions:
        if _own(p):
            for a in p.get("nodes") or []:
                tags[a["node"]] = a["tag"]
    return tags


class _Partition:
    """A set of nodes reserved for this process, under vtcluster's lock.

    It exists in vtcluster's state from its first ``add_node`` on (the
    state has no empty partitions) until ``cluster.remove_partition`` or
    until its last node is removed.
    """

    def __init__(self, partition_id=None):
        self._uuid = partition_id or _uuid.uuid4().hex

    @property
    def uuid(self):
        return self._uuid

    def __eq__(self, other):
        return isinstance(other, _Partition) and other._uuid == self._uuid

    def __hash__(self):
        return hash(self._uuid)

    def __repr__(self):
        return f"<Partition {self._uuid}>"

    def _record(self):
        for p in _partitions_json():
            if p.get("id") == self._uuid:
                return p
        return None

    def add_node(self, node):
        """Reserve ``node`` (a registered Node) in this partition.

        Its tag in the partition is ``node.tag``, or its name when the
        node has no tag. A node held by another partition is refused
        with ClusterError.
        """
        tag = node.tag or node.name
        try:
            _binary.check_json(
                ["partition", "add", "--json", f"--owner-pid={os.getpid()}", "--", self._uuid,
                 f"{tag}={node.name}"]
            )
        except _binary.CommandError as exc:
            raise ClusterError(f"Failed to add node {node.name} to partition {self._uuid}: {exc}") from exc
        _forget_empty(self)
        _start_renewer()

    def del_node(self, node):
        """Take ``node`` out of this partition; ValueError if it is not in it."""
        if node not in self.nodes:
            raise ValueError(f"Node {node.name} is not in this partition")
        try:
            _binary.check(["partition", "remove-node", "--", self._uuid, node.name])
        except _binary.CommandError as exc:
            raise ClusterError(f"Failed to remove node {node.name} from partition {self._uuid}: {exc}") from exc

    @property
    def nodes(self):
        """The partition's nodes, each with its tag, as a new set."""
        record = self._record()
        if record is None:
            return set()
        by_name = {n["name"]: n for n in _nodes_json()}
        out = set()
        for a in record.get("nodes") or []:
            n = by_name.get(a["node"])
            if n is not None:
                out.add(Node._from_state(n, tag=a["tag"]))
        return out


#: Partitions created by this process that hold no node yet, so are in no
#: state; kept so that ``cluster.partitions`` lists them, as upstream does.
_EMPTY = []


#: How often this process renews the leases of its partitions; well
#: inside vtcluster's default lease (15 minutes), so that a partition is
#: held as long as its process lives, as upstream's are.
RENEW_SECONDS = 300

_RENEWER = []


def _renew_forever():
    while True:
        time.sleep(RENEW_SECONDS)
        try:
            for p in _partitions_json():
                if _own(p):
                    _binary.run(["partition", "renew", "--", p["id"]], timeout=60)
        except Exception as exc:  # pylint: disable=broad-except
            LOG.warning("Renewing this process's partitions failed: %s", exc)


def _start_renewer():
    if not _RENEWER or _RENEWER[1] != os.getpid():
        t = threading.Thread(target=_renew_forever, name="vtcluster-partition-renew", daemon=True)
        t.start()
        _RENEWER[:] = [t, os.getpid()]


def _forget_empty(partition):
    if partition in _EMPTY:
        _EMPTY.remove(partition)


class _Cluster:
    """The cluster of vtcluster's state (the one ``vtcluster status`` shows)."""

    @property
    def idle_nodes(self):
        """Registered nodes in no live partition, in registration order."""
        busy = set()
        for p in _partitions_json():
            if p.get("lease_seconds_left", 0) > 0:
                busy.update(a["node"] for a in p.get("nodes") or [])
        return [Node._from_state(n) for n in _nodes_json() if n["name"] not in busy]

    @property
    def partitions(self):
        """This process's partitions."""
        live = [_Partition(p["id"]) for p in _partitions_json() if _own(p)]
        return live + [p for p in _EMPTY if p not in live]

    @property
    def metadata_file(self):
        """Upstream kept node properties in a file; here they are in the state."""
        return None

    def register_node(self, name, node):
        """Record ``node`` under ``name``, replacing a node of that name."""
        node._register(name, replace=True)

    def unregister_node(self, name):
        """Forget the node ``name``, taking it out of any partition."""
        code, _, err = _binary.run(["node", "remove", "--force", "--", name])
        if code != 0:
            LOG.warning("Failed to unregister node %s: %s", name, err.strip())

    def get_node(self, name):
        """The registered node ``name``, or None."""
        for n in _nodes_json():
            if n["name"] == name:
                return Node._from_state(n, tag=_tags_by_node(_partitions_json()).get(name))
        return None

    def get_node_by_tag(self, tag):
        """The node this process's partitions (or this test's) hold under ``tag``, or None."""
        partitions = _partitions_json()
        mine = [p for p in partitions if _own(p)]
        name = None
        for p in mine:
            for a in p.get("nodes") or []:
                if a["tag"] == tag:
                    name = a["node"]
        if name is None:
            name = _test_partition_tags().get(tag)
        if name is None:
            return None
        for n in _nodes_json():
            if n["name"] == name:
                return Node._from_state(n, tag=tag)
        return None

    def get_all_nodes(self):
        """Every registered node, in registration order."""
        tags = _tags_by_node(_partitions_json())
        return [Node._from_state(n, tag=tags.get(n["name"])) for n in _nodes_json()]

    def create_partition(self):
        """A new, empty partition of this process."""
        p = _Partition()
        _EMPTY.append(p)
        return p

    def remove_partition(self, partition):
        """Release ``partition``'s nodes; an unknown partition is only a warning."""
        _forget_empty(partition)
        code, _, err = _binary.run(["partition", "release", "--", partition.uuid])
        if code != 0:
            if "not found" in err:
                LOG.warning("Partition %s is not in the cluster (empty, or already removed)", partition.uuid)
                return
            raise ClusterError(f"Failed to remove partition: {err.strip()}")


def _test_partition_tags():
    """tag -> node name from $VTCLUSTER_PARTITION_FILE (inside a test), else {}."""
    path = os.environ.get("VTCLUSTER_PARTITION_FILE")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ClusterError(f"$VTCLUSTER_PARTITION_FILE {path}: {exc}") from exc
    return {tag: n.get("name") for tag, n in (data.get("nodes") or {}).items()}


cluster = _Cluster()

from . import node_properties  # noqa: E402  (needs cluster)

__all__ = ["ClusterError", "cluster", "node_properties"]

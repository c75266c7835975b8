"""Node properties, as upstream's ``virttest.vt_cluster.node_properties``.

vtcluster collects each node's properties whenever its agent is started
and keeps them in the cluster state (``vtcluster node list --json``), so
there is no metadata file: ``save_properties`` (re)collects them through
``vtcluster agents start`` (which reuses agents that already run, and
starts those that do not), ``load_properties`` reads them back.
"""

import logging

from . import ClusterError
from . import _binary

LOG = logging.getLogger("avocado." + __name__)

__all__ = ["save_properties", "load_properties", "get_properties", "remove_properties"]


def save_properties():
    """Collect the properties of every registered node into the state."""
    names = [n["name"] for n in _binary.check_json(["node", "list", "--json"])]
    if not names:
        return
    try:
        _binary.check_json(["agents", "start", "--json", "--", *names], timeout=300)
    except _binary.CommandError as exc:
        raise ClusterError(f"Failed to collect node properties: {exc}") from exc


def load_properties():
    """``{node name: {property: value}}`` for every registered node, in
    registration order; nodes whose properties were never collected map
    to their labels only."""
    out = {}
    for n in _binary.check_json(["node", "list", "--json"]):
        props = dict(n.get("labels") or {})
        props.update(n.get("properties") or {})
        out[n["name"]] = props
    return out


def get_properties(node_name=None):
    """The properties of one node (``{}`` if unknown), or of all nodes."""
    props = load_properties()
    if node_name is None:
        return props
    return props.get(node_name, {})


def remove_properties():
    """Nothing to remove: properties are part of the state and refreshed
    at every agent start. Kept for upstream's name."""
    LOG.debug("remove_properties: node properties live in vtcluster's state; nothing removed")

"""``select_node``: pick a node by its properties, as upstream's
``virttest.vt_cluster.selector``.

Selectors are upstream's (a list of ``{"key", "operator", "values"}``
dicts, written as a Python literal or JSON) and are evaluated by
``vtcluster select`` against what the state records of each node: the
properties collected when its agent was started (``hostname``,
``cpu_vendor_id``, ``cpu_model_name``, ``arch``, ``kvm``, ``memory_gb``...)
and its labels. vtcluster also has ``>=``, ``<=``, ``in``, ``not in`` and
``matches``, and compares numbers as numbers.
"""

import json

from . import ClusterError
from . import _binary

__all__ = ["select_node", "SelectorError", "NodeSelectorError", "OperatorError"]


class SelectorError(ClusterError):
    """Selecting failed."""


class NodeSelectorError(SelectorError):
    """The selectors cannot be evaluated (bad syntax, unknown operator...)."""


class OperatorError(ClusterError):
    """An operator cannot be applied; kept for upstream's name."""


def select_node(candidates, selectors=None):
    """The first node, in registration order, that is among ``candidates``
    and matches ``selectors``; None when none does.

    With no selectors, as upstream: ``candidates.pop()``, the last
    candidate, removed from the caller's list (None if it is empty).

    :param candidates: Node objects, e.g. ``cluster.idle_nodes``.
    :param selectors: a selector list as a string, or as a list of dicts.
    :raises NodeSelectorError: when the selectors are invalid.
    """
    if not selectors:
        return candidates.pop() if candidates else None
    if not isinstance(selectors, str):
        selectors = json.dumps(selectors)
    if not candidates:
        return None
    code, out, err = _binary.run(["select", "--json", f"--selectors={selectors}"])
    if code == 2 and ("no node matches" in err or "no nodes registered" in err):
        return None
    if code != 0:
        raise NodeSelectorError(f"Cannot select a node with {selectors}: {err.strip()}")
    for match in json.loads(out):
        for node in candidates:
            if node.name == match["name"]:
                return node
    return None

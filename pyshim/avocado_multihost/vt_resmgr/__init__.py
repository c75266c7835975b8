"""avocado-vt's ``virttest.vt_resmgr`` API (``resmgr``), backed by vtcluster.

Every call runs ``vtcluster resource ...`` / ``vtcluster pool ...`` with
``--json``, the command-line face of the resource manager (resmgr/ in the
Go tree). Parameters and arguments go to it as one JSON object on stdin
(``--params-stdin``, ``--arguments-stdin``): upstream's params can be
large, and a command line is visible to every user of the machine. Like
the rest of the shim, it keeps no state: pools and resources live in
vtcluster's state.

Names and signatures are upstream's (section 7.2 of the reference):
``create_resource_from_params(resource_name, resource_type,
resource_params)``, ``bind_resource(resource_id, node_names=None)``,
``update_resource(resource_id, command, arguments=None)`` with
``arguments["node"]`` selecting the node, and so on. Node names are, as
upstream, the tags of the test's partition inside a test body
($VTCLUSTER_PARTITION_FILE), and registered names elsewhere;
get_resource_binding_nodes answers in the same terms.
"""

import json

from ..vt_cluster import ClusterError
from ..vt_cluster import _binary
from ..vt_cluster import _test_partition_tags

__all__ = ["resmgr", "ResourceManagerError"]

#: Seconds one resource manager command may take (its --timeout): an
#: allocation writes a whole volume on a node.
TIMEOUT_SECONDS = 600


class ResourceManagerError(ClusterError):
    """A resource manager call failed; str() is vtcluster's message and
    returncode its exit status (2: nothing matched)."""

    def __init__(self, message, returncode=1):
        super().__init__(message)
        self.returncode = returncode


def _run(args, names=(), payload=None):
    """Run ``vtcluster ARGS --json -- NAMES`` (payload as JSON on stdin) and decode its output.

    Names (ids, names, commands) go after ``--``, and flag values are
    joined to their flag (``--node=NAME``): a name starting with "-" can
    then never be taken for a flag.
    """
    stdin = None if payload is None else json.dumps(payload)
    code, out, err = _binary.run([*args, "--json", "--timeout", f"{TIMEOUT_SECONDS}s", "--", *names],
                                 stdin=stdin, timeout=TIMEOUT_SECONDS)
    if code != 0:
        detail = " ".join(line.strip() for line in err.splitlines() if line.strip())
        if detail.startswith("vtcluster: "):  # the message names the command already
            detail = detail[len("vtcluster: "):]
        raise ResourceManagerError(f"vtcluster {' '.join(args[:2])}: {detail}", code)
    return json.loads(out) if out.strip() else None


def _node_name(tag):
    """The registered name of a node: a tag of the test's partition inside a test."""
    tags = _test_partition_tags()
    if not tags:
        return tag
    if tag not in tags:
        raise ValueError(f"Wrong node name {tag}")  # upstream's error
    return tags[tag]


def _nodes(node_names):
    return [f"--node={_node_name(tag)}" for tag in (node_names or [])]


def _request(request):
    return [f"--request={request}"] if request is not None else []


def _node(arguments):
    node = arguments.pop("node", None)
    return [f"--node={_node_name(node)}"] if node else []


class _VTResourceManager:
    """The resource manager of vtcluster's state."""

    # --- pools ---------------------------------------------------------------

    def create_pool_from_params(self, pool_name, pool_params):
        return _run(["pool", "create", "--params-stdin"], [pool_name], dict(pool_params))["uuid"]

    def destroy_pool(self, pool_id):
        _run(["pool", "destroy"], [pool_id])

    def attach_pool(self, pool_id):
        _run(["pool", "attach"], [pool_id])

    def detach_pool(self, pool_id):
        _run(["pool", "detach"], [pool_id])

    def get_pool_info(self, pool_id, request=None):
        return _run(["pool", "info", *_request(request)], [pool_id])

    def select_pool(self, resource_type, resource_params):
        """The uuid of the pool a resource would go to, or None (as upstream) when none fits."""
        try:
            return _run(["pool", "select", f"--type={resource_type}", "--params-stdin"],
                        payload=dict(resource_params))["uuid"]
        except ResourceManagerError as e:
            if e.returncode == 2:  # no pool matched
                return None
            raise

    # --- resources -----------------------------------------------------------

    def create_resource_from_params(self, resource_name, resource_type, resource_params):
        return _run(["resource", "create", f"--type={resource_type}", "--params-stdin"], [resource_name],
                    dict(resource_params))["uuid"]

    def create_resource_from_source(self, source_resource_id, target_pool_id=None):
        args = ["resource", "create", f"--from={source_resource_id}"]
        if target_pool_id:
            args += [f"--pool={target_pool_id}"]
        return _run(args)["uuid"]

    def destroy_resource(self, resource_id):
        _run(["resource", "destroy"], [resource_id])

    def bind_resource(self, resource_id, node_names=None):
        """Bind on node_names; with none, inside a test, on the nodes of the
        test's partition the resource's pool reaches (as upstream), else on
        every node of the pool."""
        if not node_names and _test_partition_tags():
            pool = _run(["resource", "info", "--request=meta.pool"], [resource_id])["pool"]
            access = _run(["pool", "info", "--request=meta.access.nodes"], [pool])["nodes"]
            names = [n for n in _test_partition_tags().values() if n in access]
            if not names:
                raise ResourceManagerError(f"vtcluster resource bind: pool {pool} reaches no node of this test")
            _run(["resource", "bind", *[f"--node={n}" for n in names]], [resource_id])
            return
        _run(["resource", "bind", *_nodes(node_names)], [resource_id])

    def unbind_resource(self, resource_id, node_names=None):
        _run(["resource", "unbind", *_nodes(node_names)], [resource_id])

    def get_resource_binding_nodes(self, resource_id):
        names = _run(["resource", "nodes"], [resource_id])
        tag_of = {name: tag for tag, name in _test_partition_tags().items()}
        return [tag_of.get(name, name) for name in names]

    def get_resource_info(self, resource_id, request=None):
        return _run(["resource", "info", *_request(request)], [resource_id])

    def clone_resource(self, source_resource_id, arguments=None):
        arguments = dict(arguments or {})
        return _run(["resource", "update", *_node(arguments)], [source_resource_id, "clone"])["uuid"]

    def update_resource(self, resource_id, command, arguments=None):
        """Run command on one binding; None, as upstream (clone_resource returns the clone)."""
        arguments = dict(arguments or {})
        node = _node(arguments)
        _run(["resource", "update", "--arguments-stdin", *node], [resource_id, command], arguments)


resmgr = _VTResourceManager()

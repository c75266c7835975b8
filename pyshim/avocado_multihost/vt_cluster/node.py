"""``Node``: one machine of the cluster, as upstream's
``virttest.vt_cluster.node.Node``, with the work done by vtcluster.

``Node(params, name)`` only describes a machine; it reaches vtcluster's
state when registered (``cluster.register_node``) or when an agent
operation needs it (``setup_agent_env`` registers an unregistered node
first, since the binary takes nodes from its state). Logins use SSH keys
and verified host keys: ``key_file`` and ``known_hosts`` (or ssh-agent
and ``~/.ssh``); a ``password`` is accepted for compatibility and not
used, ``shell_prompt`` is not needed (there is no interactive shell).
"""

import logging
import os

from . import ClusterError
from . import _binary
from .proxy import get_server_proxy

LOG = logging.getLogger("avocado." + __name__)

__all__ = ["Node", "NodeError"]

#: Upstream's keys (section 2.1 of the reference) plus vtcluster's.
_KNOWN_KEYS = {
    "address", "hostname", "username", "password", "shell_port", "shell_prompt",
    "proxy_port", "agent_base_dir",
    "key_file", "known_hosts", "agent_bind", "token_file",
}

#: params key -> ``vtcluster node add`` flag.
_ADD_FLAGS = [
    ("address", "--address"), ("hostname", "--hostname"), ("username", "--user"),
    ("shell_port", "--port"), ("proxy_port", "--proxy-port"),
    ("agent_base_dir", "--agent-base-dir"), ("key_file", "--key-file"),
    ("known_hosts", "--known-hosts"), ("agent_bind", "--agent-bind"),
    ("token_file", "--token-file"),
]


class NodeError(ClusterError):
    """A node operation failed; str() says which and why."""


class Node:
    """A cluster node.

    :param params: upstream's host params (``address`` or ``hostname``,
        ``username``, ``shell_port``, ``proxy_port``, ``agent_base_dir``...)
        plus ``key_file``, ``known_hosts``, ``agent_bind``, ``token_file``;
        values may be strings, as in cluster JSON files.
    :param name: the node's name in the cluster.
    :raises NodeError: for an unknown key or no address/hostname.
    """

    def __init__(self, params, name):
        unknown = sorted(set(params) - _KNOWN_KEYS)
        if unknown:
            raise NodeError(
                f"node {name!r}: unknown params key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_KNOWN_KEYS))})"
            )
        if not (params.get("address") or params.get("hostname")):
            raise NodeError(f"node {name!r}: params need an 'address' or a 'hostname'")
        self._params = {k: v for k, v in params.items() if k != "password"}
        if params.get("password") and not params.get("key_file"):
            LOG.warning(
                "node %s: a password is not used (vtcluster logs in with SSH keys); "
                "give key_file, or have ssh-agent or ~/.ssh hold a key", name
            )
        self._name = name
        self.tag = None
        self._proxy = get_server_proxy(name)

    @classmethod
    def _from_state(cls, record, tag=None):
        """A Node from one entry of ``vtcluster node list --json``."""
        params = {
            "address": record.get("address"), "hostname": record.get("hostname"),
            "username": record.get("user"), "shell_port": str(record.get("shell_port")),
            "proxy_port": str(record.get("proxy_port")),
            "agent_base_dir": record.get("agent_base_dir"),
            "key_file": record.get("key_file"), "known_hosts": record.get("known_hosts"),
            "agent_bind": record.get("agent_bind"), "token_file": record.get("token_file"),
        }
        node = cls({k: v for k, v in params.items() if v not in (None, "", "None")}, record["name"])
        node.tag = tag
        return node

    @property
    def name(self):
        return self._name

    @property
    def host(self):
        """What SSH connects to: the address, else the hostname."""
        return self._params.get("address") or self._params.get("hostname")

    @property
    def address(self):
        return self.host

    @property
    def proxy(self):
        """``node.proxy.a.b.c(*args)`` calls agent method ``a.b.c`` (see proxy.py)."""
        return self._proxy

    def __repr__(self):
        return f"<Node(Name='{self._name}', Host='{self.host}', Tag='{self.tag}')>"

    def __eq__(self, other):
        if not isinstance(other, Node):
            return NotImplemented
        mine, theirs = self._params, other._params
        if mine.get("address") and theirs.get("address"):
            return mine["address"] == theirs["address"]
        if mine.get("hostname") and theirs.get("hostname"):
            return mine["hostname"] == theirs["hostname"]
        return False

    def __hash__(self):
        return hash(self._name)

    # --- state -------------------------------------------------------------

    def _add_args(self, name):
        args = ["node", "add"]
        for key, flag in _ADD_FLAGS:
            value = self._params.get(key)
            if value not in (None, ""):
                if key in ("key_file", "known_hosts", "token_file"):
                    value = os.path.abspath(os.path.expanduser(str(value)))
                args.append(f"{flag}={value}")
        return args + ["--", name]

    def _register(self, name=None, replace=False):
        args = self._add_args(name or self._name)
        if replace:
            args.insert(2, "--replace")
        try:
            _binary.check(args)
        except _binary.CommandError as exc:
            raise NodeError(f"Failed to register node {name or self._name}: {exc}") from exc

    def _ensure_registered(self):
        names = {n["name"] for n in _binary.check_json(["node", "list", "--json"])}
        if self._name not in names:
            LOG.info("Registering node %s in vtcluster's state", self._name)
            self._register()

    def _agents(self, verb, what, timeout):
        try:
            _binary.check_json(["agents", verb, "--json", "--", self._name], timeout=timeout,
                               env=_binary.env_without_partition())
        except _binary.CommandError as exc:
            raise NodeError(f"Failed to {what} on {self._name}: {exc}") from exc

    # --- agent lifecycle ---------------------------------------------------

    def setup_agent_env(self):
        """Install the agent on the node (``vtcluster agents deploy``)."""
        self._ensure_registered()
        self._agents("deploy", "set up the agent environment", timeout=600)

    def start_agent_server(self):
        """Start the agent (``vtcluster agents start``), which also collects
        the node's properties; reuses an agent that already answers."""
        self._ensure_registered()
        self._agents("start", "start agent node daemon", timeout=120)

    def stop_agent_server(self):
        """Stop the agent; failures are logged, not raised, as upstream."""
        try:
            self._agents("stop", "stop the agent", timeout=120)
        except (NodeError, _binary.CommandError) as exc:
            LOG.warning("%s", exc)

    def cleanup_agent_env(self):
        """Remove the agent's files from the node (``vtcluster agents
        cleanup``); failures are logged, not raised, as upstream."""
        code, _, err = _binary.run(["agents", "cleanup", "--", self._name], timeout=300,
                                   env=_binary.env_without_partition())
        if code != 0:
            LOG.warning("Failed to clean up the agent environment on %s: %s", self._name, err.strip())

    # --- files -------------------------------------------------------------

    def copy_files_to(self, local_path, remote_path, timeout=600):
        """Copy local_path (recursively) to remote_path on the node.

        :raises NodeError: when the copy fails.
        """
        try:
            _binary.check(["cp", "-r", "--", local_path, f"{self._name}:{remote_path}"], timeout=timeout,
                          env=_binary.env_without_partition())
        except _binary.CommandError as exc:
            raise NodeError(f"SCP failed: {exc}") from exc

    def copy_files_from(self, local_path, remote_path, timeout=600):
        """Copy remote_path (recursively) from the node to local_path.

        As upstream, a failure is logged and not raised; the return value
        says whether the copy worked.
        """
        code, _, err = _binary.run(["cp", "-r", "--", f"{self._name}:{remote_path}", local_path], timeout=timeout,
                                   env=_binary.env_without_partition())
        if code != 0:
            LOG.error("Failed to copy %s from %s to %s: %s", remote_path, self._name, local_path, err.strip())
            return False
        return True

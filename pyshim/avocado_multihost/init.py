"""Settings of the multihost plugins (the ``[multihost]`` config section)."""

from avocado.core.plugin_interfaces import Init
from avocado.core.settings import settings

#: Seconds a test waits for enough free nodes before it errors out.
DEFAULT_ALLOC_TIMEOUT = 300
#: Seconds a partition stays reserved for a test without being renewed;
#: bounds how long nodes stay locked after a runner dies.
DEFAULT_LEASE = 600


class MultihostInit(Init):
    """Registers the multihost.* settings, shown by ``avocado config``.

    They can be set in any Avocado config file, for example::

        [multihost]
        binary = /usr/local/bin/vtcluster
        cluster = lab

    ``alloc_timeout`` and ``lease`` are not used by the Python side: they
    reach the Go runner through its ``-c`` configuration.
    """

    name = "multihost"
    description = "Registers the multihost.* settings used to reach vtcluster"

    def initialize(self):
        section = "multihost"
        settings.register_option(
            section=section,
            key="binary",
            default="",
            help_msg=(
                "Path of the vtcluster binary; a bare name is looked up in "
                'PATH. Empty means "vtcluster" in PATH.'
            ),
        )
        settings.register_option(
            section=section,
            key="state",
            default="",
            help_msg=(
                "Where the cluster state lives when several controller "
                "machines share a lab: etcd://host:2379[,host:2379]/prefix "
                "(etcds:// for TLS) or file:///dir. Empty means "
                "$VTCLUSTER_STATE, else state_dir. etcd credentials come "
                "from the VTCLUSTER_ETCD_* environment variables only."
            ),
        )
        settings.register_option(
            section=section,
            key="state_dir",
            default="",
            help_msg=(
                "Directory holding vtcluster's cluster state. Empty means "
                "vtcluster's default ($VTCLUSTER_STATE_DIR, else "
                "~/avocado/data/vtcluster)."
            ),
        )
        settings.register_option(
            section=section,
            key="cluster",
            default="default",
            help_msg="Name of the vtcluster cluster that jobs use",
        )
        settings.register_option(
            section=section,
            key="alloc_timeout",
            default=DEFAULT_ALLOC_TIMEOUT,
            key_type=int,
            help_msg="Seconds a multihost test waits for free nodes",
        )
        settings.register_option(
            section=section,
            key="priority",
            default=0,
            key_type=int,
            help_msg=(
                "Rank of this job's tests among allocations waiting for "
                "nodes (higher first; every minute waited adds one)"
            ),
        )
        settings.register_option(
            section=section,
            key="quarantine_after",
            default=0,
            key_type=int,
            help_msg=(
                "Infrastructure failures in a row that take a node out of "
                "rotation (0: vtcluster's default of 3; -1: never)"
            ),
        )
        settings.register_option(
            section=section,
            key="node_lost_after",
            default=6,
            key_type=int,
            help_msg=(
                "Seconds a node's agent may leave the runner's health "
                "probes unanswered before the node counts as lost (raise "
                "it for nodes too busy or slow to answer in time)"
            ),
        )
        settings.register_option(
            section=section,
            key="retry_infra",
            default=False,
            key_type=bool,
            help_msg=(
                "Run a test that failed for an infrastructure reason "
                "(node lost, agent down, no node in time) once more on "
                "other nodes"
            ),
        )
        settings.register_option(
            section=section,
            key="lease",
            default=DEFAULT_LEASE,
            key_type=int,
            help_msg=(
                "Seconds a test's node reservation lasts unless renewed "
                "(reclaims nodes of crashed runners)"
            ),
        )
        settings.register_option(
            section=section,
            key="hold_on_failure",
            default="0",
            help_msg=(
                "Keep the nodes, resources and VMs of a multihost test that "
                "failed, errored or ran into its timeout this long for "
                "debugging (e.g. 2h, 30m, 90s; at "
                "most 72h) instead of tearing them down; 0 for never. The "
                "test's log and the job's output say how to reach each "
                "node; 'vtcluster partition release ID' ends a hold early, "
                "and it ends by itself when its time is up"
            ),
        )

"""``avocado vt-bootstrap --vt-cluster-config FILE`` backed by vtcluster.

Two situations, decided at parser set-up time:

* avocado-vt is not installed: :class:`VTBootstrap` provides the
  ``vt-bootstrap`` command itself, with only the cluster options.
* avocado-vt is installed: its own ``vt-bootstrap`` already defines
  ``--vt-cluster-config`` (argparse dest ``vt_cluster_config``, read in
  ``virttest/bootstrap.py`` as ``get_opt(options, "vt_cluster_config")``
  as the last bootstrap step). A second command of the same name is not
  possible (argparse: "conflicting subparser"), so :class:`VTBootstrapHook`
  takes the option over instead: it runs our bootstrap from ``CLI.run``
  and then sets ``config["vt_cluster_config"] = None`` so that
  avocado-vt's Python bootstrap skips its own cluster deployment.

What makes the hook work, checked in Avocado 113.0's
``avocado/core/app.py`` (``AvocadoApp.__init__`` then ``run``):

1. every ``cli.cmd`` plugin's ``configure`` runs, then every ``cli``
   plugin's ``configure``; extensions are sorted by ``priority``
   (descending) then entry-point name;
2. the arguments are parsed into one dict, ``parser.config`` (argparse
   dests plus ``settings.as_dict()``);
3. every ``cli`` plugin's ``run(parser.config)`` is called, for every
   command; a SystemExit raised there ends avocado with its code, other
   exceptions are only logged;
4. only then the command's ``CLICmd.run`` gets the *same* dict object, so
   changes made in step 3 are what the command sees. The command is
   ``CLICmdDispatcher[subcommand]``: the first extension with that name in
   the sorted order, which is why :class:`VTBootstrap` has the lowest
   priority.
"""

import argparse
import sys

from avocado.core import exit_codes
from avocado.core.extension_manager import PluginPriority
from avocado.core.output import LOG_UI
from avocado.core.plugin_interfaces import CLI, CLICmd

from avocado_multihost import binary

COMMAND = "vt-bootstrap"
#: argparse dest of --vt-cluster-config, the same as avocado-vt's.
CLUSTER_CONFIG_KEY = "vt_cluster_config"
ACCEPT_KEYS_KEY = "multihost_accept_new_host_keys"

# Set by VTBootstrap.configure when it created the vt-bootstrap command,
# i.e. avocado-vt did not; the hook then stays out of the way.
_OWNS_COMMAND = False


def _add_accept_flag(parser):
    parser.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        default=False,
        dest=ACCEPT_KEYS_KEY,
        help=(
            "Accept and record the SSH host keys of hosts that are not yet "
            "known (passed on to vtcluster bootstrap)"
        ),
    )


def run_bootstrap(config):
    """Run ``vtcluster bootstrap`` for config's cluster file; return its exit code.

    The child shares our terminal, so its progress and errors reach the
    user directly.
    """
    args = ["bootstrap", "--vt-cluster-config", config.get(CLUSTER_CONFIG_KEY)]
    if config.get(ACCEPT_KEYS_KEY):
        args.append("--accept-new-host-keys")
    try:
        argv = binary.command(*args, config=config)
        return binary.run_inherited(argv)
    except binary.BinaryNotFound as details:
        LOG_UI.error("%s: %s", COMMAND, details)
    except OSError as details:
        LOG_UI.error("%s: running vtcluster: %s", COMMAND, details)
    return exit_codes.AVOCADO_FAIL


class VTBootstrap(CLICmd):
    """The ``vt-bootstrap`` command when avocado-vt is not installed.

    ``avocado vt-bootstrap --vt-cluster-config FILE [--accept-new-host-keys]``
    runs ``vtcluster [--state-dir D] --cluster C bootstrap --vt-cluster-config
    FILE [--accept-new-host-keys]`` and exits with its exit code. When
    avocado-vt's command exists it adds nothing (see the module docstring).
    """

    name = COMMAND
    description = (
        "Registers the hosts of an avocado-vt cluster config with vtcluster "
        "(multihost; defers to avocado-vt's vt-bootstrap when installed)"
    )
    # After avocado-vt's vt-bootstrap, in configure order and in the lookup
    # of the command to run.
    priority = PluginPriority.LAST_RESORT

    def configure(self, parser):
        global _OWNS_COMMAND  # pylint: disable=global-statement
        if self.name in parser.subcommands.choices:
            return None
        subparser = super().configure(parser)
        subparser.add_argument(
            "--vt-cluster-config",
            metavar="CLUSTER_CONFIG",
            dest=CLUSTER_CONFIG_KEY,
            help='Cluster config JSON ("hosts", "pools") to bootstrap with vtcluster',
        )
        _add_accept_flag(subparser)
        _OWNS_COMMAND = True
        return subparser

    def run(self, config):
        if not _OWNS_COMMAND:
            # Avocado runs avocado-vt's command when both exist, because it
            # sorts first; should that change, refuse rather than half-work.
            LOG_UI.error(
                "%s: avocado-vt's command should have run instead of the "
                "multihost one; check plugins.cli.cmd.order",
                COMMAND,
            )
            return exit_codes.AVOCADO_FAIL
        if not config.get(CLUSTER_CONFIG_KEY):
            LOG_UI.error(
                "%s: --vt-cluster-config FILE is required (avocado-vt is not "
                "installed, so only the vtcluster cluster bootstrap is available)",
                COMMAND,
            )
            return exit_codes.AVOCADO_FAIL
        return run_bootstrap(config)


class VTBootstrapHook(CLI):
    """Makes avocado-vt's ``vt-bootstrap --vt-cluster-config`` use vtcluster.

    Adds ``--accept-new-host-keys`` to avocado-vt's command. Before the
    command runs, it runs ``vtcluster bootstrap`` for the given file; on
    failure avocado exits with vtcluster's exit code and avocado-vt's
    bootstrap does not run. On success it clears ``vt_cluster_config`` so
    avocado-vt does its other bootstrap steps but does not set up its own
    Python agent environment on the hosts. Does nothing for other commands or when
    :class:`VTBootstrap` owns the command.
    """

    name = "multihost"
    description = (
        "Runs vtcluster bootstrap for avocado-vt's vt-bootstrap --vt-cluster-config"
    )

    def configure(self, parser):
        subparser = parser.subcommands.choices.get(COMMAND)
        if subparser is None or _OWNS_COMMAND:
            return
        try:
            _add_accept_flag(subparser)
        except argparse.ArgumentError:
            # A future avocado-vt may define this flag itself. Keep theirs
            # rather than break every avocado command; it then does not
            # reach vtcluster, which refuses unknown host keys as usual.
            pass

    def run(self, config):
        if _OWNS_COMMAND or config.get("subcommand") != COMMAND:
            return
        path = config.get(CLUSTER_CONFIG_KEY)
        if not path:
            return
        returncode = run_bootstrap(config)
        if returncode != 0:
            LOG_UI.error(
                "%s: vtcluster bootstrap --vt-cluster-config %s failed (exit "
                "status %d); avocado-vt's bootstrap was not run",
                COMMAND,
                path,
                returncode,
            )
            sys.exit(returncode)
        config[CLUSTER_CONFIG_KEY] = None
        LOG_UI.info(
            "%s: cluster from %s registered with vtcluster; continuing with "
            "avocado-vt's bootstrap without its cluster step",
            COMMAND,
            path,
        )

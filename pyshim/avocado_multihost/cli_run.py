"""``avocado run --multihost-hold-on-failure DURATION``: the setting
``multihost.hold_on_failure`` for one run, without a config file."""

from avocado.core.plugin_interfaces import CLI
from avocado.core.settings import settings


class MultihostRunOptions(CLI):
    """Adds the multihost options that make sense per run to ``avocado run``."""

    name = "multihost-run"
    description = "Adds --multihost-hold-on-failure to avocado run"

    def configure(self, parser):
        run = parser.subcommands.choices.get("run")
        if run is None:
            return
        settings.add_argparser_to_option(
            namespace="multihost.hold_on_failure",
            parser=run,
            long_arg="--multihost-hold-on-failure",
            metavar="DURATION",
        )

    def run(self, config):
        pass

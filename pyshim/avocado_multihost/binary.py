"""Finding and running the vtcluster binary, for the Avocado plugins.

An adapter over :mod:`avocado_multihost.vt_cluster._binary`, the one way
the shim runs the binary: this module adds what comes from Avocado (the
``multihost.*`` settings). The plugins never do cluster work themselves:
they build an argv list (no shell) and run ``vtcluster``. Which binary is
decided once per process, by :func:`locate`, from the ``multihost.binary``
setting or else ``vtcluster`` on PATH.
"""

import os
import subprocess
import sys

from avocado.core.settings import settings

from avocado_multihost.vt_cluster import _binary

#: Message given whenever the binary is needed but missing; the resolver
#: uses it as its NOTFOUND info.
NOT_FOUND = "vtcluster binary not found (set multihost.binary)"

#: Marks that :func:`locate` has not looked for the binary yet.
UNSET = object()

#: Path of the vtcluster binary once :func:`locate` ran: a string, or None
#: when it was not found. Tests patch this to None to simulate a missing
#: binary. The lookup is lazy rather than done at import because Avocado
#: imports CLI plugin modules before it merges ``avocado --config FILE``
#: into the settings; looking at import time would ignore that file.
VTCLUSTER_BIN = UNSET

#: Why the configured binary was rejected, for error messages; "" if it
#: was found or nothing was configured.
LOCATE_DETAIL = ""

class BinaryNotFound(Exception):
    """The vtcluster binary is not available; str() says how to fix it."""


def _find(configured):
    """Return (path or None, detail) for the configured value or PATH."""
    return _binary.find(configured, "multihost.binary")


def locate():
    """Return the vtcluster path, or None; looks it up only the first time."""
    global VTCLUSTER_BIN, LOCATE_DETAIL  # pylint: disable=global-statement
    if VTCLUSTER_BIN is UNSET:
        configured = settings.as_dict().get("multihost.binary")
        VTCLUSTER_BIN, LOCATE_DETAIL = _find(configured)
    return VTCLUSTER_BIN


def not_found_message():
    """The NOT_FOUND text plus why the configured path was rejected, if it was."""
    if LOCATE_DETAIL:
        return f"{NOT_FOUND}: {LOCATE_DETAIL}"
    return NOT_FOUND


def global_args(config):
    """The vtcluster flags that select state, from the multihost.* settings.

    They go before the subcommand. An empty state or state_dir means
    "vtcluster's own default" (which honours VTCLUSTER_STATE and
    VTCLUSTER_STATE_DIR), so it is left out.
    """
    config = config or {}
    args = []
    state = config.get("multihost.state")
    if state:
        args += ["--state", state]
    state_dir = config.get("multihost.state_dir")
    if state_dir:
        args += ["--state-dir", os.path.expanduser(state_dir)]
    cluster = config.get("multihost.cluster")
    if cluster:
        args += ["--cluster", cluster]
    return args


def command(*args, config=None, select_state=True):
    """Build the argv [vtcluster, <state flags>, *args].

    :param config: Avocado config dict holding the multihost.* settings.
    :param select_state: add --state-dir/--cluster from config.
    :raises BinaryNotFound: when the binary is missing.
    """
    path = locate()
    if path is None:
        raise BinaryNotFound(not_found_message())
    head = [path]
    if select_state:
        head += global_args(config)
    return head + [str(arg) for arg in args]


def run_captured(argv, timeout):
    """Run argv with stdin closed and output captured.

    :returns: (returncode, stdout, stderr) with text decoded leniently.
    :raises subprocess.TimeoutExpired: after the child was stopped.
    :raises OSError: when it cannot be started.
    """
    return _binary.communicate(argv, timeout=timeout)


def run_inherited(argv):
    """Run argv attached to our terminal (stdin, stdout, stderr) and wait.

    Used for interactive commands such as bootstrap, whose progress and
    errors the user should see as vtcluster prints them.

    :returns: an exit code; a death by signal N becomes 128 + N.
    :raises OSError: when it cannot be started.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with subprocess.Popen(argv) as proc:
        try:
            returncode = proc.wait()
        except BaseException:
            _binary.stop(proc)
            raise
    if returncode < 0:
        return 128 - returncode
    return returncode


def last_lines(text, count=20):
    """The last count non-empty lines of text, for error messages."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return "\n".join(lines[-count:])

"""Running the vtcluster binary for the Python API (standard library only).

The API keeps no state of its own: every question about nodes and
partitions is a ``vtcluster ... --json`` run against the state the binary
owns. The binary is ``$VTCLUSTER_BIN`` if set, else ``vtcluster`` on
PATH; the state it uses follows the binary's own rules
(``$VTCLUSTER_STATE_DIR``, ``$VTCLUSTER_CLUSTER``).
"""

import json
import os
import shutil
import signal
import subprocess

#: Extra time the child gets beyond its own --timeout before we stop it:
#: the binary reports its timeouts itself, this only guards against a hang.
_GRACE_SECONDS = 30

#: How long a terminated child may take to clean up before SIGKILL.
_TERM_SECONDS = 10


class CommandError(Exception):
    """A vtcluster run failed; str() is its own error message."""

    def __init__(self, argv, returncode, stderr, stdout=""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr or ""
        self.stdout = stdout or ""
        detail = "\n".join(line for line in self.stderr.splitlines() if line.strip())
        super().__init__(
            f"vtcluster {' '.join(self.argv[1:3])} failed (exit {returncode})"
            + (f": {detail}" if detail else "")
        )


def locate():
    """Path of the vtcluster binary; raises CommandError when there is none."""
    configured = os.environ.get("VTCLUSTER_BIN", "")
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise CommandError(["vtcluster"], 127, f"$VTCLUSTER_BIN={configured!r} is not an executable file")
    found = shutil.which("vtcluster")
    if not found:
        raise CommandError(["vtcluster"], 127, "no vtcluster on PATH (or set $VTCLUSTER_BIN)")
    return found


def _stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_TERM_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args, stdin=None, timeout=None):
    """Run ``vtcluster ARGS`` and return (returncode, stdout, stderr).

    :param stdin: text written to the child's stdin (None: no stdin).
    :param timeout: seconds the command may take (its own --timeout);
        the child is stopped a grace period after that.
    """
    argv = [locate()] + [str(a) for a in args]
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    ) as proc:
        try:
            out, err = proc.communicate(
                input=stdin, timeout=None if timeout is None else timeout + _GRACE_SECONDS
            )
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise CommandError(argv, -1, f"did not finish within {timeout + _GRACE_SECONDS:.0f}s")
        except BaseException:
            _stop(proc)
            raise
    return proc.returncode, out, err


def check(args, stdin=None, timeout=None):
    """Run ``vtcluster ARGS``; raise CommandError unless it exits 0. Returns stdout."""
    code, out, err = run(args, stdin=stdin, timeout=timeout)
    if code != 0:
        raise CommandError([locate()] + [str(a) for a in args], code, err, out)
    return out


def check_json(args, stdin=None, timeout=None):
    """Run ``vtcluster ARGS`` (which must include --json) and decode its stdout."""
    out = check(args, stdin=stdin, timeout=timeout)
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CommandError(["vtcluster"] + list(args), 0, f"output is not JSON: {exc}: {out[:200]!r}")

"""Running the vtcluster binary for the Python API (standard library only).

The API keeps no state of its own: every question about nodes and
partitions is a ``vtcluster ... --json`` run against the state the binary
owns. The binary is ``$VTCLUSTER_BIN`` if set, else ``vtcluster`` on
PATH; the state it uses follows the binary's own rules
(``$VTCLUSTER_STATE_DIR``, ``$VTCLUSTER_CLUSTER``).
"""

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import threading

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


def find(configured, what):
    """Return (path or None, why not) for a configured binary, else PATH.

    :param configured: a path, a command name looked up on PATH, or ""
        for ``vtcluster`` on PATH.
    :param what: the setting it came from, for the message
        ("$VTCLUSTER_BIN", "multihost.binary").
    """
    configured = os.path.expanduser(configured or "")
    if not configured:
        found = shutil.which("vtcluster")
        return found, ("" if found else "no vtcluster on PATH")
    if os.sep in configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return os.path.abspath(configured), ""
        return None, f'{what} "{configured}" is not an executable file'
    found = shutil.which(configured)
    if found:
        return found, ""
    return None, f'{what} "{configured}" is not on PATH'


def locate():
    """Path of the vtcluster binary; raises CommandError when there is none."""
    path, why = find(os.environ.get("VTCLUSTER_BIN", ""), "$VTCLUSTER_BIN")
    if path is None:
        raise CommandError(["vtcluster"], 127, why + " (set $VTCLUSTER_BIN or put vtcluster on PATH)")
    return path


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the thread that started it
    ends (normally: its process dies, even by SIGKILL), so no long-lived
    vtcluster child outlives the Python process that needs it."""
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: atexit handlers still cover normal exits


_SPAWN_QUEUE = queue.Queue()
_SPAWNER = []
_SPAWNER_LOCK = threading.Lock()


def _spawner():
    while True:
        args, kwargs, box, done = _SPAWN_QUEUE.get()
        try:
            box.append(subprocess.Popen(*args, preexec_fn=die_with_parent, **kwargs))  # pylint: disable=consider-using-with
        except BaseException as exc:  # pylint: disable=broad-except
            box.append(exc)
        done.set()


def spawn_long_lived(*args, **kwargs):
    """subprocess.Popen for a child that must live as long as this process
    and no longer. The parent-death signal is tied to the thread that
    forks, so the fork happens in one daemon thread that lasts as long as
    the process: a child started from a short-lived thread (a test role)
    is not killed when that thread ends, and still dies with the process."""
    with _SPAWNER_LOCK:
        if not _SPAWNER or not _SPAWNER[0].is_alive() or _SPAWNER[1] != os.getpid():
            t = threading.Thread(target=_spawner, name="vtcluster-spawner", daemon=True)
            t.start()
            _SPAWNER[:] = [t, os.getpid()]
    box, done = [], threading.Event()
    _SPAWN_QUEUE.put((args, kwargs, box, done))
    done.wait()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def stop(proc):
    """SIGTERM the child, then SIGKILL if it ignores it; reap it either way."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_TERM_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def communicate(argv, stdin=None, timeout=None, env=None):
    """Run argv (a list, no shell) with its output captured: the one way
    the shim and the API run the binary and wait for it.

    :param stdin: text for the child's stdin (None: stdin closed).
    :param timeout: seconds to wait (None: no limit).
    :returns: (returncode, stdout, stderr), text decoded leniently.
    :raises subprocess.TimeoutExpired: after the child was stopped. On
        Ctrl-C or Avocado's SIGTERM handler (SystemExit) the child is
        stopped too: it never outlives the call.
    :raises OSError: when it cannot be started.
    """
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
    ) as proc:
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout)
        except BaseException:
            stop(proc)
            raise
    return proc.returncode, out, err


def env_without_partition():
    """This environment minus $VTCLUSTER_PARTITION_FILE: for commands that
    name nodes by their registered names, which a tag of the test's
    partition could otherwise shadow."""
    return {k: v for k, v in os.environ.items() if k != "VTCLUSTER_PARTITION_FILE"}


def run(args, stdin=None, timeout=None, env=None):
    """Run ``vtcluster ARGS`` and return (returncode, stdout, stderr).

    :param stdin: text written to the child's stdin (None: no stdin).
    :param timeout: seconds the command may take (its own --timeout);
        the child is stopped a grace period after that.
    :param env: the child's environment (default: ours).
    """
    argv = [locate()] + [str(a) for a in args]
    limit = None if timeout is None else timeout + _GRACE_SECONDS
    try:
        return communicate(argv, stdin=stdin, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        raise CommandError(argv, -1, f"did not finish within {limit:.0f}s") from None


def check(args, stdin=None, timeout=None, env=None):
    """Run ``vtcluster ARGS``; raise CommandError unless it exits 0. Returns stdout."""
    code, out, err = run(args, stdin=stdin, timeout=timeout, env=env)
    if code != 0:
        raise CommandError([locate()] + [str(a) for a in args], code, err, out)
    return out


def check_json(args, stdin=None, timeout=None, env=None):
    """Run ``vtcluster ARGS`` (which must include --json) and decode its stdout."""
    out = check(args, stdin=stdin, timeout=timeout, env=env)
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CommandError(["vtcluster"] + list(args), 0, f"output is not JSON: {exc}: {out[:200]!r}")

"""Shared fixtures for the Python tests: the built vtcluster binary and a
way to run the real Avocado 113.0 CLI in isolation.

The tests expect the shim (pyshim/) to be installed in the interpreter that
runs them; ``make py-test`` does that through scripts/venv.sh.
"""

import atexit
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Bound on any single CLI run in the tests; they take seconds, so hitting
#: it means a hang, reported as a failure rather than a stuck test run.
RUN_TIMEOUT_SECONDS = 300


def run_bounded(argv, timeout=RUN_TIMEOUT_SECONDS, **kwargs):
    """Run argv to its end, without stdin and with its output captured as
    text; a hang raises TimeoutExpired. The caller checks the exit status.
    kwargs go to subprocess.run (env, cwd)."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)


def find_vtcluster():
    """Path of the built binary (env VTCLUSTER_BIN, else bin/vtcluster), or None."""
    candidate = os.environ.get("VTCLUSTER_BIN") or str(REPO_ROOT / "bin" / "vtcluster")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return os.path.abspath(candidate)
    return None


def binary_has_command(binary, *command):
    """Whether ``vtcluster COMMAND... --help`` succeeds, i.e. the command exists."""
    result = subprocess.run(
        [binary, *command, "--help"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    return result.returncode == 0


def import_virttest(*modules):
    """The named virttest modules (avocado-framework-plugin-vt==113.0), or a
    skip of the calling test module where they cannot be imported: the plain
    test venv lacks virttest; ``scripts/venv.sh --vt`` builds one with it."""
    try:
        return [importlib.import_module(m) for m in modules]
    except Exception as exc:  # ImportError, or virttest failing to initialise
        pytest.skip(
            f"virttest (avocado-framework-plugin-vt==113.0) is not importable: {exc!r}",
            allow_module_level=True,
        )


@pytest.fixture(scope="session")
def vtcluster_bin():
    """The built vtcluster binary; skips the test when it is not built."""
    binary = find_vtcluster()
    if binary is None:
        pytest.skip(
            "vtcluster binary not built: run `make build` or set VTCLUSTER_BIN "
            f"(looked at {os.environ.get('VTCLUSTER_BIN') or REPO_ROOT / 'bin' / 'vtcluster'})"
        )
    return binary


def write_avocado_config(path, multihost=None, extra=""):
    """Write an Avocado config file with a [multihost] section; return its path.

    :param extra: more config text (other sections) appended verbatim.
    """
    lines = ["[multihost]"]
    for key, value in (multihost or {}).items():
        lines.append(f"{key} = {value}")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


class AvocadoCLI:
    """Runs ``python -m avocado`` with a private HOME and config file.

    A private HOME keeps the user's own Avocado config, job results and
    vtcluster state out of the tests.
    """

    def __init__(self, tmp_path, python=sys.executable):
        self.python = python
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.results = tmp_path / "results"
        self.config = tmp_path / "avocado.conf"
        write_avocado_config(self.config)

    def configure(self, extra="", **multihost):
        """Set multihost.* settings (and extra config text) for the following runs."""
        write_avocado_config(self.config, multihost, extra)

    def write_user_config(self, text):
        """Write the private HOME's avocado.conf.

        Unlike ``--config``, Avocado reads it before it loads CLI plugins,
        so settings such as plugins.disable apply to them too.
        """
        path = self.home / ".config" / "avocado" / "avocado.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def env(self, extra=None):
        env = dict(os.environ)
        env["HOME"] = str(self.home)
        # With VIRTUAL_ENV set, Avocado reads the user config from the venv
        # instead of HOME.
        env.pop("VIRTUAL_ENV", None)
        env.pop("VTCLUSTER_STATE_DIR", None)
        env.pop("VTCLUSTER_CLUSTER", None)
        env.update(extra or {})
        return env

    def argv(self, *args):
        return [self.python, "-m", "avocado", "--config", str(self.config), *args]

    def __call__(self, *args, env=None, cwd=None):
        """Run avocado with args; return the CompletedProcess (text)."""
        return run_bounded(
            self.argv(*args),
            env=self.env(env),
            cwd=cwd,
        )


@pytest.fixture
def avocado(tmp_path):
    """An :class:`AvocadoCLI` for the interpreter running the tests."""
    return AvocadoCLI(tmp_path)


# --- a lab of real SSH hosts, for the end-to-end tests -----------------------

#: Hosts in the session's lab: enough for tests that need two distinct nodes
#: while a third stays free, and for a selector over every node.
LAB_HOSTS = 3


def lab_requirements_missing():
    """Why a lab cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root: lab hosts are network namespaces, each running sshd"
    if not (shutil.which("sshd") or os.access("/usr/sbin/sshd", os.X_OK)):
        return "sshd not installed (apt-get install openssh-server)"
    if shutil.which("ip") is None:
        return "ip not installed (apt-get install iproute2)"
    return None


def read_proc_table():
    """Every live process as (pid, ppid, argv); zombies and kernel threads left out."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read()
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        fields = stat.rsplit(")", 1)[1].split()
        if not raw or fields[0] == "Z":
            continue
        argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
        table.append((int(entry), int(fields[1]), argv))
    return table


class Lab:
    """A running ``vtcluster lab`` (the content of its lab.json, plus helpers).

    Lab hosts share this machine's filesystem and process table; only their
    network and hostname differ. So the lab's agents are the processes
    whose program lives under ``<lab dir>/agents/``.
    """

    def __init__(self, binary, directory, cluster_config):
        self.binary = binary
        self.dir = Path(directory)
        self.cluster_config = Path(cluster_config)
        self.info = json.loads((self.dir / "lab.json").read_text(encoding="utf-8"))
        self.hosts = {h["name"]: h for h in self.info["hosts"]}

    def agent_processes(self):
        """(pid, argv) of every agent process started from this lab's agent dirs."""
        prefix = str(self.dir / "agents") + os.sep
        return [
            (pid, argv)
            for pid, _, argv in read_proc_table()
            if argv[0].startswith(prefix) and argv[1:2] == ["agent"]
        ]

    def set_link(self, host, up):
        """Bring a lab host's network link up or down (from inside its namespace)."""
        subprocess.run(
            ["ip", "netns", "exec", self.hosts[host]["netns"], "ip", "link", "set", "eth0",
             "up" if up else "down"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=True,
        )

    def status(self):
        """``vtcluster lab status`` as a CompletedProcess (exit 0 when all hosts are healthy)."""
        return run_bounded(
            [self.binary, "lab", "status", "--dir", str(self.dir)],
        )

    def down(self):
        return run_bounded(
            [self.binary, "lab", "down", "--dir", str(self.dir)],
        )


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A three-host lab (netns + sshd each), shared by the whole session.

    It is torn down after the session, also when tests fail; an atexit
    handler and a SIGTERM handler cover a pytest run that dies early.
    ``vtcluster lab reap`` removes labs whose creator vanished otherwise.
    """
    missing = lab_requirements_missing()
    if missing:
        pytest.skip(f"lab of SSH hosts unavailable: {missing}")
    binary = find_vtcluster()
    if binary is None:
        pytest.skip("vtcluster binary not built: run `make build` or set VTCLUSTER_BIN")
    base = tmp_path_factory.mktemp("lab")
    directory, config = base / "lab", base / "cluster.json"
    up = run_bounded(
        [binary, "lab", "up", "--hosts", str(LAB_HOSTS), "--dir", str(directory),
         "--cluster-config", str(config)],
    )
    down = [binary, "lab", "down", "--dir", str(directory)]

    def teardown():
        subprocess.run(down, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=RUN_TIMEOUT_SECONDS, check=False)

    # Registered before checking the result: a half-built lab is torn down too.
    atexit.register(teardown)
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        # Turn SIGTERM into KeyboardInterrupt so pytest runs its teardowns.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        assert up.returncode == 0, f"vtcluster lab up failed:\n{up.stdout}{up.stderr}"
        yield Lab(binary, directory, config)
    finally:
        result = subprocess.run(down, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=RUN_TIMEOUT_SECONDS, check=False)
        atexit.unregister(teardown)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert result.returncode == 0, f"vtcluster lab down failed:\n{result.stdout}{result.stderr}"


def venv_bin_dir():
    """The bin/ of the venv that has Avocado and the shim: .venv, else ours."""
    candidate = REPO_ROOT / ".venv" / "bin"
    if (candidate / "avocado").exists():
        return candidate
    return Path(sys.executable).parent


@pytest.fixture(scope="session")
def cluster_bin_dir(tmp_path_factory):
    """A directory with vtcluster and avocado-runner-multihost, both the built binary.

    Putting both names next to each other guarantees that Avocado runs the
    same binary as runner as the tests run as CLI, wherever VTCLUSTER_BIN
    points.
    """
    binary = find_vtcluster()
    if binary is None:
        pytest.skip("vtcluster binary not built: run `make build` or set VTCLUSTER_BIN")
    directory = tmp_path_factory.mktemp("bin")
    for name in ("vtcluster", "avocado-runner-multihost"):
        (directory / name).symlink_to(binary)
    return directory


def cluster_env_for(state_dir, bin_dir):
    """Environment overrides: a private cluster state, our binary and the venv first on PATH."""
    return {
        "VTCLUSTER_STATE_DIR": str(state_dir),
        "PATH": os.pathsep.join([str(bin_dir), str(venv_bin_dir()), os.environ.get("PATH", "")]),
    }


@pytest.fixture
def cluster_env(tmp_path, cluster_bin_dir):
    """Environment overrides with VTCLUSTER_STATE_DIR in a fresh tmp dir (nothing registered)."""
    return cluster_env_for(tmp_path / "state", cluster_bin_dir)

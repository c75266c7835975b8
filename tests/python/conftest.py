"""Shared fixtures for the Python tests: the built vtcluster binary and a
way to run the real Avocado 113.0 CLI in isolation.

The tests expect the shim (pyshim/) to be installed in the interpreter that
runs them; ``make py-test`` does that through scripts/venv.sh.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Bound on any single CLI run in the tests; they take seconds, so hitting
#: it means a hang, reported as a failure rather than a stuck test run.
RUN_TIMEOUT_SECONDS = 300


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
        return subprocess.run(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env(env),
            cwd=cwd,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )


@pytest.fixture
def avocado(tmp_path):
    """An :class:`AvocadoCLI` for the interpreter running the tests."""
    return AvocadoCLI(tmp_path)

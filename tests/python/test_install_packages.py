"""scripts/install-packages.sh, which make test, make demo and .ci/run use:
it names what is missing and why, and fails only when asked to."""

import os
import subprocess

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "install-packages.sh"


def run(tmp_path, *args, env_extra=None):
    listing = tmp_path / "packages.txt"
    listing.write_text(
        "# a comment\n"
        "coreutils ls                      # present: never installed again\n"
        "vtc-no-such-pkg vtc-no-such-cmd   # missing\n",
        encoding="utf-8",
    )
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "VTCLUSTER_PACKAGE_LIST": str(listing),
           "VTCLUSTER_INSTALL": "no", **(env_extra or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_missing_package_is_named_with_the_reason_and_is_not_fatal(tmp_path):
    res = run(tmp_path)
    assert res.returncode == 0, res.stderr
    assert "missing vtc-no-such-pkg (VTCLUSTER_INSTALL=no)" in res.stderr
    assert "apt-get install vtc-no-such-pkg" in res.stderr
    assert "coreutils" not in res.stderr
    assert "skipped" in res.stderr


def test_require_fails_when_a_package_cannot_be_installed(tmp_path):
    res = run(tmp_path, "--require")
    assert res.returncode == 1, res.stderr
    assert "missing vtc-no-such-pkg" in res.stderr


def test_only_the_named_packages_are_looked_at(tmp_path):
    res = run(tmp_path, "--require", "coreutils")
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_a_package_not_in_the_list_is_refused(tmp_path):
    res = run(tmp_path, "gcc")
    assert res.returncode == 2
    assert "gcc is not in" in res.stderr and "add it there first" in res.stderr


def test_unusable_apt_gives_the_reason_not_a_failure(tmp_path):
    """An apt-get that fails (held lock, no network): named, not fatal."""
    fake = tmp_path / "bin"
    fake.mkdir()
    apt = fake / "apt-get"
    apt.write_text("#!/bin/sh\necho 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2\nexit 100\n",
                   encoding="utf-8")
    apt.chmod(0o755)
    res = run(tmp_path, env_extra={"VTCLUSTER_INSTALL": "yes", "PATH": f"{fake}:/usr/bin:/bin:/usr/sbin:/sbin"})
    assert res.returncode == 0, res.stderr
    if os.geteuid() == 0:
        assert "apt-get failed: E: Could not get lock" in res.stderr, res.stderr
    else:
        assert "(not root)" in res.stderr, res.stderr

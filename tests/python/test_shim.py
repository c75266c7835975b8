"""Tests of the Avocado shim (pyshim/) against the real Avocado 113.0.

Most tests drive the ``avocado`` CLI of the interpreter running pytest, in
which the shim must be installed. Tests that need a scripted vtcluster
(exact argv, chosen exit codes) use a stand-in executable and say "fake"
in their names; the others use the built binary and skip when it is not
built or lacks the command they need.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT, RUN_TIMEOUT_SECONDS, AvocadoCLI, binary_has_command, run_bounded

from avocado.core.resolver import ReferenceResolutionResult
from avocado_multihost import KIND, binary, bootstrap
from avocado_multihost.resolver import MultihostResolver

#: A spec with two tests (format: runner/spec.go). If ``vtcluster tests list``
#: rejects it, the Go spec format changed and this fixture must follow it.
SPEC = {
    "tests": [
        {
            "name": "ping",
            "tags": ["net", "arch:x86_64"],
            "nodes": {"src": None, "dst": None},
            "body": {"steps": [{"on": "src", "run": ["true"]}]},
        },
        {
            "name": "migrate",
            "tags": ["slow"],
            "nodes": {"src": None, "dst": None},
            "body": {"steps": [{"on": "*", "run": ["true"]}]},
        },
    ]
}

#: Looks like a spec (so the resolver hands it to vtcluster) but is invalid.
BAD_SPEC = {"tests": [{"name": "broken", "nodes": 42, "body": 7}]}

HAS_AVOCADO_VT = importlib.util.find_spec("avocado_vt") is not None
VENV_VT = REPO_ROOT / ".venv-vt"


def write_json(path, data):
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def path_without_multihost_runner():
    """PATH minus directories holding avocado-runner-multihost.

    Without the runner, a job with multihost tests ends right after the
    pre-tests hook with "Could not find runners", instead of waiting for
    nodes that the fake cluster does not have.
    """
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    keep = [
        d
        for d in dirs
        if d and not os.path.exists(os.path.join(d, "avocado-runner-multihost"))
    ]
    return os.pathsep.join(keep)


# A stand-in for vtcluster that records its argv and answers the commands
# the shim uses. Exit codes come from the environment.
FAKE_VTCLUSTER = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    with open(os.environ["FAKE_VTCLUSTER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(sys.argv) + "\\n")
    args = sys.argv[1:]
    while args and args[0] in ("--state-dir", "--cluster"):
        args = args[2:]
    if args[:2] == ["tests", "list"]:
        args = args[:2] + args[args.index("--") + 1:]  # the shim ends options before the path
        listing = []
        with open(args[2], encoding="utf-8") as spec:
            tests = json.load(spec)["tests"]
        for index, test in enumerate(tests):
            if not isinstance(test.get("nodes"), dict):
                print("vtcluster: " + args[2] + ": tests[" + str(index) + "].nodes: "
                      "expected an object", file=sys.stderr)
                sys.exit(1)
            tags = {{}}
            for tag in test.get("tags", []):
                key, _, value = tag.partition(":")
                tags[key] = [value] if value else None
            listing.append({{"file": args[2], "name": test["name"], "uri": args[2],
                             "tags": tags, "nodes": sorted(test["nodes"]), "timeout": 0}})
        print(json.dumps(listing))
        sys.exit(0)
    if args[:1] == ["hooks"]:
        print("fake vtcluster: " + args[1] + " done", file=sys.stderr)
        variable = "FAKE_VTCLUSTER_" + args[1].upper().replace("-", "_") + "_EXIT"
        sys.exit(int(os.environ.get(variable, "0")))
    if args[:1] == ["bootstrap"]:
        print("fake vtcluster: bootstrapped " + args[2])
        sys.exit(int(os.environ.get("FAKE_VTCLUSTER_BOOTSTRAP_EXIT", "0")))
    print("fake vtcluster: unexpected arguments", args, file=sys.stderr)
    sys.exit(2)
    """)


class FakeVtcluster:
    """The stand-in binary, its argv log and the environment it reads."""

    def __init__(self, tmp_path):
        self.path = tmp_path / "fake-bin" / "vtcluster"
        self.path.parent.mkdir()
        self.path.write_text(
            FAKE_VTCLUSTER.format(python=sys.executable), encoding="utf-8"
        )
        self.path.chmod(0o755)
        self.log = tmp_path / "fake-vtcluster.log"
        self.log.touch()
        self.env = {"FAKE_VTCLUSTER_LOG": str(self.log)}

    def calls(self):
        """Every argv the fake was run with, in order."""
        return [
            json.loads(line)
            for line in self.log.read_text(encoding="utf-8").splitlines()
        ]

    def hook_calls(self):
        return [argv for argv in self.calls() if "hooks" in argv]


@pytest.fixture
def fake_vtcluster(tmp_path):
    return FakeVtcluster(tmp_path)


@pytest.fixture
def spec_file(tmp_path):
    return write_json(tmp_path / "spec.json", SPEC)


@pytest.fixture
def binary_with_tests(vtcluster_bin):
    """The built binary, once it has the `tests` command."""
    if not binary_has_command(vtcluster_bin, "tests"):
        pytest.skip(
            "the built vtcluster has no `tests` command yet (`vtcluster tests --help` fails)"
        )
    return vtcluster_bin


@pytest.fixture
def located(monkeypatch):
    """Set the binary the shim located, as if found at import; returns a setter."""

    def set_binary(path):
        monkeypatch.setattr(
            binary, "VTCLUSTER_BIN", None if path is None else str(path)
        )
        monkeypatch.setattr(binary, "LOCATE_DETAIL", "")

    return set_binary


def run_tests_list(vtcluster, spec):
    """`vtcluster tests list SPEC --json`, as it ran (not checked)."""
    return run_bounded(
        [vtcluster, "tests", "list", str(spec), "--json"],
    )


def list_tests(vtcluster, spec):
    """The binary's own listing of spec, or a failure explaining the fixture."""
    result = run_tests_list(vtcluster, spec)
    if result.returncode != 0:
        pytest.fail(
            f"vtcluster tests list rejected the test fixture SPEC (update it to the "
            f"Go spec format): exit {result.returncode}: {result.stderr.strip()}"
        )
    return json.loads(result.stdout)


def as_avocado_tags(tags):
    return {
        key: (None if values is None else set(values)) for key, values in tags.items()
    }


def listed(output):
    """(kind, test name) pairs from `avocado [-V] list` output.

    Only the first table counts; with -V a resolver table follows it after
    a blank line.
    """
    pairs = []
    for line in output.splitlines():
        if not line.strip():
            break
        fields = line.split()
        if fields[0] != "Type" and len(fields) >= 2:
            pairs.append((fields[0], fields[1]))
    return pairs


# --- packaging and registration ---------------------------------------------


def parse_plugins(output):
    """{group: [plugin names]} from `avocado plugins`."""
    groups = {}
    current = None
    for line in output.splitlines():
        header = re.match(r"^Plugins that .*\(([a-z_.]+)\):\s*$", line)
        if header:
            current = groups.setdefault(header.group(1), [])
        elif current is not None and line.strip():
            current.append(line.split()[0])
    return groups


def test_plugins_lists_every_multihost_plugin(avocado):
    result = avocado("plugins")
    assert result.returncode == 0, result.stderr
    groups = parse_plugins(result.stdout)
    for group in ("init", "resolver", "cli", "result_events"):
        assert "multihost" in groups.get(
            group, []
        ), f"no multihost plugin in {group}: {groups.get(group)}"
    assert "vt-bootstrap" in groups.get("cli.cmd", [])
    assert "multihost-run" in groups.get("cli", [])
    assert "avocado_multihost" not in result.stderr  # no load failure of ours


def test_distribution_pins_avocado_and_installs_no_scripts():
    dist = importlib.metadata.distribution("avocado-framework-plugin-multihost")
    assert (
        dist.version
        == (REPO_ROOT / "pyshim" / "VERSION").read_text(encoding="utf-8").strip()
    )
    assert dist.requires == ["avocado-framework==113.0"]
    groups = {entry.group for entry in dist.entry_points}
    assert "console_scripts" not in groups
    assert groups == {
        "avocado.plugins.init",
        "avocado.plugins.resolver",
        "avocado.plugins.cli",
        "avocado.plugins.cli.cmd",
        "avocado.plugins.result_events",
    }
    assert not (Path(sys.executable).parent / "avocado-runner-multihost").exists()


def config_values(output):
    values = {}
    for line in output.splitlines():
        fields = line.strip().split(None, 1)
        if fields and fields[0].startswith("multihost."):
            values[fields[0]] = fields[1] if len(fields) > 1 else ""
    return values


def test_config_shows_multihost_settings_with_defaults(avocado):
    result = avocado("config")
    assert result.returncode == 0, result.stderr
    assert config_values(result.stdout) == {
        "multihost.alloc_timeout": "300",
        "multihost.binary": "",
        "multihost.cluster": "default",
        "multihost.hold_on_failure": "0",
        "multihost.lease": "600",
        "multihost.node_lost_after": "6",
        "multihost.priority": "0",
        "multihost.quarantine_after": "0",
        "multihost.retry_infra": "False",
        "multihost.state": "",
        "multihost.state_dir": "",
    }


def test_config_shows_values_from_config_file(avocado, tmp_path):
    avocado.configure(
        binary="/opt/x/vtcluster",
        state_dir=tmp_path,
        cluster="lab",
        alloc_timeout=42,
        lease=7,
        hold_on_failure="2h",
    )
    values = config_values(avocado("config").stdout)
    assert values["multihost.binary"] == "/opt/x/vtcluster"
    assert values["multihost.state_dir"] == str(tmp_path)
    assert values["multihost.cluster"] == "lab"
    assert values["multihost.alloc_timeout"] == "42"
    assert values["multihost.lease"] == "7"
    assert values["multihost.hold_on_failure"] == "2h"


def test_run_option_sets_hold_on_failure(avocado):
    result = avocado("run", "--help")
    assert result.returncode == 0, result.stderr
    assert "--multihost-hold-on-failure DURATION" in result.stdout


# --- locating the binary -----------------------------------------------------


def test_find_configured_path_must_be_executable(tmp_path):
    script = tmp_path / "vtcluster"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o644)
    path, detail = binary._find(str(script))
    assert path is None
    assert str(script) in detail and "not an executable file" in detail
    script.chmod(0o755)
    assert binary._find(str(script)) == (str(script), "")


def test_find_bare_name_is_looked_up_in_path(tmp_path, monkeypatch):
    script = tmp_path / "my-vtcluster"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert binary._find("my-vtcluster") == (str(script), "")
    path, detail = binary._find("other-vtcluster")
    assert path is None and "not on PATH" in detail
    path, detail = binary._find("")
    assert path is None and detail == "no vtcluster on PATH"


@pytest.mark.parametrize(
    "settings, argv",
    [
        (
            {"multihost.state_dir": "", "multihost.cluster": "default"},
            ["--cluster", "default"],
        ),
        (
            {"multihost.state_dir": "/s", "multihost.cluster": "lab"},
            ["--state-dir", "/s", "--cluster", "lab"],
        ),
        (
            {
                "multihost.state": "etcd://e1:2379,e2:2379/vt",
                "multihost.cluster": "lab",
            },
            ["--state", "etcd://e1:2379,e2:2379/vt", "--cluster", "lab"],
        ),
    ],
)
def test_global_args_select_state_from_settings(settings, argv):
    assert binary.global_args(settings) == argv


# --- resolver ----------------------------------------------------------------


def make_not_ours(tmp_path, name):
    """Files the multihost resolver must leave to other resolvers."""
    path = tmp_path / name
    contents = {
        "exe.sh": "#!/bin/sh\ntrue\n",
        "recipe.json": json.dumps({"kind": "exec-test", "uri": "/bin/true"}),
        "recipes.json": json.dumps([{"kind": "exec-test", "uri": "/bin/true"}]),
        "broken.json": '{"tests": [',
        "empty-tests.json": json.dumps({"tests": []}),
        "no-nodes.json": json.dumps({"tests": [{"name": "x", "command": "true"}]}),
        "scalar-tests.json": json.dumps({"tests": ["a", "b"]}),
        "data.json": json.dumps({"name": "x", "steps": []}),
        "spec.txt": json.dumps(SPEC),
    }
    if name in contents:
        path.write_text(contents[name], encoding="utf-8")
        path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "name",
    [
        "exe.sh",
        "recipe.json",
        "recipes.json",
        "broken.json",
        "empty-tests.json",
        "no-nodes.json",
        "scalar-tests.json",
        "data.json",
        "spec.txt",
        "missing.json",
    ],
)
def test_resolver_not_ours_is_notfound_without_running_binary(tmp_path, located, name):
    # Running this "binary" would fail with OSError and give ERROR, so
    # NOTFOUND also shows that vtcluster was never started.
    located(tmp_path / "absent" / "vtcluster")
    reference = str(make_not_ours(tmp_path, name))
    resolution = MultihostResolver().resolve(reference)
    assert resolution.result == ReferenceResolutionResult.NOTFOUND, resolution.info
    assert not resolution.resolutions


def test_list_plain_executable_stays_exec_test(avocado, tmp_path):
    avocado.configure(binary=tmp_path / "absent" / "vtcluster")
    exe = make_not_ours(tmp_path, "exe.sh")
    result = avocado("-V", "list", str(exe))
    assert result.returncode == 0, result.stderr
    assert listed(result.stdout) == [("exec-test", str(exe))]
    assert re.search(
        r"^multihost\s+\S*exe\.sh\s+.*not a multihost spec", result.stdout, re.M
    )


def test_resolver_binary_missing_is_notfound_with_info(spec_file, located):
    located(None)
    resolution = MultihostResolver().resolve(str(spec_file))
    assert resolution.result == ReferenceResolutionResult.NOTFOUND
    assert resolution.info == "vtcluster binary not found (set multihost.binary)"


def test_list_binary_missing_says_why(avocado, spec_file, tmp_path):
    absent = tmp_path / "absent" / "vtcluster"
    avocado.configure(binary=absent)
    result = avocado("-V", "list", str(spec_file))
    assert listed(result.stdout) == []
    assert "vtcluster binary not found (set multihost.binary)" in result.stdout
    assert str(absent) in result.stdout


def test_resolver_spec_gives_runnable_per_test(binary_with_tests, spec_file, located):
    located(binary_with_tests)
    expected = list_tests(binary_with_tests, spec_file)
    resolution = MultihostResolver().resolve(str(spec_file))
    assert resolution.result == ReferenceResolutionResult.SUCCESS, resolution.info
    assert [r.kwargs["test"] for r in resolution.resolutions] == ["ping", "migrate"]
    for runnable, test in zip(resolution.resolutions, expected):
        assert runnable.kind == KIND
        assert runnable.uri == str(spec_file)
        assert runnable.identifier == f"{spec_file}:{test['name']}"
        assert runnable.kwargs == {"test": test["name"]}
        assert runnable.tags == as_avocado_tags(test["tags"])


def test_resolver_one_test_of_spec(binary_with_tests, spec_file, located):
    located(binary_with_tests)
    resolution = MultihostResolver().resolve(f"{spec_file}:migrate")
    assert resolution.result == ReferenceResolutionResult.SUCCESS, resolution.info
    assert [r.identifier for r in resolution.resolutions] == [f"{spec_file}:migrate"]
    resolution = MultihostResolver().resolve(f"{spec_file}:nosuch")
    assert resolution.result == ReferenceResolutionResult.NOTFOUND
    assert 'no test named "nosuch"' in resolution.info


def test_resolver_invalid_spec_is_corrupt_with_binary_message(
    binary_with_tests, tmp_path, located
):
    bad = write_json(tmp_path / "bad.json", BAD_SPEC)
    direct = run_tests_list(binary_with_tests, bad)
    assert (
        direct.returncode != 0
    ), f"vtcluster accepted an invalid spec: {direct.stdout}"
    located(binary_with_tests)
    resolution = MultihostResolver().resolve(str(bad))
    assert resolution.result == ReferenceResolutionResult.CORRUPT
    assert resolution.info == binary.last_lines(direct.stderr)


def test_list_spec_lists_multihost_tests_and_filters_by_tags(
    binary_with_tests, avocado, spec_file
):
    avocado.configure(binary=binary_with_tests)
    expected = list_tests(binary_with_tests, spec_file)
    result = avocado("list", str(spec_file))
    assert result.returncode == 0, result.stderr
    assert listed(result.stdout) == [
        (KIND, f"{spec_file}:{t['name']}") for t in expected
    ]

    # Filter on a tag only some tests have, taken from the binary's listing.
    tag = sorted(expected[0]["tags"])[0]
    result = avocado("list", "-t", tag, str(spec_file))
    assert listed(result.stdout) == [
        (KIND, f"{spec_file}:{t['name']}") for t in expected if tag in t["tags"]
    ]
    assert len(listed(result.stdout)) < len(expected)


def test_list_spec_and_tag_filter_fake_vtcluster(avocado, fake_vtcluster, spec_file):
    avocado.configure(binary=fake_vtcluster.path, cluster="lab")
    result = avocado("list", str(spec_file), env=fake_vtcluster.env)
    assert result.returncode == 0, result.stderr
    assert listed(result.stdout) == [
        (KIND, f"{spec_file}:ping"),
        (KIND, f"{spec_file}:migrate"),
    ]
    # Listing reads no cluster state, so no --state-dir/--cluster.
    assert fake_vtcluster.calls() == [
        [str(fake_vtcluster.path), "tests", "list", "--json", "--", str(spec_file)]
    ]
    for tag, names in (
        ("net", ["ping"]),
        ("arch:x86_64", ["ping"]),
        ("-net", ["migrate"]),
    ):
        result = avocado(
            "list", f"--filter-by-tags={tag}", str(spec_file), env=fake_vtcluster.env
        )
        assert listed(result.stdout) == [
            (KIND, f"{spec_file}:{name}") for name in names
        ], tag


def test_list_invalid_spec_shows_binary_error_fake_vtcluster(
    avocado, fake_vtcluster, tmp_path
):
    bad = write_json(tmp_path / "bad.json", BAD_SPEC)
    avocado.configure(binary=fake_vtcluster.path)
    result = avocado("-V", "list", str(bad), env=fake_vtcluster.env)
    assert listed(result.stdout) == []
    assert f"vtcluster: {bad}: tests[0].nodes: expected an object" in result.stdout


def test_run_invalid_spec_shows_file_line_column(binary_with_tests, avocado, tmp_path):
    """A typo in a spec shows under a plain `avocado run` where it is (file,
    line, column) and what is wrong, not only "No tests found"."""
    bad = tmp_path / "typo.json"
    bad.write_text(
        '{"tests": [\n'
        '  {"name": "t1",\n'
        '   "nodes": {"src": null},\n'
        '   "timout": 5,\n'
        '   "body": {"command": ["true"]}}\n'
        "]}\n",
        encoding="utf-8",
    )
    avocado.configure(binary=binary_with_tests)
    result = avocado("run", "--job-results-dir", str(avocado.results), str(bad))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"spec {bad}:4:4: tests[0].timout: unknown key" in out, out


# --- vt-bootstrap --------------------------------------------------------------

needs_no_avocado_vt = pytest.mark.skipif(
    HAS_AVOCADO_VT,
    reason="avocado-vt is installed here; its vt-bootstrap is tested through .venv-vt",
)


@needs_no_avocado_vt
def test_vt_bootstrap_without_avocado_vt_reports_binary_error(
    vtcluster_bin, avocado, tmp_path
):
    bad = tmp_path / "no-such-dir" / "cluster.json"
    state = tmp_path / "state"
    avocado.configure(binary=vtcluster_bin, state_dir=state)
    direct = run_bounded(
        [
            vtcluster_bin,
            "--state-dir",
            str(state),
            "--cluster",
            "default",
            "bootstrap",
            "--vt-cluster-config",
            str(bad),
        ],
        env=avocado.env(),
    )
    assert direct.returncode != 0 and direct.stderr.strip()

    result = avocado("vt-bootstrap", "--vt-cluster-config", str(bad))
    assert result.returncode == direct.returncode
    assert direct.stderr.strip() in result.stderr
    if binary_has_command(vtcluster_bin, "bootstrap"):
        assert str(bad) in result.stderr


@needs_no_avocado_vt
def test_vt_bootstrap_without_avocado_vt_passes_flags_fake_vtcluster(
    avocado, fake_vtcluster, tmp_path
):
    config = tmp_path / "cluster.json"
    avocado.configure(
        binary=fake_vtcluster.path, state_dir=tmp_path / "state", cluster="lab"
    )
    result = avocado(
        "vt-bootstrap",
        "--vt-cluster-config",
        str(config),
        "--accept-new-host-keys",
        env=fake_vtcluster.env,
    )
    assert result.returncode == 0, result.stderr
    assert f"fake vtcluster: bootstrapped {config}" in result.stdout
    assert fake_vtcluster.calls() == [
        [
            str(fake_vtcluster.path),
            "--state-dir",
            str(tmp_path / "state"),
            "--cluster",
            "lab",
            "bootstrap",
            "--vt-cluster-config",
            str(config),
            "--accept-new-host-keys",
        ]
    ]


@needs_no_avocado_vt
def test_vt_bootstrap_without_avocado_vt_exit_code_is_binarys_fake_vtcluster(
    avocado, fake_vtcluster, tmp_path
):
    avocado.configure(binary=fake_vtcluster.path)
    env = dict(fake_vtcluster.env, FAKE_VTCLUSTER_BOOTSTRAP_EXIT="3")
    result = avocado(
        "vt-bootstrap", "--vt-cluster-config", str(tmp_path / "c.json"), env=env
    )
    assert result.returncode == 3


@needs_no_avocado_vt
def test_vt_bootstrap_without_cluster_config_is_refused(avocado, fake_vtcluster):
    avocado.configure(binary=fake_vtcluster.path)
    result = avocado("vt-bootstrap", env=fake_vtcluster.env)
    assert result.returncode != 0
    assert "--vt-cluster-config FILE is required" in result.stderr
    assert fake_vtcluster.calls() == []


@needs_no_avocado_vt
def test_vt_bootstrap_binary_missing_says_why(avocado, tmp_path):
    absent = tmp_path / "absent" / "vtcluster"
    avocado.configure(binary=absent)
    result = avocado("vt-bootstrap", "--vt-cluster-config", str(tmp_path / "c.json"))
    assert result.returncode != 0
    assert "vtcluster binary not found (set multihost.binary)" in result.stderr
    assert str(absent) in result.stderr


def test_vt_bootstrap_hook_consumes_option_on_success_fake_vtcluster(
    fake_vtcluster, located, monkeypatch, tmp_path
):
    # In-process half of the avocado-vt hand-over: avocado-vt's
    # VTBootstrap.run receives this same dict after the hook ran.
    located(fake_vtcluster.path)
    monkeypatch.setattr(bootstrap, "_OWNS_COMMAND", False)
    for key, value in fake_vtcluster.env.items():
        monkeypatch.setenv(key, value)
    config = {
        "subcommand": "vt-bootstrap",
        "vt_cluster_config": str(tmp_path / "c.json"),
        "multihost.cluster": "lab",
        "multihost.state_dir": "",
    }
    bootstrap.VTBootstrapHook().run(config)
    assert config["vt_cluster_config"] is None
    assert fake_vtcluster.calls()[0][1:] == [
        "--cluster",
        "lab",
        "bootstrap",
        "--vt-cluster-config",
        str(tmp_path / "c.json"),
    ]

    config = {"subcommand": "run", "vt_cluster_config": "x.json"}
    bootstrap.VTBootstrapHook().run(config)
    assert config["vt_cluster_config"] == "x.json"
    assert len(fake_vtcluster.calls()) == 1


# --- job hooks ---------------------------------------------------------------


def run_job(avocado, fake, *references, env=None):
    job_env = dict(fake.env, PATH=path_without_multihost_runner(), **(env or {}))
    return avocado(
        "run", "--job-results-dir", str(avocado.results), *references, env=job_env
    )


def test_job_hooks_job_without_multihost_tests_never_calls_vtcluster_fake_vtcluster(
    avocado, fake_vtcluster
):
    avocado.configure(binary=fake_vtcluster.path)
    result = run_job(avocado, fake_vtcluster, "/bin/true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake_vtcluster.calls() == []


def test_job_hooks_dry_run_never_calls_hooks_fake_vtcluster(
    avocado, fake_vtcluster, spec_file
):
    # --dry-run turns every runnable into kind "dry-run": no cluster needed.
    avocado.configure(binary=fake_vtcluster.path)
    result = run_job(avocado, fake_vtcluster, "--dry-run", str(spec_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake_vtcluster.calls() != [] and fake_vtcluster.hook_calls() == []


def test_job_hooks_run_around_multihost_tests_fake_vtcluster(
    avocado, fake_vtcluster, spec_file, tmp_path
):
    state = tmp_path / "state"
    avocado.configure(binary=fake_vtcluster.path, state_dir=state, cluster="lab")
    result = run_job(avocado, fake_vtcluster, str(spec_file))
    output = result.stdout + result.stderr
    # No runner on PATH: the job fails after pre-tests, and post-tests still runs.
    assert "Could not find runners" in output
    pre, post = fake_vtcluster.hook_calls()
    job_id, job_logdir = pre[-3], pre[-1]

    def expected(hook):
        return [
            str(fake_vtcluster.path),
            "--state-dir",
            str(state),
            "--cluster",
            "lab",
        ] + [
            "hooks",
            hook,
            "--job-id",
            job_id,
            "--job-logdir",
            job_logdir,
        ]

    assert pre == expected("pre-tests")
    assert post == expected("post-tests")
    assert re.fullmatch(r"[0-9a-f]{40}", job_id)
    assert Path(job_logdir).parent == avocado.results
    job_log = Path(job_logdir, "job.log").read_text(encoding="utf-8")
    assert "vtcluster: fake vtcluster: pre-tests done" in job_log


def test_job_hooks_pre_tests_failure_aborts_job_fake_vtcluster(
    avocado, fake_vtcluster, spec_file
):
    avocado.configure(binary=fake_vtcluster.path)
    result = run_job(
        avocado,
        fake_vtcluster,
        str(spec_file),
        env={"FAKE_VTCLUSTER_PRE_TESTS_EXIT": "3"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert (
        "JobError: multihost: preparing the cluster failed (vtcluster hooks pre-tests "
        "exit status 3): fake vtcluster: pre-tests done" in output
    )
    assert "Could not find runners" not in output
    assert [argv[argv.index("hooks") + 1] for argv in fake_vtcluster.hook_calls()] == [
        "pre-tests",
        "post-tests",
    ]


def test_job_hooks_post_tests_failure_is_warning_only_fake_vtcluster(
    avocado, fake_vtcluster, spec_file
):
    avocado.configure(binary=fake_vtcluster.path)
    clean = run_job(avocado, fake_vtcluster, str(spec_file))
    failing = run_job(
        avocado,
        fake_vtcluster,
        str(spec_file),
        env={"FAKE_VTCLUSTER_POST_TESTS_EXIT": "5"},
    )
    assert failing.returncode == clean.returncode
    assert (
        "multihost: cluster cleanup after the job: vtcluster hooks post-tests exit status 5"
        in failing.stderr
    )
    assert "cluster cleanup" not in clean.stderr


def test_job_hooks_real_binary_without_cluster_do_not_abort_job(
    binary_with_tests, avocado, spec_file, tmp_path
):
    if not binary_has_command(binary_with_tests, "hooks", "pre-tests"):
        pytest.skip("the built vtcluster has no `hooks pre-tests` command yet")
    avocado.configure(binary=binary_with_tests, state_dir=tmp_path / "empty-state")
    result = avocado(
        "run",
        "--job-results-dir",
        str(avocado.results),
        str(spec_file),
        env={"PATH": path_without_multihost_runner()},
    )
    output = result.stdout + result.stderr
    assert "Could not find runners" in output
    assert "preparing the cluster failed" not in output
    assert "cluster cleanup after the job" not in output


# --- with avocado-vt (.venv-vt) ------------------------------------------------


@pytest.fixture
def vt_avocado(tmp_path):
    """An AvocadoCLI for .venv-vt, which has avocado-vt 113.0 and the shim."""
    python = VENV_VT / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{VENV_VT} not present: create it with scripts/venv.sh --vt")
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import avocado_multihost, avocado_vt.plugins.vt_bootstrap",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert (
        check.returncode == 0
    ), f"{VENV_VT} lacks avocado-vt or the shim: {check.stderr}"
    return AvocadoCLI(tmp_path, python=str(python))


def test_vt_bootstrap_with_avocado_vt_extends_its_command(vt_avocado):
    result = vt_avocado("vt-bootstrap", "--help")
    assert result.returncode == 0, result.stderr
    assert "--vt-type" in result.stdout  # avocado-vt's command, not ours
    assert result.stdout.count("--vt-cluster-config CLUSTER_CONFIG\n") == 1
    assert result.stdout.count("--accept-new-host-keys\n") == 1


def test_vt_bootstrap_with_avocado_vt_stops_on_binary_error(
    vtcluster_bin, vt_avocado, tmp_path
):
    bad = tmp_path / "no-such-dir" / "cluster.json"
    vt_avocado.configure(binary=vtcluster_bin, state_dir=tmp_path / "state")
    direct = run_bounded(
        [vtcluster_bin, "--state-dir", str(tmp_path / "state"), "--cluster", "default"]
        + ["bootstrap", "--vt-cluster-config", str(bad)],
        env=vt_avocado.env(),
    )
    assert direct.returncode != 0
    result = vt_avocado("vt-bootstrap", "--vt-cluster-config", str(bad))
    assert result.returncode == direct.returncode
    assert direct.stderr.strip() in result.stderr
    assert "avocado-vt's bootstrap was not run" in result.stderr
    assert "Running bootstrap for" not in result.stdout + result.stderr


# Runs avocado with avocado-vt's bootstrap body replaced by a recorder: the
# real one first checks for qemu, tcpdump and friends, which test machines
# lack, and exits before its cluster step.
RECORDING_AVOCADO = textwrap.dedent("""\
    import json, os, sys
    from virttest import bootstrap

    def record(options, interactive=False):
        with open(os.environ["RECORD_FILE"], "w", encoding="utf-8") as out:
            json.dump({"vt_cluster_config": options.get("vt_cluster_config")}, out)

    bootstrap.bootstrap = record
    from avocado.core.main import main
    sys.exit(main())
    """)


def test_vt_bootstrap_with_avocado_vt_hands_over_fake_vtcluster_fake_upstream_bootstrap(
    vt_avocado, fake_vtcluster, tmp_path
):
    wrapper = tmp_path / "recording_avocado.py"
    wrapper.write_text(RECORDING_AVOCADO, encoding="utf-8")
    record = tmp_path / "record.json"
    config = tmp_path / "cluster.json"
    env = vt_avocado.env(dict(fake_vtcluster.env, RECORD_FILE=str(record)))
    argv = [vt_avocado.python, str(wrapper), "--config", str(vt_avocado.config)]
    argv += ["vt-bootstrap", "--vt-cluster-config", str(config)]

    def run(*extra):
        return run_bounded(
            argv + list(extra),
            env=env,
        )

    # Control: with our CLI plugin disabled, avocado-vt gets the option
    # (and --accept-new-host-keys, which that plugin adds, does not exist).
    vt_avocado.configure(binary=fake_vtcluster.path)
    vt_avocado.write_user_config('[plugins]\ndisable = ["cli.multihost"]\n')
    result = run()
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text(encoding="utf-8")) == {
        "vt_cluster_config": str(config)
    }
    assert fake_vtcluster.calls() == []

    vt_avocado.write_user_config("")
    result = run("--accept-new-host-keys")
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text(encoding="utf-8")) == {"vt_cluster_config": None}
    (call,) = fake_vtcluster.calls()
    assert call[-4:] == [
        "bootstrap",
        "--vt-cluster-config",
        str(config),
        "--accept-new-host-keys",
    ]
    assert f"fake vtcluster: bootstrapped {config}" in result.stdout


def test_venv_script_unknown_argument_fails_loudly():
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "venv.sh"), "--bogus"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode != 0
    assert 'unknown argument "--bogus"' in result.stderr

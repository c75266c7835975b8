"""avocado-runner-multihost as Avocado 113.0 sees it.

First the nrunner interface that Avocado's own selftest checks for every
runner (selftests/functional/nrunner_interface.py), then real ``avocado
run`` jobs of multihost runnable recipes. The tests use zero-node tests
from testdata/multihost/local.json, which need no cluster, so the whole
protocol runs end to end: capabilities probe, task-run argv, status
server, results.

The runner is the built vtcluster binary, put on PATH under the name
avocado-runner-multihost through a symlink in a temporary directory.
"""

import json
import os
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_bounded

SPEC = REPO_ROOT / "testdata" / "multihost" / "local.json"
RECIPES = REPO_ROOT / "testdata" / "nrunner"
RUNNER = "avocado-runner-multihost"


@pytest.fixture
def runner_dir(tmp_path, vtcluster_bin):
    """A directory holding only avocado-runner-multihost -> vtcluster."""
    path = tmp_path / "runner-bin"
    path.mkdir()
    (path / RUNNER).symlink_to(vtcluster_bin)
    return path


def run_runner(runner_dir, *args):
    """Run the runner from the repository root, as the selftest would."""
    return run_bounded(
        [str(runner_dir / RUNNER), *args],
        cwd=REPO_ROOT,
    )


# --- the nrunner interface selftest's expectations ------------------------


def test_help_mentions_capabilities(runner_dir):
    result = run_runner(runner_dir, "--help")
    assert result.returncode == 0
    assert "capabilities" in result.stdout


def test_capabilities_matches_the_selftest_schema(runner_dir):
    """The checks of Avocado's capabilities.schema.json, written out."""
    result = run_runner(runner_dir, "capabilities")
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1  # exactly one JSON document
    caps = json.loads(result.stdout)
    assert set(caps) == {"runnables", "commands", "configuration_used"}
    for key in ("runnables", "commands", "configuration_used"):
        values = caps[key]
        assert isinstance(values, list)
        assert all(isinstance(v, str) for v in values)
        assert len(values) == len(set(values)), f"{key} has duplicates"
    assert caps["runnables"] == ["multihost"]
    assert caps["commands"] == [
        "capabilities",
        "runnable-run",
        "runnable-run-recipe",
        "task-run",
        "task-run-recipe",
    ]
    assert "run.keep_tmp" in caps["configuration_used"]
    # Avocado's own limits are read only to word an interruption.
    assert all(
        k.startswith("multihost.")
        or k in ("run.keep_tmp", "job.run.timeout", "task.timeout.running")
        for k in caps["configuration_used"]
    )


@pytest.mark.parametrize(
    "args,code",
    [
        (["runnable-run"], 0),
        (["runnable-run", "-u", "some_uri"], 0),
        (["runnable-run-recipe"], 2),
        (["task-run"], 2),
        (["task-run", "-i", "some_identifier"], 0),
        (["task-run-recipe"], 2),
    ],
)
def test_exit_codes(runner_dir, args, code):
    result = run_runner(runner_dir, *args)
    assert result.returncode == code, result.stderr
    if code == 0:
        # It ran to the end and said so, even without a test to run.
        assert "'status': 'finished'" in result.stdout
    else:
        assert result.stderr.startswith(f"usage: {RUNNER}")


def test_recipe_commands_with_the_selftest_data_files(runner_dir):
    """The files the selftest looks for: recipe_{runnable,task}_multihost.json."""
    for command, recipe in (
        ("runnable-run-recipe", "recipe_runnable_multihost.json"),
        ("task-run-recipe", "recipe_task_multihost.json"),
    ):
        result = run_runner(runner_dir, command, str(RECIPES / recipe))
        assert result.returncode == 0, result.stderr
        assert "'result': 'pass'" in result.stdout


def test_runnable_run_prints_python_repr(runner_dir):
    """Avocado's functional selftests grep the printed dicts."""
    result = run_runner(runner_dir, "runnable-run", "-u", str(SPEC), "test=fail")
    assert result.returncode == 0
    assert "{'type': 'stdout', 'log': b'going to fail\\n', 'status': 'running'" in result.stdout
    assert "'result': 'fail', 'fail_reason': \"command 'sh' exited with status 3\", 'returncode': 3" in result.stdout


# --- real avocado run jobs ------------------------------------------------


def write_recipe(directory, test):
    """A runnable recipe naming one test of local.json (the shim's resolver
    emits the same Runnable: uri = spec file, kwargs test = name)."""
    path = directory / f"{test}.json"
    recipe = {
        "kind": "multihost",
        "uri": str(SPEC),
        "identifier": f"local.json:{test}",
        "kwargs": {"test": test},
    }
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def avocado_env(avocado, runner_dir):
    return {"PATH": f"{runner_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}


def load_results(avocado):
    latest = avocado.results / "latest"
    return json.loads((latest / "results.json").read_text(encoding="utf-8"))


def test_avocado_run_pass_fail_error(avocado, runner_dir, tmp_path):
    recipes = [write_recipe(tmp_path, t) for t in ("pass", "fail", "missing-body", "bigout")]
    result = avocado(
        "run",
        "--job-results-dir",
        str(avocado.results),
        *map(str, recipes),
        env=avocado_env(avocado, runner_dir),
    )
    assert result.returncode == 1, result.stdout + result.stderr  # FAIL/ERROR bit only
    results = load_results(avocado)
    by_name = {t["name"]: t for t in results["tests"]}
    assert {n: t["status"] for n, t in by_name.items()} == {
        "local.json:pass": "PASS",
        "local.json:fail": "FAIL",
        "local.json:missing-body": "ERROR",
        "local.json:bigout": "PASS",
    }
    assert by_name["local.json:fail"]["fail_reason"] == "command 'sh' exited with status 3"
    assert "not found" in by_name["local.json:missing-body"]["fail_reason"]
    assert results["skip"] == 0 and results["interrupt"] == 0

    logdir = Path(by_name["local.json:pass"]["logdir"])
    stdout = (logdir / "stdout").read_text(encoding="utf-8")
    assert "args: hello\n" in stdout
    assert f"partition file: {logdir / 'partition.json'}\n" in stdout
    assert (logdir / "stderr").read_text(encoding="utf-8") == "to stderr\n"
    debug = (logdir / "debug.log").read_text(encoding="utf-8")
    assert "[stdout] args: hello" in debug
    assert json.loads((logdir / "partition.json").read_text()) == {"id": "", "nodes": {}}

    # 3 MB sent in chunks below Avocado's line limit arrive whole; the last,
    # unterminated line gets the newline Avocado adds to encoded messages.
    big = Path(by_name["local.json:bigout"]["logdir"]) / "stdout"
    expected = "x" * 3000000 + "\nline 1\nline 2\nline 3\nno newline at end\n"
    assert big.read_text(encoding="utf-8") == expected


def process_gone(pid):
    """True when pid is not running (a zombie counts: only its parent can reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_avocado_job_timeout_leaves_no_process_behind(avocado, runner_dir, tmp_path):
    recipe = write_recipe(tmp_path, "sleep")
    result = avocado(
        "run",
        "--job-results-dir",
        str(avocado.results),
        "--job-timeout",
        "3",
        str(recipe),
        env=avocado_env(avocado, runner_dir),
    )
    assert result.returncode & 8, result.stdout + result.stderr  # INTERRUPTED
    test = load_results(avocado)["tests"][0]
    assert test["status"] == "INTERRUPTED"
    assert test["fail_reason"].startswith("Test interrupted")
    # sleeper.sh recorded its own pid and its background child's.
    pids = [int(p) for p in (Path(test["logdir"]) / "pids").read_text().split()]
    assert len(pids) == 2
    leftovers = [pid for pid in pids if not process_gone(pid)]
    for pid in leftovers:
        os.kill(pid, 9)
    assert not leftovers, f"body processes {leftovers} survived the job"


def test_avocado_run_test_timeout_is_interrupted(avocado, runner_dir, tmp_path):
    recipe = write_recipe(tmp_path, "timeout")
    result = avocado(
        "run", "--job-results-dir", str(avocado.results), str(recipe),
        env=avocado_env(avocado, runner_dir),
    )
    assert result.returncode == 8, result.stdout + result.stderr
    test = load_results(avocado)["tests"][0]
    assert test["status"] == "INTERRUPTED"
    assert test["fail_reason"] == "Test interrupted: test timeout of 0.5 s reached"

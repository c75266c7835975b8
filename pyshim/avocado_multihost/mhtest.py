"""Runs one method of a multi-host test class: the Python child of
avocado-runner-multihost.

    python -m avocado_multihost.mhtest FILE Class.method

The runner has reserved the nodes and gives the partition in
$VTCLUSTER_PARTITION_FILE and the test's directory in
$VTCLUSTER_OUTPUT_DIR. This runs setUp, the method and tearDown, logs to
stderr (which the runner puts in the test's logs), and writes the outcome
to $VTCLUSTER_OUTPUT_DIR/multihost-result.json as {"status": "PASS" |
"FAIL" | "ERROR" | "SKIP" | "CANCEL", "fail_reason": ..., "fail_class":
..., "whiteboard": ...}; the runner hands the whiteboard to Avocado. Exit status
0 means the outcome was written, whatever it is; 2 means this program
could not even start the test (the runner then reports ERROR).
"""

import importlib.util
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import traceback
import unittest

from .test import MultiHostTest, TestCancel, TestError, TestFail, TestSkipError
from .vt_cluster.proxy import stop_started_processes

RESULT_FILE = "multihost-result.json"

#: Avocado's own exceptions, recognised by name so that tests may raise
#: them without this module importing Avocado.
_BY_NAME = {
    "TestFail": "FAIL", "TestCancel": "CANCEL", "TestSkipError": "SKIP",
    "TestSkip": "SKIP", "TestError": "ERROR", "TestNotFoundError": "ERROR",
}


class _Interrupted(BaseException):
    """SIGTERM from the runner (timeout or interruption): unwind through tearDown."""


def classify(exc):
    """The Avocado status an exception stands for."""
    if isinstance(exc, TestFail):
        return "FAIL"
    if isinstance(exc, TestCancel):
        return "CANCEL"
    if isinstance(exc, (TestSkipError, unittest.SkipTest)):
        return "SKIP"
    if isinstance(exc, TestError):
        return "ERROR"
    for cls in type(exc).__mro__:
        if cls.__name__ in _BY_NAME:
            return _BY_NAME[cls.__name__]
    if isinstance(exc, AssertionError):
        return "FAIL"
    return "ERROR"


def _reason(stage, exc):
    text = str(exc) if str(exc) not in ("", "None") else type(exc).__name__
    if stage == "test":
        return text
    return f"{stage}: {type(exc).__name__}: {text}"


def _load_class(path, class_name):
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name = "multihost_test_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, MultiHostTest)):
        raise TypeError(f"{path}: {class_name} is not a MultiHostTest class")
    return cls


def run(path, name, partition, output_dir, log):
    """Run test ``Class.method``; return (status, fail_reason, fail_class, whiteboard)."""
    class_name, _, method_name = name.partition(".")
    workdir = tempfile.mkdtemp(prefix="multihost-workdir-")
    outputdir = os.path.join(output_dir, "data")
    os.makedirs(outputdir, exist_ok=True)
    test = None
    status, reason, fail_class = "PASS", None, None

    def record(stage, exc):
        nonlocal status, reason, fail_class
        log.error("%s raised:\n%s", stage, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
        if status == "PASS":
            status, reason, fail_class = classify(exc), _reason(stage, exc), type(exc).__name__
            if stage == "tearDown":
                status = "ERROR"  # the test itself passed; its clean-up did not

    try:
        try:
            cls = _load_class(path, class_name)
            method = getattr(cls, method_name, None)
            if not method_name.startswith("test") or not callable(method):
                raise TestError(f"{class_name} has no test method {method_name!r}")
            test = cls(method_name, partition, outputdir, workdir, log)
        except Exception as exc:  # pylint: disable=broad-except
            record("loading the test", exc)
            return status, reason, fail_class, ""
        log.info("START %s", name)
        setup_ok = False
        interrupted = None
        try:
            try:
                test.setUp()
                setup_ok = True
            except Exception as exc:  # pylint: disable=broad-except
                record("setUp", exc)
            if setup_ok:
                try:
                    getattr(test, method_name)()
                except Exception as exc:  # pylint: disable=broad-except
                    record("test", exc)
        except _Interrupted as exc:
            # The runner's timeout or a signal: clean up, then report it.
            interrupted = exc
            log.error("%s interrupted by %s; running tearDown", name, exc)
        if setup_ok or status != "SKIP":  # a skip in setUp skips the whole test
            try:
                test.tearDown()
            except Exception as exc:  # pylint: disable=broad-except
                record("tearDown", exc)
        if interrupted is not None:
            raise interrupted
        log.info("%s %s%s", status, name, f": {reason}" if reason else "")
        return status, reason, fail_class, str(test.whiteboard or "")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def force_fork_start_method():
    """Make multiprocessing fork, whatever this Python's default: test code
    (avocado-vt's helpers among it) relies on children that inherit the
    test's state, Python 3.14 made forkserver the default on Linux, and
    Avocado and avocado-vt force fork for the same reason."""
    try:
        multiprocessing.set_start_method("fork", force=True)
    except ValueError:
        pass  # a platform without fork: its default is all there is


def main(argv=None):
    force_fork_start_method()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--"]:  # the runner ends options before the names
        argv = argv[1:]
    if len(argv) != 2:
        print("usage: python -m avocado_multihost.mhtest FILE Class.method", file=sys.stderr)
        return 2
    path, name = argv
    output_dir = os.environ.get("VTCLUSTER_OUTPUT_DIR")
    partition_file = os.environ.get("VTCLUSTER_PARTITION_FILE")
    if not output_dir or not partition_file:
        print("mhtest: run by avocado-runner-multihost only ($VTCLUSTER_OUTPUT_DIR and "
              "$VTCLUSTER_PARTITION_FILE are not set)", file=sys.stderr)
        return 2
    try:
        with open(partition_file, encoding="utf-8") as f:
            partition = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"mhtest: $VTCLUSTER_PARTITION_FILE {partition_file}: {exc}", file=sys.stderr)
        return 2

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)-5.5s| %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    log = logging.getLogger("avocado.test")

    def on_term(signum, _frame):
        raise _Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            status, reason, fail_class, whiteboard = run(path, name, partition, output_dir, log)
        except _Interrupted as exc:
            status, reason, fail_class, whiteboard = "INTERRUPTED", f"interrupted by {exc}", None, ""
    finally:
        # Also after an interruption: nothing the test started in the
        # background on its nodes may outlive it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop_started_processes(log)
    result = {"status": status, "fail_reason": reason, "fail_class": fail_class, "whiteboard": whiteboard}
    tmp = os.path.join(output_dir, RESULT_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(output_dir, RESULT_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())

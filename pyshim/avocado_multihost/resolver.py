"""Resolver that turns multi-host spec files and MultiHostTest classes into
``multihost`` runnables."""

import json
import os
import subprocess
import sys

from avocado.core.nrunner.runnable import Runnable
from avocado.core.plugin_interfaces import Resolver
from avocado.core.resolver import ReferenceResolution, ReferenceResolutionResult

from avocado_multihost import KIND, binary
from avocado_multihost import discovery

#: Files larger than this are not read to sniff for a spec.
MAX_SPEC_BYTES = 16 * 1024 * 1024
#: Listing only parses a file; anything slower than this is a hang.
LIST_TIMEOUT_SECONDS = 60


def _is_test_object(value):
    return isinstance(value, dict) and ("nodes" in value or "body" in value)


def looks_like_spec(data):
    """Whether decoded JSON has the shape of a multihost spec.

    A spec is an object with a "tests" array of test objects, or a single
    test object; a test object has "nodes" or "body". Objects with "kind"
    are Avocado runnable recipes and are left to their own resolver.
    """
    if not isinstance(data, dict) or "kind" in data:
        return False
    tests = data.get("tests")
    if isinstance(tests, list):
        return (
            bool(tests)
            and all(isinstance(test, dict) for test in tests)
            and any(_is_test_object(test) for test in tests)
        )
    return _is_test_object(data)


def _split_reference(reference):
    """Return (path, test name or None) for "FILE.json" or "FILE.json:NAME"."""
    if os.path.isfile(reference):
        return reference, None
    path, sep, name = reference.rpartition(":")
    if sep and name and os.path.isfile(path):
        return path, name
    return reference, None


def _sniff(path):
    """Return None if path holds a spec, else why it is not ours."""
    if not path.endswith(".json"):
        return "not a .json file"
    try:
        if os.path.getsize(path) > MAX_SPEC_BYTES:
            return f"larger than {MAX_SPEC_BYTES} bytes"
        with open(path, "rb") as spec_file:
            data = json.loads(spec_file.read())
    except (OSError, ValueError) as details:
        # Invalid JSON may be some other tool's file; not ours to judge.
        return f"not readable as JSON: {details}"
    if not looks_like_spec(data):
        return 'no "tests" array of objects with "nodes"/"body"'
    return None


def _tags(value, where):
    """Convert vtcluster's {"tag": null | [values]} into Avocado's tag dict."""
    if not isinstance(value, dict):
        raise ValueError(
            f'{where}: "tags" is {type(value).__name__}, expected an object'
        )
    tags = {}
    for key, values in value.items():
        if values is None:
            tags[key] = None
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            tags[key] = set(values)
        else:
            raise ValueError(f'{where}: tag "{key}" must be null or a list of strings')
    return tags


def parse_listing(stdout):
    """Parse ``vtcluster tests list --json`` output into (name, tags) pairs.

    :raises ValueError: naming the offending element when the output does
        not follow the contract.
    """
    data = json.loads(stdout)
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array, got {type(data).__name__}")
    tests = []
    for index, item in enumerate(data):
        where = f"element [{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is {type(item).__name__}, expected an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f'{where}: "name" must be a non-empty string')
        tests.append((name, _tags(item.get("tags") or {}, where)))
    return tests


class MultihostResolver(Resolver):
    """Resolves multi-host spec files (JSON) into ``multihost`` runnables.

    A reference is a spec file, ``FILE.json``, or one test in it,
    ``FILE.json:NAME``. The file is only sniffed here; ``vtcluster tests
    list FILE --json`` validates it and lists its tests. Each test becomes::

        Runnable("multihost", uri="FILE.json", identifier="FILE.json:NAME",
                 test="NAME", tags={"tag": None, "key": {"value"}})

    * ``uri``: the spec file, as given in the reference;
    * ``args``: none;
    * ``kwargs``: ``test``, the name of the test inside the spec, which the
      runner (``avocado-runner-multihost``) runs;
    * ``tags``: the test's tags, so ``-t/--filter-by-tags`` works.

    Anything that is not a spec is NOTFOUND, so executables and Avocado's
    own JSON recipes still reach their resolvers. A spec that vtcluster
    rejects is CORRUPT with vtcluster's message (file, line, column and
    what is wrong) as info: Avocado prints a CORRUPT resolution's info as a
    warning under ``avocado run`` too, where an ERROR's shows only under
    ``avocado -V list``. Failing to run vtcluster at all stays ERROR.
    """

    name = "multihost"
    description = "Multi-host test specs (JSON) and MultiHostTest classes, run by vtcluster"

    @staticmethod
    def _result(reference, result, runnables=None, info=None):
        return ReferenceResolution(reference, result, runnables, info=info)

    def resolve(self, reference):
        path, wanted = _split_reference(reference)
        if not os.path.isfile(path):
            return self._result(reference, ReferenceResolutionResult.NOTFOUND)
        if path.endswith(".py"):
            return self._resolve_python(reference, path, wanted)
        reason = _sniff(path)
        if reason is not None:
            info = f"{path}: not a multihost spec: {reason}"
            return self._result(
                reference, ReferenceResolutionResult.NOTFOUND, info=info
            )
        try:
            argv = binary.command("tests", "list", "--json", "--", path, select_state=False)
        except binary.BinaryNotFound as details:
            return self._result(
                reference, ReferenceResolutionResult.NOTFOUND, info=str(details)
            )
        return self._list(reference, path, wanted, argv)

    def _list(self, reference, path, wanted, argv):
        error = ReferenceResolutionResult.ERROR
        try:
            returncode, stdout, stderr = binary.run_captured(argv, LIST_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            info = f"{path}: vtcluster tests list did not finish in {LIST_TIMEOUT_SECONDS}s"
            return self._result(reference, error, info=info)
        except OSError as details:
            return self._result(reference, error, info=f"running {argv[0]}: {details}")
        if returncode != 0:
            message = binary.last_lines(stderr) or f"exit status {returncode}"
            return self._result(reference, ReferenceResolutionResult.CORRUPT, info=message)
        try:
            tests = parse_listing(stdout)
        except ValueError as details:
            info = f"{path}: unexpected output from vtcluster tests list: {details}"
            return self._result(reference, error, info=info)
        if wanted is not None:
            tests = [test for test in tests if test[0] == wanted]
            if not tests:
                info = f'{path}: no test named "{wanted}"'
                return self._result(
                    reference, ReferenceResolutionResult.NOTFOUND, info=info
                )
        if not tests:
            info = f"{path}: the spec has no tests"
            return self._result(
                reference, ReferenceResolutionResult.NOTFOUND, info=info
            )
        runnables = [
            Runnable(KIND, path, identifier=f"{path}:{name}", test=name, tags=tags)
            for name, tags in tests
        ]
        return self._result(reference, ReferenceResolutionResult.SUCCESS, runnables)

    def _resolve_python(self, reference, path, wanted):
        """MultiHostTest classes of a Python file, found without importing it.

        Each ``test*`` method becomes ``Runnable("multihost", uri=FILE.py,
        identifier="FILE.py:Class.method", test="Class.method",
        nodes=[[tag, selectors], ...], timeout=SECONDS, python=<this
        interpreter>)``; a reference ``FILE.py:Class`` selects a class's
        methods, ``FILE.py:Class.method`` one of them.
        """
        try:
            tests = discovery.discover(path)
        except discovery.DiscoveryError as details:
            # Ours, and wrong: shown under avocado run (see the class doc).
            return self._result(reference, ReferenceResolutionResult.CORRUPT, info=str(details))
        except (OSError, SyntaxError, ValueError) as details:
            info = f"{path}: not a Python file with multihost tests: {details}"
            return self._result(reference, ReferenceResolutionResult.NOTFOUND, info=info)
        if wanted is not None:
            tests = [t for t in tests if t["name"] == wanted or t["name"].startswith(wanted + ".")]
        if not tests:
            info = f"{path}: no MultiHostTest test methods" + (f' matching "{wanted}"' if wanted else "")
            return self._result(reference, ReferenceResolutionResult.NOTFOUND, info=info)
        runnables = []
        for test in tests:
            tags = {k: (None if v is None else set(v)) for k, v in test["tags"].items()}
            kwargs = {"test": test["name"], "nodes": test["nodes"], "python": sys.executable}
            if test["timeout"] is not None:
                kwargs["timeout"] = test["timeout"]
            if test["resources"]:
                kwargs["resources"] = test["resources"]
            if test.get("vms"):
                kwargs["vms"] = test["vms"]
            runnables.append(
                Runnable(KIND, path, identifier=f"{path}:{test['name']}", tags=tags, **kwargs)
            )
        return self._result(reference, ReferenceResolutionResult.SUCCESS, runnables)

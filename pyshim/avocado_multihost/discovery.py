"""Finding multi-host test classes in Python files without importing them.

A multi-host test class derives from ``MultiHostTest`` (directly, or
through another class of the same file) and declares in class
attributes what it needs::

    class Transfer(MultiHostTest):
        ''':avocado: tags=net,fast'''
        nodes = {"src": "[{'key': 'arch', 'operator': '==', 'values': 'x86_64'}]", "dst": None}
        timeout = 120
        resources = []   # as a JSON spec's "resources" (the resource manager's)
        vms = []         # as a JSON spec's "vms" (docs/vms.md)

        def test_copy(self): ...

Only literals are read (``ast.literal_eval``), as Avocado's own
instrumented resolver reads its files: nothing of the file runs at
resolve time. Each ``test*`` method (inherited ones from the same file
included) is one test, named ``Class.method``.
"""

import ast
import json

#: Name of the base class the discovery looks for.
BASE = "MultiHostTest"


class DiscoveryError(ValueError):
    """A test class declares something unusable; str() names file, class and key."""


def _base_names(cls):
    for base in cls.bases:
        if isinstance(base, ast.Name):
            yield base.id
        elif isinstance(base, ast.Attribute):
            yield base.attr


def _docstring_tags(node):
    """Avocado's ``:avocado: tags=a,b,key:value`` docstring directives."""
    tags = {}
    doc = ast.get_docstring(node) or ""
    for line in doc.splitlines():
        line = line.strip()
        if not line.startswith(":avocado:"):
            continue
        for directive in line[len(":avocado:"):].split():
            if not directive.startswith("tags="):
                continue
            for tag in directive[len("tags="):].split(","):
                if not tag:
                    continue
                key, _, value = tag.partition(":")
                if value:
                    current = tags.get(key) or []
                    tags[key] = sorted(set(current) | {value})
                else:
                    tags.setdefault(key, None)
    return tags


def _merge_tags(*dicts):
    out = {}
    for d in dicts:
        for key, values in d.items():
            if values is None:
                out.setdefault(key, None)
            else:
                out[key] = sorted(set(out.get(key) or []) | set(values))
    return out


def _class_attrs(path, cls):
    attrs = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value = stmt.target.id, stmt.value
        else:
            continue
        if name not in ("nodes", "timeout", "resources", "vms"):
            continue
        try:
            attrs[name] = ast.literal_eval(value)
        except ValueError as exc:
            raise DiscoveryError(
                f"{path}:{stmt.lineno}: {cls.name}.{name} must be a literal (it is read without importing the file): {exc}"
            ) from None
    return attrs


def _check_nodes(path, cls, nodes):
    if not isinstance(nodes, dict) or not nodes:
        raise DiscoveryError(f'{path}: {cls}.nodes must be a non-empty dict of tag to selectors, e.g. {{"src": None}}')
    out = []
    for tag, selectors in nodes.items():
        if not isinstance(tag, str) or not tag:
            raise DiscoveryError(f"{path}: {cls}.nodes: tag {tag!r} is not a non-empty string")
        if selectors is None:
            selectors = ""
        elif isinstance(selectors, (list, tuple)):
            selectors = json.dumps(list(selectors))
        elif not isinstance(selectors, str):
            raise DiscoveryError(
                f"{path}: {cls}.nodes[{tag!r}] must be None, a selector list or its text, got {type(selectors).__name__}"
            )
        out.append([tag, selectors])
    return out


def discover(path, source=None):
    """The multi-host tests of a Python file, in file order.

    :returns: a list of dicts ``{"name": "Class.method", "nodes": [[tag,
        selectors], ...], "timeout": seconds or None, "tags": {...}, "resources": [...]}``.
    :raises DiscoveryError: for a test class with an unusable declaration.
    :raises SyntaxError, OSError: when the file cannot be read or parsed.
    """
    if source is None:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    tree = ast.parse(source, filename=path)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    # Names the base class goes by in this file: its own, and any alias
    # of "from avocado_multihost[.test] import MultiHostTest as X".
    bases = {BASE}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("avocado_multihost"):
            bases.update(a.asname for a in stmt.names if a.name == BASE and a.asname)
    memo = {}

    def is_test_class(name, seen=()):
        if name in memo:
            return memo[name]
        cls = classes.get(name)
        if cls is None or name in seen:
            return False
        result = any(b in bases or is_test_class(b, seen + (name,)) for b in _base_names(cls))
        memo[name] = result
        return result

    def lineage(cls):
        """cls and its in-file ancestors, nearest first."""
        out, todo = [], [cls]
        while todo:
            c = todo.pop(0)
            if c in out:
                continue
            out.append(c)
            todo.extend(classes[b] for b in _base_names(c) if b in classes)
        return out

    tests = []
    for cls in classes.values():
        if cls.name == BASE or not is_test_class(cls.name):
            continue
        chain = lineage(cls)
        attrs = {}
        for c in reversed(chain):
            attrs.update(_class_attrs(path, c))
        methods = {}
        for c in reversed(chain):
            for stmt in c.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name.startswith("test"):
                    methods[stmt.name] = stmt
        if not methods:
            continue
        if "nodes" not in attrs:
            raise DiscoveryError(f"{path}: {cls.name} has test methods but no nodes = {{tag: selectors}} attribute")
        nodes = _check_nodes(path, cls.name, attrs["nodes"])
        timeout = attrs.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise DiscoveryError(f"{path}: {cls.name}.timeout must be a positive number of seconds, got {timeout!r}")
        resources = attrs.get("resources") or []
        if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
            raise DiscoveryError(f"{path}: {cls.name}.resources must be a list of dicts (as a spec's \"resources\")")
        vms = attrs.get("vms") or []
        if not isinstance(vms, list) or not all(isinstance(v, dict) for v in vms):
            raise DiscoveryError(f"{path}: {cls.name}.vms must be a list of dicts (as a spec's \"vms\")")
        class_tags = _merge_tags(*(_docstring_tags(c) for c in reversed(chain)))
        for name, method in methods.items():
            tests.append({
                "name": f"{cls.name}.{name}",
                "nodes": nodes,
                "timeout": timeout,
                "tags": _merge_tags(class_tags, _docstring_tags(method)),
                "resources": resources,
                "vms": vms,
            })
    return tests

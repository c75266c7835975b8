#!/usr/bin/env python3
"""Generate the fixtures of package agent/py with CPython itself.

values.json    one case a value: the value, type-tagged so Go can rebuild it
               exactly, and what CPython makes of it: repr(), str(),
               type().__name__ and json.dumps() under each option set in
               DUMPS (only for values json.dumps accepts).
floats.json    repr(float) and json.dumps(float) for awkward floats.
literals.json  ast.literal_eval on source text: the tagged value, or the
               exception's type name when Python refuses the text.
loads.json     json.loads on documents: the tagged value (key order kept).

Strings that are not valid UTF-8 travel as the bytes Python's
surrogateescape handler gives back, which is how a Go string holds them.
Run: python3 gen_fixtures.py
"""
import ast
import base64
import json
import math
import os
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))

# Option sets, named as the Go test names them.
DUMPS = {
    "default": {},
    "indent4": {"indent": 4},
    "indent2_sorted": {"indent": 2, "sort_keys": True},
    "compact": {"separators": (",", ":")},
    "utf8": {"ensure_ascii": False},
}


def tag(v):
    if v is None:
        return {"t": "None"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, int):
        return {"t": "int", "v": str(v)}
    if isinstance(v, float):
        return {"t": "float", "v": v.hex()}
    if isinstance(v, str):
        return {"t": "str", "b": base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()}
    if isinstance(v, bytes):
        return {"t": "bytes", "b": base64.b64encode(v).decode()}
    if isinstance(v, (list, tuple)):
        return {"t": "list", "v": [tag(x) for x in v]}
    if isinstance(v, dict):
        return {"t": "dict", "v": [[k, tag(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def se(b):
    """A str holding bytes that are not UTF-8, as a Go string would."""
    return b.decode("utf-8", "surrogateescape")


VALUES = {
    "none": None,
    "true": True,
    "false": False,
    "int_zero": 0,
    "int_neg": -42,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "float_one": 1.0,
    "float_third": 1 / 3,
    "float_neg_zero": -0.0,
    "float_small": 1e-05,
    "float_big": 1e16,
    "float_nan": float("nan"),
    "float_inf": float("inf"),
    "float_ninf": float("-inf"),
    "str_empty": "",
    "str_plain": "hello world",
    "str_single": "it's",
    "str_double": 'say "hi"',
    "str_both": "it's \"both\"",
    "str_controls": "a\bb\fc\nd\re\tf\x00g\x1fh\x7fi\x80j\xa0k",
    "str_backslash": "back\\slash",
    "str_unicode": "caf\u00e9 \u65e5\u672c \U0001F600 \u2028 \u00ad \ufeff",
    "str_private": "\ue000\U000f0000",
    "str_invalid_utf8": se(b"ok\xff\xfe"),
    "bytes_empty": b"",
    "bytes_mixed": b"\x00\x01 it's \"q\" \\ \t\n\r\x7f\x80\xff",
    "bytes_single": b"it's",
    "list_empty": [],
    "list_mixed": [1, "two", 3.0, None, True, [7, [8, []]], {}],
    "dict_empty": {},
    "dict_ordered": {"z": 1, "a": [1, 2, {"y": None, "b": 2.5}], "m": {}, "k": "v"},
    "dict_nested_deep": {"a": {"b": {"c": {"d": [[[]], [{}]]}}}},
    "dict_unicode_keys": {"\u00e9": 1, "\n": 2, "\U0001F600": 3},
    "list_with_bytes": [b"x", 1],
}

FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1 / 3, 2 / 3, 100.0, 123456789.0,
    1e15, 1e16, 1.5e16, 9007199254740993.0, 1e22, 1e23, 1e-4, 1e-5, 0.00012345,
    1.2345e-5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    12345678901234.5, 0.30000000000000004, 1e100, -1.5e-7, 3.14159,
    float("nan"), float("inf"), float("-inf"),
]

LITERALS = [
    "'abc'", '"a\\tb"', "'\\x41\\u00e9'", "'\\101'", "'\\777'", "'\\q'", "r'\\q'",
    "'a' 'b'", "'''x\ny'''", "-1", "- 1", "+1", "--1", "1_000", "0x1F", "0o17",
    "0b101", "00", "007", "1.", ".5", "1e3", "1_0.5e1_0", "09.5", "09", "1__0",
    "1_", "1e", "0e0", "-0.0", "[1,]", "(1,)", "()", "(1)", "{}",
    "{'a': (1, [2.5, None])}", "[True, False, None]", "1+2", "foo", "true",
    "[1 2]", "-True", "[1,,2]", "{'a' 1}", "[1, # c\n 2]", "\\\n1", " 1", "1\n",
    "{'b': 1, 'a': 2}", "u'x'", "R'\\n'", "'\\U0001F600'", "'\\N{BULLET}'",
    "9223372036854775807", "-9223372036854775808",
    # Accepted by Python but outside the model: Go must refuse them.
    "{1, 2}", "b'x'", "1j", "1e400", "{1: 2}", "'\\ud800'", "99999999999999999999",
]

# The one deviation: \N{...} needs Unicode's name table.
LITERAL_DEVIATIONS = {"'\\N{BULLET}'"}

LOADS = [
    '{"b": 1, "a": [1.5, -0, 1e2, "x"], "c": {"d": null, "e": true}}',
    '[1, 2.0, -3, 1E400]',
    '"\\u00e9\\ud83d\\ude00"',
    '{"a": 1, "a": 2}',
    '9223372036854775807',
    '12345678901234567890',
]


def fits(v):
    """Whether v is inside the Go model (int64, finite floats, str keys)."""
    if v is None or isinstance(v, (bool, str)):
        return not (isinstance(v, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in v))
    if isinstance(v, int):
        return -2**63 <= v < 2**63
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return all(fits(e) for e in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and fits(e) for k, e in v.items())
    return False


def value_case(v):
    # str() is tagged: it may hold surrogates, which JSON cannot carry.
    out = {"value": tag(v), "repr": repr(v), "str": tag(str(v)), "type": type(v).__name__, "dumps": {}}
    for name, kw in DUMPS.items():
        try:
            s = json.dumps(v, **kw)
        except (TypeError, ValueError) as e:
            s = {"error": type(e).__name__}
        # Invalid UTF-8 is U+FFFD in Go's JSON (a lone surrogate in a JSON
        # document breaks most readers), so Python's output is not the oracle.
        if isinstance(s, str) and "\\udc" in s.lower() or isinstance(s, str) and any(0xDC80 <= ord(c) <= 0xDCFF for c in s):
            continue
        out["dumps"][name] = s
    return out


def dump(name, data):
    with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="") as f:
        json.dump(data, f, indent=1, ensure_ascii=True)
        f.write("\n")


def main():
    dump("values.json", {k: value_case(v) for k, v in VALUES.items()})
    dump("floats.json", [{"value": f.hex(), "repr": repr(f), "dumps": json.dumps(f)} for f in FLOATS])
    lits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in LITERALS:
            try:
                v = ast.literal_eval(s)
            except Exception as e:
                lits.append({"src": s, "error": type(e).__name__})
                continue
            if not fits(v) or s in LITERAL_DEVIATIONS:
                lits.append({"src": s, "error": "outside the model"})
            else:
                lits.append({"src": s, "value": tag(v)})
    dump("literals.json", lits)
    loads = []
    for s in LOADS:
        v = json.loads(s)
        loads.append({"doc": s, "value": tag(v)} if fits(v) else {"doc": s, "error": "outside the model"})
    dump("loads.json", loads)


if __name__ == "__main__":
    main()

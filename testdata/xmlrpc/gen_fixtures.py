#!/usr/bin/env python3
"""Generate XML-RPC fixtures with CPython's own xmlrpc.client.

Every case is written three ways:
  <case>.call.xml      xmlrpc.client.dumps(params, "test.method", allow_none=True)
  <case>.response.xml  xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True)
  <case>.json          the value, type-tagged, so Go can rebuild it exactly
Decode-only cases (documents Python parses but never writes, such as <i8>)
go to decode_<case>.xml with decode_<case>.json, the value Python read.

Dict keys are emitted sorted because the Go encoder sorts map keys; order
preserved structs are tested separately. Run: python3 gen_fixtures.py
"""
import base64
import datetime
import json
import os
import xmlrpc.client as xc

HERE = os.path.dirname(os.path.abspath(__file__))


def tag(v):
    if v is None:
        return {"t": "nil"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, int):
        return {"t": "int", "v": str(v)}
    if isinstance(v, float):
        return {"t": "float", "v": repr(v)}
    if isinstance(v, str):
        return {"t": "str", "v": v}
    if isinstance(v, (bytes, bytearray)):
        return {"t": "bytes", "v": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, xc.Binary):
        return {"t": "bytes", "v": base64.b64encode(v.data).decode()}
    if isinstance(v, datetime.datetime):
        return {"t": "datetime", "v": v.strftime("%Y%m%dT%H:%M:%S")}
    if isinstance(v, (list, tuple)):
        return {"t": "list", "v": [tag(x) for x in v]}
    if isinstance(v, dict):
        return {"t": "dict", "v": [[k, tag(x)] for k, x in v.items()]}
    raise TypeError(type(v))


def sorted_dicts(v):
    if isinstance(v, dict):
        return {k: sorted_dicts(v[k]) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [sorted_dicts(x) for x in v]
    return v


CASES = {
    "nil": None,
    "true": True,
    "false": False,
    "int_zero": 0,
    "int_neg": -42,
    "int32_max": 2**31 - 1,
    "int32_min": -(2**31),
    "float_simple": 1.5,
    "float_small": 1e-05,
    "float_big": 1e16,
    "float_frac": 12345678901234.5,
    "float_neg_zero": -0.0,
    "float_int": 3.0,
    "float_third": 1 / 3,
    "float_inf": float("inf"),
    "float_ninf": float("-inf"),
    "string_empty": "",
    "string_ascii": "hello world",
    "string_escape": "a < b && c > d \"quoted\" 'single'",
    "string_unicode": "caf\u00e9 \u65e5\u672c \U0001F600",
    "string_newlines": "line1\nline2\ttab",
    "bytes_empty": b"",
    "bytes_small": b"\x00\x01\xff binary",
    "bytes_long": bytes(range(256)) * 2,
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "list_empty": [],
    "list_mixed": [1, "two", 3.0, None, True, b"six", [7, [8]]],
    "dict_empty": {},
    "dict_nested": {"a": 1, "b": {"c": [1, 2, {"d": None}]}, "name<&>": "x"},
    "job_data": {"exc_type": "ValueError", "exc_value": "bad", "tb_info": "Traceback\n"},
}

DECODE_ONLY = {
    # Python reads these forms though it never writes them.
    "i8_big": ("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><i8>21474836480</i8></value>\n</param>\n</params>\n</methodResponse>\n", None),
    "i4": ("<?xml version='1.0'?>\n<methodResponse><params><param><value><i4>7</i4></value></param></params></methodResponse>", None),
    "bare_string": ("<?xml version='1.0'?>\n<methodResponse><params><param><value>bare text</value></param></params></methodResponse>", None),
    "empty_value": ("<?xml version='1.0'?>\n<methodResponse><params><param><value/></param></params></methodResponse>", None),
    "namespaced_nil": ("<?xml version='1.0'?>\n<methodResponse xmlns:ex='http://ws.apache.org/xmlrpc/namespaces/extensions'><params><param><value><ex:nil/></value></param></params></methodResponse>", None),
    "empty_struct_array": ("<?xml version='1.0'?>\n<methodResponse><params><param><value><array><data><value><struct/></value><value><array><data/></array></value></data></array></value></param></params></methodResponse>", None),
    "biginteger": ("<?xml version='1.0'?>\n<methodResponse><params><param><value><biginteger>-9223372036854775808</biginteger></value></param></params></methodResponse>", None),
}


def write(name, data):
    with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="") as f:
        f.write(data)


def main():
    for name, value in CASES.items():
        value = sorted_dicts(value)
        write(name + ".call.xml", xc.dumps((value,), "test.method", allow_none=True))
        write(name + ".response.xml", xc.dumps((value,), methodresponse=True, allow_none=True))
        # Python's reader is the oracle for the expected value.
        (read,), _ = xc.loads(xc.dumps((value,), methodresponse=True, allow_none=True), use_builtin_types=True)
        write(name + ".json", json.dumps(tag(read), indent=1, sort_keys=True) + "\n")
    for name, (doc, _) in DECODE_ONLY.items():
        (read,), _ = xc.loads(doc, use_builtin_types=True)
        write("decode_" + name + ".xml", doc)
        write("decode_" + name + ".json", json.dumps(tag(read), indent=1, sort_keys=True) + "\n")
    fault = json.dumps({"exc_type": "ValueError", "exc_value": "port must be 1..65535", "tb_info": "Traceback (most recent call last):\n  x\nValueError: port\n"})
    write("fault.response.xml", xc.dumps(xc.Fault(1, fault), methodresponse=True, allow_none=True))
    write("fault.json", json.dumps({"code": 1, "string": fault}, indent=1) + "\n")
    # A call with several params and none at all, as ServerProxy sends them.
    write("multi.call.xml", xc.dumps(("127.0.0.1", 8888, None), "core.start_log_redirection", allow_none=True))
    write("noargs.call.xml", xc.dumps((), "core.is_alive", allow_none=True))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerate the log-frame fixtures in this directory.

Each ``<case>.bin`` holds one or more frames exactly as avocado-vt's agent
puts them on the wire to the controller's LoggerServer: a 4-byte big-endian
unsigned length, then ``json.dumps`` of the record dict. The records are real
``logging.LogRecord`` objects, formatted by a ``logging.Formatter`` first (that
is what gives them ``asctime``), and the dict is built the way upstream's
socket handler builds it: a fixed list of record attributes in a fixed order,
``msg`` replaced by ``getMessage()``, ``args`` set to None, ``exc_info`` turned
into ``traceback.format_exception`` lines and ``stack_info`` added only when
set.

``tolerant_*.bin`` are NOT upstream-shaped: they hold records a looser sender
could produce (the whole ``record.__dict__``, or no ``asctime``) and check that
decoders accept them.

``float_repr.txt`` lists ``<IEEE-754 bits in hex> <json.dumps(float)>`` so the
Go encoder's float formatting can be checked against Python's over many
values.

Everything is deterministic: times, thread and process ids are fixed, local
time is forced to UTC, and tracebacks come from code compiled under a fixed
file name. Run with any Python 3 (stdlib only):

    python3 testdata/logframes/gen_logframes.py
"""

import json
import logging
import os
import random
import struct
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))

# avocado-vt's agent log format; formatting with it sets record.asctime.
AGENT_FORMAT = "%(asctime)s %(name)s %(levelname)-5.5s| %(message)s"

# The record attributes upstream sends, in the order it sends them.
UPSTREAM_KEYS = (
    "name", "levelno", "levelname", "pathname", "filename", "module",
    "lineno", "funcName", "created", "asctime", "thread", "threadName",
    "process", "msg", "args",
)

SERVICE_PATH = "/usr/lib/python3/site-packages/avocado_vt/agent/services/demo.py"
THREAD_ID = 140245301585728
PROCESS_ID = 4242
BASE_TIME = 1763775795.1784096


def make_record(name, level, msg, args=(), *, path=SERVICE_PATH, lineno=42,
                func="emit", created=BASE_TIME, exc_info=None, sinfo=None,
                thread_name="MainThread"):
    """A real LogRecord, with the run-dependent attributes pinned."""
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, level, path, lineno, msg, args, exc_info,
                               func=func, sinfo=sinfo)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    record.thread = THREAD_ID
    record.threadName = thread_name
    record.process = PROCESS_ID
    logging.Formatter(AGENT_FORMAT).format(record)
    return record


def upstream_dict(record):
    """The dict avocado-vt's socket handler sends for a formatted record."""
    data = {key: getattr(record, key) for key in UPSTREAM_KEYS}
    data["msg"] = record.getMessage()
    data["args"] = None
    if record.exc_info:
        data["exc_info"] = traceback.format_exception(*record.exc_info)
    if record.stack_info:
        data["stack_info"] = record.stack_info
    return data


def frame(data):
    body = json.dumps(data).encode("utf-8")
    return struct.pack(">L", len(body)) + body


def write_case(case, dicts):
    with open(os.path.join(HERE, case + ".bin"), "wb") as out:
        for data in dicts:
            out.write(frame(data))


# Tracebacks come from code compiled under a fixed, nonexistent file name so
# they are the same on every machine (linecache finds no source to quote).
_FAILING_SOURCE = '''
import sys

def parse(value):
    return int(value)

def load(value):
    try:
        return parse(value)
    except ValueError as exc:
        raise RuntimeError("cannot load %r \u2192 \u00e9t\u00e9 \U0001F600" % value) from exc

def capture(value, chained):
    try:
        if chained:
            load(value)
        parse(value)
    except Exception:
        return sys.exc_info()
'''


def exc_info_for(value, chained):
    namespace = {}
    code = compile(_FAILING_SOURCE, "/srv/vt_agent/services/failing.py", "exec")
    exec(code, namespace)  # noqa: S102 - fixed source above, not input
    return namespace["capture"](value, chained)


def cases():
    svc = "avocado.service.demo"
    yield "basic", [make_record("avocado.service.emit", logging.INFO, "svc hello %d", (5,))]

    yield "levels", [
        make_record(svc, level, "level %s", (logging.getLevelName(level),), lineno=10 + i,
                    created=BASE_TIME + i)
        for i, level in enumerate((logging.DEBUG, logging.INFO, logging.WARNING,
                                   logging.ERROR, logging.CRITICAL))
    ]

    yield "unicode", [
        make_record(svc, logging.INFO, "quotes \" and \\ backslash, tab\tnl\ncr\rbs\bff\f"),
        make_record(svc, logging.INFO, "controls \x00\x01\x1f del\x7f nbsp\xa0 end"),
        make_record(svc, logging.WARNING, "bmp \u00e9\u4e2d\u6587 \u2028\u2029 \ufeff \uffff"),
        make_record(svc, logging.INFO, "astral \U0001F600 \U00010000 \U0010FFFF"),
        make_record("avocado.service.\u00fcnicode", logging.INFO, "html </script> & <b>",
                    path="/srv/\u00fcn\u00efcode/svc.py", func="f\u00fcnc"),
        make_record(svc, logging.INFO, "args %s %r %d%%", ("\u00e9", "\U0001F600", 7)),
        make_record(svc, logging.INFO, "", thread_name="Thread-1 (worker)"),
    ]

    yield "exception", [
        make_record(svc, logging.ERROR, "plain failure", exc_info=exc_info_for("x", False)),
        make_record(svc, logging.ERROR, "chained failure \u00e9",
                    exc_info=exc_info_for("\U0001F600", True)),
    ]

    yield "stack_info", [
        make_record(svc, logging.WARNING, "with a stack",
                    sinfo='Stack (most recent call last):\n  File "/srv/a.py", line 1, in <module>\n    main()'),
    ]

    yield "long", [make_record(svc, logging.DEBUG, "long %s", ("0123456789abcdef\u00e9" * 8192,))]

    yield "created", [
        make_record(svc, logging.INFO, "created %r", (c,), created=c)
        for c in (BASE_TIME, 1000000000.0, 1763775795.000001, 1763775795.1,
                  1763775795.999999, 0.001, 1763775795.5, 2147483647.875)
    ]

    # A looser sender: every attribute of the record, known or not.
    rec = make_record(svc, logging.ERROR, "whole dict %s", ("x",), exc_info=exc_info_for("y", False))
    whole = dict(rec.__dict__)
    whole["msg"] = rec.getMessage()
    whole["args"] = None
    whole["relativeCreated"] = 1234.5  # time since logging was imported: pinned
    whole["exc_info"] = traceback.format_exception(*rec.exc_info)
    whole["extra_map"] = {"b": [1, 2.5, None, True], "a": "\u00e9"}
    yield "tolerant_dict", [whole]

    no_asctime = upstream_dict(make_record(svc, logging.INFO, "no asctime"))
    del no_asctime["asctime"]
    yield "tolerant_noasctime", [no_asctime]


def float_values():
    rng = random.Random(20261122)
    values = [0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 1e-4, 1e-5, 1.5e-5, 9.999e-5,
              1e15, 1e16, 1e17, 123456789012345.6, 1234567890123456.0,
              12345678901234567.0, 9007199254740993.0, 2.0 ** 53, 2.0 ** -1074,
              2.2250738585072014e-308, 1.7976931348623157e308, 1e22, 1e23,
              5e-324, 0.3, 2.0 / 3.0, float("inf"), float("-inf"), float("nan"),
              BASE_TIME, 1763775795.0, 1763775795.1]
    for _ in range(2000):
        values.append(rng.uniform(1.5e9, 1.9e9))
    for _ in range(2000):
        bits = rng.getrandbits(64)
        values.append(struct.unpack(">d", struct.pack(">Q", bits))[0])
    for exp in range(-30, 30):
        values.append(rng.random() * 10.0 ** exp)
    return values


def write_float_repr():
    with open(os.path.join(HERE, "float_repr.txt"), "w", encoding="ascii") as out:
        out.write("# <float64 bits, hex> <json.dumps(value)>; written by gen_logframes.py\n")
        for value in float_values():
            bits = struct.unpack(">Q", struct.pack(">d", value))[0]
            out.write("%016x %s\n" % (bits, json.dumps(value)))


def main():
    os.environ["TZ"] = "UTC"
    time.tzset()
    for case, records in cases():
        write_case(case, [r if isinstance(r, dict) else upstream_dict(r) for r in records])
    write_float_repr()
    return 0


if __name__ == "__main__":
    sys.exit(main())

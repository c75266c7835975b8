"""Log frames as avocado-vt's controller reads them.

The reader here decodes a stream the way avocado-vt's LoggerServer does (a
``>L`` length, ``json.loads`` of the body, ``logging.makeLogRecord`` of the
dict) and formats upstream's unified line. It checks:

* the fixtures ``testdata/logframes/*.bin`` written by ``gen_logframes.py``;
* ``testdata/logframes/go_streamer.bin``, frames captured from a real Go
  LogStreamer (regenerate with ``go test ./agent -run TestLogStreamer_goldenCapture
  -update-logframes``): they must decode and be exactly what ``json.dumps``
  writes for the same dict.

Run as a script, ``python test_logframes.py serve COUNT`` listens on a free
loopback port, prints ``{"port": N}``, reads COUNT records from the first
connection and prints a JSON summary of them; the Go test
``TestLogStreamer_PythonReader`` drives a real LogStreamer against it. Script
mode needs only the standard library.
"""

import json
import logging
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path

FRAMES_DIR = Path(__file__).resolve().parents[2] / "testdata" / "logframes"

#: The keys upstream's agent sends, in order; exc_info/stack_info are optional.
UPSTREAM_KEYS = [
    "name", "levelno", "levelname", "pathname", "filename", "module", "lineno",
    "funcName", "created", "asctime", "thread", "threadName", "process", "msg", "args",
]
ASCTIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}$")

#: Seconds any socket operation may take in script mode before it gives up.
SERVE_TIMEOUT = 60


class TruncatedFrame(EOFError):
    """The stream ended inside a frame."""


def read_exactly(stream, size):
    """Read size bytes; fewer only at the end of the stream."""
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def iter_frames(stream):
    """Yield (body, dict, LogRecord) per frame until a clean end of stream."""
    while True:
        head = read_exactly(stream, 4)
        if not head:
            return
        if len(head) < 4:
            raise TruncatedFrame("stream ended inside a frame header")
        (length,) = struct.unpack(">L", head)
        body = read_exactly(stream, length)
        if len(body) < length:
            raise TruncatedFrame(f"stream ended {length - len(body)} bytes short of a frame")
        data = json.loads(body.decode("utf-8"))
        yield body, data, logging.makeLogRecord(data)


def unified_line(tag, ip, record):
    """The line upstream's LoggerServer logs for a record."""
    return f"{tag}({ip}) {record.asctime} {record.name} {record.levelname} | {record.msg}"


def summarize(body, data, record, ip):
    return {
        "keys": list(data),
        "name": record.name,
        "levelno": record.levelno,
        "levelname": record.levelname,
        "pathname": record.pathname,
        "filename": record.filename,
        "module": record.module,
        "lineno": record.lineno,
        "funcName": record.funcName,
        "created": record.created,
        "asctime": record.asctime,
        "msg": record.msg,
        "message": record.getMessage(),
        "exc_info": data.get("exc_info"),
        "redump_identical": json.dumps(data).encode("utf-8") == body,
        "unified": unified_line("node1", ip, record),
    }


def serve(count):
    """Script mode: accept one connection, summarize COUNT records, print JSON."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(SERVE_TIMEOUT)
        print(json.dumps({"port": server.getsockname()[1]}), flush=True)
        conn, (ip, _) = server.accept()
        with conn:
            conn.settimeout(SERVE_TIMEOUT)
            records = []
            for body, data, record in iter_frames(conn.makefile("rb")):
                records.append(summarize(body, data, record, ip))
                if len(records) >= count:
                    break
    print(json.dumps({"records": records}), flush=True)
    return 0


def upstream_shaped(path):
    return not path.name.startswith("tolerant_")


def test_fixtures_decode_like_upstream():
    import pytest

    files = sorted(FRAMES_DIR.glob("*.bin"))
    assert len(files) >= 8, f"fixtures missing in {FRAMES_DIR}"
    for path in files:
        with path.open("rb") as stream:
            frames = list(iter_frames(stream))
        assert frames, path.name
        for body, data, record in frames:
            if upstream_shaped(path):
                assert list(data)[: len(UPSTREAM_KEYS)] == UPSTREAM_KEYS, path.name
                assert json.dumps(data).encode("utf-8") == body, path.name
            assert record.args is None
            if "asctime" not in data:
                # Upstream's receiver cannot print such a record; our Go
                # decoder rebuilds asctime from created instead.
                with pytest.raises(AttributeError):
                    unified_line("n1", "10.0.0.1", record)
                continue
            assert ASCTIME_RE.match(record.asctime), (path.name, record.asctime)
            assert unified_line("n1", "10.0.0.1", record).startswith("n1(10.0.0.1) ")


def test_go_streamer_capture():
    path = FRAMES_DIR / "go_streamer.bin"
    with path.open("rb") as stream:
        frames = list(iter_frames(stream))
    summaries = [summarize(b, d, r, "127.0.0.1") for b, d, r in frames]
    assert [s["levelname"] for s in summaries] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "INFO"]
    assert [s["levelno"] for s in summaries] == [10, 20, 30, 40, 50, 20]
    for s in summaries:
        assert s["redump_identical"], s
        assert s["keys"][: len(UPSTREAM_KEYS)] == UPSTREAM_KEYS, s["keys"]
        assert ASCTIME_RE.match(s["asctime"]), s["asctime"]
        assert isinstance(s["created"], float)
        assert s["filename"] == "logstream_test.go" and s["module"] == "logstream_test"
        assert s["lineno"] > 0
        assert s["message"] == s["msg"]  # args is None: nothing left to format
    assert summaries[0]["name"] == "avocado.service.process"
    assert summaries[2]["msg"] == 'unicode \u00e9 \u4e2d\u6587 \U0001F600 "quoted" \\ back\tslash'
    assert summaries[3]["exc_info"] == [
        "Traceback (most recent call last):\n",
        '  File "x.py", line 1, in <module>\n',
        "ValueError: bad\n",
    ]
    assert summaries[5]["name"] == "avocado.virttest.qemu"
    assert summaries[5]["msg"] == "booted vm.name=vm1"
    assert summaries[1]["unified"].startswith("node1(127.0.0.1) ")
    assert summaries[1]["unified"].endswith(" avocado.service.process INFO | started process argv=\"[sleep 1]\"")


def test_reader_rejects_truncated_streams():
    import pytest

    body = json.dumps({"name": "x", "msg": "m", "args": None}).encode()
    frame = struct.pack(">L", len(body)) + body
    for cut in (2, 4, len(frame) - 1):
        with pytest.raises(TruncatedFrame):
            list(iter_frames(_Bytes(frame[:cut])))
    assert len(list(iter_frames(_Bytes(frame * 3)))) == 3


def test_serve_mode_reads_fixture_frames():
    """The script mode the Go test relies on, driven with fixture frames."""
    frames = (FRAMES_DIR / "levels.bin").read_bytes()
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", "5"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        port = json.loads(proc.stdout.readline())["port"]
        with socket.create_connection(("127.0.0.1", port), timeout=SERVE_TIMEOUT) as conn:
            for i in range(0, len(frames), 7):  # odd-sized writes split frames
                conn.sendall(frames[i:i + 7])
        out, _ = proc.communicate(timeout=SERVE_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    records = json.loads(out)["records"]
    assert [r["levelname"] for r in records] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    assert all(r["redump_identical"] for r in records)
    assert records[0]["unified"] == (
        "node1(127.0.0.1) 2025-11-22 01:43:15,178 avocado.service.demo DEBUG | level DEBUG"
    )


class _Bytes:
    """A stream that returns at most 3 bytes per read, like a slow socket."""

    def __init__(self, data):
        self._data = data

    def read(self, size):
        chunk, self._data = self._data[: min(size, 3)], self._data[min(size, 3):]
        return chunk


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        sys.exit(serve(int(sys.argv[2])))
    print(f"usage: {sys.argv[0]} serve COUNT", file=sys.stderr)
    sys.exit(2)

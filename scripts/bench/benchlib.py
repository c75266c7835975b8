"""Shared helpers of rpc_bench.py and log_bench.py: servers as child
processes, their memory and CPU from /proc, the loop over repeats, loads and
servers, medians, and the JSON report."""

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run could not be made (a server did not start, a tool failed)."""


def free_port():
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    """VmRSS, VmHWM, RssAnon and RssFile of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(val.split()[0])
    return out


def proc_cpu_seconds(pid):
    """User+system CPU seconds of the whole process (all threads, including
    threads that have exited)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # The command name may contain spaces; fields resume after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def machine():
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model}


class Server:
    """A server child process with its output in files, stopped by SIGTERM
    (then SIGKILL) on stop() or when the with-block ends."""

    def __init__(self, argv, port, workdir, env=None, stdout_path=None, pid_file=None):
        self.argv = argv
        self.port = port
        self.pid_file = pid_file
        self.stdout_path = stdout_path or os.path.join(workdir, "stdout")
        self.stderr_path = os.path.join(workdir, "stderr")
        self.env = env
        self.proc = None
        self.exit_code = None

    def __enter__(self):
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.env
            )
        try:
            self._wait_ready(timeout=20)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self):
        return self.proc.pid

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.argv[0]} exited with {self.proc.returncode} before listening; "
                    f"stderr: {self.stderr_tail()}"
                )
            if self.pid_file is None or os.path.exists(self.pid_file):
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise BenchError(f"{' '.join(self.argv)} did not listen on port {self.port} within {timeout}s")

    def stderr_tail(self, n=400):
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        return self.exit_code


def run_tool(argv, timeout, env=None):
    """Run a load generator and return its JSON line."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{argv[0]} did not finish within {timeout}s") from exc
    if cp.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {cp.returncode}: {cp.stderr.strip()}")
    try:
        return json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise BenchError(f"{argv[0]} printed no JSON result: {cp.stdout!r}") from exc


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    """(min, max) of the values, to show the noise next to a median."""
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def select(runs, server, key, value):
    """The runs of one server at one load (key: "clients", "conns")."""
    return [r for r in runs if r["server"] == server and r[key] == value]


def rows_by_load(runs, servers, key, values, stats):
    """A row per load value: {key: value, server: stats(its runs at that
    value) for each server}."""
    rows = []
    for value in values:
        row = {key: value}
        for name in servers:
            row[name] = stats(select(runs, name, key, value))
        rows.append(row)
    return rows


def medians(runs, *fields):
    """The median of each field over the runs, keyed by the field."""
    return {f: median([r[f] for r in runs]) for f in fields}


def covered(runs, servers, key, values):
    """Whether every server has at least one run at every load."""
    return all(select(runs, s, key, v) for s in servers for v in values)


def parse_args(p, argv):
    """Parse argv with p's own options and those every side-by-side
    benchmark takes."""
    p.add_argument("--go-label", default=None, help="how the table names ours")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write every run and the summary here")
    p.add_argument("--workdir", help="keep the servers' files here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    if args.seconds > 20 or args.seconds <= 0:
        p.error("--seconds must be in (0, 20]")
    return args


def int_list(text):
    """A comma-separated list of counts ("1,4,16")."""
    return [int(c) for c in text.split(",")]


@contextlib.contextmanager
def workdir(path, prefix):
    """path, or a temporary directory removed at the end when path is None."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield tmp


def run_matrix(tool, servers, key, values, repeats, one_run, progress, check=None, skip=None):
    """Run one_run(server, value, repeat) for every repeat, load value and
    server, the servers' order reversed every other repeat so that drift in
    the machine's load does not favour one. progress(rec) is the rest of the
    line printed after each run, check(rec) the failures it shows (a server
    that did not exit 0 on SIGTERM always is one). Returns (runs, failures)."""
    width = max(len(s) for s in servers)
    runs, failures = [], []
    for repeat in range(repeats):
        order = servers if repeat % 2 == 0 else servers[::-1]
        for value in values:
            for name in order:
                if skip is not None and skip(name, value):
                    continue
                where = f"{name} {key}={value} repeat={repeat}"
                try:
                    rec = one_run(name, value, repeat)
                except BenchError as exc:
                    failures.append(f"{where}: {exc}")
                    print(f"{tool}: {failures[-1]}", file=sys.stderr)
                    continue
                runs.append(rec)
                print(f"{tool}: {name:{width}} {key}={value:<2} repeat={repeat} {progress(rec)}",
                      file=sys.stderr, flush=True)
                for msg in check(rec) if check is not None else ():
                    failures.append(f"{where}: {msg}")
                if rec["exit_code"] != 0:
                    failures.append(f"{where}: server exited with {rec['exit_code']} on SIGTERM: "
                                    f"{rec['stderr_tail']}")
    return runs, failures


def finish(tool, args, go_label, runs, summary, failures):
    """Write the JSON report (--json), name the failures; the exit code."""
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine(), "go_label": go_label, "args": vars(args),
                       "runs": runs, "summary": summary, "failures": failures}, f, indent=1)
    for msg in failures:
        print(f"{tool}: FAILED: {msg}", file=sys.stderr)
    return 1 if failures else 0

#!/usr/bin/env bash
# Per-test wall time under real `avocado run`: a one-node multihost test
# (allocate, log redirection, one step on the node through its agent,
# collect, release) against exec-test of /bin/true, in the same run. Each
# job runs N tests one at a time; we report the job wall time per test, the
# mean time_elapsed Avocado records and, for the multihost tests, the
# median of each stage of the breakdown every test writes to its
# timing.json (runner/timing.go). The two kinds of job alternate, REPEATS
# times each, so that drift in the machine's load does not favour one.
#
#   scripts/bench/avocado_walltime.sh [N [REPEATS [JSON]]]   (root; uses a one-host lab)
#
# Defaults: N=20, REPEATS=1; JSON, when given, receives every job and the
# medians. WALLTIME_WORK keeps the work directory (results, lab) there.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
n=${1:-20}
repeats=${2:-1}
json=${3:-}
[ -x bin/vtcluster ] || make build >/dev/null
[ -x .venv/bin/avocado ] || bash scripts/venv.sh >/dev/null
work=${WALLTIME_WORK:-$(mktemp -d /tmp/vtcluster-walltime.XXXXXX)}
mkdir -p "$work"
export VTCLUSTER_STATE_DIR=$work/state PATH="$root/bin:$root/.venv/bin:$PATH"
trap 'vtcluster agents stop >/dev/null 2>&1 || true; vtcluster lab down --dir "$work/lab" >/dev/null || true' EXIT
vtcluster lab up --hosts 1 --dir "$work/lab" --cluster-config "$work/cluster.json" >/dev/null
vtcluster bootstrap --vt-cluster-config "$work/cluster.json" --accept-new-host-keys >/dev/null 2>&1
vtcluster agents start >/dev/null 2>&1

python3 - "$work/spec.json" "$n" <<'PY'
import json, sys
tests = [{"name": f"t{i}", "nodes": {"n": None}, "body": {"steps": [{"on": "n", "run": ["true"]}]}} for i in range(int(sys.argv[2]))]
json.dump({"tests": tests}, open(sys.argv[1], "w"))
PY
refs=()
for i in $(seq "$n"); do refs+=(/bin/true); done

runs=$work/runs.jsonl
: >"$runs"
measure() { # name, repeat, avocado args...
	local name=$1 rep=$2
	shift 2
	local t0 t1 dir=$work/results-$name-$rep
	t0=$(date +%s.%N)
	avocado run --max-parallel-tasks 1 --job-results-dir "$dir" "$@" >/dev/null 2>&1 || true
	t1=$(date +%s.%N)
	python3 - "$name" "$t0" "$t1" "$n" "$dir/latest" "$runs" <<'PY'
import glob, json, os, sys
name, t0, t1, n, latest, runs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
r = json.load(open(os.path.join(latest, "results.json")))
el = [t["time_elapsed"] for t in r["tests"]]
ok = sum(1 for t in r["tests"] if t["status"] == "PASS")
spans = {}
for f in glob.glob(os.path.join(latest, "test-results", "*", "timing.json")):
    for s in json.load(open(f))["spans"]:
        spans.setdefault(s["name"], []).append(s["ms"])
rec = {"kind": name, "tests": n, "passed": ok, "job_wall_per_test_ms": (t1 - t0) / n * 1000,
       "mean_time_elapsed_ms": sum(el) / len(el) * 1000, "loadavg": open("/proc/loadavg").read().split()[:3],
       "stage_ms": spans}
open(runs, "a").write(json.dumps(rec) + "\n")
print(f"{name:10s} tests={n} pass={ok} job_wall_per_test={rec['job_wall_per_test_ms']:7.1f} ms  "
      f"mean_time_elapsed={rec['mean_time_elapsed_ms']:7.1f} ms  load {' '.join(rec['loadavg'])}")
PY
}
for rep in $(seq "$repeats"); do
	if [ $((rep % 2)) = 1 ]; then
		measure exec-test "$rep" "${refs[@]}"
		measure multihost "$rep" "$work/spec.json"
	else
		measure multihost "$rep" "$work/spec.json"
		measure exec-test "$rep" "${refs[@]}"
	fi
done

python3 - "$runs" "$json" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(kind, key):
    return statistics.median(r[key] for r in runs if r["kind"] == kind)
stages = {}
for r in runs:
    if r["kind"] == "multihost":
        for k, v in r["stage_ms"].items():
            stages.setdefault(k, []).extend(v)
summary = {
    "exec_test_per_test_ms": med("exec-test", "job_wall_per_test_ms"),
    "multihost_per_test_ms": med("multihost", "job_wall_per_test_ms"),
    "exec_test_time_elapsed_ms": med("exec-test", "mean_time_elapsed_ms"),
    "multihost_time_elapsed_ms": med("multihost", "mean_time_elapsed_ms"),
    "stage_median_ms": {k: statistics.median(v) for k, v in stages.items()},
    "all_passed": all(r["passed"] == r["tests"] for r in runs),
}
summary["ratio"] = summary["multihost_per_test_ms"] / summary["exec_test_per_test_ms"]
print(f"per test: multihost {summary['multihost_per_test_ms']:.0f} ms / exec-test {summary['exec_test_per_test_ms']:.0f} ms"
      f" = {summary['ratio']:.2f}x; one test's time_elapsed {summary['multihost_time_elapsed_ms']:.0f} ms")
print("multihost stages (median ms): " + "; ".join(f"{k} {v:.1f}" for k, v in summary["stage_median_ms"].items()))
if sys.argv[2]:
    json.dump({"runs": runs, "summary": summary}, open(sys.argv[2], "w"), indent=1)
PY

#!/usr/bin/env bash
# Per-test wall time under real `avocado run`: a one-node multihost test
# (allocate, log redirection, one step on the node through its agent,
# collect, release) against exec-test of /bin/true. Each job runs N tests
# so Avocado's own start-up is shared; we report the job wall time per
# test and the mean time_elapsed Avocado records.
#
#   scripts/bench/avocado_walltime.sh [N]      (root; uses a one-host lab)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
n=${1:-20}
[ -x bin/vtcluster ] || make build >/dev/null
[ -x .venv/bin/avocado ] || bash scripts/venv.sh >/dev/null
work=${WALLTIME_WORK:-$(mktemp -d /tmp/vtcluster-walltime.XXXXXX)}
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

measure() { # name, avocado args...
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  avocado run --max-parallel-tasks 1 --job-results-dir "$work/results-$name" "$@" >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  python3 - "$name" "$t0" "$t1" "$n" "$work/results-$name/latest/results.json" <<'PY'
import json, sys
name, t0, t1, n, path = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.load(open(path))
el = [t["time_elapsed"] for t in r["tests"]]
ok = sum(1 for t in r["tests"] if t["status"] == "PASS")
print(f"{name:10s} tests={n} pass={ok} job_wall_per_test={(t1-t0)/n*1000:7.1f} ms  mean_time_elapsed={sum(el)/len(el)*1000:7.1f} ms")
PY
}
measure exec-test "${refs[@]}"
measure multihost "$work/spec.json"

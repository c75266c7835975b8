#!/usr/bin/env bash
# The VM migration test under `avocado run` against the same steps done by
# a plain script with QEMU and ip netns (plain_migration.sh), in the same
# run, alternating, BENCH_REPEATS times (default 3). Prints each wall time,
# the medians and the ratio against the issue's targets: avocado run within
# 1.5x of the plain script and under 30 s. The avocado side is one
# `avocado run examples/vm-migration.json` on a two-host lab registered
# beforehand (scripts/vm-lab.sh + vt-bootstrap, timed apart: a lab is set
# up once for many tests); the plain side sets up and removes its own two
# namespaces each time. A missed target is reported, not an error; a failed
# run is. Needs root, QEMU, make build and make venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
repeats=${BENCH_REPEATS:-3}
export PATH="$root/bin:$root/.venv/bin:$PATH"
[ -x bin/vtcluster ] && [ -x .venv/bin/avocado ] || { echo "bench: run make build and make venv first" >&2; exit 1; }
guest=$(bash scripts/guest.sh)

work=$(mktemp -d /tmp/vtcluster-vmbench.XXXXXX)
export VTCLUSTER_STATE_DIR=$work/state
cleanup() {
  vtcluster agents stop >/dev/null 2>&1 || true
  bash scripts/vm-lab.sh down "$work" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$(now)" -v b="$1" "BEGIN { printf \"%.2f\", a - b }"; }

t=$(now)
config=$(bash scripts/vm-lab.sh up "$work" 2>/dev/null)
avocado vt-bootstrap --vt-cluster-config "$config" --accept-new-host-keys >/dev/null
setup=$(since "$t")

plain=() avo=() tests=()
for i in $(seq "$repeats"); do
  t=$(now)
  bash scripts/bench/plain_migration.sh "$guest" 2>/dev/null
  plain+=("$(since "$t")")
  t=$(now)
  avocado run --job-results-dir "$work/results" examples/vm-migration.json >/dev/null ||
    { echo "bench: avocado run failed: $(readlink -f "$work/results/latest")/job.log" >&2; exit 1; }
  avo+=("$(since "$t")")
  tests+=("$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tests"][0]; print(round(t.get("time") or t.get("time_elapsed") or t["end"] - t["start"], 2))' "$work/results/latest/results.json")")
  echo "run $i: plain ${plain[-1]} s, avocado run ${avo[-1]} s (test ${tests[-1]} s)"
done
python3 - "$setup" "${plain[*]}" "${avo[*]}" "${tests[*]}" <<'PY'
import statistics, sys
setup = float(sys.argv[1])
plain, avo, test = ([float(x) for x in a.split()] for a in sys.argv[2:5])
p, a, t = statistics.median(plain), statistics.median(avo), statistics.median(test)
print(f"\nVM live migration, {len(plain)} runs each (medians; lab up + vt-bootstrap once: {setup:.1f} s)")
print(f"  plain QEMU + ip netns script      {p:6.1f} s")
print(f"  avocado run examples/vm-migration {a:6.1f} s   (the test itself {t:.1f} s)")
print(f"  ratio avocado/plain               {a / p:6.2f}   target <= 1.5: {'met' if a / p <= 1.5 else 'MISSED'}")
print(f"  avocado run under 30 s                      target: {'met' if a < 30 else 'MISSED'}")
PY

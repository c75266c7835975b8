#!/usr/bin/env bash
# The VM part of make demo (docs/vms.md): on a two-host lab whose hosts
# have a bridge br0 (scripts/vm-lab.sh), `avocado run` of
# examples/vm-migration.json: a guest on a qcow2 pool volume with a tap on
# each node's bridge is live-migrated from src to dst. Skipped, saying why,
# when QEMU or the guest's ingredients are missing. Needs root, bin/ and
# .venv/bin on PATH (demo.sh sets them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "== VM live migration between lab hosts (docs/vms.md)"
for tool in qemu-system-x86_64 qemu-img qemu-io busybox apt-get; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "demo: skipping the VM migration: $tool not found (install qemu-system-x86, qemu-utils and busybox-static: scripts/system-packages.txt)"
    exit 0
  fi
done
if ! guest=$(bash scripts/guest.sh); then
  echo "demo: skipping the VM migration: scripts/guest.sh could not build the guest (see above)"
  exit 0
fi
echo "   guest: $guest"

work=$(mktemp -d /tmp/vtcluster-vmdemo.XXXXXX)
export VTCLUSTER_STATE_DIR=$work/state
# The work dir is removed at the end unless KEEP=1, as demo.sh does.
. scripts/lib/demo-cleanup.sh
demo_cleanup_on_exit "$work" bash scripts/vm-lab.sh down "$work"

config=$(bash scripts/vm-lab.sh up "$work")
avocado vt-bootstrap --vt-cluster-config "$config" --accept-new-host-keys >/dev/null
set +e
avocado run --job-results-dir "$work/results" examples/vm-migration.json
rc=$?
set -e
job=$(readlink -f "$work/results/latest")
python3 - "$job" <<'PY'
import glob, json, sys
job = sys.argv[1]
res = json.load(open(f"{job}/results.json"))
t = res["tests"][0]
print(f"  {t['name']}: {t['status']}" + (f" {t.get('fail_reason')}" if t['status'] != 'PASS' else ''))
for f in glob.glob(f"{job}/test-results/*/vm-migrations.json"):
    for m in json.load(open(f))["migrations"]:
        print(f"  vm {m['vm']} {m['from']} ({m['from_node']}) -> {m['to']} ({m['to_node']}): "
              f"{m['status']}, total {m['total_time_ms']} ms, downtime {m['downtime_ms']} ms, {m['transferred']} bytes")
if t["status"] != "PASS":
    sys.exit("demo: the VM migration test did not pass")
PY
[ "$rc" = 0 ] || { echo "demo: avocado exited $rc" >&2; exit 1; }
echo "   consoles and QMP event logs: $job/test-results/*/cluster/<tag>/vm1.*"

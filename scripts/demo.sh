#!/usr/bin/env bash
# make demo: the main job end to end on a local embedded cluster.
#
# Makes a three-host lab (network namespaces, each with its own address
# and its own sshd), writes its cluster JSON, runs
# `avocado vt-bootstrap --vt-cluster-config`, then `avocado run` of the
# examples, checks each test's result, prints where results and per-node
# logs are, and tears the lab down on every path.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces and sshd)" >&2; exit 1; }
# The lab's part of the one package list (the demo needs no etcd or QEMU).
bash scripts/install-packages.sh --require openssh-server openssh-client iproute2 iputils-ping
[ -x bin/vtcluster ] || make build
[ -x .venv/bin/avocado ] || bash scripts/venv.sh

work=$(mktemp -d /tmp/vtcluster-demo.XXXXXX)
export VTCLUSTER_STATE_DIR=$work/state   # never touch the user's own cluster state
export PATH="$root/bin:$root/.venv/bin:$PATH"
# The work dir is removed at the end unless KEEP=1 (make demo KEEP=1).
. scripts/lib/demo-cleanup.sh
demo_cleanup_on_exit "$work" vtcluster lab down --dir "$work/lab"

echo "== making a three-host lab in $work/lab"
vtcluster lab up --hosts 3 --dir "$work/lab" --cluster-config "$work/cluster.json"
cat "$work/cluster.json"

echo "== avocado vt-bootstrap --vt-cluster-config $work/cluster.json"
avocado vt-bootstrap --vt-cluster-config "$work/cluster.json" --accept-new-host-keys

echo "== avocado run examples/network.json"
set +e
avocado run --job-results-dir "$work/results" examples/network.json
rc=$?
set -e
job=$(readlink -f "$work/results/latest")

echo "== checking the results"
python3 - "$job/results.json" <<'PY'
import json, sys
want = {"ping": "PASS", "tcp-transfer": "PASS", "every-node": "PASS", "no-such-node": "ERROR"}
res = json.load(open(sys.argv[1]))
got = {t["name"].rsplit(":", 1)[-1]: t["status"] for t in res["tests"]}
bad = {k: (v, got.get(k)) for k, v in want.items() if got.get(k) != v}
for t in res["tests"]:
    reason = t.get("fail_reason") if t["status"] != "PASS" else ""
    print(f"  {t['name']}: {t['status']}  {reason or ''}".rstrip())
if bad:
    sys.exit(f"demo: unexpected results (want, got): {bad}")
PY
# Avocado exits 1 because one example errors on purpose.
[ "$rc" = 1 ] || { echo "demo: avocado exited $rc, want 1 (one test errors on purpose)" >&2; exit 1; }

echo
echo "== results: $job"
[ "${KEEP:-0}" = 1 ] || echo "   (removed when the demo ends; make demo KEEP=1 keeps them)"
echo "   per-test node logs:  $job/test-results/*/cluster/<tag>/"
echo "   per-node agent logs: $job/cluster/<node>/"
echo "   node log lines in the ping test's debug.log (upstream's unified format):"
grep -h ") [0-9-]* [0-9:,]* avocado\." "$job"/test-results/*_ping/debug.log | head -4 | sed 's/^/     /' || true

# The VM live migration, on a lab of its own (it says why when it skips).
bash scripts/demo-vm.sh
echo "demo: ok"

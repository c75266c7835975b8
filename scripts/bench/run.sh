#!/usr/bin/env bash
# Compare vtcluster with its baselines on this machine, every baseline in
# the same run (`make bench-compare`; docs/performance.md): per-test wall
# time under `avocado run` against exec-test of /bin/true, with each test's
# stage breakdown (avocado_walltime.sh, as root: it uses a one-host lab);
# partition create + release on 1,024 nodes against 16, on the file store
# and on etcd (alloc_bench.py); agent RPC calls/s and memory against a
# Python SimpleXMLRPCServer+ThreadingMixIn agent (pyagent.py) and, at 1 and
# 16 clients, against a bare net/http server answering a fixed reply
# (floor/main.go); log ingest records/s and server CPU per record against
# upstream's own LoggerServer. Prints the machine, a table per benchmark and
# at the end every goal of issue 18 with its ratio (summary.py), and the
# load average sampled while they ran. The agent measured is the one
# deployed to nodes: bin/vtcluster-agent (make build makes it), else
# bin/vtcluster.
#
#   scripts/bench/run.sh            3 repeats of 5 s per point (about 10 minutes)
#   scripts/bench/run.sh --quick    1 repeat of 2 s per point, to check the harness
#
# Environment: BENCH_REPEATS, BENCH_SECONDS, BENCH_CLIENTS (e.g. 1,4,16),
# BENCH_CONNS, BENCH_TESTS (tests per avocado job, default 20),
# BENCH_OUT (directory for the JSON results, default bin/bench),
# PYTHON (interpreter for the Python agent and the venv, default python3).
# Exits non-zero when a run fails (a server does not start, a call fails, our
# log server loses a record); a missed target is reported, not an error.
# Everything listens on 127.0.0.1 only.
set -euo pipefail

die() {
	echo "bench: $*" >&2
	exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || die "cannot find the repository root"
cd "$root"
here=scripts/bench
repeats=${BENCH_REPEATS:-3}
seconds=${BENCH_SECONDS:-5}
case ${1:-} in
--quick)
	repeats=${BENCH_REPEATS:-1}
	seconds=${BENCH_SECONDS:-2}
	;;
"") ;;
*) die "unknown argument \"$1\" (see the comment at the top of $here/run.sh)" ;;
esac
tests=${BENCH_TESTS:-20}
[ "${1:-}" = --quick ] && tests=${BENCH_TESTS:-5}
clients=${BENCH_CLIENTS:-1,4,16}
conns=${BENCH_CONNS:-1,4,16}
out=${BENCH_OUT:-$root/bin/bench}
python=${PYTHON:-python3}
go=${GO:-go}

mkdir -p "$out"
echo "bench: building"
make --no-print-directory build >/dev/null || die "make build failed"
for tool in rpcload logload floor; do
	CGO_ENABLED=0 "$go" build -trimpath -o "$out/$tool" "$here/$tool/main.go" ||
		die "building $here/$tool failed"
done

# Upstream's LoggerServer comes from its own package, in a venv of ours.
venv=$root/$here/.venv
vt_spec='avocado-framework-plugin-vt==113.0'
probe_home=$(mktemp -d)
state=$(mktemp -d)
trap 'rm -rf -- "$probe_home" "$state"' EXIT
if ! HOME=$probe_home "$venv/bin/python" -c 'import virttest.vt_cluster.logger' 2>/dev/null; then
	echo "bench: installing $vt_spec into $venv"
	rm -rf -- "$venv"
	"$python" -m venv "$venv" || die "creating $venv failed"
	# avocado 113.0 reads entry points through pkg_resources.
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$vt_spec" 'setuptools<81' ||
		die "installing $vt_spec failed"
	HOME=$probe_home "$venv/bin/python" -c 'import virttest.vt_cluster.logger' ||
		die "virttest.vt_cluster.logger does not import from $venv"
fi
# Nodes run the lean agent build; measure that one when it is there.
agent_bin=$root/bin/vtcluster-agent
[ -x "$agent_bin" ] || agent_bin=$root/bin/vtcluster

# "vtcluster logs serve" reads the registered nodes: give it an empty state.
export VTCLUSTER_STATE_DIR=$state

echo "bench: machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
echo "bench: $("$go" version | cut -d' ' -f3-), $("$python" --version 2>&1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench: $repeats repeat(s) of ${seconds}s per point; clients $clients; log connections $conns"

# The machine's load while everything runs, for the record.
: >"$out/loadavg.txt"
(while :; do cut -d' ' -f1-3 /proc/loadavg >>"$out/loadavg.txt"; sleep 2; done) &
sampler=$!
trap 'kill "$sampler" 2>/dev/null; rm -rf -- "$probe_home" "$state"' EXIT

status=0
rm -f "$out/avocado.json" "$out/alloc.json"
if [ "$(id -u)" = 0 ]; then
	echo "bench: avocado run, $tests one-node one-step tests against $tests exec-tests of /bin/true, $repeats time(s) each"
	bash "$here/avocado_walltime.sh" "$tests" "$repeats" "$out/avocado.json" || status=1
else
	echo "bench: avocado run per test: skipped (the one-host lab needs root)"
fi
"$python" "$here/alloc_bench.py" --go "$go" --repeats "$repeats" --iterations 30 --json "$out/alloc.json" || status=1
"$python" "$here/rpc_bench.py" --rpcload "$out/rpcload" \
	--go-agent "$agent_bin agent" --go-label "$(basename "$agent_bin") agent" --python "$python" \
	--floor "$out/floor" --floor-clients 1,16 \
	--clients "$clients" --seconds "$seconds" --repeats "$repeats" --json "$out/rpc.json" || status=1
"$python" "$here/log_bench.py" --logload "$out/logload" \
	--go-server "$root/bin/vtcluster logs serve" --go-label "vtcluster logs serve" \
	--upstream-python "$venv/bin/python" \
	--conns "$conns" --seconds "$seconds" --repeats "$repeats" --json "$out/log.json" || status=1

"$python" "$here/summary.py" "$out"
echo "bench: end load average $(cut -d' ' -f1-3 /proc/loadavg); every run is in $out/{avocado,alloc,rpc,log}.json"
[ "$status" = 0 ] || die "a run failed (see the FAILED lines above)"

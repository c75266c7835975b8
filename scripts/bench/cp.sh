#!/usr/bin/env bash
# vtcluster cp against scp, side by side in the same run, on a one-host
# lab (needs root): one file of random data (300 MiB by default) up to the
# node and back, alternating scp and cp each round so that load changes
# hit both alike. Prints each time and the median ratio cp/scp per
# direction (the target of issue 21: at most 1.2). cp keeps its SHA-256
# check; scp has none.
#
#   scripts/bench/cp.sh                 5 rounds of 300 MiB
#   BENCH_ROUNDS=3 BENCH_MIB=100 scripts/bench/cp.sh
#
# Everything it starts (the lab's sshd, namespaces) is stopped at the end,
# and its work directory removed.
set -euo pipefail

die() {
	echo "bench-cp: $*" >&2
	exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || die "cannot find the repository root"
rounds=${BENCH_ROUNDS:-5}
mib=${BENCH_MIB:-300}
[ "$(id -u)" = 0 ] || die "the lab needs root"
make --no-print-directory -C "$root" build >/dev/null || die "make build failed"
vtc=$root/bin/vtcluster
work=$(mktemp -d /tmp/bench-cp.XXXXXX)
cleanup() {
	"$vtc" lab down --dir "$work/lab" >/dev/null 2>&1 || true
	rm -rf -- "$work"
}
trap cleanup EXIT
export VTCLUSTER_STATE_DIR=$work/state
"$vtc" lab up --hosts 1 --dir "$work/lab" --cluster-config "$work/cluster.json" >/dev/null 2>&1 || die "lab up failed"
"$vtc" bootstrap --vt-cluster-config "$work/cluster.json" >/dev/null 2>&1 || die "bootstrap failed"
addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hosts"]["node1"]["address"])' "$work/cluster.json")
ssh_opts=(-q -i "$work/lab/id_ed25519" -o "UserKnownHostsFile=$work/lab/known_hosts" -o BatchMode=yes)
mkdir -p "$work/node" "$work/back"
head -c "${mib}M" /dev/urandom >"$work/src.bin"

# secs CMD...: the wall time of CMD in seconds, its output dropped.
secs() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1 || die "failed: $*"
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}

declare -a up_scp up_cp down_scp down_cp
for ((i = 0; i < rounds; i++)); do
	rm -f "$work/node/"* "$work/back/"*
	up_scp+=("$(secs scp "${ssh_opts[@]}" "$work/src.bin" "root@$addr:$work/node/scp.bin")")
	up_cp+=("$(secs "$vtc" cp "$work/src.bin" "node1:$work/node/cp.bin")")
	down_scp+=("$(secs scp "${ssh_opts[@]}" "root@$addr:$work/node/scp.bin" "$work/back/scp.bin")")
	down_cp+=("$(secs "$vtc" cp "node1:$work/node/cp.bin" "$work/back/cp.bin")")
	cmp -s "$work/src.bin" "$work/back/cp.bin" || die "round $i: the copy differs"
	echo "round $((i + 1)): up scp ${up_scp[i]}s cp ${up_cp[i]}s; down scp ${down_scp[i]}s cp ${down_cp[i]}s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
report() {
	local what=$1 s c
	s=$(median "${@:2:rounds}")
	c=$(median "${@:2+rounds}")
	printf '%-5s %d MiB: scp %.2fs  cp %.2fs  cp/scp %.2f (target <= 1.20)\n' "$what" "$mib" "$s" "$c" "$(echo "$c / $s" | bc -l)"
}
echo "machine: $(nproc) cores, $(uname -r); medians of $rounds rounds"
report up "${up_scp[@]}" "${up_cp[@]}"
report down "${down_scp[@]}" "${down_cp[@]}"

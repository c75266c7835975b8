#!/usr/bin/env bash
# cpu-limited.sh CPUS -- COMMAND [ARG...]: run COMMAND, and everything it
# starts (the lab's sshds, the agents, Avocado, the runners), in a cgroup
# limited to CPUS of one CPU (0.2: 20 ms per 100 ms period).
#
# For timing bugs that a loaded machine shows and a quiet one hides, such
# as a hang seen once under a 0.2-CPU limit:
#   scripts/cpu-limited.sh 0.2 -- .venv/bin/python -m pytest -q tests/python/test_e2e.py
# Works with cgroup v2 (cpu.max) and v1 (cpu.cfs_quota_us). Needs root.
# The cgroup is removed at the end; its cpu.stat (how often the limit bit)
# is printed first, so a run shows that the limit was in force.
set -uo pipefail
[ $# -ge 3 ] && [ "$2" = "--" ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
cpus=$1
shift 2
[ "$(id -u)" = 0 ] || { echo "cpu-limited: needs root" >&2; exit 2; }
period=100000
quota=$(awk -v c="$cpus" 'BEGIN { q = int(c * 100000); if (q < 1000 || c > 64) exit 1; print q }') ||
  { echo "cpu-limited: CPUS $cpus: want a number from 0.01 to 64" >&2; exit 2; }

name=vtcluster-cpu-limited-$$
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup/$name
  grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control ||
    { echo "cpu-limited: cannot enable the cpu controller" >&2; exit 2; }
  mkdir "$cg" && echo "$quota $period" >"$cg/cpu.max"
elif [ -d /sys/fs/cgroup/cpu ]; then
  cg=/sys/fs/cgroup/cpu/$name
  mkdir "$cg" && echo "$period" >"$cg/cpu.cfs_period_us" && echo "$quota" >"$cg/cpu.cfs_quota_us"
else
  echo "cpu-limited: no cgroup cpu controller mounted" >&2
  exit 2
fi || { echo "cpu-limited: cannot make $cg" >&2; exit 2; }

# The command runs in a child shell that moves itself into the cgroup
# first; this shell stays outside, so it can remove the cgroup afterwards.
bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' cpu-limited "$cg" "$@"
rc=$?
echo "cpu-limited: $cpus CPU; $(tr '\n' ' ' <"$cg/cpu.stat")" >&2
# Whatever the command left running is still in the cgroup; it is not
# ours to kill, so the cgroup stays until it ends.
rmdir "$cg" 2>/dev/null || echo "cpu-limited: $cg still has processes: $(tr '\n' ' ' <"$cg/cgroup.procs")" >&2
exit $rc

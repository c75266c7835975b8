#!/usr/bin/env bash
# install-packages.sh [PACKAGE...]: install the Debian packages of
# scripts/system-packages.txt whose command is missing.
#
# make test, make demo and .ci/run all call this, so what they install
# cannot drift. With PACKAGE arguments only those lines of the list are
# looked at (make demo needs a few; a name not in the list is an error, so
# the list stays the one place packages are named).
#
# Never fatal unless --require is given: where it cannot install (not root,
# no apt-get, apt-get fails, or VTCLUSTER_INSTALL=no) it says which
# packages are missing and why, and the tests that need them skip with
# their own reason. .ci/run passes --require: CI must test everything.
set -uo pipefail
cd "$(dirname "$0")/.."
list=${VTCLUSTER_PACKAGE_LIST:-scripts/system-packages.txt}   # another list: for the installer's own tests

require=0
want=()
for a in "$@"; do
  case $a in
    --require) require=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install-packages: unknown option $a" >&2; exit 2 ;;
    *) want+=("$a") ;;
  esac
done

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

declare -A known=()
missing=()
while read -r pkg cmd _; do
  case $pkg in '' | '#'*) continue ;; esac
  [ -n "$cmd" ] || { echo "install-packages: $list: line for $pkg names no command" >&2; exit 2; }
  known[$pkg]=1
  if [ ${#want[@]} -gt 0 ]; then
    case " ${want[*]} " in *" $pkg "*) ;; *) continue ;; esac
  fi
  has "$cmd" || missing+=("$pkg")
done <"$list"
for p in "${want[@]}"; do
  [ -n "${known[$p]:-}" ] || { echo "install-packages: $p is not in $list; add it there first" >&2; exit 2; }
done
[ ${#missing[@]} -gt 0 ] || exit 0

# Why we cannot install, or nothing when we can.
why=""
if [ "${VTCLUSTER_INSTALL:-yes}" = no ]; then
  why="VTCLUSTER_INSTALL=no"
elif [ "$(id -u)" != 0 ]; then
  why="not root"
elif ! command -v apt-get >/dev/null 2>&1; then
  why="no apt-get on this machine"
fi
if [ -z "$why" ]; then
  echo "install-packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if apt-get install -y -qq -o DPkg::Lock::Timeout=120 --no-install-recommends "${missing[@]}" >"$log" 2>&1 ||
    { apt-get update -qq >>"$log" 2>&1 &&
      apt-get install -y -qq -o DPkg::Lock::Timeout=120 --no-install-recommends "${missing[@]}" >>"$log" 2>&1; }; then
    rm -f "$log"
    exit 0
  fi
  why="apt-get failed: $(tail -n 3 "$log" | tr '\n' ' ')"
  rm -f "$log"
fi
echo "install-packages: missing ${missing[*]} ($why); install them with:" >&2
echo "  apt-get install ${missing[*]}" >&2
if [ "$require" = 1 ]; then
  exit 1
fi
echo "install-packages: the tests that need them are skipped, each saying why" >&2
exit 0

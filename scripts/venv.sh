#!/usr/bin/env bash
# Create or update the Python virtual environment that runs Avocado 113.0
# with the vtcluster shim (pyshim/) installed, for `make` and CI.
#
#   scripts/venv.sh            .venv:    avocado-framework==113.0, pytest, ./pyshim
#   scripts/venv.sh --vt       .venv-vt: the same plus avocado-framework-plugin-vt==113.0,
#                              for the tests that check how the shim coexists with avocado-vt
#   scripts/venv.sh --dir D    use D instead of the default directory
#   scripts/venv.sh --force    reinstall even if nothing changed
#
# Environment: PYTHON (default python3) picks the interpreter used to create
# the venv. Running it twice is cheap: a stamp file records a hash of the
# inputs, and pip is skipped when it matches. Any failure stops the script
# with a message and a non-zero exit.
set -euo pipefail

AVOCADO_VERSION=113.0
# Avocado 113.0 reads entry points through pkg_resources, which newer
# setuptools releases deprecate and then drop.
SETUPTOOLS_SPEC='setuptools<81'

die() {
	echo "venv.sh: $*" >&2
	exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || die "cannot find the repository root"
python=${PYTHON:-python3}
with_vt=0
force=0
dir=

while [ $# -gt 0 ]; do
	case $1 in
	--vt) with_vt=1 ;;
	--force) force=1 ;;
	--dir)
		[ $# -ge 2 ] || die "--dir needs a directory"
		dir=$2
		shift
		;;
	-h | --help)
		sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument \"$1\" (see --help)" ;;
	esac
	shift
done

if [ -z "$dir" ]; then
	if [ "$with_vt" = 1 ]; then dir=$root/.venv-vt; else dir=$root/.venv; fi
fi

packages=("avocado-framework==$AVOCADO_VERSION" "$SETUPTOOLS_SPEC" pytest)
if [ "$with_vt" = 1 ]; then
	packages+=("avocado-framework-plugin-vt==$AVOCADO_VERSION")
fi

command -v "$python" >/dev/null 2>&1 || die "python interpreter \"$python\" not found (set PYTHON)"

# The stamp covers everything that changes what gets installed: the package
# list, the interpreter, and every file of the shim.
stamp_input() {
	printf '%s\n' "${packages[@]}"
	"$python" -c 'import sys; print(sys.version)'
	(cd "$root" && find pyshim -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
		! -path 'pyshim/build/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
stamp=$(stamp_input | sha256sum | cut -d' ' -f1) || die "cannot hash the shim sources"
stamp_file=$dir/.vtcluster-stamp

if [ -x "$dir/bin/python" ] && ! "$dir/bin/python" -c '' 2>/dev/null; then
	# A venv whose interpreter moved or vanished cannot be repaired in place.
	echo "venv.sh: $dir is broken, recreating it" >&2
	rm -rf -- "$dir"
fi

if [ "$force" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
	echo "venv.sh: $dir is up to date"
	exit 0
fi

if [ ! -x "$dir/bin/python" ]; then
	echo "venv.sh: creating $dir with $python"
	"$python" -m venv "$dir" || die "python -m venv $dir failed"
fi
rm -f -- "$stamp_file"

pip=("$dir/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet "${packages[@]}" || die "installing ${packages[*]} into $dir failed"
# Build from a copy so that the source tree gets no build/ or *.egg-info
# directories, and stale ones there cannot leak into the wheel.
build=$(mktemp -d) || die "mktemp failed"
trap 'rm -rf -- "$build"' EXIT
cp -R "$root/pyshim" "$build/pyshim" || die "copying pyshim failed"
rm -rf -- "$build/pyshim/build" "$build"/pyshim/*.egg-info
"${pip[@]}" install --quiet --force-reinstall --no-deps "$build/pyshim" ||
	die "installing pyshim into $dir failed"
"${pip[@]}" check >/dev/null || die "pip check failed in $dir: $("${pip[@]}" check 2>&1 | head -5)"
# The shim must not put a Python avocado-runner-multihost on PATH: it would
# shadow the Go runner (nrunner-protocol.md T26).
[ ! -e "$dir/bin/avocado-runner-multihost" ] ||
	die "$dir/bin/avocado-runner-multihost exists; the shim must not install a runner script"

echo "$stamp" >"$stamp_file"
echo "venv.sh: $dir ready ($("$dir/bin/avocado" --version 2>/dev/null | head -1))"

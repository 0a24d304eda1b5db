#!/usr/bin/env bash
# Build pynn's kernels with AddressSanitizer + UndefinedBehaviorSanitizer in a separate venv and
# run the kernel and fuzz tests under them (issue 11, item 2). See docs/reliability.md.
#
#   tools/sanitize.sh                       # kernel + fuzz tests, default fuzz profile
#   PYNN_FUZZ_PROFILE=long tools/sanitize.sh
#   tools/sanitize.sh tests/test_dense.py   # any pytest arguments instead of the default set
#
# Environment:
#   SANITIZE_VENV   the venv to (re)use (default: $TMPDIR/pynn-sanitize-venv); created if missing
#   SANITIZE_LOGS   where pytest's output (with the sanitizer reports) goes (default: a fresh
#                   temp dir): pytest.log, and reports.txt with one line per report
#   CC              the compiler (gcc by default: the runtime libraries come from it)
#
# Exit status: pytest's, or 3 when a sanitizer reported anything (distinct sites are listed).
#
# How: the sources (git ls-files, so no stale build/ or in-place .so) are copied to a temp dir
# and built there with -fsanitize=address,undefined; CPython and NumPy are not instrumented, so
# the ASan runtime is preloaded (it must come first) with the UBSan one, and leak detection is
# off (CPython keeps its interned objects to the end). Only the copy of tests/ runs, from a
# directory with no pynn/ package in it, so "import pynn" can only find the sanitized build.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CC=${CC:-gcc}
venv=${SANITIZE_VENV:-${TMPDIR:-/tmp}/pynn-sanitize-venv}
logs=${SANITIZE_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/pynn-sanitize-logs.XXXXXX")}
work=$(mktemp -d "${TMPDIR:-/tmp}/pynn-sanitize-src.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$logs"

libasan=$("$CC" -print-file-name=libasan.so)
libubsan=$("$CC" -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
    if [[ ! -e $lib ]]; then
        echo "sanitize.sh: $CC has no $(basename "$lib") (install its sanitizer runtime)" >&2
        exit 2
    fi
done

echo "== copying the tracked sources to $work"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 cp --parents -t "$work")

if [[ ! -x $venv/bin/python ]]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
fi
# Build requirements up front, so the build itself runs without isolation, with our flags.
"$venv/bin/pip" install -q "setuptools>=64" wheel "Cython>=3.1" "numpy>=2" "scipy>=1.11" \
    "threadpoolctl>=3" "pytest>=7" "hypothesis>=6"

# float-cast-overflow is not part of "undefined" in GCC: a NaN or huge float converted to int is
# UB too.
san="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer"
san="$san -fno-sanitize-recover=address -g"
echo "== building with CFLAGS=\"$san\""
(cd "$work" && CC=$CC CFLAGS="$san" LDFLAGS="-fsanitize=address,undefined,float-cast-overflow" \
    PYNN_FAIL_NO_OPENMP=1 \
    "$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall . )
# Run from the copy's tests, with the package directory out of the way.
mv "$work/pynn" "$work/pynn-src"
built=$(cd "$work" && LD_PRELOAD="$libasan $libubsan" ASAN_OPTIONS=detect_leaks=0 \
        "$venv/bin/python" -c 'import pynn._kernels.dense as d; print(d.__file__)')
case $built in
    "$venv"/*) ;;
    *) echo "sanitize.sh: imported $built, not the sanitized build in $venv" >&2; exit 2 ;;
esac
if ! nm -D "$built" | grep __asan_init >/dev/null; then
    echo "sanitize.sh: $built is not instrumented" >&2
    exit 2
fi

if [[ $# -eq 0 ]]; then
    set -- tests/test_activations.py tests/test_dense.py tests/test_losses.py \
        tests/test_batchnorm.py tests/test_dropout.py tests/test_optim.py tests/test_backend.py \
        tests/test_layers.py tests/test_fuzz_backend.py tests/test_fuzz_layers.py
fi

echo "== running pytest $* under ASan + UBSan (output: $logs/pytest.log)"
# pytest -s: the sanitizers write to stderr (UBSan ignores log_path when it shares the process
# with ASan), and pytest's capture would swallow the reports of passing tests.
status=0
(cd "$work" && \
    LD_PRELOAD="$libasan $libubsan" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_odr_violation=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0" \
    PYTHONMALLOC=malloc PYTHONFAULTHANDLER=1 \
    "$venv/bin/pytest" -q -s -p no:cacheprovider "$@") > "$logs/pytest.log" 2>&1 || status=$?
tail -n 3 "$logs/pytest.log"

# One line per distinct report site: "file:line:col: runtime error: ..." and ASan's summaries.
grep -E "runtime error:|ERROR: AddressSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer" \
    "$logs/pytest.log" > "$logs/reports.txt" || true
nerr=$(grep -c -E "runtime error:|ERROR: AddressSanitizer" "$logs/reports.txt" || true)
if [[ $nerr -gt 0 ]]; then
    echo "== $nerr sanitizer report(s); distinct sites:"
    sed -E 's/0x[0-9a-f]+/ADDR/g' "$logs/reports.txt" | sort | uniq -c | sort -rn | head -n 40
    echo "== full reports with stacks in $logs/pytest.log; pytest status $status"
    exit 3
fi
echo "== no sanitizer reports; pytest status $status"
exit $status

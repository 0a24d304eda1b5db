#!/usr/bin/env bash
# Run a short training loop (tools/valgrind_train.py) under valgrind's memcheck and judge only
# the errors whose stack passes through pynn's compiled kernels (issue 11, item 2). See
# docs/reliability.md.
#
#   tools/valgrind_train.sh                # uses `python3` (pynn must be importable from it)
#   PYTHON=/path/to/venv/bin/python tools/valgrind_train.sh
#
# CPython, NumPy and OpenBLAS produce memcheck noise of their own (custom allocators, reads of
# uninitialized padding in optimized loops): PYTHONMALLOC=malloc makes CPython use malloc, the
# system's python3.supp (when present) hides the known CPython reports, and every remaining
# error is counted, but only those with a frame in pynn/_kernels (where it happened, or where
# an uninitialized value came from: --track-origins) fail the run. Leak records are listed
# apart: CPython never frees the types and interned objects an extension creates at import.
#
# Exit status: 0 with no error in pynn's kernels, 1 otherwise, 2 when valgrind is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
out=${VALGRIND_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/pynn-valgrind.XXXXXX")}
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "valgrind_train.sh: valgrind not found" >&2; exit 2; }

supp=()
for f in /usr/lib/valgrind/python3.supp /usr/lib/x86_64-linux-gnu/valgrind/python3.supp \
         /usr/libexec/valgrind/python3.supp; do
    [[ -f $f ]] && supp+=("--suppressions=$f")
done

kernels=$(cd /tmp && "$PYTHON" -c \
    'import os, pynn._kernels as k; print(os.path.dirname(k.__file__))')
echo "== kernels: $kernels"
echo "== valgrind --tool=memcheck on tools/valgrind_train.py (a few minutes; output in $out)"
status=0
PYTHONMALLOC=malloc OMP_WAIT_POLICY=PASSIVE \
valgrind --tool=memcheck --error-limit=no --num-callers=40 --leak-check=no --track-origins=yes \
    --xml=yes --xml-file="$out/memcheck.xml" --log-file="$out/memcheck.log" "${supp[@]}" \
    "$PYTHON" "$here/valgrind_train.py" || status=$?
if [[ $status -ne 0 ]]; then
    echo "valgrind_train.sh: the training run failed under valgrind (status $status)" >&2
    tail -n 30 "$out/memcheck.log" >&2
    exit 1
fi

"$PYTHON" - "$out/memcheck.xml" "$kernels" <<'EOF'
import collections
import sys
import xml.etree.ElementTree as ET

xml_path, kernels = sys.argv[1], sys.argv[2]
root = ET.parse(xml_path).getroot()
errors = [e for e in root.findall("error") if not e.findtext("kind").startswith("Leak_")]
leaks = len(root.findall("error")) - len(errors)
ours, kinds = [], collections.Counter()
for err in errors:
    kind = err.findtext("kind")
    kinds[kind] += 1
    frames = err.findall("./stack/frame")
    objs = [f.findtext("obj") or "" for f in frames]
    if any(o.startswith(kernels) for o in objs):
        ours.append(err)
print(f"== memcheck: {len(errors)} error(s) in total"
      + (f" ({', '.join(f'{k}: {n}' for k, n in kinds.most_common())})" if errors else "")
      + f"; {leaks} leak record(s) at exit, not judged")
print(f"== {len(ours)} error(s) with a frame in pynn's kernels ({kernels})")
for err in ours[:20]:
    print("--", err.findtext("kind"), err.findtext("what") or err.findtext("xwhat/text"))
    for f in err.findall("./stack/frame")[:12]:
        print("     ", f.findtext("fn"), f.findtext("file") or "", f.findtext("line") or "",
              "(" + (f.findtext("obj") or "").rsplit("/", 1)[-1] + ")")
sys.exit(1 if ours else 0)
EOF

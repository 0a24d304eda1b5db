"""Print per-group speed ratios from one pytest-benchmark JSON file (one run, one machine).

    python bench/ratios.py out/bench.json

Within each group every benchmark's median is shown with its speed-up over the group's NumPy
reference entry (param "numpy") and, where the group has one, its time relative to the bare
GEMMs entry (name containing "bare_gemm").
"""
import json
import sys
from collections import defaultdict


def main(path):
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"] or b["name"]].append(b)
    info = data.get("machine_info", {})
    for lib in info.get("threadpool_info", []):
        print(f"# {lib['user_api']}: {lib['internal_api']} {lib.get('version')} "
              f"kernel={lib.get('architecture')} threads={lib['num_threads']}")
    print(f"# OpenBLAS env: {info.get('openblas_env')}")
    for group in sorted(groups):
        entries = groups[group]
        numpy = next((b for b in entries if "numpy" in b["name"]), None)
        bare = next((b for b in entries if "bare_gemm" in b["name"]), None)
        print(f"\n[{group}]")
        for b in sorted(entries, key=lambda b: b["stats"]["median"]):
            med = b["stats"]["median"]
            line = f"  {b['name']:<60} median {med * 1e3:9.4f} ms"
            if numpy is not None and b is not numpy:
                line += f"   {numpy['stats']['median'] / med:6.2f}x vs numpy"
            if bare is not None and b is not bare:
                line += f"   {med / bare['stats']['median']:6.3f} of bare GEMMs"
            print(line)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/bench.json")

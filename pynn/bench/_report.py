"""What a ``pynn bench`` run reports (pynn.bench runs it): the machine (CPU model and SIMD
flags, library versions, thread pools, the source commit) and each case's table and chart
(medians, min-max, ratios to pynn and to the floor), from the processes' raw times.
"""
import importlib.metadata
import os
import platform
import subprocess
import sys

# The environment variables recorded with every run (the contenders inherit the user's).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT",
              "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_PROC_BIND", "KMP_AFFINITY")
# This machine's OpenBLAS tuning variables: a run with them set is not a user's machine.
OPENBLAS_TUNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ------------------------------------------------------------------------------ machine
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = None, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware", "cpu model") and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = value.split()
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile",
                        "asimd", "sve") if f in flags]
    return model or platform.machine(), simd


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads, child_env):
    """What compare.json records about the host: CPU, platform, versions, thread pools."""
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    import pynn

    model, simd = _cpu_model()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    config = _capture(pynn.show_config)
    return {
        "cpu_model": model,
        "cpu_simd_flags": simd,
        "cpu_count": os.cpu_count(),
        "cpus_in_affinity_mask": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "versions": {
            "numpy": np.__version__, "scipy": scipy.__version__, "pynn": pynn.__version__,
            "threadpoolctl": _version("threadpoolctl"), "torch": _version("torch"),
            "jax": _version("jax"), "optax": _version("optax"), "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"),
            "scikit-learn": _version("scikit-learn"), "matplotlib": _version("matplotlib"),
        },
        "pynn_file": pynn.__file__,
        "pynn_git": _git_describe(os.path.dirname(pynn.__file__)),
        "pynn_config": config,
        "threads": threads,
        "threadpool_info_harness": threadpool_info(),
        "env_contenders": {k: child_env.get(k) for k in THREAD_ENV},
        "openblas_tuning_set": {k: child_env[k] for k in OPENBLAS_TUNING if k in child_env},
    }


def _git_describe(path):
    """The commit (and whether the tree has changes) when pynn runs from a source checkout
    (an editable install); None for an installed copy."""
    if not os.path.exists(os.path.join(os.path.dirname(path), "pyproject.toml")):
        return None
    try:
        head = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip()
                                      else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _capture(fn):
    import io

    buf = io.StringIO()
    fn(file=buf)
    return buf.getvalue()


def blas_lines(pools):
    return [f"{p.get('user_api')}: {p.get('internal_api')} {p.get('version')} "
            f"kernel={p.get('architecture', '-')} threads={p.get('num_threads')} "
            f"({os.path.basename(p.get('filepath', ''))})" for p in pools]


# ------------------------------------------------------------------------------ reporting
def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def summarize(case_result):
    """Add median/min/max and the ratios to each contender of one case (in place)."""
    entries = case_result["contenders"]
    for entry in entries.values():
        labels = sorted({run.get("env_variant", "") for run in entry.get("runs", [])})
        if len(labels) > 1:  # the floor: keep the faster environment's processes
            pooled = {label: median([t for run in entry["runs"] if run["env_variant"] == label
                                      for t in run["times"]]) for label in labels}
            best = min(labels, key=pooled.get)
            entry["env_variant_medians"] = pooled
            entry["other_runs"] = [run for run in entry["runs"] if run["env_variant"] != best]
            entry["runs"] = [run for run in entry["runs"] if run["env_variant"] == best]
        if entry.get("runs"):
            entry["env_variant"] = entry["runs"][0].get("env_variant", "")
            entry["first_info"] = entry["runs"][0]["info"]
        times = [t for run in entry.get("runs", []) for t in run["times"]]
        if entry["status"] == "ok" and times:
            entry.update(median=median(times), min=min(times), max=max(times), n=len(times),
                         process_medians=[median(r["times"]) for r in entry["runs"]])
    ref = entries.get("pynn", {}).get("median")
    floor = entries.get("floor", {}).get("median")
    for entry in entries.values():
        if "median" in entry:
            entry["ratio_vs_pynn"] = entry["median"] / ref if ref else None
            entry["ratio_vs_floor"] = entry["median"] / floor if floor else None
    case_result["pynn_over_floor"] = ref / floor if ref and floor else None
    loop = entries.get("pynn-loop", {}).get("median")
    case_result["fit_over_loop"] = ref / loop if ref and loop else None
    torch_first = entries.get("pynn-after-torch", {}).get("median")
    case_result["after_torch_over_pynn"] = torch_first / ref if ref and torch_first else None
    return case_result


def time_unit(seconds):
    if seconds < 1e-3:
        return "us", 1e6
    if seconds < 1.0:
        return "ms", 1e3
    return "s", 1.0


def fmt_value(value, scale):
    v = value * scale
    return f"{v:.4g}" if v < 1000 else f"{v:.0f}"


def _notes(name, entry):
    info = entry.get("first_info") or {}
    notes = []
    if "step_path" in info and name in ("pynn", "pynn-eager", "pynn-loop", "pynn-after-torch"):
        notes.append("step: " + info["step_path"].split(" (")[0])
    if "epoch_via" in info and name != "pynn-numpy":
        notes.append(info["epoch_via"].split("(")[0])
    if "torch_adam" in info:
        notes.append(info.get("torch_optimizer", "Adam") + " " + info["torch_adam"].split(" (")[0])
    if "ort_threads" in info:
        notes.append(f"{info['ort_threads']} intra-op thread(s)")
    if name == "jax" and "step_path" in info:
        notes.append("step: jit + optax.adam")
    if "floor_best" in info:
        notes.append(info["floor_best"])
    if "tuner" in info:
        notes.append(tuner_note(info["tuner"]))
    if entry.get("env_variant"):
        notes.append(entry["env_variant"])
    if "note" in info:
        notes.append("no BatchNorm")
    return "; ".join(notes)


def tuner_note(tuner):
    """pynn.tune in the first round's process, as the table's note: its mode, the products it
    measured (of those it decided), their cost, the repetitions re-timed for it, and each
    measured product's choice ("fwd 128x784x256 t2: tiles")."""
    decided = tuner["choices"]
    measured = [c for c in decided if c["source"] == "measured"]
    note = (f"tuner {tuner['mode']}: {len(measured)}/{len(decided)} measured, "
            f"{tuner['measuring_ms']:.0f} ms, {tuner['retimed']} rep(s) re-timed")
    picks = [f"{'fwd' if c['key']['op'] == 'forward' else 'bwd'} "
             f"{c['key']['n']}x{c['key']['k']}x{c['key']['m']} t{c['key']['threads']}: "
             f"{c['strategy']}" for c in measured]
    return note + (" (" + ", ".join(picks) + ")" if picks else "")


def _case_unit(case_result):
    """The display unit of a case: from pynn's median (else the smallest)."""
    entries = case_result["contenders"]
    ref = entries.get("pynn", {}).get("median")
    medians = [e["median"] for e in entries.values() if "median" in e]
    return time_unit(ref or min(medians)) if medians else ("s", 1.0)


def format_case(case_result):
    """The table of one case, as lines."""
    entries = case_result["contenders"]
    unit, scale = _case_unit(case_result)
    rows = [("contender", "median", f"min - max ({unit})", "vs pynn", "vs floor", "notes")]
    skipped = []
    for name, e in entries.items():
        if "median" not in e:
            skipped.append(f"{name}: {e['status']} ({e.get('reason', e['status'])})")
            continue
        rows.append((name, f"{fmt_value(e['median'], scale)} {unit}",
                     f"{fmt_value(e['min'], scale)} - {fmt_value(e['max'], scale)}",
                     f"{e['ratio_vs_pynn']:.2f}x" if e.get("ratio_vs_pynn") else "-",
                     f"{e['ratio_vs_floor']:.2f}x" if e.get("ratio_vs_floor") else "-",
                     _notes(name, e)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"== {case_result['title']}"]
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0])]
                               + [c.rjust(w) for c, w in zip(r[1:5], widths[1:5])]
                               + [r[5]]).rstrip())
    lines += [f"{s}" for s in skipped]
    extra = []
    if case_result.get("pynn_over_floor"):
        extra.append(f"pynn / floor {case_result['pynn_over_floor']:.2f}x")
    if case_result.get("fit_over_loop"):
        extra.append(f"Trainer.fit / hand-written pynn loop {case_result['fit_over_loop']:.2f}x")
    if case_result.get("after_torch_over_pynn"):
        extra.append(f"pynn after torch / pynn {case_result['after_torch_over_pynn']:.2f}x")
    if extra:
        lines.append("; ".join(extra))
    return lines


def plot(results, path):
    """A horizontal bar chart per case (median, min-max whiskers, the floor dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in results["cases"].values()
             if any("median" in e for e in c["contenders"].values())]
    heights = [0.9 + 0.32 * sum("median" in e for e in c["contenders"].values()) for c in cases]
    fig_height = sum(heights) + 0.6
    fig, axes = plt.subplots(len(cases), 1, figsize=(8, fig_height), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, case in zip(axes[:, 0], cases):
        entries = [(n, e) for n, e in case["contenders"].items() if "median" in e and
                   n != "floor"]
        unit, scale = _case_unit(case)
        names = [n for n, _ in entries][::-1]
        med = [e["median"] * scale for _, e in entries][::-1]
        lo = [(e["median"] - e["min"]) * scale for _, e in entries][::-1]
        hi = [(e["max"] - e["median"]) * scale for _, e in entries][::-1]
        colors = ["tab:blue" if n.startswith("pynn") else "tab:gray" for n in names]
        ax.barh(names, med, xerr=[lo, hi], color=colors, capsize=2)
        floor = case["contenders"].get("floor", {}).get("median")
        if floor:
            ax.axvline(floor * scale, color="k", ls="--", lw=1, label="floor (bare GEMMs)")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_xlabel(unit)
        ax.set_title(case["title"], fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    meta = results["machine"]
    quick = " -- QUICK: toy sizes" if results["options"]["quick"] else ""
    fig.suptitle(f"pynn bench: {meta['cpu_model']}, {results['options']['threads']} threads, "
                 f"{results['options']['dtype']} (median, min-max){quick}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig_height))  # the top 0.35 in: the suptitle
    fig.savefig(path, dpi=120)
    plt.close(fig)

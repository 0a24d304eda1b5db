"""``pynn bench``: pynn against the alternatives, end to end, each in its own fresh process.

Contenders (``--contenders``):

- ``pynn``: pynn, Cython backend (``model.train_step``, the compiled step; in the epoch case
  ``Trainer.fit``);
- ``pynn-eager``: the same step as the README's PyTorch-style loop (``zero_grad``, ``forward``,
  loss, ``backward``, ``step``; step cases only);
- ``pynn-loop``: the hand-written pynn loop over the same batches (epoch case only, next to
  ``Trainer.fit``);
- ``pynn-numpy``: pynn on its NumPy reference backend;
- ``numpy-loop``: a hand-written NumPy training loop (forward, softmax cross-entropy, backward,
  Adam; BatchNorm where the net has it);
- ``torch``: torch eager, same threads, ``Adam(fused=True)`` where it applies (optional: skipped
  when torch is not importable);
- ``sklearn``: scikit-learn's ``MLPClassifier``, one ``partial_fit`` pass per epoch (epoch case
  only; optional);
- ``pynn-after-torch``: pynn in a process that imported torch first (optional, needs torch);
- ``floor``: the case's bare matrix products with preallocated outputs (``np.matmul(a, b,
  out=c)`` or scipy's BLAS gemm, the faster), so pynn's time reads as a multiple of it.

Cases (``--cases``): ``small``, ``medium``, ``wide`` (time per training step), ``predict``
(60,000 rows), ``epoch`` (one epoch over 60,000 rows), ``sk-digits`` and ``sk-mnist``
(``MLPClassifier.fit``, pynn.sklearn's against scikit-learn's with the same settings, per step
on the bundled digits, per epoch on 60,000x784; they need scikit-learn); see
``pynn._bench_cases.CASES``.

Every (case, contender) runs in a fresh ``python`` process (this interpreter), rounds alternate
the contenders (A B C A B C ...), and each process times ``--reps`` repetitions after a warm-up.
Reported: the median over all repetitions of all rounds, min-max, each median over pynn's, and
over the floor's. Writes ``compare.json`` (every time, machine and library information),
``compare.txt`` (what was printed) and ``compare.png`` (needs matplotlib) to ``--out``.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import _bench_worker as worker
from ._bench_report import (THREAD_ENV, blas_lines, fmt_value, format_case, machine_info,
                            median, plot, summarize, time_unit)
from ._json import json_safe

CONTENDERS = worker.CONTENDERS
CASE_NAMES = tuple(worker.CASES)

DESCRIPTIONS = {
    "pynn": "pynn, Cython backend (epoch: Trainer.fit; sk-*: pynn.sklearn.MLPClassifier.fit)",
    "pynn-eager": "pynn, the PyTorch-style loop (zero_grad, forward, loss, backward, step)",
    "pynn-loop": "pynn, hand-written loop over the same batches (epoch only)",
    "pynn-numpy": "pynn, NumPy reference backend",
    "numpy-loop": "hand-written NumPy loop (forward, softmax CE, backward, Adam)",
    "torch": "torch eager, Adam fused (else foreach); predict under no_grad + eval",
    "sklearn": "scikit-learn MLPClassifier: partial_fit = one epoch (epoch; no BatchNorm), "
               "fit (sk-*: the same settings as pynn.sklearn's)",
    "pynn-after-torch": "pynn, Cython backend, in a process that imported torch first",
    "floor": "bare matrix products of the case, preallocated outputs: the fastest of numpy "
             "and scipy gemm, OpenBLAS workers spinning or sleeping",
}
# Which case kinds each contender runs.
APPLIES = {
    "pynn": {"step", "predict", "epoch", "fit"},
    "pynn-eager": {"step"},
    "pynn-loop": {"epoch"},
    "pynn-numpy": {"step", "predict", "epoch"},
    "numpy-loop": {"step", "predict", "epoch"},
    "torch": {"step", "predict", "epoch"},
    "sklearn": {"epoch", "fit"},
    "pynn-after-torch": {"step", "predict", "epoch"},
    "floor": {"step", "predict", "epoch", "fit"},
}
# Contenders that import pynn (they get the harness's pynn first on sys.path).
USES_PYNN = {"pynn", "pynn-eager", "pynn-loop", "pynn-numpy", "pynn-after-torch"}

# The child's first lines: read the job, import torch first when asked (before numpy and
# pynn, as a user's script would), make sure a pynn contender imports the harness's pynn (the
# child runs in an empty temporary directory, so a source tree in the user's current directory
# cannot shadow it), then load the worker by path (loading it as pynn._bench_worker would
# import pynn itself).
BOOT = r"""
import json, os, sys
job = json.loads(sys.argv[1])
job["env_at_start"] = {k: os.environ.get(k) for k in job.pop("env_keys")}
if job.get("import_torch_first"):
    try:
        import torch
    except ImportError as exc:
        print(json.dumps({"status": "skipped", "reason": f"torch is not importable ({exc})"}))
        sys.exit(0)
import importlib.util
if job.get("pynn_file"):
    found = importlib.util.find_spec("pynn")  # finds, does not import
    if found is None or os.path.realpath(found.origin) != os.path.realpath(job["pynn_file"]):
        sys.path.insert(0, job["pynn_root"])
spec = importlib.util.spec_from_file_location("_pynn_bench_worker", job["worker"])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
result = worker.run(job)
if job.get("pynn_file") and "pynn" in sys.modules:
    import pynn
    if os.path.realpath(pynn.__file__) != os.path.realpath(job["pynn_file"]):
        raise SystemExit(f"the contender imported {pynn.__file__}, not the harness's "
                         f"{job['pynn_file']}")
print()
print(json.dumps(result))
"""


# ------------------------------------------------------------------------------ running
def child_environment():
    """The environment for the contenders: the user's (``import pynn`` sets no variable)."""
    return dict(os.environ)


class _Printer:
    """Prints and keeps every line, for compare.txt."""

    def __init__(self, file):
        self.file = file
        self.lines = []

    def __call__(self, text=""):
        self.lines.append(text)
        print(text, file=self.file, flush=True)


def _loadavg():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _run_process(job, env, cwd, timeout):
    load = _loadavg()
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", BOOT, json.dumps(job)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout} s"}
    wall = time.perf_counter() - started
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                pass
            break
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        return {"status": "error", "reason": f"exit status {proc.returncode}", "stderr": tail}
    result["process_seconds"] = wall
    result["loadavg_before"] = load
    return result


def _env_variants(name, child_env):
    """(label, extra environment) of the processes a contender runs per round.

    The floor runs twice: as the user's environment has it, and with OpenBLAS's idle workers
    going to sleep at once (pynn's ``OPENBLAS_THREAD_TIMEOUT=4``), since which of the two is
    faster depends on the machine: spinning workers start the next product sooner on a quiet
    machine and lose whole time slices on a busy one. The faster is the floor."""
    if name == "floor" and "OPENBLAS_THREAD_TIMEOUT" not in child_env:
        return [("", {}), ("OPENBLAS_THREAD_TIMEOUT=4", {"OPENBLAS_THREAD_TIMEOUT": "4"})]
    return [("", {})]


def run(args, file=None):
    """Run the comparison described by parsed ``args``; returns the exit status."""
    import pynn

    out = _Printer(file or sys.stdout)
    rounds = args.rounds or (1 if args.quick else 3)
    child_env = child_environment()
    info = machine_info(args.threads, child_env)
    specs = {}
    for name in args.cases:
        spec = worker.case_spec(name, quick=args.quick)
        if args.reps:
            spec["reps"] = args.reps
        specs[name] = spec
    results = {
        "schema": 1,
        "command": [os.path.basename(sys.argv[0])] + sys.argv[1:],
        "options": {"cases": args.cases, "contenders": args.contenders, "rounds": rounds,
                    "reps": args.reps, "threads": args.threads, "dtype": args.dtype,
                    "quick": args.quick},
        "machine": info,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cases": {},
    }

    v = info["versions"]
    out(f"pynn bench: {len(args.cases)} case(s) x {len(args.contenders)} contender(s), "
        f"{rounds} round(s) of fresh processes, {args.threads} thread(s), {args.dtype}"
        + (" -- QUICK: toy sizes, the times mean nothing" if args.quick else ""))
    simd = f" [{' '.join(info['cpu_simd_flags'])}]" if info["cpu_simd_flags"] else ""
    out(f"CPU: {info['cpu_model']}{simd}; {info['cpu_count']} CPUs, "
        f"{info['cpus_in_affinity_mask']} in this process's affinity mask")
    out(f"Python {info['python']} ({sys.executable}); numpy {v['numpy']}, scipy {v['scipy']}, "
        f"pynn {v['pynn']}, torch {v['torch'] or '(not installed)'}, "
        f"scikit-learn {v['scikit-learn'] or '(not installed)'}, "
        f"threadpoolctl {v['threadpoolctl']}")
    out(f"pynn: {pynn.__file__}" + (f" (git {info['pynn_git']})" if info["pynn_git"] else ""))
    out("BLAS/OpenMP in this process (numpy, scipy, pynn loaded):")
    for line in blas_lines(info["threadpool_info_harness"]):
        out("  " + line)
    env_line = ", ".join(f"{k}={val}" for k, val in info["env_contenders"].items()
                         if val is not None)
    out(f"environment of the contenders: {env_line or '(no thread variables set)'}")
    load = _loadavg()
    results["loadavg_start"] = load
    if load is not None:
        out(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if load[0] > 0.5:
            out("WARNING: the machine is busy: quoted figures need a quiet machine (torch's "
                "OpenMP workers spin, and with other work on the cores its times can grow "
                "a hundredfold)")
    if info["openblas_tuning_set"]:
        out("WARNING: " + " ".join(f"{k}={val}" for k, val in info["openblas_tuning_set"].items())
            + " set: figures to quote should be measured with them unset (a user's machine "
              "has neither): env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pynn bench ...")
    out("contenders:")
    for name in args.contenders:
        out(f"  {name:<17} {DESCRIPTIONS[name]}")
    out("vs pynn: median / pynn's median (above 1: slower than pynn); vs floor: median / the "
        "floor's median")
    out()

    workdir = tempfile.mkdtemp(prefix="pynn-bench-")
    pynn_root = os.path.dirname(os.path.dirname(os.path.abspath(pynn.__file__)))
    skipped = {}
    failed = False
    try:
        for case in args.cases:
            spec = specs[case]
            contenders = [c for c in args.contenders if spec["kind"] in APPLIES[c]]
            case_result = {"title": spec["title"], "spec": spec,
                           "unit": {"step": "seconds per training step",
                                    "predict": "seconds per predict call",
                                    "epoch": "seconds per epoch"}[spec.get("per", spec["kind"])],
                           "contenders": {c: {"status": "ok", "runs": []} for c in contenders}}
            for r in range(rounds):
                for name in contenders:
                    entry = case_result["contenders"][name]
                    # pynn itself is optional only in the fit cases (pynn.sklearn needs
                    # scikit-learn): a skip there says nothing about the other cases
                    skip_key = (name, spec["kind"] == "fit")
                    if skip_key in skipped:
                        entry.update(status="skipped", reason=skipped[skip_key])
                        continue
                    if entry["status"] == "error":
                        continue
                    job = {"spec": spec, "contender": name, "dtype": args.dtype,
                           "threads": args.threads, "worker": worker.__file__,
                           "env_keys": list(THREAD_ENV),
                           "import_torch_first": name == "pynn-after-torch"}
                    if name in USES_PYNN:
                        job.update(pynn_root=pynn_root, pynn_file=pynn.__file__)
                    for label, extra_env in _env_variants(name, child_env):
                        res = _run_process(job, {**child_env, **extra_env}, workdir,
                                           args.timeout)
                        if res["status"] == "skipped":
                            skipped[skip_key] = res["reason"]
                            entry.update(status="skipped", reason=res["reason"])
                            out(f"  [{case}] {name}: skipped ({res['reason']})")
                            break
                        if res["status"] == "error":
                            failed = True
                            entry.update(status="error", reason=res["reason"],
                                         stderr=res.get("stderr", ""))
                            out(f"  [{case}] {name}: ERROR ({res['reason']})")
                            for line in res.get("stderr", "").splitlines():
                                out(f"      {line}")
                            break
                        entry["runs"].append({"round": r, "env_variant": label,
                                              "times": res["times"],
                                              "process_seconds": res["process_seconds"],
                                              "loadavg_before": res["loadavg_before"],
                                              "info": res["info"]})
                        unit, scale = time_unit(median(res["times"]))
                        tag = name + (f" ({label})" if label else "")
                        out(f"  [{case}] round {r + 1}/{rounds} {tag:<17} "
                            f"{fmt_value(median(res['times']), scale)} {unit} (median of "
                            f"{len(res['times'])}; process {res['process_seconds']:.1f} s)")
            summarize(case_result)
            results["cases"][case] = case_result
            out()
            for line in format_case(case_result):
                out(line)
            out()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    pools = {}
    for case in results["cases"].values():
        for name, e in case["contenders"].items():
            if name not in pools and e.get("first_info", {}).get("threadpool_info"):
                pools[name] = e["first_info"]["threadpool_info"]
    if pools:
        out("Thread pools in each contender's process (threadpoolctl, after its set-up):")
        for name, p in pools.items():
            out(f"  {name}:")
            for line in blas_lines(p):
                out("    " + line)
        out()

    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["loadavg_end"] = _loadavg()
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "compare.json")
    with open(json_path, "w") as f:
        json.dump(json_safe(results), f, indent=1, allow_nan=False)
        f.write("\n")
    out(f"wrote {json_path}")
    png_path = os.path.join(args.out, "compare.png")
    try:
        plot(results, png_path)
        out(f"wrote {png_path}")
    except ImportError:
        out("no plot: matplotlib is not installed (pip install matplotlib)")
    txt_path = os.path.join(args.out, "compare.txt")
    out(f"wrote {txt_path}")
    with open(txt_path, "w") as f:
        f.write("\n".join(out.lines) + "\n")
    return 1 if failed else 0

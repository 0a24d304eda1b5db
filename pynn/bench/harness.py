"""The harness of ``pynn bench``: pynn against the alternatives, end to end, each in its own
fresh process.

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
- ``jax``: JAX, the training step one ``jax.jit`` function with optax's Adam, predict another
  (optional: skipped without jax and optax);
- ``onnxruntime``: ONNX Runtime's CPU session on the same network and weights, predict and
  latency cases, one thread for latency (optional: skipped without onnx and onnxruntime);
- ``sklearn``: scikit-learn's ``MLPClassifier``, one ``partial_fit`` pass per epoch (epoch case
  only; optional);
- ``pynn-after-torch``: pynn in a process that imported torch first (optional, needs torch);
- ``floor``: the case's bare matrix products with preallocated outputs (``np.matmul(a, b,
  out=c)`` or scipy's BLAS gemm, the faster), so pynn's time reads as a multiple of it.

Cases (``--cases``): ``small``, ``medium``, ``wide`` (time per training step),
``medium-dropout`` (the medium net with Dropout(0.1) after each ReLU), ``resnet`` (a training
step of the ResNet-MLP with LayerNorm, GELU, Dropout and AdamW, against torch's with fused
AdamW), ``predict`` (60,000 rows), ``latency-1`` and ``latency-16`` (predict on 1 and 16 rows,
each call timed), ``epoch`` (one epoch over 60,000 rows), ``sk-digits`` and ``sk-mnist``
(``MLPClassifier.fit``, pynn.sklearn's against scikit-learn's with the same settings, per step
on the bundled digits, per epoch on 60,000x784; they need scikit-learn); see
``pynn/bench/_cases.py``'s ``CASES``.

Every (case, contender) runs in a fresh ``python`` process (this interpreter), rounds alternate
the contenders (A B C A B C ...), and each process times ``--reps`` repetitions after a warm-up.
Reported: the median over all repetitions of all rounds, min-max, each median over pynn's, and
over the floor's. Writes ``compare.json`` (every time, machine and library information),
``compare.txt`` (what was printed) and ``compare.png`` (needs matplotlib) to ``--out``.
"""
import json
import os
import shutil
import sys
import tempfile
import time

from ..io._json import json_safe
from . import _worker as worker
from ._process import _env_variants, _loadavg, _run_process, child_environment
from ._report import (THREAD_ENV, blas_lines, fmt_value, format_case, machine_info, median,
                      plot, summarize, time_unit)

CONTENDERS = worker.CONTENDERS
CASE_NAMES = tuple(worker.CASES)

DESCRIPTIONS = {
    "pynn": "pynn, Cython backend (epoch: Trainer.fit; sk-*: pynn.sklearn.MLPClassifier.fit)",
    "pynn-eager": "pynn, the PyTorch-style loop (zero_grad, forward, loss, backward, step)",
    "pynn-loop": "pynn, hand-written loop over the same batches (epoch only)",
    "pynn-numpy": "pynn, NumPy reference backend",
    "numpy-loop": "hand-written NumPy loop (forward, softmax CE, backward, Adam)",
    "torch": "torch eager, Adam fused (else foreach); predict under no_grad + eval",
    "jax": "JAX: the step jax.jit with optax.adam, predict jax.jit (NumPy in and out)",
    "onnxruntime": "ONNX Runtime CPU session (Gemm, BatchNormalization, Relu); latency: 1 "
                   "intra-op thread",
    "sklearn": "scikit-learn MLPClassifier: partial_fit = one epoch (epoch; no BatchNorm), "
               "fit (sk-*: the same settings as pynn.sklearn's)",
    "pynn-after-torch": "pynn, Cython backend, in a process that imported torch first",
    "floor": "bare matrix products of the case, preallocated outputs: the fastest of numpy "
             "and scipy gemm, OpenBLAS workers spinning or sleeping",
}
# Which case kinds each contender runs.
APPLIES = {
    "pynn": {"step", "predict", "latency", "epoch", "fit"},
    "pynn-eager": {"step"},
    "pynn-loop": {"epoch"},
    "pynn-numpy": {"step", "predict", "latency", "epoch"},
    "numpy-loop": {"step", "predict", "latency", "epoch"},
    "torch": {"step", "predict", "latency", "epoch"},
    "jax": {"step", "predict", "latency"},
    "onnxruntime": {"predict", "latency"},
    "sklearn": {"epoch", "fit"},
    "pynn-after-torch": {"step", "predict", "latency", "epoch"},
    "floor": {"step", "predict", "latency", "epoch", "fit"},
}
# Contenders that import pynn (they get the harness's pynn first on sys.path).
USES_PYNN = {"pynn", "pynn-eager", "pynn-loop", "pynn-numpy", "pynn-after-torch"}
UNITS = {"step": "seconds per training step", "predict": "seconds per predict call",
         "latency": "seconds per predict call", "epoch": "seconds per epoch"}


class _Printer:
    """Prints and keeps every line, for compare.txt."""

    def __init__(self, file):
        self.file = file
        self.lines = []

    def __call__(self, text=""):
        self.lines.append(text)
        print(text, file=self.file, flush=True)


def run(args, file=None):
    """Run the comparison described by parsed ``args``; returns the exit status."""
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
    _print_header(out, args, rounds, info)
    results["loadavg_start"] = _print_load(out, info)
    _print_contenders(out, args.contenders)

    runner = _Runner(args, rounds, child_env, out)
    try:
        for case in args.cases:
            case_result = summarize(runner.run_case(case, specs[case]))
            results["cases"][case] = case_result
            out()
            for line in format_case(case_result):
                out(line)
            out()
    finally:
        shutil.rmtree(runner.workdir, ignore_errors=True)

    _print_thread_pools(out, results)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["loadavg_end"] = _loadavg()
    _write_files(out, results, args.out)
    return 1 if runner.failed else 0


# ------------------------------------------------------------------------------ before
def _print_header(out, args, rounds, info):
    """What runs, on which machine, with which libraries and thread pools."""
    import pynn

    v = info["versions"]
    out(f"pynn bench: {len(args.cases)} case(s) x {len(args.contenders)} contender(s), "
        f"{rounds} round(s) of fresh processes, {args.threads} thread(s), {args.dtype}"
        + (" -- QUICK: toy sizes, the times mean nothing" if args.quick else ""))
    simd = f" [{' '.join(info['cpu_simd_flags'])}]" if info["cpu_simd_flags"] else ""
    out(f"CPU: {info['cpu_model']}{simd}; {info['cpu_count']} CPUs, "
        f"{info['cpus_in_affinity_mask']} in this process's affinity mask")
    out(f"Python {info['python']} ({sys.executable}); numpy {v['numpy']}, scipy {v['scipy']}, "
        f"pynn {v['pynn']}, torch {v['torch'] or '(not installed)'}, "
        f"jax {v['jax'] or '(not installed)'}, optax {v['optax'] or '(not installed)'}, "
        f"onnxruntime {v['onnxruntime'] or '(not installed)'}, "
        f"scikit-learn {v['scikit-learn'] or '(not installed)'}, "
        f"threadpoolctl {v['threadpoolctl']}")
    out(f"pynn: {pynn.__file__}" + (f" (git {info['pynn_git']})" if info["pynn_git"] else ""))
    out("BLAS/OpenMP in this process (numpy, scipy, pynn loaded):")
    for line in blas_lines(info["threadpool_info_harness"]):
        out("  " + line)
    env_line = ", ".join(f"{k}={val}" for k, val in info["env_contenders"].items()
                         if val is not None)
    out(f"environment of the contenders: {env_line or '(no thread variables set)'}")


def _print_load(out, info):
    """The load average now, and warnings when the figures could not be quoted; returns it."""
    load = _loadavg()
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
    return load


def _print_contenders(out, contenders):
    out("contenders:")
    for name in contenders:
        out(f"  {name:<17} {DESCRIPTIONS[name]}")
    out("vs pynn: median / pynn's median (above 1: slower than pynn); vs floor: median / the "
        "floor's median")
    out()


# ------------------------------------------------------------------------------ running
class _Runner:
    """Runs the cases' processes round by round, in a temporary working directory; remembers
    which contenders were skipped (a missing library skips them in every later case) and
    whether any process failed."""

    def __init__(self, args, rounds, child_env, out):
        import pynn

        self.args, self.rounds, self.child_env, self.out = args, rounds, child_env, out
        self.workdir = tempfile.mkdtemp(prefix="pynn-bench-")
        self.pynn_file = pynn.__file__
        self.pynn_root = os.path.dirname(os.path.dirname(os.path.abspath(pynn.__file__)))
        self.skipped = {}
        self.failed = False

    def run_case(self, case, spec):
        """Every round of every contender that applies to the case (alternated: A B C A B C
        ...); the case's raw result, for ``summarize``."""
        contenders = [c for c in self.args.contenders if spec["kind"] in APPLIES[c]
                      and c in spec.get("contenders", CONTENDERS)]
        case_result = {"title": spec["title"], "spec": spec,
                       "unit": UNITS[spec.get("per", spec["kind"])],
                       "contenders": {c: {"status": "ok", "runs": []} for c in contenders}}
        for r in range(self.rounds):
            for name in contenders:
                self._run_round(case, spec, r, name, case_result["contenders"][name])
        return case_result

    def _job(self, spec, name):
        """What the child process is told: see BOOT in _process.py."""
        job = {"spec": spec, "contender": name, "dtype": self.args.dtype,
               "threads": self.args.threads, "worker": worker.__file__,
               "env_keys": list(THREAD_ENV),
               "import_torch_first": name == "pynn-after-torch"}
        if name in USES_PYNN:
            job.update(pynn_root=self.pynn_root, pynn_file=self.pynn_file)
        return job

    def _run_round(self, case, spec, r, name, entry):
        """Round ``r`` of contender ``name``: its process (the floor: one per environment
        variant), the times added to ``entry``, or its skip or error recorded there."""
        out = self.out
        # pynn itself is optional only in the fit cases (pynn.sklearn needs scikit-learn): a
        # skip there says nothing about the other cases
        skip_key = (name, spec["kind"] == "fit")
        if skip_key in self.skipped:
            entry.update(status="skipped", reason=self.skipped[skip_key])
            return
        if entry["status"] == "error":
            return
        job = self._job(spec, name)
        for label, extra_env in _env_variants(name, self.child_env):
            res = _run_process(job, {**self.child_env, **extra_env}, self.workdir,
                               self.args.timeout)
            if res["status"] == "skipped":
                self.skipped[skip_key] = res["reason"]
                entry.update(status="skipped", reason=res["reason"])
                out(f"  [{case}] {name}: skipped ({res['reason']})")
                return
            if res["status"] == "error":
                self.failed = True
                entry.update(status="error", reason=res["reason"], stderr=res.get("stderr", ""))
                out(f"  [{case}] {name}: ERROR ({res['reason']})")
                for line in res.get("stderr", "").splitlines():
                    out(f"      {line}")
                return
            entry["runs"].append({"round": r, "env_variant": label, "times": res["times"],
                                  "process_seconds": res["process_seconds"],
                                  "loadavg_before": res["loadavg_before"], "info": res["info"]})
            unit, scale = time_unit(median(res["times"]))
            tag = name + (f" ({label})" if label else "")
            out(f"  [{case}] round {r + 1}/{self.rounds} {tag:<17} "
                f"{fmt_value(median(res['times']), scale)} {unit} (median of "
                f"{len(res['times'])}; process {res['process_seconds']:.1f} s)")


# ------------------------------------------------------------------------------ after
def _print_thread_pools(out, results):
    """Each contender's thread pools, as its first process saw them after its set-up."""
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


def _write_files(out, results, directory):
    """compare.json, compare.png (with matplotlib) and compare.txt (all that was printed)."""
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "compare.json")
    with open(json_path, "w") as f:
        json.dump(json_safe(results), f, indent=1, allow_nan=False)
        f.write("\n")
    out(f"wrote {json_path}")
    png_path = os.path.join(directory, "compare.png")
    try:
        plot(results, png_path)
        out(f"wrote {png_path}")
    except ImportError:
        out("no plot: matplotlib is not installed (pip install matplotlib)")
    txt_path = os.path.join(directory, "compare.txt")
    out(f"wrote {txt_path}")
    with open(txt_path, "w") as f:
        f.write("\n".join(out.lines) + "\n")

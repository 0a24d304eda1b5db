"""One contender of ``pynn bench`` timing one case, inside its own fresh process: the entry
point (:func:`run`) and the loader of the files beside it.

``pynn.bench`` (the harness) starts ``python -c`` processes that load this file by path, without
importing the ``pynn`` package first: the torch, scikit-learn, NumPy-loop and floor contenders
never import pynn (``import pynn`` sets thread wait policies in ``os.environ``, which would
change how torch's OpenMP behaves), and the "pynn after torch" contender imports torch before
pynn. So the worker's files import only the standard library and NumPy at their top, and have
no relative imports: this file loads the others by path, beside it, each under the name
``_pynn_bench_<stem>`` in ``sys.modules`` -- first _cases.py (the cases and what every
contender shares), which the contender files then import by that name -- then
_contender_pynn.py, _contender_numpy_loop.py, _contender_libraries.py (torch, scikit-learn),
_contender_jax.py, _contender_onnxruntime.py and _contender_floor.py.

It also hands on, for the harness and the tests, the cases and the contenders' code the tests
check: the hand-written NumPy training loop (:class:`NumpyLoopMLP`), pynn's training step
(:func:`pynn_train_step`), the torch network and the floor's products.
"""
import importlib.util
import os
import sys
import time

import numpy as np


def _load_beside(stem):
    """The module in ``stem``.py beside this file, loaded by path as this file is (see above),
    once per process, as ``_pynn_bench_<stem without its underscores>``."""
    name = "_pynn_bench_" + stem.strip("_").replace("contender_", "")
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), stem + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: the contender files import the cases
    spec.loader.exec_module(module)
    return module


# _cases.py first: the contender files import it by name
cases = _load_beside("_cases")
pynn_contender = _load_beside("_contender_pynn")
numpy_loop = _load_beside("_contender_numpy_loop")
libraries = _load_beside("_contender_libraries")
jax_contender = _load_beside("_contender_jax")
onnxruntime_contender = _load_beside("_contender_onnxruntime")
floor = _load_beside("_contender_floor")

# What the harness and the tests read here.
CASES, QUICK, LR, SEED = cases.CASES, cases.QUICK, cases.LR, cases.SEED
case_spec, layer_dims, batch_bounds = cases.case_spec, cases.layer_dims, cases.batch_bounds
make_data, epoch_order, sklearn_params = cases.make_data, cases.epoch_order, cases.sklearn_params
initial_weights, inference_weights = cases.initial_weights, cases.inference_weights
pynn_model, pynn_train_step = pynn_contender.pynn_model, pynn_contender.pynn_train_step
load_weights = pynn_contender.load_weights
NumpyLoopMLP = numpy_loop.NumpyLoopMLP
torch_model, torch_adam = libraries.torch_model, libraries.torch_adam
torch_load_weights = libraries.torch_load_weights
jax_programs = jax_contender.jax_programs
onnx_graph, ort_session = onnxruntime_contender.onnx_graph, onnxruntime_contender.ort_session
_gemm_calls = floor._gemm_calls


CONTENDERS = ("pynn", "pynn-eager", "pynn-loop", "pynn-numpy", "numpy-loop", "torch", "jax",
              "onnxruntime", "sklearn", "pynn-after-torch", "floor")
# The libraries each optional contender needs: missing, the contender is skipped with a note.
OPTIONAL = {"torch": ("torch",), "pynn-after-torch": ("torch",), "sklearn": ("sklearn",),
            "jax": ("jax", "jaxlib", "optax"), "onnxruntime": ("onnx", "onnxruntime")}


def run(job):
    """Time one (case, contender) in this process; returns the result dict."""
    spec, contender = job["spec"], job["contender"]
    dtype = np.dtype(job["dtype"])
    threads = job["threads"]
    info = {"pid": os.getpid(), "env_at_start": job.get("env_at_start", {})}
    started = time.perf_counter()
    try:
        if contender == "floor":
            times = floor.time_floor(spec, dtype, threads, info)
        else:
            X, y = cases.make_data(spec, dtype)
            common = (spec, X, y, dtype, threads)
            if contender in ("pynn", "pynn-after-torch"):
                times = pynn_contender.time_pynn(*common, "cython", info)
            elif contender == "pynn-eager":
                times = pynn_contender.time_pynn(*common, "cython", info, eager=True)
            elif contender == "pynn-loop":
                times = pynn_contender.time_pynn(*common, "cython", info, fit=False)
            elif contender == "pynn-numpy":
                times = pynn_contender.time_pynn(*common, "numpy", info)
            elif contender == "numpy-loop":
                times = numpy_loop.time_numpy_loop(*common, info)
            elif contender == "torch":
                times = libraries.time_torch(*common, info)
            elif contender == "jax":
                times = jax_contender.time_jax(*common, info)
            elif contender == "onnxruntime":
                times = onnxruntime_contender.time_onnxruntime(*common, info)
            elif contender == "sklearn":
                times = libraries.time_sklearn(*common, info)
            else:
                raise ValueError(f"unknown contender {contender!r}")
    except ImportError as exc:
        needs = OPTIONAL.get(contender, ())
        if spec["kind"] == "fit" or spec.get("data") == "digits":  # pynn.sklearn, the digits
            needs += ("sklearn",)
        if exc.name is not None and exc.name.split(".")[0] in needs:
            return {"status": "skipped", "reason": f"{exc.name} is not importable ({exc})"}
        raise
    info["seconds_in_process"] = time.perf_counter() - started
    info["torch_loaded"] = "torch" in sys.modules
    info["sklearn_loaded"] = "sklearn" in sys.modules
    info["jax_loaded"] = "jax" in sys.modules
    info["pynn_loaded"] = "pynn" in sys.modules
    try:
        from threadpoolctl import threadpool_info

        info["threadpool_info"] = threadpool_info()
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of pynn
        pass
    return {"status": "ok", "times": [float(t) for t in times], "info": info}

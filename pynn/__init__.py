"""pynn: fast fully-connected neural networks on the CPU.

Hot kernels are typed Cython (OpenMP loops, BLAS for the matrix products) behind a backend
interface; a plain NumPy reference backend computes the same results for testing.
"""
import os

# libgomp's and OpenBLAS's idle workers both spin after their work, and each holds the core the
# other's next call needs. With both libraries' defaults a 784-256-128-10 training step took
# 24 ms median on 2 cores, with these settings 1.4 ms (bench/test_bench_threads.py). So OpenMP
# workers spin briefly (GOMP_SPINCOUNT, libgomp only: enough to bridge back-to-back kernels)
# and then sleep, and OpenBLAS workers sleep after 2**4 cycles instead of 2**28. Each library
# reads these once, when it loads: libgomp with our kernels below, scipy's OpenBLAS (the one
# our kernels call) unless scipy.linalg was imported before pynn. Values the user set win.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = "2000"
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import data, datasets, nn, optim
from ._gradcheck import GradcheckError, gradcheck
from ._threads import get_num_threads, set_num_threads
from .backend import get_backend, set_backend
from .io import ModelFileError, load, load_checkpoint, save, save_checkpoint
from .train import Trainer

__version__ = "0.1.0"


def show_config(file=None):
    """Print version, OpenMP and thread count, the BLAS libraries in use, and the backend."""
    import platform
    import sys

    import numpy as np
    from threadpoolctl import threadpool_info

    from . import _threads
    from . import backend as _backend

    file = file or sys.stdout
    lines = [f"pynn {__version__} (Python {platform.python_version()}, numpy {np.__version__})"]
    try:
        from ._kernels import _info

        openmp = "on" if _info.openmp_enabled() else "off (serial build)"
        lines.append(f"compiled kernels: yes; OpenMP {openmp}, "
                     f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
                     f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}, "
                     f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")
    except ImportError as exc:
        lines.append(f"compiled kernels: not available ({exc})")
    lines.append(f"threads: {get_num_threads()} ({_threads.num_threads_source()})")
    try:
        backend = _backend.get_backend().name
    except ImportError as exc:
        backend = f"{_backend._current} (cannot load: {exc})"
    lines.append(f"backend: {backend}")
    # Load the kernels' BLAS (scipy's) so threadpoolctl can see it.
    import scipy.linalg  # noqa: F401

    for lib in threadpool_info():
        lines.append(
            "{user_api}: {internal_api} {version} ({filepath}); threads={num_threads}, "
            "kernel={arch}".format(arch=lib.get("architecture", "?"), **lib)
        )
    print("\n".join(lines), file=file)


__all__ = ["GradcheckError", "ModelFileError", "Trainer", "gradcheck", "data", "datasets", "nn", "optim", "get_backend", "get_num_threads", "load",
           "load_checkpoint", "save", "save_checkpoint", "set_backend", "set_num_threads",
           "show_config"]

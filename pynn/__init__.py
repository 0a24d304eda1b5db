"""pynn: fast fully-connected neural networks on the CPU.

Hot kernels are typed Cython (OpenMP loops, BLAS for the matrix products) behind a backend
interface; a plain NumPy reference backend computes the same results for testing.
"""
# No thread settings in os.environ: pynn's OpenMP team does all the parallel work of its
# kernels and calls BLAS single-threaded (csrc/_blas_threads.h), so there is no second pool to
# keep apart from it, and nothing depends on which library loaded libgomp first.
from . import data, datasets, nn, optim, theory, tune
from ._random import manual_seed
from ._threads import get_num_threads, set_num_threads
from .backend import get_backend, set_backend
from .io import ModelFileError, load, load_checkpoint, save, save_checkpoint
from .nn import GradcheckError, gradcheck
from .train import Trainer

from ._version import __version__


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

        from ._kernels import dense as _dense

        openmp = "on" if _info.openmp_enabled() else "off (serial build)"
        products = ("pynn's OpenMP team, BLAS single-threaded (one thread pool)"
                    if _dense.blas_thread_control() else
                    "BLAS with its own threads (no OpenBLAS thread setter found)")
        lines.append(f"compiled kernels: yes; OpenMP {openmp}; matrix products: {products}")
    except ImportError as exc:
        lines.append(f"compiled kernels: not available ({exc})")
    lines.append(f"threads: {get_num_threads()} ({_threads.num_threads_source()})")
    mode, count, measuring_ms = tune.summary()
    lines.append(f"tuner: {mode} (pynn.tune; PYNN_TUNE=estimate for the fixed rules); "
                 f"{count} products decided, {measuring_ms:.1f} ms measuring")
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


__all__ = ["GradcheckError", "ModelFileError", "Trainer", "gradcheck", "data", "datasets", "nn",
           "optim", "theory", "get_backend", "get_num_threads", "load", "load_checkpoint",
           "manual_seed", "save", "save_checkpoint", "set_backend", "set_num_threads",
           "show_config", "tune"]

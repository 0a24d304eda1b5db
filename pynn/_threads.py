"""One knob for parallelism: OpenMP threads of the kernels and BLAS threads, set together."""
import os

# Load scipy's BLAS before any limit is set: threadpoolctl only reaches libraries already loaded.
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_limits

from ._checks import check_int

_num_threads = None
_blas_limiter = None

# Below this many elements an elementwise/reduction kernel runs on one thread: waking a second
# thread costs a few microseconds, more than it saves on a 32x32 operation.
PARALLEL_MIN_ELEMENTS = 1 << 15


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_num_threads():
    """Number of threads pynn's kernels (and the BLAS they call) use."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n):
    """Use ``n`` threads in every kernel and in BLAS (through threadpoolctl).

    Parameters
    ----------
    n : int
        At least 1.
    """
    global _num_threads, _blas_limiter
    _num_threads = n = check_int("n", n, 1)
    # threadpool_limits applied without "with" stays in force; it covers numpy's and scipy's
    # OpenBLAS alike (the Cython kernels call scipy's through cython_blas).
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")


def threads_for(size):
    """Threads a kernel over ``size`` elements should use (1 below the parallel threshold)."""
    if size < PARALLEL_MIN_ELEMENTS:
        return 1
    return get_num_threads()

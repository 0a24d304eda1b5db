"""Shared fixtures: every kernel test runs over both backends, both dtypes and 1 or 2 threads."""
import numpy as np
import pytest

import pynn
from pynn.nn._gradcheck import central_differences
from pynn.backend import backend_for

# One tolerance table. GEMM-based results sum k products, so their tolerance grows with k:
# use tol(dtype, k) for those.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-13}


def tol(dtype, k=1):
    """(rtol, atol) for a result that sums about k terms, in ``dtype``."""
    dtype = np.dtype(dtype).type
    scale = max(1.0, float(np.sqrt(k)))
    return RTOL[dtype] * scale * 4, ATOL[dtype] * scale * 4


def assert_close(actual, expected, dtype, k=1, err_msg=""):
    rtol, atol = tol(dtype, k)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)


# Odd shapes: a single element, primes, an empty batch, and a size above the parallel threshold.
ODD_SHAPES = [(1, 1), (7, 13), (0, 5), (3, 257), (131, 263)]


@pytest.fixture(autouse=True)
def _fresh_tuner():
    """Every test starts with no product decided (pynn.tune), so no test depends on which
    ran before it and left which choices; the mode and any forced strategy are reset too."""
    from pynn.tune import _planner

    _planner._state["mode"] = None
    _planner._force(None)
    yield
    _planner._state["mode"] = None
    _planner._force(None)


@pytest.fixture(params=["numpy", "cython"])
def backend(request):
    return backend_for(request.param)


@pytest.fixture
def ref():
    return backend_for("numpy")


@pytest.fixture
def fast():
    return backend_for("cython")


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def n_threads(request):
    """Run the test body with pynn (OpenMP and BLAS) limited to this many threads."""
    before = pynn.get_num_threads()
    pynn.set_num_threads(request.param)
    # Below the parallel threshold kernels run serial whatever the setting; lower it so the
    # threaded code path is exercised on test-sized arrays too.
    from pynn import _threads

    saved = _threads.PARALLEL_MIN_ELEMENTS
    _threads.PARALLEL_MIN_ELEMENTS = 1 if request.param > 1 else saved
    yield request.param
    _threads.PARALLEL_MIN_ELEMENTS = saved
    pynn.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def readonly(*arrays):
    """Mark arrays read-only (None passes through), as a caller's frozen inputs; returns them."""
    for a in arrays:
        if a is not None:
            a.flags.writeable = False
    return arrays


def numerical_grad(f, x, eps=1e-6):
    """Central differences of scalar f() w.r.t. every element of float64 array x (in place);
    the same code ``pynn.gradcheck`` runs."""
    return central_differences(f, x, eps)

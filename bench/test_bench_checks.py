"""Input check benchmark: is a fit's whole input finite? ``pynn.data.as_array`` on a
60,000 x 784 float32 array (MNIST's shape), the threaded bit test of pynn._kernels.checks
against NumPy's ``np.isfinite(X).all()``, which it replaced."""
import numpy as np
import pytest

import pynn
from pynn.data import as_array


@pytest.mark.parametrize("how", ["numpy", "pynn"])
def test_finite_check_60k_x_784(benchmark, n_threads, how):
    benchmark.group = f"finite check 60000x784 float32 threads{n_threads}"
    X = np.random.default_rng(0).random((60_000, 784), dtype=np.float32)
    pynn.set_num_threads(n_threads)
    if how == "numpy":
        result = benchmark(lambda: bool(np.isfinite(X).all()))
    else:
        result = benchmark(lambda: as_array("X", X, np.float32) is X)
    assert result is True  # a finite array passes, and as_array hands back X itself

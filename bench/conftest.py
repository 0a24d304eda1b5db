"""Benchmarks: NumPy reference and Cython kernels of one op timed in one run, side by side.

Run (quoted figures: OpenBLAS variables unset in that one command, see bench/README.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench --benchmark-json=out/bench.json
    python bench/ratios.py out/bench.json
"""
import numpy as np
import pytest

import pynn
from pynn.backend import backend_for


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what ran: BLAS kernel and threads (threadpoolctl), OpenMP, pynn's thread count."""
    import io
    import os

    from threadpoolctl import threadpool_info

    buf = io.StringIO()
    pynn.show_config(file=buf)
    machine_info["pynn_config"] = buf.getvalue()
    machine_info["threadpool_info"] = threadpool_info()
    machine_info["openblas_env"] = {
        k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }


@pytest.fixture(params=["numpy", "cython"])
def backend(request):
    return backend_for(request.param)


@pytest.fixture(params=[2], ids=lambda n: f"threads{n}")
def n_threads(request):
    before = pynn.get_num_threads()
    pynn.set_num_threads(request.param)
    yield request.param
    pynn.set_num_threads(before)


def assert_matches_reference(actual, expected, rtol=1e-4, atol=1e-5):
    """Each benchmark checks its result against the NumPy reference once."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)

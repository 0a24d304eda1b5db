"""Benchmarks: NumPy reference and Cython kernels of one op timed in one run, side by side.

Run (quoted figures: OpenBLAS variables unset in that one command, see bench/README.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 -m pytest bench --benchmark-only \
        --benchmark-json=out/bench.json
    python3 bench/ratios.py out/bench.json
Both ``pytest bench`` and ``python3 -m pytest bench`` time the installed pynn (see below).
"""
import importlib.machinery
import importlib.util
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def _import_the_installed_pynn():
    """Make ``python3 -m pytest bench`` import the pynn that ``pytest bench`` imports.

    ``python -m`` puts the current directory first on sys.path (plain ``pytest`` does not): run
    from a clone's root after ``pip install .``, ``import pynn`` would find the source tree,
    whose kernels are compiled only into the installed copy. So this tree leaves sys.path
    whenever pynn can be found without it (installed, or an editable install, which maps pynn
    to this tree by its own finder); otherwise it stays, for a tree built in place.
    """
    if "pynn" in sys.modules:
        return
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _ROOT]
    if importlib.util.find_spec("pynn") is not None:
        return
    sys.path[:] = saved
    kernels = os.path.join(_ROOT, "pynn", "_kernels")
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    if not (os.path.isdir(kernels) and any(f.endswith(suffixes) for f in os.listdir(kernels))):
        raise ImportError("pynn is not installed: run `pip install .` (or `pip install -e .`) "
                          "in the repository first; the benchmarks time the compiled package")


_import_the_installed_pynn()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pynn  # noqa: E402
from pynn.backend import backend_for  # noqa: E402


def pytest_configure(config):
    """Create the directory of ``--benchmark-json`` (pytest-benchmark writes the file, not its
    directory; the README's ``out/`` does not exist in a fresh clone)."""
    path = config.getoption("benchmark_json", default=None)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


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

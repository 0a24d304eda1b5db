"""Loss benchmark: softmax cross-entropy value + gradient, NumPy vs Cython."""
import numpy as np
import pytest

from conftest import assert_matches_reference
from pynn.backend import backend_for


@pytest.mark.parametrize("shape", [(4096, 10)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_softmax_cross_entropy(benchmark, backend, n_threads, shape):
    benchmark.group = f"softmax CE value+grad {shape[0]}x{shape[1]} float32 threads{n_threads}"
    rng = np.random.default_rng(0)
    Z = (3 * rng.standard_normal(shape)).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    G = np.empty(shape, np.float32)

    value, _ = benchmark(backend.softmax_cross_entropy_loss, Z, labels, grad_out=G)
    value_ref, G_ref = backend_for("numpy").softmax_cross_entropy_loss(Z, labels)
    assert value == pytest.approx(value_ref, rel=1e-6)
    assert_matches_reference(G, G_ref)

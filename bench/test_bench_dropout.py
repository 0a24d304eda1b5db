"""Dropout benchmark: forward (mask generation + apply) and backward on 1M elements."""
import numpy as np
import pytest

from conftest import assert_matches_reference
from pynn.backend import backend_for


@pytest.mark.parametrize("size", [1 << 20], ids=lambda s: f"{s >> 20}M")
def test_dropout_forward_backward(benchmark, backend, n_threads, size):
    benchmark.group = f"dropout fwd+bwd {size} float32 threads{n_threads}"
    rng = np.random.default_rng(0)
    X = rng.standard_normal(size).astype(np.float32)
    dY = rng.standard_normal(size).astype(np.float32)
    Y, dX = np.empty(size, np.float32), np.empty(size, np.float32)
    mask = np.empty(size, np.uint8)

    def step():
        backend.dropout_forward(X, 0.5, seed=1, step=2, out=Y, mask_out=mask)
        backend.dropout_backward(dY, mask, 0.5, out=dX)
        return Y, mask, dX

    benchmark(step)
    ref = backend_for("numpy")
    Y_ref, mask_ref = ref.dropout_forward(X, 0.5, seed=1, step=2)
    np.testing.assert_array_equal(mask, mask_ref)
    assert_matches_reference(Y, Y_ref)
    assert_matches_reference(dX, ref.dropout_backward(dY, mask_ref, 0.5))

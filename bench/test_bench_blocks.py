"""The modern MLP blocks' kernels (issue 21): GELU, SiLU, Softplus, Mish on 1M float32, and
LayerNorm / RMSNorm forward + backward on the ResNet-MLP's 256 x 512 float32; NumPy reference
vs Cython in one group each (issue 21 asks GELU and LayerNorm >= 4x their reference)."""
import numpy as np
import pytest

from pynn.backend import backend_for

from conftest import assert_matches_reference

N_ELEMENTS = 1 << 20  # as test_bench_activations.py: larger than L2, exp and bandwidth matter
SMOOTH = ["gelu", "gelu_tanh", "silu", "softplus", "mish"]
NORM_SHAPE = (256, 512)  # the ResNet-MLP case's inner width at batch 256


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal(N_ELEMENTS).astype(np.float32) * 3
    dY = rng.standard_normal(N_ELEMENTS).astype(np.float32)
    return X, dY


@pytest.mark.parametrize("activation", SMOOTH)
def test_smooth_activation_forward_backward(benchmark, backend, n_threads, data, activation):
    """One forward and one backward pass, as the layer runs them per batch."""
    benchmark.group = f"activation_fwd+bwd {activation} 1M f32"
    X, dY = data
    Y = np.empty_like(X)
    dX = np.empty_like(X)

    def step():
        backend.activation_forward(X, activation, out=Y)
        backend.activation_backward(dY, X, Y, activation, out=dX)

    benchmark(step)
    ref = backend_for("numpy")
    Y_ref = ref.activation_forward(X, activation)
    assert_matches_reference(Y, Y_ref)
    assert_matches_reference(dX, ref.activation_backward(dY, X, Y_ref, activation))


@pytest.fixture(scope="module")
def norm_data():
    rng = np.random.default_rng(1)
    n, f = NORM_SHAPE
    X = (1 + 2 * rng.standard_normal(NORM_SHAPE)).astype(np.float32)
    dY = rng.standard_normal(NORM_SHAPE).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(f)).astype(np.float32)
    beta = rng.standard_normal(f).astype(np.float32)
    return X, dY, gamma, beta


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_rownorm_forward_backward(benchmark, backend, n_threads, norm_data, norm):
    """One training step's forward + backward of LayerNorm / RMSNorm (with affine)."""
    n, f = NORM_SHAPE
    benchmark.group = f"{norm} fwd+bwd {n}x{f} float32 threads{n_threads}"
    X, dY, gamma, beta = norm_data
    Y, dX = np.empty_like(X), np.empty_like(X)
    dgamma, dbeta = np.zeros(f, np.float32), np.zeros(f, np.float32)

    def layernorm():
        _, mean, invstd = backend.layernorm_forward(X, gamma, beta, out=Y)
        backend.layernorm_backward(dY, X, gamma, mean, invstd, dgamma, dbeta, out=dX)

    def rmsnorm():
        _, invstd = backend.rmsnorm_forward(X, gamma, out=Y)
        backend.rmsnorm_backward(dY, X, gamma, invstd, dgamma, out=dX)

    benchmark(layernorm if norm == "layernorm" else rmsnorm)
    # Y and dX depend on the batch only (not on the accumulated dgamma/dbeta)
    ref = backend_for("numpy")
    if norm == "layernorm":
        Y_ref, mean, invstd = ref.layernorm_forward(X, gamma, beta)
        dX_ref = ref.layernorm_backward(dY, X, gamma, mean, invstd)
    else:
        Y_ref, invstd = ref.rmsnorm_forward(X, gamma)
        dX_ref = ref.rmsnorm_backward(dY, X, gamma, invstd)
    assert_matches_reference(Y, Y_ref)
    assert_matches_reference(dX, dX_ref)

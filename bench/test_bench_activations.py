"""Activations and softmax: NumPy reference vs Cython kernels, forward and backward, 1M float32."""
import numpy as np
import pytest

from pynn.backend import backend_for

from conftest import assert_matches_reference

N_ELEMENTS = 1 << 20  # 1M float32 = 4 MB per array: larger than L2, so bandwidth and exp matter
ACTIVATIONS = ["relu", "leaky_relu", "elu", "sigmoid", "tanh"]
SOFTMAX_SHAPE = (1024, 1024)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal(N_ELEMENTS).astype(np.float32) * 3
    dY = rng.standard_normal(N_ELEMENTS).astype(np.float32)
    return X, dY


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward(benchmark, backend, n_threads, data, activation):
    benchmark.group = f"activation_forward {activation} 1M f32"
    X, _ = data
    out = np.empty_like(X)
    benchmark(backend.activation_forward, X, activation, out=out)
    assert_matches_reference(out, backend_for("numpy").activation_forward(X, activation))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward(benchmark, backend, n_threads, data, activation):
    benchmark.group = f"activation_backward {activation} 1M f32"
    X, dY = data
    ref = backend_for("numpy")
    Y = ref.activation_forward(X, activation)
    out = np.empty_like(X)
    benchmark(backend.activation_backward, dY, X, Y, activation, out=out)
    assert_matches_reference(out, ref.activation_backward(dY, X, Y, activation))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_backward(benchmark, backend, n_threads, data, activation):
    """The target metric: one forward plus one backward pass, as a layer does per batch."""
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
    assert_matches_reference(dX, ref.activation_backward(dY, X, Y_ref, activation))


def test_softmax_forward(benchmark, backend, n_threads):
    benchmark.group = f"softmax_forward {SOFTMAX_SHAPE} f32"
    X = np.random.default_rng(1).standard_normal(SOFTMAX_SHAPE).astype(np.float32) * 5
    out = np.empty_like(X)
    benchmark(backend.softmax_forward, X, out=out)
    assert_matches_reference(out, backend_for("numpy").softmax_forward(X))


def test_softmax_backward(benchmark, backend, n_threads):
    benchmark.group = f"softmax_backward {SOFTMAX_SHAPE} f32"
    rng = np.random.default_rng(2)
    ref = backend_for("numpy")
    Y = ref.softmax_forward(rng.standard_normal(SOFTMAX_SHAPE).astype(np.float32))
    dY = rng.standard_normal(SOFTMAX_SHAPE).astype(np.float32)
    out = np.empty_like(Y)
    benchmark(backend.softmax_backward, dY, Y, out=out)
    assert_matches_reference(out, ref.softmax_backward(dY, Y))

"""Batch normalization benchmark: one training step's forward + backward, NumPy vs Cython."""
import numpy as np
import pytest

from conftest import assert_matches_reference
from pynn.backend import backend_for


@pytest.mark.parametrize("shape", [(1024, 512)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_batchnorm_train_forward_backward(benchmark, backend, n_threads, shape):
    benchmark.group = f"batchnorm train fwd+bwd {shape[0]}x{shape[1]} float32 threads{n_threads}"
    rng = np.random.default_rng(0)
    n, f = shape
    X = (1 + 2 * rng.standard_normal(shape)).astype(np.float32)
    dY = rng.standard_normal(shape).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(f)).astype(np.float32)
    beta = rng.standard_normal(f).astype(np.float32)
    rm, rv = np.zeros(f, np.float32), np.ones(f, np.float32)
    dgamma, dbeta = np.zeros(f, np.float32), np.zeros(f, np.float32)
    Y, dX = np.empty(shape, np.float32), np.empty(shape, np.float32)

    def step():
        _, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv, out=Y)
        backend.batchnorm_backward(dY, X, gamma, mean, invstd, dgamma, dbeta, out=dX)
        return Y, dX

    benchmark(step)
    # Y and dX depend on the batch only (not on the running stats or accumulated grads)
    ref = backend_for("numpy")
    Y_ref, mean, invstd = ref.batchnorm_forward_train(X, gamma, beta, rm.copy(), rv.copy())
    dX_ref = ref.batchnorm_backward(dY, X, gamma, mean, invstd, np.zeros(f, np.float32),
                                    np.zeros(f, np.float32))
    assert_matches_reference(Y, Y_ref)
    assert_matches_reference(dX, dX_ref)


@pytest.mark.parametrize("mode", ["fused", "separate"])
@pytest.mark.parametrize("shape", [(1024, 512)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_batchnorm_relu_train_forward_backward(benchmark, backend, n_threads, shape, mode):
    """BatchNorm -> ReLU, one training step: fused into the batchnorm kernels, or batchnorm and
    the activation kernels one after the other (two more passes over memory each way)."""
    benchmark.group = (f"batchnorm+relu train fwd+bwd {shape[0]}x{shape[1]} float32 "
                       f"threads{n_threads}")
    rng = np.random.default_rng(0)
    n, f = shape
    X = (1 + 2 * rng.standard_normal(shape)).astype(np.float32)
    dY = rng.standard_normal(shape).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(f)).astype(np.float32)
    beta = rng.standard_normal(f).astype(np.float32)
    rm, rv = np.zeros(f, np.float32), np.ones(f, np.float32)
    dgamma, dbeta = np.zeros(f, np.float32), np.zeros(f, np.float32)
    Y, dX = np.empty(shape, np.float32), np.empty(shape, np.float32)
    Z, dZ = np.empty(shape, np.float32), np.empty(shape, np.float32)

    def fused():
        _, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv, out=Y,
                                                          activation="relu")
        backend.batchnorm_backward(dY, X, gamma, mean, invstd, dgamma, dbeta, out=dX,
                                   activation="relu", Y=Y)

    def separate():
        _, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv, out=Z)
        backend.activation_forward(Z, "relu", out=Y)
        backend.activation_backward(dY, Z, Y, "relu", out=dZ)
        backend.batchnorm_backward(dZ, X, gamma, mean, invstd, dgamma, dbeta, out=dX)

    benchmark(fused if mode == "fused" else separate)
    ref = backend_for("numpy")
    Z_ref, mean, invstd = ref.batchnorm_forward_train(X, gamma, beta, rm.copy(), rv.copy())
    Y_ref = ref.activation_forward(Z_ref, "relu")
    dX_ref = ref.batchnorm_backward(ref.activation_backward(dY, Z_ref, Y_ref, "relu"), X, gamma,
                                    mean, invstd, np.zeros(f, np.float32),
                                    np.zeros(f, np.float32))
    assert_matches_reference(Y, Y_ref)
    assert_matches_reference(dX, dX_ref)

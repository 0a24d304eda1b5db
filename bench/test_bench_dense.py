"""Dense layer: NumPy reference vs Cython kernel vs the bare BLAS GEMMs it needs (the floor).

ratio dense/bare_gemm = (Cython forward + backward) / (the three SGEMMs alone).
"""
import numpy as np
import pytest
import scipy.linalg.blas as blas

from pynn.backend import backend_for

from conftest import assert_matches_reference

BATCH = 128
LAYERS = [(784, 256), (256, 128), (128, 10)]  # (in_features, out_features), ReLU


def _ids(layer):
    return f"{BATCH}x{layer[0]}->{layer[1]}"


def _data(k, m, dtype=np.float32):
    rng = np.random.default_rng(k * 1000 + m)
    X = rng.standard_normal((BATCH, k)).astype(dtype)
    W = (rng.standard_normal((m, k)) * np.sqrt(2.0 / k)).astype(dtype)
    b = (rng.standard_normal(m) * 0.1).astype(dtype)
    dY = rng.standard_normal((BATCH, m)).astype(dtype)
    return X, W, b, dY


def _reference(X, W, b, dY):
    ref = backend_for("numpy")
    Y = ref.dense_forward(X, W, b, "relu")
    dW, db = np.zeros_like(W), np.zeros_like(b)
    dX = ref.dense_backward(dY, X, W, Y, dW, db, "relu")
    return Y, dW, db, dX


@pytest.mark.parametrize("layer", LAYERS, ids=_ids)
def test_dense_forward(benchmark, backend, n_threads, layer):
    benchmark.group = f"dense_forward relu {_ids(layer)} f32"
    X, W, b, dY = _data(*layer)
    Y = np.empty((BATCH, layer[1]), dtype=np.float32)
    benchmark(backend.dense_forward, X, W, b, "relu", out=Y)
    assert_matches_reference(Y, _reference(X, W, b, dY)[0])


@pytest.mark.parametrize("layer", LAYERS, ids=_ids)
def test_dense_backward(benchmark, backend, n_threads, layer):
    benchmark.group = f"dense_backward relu {_ids(layer)} f32"
    X, W, b, dY = _data(*layer)
    Y_ref, dW_ref, db_ref, dX_ref = _reference(X, W, b, dY)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    dX = np.empty_like(X)
    benchmark(backend.dense_backward, dY, X, W, Y_ref, dW, db, "relu", out=dX)
    assert_matches_reference(dX, dX_ref)
    dW[...] = 0
    db[...] = 0
    backend.dense_backward(dY, X, W, Y_ref, dW, db, "relu", out=dX)
    assert_matches_reference(dW, dW_ref, rtol=1e-4, atol=1e-4)
    assert_matches_reference(db, db_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer", LAYERS, ids=_ids)
def test_dense_forward_backward(benchmark, backend, n_threads, layer):
    """The target metric: one forward and one backward (dX included), as in training."""
    benchmark.group = f"dense_fwd+bwd relu {_ids(layer)} f32"
    X, W, b, dY = _data(*layer)
    Y = np.empty((BATCH, layer[1]), dtype=np.float32)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    dX = np.empty_like(X)

    def step():
        backend.dense_forward(X, W, b, "relu", out=Y)
        backend.dense_backward(dY, X, W, Y, dW, db, "relu", out=dX)

    benchmark(step)
    Y_ref, _, _, dX_ref = _reference(X, W, b, dY)
    assert_matches_reference(Y, Y_ref)
    assert_matches_reference(dX, dX_ref)


@pytest.mark.parametrize("layer", LAYERS, ids=_ids)
def test_dense_forward_backward_bare_gemm(benchmark, n_threads, layer):
    """The three SGEMMs of dense fwd+bwd and nothing else: the floor for the ratio.

    Row-major C-contiguous arrays are Fortran-ordered transposes, so each product is asked for
    transposed, with F-contiguous operands and (for dW) an F-contiguous C: no copies.
    """
    benchmark.group = f"dense_fwd+bwd relu {_ids(layer)} f32"
    X, W, b, dY = _data(*layer)
    dZ = dY  # the activation mask pass is not a GEMM; its operand has the same shape
    dW = np.zeros_like(W)

    def step():
        # Y.T (M, N) = W (M, K) @ X.T (K, N)
        YT = blas.sgemm(1.0, W.T, X.T, trans_a=1)
        # dW.T (K, M) += X.T (K, N) @ dZ (N, M)
        blas.sgemm(1.0, X.T, dZ.T, beta=1.0, c=dW.T, trans_b=1, overwrite_c=1)
        # dX.T (K, N) = W.T (K, M) @ dZ.T (M, N)
        dXT = blas.sgemm(1.0, W.T, dZ.T)
        return YT, dXT

    YT, dXT = benchmark(step)
    assert_matches_reference(YT.T, X @ W.T, rtol=1e-4, atol=1e-4)
    assert_matches_reference(dXT.T, dZ @ W, rtol=1e-4, atol=1e-4)


# A small net's backward (the sk-digits fit's shapes: 32 rows; (n, k, m)), by BLAS on one thread
# and by pynn's own products (csrc/_direct.h, the tuner's "direct"), each against the reference.
SMALL_BACKWARDS = [(32, 64, 64), (32, 64, 32), (32, 32, 10)]


@pytest.mark.parametrize("strategy", ["one_thread", "direct"])
@pytest.mark.parametrize("shape", SMALL_BACKWARDS, ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_small_by_strategy(benchmark, strategy, shape):
    from pynn._kernels import dense
    from pynn.backend.codes import IDENTITY
    from pynn.tune._strategies import CODES

    n, k, m = shape
    benchmark.group = f"dense_backward {n}x{k}->{m} f32, dW and dX, one thread"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, k)).astype(np.float32)
    W = rng.standard_normal((m, k)).astype(np.float32)
    dY = rng.standard_normal((n, m)).astype(np.float32)
    dW, db, dX = np.zeros_like(W), np.zeros(m, np.float32), np.empty_like(X)
    code = CODES["backward"][strategy]
    benchmark(dense.dense_backward, dY, X, W, None, dW, db, dX, IDENTITY, 0.0, 0.0, 1, None,
              code)
    dW[...] = 0
    dense.dense_backward(dY, X, W, None, dW, db, dX, IDENTITY, 0.0, 0.0, 1, None, code)
    assert_matches_reference(dW, dY.T @ X, rtol=1e-4, atol=1e-4)
    assert_matches_reference(dX, dY @ W, rtol=1e-4, atol=1e-4)

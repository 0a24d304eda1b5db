"""Dense kernels: Cython vs the NumPy reference, gradients, accumulation, odd inputs."""
import numpy as np
import pytest

from conftest import ODD_SHAPES, assert_close, numerical_grad, readonly

FUSABLE = [None, "relu", "leaky_relu", "elu", "sigmoid", "tanh", "step"]
# (N, K, M): batch, in_features, out_features. From ODD_SHAPES: (n, k) pairs with a prime out
# size, plus K = 0 and M = 0, and one output above dense's own parallel threshold (2**20
# elements: its elementwise passes stay serial below that, see csrc/dense.pyx). Products of
# 2**18 multiply-adds or more are split over the threads (csrc/_dense.pxd): by batch rows
# (1031, 3, 1021), by output columns in forward (131, 17, 263: M > N); a backward wanting dW
# and dX gives half the team to each (on two threads each product is one thread's), dX alone
# is split by batch rows or, when K > N, by its columns (the frozen-weight test's 64, 257, 300).
# A forward of up to 16 rows runs pynn's own kernel (DENSE_DOT, csrc/_dot.h): (2, 300, 1021),
# (16, 300, 263), (5, 257, 131); the other few-rows strategies (one matrix-vector product per
# row, the transposed product) are each forced in tests/test_tune.py.
SHAPES = [(n, k, m) for (n, k), m in zip(ODD_SHAPES, [1, 5, 3, 11, 263])] + [
    (4, 0, 3), (4, 3, 0), (131, 17, 263), (1031, 3, 1021), (37, 300, 41), (64, 257, 300),
    # a few rows of a wide layer, of a large weight: whole, or by output columns on 2 threads
    (2, 300, 1021), (16, 300, 263), (5, 257, 131),
]


def _arrays(rng, dtype, n, k, m, bias=True):
    X = rng.standard_normal((n, k)).astype(dtype)
    W = (rng.standard_normal((m, k)) / np.sqrt(max(k, 1))).astype(dtype)
    b = rng.standard_normal(m).astype(dtype) if bias else None
    return X, W, b


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", FUSABLE)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dense_matches_reference(fast, ref, dtype, n_threads, rng, shape, activation, bias):
    n, k, m = shape
    X, W, b = readonly(*_arrays(rng, dtype, n, k, m, bias))
    Y = fast.dense_forward(X, W, b, activation)
    Y_ref = ref.dense_forward(X, W, b, activation)
    assert Y.shape == (n, m) and Y.dtype == dtype
    assert_close(Y, Y_ref, dtype, k=k)

    (dY,) = readonly(rng.standard_normal((n, m)).astype(dtype))
    (Y_ref,) = readonly(Y_ref)
    dW0 = rng.standard_normal(W.shape).astype(dtype)  # gradients accumulate onto what is there
    db0 = rng.standard_normal(m).astype(dtype) if bias else None
    dW, dW_ref = dW0.copy(), dW0.copy()
    db = db0.copy() if bias else None
    db_ref = db0.copy() if bias else None
    dX = fast.dense_backward(dY, X, W, Y_ref, dW, db, activation)
    dX_ref = ref.dense_backward(dY, X, W, Y_ref, dW_ref, db_ref, activation)
    assert_close(dX, dX_ref, dtype, k=m, err_msg="dX")
    assert_close(dW, dW_ref, dtype, k=n, err_msg="dW")
    if bias:
        assert_close(db, db_ref, dtype, k=n, err_msg="db")


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_dense_out_and_need_dx(backend, ref, dtype, rng, activation):
    X, W, b = _arrays(rng, dtype, 6, 5, 4)
    out = np.full((6, 4), np.nan, dtype=dtype)
    Y = backend.dense_forward(X, W, b, activation, out=out)
    assert Y is out
    assert_close(out, ref.dense_forward(X, W, b, activation), dtype, k=5)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dW = np.zeros_like(W)
    dX_out = np.full_like(X, np.nan)
    dX = backend.dense_backward(dY, X, W, Y, dW, None, activation, out=dX_out)
    assert dX is dX_out and np.isfinite(dX).all()
    dW2 = np.zeros_like(W)
    assert backend.dense_backward(dY, X, W, Y, dW2, None, activation, need_dX=False) is None
    np.testing.assert_array_equal(dW2, dW)


@pytest.mark.parametrize("activation", [None, "tanh"])
def test_dense_gradients_accumulate(backend, dtype, n_threads, rng, activation):
    X, W, b = _arrays(rng, dtype, 9, 7, 5)
    Y = backend.dense_forward(X, W, b, activation)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    backend.dense_backward(dY, X, W, Y, dW, db, activation)
    once_W, once_b = dW.copy(), db.copy()
    assert np.abs(once_W).sum() > 0 and np.abs(once_b).sum() > 0
    backend.dense_backward(dY, X, W, Y, dW, db, activation)
    assert_close(dW, 2 * once_W, dtype, k=9)
    assert_close(db, 2 * once_b, dtype, k=9)


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("shape", [(7, 13, 5), (0, 5, 3), (131, 17, 263), (64, 257, 300)],
                         ids=str)
def test_dense_backward_frozen_weight_skips_dw(backend, ref, dtype, n_threads, rng, shape,
                                               activation):
    # dW=None (a frozen weight): dX and db as with a dW, and nothing else written
    n, k, m = shape
    X, W, b = readonly(*_arrays(rng, dtype, n, k, m))
    (Y,) = readonly(ref.dense_forward(X, W, b, activation))
    (dY,) = readonly(rng.standard_normal((n, m)).astype(dtype))
    db0 = rng.standard_normal(m).astype(dtype)
    db, db_ref = db0.copy(), db0.copy()
    dX = backend.dense_backward(dY, X, W, Y, None, db, activation)
    dX_ref = ref.dense_backward(dY, X, W, Y, np.zeros_like(W), db_ref, activation)
    assert_close(dX, dX_ref, dtype, k=m, err_msg="dX")
    assert_close(db, db_ref, dtype, k=n, err_msg="db")
    # no bias either: only dX
    dX2 = backend.dense_backward(dY, X, W, Y, None, None, activation)
    assert_close(dX2, dX_ref, dtype, k=m, err_msg="dX, no dW and no db")
    # a bias-only gradient (first layer, frozen weight): db without dX
    db2 = db0.copy()
    assert backend.dense_backward(dY, X, W, Y, None, db2, activation, need_dX=False) is None
    assert_close(db2, db_ref, dtype, k=n, err_msg="db, no dW and no dX")
    # everything frozen in the first layer: a no-op returning None
    assert backend.dense_backward(dY, X, W, Y, None, None, activation, need_dX=False) is None


@pytest.mark.parametrize("n", [1, 2, 4])
def test_a_forward_of_a_few_rows_gives_the_same_bits_on_any_thread_count(fast, ref, dtype, rng,
                                                                          n):
    # up to 4 rows a forward rounds alike however many threads there are (pynn's own kernel,
    # whose column tiles round as one thread does; BLAS's column tiles may round differently
    # from one whole GEMM, so with those the planner keeps such a forward on one thread)
    import pynn

    X, W, b = _arrays(rng, dtype, n, 300, 1021)
    before = pynn.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            pynn.set_num_threads(threads)
            outs.append(fast.dense_forward(X, W, b, "relu"))
    finally:
        pynn.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_close(outs[0], ref.dense_forward(X, W, b, "relu"), dtype, k=300)


@pytest.mark.parametrize("k", [1, 7, 8, 9, 300])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 16, 21])
def test_the_few_rows_kernel_rounds_each_output_alike_on_any_split(dtype, rng, n, k):
    # csrc/_dot.h: each output is its own partial sums reduced in one order, whatever the tile
    # it falls in, so one thread, column tiles on two and each row alone give the same bits
    # (k: below, at and past a vector of partial sums, and a tail; n: the 4-row tile's edges)
    from pynn._kernels import dense

    from pynn.tune._strategies import DOT, TILES

    m = 37  # two column tiles on two threads, each with an edge in the 3-row weight tile
    X, W, b = _arrays(rng, dtype, n, k, m)

    def forward(rows, strategy, threads, bias=b):
        Y = np.empty((rows.shape[0], m), dtype)
        dense.dense_forward(rows, W, bias, Y, dense.IDENTITY, 0.0, 0.0, threads, None,
                            strategy)
        return Y

    assert dense.forward_team(n, m, DOT | TILES, 2) == 2
    whole = forward(X, DOT, 1)
    np.testing.assert_array_equal(forward(X, DOT | TILES, 2), whole)
    np.testing.assert_array_equal(np.concatenate([forward(X[i:i + 1], DOT, 1)
                                                  for i in range(n)]), whole)
    exact = X.astype(np.float64) @ W.T.astype(np.float64) + b
    assert_close(whole, exact, dtype, k=k)
    assert_close(forward(X, DOT | TILES, 2, None), exact - b, dtype, k=k)


def test_dense_known_answer(backend, dtype):
    X = np.array([[1.0, 2.0], [-1.0, 0.5]], dtype=dtype)
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=dtype)
    b = np.array([0.0, -1.0, 0.5], dtype=dtype)
    Y = backend.dense_forward(X, W, b, "relu")
    np.testing.assert_array_equal(Y, [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    dY = np.ones((2, 3), dtype=dtype)
    dW = np.zeros_like(W)
    db = np.zeros_like(b)
    dX = backend.dense_backward(dY, X, W, Y, dW, db, "relu")
    # dZ = [[1, 1, 0], [0, 0, 0]]: only the first sample's first two units are active
    np.testing.assert_array_equal(db, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(dW, [[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    np.testing.assert_array_equal(dX, [[1.0, 1.0], [0.0, 0.0]])


def test_dense_empty_batch_leaves_grads(backend, dtype):
    X = np.empty((0, 4), dtype=dtype)
    W = np.ones((3, 4), dtype=dtype)
    b = np.ones(3, dtype=dtype)
    assert backend.dense_forward(X, W, b, "relu").shape == (0, 3)
    dW, db = np.full_like(W, 2.0), np.full_like(b, 2.0)
    dX = backend.dense_backward(np.empty((0, 3), dtype=dtype), X, W,
                                np.empty((0, 3), dtype=dtype), dW, db, "relu")
    assert dX.shape == (0, 4)
    np.testing.assert_array_equal(dW, 2.0)
    np.testing.assert_array_equal(db, 2.0)


def test_dense_k0_gives_bias(backend, dtype):
    X = np.empty((3, 0), dtype=dtype)
    W = np.empty((2, 0), dtype=dtype)
    b = np.array([-1.0, 2.0], dtype=dtype)
    np.testing.assert_array_equal(backend.dense_forward(X, W, b, "relu"), [[0, 2]] * 3)
    np.testing.assert_array_equal(backend.dense_forward(X, W, None), np.zeros((3, 2)))


def test_dense_noncontiguous(backend, ref, dtype, rng):
    Xb = rng.standard_normal((7, 20)).astype(dtype)
    Wb = rng.standard_normal((5, 10)).astype(dtype)
    X = Xb[:, ::2]
    W = np.asfortranarray(Wb)
    b = rng.standard_normal(10).astype(dtype)[::2]
    Xc, Wc, bc = (np.ascontiguousarray(a) for a in (X, W, b))
    Y = backend.dense_forward(X, W, b, "sigmoid")
    assert_close(Y, ref.dense_forward(Xc, Wc, bc, "sigmoid"), dtype, k=10)
    dY = np.asfortranarray(rng.standard_normal((7, 5)).astype(dtype))
    dW, db = np.zeros_like(Wc), np.zeros_like(bc)
    dWr, dbr = np.zeros_like(Wc), np.zeros_like(bc)
    Yf = np.asfortranarray(Y)
    dX = backend.dense_backward(dY, X, W, Yf, dW, db, "sigmoid")
    dXr = ref.dense_backward(np.ascontiguousarray(dY), Xc, Wc, Y, dWr, dbr, "sigmoid")
    assert_close(dX, dXr, dtype, k=10)
    assert_close(dW, dWr, dtype, k=7)
    assert_close(db, dbr, dtype, k=7)


@pytest.mark.parametrize("activation", ["square", "bogus"])
def test_dense_rejects_nonfusable_activation(backend, dtype, rng, activation):
    X, W, b = _arrays(rng, dtype, 2, 3, 4)
    with pytest.raises(ValueError, match="activation"):
        backend.dense_forward(X, W, b, activation)
    with pytest.raises(ValueError, match="activation"):
        backend.dense_backward(np.ones((2, 4), dtype), X, W, np.ones((2, 4), dtype),
                               np.zeros_like(W), None, activation)


def test_dense_rejects_negative_leaky_slope(backend, dtype, rng):
    X, W, b = _arrays(rng, dtype, 2, 3, 4)
    with pytest.raises(ValueError, match="activation"):
        backend.dense_forward(X, W, b, "leaky_relu", -0.1)


# ------------------------------------------------------------------ gradients (float64)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "elu", "sigmoid", "tanh"])
def test_dense_backward_gradient(backend, rng, activation, bias):
    n, k, m = 5, 4, 3
    X = rng.standard_normal((n, k))
    W = rng.standard_normal((m, k))
    b = rng.standard_normal(m) if bias else None
    C = rng.standard_normal((n, m))  # loss = sum(C * dense(X))
    if activation in ("relu", "leaky_relu", "elu"):
        # keep every pre-activation away from the kink at 0
        Z = X @ W.T + (b if bias else 0)
        X[np.abs(Z).min(axis=1) < 0.05] += 0.1

    def loss():
        return float(np.sum(C * backend.dense_forward(X, W, b, activation)))

    Y = backend.dense_forward(X, W, b, activation)
    dW = np.zeros_like(W)
    db = np.zeros(m) if bias else None
    dX = backend.dense_backward(C, X, W, Y, dW, db, activation)
    np.testing.assert_allclose(dX, numerical_grad(loss, X), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dW, numerical_grad(loss, W), rtol=1e-6, atol=1e-8)
    if bias:
        np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-8)


# every forward path of the fixed rules keeps the pre-activation: the few-rows kernel (DOT),
# row tiles, column tiles (every strategy forced: tests/test_tune.py)
@pytest.mark.parametrize("activation", ["gelu", "softplus", "mish"])
@pytest.mark.parametrize("shape", [(3, 300, 263), (16, 300, 263), (5, 257, 131),
                                   (1031, 3, 1021), (131, 17, 263)], ids=str)
def test_a_kept_preactivation_on_every_forward_path(fast, dtype, n_threads, rng, shape,
                                                     activation):
    n, k, m = shape
    X, W, b = _arrays(rng, dtype, n, k, m)
    Z = np.full((n, m), np.nan, dtype)
    Y = fast.dense_forward(X, W, b, activation, preact_out=Z)
    np.testing.assert_array_equal(Z, fast.dense_forward(X, W, b))
    np.testing.assert_array_equal(Y, fast.activation_forward(Z, activation))

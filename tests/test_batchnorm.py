"""Batch normalization: training forward (batch statistics + running stats), eval, backward."""
import numpy as np
import pytest

import pynn
from conftest import ODD_SHAPES, assert_close, numerical_grad, readonly

TRAIN_SHAPES = [s for s in ODD_SHAPES if s[0] >= 2] + [(2, 1)]


def _params(rng, f, dtype):
    gamma = (1 + 0.5 * rng.standard_normal(f)).astype(dtype)
    beta = rng.standard_normal(f).astype(dtype)
    running_mean = rng.standard_normal(f).astype(dtype)
    running_var = (1 + rng.random(f)).astype(dtype)
    return gamma, beta, running_mean, running_var


def _data(rng, shape, dtype, loc=2.0, scale=3.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


# ----------------------------------------------------------------------------- vs the reference


@pytest.mark.parametrize("shape", TRAIN_SHAPES, ids=str)
def test_forward_train_matches_reference(ref, fast, shape, dtype, n_threads, rng):
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    Y_ref, mean_ref, invstd_ref = ref.batchnorm_forward_train(X, gamma, beta, rm_ref, rv_ref,
                                                              momentum=0.2, eps=1e-3)
    Y, mean, invstd = fast.batchnorm_forward_train(X, gamma, beta, rm, rv, momentum=0.2, eps=1e-3)
    assert Y.dtype == dtype and mean.dtype == np.float64 and invstd.dtype == np.float64
    k = shape[0]
    assert_close(mean, mean_ref, np.float64, k=k)
    assert_close(invstd, invstd_ref, np.float64, k=k)
    assert_close(Y, Y_ref, dtype, k=k)
    assert_close(rm, rm_ref, dtype, k=k)
    assert_close(rv, rv_ref, dtype, k=k)


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
def test_forward_eval_matches_reference(ref, fast, shape, dtype, n_threads, rng):
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    Y_ref = ref.batchnorm_forward_eval(X, gamma, beta, rm, rv, eps=1e-4)
    Y = fast.batchnorm_forward_eval(X, gamma, beta, rm, rv, eps=1e-4)
    assert Y.shape == shape and Y.dtype == dtype
    assert_close(Y, Y_ref, dtype)


def test_forward_eval_empty_batch(backend, dtype, rng):
    gamma, beta, rm, rv = _params(rng, 5, dtype)
    Y = backend.batchnorm_forward_eval(np.zeros((0, 5), dtype), gamma, beta, rm, rv)
    assert Y.shape == (0, 5) and Y.dtype == dtype


def test_forward_eval_by_hand(backend, dtype):
    X = np.array([[1.0, 4.0], [3.0, -2.0]], dtype=dtype)
    gamma = np.array([2.0, 1.0], dtype=dtype)
    beta = np.array([0.5, -1.0], dtype=dtype)
    rm = np.array([1.0, 0.0], dtype=dtype)
    rv = np.array([4.0, 16.0], dtype=dtype)
    Y = backend.batchnorm_forward_eval(X, gamma, beta, rm, rv, eps=1e-30)
    np.testing.assert_allclose(Y, [[0.5, 0.0], [2.5, -1.5]], rtol=1e-6)


@pytest.mark.parametrize("shape", TRAIN_SHAPES, ids=str)
def test_backward_matches_reference_and_accumulates(ref, fast, shape, dtype, n_threads, rng):
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    _, mean, invstd = ref.batchnorm_forward_train(X, gamma, beta, rm, rv)
    dY = rng.standard_normal(shape).astype(dtype)
    dgamma0 = rng.standard_normal(shape[1]).astype(dtype)
    dbeta0 = rng.standard_normal(shape[1]).astype(dtype)
    dg_ref, db_ref = dgamma0.copy(), dbeta0.copy()
    dg, db = dgamma0.copy(), dbeta0.copy()
    dX_ref = ref.batchnorm_backward(dY, X, gamma, mean, invstd, dg_ref, db_ref)
    dX = fast.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db)
    k = shape[0]
    assert dX.dtype == dtype
    assert_close(dX, dX_ref, dtype, k=k)
    assert_close(dg, dg_ref, dtype, k=k)
    assert_close(db, db_ref, dtype, k=k)
    # accumulated, not overwritten: dbeta - dbeta0 is the column sum of dY
    assert_close(db - dbeta0, dY.astype(np.float64).sum(axis=0), dtype, k=k)


def test_backward_accumulates_over_calls(backend, rng):
    X = _data(rng, (9, 4), np.float64)
    gamma, beta, rm, rv = _params(rng, 4, np.float64)
    _, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv)
    dY = rng.standard_normal((9, 4))
    dg, db = np.zeros(4), np.zeros(4)
    backend.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db)
    once = dg.copy(), db.copy()
    backend.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db)
    np.testing.assert_allclose(dg, 2 * once[0], rtol=1e-12)
    np.testing.assert_allclose(db, 2 * once[1], rtol=1e-12)
    np.testing.assert_allclose(db, 2 * dY.sum(axis=0), rtol=1e-12)


# ----------------------------------------------------------------------------- fused activation
# Every activation batchnorm accepts (derivative from the output), with default and explicit
# parameters (a slope of 0 makes leaky ReLU a ReLU: still fusable).
FUSABLE = [(None, None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
           ("leaky_relu", 0.0), ("elu", None), ("elu", 0.7), ("sigmoid", None), ("tanh", None),
           ("step", None)]
FUSABLE_IDS = [f"{a}-{p}" for a, p in FUSABLE]
# Beyond ODD_SHAPES: several statistics blocks (64 rows) with short rows (many rows per
# activation block), and rows longer than an activation block (2048 elements).
THREAD_SHAPES = TRAIN_SHAPES + [(300, 7), (3, 2500)]


def _fused_train_and_separate(backend, X, gamma, beta, rm, rv, activation, param):
    """(fused forward, separate forward) results: (Y, mean, invstd, running_mean, running_var)
    and (Y_bn, Y, mean, invstd, running_mean, running_var)."""
    rm_f, rv_f, rm_s, rv_s = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    Y, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm_f, rv_f, momentum=0.2,
                                                      eps=1e-3, activation=activation,
                                                      param=param)
    Y_bn, mean_s, invstd_s = backend.batchnorm_forward_train(X, gamma, beta, rm_s, rv_s,
                                                             momentum=0.2, eps=1e-3)
    Y_s = backend.activation_forward(Y_bn, activation, param) if activation else Y_bn
    return (Y, mean, invstd, rm_f, rv_f), (Y_bn, Y_s, mean_s, invstd_s, rm_s, rv_s)


@pytest.mark.parametrize("activation,param", FUSABLE, ids=FUSABLE_IDS)
@pytest.mark.parametrize("shape", TRAIN_SHAPES, ids=str)
def test_fused_equals_batchnorm_then_activation(backend, shape, dtype, n_threads, rng,
                                                activation, param):
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    (X,) = readonly(X)
    fused, sep = _fused_train_and_separate(backend, X, gamma, beta, rm, rv, activation, param)
    Y, mean, invstd, rm_f, rv_f = fused
    Y_bn, Y_s, mean_s, invstd_s, rm_s, rv_s = sep
    assert Y.dtype == dtype and Y.shape == shape
    # the statistics come from the same passes: identical
    for a, b in ((mean, mean_s), (invstd, invstd_s), (rm_f, rm_s), (rv_f, rv_s)):
        np.testing.assert_array_equal(a, b)
    assert_close(Y, Y_s, dtype, err_msg="train forward")

    Y_eval = backend.batchnorm_forward_eval(X, gamma, beta, rm, rv, eps=1e-4,
                                            activation=activation, param=param)
    Y_eval_bn = backend.batchnorm_forward_eval(X, gamma, beta, rm, rv, eps=1e-4)
    Y_eval_s = (backend.activation_forward(Y_eval_bn, activation, param) if activation
                else Y_eval_bn)
    assert_close(Y_eval, Y_eval_s, dtype, err_msg="eval forward")

    (dY,) = readonly(rng.standard_normal(shape).astype(dtype))
    dg0 = rng.standard_normal(shape[1]).astype(dtype)
    db0 = rng.standard_normal(shape[1]).astype(dtype)
    dg, db, dg_s, db_s = dg0.copy(), db0.copy(), dg0.copy(), db0.copy()
    dX = backend.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db, activation=activation,
                                    param=param, Y=Y)
    dZ = (backend.activation_backward(dY, Y_bn, Y_s, activation, param) if activation else dY)
    dX_s = backend.batchnorm_backward(dZ, X, gamma, mean_s, invstd_s, dg_s, db_s)
    k = shape[0]
    assert_close(dX, dX_s, dtype, k=k, err_msg="dX")
    assert_close(dg, dg_s, dtype, k=k, err_msg="dgamma")
    assert_close(db, db_s, dtype, k=k, err_msg="dbeta")


@pytest.mark.parametrize("activation,param", FUSABLE, ids=FUSABLE_IDS)
@pytest.mark.parametrize("shape", TRAIN_SHAPES, ids=str)
def test_fused_matches_reference(ref, fast, shape, dtype, n_threads, rng, activation, param):
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    X, gamma, beta = readonly(X, gamma, beta)
    rm_ref, rv_ref = rm.copy(), rv.copy()
    kw = dict(activation=activation, param=param)
    Y_ref, mean_ref, invstd_ref = ref.batchnorm_forward_train(X, gamma, beta, rm_ref, rv_ref, **kw)
    Y, mean, invstd = fast.batchnorm_forward_train(X, gamma, beta, rm, rv, **kw)
    k = shape[0]
    assert_close(mean, mean_ref, np.float64, k=k)
    assert_close(invstd, invstd_ref, np.float64, k=k)
    assert_close(Y, Y_ref, dtype, k=k)
    assert_close(rm, rm_ref, dtype, k=k)
    assert_close(rv, rv_ref, dtype, k=k)
    assert_close(fast.batchnorm_forward_eval(X, gamma, beta, rm, rv, **kw),
                 ref.batchnorm_forward_eval(X, gamma, beta, rm, rv, **kw), dtype)

    # backward from the reference's forward, so both start from the same Y, mean and invstd
    (dY,) = readonly(rng.standard_normal(shape).astype(dtype))
    dg, db = np.zeros(shape[1], dtype), np.zeros(shape[1], dtype)
    dg_ref, db_ref = np.zeros(shape[1], dtype), np.zeros(shape[1], dtype)
    dX = fast.batchnorm_backward(dY, X, gamma, mean_ref, invstd_ref, dg, db, Y=Y_ref, **kw)
    dX_ref = ref.batchnorm_backward(dY, X, gamma, mean_ref, invstd_ref, dg_ref, db_ref,
                                    Y=Y_ref, **kw)
    assert_close(dX, dX_ref, dtype, k=k, err_msg="dX")
    assert_close(dg, dg_ref, dtype, k=k, err_msg="dgamma")
    assert_close(db, db_ref, dtype, k=k, err_msg="dbeta")


@pytest.mark.parametrize("activation,param", FUSABLE, ids=FUSABLE_IDS)
@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=str)
def test_cython_bit_identical_for_1_and_2_threads(fast, shape, dtype, rng, activation, param,
                                                  monkeypatch):
    # Statistics blocks and activation blocks are fixed by the shape, not the thread count,
    # so every sum is added in the same order: not just close, the same bits.
    from pynn import _threads

    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 1)
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    kw = dict(activation=activation, param=param)
    before = pynn.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            pynn.set_num_threads(n)
            rm_n, rv_n = rm.copy(), rv.copy()
            Y, mean, invstd = fast.batchnorm_forward_train(X, gamma, beta, rm_n, rv_n, **kw)
            Y_eval = fast.batchnorm_forward_eval(X, gamma, beta, rm, rv, **kw)
            dg, db = np.ones(shape[1], dtype), np.ones(shape[1], dtype)
            dX = fast.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db, Y=Y, **kw)
            results.append((Y, mean, invstd, rm_n, rv_n, Y_eval, dX, dg, db))
    finally:
        pynn.set_num_threads(before)
    names = "Y mean invstd running_mean running_var Y_eval dX dgamma dbeta".split()
    for name, a, b in zip(names, *results):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("frozen", ["dgamma", "dbeta", "both"])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("shape", [(2, 1), (7, 13), (131, 263)], ids=str)
def test_backward_frozen_gamma_beta_still_gives_dx(backend, shape, dtype, n_threads, rng,
                                                   activation, frozen):
    X = _data(rng, shape, dtype)
    gamma, beta, rm, rv = _params(rng, shape[1], dtype)
    Y, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv,
                                                      activation=activation)
    dY = rng.standard_normal(shape).astype(dtype)
    dg0 = rng.standard_normal(shape[1]).astype(dtype)
    db0 = rng.standard_normal(shape[1]).astype(dtype)
    dg_all, db_all = dg0.copy(), db0.copy()
    dX_all = backend.batchnorm_backward(dY, X, gamma, mean, invstd, dg_all, db_all,
                                        activation=activation, Y=Y)
    dg = None if frozen in ("dgamma", "both") else dg0.copy()
    db = None if frozen in ("dbeta", "both") else db0.copy()
    dX = backend.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db, activation=activation,
                                    Y=Y)
    np.testing.assert_array_equal(dX, dX_all)
    if dg is not None:
        np.testing.assert_array_equal(dg, dg_all)
    if db is not None:
        np.testing.assert_array_equal(db, db_all)


def test_identity_backward_ignores_y(backend, rng):
    # Y is only read for a real activation: the identity accepts none (today's calls) or any
    X = _data(rng, (5, 3), np.float64)
    gamma, beta, rm, rv = _params(rng, 3, np.float64)
    Y, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv)
    dY = rng.standard_normal((5, 3))
    a = backend.batchnorm_backward(dY, X, gamma, mean, invstd, np.zeros(3), np.zeros(3))
    b = backend.batchnorm_backward(dY, X, gamma, mean, invstd, np.zeros(3), np.zeros(3), Y=Y,
                                   activation=None)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- gradients


def test_backward_gradients_numerically(backend, rng):
    n, f = 6, 3
    X = _data(rng, (n, f), np.float64)
    gamma, beta, _, _ = _params(rng, f, np.float64)
    R = rng.standard_normal((n, f))

    def objective():
        # fresh running stats each call: they are updated in place but do not enter Y
        Y, _, _ = backend.batchnorm_forward_train(X, gamma, beta, np.zeros(f), np.ones(f),
                                                  eps=1e-3)
        return float(np.sum(Y * R))

    _, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, np.zeros(f), np.ones(f),
                                                      eps=1e-3)
    dgamma, dbeta = np.zeros(f), np.zeros(f)
    dX = backend.batchnorm_backward(R, X, gamma, mean, invstd, dgamma, dbeta)
    np.testing.assert_allclose(dX, numerical_grad(objective, X), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dgamma, numerical_grad(objective, gamma), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dbeta, numerical_grad(objective, beta), rtol=1e-5, atol=1e-8)


def _beta_away_from_kinks(backend, X, gamma):
    """beta putting each column's pre-activation zero halfway between two samples, and the
    half-gap left on either side (numerical derivatives must not straddle the kink)."""
    f = X.shape[1]
    Z0, _, _ = backend.batchnorm_forward_train(X, gamma, np.zeros(f), np.zeros(f), np.ones(f),
                                               eps=1e-3)
    s = np.sort(Z0, axis=0)
    h = X.shape[0] // 2
    return -(s[h - 1] + s[h]) / 2, float(np.min(s[h] - s[h - 1]) / 2)


@pytest.mark.parametrize("activation,param", FUSABLE, ids=FUSABLE_IDS)
def test_fused_backward_gradients_numerically(backend, rng, activation, param):
    n, f = 6, 3
    X = _data(rng, (n, f), np.float64)
    gamma, _, _, _ = _params(rng, f, np.float64)
    beta, margin = _beta_away_from_kinks(backend, X, gamma)
    assert margin > 0.02
    R = rng.standard_normal((n, f))
    kw = dict(activation=activation, param=param)

    def objective():
        Y, _, _ = backend.batchnorm_forward_train(X, gamma, beta, np.zeros(f), np.ones(f),
                                                  eps=1e-3, **kw)
        return float(np.sum(Y * R))

    Y, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, np.zeros(f), np.ones(f),
                                                      eps=1e-3, **kw)
    dgamma, dbeta = np.zeros(f), np.zeros(f)
    dX = backend.batchnorm_backward(R, X, gamma, mean, invstd, dgamma, dbeta, Y=Y, **kw)
    np.testing.assert_allclose(dX, numerical_grad(objective, X), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dgamma, numerical_grad(objective, gamma), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dbeta, numerical_grad(objective, beta), rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- known answers


def test_running_stats_by_hand(backend, dtype):
    X = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], dtype=dtype)
    gamma = np.ones(2, dtype)
    beta = np.zeros(2, dtype)
    rm = np.array([1.0, 1.0], dtype=dtype)
    rv = np.array([2.0, 2.0], dtype=dtype)
    Y, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv, momentum=0.1,
                                                      eps=1e-5)
    np.testing.assert_allclose(mean, [3.0, 6.0], rtol=1e-12)
    # biased variance normalizes: [8/3, 32/3]
    np.testing.assert_allclose(invstd, 1 / np.sqrt(np.array([8 / 3, 32 / 3]) + 1e-5), rtol=1e-12)
    # running mean: 0.9 * 1 + 0.1 * [3, 6]
    np.testing.assert_allclose(rm, [1.2, 1.5], rtol=1e-6)
    # running var uses the unbiased variance [4, 16] = biased * 3/2: 0.9 * 2 + 0.1 * [4, 16]
    np.testing.assert_allclose(rv, [2.2, 3.4], rtol=1e-6)
    # column 1 is column 0 doubled: the normalized values agree up to eps
    np.testing.assert_allclose(Y[:, 0], [-np.sqrt(1.5), 0, np.sqrt(1.5)], rtol=1e-5, atol=1e-6)


def test_momentum_extremes(backend):
    X = np.array([[0.0], [2.0]])
    g, b = np.ones(1), np.zeros(1)
    rm, rv = np.array([7.0]), np.array([9.0])
    backend.batchnorm_forward_train(X, g, b, rm, rv, momentum=0.0)
    assert rm[0] == 7.0 and rv[0] == 9.0
    backend.batchnorm_forward_train(X, g, b, rm, rv, momentum=1.0)
    assert rm[0] == 1.0 and rv[0] == pytest.approx(2.0)  # unbiased var of {0, 2}


def test_normalized_output_has_zero_mean_unit_variance(backend, dtype, n_threads, rng):
    X = _data(rng, (257, 31), dtype, loc=-5.0, scale=10.0)
    f = X.shape[1]
    Y, _, _ = backend.batchnorm_forward_train(X, np.ones(f, dtype), np.zeros(f, dtype),
                                              np.zeros(f, dtype), np.ones(f, dtype), eps=1e-12)
    y = Y.astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=0), 1.0, rtol=1e-5)


def test_statistics_stable_with_large_mean(backend, n_threads, rng):
    # float32 data far from zero: a one-pass E[x^2] - E[x]^2 would lose every digit here
    X = (1e4 + rng.standard_normal((4097, 8))).astype(np.float32)
    f = X.shape[1]
    _, mean, invstd = backend.batchnorm_forward_train(
        X, np.ones(f, np.float32), np.zeros(f, np.float32), np.zeros(f, np.float32),
        np.ones(f, np.float32), eps=1e-5)
    x = X.astype(np.float64)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.var(axis=0) + 1e-5), rtol=1e-9)


def test_read_only_inputs_and_preallocated_out(backend, ref, dtype, rng):
    X = _data(rng, (11, 5), dtype)
    gamma, beta, rm, rv = _params(rng, 5, dtype)
    for a in (X, gamma, beta):
        a.flags.writeable = False
    out = np.full(X.shape, np.nan, dtype)
    rm2, rv2 = rm.copy(), rv.copy()
    Y, mean, invstd = backend.batchnorm_forward_train(X, gamma, beta, rm, rv, out=out)
    assert Y is out
    Y_ref, _, _ = ref.batchnorm_forward_train(X, gamma, beta, rm2, rv2)
    assert_close(out, Y_ref, dtype)

    for a in (rm, rv, mean, invstd):
        a.flags.writeable = False
    out_eval = np.full(X.shape, np.nan, dtype)
    assert backend.batchnorm_forward_eval(X, gamma, beta, rm, rv, out=out_eval) is out_eval
    assert_close(out_eval, ref.batchnorm_forward_eval(X, gamma, beta, rm, rv), dtype)

    dY = rng.standard_normal(X.shape).astype(dtype)
    dY.flags.writeable = False
    dX_out = np.full(X.shape, np.nan, dtype)
    dg, db = np.zeros(5, dtype), np.zeros(5, dtype)
    assert backend.batchnorm_backward(dY, X, gamma, mean, invstd, dg, db, out=dX_out) is dX_out
    dX_ref = ref.batchnorm_backward(dY, X, gamma, mean, invstd, np.zeros(5, dtype),
                                    np.zeros(5, dtype))
    assert_close(dX_out, dX_ref, dtype)


# ----------------------------------------------------------------------------- bad input


def _bad_cases(rng):
    X = rng.standard_normal((4, 3))
    g, b, rm, rv = np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)
    mean, invstd = np.zeros(3), np.ones(3)
    return [
        ("batchnorm_forward_train", (np.zeros((1, 3)), g, b, rm, rv), {}, ValueError,
         "X must have at least 2 rows"),
        ("batchnorm_forward_train", (np.zeros((0, 3)), g, b, rm, rv), {}, ValueError,
         "X must have at least 2 rows"),
        ("batchnorm_forward_train", (X, np.ones(4), b, rm, rv), {}, ValueError,
         r"gamma must have shape \(3,\)"),
        ("batchnorm_forward_train", (X, g, b.astype(np.float32), rm, rv), {}, TypeError,
         "beta has dtype"),
        ("batchnorm_forward_train", (X, g, b, None, rv), {}, TypeError, "running_mean must be"),
        ("batchnorm_forward_train", (X, g, b, rm, np.ones(2)), {}, ValueError,
         "running_var must have shape"),
        ("batchnorm_forward_train", (X, g, b, rm, rv), {"momentum": 1.5}, ValueError,
         "momentum must be <= 1"),
        ("batchnorm_forward_train", (X, g, b, rm, rv), {"eps": 0.0}, ValueError, "eps must be > 0"),
        ("batchnorm_forward_train", (X[0], g, b, rm, rv), {}, ValueError, "X must be 2-D"),
        ("batchnorm_forward_eval", (X, g, b, rm, np.ones(4)), {}, ValueError,
         "running_var must have shape"),
        ("batchnorm_backward", (X, X, g, mean.astype(np.float32), invstd, np.zeros(3),
                                np.zeros(3)), {}, TypeError, "mean has dtype"),
        ("batchnorm_backward", (X, X[:3], g, mean, invstd, np.zeros(3), np.zeros(3)), {},
         ValueError, "X must have shape"),
        ("batchnorm_backward", (X, X, g, mean, invstd, np.zeros(4), np.zeros(3)), {},
         ValueError, r"dgamma must have shape \(3,\)"),
        ("batchnorm_backward", (X, X, g, mean, invstd, np.zeros(3), np.zeros(3)),
         {"activation": "relu"}, TypeError, r"Y \(the forward's output\) is required"),
        ("batchnorm_backward", (X, X, g, mean, invstd, np.zeros(3), np.zeros(3)),
         {"activation": "relu", "Y": X[:3]}, ValueError, r"Y must have shape \(4, 3\)"),
        ("batchnorm_forward_train", (X, g, b, rm, rv), {"activation": "square"}, ValueError,
         "activation 'square' with param 0.0 cannot be fused into batchnorm"),
        ("batchnorm_forward_train", (X, g, b, rm, rv), {"activation": "leaky_relu",
                                                         "param": -0.1}, ValueError,
         "cannot be fused into batchnorm"),
        ("batchnorm_forward_eval", (X, g, b, rm, rv), {"activation": "elu", "param": 0.0},
         ValueError, "cannot be fused into batchnorm"),
        ("batchnorm_forward_eval", (X, g, b, rm, rv), {"activation": "swish"}, ValueError,
         "activation must be one of"),
        ("batchnorm_backward", (X, X, g, mean, invstd, np.zeros(3), np.zeros(3)),
         {"activation": "square", "Y": X}, ValueError, "cannot be fused into batchnorm"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_bad_input_names_the_argument(backend, case, rng):
    method, args, kwargs, exc, match = _bad_cases(rng)[case]
    with pytest.raises(exc, match=match):
        getattr(backend, method)(*args, **kwargs)


def test_bad_case_table_is_fully_parametrized(rng):
    assert len(_bad_cases(rng)) == 20

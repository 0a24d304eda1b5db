"""Activation and softmax kernels: Cython vs the NumPy reference, gradients, known answers."""
import numpy as np
import pytest

from conftest import ODD_SHAPES, assert_close, numerical_grad, readonly

ALL_KINDS = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "step", "square",
             "gelu", "gelu_tanh", "silu", "softplus", "mish"]
# derivative-free kinds are compared but not gradient-checked at kinks
PARAMS = {"leaky_relu": 0.2, "elu": 0.7, "softplus": (2.0, 3.0)}


def _x(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------ cython vs reference
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ALL_KINDS)
def test_activation_forward_matches_reference(fast, ref, dtype, n_threads, rng, shape,
                                              activation):
    X = _x(rng, shape, dtype)
    (X,) = readonly(X)
    param = PARAMS.get(activation)
    got = fast.activation_forward(X, activation, param)
    assert got.dtype == dtype and got.shape == shape
    assert_close(got, ref.activation_forward(X, activation, param), dtype)


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ALL_KINDS)
def test_activation_backward_matches_reference(fast, ref, dtype, n_threads, rng, shape,
                                               activation):
    X = _x(rng, shape, dtype)
    param = PARAMS.get(activation)
    Y = ref.activation_forward(X, activation, param)
    dY = _x(rng, shape, dtype, 1.0)
    X, Y, dY = readonly(X, Y, dY)
    got = fast.activation_backward(dY, X, Y, activation, param)
    assert_close(got, ref.activation_backward(dY, X, Y, activation, param), dtype)


@pytest.mark.parametrize("activation", ALL_KINDS)
def test_an_elements_bits_do_not_depend_on_its_place_in_the_span(fast, dtype, rng, activation):
    """Each element alone decides its result: the whole array in one call gives the bits of
    short unaligned pieces (a fused Dense backward runs a row per span, the threads a chunk
    each). Caught the AVX-512 clone contracting its vector body and its tail differently."""
    param = PARAMS.get(activation)
    x = _x(rng, 203, dtype)
    dy = _x(rng, 203, dtype, scale=1.0)
    y = fast.activation_forward(x, activation, param)
    dx = fast.activation_backward(dy, x, y, activation, param)
    for width in (1, 3, 4, 7, 16, 17, 33):
        pieces = [slice(lo, min(lo + width, 203)) for lo in range(0, 203, width)]
        np.testing.assert_array_equal(
            np.concatenate([fast.activation_forward(x[p].copy(), activation, param)
                            for p in pieces]), y, err_msg=f"forward, pieces of {width}")
        np.testing.assert_array_equal(
            np.concatenate([fast.activation_backward(dy[p].copy(), x[p].copy(), y[p].copy(),
                                                     activation, param) for p in pieces]),
            dx, err_msg=f"backward, pieces of {width}")


@pytest.mark.parametrize("activation", ALL_KINDS)
def test_activation_out_is_written_and_returned(backend, dtype, rng, activation):
    X = _x(rng, (5, 11), dtype)
    out = np.full_like(X, np.nan)
    Y = backend.activation_forward(X, activation, out=out)
    assert Y is out and not np.isnan(out).any()
    dX = np.full_like(X, np.nan)
    got = backend.activation_backward(np.ones_like(X), X, out, activation, out=dX)
    assert got is dX and not np.isnan(dX).any()


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "elu", "tanh"])
def test_activation_noncontiguous_input(backend, ref, dtype, rng, activation):
    base = _x(rng, (9, 14), dtype)
    for X in (base[:, ::2], np.asfortranarray(base), base.T):
        expected = ref.activation_forward(np.ascontiguousarray(X), activation)
        assert_close(backend.activation_forward(X, activation), expected, dtype)
        dY = np.asfortranarray(_x(rng, X.shape, dtype))
        got = backend.activation_backward(dY, X, expected, activation)
        exp_dX = ref.activation_backward(
            np.ascontiguousarray(dY), np.ascontiguousarray(X), expected, activation
        )
        assert_close(got, exp_dX, dtype)


def test_activation_large_parallel(fast, ref, dtype, n_threads, rng):
    """Far above the parallel threshold, with a length that does not split evenly."""
    X = _x(rng, (100_003,), dtype)
    for activation in ["relu", "sigmoid", "tanh", "elu", "leaky_relu", "gelu", "silu", "mish"]:
        Y = fast.activation_forward(X, activation)
        assert_close(Y, ref.activation_forward(X, activation), dtype)
        dY = _x(rng, X.shape, dtype)
        assert_close(fast.activation_backward(dY, X, Y, activation),
                     ref.activation_backward(dY, X, Y, activation), dtype)


# ------------------------------------------------------------------ known answers
def test_step_and_relu_at_zero(backend, dtype):
    X = np.array([-1.0, -0.0, 0.0, 2.0], dtype=dtype)
    np.testing.assert_array_equal(backend.activation_forward(X, "step"), [0, 0, 0, 1])
    np.testing.assert_array_equal(backend.activation_forward(X, "relu"), [0, 0, 0, 2])
    Y = backend.activation_forward(X, "relu")
    dX = backend.activation_backward(np.full_like(X, 3), X, Y, "relu")
    np.testing.assert_array_equal(dX, [0, 0, 0, 3])  # relu'(0) = 0
    np.testing.assert_array_equal(
        backend.activation_backward(np.full_like(X, 3), X, X, "step"), [0, 0, 0, 0]
    )


def test_sigmoid_extremes_finite(backend, dtype):
    X = np.array([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0, np.inf, -np.inf], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        Y = backend.activation_forward(X, "sigmoid")
    assert np.isfinite(Y).all()
    np.testing.assert_allclose(Y, [0, 0, 1 / (1 + np.exp(20.0)), 0.5, 1 / (1 + np.exp(-20.0)),
                                   1, 1, 1, 0], rtol=1e-5, atol=1e-30)


def test_tanh_elu_known_values(backend, dtype):
    X = np.array([-30.0, -1.0, -1e-4, 0.0, 1e-4, 0.5, 30.0], dtype=dtype)
    assert_close(backend.activation_forward(X, "tanh"), np.tanh(X.astype(np.float64)), dtype)
    expected = np.where(X > 0, X, 0.5 * np.expm1(np.minimum(X.astype(np.float64), 0)))
    assert_close(backend.activation_forward(X, "elu", 0.5), expected, dtype)
    # expm1 keeps the relative accuracy near 0 (exp(x) - 1 would not)
    tiny = np.array([-1e-7], dtype=dtype)
    np.testing.assert_allclose(backend.activation_forward(tiny, "elu"), [-1e-7], rtol=1e-5)


@pytest.mark.parametrize("activation", ALL_KINDS)
def test_nan_propagates(fast, ref, dtype, activation):
    X = np.array([np.nan, 1.0, -1.0], dtype=dtype)
    got = fast.activation_forward(X, activation)
    exp = ref.activation_forward(X, activation)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
    dY = np.array([np.nan, 1.0, 1.0], dtype=dtype)
    got = fast.activation_backward(dY, X, exp, activation)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.activation_backward(dY, X, exp,
                                                                                activation)))


# ------------------------------------------------------------------ gradients (float64)
@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "elu", "sigmoid",
                                        "tanh", "step", "square", "gelu", "gelu_tanh", "silu",
                                        "softplus", "mish"])
def test_activation_backward_gradient(backend, rng, activation):
    X = rng.standard_normal((4, 6))
    X[np.abs(X) < 0.1] += 0.3  # away from the kinks at 0
    W = rng.standard_normal(X.shape)  # loss = sum(W * act(X))
    param = PARAMS.get(activation)

    def loss():
        return float(np.sum(W * backend.activation_forward(X, activation, param)))

    Y = backend.activation_forward(X, activation, param)
    dX = backend.activation_backward(W, X, Y, activation, param)
    np.testing.assert_allclose(dX, numerical_grad(loss, X), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ softmax
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
def test_softmax_matches_reference(fast, ref, dtype, n_threads, rng, shape):
    X = _x(rng, shape, dtype)
    dY = _x(rng, shape, dtype)
    X, dY = readonly(X, dY)
    Y = fast.softmax_forward(X)
    assert_close(Y, ref.softmax_forward(X), dtype, k=shape[1])
    Yr = ref.softmax_forward(X)
    (Yr,) = readonly(Yr)
    out = np.empty_like(Yr)
    got = fast.softmax_backward(dY, Yr, out=out)
    assert got is out
    assert_close(got, ref.softmax_backward(dY, Yr), dtype, k=shape[1])


def test_softmax_rows_sum_to_one_with_huge_logits(backend, dtype, n_threads):
    X = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4 + 1, -1e4]], dtype=dtype)
    Y = backend.softmax_forward(X)
    assert np.isfinite(Y).all()
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(Y[0], [1, 0, 0], atol=1e-7)
    np.testing.assert_allclose(Y[1], [1 / 3] * 3, rtol=1e-6)
    e = np.exp(1.0)
    np.testing.assert_allclose(Y[2], [1 / (2 + e), e / (2 + e), 1 / (2 + e)], rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5000), (1000, 10)], ids=str)
def test_softmax_long_and_short_rows(fast, ref, dtype, n_threads, rng, shape):
    # the float32 kernel works in blocks of 4096 elements: a row longer than a block, and
    # many short rows sharing one
    X = _x(rng, shape, dtype)
    assert_close(fast.softmax_forward(X), ref.softmax_forward(X), dtype, k=shape[1])


def test_softmax_nan_propagates(fast, ref, dtype, n_threads):
    X = np.array([[1.0, np.nan, 2.0], [np.nan, 0.0, 0.0], [0.5, 1.0, -np.inf]], dtype=dtype)
    got = fast.softmax_forward(X)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref.softmax_forward(X)))
    assert np.isnan(got[:2]).all() and not np.isnan(got[2]).any()


def test_softmax_noncontiguous(backend, ref, dtype, rng):
    base = _x(rng, (8, 12), dtype)
    for X in (base[:, ::3], np.asfortranarray(base)):
        assert_close(backend.softmax_forward(X), ref.softmax_forward(np.ascontiguousarray(X)),
                     dtype, k=X.shape[1])


def test_softmax_backward_gradient(backend, rng):
    X = rng.standard_normal((3, 5))
    W = rng.standard_normal(X.shape)

    def loss():
        return float(np.sum(W * backend.softmax_forward(X)))

    dX = backend.softmax_backward(W, backend.softmax_forward(X))
    np.testing.assert_allclose(dX, numerical_grad(loss, X), rtol=1e-6, atol=1e-9)

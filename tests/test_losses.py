"""Losses: MSE, binary cross-entropy from logits, softmax cross-entropy (value + gradient)."""
import numpy as np
import pytest

from conftest import ODD_SHAPES, assert_close, numerical_grad

NONEMPTY = [s for s in ODD_SHAPES if s[0] > 0]
ELEMENTWISE = ["mse_loss", "bce_with_logits_loss"]


def _targets(name, rng, shape, dtype):
    if name == "bce_with_logits_loss":
        return rng.random(shape).astype(dtype)  # probabilities in [0, 1)
    return rng.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------- vs the reference


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", NONEMPTY, ids=str)
def test_elementwise_loss_matches_reference(ref, fast, name, shape, dtype, n_threads, rng):
    Y = (3 * rng.standard_normal(shape)).astype(dtype)
    T = _targets(name, rng, shape, dtype)
    v_ref, g_ref = getattr(ref, name)(Y, T)
    v_fast, g_fast = getattr(fast, name)(Y, T)
    assert isinstance(v_fast, float)
    assert g_fast.dtype == dtype and g_fast.shape == shape
    assert_close(v_fast, v_ref, dtype, k=Y.size)
    assert_close(g_fast, g_ref, dtype)


@pytest.mark.parametrize("shape", NONEMPTY, ids=str)
def test_softmax_ce_matches_reference(ref, fast, shape, dtype, n_threads, rng):
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    v_ref, g_ref = ref.softmax_cross_entropy_loss(Z, labels)
    v_fast, g_fast = fast.softmax_cross_entropy_loss(Z, labels)
    assert isinstance(v_fast, float)
    assert g_fast.dtype == dtype
    assert_close(v_fast, v_ref, dtype, k=shape[1])
    assert_close(g_fast, g_ref, dtype)
    # every gradient row sums to zero (softmax minus one-hot)
    np.testing.assert_allclose(g_fast.astype(np.float64).sum(axis=1), 0.0, atol=1e-6)


@pytest.mark.parametrize("name", ELEMENTWISE + ["softmax_cross_entropy_loss"])
def test_value_only_equals_value_with_gradient(backend, name, dtype, n_threads, rng):
    Z = rng.standard_normal((37, 11)).astype(dtype)
    if name == "softmax_cross_entropy_loss":
        T = rng.integers(0, 11, 37)
    else:
        T = _targets(name, rng, Z.shape, dtype)
    v, G = getattr(backend, name)(Z, T)
    v2, G2 = getattr(backend, name)(Z, T, need_grad=False)
    assert G2 is None
    assert G is not None and G.shape == Z.shape
    assert v2 == pytest.approx(v, rel=1e-12)


@pytest.mark.parametrize("name", ELEMENTWISE + ["softmax_cross_entropy_loss"])
def test_read_only_inputs_and_preallocated_grad(backend, ref, name, dtype, rng):
    Z = rng.standard_normal((13, 7)).astype(dtype)
    if name == "softmax_cross_entropy_loss":
        T = rng.integers(0, 7, 13)
    else:
        T = _targets(name, rng, Z.shape, dtype)
    Z.flags.writeable = False
    T.flags.writeable = False
    out = np.full(Z.shape, np.nan, dtype=dtype)
    v, G = getattr(backend, name)(Z, T, grad_out=out)
    assert G is out
    v_ref, g_ref = getattr(ref, name)(Z, T)
    assert_close(v, v_ref, dtype, k=Z.size)
    assert_close(out, g_ref, dtype)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_strided_input_is_copied_not_misread(fast, ref, name, dtype, rng):
    big = rng.standard_normal((10, 14)).astype(dtype)
    Z = big[:, ::2]  # not C-contiguous
    T = _targets(name, rng, Z.shape, dtype)
    assert_close(getattr(fast, name)(Z, T)[1], getattr(ref, name)(np.ascontiguousarray(Z), T)[1],
                 dtype)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_loss_gradient_numerically(backend, name, rng):
    Z = rng.standard_normal((5, 3))
    T = _targets(name, rng, Z.shape, np.float64)
    _, G = getattr(backend, name)(Z, T)
    num = numerical_grad(lambda: getattr(backend, name)(Z, T, need_grad=False)[0], Z)
    np.testing.assert_allclose(G, num, rtol=1e-6, atol=1e-9)


def test_softmax_ce_gradient_numerically(backend, rng):
    Z = 2 * rng.standard_normal((6, 4))
    labels = np.array([0, 3, 1, 1, 2, 0])
    _, G = backend.softmax_cross_entropy_loss(Z, labels)
    num = numerical_grad(
        lambda: backend.softmax_cross_entropy_loss(Z, labels, need_grad=False)[0], Z
    )
    np.testing.assert_allclose(G, num, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- known answers


def test_mse_by_hand(backend, dtype):
    Y = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=dtype)
    T = np.array([[0.0, 2.0], [5.0, 4.0]], dtype=dtype)
    v, G = backend.mse_loss(Y, T)
    assert v == pytest.approx((1 + 0 + 4 + 0) / 4)
    np.testing.assert_array_equal(G, np.array([[0.5, 0.0], [-1.0, 0.0]], dtype=dtype))


def test_bce_with_huge_logits_is_finite_and_exact(backend, dtype):
    Z = np.array([[1000.0, -1000.0, 1000.0, -1000.0]], dtype=dtype)
    T = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    v, G = backend.bce_with_logits_loss(Z, T)
    # wrong with certainty costs |z| each, right with certainty costs nothing
    assert np.isfinite(v)
    assert v == pytest.approx((1000 + 1000 + 0 + 0) / 4, rel=1e-12)
    np.testing.assert_allclose(G, [[0.25, -0.25, 0.0, 0.0]], atol=1e-12)


def test_bce_at_zero_logit(backend, dtype):
    Z = np.zeros((2, 3), dtype=dtype)
    T = np.array([[0, 1, 0.5], [1, 0, 0.5]], dtype=dtype)
    v, G = backend.bce_with_logits_loss(Z, T)
    assert v == pytest.approx(np.log(2.0), rel=1e-6)
    np.testing.assert_allclose(G, (0.5 - T) / 6, rtol=1e-6)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_ce_with_huge_logits(backend, dtype, scale):
    Z = np.array([[scale, 0.0, -scale], [scale, 0.0, -scale]], dtype=dtype)
    labels = np.array([0, 1])
    v, G = backend.softmax_cross_entropy_loss(Z, labels)
    assert np.isfinite(v) and np.all(np.isfinite(G))
    if scale > 0:
        # row 0: the label holds all the mass (loss 0); row 1: the label is 1e4 below the max
        assert v == pytest.approx((0.0 + 1e4) / 2)
        np.testing.assert_allclose(G, [[0, 0, 0], [0.5, -0.5, 0]], atol=1e-7)
    else:
        # the max is now column 2: row 0 label is 2e4 below it, row 1 label 1e4 below
        assert v == pytest.approx((2e4 + 1e4) / 2)
        np.testing.assert_allclose(G, [[-0.5, 0, 0.5], [0, -0.5, 0.5]], atol=1e-7)


def test_softmax_ce_uniform_logits(backend, dtype):
    Z = np.full((4, 10), 3.0, dtype=dtype)
    labels = np.arange(4)
    v, G = backend.softmax_cross_entropy_loss(Z, labels)
    assert v == pytest.approx(np.log(10.0), rel=1e-6)
    expected = np.full((4, 10), 0.1 / 4)
    expected[np.arange(4), labels] -= 1 / 4
    np.testing.assert_allclose(G, expected, rtol=1e-5, atol=1e-7)


def test_softmax_ce_single_class_is_zero(backend, dtype):
    v, G = backend.softmax_cross_entropy_loss(np.array([[5.0]], dtype=dtype), np.array([0]))
    assert v == 0.0
    np.testing.assert_array_equal(G, [[0.0]])



# The float32 kernel works in blocks of 4096 elements: rows longer than that take another path
# (value only: the exps are summed chunk by chunk), many short rows share a block.
@pytest.mark.parametrize("shape", [(3, 4099), (2, 9001), (1000, 10)], ids=str)
def test_softmax_ce_long_and_short_rows(ref, fast, shape, dtype, n_threads, rng):
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    v_ref, g_ref = ref.softmax_cross_entropy_loss(Z, labels)
    v_fast, g_fast = fast.softmax_cross_entropy_loss(Z, labels)
    v_only, _ = fast.softmax_cross_entropy_loss(Z, labels, need_grad=False)
    assert_close(v_fast, v_ref, dtype, k=shape[1])
    assert_close(v_only, v_ref, dtype, k=shape[1])
    assert_close(g_fast, g_ref, dtype)


def test_softmax_ce_nan_propagates(fast, ref, dtype, n_threads):
    Z = np.array([[1.0, np.nan, 2.0], [0.5, 1.0, -1.0], [np.nan] * 3], dtype=dtype)
    labels = np.array([0, 1, 2])
    v, G = fast.softmax_cross_entropy_loss(Z, labels)
    _, G_ref = ref.softmax_cross_entropy_loss(Z, labels)
    assert np.isnan(v)
    np.testing.assert_array_equal(np.isnan(G), np.isnan(G_ref))
    assert np.isnan(G[[0, 2]]).all() and not np.isnan(G[1]).any()


def test_softmax_ce_accepts_any_integer_label_dtype(fast, ref, rng):
    Z = rng.standard_normal((9, 5))
    for ldt in (np.int8, np.uint16, np.int32, np.int64):
        labels = rng.integers(0, 5, 9).astype(ldt)
        assert fast.softmax_cross_entropy_loss(Z, labels)[0] == pytest.approx(
            ref.softmax_cross_entropy_loss(Z, labels)[0], rel=1e-12)


# ----------------------------------------------------------------------------- bad input

BAD = [
    # (method, args builder, exception, regex)
    ("mse_loss", lambda: (np.zeros((0, 5)), np.zeros((0, 5))), ValueError, "Y is an empty batch"),
    ("bce_with_logits_loss", lambda: (np.zeros((0, 5)), np.zeros((0, 5))), ValueError,
     "Z is an empty batch"),
    ("softmax_cross_entropy_loss", lambda: (np.zeros((0, 5)), np.zeros(0, dtype=int)),
     ValueError, "Z is an empty batch"),
    ("mse_loss", lambda: (np.zeros((3, 2)), np.zeros((3, 3))), ValueError, "T must have shape"),
    ("mse_loss", lambda: (np.zeros((3, 2)), np.zeros((3, 2), np.float32)), TypeError, "T has dtype"),
    ("mse_loss", lambda: (np.zeros((3, 2), np.int64), np.zeros((3, 2))), TypeError, "Y must have"),
    ("bce_with_logits_loss", lambda: (np.zeros(3), np.zeros(3)), ValueError, "Z must be 2-D"),
    ("softmax_cross_entropy_loss", lambda: (np.zeros((3, 4)), np.array([0, 4, 1])), ValueError,
     r"labels must be class indices in \[0, 4\)"),
    ("softmax_cross_entropy_loss", lambda: (np.zeros((3, 4)), np.array([0, -1, 1])), ValueError,
     "labels must be class indices"),
    ("softmax_cross_entropy_loss", lambda: (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0])),
     TypeError, "labels must hold integer"),
    ("softmax_cross_entropy_loss", lambda: (np.zeros((3, 4)), [0, 1, 2]), TypeError,
     "labels must be a numpy.ndarray"),
    ("softmax_cross_entropy_loss", lambda: (np.zeros((3, 4)), np.array([0, 1])), ValueError,
     r"labels must have shape \(3,\)"),
]


@pytest.mark.parametrize("method,args,exc,match", BAD, ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_the_argument(backend, method, args, exc, match):
    with pytest.raises(exc, match=match):
        getattr(backend, method)(*args())


@pytest.mark.parametrize("name", ELEMENTWISE + ["softmax_cross_entropy_loss"])
def test_bad_grad_out(backend, name):
    Z = np.zeros((3, 4))
    T = np.zeros(3, dtype=int) if name == "softmax_cross_entropy_loss" else np.zeros((3, 4))
    with pytest.raises(ValueError, match="grad_out must have shape"):
        getattr(backend, name)(Z, T, grad_out=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="grad_out has dtype"):
        getattr(backend, name)(Z, T, grad_out=np.zeros((3, 4), np.float32))
    ro = np.zeros((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out is read-only"):
        getattr(backend, name)(Z, T, grad_out=ro)

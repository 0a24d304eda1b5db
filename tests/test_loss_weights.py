"""Loss reductions, sample weights and class weights: both backends, gradients, torch."""
import numpy as np
import pytest

from conftest import assert_close, numerical_grad
from pynn import nn

LOSSES = ["mse_loss", "bce_with_logits_loss", "softmax_cross_entropy_loss"]
REDUCTIONS = ["mean", "sum", "none"]


def _case(name, rng, shape, dtype):
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    if name == "softmax_cross_entropy_loss":
        return Z, rng.integers(0, shape[1], shape[0])
    if name == "bce_with_logits_loss":
        return Z, rng.random(shape).astype(dtype)
    return Z, rng.standard_normal(shape).astype(dtype)


def _extra(name, rng, k, weighted):
    """The loss's own weight argument (class weights or pos_weight), or nothing."""
    if not weighted:
        return {}
    if name == "softmax_cross_entropy_loss":
        return {"class_weight": rng.random(k) + 0.1}
    if name == "bce_with_logits_loss":
        return {"pos_weight": 3 * rng.random(k)}
    return {}


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (131, 263)], ids=str)
def test_backends_agree(ref, fast, name, reduction, shape, dtype, n_threads, rng):
    Z, T = _case(name, rng, shape, dtype)
    sw = rng.random(shape[0]) * 2
    extra = _extra(name, rng, shape[1], True)
    v_ref, g_ref = getattr(ref, name)(Z, T, sample_weight=sw, reduction=reduction, **extra)
    v_fast, g_fast = getattr(fast, name)(Z, T, sample_weight=sw, reduction=reduction, **extra)
    assert_close(v_fast, v_ref, dtype, k=Z.size)
    assert_close(g_fast, g_ref, dtype)
    if reduction == "none":
        assert v_fast.dtype == dtype
        assert v_fast.shape == (shape if name != "softmax_cross_entropy_loss" else shape[:1])
    else:
        assert isinstance(v_fast, float)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_numerically(backend, name, reduction, weighted, rng):
    Z, T = _case(name, rng, (6, 4), np.float64)
    sw = rng.random(6) + 0.2 if weighted else None
    extra = _extra(name, rng, 4, weighted)

    def value():
        v, _ = getattr(backend, name)(Z, T, need_grad=False, sample_weight=sw,
                                      reduction=reduction, **extra)
        return float(np.sum(v))  # "none": the gradient is that of the sum

    _, G = getattr(backend, name)(Z, T, sample_weight=sw, reduction=reduction, **extra)
    np.testing.assert_allclose(G, numerical_grad(value, Z), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", LOSSES)
def test_weighted_mean_is_numpy_average_and_sum_is_weighted_sum(backend, name, rng):
    Z, T = _case(name, rng, (9, 3), np.float64)
    sw = rng.random(9)
    terms, _ = getattr(backend, name)(Z, T, need_grad=False, reduction="none")
    unweighted = terms.reshape(9, -1).mean(axis=1)  # per row, over its K elements
    mean, _ = getattr(backend, name)(Z, T, sample_weight=sw)
    total, _ = getattr(backend, name)(Z, T, sample_weight=sw, reduction="sum")
    weighted_terms, _ = getattr(backend, name)(Z, T, sample_weight=sw, reduction="none")
    assert mean == pytest.approx(np.average(unweighted, weights=sw), rel=1e-12)
    assert total == pytest.approx(float(np.sum(terms.reshape(9, -1).sum(axis=1) * sw)), rel=1e-12)
    np.testing.assert_allclose(weighted_terms.reshape(9, -1), terms.reshape(9, -1) * sw[:, None],
                               rtol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_integer_weight_equals_repeated_rows(backend, name, rng):
    Z, T = _case(name, rng, (5, 3), np.float64)
    counts = np.array([1, 3, 0, 2, 1])
    v, G = getattr(backend, name)(Z, T, sample_weight=counts)
    rows = np.repeat(np.arange(5), counts)
    v_rep, G_rep = getattr(backend, name)(Z[rows], T[rows])
    assert v == pytest.approx(v_rep, rel=1e-12)
    # each repeated row's gradient, summed back onto its original row
    back = np.zeros_like(G)
    np.add.at(back, rows, G_rep)
    np.testing.assert_allclose(G, back, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", LOSSES)
def test_zero_total_weight_gives_zero_loss_and_gradient(backend, name, dtype, rng):
    Z, T = _case(name, rng, (4, 3), dtype)
    v, G = getattr(backend, name)(Z, T, sample_weight=np.zeros(4))
    assert v == 0.0
    assert not G.any()


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_empty_batch_is_fine_unless_mean(backend, name, reduction):
    Z, T = _case(name, np.random.default_rng(0), (0, 3), np.float64)
    v, G = getattr(backend, name)(Z, T, reduction=reduction)
    assert G.shape == (0, 3)
    assert (v == 0.0) if reduction == "sum" else (v.size == 0)


def test_class_weight_is_sample_weight_per_label(backend, rng):
    Z, y = _case("softmax_cross_entropy_loss", rng, (12, 4), np.float64)
    cw = np.array([0.5, 2.0, 1.0, 3.0])
    sw = rng.random(12)
    v, G = backend.softmax_cross_entropy_loss(Z, y, class_weight=cw, sample_weight=sw)
    v2, G2 = backend.softmax_cross_entropy_loss(Z, y, sample_weight=sw * cw[y])
    assert v == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(G, G2, rtol=1e-14)


def test_pos_weight_one_is_plain_bce(backend, dtype, rng):
    Z, T = _case("bce_with_logits_loss", rng, (10, 3), dtype)
    v, G = backend.bce_with_logits_loss(Z, T)
    v1, G1 = backend.bce_with_logits_loss(Z, T, pos_weight=np.ones(3))
    assert v1 == pytest.approx(v, rel=1e-6)
    assert_close(G1, G, dtype)


def test_pos_weight_with_huge_logits_is_finite_and_exact(backend, dtype):
    Z = np.array([[1000.0, -1000.0, 1000.0, -1000.0]], dtype=dtype)
    T = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    v, G = backend.bce_with_logits_loss(Z, T, pos_weight=np.array([1.0, 3.0, 3.0, 1.0]))
    # wrong with certainty costs |z| (times p on a positive target), right costs nothing
    assert v == pytest.approx((1000 + 3 * 1000) / 4, rel=1e-12)
    np.testing.assert_allclose(G, [[0.25, -0.75, 0.0, 0.0]], atol=1e-12)


# ----------------------------------------------------------------------------- the modules


def test_module_reduction_and_repr():
    assert repr(nn.CrossEntropyLoss(weight=[1, 2], reduction="sum")) == \
        "CrossEntropyLoss(weight=[1.0, 2.0], reduction='sum')"
    assert repr(nn.MSELoss()) == "MSELoss()"
    Z = np.random.default_rng(0).standard_normal((5, 2))
    T = np.zeros((5, 2))
    loss = nn.MSELoss(reduction="none")
    np.testing.assert_allclose(loss(Z, T), Z ** 2, rtol=1e-12)
    np.testing.assert_allclose(loss.backward(), 2 * Z, rtol=1e-12)


# ----------------------------------------------------------------------------- against torch


def _torch_case(name, rng, reduction, weighted):
    torch = pytest.importorskip("torch")
    Z, T = _case(name, rng, (11, 5), np.float64)
    extra = _extra(name, rng, 5, weighted)
    if name == "softmax_cross_entropy_loss":
        weight = extra.get("class_weight")
        tl = torch.nn.CrossEntropyLoss(
            weight=None if weight is None else torch.from_numpy(weight), reduction=reduction)
        ours = nn.CrossEntropyLoss(weight=weight, reduction=reduction)
        tT = torch.from_numpy(T)
    elif name == "bce_with_logits_loss":
        pw = extra.get("pos_weight")
        tl = torch.nn.BCEWithLogitsLoss(
            pos_weight=None if pw is None else torch.from_numpy(pw), reduction=reduction)
        ours = nn.BCEWithLogitsLoss(pos_weight=pw, reduction=reduction)
        tT = torch.from_numpy(T)
    else:
        tl = torch.nn.MSELoss(reduction=reduction)
        ours = nn.MSELoss(reduction=reduction)
        tT = torch.from_numpy(T)
    return torch, Z, T, tl, ours, tT


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_matches_torch(name, reduction, weighted, backend_name, rng):
    torch, Z, T, tl, ours, tT = _torch_case(name, rng, reduction, weighted)
    ours.backend_name = backend_name
    tZ = torch.from_numpy(Z.copy()).requires_grad_(True)
    expected = tl(tZ, tT)
    expected.sum().backward()
    got = ours(Z, T)
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.backward(), tZ.grad.numpy(), rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- bad input

BAD = [
    (lambda b: b.mse_loss(np.zeros((3, 2)), np.zeros((3, 2)), reduction="avg"), ValueError,
     "reduction must be"),
    (lambda b: b.mse_loss(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(2)),
     ValueError, r"sample_weight must have shape \(3,\)"),
    (lambda b: b.mse_loss(np.zeros((3, 2)), np.zeros((3, 2)),
                          sample_weight=np.array([1.0, -1.0, 1.0])), ValueError,
     "sample_weight must be finite and >= 0"),
    (lambda b: b.mse_loss(np.zeros((3, 2)), np.zeros((3, 2)),
                          sample_weight=np.array([1.0, np.nan, 1.0])), ValueError,
     "sample_weight must be finite"),
    (lambda b: b.mse_loss(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight="heavy"), TypeError,
     "sample_weight must be a numpy.ndarray"),
    (lambda b: b.mse_loss(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(3, bool)),
     TypeError, "sample_weight must hold real numbers"),
    (lambda b: b.softmax_cross_entropy_loss(np.zeros((3, 4)), np.zeros(3, int),
                                            class_weight=np.ones(3)), ValueError,
     r"class_weight must have shape \(4,\)"),
    (lambda b: b.bce_with_logits_loss(np.zeros((3, 4)), np.zeros((3, 4)),
                                      pos_weight=-np.ones(4)), ValueError,
     "pos_weight must be finite and >= 0"),
    (lambda b: b.mse_loss(np.zeros((0, 2)), np.zeros((0, 2))), ValueError, "Y is an empty batch"),
]


@pytest.mark.parametrize("call,exc,match", BAD)
def test_bad_input_names_the_argument(backend, call, exc, match):
    with pytest.raises(exc, match=match):
        call(backend)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: nn.MSELoss(reduction="batchmean"), ValueError, "reduction must be"),
    (lambda: nn.CrossEntropyLoss(weight=[[1.0]]), ValueError, "weight must be 1-D"),
    (lambda: nn.CrossEntropyLoss(weight=["a"]), TypeError, "weight must be a 1-D array"),
    (lambda: nn.BCEWithLogitsLoss(pos_weight=[np.inf]), ValueError, "pos_weight must be finite"),
])
def test_bad_module_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()

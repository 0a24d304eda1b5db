"""L1Loss, HuberLoss, SmoothL1Loss and CrossEntropyLoss(label_smoothing=): the kernels against
the NumPy reference, torch's values and gradients (float64 to round-off, float32 to the
tolerance table) for every reduction, with and without weights, on the tails; finite
differences; the argument checks; training with them."""
import copy

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.backend import backend_for

from conftest import assert_close, numerical_grad

F32, F64 = np.float32, np.float64
REDUCTIONS = ["mean", "sum", "none"]

# (pynn loss, torch loss) by name
ROBUST = {
    "l1": (lambda r: nn.L1Loss(reduction=r), lambda t, r: t.nn.L1Loss(reduction=r)),
    "huber": (lambda r: nn.HuberLoss(reduction=r), lambda t, r: t.nn.HuberLoss(reduction=r)),
    "huber-delta0.3": (lambda r: nn.HuberLoss(delta=0.3, reduction=r),
                       lambda t, r: t.nn.HuberLoss(delta=0.3, reduction=r)),
    "smooth_l1": (lambda r: nn.SmoothL1Loss(reduction=r),
                  lambda t, r: t.nn.SmoothL1Loss(reduction=r)),
    "smooth_l1-beta2.5": (lambda r: nn.SmoothL1Loss(beta=2.5, reduction=r),
                          lambda t, r: t.nn.SmoothL1Loss(beta=2.5, reduction=r)),
    "smooth_l1-beta0": (lambda r: nn.SmoothL1Loss(beta=0.0, reduction=r),
                        lambda t, r: t.nn.SmoothL1Loss(beta=0.0, reduction=r)),
}


def _torch():
    return pytest.importorskip("torch")


def _regression(rng, dtype, shape=(13, 4)):
    """Outputs and targets whose differences cover the tails (|d| up to 1e4), zero, and the
    thresholds (|d| = 0.3, 1, 2.5 exactly)."""
    T = rng.standard_normal(shape)
    d = rng.standard_normal(shape) * 2
    d.flat[:12] = [0.0, 1e4, -1e4, 1.0, -1.0, 0.3, -0.3, 2.5, -2.5, 1e-9, 50.0, -0.0]
    return (T + d).astype(dtype), T.astype(dtype)


@pytest.mark.parametrize("name", sorted(ROBUST))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_robust_losses_equal_torch(name, reduction, weighted, backend_name, dtype, rng):
    torch = _torch()
    Y, T = _regression(rng, dtype)
    ours = ROBUST[name][0](reduction)
    ours.backend_name = backend_name
    tl = ROBUST[name][1](torch, reduction)
    tY = torch.tensor(Y, requires_grad=True)
    expected = tl(tY, torch.tensor(T))
    if weighted:  # torch has no sample weights: an integer weight is that many copies
        w = rng.integers(0, 4, Y.shape[0]).astype(float)
        rows = np.repeat(np.arange(Y.shape[0]), w.astype(int))
        tY = torch.tensor(Y, requires_grad=True)
        expected = tl(tY[torch.tensor(rows)], torch.tensor(T[rows]))
        got = ours(Y, T, sample_weight=w)
        if reduction == "none":  # the weighted terms: each row's term times its weight
            per_row = np.zeros(Y.shape)
            np.add.at(per_row, rows, expected.detach().numpy())
            expected_value = per_row
        else:
            expected_value = expected.detach().numpy()
    else:
        got = ours(Y, T)
        expected_value = expected.detach().numpy()
    expected.sum().backward()
    assert_close(got, expected_value, dtype, k=Y.size)
    assert_close(ours.backward(), tY.grad.numpy(), dtype)


@pytest.mark.parametrize("name", ["l1_loss", "huber_loss", "smooth_l1_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_kernel_equals_reference(name, reduction, dtype, n_threads, rng):
    Y, T = _regression(rng, dtype, (301, 7))
    w = rng.uniform(0, 2, Y.shape[0])
    kw = {"huber_loss": {"delta": 0.7}, "smooth_l1_loss": {"beta": 1.3}}.get(name, {})
    fast, ref = backend_for("cython"), backend_for("numpy")
    a = getattr(fast, name)(Y, T, sample_weight=w, reduction=reduction, **kw)
    b = getattr(ref, name)(Y, T, sample_weight=w, reduction=reduction, **kw)
    assert_close(a[0], b[0], dtype, k=Y.size)
    assert_close(a[1], b[1], dtype)


@pytest.mark.parametrize("name", ["l1_loss", "huber_loss", "smooth_l1_loss"])
def test_robust_gradients_by_finite_differences(backend, name, rng):
    Y = rng.standard_normal((6, 3)) * 2
    T = rng.standard_normal((6, 3))
    Y[np.abs(Y - T) < 0.05] += 0.2  # off the kinks
    w = rng.uniform(0.5, 2, 6)
    kw = {"huber_loss": {"delta": 0.8}, "smooth_l1_loss": {"beta": 1.5}}.get(name, {})
    f = getattr(backend, name)
    _, G = f(Y, T, sample_weight=w, **kw)
    np.testing.assert_allclose(
        G, numerical_grad(lambda: f(Y, T, sample_weight=w, need_grad=False, **kw)[0], Y),
        rtol=1e-6, atol=1e-9)


def test_nan_propagates_to_value_and_gradient(backend):
    Y = np.array([[np.nan, 1.0]])
    for name in ("l1_loss", "huber_loss", "smooth_l1_loss"):
        value, G = getattr(backend, name)(Y, np.zeros((1, 2)))
        assert np.isnan(value) and np.isnan(G[0, 0]) and not np.isnan(G[0, 1]), name


# ---------------------------------------------------------------------- label smoothing
def _logits(rng, dtype, n=17, k=6):
    Z = rng.standard_normal((n, k)) * 3
    Z[0, :4] = [60.0, -60.0, 0.0, 1.0]  # a confident row: p close to 1 and 0
    Z[1] = 0.0
    return Z.astype(dtype), rng.integers(0, k, n)


@pytest.mark.parametrize("smoothing", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("class_weighted", [False, True])
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_label_smoothing_equals_torch(smoothing, reduction, class_weighted, backend_name,
                                      dtype, rng):
    torch = _torch()
    Z, y = _logits(rng, dtype)
    weight = rng.uniform(0.2, 3.0, Z.shape[1]) if class_weighted else None
    ours = nn.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing,
                               backend=backend_name)
    tl = torch.nn.CrossEntropyLoss(
        weight=None if weight is None else torch.tensor(weight, dtype=torch.from_numpy(Z).dtype),
        reduction=reduction, label_smoothing=smoothing)
    tZ = torch.tensor(Z, requires_grad=True)
    expected = tl(tZ, torch.tensor(y))
    expected.sum().backward()
    assert_close(ours(Z, y), expected.detach().numpy(), dtype, k=Z.size)
    assert_close(ours.backward(), tZ.grad.numpy(), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothing_kernel_equals_reference_with_both_weights(reduction, dtype, n_threads,
                                                                   rng):
    Z, y = _logits(rng, dtype, n=203, k=11)
    kw = dict(sample_weight=rng.uniform(0, 2, 203), class_weight=rng.uniform(0, 2, 11),
              reduction=reduction, label_smoothing=0.2)
    a = backend_for("cython").softmax_cross_entropy_loss(Z, y, **kw)
    b = backend_for("numpy").softmax_cross_entropy_loss(Z, y, **kw)
    assert_close(a[0], b[0], dtype, k=Z.size)
    assert_close(a[1], b[1], dtype)


def test_label_smoothing_gradient_by_finite_differences(backend, rng):
    Z, y = _logits(rng, F64, n=5, k=4)
    kw = dict(sample_weight=rng.uniform(0.5, 2, 5), class_weight=rng.uniform(0.5, 2, 4),
              label_smoothing=0.3)
    _, G = backend.softmax_cross_entropy_loss(Z, y, **kw)
    np.testing.assert_allclose(G, numerical_grad(
        lambda: backend.softmax_cross_entropy_loss(Z, y, need_grad=False, **kw)[0], Z),
        rtol=1e-6, atol=1e-9)


def test_zero_smoothing_is_the_plain_loss_bit_for_bit(backend, dtype, rng):
    Z, y = _logits(rng, dtype)
    plain = nn.CrossEntropyLoss(backend=backend.name)
    zero = nn.CrossEntropyLoss(label_smoothing=0.0, backend=backend.name)
    assert plain(Z, y) == zero(Z, y)
    np.testing.assert_array_equal(plain.backward(), zero.backward())


# ---------------------------------------------------------------------- checks, repr, training
@pytest.mark.parametrize("make,exc,match", [
    (lambda: nn.HuberLoss(delta=0.0), ValueError, "delta must be > 0"),
    (lambda: nn.HuberLoss(delta="1"), TypeError, "delta must be a real number"),
    (lambda: nn.SmoothL1Loss(beta=-1.0), ValueError, "beta must be >= 0"),
    (lambda: nn.L1Loss(reduction="avg"), ValueError, "reduction must be"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=None), TypeError, "label_smoothing"),
])
def test_bad_arguments_name_themselves(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_target_names_itself():
    with pytest.raises(TypeError, match="target has dtype"):
        nn.L1Loss()(np.zeros((2, 2)), np.zeros((2, 2), F32))
    with pytest.raises(ValueError, match=r"T must have shape"):
        nn.HuberLoss()(np.zeros((2, 2)), np.zeros((2, 3)))


def test_repr():
    assert repr(nn.HuberLoss(delta=0.5)) == "HuberLoss(delta=0.5)"
    assert repr(nn.SmoothL1Loss(reduction="sum")) == "SmoothL1Loss(beta=1.0, reduction='sum')"
    assert repr(nn.CrossEntropyLoss(label_smoothing=0.1)) == \
        "CrossEntropyLoss(label_smoothing=0.1)"
    assert repr(nn.L1Loss()) == "L1Loss()"


@pytest.mark.parametrize("make", [nn.L1Loss, nn.HuberLoss, lambda: nn.SmoothL1Loss(beta=0.5)])
def test_trainer_fits_with_a_robust_loss(make, rng):
    X = rng.standard_normal((64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.standard_normal((64, 1))
    y[:3] += 50.0  # outliers: the robust losses pull with at most a constant
    model = nn.Sequential(nn.Dense(3, 1, seed=0, dtype=F64))
    trainer = pynn.Trainer(model, make(), pynn.optim.Adam(model.parameters(), lr=0.05))
    history = trainer.fit(X, y, epochs=30, batch_size=16, verbose=0, seed=0)
    assert "accuracy" not in history.history  # no accuracy for a regression loss
    assert history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_allclose(model[0].weight.data.ravel(), [1.0, -2.0, 0.5], atol=0.3)


def test_train_step_with_label_smoothing_runs_the_eager_lines(rng):
    X = rng.standard_normal((24, 5))
    y = rng.integers(0, 3, 24)
    a = nn.Sequential(nn.Dense(5, 8, seed=1, dtype=F64), nn.GELU(),
                      nn.Dense(8, 3, seed=2, dtype=F64))
    b = copy.deepcopy(a)
    la = nn.CrossEntropyLoss(label_smoothing=0.1)
    lb = nn.CrossEntropyLoss(label_smoothing=0.1)
    oa, ob = pynn.optim.Adam(a.parameters()), pynn.optim.Adam(b.parameters())
    assert a.compiled_step(X, la, oa) is None  # the program computes no smoothing
    for _ in range(3):
        assert a.train_step(X, y, la, oa) == nn.Module.train_step(b, X, y, lb, ob)

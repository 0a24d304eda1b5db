"""Numerical robustness (issue 11, item 5): losses finite for logits of +-1e4, BatchNorm on a
constant feature as torch (finite outputs and gradients), and a diverging run that stops with
TerminateOnNaN and keeps the last good weights."""
import math

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.backend import backend_for
from pynn.optim import SGD
from pynn.train import Callback, TerminateOnNaN, Trainer

BACKENDS = ["numpy", "cython"]
DTYPES = [np.float32, np.float64]


def _finite(*arrays):
    return all(np.isfinite(np.asarray(a)).all() for a in arrays)


# ---------------------------------------------------------------------------- huge logits
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKENDS)
def test_softmax_cross_entropy_is_finite_and_exact_for_logits_of_1e4(name, dtype):
    be = backend_for(name)
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, 0.0, 0.0]],
                 dtype)
    labels = np.array([1, 2, 0, 0])
    value, grad = be.softmax_cross_entropy_loss(Z, labels)
    # exact: row 0 misses by 2e4, row 1 is certain, row 2 is a coin flip, row 3 misses by 1e4
    # (plus log 2 for the tie between the two zeros)
    expected = (2e4 + 0.0 + math.log(2) + 1e4 + math.log(2)) / 4
    assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-6)
    assert _finite(grad)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(grad[0], [0.25, -0.25, 0], atol=1e-6)
    # the Softmax layer and its backward are finite there too
    sm = nn.Softmax()
    sm.backend_name = name
    Y = sm.forward(Z)
    assert _finite(Y, sm.backward(np.ones_like(Z)))
    np.testing.assert_allclose(Y[1], [0, 0, 1], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKENDS)
def test_bce_with_logits_and_sigmoid_are_finite_for_logits_of_1e4(name, dtype):
    be = backend_for(name)
    Z = np.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype)
    T = np.array([[1, 0], [1, 0], [0.5, 1]], dtype)
    value, grad = be.bce_with_logits_loss(Z, T)
    # per element: 0, 0 (right and certain), 1e4, 1e4 (wrong and certain), 5e3, 0
    assert math.isfinite(value) and value == pytest.approx(2.5e4 / 6, rel=1e-6)
    assert _finite(grad)
    np.testing.assert_allclose(grad * 6, [[0, 0], [-1, 1], [0.5, 0]], atol=1e-6)
    Y = be.activation_forward(Z, "sigmoid")
    # (float32 Cython gives 1.2e-38 where exp(-1e4) underflows: its clamped exp, by design)
    np.testing.assert_allclose(Y, (Z > 0).astype(dtype), rtol=0, atol=1e-37)
    assert _finite(be.activation_backward(np.ones_like(Z), Z, Y, "sigmoid"))
    for act in ("tanh", "elu", "relu", "leaky_relu"):
        Y = be.activation_forward(Z, act)
        assert _finite(Y, be.activation_backward(np.ones_like(Z), Z, Y, act)), act


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKENDS)
def test_training_on_logits_of_1e4_keeps_finite_gradients(name, dtype):
    # a model whose logits are +-1e4 trains on without producing NaN/Inf
    model = nn.Sequential(nn.Dense(2, 3, seed=0, dtype=dtype), backend=name)
    model[0].weight.data = np.array([[5e3, 0], [-5e3, 0], [0, 5e3]], dtype)
    X = np.array([[2, 0], [0, -2], [2, 2]], dtype)
    y = np.array([1, 0, 2])
    loss = nn.CrossEntropyLoss(backend=name)
    value = loss.forward(model.forward(X), y)
    model.backward(loss.backward())
    assert math.isfinite(value) and value > 1e3
    assert _finite(*(p.grad for p in model.parameters()))


# ---------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("const", [0.0, 3.0, 0.1, -1e4, 1e-30])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKENDS)
def test_batchnorm_with_a_constant_feature_is_finite_like_torch(name, dtype, const):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3)).astype(dtype)
    X[:, 1] = const
    bn = nn.BatchNorm(3, dtype=dtype)
    bn.backend_name = name
    bn.weight.data = np.array([1.5, 2.0, 0.5], dtype)
    bn.bias.data = np.array([0.1, -0.7, 0.0], dtype)
    Y = bn.forward(X)
    dY = rng.standard_normal(X.shape).astype(dtype)
    dX = bn.backward(dY)
    assert _finite(Y, dX, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var)
    # As torch: var = 0 gives xhat = 0, so the column is beta, dgamma sums dY * 0, and the
    # layer is y = gamma (x - mean) / sqrt(eps) there: dX = gamma / sqrt(eps) (dY - mean(dY)),
    # large but finite.
    np.testing.assert_allclose(Y[:, 1], -0.7, atol=1e-3)
    dy = dY[:, 1].astype(np.float64)
    np.testing.assert_allclose(dX[:, 1], 2.0 / np.sqrt(1e-5) * (dy - dy.mean()), rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(bn.bias.grad[1], dy.sum(), rtol=1e-5)
    assert abs(bn.weight.grad[1]) <= 1e-2 * np.abs(dy).sum()
    # eval mode with the constant column's running statistics
    bn.eval()
    assert _finite(bn.forward(X), bn.backward(dY))


# ---------------------------------------------------------------------------- divergence
class _EpochWeights(Callback):
    """Records the parameters and buffers at the end of every completed epoch."""

    def on_train_begin(self, logs=None):
        self.snaps = [pynn.train.snapshot(self.trainer.model)]

    def on_epoch_end(self, epoch, logs=None):
        self.snaps.append(pynn.train.snapshot(self.trainer.model))


def _diverging_fit(name, lr, epochs=30, callbacks=()):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 6)).astype(np.float32) * 3
    y = (X @ rng.standard_normal(6)).astype(np.float32)
    model = nn.Sequential(nn.Dense(6, 16, seed=1), nn.BatchNorm(16), nn.ReLU(),
                          nn.Dense(16, 1, seed=2), backend=name)
    rec = _EpochWeights()
    trainer = Trainer(model, nn.MSELoss(), SGD(model.parameters(), lr=lr, momentum=0.9),
                      callbacks=[rec, *callbacks])
    with pytest.warns(RuntimeWarning, match="TerminateOnNaN"):
        history = trainer.fit(X, y, epochs=epochs, batch_size=16, verbose=0, seed=0)
    return model, history, rec, X, y


def _assert_kept_weights_are_good(model, X, y):
    """The weights kept after a stop give a finite training loss (train mode, the mode that
    diverged) and finite predictions (eval mode, BatchNorm's running statistics)."""
    assert _finite(*pynn.train.snapshot(model).values())
    model.train()
    with np.errstate(all="ignore"):
        loss = nn.MSELoss().forward(model.forward(X), y.reshape(-1, 1))
    assert math.isfinite(loss), f"the kept weights give a training loss of {loss}"
    assert _finite(model.predict(X))


@pytest.mark.parametrize("name", BACKENDS)
def test_diverging_run_stops_and_keeps_the_last_good_weights(name):
    # lr = 0.1 grows the loss for a few epochs before it overflows mid-epoch (epoch 5, batch 6):
    # "last good" is then neither the initial weights nor anything from the epoch that blew up.
    model, history, rec, X, y = _diverging_fit(name, lr=0.1)
    assert "TerminateOnNaN" in history.stop_reason and "batch 1;" not in history.stop_reason
    completed = len(history)
    assert 2 <= completed < 30, f"diverged after {completed} epochs: tune lr"
    assert all(math.isfinite(v) for v in history.history["loss"])
    last_good = rec.snaps[completed]  # the state after the last completed epoch
    now = pynn.train.snapshot(model)
    assert list(now) == list(last_good)
    for a, b in zip(now.values(), last_good.values()):
        np.testing.assert_array_equal(a, b)  # weights and BatchNorm statistics, bit for bit
    _assert_kept_weights_are_good(model, X, y)


@pytest.mark.parametrize("name", BACKENDS)
def test_divergence_at_the_first_batch_of_an_epoch_keeps_good_weights(name):
    # The snapshot of the epoch's start holds exactly the weights whose first batch overflowed
    # (here |w| ~ 2.6e23, running_var inf): the one of the epoch before is the last good one.
    model, history, rec, X, y = _diverging_fit(name, lr=0.5)
    assert "epoch 2, batch 1;" in history.stop_reason  # the case this test is about
    assert "kept the weights from the end of epoch 0" in history.stop_reason
    assert len(history) == 1
    for a, b in zip(pynn.train.snapshot(model).values(), rec.snaps[0].values()):
        np.testing.assert_array_equal(a, b)
    _assert_kept_weights_are_good(model, X, y)


def test_terminate_on_nan_forgets_the_snapshots_of_an_earlier_fit():
    # A second fit whose very first batch is non-finite has no good weights of its own: it
    # leaves the model as it was given, never puts back weights of the earlier fit (the same
    # TerminateOnNaN instance serves both fits).
    model, history, rec, X, y = _diverging_fit("cython", lr=0.1, callbacks=[TerminateOnNaN()])
    model[0].weight.data[0, 0] = np.inf
    start = pynn.train.snapshot(model)
    with pytest.warns(RuntimeWarning, match="TerminateOnNaN"):
        history = rec.trainer.fit(X, y, epochs=3, batch_size=16, verbose=0, seed=0)
    assert "at epoch 1, batch 1;" in history.stop_reason
    for a, b in zip(pynn.train.snapshot(model).values(), start.values()):
        np.testing.assert_array_equal(a, b)


def test_diverging_run_stopped_in_the_first_epoch_keeps_the_initial_weights():
    model, history, rec, X, y = _diverging_fit("cython", lr=1e6)
    assert len(history) == 0 and "at epoch 1, batch" in history.stop_reason
    for a, b in zip(pynn.train.snapshot(model).values(), rec.snaps[0].values()):
        np.testing.assert_array_equal(a, b)
    _assert_kept_weights_are_good(model, X, y)


def test_terminate_on_nan_is_on_by_default():
    model = nn.Sequential(nn.Dense(2, 1))
    t = Trainer(model, nn.MSELoss(), SGD(model.parameters(), lr=0.1))
    assert any(isinstance(c, TerminateOnNaN) for c in t._collect_callbacks([], None))

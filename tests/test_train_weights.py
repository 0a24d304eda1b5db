"""Trainer.fit with sample_weight and class_weight: the same training as repeated rows, as
CrossEntropyLoss(weight=...), and the recorded losses as weighted means."""
import numpy as np
import pytest

from pynn.nn import BCEWithLogitsLoss, CrossEntropyLoss, Dense, MSELoss, Sequential, Tanh
from pynn.optim import SGD
from pynn.train import Trainer


def data(n=30, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def net(d=4, k=3):
    return Sequential(Dense(d, 8, seed=1, dtype=np.float64), Tanh(),
                      Dense(8, k, seed=2, dtype=np.float64))


def fit(X, y, loss=None, lr=0.1, epochs=5, **kw):
    model = net(X.shape[1], 1 if isinstance(loss, BCEWithLogitsLoss) else 3)
    trainer = Trainer(model, loss or CrossEntropyLoss(), SGD(model.parameters(), lr=lr),
                      metrics=None)
    # one full batch per epoch, in order: the weighted run and its reference see the same steps
    history = trainer.fit(X, y, epochs=epochs, batch_size=1000, shuffle=False, seed=0,
                          verbose=0, **kw)
    return trainer, history


def params(trainer):
    return np.concatenate([p.data.ravel() for p in trainer.model.parameters()])


def test_integer_sample_weights_train_like_repeated_rows():
    X, y = data()
    counts = np.random.default_rng(3).integers(0, 4, X.shape[0])
    weighted, h = fit(X, y, sample_weight=counts)
    rows = np.repeat(np.arange(X.shape[0]), counts)
    repeated, h_rep = fit(X[rows], y[rows])
    np.testing.assert_allclose(params(weighted), params(repeated), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.history["loss"], h_rep.history["loss"], rtol=1e-12)


@pytest.mark.parametrize("class_weight", [{0: 0.5, 2: 3.0}, [0.5, 1.0, 3.0]])
def test_class_weight_trains_like_torch_weighted_cross_entropy(class_weight):
    X, y = data()
    a, h_a = fit(X, y, class_weight=class_weight)
    b, h_b = fit(X, y, loss=CrossEntropyLoss(weight=[0.5, 1.0, 3.0]))
    np.testing.assert_allclose(params(a), params(b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_a.history["loss"], h_b.history["loss"], rtol=1e-12)


def test_class_weight_multiplies_sample_weight():
    X, y = data()
    sw = np.random.default_rng(4).random(X.shape[0])
    cw = np.array([2.0, 1.0, 0.25])
    a, _ = fit(X, y, sample_weight=sw, class_weight=cw)
    b, _ = fit(X, y, sample_weight=sw * cw[y])
    np.testing.assert_allclose(params(a), params(b), rtol=1e-12, atol=1e-14)


def test_balanced_is_scikit_learns_formula():
    compute_class_weight = pytest.importorskip("sklearn.utils.class_weight").compute_class_weight
    X, y = data(n=41)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    a, _ = fit(X, y, class_weight="balanced")
    b, _ = fit(X, y, class_weight=expected)
    np.testing.assert_array_equal(params(a), params(b))


def test_binary_class_weight_with_bce():
    X, y = data()
    t = (y == 1).astype(np.float64)
    a, _ = fit(X, t, loss=BCEWithLogitsLoss(), class_weight={0: 1.0, 1: 4.0})
    b, _ = fit(X, t, loss=BCEWithLogitsLoss(), sample_weight=np.where(t == 1, 4.0, 1.0))
    np.testing.assert_allclose(params(a), params(b), rtol=1e-12, atol=1e-14)


def test_recorded_losses_are_weighted_means():
    X, y = data()
    rng = np.random.default_rng(5)
    w, Xv, yv, wv = rng.random(30), *data(n=12, seed=6)[:2], rng.random(12)
    # lr 0: the weights never move, so every loss is that of the initial model
    trainer, h = fit(X, y, lr=0.0, epochs=1, sample_weight=w, validation_data=(Xv, yv, wv))
    per_row = CrossEntropyLoss(reduction="none")
    expected = np.average(per_row(trainer.model.predict(X), y), weights=w)
    expected_val = np.average(per_row(trainer.model.predict(Xv), yv), weights=wv)
    assert h.history["loss"][0] == pytest.approx(expected, rel=1e-12)
    assert h.history["val_loss"][0] == pytest.approx(expected_val, rel=1e-12)
    assert trainer.evaluate(Xv, yv, sample_weight=wv)["loss"] == pytest.approx(expected_val,
                                                                               rel=1e-12)


def test_validation_split_splits_the_weights():
    X, y = data(n=40)
    w = np.where(np.arange(40) % 2 == 0, 1.0, 0.0)  # odd rows weigh nothing
    trainer, h = fit(X, y, lr=0.0, epochs=1, sample_weight=w, validation_split=0.25)
    out = CrossEntropyLoss(reduction="none")(trainer.model.predict(X), y)
    # train and validation losses are each a mean over even rows only
    even = out[w == 1]
    assert even.min() <= h.history["loss"][0] <= even.max()
    assert even.min() <= h.history["val_loss"][0] <= even.max()


def test_sum_reduction_records_the_epoch_sum():
    X, y = data()
    trainer, h = fit(X, y, loss=CrossEntropyLoss(reduction="sum"), lr=0.0, epochs=1)
    expected = CrossEntropyLoss(reduction="none")(trainer.model.predict(X), y).sum()
    assert h.history["loss"][0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kw,exc,match", [
    ({"sample_weight": np.ones(29)}, ValueError, r"sample_weight must have shape \(30,\)"),
    ({"sample_weight": -np.ones(30)}, ValueError, "sample_weight must be finite and >= 0"),
    ({"class_weight": {5: 1.0}}, ValueError, r"class_weight keys must be classes in \[0, 3\)"),
    ({"class_weight": {0: "x"}}, TypeError, r"class_weight\[0\] must be a number"),
    ({"class_weight": [1.0, 2.0]}, ValueError, r"class_weight must have shape \(3,\)"),
    ({"class_weight": "even"}, ValueError, "class_weight must be a dict"),
    ({"validation_data": (np.ones((3, 4)), np.zeros(3, int), np.ones(2))}, ValueError,
     r"sample_weight_val must have shape \(3,\)"),
])
def test_bad_weights_name_the_argument(kw, exc, match):
    X, y = data()
    with pytest.raises(exc, match=match):
        fit(X, y, **kw)


def test_class_weight_needs_a_classification_loss():
    X, _ = data()
    model = net(4, 1)
    trainer = Trainer(model, MSELoss(), SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="class_weight needs CrossEntropyLoss"):
        trainer.fit(X, np.zeros(30), class_weight={0: 1.0}, verbose=0)


def test_unreduced_loss_is_refused():
    model = net()
    with pytest.raises(ValueError, match="loss.reduction must be 'mean' or 'sum'"):
        Trainer(model, CrossEntropyLoss(reduction="none"), SGD(model.parameters(), lr=0.1))

"""Trainer.fit / evaluate / predict on data that does not fit in memory: a numpy memmap read a
batch at a time, and iterables of ready-made batches. Each must train exactly like the same
data in memory."""
import io
import sys

import numpy as np
import pytest

import pynn
import pynn.train._progress
from pynn.train import _sources as _fit_sources
from pynn.train._progress import _Progress
from pynn.nn import CrossEntropyLoss, Dense, Dropout, ReLU, Sequential
from pynn.optim import SGD


def data(n=90, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, 3, n)


def trainer(dropout=0.0):
    layers = [Dense(5, 8, seed=0), ReLU()]
    if dropout:
        layers.append(Dropout(dropout, seed=3))
    model = Sequential(*layers, Dense(8, 3, seed=1))  # float32: the data are converted
    return pynn.Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1,
                                                       momentum=0.9))


def params(t):
    return np.concatenate([p.data.ravel() for p in t.model.parameters()])


def memmap_of(tmp_path, X, name="X.npy"):
    mm = np.lib.format.open_memmap(tmp_path / name, mode="w+", dtype=X.dtype, shape=X.shape)
    mm[...] = X
    mm.flush()
    return np.load(tmp_path / name, mmap_mode="r")


def test_memmap_trains_exactly_like_the_array(tmp_path):
    X, y = data()
    w = np.random.default_rng(1).random(90)
    kw = dict(epochs=3, batch_size=16, validation_split=0.2, seed=4, verbose=0,
              sample_weight=w)
    a, b = trainer(dropout=0.2), trainer(dropout=0.2)
    h_a = a.fit(X, y, **kw)
    h_b = b.fit(memmap_of(tmp_path, X), y, **kw)
    np.testing.assert_array_equal(params(a), params(b))
    assert h_a.history["loss"] == h_b.history["loss"]
    assert h_a.history["val_loss"] == h_b.history["val_loss"]


def test_memmap_is_never_converted_whole(tmp_path, monkeypatch):
    X, y = data(n=200)
    converted = []
    real = _fit_sources.as_array

    def spy(name, a, *args, **kw):
        if name.startswith("X"):  # the inputs; the labels are read whole, by design
            converted.append(np.shape(a)[0])
        return real(name, a, *args, **kw)

    monkeypatch.setattr(_fit_sources, "as_array", spy)
    mm = memmap_of(tmp_path, X)
    Xv, yv = data(n=1500, seed=1)
    t = trainer()
    t.fit(mm, y, epochs=2, batch_size=32, verbose=0, seed=0,
          validation_data=(memmap_of(tmp_path, Xv, "V.npy"), yv))
    # training batches of 32 (200 = 6 * 32 + 8), validation in batches of 1024
    assert len(converted) > 10 and set(converted) <= {2, 32, 8, 1024, 476}


def test_memmap_evaluate_and_predict_match_the_array(tmp_path):
    X, y = data()
    t = trainer()
    t.fit(X, y, epochs=1, verbose=0, seed=0)
    mm = memmap_of(tmp_path, X)
    np.testing.assert_array_equal(t.predict(mm, batch_size=7), t.predict(X))
    got, expected = t.evaluate(mm, y, batch_size=16), t.evaluate(X, y)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)


def _batches(X, y, size, w=None):
    for lo in range(0, X.shape[0], size):
        if w is None:
            yield X[lo:lo + size], y[lo:lo + size]
        else:
            yield X[lo:lo + size], y[lo:lo + size], w[lo:lo + size]


class Reiterable:
    def __init__(self, *args):
        self.args = args

    def __iter__(self):
        return _batches(*self.args)


@pytest.mark.parametrize("how", ["callable", "reiterable", "list"])
def test_batches_train_like_unshuffled_arrays(how):
    X, y = data(n=96)
    w = np.random.default_rng(2).random(96)
    source = {"callable": lambda: _batches(X, y, 16, w),
              "reiterable": Reiterable(X, y, 16, w),
              "list": list(_batches(X, y, 16, w))}[how]
    val = (X[:30], y[:30])
    a, b = trainer(dropout=0.3), trainer(dropout=0.3)
    h_a = a.fit(X, y, sample_weight=w, epochs=3, batch_size=16, shuffle=False, seed=0,
                verbose=0, validation_data=val)
    h_b = b.fit(source, epochs=3, seed=0, verbose=0,
                validation_data=lambda: _batches(*val, 7))
    np.testing.assert_array_equal(params(a), params(b))
    assert h_a.history["loss"] == h_b.history["loss"]
    assert h_a.history["accuracy"] == h_b.history["accuracy"]
    np.testing.assert_allclose(h_b.history["val_loss"], h_a.history["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(h_b.history["val_accuracy"], h_a.history["val_accuracy"],
                               rtol=1e-12)


def test_class_weight_with_batches():
    X, y = data(n=64)
    cw = {0: 2.0, 2: 0.5}
    a, b = trainer(), trainer()
    h_a = a.fit(X, y, class_weight=cw, epochs=2, batch_size=16, shuffle=False, seed=0,
                verbose=0)
    h_b = b.fit(lambda: _batches(X, y, 16), class_weight=cw, epochs=2, seed=0, verbose=0)
    np.testing.assert_array_equal(params(a), params(b))
    assert h_a.history["loss"] == h_b.history["loss"]


def test_one_shot_generator_serves_one_epoch():
    X, y = data()
    t = trainer()
    t.fit(_batches(X, y, 30), epochs=1, verbose=0, seed=0)
    with pytest.raises(ValueError, match="one-shot iterator"):
        t.fit(_batches(X, y, 30), epochs=2, verbose=0)


def test_evaluate_on_batches():
    X, y = data()
    t = trainer()
    got = t.evaluate(lambda: _batches(X, y, 25))
    expected = t.evaluate(X, y)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)


@pytest.mark.parametrize("call,exc,match", [
    (lambda t, X, y: t.fit(lambda: iter([(X, y, np.ones(3))]), verbose=0), ValueError,
     r"X batch 0 sample_weight must have shape \(90,\)"),
    (lambda t, X, y: t.fit(lambda: iter([X]), verbose=0), ValueError,
     "X batch 0: each batch must be a tuple"),
    (lambda t, X, y: t.fit(lambda: iter([(X, y + 5)]), verbose=0), ValueError,
     r"X batch 0 y must be class labels in \[0, 3\)"),
    (lambda t, X, y: t.fit(lambda: iter([]), verbose=0), ValueError, "X yielded no batches"),
    (lambda t, X, y: t.fit(lambda: iter([(X, y)]), validation_split=0.2, verbose=0),
     ValueError, "validation_split needs arrays"),
    (lambda t, X, y: t.fit(lambda: iter([(X, y)]), sample_weight=np.ones(90), verbose=0),
     ValueError, "sample_weight cannot be given with batches"),
    (lambda t, X, y: t.fit(lambda: iter([(X, y)]), class_weight="balanced", verbose=0),
     ValueError, "needs the labels up front"),
    (lambda t, X, y: t.fit(42, verbose=0), TypeError, "X must be an array, a callable"),
])
def test_bad_batches_are_named(call, exc, match):
    X, y = data()
    with pytest.raises(exc, match=match):
        call(trainer(), X, y)


def test_memmap_nan_is_reported_by_batch(tmp_path):
    X, y = data()
    X[50, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        trainer().fit(memmap_of(tmp_path, X), y, epochs=1, batch_size=16, shuffle=False,
                      verbose=0)


def test_progress_without_a_batch_count(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setitem(sys.modules, "tqdm", None)  # the built-in bar
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    clock = iter(range(100))  # a second per reading: no redraw is throttled
    monkeypatch.setattr(pynn.train._progress.time, "perf_counter", lambda: float(next(clock)))
    buf = TTY()
    p = _Progress(1, epochs=1, file=buf)
    p.epoch_begin(0, None)
    for b in range(3):
        p.batch_end(b, {"loss": 0.5})
    p.epoch_end({"loss": 0.5, "seconds": 0.1})
    assert "batch 3" in buf.getvalue() and buf.getvalue().endswith("\n")

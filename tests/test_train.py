"""Trainer.fit, History and callbacks."""
import io
import math
import os
import sys

import numpy as np
import pytest

import pynn
from pynn.data import GaussianNoise
from pynn.nn import (BatchNorm, BCEWithLogitsLoss, CrossEntropyLoss, Dense, Dropout, MSELoss,
                     ReLU, Sequential)
from pynn.optim import SGD, Adam, ExponentialLR, ReduceLROnPlateau, StepLR
from pynn.train import (Callback, CSVLogger, EarlyStopping, History, LRSchedulerCallback,
                        ModelCheckpoint, TerminateOnNaN, Trainer, snapshot)


def blobs(n=240, d=5, k=3, seed=0):
    """k Gaussian blobs: an easy, small classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.5, (k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))), y


def mlp(d=5, k=3, dropout=0.0, seed=0, dtype=np.float32):
    layers = [Dense(d, 16, init="he_normal", seed=seed, dtype=dtype), BatchNorm(16, dtype=dtype),
              ReLU()]
    if dropout:
        layers.append(Dropout(dropout, seed=seed))
    return Sequential(*layers, Dense(16, k, seed=seed + 1, dtype=dtype))


def trainer_for(model, lr=1e-2, **kw):
    return Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=lr), **kw)


def test_fit_records_history_and_learns():
    X, y = blobs()
    t = trainer_for(mlp())
    h = t.fit(X.tolist(), y.tolist(), epochs=5, batch_size=32, validation_split=0.25, seed=0,
              verbose=0)
    assert isinstance(h, History) and len(h) == 5 and h.epoch == [0, 1, 2, 3, 4]
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert all(len(v) == 5 for v in h.history.values())
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.9
    assert t.evaluate(X, y)["accuracy"] > 0.9
    assert t.predict(X[:4]).shape == (4, 3)
    assert not t.model.training  # fit leaves the model in eval mode


def test_validation_split_is_stratified_and_shuffled():
    X, _ = blobs(n=200)
    y = np.where(np.arange(200) < 160, 0, 1)  # sorted labels: Keras's tail split is all 1s
    seen = []

    def spy(out, labels):  # a metric sees the validation labels at the end of each epoch
        seen.append(labels.copy())
        return 0.0

    t = trainer_for(mlp(k=2), metrics=[spy])
    h = t.fit(X, y, epochs=1, batch_size=200, validation_split=0.2, seed=0, verbose=0)
    train_y, val_y = seen
    assert np.bincount(val_y).tolist() == [32, 8]  # 4:1 as in the data
    assert np.bincount(train_y).tolist() == [128, 32]
    assert "spy" in h.history and "val_spy" in h.history


@pytest.mark.parametrize("bad, match", [
    (dict(X=[[1.0, np.nan, 0, 0, 0]] * 4), "X contains NaN"),
    (dict(X=np.ones((4, 5)), y=[0, 1, 2]), "same length"),
    (dict(y=[0, 1, 3, 0]), r"y must be class labels in \[0, 3\)"),
    (dict(y=[0, 1, 0.5, 0]), "integer class labels"),
    (dict(y=[[0], [1], [0], [1]]), "1-D class labels"),
    (dict(X=np.ones((4, 7))), "X does not fit the model"),
    (dict(X=[["a"] * 5] * 4), "X must be numeric"),
    (dict(epochs=-1), "epochs"),
    (dict(batch_size=0), "batch_size"),
    (dict(validation_split=1.0), "validation_split"),
    (dict(verbose=3), "verbose"),
])
def test_bad_input_raises_naming_the_argument(bad, match):
    args = dict(X=np.ones((4, 5)), y=[0, 1, 2, 0], verbose=0)
    args.update(bad)
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        trainer_for(mlp()).fit(X, y, **args)


def test_regression_and_bce_targets_are_checked():
    X = np.random.default_rng(0).normal(size=(20, 5))
    m = Sequential(Dense(5, 1))
    t = Trainer(m, MSELoss(), SGD(m.parameters(), lr=0.01))
    h = t.fit(X, X[:, 0], epochs=2, verbose=0)  # 1-D targets become (N, 1)
    assert "accuracy" not in h.history
    with pytest.raises(ValueError, match="y contains NaN"):
        t.fit(X, np.full(20, np.inf), verbose=0)
    with pytest.raises(ValueError, match=r"shape \(20, 1\)"):
        t.fit(X, np.ones((20, 2)), verbose=0)
    tb = Trainer(m, BCEWithLogitsLoss(), SGD(m.parameters(), lr=0.01))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        tb.fit(X, np.full(20, 2.0), verbose=0)
    h = tb.fit(X, (X[:, 0] > 0).astype(float), epochs=1, verbose=0)
    assert "accuracy" in h.history


def _recorder(per_epoch):
    """A callback class appending the model's state at each epoch's end to ``per_epoch``."""
    class Record(Callback):
        def on_epoch_end(self, epoch, logs=None):
            per_epoch.append(snapshot(self.trainer.model))

    return Record


def test_early_stopping_restores_the_best_epochs_weights():
    X, y = blobs(n=120, seed=1)
    model = mlp()
    per_epoch = []
    Record = _recorder(per_epoch)

    es = EarlyStopping(patience=2)
    # a large lr makes validation loss bounce, so the best epoch is not the last one
    t = trainer_for(model, lr=0.3, callbacks=[Record(), es])
    h = t.fit(X, y, epochs=30, batch_size=16, validation_split=0.3, seed=0, verbose=0)
    best = int(np.argmin(h.history["val_loss"]))
    assert es.best_epoch == best and best < len(h) - 1
    assert h.stop_reason.startswith("early stopping")
    assert len(h) == best + 1 + 2  # stopped after `patience` epochs without improvement
    for a, b in zip(snapshot(model).values(), per_epoch[best].values()):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_needs_validation_for_val_loss():
    X, y = blobs(n=40)
    with pytest.raises(ValueError, match="no validation data"):
        trainer_for(mlp()).fit(X, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])


def _resume_setup(seed=0):
    model = mlp(dropout=0.3, seed=seed)
    opt = Adam(model.parameters(), lr=5e-3)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    trainer = Trainer(model, CrossEntropyLoss(), opt,
                      callbacks=[EarlyStopping(patience=50), LRSchedulerCallback(sched)])
    return model, opt, trainer


def test_checkpoint_and_resume_equals_an_uninterrupted_run(tmp_path):
    X, y = blobs(n=150)
    kw = dict(batch_size=32, validation_split=0.2, seed=3, verbose=0,
              augment=GaussianNoise(0.1))
    model_a, opt_a, t_a = _resume_setup()
    h_a = t_a.fit(X, y, epochs=6, **kw)

    ckpt = tmp_path / "ckpt.npz"
    model_b, _, t_b = _resume_setup()
    t_b.fit(X, y, epochs=3, callbacks=[ModelCheckpoint(ckpt)], **kw)

    model_c, opt_c, t_c = _resume_setup()
    model_c[3].step = 0  # a fresh Dropout counter: must come from the checkpoint
    h_c = t_c.fit(X, y, epochs=6, resume_from=ckpt, **kw)

    for a, c in zip(snapshot(model_a).values(), snapshot(model_c).values()):
        np.testing.assert_array_equal(a, c)  # bit for bit, BatchNorm statistics included
    assert model_c[3].step == model_a[3].step
    for key in ("loss", "val_loss", "accuracy", "lr"):
        assert h_c.history[key] == h_a.history[key]
    assert opt_c.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"] == 5e-3 / 8
    with pytest.raises(ValueError, match="same data"):
        _resume_setup()[2].fit(X[:100], y[:100], epochs=6, resume_from=ckpt, **kw)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _resume_setup()[2].fit(X, y, epochs=6, resume_from=tmp_path / "nope.npz", **kw)


def test_model_checkpoint_best_only_and_epoch_in_name(tmp_path):
    X, y = blobs(n=80)
    cb = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.npz"), save_best_only=True)
    h = trainer_for(mlp()).fit(X, y, epochs=4, validation_split=0.25, seed=0, verbose=0,
                               callbacks=[cb])
    names = sorted(os.listdir(tmp_path))
    best = int(np.argmin(h.history["val_loss"])) + 1
    assert f"m-{best:02d}.npz" in names and "m-01.npz" in names
    assert isinstance(pynn.load(cb.last_path), Sequential)


def test_schedules_change_lr_as_specified():
    X, y = blobs(n=64)
    model = mlp()
    opt = Adam(model.parameters(), lr=0.1)
    h = Trainer(model, CrossEntropyLoss(), opt).fit(
        X, y, epochs=5, verbose=0, scheduler=StepLR(opt, step_size=2, gamma=0.5))
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])

    opt = Adam(model.parameters(), lr=0.1)
    h = Trainer(model, CrossEntropyLoss(), opt).fit(
        X, y, epochs=4, verbose=0, callbacks=[ExponentialLR(opt, gamma=0.9)])  # bare schedule
    assert h.history["lr"] == pytest.approx([0.1 * 0.9 ** t for t in range(4)])

    opt = Adam(model.parameters(), lr=0.1)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    h = Trainer(model, CrossEntropyLoss(), opt).fit(
        X, y, epochs=6, verbose=0, validation_split=0.25, seed=0,
        callbacks=[LRSchedulerCallback(plateau)])
    val = h.history["val_loss"]
    expected, lr, best = [], 0.1, math.inf
    for v in val:  # torch's rule with patience 0: halve after every epoch that did not improve
        expected.append(lr)
        if v < best * (1 - 1e-4):
            best = v
        else:
            lr *= 0.5
    assert h.history["lr"] == pytest.approx(expected)


def test_diverging_lr_stops_with_a_message_and_keeps_good_weights():
    X = np.random.default_rng(0).normal(size=(64, 5))
    y = X @ np.arange(1.0, 6.0)
    model = Sequential(Dense(5, 8), ReLU(), Dense(8, 1))
    t = Trainer(model, MSELoss(), SGD(model.parameters(), lr=10.0))
    with pytest.warns(RuntimeWarning, match=r"TerminateOnNaN: training loss is (nan|inf) at "
                                            r"epoch \d+, batch \d+"):
        h = t.fit(X, y, epochs=20, batch_size=8, verbose=0)
    assert len(h) < 20 and "TerminateOnNaN" in h.stop_reason
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    assert all(math.isfinite(v) for v in h.history.get("loss", []))


def test_terminate_on_nan_can_be_turned_off():
    X = np.random.default_rng(0).normal(size=(16, 5))
    model = Sequential(Dense(5, 1))
    t = Trainer(model, MSELoss(), SGD(model.parameters(), lr=1e3), terminate_on_nan=False)
    with np.errstate(all="ignore"):
        h = t.fit(X, X[:, 0] * 1e3, epochs=6, batch_size=4, verbose=0)
    assert len(h) == 6 and h.stop_reason is None


def test_augmentation_runs_on_training_batches_only():
    X, y = blobs(n=50)
    calls = []

    def hook(batch):
        calls.append(batch.shape[0])
        return batch

    trainer_for(mlp()).fit(X, y, epochs=2, batch_size=10, validation_split=0.2, seed=0,
                           verbose=0, augment=hook)
    assert sum(calls) == 2 * 40


def test_csv_logger_and_verbose_output(tmp_path, capsys):
    X, y = blobs(n=60)
    path = tmp_path / "log.csv"
    trainer_for(mlp()).fit(X, y, epochs=3, validation_split=0.2, seed=0, verbose=2,
                           callbacks=[CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                   "seconds"]
    assert [l.split(",")[0] for l in lines[1:]] == ["1", "2", "3"]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("epoch 1/3") and "val_loss" in out[0]
    # verbose=1 without a terminal: one line per epoch too, no bar
    trainer_for(mlp()).fit(X, y, epochs=2, verbose=1)
    assert len(capsys.readouterr().out.splitlines()) == 2
    trainer_for(mlp()).fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_builtin_progress_bar_on_a_tty(monkeypatch):
    from pynn.train import _progress

    class TTY(io.StringIO):
        def isatty(self):
            return True

    buf = TTY()
    monkeypatch.setitem(sys.modules, "tqdm", None)  # force the built-in bar
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    p = _progress._Progress(1, epochs=2, file=buf)
    assert p.bar and p.tqdm is None
    p.epoch_begin(0, 3)
    for b in range(3):
        p.batch_end(b, {"loss": 0.5})
    p.epoch_end({"loss": 0.5, "seconds": 0.1})
    text = buf.getvalue()
    assert "[" in text and "3/3" in text and "ETA" in text and text.endswith("\n")


def test_builtin_progress_bar_ends_its_line_when_an_epoch_is_cut_short(monkeypatch):
    from pynn.train import _progress

    class TTY(io.StringIO):
        def isatty(self):
            return True

    buf = TTY()
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    p = _progress._Progress(1, epochs=2, file=buf)
    p.abort()
    assert buf.getvalue() == ""  # nothing drawn, nothing to end
    p.epoch_begin(0, 1)
    p.batch_end(0, {"loss": 0.5})  # a last batch is always drawn; epoch_end would end the line
    p.abort()  # the traceback then starts on a fresh line
    assert buf.getvalue().endswith("\n") and buf.getvalue().count("\n") == 1


def test_history_plot(tmp_path, monkeypatch):
    h = History({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8],
                 "val_accuracy": [0.4, 0.7], "lr": [0.1, 0.05], "seconds": [1, 1]})
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    h.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install 'pynn\[plot\]'"):
        h.plot(tmp_path / "x.png")


def test_float64_model_and_int_inputs_are_converted_once():
    X, y = blobs(n=40)
    model = mlp(dtype=np.float64)
    t = trainer_for(model)
    h = t.fit(X.astype(np.int64), y.astype(np.int32), epochs=1, verbose=0)
    assert len(h) == 1 and model[0].weight.dtype == np.float64


def test_trainer_rejects_wrong_objects():
    with pytest.raises(TypeError, match="model"):
        Trainer("m", CrossEntropyLoss(), None)
    model = mlp()
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(model, CrossEntropyLoss(), object())
    with pytest.raises(ValueError, match="unknown metric"):
        trainer_for(model, metrics=["f1"])
    with pytest.raises(TypeError, match="callbacks"):
        trainer_for(model).fit(*blobs(n=20), epochs=1, verbose=0, callbacks=[3])
    assert any(isinstance(c, TerminateOnNaN)
               for c in trainer_for(model)._collect_callbacks(None, None))


# ---------------------------------------------------------------------------- errors inside fit
class Boom(RuntimeError):
    pass


def raise_on_call(n, f=lambda *a: a[0]):
    """A callable that behaves like ``f`` and raises Boom on its ``n``-th call."""
    calls = []

    def wrapped(*args):
        calls.append(1)
        if len(calls) == n:
            raise Boom(f"call {n}")
        return f(*args)

    return wrapped


class EndSpy(Callback):
    """Records on_train_end and the CSVLogger handle seen during training."""

    def __init__(self, logger=None):
        self.logger = logger
        self.handle = None
        self.ended = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.logger is not None:
            self.handle = self.logger._file

    def on_train_end(self, logs=None):
        self.ended += 1


@pytest.mark.parametrize("was_training", [True, False])
def test_error_mid_epoch_still_ends_training(tmp_path, was_training):
    X, y = blobs(n=60)
    model = mlp()
    model.train(was_training)
    logger = CSVLogger(tmp_path / "log.csv")
    spy = EndSpy(logger)
    t = trainer_for(model, callbacks=[logger, spy])
    # one batch per epoch: the augmentation's 3rd call is the first batch of epoch 3
    with pytest.raises(Boom, match="call 3"):
        t.fit(X, y, epochs=5, batch_size=60, seed=0, verbose=0, augment=raise_on_call(3))
    assert spy.ended == 1
    assert spy.handle is not None and spy.handle.closed
    assert model.training is was_training
    # the two finished epochs were logged and flushed
    assert [l.split(",")[0] for l in (tmp_path / "log.csv").read_text().splitlines()] == \
        ["epoch", "1", "2"]


@pytest.mark.parametrize("was_training", [True, False])
def test_error_during_validation_still_ends_training(tmp_path, was_training):
    X, y = blobs(n=50)
    model = mlp()
    model.train(was_training)
    logger = CSVLogger(tmp_path / "log.csv")
    spy = EndSpy(logger)
    seen = []

    def metric(out, labels):
        seen.append(labels.shape[0])
        if labels.shape[0] == 10 and seen.count(10) == 2:  # the 2nd validation pass
            raise Boom("in validation")
        return 0.0

    t = trainer_for(model, metrics=[metric], callbacks=[logger, spy])
    with pytest.raises(Boom, match="in validation"):
        t.fit(X, y, epochs=5, batch_size=40, validation_split=0.2, seed=0, verbose=0)
    assert seen == [40, 10, 40, 10]  # training batch, validation, training batch, validation
    assert spy.ended == 1 and spy.handle.closed
    assert model.training is was_training


def test_error_restores_early_stoppings_best_weights():
    X, y = blobs(n=120, seed=1)
    model = mlp()
    per_epoch = []
    Record = _recorder(per_epoch)

    es = EarlyStopping(patience=50)
    t = trainer_for(model, lr=0.3, callbacks=[Record(), es])
    # 84 training samples in batches of 84: the 7th augmentation call is epoch 7's only batch
    with pytest.raises(Boom):
        t.fit(X, y, epochs=20, batch_size=84, validation_split=0.3, seed=0, verbose=0,
              augment=raise_on_call(7))
    assert len(per_epoch) == 6 and es.best_epoch is not None
    for a, b in zip(snapshot(model).values(), per_epoch[es.best_epoch].values()):
        np.testing.assert_array_equal(a, b)


def test_error_in_on_train_begin_ends_only_the_callbacks_that_began(tmp_path):
    X, y = blobs(n=40)
    logger = CSVLogger(tmp_path / "log.csv")
    spy = EndSpy(logger)

    class FailBegin(EndSpy):
        def on_train_begin(self, logs=None):
            self.handle = logger._file  # opened by the logger's on_train_begin, which ran first
            raise ValueError("bad set-up")

    failed, after = FailBegin(), EndSpy()
    t = trainer_for(mlp(), callbacks=[logger, spy, failed, after])
    with pytest.raises(ValueError, match="bad set-up"):
        t.fit(X, y, epochs=1, verbose=0)
    assert failed.handle.closed
    assert spy.ended == 1 and failed.ended == 0 and after.ended == 0


def test_a_failing_on_train_end_does_not_hide_the_original_error_or_skip_the_others(tmp_path):
    X, y = blobs(n=40)

    class BadEnd(Callback):
        def on_train_end(self, logs=None):
            raise OSError("disk full")

    spy = EndSpy()
    t = trainer_for(mlp(), callbacks=[BadEnd(), spy])
    with pytest.warns(RuntimeWarning, match=r"BadEnd.on_train_end failed .*disk full"):
        with pytest.raises(Boom):
            t.fit(X, y, epochs=3, batch_size=40, verbose=0, augment=raise_on_call(2))
    assert spy.ended == 1
    # without an error in the loop the callback's own error propagates, after the others ran
    spy.ended = 0
    with pytest.raises(OSError, match="disk full"):
        t.fit(X, y, epochs=1, verbose=0)
    assert spy.ended == 1 and not t.model.training

"""Training callbacks: hooks ``Trainer.fit`` calls at the start and end of training, epochs
and batches (early stopping, checkpoints, schedules, NaN guard, CSV log), and the weight
snapshots they keep. ``pynn.train`` re-exports every name here.
"""
import math
import os

import numpy as np


# ---------------------------------------------------------------------------- callbacks
class Callback:
    """Base class. Hooks get the trainer as ``self.trainer``; set ``trainer.stop_training`` to
    stop after the current epoch. ``state_dict``/``load_state_dict`` make a callback resumable
    (the Trainer stores the state in its checkpoints)."""

    # Order of on_epoch_end calls: schedules first, then the rest, checkpoints last, so a
    # checkpoint captures the scheduler and early-stopping state of the epoch it ends.
    order = 50
    trainer = None

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, epoch, batch, logs=None):
        pass

    def wants_batch_end(self):
        """Whether ``fit`` must call ``on_batch_end`` (building the running logs per batch)."""
        return type(self).on_batch_end is not Callback.on_batch_end

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _mode_for(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if any(s in monitor for s in ("acc", "auc", "r2")) else "min"
    return mode


def _check_monitor(cb, logs_keys_expected, has_validation):
    if cb.monitor.startswith("val_") and not has_validation:
        raise ValueError(
            f"{type(cb).__name__} monitors {cb.monitor!r} but fit has no validation data; pass "
            f"validation_split or validation_data, or monitor='{cb.monitor[4:]}'"
        )
    if cb.monitor not in logs_keys_expected:
        raise ValueError(f"{type(cb).__name__}: monitor {cb.monitor!r} is not recorded; "
                         f"choose one of {sorted(logs_keys_expected)}")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
    patience : int, default 10
    min_delta : float, default 0
    mode : "auto", "min" or "max"
        "auto" maximizes accuracy-like names, minimizes the rest.
    restore_best_weights : bool, default True
        At the end of training, put back the weights (and BatchNorm statistics) of the best epoch.
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = _mode_for(monitor, mode)
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()
        _check_monitor(self, self.trainer._log_keys, self.trainer._has_validation)

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = logs[self.monitor]
        if math.isfinite(value) and self._improved(value):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            if self.restore_best_weights:
                self.best_weights = snapshot(self.trainer.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop(
                f"early stopping at epoch {epoch + 1}: {self.monitor} has not improved for "
                f"{self.wait} epochs (best {self.best:.6g} at epoch {self.best_epoch + 1})"
                if self.best_epoch is not None else
                f"early stopping at epoch {epoch + 1}: {self.monitor} never improved"
            )

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            restore(self.trainer.model, self.best_weights)
            self.trainer._log(f"restored the weights of epoch {self.best_epoch + 1} "
                              f"({self.monitor} {self.best:.6g})")

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = None if state["best_weights"] is None else list(state["best_weights"])


class ModelCheckpoint(Callback):
    """Write a checkpoint (model, optimizer, scheduler, RNG and callback state, history) at the
    end of every epoch, or only when ``monitor`` improves with ``save_best_only``.

    ``pynn.load(path)`` reads the model from it; ``fit(..., resume_from=path)`` continues the run.
    Writes are atomic. ``path`` may contain ``{epoch}`` (1-based) and log keys, e.g.
    ``"ckpt-{epoch:03d}.npz"``.
    """

    order = 100

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _mode_for(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_path = None

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            _check_monitor(self, self.trainer._log_keys, self.trainer._has_validation)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            value = logs[self.monitor]
            better = value < self.best if self.mode == "min" else value > self.best
            if not (math.isfinite(value) and better):
                return
            self.best = float(value)
        path = self.path.format(epoch=epoch + 1, **logs)
        self.trainer.save_checkpoint(path, epoch + 1)
        self.last_path = path

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]


class LRSchedulerCallback(Callback):
    """Step a ``pynn.optim`` schedule at the end of every epoch, or after every optimizer step
    with ``interval="batch"``.

    ``ReduceLROnPlateau`` is stepped with ``logs[monitor]`` (per epoch only); other schedules
    with ``step()``. ``interval`` None takes the schedule's ``default_interval`` ("batch" for
    ``OneCycleLR``, whose ``total_steps`` count batches), else "epoch".
    ``fit(..., scheduler=s)`` and a schedule placed directly in ``callbacks`` are wrapped in one.
    """

    order = 0

    def __init__(self, scheduler, monitor="val_loss", interval=None):
        if not hasattr(scheduler, "step"):
            raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
        self.scheduler = scheduler
        self.monitor = monitor
        self.needs_metric = any(c.__name__ == "ReduceLROnPlateau" for c in type(scheduler).__mro__)
        if interval is None:
            interval = getattr(scheduler, "default_interval", "epoch")
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
        if interval == "batch" and self.needs_metric:
            raise ValueError("ReduceLROnPlateau steps on a metric once per epoch; it cannot "
                             "be stepped per batch")
        self.interval = interval

    def wants_batch_end(self):
        return self.interval == "batch"

    def on_batch_end(self, epoch, batch, logs=None):
        self.scheduler.step()

    def on_train_begin(self, logs=None):
        if self.needs_metric:
            if self.monitor.startswith("val_") and not self.trainer._has_validation:
                self.monitor = self.monitor[4:]  # plateau on the training loss then
            _check_monitor(self, self.trainer._log_keys, self.trainer._has_validation)

    def on_epoch_end(self, epoch, logs=None):
        if self.interval == "batch":
            return
        if self.needs_metric:
            self.scheduler.step(logs[self.monitor])
        else:
            self.scheduler.step()

    def state_dict(self):
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state["scheduler"])


class TerminateOnNaN(Callback):
    """Stop at the first non-finite loss (training batch or validation), name the epoch and
    batch, and put back the last weights known good: those of the start of that epoch, or of
    the epoch before when the loss of the epoch's first batch, computed with the weights at its
    start, is already non-finite.

    On by default (``Trainer(..., terminate_on_nan=True)``). The check sits before the
    optimizer step, so the non-finite gradient is never applied.
    """

    order = 10

    def __init__(self):
        self._good = None
        self._previous = None  # the snapshot before _good, and its epoch

    def on_train_begin(self, logs=None):
        self._good = self._previous = None  # nothing from an earlier fit

    def on_epoch_begin(self, epoch, logs=None):
        # One copy per epoch; per batch would double the memory traffic of small models. The
        # previous one is kept: this one is known good only once a batch of this epoch gave a
        # finite loss with it (its first batch runs on exactly these weights).
        self._previous = (self._good, epoch - 1) if self._good is not None else None
        self._good = snapshot(self.trainer.model)

    def terminate(self, epoch, batch, value, where="training"):
        good, kept = self._good, epoch
        if batch == 0 and self._previous is not None:
            good, kept = self._previous
        if good is not None:
            restore(self.trainer.model, good)
        batch_txt = f", batch {batch + 1}" if batch is not None else ""
        msg = (f"TerminateOnNaN: {where} loss is {value} at epoch {epoch + 1}{batch_txt}; "
               f"stopped training and kept the weights from the end of epoch {kept} "
               f"(try a smaller learning rate)")
        self.trainer.stop(msg, nan=True)


class CSVLogger(Callback):
    """Append one row per epoch (epoch and every logged value) to a CSV file, flushed each epoch.

    A resumed run appends to the existing file. In data-parallel training rank 0 writes it.
    """

    def __init__(self, path, separator=",", append=False):
        self.path = os.fspath(path)
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        if self.trainer.rank != 0:
            return  # (the other ranks' logs are the same numbers)
        append = self.append or self.trainer._resuming
        exists = append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._file = open(self.path, "a" if append else "w", newline="")
        self._keys = None
        if exists:
            with open(self.path, newline="") as f:
                first = f.readline().strip()
            self._keys = first.split(self.separator)[1:] if first else None

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:
            return
        if self._keys is None:
            self._keys = list(logs)
            self._file.write(self.separator.join(["epoch", *self._keys]) + "\n")
        row = [str(epoch + 1)] + [repr(float(logs[k])) if k in logs else "" for k in self._keys]
        self._file.write(self.separator.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


# ---------------------------------------------------------------------------- weights snapshots
def snapshot(model):
    """Copies of every parameter and buffer of ``model`` (its ``state_dict``, for ``restore``)."""
    return model.state_dict()


def restore(model, snap):
    """Put back the values of a ``snapshot`` in place (views and arenas stay valid)."""
    try:
        model.load_state_dict(snap)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"snapshot does not match the model: {exc}") from None


__all__ = ["CSVLogger", "Callback", "EarlyStopping", "LRSchedulerCallback", "ModelCheckpoint",
           "TerminateOnNaN", "restore", "snapshot"]

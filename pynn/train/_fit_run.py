"""What a fit does around its epochs, and what its callbacks call back: the callbacks collected
(a bare lr schedule wrapped, TerminateOnNaN added, sorted by ``order``), the fit's state set up,
the callbacks begun and ended however the fit ends (an error, Ctrl-C), and ``stop``, ``_log``
and ``save_checkpoint`` for the callbacks. ``Trainer`` (pynn/train/trainer.py) inherits it and
holds what a user calls (``fit``'s arguments checked and its data made into sources,
``evaluate``, ``predict``): this part is the Trainer's contract with its callbacks, that one
with its user, and each changes for its own reasons."""
import warnings

import numpy as np

from .. import io as _io
from ._progress import _Progress
from ._resume import apply_resume
from .callbacks import Callback, LRSchedulerCallback, TerminateOnNaN
from .history import History


class FitRun:
    """``Trainer``'s fit around the epochs and its callbacks' side (see the module doc)."""

    # -- callbacks ----------------------------------------------------------------------
    def _collect_callbacks(self, extra, scheduler, scheduler_interval=None):
        cbs = []
        for cb in list(self.callbacks) + list(extra or []):
            if not isinstance(cb, Callback):
                if hasattr(cb, "step") and hasattr(cb, "get_last_lr"):
                    cb = LRSchedulerCallback(cb)  # a bare schedule
                else:
                    raise TypeError(f"callbacks must be Callback instances or lr schedules, got "
                                    f"{type(cb).__name__}")
            cbs.append(cb)
        if scheduler is not None:
            cbs.append(LRSchedulerCallback(scheduler, interval=scheduler_interval))
        if self.terminate_on_nan and not any(isinstance(c, TerminateOnNaN) for c in cbs):
            cbs.append(TerminateOnNaN())
        cbs.sort(key=lambda c: c.order)  # stable: keeps the user's order within a rank
        for cb in cbs:
            cb.trainer = self
        return cbs

    def _callback_keys(self):
        counts, keys = {}, []
        for cb in self._active:
            name = type(cb).__name__
            keys.append(f"{name}#{counts.get(name, 0)}")
            counts[name] = counts.get(name, 0) + 1
        return keys

    # -- control used by callbacks --------------------------------------------------------
    def stop(self, reason, nan=False):
        """Stop after the current batch/epoch, recording ``reason`` in ``history.stop_reason``."""
        self.stop_training = True
        if self.history is not None and self.history.stop_reason is None:
            self.history.stop_reason = reason
        if nan:
            warnings.warn(reason, RuntimeWarning, stacklevel=3)
        self._log(reason)

    def _log(self, text):
        if self._progress is not None:
            self._progress.message(text)

    def save_checkpoint(self, path, epoch):
        """Write everything ``fit(resume_from=path)`` needs to continue after ``epoch`` epochs
        (data-parallel: rank 0 writes; the replicas hold the same state, and the file resumes
        on any number of ranks)."""
        if self.rank != 0:
            return
        extra = {
            "rng": self._rng.bit_generator.state,
            "seed": self._seed,
            "n_train": self._n_train,
            "callbacks": dict(zip(self._callback_keys(), (c.state_dict() for c in self._active))),
            "stop_reason": self.history.stop_reason,
        }
        sched = next((c.scheduler for c in self._active if isinstance(c, LRSchedulerCallback)),
                     None)
        _io.save_checkpoint(path, self.model, self.optimizer, sched, epoch=epoch,
                            history=self.history.history, extra=extra)

    # -- a fit's run ---------------------------------------------------------------
    def _begin_fit(self, n_train, has_validation, verbose, epochs, callbacks, scheduler,
                   scheduler_interval, resuming):
        """The state of one fit: its random stream, log keys, callbacks, progress, history."""
        self._n_train = n_train
        self._rng = np.random.default_rng([self._seed, 0])
        self._has_validation = has_validation
        names = ["loss", *self.metrics]
        self._log_keys = tuple(names + [f"val_{k}" for k in names] * self._has_validation
                               + ["lr", "seconds"])
        self._active = self._collect_callbacks(callbacks, scheduler, scheduler_interval)
        self._progress = _Progress(verbose if self.rank == 0 else 0, epochs)
        self.history = History()
        self.stop_training = False
        self._resuming = resuming

    def _run_fit(self, resume_from, resume, run_epochs):
        """The callbacks' begin, the resumed state, ``run_epochs(start)`` from the epoch to
        start from, and the callbacks' end.

        An exception anywhere (a metric, an augmentation, a callback, Ctrl-C) still ends
        training properly: CSVLogger closes its file, EarlyStopping puts the best weights back,
        and the model returns to the mode the caller had it in, before the error propagates."""
        was_training = self.model.training
        started = []  # on_train_end only for callbacks whose on_train_begin ran
        try:
            for cb in self._active:
                cb.on_train_begin()
                started.append(cb)
            start = 0
            if resume is not None:
                start = apply_resume(self, resume_from, resume)
            run_epochs(start)
            if self._distributed is not None:
                self._distributed.dp.sync_buffers()  # every replica ends as rank 0's
        except BaseException:
            self._progress.abort()
            self._end_callbacks(started, failing=True)
            self.model.train(was_training)
            self._distributed = None
            raise
        try:
            self._end_callbacks(started)
        finally:
            self.model.eval()
            self._distributed = None

    def _end_callbacks(self, started, failing=False):
        """``on_train_end`` of every callback in ``started``, even when one of them raises.

        After a successful fit the first such error propagates once all have run. While fit is
        already failing, the original error is the one the caller needs: a callback's error is
        only warned about, naming the callback.
        """
        first = None
        for cb in started:
            try:
                cb.on_train_end()
            except Exception as exc:
                if failing:
                    warnings.warn(f"{type(cb).__name__}.on_train_end failed while fit was "
                                  f"stopping on an error: {exc!r}", RuntimeWarning, stacklevel=3)
                elif first is None:
                    first = exc
        if first is not None:
            raise first

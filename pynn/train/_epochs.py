"""``Trainer.fit``'s epoch loop: the batches of each epoch, the step on each batch (compiled or
the eager lines), the running logs for batch callbacks and the progress bar, then validation
and the epoch's record. Everything but the step hangs off batch and epoch boundaries."""
import math
import time

from ..nn.eager_step import eager_step
from ..nn.utils import clip_grad_norm_, clip_grad_value_
from .._checks import check_real
from ._metrics import LossTotal
from .callbacks import TerminateOnNaN


class GradientClipping:
    """``fit``'s clip_grad_value / clip_grad_norm, applied to a model's gradients; false when
    neither is set."""

    def __init__(self, max_norm=None, max_value=None):
        self.max_norm = None if max_norm is None else check_real("clip_grad_norm", max_norm,
                                                                 low=0.0, low_open=True)
        self.max_value = None if max_value is None else check_real("clip_grad_value", max_value,
                                                                   low=0.0, low_open=True)

    def __bool__(self):
        return self.max_norm is not None or self.max_value is not None

    def __call__(self, model):
        params = list(model.parameters())
        if self.max_value is not None:
            clip_grad_value_(params, self.max_value)
        if self.max_norm is not None:
            clip_grad_norm_(params, self.max_norm)


class _Stop(Exception):
    """The epoch ends early and records nothing (a non-finite loss, a stopped stream)."""


def train_epochs(trainer, train, val, class_weights, start, epochs, batch_size, shuffle,
                 augment, clip):
    """The epoch loop of ``fit``, from epoch ``start``; results go to ``trainer.history``."""
    loop = _EpochLoop(trainer, train, class_weights, augment, clip)
    for epoch in range(start, epochs):
        if trainer.stop_training:
            break
        t0 = time.perf_counter()
        for cb in trainer._active:
            cb.on_epoch_begin(epoch)
        trainer.model.train()
        lr = float(trainer.optimizer.param_groups[0]["lr"])  # the epoch's first step's rate
        order = (trainer._rng.permutation(train.n) if shuffle and train.n is not None
                 else None)
        logs = loop.epoch(epoch, batch_size, order)
        if logs is None:
            break  # the epoch did not finish: record nothing for it
        if val is not None:
            val_logs = trainer._evaluate_source(val)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if not math.isfinite(val_logs["loss"]) and loop.nan_cb is not None:
                loop.nan_cb.terminate(epoch, None, val_logs["loss"], where="validation")
                break
        logs["lr"] = lr
        logs["seconds"] = time.perf_counter() - t0
        trainer.history.append(epoch, logs)
        trainer._progress.epoch_end(logs)
        for cb in trainer._active:
            cb.on_epoch_end(epoch, logs)


class _EpochLoop:
    """What stays fixed over one ``fit``: the callbacks that see batches, the metrics, and
    whether the model's compiled step may run."""

    def __init__(self, trainer, train, class_weights, augment, clip):
        self.trainer = trainer
        self.train = train
        self.class_weights = class_weights
        self.augment = augment
        self.clip = clip
        self.nan_cb = next((c for c in trainer._active if isinstance(c, TerminateOnNaN)), None)
        self.batch_cbs = [c for c in trainer._active if c.wants_batch_end()]
        self.metric_items = list(trainer.metrics.items())
        self.dist = trainer._distributed
        # running logs per batch: the same decision on every rank (rank 0 alone shows a bar)
        self.running = bool(self.batch_cbs) or trainer._progress.bar
        if self.dist is not None:  # (only rank 0 may have a bar)
            self.running = self.dist.world.sum([self.running])[0] > 0
        # clipping edits the gradients between backward and the update: such a fit runs the
        # eager lines
        self.compiled = not clip

    def epoch(self, epoch, batch_size, order):
        """One epoch's batches: its logs (loss and metrics), or None when it did not finish."""
        trainer, train, dist = self.trainer, self.train, self.dist
        trainer._progress.epoch_begin(epoch, train.n_batches(batch_size))
        total = LossTotal(trainer.loss)
        sums = dict.fromkeys(trainer.metrics, 0.0)
        seen = rows_done = 0  # rows of this process's outputs; rows of the (global) batches
        rng = trainer._rng if dist is None else dist.augmentation_rng(epoch)
        batches = (train.batches(batch_size, order) if dist is None
                   else train.batches(batch_size, order, shard=dist.shard))
        for b, (Xb, yb, wb) in enumerate(batches):
            wb = self.class_weights.rows(wb, yb, train.width)
            for aug in self.augment:
                Xb = aug(Xb, rng)
            rows_done += yb.shape[0]
            try:
                if dist is None:
                    out = self._step(epoch, b, Xb, yb, wb, total)
                else:
                    out, yb = self._shard_step(epoch, b, Xb, yb, wb, total)
            except _Stop:
                return None
            n_b = yb.shape[0]
            if n_b:
                for k, f in self.metric_items:
                    sums[k] += f(out, yb) * n_b
            seen += n_b
            if self.running:
                running = self._running(total, sums, seen)
                trainer._progress.batch_end(b, running)
                for cb in self.batch_cbs:
                    cb.on_batch_end(epoch, b, running)
            if trainer.stop_training:
                # a stream's length is unknown: stopping there leaves its epoch unfinished
                if train.n is None or rows_done != train.n:
                    return None
                break
        if rows_done == 0:
            raise ValueError(f"X yielded no batches in epoch {epoch + 1}")
        if dist is not None:
            sums, seen = dist.reduce_metrics(sums, seen)
        return {"loss": total.value(), **{k: v / seen for k, v in sums.items()}}

    def _running(self, total, sums, seen):
        """The logs so far, for batch callbacks and the progress bar (over every rank's rows:
        callbacks on each rank must decide alike)."""
        if self.dist is not None:
            sums, seen = self.dist.reduce_metrics(sums, seen)
        return {"loss": total.value(), **{k: v / seen for k, v in sums.items()}}

    def _shard_step(self, epoch, b, Xb, yb, wb, total):
        """The step on this rank's shard of a global batch (``Xb`` its rows already; ``yb``,
        ``wb`` the whole batch's): (its output, its targets)."""
        trainer, loss_fn, nan_cb = self.trainer, self.trainer.loss, self.nan_cb
        part = self.dist.shard(yb.shape[0])
        share, batch_weight = self.dist.share(loss_fn, yb.shape[0], wb, part)
        ys, ws = yb[part], None if wb is None else wb[part]
        value, out = self.dist.dp.step(
            Xb, ys, loss_fn, trainer.optimizer, share=share, rows=yb.shape[0], sample_weight=ws,
            zero_grad="model", finite_only=nan_cb is not None, clip=self.clip or None)
        total.record(value, batch_weight)
        if not math.isfinite(value) and nan_cb is not None:
            nan_cb.terminate(epoch, b, value)  # every rank skipped the update alike
            raise _Stop
        return out, ys

    def _step(self, epoch, b, Xb, yb, wb, total):
        """One training step on a batch, its loss counted into ``total``: the model's output.

        The compiled step (one C call) when the model is a Sequential of pynn's layers whose
        trainable parameters are exactly the optimizer's (its zero_grad then is
        model.zero_grad), for the loss's plain mean. Else, or when it declines the batch, the
        same lines in Python."""
        trainer, nan_cb = self.trainer, self.nan_cb
        model, loss_fn, opt = trainer.model, trainer.loss, trainer.optimizer
        program = None if wb is not None or not self.compiled else model.compiled_step(
            Xb, loss_fn, opt, zero_grad="model")
        value = None if program is None else program.run(Xb, yb, finite_only=nan_cb is not None)
        if value is not None:
            total.record(value, yb.shape[0])
            if not math.isfinite(value) and nan_cb is not None:
                nan_cb.terminate(epoch, b, value)  # the update was skipped
                raise _Stop
            return program.output()
        value, out = eager_step(model, Xb, opt, lambda out: total.add(out, yb, wb),
                                loss_fn.backward, zero_grad="model",
                                finite_only=nan_cb is not None, clip=self.clip or None)
        if not math.isfinite(value) and nan_cb is not None:
            nan_cb.terminate(epoch, b, value)  # before the backward: nothing was updated
            raise _Stop
        return out

"""The Trainer: ``fit`` (Keras's convenience, a PyTorch loop underneath), ``evaluate``,
``predict``; its epoch loop is ``_epochs.py``, its batch sources ``_sources.py``, its run
around the epochs (the callbacks begun and ended, what they call back) ``_fit_run.py``.

The loop per batch is the one you would write by hand::

    model.zero_grad(); out = model.forward(Xb); l = loss.forward(out, yb)
    model.backward(loss.backward(), input_grad=False); optimizer.step()

Everything else (validation, metrics, schedules, early stopping, checkpoints, progress) hangs off
epoch boundaries, so it costs nothing inside the hot loop.
"""
import numpy as np

from .._checks import check_int
from .._random import draw_seed
from ..data import as_array, augmentation_caller, batch_bounds
from ..nn.losses import CrossEntropyLoss
from ..distributed import DataParallel
from ..nn.module import Module
from ._distributed import DistributedFit
from ._epochs import GradientClipping, train_epochs
from ._fit_run import FitRun
from ._metrics import LossTotal, check_training_reduction, resolve_metrics, score_batches
from ._resume import read_resume
from ._sources import (ArrayBatches, Targets, check_memmap, fit_sources, holdout, is_memmap,
                       source_for)
from ._weights import ClassWeights


# ---------------------------------------------------------------------------- the Trainer
class Trainer(FitRun):
    """Train ``model`` with ``loss`` and ``optimizer``; Keras-style ``fit``/``evaluate``/``predict``.

    Parameters
    ----------
    model : pynn Module (usually a Sequential)
    loss : pynn.nn loss (CrossEntropyLoss, BCEWithLogitsLoss, MSELoss)
    optimizer : a pynn.optim optimizer over ``model.parameters()``
    metrics : "auto", list of str or callables
        "auto" records accuracy for classification losses. A callable ``f(output, y) -> float``
        is recorded under its ``__name__`` (averaged over batches weighted by batch size).
    callbacks : list of Callback, optional
        Used by every ``fit`` (``fit(callbacks=...)`` adds more for one call).
    terminate_on_nan : bool, default True
        Add a TerminateOnNaN callback unless one is given.

    Examples
    --------
    >>> trainer = Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3))
    >>> history = trainer.fit(X, y, epochs=20, batch_size=64, validation_split=0.1, seed=0)
    """

    def __init__(self, model, loss, optimizer, metrics="auto", callbacks=None,
                 terminate_on_nan=True):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a pynn Module, got {type(model).__name__}")
        if not hasattr(loss, "forward") or not hasattr(loss, "backward"):
            raise TypeError(f"loss must be a pynn loss, got {type(loss).__name__}")
        if not hasattr(optimizer, "step") or not hasattr(optimizer, "param_groups"):
            raise TypeError(f"optimizer must be a pynn.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        check_training_reduction(loss)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.metrics = resolve_metrics(metrics, loss)
        self.callbacks = list(callbacks or [])
        self.terminate_on_nan = bool(terminate_on_nan)
        self.stop_training = False
        self.history = None
        self._rng = None
        self._seed = None
        self._n_train = None
        self._progress = None
        self._resuming = False
        self._has_validation = False
        self._log_keys = ()
        self._active = []
        self._distributed = None  # a DistributedFit while fitting data-parallel

    # -- set-up helpers -----------------------------------------------------------------
    @property
    def dtype(self):
        return np.dtype(getattr(self.model, "dtype", np.float32))

    def _targets(self):
        return Targets(self.model, self.loss, self.dtype)

    def _is_classification(self):
        return isinstance(self.loss, CrossEntropyLoss)

    @property
    def rank(self):
        """This process's rank when the model is a ``pynn.distributed.DataParallel`` (or while
        ``fit(distributed=True)`` runs), else 0. Rank 0 prints and writes files; a callback
        that writes should check it."""
        dist = self._distributed
        if dist is None and isinstance(self.model, DataParallel):
            return self.model.rank
        return 0 if dist is None else dist.rank

    # -- fit ---------------------------------------------------------------------------
    def fit(self, X, y=None, epochs=1, batch_size=32, validation_split=None, validation_data=None,
            shuffle=True, seed=None, verbose=1, callbacks=None, resume_from=None,
            scheduler=None, augment=None, sample_weight=None, class_weight=None,
            clip_grad_norm=None, clip_grad_value=None, scheduler_interval=None,
            distributed=False):
        """Train for ``epochs`` epochs of shuffled mini-batches.

        Parameters
        ----------
        X : array-like (N, features), SciPy sparse matrix, numpy.memmap, or batches
            Converted once to the model's dtype; NaN/Inf are rejected. A sparse ``X`` becomes
            CSR once; its batches are CSR row slices for a first ``Dense``, never densified. A ``numpy.memmap`` is
            never loaded whole: each batch's rows are gathered and converted as it is needed
            (shuffling, ``validation_split`` and weights work as for arrays; ``y`` is read into
            memory). For data that does not fit even so, pass the batches themselves, with
            ``y`` None: a callable returning an iterator of ``(X_batch, y_batch)`` or
            ``(X_batch, y_batch, sample_weight_batch)`` per epoch, or a re-iterable object
            yielding them (a one-shot generator serves ``epochs=1`` only); they are used in the
            order given (``shuffle`` and ``batch_size`` do not apply).
        y : array-like, or None with batches
            Class labels (N,) for CrossEntropyLoss; (N, outputs) or (N,) targets otherwise.
        epochs : int
            Total epochs; with ``resume_from``, training continues up to this number.
        batch_size : int, default 32
        validation_split : float in (0, 1), optional
            Hold out this fraction of ``X, y`` for validation: shuffled (from ``seed``) and,
            for CrossEntropyLoss, stratified by class.
        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), or batches
            Takes precedence over ``validation_split``. Its sample weights weigh ``val_loss``.
            ``X_val`` may be a memmap; batches (not a tuple or list: a callable or a
            re-iterable object, as for ``X``) are evaluated one at a time.
        shuffle : bool, default True
        seed : int, optional
            Seeds the split, the shuffling and augmentation. None draws one, from
            ``pynn.manual_seed``'s stream when set (recorded in checkpoints, so a resumed run
            still continues exactly).
        verbose : 0, 1 or 2
            0 silent, 1 a progress bar per epoch (a line per epoch when stdout is not a TTY),
            2 one line per epoch.
        callbacks : list, optional
            Callbacks (and bare lr schedules) for this call, after the Trainer's own.
        resume_from : path, optional
            A checkpoint from ``ModelCheckpoint``/``Trainer.save_checkpoint``: restores the
            weights, optimizer, schedules, RNG, Dropout counters, callback state and history,
            and continues with the next epoch; the result equals an uninterrupted run.
        scheduler : lr schedule, optional
            Stepped once per epoch (ReduceLROnPlateau with ``val_loss``, or ``loss`` without
            validation data), or after every optimizer step (``OneCycleLR``, or any schedule
            with ``scheduler_interval="batch"``).
        scheduler_interval : "epoch", "batch" or None
            When ``scheduler`` steps; None: per batch for ``OneCycleLR``, else per epoch.
        augment : callable or list of callables, optional
            Applied to each training batch (never to validation): ``f(X_batch) -> X_batch``,
            or ``f(X_batch, rng=...)`` to draw from the Trainer's generator (e.g.
            ``pynn.data.GaussianNoise``).

        sample_weight : array (N,), optional
            Weighs each sample's loss: a batch's loss is the weighted mean (see
            ``pynn.nn.losses``), the recorded epoch loss the weighted mean over the epoch.
            ``validation_split`` splits the weights too, and they weigh ``val_loss``. Metrics
            (accuracy) stay unweighted.
        class_weight : dict, sequence or "balanced", optional
            scikit-learn's: each training row's weight is multiplied by its class's weight
            (CrossEntropyLoss: the label's; a one-output BCEWithLogitsLoss: classes 0 and 1,
            mixed by a soft target). With CrossEntropyLoss this is torch's class-weighted mean.
            As in Keras it applies to the training loss only, not ``val_loss``.

        clip_grad_norm : float, optional
            Before each optimizer step, scale the gradients of the trainable parameters to a
            total 2-norm of at most this (``pynn.nn.utils.clip_grad_norm_``).
        clip_grad_value : float, optional
            Before each optimizer step, clamp every gradient element into
            ``[-clip_grad_value, clip_grad_value]`` (``clip_grad_value_``); with both, values
            are clamped first, then the norm is clipped.
        distributed : bool, default False
            Train data-parallel over the ranks of the MPI job (``mpirun -n N``): the model is
            wrapped in ``pynn.distributed.DataParallel`` for this fit (as passing a Trainer a
            DataParallel does). ``batch_size`` is the global batch: with the same seed the
            same global batches as in one process, each rank training on its contiguous
            shard of each (uneven shards weighted, so each step is the global batch's mean).
            Losses, metrics and validation are reduced over the ranks; rank 0 alone prints and
            writes checkpoints; augmentation draws per rank. Outside an MPI job: one rank.

        Returns
        -------
        History
        """
        epochs = check_int("epochs", epochs, 0)
        clip = GradientClipping(clip_grad_norm, clip_grad_value)
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        if augment is None:
            augment = []
        elif callable(augment):
            augment = [augment]
        augment = [augmentation_caller(a) for a in augment]

        batch_bounds(1, batch_size)  # validates batch_size
        train, val, width = fit_sources(self._targets(), X, y, sample_weight,
                                        validation_split, validation_data, epochs)
        class_weights = ClassWeights(class_weight, self.loss, width,
                                     train.y if isinstance(train, ArrayBatches) else None)

        resume = None
        if resume_from is not None:
            resume = read_resume(resume_from)
            if seed is None:
                seed = resume["extra"]["seed"]
        dp = self.model if isinstance(self.model, DataParallel) else (
            DataParallel(self.model) if distributed else None)
        if seed is None:
            seed = draw_seed()
            if dp is not None:  # every rank draws the same batches: rank 0's seed
                seed = int(dp.world.broadcast_(np.array([seed], np.int64))[0])
        self._seed = int(seed)
        self._distributed = None if dp is None else DistributedFit(dp, self._seed)
        if val is None and validation_split is not None:
            train, val = holdout(train, validation_split, self._is_classification(),
                                 np.random.default_rng([self._seed, 1]))
        self._begin_fit(train.n, val is not None, verbose, epochs, callbacks, scheduler,
                        scheduler_interval, resume is not None)
        self._run_fit(resume_from, resume, lambda start: train_epochs(
            self, train, val, class_weights, start, epochs, batch_size, shuffle, augment, clip))
        return self.history

    # -- evaluate / predict ----------------------------------------------------------------
    def evaluate(self, X, y=None, batch_size=1024, sample_weight=None):
        """Loss (weighted by ``sample_weight`` when given) and metrics of the model in eval
        mode: a dict.

        ``X, y`` as for ``fit``: arrays, a memmap ``X`` (read a batch at a time), or ``X`` a
        source of ``(X, y[, sample_weight])`` batches with ``y`` None. Over arrays in memory the
        metrics see all outputs at once; over batches they are averaged weighted by batch size,
        as during training. With a ``DataParallel`` model every rank evaluates its contiguous
        part of the rows (with rank 0's BatchNorm statistics) and gets the reduced result: call
        it on every rank.
        """
        source, _ = source_for(self._targets(), X, y, sample_weight)
        return self._evaluate_source(source, batch_size)

    def _evaluate_source(self, source, batch_size=1024):
        dist = self._distributed
        if dist is None and isinstance(self.model, DataParallel):
            dist = DistributedFit(self.model, None)
        if dist is not None:
            return dist.evaluate(self, source, batch_size)
        total = LossTotal(self.loss)
        whole = source.whole()
        if whole is not None:
            X, y, w = whole
            out = self.model.predict(X, batch_size=batch_size)
            total.add(out, y, w)
            return {"loss": total.value(), **{k: float(f(out, y)) for k, f in self.metrics.items()}}
        total, sums, seen = score_batches(self.model, self.loss, self.metrics,
                                          source.batches(batch_size), batch_size)
        if seen == 0:
            raise ValueError("the evaluation data yielded no batches")
        return {"loss": total.value(), **{k: v / seen for k, v in sums.items()}}

    def predict_proba(self, X, batch_size=1024):
        """Class probabilities in eval mode: softmax rows (N, classes) for CrossEntropyLoss,
        sigmoid (N, outputs) for BCEWithLogitsLoss (``loss.probabilities``); ValueError for
        other losses. ``X`` as for ``predict``."""
        return self.loss.probabilities(self.predict(X, batch_size=batch_size))

    def predict(self, X, batch_size=1024):
        """Model outputs (logits for classification losses) in eval mode. ``X`` may be a
        memmap: it is read and converted one batch at a time."""
        if is_memmap(X):
            check_memmap("X", X)
            return np.concatenate([
                self.model.predict(as_array("X", X[lo:hi], self.dtype, ndim=2),
                                   batch_size=batch_size)
                for lo, hi in batch_bounds(X.shape[0], batch_size)])
        X = self._targets().convert("X", X)
        return self.model.predict(X, batch_size=batch_size)

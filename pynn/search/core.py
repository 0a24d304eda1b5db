"""grid_search and random_search: each trial trains the lecture's recipe (pynn.train.recipe) on one
training part and scores it on one validation part (the lecture's "one fold"); trials run in
parallel through joblib; the winner is refit on all the data."""
import time
import warnings

import numpy as np

from .._checks import check_int, check_real
from .._threads import get_num_threads, set_num_threads
from ..tune._planner import fixed_rules
from ..data import LabelEncoder, Standardizer, as_array, split_indices
from ..train.recipe import build_mlp, make_optimizer
from ._progress import TrialProgress
from ._parallel import (active_backend, cluster_worker_threads, results_as,
                        threads_per_trial_for, workers_for)
from .result import SearchResult
from .space import check_grid, check_space, expand_grid, sample_space

TASKS = ("auto", "classification", "regression")
STANDARDIZE = ("feature", "common", None)


# ---------------------------------------------------------------------------- data
class _Data:
    """The holdout, prepared once in the caller: labels encoded, the training part's scaler
    applied to both parts (the scaler never sees validation data), float32 arrays."""

    def __init__(self, X, y, task, val_fraction, standardize, seed):
        X = as_array("X", X, np.float64, ndim=2)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with one value per row of X ({X.shape[0]}), got "
                             f"shape {y.shape}")
        if X.shape[0] < 4:
            raise ValueError(f"X needs at least 4 rows to split into training and validation, "
                             f"got {X.shape[0]}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if task == "auto":
            task = "regression" if y.dtype.kind == "f" else "classification"
        if standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be 'feature', 'common' or None, got "
                             f"{standardize!r}")
        self.task = task
        self.standardize = standardize
        if task == "classification":
            self.encoder = LabelEncoder().fit(y)
            y = self.encoder.transform(y)
            if self.encoder.classes_.size < 2:
                raise ValueError("y has a single class: nothing to classify")
            self.n_out = int(self.encoder.classes_.size)
            stratify = bool(np.bincount(y).min() >= 2)
        else:
            y = as_array("y", y, np.float64, ndim=1)
            self.encoder = None
            self.n_out = 1
            stratify = False
        self.X, self.y, self.n_in = X, y, X.shape[1]
        fit_idx, val_idx = split_indices(y, val_fraction, stratify=stratify, seed=seed)
        self.fit_X, self.fit_y, self.val_X, self.val_y, *_ = self.prepare(fit_idx, val_idx)

    def prepare(self, fit_idx, val_idx=None):
        """(X_fit, y_fit, X_val, y_val, scaler, target_scale) with the scaler fit on the
        ``fit_idx`` rows; target_scale is (mean, std) of a regression target, else None."""
        X_fit = self.X[fit_idx]
        scaler = None
        if self.standardize is not None:
            scaler = Standardizer(scale_floor=1.0 if self.standardize == "common" else 0.0)
            scaler.fit(X_fit.astype(np.float32))

        def transform(rows):
            Xp = self.X[rows].astype(np.float32)
            return scaler.transform(Xp) if scaler is not None else Xp
        y, target_scale = self.y, None
        if self.task == "regression":
            # trained on a standardized target, so one lr range suits any target scale; R^2 is
            # the same in either scale
            target_scale = (float(y[fit_idx].mean()), float(y[fit_idx].std()) or 1.0)
            y = ((y - target_scale[0]) / target_scale[1]).astype(np.float32)
        fit = (transform(fit_idx), y[fit_idx])
        val = (None, None) if val_idx is None else (transform(val_idx), y[val_idx])
        return (*fit, *val, scaler, target_scale)


# ---------------------------------------------------------------------------- one trial
def _train(params, X, y, X_val, y_val, n_in, n_out, task, epochs, patience, seed):
    """Train the recipe with ``params``; early stopping on the validation score when there is
    validation data (best weights restored). Returns (model, history, best_epoch, diverged)."""
    from ..nn import CrossEntropyLoss, MSELoss
    from ..optim import ExponentialLR
    from ..train import EarlyStopping, Trainer

    model = build_mlp(n_in, params["hidden"], n_out, dropout=params["dropout"], seed=seed)
    optimizer = make_optimizer(params["optimizer"], model.parameters(), params["lr"])
    loss = CrossEntropyLoss() if task == "classification" else MSELoss()
    callbacks = []
    if X_val is not None:
        monitor = "val_accuracy" if task == "classification" else "val_loss"
        callbacks.append(EarlyStopping(monitor, patience=patience))
    trainer = Trainer(model, loss, optimizer)
    with warnings.catch_warnings(record=True) as caught:
        # a diverging trial (too large an lr) is an expected outcome of a search, not a warning
        warnings.simplefilter("always", RuntimeWarning)
        history = trainer.fit(X, y, epochs=epochs, batch_size=params["batch_size"],
                              validation_data=None if X_val is None else (X_val, y_val),
                              seed=seed, verbose=0, callbacks=callbacks,
                              scheduler=ExponentialLR(optimizer, gamma=params["lr_decay"]))
    diverged = any("TerminateOnNaN" in str(w.message) for w in caught)
    best_epoch = len(history)
    if callbacks and callbacks[0].best_epoch is not None:
        best_epoch = callbacks[0].best_epoch + 1
    return model, history, best_epoch, diverged


def _score(model, X, y, task):
    """Accuracy (classification) or R^2 (regression) of ``model`` on ``X, y``; higher is better.
    A model whose outputs are not finite scores -inf."""
    out = model.predict(X)
    if not np.isfinite(out).all():
        return -np.inf
    if task == "classification":
        return float(np.mean(out.argmax(axis=1) == y))
    residual = np.sum((out[:, 0].astype(np.float64) - y) ** 2)
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - residual / total) if total > 0 else float(-residual)


def _run_trial(index, params, X, y, X_val, y_val, n_in, n_out, task, epochs, patience, seed,
               threads):
    """One trial, in whichever process joblib chose: set this process's threads (``threads``,
    or None on a cluster worker: its share), train, score.

    The holdout comes as four arrays, not inside one object: joblib's dask backend sends each
    large array argument to the workers once per search (an object holding them would travel
    inside every task, through the scheduler), and loky memory-maps large arrays."""
    if threads is None:
        threads = cluster_worker_threads()
    if get_num_threads() != threads:
        set_num_threads(threads)
    start = time.perf_counter()
    # the fixed rules' products (pynn.tune): a worker process measuring for itself could pick
    # another strategy than this process, and round a trial's numbers differently
    with fixed_rules():
        model, history, best_epoch, diverged = _train(
            params, X, y, X_val, y_val, n_in, n_out, task, epochs, patience, seed)
        score = _score(model, X_val, y_val, task)
    return {"trial": index, "params": params, "score": score,
            "best_epoch": best_epoch, "epochs_run": len(history), "diverged": diverged,
            "threads": get_num_threads(), "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------- the search
def _search(candidates, knobs, method, data, *, epochs, patience, seed, n_jobs,
            threads_per_trial, refit, verbose, distributed=False):
    if distributed:
        return _search_over_ranks(candidates, knobs, method, data, epochs=epochs,
                                  patience=patience, seed=seed,
                                  threads_per_trial=threads_per_trial, refit=refit,
                                  verbose=verbose)
    joblib, workers = workers_for(n_jobs, len(candidates))
    backend = None if joblib is None else active_backend(joblib)
    threads_per_trial = threads_per_trial_for(backend, workers, threads_per_trial)
    metric = "accuracy" if data.task == "classification" else "r2"
    progress = TrialProgress(verbose, len(candidates), metric)
    args = (data.fit_X, data.fit_y, data.val_X, data.val_y, data.n_in, data.n_out, data.task,
            epochs, patience, seed, threads_per_trial)
    before = get_num_threads()
    rows = []
    try:
        if joblib is None:
            for i, params in enumerate(candidates):
                rows.append(_run_trial(i, params, *args))
                progress.update(rows[-1], knobs)
        else:
            parallel = joblib.Parallel(n_jobs=n_jobs, return_as=results_as(backend))
            for row in parallel(joblib.delayed(_run_trial)(i, params, *args)
                                for i, params in enumerate(candidates)):
                rows.append(row)
                progress.update(row, knobs)
    finally:
        progress.close()
        # a threading backend runs trials in this process: give the caller its count back
        if get_num_threads() != before:
            set_num_threads(before)
    if threads_per_trial is None:
        # the cluster's workers chose: what every trial ran with, when they agree
        ran_with = {row["threads"] for row in rows}
        threads_per_trial = ran_with.pop() if len(ran_with) == 1 else None
    return _result(rows, knobs, method, metric, data, threads_per_trial, workers, refit, seed)


def _result(rows, knobs, method, metric, data, threads_per_trial, workers, refit, seed):
    result = SearchResult(rows, knobs, method, metric, data.task, threads_per_trial, workers)
    result.classes = None if data.encoder is None else data.encoder.classes_
    if refit:
        result.model = _refit(result.best_params, result.results[0]["best_epoch"], data, seed)
    return result


def _search_over_ranks(candidates, knobs, method, data, *, epochs, patience, seed,
                       threads_per_trial, refit, verbose):
    """The trials of an MPI job's search (``mpirun -n N``): rank r runs trials r, r + N, ...
    with its share of the node's cores, every rank gets every row (one allgather), and rank 0
    refits the winner (the others' ``model`` is None)."""
    from ..distributed import world

    w = world()
    w.share_cores()
    threads = (get_num_threads() if threads_per_trial is None
               else check_int("threads_per_trial", threads_per_trial, 1))
    metric = "accuracy" if data.task == "classification" else "r2"
    progress = TrialProgress(verbose if w.is_root else 0, len(candidates), metric)
    mine = []
    try:
        for i in range(w.rank, len(candidates), w.size):
            mine.append(_run_trial(i, candidates[i], data.fit_X, data.fit_y, data.val_X,
                                   data.val_y, data.n_in, data.n_out, data.task, epochs,
                                   patience, seed, threads))
            progress.update(mine[-1], knobs)
    finally:
        progress.close()
    rows = sorted((row for part in w.gather_all(mine) for row in part),
                  key=lambda row: row["trial"])
    return _result(rows, knobs, method, metric, data, threads, w.size, refit and w.is_root,
                   seed)


def _refit(params, epochs, data, seed):
    """The winner retrained on all the data for the epochs that scored best on validation,
    with the scaler (fit on all the data) as its first layer, so it takes raw features and, for
    regression, predicts in the target's units."""
    from ..nn import Sequential

    X, y, _, _, scaler, target_scale = data.prepare(np.arange(data.X.shape[0]))
    with fixed_rules():  # as the trials ran (see _run_trial)
        model, *_ = _train(params, X, y, None, None, data.n_in, data.n_out, data.task, epochs,
                           None, seed)
    if target_scale is not None:
        # fold the target's standardization into the output layer: predictions in y's units
        mean, std = target_scale
        out = model.layers[-1]
        out.weight.data *= std
        out.bias.data[...] = out.bias.data * std + mean
    full = Sequential(*([scaler] if scaler is not None else []), *model.layers)
    full.eval()
    return full


# The parameters both searches share, in both docstrings.
_COMMON_DOC = """
    epochs : int, default 30
        Maximum epochs per trial; each trial stops early when its validation score has not
        improved for ``patience`` epochs, and is scored with its best epoch's weights.
    patience : int, default 5
    val_fraction : float in (0, 1), default 0.2
        The validation part (stratified for classification), the same for every trial.
    task : "auto", "classification" or "regression"
        "auto": regression for float ``y``, classification otherwise. The score is the
        validation accuracy (classification) or R^2 (regression).
    standardize : "feature", "common" or None, default "feature"
        Scale each feature by its own std, all by one common std (pixels), or not at all;
        fit on the training part only.
    seed : int, default 0
        Seeds the split, every trial's initialization, shuffling and dropout (the same for
        all trials, so they differ only in their knobs) and, unless ``sample_seed`` is given,
        random search's draws.
    n_jobs : int or None, default None
        Trials run at once through joblib (the ``search`` extra). 1 runs them here, in order,
        without joblib; -1 uses every core; None follows ``joblib.parallel_config`` (1
        outside one), so ``with joblib.parallel_config(backend="dask"): ...(n_jobs=-1)``
        spreads them over a cluster (docs/cluster_search.md).
    threads_per_trial : int, optional
        pynn threads in each trial; default ``pynn.get_num_threads() // workers`` (at least 1),
        so workers x threads never exceeds the cores. On a cluster backend (dask, ray) each
        worker takes its own share instead: the cores its process may use (OMP_NUM_THREADS,
        which Dask's nanny and Ray set) divided among the trials it runs at once. Scores are
        reproducible at the same threads per trial, whatever ``n_jobs`` or backend: another
        thread count cuts the matrix products differently, which changes their rounding.
    refit : bool, default True
        Retrain the best parameters on all of ``X, y`` for the epochs their trial used;
        ``result.model`` (the scaler as its first layer) takes raw features.
    verbose : 0 or 1, default 0
        1: a progress bar (tqdm on a terminal, the ``progress`` extra) or a line per trial.
    distributed : bool, default False
        Spread the trials over the ranks of the MPI job this process belongs to (``mpirun
        -n N``; the ``mpi`` extra) instead of joblib: rank r runs trials r, r + N, ... with
        its share of the node's cores; every rank returns every trial, and rank 0 alone
        refits (the other ranks' ``model`` is None).

    Returns
    -------
    SearchResult
        ``results`` best first, ``best_params``, ``best_score``, ``model``, ``table()``,
        ``plot(path)``.
"""


def _check_common(epochs, patience, val_fraction, seed, verbose):
    check_int("epochs", epochs, 1)
    check_int("patience", patience, 0)
    check_real("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
    check_int("seed", seed, 0)
    if verbose not in (0, 1) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")


def grid_search(X, y, grid, *, epochs=30, patience=5, val_fraction=0.2, task="auto",
                standardize="feature", seed=0, n_jobs=None, threads_per_trial=None, refit=True,
                verbose=0, distributed=False):
    """Train the lecture's recipe at every point of ``grid`` and rank the points by their
    validation score.

    Parameters
    ----------
    X : array-like (n_samples, n_features)
    y : array-like (n_samples,)
        Class labels (integers or strings) or, for regression, float targets.
    grid : dict of knob -> list of values
        Knobs: ``lr``, ``lr_decay`` (ExponentialLR's per-epoch factor), ``batch_size``,
        ``dropout``, ``hidden`` (tuples of widths), ``optimizer`` ("adam", "adamw", "sgd",
        "rmsprop", "adagrad"); the others stay at ``pynn.search.DEFAULTS``. Every combination
        is one trial (the last knob varies fastest).
{common}
    """
    _check_common(epochs, patience, val_fraction, seed, verbose)
    grid = check_grid(grid)
    data = _Data(X, y, task, val_fraction, standardize, seed)
    return _search(expand_grid(grid), list(grid), "grid", data, epochs=epochs,
                   patience=patience, seed=seed, n_jobs=n_jobs,
                   threads_per_trial=threads_per_trial, refit=refit, verbose=verbose,
                   distributed=distributed)


def random_search(X, y, space, n_trials=16, *, epochs=30, patience=5, val_fraction=0.2,
                  task="auto", standardize="feature", seed=0, sample_seed=None, n_jobs=None,
                  threads_per_trial=None, refit=True, verbose=0, distributed=False):
    """Train the lecture's recipe at ``n_trials`` points drawn from ``space`` and rank them by
    their validation score.

    Parameters
    ----------
    X : array-like (n_samples, n_features)
    y : array-like (n_samples,)
        Class labels (integers or strings) or, for regression, float targets.
    space : dict of knob -> distribution
        ``LogUniform(low, high)`` (log-uniform: the way to draw ``lr``), ``Uniform(low, high)``,
        ``Choice(options)`` or a plain list (each option equally likely), or a fixed value;
        any object with ``sample(rng) -> value`` works too. Knobs as for ``grid_search``; the
        others stay at ``pynn.search.DEFAULTS``. The draws come from
        ``numpy.random.default_rng(sample_seed)``, knob by knob in the space's order, trial by
        trial: the same seeds give the same trials, whatever ``n_jobs``.
    n_trials : int, default 16
    sample_seed : int, optional
        Seeds the draws alone (default: ``seed``), so two searches can draw different trials
        on the same split with the same initial weights.
{common}
    """
    _check_common(epochs, patience, val_fraction, seed, verbose)
    n_trials = check_int("n_trials", n_trials, 1)
    space = check_space(space)
    sample_seed = seed if sample_seed is None else check_int("sample_seed", sample_seed, 0)
    candidates = sample_space(space, n_trials, np.random.default_rng(sample_seed))
    data = _Data(X, y, task, val_fraction, standardize, seed)
    return _search(candidates, list(space), "random", data, epochs=epochs, patience=patience,
                   seed=seed, n_jobs=n_jobs, threads_per_trial=threads_per_trial, refit=refit,
                   verbose=verbose, distributed=distributed)


for _search_function in (grid_search, random_search):
    _search_function.__doc__ = _search_function.__doc__.replace("{common}", _COMMON_DOC.strip("\n"))

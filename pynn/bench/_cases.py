"""The cases of ``pynn bench`` and what every contender shares: the data, the batches, the
epochs' shuffles, the timing loops and the fit cases' MLPClassifier settings. Part of the worker
(pynn/bench/_worker.py loads this file by path, beside it, before the contenders, which import
it as ``_pynn_bench_cases``): it imports only the standard library and NumPy, never ``pynn``.
"""
import time

import numpy as np

# ---------------------------------------------------------------------------------- the cases
# kind "step": time per training step on one fixed batch; "predict": time per predict call over
# n rows; "latency": time of one predict call on n rows (1 or 16: a service answering a request),
# each call timed on its own; "epoch": time per epoch of shuffled mini-batches over n rows.
# "calls" is how many steps/calls one timed repetition runs (the time reported is per
# step/call), "warmup" how many run untimed first, "reps" the default number of timed
# repetitions per process. The predict and latency cases run every contender on the same
# weights and running statistics (inference_weights).
CASES = {
    "small": dict(kind="step", sizes=(64, 32, 32, 10), bn=False, batch=32,
                  calls=1000, warmup=200, reps=5,
                  title="small: 64-32-32-10 ReLU, batch 32, Adam: time per training step"),
    "medium": dict(kind="step", sizes=(784, 256, 128, 10), bn=True, batch=128,
                   calls=50, warmup=20, reps=5,
                   title="medium: 784-256-128-10 BatchNorm+ReLU, batch 128, Adam: "
                         "time per training step"),
    "wide": dict(kind="step", sizes=(784, 1024, 1024, 10), bn=False, batch=256,
                 calls=8, warmup=3, reps=5,
                 title="wide: 784-1024-1024-10 ReLU, batch 256, Adam: time per training step"),
    # The medium net with Dropout(0.1) after each ReLU: what a compiled Dropout costs (issue 21:
    # within 1.10x of "medium"); no NumPy loop for it.
    "medium-dropout": dict(kind="step", sizes=(784, 256, 128, 10), bn=True, dropout=0.1,
                           batch=128, calls=50, warmup=20, reps=5,
                           contenders=("pynn", "pynn-eager", "pynn-numpy", "torch",
                                       "pynn-after-torch", "floor"),
                           title="medium-dropout: 784-256-128-10 BatchNorm+ReLU+Dropout(0.1), "
                                 "batch 128, Adam: time per training step"),
    # The ResNet-MLP of issue 21: Dense(784, 256), 3 blocks of Residual(LayerNorm(256),
    # Dense(256, 512), GELU, Dropout(0.1), Dense(512, 256)), LayerNorm, ReLU, Dense(256, 10);
    # AdamW. sizes: (inputs, the residual width, outputs); no NumPy loop for it.
    "resnet": dict(kind="step", net="resnet", sizes=(784, 256, 10), inner=512, blocks=3,
                   dropout=0.1, optimizer="adamw", bn=False, batch=256, calls=20, warmup=5,
                   reps=5, contenders=("pynn", "pynn-eager", "pynn-numpy", "torch",
                                       "pynn-after-torch", "floor"),
                   title="resnet: ResNet-MLP 784-256-[LayerNorm-512 GELU-Dropout(0.1)-256 "
                         "residual] x 3-LayerNorm-ReLU-10, batch 256, AdamW: time per "
                         "training step"),
    "predict": dict(kind="predict", sizes=(784, 256, 128, 10), bn=True, n=60000, batch=1024,
                    calls=1, warmup=1, reps=5,
                    title="predict: 60,000 rows, medium net (eval mode), batch 1024: "
                          "time per call"),
    "latency-1": dict(kind="latency", sizes=(784, 256, 128, 10), bn=True, n=1, batch=1,
                      calls=1, warmup=300, reps=1000,
                      title="latency-1: predict on 1 row, medium net (eval mode): the median "
                            "call"),
    "latency-16": dict(kind="latency", sizes=(784, 256, 128, 10), bn=True, n=16, batch=16,
                       calls=1, warmup=200, reps=600,
                       title="latency-16: predict on 16 rows, medium net (eval mode): the "
                             "median call"),
    "epoch": dict(kind="epoch", sizes=(784, 256, 128, 10), bn=True, n=60000, batch=128,
                  calls=1, warmup=20, reps=3,
                  title="epoch: one epoch over 60,000 rows, medium net, batch 128, Adam: "
                        "time per epoch"),
    # kind "fit": MLPClassifier(...).fit(X, y) for a fixed number of epochs, pynn.sklearn's
    # against scikit-learn's with the same settings (sklearn_params); "per" is what one fit
    # is divided by. The floor: a training step's products ("step"), an epoch's ("epoch").
    "sk-digits": dict(kind="fit", data="digits", sizes=(64, 64, 32, 10), batch=32, epochs=10,
                      per="step", calls=200, warmup=1, reps=3,
                      title="sk-digits: MLPClassifier.fit, the bundled digits (1797 rows), "
                            "64-32 hidden, batch 32, Adam, 10 epochs: time per training step"),
    "sk-mnist": dict(kind="fit", data="random", n=60000, sizes=(784, 256, 128, 10), batch=128,
                     epochs=2, per="epoch", calls=1, warmup=1, reps=2,
                     title="sk-mnist: MLPClassifier.fit, 60,000x784, 256-128 hidden, batch "
                           "128, Adam, 2 epochs: time per epoch"),
}
# --quick: the same structure at toy sizes, to check the harness end to end in seconds.
QUICK = {
    "small": dict(sizes=(16, 8, 8, 4), batch=8, calls=5, warmup=2, reps=2),
    "medium": dict(sizes=(32, 16, 8, 4), batch=16, calls=4, warmup=2, reps=2),
    "wide": dict(sizes=(32, 64, 64, 4), batch=16, calls=3, warmup=1, reps=2),
    "medium-dropout": dict(sizes=(32, 16, 8, 4), batch=16, calls=4, warmup=2, reps=2),
    "resnet": dict(sizes=(32, 16, 4), inner=24, blocks=2, batch=16, calls=3, warmup=1, reps=2),
    "predict": dict(sizes=(32, 16, 8, 4), n=300, batch=64, calls=1, warmup=1, reps=2),
    "latency-1": dict(sizes=(32, 16, 8, 4), warmup=2, reps=5),
    "latency-16": dict(sizes=(32, 16, 8, 4), warmup=2, reps=5),
    "epoch": dict(sizes=(32, 16, 8, 4), n=300, batch=32, calls=1, warmup=2, reps=2),
    "sk-digits": dict(sizes=(64, 8, 8, 10), epochs=2, calls=5, reps=2),
    "sk-mnist": dict(sizes=(32, 16, 8, 4), n=300, batch=32, epochs=1, reps=2),
}
# An epoch's warm-up is this many batches (a short fit), not whole epochs.

LR = 1e-3
SEED = 0


def case_spec(name, quick=False):
    """The parameters of case ``name`` (a copy), at toy sizes with ``quick``."""
    spec = dict(CASES[name])
    if quick:
        spec.update(QUICK[name])
        spec["title"] = spec["title"].split(":")[0] + " (quick: " + "-".join(
            map(str, spec["sizes"])) + f", batch {spec['batch']})"
    spec["name"] = name
    return spec


def layer_dims(sizes):
    """(in, out) of each Dense layer."""
    return list(zip(sizes[:-1], sizes[1:]))


def dense_dims(spec):
    """(in, out) of each Dense layer of the case's net, in forward order: the chain of
    ``sizes``, or the ResNet-MLP's (the stem, each block's two, the head)."""
    if spec.get("net") != "resnet":
        return layer_dims(spec["sizes"])
    n_in, d, n_out = spec["sizes"]
    return [(n_in, d)] + [(d, spec["inner"]), (spec["inner"], d)] * spec["blocks"] + [(d, n_out)]


def batch_bounds(n, batch):
    """(start, stop) of the mini-batches over n rows: the rule of ``pynn.data.batch_bounds``
    (a trailing batch of one row joins the one before), restated here so contenders that do not
    import pynn walk the very same batches."""
    bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    if len(bounds) >= 2 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def make_data(spec, dtype):
    """The case's inputs, identical in every process: X (rows, features) in [0, 1), labels;
    for data="digits" the bundled digits (scikit-learn's copy of the same UCI rows, so the
    scikit-learn contender need not import pynn), standardized."""
    if spec.get("data") == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        std = X.std(0)
        return ((X - X.mean(0)) / np.where(std > 0, std, 1)).astype(dtype), y
    rng = np.random.default_rng(SEED)
    rows = spec["n"] if spec["kind"] in ("predict", "latency", "epoch", "fit") else spec["batch"]
    X = rng.random((rows, spec["sizes"][0]), dtype=np.float32).astype(dtype, copy=False)
    y = rng.integers(0, spec["sizes"][-1], rows)
    return X, y


def initial_weights(sizes, bn, dtype, seed=SEED):
    """A network's weights before training, as the NumPy loop and JAX draw them: per Dense
    layer a dict of "W" (out, in; He normal), "b" (zeros) and, before a hidden layer's ReLU
    with BatchNorm, "gamma" (ones), "beta" (zeros), "running_mean" (zeros), "running_var"
    (ones)."""
    rng = np.random.default_rng(seed)
    layers = []
    dims = layer_dims(sizes)
    for i, (n_in, n_out) in enumerate(dims):
        std = np.sqrt(2.0 / n_in)  # He normal
        layer = {"W": (rng.standard_normal((n_out, n_in)) * std).astype(dtype),
                 "b": np.zeros(n_out, dtype)}
        if bn and i < len(dims) - 1:
            layer.update(gamma=np.ones(n_out, dtype), beta=np.zeros(n_out, dtype),
                         running_mean=np.zeros(n_out, dtype),
                         running_var=np.ones(n_out, dtype))
        layers.append(layer)
    return layers


def inference_weights(spec, dtype):
    """The weights every contender of a predict or latency case runs: per Dense layer a dict
    of "W" (out, in; He normal), "b" and, before a hidden layer's ReLU with BatchNorm, "gamma",
    "beta", "running_mean", "running_var" (away from 0 and 1, as after training)."""
    rng = np.random.default_rng([SEED, 1])
    layers = []
    dims = layer_dims(spec["sizes"])
    for i, (n_in, n_out) in enumerate(dims):
        layer = {"W": rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in),
                 "b": rng.standard_normal(n_out) * 0.1}
        if spec["bn"] and i < len(dims) - 1:
            layer.update(gamma=rng.uniform(0.5, 1.5, n_out), beta=rng.standard_normal(n_out) * 0.1,
                         running_mean=rng.standard_normal(n_out) * 0.5,
                         running_var=rng.uniform(0.5, 2.0, n_out))
        layers.append({k: v.astype(dtype) for k, v in layer.items()})
    return layers


def epoch_order(rep, n):
    """The shuffle of epoch ``rep``: what ``Trainer.fit(seed=rep)`` draws, so every contender
    walks the same batches in the same order."""
    return np.random.default_rng([rep, 0]).permutation(n)


# ------------------------------------------------------------------------- timing helpers
class TunerWatch:
    """What a pynn contender's timing watches: ``measurements()`` (pynn.tune's count of timed
    products) before and after each repetition; one during which the tuner timed products
    measured the tuner too, so it is timed again (``retimed`` counts them), at most ``reps``
    extra times per case. A user's process pays the tuning once, at its first plan: not per
    step."""

    def __init__(self, measurements):
        self.measurements = measurements
        self.retimed = 0


def _timed(run, reps, watch):
    """``reps`` durations of ``run(rep)`` (rep = 1..reps), each re-run while ``watch`` saw the
    tuner time products during it (see TunerWatch)."""
    times, extra, rep = [], 0, 1
    while rep <= reps:
        before = watch.measurements() if watch is not None else None
        t0 = time.perf_counter()
        run(rep)
        elapsed = time.perf_counter() - t0
        if watch is not None and watch.measurements() != before and extra < reps:
            watch.retimed += 1
            extra += 1
            continue
        times.append(elapsed)
        rep += 1
    return times


def time_reps(fn, calls, warmup, reps, watch=None):
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``reps`` timings of ``calls``
    consecutive calls each (``watch``: a TunerWatch, for pynn's contenders)."""
    for _ in range(warmup):
        fn()

    def run(_):
        for _ in range(calls):
            fn()

    return [t / calls for t in _timed(run, reps, watch)]


def time_epochs(run_epoch, reps, watch=None):
    """Seconds per epoch: ``run_epoch(rep)`` for rep = 1..reps, each timed (``watch``: as in
    time_reps)."""
    return _timed(run_epoch, reps, watch)


def run_case(spec, X, y, step, predict, epoch, warm_epoch, watch=None):
    """Time the case with the contender's callables: ``step(X, y)`` for "step" cases,
    ``predict(X)`` for "predict", ``epoch(rep)`` after ``warm_epoch()`` for "epoch"
    (``watch``: a TunerWatch, for pynn's contenders)."""
    kind = spec["kind"]
    if kind == "step":
        return time_reps(lambda: step(X, y), spec["calls"], spec["warmup"], spec["reps"],
                         watch)
    if kind in ("predict", "latency"):
        return time_reps(lambda: predict(X), spec["calls"], spec["warmup"], spec["reps"],
                         watch)
    warm_epoch()
    return time_epochs(epoch, spec["reps"], watch)


# ------------------------------------------------------------------------- the fit cases
def sklearn_params(spec):
    """The MLPClassifier settings of a "fit" case, the same for pynn.sklearn and scikit-learn:
    exactly ``epochs`` epochs (no tolerance stop), shuffled, Adam, scikit-learn's alpha."""
    return dict(hidden_layer_sizes=tuple(spec["sizes"][1:-1]), activation="relu",
                solver="adam", alpha=1e-4, batch_size=spec["batch"], learning_rate_init=LR,
                max_iter=spec["epochs"], shuffle=True, random_state=SEED, tol=0.0,
                n_iter_no_change=np.inf)


def time_fits(estimator_class, spec, X, y, info):
    """Seconds per step or per epoch (``spec["per"]``) of ``estimator_class(...).fit(X, y)``:
    ``warmup`` one-epoch fits on a slice, then ``reps`` timed fits of a fresh estimator."""
    import warnings

    params = sklearn_params(spec)
    if spec["per"] == "step":
        per_fit = spec["epochs"] * len(range(0, X.shape[0], spec["batch"]))
    else:
        per_fit = spec["epochs"]
    warm = min(X.shape[0], 10 * spec["batch"])
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the epochs are fixed on purpose
        for _ in range(spec["warmup"]):
            estimator_class(**{**params, "max_iter": 1}).fit(X[:warm], y[:warm])
        for _ in range(spec["reps"]):
            est = estimator_class(**params)
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append((time.perf_counter() - t0) / per_fit)
    info["fit_params"] = {k: (v if v != np.inf else "inf") for k, v in params.items()}
    info["n_iter"] = int(est.n_iter_)
    if est.n_iter_ != spec["epochs"]:
        raise AssertionError(f"the fit ran {est.n_iter_} epochs, not {spec['epochs']}")
    return times

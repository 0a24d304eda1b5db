"""One contender of ``pynn bench`` timing one case, inside its own fresh process.

``pynn.bench`` (the harness) starts ``python -c`` processes that load this file by path, without
importing the ``pynn`` package first: the torch, scikit-learn, NumPy-loop and floor contenders
never import pynn (``import pynn`` sets thread wait policies in ``os.environ``, which would
change how torch's OpenMP behaves), and the "pynn after torch" contender imports torch before
pynn. So this module imports only the standard library and NumPy at its top, and has no
relative imports: the cases and the helpers every contender shares are pynn/_bench_cases.py,
loaded by path beside it.

It also holds the contenders' code for the tests: the hand-written NumPy training loop
(:class:`NumpyLoopMLP`) and pynn's training step (:func:`pynn_train_step`).
"""
import importlib.util
import os
import sys
import time

import numpy as np

def _load_beside(name):
    """The module in ``name``.py beside this file, loaded by path as this file is (see above)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_pynn_bench_" + name.lstrip("_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The cases, their data, batches and timing loops (pynn/_bench_cases.py).
cases = _load_beside("_bench_cases")
CASES, QUICK, LR, SEED = cases.CASES, cases.QUICK, cases.LR, cases.SEED
case_spec, layer_dims, batch_bounds = cases.case_spec, cases.layer_dims, cases.batch_bounds
make_data, epoch_order, time_reps = cases.make_data, cases.epoch_order, cases.time_reps
time_epochs, run_case = cases.time_epochs, cases.run_case


# ------------------------------------------------------------------------------ pynn
def pynn_model(sizes, bn, dtype, seed=SEED):
    """Dense (He init) [-> BatchNorm] -> ReLU blocks, then a Dense to the outputs."""
    from pynn import nn

    layers = []
    dims = layer_dims(sizes)
    for i, (n_in, n_out) in enumerate(dims):
        last = i == len(dims) - 1
        layers.append(nn.Dense(n_in, n_out, init="xavier_normal" if last else "he_normal",
                               seed=seed + i, dtype=dtype))
        if not last:
            if bn:
                layers.append(nn.BatchNorm(n_out, dtype=dtype))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def pynn_train_step(model, loss, optimizer, eager=False):
    """pynn's training step, ``step(X, y) -> loss value``, and the name of the path it takes.

    Every pynn contender and case takes its step from here, so this is the one place to change
    when pynn's fastest public training path changes: ``model.train_step`` (the compiled step),
    or with ``eager`` the PyTorch-style loop of the README. The path taken is recorded in the
    results, so a table always says what it timed.
    """
    if not eager:
        return (lambda X, y: model.train_step(X, y, loss, optimizer)), "model.train_step"

    def step(X, y):
        optimizer.zero_grad()
        value = loss.forward(model.forward(X), y)
        model.backward(loss.backward(), input_grad=False)  # no dX for the data
        optimizer.step()
        return value

    return step, "eager (zero_grad, forward, loss, backward, step)"


def _pynn_contender(spec, X, y, dtype, threads, backend, info, fit=True, eager=False):
    import pynn
    from pynn import nn

    pynn.set_backend(backend)
    pynn.set_num_threads(threads)
    if spec["kind"] == "fit":
        from pynn.sklearn import MLPClassifier

        info.update(pynn_file=pynn.__file__, pynn_version=pynn.__version__,
                    pynn_threads=pynn.get_num_threads(), pynn_backend=pynn.get_backend().name,
                    epoch_via="pynn.sklearn.MLPClassifier.fit")
        return _time_fits(MLPClassifier, spec, X, y, info)
    model = pynn_model(spec["sizes"], spec["bn"], dtype)
    loss = nn.CrossEntropyLoss()
    opt = pynn.optim.Adam(model.parameters(), lr=LR)
    step, path = pynn_train_step(model, loss, opt, eager=eager)
    info.update(pynn_file=pynn.__file__, pynn_version=pynn.__version__,
                pynn_threads=pynn.get_num_threads(), pynn_backend=pynn.get_backend().name)
    if spec["kind"] == "step" or (spec["kind"] == "epoch" and not fit):
        info["step_path"] = path
    batch = spec["batch"]
    bounds = batch_bounds(X.shape[0], batch)
    warm = min(spec["warmup"], len(bounds)) * batch
    if spec["kind"] == "epoch" and fit:
        info["epoch_via"] = "Trainer.fit(epochs=1, verbose=0)"
        trainer = pynn.Trainer(model, loss, opt)

        def warm_epoch():
            trainer.fit(X[:warm], y[:warm], epochs=1, batch_size=batch, seed=0, verbose=0)

        def epoch(rep):
            trainer.fit(X, y, epochs=1, batch_size=batch, seed=rep, verbose=0)
    else:
        if spec["kind"] == "epoch":
            info["epoch_via"] = "hand-written loop over the same batches"

        def run(Xe, ye, order, b):
            model.train()
            for lo, hi in b:
                idx = order[lo:hi]
                step(Xe[idx], ye[idx])

        def warm_epoch():
            run(X, y, np.arange(warm), batch_bounds(warm, batch))

        def epoch(rep):
            run(X, y, epoch_order(rep, X.shape[0]), bounds)

    def predict(Xp):
        return model.predict(Xp, batch_size=batch)

    return run_case(spec, X, y, step, predict, epoch, warm_epoch)


# ------------------------------------------------------------- the hand-written NumPy loop
class NumpyLoopMLP:
    """The training loop a student writes in plain NumPy: forward, softmax cross-entropy,
    backward, Adam; BatchNorm when asked. Nothing preallocated, nothing fused.

    Same network and update rule as the pynn contender (Dense -> [BatchNorm ->] ReLU blocks,
    mean cross-entropy, Adam with lr 1e-3, betas (0.9, 0.999), eps 1e-8; BatchNorm with batch
    statistics, eps 1e-5, running statistics with momentum 0.1 and the unbiased variance), so
    from the same weights it follows the same loss trajectory (checked by the tests).

    ``params``: list per Dense layer of dicts with "W" (out, in), "b" and, for a hidden layer
    with BatchNorm, "gamma", "beta", "running_mean", "running_var".
    """

    def __init__(self, sizes, bn, dtype=np.float32, seed=SEED, params=None,
                 lr=LR, betas=(0.9, 0.999), eps=1e-8, bn_eps=1e-5, momentum=0.1):
        self.sizes, self.bn, self.dtype = tuple(sizes), bn, np.dtype(dtype)
        self.lr, self.beta1, self.beta2, self.eps = lr, betas[0], betas[1], eps
        self.bn_eps, self.momentum = bn_eps, momentum
        if params is None:
            rng = np.random.default_rng(seed)
            params = []
            dims = layer_dims(sizes)
            for i, (n_in, n_out) in enumerate(dims):
                std = np.sqrt(2.0 / n_in)  # He normal
                layer = {"W": (rng.standard_normal((n_out, n_in)) * std).astype(dtype),
                         "b": np.zeros(n_out, dtype)}
                if bn and i < len(dims) - 1:
                    layer.update(gamma=np.ones(n_out, dtype), beta=np.zeros(n_out, dtype),
                                 running_mean=np.zeros(n_out, dtype),
                                 running_var=np.ones(n_out, dtype))
                params.append(layer)
        self.params = params
        self.trainable = [(i, k) for i, layer in enumerate(params)
                          for k in ("W", "b", "gamma", "beta") if k in layer]
        self.m = [np.zeros_like(params[i][k]) for i, k in self.trainable]
        self.v = [np.zeros_like(params[i][k]) for i, k in self.trainable]
        self.t = 0

    @classmethod
    def from_pynn(cls, model, sizes, bn, **kwargs):
        """The same weights (and running statistics) as a :func:`pynn_model` network."""
        sd = model.state_dict()
        n_layers = len(sizes) - 1
        per_block = 3 if bn else 2
        params = []
        for i in range(n_layers):
            d = i * per_block
            layer = {"W": sd[f"{d}.weight"].copy(), "b": sd[f"{d}.bias"].copy()}
            if bn and i < n_layers - 1:
                layer.update(gamma=sd[f"{d + 1}.weight"].copy(), beta=sd[f"{d + 1}.bias"].copy(),
                             running_mean=sd[f"{d + 1}.running_mean"].copy(),
                             running_var=sd[f"{d + 1}.running_var"].copy())
            params.append(layer)
        return cls(sizes, bn, dtype=sd["0.weight"].dtype, params=params, **kwargs)

    def forward(self, X, train=True):
        """Logits, and what backward needs."""
        cache = []
        a = X
        for i, layer in enumerate(self.params):
            z = a @ layer["W"].T + layer["b"]
            if i == len(self.params) - 1:
                cache.append((a, None))
                return z, cache
            bn = None
            if "gamma" in layer:
                if train:
                    mean = z.mean(axis=0)
                    var = z.var(axis=0)
                    n = z.shape[0]
                    mom = self.momentum
                    layer["running_mean"] = (1 - mom) * layer["running_mean"] + mom * mean
                    layer["running_var"] = (1 - mom) * layer["running_var"] + \
                        mom * var * n / (n - 1)
                else:
                    mean, var = layer["running_mean"], layer["running_var"]
                invstd = 1.0 / np.sqrt(var + self.bn_eps)
                xhat = (z - mean) * invstd
                z = layer["gamma"] * xhat + layer["beta"]
                bn = (xhat, invstd)
            cache.append((a, (z, bn)))
            a = np.maximum(z, 0)

    def step(self, X, y):
        """One training step on the batch (X, y); returns the mean cross-entropy."""
        logits, cache = self.forward(X)
        n = X.shape[0]
        # softmax cross-entropy
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(n), y]))
        dz = p
        dz[np.arange(n), y] -= 1
        dz /= n
        # backward
        grads = {}
        for i in range(len(self.params) - 1, -1, -1):
            layer = self.params[i]
            a_prev, _ = cache[i]
            grads[i, "W"] = dz.T @ a_prev
            grads[i, "b"] = dz.sum(axis=0)
            if i == 0:
                break  # no gradient for the data
            da = dz @ layer["W"]
            z_prev, bn = cache[i - 1][1]
            dz = da * (z_prev > 0)  # ReLU
            if bn is not None:
                xhat, invstd = bn
                prev = self.params[i - 1]
                grads[i - 1, "gamma"] = (dz * xhat).sum(axis=0)
                grads[i - 1, "beta"] = dz.sum(axis=0)
                dxhat = dz * prev["gamma"]
                dz = invstd / n * (n * dxhat - dxhat.sum(axis=0)
                                   - xhat * (dxhat * xhat).sum(axis=0))
        # Adam
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        for j, (i, k) in enumerate(self.trainable):
            layer, g = self.params[i], grads[i, k]
            self.m[j] = b1 * self.m[j] + (1 - b1) * g
            self.v[j] = b2 * self.v[j] + (1 - b2) * g * g
            m_hat = self.m[j] / (1 - b1 ** self.t)
            v_hat = self.v[j] / (1 - b2 ** self.t)
            layer[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return float(loss)

    def predict(self, X, batch_size=1024):
        return np.concatenate([self.forward(X[i:i + batch_size], train=False)[0]
                               for i in range(0, X.shape[0], batch_size)], axis=0)


def _numpy_loop_contender(spec, X, y, dtype, threads, info):
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    net = NumpyLoopMLP(spec["sizes"], spec["bn"], dtype)
    batch = spec["batch"]
    warm = min(spec["warmup"], len(batch_bounds(X.shape[0], batch))) * batch

    def run(Xe, ye, order, bounds):
        for lo, hi in bounds:
            idx = order[lo:hi]
            net.step(Xe[idx], ye[idx])

    return run_case(
        spec, X, y, net.step, lambda Xp: net.predict(Xp, batch),
        lambda rep: run(X, y, epoch_order(rep, X.shape[0]), batch_bounds(X.shape[0], batch)),
        lambda: run(X, y, np.arange(warm), batch_bounds(warm, batch)))


# ------------------------------------------------------------------------------ torch
def torch_model(torch, sizes, bn, dtype):
    layers = []
    dims = layer_dims(sizes)
    for i, (n_in, n_out) in enumerate(dims):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(dims) - 1:
            if bn:
                layers.append(torch.nn.BatchNorm1d(n_out))
            layers.append(torch.nn.ReLU())
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
    return torch.nn.Sequential(*layers).to(tdtype[np.dtype(dtype)])


def torch_adam(torch, params, info):
    """Adam with ``fused=True`` where this torch supports it, else ``foreach=True``."""
    params = list(params)
    try:
        opt = torch.optim.Adam(params, lr=LR, fused=True)
        info["torch_adam"] = "fused"
    except (RuntimeError, ValueError, TypeError) as exc:
        opt = torch.optim.Adam(params, lr=LR, foreach=True)
        info["torch_adam"] = f"foreach (fused refused: {exc})"
    return opt


def _torch_contender(spec, X, y, dtype, threads, info):
    import torch

    torch.set_num_threads(threads)
    info.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                torch_config=torch.__config__.parallel_info())
    model = torch_model(torch, spec["sizes"], spec["bn"], dtype)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch_adam(torch, model.parameters(), info)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    batch = spec["batch"]

    def step(Xb, yb):
        opt.zero_grad()
        loss = loss_fn(model(Xb), yb)
        loss.backward()
        opt.step()
        return loss

    try:  # a fused step the build cannot run shows here, not in the middle of the timing
        step(Xt[:2], yt[:2])
    except RuntimeError as exc:
        if info["torch_adam"] != "fused":
            raise
        opt = torch.optim.Adam(model.parameters(), lr=LR, foreach=True)
        info["torch_adam"] = f"foreach (fused step failed: {exc})"

    def predict(Xp):
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(Xp[i:i + batch]) for i in range(0, Xp.shape[0], batch)])
        model.train()
        return out

    n = X.shape[0]
    warm = min(spec["warmup"], len(batch_bounds(n, batch))) * batch

    def run(order, bounds):
        order = torch.from_numpy(order)
        for lo, hi in bounds:
            idx = order[lo:hi]
            step(Xt[idx], yt[idx])

    return run_case(spec, Xt, yt, step, predict,
                     lambda rep: run(epoch_order(rep, n), batch_bounds(n, batch)),
                     lambda: run(np.arange(warm), batch_bounds(warm, batch)))


# ------------------------------------------------------------------------------ scikit-learn
def sklearn_params(spec):
    """The MLPClassifier settings of a "fit" case, the same for pynn.sklearn and scikit-learn:
    exactly ``epochs`` epochs (no tolerance stop), shuffled, Adam, scikit-learn's alpha."""
    return dict(hidden_layer_sizes=tuple(spec["sizes"][1:-1]), activation="relu",
                solver="adam", alpha=1e-4, batch_size=spec["batch"], learning_rate_init=LR,
                max_iter=spec["epochs"], shuffle=True, random_state=SEED, tol=0.0,
                n_iter_no_change=np.inf)


def _time_fits(estimator_class, spec, X, y, info):
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


def _sklearn_contender(spec, X, y, dtype, threads, info):
    from threadpoolctl import threadpool_limits

    import sklearn
    from sklearn.neural_network import MLPClassifier

    threadpool_limits(threads)
    info["sklearn_version"] = sklearn.__version__
    if spec["kind"] == "fit":
        info["epoch_via"] = "sklearn.neural_network.MLPClassifier.fit"
        return _time_fits(MLPClassifier, spec, X, y, info)
    info["note"] = "MLPClassifier has no BatchNorm: Dense-ReLU layers of the same widths"
    batch = spec["batch"]
    clf = MLPClassifier(hidden_layer_sizes=spec["sizes"][1:-1], activation="relu",
                        solver="adam", batch_size=batch, learning_rate_init=LR, shuffle=True,
                        random_state=SEED)
    classes = np.arange(spec["sizes"][-1])
    warm = min(spec["warmup"], len(batch_bounds(X.shape[0], batch))) * batch
    # partial_fit: one pass (epoch) over the data it is given, in shuffled mini-batches; the
    # warm-up pass over a few batches also initializes the weights
    clf.partial_fit(X[:warm], y[:warm], classes=classes)
    return time_epochs(lambda rep: clf.partial_fit(X, y), spec["reps"])


# ------------------------------------------------------------------------------ the floor
def _gemm_calls(spec, dtype, variant):
    """The case's bare matrix products with preallocated outputs, as a list of thunks per
    "call" (one training step, one predict call, one epoch).

    Training step, per Dense layer (X: the layer's input, W: (out, in)): forward X @ W.T,
    dW = dY.T @ X, and dX = dY @ W except for the first layer. Predict: the forward products
    per batch of rows. Epoch: a training step's products for every batch's size.
    variant "numpy": ``np.matmul(a, b, out=c)``; "scipy": ``scipy.linalg.blas`` ?gemm writing
    into c (the row-major product computed as the column-major transpose, no copies).
    """
    rng = np.random.default_rng(SEED)
    dims = layer_dims(spec["sizes"])
    W = [rng.standard_normal((o, i)).astype(dtype) for i, o in dims]

    if variant == "numpy":
        def mm(a, b, c, ta=False, tb=False):
            np.matmul(a.T if ta else a, b.T if tb else b, out=c)
    else:
        from scipy.linalg import blas

        gemm = blas.dgemm if np.dtype(dtype) == np.float64 else blas.sgemm

        def mm(a, b, c, ta=False, tb=False):
            # row-major c = op(a) @ op(b)  <=>  column-major c.T = op(b).T @ op(a).T
            gemm(1.0, b.T, a.T, c=c.T, overwrite_c=True, trans_a=tb, trans_b=ta)

    def step_products(rows):
        acts = [rng.random((rows, i)).astype(dtype) for i, _ in dims]
        outs = [np.empty((rows, o), dtype) for _, o in dims]
        dWs = [np.empty_like(w) for w in W]
        dXs = [np.empty((rows, i), dtype) for i, _ in dims]
        calls = []
        for k in range(len(dims)):
            calls.append((mm, acts[k], W[k], outs[k], False, True))       # Y = X @ W.T
        for k in range(len(dims) - 1, -1, -1):
            calls.append((mm, outs[k], acts[k], dWs[k], True, False))     # dW = dY.T @ X
            if k > 0:
                calls.append((mm, outs[k], W[k], dXs[k], False, False))   # dX = dY @ W
        return calls

    def forward_products(rows):
        acts = [rng.random((rows, i)).astype(dtype) for i, _ in dims]
        outs = [np.empty((rows, o), dtype) for _, o in dims]
        return [(mm, acts[k], W[k], outs[k], False, True) for k in range(len(dims))]

    kind = spec["kind"]
    if kind == "fit":
        kind = "step" if spec["per"] == "step" else "epoch"
    if kind == "step":
        calls = step_products(spec["batch"])
    else:
        bounds = batch_bounds(spec["n"], spec["batch"])
        make = forward_products if kind == "predict" else step_products
        by_rows = {}
        calls = []
        for lo, hi in bounds:
            if hi - lo not in by_rows:
                by_rows[hi - lo] = make(hi - lo)
            calls.extend(by_rows[hi - lo])
    _check_products(calls)
    return calls


def _check_products(calls):
    """Each distinct product once against numpy's ``@``: the floor computes the right thing
    and writes into its preallocated output (no hidden copy)."""
    seen = set()
    for mm, a, b, c, ta, tb in calls:
        if id(c) in seen:
            continue
        seen.add(id(c))
        c[...] = np.nan
        mm(a, b, c, ta, tb)
        expected = (a.T if ta else a) @ (b.T if tb else b)
        if not np.allclose(c, expected, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(expected).max())):
            raise AssertionError(f"floor product {a.shape}x{b.shape} (ta={ta}, tb={tb}) is wrong")


def _floor_contender(spec, dtype, threads, info):
    from threadpoolctl import threadpool_limits

    import scipy.linalg.blas  # noqa: F401  (loaded before the limit, so the limit reaches it)

    threadpool_limits(threads)
    variants = {}
    for variant in ("numpy", "scipy"):
        calls = _gemm_calls(spec, dtype, variant)

        def run(calls=calls):
            for mm, a, b, c, ta, tb in calls:
                mm(a, b, c, ta, tb)

        # an epoch's "warmup" counts batches; here one call is a whole epoch of products
        warmup = spec["warmup"] if spec["kind"] == "step" else 1
        if spec["kind"] == "fit" and spec["per"] == "step":
            warmup = spec["calls"]
        variants[variant] = time_reps(run, spec["calls"], warmup, spec["reps"])
    best = min(variants, key=lambda v: float(np.median(variants[v])))
    info["floor_variants"] = {v: t for v, t in variants.items()}
    info["floor_best"] = {"numpy": "np.matmul(a, b, out=c)",
                          "scipy": "scipy.linalg.blas gemm"}[best]
    info["floor_products"] = len(_gemm_calls(spec, dtype, "numpy"))
    return variants[best]


# ------------------------------------------------------------------------------ entry point
CONTENDERS = ("pynn", "pynn-eager", "pynn-loop", "pynn-numpy", "numpy-loop", "torch", "sklearn",
              "pynn-after-torch", "floor")


def run(job):
    """Time one (case, contender) in this process; returns the result dict."""
    spec, contender = job["spec"], job["contender"]
    dtype = np.dtype(job["dtype"])
    threads = job["threads"]
    info = {"pid": os.getpid(), "env_at_start": job.get("env_at_start", {})}
    started = time.perf_counter()
    try:
        if contender == "floor":
            times = _floor_contender(spec, dtype, threads, info)
        else:
            X, y = make_data(spec, dtype)
            if contender in ("pynn", "pynn-after-torch"):
                times = _pynn_contender(spec, X, y, dtype, threads, "cython", info)
            elif contender == "pynn-eager":
                times = _pynn_contender(spec, X, y, dtype, threads, "cython", info, eager=True)
            elif contender == "pynn-loop":
                times = _pynn_contender(spec, X, y, dtype, threads, "cython", info, fit=False)
            elif contender == "pynn-numpy":
                times = _pynn_contender(spec, X, y, dtype, threads, "numpy", info)
            elif contender == "numpy-loop":
                times = _numpy_loop_contender(spec, X, y, dtype, threads, info)
            elif contender == "torch":
                times = _torch_contender(spec, X, y, dtype, threads, info)
            elif contender == "sklearn":
                times = _sklearn_contender(spec, X, y, dtype, threads, info)
            else:
                raise ValueError(f"unknown contender {contender!r}")
    except ImportError as exc:
        optional = contender in ("torch", "pynn-after-torch", "sklearn") or (
            spec["kind"] == "fit" or spec.get("data") == "digits")  # pynn.sklearn, the digits
        if optional and exc.name in ("torch", "sklearn"):
            return {"status": "skipped", "reason": f"{exc.name} is not importable ({exc})"}
        raise
    info["seconds_in_process"] = time.perf_counter() - started
    info["torch_loaded"] = "torch" in sys.modules
    info["sklearn_loaded"] = "sklearn" in sys.modules
    info["pynn_loaded"] = "pynn" in sys.modules
    try:
        from threadpoolctl import threadpool_info

        info["threadpool_info"] = threadpool_info()
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of pynn
        pass
    return {"status": "ok", "times": [float(t) for t in times], "info": info}

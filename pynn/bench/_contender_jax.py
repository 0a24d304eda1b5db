"""The ``jax`` contender of ``pynn bench`` (optional, like torch): the same network as pynn's
(Dense -> [BatchNorm ->] ReLU blocks, then a Dense), its whole training step (forward, mean
softmax cross-entropy, gradients, optax's Adam) one ``jax.jit`` function, and its eval-mode
forward another (predict and latency cases). jax and optax are imported inside, so a missing
one is a skip."""
import os
from functools import partial

import numpy as np

# Loaded by path by pynn/bench/_worker.py, after it loaded _cases.py as _pynn_bench_cases
# (this file is not imported as part of the pynn package: see _worker.py).
from _pynn_bench_cases import LR, inference_weights, initial_weights, run_case

BN_EPS, MOMENTUM = 1e-5, 0.1  # torch's and pynn's BatchNorm defaults


def confine_threads(threads, info):
    """XLA has no thread-count setting: confine this process to ``threads`` CPUs (XLA's pools
    then run on those) and, for one thread, turn its multi-threaded Eigen off. Before jax is
    imported."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
        info["jax_cpus"] = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity control here (macOS, Windows)
        info["jax_cpus"] = None
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    info["xla_flags"] = os.environ.get("XLA_FLAGS")


def split_weights(weights):
    """``initial_weights``/``inference_weights`` layers as (parameters, BatchNorm state): per
    layer {"W", "b"[, "gamma", "beta"]} and {["running_mean", "running_var"]}."""
    params = [{k: v for k, v in w.items() if not k.startswith("running_")} for w in weights]
    state = [{k: v for k, v in w.items() if k.startswith("running_")} for w in weights]
    return params, state


def forward(params, state, X, train):
    """The logits and the BatchNorm state after this batch (training mode: batch statistics,
    the running ones moved by MOMENTUM towards the batch mean and unbiased variance)."""
    import jax
    import jax.numpy as jnp

    h, new_state = X, []
    for i, (p, s) in enumerate(zip(params, state)):
        z = h @ p["W"].T + p["b"]
        if i == len(params) - 1:
            return z, new_state + [s]
        if "gamma" in p:
            if train:
                mean, var = z.mean(axis=0), z.var(axis=0)
                n = z.shape[0]
                s = {"running_mean": (1 - MOMENTUM) * s["running_mean"] + MOMENTUM * mean,
                     "running_var": (1 - MOMENTUM) * s["running_var"]
                     + MOMENTUM * var * n / (n - 1)}
            else:
                mean, var = s["running_mean"], s["running_var"]
            z = (z - mean) * jax.lax.rsqrt(var + BN_EPS) * p["gamma"] + p["beta"]
        new_state.append(s)
        h = jnp.maximum(z, 0)


def jax_programs(weights):
    """(step(X, y) -> loss, predict(X) -> logits as NumPy, the current weights()) of a network
    starting from ``weights``: step is one jit-compiled training step with optax's Adam (lr
    LR, torch's betas and eps), its parameters and state donated to the next step."""
    import jax
    import optax

    params, state = split_weights(weights)
    optimizer = optax.adam(LR, b1=0.9, b2=0.999, eps=1e-8)

    def loss_fn(params, state, X, y):
        logits, new_state = forward(params, state, X, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

    @partial(jax.jit, donate_argnums=(0, 1, 2))  # the previous step's buffers are reused
    def train_step(params, state, opt_state, X, y):
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, X, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    infer = jax.jit(lambda params, state, X: forward(params, state, X, False)[0])
    current = {"params": jax.device_put(params), "state": jax.device_put(state)}
    current["opt_state"] = optimizer.init(current["params"])

    def step(X, y):
        p, s, o, loss = train_step(current["params"], current["state"], current["opt_state"],
                                   X, y)
        current.update(params=p, state=s, opt_state=o)
        return float(loss)  # waits for the step, as the other contenders' steps do

    def predict(X, batch=None):
        if batch is None or X.shape[0] <= batch:
            return np.asarray(infer(current["params"], current["state"], X))
        return np.concatenate([np.asarray(infer(current["params"], current["state"],
                                                X[i:i + batch]))
                               for i in range(0, X.shape[0], batch)])

    def weights_now():
        merged = []
        for p, s in zip(current["params"], current["state"]):
            merged.append({k: np.asarray(v) for k, v in {**p, **s}.items()})
        return merged

    return step, predict, weights_now


def time_jax(spec, X, y, dtype, threads, info):
    confine_threads(threads, info)
    import jax
    import optax

    if np.dtype(dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)
    info.update(jax_version=jax.__version__, optax_version=optax.__version__,
                jax_devices=[str(d) for d in jax.devices()])
    if spec["kind"] in ("predict", "latency"):
        weights = inference_weights(spec, dtype)
    else:
        weights = initial_weights(spec["sizes"], spec["bn"], dtype)
    step, predict, _ = jax_programs(weights)
    batch = spec["batch"]
    if spec["kind"] in ("predict", "latency"):  # the user's NumPy rows in, NumPy out
        return run_case(spec, X, y, None, lambda Xp: predict(Xp, batch), None, None)
    info["step_path"] = "jax.jit(value_and_grad + optax.adam)"
    # the batch on the device once, as torch's step gets its tensors
    return run_case(spec, jax.device_put(X), jax.device_put(y), step, None, None, None)

"""Threads (issue 11, item 3).

- N Python threads training N separate models at once give exactly the sequential results (the
  kernels release the GIL, so they really run concurrently in the Cython backend).
- 1 and 2 OpenMP threads give bit-identical results for every elementwise kernel, softmax (row
  by row), the loss gradients, dropout (values, masks, backward) and the optimizer kernels,
  including NaN/inf/denormal inputs.

Already covered elsewhere (not repeated here): the optimizer classes over all their variants,
1 vs 2 threads (test_optim.py::test_kernel_bit_identical_for_1_and_2_threads), and dropout
masks for 1, 2 and 3 threads (test_dropout.py::test_mask_independent_of_thread_count).
``predict`` from many threads on one model (even in training mode):
test_module.py::test_concurrent_predict_on_a_training_model_is_exact_and_mutates_nothing.
"""
import threading

import numpy as np
import pytest

import pynn
from pynn import _threads, nn
from pynn.backend import backend_for
from pynn.optim import SGD, Adam, RMSprop

N_MODELS = 4


def _train(seed, backend, steps=60):
    """Train one model on its own data; returns its parameters and BatchNorm buffers."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, 24)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    model = nn.Sequential(nn.Dense(24, 96, seed=seed), nn.BatchNorm(96), nn.ReLU(),
                          nn.Dropout(0.25, seed=seed), nn.Dense(96, 48, seed=seed + 1),
                          nn.Sigmoid(), nn.Dense(48, 4, seed=seed + 2), backend=backend)
    loss = nn.CrossEntropyLoss(backend=backend)
    opt = [Adam, SGD, RMSprop][seed % 3](model.parameters(), lr=1e-2)
    for step in range(steps):
        lo = (step * 64) % 256
        opt.zero_grad()
        loss.forward(model.forward(X[lo:lo + 64]), y[lo:lo + 64])
        model.backward(loss.backward())
        opt.step()
    out = [p.data.copy() for p in model.parameters()]
    out += [model[1].running_mean.copy(), model[1].running_var.copy(), model.predict(X)]
    return out


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_n_threads_training_n_models_equal_the_sequential_results(backend):
    expected = [_train(seed, backend) for seed in range(N_MODELS)]
    results = [None] * N_MODELS
    errors = []
    start = threading.Barrier(N_MODELS)

    def work(i):
        try:
            start.wait()
            results[i] = _train(i, backend)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_MODELS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a training thread hangs"
    assert not errors, errors
    for i in range(N_MODELS):
        for a, b in zip(results[i], expected[i]):
            np.testing.assert_array_equal(a, b, err_msg=f"model {i}")


# ---------------------------------------------------------------------------- 1 vs 2 threads
N = 50_001  # odd, so chunks split unevenly and the vector loops get scalar tails


def _data(dtype, seed, specials=True):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(N).astype(dtype) * 3
    if specials:
        tiny = np.finfo(dtype).smallest_subnormal
        idx = rng.choice(N, 64, replace=False)
        a[idx] = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, tiny, -tiny, 0.0] * 8, dtype)
    return a


def _same_bits(a, b, what):
    """Equal bit for bit, NaNs compared by position (their payloads may come from either
    operand)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if a.dtype.kind != "f":
        np.testing.assert_array_equal(a, b, err_msg=what)
        return
    an, bn = np.isnan(a), np.isnan(b)
    np.testing.assert_array_equal(an, bn, err_msg=f"{what}: NaN positions")
    ints = {4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    same = a.view(ints) == b.view(ints)
    assert (same | an).all(), f"{what}: {(~same & ~an).sum()} entries differ in their bits"


def _with_threads(n, monkeypatch, fn):
    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(n)
        return fn()
    finally:
        pynn.set_num_threads(before)


ACTIVATIONS = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "step", "square"]


def _elementwise_calls(dtype):
    fast = backend_for("cython")
    X, dY, Y = _data(dtype, 1), _data(dtype, 2), _data(dtype, 3)
    T = np.abs(_data(dtype, 4, specials=False)) % 1
    X2, dY2 = X[: 50_000].reshape(500, 100), dY[: 50_000].reshape(500, 100)
    labels = np.random.default_rng(5).integers(0, 100, 500)
    mask = (np.random.default_rng(6).random(N) < 0.7).astype(np.uint8)
    calls = {}
    for act in ACTIVATIONS:
        for param in ([None, 0.3] if act in ("leaky_relu", "elu") else [None]):
            calls[f"{act}({param}) forward"] = lambda a=act, p=param: fast.activation_forward(
                X, a, p)
            calls[f"{act}({param}) backward"] = lambda a=act, p=param: fast.activation_backward(
                dY, X, Y, a, p)
    calls["softmax forward"] = lambda: fast.softmax_forward(X2)
    calls["softmax backward"] = lambda: fast.softmax_backward(dY2, np.abs(X2) % 1)
    calls["mse grad"] = lambda: fast.mse_loss(X2, dY2)[1]
    calls["bce grad"] = lambda: fast.bce_with_logits_loss(X2, T[: 50_000].reshape(500, 100))[1]
    calls["cross-entropy grad"] = lambda: fast.softmax_cross_entropy_loss(X2, labels)[1]
    calls["dropout forward"] = lambda: fast.dropout_forward(X, 0.3, 11, 5)
    calls["dropout backward"] = lambda: fast.dropout_backward(dY, mask, 0.3)
    calls["batchnorm eval"] = lambda: fast.batchnorm_forward_eval(
        X2, np.abs(X2[0]), X2[1], X2[2], np.abs(X2[3]))
    return calls


def _optimizer_calls(dtype):
    fast = backend_for("cython")
    p0, g = _data(dtype, 7), _data(dtype, 8)
    s0 = np.abs(_data(dtype, 9))

    def run(kernel, n_states, **kw):
        def call():
            p = p0.copy()
            states = [s0.copy() for _ in range(n_states)]
            kernel(p, g, *states, **kw)
            return [p, *states]
        return call

    return {
        "sgd": run(fast.sgd_step, 0, lr=0.1),
        "sgd momentum nesterov l1": run(fast.sgd_step, 1, lr=0.1, momentum=0.9, nesterov=True,
                                        weight_decay=1e-2, l1=1e-3),
        "sgd momentum dampening": run(fast.sgd_step, 1, lr=0.1, momentum=0.9, dampening=0.5),
        "adagrad": run(fast.adagrad_step, 1, step=3, lr=0.1, lr_decay=0.01, l1=1e-3),
        "rmsprop centered momentum": run(fast.rmsprop_step, 3, lr=0.01, momentum=0.9,
                                         weight_decay=1e-2),
        "rmsprop": run(fast.rmsprop_step, 1, lr=0.01),
        "adam amsgrad": run(fast.adam_step, 3, step=4, lr=1e-3, l1=1e-3),
        "adamw": run(fast.adam_step, 2, step=4, lr=1e-3, weight_decay=0.1,
                     decoupled_weight_decay=True),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("family", ["elementwise", "optimizers"])
def test_one_and_two_openmp_threads_are_bit_identical(family, dtype, monkeypatch):
    # Below PARALLEL_MIN_ELEMENTS kernels run serially whatever the setting: lower it so two
    # threads really split the work.
    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 1)
    calls = _elementwise_calls(dtype) if family == "elementwise" else _optimizer_calls(dtype)
    with np.errstate(all="ignore"):
        for name, call in calls.items():
            assert _threads.threads_for(N) >= 1
            one = _with_threads(1, monkeypatch, call)
            two = _with_threads(2, monkeypatch, call)
            one = one if isinstance(one, (list, tuple)) else [one]
            two = two if isinstance(two, (list, tuple)) else [two]
            for k, (a, b) in enumerate(zip(one, two)):
                _same_bits(a, b, f"{name} [{k}]")

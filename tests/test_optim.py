"""Optimizers: fused kernels vs the NumPy reference, torch's formulas, groups, state dicts."""
import json

import numpy as np
import pytest

import pynn
from pynn import _threads
from pynn import nn
from pynn.backend import backend_for
from pynn.nn import Parameter
from pynn.optim import SGD, Adagrad, Adam, AdamW, RMSprop

from conftest import assert_close

# One parameter above the parallel threshold and the 4 KiB kernel chunk (many chunks, so two
# threads both work), plus odd small ones; two groups so two kernel calls per step.
SHAPES = [(131, 263), (13,), (7, 13), (1,)]

# Every optimizer and flag combination the kernels branch on.
CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, weight_decay=0.01)),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, l1=0.001)),
    (SGD, dict(lr=0.1, l1=0.01)),
    (Adagrad, dict(lr=0.1)),
    (Adagrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.1)),
    (Adagrad, dict(lr=0.1, l1=0.01)),
    (RMSprop, dict(lr=0.01)),
    (RMSprop, dict(lr=0.01, centered=True)),
    (RMSprop, dict(lr=0.01, momentum=0.9)),
    (RMSprop, dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01, l1=0.001)),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, weight_decay=0.01)),
    (Adam, dict(lr=0.01, amsgrad=True)),
    (Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01, l1=0.001)),
    (AdamW, dict(lr=0.01)),
    (AdamW, dict(lr=0.01, amsgrad=True, l1=0.001)),
]
CONFIG_IDS = [f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items())
              for cls, kw in CONFIGS]


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def _grads(step, dtype):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _run(cls, kwargs, dtype, backend, steps=10, params=None):
    params = params if params is not None else _params(dtype)
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": kwargs["lr"] * 0.5}]
    opt = cls(groups, backend=backend, **kwargs)
    for t in range(steps):
        for p, g in zip(params, _grads(t, dtype)):
            p.grad = g
        opt.step()
    return params, opt


def _snapshot(params, opt):
    out = [p.data.copy() for p in params]
    for p in params:
        for key, value in opt.state[p].items():
            out.append(np.asarray(value).copy())
    return out


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_kernel_matches_reference_after_10_steps(cls, kwargs, dtype, n_threads):
    ref_params, ref_opt = _run(cls, kwargs, dtype, "numpy")
    fast_params, fast_opt = _run(cls, kwargs, dtype, "cython")
    for p_ref, p_fast in zip(ref_params, fast_params):
        assert_close(p_fast.data, p_ref.data, dtype, k=10, err_msg="param")
        state_ref, state_fast = ref_opt.state[p_ref], fast_opt.state[p_fast]
        assert state_ref.keys() == state_fast.keys()
        assert state_ref.keys() - {"step"} == {
            k for k in cls.state_keys
            if k in _expected_keys(cls, kwargs)
        }
        for key in state_ref:
            assert_close(state_fast[key], state_ref[key], dtype, k=10, err_msg=key)


def _expected_keys(cls, kw):
    if cls is SGD:
        return {"momentum_buffer"} if kw.get("momentum", 0) else set()
    if cls is Adagrad:
        return {"sum"}
    if cls is RMSprop:
        return ({"square_avg"} | ({"momentum_buffer"} if kw.get("momentum", 0) else set())
                | ({"grad_avg"} if kw.get("centered") else set()))
    return {"exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if kw.get("amsgrad") else set())


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_kernel_bit_identical_for_1_and_2_threads(cls, kwargs, dtype, monkeypatch):
    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 1)
    before = pynn.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            pynn.set_num_threads(n)
            results.append(_snapshot(*_run(cls, kwargs, dtype, "cython")))
    finally:
        pynn.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- torch's formulas
# Written per element from torch/optim/{sgd,adam,rmsprop,adagrad}.py (single-tensor path), in
# float64 Python scalars, independent of both backends.
def _torch_sgd(p, gs, lr, momentum, dampening, wd, nesterov):
    buf = None
    for g in gs:
        d = g + wd * p
        if momentum:
            buf = d if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def _torch_adam(p, gs, lr, b1, b2, eps, wd, amsgrad, decoupled):
    m = v = vmax = 0.0
    for t, g in enumerate(gs, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = m + (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        denom = np.sqrt(vmax if amsgrad else v) / np.sqrt(1 - b2 ** t) + eps
        p = p - lr / (1 - b1 ** t) * m / denom
    return p


def _torch_rmsprop(p, gs, lr, alpha, eps, wd, momentum, centered):
    v = a = buf = 0.0
    for g in gs:
        g = g + wd * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            a = a + (1 - alpha) * (g - a)
            avg = np.sqrt(v - a * a) + eps
        else:
            avg = np.sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / avg
            p = p - lr * buf
        else:
            p = p - lr * g / avg
    return p


def _torch_adagrad(p, gs, lr, lr_decay, wd, init, eps):
    s = init
    for t, g in enumerate(gs, start=1):
        g = g + wd * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        p = p - clr * g / (np.sqrt(s) + eps)
    return p


TORCH_CASES = [
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01),
     lambda p, gs: _torch_sgd(p, gs, 0.1, 0.9, 0.2, 0.01, False)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True),
     lambda p, gs: _torch_sgd(p, gs, 0.1, 0.9, 0.0, 0.0, True)),
    (Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     lambda p, gs: _torch_adam(p, gs, 0.01, 0.8, 0.99, 1e-6, 0.1, False, False)),
    (Adam, dict(lr=0.01, amsgrad=True),
     lambda p, gs: _torch_adam(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.0, True, False)),
    (AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True),
     lambda p, gs: _torch_adam(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, True, True)),
    (RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01),
     lambda p, gs: _torch_rmsprop(p, gs, 0.01, 0.9, 1e-8, 0.01, 0.5, True)),
    (RMSprop, dict(lr=0.01),
     lambda p, gs: _torch_rmsprop(p, gs, 0.01, 0.99, 1e-8, 0.0, 0.0, False)),
    (Adagrad, dict(lr=0.1, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.5),
     lambda p, gs: _torch_adagrad(p, gs, 0.1, 0.1, 0.01, 0.5, 1e-10)),
]


@pytest.mark.parametrize("cls,kwargs,formula", TORCH_CASES,
                         ids=[c[0].__name__ for c in TORCH_CASES])
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_matches_torch_formulas_float64(cls, kwargs, formula, backend_name):
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(37)
    grads = [rng.standard_normal(37) for _ in range(4)]
    param = Parameter(p0.copy())
    opt = cls([param], backend=backend_name, **kwargs)
    for g in grads:
        param.grad = g
        opt.step()
    expected = np.array([formula(p0[i], [g[i] for g in grads]) for i in range(37)])
    np.testing.assert_allclose(param.data, expected, rtol=1e-12, atol=1e-14)


def test_l1_adds_sign_of_weight_to_gradient():
    p = Parameter(np.array([2.0, -3.0, 0.0]))
    opt = SGD([p], lr=0.5, l1=0.1)
    p.grad = np.array([1.0, 1.0, 1.0])
    opt.step()
    np.testing.assert_allclose(p.data, [2.0 - 0.5 * 1.1, -3.0 - 0.5 * 0.9, -0.5])


# ---------------------------------------------------------------------------- torch itself
@pytest.mark.parametrize("cls,kwargs", [c for c in CONFIGS if "l1" not in c[1]],
                         ids=[i for c, i in zip(CONFIGS, CONFIG_IDS) if "l1" not in c[1]])
def test_matches_torch_optim(cls, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((5, 7))
    grads = [rng.standard_normal((5, 7)) for _ in range(6)]
    param = Parameter(p0.copy())
    opt = cls([param], backend="cython", **kwargs)
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = getattr(torch.optim, cls.__name__)([tp], **kwargs)
    for g in grads:
        param.grad = g
        opt.step()
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(param.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    # torch's state dict carries over: same keys, same values
    tstate = topt.state_dict()["state"].get(0, {})
    ours = opt.state_dict()["state"].get(0, {})
    assert set(ours) == {k for k, v in tstate.items() if v is not None}
    for key, value in ours.items():
        np.testing.assert_allclose(value, np.asarray(tstate[key]), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- groups, packing
def test_param_groups_with_different_lr():
    rng = np.random.default_rng(0)
    w0, b0, g_w, g_b = (rng.standard_normal(n) for n in (50, 5, 50, 5))
    w, b = Parameter(w0.copy()), Parameter(b0.copy())
    opt = Adam([{"params": [w]}, {"params": [b], "lr": 0.1, "weight_decay": 0.0}],
               lr=0.01, weight_decay=0.1)
    w_alone, b_alone = Parameter(w0.copy()), Parameter(b0.copy())
    opt_w = Adam([w_alone], lr=0.01, weight_decay=0.1)
    opt_b = Adam([b_alone], lr=0.1)
    for _ in range(3):
        w.grad, b.grad, w_alone.grad, b_alone.grad = g_w, g_b, g_w, g_b
        opt.step()
        opt_w.step()
        opt_b.step()
    np.testing.assert_array_equal(w.data, w_alone.data)
    np.testing.assert_array_equal(b.data, b_alone.data)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == 0.1


def test_groups_are_contiguous_aligned_slices_of_one_arena():
    params = _params(np.float32)
    opt = Adam([{"params": [params[1], params[3]]}, {"params": [params[0], params[2]]}])
    (arena,) = opt._arenas.values()
    assert all(p.arena is arena for p in params)
    for segments in opt._segments:
        ((dtype, start, stop),) = segments
        assert (arena.data[start:stop].ctypes.data % 64) == 0
    # group order: group 0's parameters first
    assert arena.params == [params[1], params[3], params[0], params[2]]


def test_optimizer_reuses_a_sequential_arena_and_model_zero_grad_stays_one_memset():
    model = nn.Sequential(nn.Dense(6, 5, seed=0), nn.ReLU(), nn.Dense(5, 3, seed=1))
    (arena,) = model.arenas.values()
    opt = SGD(model.parameters(), lr=0.1)
    assert all(p.arena is arena for p in model.parameters())  # no re-pack for one group
    weights = [p for p in model.parameters() if p.data.ndim == 2]
    biases = [p for p in model.parameters() if p.data.ndim == 1]
    opt2 = SGD([{"params": weights, "weight_decay": 1e-2}, {"params": biases}], lr=0.1)
    model.zero_grad()  # adopts the optimizer's arena
    (new_arena,) = model.arenas.values()
    assert new_arena is opt2._arenas[np.dtype(np.float32)] and new_arena.owns_all()
    X = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    before = model.forward(X).copy()
    model.backward(np.ones((4, 3), np.float32))
    assert np.any(new_arena.grad != 0)
    opt2.step()
    assert not np.allclose(model.forward(X), before)  # layers see the updated values
    model.zero_grad()
    assert not np.any(new_arena.grad)
    # the first optimizer lost its arena: its next step re-packs and still updates the model
    w0 = weights[0].data.copy()
    weights[0].grad = np.ones_like(w0)
    opt.step()
    np.testing.assert_allclose(weights[0].data, w0 - 0.1, rtol=1e-6)


def test_repack_carries_state():
    params = _params(np.float64)
    opt = Adam(params[:2], lr=0.01)
    for p, g in zip(params, _grads(0, np.float64)):
        p.grad = g
    opt.step()
    before = {k: v.copy() for k, v in opt.state[params[0]].items() if k != "step"}
    opt.add_param_group({"params": params[2:], "lr": 0.1})
    after = opt.state[params[0]]
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)
    assert params[2] not in opt.state  # the new group has no state before its first step
    opt.step()
    assert opt.state[params[2]]["step"] == 1 and opt.state[params[0]]["step"] == 2


def test_zero_grad_clears_all_gradients():
    params = _params(np.float32)
    opt = RMSprop([{"params": params[:2]}, {"params": params[2:]}])
    for p, g in zip(params, _grads(0, np.float32)):
        p.grad = g
    opt.zero_grad()
    assert all(not np.any(p.grad) for p in params)


def test_mixed_dtypes_in_one_group():
    a = Parameter(np.ones(3, np.float32))
    b = Parameter(np.ones(4, np.float64))
    opt = SGD([a, b], lr=0.5)
    a.grad, b.grad = np.ones(3), np.ones(4)
    opt.step()
    np.testing.assert_array_equal(a.data, 0.5)
    np.testing.assert_array_equal(b.data, 0.5)
    assert a.dtype == np.float32 and b.dtype == np.float64


# ---------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_then_identical_continuation(cls, kwargs):
    dtype = np.float64
    params, opt = _run(cls, kwargs, dtype, "cython", steps=3)
    sd = opt.state_dict()
    # torch's layout, plain values: survives JSON (lists for arrays) without pickle
    assert sorted(sd) == ["param_groups", "state"]
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    text = json.dumps({
        "state": {str(i): {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                           for k, v in e.items()} for i, e in sd["state"].items()},
        "param_groups": sd["param_groups"],
    })
    restored = json.loads(text)
    clones = [Parameter(p.data.copy()) for p in params]
    opt2 = cls([{"params": clones[:2]}, {"params": clones[2:]}], lr=123.0, backend="cython")
    opt2.load_state_dict(restored)
    assert opt2.param_groups[1]["lr"] == kwargs["lr"] * 0.5  # hyper-parameters restored
    for t in range(3, 6):
        for p, q, g in zip(params, clones, _grads(t, dtype)):
            p.grad = g
            q.grad = g
        opt.step()
        opt2.step()
    for p, q in zip(params, clones):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_arrays_are_copies_and_state_is_live():
    p = Parameter(np.ones(5))
    opt = Adam([p])
    p.grad = np.ones(5)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][...] = 7
    assert not np.any(opt.state[p]["exp_avg"] == 7)
    opt.state[p]["exp_avg"][...] = 3  # a view into the flat buffer
    assert opt.state_dict()["state"][0]["exp_avg"][0] == 3


def test_load_state_dict_rejects_mismatches():
    params = _params(np.float64)
    opt = Adam(params)
    other = Adam(params[:2])
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(other.state_dict())
    two = Adam([{"params": params[:2]}, {"params": params[2:]}])
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(two.state_dict())
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    sd = opt.state_dict()
    sd["state"][1]["exp_avg"] = np.zeros(3)
    with pytest.raises(ValueError, match="exp_avg must have shape"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    del sd["state"][2]
    with pytest.raises(ValueError, match="only some"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        opt.load_state_dict(sd)


def test_adagrad_state_exists_before_the_first_step():
    p = Parameter(np.ones(3))
    opt = Adagrad([p], initial_accumulator_value=0.25)
    entry = opt.state_dict()["state"][0]
    assert entry["step"] == 0
    np.testing.assert_array_equal(entry["sum"], 0.25)


# ---------------------------------------------------------------------------- validation
def _p():
    return [Parameter(np.ones(3))]


BAD = [
    (SGD, dict(lr=-1.0), ValueError, r"^Invalid learning rate: -1.0$"),
    (SGD, dict(lr=-1), ValueError, r"^Invalid learning rate: -1.0$"),
    (SGD, dict(momentum=-0.5), ValueError, r"Invalid momentum value: -0.5"),
    (SGD, dict(weight_decay=-1e-3), ValueError, r"Invalid weight_decay value"),
    (SGD, dict(nesterov=True), ValueError, r"Nesterov momentum requires a momentum"),
    (SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError, r"zero dampening"),
    (SGD, dict(l1=-1.0), ValueError, r"Invalid l1 value: -1.0"),
    (SGD, dict(lr="0.1"), TypeError, r"lr must be a real number"),
    (SGD, dict(nesterov=1), TypeError, r"nesterov must be a bool"),
    (Adam, dict(lr=float("nan")), ValueError, r"Invalid learning rate: nan"),
    (Adam, dict(eps=-1.0), ValueError, r"Invalid epsilon value: -1.0"),
    (Adam, dict(betas=(1.0, 0.999)), ValueError, r"Invalid beta parameter at index 0: 1.0"),
    (Adam, dict(betas=(0.9, -0.1)), ValueError, r"Invalid beta parameter at index 1: -0.1"),
    (Adam, dict(betas=0.9), TypeError, r"betas must be a pair"),
    (Adam, dict(weight_decay=-1.0), ValueError, r"Invalid weight_decay value: -1.0"),
    (AdamW, dict(amsgrad="yes"), TypeError, r"amsgrad must be a bool"),
    (Adagrad, dict(lr_decay=-1.0), ValueError, r"Invalid lr_decay value: -1.0"),
    (Adagrad, dict(initial_accumulator_value=-1.0), ValueError,
     r"Invalid initial_accumulator_value value: -1.0"),
    (Adagrad, dict(eps=-1.0), ValueError, r"Invalid epsilon value"),
    (RMSprop, dict(alpha=-0.1), ValueError, r"Invalid alpha value: -0.1"),
    (RMSprop, dict(momentum=-0.1), ValueError, r"Invalid momentum value"),
    (RMSprop, dict(centered=None), TypeError, r"centered must be a bool"),
]


@pytest.mark.parametrize("cls,kwargs,exc,regex", BAD,
                         ids=[f"{c.__name__}-{list(k)[0]}" for c, k, _, _ in BAD])
def test_bad_hyper_parameters_raise_naming_them(cls, kwargs, exc, regex):
    with pytest.raises(exc, match=regex):
        cls(_p(), **kwargs)
    # the same check per group
    with pytest.raises(exc, match=regex):
        cls([{"params": _p(), **kwargs}])


def test_bad_params_raise():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([])
    with pytest.raises(TypeError, match="iterable of Parameters"):
        SGD(Parameter(np.ones(2)))
    with pytest.raises(TypeError, match="can only optimize pynn Parameters"):
        SGD([np.ones(3)])
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="backend must be one of"):
        SGD([p], backend="gpu")


def test_lr_changed_to_invalid_value_is_caught_at_step():
    p = Parameter(np.ones(2))
    opt = SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = -0.1
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.step()


@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_backend_step_validates_buffers(backend_name):
    be = backend_for(backend_name)
    p = np.ones(8, np.float32)
    g = np.ones(8, np.float32)
    m, v = np.zeros(8, np.float32), np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="grad has dtype float64"):
        be.adam_step(p, g.astype(np.float64), m, v, step=1, lr=0.1)
    with pytest.raises(ValueError, match="exp_avg must have shape"):
        be.adam_step(p, g, np.zeros(7, np.float32), v, step=1, lr=0.1)
    with pytest.raises(ValueError, match="param must be 1-D"):
        be.adam_step(p.reshape(2, 4), g, m, v, step=1, lr=0.1)
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        be.sgd_step(np.ones(16, np.float32)[::2], g, lr=0.1)
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="exp_avg_sq is read-only"):
        be.adam_step(p, g, m, ro, step=1, lr=0.1)
    with pytest.raises(ValueError, match="step must be >= 1"):
        be.adam_step(p, g, m, v, step=0, lr=0.1)
    with pytest.raises(ValueError, match="momentum_buffer must be an array"):
        be.sgd_step(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        be.rmsprop_step(p, g, m, lr=-1.0)
    with pytest.raises(TypeError, match="state_sum must be a numpy.ndarray"):
        be.adagrad_step(p, g, None, step=1, lr=0.1)
    # a strided gradient is copied, not read as contiguous
    g2 = np.arange(16, dtype=np.float32)[::2]
    be.sgd_step(p, g2, lr=1.0)
    np.testing.assert_array_equal(p, 1 - np.arange(0, 16, 2, dtype=np.float32))


@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_backend_step_rejects_overlapping_buffers_before_writing(backend_name):
    # The fused loops declare every buffer restrict: an overlap must be refused up front,
    # leaving param and state as they were (the full list of pairs is in test_backend's table).
    be = backend_for(backend_name)
    buf = np.arange(12, dtype=np.float64)
    p, m = buf[:8], buf[4:12]  # exp_avg over the second half of param
    g, v = np.ones(8), np.zeros(8)
    before = buf.copy()
    with pytest.raises(ValueError, match="exp_avg must not share memory with param"):
        be.adam_step(p, g, m, v, step=1, lr=0.1)
    with pytest.raises(ValueError, match="exp_avg_sq must not share memory with exp_avg"):
        be.adam_step(np.zeros(8), g, v, v, step=1, lr=0.1)
    with pytest.raises(ValueError, match="grad must not share memory with param"):
        be.sgd_step(p, p, lr=0.1)
    np.testing.assert_array_equal(buf, before)
    np.testing.assert_array_equal(v, 0.0)
    # distinct slices of one arena are fine: bounds that do not overlap
    arena = np.zeros(32)
    arena[8:16] = 1.0  # the gradient
    be.adam_step(arena[0:8], arena[8:16], arena[16:24], arena[24:32], step=1, lr=0.1)
    assert np.all(arena[0:8] != 0)


@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_empty_buffer_is_a_no_op(backend_name):
    be = backend_for(backend_name)
    e = np.empty(0, np.float64)
    be.adam_step(e, e, e.copy(), e.copy(), e.copy(), step=1, lr=0.1)
    be.sgd_step(e, e, e.copy(), lr=0.1, momentum=0.9, nesterov=True)
    be.rmsprop_step(e, e, e.copy(), e.copy(), e.copy(), lr=0.1, momentum=0.5)
    be.adagrad_step(e, e, e.copy(), step=1, lr=0.1)


def test_l1_with_a_nan_weight_gives_the_same_state_on_both_backends():
    # sign(NaN) is 0 in both (torch.sign's convention); the NaN still reaches the weight and,
    # through wd * p, the moments, identically.
    from pynn.backend import backend_for

    results = []
    for name in ("numpy", "cython"):
        p = np.array([np.nan, 2.0, -3.0, 0.0], np.float64)
        m, v = np.zeros(4), np.zeros(4)
        backend_for(name).adam_step(p, np.zeros(4), m, v, step=1, lr=0.1, l1=0.5)
        results.append((p, m, v))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(results[0][1][1:], [0.05, -0.05, 0.0], rtol=1e-12, atol=0)


def test_a_bad_edit_in_any_group_changes_no_parameter():
    """Every edited group is checked before any group is updated: a step that raises for the
    second group's value leaves the first group's parameters as they were."""
    p, q = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = SGD([{"params": [p]}, {"params": [q]}], lr=0.1)
    p.grad, q.grad = np.ones(3), np.ones(2)
    opt.step()
    opt.param_groups[0]["lr"] = 0.5
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        opt.step()
    np.testing.assert_array_equal(p.data, 0.9)
    np.testing.assert_array_equal(q.data, 0.9)


def test_values_edited_back_and_forth_are_each_used():
    """Configurations stepped with before are found again without a new check (the estimators
    flip the weight decay twice an epoch); each step still runs with the values set for it,
    and a new bad value is still caught."""
    p = Parameter(np.ones(4))
    opt = SGD([p], lr=0.1)
    expected = 1.0
    for lr in (0.1, 0.5, 0.1, 0.5, 0.25, 0.1):
        opt.param_groups[0]["lr"] = lr
        p.grad = np.ones(4)
        opt.step()
        expected -= lr
        np.testing.assert_allclose(p.data, expected, rtol=0, atol=1e-15)
    opt.param_groups[0]["lr"] = -0.5
    with pytest.raises(ValueError, match="Invalid learning rate: -0.5"):
        opt.step()
    np.testing.assert_allclose(p.data, expected, rtol=0, atol=1e-15)


def test_checks_are_cached_but_edits_between_steps_still_count():
    """After the first step the optimizer skips re-checking unchanged hyper-parameters and
    arrays; an edited value is checked (and used) at the next step."""
    p = Parameter(np.ones(5, np.float64))
    opt = SGD([p], lr=0.1)
    for _ in range(2):
        p.grad = np.ones(5)
        opt.step()
    np.testing.assert_allclose(p.data, 0.8)
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    np.testing.assert_allclose(p.data, 0.3)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        opt.step()
    opt.param_groups[0]["lr"] = 0.1
    p.requires_grad = False  # a layout change: fresh slices, checked again
    opt.step()
    np.testing.assert_allclose(p.data, 0.3)

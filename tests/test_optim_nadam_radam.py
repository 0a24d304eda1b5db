"""NAdam and RAdam: the fused kernels against the NumPy reference (bit-identical for 1 and 2
threads), torch's formulas and torch itself (float64 to round-off, float32 to the tolerance
table), torch's state_dict (its mu_product included) both ways, the compiled training step,
argument checks."""
import copy
import json

import numpy as np
import pytest

import pynn
from pynn import _threads, nn
from pynn.nn import Parameter
from pynn.optim import NAdam, RAdam

from conftest import assert_close
from test_optim import _grads, _params, _run, _snapshot

F32, F64 = np.float32, np.float64

CONFIGS = [
    (NAdam, dict(lr=0.01)),
    (NAdam, dict(lr=0.01, weight_decay=0.05, momentum_decay=0.02)),
    (NAdam, dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True, l1=0.001)),
    (RAdam, dict(lr=0.01)),  # rectified from step 6 on (rho_t > 5): 10 steps see both
    (RAdam, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.05, l1=0.001)),
    (RAdam, dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True)),
]
IDS = [f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for cls, kw in CONFIGS]


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=IDS)
def test_kernel_matches_reference_after_10_steps(cls, kwargs, dtype, n_threads):
    ref_params, ref_opt = _run(cls, kwargs, dtype, "numpy")
    fast_params, fast_opt = _run(cls, kwargs, dtype, "cython")
    for p_ref, p_fast in zip(ref_params, fast_params):
        assert_close(p_fast.data, p_ref.data, dtype, k=10, err_msg="param")
        state_ref, state_fast = ref_opt.state[p_ref], fast_opt.state[p_fast]
        expected = {"step", "exp_avg", "exp_avg_sq"} | set(cls.scalar_state)
        assert state_ref.keys() == state_fast.keys() == expected
        for key in state_ref:
            assert_close(state_fast[key], state_ref[key], dtype, k=10, err_msg=key)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=IDS)
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
# Per element from torch/optim/{nadam,radam}.py (single-tensor path), Python float64 scalars.
def _nadam(p, gs, lr, b1, b2, eps, wd, momentum_decay, decoupled):
    m = v = 0.0
    mu_product = 1.0
    for t, g in enumerate(gs, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product *= mu
        m = m + (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2 ** t)) + eps
        p = p - lr * (1 - mu) / (1 - mu_product) * g / denom
        p = p - lr * mu_next / (1 - mu_product * mu_next) * m / denom
    return p


def _radam(p, gs, lr, b1, b2, eps, wd, decoupled):
    m = v = 0.0
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(gs, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = m + (1 - b1) * (g - m)
        v = b2 * v + (1 - b2) * g * g
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > 5:
            rect = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                           / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p = p - m / (1 - b1 ** t) * lr * np.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps) * rect
        else:
            p = p - m / (1 - b1 ** t) * lr
    return p


FORMULAS = [
    (NAdam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, momentum_decay=0.01),
     lambda p, gs: _nadam(p, gs, 0.01, 0.8, 0.99, 1e-6, 0.1, 0.01, False)),
    (NAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
     lambda p, gs: _nadam(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, 4e-3, True)),
    (RAdam, dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
     lambda p, gs: _radam(p, gs, 0.01, 0.8, 0.9, 1e-6, 0.1, False)),
    (RAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
     lambda p, gs: _radam(p, gs, 0.01, 0.9, 0.999, 1e-8, 0.1, True)),
]


@pytest.mark.parametrize("cls,kwargs,formula", FORMULAS,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(FORMULAS)])
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_matches_torch_formulas_float64(cls, kwargs, formula, backend_name):
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(37)
    grads = [rng.standard_normal(37) for _ in range(9)]  # RAdam: both sides of rho_t > 5
    param = Parameter(p0.copy())
    opt = cls([param], backend=backend_name, **kwargs)
    for g in grads:
        param.grad = g
        opt.step()
    expected = np.array([formula(p0[i], [g[i] for g in grads]) for i in range(37)])
    np.testing.assert_allclose(param.data, expected, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- torch itself
@pytest.fixture
def torch64():
    """torch with float64 as its default dtype: NAdam's mu_product is then float64 too."""
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(before)


def _against_torch(torch, cls, kwargs, dtype, steps=12):
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((5, 7)).astype(dtype)
    grads = [rng.standard_normal((5, 7)).astype(dtype) for _ in range(steps)]
    param = Parameter(p0.copy())
    opt = cls([param], backend="cython", **kwargs)
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = getattr(torch.optim, cls.__name__)([tp], **kwargs)
    for g in grads:
        param.grad = g
        opt.step()
        tp.grad = torch.tensor(g)
        topt.step()
    return param, opt, tp, topt


@pytest.mark.parametrize("cls,kwargs", [c for c in CONFIGS if "l1" not in c[1]],
                         ids=[i for c, i in zip(CONFIGS, IDS) if "l1" not in c[1]])
def test_matches_torch_optim_float64(cls, kwargs, torch64):
    param, opt, tp, topt = _against_torch(torch64, cls, kwargs, F64)
    np.testing.assert_allclose(param.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    # torch's state dict: same keys, same values (NAdam's mu_product included)
    tstate = topt.state_dict()["state"][0]
    ours = opt.state_dict()["state"][0]
    assert set(ours) == set(tstate)
    for key, value in ours.items():
        np.testing.assert_allclose(value, np.asarray(tstate[key]), rtol=1e-12, atol=1e-14,
                                   err_msg=key)


@pytest.mark.parametrize("cls,kwargs", [c for c in CONFIGS if "l1" not in c[1]],
                         ids=[i for c, i in zip(CONFIGS, IDS) if "l1" not in c[1]])
def test_matches_torch_optim_with_its_float32_defaults(cls, kwargs, dtype):
    """With torch's default dtype float32 its NAdam keeps mu_product in float32: the
    trajectories then agree to float32's precision, also for float64 parameters."""
    torch = pytest.importorskip("torch")
    param, opt, tp, _ = _against_torch(torch, cls, kwargs, dtype)
    assert_close(param.data, tp.detach().numpy(), F32, k=12)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=IDS)
def test_state_dict_round_trip_then_identical_continuation(cls, kwargs):
    params, opt = _run(cls, kwargs, F64, "cython", steps=3)
    sd = opt.state_dict()
    text = json.dumps({
        "state": {str(i): {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                           for k, v in e.items()} for i, e in sd["state"].items()},
        "param_groups": sd["param_groups"],
    })
    clones = [Parameter(p.data.copy()) for p in params]
    opt2 = cls([{"params": clones[:2]}, {"params": clones[2:]}], lr=123.0, backend="cython")
    opt2.load_state_dict(json.loads(text))
    for t in range(3, 6):
        for p, q, g in zip(params, clones, _grads(t, F64)):
            p.grad = g
            q.grad = g
        opt.step()
        opt2.step()
    for p, q in zip(params, clones):
        np.testing.assert_array_equal(p.data, q.data)


def test_torchs_nadam_state_dict_loads_and_continues_like_torch(torch64):
    param, opt, tp, topt = _against_torch(torch64, NAdam, dict(lr=0.01), F64, steps=4)
    fresh = Parameter(tp.detach().numpy().copy())
    ours = NAdam([fresh], lr=0.5)
    ours.load_state_dict(topt.state_dict())
    assert ours.param_groups[0]["lr"] == 0.01
    assert ours.state[fresh]["mu_product"] == pytest.approx(
        float(topt.state_dict()["state"][0]["mu_product"]), rel=1e-15)
    g = np.random.default_rng(9).standard_normal((5, 7))
    fresh.grad = g
    ours.step()
    tp.grad = torch64.tensor(g)
    topt.step()
    np.testing.assert_allclose(fresh.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_mu_product_is_checked_on_load():
    p = Parameter(np.ones(3))
    opt = NAdam([p])
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    del sd["state"][0]["mu_product"]
    with pytest.raises(ValueError, match="needs one finite 'mu_product'"):
        NAdam([Parameter(np.ones(3))]).load_state_dict(sd)
    sd = opt.state_dict()
    sd["state"][0]["mu_product"] = float("nan")
    with pytest.raises(ValueError, match="mu_product"):
        NAdam([Parameter(np.ones(3))]).load_state_dict(sd)


# ---------------------------------------------------------------------------- in training
@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
@pytest.mark.parametrize("cls", [NAdam, RAdam])
def test_compiled_step_is_the_eager_step_bit_for_bit(cls, dtype, n_threads):
    pynn.set_num_threads(n_threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 12)).astype(dtype)
    y = rng.integers(0, 5, 40)
    a = nn.Sequential(nn.Dense(12, 16, seed=1, dtype=dtype), nn.BatchNorm(16, dtype=dtype),
                      nn.ReLU(), nn.Dense(16, 5, seed=2, dtype=dtype))
    b = copy.deepcopy(a)
    oa = cls(a.parameters(), lr=0.01, weight_decay=0.01)
    ob = cls(b.parameters(), lr=0.01, weight_decay=0.01)
    la, lb = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    for _ in range(8):
        assert a.train_step(X, y, la, oa) == nn.Module.train_step(b, X, y, lb, ob)
    assert a.compiled_step(X, la, oa) is not None  # its loop runs right after the program
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    assert oa.state_dict()["state"][0]["step"] == 8


@pytest.mark.parametrize("cls,kwargs,exc,regex", [
    (NAdam, dict(momentum_decay=-1.0), ValueError, r"Invalid momentum_decay value: -1.0"),
    (NAdam, dict(lr=-0.1), ValueError, r"Invalid learning rate: -0.1"),
    (NAdam, dict(betas=(0.9, 1.0)), ValueError, r"Invalid beta parameter at index 1"),
    (NAdam, dict(decoupled_weight_decay=1), TypeError, r"decoupled_weight_decay must be a bool"),
    (RAdam, dict(eps=-1e-8), ValueError, r"Invalid epsilon value"),
    (RAdam, dict(weight_decay="0"), TypeError, r"weight_decay must be a real number"),
    (RAdam, dict(betas=[0.9]), TypeError, r"betas must be a pair"),
])
def test_bad_hyper_parameters_raise_naming_them(cls, kwargs, exc, regex):
    with pytest.raises(exc, match=regex):
        cls([Parameter(np.ones(3))], **kwargs)


def test_torchs_defaults():
    p = [Parameter(np.ones(2))]
    n, r = NAdam(p).param_groups[0], RAdam(p).param_groups[0]
    assert (n["lr"], n["betas"], n["eps"], n["weight_decay"], n["momentum_decay"],
            n["decoupled_weight_decay"]) == (2e-3, (0.9, 0.999), 1e-8, 0.0, 4e-3, False)
    assert (r["lr"], r["betas"], r["eps"], r["weight_decay"], r["decoupled_weight_decay"]) == \
        (1e-3, (0.9, 0.999), 1e-8, 0.0, False)

"""pynn.nn.utils.clip_grad_norm_ / clip_grad_value_ against torch, and fit's clipping options."""
import math

import numpy as np
import pytest

from pynn.nn import CrossEntropyLoss, Dense, ReLU, Sequential
from pynn.nn.utils import clip_grad_norm_, clip_grad_value_
from pynn.optim import SGD
from pynn.train import Trainer


def model_with_grads(dtype=np.float64, seed=0, scale=1.0):
    model = Sequential(Dense(5, 7, seed=seed, dtype=dtype), ReLU(),
                       Dense(7, 3, seed=seed + 1, dtype=dtype))
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.grad = scale * rng.standard_normal(p.shape)
    return model


def torch_grads(params):
    torch = pytest.importorskip("torch")
    out = []
    for p in params:
        t = torch.zeros(p.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.from_numpy(p.grad.astype(np.float64).copy())
        out.append(t)
    return torch, out


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
@pytest.mark.parametrize("subset", [False, True])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, subset):
    model = model_with_grads()
    params = list(model.parameters())
    if subset:  # not a whole arena: the per-parameter path
        params = params[1:3]
    torch, tparams = torch_grads(params)
    expected = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    got = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(got, float)
    assert got == pytest.approx(float(expected), rel=1e-12)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_clip_grad_norm_float32_and_untouched_others():
    model = model_with_grads(np.float32, scale=10.0)
    params = list(model.parameters())
    before = [p.grad.copy() for p in params]
    total = clip_grad_norm_(params[:2], 1.0)
    expected = math.sqrt(sum(float(np.sum(b.astype(np.float64) ** 2)) for b in before[:2]))
    assert total == pytest.approx(expected, rel=1e-5)
    clipped = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params[:2]))
    assert clipped == pytest.approx(1.0, rel=1e-5)
    for p, b in zip(params[2:], before[2:]):
        np.testing.assert_array_equal(p.grad, b)


def test_frozen_parameters_are_left_out():
    model = model_with_grads()
    params = list(model.parameters())
    params[0].requires_grad = False
    frozen = params[0].grad.copy()
    torch, tparams = torch_grads(params[1:])
    expected = torch.nn.utils.clip_grad_norm_(tparams, 0.1)
    assert clip_grad_norm_(model.parameters(), 0.1) == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_array_equal(params[0].grad, frozen)
    for p, t in zip(params[1:], tparams):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_nonfinite_norm():
    model = model_with_grads()
    p = next(model.parameters())
    p.grad[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_(model.parameters(), 1.0) == math.inf


@pytest.mark.parametrize("subset", [False, True])
def test_clip_grad_value_matches_torch(subset):
    model = model_with_grads()
    params = list(model.parameters())[: 2 if subset else None]
    torch, tparams = torch_grads(params)
    assert torch.nn.utils.clip_grad_value_(tparams, 0.3) is None
    assert clip_grad_value_(params, 0.3) is None
    for p, t in zip(params, tparams):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("call,exc,match", [
    (lambda ps: clip_grad_norm_(ps, -1.0), ValueError, "max_norm must be >= 0"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=0), ValueError, "norm_type must be"),
    (lambda ps: clip_grad_norm_([np.zeros(3)], 1.0), TypeError, "parameters must hold"),
    (lambda ps: clip_grad_norm_(3, 1.0), TypeError, "parameters must be a Parameter"),
    (lambda ps: clip_grad_value_(ps, "a"), TypeError, "clip_value must be a real number"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call(model_with_grads().parameters())


class NormRecorder(SGD):
    """SGD that records the gradient norm it is handed."""

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.norms, self.max_abs = [], []

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"]]
        self.norms.append(math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads)))
        self.max_abs.append(max(float(np.max(np.abs(g))) for g in grads))
        return super().step(closure)


def test_fit_clips_before_each_step():
    rng = np.random.default_rng(0)
    X, y = 10 * rng.standard_normal((64, 5)), rng.integers(0, 3, 64)
    norms = {}
    # the reference clips at a norm never reached: the same eager loop, gradients untouched
    for kw in ({"clip_grad_norm": 1e9}, {"clip_grad_norm": 0.05}, {"clip_grad_value": 0.01}):
        model = Sequential(Dense(5, 7, seed=0, dtype=np.float64), ReLU(),
                           Dense(7, 3, seed=1, dtype=np.float64))
        opt = NormRecorder(model.parameters(), lr=0.01)
        Trainer(model, CrossEntropyLoss(), opt).fit(X, y, epochs=2, batch_size=16, seed=0,
                                                    verbose=0, **kw)
        norms[tuple(kw.items())] = opt
    reference = norms[(("clip_grad_norm", 1e9),)]
    assert max(reference.norms) > 0.05 and max(reference.max_abs) > 0.01  # clips have work
    assert max(norms[(("clip_grad_norm", 0.05),)].norms) <= 0.05 * (1 + 1e-9)
    assert max(norms[(("clip_grad_value", 0.01),)].max_abs) <= 0.01


def test_fit_rejects_bad_clip_values():
    model = Sequential(Dense(5, 3, dtype=np.float64))
    t = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="clip_grad_norm must be > 0"):
        t.fit(np.zeros((4, 5)), np.zeros(4, int), clip_grad_norm=0.0, verbose=0)

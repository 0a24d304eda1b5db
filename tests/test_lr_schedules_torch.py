"""MultiStepLR, CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR: step by step against
torch (skipped without it), state dicts that resume exactly, and Trainer's per-batch stepping."""
import json

import numpy as np
import pytest

import pynn
from pynn import optim
from pynn.nn import CrossEntropyLoss, Dense, Parameter, ReLU, Sequential


def _pynn_opt(kind, lrs):
    groups = [{"params": [Parameter(np.ones(2))], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return optim.SGD(groups, lr=lrs[0], momentum=0.9)
    return optim.Adam(groups, lr=lrs[0])


def _torch_opt(torch, kind, lrs):
    groups = [{"params": [torch.nn.Parameter(torch.ones(2))], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    return torch.optim.Adam(groups, lr=lrs[0])


# (name, builder(module, optimizer), steps, optimizer kind)
CASES = [
    ("multistep", lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.5), 14, "sgd"),
    ("cosine", lambda m, o: m.CosineAnnealingLR(o, T_max=6, eta_min=0.001), 20, "sgd"),
    ("cosine-t1", lambda m, o: m.CosineAnnealingLR(o, T_max=1), 5, "sgd"),
    ("linear", lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=4), 9,
     "sgd"),
    ("linear-down", lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.25,
                                            total_iters=3), 6, "adam"),
    ("onecycle-sgd", lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=23), 23, "sgd"),
    ("onecycle-adam-linear", lambda m, o: m.OneCycleLR(
        o, max_lr=0.01, epochs=3, steps_per_epoch=7, pct_start=0.25, anneal_strategy="linear",
        div_factor=10.0, final_div_factor=100.0), 21, "adam"),
    ("onecycle-three-phase", lambda m, o: m.OneCycleLR(
        o, max_lr=0.3, total_steps=30, three_phase=True, cycle_momentum=False), 30, "sgd"),
    ("sequential-warmup-cosine", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=3),
            m.CosineAnnealingLR(o, T_max=8, eta_min=0.01)], milestones=[3]), 15, "sgd"),
    ("sequential-three", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.5, total_iters=2), m.ExponentialLR(o, gamma=0.8),
            m.StepLR(o, step_size=2, gamma=0.5)], milestones=[2, 6]), 12, "adam"),
    ("sequential-multistep", lambda m, o: m.SequentialLR(
        o, [m.ExponentialLR(o, gamma=0.9), m.MultiStepLR(o, milestones=[1, 3])],
        milestones=[4]), 10, "sgd"),
]


def _state(opt, kind):
    out = []
    for g in opt.param_groups:
        out.append(g["lr"])
        out.append(g["momentum"] if kind == "sgd" else g["betas"][0])
    return out


@pytest.mark.parametrize("name,build,steps,kind", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_step_by_step(name, build, steps, kind):
    torch = pytest.importorskip("torch")
    lrs = [0.1, 0.04]
    opt, topt = _pynn_opt(kind, lrs), _torch_opt(torch, kind, lrs)
    sched, tsched = build(optim, opt), build(torch.optim.lr_scheduler, topt)
    got, expected = [_state(opt, kind)], [_state(topt, kind)]
    for _ in range(steps - 1):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        got.append(_state(opt, kind))
        expected.append(_state(topt, kind))
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,build,steps,kind", CASES, ids=[c[0] for c in CASES])
def test_state_dict_resumes_exactly(name, build, steps, kind):
    opt = _pynn_opt(kind, [0.1, 0.04])
    sched = build(optim, opt)
    half = steps // 2
    for _ in range(half):
        sched.step()
    saved_sched = json.loads(json.dumps(sched.state_dict()))  # plain values (checkpoints)
    saved_groups = [dict(g, params=None) for g in opt.param_groups]
    rest = []
    for _ in range(steps - 1 - half):
        sched.step()
        rest.append(_state(opt, kind))
    opt2 = _pynn_opt(kind, [0.1, 0.04])
    sched2 = build(optim, opt2)
    for g, saved in zip(opt2.param_groups, saved_groups):
        g.update({k: v for k, v in saved.items() if k != "params"})
    sched2.load_state_dict(saved_sched)
    resumed = []
    for _ in range(steps - 1 - half):
        sched2.step()
        resumed.append(_state(opt2, kind))
    assert resumed == rest


def test_onecycle_refuses_steps_past_the_end():
    opt = _pynn_opt("sgd", [0.1])
    sched = optim.OneCycleLR(opt, max_lr=1.0, total_steps=3)
    for _ in range(3):  # torch allows total_steps steps after the construction step
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()


@pytest.mark.parametrize("make,exc,match", [
    (lambda o: optim.MultiStepLR(o, milestones=[2, -1]), ValueError, "milestones"),
    (lambda o: optim.MultiStepLR(o, milestones=3), TypeError, "milestones must be an iterable"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: optim.LinearLR(o, start_factor=0.0), ValueError, r"start_factor must be in \(0"),
    (lambda o: optim.LinearLR(o, end_factor=1.5), ValueError, r"end_factor must be in \[0"),
    (lambda o: optim.OneCycleLR(o, max_lr=1.0), ValueError, "either total_steps"),
    (lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=0), ValueError, "total_steps"),
    (lambda o: optim.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=5), ValueError,
     "max_lr must have the same length"),
    (lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=5, anneal_strategy="exp"),
     ValueError, "anneal_strategy"),
    (lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=5, pct_start=1.5), ValueError,
     "pct_start"),
    (lambda o: optim.SequentialLR(o, [optim.StepLR(o, 2)], milestones=[1]), ValueError,
     "one more than the number of milestone"),
    (lambda o: optim.SequentialLR(o, [optim.ReduceLROnPlateau(o)], milestones=[]), ValueError,
     "ReduceLROnPlateau"),
    (lambda o: optim.SequentialLR(o, [optim.StepLR(_pynn_opt("sgd", [0.1]), 2)],
                                  milestones=[]), ValueError, "same optimizer"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_pynn_opt("sgd", [0.1]))


def test_onecycle_needs_momentum():
    opt = optim.Adagrad([Parameter(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="momentum or beta1"):
        optim.OneCycleLR(opt, max_lr=1.0, total_steps=5)
    optim.OneCycleLR(opt, max_lr=1.0, total_steps=5, cycle_momentum=False)


# ----------------------------------------------------------------------------- in Trainer.fit


class LRRecorder(pynn.train.Callback):
    """The rate each optimizer step used: read after the step, before a per-batch schedule
    (order 0) moves it."""

    order = -1

    def __init__(self, opt):
        self.opt = opt
        self.used = []

    def on_batch_end(self, epoch, batch, logs=None):
        self.used.append(self.opt.param_groups[0]["lr"])


def _fit(scheduler_for, epochs=3, n=64, batch_size=16, callbacks=(), **kw):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, 4)), rng.integers(0, 3, n)
    model = Sequential(Dense(4, 8, seed=0, dtype=np.float64), ReLU(),
                       Dense(8, 3, seed=1, dtype=np.float64))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = scheduler_for(opt)
    recorder = LRRecorder(opt)
    trainer = pynn.Trainer(model, CrossEntropyLoss(), opt)
    history = trainer.fit(X, y, epochs=epochs, batch_size=batch_size, seed=0, verbose=0,
                          scheduler=sched, callbacks=[recorder, *callbacks], **kw)
    return recorder, sched, history, trainer


def test_fit_steps_onecycle_per_batch():
    opt, sched, history, _ = _fit(lambda o: optim.OneCycleLR(o, max_lr=1.0, epochs=3,
                                                             steps_per_epoch=4))
    reference = _pynn_opt("sgd", [0.1])
    ref_sched = optim.OneCycleLR(reference, max_lr=1.0, total_steps=12)
    expected = []
    for i in range(12):
        expected.append(reference.param_groups[0]["lr"])
        if i < 11:
            ref_sched.step()
    np.testing.assert_allclose(opt.used, expected, rtol=1e-15)
    # the history records each epoch's first batch's rate
    np.testing.assert_allclose(history.history["lr"], expected[::4], rtol=1e-15)


def test_fit_steps_other_schedules_per_epoch_unless_told():
    opt, *_ = _fit(lambda o: optim.StepLR(o, step_size=1, gamma=0.5))
    assert opt.used == [0.1] * 4 + [0.05] * 4 + [0.025] * 4
    opt, *_ = _fit(lambda o: optim.LinearLR(o, start_factor=0.25, total_iters=3),
                   scheduler_interval="batch", epochs=1)
    np.testing.assert_allclose(opt.used, [0.025, 0.05, 0.075, 0.1], rtol=1e-14)


def test_fit_per_batch_schedule_resumes_exactly(tmp_path):
    def sched(o):
        return optim.OneCycleLR(o, max_lr=1.0, epochs=4, steps_per_epoch=4)
    full, _, h_full, _ = _fit(sched, epochs=4)
    path = tmp_path / "ckpt.npz"
    cut, _, _, t = _fit(sched, epochs=2, callbacks=[pynn.train.ModelCheckpoint(path)])
    opt = optim.SGD(t.model.parameters(), lr=0.1, momentum=0.9)
    recorder = LRRecorder(opt)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    resumed = pynn.Trainer(t.model, CrossEntropyLoss(), opt)
    h = resumed.fit(X, y, epochs=4, batch_size=16, seed=0, verbose=0, scheduler=sched(opt),
                    resume_from=path, callbacks=[recorder])
    assert cut.used + recorder.used == full.used
    np.testing.assert_allclose(h.history["loss"], h_full.history["loss"], rtol=1e-12)


def test_fit_refuses_plateau_per_batch():
    with pytest.raises(ValueError, match="ReduceLROnPlateau .* per epoch"):
        _fit(lambda o: optim.ReduceLROnPlateau(o), scheduler_interval="batch")

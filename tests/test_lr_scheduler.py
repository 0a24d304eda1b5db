"""Learning-rate schedules against hand-computed sequences (torch's semantics)."""
import json

import numpy as np
import pytest

from pynn.nn import Parameter
from pynn.optim import SGD, ExponentialLR, ReduceLROnPlateau, StepLR


def _opt(lr=1.0, groups=1):
    return SGD([{"params": [Parameter(np.ones(2))], "lr": lr * (i + 1)} for i in range(groups)],
               lr=lr)


def _run(sched, opt, epochs):
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_step_lr_sequence():
    opt = _opt(0.1)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    assert sched.get_last_lr() == [0.1]
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]
    np.testing.assert_allclose(_run(sched, opt, 8), expected, rtol=1e-15)
    assert sched.last_epoch == 8 and sched.get_last_lr() == [opt.param_groups[0]["lr"]]


def test_exponential_lr_sequence_is_lr0_gamma_to_the_t():
    opt = _opt(0.2, groups=2)
    sched = ExponentialLR(opt, gamma=0.9)
    got = _run(sched, opt, 6)
    np.testing.assert_allclose(got, [0.2 * 0.9 ** t for t in range(6)], rtol=1e-14)
    np.testing.assert_allclose(sched.get_last_lr(), [0.2 * 0.9 ** 6, 0.4 * 0.9 ** 6],
                               rtol=1e-14)
    assert opt.param_groups[1]["initial_lr"] == 0.4


def test_scheduler_state_dict_round_trip():
    opt = _opt(0.1)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    _run(sched, opt, 3)
    sd = json.loads(json.dumps(sched.state_dict()))  # plain values only
    opt2 = _opt(0.1)
    sched2 = StepLR(opt2, step_size=5, gamma=0.5)
    sched2.load_state_dict(sd)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    assert sched2.step_size == 2 and sched2.last_epoch == sched.last_epoch
    assert _run(sched2, opt2, 4) == _run(sched, opt, 4)
    with pytest.raises(ValueError, match="unknown keys"):
        sched2.load_state_dict({"bogus": 1})


def test_schedule_validation():
    with pytest.raises(ValueError, match="step_size"):
        StepLR(_opt(), step_size=0)
    with pytest.raises(TypeError, match="step_size must be an int"):
        StepLR(_opt(), step_size=2.5)
    with pytest.raises(ValueError, match="gamma"):
        ExponentialLR(_opt(), gamma=-1.0)
    with pytest.raises(TypeError, match="optimizer must be a pynn Optimizer"):
        StepLR(object(), step_size=1)
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(_opt(), step_size=1, last_epoch=3)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        ReduceLROnPlateau(_opt(), factor=1.0)
    with pytest.raises(ValueError, match="mode 'up' is unknown"):
        ReduceLROnPlateau(_opt(), mode="up")
    with pytest.raises(ValueError, match="threshold mode 'x' is unknown"):
        ReduceLROnPlateau(_opt(), threshold_mode="x")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 1"):
        ReduceLROnPlateau(_opt(groups=2), min_lr=[0.1])
    with pytest.raises(ValueError, match="patience"):
        ReduceLROnPlateau(_opt(), patience=-1)


def _plateau(sched, opt, metrics):
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_plateau_patience():
    opt = _opt(1.0)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=2)
    # best=10 at epoch 1; epochs 2, 3 are bad (2 <= patience); epoch 4 is the 3rd bad: reduce
    got = _plateau(sched, opt, [10, 10, 10, 10, 9, 9, 9, 9])
    assert got == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert sched.get_last_lr() == [0.25]


def test_plateau_threshold_rel_and_abs():
    opt = _opt(1.0)
    sched = ReduceLROnPlateau(opt, factor=0.1, patience=0, threshold=0.1)
    # rel: better only when < best * 0.9
    assert _plateau(sched, opt, [10, 9.5, 8.9]) == [1, 0.1, 0.1]
    opt = _opt(1.0)
    sched = ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=0, threshold=0.5,
                              threshold_mode="abs")
    # abs, max: better only when > best + 0.5
    got = _plateau(sched, opt, [1.0, 1.4, 2.0])
    np.testing.assert_allclose(got, [1, 0.1, 0.1])


def test_plateau_cooldown_and_min_lr():
    opt = _opt(1.0, groups=2)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=0, cooldown=2, min_lr=[0.3, 0.0])
    got = []
    for m in [5, 5, 5, 5, 5, 5, 5, 5]:
        sched.step(m)
        got.append([g["lr"] for g in opt.param_groups])
    # reduce at epoch 2, two cooldown epochs, reduce at 5, cooldown, reduce at 8;
    # group 0 stops at its min_lr 0.3
    assert got == [[1, 2], [0.5, 1], [0.5, 1], [0.5, 1], [0.3, 0.5], [0.3, 0.5], [0.3, 0.5],
                   [0.3, 0.25]]


def test_plateau_state_dict_round_trip():
    opt = _opt(1.0)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1)
    _plateau(sched, opt, [3, 3, 3])
    sd = json.loads(json.dumps(sched.state_dict()))
    opt2 = _opt(1.0)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    sched2 = ReduceLROnPlateau(opt2)
    sched2.load_state_dict(sd)
    seq = [3, 2, 2, 2, 2, 2]
    assert _plateau(sched2, opt2, seq) == _plateau(sched, opt, seq)
    with pytest.raises(TypeError, match="metrics must be a real number"):
        sched.step("bad")

"""Learning-rate schedules with torch's semantics: they edit ``group["lr"]`` of an optimizer.

Call ``scheduler.step()`` once per epoch, after ``optimizer.step()``
(``ReduceLROnPlateau.step(metric)`` with the validation metric), or once per batch for
schedules counted in batches (``OneCycleLR``, a warm-up over the first iterations). Each
schedule computes the next rate from the current one as torch does (the "chainable" form), so
the sequences equal torch's step for step; ``OneCycleLR`` and ``SequentialLR`` live in
``pynn.optim.lr_sequences``.
"""
import bisect
import math

import numpy as np

from .._checks import check_int, check_real
from .optimizer import Optimizer


def _check_optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a pynn Optimizer, got {type(optimizer).__name__}")


class _ScheduleState:
    """What every schedule shares: the last rates set, and its state as plain values."""

    def get_last_lr(self):
        """The rates the last ``step`` set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer, as plain values."""
        return {k: (list(v) if isinstance(v, list) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        unknown = set(state_dict) - set(self.__dict__)
        if unknown:
            raise ValueError(f"state_dict has unknown keys {sorted(unknown)} for "
                             f"{type(self).__name__}")
        self.__dict__.update(state_dict)


class LRScheduler(_ScheduleState):
    """Base of the epoch-indexed schedules (torch's ``LRScheduler``).

    On construction records ``initial_lr`` in every group (``base_lrs``) and performs the
    first ``step``, which sets epoch 0's rate.
    """

    def __init__(self, optimizer, last_epoch=-1):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        last_epoch = check_int("last_epoch", last_epoch, -1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        "resuming an optimizer"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._is_initial = False
        self._initial_step()

    def _initial_step(self):
        """The construction step (torch's): sets epoch 0's rate (``_is_initial`` while it runs)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The rates of epoch ``last_epoch`` from the current ones (torch's chainable form)."""
        raise NotImplementedError

    def _get_closed_form_lr(self):
        """The rates of epoch ``last_epoch`` from ``base_lrs`` alone (where torch has one)."""
        raise NotImplementedError

    def step(self):
        """Advance one epoch and write the new rate into every group."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch=None):
        """Next epoch's rates (chainable form), or epoch ``epoch``'s (closed form, which
        ``SequentialLR`` uses to start a schedule at its milestone)."""
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._get_closed_form_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs: lr = lr0 gamma^(epoch // step_size).

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Epochs between decays (>= 1).
    gamma : float, default 0.1
    last_epoch : int, default -1
    """

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = check_int("step_size", step_size, 1)
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the rate by ``gamma`` at each milestone epoch (twice at a milestone listed
    twice): lr = lr0 gamma^(milestones passed).

    Parameters
    ----------
    optimizer : Optimizer
    milestones : iterable of int
        Epochs at which the rate decays.
    gamma : float, default 0.1
    last_epoch : int, default -1
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        try:
            milestones = list(milestones)
        except TypeError:
            raise TypeError(f"milestones must be an iterable of ints, got "
                            f"{type(milestones).__name__}") from None
        # a sorted list, not torch's Counter: state dicts stay plain JSON values
        self.milestones = sorted(check_int("milestones", m, 0) for m in milestones)
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        times = self.milestones.count(self.last_epoch)
        return [group["lr"] * self.gamma ** times if times else group["lr"]
                for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self):
        passed = bisect.bisect_right(self.milestones, self.last_epoch)
        return [base * self.gamma ** passed for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the rate by ``gamma`` every epoch: lr = lr0 gamma^epoch = lr0 e^(-k epoch) with
    k = -ln(gamma).

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
    last_epoch : int, default -1
    """

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]

    def _get_closed_form_lr(self):
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the rate linearly from ``start_factor`` lr0 to ``end_factor`` lr0 over
    ``total_iters`` steps, then keep it (torch's; the usual warm-up, stepped per epoch or
    per batch).

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float in (0, 1], default 1/3
    end_factor : float in [0, 1], default 1
    total_iters : int, default 5
    last_epoch : int, default -1
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        self.start_factor = check_real(
            "start_factor", start_factor, 0.0, 1.0, low_open=True,
            message="start_factor must be in (0, 1], got {value}")
        self.end_factor = check_real("end_factor", end_factor, 0.0, 1.0,
                                     message="end_factor must be in [0, 1], got {value}")
        self.total_iters = check_int("total_iters", total_iters, 0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [group["lr"] for group in groups]
        ratio = 1.0 + (self.end_factor - self.start_factor) / (
            self.total_iters * self.start_factor
            + (self.last_epoch - 1) * (self.end_factor - self.start_factor))
        return [group["lr"] * ratio for group in groups]

    def _get_closed_form_lr(self):
        done = min(self.total_iters, self.last_epoch)
        factor = self.start_factor + (self.end_factor - self.start_factor) * done / max(
            self.total_iters, 1)
        return [base * factor for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneal the rate along a cosine from lr0 to ``eta_min`` over ``T_max`` steps:
    lr = eta_min + (lr0 - eta_min) (1 + cos(pi epoch / T_max)) / 2 (SGDR without restarts,
    Loshchilov & Hutter, ICLR 2017), computed in torch's recursive form; past ``T_max`` it
    rises again, as torch's does.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Steps to the minimum (>= 1).
    eta_min : float, default 0
    last_epoch : int, default -1
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = check_int("T_max", T_max, 1)
        self.eta_min = check_real("eta_min", eta_min, low=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and t > 0:
            return [lo + (base - lo) * (1 + math.cos(t * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (group["lr"] - lo) + lo for group in groups]

    def _get_closed_form_lr(self):
        return [self.eta_min + (base - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]


class ReduceLROnPlateau(_ScheduleState):
    """Multiply the rate by ``factor`` when a metric stopped improving for ``patience`` epochs.

    torch's semantics: a metric counts as better than the best so far when
    ``a < best (1 - threshold)`` (mode "min", threshold_mode "rel"), ``a < best - threshold``
    ("min", "abs"), ``a > best (1 + threshold)`` ("max", "rel") or ``a > best + threshold``
    ("max", "abs"). After more than ``patience`` epochs without improvement every group's rate
    becomes ``max(lr factor, min_lr)`` (unless that changes it by at most ``eps``), and the next
    ``cooldown`` epochs do not count as bad.

    Parameters
    ----------
    optimizer : Optimizer
    mode : "min" or "max", default "min"
    factor : float, default 0.1
        In [0, 1).
    patience : int, default 10
    threshold : float, default 1e-4
    threshold_mode : "rel" or "abs", default "rel"
    cooldown : int, default 0
    min_lr : float or list of float, default 0
        One value for every group, or one per group.
    eps : float, default 1e-8
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        _check_optimizer(optimizer)
        factor = check_real("factor", factor, low=0.0)
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.optimizer = optimizer
        self.factor = factor
        n_groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(f"expected {n_groups} min_lrs, got {len(min_lr)}")
            self.min_lrs = [check_real("min_lr", v, low=0.0) for v in min_lr]
        else:
            self.min_lrs = [check_real("min_lr", min_lr, low=0.0)] * n_groups
        self.patience = check_int("patience", patience, 0)
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.threshold = check_real("threshold", threshold, low=0.0)
        self.eps = check_real("eps", eps, low=0.0)
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is unknown! (mode must be 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode!r} is unknown! (threshold_mode "
                             "must be 'rel' or 'abs')")
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self._reset()

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics):
        """Record one epoch's metric; reduce the rates if it has plateaued."""
        if isinstance(metrics, (bool, np.bool_)):
            raise TypeError("metrics must be a real number, got bool")
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(
                f"metrics must be a real number, got {type(metrics).__name__}"
            ) from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # epochs in cooldown do not count as bad
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self):
        for i, group in enumerate(self.optimizer.param_groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

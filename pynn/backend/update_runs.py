"""An optimizer's step in its own words, for a caller that runs the update loops itself (a
compiled training step, pynn.nn.train_step): one named record per run of the optimizer's loop
over one flat slice of its parameters (``AdamRun``, ``SGDRun``, ``AdagradRun``,
``RMSpropRun``, ``NAdamRun``, ``RAdamRun``), holding the slices and the hyper-parameters of that step, named as the
backend's checked step (``Backend.adam_step``, ...) names its arguments.

The protocol a compiled training step reaches an optimizer through (pynn.optim.Optimizer has
it; anything without ``update_runs`` runs the eager lines):

- ``param_groups``: the parameters it holds (each group's ``"params"``), and ``backend_name``;
- ``zero_grad()``;
- ``claim_parameters()``: re-pack its parameters if something else packed them since its last
  step, so that the caller then sees where they live for this step;
- ``update_runs(loaded=None)``: one step's bookkeeping (step counts, state buffers, groups a
  schedule edited checked again) without running a loop; returns ``UpdateRuns``. ``loaded`` is
  the version of runs the caller holds (an earlier answer's ``version``): when nothing but the
  step counts moved since, ``runs`` is None and ``steps`` is each run's step count (the quick
  path: the caller's loops stand).

The records live here, below both pynn.nn and pynn.optim, beside the loops they describe.
"""
from typing import NamedTuple, Optional

import numpy as np

from ._optim_steps import adam_loop_scalars

#: the names of ``adam_loop_scalars``' results, in order
ADAM_LOOP_SCALARS = ("beta1", "beta2", "eps", "weight_decay", "l1", "decay", "step_size",
                     "bc2_sqrt")


class AdamRun(NamedTuple):
    """One run of Adam's loop (``Backend.adam_step``)."""

    param: np.ndarray
    grad: np.ndarray
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    max_exp_avg_sq: Optional[np.ndarray]  # amsgrad only
    step: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    l1: float
    decoupled_weight_decay: bool
    eps_before_correction: bool

    kernel = "adam_step"
    n_arrays = 5

    def loop_scalars(self):
        """{name: value} of the loop's scalars at this step (``adam_loop_scalars``)."""
        return dict(zip(ADAM_LOOP_SCALARS, adam_loop_scalars(
            self.step, self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.l1,
            self.decoupled_weight_decay, self.eps_before_correction)))


class SGDRun(NamedTuple):
    """One run of SGD's loop (``Backend.sgd_step``)."""

    param: np.ndarray
    grad: np.ndarray
    momentum_buffer: Optional[np.ndarray]  # with momentum only
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    l1: float
    nesterov: bool
    first_step: bool  # the momentum buffer starts as this step's gradient

    kernel = "sgd_step"
    n_arrays = 3

    def loop_mode(self):
        """The variant of SGD's loop this run takes, as the compiled loop chooses it
        (csrc/optim.pyx ``sgd_mode``): "plain" (no momentum buffer), "first" or "momentum"."""
        if self.momentum_buffer is None or self.momentum == 0 or self.param.size == 0:
            return "plain"
        return "first" if self.first_step else "momentum"


class AdagradRun(NamedTuple):
    """One run of Adagrad's loop (``Backend.adagrad_step``)."""

    param: np.ndarray
    grad: np.ndarray
    state_sum: np.ndarray
    step: int
    lr: float
    lr_decay: float
    weight_decay: float
    l1: float
    eps: float

    kernel = "adagrad_step"
    n_arrays = 3


class RMSpropRun(NamedTuple):
    """One run of RMSprop's loop (``Backend.rmsprop_step``)."""

    param: np.ndarray
    grad: np.ndarray
    square_avg: np.ndarray
    grad_avg: Optional[np.ndarray]  # centered only
    momentum_buffer: Optional[np.ndarray]  # momentum > 0 only
    lr: float
    alpha: float
    eps: float
    weight_decay: float
    l1: float
    momentum: float

    kernel = "rmsprop_step"
    n_arrays = 5


class NAdamRun(NamedTuple):
    """One run of NAdam's loop (``Backend.nadam_step``)."""

    param: np.ndarray
    grad: np.ndarray
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    step: int
    lr: float
    mu_product: float  # the product of NAdam's momentum coefficients, this step's included
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    l1: float
    momentum_decay: float
    decoupled_weight_decay: bool

    kernel = "nadam_step"
    n_arrays = 4


class RAdamRun(NamedTuple):
    """One run of RAdam's loop (``Backend.radam_step``)."""

    param: np.ndarray
    grad: np.ndarray
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    step: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    l1: float
    decoupled_weight_decay: bool

    kernel = "radam_step"
    n_arrays = 4


class UpdateRuns(NamedTuple):
    """``update_runs``' answer (see the module doc)."""

    version: int  # what to pass as ``loaded`` next time
    runs: Optional[list]  # the records, in order; None: the loaded ones stand (quick path)
    # quick path: each loaded run's step count (the optimizer fills one list anew each step:
    # a quick answer is read before the next call)
    steps: Optional[list]


def run_update(run, backend):
    """Run one record's loop on ``backend`` (its arrays were checked when the optimizer first
    made its slices)."""
    n = run.n_arrays
    getattr(backend, run.kernel)(*run[:n], _prechecked=True,
                                 **dict(zip(run._fields[n:], run[n:])))

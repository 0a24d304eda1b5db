"""Adagrad (torch's semantics)."""
from ..backend.update_runs import AdagradRun
from .optimizer import Optimizer, check_hyper


class Adagrad(Optimizer):
    r"""Adagrad: per-coordinate learning rates from the sum of squared gradients.

    Duchi, Hazan & Singer 2011, "Adaptive subgradient methods for online learning and
    stochastic optimization" (JMLR).

    Update rule, per element, at step t = 1, 2, ...:

    .. code-block:: text

        d   = g + weight_decay * p + l1 * sign(p)
        clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + d * d                    (sum starts at initial_accumulator_value)
        p   = p - clr * d / (sqrt(sum) + eps)

    Parameters
    ----------
    params : iterable of Parameter or of dict (param groups)
    lr : float, default 0.01
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    l1 : float, default 0
        L1 penalty: adds ``l1 * sign(p)`` to the gradient.
    backend : "numpy", "cython" or None

    State per parameter: ``step``, ``sum`` (present from construction on, as in torch).
    """

    state_keys = ("sum",)
    run_type = AdagradRun

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, l1=0.0, backend=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, l1=l1)
        super().__init__(params, defaults, backend=backend)

    def _check_group(self, group):
        check_hyper(group, "lr", "learning rate")
        check_hyper(group, "lr_decay", "lr_decay value")
        check_hyper(group, "weight_decay", "weight_decay value")
        check_hyper(group, "initial_accumulator_value", "initial_accumulator_value value")
        check_hyper(group, "eps", "epsilon value")
        check_hyper(group, "l1", "l1 value")

    def _init_group_state(self, gi):
        self._ensure_state(gi, "sum", self.param_groups[gi]["initial_accumulator_value"])

    def _step_group(self, gi, group, gstate):
        self._init_group_state(gi)
        self._for_slices(gi, ("sum",),
            step=gstate["step"], lr=group["lr"],
            lr_decay=group["lr_decay"], weight_decay=group["weight_decay"], l1=group["l1"],
            eps=group["eps"],
        )

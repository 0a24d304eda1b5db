"""Stochastic gradient descent with momentum (torch's SGD)."""
from ..backend.update_runs import SGDRun
from .optimizer import Optimizer, check_flag, check_hyper


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum; torch's semantics.

    Update rule, per element, with gradient g and parameter p at step t:

    .. code-block:: text

        d = g + weight_decay * p + l1 * sign(p)
        if momentum != 0:
            buf = d                                          (first step)
            buf = momentum * buf + (1 - dampening) * d       (later steps)
            d = d + momentum * buf   if nesterov   else   buf
        p = p - lr * d

    Nesterov momentum: Sutskever et al. 2013, "On the importance of initialization and momentum
    in deep learning".

    Parameters
    ----------
    params : iterable of Parameter or of dict (param groups)
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty (added to the gradient).
    nesterov : bool, default False
        Needs momentum > 0 and dampening == 0.
    l1 : float, default 0
        L1 penalty: adds ``l1 * sign(p)`` to the gradient (pynn's addition).
    backend : "numpy", "cython" or None

    State per parameter: ``momentum_buffer`` (with momentum only).
    """

    state_keys = ("momentum_buffer",)
    has_step = False
    run_type = SGDRun

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, l1=0.0, backend=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, l1=l1)
        super().__init__(params, defaults, backend=backend)

    def _check_group(self, group):
        check_hyper(group, "lr", "learning rate")
        momentum = check_hyper(group, "momentum", "momentum value")
        dampening = check_hyper(group, "dampening", "dampening value", low=None)
        check_hyper(group, "weight_decay", "weight_decay value")
        check_hyper(group, "l1", "l1 value")
        if check_flag(group, "nesterov") and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _step_group(self, gi, group, gstate):
        momentum = group["momentum"]
        first = False
        if momentum != 0:
            first = "momentum_buffer" not in gstate["keys"]
            self._ensure_state(gi, "momentum_buffer")
        key = "momentum_buffer" if momentum != 0 else None
        self._for_slices(gi, (key,),
            lr=group["lr"], momentum=momentum,
            dampening=group["dampening"], weight_decay=group["weight_decay"], l1=group["l1"],
            nesterov=group["nesterov"], first_step=first,
        )

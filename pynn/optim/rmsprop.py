"""RMSprop (torch's semantics)."""
from ..backend.update_runs import RMSpropRun
from .optimizer import Optimizer, check_flag, check_hyper


class RMSprop(Optimizer):
    r"""RMSprop: divide the gradient by a running RMS of recent gradients.

    Hinton, Srivastava & Swersky, "Neural networks for machine learning", lecture 6e (2012);
    the centered variant is Graves 2013, "Generating sequences with recurrent neural networks".

    Update rule, per element (torch's, eps added outside the square root):

    .. code-block:: text

        d = g + weight_decay * p + l1 * sign(p)
        v = alpha * v + (1 - alpha) * d * d                      (square_avg)
        if centered:
            a   = a + (1 - alpha) * (d - a)                      (grad_avg)
            avg = sqrt(v - a * a) + eps
        else:
            avg = sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + d / avg                       (momentum_buffer)
            p   = p - lr * buf
        else:
            p   = p - lr * d / avg

    Parameters
    ----------
    params : iterable of Parameter or of dict (param groups)
    lr : float, default 0.01
    alpha : float, default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    l1 : float, default 0
        L1 penalty: adds ``l1 * sign(p)`` to the gradient.
    backend : "numpy", "cython" or None

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    state_keys = ("square_avg", "momentum_buffer", "grad_avg")
    run_type = RMSpropRun

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, l1=0.0, backend=None):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, l1=l1)
        super().__init__(params, defaults, backend=backend)

    def _check_group(self, group):
        check_hyper(group, "lr", "learning rate")
        check_hyper(group, "eps", "epsilon value")
        check_hyper(group, "momentum", "momentum value")
        check_hyper(group, "weight_decay", "weight_decay value")
        check_hyper(group, "alpha", "alpha value")
        check_hyper(group, "l1", "l1 value")
        check_flag(group, "centered")

    def _step_group(self, gi, group, gstate):
        self._ensure_state(gi, "square_avg")
        momentum_key = "momentum_buffer" if group["momentum"] > 0 else None
        centered_key = "grad_avg" if group["centered"] else None
        for key in (momentum_key, centered_key):
            if key is not None:
                self._ensure_state(gi, key)
        self._for_slices(gi, ("square_avg", centered_key, momentum_key),
            lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
            weight_decay=group["weight_decay"], l1=group["l1"], momentum=group["momentum"],
        )

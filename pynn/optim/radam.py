"""RAdam: Adam with a rectified adaptive learning rate (torch's semantics)."""
from ..backend.update_runs import RAdamRun
from .adam import check_adam_group
from .optimizer import Optimizer


class RAdam(Optimizer):
    r"""RAdam: Adam whose adaptive step waits until the second moment's estimate is
    trustworthy, and is then scaled by the rectification r_t (a warmup without a schedule).

    Liu et al. 2020, "On the variance of the adaptive learning rate and beyond" (ICLR).

    Update rule, per element, at step t = 1, 2, ... (torch's):

    .. code-block:: text

        if decoupled_weight_decay:  p = p * (1 - lr * weight_decay);  d = g
        else:                       d = g + weight_decay * p
        d = d + l1 * sign(p)
        m = m + (1 - beta1) * (d - m);  v = beta2 * v + (1 - beta2) * d * d
        rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
        if rho_t > 5:
            r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            p = p - m / (1 - beta1**t) * lr * sqrt(1 - beta2**t) / (sqrt(v) + eps) * r_t
        else:
            p = p - m / (1 - beta1**t) * lr

    Parameters
    ----------
    params : iterable of Parameter or of dict (param groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
        True: AdamW's decoupled weight decay (torch's RAdamW).
    l1 : float, default 0
        L1 penalty: adds ``l1 * sign(p)`` to the gradient (pynn's addition).
    backend : "numpy", "cython" or None

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq`` (torch's keys).
    """

    state_keys = ("exp_avg", "exp_avg_sq")
    run_type = RAdamRun

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, l1=0.0, backend=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, l1=l1)
        super().__init__(params, defaults, backend=backend)

    def _check_group(self, group):
        check_adam_group(group)

    def _step_group(self, gi, group, gstate):
        self._ensure_state(gi, "exp_avg")
        self._ensure_state(gi, "exp_avg_sq")
        beta1, beta2 = group["betas"]
        self._for_slices(gi, ("exp_avg", "exp_avg_sq"),
            step=gstate["step"], lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
            weight_decay=group["weight_decay"], l1=group["l1"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )

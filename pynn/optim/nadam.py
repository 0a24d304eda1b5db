"""NAdam: Adam with Nesterov momentum (torch's semantics and schedule)."""
from ..backend._optim_steps import nadam_mu
from ..backend.update_runs import NAdamRun
from .adam import check_adam_group
from .optimizer import Optimizer, check_hyper


class NAdam(Optimizer):
    r"""NAdam: Adam whose momentum looks one step ahead (Nesterov), with torch's momentum
    schedule.

    Dozat 2016, "Incorporating Nesterov momentum into Adam" (ICLR workshop).

    Update rule, per element, at step t = 1, 2, ... (torch's):

    .. code-block:: text

        if decoupled_weight_decay:  p = p * (1 - lr * weight_decay);  d = g
        else:                       d = g + weight_decay * p
        d = d + l1 * sign(p)
        mu_t = beta1 * (1 - 0.96 ** (t * momentum_decay) / 2)
        mu_product = mu_1 * ... * mu_t                                (state, per parameter)
        m = m + (1 - beta1) * (d - m);  v = beta2 * v + (1 - beta2) * d * d
        denom = sqrt(v / (1 - beta2**t)) + eps
        p = p - lr (1 - mu_t) / (1 - mu_product) * d / denom
              - lr mu_t+1 / (1 - mu_product mu_t+1) * m / denom

    Parameters
    ----------
    params : iterable of Parameter or of dict (param groups)
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
    decoupled_weight_decay : bool, default False
        True: AdamW's decoupled weight decay (torch's NAdamW).
    l1 : float, default 0
        L1 penalty: adds ``l1 * sign(p)`` to the gradient (pynn's addition).
    backend : "numpy", "cython" or None

    State per parameter: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq`` (torch's keys).
    pynn keeps ``mu_product`` in double; torch keeps it as a tensor of its default dtype, so
    the two agree to round-off with ``torch.set_default_dtype(torch.float64)`` and to float32's
    precision (~1e-7 relative in the step size) with torch's float32 default.
    """

    state_keys = ("exp_avg", "exp_avg_sq")
    scalar_state = {"mu_product": 1.0}
    run_type = NAdamRun

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, l1=0.0, backend=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, l1=l1)
        super().__init__(params, defaults, backend=backend)

    def _check_group(self, group):
        check_adam_group(group)
        check_hyper(group, "momentum_decay", "momentum_decay value")

    def _step_group(self, gi, group, gstate):
        self._ensure_state(gi, "exp_avg")
        self._ensure_state(gi, "exp_avg_sq")
        beta1, beta2 = group["betas"]
        step = gstate["step"]
        gstate["mu_product"] = (gstate.get("mu_product", 1.0)
                                * nadam_mu(step, beta1, group["momentum_decay"]))
        self._for_slices(gi, ("exp_avg", "exp_avg_sq"),
            step=step, lr=group["lr"], mu_product=gstate["mu_product"], beta1=beta1,
            beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"], l1=group["l1"],
            momentum_decay=group["momentum_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )

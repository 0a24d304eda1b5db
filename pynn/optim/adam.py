"""Adam and AdamW (torch's semantics, eps where torch puts it)."""
from ..backend.update_runs import AdamRun
from .optimizer import Optimizer, check_flag, check_hyper


class Adam(Optimizer):
    r"""Adam: momentum on the gradient, scaled by a running RMS, both bias-corrected.

    Kingma & Ba 2015, "Adam: A method for stochastic optimization" (ICLR); amsgrad: Reddi,
    Kale & Kumar 2018, "On the convergence of Adam and beyond".

    Update rule, per element, at step t = 1, 2, ... (torch's eps placement):

    .. code-block:: text

        if decoupled_weight_decay:  p = p * (1 - lr * weight_decay);  d = g      (AdamW)
        else:                       d = g + weight_decay * p
        d = d + l1 * sign(p)
        m = m + (1 - beta1) * (d - m)                 (exp_avg)
        v = beta2 * v + (1 - beta2) * d * d           (exp_avg_sq)
        if amsgrad: vmax = max(vmax, v); v' = vmax    (max_exp_avg_sq)
        else:       v' = v
        denom = sqrt(v') / sqrt(1 - beta2**t) + eps
        p = p - lr / (1 - beta1**t) * m / denom

    Parameters
    ----------
    params : iterable of Parameter or of dict (param groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    amsgrad : bool, default False
    decoupled_weight_decay : bool, default False
        True makes this AdamW.
    l1 : float, default 0
        L1 penalty: adds ``l1 * sign(p)`` to the gradient.
    backend : "numpy", "cython" or None

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """

    state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    run_type = AdamRun
    #: eps added to sqrt(v) before v's bias correction instead of after it (see
    #: ``adam_loop_scalars``); a subclass sets it (pynn.sklearn's, scikit-learn's placement)
    _eps_before_correction = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, decoupled_weight_decay=False, l1=0.0, backend=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        decoupled_weight_decay=decoupled_weight_decay, l1=l1)
        super().__init__(params, defaults, backend=backend)

    def _check_group(self, group):
        check_adam_group(group)
        check_flag(group, "amsgrad")

    def _step_group(self, gi, group, gstate):
        self._ensure_state(gi, "exp_avg")
        self._ensure_state(gi, "exp_avg_sq")
        max_key = "max_exp_avg_sq" if group["amsgrad"] else None
        if max_key:
            self._ensure_state(gi, max_key)
        beta1, beta2 = group["betas"]
        self._for_slices(gi, ("exp_avg", "exp_avg_sq", max_key),
            step=gstate["step"], lr=group["lr"], beta1=beta1,
            beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"], l1=group["l1"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            eps_before_correction=self._eps_before_correction,
        )


def check_adam_group(group):
    """The hyper-parameters Adam, NAdam and RAdam share: lr, eps, betas, weight_decay, l1 and
    decoupled_weight_decay (torch's wording)."""
    check_hyper(group, "lr", "learning rate")
    check_hyper(group, "eps", "epsilon value")
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    pair = {"betas": betas[0]}
    b1 = check_hyper(pair, "betas", "beta parameter at index 0", high=1.0, high_open=True)
    pair = {"betas": betas[1]}
    b2 = check_hyper(pair, "betas", "beta parameter at index 1", high=1.0, high_open=True)
    group["betas"] = (b1, b2)
    check_hyper(group, "weight_decay", "weight_decay value")
    check_hyper(group, "l1", "l1 value")
    check_flag(group, "decoupled_weight_decay")


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` each step,
    instead of adding ``weight_decay * p`` to the gradient).

    Loshchilov & Hutter 2019, "Decoupled weight decay regularization" (ICLR).

    The update rule is Adam's (see :class:`Adam`) with ``decoupled_weight_decay=True``:

    .. code-block:: text

        p = p * (1 - lr * weight_decay)
        d = g + l1 * sign(p)
        m = m + (1 - beta1) * (d - m);  v = beta2 * v + (1 - beta2) * d * d
        v' = max(vmax, v) if amsgrad else v
        p = p - lr / (1 - beta1**t) * m / (sqrt(v') / sqrt(1 - beta2**t) + eps)

    Parameters are Adam's, with ``weight_decay`` defaulting to 0.01.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, *, l1=0.0, backend=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, decoupled_weight_decay=True, l1=l1, backend=backend)

"""The optimizers' part of the backend interface (a mixin of ``Backend``): the checked public
steps (``sgd_step``, ``adagrad_step``, ``rmsprop_step``, ``adam_step``, ``nadam_step``,
``radam_step``), the scalars their loops take, and the abstract ``_<optimizer>_step`` loops each
backend implements. Each step
updates one flat, contiguous buffer in place (a param group's slice of the parameter arena) with
one fused kernel call; state arrays are updated in place, None meaning the variant is off (no
momentum, not centered, no amsgrad)."""
import abc
import math

import numpy as np

from .. import _threads
from .._checks import check_int, check_real
from ._arrays import FLOAT_DTYPES, _check_disjoint, _float_array, _ndim, _output, _same_shape

# The largest optimizer step count (an int64, as torch keeps it): the bias corrections compute
# beta ** step in double, and an int beyond float's range raised OverflowError there.
_MAX_STEP = (1 << 63) - 1


def adam_loop_scalars(step, lr, beta1, beta2, eps, weight_decay, l1, decoupled_weight_decay,
                      eps_before_correction=False):
    """The Adam loop's scalar arguments at step ``step`` (from 1), after the arrays: beta1,
    beta2, eps, the coupled weight decay, l1, the decoupled decay factor, the step size
    lr / (1 - beta1^t) and sqrt(1 - beta2^t). The bias corrections are computed once per call,
    in double. ``eps_before_correction``: eps is added to sqrt(v) before v's bias correction
    (the Adam paper's faster form, scikit-learn's) instead of after it (torch's); then the step
    is scikit-learn's own form, lr sqrt(1 - beta2^t) / (1 - beta1^t) times m / (sqrt(v) + eps),
    with bc2_sqrt 1: the loop skips dividing by it (one division per element instead of two;
    dividing by 1 is exact, so that is the same arithmetic). A compiled training step computes
    the three scalars that move with the step the same way in C (``StepProgram.set_step``;
    tests hold the two equal)."""
    correction2 = 1.0 - beta2 ** step
    bc2_sqrt = math.sqrt(correction2)
    if eps_before_correction:
        step_size = lr * bc2_sqrt / (1.0 - beta1 ** step)
        bc2_sqrt = 1.0
    else:
        step_size = lr / (1.0 - beta1 ** step)
    if decoupled_weight_decay:
        decay, coupled = 1.0 - lr * weight_decay, 0.0
    else:
        decay, coupled = 1.0, weight_decay
    return beta1, beta2, eps, coupled, l1, decay, step_size, bc2_sqrt


def _decay_and_coupled(lr, weight_decay, decoupled_weight_decay):
    """(the decoupled decay factor, the coupled weight decay): AdamW's p *= 1 - lr wd, or
    Adam's d = g + wd p."""
    if decoupled_weight_decay:
        return 1.0 - lr * weight_decay, 0.0
    return 1.0, weight_decay


def nadam_loop_scalars(step, lr, beta1, beta2, eps, weight_decay, l1, momentum_decay,
                       mu_product, decoupled_weight_decay):
    """NAdam's loop scalars at step ``step`` (from 1), torch's: beta1, beta2, eps, the coupled
    weight decay, l1, the decoupled decay factor, bc2 = 1 - beta2^t, and the two step sizes
    c1 = lr (1 - mu_t) / (1 - mu_product) and c2 = lr mu_t+1 / (1 - mu_product mu_t+1), where
    mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2) and ``mu_product`` is the product of mu_1 ..
    mu_t (this step's included)."""
    mu = nadam_mu(step, beta1, momentum_decay)
    mu_next = nadam_mu(step + 1, beta1, momentum_decay)
    c1 = lr * (1.0 - mu) / (1.0 - mu_product)
    c2 = lr * mu_next / (1.0 - mu_product * mu_next)
    decay, coupled = _decay_and_coupled(lr, weight_decay, decoupled_weight_decay)
    return beta1, beta2, eps, coupled, l1, decay, 1.0 - beta2 ** step, c1, c2


def nadam_mu(step, beta1, momentum_decay):
    """NAdam's momentum coefficient mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2) (Dozat
    2016, torch's schedule)."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))


def radam_loop_scalars(step, lr, beta1, beta2, eps, weight_decay, l1, decoupled_weight_decay):
    """RAdam's loop scalars at step ``step`` (from 1), torch's: beta1, beta2, eps, the coupled
    weight decay, l1, the decoupled decay factor, bc1 = 1 - beta1^t, lr, sqrt(1 - beta2^t) and
    the rectification r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2)
    rho_t)), 0 while rho_t <= 5 (the step is then momentum's alone); rho_inf = 2 / (1 - beta2)
    - 1, rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t) (Liu et al. 2020)."""
    bc2 = 1.0 - beta2 ** step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * (beta2 ** step) / bc2
    rect = 0.0
    if rho_t > 5.0:
        rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) ** 0.5
    decay, coupled = _decay_and_coupled(lr, weight_decay, decoupled_weight_decay)
    return beta1, beta2, eps, coupled, l1, decay, 1.0 - beta1 ** step, lr, bc2 ** 0.5, rect


class OptimizerSteps:
    """The optimizer steps of ``Backend`` (see the module doc)."""

    def _optim_operands(self, param, grad, states):
        """Validate param (1-D, writeable), grad (same shape/dtype) and state buffers, no two of
        which may share memory: the fused loops declare every pointer ``restrict``
        (csrc/_optim.h), so an overlap is undefined behaviour, not just a wrong answer."""
        if not isinstance(param, np.ndarray):
            raise TypeError(f"param must be a numpy.ndarray, got {type(param).__name__}")
        if param.dtype not in FLOAT_DTYPES:
            raise TypeError(f"param must have dtype float32 or float64, got {param.dtype}")
        _ndim("param", param, 1)
        param = _output("param", param, param.shape, param.dtype)
        grad = _float_array("grad", grad, param.dtype)
        _same_shape("grad", grad, param.shape)
        _check_disjoint("grad", grad, [("param", param)])
        seen = [("param", param), ("grad", grad)]
        checked = []
        for name, a in states:
            if a is not None:
                a = _output(name, a, param.shape, param.dtype, seen)
                seen.append((name, a))
            checked.append(a)
        return param, grad, checked

    def sgd_step(self, param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, l1=0.0, nesterov=False, first_step=False, _prechecked=False,
                 _check_only=False):
        """SGD with momentum, in place: d = g + wd p + l1 sign(p);
        buf = d on the first step, else momentum buf + (1 - dampening) d;
        d = d + momentum buf (nesterov) or buf; p -= lr d. ``momentum_buffer`` None: plain SGD.

        ``_prechecked=True`` skips every check: for an optimizer passing the very arrays and
        hyper-parameters a previous call of this method checked (the eager step stays cheap).
        ``_check_only=True`` checks and runs nothing: for an optimizer describing the step to a
        caller that runs the loop itself (pynn.backend.update_runs)."""
        if _prechecked:
            self._sgd_step(param, grad, momentum_buffer if momentum != 0 else None, lr, momentum,
                           dampening, weight_decay, l1, bool(nesterov), bool(first_step),
                           _threads.threads_for(param.size))
            return param
        lr = check_real("lr", lr, 0.0)
        momentum = check_real("momentum", momentum, 0.0)
        dampening = check_real("dampening", dampening)
        weight_decay = check_real("weight_decay", weight_decay, 0.0)
        l1 = check_real("l1", l1, 0.0)
        if momentum != 0 and momentum_buffer is None:
            raise ValueError("momentum_buffer must be an array when momentum != 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening == 0")
        param, grad, (buf,) = self._optim_operands(
            param, grad, [("momentum_buffer", momentum_buffer if momentum != 0 else None)]
        )
        if _check_only:
            return param
        self._sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, l1,
                       bool(nesterov), bool(first_step), _threads.threads_for(param.size))
        return param

    def adagrad_step(self, param, grad, state_sum, *, step, lr, lr_decay=0.0, weight_decay=0.0,
                     l1=0.0, eps=1e-10, _prechecked=False, _check_only=False):
        """Adagrad, in place: d = g + wd p + l1 sign(p); sum += d^2;
        p -= lr / (1 + (step - 1) lr_decay) * d / (sqrt(sum) + eps). ``step`` counts from 1.
        ``_prechecked``, ``_check_only``: as for ``sgd_step``."""
        if not _prechecked:
            step = check_int("step", step, 1, _MAX_STEP)
            lr = check_real("lr", lr, 0.0)
            lr_decay = check_real("lr_decay", lr_decay, 0.0)
            weight_decay = check_real("weight_decay", weight_decay, 0.0)
            l1 = check_real("l1", l1, 0.0)
            eps = check_real("eps", eps, 0.0)
            param, grad, (state_sum,) = self._optim_operands(param, grad,
                                                             [("state_sum", state_sum)])
            if state_sum is None:
                raise TypeError("state_sum must be a numpy.ndarray, got None")
        if _check_only:
            return param
        clr = lr / (1.0 + (step - 1) * lr_decay)
        self._adagrad_step(param, grad, state_sum, clr, weight_decay, l1, eps,
                           _threads.threads_for(param.size))
        return param

    def rmsprop_step(self, param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr,
                     alpha=0.99, eps=1e-8, weight_decay=0.0, l1=0.0, momentum=0.0,
                     _prechecked=False, _check_only=False):
        """RMSprop, in place: d = g + wd p + l1 sign(p); v = alpha v + (1 - alpha) d^2;
        centered (``grad_avg`` given): a = a + (1 - alpha)(d - a), avg = sqrt(v - a^2) + eps,
        else avg = sqrt(v) + eps; momentum > 0: buf = momentum buf + d / avg, p -= lr buf;
        else p -= lr d / avg. ``_prechecked``, ``_check_only``: as for ``sgd_step``."""
        if not _prechecked:
            lr = check_real("lr", lr, 0.0)
            alpha = check_real("alpha", alpha, 0.0)
            eps = check_real("eps", eps, 0.0)
            weight_decay = check_real("weight_decay", weight_decay, 0.0)
            l1 = check_real("l1", l1, 0.0)
            momentum = check_real("momentum", momentum, 0.0)
            if momentum > 0 and momentum_buffer is None:
                raise ValueError("momentum_buffer must be an array when momentum > 0")
            param, grad, (square_avg, grad_avg, buf) = self._optim_operands(
                param, grad,
                [("square_avg", square_avg), ("grad_avg", grad_avg),
                 ("momentum_buffer", momentum_buffer if momentum > 0 else None)],
            )
            if square_avg is None:
                raise TypeError("square_avg must be a numpy.ndarray, got None")
        else:
            buf = momentum_buffer if momentum > 0 else None
        if _check_only:
            return param
        self._rmsprop_step(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                           l1, momentum, _threads.threads_for(param.size))
        return param

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr,
                  beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0,
                  decoupled_weight_decay=False, eps_before_correction=False,
                  _prechecked=False, _check_only=False):
        """Adam / AdamW (torch's eps placement), in place. ``step`` t counts from 1:
        AdamW first decays p *= 1 - lr wd (and d = g), Adam uses d = g + wd p; then
        d += l1 sign(p); m = m + (1 - beta1)(d - m); v = beta2 v + (1 - beta2) d^2;
        vmax = max(vmax, v) if ``max_exp_avg_sq`` is given (amsgrad) else v;
        p -= lr / (1 - beta1^t) * m / (sqrt(vmax) / sqrt(1 - beta2^t) + eps).
        Bias corrections once per call, in double (``adam_loop_scalars``, which also says what
        ``eps_before_correction`` does). ``_prechecked``, ``_check_only``: as for
        ``sgd_step``."""
        if not _prechecked:
            step = check_int("step", step, 1, _MAX_STEP)
            lr = check_real("lr", lr, 0.0)
            beta1 = check_real("beta1", beta1, 0.0, 1.0, high_open=True)
            beta2 = check_real("beta2", beta2, 0.0, 1.0, high_open=True)
            eps = check_real("eps", eps, 0.0)
            weight_decay = check_real("weight_decay", weight_decay, 0.0)
            l1 = check_real("l1", l1, 0.0)
            param, grad, (exp_avg, exp_avg_sq, max_exp_avg_sq) = self._optim_operands(
                param, grad,
                [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq),
                 ("max_exp_avg_sq", max_exp_avg_sq)],
            )
            if exp_avg is None or exp_avg_sq is None:
                raise TypeError("exp_avg and exp_avg_sq must be numpy.ndarrays, got None")
        if _check_only:
            return param
        self._adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
                        *adam_loop_scalars(step, lr, beta1, beta2, eps, weight_decay, l1,
                                           decoupled_weight_decay, eps_before_correction),
                        _threads.threads_for(param.size))
        return param

    def _adam_variant_checks(self, param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2,
                             eps, weight_decay, l1):
        """The checks NAdam's and RAdam's steps share with Adam's."""
        step = check_int("step", step, 1, _MAX_STEP)
        scalars = (check_real("lr", lr, 0.0),
                   check_real("beta1", beta1, 0.0, 1.0, high_open=True),
                   check_real("beta2", beta2, 0.0, 1.0, high_open=True),
                   check_real("eps", eps, 0.0), check_real("weight_decay", weight_decay, 0.0),
                   check_real("l1", l1, 0.0))
        param, grad, (exp_avg, exp_avg_sq) = self._optim_operands(
            param, grad, [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)])
        if exp_avg is None or exp_avg_sq is None:
            raise TypeError("exp_avg and exp_avg_sq must be numpy.ndarrays, got None")
        return (param, grad, exp_avg, exp_avg_sq, step) + scalars

    def nadam_step(self, param, grad, exp_avg, exp_avg_sq, *, step, lr, mu_product,
                   beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0,
                   momentum_decay=4e-3, decoupled_weight_decay=False, _prechecked=False,
                   _check_only=False):
        """NAdam (Dozat 2016; torch's), in place: AdamW-style decay or d = g + wd p; d +=
        l1 sign(p); m, v as Adam's; p -= c1 d / (sqrt(v / (1 - beta2^t)) + eps) + c2 m / (...)
        with ``nadam_loop_scalars``' c1, c2 from this step's ``mu_product`` (the product of
        mu_1 .. mu_t, kept by the optimizer). ``_prechecked``, ``_check_only``: as for
        ``sgd_step``."""
        if not _prechecked:
            (param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
             l1) = self._adam_variant_checks(param, grad, exp_avg, exp_avg_sq, step, lr, beta1,
                                             beta2, eps, weight_decay, l1)
            momentum_decay = check_real("momentum_decay", momentum_decay, 0.0)
            mu_product = check_real("mu_product", mu_product)
        if _check_only:
            return param
        self._nadam_step(param, grad, exp_avg, exp_avg_sq,
                         *nadam_loop_scalars(step, lr, beta1, beta2, eps, weight_decay, l1,
                                             momentum_decay, mu_product,
                                             decoupled_weight_decay),
                         _threads.threads_for(param.size))
        return param

    def radam_step(self, param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1=0.9,
                   beta2=0.999, eps=1e-8, weight_decay=0.0, l1=0.0,
                   decoupled_weight_decay=False, _prechecked=False, _check_only=False):
        """RAdam (Liu et al. 2020; torch's), in place: AdamW-style decay or d = g + wd p;
        d += l1 sign(p); m, v as Adam's; while the variance is tractable (rho_t > 5) p -=
        m / (1 - beta1^t) lr sqrt(1 - beta2^t) / (sqrt(v) + eps) r_t, before that p -= m /
        (1 - beta1^t) lr (``radam_loop_scalars``). ``_prechecked``, ``_check_only``: as for
        ``sgd_step``."""
        if not _prechecked:
            (param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
             l1) = self._adam_variant_checks(param, grad, exp_avg, exp_avg_sq, step, lr, beta1,
                                             beta2, eps, weight_decay, l1)
        if _check_only:
            return param
        self._radam_step(param, grad, exp_avg, exp_avg_sq,
                         *radam_loop_scalars(step, lr, beta1, beta2, eps, weight_decay, l1,
                                             decoupled_weight_decay),
                         _threads.threads_for(param.size))
        return param

    # ---------------------------------------------------------------- the loops
    @abc.abstractmethod
    def _sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, l1,
                  nesterov, first_step, n_threads):
        """One fused SGD pass; momentum_buffer is None without momentum (see sgd_step)."""

    @abc.abstractmethod
    def _adagrad_step(self, param, grad, state_sum, clr, weight_decay, l1, eps, n_threads):
        """One fused Adagrad pass with the decayed learning rate clr (see adagrad_step)."""

    @abc.abstractmethod
    def _rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, l1, momentum, n_threads):
        """One fused RMSprop pass; grad_avg None: not centered; momentum_buffer None: none."""

    @abc.abstractmethod
    def _adam_step(self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, eps,
                   weight_decay, l1, decay, step_size, bc2_sqrt, n_threads):
        """d = g + wd p + l1 sign(p); m, v, (vmax) updated;
        p := p decay - step_size m / (sqrt(vmax or v) / bc2_sqrt + eps)."""

    @abc.abstractmethod
    def _nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                    l1, decay, bc2, c1, c2, n_threads):
        """d = g + wd p + l1 sign(p); m, v updated; denom = sqrt(v / bc2) + eps;
        p := p decay - c1 (d / denom) - c2 (m / denom)."""

    @abc.abstractmethod
    def _radam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                    l1, decay, bc1, lr, bc2_sqrt, rect, n_threads):
        """d = g + wd p + l1 sign(p); m, v updated; rect > 0: p := p decay - m / bc1 lr
        (bc2_sqrt / (sqrt(v) + eps)) rect, else p := p decay - m / bc1 lr."""

"""The reference backend: plain, readable NumPy. The ground truth the Cython kernels are held to.

Written for clarity, not speed: one formula per line, temporaries allowed, float64 where the
Cython kernels accumulate in float64 (loss sums, batch-norm statistics).
"""
import numpy as np

from .base import Backend
from .codes import (ELU, GELU, GOLDEN64, IDENTITY, LEAKY_RELU, RELU, ROBUST_HUBER, ROBUST_L1,
                    SIGMOID, SQUARE, STEP, TANH)

from ._numpy_smooth import _sigmoid, smooth_derivative, smooth_forward


def act_forward(z, kind, param):
    """act(z) for one activation kind, same dtype as z (param: the kind's parameter, a
    (beta, threshold) pair for softplus)."""
    if kind >= GELU:
        return smooth_forward(z, kind, param)
    if kind == IDENTITY:
        return z.copy()
    if kind == RELU:
        return np.maximum(z, 0)
    if kind == LEAKY_RELU:
        return np.where(z > 0, z, z * z.dtype.type(param))
    if kind == ELU:
        return np.where(z > 0, z, z.dtype.type(param) * np.expm1(np.minimum(z, 0)))
    if kind == SIGMOID:
        return _sigmoid(z)
    if kind == TANH:
        return np.tanh(z)
    if kind == STEP:
        return (z > 0).astype(z.dtype)
    if kind == SQUARE:
        return z * z
    raise ValueError(f"unknown activation kind {kind}")


def act_derivative(x, y, kind, param):
    """act'(x), taken from the output y where the math allows (x may be None for those kinds)."""
    dtype = y.dtype if y is not None else x.dtype
    one = dtype.type(1)
    if kind >= GELU:
        return smooth_derivative(x, kind, param)
    if kind == IDENTITY:
        return np.ones_like(y if y is not None else x)
    if kind == RELU:
        return (y > 0).astype(dtype)
    if kind == LEAKY_RELU:
        # from the input when there is one: exact for any slope
        positive = (x > 0) if x is not None else (y > 0)
        return np.where(positive, one, dtype.type(param))
    if kind == ELU:
        positive = (x > 0) if x is not None else (y > 0)
        return np.where(positive, one, y + dtype.type(param))
    if kind == SIGMOID:
        return y * (one - y)
    if kind == TANH:
        return one - y * y
    if kind == STEP:
        return np.zeros_like(y if y is not None else x)
    if kind == SQUARE:
        return 2 * x
    raise ValueError(f"unknown activation kind {kind}")


def _l1_sign(p):
    """sign(p) for the L1 penalty, 0 at NaN as in torch.sign (np.sign gives NaN there)."""
    return np.where(np.isnan(p), p.dtype.type(0), np.sign(p))


def _csr(data, indices, indptr, shape):
    """SciPy's CSR matrix over the kernel's three arrays (no copy)."""
    import scipy.sparse

    return scipy.sparse.csr_matrix((data, indices, indptr), shape=shape, copy=False)


def mix64_array(z):
    """splitmix64's finalizer over a uint64 array (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class NumpyBackend(Backend):
    """Reference implementation of every kernel in plain NumPy."""

    name = "numpy"

    def _activation_forward(self, X, Y, kind, param, n_threads):
        Y[...] = act_forward(X, kind, param)

    def _activation_backward(self, dY, X, Y, dX, kind, param, n_threads):
        dX[...] = dY * act_derivative(X, Y, kind, param)

    def _softmax_forward(self, X, Y, n_threads):
        shifted = X - X.max(axis=1, keepdims=True) if X.shape[1] else X
        e = np.exp(shifted)
        Y[...] = e / e.sum(axis=1, keepdims=True)

    def _softmax_backward(self, dY, Y, dX, n_threads):
        dX[...] = Y * (dY - (dY * Y).sum(axis=1, keepdims=True))

    def _dense_forward(self, X, W, b, Y, kind, param, n_threads, Z=None):
        pre = X @ W.T
        if b is not None:
            pre += b
        if Z is not None:
            Z[...] = pre
        Y[...] = act_forward(pre, kind, param)

    def _dense_backward(self, dY, X, W, Y, dW, db, dX, kind, param, n_threads, Z=None):
        dZ = dY if kind == IDENTITY else dY * act_derivative(Z, Y, kind, param)
        if db is not None:
            db += dZ.sum(axis=0)
        if dW is not None:
            dW += dZ.T @ X
        if dX is not None:
            dX[...] = dZ @ W

    def _sparse_dense_forward(self, data, indices, indptr, W, b, Y, kind, param, n_threads,
                              Z=None):
        pre = _csr(data, indices, indptr, (Y.shape[0], W.shape[1])) @ W.T
        if b is not None:
            pre += b
        if Z is not None:
            Z[...] = pre
        Y[...] = act_forward(pre, kind, param)

    def _sparse_dense_backward(self, dZ, data, indices, indptr, n_cols, dW, db, n_threads):
        if db is not None:
            db += dZ.sum(axis=0)
        if dW is not None:
            dW += (_csr(data, indices, indptr, (dZ.shape[0], n_cols)).T @ dZ).T

    def _mse_loss(self, Y, T, W, G, L, scale, n_threads):
        d = Y.astype(np.float64) - T
        w = 1.0 if W is None else W[:, None]
        if G is not None:
            G[...] = 2.0 * d * w * scale
        terms = w * d * d
        if L is not None:
            L[...] = terms
        return float(terms.sum())

    def _robust_loss_loop(self, Y, T, W, G, L, kind, c, scale, n_threads):
        d = Y.astype(np.float64) - T
        a = np.abs(d)
        w = 1.0 if W is None else W[:, None]
        if kind == ROBUST_L1:
            terms, grad = a, np.sign(d)
        elif kind == ROBUST_HUBER:  # c = delta
            terms = np.where(a < c, 0.5 * d * d, c * (a - 0.5 * c))
            grad = np.where(a <= c, d, c * np.sign(d))
        else:  # smooth L1, c = beta > 0
            terms = np.where(a < c, 0.5 * d * d / c, a - 0.5 * c)
            grad = np.where(a < c, d / c, np.sign(d))
        terms = w * terms
        if G is not None:
            G[...] = grad * w * scale
        if L is not None:
            L[...] = terms
        return float(terms.sum())

    def _bce_with_logits_loss(self, Z, T, W, P, G, L, scale, n_threads):
        z = Z.astype(np.float64)
        t = T.astype(np.float64)
        w = 1.0 if W is None else W[:, None]
        e = np.exp(-np.abs(z))
        if P is None:
            # max(z, 0) - z t + log(1 + exp(-|z|)): stable for any logit size
            terms = np.maximum(z, 0) - z * t + np.log1p(e)
        else:
            # torch's pos_weight form: (1 - t) z + (1 + (p - 1) t) softplus(-z)
            log_weight = 1.0 + (P - 1.0) * t
            terms = (1.0 - t) * z + log_weight * (np.maximum(-z, 0) + np.log1p(e))
        terms = w * terms
        if G is not None:
            sig = _sigmoid(z)
            d = sig - t if P is None else (1.0 - t) - log_weight * (1.0 - sig)
            G[...] = d * w * scale
        if L is not None:
            L[...] = terms
        return float(terms.sum())

    def _softmax_cross_entropy_loss(self, Z, labels, W, G, L, scale, n_threads):
        z = Z.astype(np.float64)
        n = z.shape[0]
        w = np.ones(n) if W is None else W
        rows = np.arange(n)
        shifted = z - z.max(axis=1, keepdims=True)
        logsumexp = np.log(np.exp(shifted).sum(axis=1))
        terms = w * (logsumexp - shifted[rows, labels])
        if G is not None:
            p = np.exp(shifted - logsumexp[:, None])
            p[rows, labels] -= 1.0
            G[...] = p * (w * scale)[:, None]
        if L is not None:
            L[...] = terms
        return float(terms.sum())

    def _softmax_cross_entropy_smooth_loss(self, Z, labels, S, CW, smoothing, G, L, scale,
                                           n_threads):
        z = Z.astype(np.float64)
        n, k = z.shape
        s = np.ones(n) if S is None else S
        c = np.ones(k) if CW is None else CW
        rows = np.arange(n)
        shifted = z - z.max(axis=1, keepdims=True)
        logsumexp = np.log(np.exp(shifted).sum(axis=1))
        neg_logp = logsumexp[:, None] - shifted  # -log p_rc
        terms = s * ((1.0 - smoothing) * c[labels] * neg_logp[rows, labels]
                     + smoothing / k * (neg_logp * c).sum(axis=1))
        if G is not None:
            p = np.exp(-neg_logp)
            onehot = np.zeros_like(p)
            onehot[rows, labels] = 1.0
            grad = ((1.0 - smoothing) * c[labels][:, None] * (p - onehot)
                    + smoothing / k * (c.sum() * p - c))
            G[...] = grad * (s * scale)[:, None]
        if L is not None:
            L[...] = terms
        return float(terms.sum())

    def _batchnorm_forward_train(self, X, gamma, beta, running_mean, running_var, momentum,
                                 eps, Y, mean, invstd, kind, param, n_threads):
        x = X.astype(np.float64)
        n = x.shape[0]
        mean[...] = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        invstd[...] = 1.0 / np.sqrt(var + eps)
        Y[...] = (x - mean) * invstd * gamma + beta
        if kind != IDENTITY:
            Y[...] = act_forward(Y, kind, param)  # on the normalized values rounded to Y's dtype
        # In float64 and rounded once, as the kernel does: a Python float times a float32 array
        # is float32 arithmetic, which would round (1 - momentum) * running_mean early.
        running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
        running_var[...] = ((1.0 - momentum) * running_var.astype(np.float64)
                            + momentum * var * n / (n - 1))

    def _batchnorm_forward_eval(self, X, gamma, beta, running_mean, running_var, eps, Y, kind,
                                param, n_threads):
        invstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
        Y[...] = (X - running_mean.astype(np.float64)) * invstd * gamma + beta
        if kind != IDENTITY:
            Y[...] = act_forward(Y, kind, param)

    def _batchnorm_backward(self, dY, X, gamma, mean, invstd, Y, dgamma, dbeta, dX, kind, param,
                            n_threads):
        # dZ in the data dtype, exactly as activation_backward would hand it over
        dZ = dY if kind == IDENTITY else dY * act_derivative(None, Y, kind, param)
        dz = dZ.astype(np.float64)
        n = dz.shape[0]
        xhat = (X - mean) * invstd
        sum_dz = dz.sum(axis=0)
        sum_dz_xhat = (dz * xhat).sum(axis=0)
        if dbeta is not None:
            dbeta += sum_dz
        if dgamma is not None:
            dgamma += sum_dz_xhat
        dX[...] = gamma * invstd / n * (n * dz - sum_dz - xhat * sum_dz_xhat)

    def _rownorm_forward(self, X, gamma, beta, eps, Y, mean, invstd, n_threads):
        x = X.astype(np.float64)
        if mean is not None:  # LayerNorm: centered; RMSNorm: not
            m = x.mean(axis=1)
            mean[...] = m + (x - m[:, None]).mean(axis=1)  # refined: its rounding error added
            x = x - mean[:, None]
        invstd[...] = 1.0 / np.sqrt((x * x).mean(axis=1) + eps)
        y = x * invstd[:, None]
        if gamma is not None:
            y = y * gamma.astype(np.float64)
        if beta is not None:
            y = y + beta.astype(np.float64)
        Y[...] = y

    def _rownorm_backward(self, dY, X, gamma, mean, invstd, dgamma, dbeta, dX, n_threads):
        dy = dY.astype(np.float64)
        x = X.astype(np.float64)
        xhat = (x if mean is None else x - mean[:, None]) * invstd[:, None]
        g = dy if gamma is None else dy * gamma.astype(np.float64)
        centered = 0.0 if mean is None else g.mean(axis=1, keepdims=True)
        dX[...] = invstd[:, None] * ((g - centered) - xhat * (g * xhat).mean(axis=1,
                                                                           keepdims=True))
        if dbeta is not None:
            dbeta += dy.sum(axis=0)
        if dgamma is not None:
            dgamma += (dy * xhat).sum(axis=0)

    def _dropout_forward(self, X, threshold, scale, key, Y, mask, n_threads):
        counters = np.arange(1, X.size + 1, dtype=np.uint64)
        draws = mix64_array(np.uint64(key) + counters * np.uint64(GOLDEN64))
        mask[...] = (draws >> np.uint64(32)) >= np.uint64(threshold)
        Y[...] = X * mask * X.dtype.type(scale)

    def _dropout_backward(self, dY, mask, scale, dX, n_threads):
        dX[...] = dY * mask * dY.dtype.type(scale)

    # -- optimizers: the formulas written out, in the buffer's dtype, scalars rounded once.
    def _sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, l1,
                  nesterov, first_step, n_threads):
        t = param.dtype.type
        d = grad + t(weight_decay) * param
        if l1 != 0:
            d = d + t(l1) * _l1_sign(param)
        if momentum_buffer is not None:
            if first_step:
                momentum_buffer[...] = d  # torch: the first buffer is the gradient itself
            else:
                momentum_buffer[...] = (
                    t(momentum) * momentum_buffer + (t(1) - t(dampening)) * d
                )
            if nesterov:
                d = d + t(momentum) * momentum_buffer
            else:
                d = momentum_buffer.copy()
        param[...] = param - t(lr) * d

    def _adagrad_step(self, param, grad, state_sum, clr, weight_decay, l1, eps, n_threads):
        t = param.dtype.type
        d = grad + t(weight_decay) * param
        if l1 != 0:
            d = d + t(l1) * _l1_sign(param)
        state_sum[...] = state_sum + d * d
        param[...] = param - t(clr) * (d / (np.sqrt(state_sum) + t(eps)))

    def _rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, l1, momentum, n_threads):
        t = param.dtype.type
        one_minus_alpha = t(1) - t(alpha)
        d = grad + t(weight_decay) * param
        if l1 != 0:
            d = d + t(l1) * _l1_sign(param)
        square_avg[...] = t(alpha) * square_avg + one_minus_alpha * d * d
        if grad_avg is not None:
            grad_avg[...] = grad_avg + one_minus_alpha * (d - grad_avg)
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + t(eps)
        else:
            avg = np.sqrt(square_avg) + t(eps)
        if momentum_buffer is not None:
            momentum_buffer[...] = t(momentum) * momentum_buffer + d / avg
            param[...] = param - t(lr) * momentum_buffer
        else:
            param[...] = param - t(lr) * (d / avg)

    def _adam_moments(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, weight_decay, l1):
        """d (the decayed gradient), and exp_avg and exp_avg_sq updated: Adam's first half."""
        t = param.dtype.type
        d = grad + t(weight_decay) * param
        if l1 != 0:
            d = d + t(l1) * _l1_sign(param)
        exp_avg[...] = exp_avg + (t(1) - t(beta1)) * (d - exp_avg)
        exp_avg_sq[...] = t(beta2) * exp_avg_sq + (t(1) - t(beta2)) * d * d
        return d

    def _nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                    l1, decay, bc2, c1, c2, n_threads):
        t = param.dtype.type
        d = self._adam_moments(param, grad, exp_avg, exp_avg_sq, beta1, beta2, weight_decay, l1)
        denom = np.sqrt(exp_avg_sq / t(bc2)) + t(eps)
        param[...] = (param * t(decay) - t(c1) * (d / denom)) - t(c2) * (exp_avg / denom)

    def _radam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                    l1, decay, bc1, lr, bc2_sqrt, rect, n_threads):
        t = param.dtype.type
        self._adam_moments(param, grad, exp_avg, exp_avg_sq, beta1, beta2, weight_decay, l1)
        step = exp_avg / t(bc1) * t(lr)
        if rect > 0:
            step = step * (t(bc2_sqrt) / (np.sqrt(exp_avg_sq) + t(eps))) * t(rect)
        param[...] = param * t(decay) - step

    def _adam_step(self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, eps,
                   weight_decay, l1, decay, step_size, bc2_sqrt, n_threads):
        t = param.dtype.type
        d = grad + t(weight_decay) * param
        if l1 != 0:
            d = d + t(l1) * _l1_sign(param)
        exp_avg[...] = exp_avg + (t(1) - t(beta1)) * (d - exp_avg)
        exp_avg_sq[...] = t(beta2) * exp_avg_sq + (t(1) - t(beta2)) * d * d
        v = exp_avg_sq
        if max_exp_avg_sq is not None:
            max_exp_avg_sq[...] = np.maximum(max_exp_avg_sq, exp_avg_sq)
            v = max_exp_avg_sq
        denom = np.sqrt(v) / t(bc2_sqrt) + t(eps)
        param[...] = param * t(decay) - t(step_size) * (exp_avg / denom)

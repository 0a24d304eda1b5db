"""The fast backend: thin glue from the validated interface to the compiled kernels.

It inherits only the shared base, never ``NumpyBackend``: a kernel missing here fails loudly
instead of quietly running (and being tested against) the reference.
"""
import numpy as np

from ..tune import _planner
from .._kernels import activations as _activations
from .._kernels import batchnorm as _batchnorm
from .._kernels import dense as _dense
from .._kernels import dropout as _dropout
from .._kernels import losses as _losses
from .._kernels import optim as _optim
from .._kernels import rownorm as _rownorm
from .._kernels import sparse as _sparse
from .base import Backend
from .codes import kernel_params


class CythonBackend(Backend):
    """Typed, nogil, OpenMP Cython kernels; BLAS through scipy.linalg.cython_blas."""

    name = "cython"

    # (the kernels take an activation's parameter as two scalars: codes.kernel_params)
    def _activation_forward(self, X, Y, kind, param, n_threads):
        p, q = kernel_params(param)
        _activations.activation_forward(X, Y, kind, p, q, n_threads)

    def _activation_backward(self, dY, X, Y, dX, kind, param, n_threads):
        p, q = kernel_params(param)
        _activations.activation_backward(dY, X, Y, dX, kind, p, q, n_threads)

    def _softmax_forward(self, X, Y, n_threads):
        _activations.softmax_forward(X, Y, n_threads)

    def _softmax_backward(self, dY, Y, dX, n_threads):
        _activations.softmax_backward(dY, Y, dX, n_threads)

    # the products' strategies: the process's choice for the product (pynn.tune), the one a
    # plan, a compiled step and predict's program take too
    def _dense_forward(self, X, W, b, Y, kind, param, n_threads, Z=None):
        p, q = kernel_params(param)
        n, k = X.shape
        strategy = _planner.forward_strategy(n, k, W.shape[0], X.dtype, n_threads)
        _dense.dense_forward(X, W, b, Y, kind, p, q, n_threads, Z, strategy)

    def _dense_backward(self, dY, X, W, Y, dW, db, dX, kind, param, n_threads, Z=None):
        p, q = kernel_params(param)
        n, m = dY.shape
        strategy = _planner.backward_strategy(n, m, X.shape[1], X.dtype, n_threads,
                                              dW is not None, dX is not None)
        _dense.dense_backward(dY, X, W, Y, dW, db, dX, kind, p, q, n_threads, Z, strategy)

    def _sparse_dense_forward(self, data, indices, indptr, W, b, Y, kind, param, n_threads,
                              Z=None):
        p, q = kernel_params(param)
        _sparse.csr_dense_forward(data, indices, indptr, W, b, Y, kind, p, q, Z, n_threads)

    def _sparse_dense_backward(self, dZ, data, indices, indptr, n_cols, dW, db, n_threads):
        _sparse.csr_dense_backward(dZ, data, indices, indptr, dW, db, n_threads)

    def _mse_loss(self, Y, T, W, G, L, scale, n_threads):
        return _losses.mse_loss(Y, T, W, G, L, scale, n_threads)

    def _robust_loss_loop(self, Y, T, W, G, L, kind, c, scale, n_threads):
        return _losses.robust_loss(Y, T, W, G, L, kind, c, scale, n_threads)

    def _softmax_cross_entropy_smooth_loss(self, Z, labels, S, CW, smoothing, G, L, scale,
                                           n_threads):
        return _losses.softmax_cross_entropy_smooth_loss(Z, labels, S, CW, smoothing, G, L,
                                                         scale, n_threads)

    def _bce_with_logits_loss(self, Z, T, W, P, G, L, scale, n_threads):
        return _losses.bce_with_logits_loss(Z, T, W, P, G, L, scale, n_threads)

    def _softmax_cross_entropy_loss(self, Z, labels, W, G, L, scale, n_threads):
        return _losses.softmax_cross_entropy_loss(Z, labels, W, G, L, scale, n_threads)

    def _batchnorm_forward_train(self, X, gamma, beta, running_mean, running_var, momentum,
                                 eps, Y, mean, invstd, kind, param, n_threads):
        _batchnorm.batchnorm_forward_train(
            X, gamma, beta, running_mean, running_var, momentum, eps, Y, mean, invstd, kind,
            *kernel_params(param), n_threads
        )

    def _batchnorm_forward_eval(self, X, gamma, beta, running_mean, running_var, eps, Y, kind,
                                param, n_threads):
        _batchnorm.batchnorm_forward_eval(
            X, gamma, beta, running_mean, running_var, eps, Y, kind, *kernel_params(param),
            n_threads
        )

    def _batchnorm_backward(self, dY, X, gamma, mean, invstd, Y, dgamma, dbeta, dX, kind, param,
                            n_threads):
        _batchnorm.batchnorm_backward(
            dY, X, gamma, mean, invstd, Y, dgamma, dbeta, dX, kind, *kernel_params(param),
            n_threads
        )

    def _rownorm_forward(self, X, gamma, beta, eps, Y, mean, invstd, n_threads):
        _rownorm.rownorm_forward(X, gamma, beta, eps, Y, mean, invstd, n_threads)

    def _rownorm_backward(self, dY, X, gamma, mean, invstd, dgamma, dbeta, dX, n_threads):
        _rownorm.rownorm_backward(dY, X, gamma, mean, invstd, dgamma, dbeta, dX, n_threads)

    def _dropout_forward(self, X, threshold, scale, key, Y, mask, n_threads):
        _dropout.dropout_forward(X, threshold, scale, key, Y, mask, n_threads)

    def _dropout_backward(self, dY, mask, scale, dX, n_threads):
        _dropout.dropout_backward(dY, mask, scale, dX, n_threads)

    # -- optimizers: the kernels take an empty array for a switched-off state buffer.
    def _sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, l1,
                  nesterov, first_step, n_threads):
        _optim.sgd_step(param, grad, _or_empty(momentum_buffer, param), lr, momentum, dampening,
                        weight_decay, l1, nesterov, first_step, n_threads)

    def _adagrad_step(self, param, grad, state_sum, clr, weight_decay, l1, eps, n_threads):
        _optim.adagrad_step(param, grad, state_sum, clr, weight_decay, l1, eps, n_threads)

    def _rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps,
                      weight_decay, l1, momentum, n_threads):
        _optim.rmsprop_step(param, grad, square_avg, _or_empty(grad_avg, param),
                            _or_empty(momentum_buffer, param), lr, alpha, eps, weight_decay, l1,
                            momentum, n_threads)

    def _adam_step(self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, eps,
                   weight_decay, l1, decay, step_size, bc2_sqrt, n_threads):
        _optim.adam_step(param, grad, exp_avg, exp_avg_sq, _or_empty(max_exp_avg_sq, param),
                         beta1, beta2, eps, weight_decay, l1, decay, step_size, bc2_sqrt,
                         n_threads)


    def _nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                    l1, decay, bc2, c1, c2, n_threads):
        _optim.nadam_step(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay, l1,
                          decay, bc2, c1, c2, n_threads)

    def _radam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                    l1, decay, bc1, lr, bc2_sqrt, rect, n_threads):
        _optim.radam_step(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay, l1,
                          decay, bc1, lr, bc2_sqrt, rect, n_threads)


_EMPTY = {}


def _or_empty(a, like):
    """``a``, or a cached empty array of ``like``'s dtype (fused memoryviews need a typed array)."""
    if a is not None:
        return a
    e = _EMPTY.get(like.dtype)
    if e is None:
        e = _EMPTY[like.dtype] = np.empty(0, dtype=like.dtype)
    return e

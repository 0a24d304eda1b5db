"""Batch normalization's part of the backend interface (a mixin of ``Backend``): the checked
``batchnorm_forward_train`` (batch statistics, the running statistics updated in place),
``batchnorm_forward_eval`` (the running statistics) and ``batchnorm_backward``, each with an
activation fused in its epilogue; their abstract ``_batchnorm_*`` loops are declared with the
others in ``base.py``."""
import numpy as np

from .. import _threads
from .._checks import check_real
from ._arrays import _accumulator, _float_array, _ndim, _output, _same_shape
from .codes import IDENTITY, fused_activation_code


class BatchNormSteps:
    """BatchNorm of ``Backend`` (see the module doc)."""

    def _bn_params(self, X, gamma, beta):
        X = _float_array("X", X)
        _ndim("X", X, 2)
        f = X.shape[1]
        gamma = _float_array("gamma", gamma, X.dtype)
        _same_shape("gamma", gamma, (f,))
        beta = _float_array("beta", beta, X.dtype)
        _same_shape("beta", beta, (f,))
        return X, gamma, beta

    def batchnorm_forward_train(self, X, gamma, beta, running_mean, running_var,
                                momentum=0.1, eps=1e-5, out=None, *, activation=None,
                                param=None):
        """Normalize with batch statistics; update running stats in place (torch's convention).

        mean = X.mean(0); var = X.var(0) (biased, used to normalize);
        Y = act(gamma (X - mean) / sqrt(var + eps) + beta);
        running_mean = (1 - momentum) running_mean + momentum mean;
        running_var = (1 - momentum) running_var + momentum var * N / (N - 1).
        Returns (Y, mean, invstd) with mean and invstd = 1 / sqrt(var + eps) in float64.

        ``activation``/``param`` fuse an activation (BatchNorm -> ReLU as one op, no extra pass
        over memory); as for ``dense_forward``, only those whose derivative comes from the
        output. Pass the same activation and this Y to ``batchnorm_backward``.
        (Ioffe & Szegedy 2015, Batch Normalization.)
        """
        kind, param = fused_activation_code(activation, param, "batchnorm")
        X, gamma, beta = self._bn_params(X, gamma, beta)
        n, f = X.shape
        if n < 2:
            raise ValueError(
                f"X must have at least 2 rows for batch statistics in training mode, got {n}"
            )
        inputs = [("X", X), ("gamma", gamma), ("beta", beta)]
        running_mean = _accumulator("running_mean", running_mean, (f,), X.dtype, inputs=inputs)
        inputs.append(("running_mean", running_mean))
        running_var = _accumulator("running_var", running_var, (f,), X.dtype, inputs=inputs)
        inputs.append(("running_var", running_var))
        momentum = check_real("momentum", momentum, 0.0, 1.0)
        eps = check_real("eps", eps, 0.0, low_open=True)
        Y = _output("out", out, X.shape, X.dtype, inputs)
        mean = np.empty(f, dtype=np.float64)
        invstd = np.empty(f, dtype=np.float64)
        self._batchnorm_forward_train(
            X, gamma, beta, running_mean, running_var, momentum, eps, Y, mean, invstd, kind,
            param, _threads.threads_for(X.size),
        )
        return Y, mean, invstd

    def batchnorm_forward_eval(self, X, gamma, beta, running_mean, running_var, eps=1e-5,
                               out=None, *, activation=None, param=None):
        """Y = act(gamma (X - running_mean) / sqrt(running_var + eps) + beta).

        ``activation``/``param``: a fused activation, as in ``batchnorm_forward_train``.
        """
        kind, param = fused_activation_code(activation, param, "batchnorm")
        X, gamma, beta = self._bn_params(X, gamma, beta)
        f = X.shape[1]
        running_mean = _float_array("running_mean", running_mean, X.dtype)
        _same_shape("running_mean", running_mean, (f,))
        running_var = _float_array("running_var", running_var, X.dtype)
        _same_shape("running_var", running_var, (f,))
        eps = check_real("eps", eps, 0.0, low_open=True)
        Y = _output("out", out, X.shape, X.dtype,
                    [("X", X), ("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                     ("running_var", running_var)])
        self._batchnorm_forward_eval(
            X, gamma, beta, running_mean, running_var, eps, Y, kind, param,
            _threads.threads_for(X.size),
        )
        return Y

    def batchnorm_backward(self, dY, X, gamma, mean, invstd, dgamma, dbeta, out=None, *,
                           activation=None, param=None, Y=None):
        """dZ = dY * act'(Y); xhat = (X - mean) invstd; dbeta += sum(dZ); dgamma += sum(dZ xhat);
        dX = gamma invstd / N (N dZ - sum(dZ) - xhat sum(dZ xhat)). Sums over the batch axis.

        ``activation``/``param`` as given to the forward, and ``Y`` its output (post-activation;
        required unless the activation is the identity): then dZ replaces dY everywhere,
        recomputed from dY and Y in each pass rather than stored. ``dgamma``/``dbeta``
        accumulate; either may be None (frozen): dX is still computed, that sum is just not
        accumulated.
        """
        kind, param = fused_activation_code(activation, param, "batchnorm")
        dY = _float_array("dY", dY)
        _ndim("dY", dY, 2)
        n, f = dY.shape
        X = _float_array("X", X, dY.dtype)
        _same_shape("X", X, dY.shape)
        gamma = _float_array("gamma", gamma, dY.dtype)
        _same_shape("gamma", gamma, (f,))
        mean = _float_array("mean", mean, np.dtype(np.float64))
        _same_shape("mean", mean, (f,))
        invstd = _float_array("invstd", invstd, np.dtype(np.float64))
        _same_shape("invstd", invstd, (f,))
        if kind != IDENTITY:
            if Y is None:
                raise TypeError(
                    f"Y (the forward's output) is required with activation {activation!r}"
                )
            Y = _float_array("Y", Y, dY.dtype)
            _same_shape("Y", Y, dY.shape)
        else:
            Y = None  # not read: dZ is dY
        inputs = [("dY", dY), ("X", X), ("gamma", gamma), ("mean", mean), ("invstd", invstd),
                  ("Y", Y)]
        dgamma = _accumulator("dgamma", dgamma, (f,), dY.dtype, optional=True, inputs=inputs)
        inputs.append(("dgamma", dgamma))
        dbeta = _accumulator("dbeta", dbeta, (f,), dY.dtype, optional=True, inputs=inputs)
        inputs.append(("dbeta", dbeta))
        dX = _output("out", out, dY.shape, dY.dtype, inputs)
        self._batchnorm_backward(
            dY, X, gamma, mean, invstd, Y, dgamma, dbeta, dX, kind, param,
            _threads.threads_for(dY.size),
        )
        return dX

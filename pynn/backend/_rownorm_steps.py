"""Row normalization's part of the backend interface (a mixin of ``Backend``): the checked
``layernorm_forward``/``layernorm_backward`` and ``rmsnorm_forward``/``rmsnorm_backward``,
statistics per row over its features, and the two abstract loops both share (``_rownorm_*``:
an RMSNorm is a LayerNorm that does not subtract the mean)."""
import abc

import numpy as np

from .. import _threads
from .._checks import check_real
from ._arrays import _accumulator, _float_array, _ndim, _output, _same_shape


class RowNormSteps:
    """LayerNorm and RMSNorm of ``Backend`` (see the module doc)."""

    def _rownorm_params(self, X, gamma, beta):
        X = _float_array("X", X)
        _ndim("X", X, 2)
        f = X.shape[1]
        if gamma is not None:
            gamma = _float_array("gamma", gamma, X.dtype)
            _same_shape("gamma", gamma, (f,))
        if beta is not None:
            beta = _float_array("beta", beta, X.dtype)
            _same_shape("beta", beta, (f,))
        return X, gamma, beta

    def layernorm_forward(self, X, gamma=None, beta=None, eps=1e-5, out=None):
        """Per row: mean and var (biased) over its features; Y = (X - mean) / sqrt(var + eps)
        * gamma + beta (None: no scale, no shift). Returns (Y, mean, invstd), mean and invstd =
        1 / sqrt(var + eps) per row in float64. (Ba, Kiros & Hinton 2016, Layer
        Normalization.)"""
        X, gamma, beta = self._rownorm_params(X, gamma, beta)
        eps = check_real("eps", eps, 0.0, low_open=True)
        Y = _output("out", out, X.shape, X.dtype, [("X", X), ("gamma", gamma), ("beta", beta)])
        mean = np.empty(X.shape[0], np.float64)
        invstd = np.empty(X.shape[0], np.float64)
        self._rownorm_forward(X, gamma, beta, eps, Y, mean, invstd,
                              _threads.threads_for(X.size))
        return Y, mean, invstd

    def rmsnorm_forward(self, X, gamma=None, eps=None, out=None):
        """Per row: Y = X / sqrt(mean(X^2) + eps) * gamma (None: no scale); eps None is the
        machine epsilon of X's dtype (torch's). Returns (Y, invstd), invstd = 1 / sqrt(mean(X^2)
        + eps) per row in float64. (Zhang & Sennrich 2019, Root Mean Square Layer
        Normalization.)"""
        X, gamma, _ = self._rownorm_params(X, gamma, None)
        eps = (float(np.finfo(X.dtype).eps) if eps is None
               else check_real("eps", eps, 0.0, low_open=True))
        Y = _output("out", out, X.shape, X.dtype, [("X", X), ("gamma", gamma)])
        invstd = np.empty(X.shape[0], np.float64)
        self._rownorm_forward(X, gamma, None, eps, Y, None, invstd,
                              _threads.threads_for(X.size))
        return Y, invstd

    def _rownorm_grad(self, dY, X, gamma, mean, invstd, dgamma, dbeta, out):
        dY = _float_array("dY", dY)
        _ndim("dY", dY, 2)
        n, f = dY.shape
        X, gamma, _ = self._rownorm_params(X, gamma, None)
        _same_shape("X", X, dY.shape)
        if mean is not None:
            mean = _float_array("mean", mean, np.dtype(np.float64))
            _same_shape("mean", mean, (n,))
        invstd = _float_array("invstd", invstd, np.dtype(np.float64))
        _same_shape("invstd", invstd, (n,))
        inputs = [("dY", dY), ("X", X), ("gamma", gamma), ("mean", mean), ("invstd", invstd)]
        dgamma = _accumulator("dgamma", dgamma, (f,), dY.dtype, optional=True, inputs=inputs)
        inputs.append(("dgamma", dgamma))
        dbeta = _accumulator("dbeta", dbeta, (f,), dY.dtype, optional=True, inputs=inputs)
        inputs.append(("dbeta", dbeta))
        dX = _output("out", out, dY.shape, dY.dtype, inputs)
        self._rownorm_backward(dY, X, gamma, mean, invstd, dgamma, dbeta, dX,
                               _threads.threads_for(dY.size))
        return dX

    def layernorm_backward(self, dY, X, gamma, mean, invstd, dgamma=None, dbeta=None,
                           out=None):
        """With xhat = (X - mean) invstd and g = dY gamma (per row, gamma None: 1):
        dX = invstd (g - mean(g) - xhat mean(g xhat)); dgamma += sum(dY xhat) and dbeta +=
        sum(dY) over the rows, each unless None (accumulated: gradients add up until zeroed)."""
        if mean is None:
            raise TypeError("mean must be the array layernorm_forward returned, got None")
        return self._rownorm_grad(dY, X, gamma, mean, invstd, dgamma, dbeta, out)

    def rmsnorm_backward(self, dY, X, gamma, invstd, dgamma=None, out=None):
        """With xhat = X invstd and g = dY gamma: dX = invstd (g - xhat mean(g xhat));
        dgamma += sum(dY xhat) over the rows unless None."""
        return self._rownorm_grad(dY, X, gamma, None, invstd, dgamma, None, out)

    # ---------------------------------------------------------------- the loops
    @abc.abstractmethod
    def _rownorm_forward(self, X, gamma, beta, eps, Y, mean, invstd, n_threads):
        """Per row: mean (unless mean is None: RMSNorm, no centering) and invstd in float64;
        Y := (X - mean) invstd gamma + beta (gamma, beta None: 1, 0)."""

    @abc.abstractmethod
    def _rownorm_backward(self, dY, X, gamma, mean, invstd, dgamma, dbeta, dX, n_threads):
        """dX := invstd (g - mean(g) - xhat mean(g xhat)) (mean None: no mean(g) term and
        xhat = X invstd); dgamma, dbeta accumulated unless None; in float64."""

"""The backend interface, ``Backend``: the checked activation, softmax, dense and dropout steps
and the abstract loops; validation, allocation and scalars in Python, loops in the subclasses.

Every public method here checks its arguments (type, dtype, shape, contiguity, writeability),
allocates what the caller did not pass, computes the scalars a kernel needs and the thread count,
then calls one abstract ``_<op>`` method. ``NumpyBackend`` (the readable reference) and
``CythonBackend`` (the fast path) implement exactly those abstract methods, with identical
signatures, and nothing else: swapping backends changes speed, never results.

Abstract methods receive only validated arguments: plain (not subclassed), C-contiguous, aligned
arrays of one float dtype with the right shapes (inputs that are not are copied; such outputs are
refused), outputs writeable, ``n_threads >= 1``, and no array the call writes (``out``,
``grad_out``, ``mask_out``, gradients and running statistics updated in place, optimizer
buffers) sharing memory with another of its arguments: that raises ValueError naming both
("out must not share memory with X"). The only exceptions are the elementwise kernels that say
so in their docstrings (activations, dropout), where ``out`` may be its input exactly, in place.
The losses live in _loss_steps.py (``LossSteps``), batch normalization in _batchnorm_steps.py
(``BatchNormSteps``), the optimizer steps in _optim_steps.py (``OptimizerSteps``),
LayerNorm/RMSNorm in _rownorm_steps.py (``RowNormSteps``) and the sparse first layer's products
in _sparse_steps.py (``SparseSteps``), mixins of ``Backend``. The losses' and batch
normalization's loops are declared below, in ``Backend`` itself: ABCMeta counts only a class's
own abstract methods and its ABC bases', so a backend missing one of these cannot be built.
"""
import abc

import numpy as np

from .. import _threads
from .._checks import check_int, check_real
from ._arrays import _accumulator, _float_array, _ndim, _output, _same_shape, as_kernel_array
from ._batchnorm_steps import BatchNormSteps
from ._loss_steps import LossSteps
from ._optim_steps import OptimizerSteps
from ._rownorm_steps import RowNormSteps
from ._sparse_steps import SparseSteps
from .codes import (IDENTITY, MASK64, activation_code, dropout_key, dropout_threshold,
                    fused_activation_code, keeps_preactivation)


class Backend(LossSteps, BatchNormSteps, OptimizerSteps, RowNormSteps, SparseSteps, abc.ABC):
    """Shared Python side of every backend. Subclasses implement the ``_<op>`` loops only."""

    name = "abstract"

    # ---------------------------------------------------------------- activations
    def activation_forward(self, X, activation, param=None, out=None):
        """Y = act(X) elementwise, any shape.

        ``out`` may be X itself (in place: each element is read before it is written, and the
        threads split X and out alike); any other overlap with X raises ValueError.
        """
        kind, param = activation_code(activation, param)
        X = _float_array("X", X)
        Y = _output("out", out, X.shape, X.dtype, [("X", X)], in_place=("X",))
        self._activation_forward(
            X.reshape(-1), Y.reshape(-1), kind, param, _threads.threads_for(X.size)
        )
        return Y

    def activation_backward(self, dY, X, Y, activation, param=None, out=None):
        """dX = dY * act'(X), with act' taken from the cached output Y where the math allows.

        ``out`` may be dY, X or Y itself (in place: each loop reads element i of all three
        before writing element i of out, and the threads split them alike); any other overlap
        raises ValueError.
        """
        kind, param = activation_code(activation, param)
        dY = _float_array("dY", dY)
        X = _float_array("X", X, dY.dtype)
        Y = _float_array("Y", Y, dY.dtype)
        _same_shape("X", X, dY.shape)
        _same_shape("Y", Y, dY.shape)
        dX = _output("out", out, dY.shape, dY.dtype, [("dY", dY), ("X", X), ("Y", Y)],
                     in_place=("dY", "X", "Y"))
        self._activation_backward(
            dY.reshape(-1), X.reshape(-1), Y.reshape(-1), dX.reshape(-1), kind, param,
            _threads.threads_for(dY.size),
        )
        return dX

    def softmax_forward(self, X, out=None):
        """Y = softmax(X) along the last axis of a 2-D array, max-subtracted for stability."""
        X = _float_array("X", X)
        _ndim("X", X, 2)
        Y = _output("out", out, X.shape, X.dtype, [("X", X)])
        self._softmax_forward(X, Y, _threads.threads_for(X.size))
        return Y

    def softmax_backward(self, dY, Y, out=None):
        """dX = Y * (dY - rowsum(dY * Y))."""
        dY = _float_array("dY", dY)
        _ndim("dY", dY, 2)
        Y = _float_array("Y", Y, dY.dtype)
        _same_shape("Y", Y, dY.shape)
        dX = _output("out", out, dY.shape, dY.dtype, [("dY", dY), ("Y", Y)])
        self._softmax_backward(dY, Y, dX, _threads.threads_for(dY.size))
        return dX

    # ---------------------------------------------------------------- dense
    def dense_forward(self, X, W, b=None, activation=None, param=None, out=None, *,
                      preact_out=None):
        """Y = act(X @ W.T + b); W has shape (out_features, in_features).

        The activation must be computable backward from its output (``derivative_from_output``)
        unless ``preact_out``, an (N, out_features) array, receives Z = X @ W.T + b too, for
        ``dense_backward``'s Z (the smooth kinds' fusion: ``keeps_preactivation``). ``out``,
        ``preact_out`` must not share memory with X, W, b or each other.
        """
        kind, param = fused_activation_code(activation, param, "dense",
                                            preactivation=preact_out is not None)
        X = _float_array("X", X)
        _ndim("X", X, 2)
        W = _float_array("W", W, X.dtype)
        _ndim("W", W, 2)
        if W.shape[1] != X.shape[1]:
            raise ValueError(
                f"W must have shape (out_features, {X.shape[1]}) to match X {X.shape}, "
                f"got {W.shape}"
            )
        if b is not None:
            b = _float_array("b", b, X.dtype)
            _same_shape("b", b, (W.shape[0],))
        inputs = [("X", X), ("W", W), ("b", b)]
        Y = _output("out", out, (X.shape[0], W.shape[0]), X.dtype, inputs)
        Z = None
        if preact_out is not None:
            Z = _output("preact_out", preact_out, Y.shape, X.dtype, inputs + [("out", Y)])
        self._dense_forward(X, W, b, Y, kind, param, _threads.get_num_threads(), Z)
        return Y

    def dense_backward(self, dY, X, W, Y, dW, db=None, activation=None, param=None,
                       out=None, need_dX=True, *, Z=None):
        """dZ = dY * act'(Y); db += colsum(dZ); dW += dZ.T @ X; returns dX = dZ @ W.

        ``Z``: the pre-activation kept by ``dense_forward``'s ``preact_out``, act' then taken
        from it: required where the derivative needs it (Y may be None for the smooth kinds).
        ``dW`` and ``db`` accumulate (gradients add up until zeroed). Either may be None (a
        frozen weight or bias, or no bias): that gradient is not computed at all. With
        ``need_dX=False`` (the first layer) dX is not computed and None is returned.
        """
        kind, param = fused_activation_code(activation, param, "dense",
                                            preactivation=Z is not None)
        dY = _float_array("dY", dY)
        _ndim("dY", dY, 2)
        dtype = dY.dtype
        X = _float_array("X", X, dtype)
        _ndim("X", X, 2)
        W = _float_array("W", W, dtype)
        n, m = dY.shape
        _same_shape("W", W, (m, X.shape[1]))
        if X.shape[0] != n:
            raise ValueError(f"X must have {n} rows to match dY {dY.shape}, got {X.shape}")
        smooth = Z is not None and keeps_preactivation(kind)  # Y is not read
        Y = _float_array("Y", Y, dtype) if kind != IDENTITY and not (smooth and Y is None) \
            else None
        Z = _float_array("Z", Z, dtype) if kind != IDENTITY and Z is not None else None
        for name, a in (("Y", Y), ("Z", Z)):
            if a is not None:
                _same_shape(name, a, dY.shape)
        inputs = [("dY", dY), ("X", X), ("W", W), ("Y", Y), ("Z", Z)]
        dW = _accumulator("dW", dW, W.shape, dtype, optional=True, inputs=inputs)
        db = _accumulator("db", db, (m,), dtype, optional=True, inputs=inputs + [("dW", dW)])
        dX = (_output("out", out, X.shape, dtype, inputs + [("dW", dW), ("db", db)])
              if need_dX else None)
        self._dense_backward(dY, X, W, Y, dW, db, dX, kind, param, _threads.get_num_threads(),
                             Z)
        return dX

    # ---------------------------------------------------------------- dropout
    def dropout_forward(self, X, p, seed, step, out=None, mask_out=None):
        """Y = X * mask / (1 - p); mask[i] = 1 with probability 1 - p, drawn from (seed, step, i).

        Returns (Y, mask) with mask a uint8 array of X's shape; the same for any thread count.
        ``out`` may be X itself (in place: element i of X is read before element i of out is
        written, on every thread split); any other overlap, and any overlap of ``mask_out``
        with X or out, raises ValueError.
        """
        X = _float_array("X", X)
        p = check_real("p", p, 0.0, 1.0, high_open=True)
        seed = check_int("seed", seed, 0, MASK64, message="seed must be in [0, 2**64), got {value}")
        step = check_int("step", step, 0, MASK64, message="step must be in [0, 2**64), got {value}")
        Y = _output("out", out, X.shape, X.dtype, [("X", X)], in_place=("X",))
        mask = _output("mask_out", mask_out, X.shape, np.dtype(np.uint8),
                       [("X", X), ("out", Y)])
        self._dropout_forward(
            X.reshape(-1), dropout_threshold(p), 1.0 / (1.0 - p), dropout_key(seed, step),
            Y.reshape(-1), mask.reshape(-1), _threads.threads_for(X.size),
        )
        return Y, mask

    def dropout_backward(self, dY, mask, p, out=None):
        """dX = dY * mask / (1 - p), reusing the forward mask.

        ``out`` may be dY itself (in place, as in ``dropout_forward``), but not overlap mask.
        """
        dY = _float_array("dY", dY)
        if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8:
            raise TypeError("mask must be the uint8 array returned by dropout_forward")
        mask = as_kernel_array(mask)
        _same_shape("mask", mask, dY.shape)
        p = check_real("p", p, 0.0, 1.0, high_open=True)
        dX = _output("out", out, dY.shape, dY.dtype, [("dY", dY), ("mask", mask)],
                     in_place=("dY",))
        self._dropout_backward(
            dY.reshape(-1), mask.reshape(-1), 1.0 / (1.0 - p), dX.reshape(-1),
            _threads.threads_for(dY.size),
        )
        return dX

    # ---------------------------------------------------------------- the loops
    @abc.abstractmethod
    def _activation_forward(self, X, Y, kind, param, n_threads):
        """Y[i] = act(X[i]) over flat arrays."""

    @abc.abstractmethod
    def _activation_backward(self, dY, X, Y, dX, kind, param, n_threads):
        """dX[i] = dY[i] * act'(X[i]) over flat arrays (using Y[i] where the math allows)."""

    @abc.abstractmethod
    def _softmax_forward(self, X, Y, n_threads):
        """Row-wise stable softmax."""

    @abc.abstractmethod
    def _softmax_backward(self, dY, Y, dX, n_threads):
        """dX = Y * (dY - rowsum(dY * Y))."""

    @abc.abstractmethod
    def _dense_forward(self, X, W, b, Y, kind, param, n_threads, Z=None):
        """Y := act(X @ W.T + b); b may be None; Z (unless None) := X @ W.T + b."""

    @abc.abstractmethod
    def _dense_backward(self, dY, X, W, Y, dW, db, dX, kind, param, n_threads, Z=None):
        """dZ = dY * act'(Y) (act'(Z) from the kept pre-activation Z unless None); db +=
        colsum(dZ); dW += dZ.T @ X; dX := dZ @ W. dW, db and dX may each be None (not
        computed); Y is None for the identity, and may be None with Z for the smooth kinds."""

    # The loss loops return sum_r w_r l_r (W: float64 row weights, or None for all ones) and
    # write G := scale * its gradient and L := the weighted terms, each unless None.
    @abc.abstractmethod
    def _mse_loss(self, Y, T, W, G, L, scale, n_threads):
        """Return sum w_r (Y - T)**2 as a float; G, L as above."""

    @abc.abstractmethod
    def _robust_loss_loop(self, Y, T, W, G, L, kind, c, scale, n_threads):
        """Return sum w_r l(Y - T) of the robust loss ``kind`` (codes.ROBUST_*: L1, Huber with
        delta c, smooth L1 with beta c > 0) as a float; G, L as above."""

    @abc.abstractmethod
    def _bce_with_logits_loss(self, Z, T, W, P, G, L, scale, n_threads):
        """Return the weighted sum of the binary cross-entropies of logits Z (P: float64
        pos_weight per column, or None); G, L as above."""

    @abc.abstractmethod
    def _softmax_cross_entropy_loss(self, Z, labels, W, G, L, scale, n_threads):
        """Return the weighted sum of the softmax cross-entropies (labels: intp, in range);
        G, L (per row) as above."""

    @abc.abstractmethod
    def _softmax_cross_entropy_smooth_loss(self, Z, labels, S, CW, smoothing, G, L, scale,
                                           n_threads):
        """Return the sum of the label-smoothed softmax cross-entropies, row r's term
        S[r] ((1 - eps) CW[y_r] nll_r + eps / C sum_c CW[c] (-log p_rc)) (S, CW: float64
        sample and class weights, each None for ones); G, L (per row) as above."""

    @abc.abstractmethod
    def _batchnorm_forward_train(self, X, gamma, beta, running_mean, running_var, momentum,
                                 eps, Y, mean, invstd, kind, param, n_threads):
        """Batch statistics in float64 into mean/invstd, Y := act(normalized), and the
        running-stat update."""

    @abc.abstractmethod
    def _batchnorm_forward_eval(self, X, gamma, beta, running_mean, running_var, eps, Y, kind,
                                param, n_threads):
        """Y := act(normalized with the running statistics)."""

    @abc.abstractmethod
    def _batchnorm_backward(self, dY, X, gamma, mean, invstd, Y, dgamma, dbeta, dX, kind, param,
                            n_threads):
        """dZ = dY * act'(Y) (Y None for the identity: dZ is dY); dX, and dgamma/dbeta
        accumulated unless None; sums in float64."""

    @abc.abstractmethod
    def _dropout_forward(self, X, threshold, scale, key, Y, mask, n_threads):
        """mask[i] = (mix64(key + (i+1) GOLDEN64) >> 32) >= threshold; Y[i] = X[i] mask[i] scale."""

    @abc.abstractmethod
    def _dropout_backward(self, dY, mask, scale, dX, n_threads):
        """dX[i] = dY[i] * mask[i] * scale."""

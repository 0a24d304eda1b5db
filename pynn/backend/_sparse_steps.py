"""Sparse inputs' part of the backend interface (a mixin of ``Backend``): a Dense layer's
products with a SciPy sparse batch ``X`` (the data, so the first layer's), read from its CSR
arrays without densifying. No dX: the data has no gradient. The forward takes the activation
after it in the same call, as ``dense_forward`` does (its derivative then runs through
``activation_backward`` before ``sparse_dense_backward``)."""
import abc

from .. import _threads
from ._arrays import _accumulator, _float_array, _ndim, _output, _same_shape
from ._sparse import csr_arrays
from .codes import fused_activation_code


def sparse_threads(nnz, features):
    """Threads of a sparse product of ``nnz`` stored values with ``features`` output
    features (its work): the per-call kernels' and the compiled programs' choice."""
    return _threads.threads_for(nnz * features)


class SparseSteps:
    """``sparse_dense_forward``/``sparse_dense_backward`` of ``Backend`` (see the module doc)."""

    def sparse_dense_forward(self, X, W, b=None, out=None, activation=None, param=None, *,
                             preact_out=None):
        """Y = act(X @ W.T + b) for a SciPy sparse ``X`` (N, in_features) of W's dtype; W has
        shape (out_features, in_features). CSC and other formats are converted to CSR per
        call. The activation and ``preact_out`` (Z = X @ W.T + b) as in ``dense_forward``."""
        kind, param = fused_activation_code(activation, param, "dense",
                                            preactivation=preact_out is not None)
        W = _float_array("W", W)
        _ndim("W", W, 2)
        data, indices, indptr = csr_arrays("X", X, W.dtype, W.shape[1])
        if b is not None:
            b = _float_array("b", b, W.dtype)
            _same_shape("b", b, (W.shape[0],))
        inputs = [("X.data", data), ("W", W), ("b", b)]
        Y = _output("out", out, (X.shape[0], W.shape[0]), W.dtype, inputs)
        Z = None
        if preact_out is not None:
            Z = _output("preact_out", preact_out, Y.shape, W.dtype, inputs + [("out", Y)])
        self._sparse_dense_forward(data, indices, indptr, W, b, Y, kind, param,
                                   sparse_threads(data.size, W.shape[0]), Z)
        return Y

    def sparse_dense_backward(self, dZ, X, dW, db=None):
        """dW += dZ.T @ X and db += colsum(dZ) for the sparse ``X`` of the forward, dZ the
        gradient of its product (after the activation's derivative). Either may be None (a
        frozen weight or bias, no bias): not computed."""
        dZ = _float_array("dZ", dZ)
        _ndim("dZ", dZ, 2)
        n, m = dZ.shape
        data, indices, indptr = csr_arrays("X", X, dZ.dtype)
        if X.shape[0] != n:
            raise ValueError(f"X must have {n} rows to match dZ {dZ.shape}, got {X.shape}")
        k = X.shape[1]
        inputs = [("dZ", dZ), ("X.data", data)]
        dW = _accumulator("dW", dW, (m, k), dZ.dtype, optional=True, inputs=inputs)
        db = _accumulator("db", db, (m,), dZ.dtype, optional=True, inputs=inputs + [("dW", dW)])
        self._sparse_dense_backward(dZ, data, indices, indptr, k, dW, db,
                                    sparse_threads(data.size, m))

    @abc.abstractmethod
    def _sparse_dense_forward(self, data, indices, indptr, W, b, Y, kind, param, n_threads,
                              Z=None):
        """Y := act(X @ W.T + b) (activation code ``kind``), X = CSR(data, indices, indptr) of
        shape (Y.shape[0], W.shape[1]); b may be None; Z (or None) receives X @ W.T + b."""

    @abc.abstractmethod
    def _sparse_dense_backward(self, dZ, data, indices, indptr, n_cols, dW, db, n_threads):
        """dW += dZ.T @ X; db += colsum(dZ), X = CSR(data, indices, indptr) of shape
        (dZ.shape[0], n_cols); dW and db may each be None (not computed)."""

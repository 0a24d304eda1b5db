"""Sparse inputs' part of the backend interface (a mixin of ``Backend``): a Dense layer's
products with a SciPy sparse batch ``X`` (the data, so the first layer's), read from its CSR
arrays without densifying. No dX: the data has no gradient. An activation after it runs as
its own ``activation_forward``/``activation_backward`` (the dense kernels' fused epilogues live
inside their GEMM tiles)."""
import abc

from .. import _threads
from ._arrays import _accumulator, _float_array, _ndim, _output, _same_shape
from ._sparse import csr_arrays


class SparseSteps:
    """``sparse_dense_forward``/``sparse_dense_backward`` of ``Backend`` (see the module doc)."""

    def sparse_dense_forward(self, X, W, b=None, out=None):
        """Y = X @ W.T + b for a SciPy sparse ``X`` (N, in_features) of W's dtype; W has shape
        (out_features, in_features). CSC and other formats are converted to CSR per call."""
        W = _float_array("W", W)
        _ndim("W", W, 2)
        data, indices, indptr = csr_arrays("X", X, W.dtype, W.shape[1])
        if b is not None:
            b = _float_array("b", b, W.dtype)
            _same_shape("b", b, (W.shape[0],))
        Y = _output("out", out, (X.shape[0], W.shape[0]), W.dtype,
                    [("X.data", data), ("W", W), ("b", b)])
        self._sparse_dense_forward(data, indices, indptr, W, b, Y,
                                   _threads.threads_for(data.size * W.shape[0]))
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
                                    _threads.threads_for(data.size * m))

    @abc.abstractmethod
    def _sparse_dense_forward(self, data, indices, indptr, W, b, Y, n_threads):
        """Y := X @ W.T + b, X = CSR(data, indices, indptr) of shape (Y.shape[0], W.shape[1]);
        b may be None."""

    @abc.abstractmethod
    def _sparse_dense_backward(self, dZ, data, indices, indptr, n_cols, dW, db, n_threads):
        """dW += dZ.T @ X; db += colsum(dZ), X = CSR(data, indices, indptr) of shape
        (dZ.shape[0], n_cols); dW and db may each be None (not computed)."""

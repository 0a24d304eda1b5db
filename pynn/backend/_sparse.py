"""SciPy sparse inputs (scikit-learn's ``X``): recognizing one, the user-input check that makes it
a CSR matrix of the model's dtype once, and the backends' check of the three CSR arrays a
kernel reads (``csr_arrays``). Only the first layer's product takes one (``Dense``); nothing
here densifies."""
import sys

import numpy as np

from ._arrays import _all_finite, as_kernel_array

INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def is_sparse(X):
    """True for a SciPy sparse matrix or array. scipy.sparse is not imported for this: an
    ``X`` made by it means whoever made it already did."""
    module = sys.modules.get("scipy.sparse")
    return module is not None and module.issparse(X)


def as_sparse_array(name, X, dtype=None):
    """A user's sparse ``X`` as a 2-D CSR matrix (CSC, COO... converted once, here), of
    ``dtype`` when given, with finite data; ValueError naming ``name`` otherwise. Its rows are
    then sliced into batches without densifying."""
    import scipy.sparse

    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    X = X.tocsr() if X.format != "csr" else X
    if dtype is not None and X.dtype != dtype:
        with np.errstate(over="ignore"):
            X = X.astype(dtype)
    if not isinstance(X, scipy.sparse.csr_matrix):
        # one class throughout (csr_array's rows slice as 1-D for an int): batches are matrices
        X = scipy.sparse.csr_matrix(X)
    if X.dtype.kind == "f" and X.nnz and not _all_finite(X.data):
        raise ValueError(f"{name} contains NaN or Inf among its stored values"
                         f"{'; or a value too large for ' + np.dtype(dtype).name if dtype is not None else ''}")
    return X


def csr_arrays(name, X, dtype, features=None):
    """(data, indices, indptr) of sparse ``X`` for a kernel, after checking it: 2-D with
    ``features`` columns (None: any), of ``dtype`` (never cast: a TypeError as for dense inputs), finite,
    int32/int64 indices within [0, features) and an indptr running from 0 to nnz without going
    back (a kernel trusts all of it to index memory). CSC or another format is converted to CSR
    here: convert once beforehand (``as_sparse_array``) to pay for it once."""
    if not is_sparse(X):
        raise TypeError(f"{name} must be a SciPy sparse matrix, got {type(X).__name__}")
    if features is None and X.ndim == 2:
        features = X.shape[1]
    if X.ndim != 2 or X.shape[1] != features:
        raise ValueError(f"{name} must have shape (batch, {features}), got {X.shape}")
    if X.dtype != dtype:
        raise TypeError(f"{name} has dtype {X.dtype} but the other operands are {dtype}; "
                        f"convert it first (e.g. {name}.astype(np.{dtype}))")
    if X.format != "csr":
        X = X.tocsr()
    data, indices, indptr = X.data, X.indices, X.indptr
    if indices.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name}.indices must be int32 or int64, got {indices.dtype}")
    if indptr.dtype != indices.dtype:
        indptr = indptr.astype(indices.dtype)  # one fused index type per kernel call
    n = X.shape[0]
    nnz = indptr[-1] if indptr.size else 0
    if (indptr.shape != (n + 1,) or indptr[0] != 0 or data.shape[0] < nnz
            or indices.shape[0] < nnz or np.any(np.diff(indptr) < 0)):
        raise ValueError(f"{name} is not a valid CSR matrix: indptr must run from 0 to the "
                         "number of stored values without decreasing")
    data, indices = data[:nnz], indices[:nnz]
    if nnz and (indices.min() < 0 or indices.max() >= features):
        raise ValueError(f"{name} has column indices outside [0, {features})")
    if nnz and not _all_finite(data):
        raise ValueError(f"{name} contains NaN or Inf among its stored values")
    return as_kernel_array(data), as_kernel_array(indices), as_kernel_array(indptr)

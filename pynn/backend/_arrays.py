"""The backends' argument checks, each raising with the argument's name and what was expected:
arrays (type, dtype, shape, layout), outputs that must not share memory with the inputs, and the
losses' reductions, row weights and labels. ``pynn.backend.base`` runs them before every loop.
Also the check of the user's input arrays every entry point makes (``as_array``, re-exported
by ``pynn.data``): numeric, finite, converted once, with the compiled one-pass finite check."""
import numpy as np

from .. import _threads

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_kernel_array(a):
    """``a`` as the loops may read it: a plain ndarray, C-contiguous and aligned.

    A subclass is viewed as a plain ndarray: ``np.matrix`` redefines ``*`` and the reductions,
    so the reference would compute something else than the kernels. Strided or unaligned
    memory is copied, never read as if it were contiguous: the kernels read through
    ``float*``/``double*``, and a misaligned one is undefined behavior in C (x86 happens to
    tolerate it; strict-alignment CPUs and vector loads need not). Copies keep the shape
    (``np.ascontiguousarray`` would make a 0-d array 1-d).
    """
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if not (a.flags.c_contiguous and a.flags.aligned):
        a = np.require(a, requirements="CA")
    return a


def _float_array(name, a, dtype=None):
    """An input array: ndarray of float32/float64 (of ``dtype`` if given), made a plain,
    C-contiguous, aligned ndarray (``as_kernel_array``)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but the other operands are {dtype}")
    return as_kernel_array(a)


def _ndim(name, a, ndim):
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")


def _same_shape(name, a, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")


def _same_elements(a, b):
    """True when a and b are the same elements in the same order (both C-contiguous)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape and a.dtype == b.dtype
        and a.flags.c_contiguous and b.flags.c_contiguous
    )


def _check_disjoint(name, a, others, in_place=()):
    """Raise ValueError when ``a``, an array the call writes, may share memory with one of
    ``others``: (name, array) pairs of everything else the call reads or writes (None skipped).

    Kernels read their inputs in blocks and on several threads while they write ``a``, and BLAS
    assumes its operands are distinct, so an overlap feeds them values they have already
    overwritten, and the backends disagree (NumPy's temporaries hide most of it). An input that
    had to be copied to C order no longer shares memory and passes. ``np.may_share_memory``
    compares memory bounds only: constant time, and conservative (interleaved views that never
    touch one element are rejected too).

    ``in_place`` names the inputs ``a`` may be exactly (same first element, shape and dtype): for
    elementwise kernels whose every loop reads element i of that input before writing element i
    of ``a`` and splits both arrays alike across threads. Partial overlaps are still rejected.
    """
    for other, b in others:
        if b is None or not np.may_share_memory(a, b):
            continue
        if other in in_place:
            if _same_elements(a, b):
                continue
            raise ValueError(
                f"{name} must not share memory with {other} (except being {other} itself, "
                "element for element: in place)"
            )
        raise ValueError(f"{name} must not share memory with {other}")


def _output(name, out, shape, dtype, inputs=(), in_place=()):
    """Allocate an output, or check a caller's: right shape and dtype, C-contiguous, aligned,
    writeable, and no memory shared with ``inputs`` ((name, array) pairs; see
    ``_check_disjoint``)."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype} but the operands are {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is written in place)")
    if not out.flags.aligned:
        # a copy would not be written back: refuse, as for strided outputs
        raise ValueError(f"{name} must be aligned to its dtype's size (it is written in place)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; pass a writeable array")
    if type(out) is not np.ndarray:
        out = np.asarray(out)  # a plain view of the caller's memory (see as_kernel_array)
    _check_disjoint(name, out, inputs, in_place)
    return out


def _accumulator(name, a, shape, dtype, optional=False, inputs=()):
    """An array updated in place (gradients, running statistics): must exist and be writeable,
    and share no memory with ``inputs`` (the call reads them after or while updating it).

    ``optional``: None is accepted and passed on (a frozen parameter's gradient: the kernel
    skips that accumulation entirely).
    """
    if a is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a numpy.ndarray, got None")
    return _output(name, a, shape, dtype, inputs)


REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction):
    """One of torch's reduction names, else ValueError naming ``reduction``."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_batch_reduction(reduction, n, name):
    """``check_reduction``, and a batch of ``n`` rows the reduction is defined on (a mean over
    no rows is not): ValueError naming ``name``, the batch."""
    check_reduction(reduction)
    if n == 0 and reduction == "mean":
        raise ValueError(f"{name} is an empty batch; a mean loss over no samples is undefined")


def _weight_vector(name, weight, size):
    """Non-negative finite weights, shape (size,), as a C-contiguous float64 array."""
    if isinstance(weight, (list, tuple)):
        weight = np.asarray(weight)
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of weights, got {type(weight).__name__}")
    if weight.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {weight.dtype}")
    if weight.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {weight.shape}")
    weight = as_kernel_array(weight.astype(np.float64, copy=False))
    if size and not (np.all(np.isfinite(weight)) and weight.min() >= 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return weight


def row_weights(name, sample_weight, n):
    """Per-row weights as float64 (n,), or None when ``sample_weight`` is None."""
    return None if sample_weight is None else _weight_vector(name, sample_weight, n)


def _denominator(W, n):
    return float(n) if W is None else float(W.sum())


def _grad_scale(reduction, denom):
    if reduction != "mean":
        return 1.0
    return 1.0 / denom if denom > 0 else 0.0


def check_labels(name, labels, n, num_classes):
    """Integer class labels, shape (n,), each in [0, num_classes); returned as C-contiguous intp."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of integers, got {type(labels).__name__}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    return as_kernel_array(labels.astype(np.intp, copy=False))


# ---------------------------------------------------------------- user input (pynn.data.as_array)

def as_array(name, a, dtype=None, ndim=None):
    """``a`` as a NumPy array of a numeric type (converted to ``dtype`` when given), finite.

    Raises ValueError naming ``name`` for non-numeric values, NaN/Inf (also those created by the
    conversion, e.g. 1e300 to float32) and the wrong number of dimensions.
    """
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a numeric array, could not convert it: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if dtype is not None:
        with np.errstate(over="ignore"):
            arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.dtype.kind == "f" and arr.size and not _all_finite(arr):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)}"
            f"{'; or a value too large for ' + np.dtype(dtype).name if dtype is not None else ''})"
        )
    return arr


def _all_finite(arr):
    """``np.isfinite(arr).all()``; a large float32/float64 array in one threaded pass without
    the temporary (pynn._kernels.checks: a fit checks its whole input every call)."""
    if arr.size >= 1 << 16 and arr.dtype in (np.float32, np.float64) and arr.flags.c_contiguous:
        # imported here, like every kernel: `import pynn` works before the kernels are built
        from .._kernels.checks import all_finite

        return all_finite(arr.reshape(-1), _threads.threads_for(arr.size))
    return bool(np.isfinite(arr).all())

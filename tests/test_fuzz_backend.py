"""Property-based fuzzing of every public backend op (issue 11, item 1).

Each generated case calls one op of the NumPy reference and of the Cython backend with identical
arguments: random shapes (0- and 1-sized axes), dtypes (float32/64; float16, ints, bool, object,
complex, longdouble as invalid ones), layouts (Fortran order, strided, negative strides, zero
strides, read-only, unaligned), values (NaN, +-inf, +-1e30, denormals, signed zeros) and scalar
arguments (valid and invalid). The Cython result must be the reference's (NaN exactly where the
reference has NaN, the same infinities, finite values within a rounding-error bound of the
operation), or both must raise the same ValueError/TypeError naming an argument. A crash kills
the run, a hang trips the watchdog (see _fuzz.py).

Aliased outputs are checked by the tests at the end (and tests/test_backend.py), next to a
plain test for each deviation the fuzzing found.

``PYNN_FUZZ_PROFILE=long`` runs the long profile; the number of generated cases is printed at
the end of the run.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pynn.backend import Backend, backend_for

from _fuzz import (FLOATS, SETTINGS, BAD_SCALARS, Arr, assert_same, build, corrupt,
                   count, eps, finite_part, in_array, op_parameters, out_array, run, same_outcome)
from _fuzz import _watchdog, threads  # noqa: F401  (fixtures)

REF, FAST = backend_for("numpy"), backend_for("cython")
ACTIVATIONS = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "step", "square"]
DIMS = [2, 1, 0, 3, 4, 5, 7, 8, 16, 17, 33, 64]  # the first is what hypothesis shrinks to
SIZES_1D = [3, 0, 1, 2, 7, 16, 17, 100, 1023, 1024, 1025, 3001]
PARAMS = [None, None, 0.0, 0.01, 0.3, 1.0, 2.5, -0.5, 1e30, float("inf"), float("nan")]


def dim():
    return st.sampled_from(DIMS)


@st.composite
def any_shape(draw):
    nd = draw(st.integers(0, 3))
    shape = tuple(draw(dim()) for _ in range(nd))
    while np.prod(shape, dtype=np.int64) > 6000:
        shape = shape[1:]
    return shape


@st.composite
def maybe_corrupt(draw, args, arrays, scalars=()):
    """With probability ~1/4, make one argument invalid (array: dtype/shape/kind; scalar: NaN,
    a string, a bool, a huge int, ...)."""
    if draw(st.integers(0, 3)) != 3:  # 0, the simplest draw (hypothesis's favorite): valid
        return args, None
    args = dict(args)
    choices = [a for a in arrays if a in args] + [s for s in scalars if s in args]
    name = draw(st.sampled_from(choices))
    if name in scalars:
        args[name] = draw(st.sampled_from(BAD_SCALARS))
    else:
        args[name] = draw(corrupt(args[name]))
    return args, name


def call_both(op, args):
    """Call ``op`` on both backends with fresh copies of ``args``. Returns None when both
    raised the same error naming an argument, else (ref result, ref args, fast result, fast
    args) of two successful calls."""
    case = f"backend.{op}"
    count(case)
    names = op_parameters(Backend, op)
    ref_kw, fast_kw = build(args), build(args)
    ref = run(lambda: getattr(REF, op)(**ref_kw))
    fast = run(lambda: getattr(FAST, op)(**fast_kw))
    if same_outcome(ref, fast, names, case):
        return None
    return ref[1], ref_kw, fast[1], fast_kw


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def tiny(dtype):
    return float(np.finfo(dtype).tiny) * 4


def overflow_risk(bound, dtype):
    """Entries whose finite partial sums could overflow ``dtype`` in some summation order:
    there inf vs a large finite value depends on the order, in any correct implementation."""
    return bound > float(np.finfo(dtype).max) / 16


def check_out(args, kw, result):
    """When the caller passed ``out``, the result is that very array."""
    if isinstance(args.get("out"), Arr):
        assert result is kw["out"], "the result is not the caller's out array"


# ---------------------------------------------------------------------------- activations
@SETTINGS
@given(data=st.data())
def test_activation_forward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(any_shape())
    activation = data.draw(st.sampled_from(ACTIVATIONS + [None, "swish", 3]))
    args = {"X": data.draw(in_array(shape, dtype)), "activation": activation,
            "param": data.draw(st.sampled_from(PARAMS)), "out": data.draw(out_array(shape, dtype))}
    args, _ = data.draw(maybe_corrupt(args, ["X", "out"], ["param"]))
    got = call_both("activation_forward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    # few-ulp polynomial exp/tanh on float32 (Cephes); the exp clamp at -87.3 gives 1.2e-38
    # instead of a denormal (absolute error < 2e-38)
    tol = 64 * eps(dtype) * finite_part(r) + tiny(dtype) * 10
    assert_same(f, r, tol, what=f"activation_forward({activation})")


@SETTINGS
@given(data=st.data())
def test_activation_backward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(any_shape())
    activation = data.draw(st.sampled_from(ACTIVATIONS + [None]))
    param = data.draw(st.sampled_from(PARAMS))
    args = {"dY": data.draw(in_array(shape, dtype)), "X": data.draw(in_array(shape, dtype)),
            "Y": data.draw(in_array(shape, dtype)), "activation": activation, "param": param,
            "out": data.draw(out_array(shape, dtype))}
    args, _ = data.draw(maybe_corrupt(args, ["dY", "X", "Y", "out"], ["param"]))
    got = call_both("activation_backward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    x, y, dy = finite_part(rkw["X"]), finite_part(rkw["Y"]), finite_part(rkw["dY"])
    p = abs(float(param)) if isinstance(param, float) and np.isfinite(param) else 0.0
    tol = 16 * eps(dtype) * dy * (1 + 2 * x + y + y * y + p) + tiny(dtype)
    assert_same(f, r, tol, what=f"activation_backward({activation})")


@SETTINGS
@given(data=st.data())
def test_softmax_forward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k = data.draw(dim()), data.draw(dim())
    args = {"X": data.draw(in_array((n, k), dtype)), "out": data.draw(out_array((n, k), dtype))}
    args, _ = data.draw(maybe_corrupt(args, ["X", "out"]))
    got = call_both("softmax_forward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    tol = (64 + k) * eps(dtype) * finite_part(r) + tiny(dtype) * 10
    assert_same(f, r, tol, what="softmax_forward")


@SETTINGS
@given(data=st.data())
def test_softmax_backward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k = data.draw(dim()), data.draw(dim())
    args = {"dY": data.draw(in_array((n, k), dtype)), "Y": data.draw(in_array((n, k), dtype)),
            "out": data.draw(out_array((n, k), dtype))}
    args, _ = data.draw(maybe_corrupt(args, ["dY", "Y", "out"]))
    got = call_both("softmax_backward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    dy, y = finite_part(rkw["dY"]), finite_part(rkw["Y"])
    rows = (dy * y).sum(axis=1, keepdims=True)
    bound = y * (dy + rows)
    tol = 8 * (k + 4) * eps(dtype) * bound + tiny(dtype)
    # The row sum is accumulated in double in the kernel, in the dtype in the reference: a
    # row whose products overflow the dtype is inf/NaN there, finite here, even where y = 0.
    loose = overflow_risk(bound, dtype) | overflow_risk(np.maximum(rows, dy * y), dtype).any(
        axis=1, keepdims=True)
    assert_same(f, r, tol, loose, what="softmax_backward")


# Arrays a call writes in place (gradients, running statistics, optimizer state): unaligned one
# time in eight; base.py refuses that by name (a copy would not be written back), so more often
# would leave few cases to compare.
INPLACE_LAYOUTS = ["C"] * 7 + ["unaligned"]


# ---------------------------------------------------------------------------- dense
FUSABLE = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "step", None]


def _lipschitz(activation, param):
    p = 1.0 if param is None or not np.isfinite(param) else abs(float(param))
    return max(1.0, p) if activation in ("leaky_relu", "elu") else 1.0


@SETTINGS
@given(data=st.data())
def test_dense_forward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k, m = data.draw(dim()), data.draw(dim()), data.draw(dim())
    activation = data.draw(st.sampled_from(FUSABLE + ["square", "swish"]))
    param = data.draw(st.sampled_from(PARAMS))
    args = {"X": data.draw(in_array((n, k), dtype)), "W": data.draw(in_array((m, k), dtype)),
            "b": data.draw(st.one_of(st.none(), in_array((m,), dtype))),
            "activation": activation, "param": param,
            "out": data.draw(out_array((n, m), dtype))}
    args, _ = data.draw(maybe_corrupt(args, ["X", "W", "b", "out"], ["param"]))
    got = call_both("dense_forward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    X, W, b = rkw["X"], rkw["W"], rkw["b"]
    bound = finite_part(X) @ finite_part(W).T + (0 if b is None else finite_part(b))
    zerr = 4 * (k + 2) * eps(dtype) * bound + tiny(dtype)
    with np.errstate(all="ignore"):
        z64 = _f64(X) @ _f64(W).T + (0 if b is None else _f64(b))
    # Near a kink (ReLU at 0, the step) or with a steep slope, the sign of a rounded Z decides
    # the branch: both answers are right there.
    near_zero = np.isfinite(z64) & (np.abs(z64) <= 2 * zerr)
    loose = overflow_risk(bound, dtype) | near_zero
    tol = _lipschitz(activation, param) * zerr + 64 * eps(dtype) * finite_part(r)
    assert_same(f, r, tol, loose, what=f"dense_forward({activation})")


@SETTINGS
@given(data=st.data())
def test_dense_backward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k, m = data.draw(dim()), data.draw(dim()), data.draw(dim())
    activation = data.draw(st.sampled_from(FUSABLE))
    param = data.draw(st.sampled_from(PARAMS))
    need_dX = data.draw(st.booleans())
    args = {"dY": data.draw(in_array((n, m), dtype)), "X": data.draw(in_array((n, k), dtype)),
            "W": data.draw(in_array((m, k), dtype)), "Y": data.draw(in_array((n, m), dtype)),
            "dW": data.draw(in_array((m, k), dtype, layouts=INPLACE_LAYOUTS)),
            "db": data.draw(st.one_of(st.none(), in_array((m,), dtype, layouts=["C"]))),
            "activation": activation, "param": param,
            "out": data.draw(out_array((n, k), dtype)), "need_dX": need_dX}
    args, _ = data.draw(maybe_corrupt(args, ["dY", "X", "W", "Y", "dW", "db", "out"], ["param"]))
    got = call_both("dense_backward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    if need_dX:
        check_out(args, fkw, f)
    else:
        assert r is None and f is None
    identity = activation in ("identity", None)  # then Y is not used (not even checked)
    dy = finite_part(rkw["dY"])
    y = 0.0 if identity else finite_part(rkw["Y"])
    p = 0.0 if param is None or not np.isfinite(param) else abs(param)
    dz = dy if identity else dy * (1 + p + y + y * y)
    e = eps(dtype)
    db_bound = dz.sum(axis=0)
    dw_bound = dz.T @ finite_part(rkw["X"])
    if rkw["dW"] is None:  # a frozen weight (dW=None is valid): nothing accumulated
        assert fkw["dW"] is None
    else:
        w0 = finite_part(args["dW"].values)
        assert_same(fkw["dW"], rkw["dW"], 4 * (n + 2) * e * (dw_bound + w0)
                    + 2 * e * finite_part(rkw["dW"]) + tiny(dtype),
                    overflow_risk(dw_bound, dtype), what=f"dense_backward({activation}) dW")
    if rkw["db"] is not None:
        b0 = finite_part(args["db"].values)
        assert_same(fkw["db"], rkw["db"], 4 * (n + 2) * e * (db_bound + b0)
                    + 2 * e * finite_part(rkw["db"]) + tiny(dtype),
                    overflow_risk(db_bound, dtype), what=f"dense_backward({activation}) db")
    if need_dX:
        dx_bound = dz @ finite_part(rkw["W"])
        assert_same(f, r, 4 * (m + 2) * e * dx_bound + tiny(dtype),
                    overflow_risk(dx_bound, dtype), what=f"dense_backward({activation}) dX")


# ---------------------------------------------------------------------------- losses
def _check_value(f, r, tol, what):
    assert isinstance(f, float) and isinstance(r, float), (type(f), type(r))
    assert_same(np.float64(f), np.float64(r), tol, what=what)


@SETTINGS
@given(data=st.data())
def test_mse_loss(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = (data.draw(dim()), data.draw(dim()))
    need_grad = data.draw(st.booleans())
    args = {"Y": data.draw(in_array(shape, dtype)), "T": data.draw(in_array(shape, dtype)),
            "grad_out": data.draw(out_array(shape, dtype)), "need_grad": need_grad}
    args, _ = data.draw(maybe_corrupt(args, ["Y", "T", "grad_out"]))
    got = call_both("mse_loss", args)
    if got is None:
        return
    (rv, rg), rkw, (fv, fg), fkw = got
    with np.errstate(all="ignore"):
        d = finite_part(_f64(rkw["Y"]) - _f64(rkw["T"]))
    _check_value(fv, rv, 4 * d.size * eps(np.float64) * float((d * d).mean() if d.size else 0)
                 + 1e-300, "mse_loss value")
    if need_grad:
        assert_same(fg, rg, eps(dtype) * finite_part(rg), what="mse_loss grad")
    else:
        assert fg is None and rg is None


@SETTINGS
@given(data=st.data())
def test_bce_with_logits_loss(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = (data.draw(dim()), data.draw(dim()))
    need_grad = data.draw(st.booleans())
    args = {"Z": data.draw(in_array(shape, dtype)), "T": data.draw(in_array(shape, dtype)),
            "grad_out": data.draw(out_array(shape, dtype)), "need_grad": need_grad}
    args, _ = data.draw(maybe_corrupt(args, ["Z", "T", "grad_out"]))
    got = call_both("bce_with_logits_loss", args)
    if got is None:
        return
    (rv, rg), rkw, (fv, fg), fkw = got
    z, t = finite_part(rkw["Z"]), finite_part(rkw["T"])
    terms = z + z * t + 1
    size = max(z.size, 1)
    _check_value(fv, rv, 8 * size * eps(np.float64) * float(terms.mean() if z.size else 0)
                 + 1e-300, "bce value")
    if need_grad:
        assert_same(fg, rg, 8 * eps(np.float64) * (1 + t) / size
                    + 2 * eps(dtype) * finite_part(rg) + tiny(dtype), what="bce grad")
    else:
        assert fg is None and rg is None


@st.composite
def labels(draw, n, k):
    dt = draw(st.sampled_from([np.int64, np.int32, np.intp, np.uint8, np.int8, np.uint64]))
    hi = max(k, 1)
    seed = draw(st.integers(0, 2**32 - 1))
    lab = np.random.default_rng(seed).integers(0, hi, n)
    if n and draw(st.integers(0, 9)) == 0:
        lab[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, k, 255]))
    with np.errstate(all="ignore"):
        lab = lab.astype(dt)
    return Arr(lab, draw(st.sampled_from(["C", "C", "strided", "readonly", "negstride"])))


@SETTINGS
@given(data=st.data())
def test_softmax_cross_entropy_loss(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k = data.draw(dim()), data.draw(st.sampled_from(DIMS + [300, 5000]))
    if n * k > 20000:
        n = 3
    need_grad = data.draw(st.booleans())
    args = {"Z": data.draw(in_array((n, k), dtype)), "labels": data.draw(labels(n, k)),
            "grad_out": data.draw(out_array((n, k), dtype)), "need_grad": need_grad}
    args, _ = data.draw(maybe_corrupt(args, ["Z", "labels", "grad_out"]))
    got = call_both("softmax_cross_entropy_loss", args)
    if got is None:
        return
    (rv, rg), rkw, (fv, fg), fkw = got
    Z = finite_part(rkw["Z"])
    # float32 logits go through a few-ulp float exp in the fast path
    rel = 1e-6 if dtype == np.float32 else 1e-13
    # per row: logsumexp(z - max) (error ~ k ulps of the exp) + max - z[label] (exact terms,
    # one rounding of their magnitude)
    spread = float(2 * Z.max(axis=1, initial=0.0).mean()) if Z.size else 0.0
    _check_value(fv, rv, rel * (k + 8) * (1 + abs(rv) if np.isfinite(rv) else 1)
                 + 4 * eps(np.float64) * spread, "ce value")
    if need_grad:
        assert_same(fg, rg, rel * (k + 8) * (finite_part(rg) + 1.0 / max(n, 1))
                    + tiny(dtype) * 10, what="ce grad")
    else:
        assert fg is None and rg is None


# ---------------------------------------------------------------------------- batch norm
def _column_conditioning(X, eps_):
    """n eps64 max|x| / std per column: where it is not small, the statistics of a correct
    two-pass computation depend on the summation order (e.g. a constant 1e30 column)."""
    x = _f64(X)
    n = x.shape[0]
    with np.errstate(all="ignore"):
        fin = np.where(np.isfinite(x), x, 0.0)
        var = fin.var(axis=0) if n else np.zeros(x.shape[1])
        return n * eps(np.float64) * np.abs(fin).max(axis=0, initial=0.0) / np.sqrt(var + eps_)


@st.composite
def bn_scalars(draw):
    return {"momentum": draw(st.sampled_from([0.1, 0.0, 1.0, 0.5, 1e-300])),
            "eps": draw(st.sampled_from([1e-5, 1e-300, 1.0, 1e30]))}


@SETTINGS
@given(data=st.data())
def test_batchnorm_forward_train(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, fdim = data.draw(dim()), data.draw(dim())
    sc = data.draw(bn_scalars())
    args = {"X": data.draw(in_array((n, fdim), dtype)),
            "gamma": data.draw(in_array((fdim,), dtype)),
            "beta": data.draw(in_array((fdim,), dtype)),
            "running_mean": data.draw(in_array((fdim,), dtype, layouts=INPLACE_LAYOUTS)),
            "running_var": data.draw(in_array((fdim,), dtype, layouts=INPLACE_LAYOUTS)),
            **sc, "out": data.draw(out_array((n, fdim), dtype))}
    args, _ = data.draw(maybe_corrupt(
        args, ["X", "gamma", "beta", "running_mean", "running_var", "out"], ["momentum", "eps"]))
    got = call_both("batchnorm_forward_train", args)
    if got is None:
        return
    (rY, rm, ri), rkw, (fY, fm, fi), fkw = got
    check_out(args, fkw, fY)
    e = eps(dtype)
    cond = _column_conditioning(rkw["X"], sc["eps"])
    loose = ~(cond < 1e-9)
    x = finite_part(rkw["X"])
    assert_same(fm, rm, 4 * n * eps(np.float64) * x.max(axis=0, initial=0.0) + 1e-300,
                what="batchnorm mean")
    assert_same(fi, ri, 1e-9 * finite_part(ri) + 1e-300, loose, what="batchnorm invstd")
    with np.errstate(all="ignore"):
        xhat = finite_part((_f64(rkw["X"]) - rm) * ri)
    g, b = finite_part(rkw["gamma"]), finite_part(rkw["beta"])
    assert_same(fY, rY, 2 * e * finite_part(rY) + 1e-9 * (g * (xhat + 1) + b) + tiny(dtype),
                loose, what="batchnorm Y")
    for name in ("running_mean", "running_var"):
        old = finite_part(args[name].values)
        ref = _f64(rkw[name])
        scale = old + finite_part(rm) + (finite_part(1 / ri**2) * n if name == "running_var" else 0)
        # the batch statistics' own rounding (order-dependent: +-1e30 in a column cancels to
        # whatever the order leaves) reaches the running ones scaled by momentum
        xmax = x.max(axis=0, initial=0.0)
        stat_err = 4 * n * eps(np.float64) * (xmax if name == "running_mean" else
                                              4 * xmax * xmax * n / max(n - 1, 1))
        assert_same(fkw[name], rkw[name], 2 * e * finite_part(ref) + 1e-9 * scale
                    + sc["momentum"] * stat_err + tiny(dtype),
                    loose if name == "running_var" else None, what=f"batchnorm {name}")


@SETTINGS
@given(data=st.data())
def test_batchnorm_forward_eval(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, fdim = data.draw(dim()), data.draw(dim())
    args = {"X": data.draw(in_array((n, fdim), dtype)),
            "gamma": data.draw(in_array((fdim,), dtype)),
            "beta": data.draw(in_array((fdim,), dtype)),
            "running_mean": data.draw(in_array((fdim,), dtype)),
            "running_var": data.draw(in_array((fdim,), dtype)),
            "eps": data.draw(st.sampled_from([1e-5, 1e-300, 1e30])),
            "out": data.draw(out_array((n, fdim), dtype))}
    args, _ = data.draw(maybe_corrupt(
        args, ["X", "gamma", "beta", "running_mean", "running_var", "out"], ["eps"]))
    got = call_both("batchnorm_forward_eval", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    assert_same(f, r, 2 * eps(dtype) * finite_part(r) + tiny(dtype), what="batchnorm eval")


@SETTINGS
@given(data=st.data())
def test_batchnorm_backward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    n, fdim = data.draw(dim()), data.draw(dim())
    f64 = np.float64
    args = {"dY": data.draw(in_array((n, fdim), dtype)), "X": data.draw(in_array((n, fdim), dtype)),
            "gamma": data.draw(in_array((fdim,), dtype)),
            "mean": data.draw(in_array((fdim,), f64)), "invstd": data.draw(in_array((fdim,), f64)),
            "dgamma": data.draw(in_array((fdim,), dtype, layouts=INPLACE_LAYOUTS)),
            "dbeta": data.draw(in_array((fdim,), dtype, layouts=INPLACE_LAYOUTS)),
            "out": data.draw(out_array((n, fdim), dtype))}
    args, _ = data.draw(maybe_corrupt(
        args, ["dY", "X", "gamma", "mean", "invstd", "dgamma", "dbeta", "out"]))
    got = call_both("batchnorm_backward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    e, e64 = eps(dtype), eps(f64)
    dy = finite_part(rkw["dY"])
    with np.errstate(all="ignore"):
        xhat = finite_part((_f64(rkw["X"]) - _f64(rkw["mean"])) * _f64(rkw["invstd"]))
        s1, s2 = dy.sum(axis=0), (dy * xhat).sum(axis=0)
        coef = finite_part(_f64(rkw["gamma"]) * _f64(rkw["invstd"]) / max(n, 1))
        bound = coef * (n * dy + s1 + xhat * s2)
    tol = 8 * (n + 2) * e64 * bound + 2 * e * finite_part(r) + tiny(dtype)
    assert_same(f, r, tol, overflow_risk(bound, f64) | overflow_risk(coef * n * dy, dtype),
                what="batchnorm dX")
    for name, s in (("dbeta", s1), ("dgamma", s2)):
        if rkw[name] is None:  # frozen (None is valid): nothing accumulated
            assert fkw[name] is None
            continue
        old = finite_part(args[name].values)
        assert_same(fkw[name], rkw[name], 8 * (n + 2) * e64 * s + 2 * e * (
            finite_part(rkw[name]) + old) + tiny(dtype), overflow_risk(s, dtype),
            what=f"batchnorm {name}")


# ---------------------------------------------------------------------------- dropout
P_VALUES = [0.0, 0.1, 0.5, 0.9, 0.999, 1 - 2**-52]
SEEDS = [0, 1, 7, 2**63, 2**64 - 1]


def assert_identical(a, b, what):
    assert_same(a, b, 0.0, what=what)


@SETTINGS
@given(data=st.data())
def test_dropout_forward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(any_shape())
    args = {"X": data.draw(in_array(shape, dtype)), "p": data.draw(st.sampled_from(P_VALUES)),
            "seed": data.draw(st.sampled_from(SEEDS)), "step": data.draw(st.sampled_from(SEEDS)),
            "out": data.draw(out_array(shape, dtype)),
            "mask_out": data.draw(out_array(shape, np.uint8))}
    args, _ = data.draw(maybe_corrupt(args, ["X", "out", "mask_out"], ["p", "seed", "step"]))
    got = call_both("dropout_forward", args)
    if got is None:
        return
    (rY, rmask), rkw, (fY, fmask), fkw = got
    check_out(args, fkw, fY)
    assert_identical(fY, rY, "dropout Y")
    np.testing.assert_array_equal(fmask, rmask)


@SETTINGS
@given(data=st.data())
def test_dropout_backward(threads, data):
    dtype = data.draw(st.sampled_from(FLOATS))
    shape = data.draw(any_shape())
    seed = data.draw(st.integers(0, 2**32 - 1))
    mask = np.random.default_rng(seed).integers(0, 2, shape).astype(np.uint8)
    if mask.size and data.draw(st.booleans()):
        mask.reshape(-1)[0] = data.draw(st.sampled_from([2, 255]))  # not a 0/1 mask: still x * m
    args = {"dY": data.draw(in_array(shape, dtype)),
            "mask": Arr(mask, data.draw(st.sampled_from(["C", "F", "strided", "readonly",
                                                           "unaligned", "negstride"]))),
            "p": data.draw(st.sampled_from(P_VALUES)), "out": data.draw(out_array(shape, dtype))}
    args, _ = data.draw(maybe_corrupt(args, ["dY", "mask", "out"], ["p"]))
    got = call_both("dropout_backward", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    check_out(args, fkw, f)
    assert_identical(f, r, "dropout dX")


# ---------------------------------------------------------------------------- optimizers
# The fused kernels follow the reference's order of operations in the buffer's dtype without
# FMA contraction: results must be bit-identical, NaN patterns included.
@st.composite
def optim_arrays(draw, names):
    dtype = draw(st.sampled_from(FLOATS))
    n = draw(st.sampled_from(SIZES_1D))
    regime = draw(st.sampled_from(["finite", "finite", "special", "extreme"]))
    out = {"param": draw(in_array((n,), dtype, ["C"], regime)),
           "grad": draw(in_array((n,), dtype, regime=regime))}
    for name in names:
        values = draw(in_array((n,), dtype, ["C"], regime))
        if name in ("state_sum", "square_avg", "exp_avg_sq", "max_exp_avg_sq"):
            values.values = np.abs(values.values)  # sums of squares: non-negative as in use
        out[name] = values
    # at most one written array unaligned (see INPLACE_LAYOUTS)
    victim = draw(st.sampled_from([None] * 7 + ["param", *names]))
    if victim is not None:
        out[victim].layout = "unaligned"
    return dtype, out


LRS = [0.1, 0.0, 1e-3, 10.0, 1e30]


def _compare_states(rkw, fkw, names, what, loose=None):
    for name in names:
        # (a switched-off state, e.g. momentum_buffer with momentum 0, is ignored by the op
        # whatever it holds)
        if isinstance(rkw.get(name), np.ndarray) and rkw[name].dtype in FLOATS:
            assert_same(fkw[name], rkw[name], 0.0, loose, what=f"{what} {name}")


@SETTINGS
@given(data=st.data())
def test_sgd_step(threads, data):
    momentum = data.draw(st.sampled_from([0.0, 0.0, 0.9, 0.5, 1.0]))
    nesterov = data.draw(st.booleans()) and momentum > 0
    dtype, arrays = data.draw(optim_arrays(["momentum_buffer"]))
    if momentum == 0 and data.draw(st.booleans()):
        arrays["momentum_buffer"] = None
    args = {**arrays, "lr": data.draw(st.sampled_from(LRS)), "momentum": momentum,
            "dampening": 0.0 if nesterov else data.draw(st.sampled_from([0.0, 0.1, 1.0])),
            "weight_decay": data.draw(st.sampled_from([0.0, 1e-2, 1.0])),
            "l1": data.draw(st.sampled_from([0.0, 0.0, 1e-3])), "nesterov": nesterov,
            "first_step": data.draw(st.booleans())}
    args, _ = data.draw(maybe_corrupt(args, ["param", "grad", "momentum_buffer"],
                                      ["lr", "momentum", "dampening", "weight_decay", "l1"]))
    got = call_both("sgd_step", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    assert f is fkw["param"]
    _compare_states(rkw, fkw, ["param", "momentum_buffer"], "sgd")


@SETTINGS
@given(data=st.data())
def test_adagrad_step(threads, data):
    dtype, arrays = data.draw(optim_arrays(["state_sum"]))
    args = {**arrays, "step": data.draw(st.sampled_from([1, 2, 10, 2**40])),
            "lr": data.draw(st.sampled_from(LRS)),
            "lr_decay": data.draw(st.sampled_from([0.0, 0.01, 1e30])),
            "weight_decay": data.draw(st.sampled_from([0.0, 1e-2])),
            "l1": data.draw(st.sampled_from([0.0, 1e-3])),
            "eps": data.draw(st.sampled_from([1e-10, 0.0, 1.0]))}
    args, _ = data.draw(maybe_corrupt(args, ["param", "grad", "state_sum"],
                                      ["step", "lr", "lr_decay", "weight_decay", "l1", "eps"]))
    got = call_both("adagrad_step", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    _compare_states(rkw, fkw, ["param", "state_sum"], "adagrad")


@SETTINGS
@given(data=st.data())
def test_rmsprop_step(threads, data):
    momentum = data.draw(st.sampled_from([0.0, 0.9]))
    dtype, arrays = data.draw(optim_arrays(["square_avg", "grad_avg", "momentum_buffer"]))
    if not data.draw(st.booleans()):
        arrays["grad_avg"] = None  # not centered
    if momentum == 0:
        arrays["momentum_buffer"] = None
    args = {**arrays, "lr": data.draw(st.sampled_from(LRS)),
            "alpha": data.draw(st.sampled_from([0.99, 0.0, 1.0, 0.5])),
            "eps": data.draw(st.sampled_from([1e-8, 0.0])),
            "weight_decay": data.draw(st.sampled_from([0.0, 1e-2])),
            "l1": data.draw(st.sampled_from([0.0, 1e-3])), "momentum": momentum}
    args, _ = data.draw(maybe_corrupt(
        args, ["param", "grad", "square_avg", "grad_avg", "momentum_buffer"],
        ["lr", "alpha", "eps", "weight_decay", "l1", "momentum"]))
    got = call_both("rmsprop_step", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    _compare_states(rkw, fkw, ["param", "square_avg", "grad_avg", "momentum_buffer"], "rmsprop")


@SETTINGS
@given(data=st.data())
def test_adam_step(threads, data):
    dtype, arrays = data.draw(optim_arrays(["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]))
    if not data.draw(st.booleans()):
        arrays["max_exp_avg_sq"] = None  # no amsgrad
    args = {**arrays, "step": data.draw(st.sampled_from([1, 2, 10, 10**6])),
            "lr": data.draw(st.sampled_from(LRS)),
            "beta1": data.draw(st.sampled_from([0.9, 0.0, 0.5])),
            "beta2": data.draw(st.sampled_from([0.999, 0.0, 0.5])),
            "eps": data.draw(st.sampled_from([1e-8, 0.0])),
            "weight_decay": data.draw(st.sampled_from([0.0, 1e-2])),
            "l1": data.draw(st.sampled_from([0.0, 1e-3])),
            "decoupled_weight_decay": data.draw(st.booleans())}
    args, _ = data.draw(maybe_corrupt(
        args, ["param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        ["step", "lr", "beta1", "beta2", "eps", "weight_decay", "l1"]))
    got = call_both("adam_step", args)
    if got is None:
        return
    r, rkw, f, fkw = got
    _compare_states(rkw, fkw, ["param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"], "adam")


# ---------------------------------------------------------------------------- findings
def _ones(*shape, dtype=np.float32):
    return np.ones(shape, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_amsgrad_max_propagates_nan_like_the_reference(dtype):
    out = {}
    for be in (REF, FAST):
        p, g = np.ones(3, dtype), np.ones(3, dtype)
        m, v, vmax = np.zeros(3, dtype), np.array([np.nan, 0, 0], dtype), np.ones(3, dtype)
        be.adam_step(p, g, m, v, vmax, step=1, lr=0.1)
        out[be.name] = (p, vmax)
    # np.maximum (and torch.maximum) propagate the NaN second moment into the max and the step
    assert np.isnan(out["numpy"][1][0]) and np.isnan(out["numpy"][0][0])
    np.testing.assert_array_equal(out["cython"][1], out["numpy"][1])
    np.testing.assert_array_equal(out["cython"][0], out["numpy"][0])
    # a NaN already in the max stays there, as in np.maximum
    for be in (REF, FAST):
        p, g, m, v = (np.ones(3, dtype) for _ in range(4))
        vmax = np.array([np.nan, 0, 0], dtype)
        be.adam_step(p, g, m, v, vmax, step=1, lr=0.1)
        assert np.isnan(vmax[0]) and np.isnan(p[0]) and np.isfinite(vmax[1:]).all(), be.name


@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_batchnorm_running_statistics_reference_stays_in_double(name):
    # column 0: cancellation in running_mean; column 1: a plain rounding step in running_var
    X = np.array([[364.43567657, 6.049001216888428], [364.43567657, -0.35669374465942383]],
                 np.float32)
    old = np.array([-39.094715, 91.2842788696289], np.float32)
    out = {}
    for be in (REF, FAST):
        rm, rv = old.copy(), old.copy()
        be.batchnorm_forward_train(X, np.ones(2, np.float32), np.zeros(2, np.float32), rm, rv)
        out[be.name] = {"running_mean": rm, "running_var": rv}[name]
    x = X.astype(np.float64)
    exact = {"running_mean": 0.9 * old.astype(np.float64) + 0.1 * x.mean(0),
             "running_var": 0.9 * old.astype(np.float64) + 0.1 * x.var(0) * 2}[name]
    np.testing.assert_array_equal(out["cython"], exact.astype(np.float32))
    np.testing.assert_array_equal(out["numpy"], exact.astype(np.float32))


@pytest.mark.parametrize("activation,X,Y", [
    ("sigmoid", [1.0, 1.0], [1e30, 3e19]),
    ("square", [3e38, 1e30], [0.0, 0.0]),
])
def test_float32_activation_backward_rounds_like_the_reference(activation, X, Y):
    dY = np.array([0.0, 1e-30], np.float32)
    X, Y = np.array(X, np.float32), np.array(Y, np.float32)
    with np.errstate(all="ignore"):
        ref = REF.activation_backward(dY, X, Y, activation)
        fast = FAST.activation_backward(dY, X, Y, activation)
    np.testing.assert_array_equal(fast, ref)


def _unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = buf[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned and u.flags.c_contiguous
    return u


# Calls whose unaligned arrays are all inputs: copied before any kernel sees them.
UNALIGNED_INPUTS = [
    ("activation_forward", "_activation_forward",
     lambda be, U: be.activation_forward(U(_ones(4, 8) / 3), "tanh")),
    ("activation_backward", "_activation_backward",
     lambda be, U: be.activation_backward(U(_ones(4, 8)), U(_ones(4, 8) / 3),
                                          U(_ones(4, 8) / 5), "sigmoid")),
    ("dense_forward", "_dense_forward",
     lambda be, U: be.dense_forward(U(_ones(4, 8) / 3), _ones(3, 8), U(_ones(3)))),
    ("mse_loss", "_mse_loss", lambda be, U: be.mse_loss(U(_ones(4, 8) / 3), _ones(4, 8))[0]),
    ("batchnorm_backward", "_batchnorm_backward",
     lambda be, U: be.batchnorm_backward(U(_ones(4, 8) / 3), _ones(4, 8), _ones(8),
                                         U(np.zeros(8)), U(np.ones(8)), None, None)),
]
# Arrays the call writes: a copy would not be written back, so they are refused by name.
UNALIGNED_OUTPUTS = [
    ("out", lambda be, U: be.activation_forward(_ones(4, 8), "tanh", out=U(_ones(4, 8)))),
    ("running_mean", lambda be, U: be.batchnorm_forward_train(
        _ones(4, 8), _ones(8), _ones(8), U(_ones(8)), _ones(8))),
    ("running_var", lambda be, U: be.batchnorm_forward_train(
        _ones(4, 8), _ones(8), _ones(8), _ones(8), U(_ones(8)))),
    ("param", lambda be, U: be.adam_step(U(_ones(64)), _ones(64), _ones(64), _ones(64),
                                         step=1, lr=0.1)),
    ("exp_avg", lambda be, U: be.adam_step(_ones(64), _ones(64), U(_ones(64)), _ones(64),
                                           step=1, lr=0.1)),
    ("dW", lambda be, U: be.dense_backward(_ones(4, 3), _ones(4, 8), _ones(3, 8), None,
                                           U(_ones(3, 8)))),
]


@pytest.mark.parametrize("what,kernel,call", UNALIGNED_INPUTS,
                         ids=[c[0] for c in UNALIGNED_INPUTS])
def test_kernels_never_see_unaligned_arrays(monkeypatch, what, kernel, call):
    seen = []
    real = getattr(type(FAST), kernel)

    def spy(self, *args):
        seen.extend(a.flags.aligned for a in args if isinstance(a, np.ndarray))
        return real(self, *args)

    monkeypatch.setattr(type(FAST), kernel, spy)
    got = call(FAST, _unaligned)
    assert seen and all(seen), f"{kernel} got an unaligned array"
    # the copies hold the same values: the result is the aligned call's, on both backends
    for be in (REF, FAST):
        np.testing.assert_array_equal(call(be, _unaligned), call(be, lambda a: a))
    np.testing.assert_array_equal(got, call(FAST, lambda a: a))


@pytest.mark.parametrize("name,call", UNALIGNED_OUTPUTS, ids=[c[0] for c in UNALIGNED_OUTPUTS])
def test_unaligned_outputs_are_refused_by_name(name, call):
    for be in (REF, FAST):
        with pytest.raises(ValueError, match=rf"^{name} must be aligned"):
            call(be, _unaligned)


class _Sub(np.ndarray):
    pass


SUBCLASS_CALLS = [
    ("activation_forward", lambda A: (A(3, 4), "relu")),
    ("softmax_forward", lambda A: (A(3, 4),)),
    ("mse_loss", lambda A: (A(3, 4), A(3, 4))),
    ("dropout_forward", lambda A: (A(3, 4), 0.5, 1, 1)),
]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("op,make", SUBCLASS_CALLS, ids=[c[0] for c in SUBCLASS_CALLS])
def test_ndarray_subclasses_are_converted(op, make):
    # np.matrix redefines * and the reductions: both backends view it as a plain ndarray, so
    # the result is the plain arrays' one (and a plain ndarray)
    mat = lambda *s: np.matrix(np.ones(s, np.float32) / 3)  # noqa: E731
    plain = lambda *s: np.ones(s, np.float32) / 3  # noqa: E731
    for be in (REF, FAST):
        got, expected = getattr(be, op)(*make(mat)), getattr(be, op)(*make(plain))
        got = got if isinstance(got, tuple) else (got,)
        expected = expected if isinstance(expected, tuple) else (expected,)
        for a, b in zip(got, expected):
            assert type(a) is type(b)
            np.testing.assert_array_equal(a, b)
    # an output may be a subclass too: written in place, the same memory
    out = np.matrix(np.zeros((3, 4), np.float32))
    for be in (REF, FAST):
        Y = be.activation_forward(np.ones((3, 4), np.float32), "relu", out=out)
        assert type(Y) is np.ndarray and np.shares_memory(Y, out)
        np.testing.assert_array_equal(out, 1)
        out[...] = 0


def test_plain_ndarray_subclasses_work_like_arrays():
    X = np.ones((3, 4), np.float32).view(_Sub)
    for be in (REF, FAST):
        np.testing.assert_array_equal(be.activation_forward(X, "relu"), np.ones((3, 4)))


@pytest.mark.parametrize("param,error", [("x", TypeError), ([0.1], TypeError), (True, TypeError),
                                         (1 + 1j, TypeError), (np.array(0.1), TypeError),
                                         (10**400, ValueError)])
def test_activation_param_errors_name_the_argument(param, error):
    for be in (REF, FAST):
        with pytest.raises(error, match=r"^param must"):
            be.activation_forward(_ones(2, 2), "leaky_relu", param=param)
    # any real number is a slope, inf and NaN included (they propagate like the reference)
    for param in (2, np.float32(0.5), np.int64(3), float("inf"), float("nan")):
        for be in (REF, FAST):
            be.activation_forward(-_ones(2, 2), "leaky_relu", param=param)


@pytest.mark.parametrize("call", [
    lambda b: b.adam_step(_ones(3), _ones(3), _ones(3), _ones(3), step=1, lr=10**400),
    lambda b: b.dropout_forward(_ones(3), 10**400, 1, 1),
    lambda b: b.batchnorm_forward_eval(_ones(2, 2), _ones(2), _ones(2), _ones(2), _ones(2),
                                       eps=10**400),
    # the step count: beta ** step and (step - 1) * lr_decay overflowed (long-profile finding)
    lambda b: b.adam_step(_ones(3), _ones(3), _ones(3), _ones(3), step=10**400, lr=0.1),
    lambda b: b.adagrad_step(_ones(3), _ones(3), _ones(3), step=2**63, lr=0.1),
], ids=["adam-lr", "dropout-p", "batchnorm-eps", "adam-step", "adagrad-step"])
def test_huge_python_ints_raise_value_error_naming_the_argument(call):
    for be in (REF, FAST):
        with pytest.raises(ValueError, match=r"^(lr|p|eps|step) must be"):
            call(be)
    # the largest step count still runs (bias corrections of 1)
    for be in (REF, FAST):
        p = _ones(3)
        be.adam_step(p, _ones(3), _ones(3), _ones(3), step=2**63 - 1, lr=0.1)
        assert np.isfinite(p).all()


def test_rmsprop_momentum_is_checked_before_it_is_used():
    # momentum="0.1" met `momentum > 0` before check_real: "'>' not supported between
    # instances of 'str' and 'int'"
    for be in (REF, FAST):
        with pytest.raises(TypeError, match=r"^momentum must be a real number"):
            be.rmsprop_step(_ones(3), _ones(3), _ones(3), lr=0.1, momentum="0.1")


# Aliased outputs: an output sharing memory with an input of the same call raises ValueError
# naming both, on every backend (dense_forward with out=X would write the bias rows over X before
# the GEMM reads it). The elementwise kernels may write exactly over an input (in place).
def _alias_cases():
    A = _ones
    cases = [
        ("activation_forward", lambda X: dict(X=X, activation="relu", out=X), (4, 4)),
        ("activation_backward", lambda X: dict(dY=X, X=A(4, 4), Y=A(4, 4), activation="tanh",
                                               out=X), (4, 4)),
        ("softmax_forward", lambda X: dict(X=X, out=X), (4, 4)),
        ("softmax_backward", lambda X: dict(dY=A(4, 4), Y=X, out=X), (4, 4)),
        ("dense_forward", lambda X: dict(X=X, W=A(4, 4), b=A(4), out=X), (4, 4)),
        ("dense_backward", lambda X: dict(dY=A(4, 4), X=X, W=A(4, 4), Y=None, dW=X), (4, 4)),
        ("mse_loss", lambda X: dict(Y=X, T=A(4, 4), grad_out=X), (4, 4)),
        ("bce_with_logits_loss", lambda X: dict(Z=X, T=A(4, 4), grad_out=X), (4, 4)),
        ("softmax_cross_entropy_loss", lambda X: dict(Z=X, labels=np.zeros(4, np.int64),
                                                      grad_out=X), (4, 4)),
        ("batchnorm_forward_train", lambda X: dict(X=X, gamma=A(4), beta=A(4), running_mean=A(4),
                                                   running_var=A(4), out=X), (4, 4)),
        ("batchnorm_forward_eval", lambda X: dict(X=X, gamma=A(4), beta=A(4), running_mean=A(4),
                                                  running_var=A(4), out=X), (4, 4)),
        ("batchnorm_backward", lambda X: dict(dY=X, X=A(4, 4), gamma=A(4), mean=np.zeros(4),
                                              invstd=np.ones(4), dgamma=A(4), dbeta=A(4),
                                              out=X), (4, 4)),
        ("dropout_forward", lambda X: dict(X=X, p=0.5, seed=1, step=1, out=X), (4, 4)),
        ("dropout_backward", lambda X: dict(dY=X, mask=np.ones((4, 4), np.uint8), p=0.5,
                                            out=X), (4, 4)),
        ("sgd_step", lambda X: dict(param=X, grad=X, lr=0.1), (16,)),
        ("adagrad_step", lambda X: dict(param=X, grad=A(16), state_sum=X, step=1, lr=0.1),
         (16,)),
        ("rmsprop_step", lambda X: dict(param=X, grad=A(16), square_avg=X, lr=0.1), (16,)),
        ("adam_step", lambda X: dict(param=X, grad=A(16), exp_avg=X, exp_avg_sq=A(16), step=1,
                                     lr=0.1), (16,)),
    ]
    return cases


ALIAS = _alias_cases()
IN_PLACE = {"activation_forward", "activation_backward", "dropout_forward", "dropout_backward"}


@pytest.mark.parametrize("op,make,shape", [c for c in ALIAS if c[0] not in IN_PLACE],
                         ids=[c[0] for c in ALIAS if c[0] not in IN_PLACE])
def test_aliased_outputs_raise_value_error(op, make, shape):
    for be in (REF, FAST):
        X = np.full(shape, 0.5, np.float32)
        with pytest.raises(ValueError, match=r"must not share memory with"):
            getattr(be, op)(**make(X))
        np.testing.assert_array_equal(X, 0.5)  # refused before anything was written


@pytest.mark.parametrize("op,make,shape", [c for c in ALIAS if c[0] in IN_PLACE],
                         ids=[c[0] for c in ALIAS if c[0] in IN_PLACE])
def test_exactly_aliased_elementwise_outputs_run_in_place(op, make, shape):
    values = np.linspace(-2, 2, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    for be in (REF, FAST):
        expected = getattr(be, op)(**dict(make(values.copy()), out=None))
        X = values.copy()
        got = getattr(be, op)(**make(X))
        got = got[0] if isinstance(got, tuple) else got
        expected = expected[0] if isinstance(expected, tuple) else expected
        assert got is X
        np.testing.assert_array_equal(got, expected)


def test_partially_overlapping_output_raises_value_error():
    for be in (REF, FAST):
        buf = np.ones(20, np.float32)
        with pytest.raises(ValueError, match=r"out must not share memory with X"):
            be.activation_forward(buf[:16], "relu", out=buf[4:])


def test_aliased_dense_forward_is_refused():
    # with out=X the Cython kernel would copy the bias rows into out before the GEMM reads X
    X = np.arange(16, dtype=np.float32).reshape(4, 4)
    W, b = np.eye(4, dtype=np.float32), np.ones(4, np.float32)
    for be in (REF, FAST):
        with pytest.raises(ValueError, match=r"out must not share memory with X"):
            be.dense_forward(X, W, b, out=X)
        np.testing.assert_array_equal(X, np.arange(16).reshape(4, 4))

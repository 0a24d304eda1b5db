"""Property-based fuzzing of the public layers and losses (issue 11, item 1), at the standard of
tests/test_fuzz_backend.py: the same layer built twice, pinned to the NumPy reference and to the
Cython backend, gets identical constructor arguments, inputs and upstream gradients (random
shapes, dtypes, layouts, values, modes). Forward outputs, input gradients, parameter gradients
and buffers must agree, or both must raise the same ValueError/TypeError naming an argument.
"""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pynn import nn

from _fuzz import (FLOATS, SETTINGS, Arr, assert_same, build, corrupt, count, eps,
                   finite_part, in_array, run, same_outcome)
from _fuzz import _watchdog, threads  # noqa: F401  (fixtures)

FEATURES = [3, 1, 2, 5, 8, 17, 33]
BATCH = [4, 1, 0, 2, 3, 7, 16, 64]
ACT_CLASSES = {"Identity": nn.Identity, "Step": nn.Step, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh,
               "ReLU": nn.ReLU, "Square": nn.Square, "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU}
BAD_NUMBERS = [0, -1, 2.5, True, None, "3", float("nan"), 10**400, np.int64(3), np.float32(3)]
FWD_NAMES = ["X", "input", "dtype"]
BWD_NAMES = ["dY"]


def tiny(dtype):
    return float(np.finfo(dtype).tiny) * 4


@st.composite
def maybe_bad(draw, valid, bad=BAD_NUMBERS):
    """``valid`` usually, one of ``bad`` one time in six."""
    return draw(st.sampled_from(bad)) if draw(st.integers(0, 5)) == 5 else valid


KINDS = ["Dense", "BatchNorm", "Dropout", "Softmax", "Sequential"] + list(ACT_CLASSES)


@st.composite
def layer_spec(draw, kind):
    """(class, kwargs, dtype, in_features) for one layer; kwargs may hold an invalid value."""
    dtype = draw(st.sampled_from(FLOATS))
    f = draw(st.sampled_from(FEATURES))
    if kind == "Dense":
        kw = {"in_features": draw(maybe_bad(f)),
              "out_features": draw(maybe_bad(draw(st.sampled_from(FEATURES)))),
              "bias": draw(st.booleans()),
              "init": draw(maybe_bad(draw(st.sampled_from([None, "he_normal", "xavier_uniform"])),
                                     ["nope", 3])),
              "seed": 0, "dtype": draw(maybe_bad(dtype, [np.float16, "int32", object]))}
        return nn.Dense, kw, dtype, f
    if kind == "BatchNorm":
        kw = {"num_features": draw(maybe_bad(f)),
              "momentum": draw(maybe_bad(draw(st.sampled_from([0.1, 0.0, 1.0])), [1.5, -0.1,
                                                                                   "0.1", None])),
              "eps": draw(maybe_bad(draw(st.sampled_from([1e-5, 1.0])), [0.0, -1e-5, "x"])),
              "dtype": draw(maybe_bad(dtype, [np.int64, "float16"]))}
        return nn.BatchNorm, kw, dtype, f
    if kind == "Dropout":
        kw = {"p": draw(maybe_bad(draw(st.sampled_from([0.5, 0.0, 0.1, 0.9])), [1.0, -0.1, "p"])),
              "seed": draw(maybe_bad(draw(st.sampled_from([0, 7, 2**63])), [-1, 1.5, "s"]))}
        return nn.Dropout, kw, dtype, f
    if kind == "Softmax":
        return nn.Softmax, {}, dtype, f
    if kind == "Sequential":
        # Dense followed by an activation runs fused in the Dense kernel's epilogue.
        act = draw(st.sampled_from(["ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "Step",
                                    "Identity", "Square"]))
        out = draw(st.sampled_from(FEATURES))
        return "Sequential", {"in": f, "out": out, "act": act}, dtype, f
    kw = {}
    if kind == "LeakyReLU":
        kw["negative_slope"] = draw(maybe_bad(draw(st.sampled_from([0.01, 0.0, 0.5, 3.0])),
                                              ["x", None, float("inf")]))
    if kind == "ELU":
        kw["alpha"] = draw(maybe_bad(draw(st.sampled_from([1.0, 0.5, 2.0])), ["x", float("nan")]))
    return ACT_CLASSES[kind], kw, dtype, f


def make_layer(cls, kw, backend):
    if cls == "Sequential":
        act = ACT_CLASSES[kw["act"]]()
        layer = nn.Sequential(nn.Dense(kw["in"], kw["out"], seed=1, dtype=kw["dtype"]), act,
                              backend=backend)
        return layer
    layer = cls(**kw)
    layer.backend_name = backend
    return layer


def ctor_names(cls):
    if cls == "Sequential":
        return ["layers"]
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def out_features(cls, kw, f):
    if cls is nn.Dense:
        return kw["out_features"]
    if cls == "Sequential":
        return kw["out"]
    return f


@st.composite
def x_shape(draw, cls, f):
    n = draw(st.sampled_from(BATCH))
    if cls in (nn.Dense, nn.BatchNorm, "Sequential", nn.Softmax):
        if draw(st.integers(0, 7)) == 7:
            return draw(st.sampled_from([(n,), (n, f + 1), (n, f, 1), ()]))
        return (n, f)
    nd = draw(st.integers(0, 3))
    return tuple(draw(st.sampled_from([3, 1, 0, 2, 5])) for _ in range(nd))


def _pair(cls, kw, dtype):
    if cls == "Sequential":
        kw = dict(kw, dtype=dtype)
    return [run(lambda b=b: make_layer(cls, kw, b)) for b in ("numpy", "cython")]


def _grad_bounds(cls, layer, X, dY, Y):
    """Per parameter, (a bound on the sum of |terms| its gradient adds up, an absolute extra):
    the rounding error of any summation order is a multiple of eps times the first (the
    gradient itself may cancel to noise, e.g. dgamma for a dY constant over the batch)."""
    x, dy = finite_part(X), finite_part(dY)
    if cls is nn.BatchNorm:
        Xc, _, mean, invstd = layer._cache
        if mean is None:  # eval mode: the running statistics
            mean = layer.running_mean.astype(np.float64)
            invstd = 1 / np.sqrt(layer.running_var.astype(np.float64) + layer.eps)
        with np.errstate(all="ignore"):
            xhat = finite_part((np.asarray(Xc, np.float64) - mean) * invstd)
            # each backend's mean carries its own order-dependent rounding, which xhat
            # magnifies by invstd (a constant column: xhat is 0 or +-1 ulp * 316)
            xc = finite_part(Xc)
            xhat_err = finite_part(invstd) * 4 * xc.shape[0] * eps(np.float64) * xc.max(
                axis=0, initial=0.0)
        return [((dy * xhat).sum(axis=0), dy.sum(axis=0) * xhat_err), (dy.sum(axis=0), 0.0)]
    if cls in (nn.Dense, "Sequential"):
        dense = layer if cls is nn.Dense else layer[0]
        extra = 0.0
        if cls == "Sequential":
            # The Dense's output Z is the container's (the plan's buffers), never cached on
            # the layer: bound it from X and the weights. Each backend rounds Z in its own
            # order (up to zerr apart, cancellation included), and the activation's derivative
            # is taken from that Z (Square: 2 Z) or from Y = act(Z) (fused): it moves by at
            # most ``slope`` * zerr, which dY and the sums carry into dW and db (``extra``).
            w = finite_part(dense.weight.data)
            zb = x @ w.T + (0.0 if dense.bias is None else finite_part(dense.bias.data))
            zerr = 4 * (x.shape[1] + 2) * eps(dense.dtype) * zb
            y = finite_part(Y)
            act = layer[1]
            p = abs(act.param) if act.param is not None and np.isfinite(act.param) else 0.0
            if isinstance(act, nn.Square):  # not fused: Square's backward runs on its own
                dz = dy * 2 * (zb + zerr)
            else:
                dz = dy * (1 + p + y + y * y)
            # d(derivative)/dZ: sigmoid y(1 - y) <= 1/4, tanh 1 - y^2 <= 2, ELU y + alpha
            # <= alpha, square 2; piecewise constant for the others (their kinks aside)
            slope = {nn.Sigmoid: 1.0, nn.Tanh: 2.0, nn.ELU: p, nn.Square: 2.0}.get(type(act), 0.0)
            dz_err = 2 * slope * dy * zerr
            dy = dz
            extra = [dz_err.T @ x, dz_err.sum(axis=0)]
        bounds = [(dy.T @ x, extra[0] if extra else 0.0)]
        if dense.bias is not None:
            bounds.append((dy.sum(axis=0), extra[1] if extra else 0.0))
        return bounds
    return [(np.zeros(p.shape), 0.0) for p in layer.parameters()]


def _nonfinite_columns(a):
    a = np.asarray(a, np.float64)
    return ~np.isfinite(a).all(axis=0) if a.ndim == 2 else None


def _compare_layer_state(ref, fast, what, bounds, X=None, dY=None, fwd_exact=True):
    dense_like = isinstance(ref, (nn.Dense, nn.Sequential))
    for rp, fp, (bound, extra) in zip(ref.parameters(), fast.parameters(), bounds):
        n = max(rp.grad.size, 1)
        e = eps(rp.dtype)
        tol = 16 * (n + 8) * e * bound + extra + 4 * e * finite_part(rp.grad) + tiny(rp.dtype)
        loose = bound > float(np.finfo(rp.dtype).max) / 16
        if dense_like and not fwd_exact and X is not None and dY is not None:
            # The cached forward values agree within rounding only (float32 sigmoid gives
            # 1.2e-38 where the reference has 0): times an infinite input or upstream gradient
            # that is an infinity here and NaN there.
            xc, dc = _nonfinite_columns(X), _nonfinite_columns(dY)
            if xc is not None and dc is not None:
                if rp.grad.ndim == 2:
                    loose = loose | xc[None, :] | dc[:, None] if dc.size == rp.grad.shape[0] \
                        else loose | xc[None, :]
                elif dc.size == rp.grad.shape[0]:
                    loose = loose | dc
        assert_same(fp.grad, rp.grad, tol, loose, what=f"{what} grad of {rp.name}")
    stat_err = 0.0
    if isinstance(ref, nn.BatchNorm) and ref.training and X is not None and np.ndim(X) == 2:
        # the batch statistics' order-dependent rounding (+-1e30 in a column cancels to what
        # the order leaves) reaches the running ones scaled by momentum
        x = finite_part(X)
        xmax = x.max(axis=0, initial=0.0)
        momentum = 1.0 if ref.momentum is None else ref.momentum  # None: 1 / batches <= 1
        stat_err = momentum * 16 * x.shape[0] * eps(np.float64) * (xmax + xmax * xmax)
    for (name, rb), fb in zip(ref.named_buffers(), fast.buffers()):
        if rb.dtype.kind != "f":  # a counter (num_batches_tracked): exact
            assert fb.dtype == rb.dtype and np.array_equal(fb, rb), (what, name, fb, rb)
            continue
        assert_same(fb, rb, 1e-6 * (finite_part(rb) + 1) + stat_err,
                    what=f"{what} buffer {name}")


def _tolerance(cls, Y, X, layer):
    """Loose, operation-aware tolerances: the backend fuzz checks the exact error bounds; here
    the point is that the layer plumbing (caching, modes, fusion) feeds both backends alike."""
    dt = Y.dtype
    if cls is nn.Dropout:
        return 0.0, None
    mag = finite_part(Y) + 1
    if cls in (nn.Dense, "Sequential"):
        dense = layer if cls is nn.Dense else layer[0]
        bound = finite_part(X) @ finite_part(dense.weight.data).T + 1
        loose = bound > float(np.finfo(dt).max) / 16
        with np.errstate(all="ignore"):
            z = X.astype(np.float64) @ dense.weight.data.astype(np.float64).T
        loose = loose | (np.isfinite(z) & (np.abs(z) <= 64 * (X.shape[1] + 2) * eps(dt) * bound))
        return 64 * (X.shape[1] + 2) * eps(dt) * bound * 4 + 64 * eps(dt) * mag, loose
    if cls is nn.BatchNorm:
        x = finite_part(X)
        with np.errstate(all="ignore"):
            var = x.var(axis=0) if x.shape[0] else 0.0
            cond = x.shape[0] * 2.2e-16 * x.max(axis=0, initial=0.0) / np.sqrt(var + 1e-5)
        return 1e-5 * mag, ~(cond < 1e-9)
    return 128 * eps(dt) * mag + tiny(dt) * 10, None


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_layer_forward_backward(threads, kind, data):
    cls, kw, dtype, f = data.draw(layer_spec(kind))
    name = cls if isinstance(cls, str) else cls.__name__
    count(f"layers.{name}")
    built = _pair(cls, kw, dtype)
    if same_outcome(*built, ctor_names(cls), f"layers.{name}"):
        return
    ref, fast = built[0][1], built[1][1]
    training = data.draw(st.booleans())
    for layer in (ref, fast):
        layer.train(training)
    shape = data.draw(x_shape(cls, f))
    X = data.draw(in_array(shape, dtype))
    if data.draw(st.integers(0, 7)) == 7:
        X = data.draw(corrupt(X))
    rx, fx = build(X), build(X)
    r = run(lambda: ref.forward(rx))
    fo = run(lambda: fast.forward(fx))
    if same_outcome(r, fo, FWD_NAMES, f"layers.{name}"):
        return
    rY, fY = r[1], fo[1]
    tol, loose = _tolerance(cls, rY, np.asarray(rx), ref)
    assert_same(fY, rY, tol, loose, what=f"{name}.forward")
    dY = data.draw(in_array(rY.shape, rY.dtype))
    bad_dY = data.draw(st.integers(0, 7)) == 7
    if bad_dY:
        dY = data.draw(corrupt(dY))
    rd, fd = build(dY), build(dY)
    r = run(lambda: ref.backward(rd))
    fo = run(lambda: fast.backward(fd))
    if same_outcome(r, fo, BWD_NAMES, f"layers.{name}"):
        if not bad_dY:
            raise AssertionError(f"{name}.backward refused a valid dY: {r[1]!r}")
        return
    rdx, fdx = r[1], fo[1]
    if bad_dY:
        raise AssertionError(f"{name}.backward accepted an invalid dY ({dY!r})")
    if rdx is None or fdx is None:  # the first Dense of a Sequential skips dX
        assert rdx is None and fdx is None
    else:
        bound = finite_part(rd) + 1
        scale = (finite_part(rdx) + 1) * (np.asarray(bound).max(initial=1.0)
                                          if cls in (nn.Softmax,) else 1)
        if cls in (nn.Dense, nn.BatchNorm, "Sequential"):
            tol, loose = 1e-4 * (finite_part(rdx) + finite_part(rd).max(initial=0) + 1), None
            if cls is nn.BatchNorm:
                loose = _tolerance(cls, rY, np.asarray(rx), ref)[1]
        elif cls is nn.Dropout:
            tol, loose = 0.0, None
        else:
            tol, loose = 256 * eps(rdx.dtype) * scale * bound + tiny(rdx.dtype), None
        if loose is None and cls in (nn.Dense, "Sequential"):
            loose = finite_part(rd).max(initial=0) * finite_part(rx).max(initial=0) > 1e30
        if not np.array_equal(rY, fY, equal_nan=True):
            # Each layer differentiates through its own cached forward values, which agree
            # within rounding only (float32 softmax gives 1.2e-38 where exp underflows to 0):
            # next to an infinite dY, 0 * inf (NaN) against tiny * inf (inf) is no bug.
            nonfinite = ~np.isfinite(np.asarray(rd, np.float64))
            if nonfinite.ndim == 2 and (cls is nn.Softmax or nonfinite.shape != rdx.shape):
                # a row mixes its entries (softmax's row sum, dense's dZ @ W)
                nonfinite = np.broadcast_to(nonfinite.any(axis=1, keepdims=True),
                                            (nonfinite.shape[0], rdx.shape[1]))
            loose = nonfinite if loose is None else (loose | nonfinite)
        assert_same(fdx, rdx, tol, loose, what=f"{name}.backward")
    if cls is not nn.BatchNorm or not np.any(_tolerance(cls, rY, np.asarray(rx), ref)[1]):
        _compare_layer_state(ref, fast, name, _grad_bounds(cls, ref, rx, rd, rY), rx, rd,
                             np.array_equal(rY, fY, equal_nan=True))


# ---------------------------------------------------------------------------- losses
LOSSES = {"MSELoss": nn.MSELoss, "BCEWithLogitsLoss": nn.BCEWithLogitsLoss,
          "CrossEntropyLoss": nn.CrossEntropyLoss}
LOSS_NAMES = ["output", "target", "labels", "Y", "T", "Z"]


@pytest.mark.parametrize("name", sorted(LOSSES))
@SETTINGS
@given(data=st.data())
def test_loss_forward_backward(threads, name, data):
    count(f"losses.{name}")
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k = data.draw(st.sampled_from(BATCH)), data.draw(st.sampled_from(FEATURES))
    out = data.draw(in_array((n, k), dtype))
    if name == "CrossEntropyLoss":
        seed = data.draw(st.integers(0, 2**32 - 1))
        target = Arr(np.random.default_rng(seed).integers(0, k, n),
                     data.draw(st.sampled_from(["C", "strided", "readonly"])))
    else:
        target = data.draw(in_array((n, k), dtype))
    which = data.draw(st.integers(0, 9))
    if which == 8:
        out = data.draw(corrupt(out))
    elif which == 9:
        target = data.draw(corrupt(target))
    ref, fast = LOSSES[name](backend="numpy"), LOSSES[name](backend="cython")
    ro, rt, fo, ft = build(out), build(target), build(out), build(target)
    r = run(lambda: ref.forward(ro, rt))
    f = run(lambda: fast.forward(fo, ft))
    if same_outcome(r, f, LOSS_NAMES, f"losses.{name}"):
        return
    rv, fv = r[1], f[1]
    x = finite_part(ro)
    rel = 1e-5 if np.asarray(ro).dtype == np.float32 else 1e-11  # the dtype actually passed
    assert_same(np.float64(fv), np.float64(rv),
                rel * (k + 8) * (finite_part(rv) + x.mean() * (1 + finite_part(rt).mean()
                                                                if x.size else 0) + 1),
                what=f"{name} value")
    rg, fg = ref.backward(), fast.backward()
    assert_same(fg, rg, rel * (k + 8) * (finite_part(rg) + 1.0 / max(n * k, 1))
                + tiny(rg.dtype) * 10, what=f"{name} gradient")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_backward_before_forward_raises(name):
    with pytest.raises(RuntimeError, match="before forward"):
        LOSSES[name]().backward()


# ---------------------------------------------------------------------------- findings
# Each of these was a deviation the fuzzing found; now plain tests of the fixed behaviour.
@pytest.mark.parametrize("dY", ["X", np.ones(5, np.float32), np.ones((2, 3), np.int64),
                                np.ones((2, 3), np.float64)],
                         ids=["str", "shape", "int-dtype", "float64"])
@pytest.mark.parametrize("mode", ["eval", "p=0", "train"])
def test_dropout_backward_checks_dY_in_every_mode(dY, mode):
    # in eval mode (or p == 0) the identity used to pass any dY (even a str) on as the gradient;
    # in training the other float dtype came back as a gradient of that dtype
    layer = nn.Dropout(0.0 if mode == "p=0" else 0.5, seed=0)
    layer.train(mode != "eval")
    layer.forward(np.ones((2, 3), np.float32))
    with pytest.raises((TypeError, ValueError), match=r"^Dropout: dY "):
        layer.backward(dY)
    good = np.full((2, 3), 2.0, np.float32)
    dX = layer.backward(good)
    assert dX.shape == (2, 3) and dX.dtype == np.float32
    if mode != "train":
        assert dX is good  # the identity: no copy


def test_dropout_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dropout(0.5, seed=0).backward(np.ones((2, 3), np.float32))


BACKWARD_SHAPE_CASES = [("ReLU", lambda: nn.ReLU()), ("Tanh", lambda: nn.Tanh()),
                        ("Softmax", lambda: nn.Softmax()),
                        ("Dropout", lambda: nn.Dropout(0.5, seed=0)),
                        ("BatchNorm", lambda: nn.BatchNorm(3)),
                        ("BatchNorm-eval", lambda: nn.BatchNorm(3).eval())]


@pytest.mark.parametrize("shape", [(2, 4), (3, 3), (3,)])
@pytest.mark.parametrize("name,make", BACKWARD_SHAPE_CASES,
                         ids=[c[0] for c in BACKWARD_SHAPE_CASES])
def test_layer_backward_names_a_wrong_shaped_dY(name, make, shape):
    # the backend used to report the cached tensor instead: "X must have shape (2, 3), got
    # (2, 4)" (or Y, or mask) while the caller passed a wrong dY
    layer = make()
    layer.forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=rf"^{name.split('-')[0]}: dY must have shape"):
        layer.backward(np.ones(shape, np.float32))
    assert layer.backward(np.ones((2, 3), np.float32)).shape == (2, 3)


@pytest.mark.parametrize("make", [lambda: nn.Dense(3, 10**400), lambda: nn.Dense(10**400, 3),
                                  lambda: nn.Dense(3, 2**31), lambda: nn.BatchNorm(10**400)],
                         ids=["Dense-out", "Dense-in", "Dense-2**31", "BatchNorm"])
def test_absurd_layer_sizes_name_the_argument(make):
    # Dense(3, 10**400) used to fail inside NumPy: "Maximum allowed dimension exceeded"
    with pytest.raises(ValueError, match=r"^(in|out|num)_features must be <= 2147483647"):
        make()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("backend", ["numpy", "cython"])
def test_dropout_on_a_0d_input_backpropagates(backend, training):
    # np.ascontiguousarray made the 0-d mask 1-d: the valid dY was refused, a (1,) one taken
    layer = nn.Dropout(0.5, seed=0)
    layer.backend_name = backend
    layer.train(training)
    Y = layer.forward(np.array(2.0, np.float32))
    dX = layer.backward(np.array(1.0, np.float32))
    assert dX.shape == Y.shape == ()
    assert dX == (0.0 if Y == 0 else 2.0 if training else 1.0)
    with pytest.raises(ValueError, match=r"^Dropout: dY must have shape \(\)"):
        layer.backward(np.ones(1, np.float32))


@pytest.mark.parametrize("rows", [1, 3])
def test_batchnorm_eval_backward_checks_the_batch_size(rows):
    # a (1, F) dY for a (4, F) input used to broadcast silently (dX (1, F), dgamma counted 4
    # times); a (3, F) one failed with NumPy's "operands could not be broadcast"
    bn = nn.BatchNorm(3).eval()
    bn.forward(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"^BatchNorm: dY must have shape \(4, 3\)"):
        bn.backward(np.ones((rows, 3), np.float32))
    assert not bn.weight.grad.any() and not bn.bias.grad.any()  # refused before accumulating


def _unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = buf[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned and u.flags.c_contiguous
    return u


def test_containers_never_hand_unaligned_arrays_to_the_kernels(monkeypatch):
    # The compiled plan and the inference program call the kernels directly: an unaligned but
    # contiguous X or dY must be copied there too (base.py does it for every other call).
    from pynn.backend import Backend
    from pynn.backend.cython import CythonBackend

    seen = []
    for op in Backend.__abstractmethods__:
        real = getattr(CythonBackend, op)

        def spy(self, *args, _real=real):
            seen.extend(a.flags.aligned for a in args if isinstance(a, np.ndarray))
            return _real(self, *args)

        monkeypatch.setattr(CythonBackend, op, spy)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 5)).astype(np.float32)
    dY = rng.standard_normal((8, 3)).astype(np.float32)
    results = []
    for make in (lambda a: a, _unaligned):
        model = nn.Sequential(nn.Dense(5, 4, seed=1), nn.BatchNorm(4), nn.Tanh(),
                              nn.Dense(4, 3, seed=2), backend="cython")
        Y = model.forward(make(X))
        dX = model.backward(make(dY))
        results.append((Y, dX, model[0].weight.grad.copy(), model.predict(make(X))))
    assert seen and all(seen), "a kernel got an unaligned array"
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)

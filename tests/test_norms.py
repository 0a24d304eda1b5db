"""LayerNorm and RMSNorm: the kernels against the NumPy reference (both dtypes, 1 or 2
threads, bit-identical across thread counts), torch's values and gradients (float64 to
round-off, float32 to the tolerance table) on hard rows, gradcheck, torch's state_dict keys,
saving, argument checks."""
import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.backend import backend_for

from conftest import ODD_SHAPES, assert_close

F32, F64 = np.float32, np.float64


def _torch():
    return pytest.importorskip("torch")


def _rows(rng, shape, dtype):
    """Rows of every kind: ordinary, a mean 10^3 times the spread (E[x^2] - E[x]^2 would
    cancel 6 digits), constant (variance 0: eps alone), huge and tiny magnitudes."""
    X = rng.standard_normal(shape) * 3
    if shape[0] >= 5 and shape[1] >= 2:
        X[1] = 1e3 + rng.standard_normal(shape[1])
        X[2] = 7.0
        X[3] *= 1e3
        X[4] *= 1e-4
    return X.astype(dtype)


def _affine(rng, f, dtype):
    return (rng.standard_normal(f).astype(dtype), rng.standard_normal(f).astype(dtype))


# ---------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("shape", [s for s in ODD_SHAPES if s[0]] + [(300, 70)], ids=str)
@pytest.mark.parametrize("kind", ["layer", "rms"])
@pytest.mark.parametrize("affine", [True, False])
def test_kernel_equals_reference(shape, kind, affine, dtype, n_threads, rng):
    fast, ref = backend_for("cython"), backend_for("numpy")
    X = _rows(rng, shape, dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    g, b = _affine(rng, shape[1], dtype) if affine else (None, None)
    results = []
    for be in (fast, ref):
        dg = np.ones(shape[1], dtype) if affine else None
        db = np.ones(shape[1], dtype) if affine else None  # accumulated onto
        if kind == "layer":
            Y, mean, invstd = be.layernorm_forward(X, g, b, eps=1e-4)
            dX = be.layernorm_backward(dY, X, g, mean, invstd, dg, db)
        else:
            Y, invstd = be.rmsnorm_forward(X, g)
            mean, db = None, None
            dX = be.rmsnorm_backward(dY, X, g, invstd, dg)
        results.append((Y, mean, invstd, dX, dg, db))
    for a, b_, what in zip(results[0], results[1], ["Y", "mean", "invstd", "dX", "dg", "db"]):
        if a is None:
            assert b_ is None
            continue
        tol_dtype = F64 if what in ("mean", "invstd") else dtype
        assert_close(a, b_, tol_dtype, k=shape[0] if what in ("dg", "db") else shape[1],
                     err_msg=what)


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_bit_identical_for_1_and_2_threads(kind, dtype, rng, monkeypatch):
    from pynn import _threads
    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 1)
    X = _rows(rng, (517, 33), dtype)
    dY = rng.standard_normal(X.shape).astype(dtype)
    g, b = _affine(rng, 33, dtype)
    be = backend_for("cython")
    before = pynn.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            pynn.set_num_threads(n)
            dg, db = np.zeros(33, dtype), np.zeros(33, dtype)
            if kind == "layer":
                Y, mean, invstd = be.layernorm_forward(X, g, b)
                dX = be.layernorm_backward(dY, X, g, mean, invstd, dg, db)
            else:
                Y, invstd = be.rmsnorm_forward(X, g, 1e-6)
                dX = be.rmsnorm_backward(dY, X, g, invstd, dg)
            out.append((Y, dX, dg, db))
    finally:
        pynn.set_num_threads(before)
    for a, b_ in zip(*out):
        np.testing.assert_array_equal(a, b_)


# ---------------------------------------------------------------------------- torch
LAYERS = {
    "layernorm": (lambda d: nn.LayerNorm(11, dtype=d),
                  lambda t, d: t.nn.LayerNorm(11, dtype=d)),
    "layernorm-eps-nobias": (lambda d: nn.LayerNorm((11,), eps=1e-3, bias=False, dtype=d),
                             lambda t, d: t.nn.LayerNorm((11,), eps=1e-3, bias=False, dtype=d)),
    "layernorm-no-affine": (lambda d: nn.LayerNorm(11, elementwise_affine=False, dtype=d),
                            lambda t, d: t.nn.LayerNorm(11, elementwise_affine=False, dtype=d)),
    "rmsnorm": (lambda d: nn.RMSNorm(11, dtype=d), lambda t, d: t.nn.RMSNorm(11, dtype=d)),
    "rmsnorm-eps": (lambda d: nn.RMSNorm([11], eps=1e-5, dtype=d),
                    lambda t, d: t.nn.RMSNorm([11], eps=1e-5, dtype=d)),
    "rmsnorm-no-affine": (lambda d: nn.RMSNorm(11, elementwise_affine=False, dtype=d),
                          lambda t, d: t.nn.RMSNorm(11, elementwise_affine=False, dtype=d)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_equal_to_torch(name, backend_name, dtype, rng):
    torch = _torch()
    tdtype = torch.float64 if dtype == F64 else torch.float32
    ours = LAYERS[name][0](dtype).set_backend(backend_name)
    theirs = LAYERS[name][1](torch, tdtype)
    for p in ours.parameters():  # not the initial ones and zeros
        p.data[...] = rng.standard_normal(p.shape)
    # torch's state_dict keys, loaded strictly both ways
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    X = _rows(rng, (23, 11), dtype)
    R = rng.standard_normal(X.shape).astype(dtype)
    Y = ours.forward(X)
    dX = ours.backward(R)
    np.testing.assert_array_equal(ours.infer(X), Y)
    # torch's float32 kernels keep the statistics in float: on the row whose mean is 10^3
    # times its spread they are off by ~1e-4 (their own rounding), where pynn's, in double,
    # are not. So float32 is held to torch's float32 on the other rows and, on every row, to
    # torch's float64 answer for the same float32 data (float32 parameters too).
    checks = [(theirs, range(23))]
    if dtype == F32:
        checks = [(theirs, [r for r in range(23) if r != 1]),
                  (LAYERS[name][1](torch, torch.float64), range(23))]
        checks[1][0].load_state_dict(theirs.state_dict())
        if checks[1][0].eps is None:  # RMSNorm's default: the machine epsilon of float32 still
            checks[1][0].eps = float(np.finfo(F32).eps)
    for module, rows in checks:
        rows = list(rows)
        tx = torch.tensor(X.astype(np.float64) if module is not theirs else X,
                          requires_grad=True)
        ty = module(tx)
        ty.backward(torch.tensor(R, dtype=ty.dtype))
        assert_close(Y[rows], ty.detach().numpy()[rows], dtype, k=11)
        assert_close(dX[rows], tx.grad.numpy()[rows], dtype, k=11)
        if len(rows) == 23:
            for (key, p), tp in zip(ours.named_parameters(), module.parameters()):
                assert_close(p.grad, tp.grad.numpy(), dtype, k=23, err_msg=key)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradcheck(name, rng):
    layer = LAYERS[name][0](F64)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    assert pynn.gradcheck(layer, rng.standard_normal((6, 11)) * 2 + 1)


def test_frozen_and_input_grad(rng):
    ln = nn.LayerNorm(4, dtype=F64)
    X = rng.standard_normal((5, 4))
    ln.forward(X)
    assert ln.backward(np.ones((5, 4)), input_grad=False) is None
    assert np.any(ln.weight.grad != 0)
    ln.requires_grad_(False)
    ln.zero_grad()
    ln.forward(X)
    assert ln.backward(np.ones((5, 4)), input_grad=False) is None
    assert not np.any(ln.weight.grad)
    assert ln.backward(np.ones((5, 4))).shape == (5, 4)


@pytest.mark.parametrize("make", [lambda: nn.LayerNorm(5, dtype=F64), lambda: nn.RMSNorm(5),
                                  lambda: nn.LayerNorm(5, elementwise_affine=False)])
def test_every_form_saves_and_loads(make, tmp_path):
    layer = make()
    net = nn.Sequential(nn.Dense(3, 5, dtype=layer.dtype), layer)
    pynn.save(net, tmp_path / "m.npz")
    back = pynn.load(tmp_path / "m.npz")
    assert list(back.state_dict()) == list(net.state_dict())
    X = np.ones((2, 3), layer.dtype)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_saved_loaded_and_shown(tmp_path, rng):
    net = nn.Sequential(nn.Dense(3, 5, dtype=F64), nn.LayerNorm(5, bias=False, dtype=F64),
                        nn.RMSNorm(5, eps=1e-3, elementwise_affine=False, dtype=F64))
    net[1].weight.data[...] = rng.standard_normal(5)
    pynn.save(net, tmp_path / "n.pynn")
    back = pynn.load(tmp_path / "n.pynn")
    X = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    assert back[1].config() == net[1].config() and back[2].config() == net[2].config()
    assert list(back.state_dict()) == ["0.weight", "0.bias", "1.weight"]
    assert repr(net[1]) == ("LayerNorm(normalized_shape=(5,), eps=1e-05, "
                            "elementwise_affine=True, bias=False, dtype='float64')")
    assert "RMSNorm(normalized_shape=(5,), eps=0.001" in net.summary()


@pytest.mark.parametrize("make,exc,match", [
    (lambda: nn.LayerNorm((3, 4)), ValueError, "normalized_shape must be one int"),
    (lambda: nn.LayerNorm(0), ValueError, "normalized_shape"),
    (lambda: nn.LayerNorm(4, eps=0.0), ValueError, "eps must be > 0"),
    (lambda: nn.LayerNorm(4, bias=1), TypeError, "bias must be a bool"),
    (lambda: nn.RMSNorm(4, eps=-1.0), ValueError, "eps must be > 0"),
    (lambda: nn.RMSNorm(4, elementwise_affine="yes"), TypeError, "elementwise_affine"),
    (lambda: nn.RMSNorm(4, dtype=np.int32), TypeError, "dtype"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_input_names_itself():
    with pytest.raises(ValueError, match=r"X must have shape \(batch, 4\)"):
        nn.LayerNorm(4).forward(np.ones((2, 3), F32))
    with pytest.raises(TypeError, match="dtype float64 but the layer's dtype is float32"):
        nn.RMSNorm(4).forward(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.RMSNorm(4).backward(np.ones((2, 4), F32))

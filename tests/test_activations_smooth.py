"""GELU, SiLU, Softplus and Mish: equal to torch (float64 to round-off, float32 to the tolerance
table) forward and backward on the tails and at zero, gradcheck, fused with the Dense before
them (which keeps its pre-activation), saved, loaded and summarized."""
import copy

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.backend import backend_for

from conftest import assert_close

F32, F64 = np.float32, np.float64

# (pynn layer, pynn kernel name and parameter, torch function)
CASES = {
    "gelu": (lambda: nn.GELU(), "gelu", None,
             lambda F, t: F.gelu(t)),
    "gelu-tanh": (lambda: nn.GELU(approximate="tanh"), "gelu_tanh", None,
                  lambda F, t: F.gelu(t, approximate="tanh")),
    "silu": (lambda: nn.SiLU(), "silu", None, lambda F, t: F.silu(t)),
    "softplus": (lambda: nn.Softplus(), "softplus", None, lambda F, t: F.softplus(t)),
    "softplus-beta2-th5": (lambda: nn.Softplus(beta=2.0, threshold=5.0), "softplus", (2.0, 5.0),
                           lambda F, t: F.softplus(t, beta=2.0, threshold=5.0)),
    "softplus-negative-beta": (lambda: nn.Softplus(beta=-0.5, threshold=3.0), "softplus",
                               (-0.5, 3.0), lambda F, t: F.softplus(t, beta=-0.5, threshold=3.0)),
    "mish": (lambda: nn.Mish(), "mish", None, lambda F, t: F.mish(t)),
}

# the tails (where exp overflows or 1 + erf, 1 - tanh^2 cancel), zero and its neighbours, the
# thresholds, and an ordinary spread between
TAILS = np.concatenate([
    [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 1e-3, -1e-3, 2.5, 2.5000001, 10.0, 20.0, 20.5],
    [-5.0, -10.0, -15.0, -20.0, -30.0, -50.0, -87.0, -88.0, -100.0, -1e3, -1e4],
    [5.0, 15.0, 30.0, 50.0, 88.0, 100.0, 1e3, 1e4],
    np.linspace(-8.0, 8.0, 321),
])


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
def test_equal_to_torch_forward_and_backward_on_the_tails(case, backend_name, dtype, n_threads,
                                                          rng):
    torch = _torch()
    _, name, param, tf = CASES[case]
    X = TAILS.astype(dtype)
    dY = rng.standard_normal(X.shape).astype(dtype)
    tx = torch.tensor(X, requires_grad=True)
    ty = tf(torch.nn.functional, tx)
    ty.backward(torch.tensor(dY))
    be = backend_for(backend_name)
    Y = be.activation_forward(X, name, param)
    dX = be.activation_backward(dY, X, Y, name, param)
    assert_close(Y, ty.detach().numpy(), dtype, err_msg="forward")
    assert_close(dX, tx.grad.numpy(), dtype, err_msg="backward")
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, no 0 * inf
        be.activation_backward(dY, X, be.activation_forward(X, name, param), name, param)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_is_torchs_module(case, dtype, rng):
    torch = _torch()
    make, _, _, tf = CASES[case]
    X = (rng.standard_normal((9, 7)) * 4).astype(dtype)
    R = rng.standard_normal(X.shape).astype(dtype)
    layer = make()
    out = layer.forward(X)
    dX = layer.backward(R)
    tx = torch.tensor(X, requires_grad=True)
    ty = tf(torch.nn.functional, tx)
    ty.backward(torch.tensor(R))
    assert_close(out, ty.detach().numpy(), dtype)
    assert_close(dX, tx.grad.numpy(), dtype)
    assert out.dtype == dtype and dX.dtype == dtype
    np.testing.assert_array_equal(layer.infer(X), out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck_passes(case, rng):
    X = rng.standard_normal((6, 5)) * 2
    assert pynn.gradcheck(CASES[case][0](), X)
    net = nn.Sequential(nn.Dense(5, 4, seed=1, dtype=F64), CASES[case][0](),
                        nn.Dense(4, 3, seed=2, dtype=F64))
    assert net.fused_steps() == [(0, f"Dense+{net[1].activation}")]
    assert pynn.gradcheck(net, X)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="erf")
    with pytest.raises(ValueError, match="beta"):
        nn.Softplus(beta=0)
    with pytest.raises(TypeError, match="threshold"):
        nn.Softplus(threshold="20")
    be = backend_for("cython")
    X = np.ones((2, 3))
    with pytest.raises(TypeError, match="pair"):
        be.activation_forward(X, "softplus", 2.0)
    with pytest.raises(ValueError, match="beta"):
        be.activation_forward(X, "softplus", (0.0, 20.0))


# ---------------------------------------------------------------------------- fused with Dense
def test_dense_keeps_its_preactivation_for_a_smooth_activation(backend, dtype, rng):
    X = rng.standard_normal((7, 5)).astype(dtype)
    W = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    with pytest.raises(ValueError, match="pre-activation"):
        backend.dense_forward(X, W, b, "gelu")
    Z = np.empty((7, 4), dtype)
    Y = backend.dense_forward(X, W, b, "gelu", preact_out=Z)
    pre = backend.dense_forward(X, W, b)
    np.testing.assert_array_equal(Z, pre)
    np.testing.assert_array_equal(Y, backend.activation_forward(pre, "gelu"))
    dY = rng.standard_normal((7, 4)).astype(dtype)
    with pytest.raises(ValueError, match="pre-activation"):
        backend.dense_backward(dY, X, W, Y, np.zeros_like(W), None, "gelu")
    dW, db = np.zeros_like(W), np.zeros_like(b)
    dX = backend.dense_backward(dY, X, W, None, dW, db, "gelu", Z=Z)
    dZ = backend.activation_backward(dY, pre, Y, "gelu")
    dW2, db2 = np.zeros_like(W), np.zeros_like(b)
    dX2 = backend.dense_backward(dZ, X, W, None, dW2, db2)
    np.testing.assert_array_equal(dX, dX2)
    np.testing.assert_array_equal(dW, dW2)
    np.testing.assert_array_equal(db, db2)


def _smooth_net(dtype):
    return nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=dtype), nn.GELU(),
        nn.Dense(16, 16, seed=2, dtype=dtype), nn.SiLU(),
        nn.Dense(16, 9, seed=3, dtype=dtype), nn.Softplus(beta=1.5, threshold=4.0),
        nn.Dense(9, 8, seed=4, dtype=dtype), nn.Mish(),
        nn.Dense(8, 8, seed=5, dtype=dtype), nn.GELU(approximate="tanh"),
        nn.Dense(8, 5, seed=6, dtype=dtype))


def test_every_smooth_activation_runs_fused_with_its_dense():
    assert _smooth_net(F32).fused_steps() == [
        (0, "Dense+gelu"), (2, "Dense+silu"), (4, "Dense+softplus"), (6, "Dense+mish"),
        (8, "Dense+gelu_tanh")]


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
def test_fused_plan_and_eager_layers_agree(dtype, n_threads, rng):
    """The plan (compiled forward/backward), the container's eager fused path and the layers
    run one by one: the same outputs and gradients."""
    pynn.set_num_threads(n_threads)
    X = rng.standard_normal((33, 12)).astype(dtype)
    R = rng.standard_normal((33, 5)).astype(dtype)
    nets = [_smooth_net(dtype) for _ in range(3)]
    nets[1]._compile = False  # the eager fused path
    outs, grads = [], []
    for net in nets[:2]:
        outs.append(net.forward(X))
        grads.append(net.backward(R))
    assert nets[0]._compiled, "the plan was not used"
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(grads[0], grads[1])
    for pa, pb in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad)
    h = X
    for layer in nets[2].layers:
        h = layer.forward(h)
    g = R
    for layer in reversed(nets[2].layers):
        g = layer.backward(g)
    assert_close(outs[0], h, dtype, k=16)
    assert_close(grads[0], g, dtype, k=16)
    for pa, pc in zip(nets[0].parameters(), nets[2].parameters()):
        assert_close(pa.grad, pc.grad, dtype, k=33)


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
def test_compiled_step_is_the_eager_step_bit_for_bit(dtype, n_threads, rng):
    pynn.set_num_threads(n_threads)
    X = rng.standard_normal((40, 12)).astype(dtype)
    y = rng.integers(0, 5, 40)
    a = _smooth_net(dtype)
    b = copy.deepcopy(a)
    la, lb = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    oa, ob = pynn.optim.AdamW(a.parameters(), lr=0.01), pynn.optim.AdamW(b.parameters(), lr=0.01)
    for _ in range(4):
        assert a.train_step(X, y, la, oa) == nn.Module.train_step(b, X, y, lb, ob)
    assert a.compiled_step(X, la, oa) is not None
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_predict_runs_them_in_the_dense_epilogue(dtype, rng):
    net = _smooth_net(dtype)
    X = rng.standard_normal((50, 12)).astype(dtype)
    program = net.eval()._inference_program()
    # no activation op of its own
    assert program.compiled and [op.kind for op in program.ops] == ["dense"] * 6
    assert program.describe(50) == ["dense+gelu", "dense+silu", "dense+softplus", "dense+mish",
                                    "dense+gelu_tanh", "dense"]
    assert_close(net.predict(X, batch_size=16), net.eval().forward(X), dtype, k=16)


def test_saved_loaded_and_summarized(tmp_path, rng):
    net = _smooth_net(F64)
    path = tmp_path / "smooth.pynn"
    pynn.save(net, path)
    back = pynn.load(path)
    X = rng.standard_normal((4, 12))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    assert [type(m).__name__ for m in back.layers] == [type(m).__name__ for m in net.layers]
    assert back[5].config() == {"beta": 1.5, "threshold": 4.0}
    assert back[9].config() == {"approximate": "tanh"}
    text = net.summary()
    for shown in ("GELU(approximate='none')", "SiLU()", "Softplus(beta=1.5, threshold=4.0)",
                  "Mish()", "Dense+gelu at 0"):
        assert shown in text


def test_changing_a_softplus_parameter_rebuilds_the_plan(rng):
    net = nn.Sequential(nn.Dense(3, 4, seed=0, dtype=F64), nn.Softplus())
    X = rng.standard_normal((5, 3)) * 10
    first = net.forward(X)
    net[1].threshold = 1.0
    again = net.forward(X)
    expected = backend_for("numpy").activation_forward(
        net[0].forward(X), "softplus", (1.0, 1.0))
    np.testing.assert_allclose(again, expected, rtol=1e-12)
    assert not np.allclose(first, again)

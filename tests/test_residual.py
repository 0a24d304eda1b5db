"""nn.Residual: x + block(x), the backward through both paths, nesting, its key names (what a
torch module with ``self.block`` has), saving, summaries, errors."""
import copy

import numpy as np
import pytest

import pynn
from pynn import nn

from conftest import assert_close

F32, F64 = np.float32, np.float64


def _block(dtype=F64):
    return nn.Residual(nn.LayerNorm(6, dtype=dtype), nn.Dense(6, 9, seed=1, dtype=dtype),
                       nn.SiLU(), nn.Dense(9, 6, seed=2, dtype=dtype))


def test_forward_and_backward_are_both_paths(dtype, rng):
    res = _block(dtype)
    inner = copy.deepcopy(res.block)
    X = rng.standard_normal((7, 6)).astype(dtype)
    R = rng.standard_normal((7, 6)).astype(dtype)
    Y = res.forward(X)
    assert_close(Y, X + inner.forward(X), dtype, k=9)
    dX = res.backward(R)
    assert_close(dX, R + inner.backward(R), dtype, k=9)
    for p, q in zip(res.parameters(), inner.parameters()):
        assert_close(p.grad, q.grad, dtype, k=7)
    np.testing.assert_array_equal(res.infer(X), Y)
    assert res.dtype == dtype


def test_gradcheck_single_nested_and_in_a_sequential(rng):
    X = rng.standard_normal((5, 6))
    assert pynn.gradcheck(nn.Residual(nn.Dense(6, 6, seed=3, dtype=F64)), X)
    assert pynn.gradcheck(_block(), X)
    nested = nn.Residual(_block(), nn.GELU(), nn.Residual(nn.Dense(6, 6, seed=4, dtype=F64)))
    assert pynn.gradcheck(nested, X)
    net = nn.Sequential(nn.Dense(6, 6, seed=5, dtype=F64), _block(), nn.RMSNorm(6, dtype=F64),
                        nn.Dense(6, 2, seed=6, dtype=F64))
    assert pynn.gradcheck(net, X)


def test_input_grad_false_still_accumulates_the_blocks_gradients(rng):
    res = _block()
    X = rng.standard_normal((4, 6))
    res.forward(X)
    assert res.backward(np.ones((4, 6)), input_grad=False) is None
    assert all(np.any(p.grad != 0) for p in res.parameters())


def test_key_names_are_a_torch_modules_with_self_block(rng):
    torch = pytest.importorskip("torch")

    class TorchResidual(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return x + self.block(x)

    tnet = torch.nn.Sequential(
        torch.nn.Linear(6, 6),
        TorchResidual(torch.nn.Sequential(torch.nn.LayerNorm(6), torch.nn.Linear(6, 9),
                                          torch.nn.SiLU(), torch.nn.Linear(9, 6))),
        torch.nn.Linear(6, 2)).double()
    ours = nn.Sequential(nn.Dense(6, 6, dtype=F64), _block(), nn.Dense(6, 2, dtype=F64))
    assert list(ours.state_dict()) == list(tnet.state_dict())
    assert "1.block.0.weight" in ours.state_dict()
    ours.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    X = rng.standard_normal((5, 6))
    with torch.no_grad():
        expected = tnet(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(ours.predict(X), expected, rtol=1e-12, atol=1e-13)
    # one module is the block itself: its keys sit right under "block"
    assert list(nn.Residual(nn.Dense(3, 3)).state_dict()) == ["block.weight", "block.bias"]


def test_saved_loaded_and_summarized(tmp_path, rng):
    net = nn.Sequential(nn.Dense(6, 6, seed=7, dtype=F64), _block(),
                        nn.Residual(nn.Residual(nn.Dense(6, 6, seed=8, dtype=F64))))
    pynn.save(net, tmp_path / "r.pynn")
    back = pynn.load(tmp_path / "r.pynn")
    X = rng.standard_normal((3, 6))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    assert list(back.state_dict()) == list(net.state_dict())
    assert type(back[2].block) is nn.Residual
    text = net.summary()
    assert "Residual(   (block): Sequential(" in text
    assert f"{sum(p.size for p in net[1].parameters()):,}" in text


def test_a_saved_residual_must_have_one_block(tmp_path):
    from pynn.io._archive import ModelFileError
    from pynn.io._architecture import build
    arch = {"type": "Residual", "layers": [{"type": "ReLU"}, {"type": "ReLU"}]}
    with pytest.raises(ModelFileError, match="Residual takes 1 layer"):
        build(arch)


def test_errors_name_what_is_wrong(rng):
    with pytest.raises(TypeError, match="Residual needs a block"):
        nn.Residual()
    with pytest.raises(TypeError, match=r"layers\[0\] must be a pynn Module"):
        nn.Residual(lambda x: x)
    res = nn.Residual(nn.Dense(4, 3))
    with pytest.raises(ValueError, match=r"maps an input of shape \(2, 4\) to \(2, 3\)"):
        res.forward(np.ones((2, 4), F32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.Residual(nn.ReLU()).backward(np.ones((2, 2), F32))
    with pytest.raises(TypeError, match="must share one dtype"):
        nn.Sequential(nn.Dense(2, 2), nn.Residual(nn.Dense(2, 2, dtype=F64)))


def test_trains_in_a_sequential_with_train_step(rng):
    X = rng.standard_normal((32, 6))
    y = rng.integers(0, 2, 32)
    net = nn.Sequential(nn.Dense(6, 6, seed=1, dtype=F64), _block(), nn.Dense(6, 2, dtype=F64))
    loss, opt = nn.CrossEntropyLoss(), pynn.optim.AdamW(net.parameters(), lr=0.01)
    values = [net.train_step(X, y, loss, opt) for _ in range(20)]
    assert values[-1] < values[0]

"""The compiled training step on issue 21's blocks: training-mode Dropout, LayerNorm, RMSNorm,
Residual blocks and nested Sequentials run as ops of the one C call, bit for bit the eager
lines (every parameter, gradient, optimizer state and Dropout's step counter), for 1 and 2
threads; the program says what it runs (``op_names``)."""
import copy

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.optim import SGD, Adam, AdamW, NAdam

F32, F64 = np.float32, np.float64


def resnet_mlp(dtype, n_in=12, d=16, inner=24, blocks=2, n_out=5, p=0.1):
    """The ResNet-MLP of issue 21 (bench's "resnet" case) at test size."""
    layers = [nn.Dense(n_in, d, seed=1, dtype=dtype)]
    for b in range(blocks):
        layers.append(nn.Residual(
            nn.LayerNorm(d, dtype=dtype), nn.Dense(d, inner, seed=10 + b, dtype=dtype),
            nn.GELU(), nn.Dropout(p, seed=20 + b), nn.Dense(inner, d, seed=30 + b, dtype=dtype)))
    layers += [nn.LayerNorm(d, dtype=dtype), nn.ReLU(), nn.Dense(d, n_out, seed=2, dtype=dtype)]
    return nn.Sequential(*layers)


NETS = {
    "resnet-mlp": resnet_mlp,
    "dropout": lambda d: nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=d), nn.ReLU(), nn.Dropout(0.3, seed=2),
        nn.Dense(16, 8, seed=3, dtype=d), nn.BatchNorm(8, dtype=d), nn.Tanh(),
        nn.Dropout(0.5, seed=4), nn.Dense(8, 5, seed=5, dtype=d)),
    # RMSNorm with and without its weight, LayerNorm without bias or affine, a residual at the
    # very start (its skip is the batch), residuals nested, a single-module block, and a
    # nested plain Sequential
    "norms-nested": lambda d: nn.Sequential(
        nn.Residual(nn.RMSNorm(12, dtype=d), nn.Dense(12, 12, seed=1, dtype=d), nn.SiLU()),
        nn.Dense(12, 16, seed=2, dtype=d),
        nn.Residual(nn.LayerNorm(16, bias=False, dtype=d),
                    nn.Residual(nn.Dense(16, 16, seed=3, dtype=d)),
                    nn.RMSNorm(16, elementwise_affine=False, dtype=d)),
        nn.Sequential(nn.LayerNorm(16, elementwise_affine=False, dtype=d), nn.Mish(),
                      nn.Dense(16, 5, seed=4, dtype=d))),
    "layernorm-first": lambda d: nn.Sequential(
        nn.LayerNorm(12, eps=1e-3, dtype=d), nn.Dense(12, 5, seed=1, dtype=d)),
}

OPTIMIZERS = {
    "adam": lambda p: Adam(p, lr=0.01),
    "adamw": lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
    "sgd": lambda p: SGD(p, lr=0.05, momentum=0.9),
    "nadam": lambda p: NAdam(p, lr=0.01),  # its loop runs right after the program
}


def _data(dtype, loss_name, n=70, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12)).astype(dtype)
    if loss_name == "ce":
        return X, rng.integers(0, 5, n), nn.CrossEntropyLoss
    return X, rng.standard_normal((n, 5)).astype(dtype), nn.MSELoss


def _eager(model, X, y, loss, opt):
    return nn.Module.train_step(model, X, y, loss, opt)


def _assert_same(a, b, opt_a, opt_b):
    """Parameters, gradients, buffers, optimizer state and Dropout counters equal, bit for
    bit."""
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=f"{name}.grad")
    for (name, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers()):
        np.testing.assert_array_equal(ba, bb, err_msg=name)
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    for k in sa:
        for key in sa[k]:
            np.testing.assert_array_equal(sa[k][key], sb[k][key], err_msg=f"state {k} {key}")
    steps = [(m.step, n.step) for m, n in zip(a.modules(), b.modules())
             if isinstance(m, nn.Dropout)]
    assert all(x == y for x, y in steps), steps


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("loss_name", ["ce", "mse"])
def test_compiled_blocks_are_the_eager_step_bit_for_bit(net, loss_name, dtype, n_threads):
    pynn.set_num_threads(n_threads)
    X, y, loss_cls = _data(dtype, loss_name)
    a = NETS[net](dtype)
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters(), lr=0.01), Adam(b.parameters(), lr=0.01)
    la, lb = loss_cls(), loss_cls()
    for step in range(4):
        va = a.train_step(X, y, la, opt_a)
        vb = _eager(b, X, y, lb, opt_b)
        assert va == vb, f"step {step}: {va} != {vb}"
    assert a.compiled_step(X, la, opt_a) is not None, "the compiled step was not used"
    _assert_same(a, b, opt_a, opt_b)


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_the_resnet_mlp_with_dropout_runs_compiled(opt_name, n_threads):
    """Issue 21's must-show: the compiled step runs the ResNet-MLP with Dropout, one op per
    layer (the residuals as begin/end marks), and matches the eager loop bit for bit."""
    pynn.set_num_threads(n_threads)
    X, y, _ = _data(F32, "ce", n=256)
    a = resnet_mlp(F32, blocks=3)
    b = copy.deepcopy(a)
    opt_a, opt_b = OPTIMIZERS[opt_name](a.parameters()), OPTIMIZERS[opt_name](b.parameters())
    loss = nn.CrossEntropyLoss()
    program = a.compiled_step(X, loss, opt_a)
    block = ["res_begin", "rownorm", "dense", "dropout", "dense", "res_end"]
    assert program.op_names() == ["dense"] + block * 3 + ["rownorm", "act", "dense"]
    for _ in range(5):
        assert a.train_step(X, y, loss, opt_a) == _eager(b, X, y, nn.CrossEntropyLoss(), opt_b)
    assert a.compiled_step(X, loss, opt_a) is program
    _assert_same(a, b, opt_a, opt_b)


def test_dropout_counters_continue_across_paths_and_checkpoints(tmp_path):
    """The compiled step moves each Dropout's counter as the eager forward does: eager steps
    after compiled ones, and a model saved and loaded in between, draw the same masks."""
    X, y, _ = _data(F32, "ce")
    a = NETS["dropout"](F32)
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters()), Adam(b.parameters())
    loss = nn.CrossEntropyLoss()
    for _ in range(3):
        a.train_step(X, y, loss, opt_a)
        _eager(b, X, y, loss, opt_b)
    assert a[2].step == 3
    for _ in range(2):  # then the other way round: a eager, b compiled
        assert _eager(a, X, y, loss, opt_a) == b.train_step(X, y, loss, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    # a checkpoint keeps the counters: the loaded model's compiled steps continue a's stream
    pynn.save_checkpoint(tmp_path / "m.npz", a, opt_a)
    c = pynn.load(tmp_path / "m.npz")
    assert [m.step for m in c.modules() if isinstance(m, nn.Dropout)] == [5, 5]
    opt_a, opt_c = SGD(a.parameters(), lr=0.05), SGD(c.parameters(), lr=0.05)
    for _ in range(2):
        assert c.train_step(X, y, loss, opt_c) == _eager(a, X, y, loss, opt_a)
    assert c.compiled_step(X, loss, opt_c) is not None
    _assert_same(c, a, opt_c, opt_a)


def test_mode_and_setting_changes_rebuild_or_leave_the_program():
    X, y, _ = _data(F32, "ce")
    a = resnet_mlp(F32)
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters()), Adam(b.parameters())
    loss = nn.CrossEntropyLoss()
    first = a.compiled_step(X, loss, opt_a)
    a.eval()  # Dropout as the identity: the eager lines
    b.eval()
    assert a.compiled_step(X, loss, opt_a) is None
    assert a.train_step(X, y, loss, opt_a) == _eager(b, X, y, loss, opt_b)
    a.train()
    b.train()
    assert a.compiled_step(X, loss, opt_a) is not None
    for m in (a, b):  # a new p and a new eps: a new program, the same bits
        m[1].block[3].p = 0.4
        m[1].block[0].eps = 1e-3
    assert a.compiled_step(X, loss, opt_a) is not first
    for _ in range(2):
        assert a.train_step(X, y, loss, opt_a) == _eager(b, X, y, loss, opt_b)
    _assert_same(a, b, opt_a, opt_b)


def test_a_residual_whose_block_changes_the_width_raises_the_eager_error():
    X, y, _ = _data(F32, "ce")
    model = nn.Sequential(nn.Residual(nn.Dense(12, 7, seed=1)), nn.Dense(7, 5, seed=2))
    with pytest.raises(ValueError, match="same shape"):
        model.train_step(X, y, nn.CrossEntropyLoss(), Adam(model.parameters()))


def test_plan_forward_and_backward_match_the_layers_own():
    """The plan's Python path (forward/backward outside train_step) on the same blocks."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 12))
    a = NETS["norms-nested"](F64)
    b = copy.deepcopy(a)
    b._compile = False
    dY = rng.standard_normal((40, 5))
    np.testing.assert_array_equal(a.forward(X), b.forward(X))
    np.testing.assert_array_equal(a.backward(dY), b.backward(dY))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=name)


def test_trainer_fit_runs_the_resnet_mlp_compiled_as_the_eager_loop():
    X, y, _ = _data(F32, "ce", n=200)
    a = resnet_mlp(F32)
    b = copy.deepcopy(a)
    b._compile = False  # the same fit through the Python lines
    histories = []
    for model in (a, b):
        trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), AdamW(model.parameters()))
        histories.append(trainer.fit(X, y, epochs=2, batch_size=64, seed=0, verbose=0))
    assert histories[0].history["loss"] == histories[1].history["loss"]
    assert any(entry[2] is not None for plan in a._compiled.values()
               for entry in plan.train_steps.values())  # a program ran the steps
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
    assert [m.step for m in a.modules() if isinstance(m, nn.Dropout)] == [8, 8]

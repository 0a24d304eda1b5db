"""The compiled training step (``Sequential.train_step``, pynn.nn.train_step) against the four
eager lines it replaces: identical numbers, bit for bit, for every layer, loss and optimizer it
compiles; the eager lines for everything it does not; the right errors for bad input."""
import copy

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from pynn.optim.lr_scheduler import StepLR

F32, F64 = np.float32, np.float64

NETS = {
    "dense-relu": lambda d: nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=d), nn.ReLU(), nn.Dense(16, 16, seed=2, dtype=d),
        nn.ReLU(), nn.Dense(16, 5, seed=3, dtype=d)),
    "recipe": lambda d: nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=d), nn.BatchNorm(16, dtype=d), nn.ReLU(),
        nn.Dense(16, 8, seed=2, dtype=d), nn.BatchNorm(8, momentum=None, dtype=d), nn.Tanh(),
        nn.Dense(8, 5, seed=3, dtype=d)),
    "unfusable": lambda d: nn.Sequential(
        nn.Dense(12, 9, seed=1, dtype=d), nn.Square(), nn.BatchNorm(9, dtype=d),
        nn.LeakyReLU(-0.3), nn.Dense(9, 7, bias=False, seed=2, dtype=d), nn.ELU(0.5),
        nn.Dense(7, 5, seed=3, dtype=d), nn.Sigmoid()),
    "batchnorm-first": lambda d: nn.Sequential(
        nn.BatchNorm(12, dtype=d), nn.Dense(12, 5, seed=1, dtype=d)),
    # the smooth activations: fused with their Dense, which keeps its pre-activation
    "smooth": lambda d: nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=d), nn.GELU(), nn.Dense(16, 9, seed=2, dtype=d),
        nn.BatchNorm(9, dtype=d), nn.SiLU(), nn.Dense(9, 7, seed=3, dtype=d), nn.Mish(),
        nn.Dense(7, 5, seed=4, dtype=d), nn.Softplus(beta=2.0, threshold=3.0)),
}

OPTIMIZERS = {
    "adam": lambda p: Adam(p, lr=0.01),
    "adam-amsgrad-l1-wd": lambda p: Adam(p, lr=0.01, amsgrad=True, l1=1e-3, weight_decay=1e-2),
    "adamw": lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
    "sgd": lambda p: SGD(p, lr=0.05),
    "sgd-nesterov": lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop": lambda p: RMSprop(p, lr=0.01, centered=True, momentum=0.5),
    "adagrad": lambda p: Adagrad(p, lr=0.05),
}


def _data(dtype, loss_name, n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12)).astype(dtype)
    labels = rng.integers(0, 5, n)
    if loss_name == "ce":
        return X, labels, nn.CrossEntropyLoss
    if loss_name == "mse":
        return X, rng.standard_normal((n, 5)).astype(dtype), nn.MSELoss
    return X, (rng.random((n, 5)) > 0.5).astype(dtype), nn.BCEWithLogitsLoss


def _eager(model, X, y, loss, opt):
    return nn.Module.train_step(model, X, y, loss, opt)


def _step_both(a, b, X, y, opt_a, opt_b):
    """One cross-entropy step of ``a`` by train_step and of ``b`` by the eager lines: the same
    loss value, bit for bit."""
    assert a.train_step(X, y, nn.CrossEntropyLoss(), opt_a) == _eager(
        b, X, y, nn.CrossEntropyLoss(), opt_b)


def _assert_same(a, b, opt_a, opt_b):
    """Every parameter, gradient, buffer and optimizer state entry equal, bit for bit."""
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=f"{name}.grad")
    for (name, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers()):
        np.testing.assert_array_equal(ba, bb, err_msg=name)
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for key in sa[k]:
            np.testing.assert_array_equal(sa[k][key], sb[k][key], err_msg=f"state {k} {key}")


def _pair(net, dtype, opt_name):
    a = NETS[net](dtype)
    b = copy.deepcopy(a)
    return a, b, OPTIMIZERS[opt_name](a.parameters()), OPTIMIZERS[opt_name](b.parameters())


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("loss_name", ["ce", "mse", "bce"])
def test_compiled_step_is_the_eager_step_bit_for_bit(net, loss_name, dtype, n_threads):
    pynn.set_num_threads(n_threads)
    X, y, loss_cls = _data(dtype, loss_name)
    a, b, opt_a, opt_b = _pair(net, dtype, "adam")
    la, lb = loss_cls(), loss_cls()
    for step in range(4):
        va = a.train_step(X, y, la, opt_a)
        vb = _eager(b, X, y, lb, opt_b)
        assert va == vb, f"step {step}: {va} != {vb}"
    assert a.compiled_step(X, la, opt_a) is not None, "the compiled step was not used"
    _assert_same(a, b, opt_a, opt_b)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_every_optimizer_updates_as_its_own_step(opt_name, dtype):
    X, y, loss_cls = _data(dtype, "ce")
    a, b, opt_a, opt_b = _pair("recipe", dtype, opt_name)
    sched_a, sched_b = StepLR(opt_a, 2, gamma=0.5), StepLR(opt_b, 2, gamma=0.5)
    for _ in range(5):  # the schedule changes lr between steps: the program follows it
        _step_both(a, b, X, y, opt_a, opt_b)
        sched_a.step()
        sched_b.step()
    _assert_same(a, b, opt_a, opt_b)


def test_big_batches_split_over_threads_stay_identical():
    # 512 x 256 products go to pynn's team in tiles: the program runs the same tiles
    pynn.set_num_threads(2)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((512, 256)).astype(F32)
    y = rng.integers(0, 10, 512)
    a = nn.Sequential(nn.Dense(256, 256, seed=1), nn.BatchNorm(256), nn.ReLU(),
                      nn.Dense(256, 10, seed=2))
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters()), Adam(b.parameters())
    for _ in range(3):
        _step_both(a, b, X, y, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)


def _fusable(d, batchnorm=True):
    # 64 rows: the first Dense's output is wider than the batch (a forward by column tiles)
    # and big enough to split, and its columns are whole 64-byte lines per tile
    first = ([nn.BatchNorm(512, dtype=d)] if batchnorm else []) + [nn.ReLU()]
    return nn.Sequential(
        nn.Dense(96, 512, seed=1, dtype=d), *first,
        nn.Dense(512, 64, seed=2, dtype=d), nn.BatchNorm(64, momentum=None, dtype=d),
        nn.Tanh(), nn.Dense(64, 10, seed=3, dtype=d))


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
def test_a_few_rows_of_a_wide_layer_keep_their_preactivation(n_threads):
    # 16 rows of 96 -> 512 with GELU and 512 -> 64 with Softplus: the few-rows kernel writes
    # the kept pre-activation Z, the epilogue and the backward read it (eager bits)
    pynn.set_num_threads(n_threads)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((16, 96)).astype(F32)
    y = rng.integers(0, 10, 16)
    a = nn.Sequential(nn.Dense(96, 512, seed=1, dtype=F32), nn.GELU(),
                      nn.Dense(512, 64, seed=2, dtype=F32), nn.Softplus(beta=1.5, threshold=4.0),
                      nn.Dense(64, 10, seed=3, dtype=F32))
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters()), Adam(b.parameters())
    for _ in range(3):
        _step_both(a, b, X, y, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    assert a.compiled_step(X, nn.CrossEntropyLoss(), opt_a) is not None


# (BatchNorm after the first Dense, threads) -> (dense ops whose forward runs the BatchNorm
# after it, the ops whose backward runs by column tiles with the update), op indices (a
# BatchNorm and its activation are one op): 3 threads cut 512 columns where BatchNorm's
# 16-column tiles cannot; one thread has no tiles to share; without the BatchNorm nothing
# fuses (and the steps still agree)
FUSED = {(True, 1): ([], []), (True, 2): ([0], [0, 1]), (True, 3): ([], []),
         (True, 4): ([0], [0, 1]), (False, 1): ([], []), (False, 2): ([], [])}


@pytest.mark.parametrize("batchnorm, n_threads", sorted(FUSED),
                         ids=[f"{'bn' if b else 'relu'}-t{t}" for b, t in sorted(FUSED)])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("opt_name", ["adam", "adam-amsgrad-l1-wd", "sgd-nesterov", "rmsprop"])
def test_ops_fused_on_column_tiles_give_the_eager_bits(batchnorm, n_threads, dtype, opt_name):
    # which ops fuse follows the products' strategies: the fixed rules' here (pynn.tune's
    # estimate), which tile these products (measured, the tiles may lose to BLAS's threads)
    pynn.tune.set_mode("estimate")
    pynn.set_num_threads(n_threads)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((64, 96)).astype(dtype)
    y = rng.integers(0, 10, 64)
    a = _fusable(dtype, batchnorm)
    b = copy.deepcopy(a)
    opt_a, opt_b = OPTIMIZERS[opt_name](a.parameters()), OPTIMIZERS[opt_name](b.parameters())
    loss = nn.CrossEntropyLoss()
    for _ in range(3):
        assert a.train_step(X, y, loss, opt_a) == _eager(b, X, y, loss, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    forward, backward, tied = a.compiled_step(X, loss, opt_a).prog.fusion()
    assert (forward, backward) == FUSED[batchnorm, n_threads]
    # the first Dense's W and b and the first BatchNorm's gamma and beta are updated on the
    # fused backward's tiles, unless the optimizer's loop runs after the program (RMSprop)
    assert tied == (4 if backward and opt_name != "rmsprop" else 0)


@pytest.mark.parametrize("few_rows", ["estimate", "transposed"])
@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
def test_a_few_rows_of_a_wide_layer_give_the_eager_bits(n_threads, few_rows):
    # 16 rows of 96 -> 512: the forward is a few-rows product, whole on one thread and on the
    # fused column tiles on two: pynn's own kernel (DENSE_DOT, the fixed rules' strategy:
    # pynn.tune's estimate), or BLAS's transposed product in the program's scratch (FEW_ROWS
    # in csrc/_dense.pxd, forced)
    pynn.tune.set_mode("estimate")
    if few_rows == "transposed":
        pynn.tune._force({"forward": "few_rows_tiles" if n_threads == 2 else "few_rows"})
    pynn.set_num_threads(n_threads)
    rng = np.random.default_rng(6)
    X = rng.standard_normal((16, 96)).astype(F32)
    y = rng.integers(0, 10, 16)
    a = _fusable(F32)
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters()), Adam(b.parameters())
    for _ in range(3):
        _step_both(a, b, X, y, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    forward, _, _ = a.compiled_step(X, nn.CrossEntropyLoss(), opt_a).prog.fusion()
    assert forward == ([0, 2] if n_threads == 2 else [])  # (512 x 64 too: a few rows)


def test_fused_updates_skip_frozen_and_foreign_parameters():
    # the first BatchNorm frozen, the first Dense's bias not in the optimizer (so gradients
    # accumulate until the optimizer's zero_grad): the fused backward updates only W, and
    # the rest of the update leaves the others alone (the fixed rules' tiles: pynn.tune's
    # estimate)
    pynn.tune.set_mode("estimate")
    pynn.set_num_threads(2)
    rng = np.random.default_rng(6)
    X = rng.standard_normal((64, 96)).astype(F32)
    y = rng.integers(0, 10, 64)
    a = _fusable(F32)
    b = copy.deepcopy(a)
    for m in (a, b):
        m[1].requires_grad_(False)
    opt_a = Adam([p for p in a.parameters() if p is not a[0].bias], lr=0.01)
    opt_b = Adam([p for p in b.parameters() if p is not b[0].bias], lr=0.01)
    loss = nn.CrossEntropyLoss()
    for _ in range(3):
        assert a.train_step(X, y, loss, opt_a) == _eager(b, X, y, loss, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    assert a.compiled_step(X, loss, opt_a).prog.fusion() == ([0], [0, 1], 1)
    assert np.abs(a[0].bias.grad).sum() > 0


def test_freezing_and_foreign_parameters_follow_zero_grad_semantics():
    X, y, _ = _data(F32, "ce")
    a, b, _, _ = _pair("recipe", F32, "adam")
    extra_a, extra_b = nn.Dense(3, 3, seed=9), nn.Dense(3, 3, seed=9)
    # the optimizers also hold a parameter the model's backward never writes
    opt_a = Adam(list(a.parameters()) + list(extra_a.parameters()), lr=0.01)
    opt_b = Adam(list(b.parameters()) + list(extra_b.parameters()), lr=0.01)
    extra_a.weight.grad[...] = 1.0
    extra_b.weight.grad[...] = 1.0
    for step in range(6):
        if step == 2:  # freeze a layer mid-training, then unfreeze it
            a[0].requires_grad_(False)
            b[0].requires_grad_(False)
        if step == 4:
            a[0].requires_grad_(True)
            b[0].requires_grad_(True)
        _step_both(a, b, X, y, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    np.testing.assert_array_equal(extra_a.weight.data, extra_b.weight.data)


def test_model_gradients_not_in_the_optimizer_keep_accumulating():
    # zero_grad is the optimizer's: a model parameter it does not hold keeps its gradient
    X, y, _ = _data(F64, "ce")
    a, b, _, _ = _pair("dense-relu", F64, "adam")
    opt_a = Adam(list(a.parameters())[2:], lr=0.01)
    opt_b = Adam(list(b.parameters())[2:], lr=0.01)
    for _ in range(3):
        a.train_step(X, y, nn.CrossEntropyLoss(), opt_a)
        _eager(b, X, y, nn.CrossEntropyLoss(), opt_b)
    _assert_same(a, b, opt_a, opt_b)
    assert np.abs(a[0].weight.grad).sum() > 0


@pytest.mark.parametrize("make", [
    # (training-mode Dropout and nested Sequentials compile: tests/test_train_step_blocks.py)
    lambda: nn.Sequential(nn.Dense(12, 8, seed=1), nn.ReLU(), nn.Dropout(0.0, seed=2),
                          nn.Dense(8, 5, seed=3)),
    lambda: nn.Sequential(nn.Dense(12, 8, seed=1), nn.Softmax(), nn.Dense(8, 5, seed=3)),
], ids=["dropout-p0", "softmax"])
def test_what_it_does_not_compile_runs_the_eager_lines(make):
    X, y, _ = _data(F32, "ce")
    a = make()
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters()), Adam(b.parameters())
    for _ in range(3):
        _step_both(a, b, X, y, opt_a, opt_b)
    assert a.compiled_step(X, nn.CrossEntropyLoss(), opt_a) is None
    _assert_same(a, b, opt_a, opt_b)


def test_numpy_backend_and_eval_mode_run_eagerly():
    X, y, _ = _data(F32, "ce")
    a, b, opt_a, opt_b = _pair("recipe", F32, "adam")
    loss = nn.CrossEntropyLoss()
    a.eval()  # BatchNorm with running statistics: the eager path's business
    b.eval()
    assert a.compiled_step(X, loss, opt_a) is None
    assert a.train_step(X, y, loss, opt_a) == _eager(b, X, y, nn.CrossEntropyLoss(), opt_b)
    a.train()
    assert a.compiled_step(X, nn.CrossEntropyLoss(backend="numpy"), opt_a) is None
    assert a.compiled_step(X, loss, opt_a) is not None


@pytest.mark.parametrize("labels", [np.arange(48) % 5, (np.arange(48) % 5).astype(np.int32),
                                    (np.arange(96) % 5)[::2]], ids=["intp", "int32", "strided"])
def test_labels_of_any_integer_layout_give_the_same_step(labels):
    X, _, _ = _data(F32, "ce")
    a, b, opt_a, opt_b = _pair("dense-relu", F32, "adam")
    _step_both(a, b, X, labels, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)


@pytest.mark.parametrize("bad, error, match", [
    (lambda X, y: (X, np.where(np.arange(48) == 7, 5, y)), ValueError, "labels"),
    (lambda X, y: (X, -y - 1), ValueError, "labels"),
    (lambda X, y: (X, y.astype(np.float32)), TypeError, "labels"),
    (lambda X, y: (X, y[:10]), ValueError, "labels"),
    (lambda X, y: (X.astype(np.float64), y), TypeError, "float32"),
    (lambda X, y: (X[:, :5], y), ValueError, "12"),
])
def test_bad_input_raises_the_eager_error_and_changes_nothing(bad, error, match):
    X, y, _ = _data(F32, "ce")
    model, _, opt, _ = _pair("recipe", F32, "adam")
    model.train_step(X, y, nn.CrossEntropyLoss(), opt)  # the program exists now
    before = {k: v.copy() for k, v in model.state_dict().items()}
    Xb, yb = bad(X, y)
    with pytest.raises(error, match=match):
        model.train_step(Xb, yb, nn.CrossEntropyLoss(), opt)
    for k, v in model.state_dict().items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_trainer_fit_takes_the_compiled_step_and_matches_the_eager_loop():
    X, y, _ = _data(F32, "ce", n=200)
    a, b, opt_a, opt_b = _pair("recipe", F32, "adam")
    b._compile = False  # the same fit through the Python lines
    ha = pynn.Trainer(a, nn.CrossEntropyLoss(), opt_a).fit(X, y, epochs=3, batch_size=32,
                                                              seed=0, verbose=0)
    hb = pynn.Trainer(b, nn.CrossEntropyLoss(), opt_b).fit(X, y, epochs=3, batch_size=32,
                                                              seed=0, verbose=0)
    assert ha.history["loss"] == hb.history["loss"]
    assert ha.history["accuracy"] == hb.history["accuracy"]
    _assert_same(a, b, opt_a, opt_b)
    assert any(p.train_steps for p in a._compiled.values())


def test_trainer_stops_on_nan_before_the_update():
    X, y, _ = _data(F32, "ce", n=64)
    X[40] = 3e38  # second batch of 32: finite input, the products overflow, the loss is NaN
    a, b, opt_a, opt_b = _pair("dense-relu", F32, "adam")
    b._compile = False
    for m, opt in ((a, opt_a), (b, opt_b)):
        trainer = pynn.Trainer(m, nn.CrossEntropyLoss(), opt,
                               callbacks=[pynn.train.TerminateOnNaN()])
        with pytest.warns(RuntimeWarning, match="TerminateOnNaN"):
            history = trainer.fit(X, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        assert "batch 2" in history.stop_reason
    # the optimizers' state tells whether the NaN batch's update ran (the weights are restored)
    _assert_same(a, b, opt_a, opt_b)
    assert all(np.isfinite(p.data).all() for p in a.parameters())


def test_a_trained_model_copies_and_pickles_into_an_independent_trainer():
    import pickle

    X, y, _ = _data(F32, "ce")
    a, _, opt_a, _ = _pair("recipe", F32, "adam")
    a.train_step(X, y, nn.CrossEntropyLoss(), opt_a)  # a has a plan and a compiled step now
    for b in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        c = copy.deepcopy(b)  # the same weights, stepped by the eager lines below
        opt_b, opt_c = Adam(b.parameters(), lr=0.01), Adam(c.parameters(), lr=0.01)
        _step_both(b, c, X, y, opt_b, opt_c)
        _assert_same(b, c, opt_b, opt_c)


def test_parameters_repacked_by_another_optimizer_are_followed():
    # A second optimizer over the same parameters packs them into its own arena; the first
    # re-packs them at its next step. The compiled step must follow them, not the old arrays.
    X, y, _ = _data(F32, "ce")
    a, b, opt_a, opt_b = _pair("recipe", F32, "adam")
    for step in range(4):
        if step == 2:  # an optimizer of the last layer alone packs it into an arena of its own
            Adam(list(a[-1].parameters()))
            Adam(list(b[-1].parameters()))
        _step_both(a, b, X, y, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)


class _PlainSGD:
    """An optimizer that is not pynn's: the compiled step must leave it to the eager lines."""

    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    def step(self):
        for p in self.params:
            p.data[...] -= self.lr * p.grad


def test_a_foreign_optimizer_runs_the_eager_lines():
    X, y, _ = _data(F64, "ce")
    a, b, _, _ = _pair("dense-relu", F64, "sgd")
    opt_a, opt_b = _PlainSGD(a.parameters(), 0.1), _PlainSGD(b.parameters(), 0.1)
    for _ in range(3):
        _step_both(a, b, X, y, opt_a, opt_b)
    assert a.compiled_step(X, nn.CrossEntropyLoss(), opt_a) is None
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_batchnorm_settings_changed_between_steps_are_followed():
    X, y, _ = _data(F64, "ce")
    a, b, opt_a, opt_b = _pair("recipe", F64, "adam")
    for step in range(4):
        if step == 2:
            for m in (a, b):
                m[1].eps, m[1].momentum, m[4].momentum = 1e-2, 0.5, 0.3
        _step_both(a, b, X, y, opt_a, opt_b)
    _assert_same(a, b, opt_a, opt_b)


# Between a program's steps the optimizer only advances its step counts and hands over each
# group's scalars (Optimizer.update_runs' quick path) until something else changes; each edit
# below must send it through the whole bookkeeping again.
GROUP_EDITS = {
    "sgd-momentum-on": (lambda p: SGD(p, lr=0.05), lambda g: g.update(momentum=0.9)),
    "sgd-nesterov-on": (lambda p: SGD(p, lr=0.05, momentum=0.5),
                        lambda g: g.update(nesterov=True)),
    "adam-amsgrad-on": (lambda p: Adam(p, lr=0.01), lambda g: g.update(amsgrad=True)),
    "adam-betas": (lambda p: Adam(p, lr=0.01), lambda g: g.update(betas=(0.5, 0.9))),
    "adamw-decay": (lambda p: AdamW(p, lr=0.01), lambda g: g.update(weight_decay=0.5)),
}


@pytest.mark.parametrize("edit", sorted(GROUP_EDITS))
def test_quick_steps_follow_group_edits_and_loaded_state(edit):
    make, change = GROUP_EDITS[edit]
    X, y, _ = _data(F64, "ce")
    a = NETS["dense-relu"](F64)
    b = copy.deepcopy(a)
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    loss_a, loss_b = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    quick = []
    real = opt_a.update_runs
    opt_a.update_runs = lambda loaded=None: quick.append(real(loaded)) or quick[-1]
    for step in range(8):
        if step == 3:
            for opt in (opt_a, opt_b):
                change(opt.param_groups[0])
        if step == 5:  # a state loaded between steps, from a copy taken now
            saved = copy.deepcopy(opt_b.state_dict())
            for opt in (opt_a, opt_b):
                opt.load_state_dict(saved)
        assert a.train_step(X, y, loss_a, opt_a) == _eager(b, X, y, loss_b, opt_b)
    _assert_same(a, b, opt_a, opt_b)
    taken = [h.runs is None for h in quick]
    # steps 0, 3 and 5 need the whole bookkeeping; the rest were quick
    assert taken == [False, True, True, False, True, False, True, True]


class _EpsBeforeAdam(Adam):
    _eps_before_correction = True  # scikit-learn's placement (pynn.sklearn's SklearnAdam)


@pytest.mark.parametrize("make", [
    lambda p: Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3),
    lambda p: AdamW(p, lr=0.01, betas=(0.5, 0.9), eps=1e-4, weight_decay=0.3),
    lambda p: _EpsBeforeAdam(p, lr=0.01, betas=(0.7, 0.99), eps=1e-2),
], ids=["adam", "adamw", "eps-before-correction"])
def test_step_scalars_computed_in_the_program_are_pythons(make):
    # After the first step the program derives each step's bias corrections (and eps placed
    # before them) in C from the step count: the same bits as adam_loop_scalars in Python,
    # step after step while the corrections still move (large eps: they weigh in).
    X, y, _ = _data(F64, "ce")
    a = NETS["dense-relu"](F64)
    b = copy.deepcopy(a)
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    loss_a, loss_b = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    for step in range(25):
        if step == 12:
            for opt in (opt_a, opt_b):
                opt.param_groups[0]["lr"] = 0.003  # one step through Python, then C again
        assert a.train_step(X, y, loss_a, opt_a) == _eager(b, X, y, loss_b, opt_b), step
    _assert_same(a, b, opt_a, opt_b)


@pytest.mark.parametrize("opt_name", ["adam", "sgd-nesterov"])
def test_programs_of_two_batch_shapes_follow_an_edit_seen_by_the_other(opt_name):
    # An epoch's full batches and its short last batch have a program each, sharing the
    # optimizer. A rate changed while one of them runs must reach the other one too, though
    # by then the optimizer has already checked the edited group (for the first program).
    X, y, _ = _data(F64, "ce", n=40)
    a, b, opt_a, opt_b = _pair("dense-relu", F64, opt_name)
    loss_a, loss_b = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    sched_a, sched_b = StepLR(opt_a, 1, gamma=0.5), StepLR(opt_b, 1, gamma=0.5)
    for epoch in range(4):
        for lo, hi in ((0, 16), (16, 32), (32, 40)):
            assert a.train_step(X[lo:hi], y[lo:hi], loss_a, opt_a) == _eager(
                b, X[lo:hi], y[lo:hi], loss_b, opt_b), (epoch, lo)
        sched_a.step()
        sched_b.step()
    _assert_same(a, b, opt_a, opt_b)


@pytest.mark.parametrize("opt_name", ["adam", "sgd-nesterov"])
def test_programs_of_two_batch_shapes_keep_their_quick_path_across_a_decay_flip(opt_name):
    # The estimators' epoch: full batches with weight decay alpha / 16, then a short last batch
    # with alpha / 8 on the weights' group, the rest undecayed. Once each program has loaded
    # its configuration, the flips back and forth find it again (Optimizer._known_configs):
    # every later step is update_runs' quick answer, and the numbers are the eager steps'.
    X, y, _ = _data(F64, "ce", n=40)
    a = NETS["dense-relu"](F64)
    b = copy.deepcopy(a)

    def make(model):
        weights = [m.weight for m in model if isinstance(m, nn.Dense)]
        ids = {id(w) for w in weights}
        rest = [p for p in model.parameters() if id(p) not in ids]
        groups = [{"params": weights}, {"params": rest, "weight_decay": 0.0}]
        if opt_name == "adam":
            return Adam(groups, lr=0.01)
        return SGD(groups, lr=0.05, momentum=0.9, nesterov=True)

    opt_a, opt_b = make(a), make(b)
    loss_a, loss_b = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    quick = []
    real = opt_a.update_runs

    def record(loaded=None):
        answer = real(loaded)
        quick.append(answer.runs is None)
        return answer

    opt_a.update_runs = record
    for epoch in range(4):
        for lo, hi in ((0, 16), (16, 32), (32, 40)):
            for opt in (opt_a, opt_b):
                opt.param_groups[0]["weight_decay"] = 0.1 / (hi - lo)
            assert a.train_step(X[lo:hi], y[lo:hi], loss_a, opt_a) == _eager(
                b, X[lo:hi], y[lo:hi], loss_b, opt_b), (epoch, lo)
    _assert_same(a, b, opt_a, opt_b)
    # each program's first step loads the runs; every later step is quick
    assert quick == [False, True, False] + [True] * 9


# ------------------------------------------------------------------ the step path's interfaces
def test_step_kinds_agree_across_the_cython_boundary():
    # one enumeration: pynn.backend.codes on the Python side, _train_step.pxd's enum on the C
    # side, under the same names
    from pynn._kernels import train_step as kernel
    from pynn.backend import codes

    assert kernel.step_kinds() == codes.STEP_KINDS
    for name, value in codes.STEP_KINDS.items():
        assert getattr(codes, name) == value


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Dense(12, 5, seed=1)

    def forward(self, X):
        return self.inner.forward(X)

    def backward(self, dY, input_grad=True):
        return self.inner.backward(dY, input_grad=input_grad)


def test_compiled_step_is_the_models_answer():
    X, y, _ = _data(F32, "ce")
    loss = nn.CrossEntropyLoss()
    custom = _Custom()
    assert custom.compiled_step(X, loss, Adam(custom.parameters())) is None
    dropout = nn.Sequential(nn.Dense(12, 8, seed=1), nn.Dropout(0.3, seed=2),
                            nn.Dense(8, 5, seed=3))
    dropout.eval()  # (in training mode Dropout compiles: tests/test_train_step_blocks.py)
    assert dropout.compiled_step(X, loss, Adam(dropout.parameters())) is None
    a, b, opt_a, opt_b = _pair("recipe", F32, "adam")
    program = a.compiled_step(X, loss, opt_a)
    assert program is not None and a.compiled_step(X, loss, opt_a) is program
    assert program.run(X, y) == _eager(b, X, y, nn.CrossEntropyLoss(), opt_b)
    _assert_same(a, b, opt_a, opt_b)
    a._compile = False
    assert a.compiled_step(X, loss, opt_a) is None
    with pytest.raises(ValueError, match="zero_grad"):
        b.compiled_step(X, loss, opt_b, zero_grad="nobody")
    with pytest.raises(ValueError, match="zero_grad"):  # named even when nothing compiles
        a.compiled_step(X, loss, opt_a, zero_grad="nobody")


def test_compiled_step_for_a_model_zero_grad_needs_the_optimizer_to_own_the_gradients():
    # a loop that zeroes with model.zero_grad() may take only a program that zeroes nothing
    # else: the optimizer holding exactly the model's trainable parameters
    X, _, _ = _data(F64, "ce")
    a, _, opt_a, _ = _pair("dense-relu", F64, "adam")
    loss = nn.CrossEntropyLoss()
    assert a.compiled_step(X, loss, opt_a, zero_grad="model") is not None
    partial = Adam(list(a.parameters())[2:], lr=0.01)
    assert a.compiled_step(X, loss, partial) is not None
    assert a.compiled_step(X, loss, partial, zero_grad="model") is None


RECORDS = {
    "adam": (lambda p: Adam(p, lr=0.01, amsgrad=True, weight_decay=0.1), "AdamRun",
             {"lr": 0.01, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.999,
              "decoupled_weight_decay": False}),
    "adamw": (lambda p: AdamW(p, lr=0.02), "AdamRun",
              {"lr": 0.02, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    "sgd": (lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True), "SGDRun",
            {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "adagrad": (lambda p: Adagrad(p, lr=0.05, lr_decay=0.1), "AdagradRun",
                {"lr": 0.05, "lr_decay": 0.1}),
    "rmsprop": (lambda p: RMSprop(p, lr=0.01, centered=True, momentum=0.5), "RMSpropRun",
                {"lr": 0.01, "momentum": 0.5}),
}


@pytest.mark.parametrize("opt_name", sorted(RECORDS))
def test_update_runs_describe_the_step_in_the_optimizers_words(opt_name):
    # update_runs does one step's bookkeeping and names each run's slices and scalars; run on
    # the backend, the records make the very update optimizer.step() makes
    from pynn.backend import backend_for, update_runs

    make, record, fields = RECORDS[opt_name]
    a, b = NETS["dense-relu"](F64), NETS["dense-relu"](F64)
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    rng = np.random.default_rng(4)
    for step in range(1, 4):
        for pa, pb in zip(a.parameters(), b.parameters()):
            pa.grad[...] = pb.grad[...] = rng.standard_normal(pa.shape)
        answer = opt_a.update_runs()
        assert answer.steps is None and len(answer.runs) == 1  # one group, one dtype
        run = answer.runs[0]
        assert type(run).__name__ == record and type(run) is getattr(update_runs, record)
        assert run.param.size == sum(p.size for p in a.parameters())
        for name, value in fields.items():
            assert getattr(run, name) == value, name
        if hasattr(run, "step"):
            assert run.step == step
        update_runs.run_update(run, backend_for("cython"))
        opt_b.step()
        for pa, pb in zip(a.parameters(), b.parameters()):
            np.testing.assert_array_equal(pa.data, pb.data)
    assert opt_a.state_dict()["state"].keys() == opt_b.state_dict()["state"].keys()


def test_update_runs_quick_path_moves_only_the_steps():
    from pynn.backend._optim_steps import adam_loop_scalars

    model = NETS["dense-relu"](F64)
    opt = Adam(model.parameters(), lr=0.01)
    first = opt.update_runs()
    quick = opt.update_runs(first.version)
    assert quick.runs is None and quick.steps == [2] and quick.version == first.version
    run = first.runs[0]
    assert run.loop_scalars() == dict(zip(
        ("beta1", "beta2", "eps", "weight_decay", "l1", "decay", "step_size", "bc2_sqrt"),
        adam_loop_scalars(1, 0.01, 0.9, 0.999, 1e-8, 0.0, 0.0, False)))
    opt.param_groups[0]["lr"] = 0.5  # an edit: the whole bookkeeping again
    again = opt.update_runs(first.version)
    assert again.runs is not None and again.runs[0].step == 3 and again.runs[0].lr == 0.5
    plain = SGD(model.parameters(), lr=0.1).update_runs().runs[0]
    assert plain.loop_mode() == "plain" and plain.momentum_buffer is None
    momentum = SGD(model.parameters(), lr=0.1, momentum=0.9)
    modes = [momentum.update_runs().runs[0].loop_mode() for _ in range(2)]
    assert modes == ["first", "momentum"]


@pytest.mark.parametrize("opt_name", ["adagrad", "rmsprop", "sgd", "adam"])
def test_batchnorm_counts_one_way_on_every_path(opt_name):
    # the layer's forward, a plan's and a compiled step's count batches through one counter,
    # which follows a buffer replaced between steps
    X, y, _ = _data(F32, "ce")
    a, b, opt_a, opt_b = _pair("recipe", F32, opt_name)
    b._compile = False
    for step in range(4):
        if step == 2:
            for m in (a, b):
                m[4].num_batches_tracked = np.array(10, np.int64)
        _step_both(a, b, X, y, opt_a, opt_b)
    assert int(a[1].num_batches_tracked) == 4 and int(a[4].num_batches_tracked) == 12
    _assert_same(a, b, opt_a, opt_b)

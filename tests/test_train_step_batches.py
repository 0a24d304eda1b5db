"""``TrainStep.run_batches``: several compiled steps in one call into C, each the step ``run``
takes, bit for bit (values, parameters, gradients, buffers, optimizer state, dropout
counters), with scikit-learn's per-batch L2 term read before each update; and the cases it
declines, having changed nothing. The estimators' fits through it against the same fits one
batch at a time."""
import copy

import numpy as np
import pytest
from scipy.linalg import blas

import pynn
from pynn import nn
from pynn.nn import train_step
from pynn.optim import SGD, Adam, AdamW
from test_train_step import _assert_same as _assert_same_numbers

F32, F64 = np.float32, np.float64
N = 16  # rows per batch

NETS = {
    "dense-relu": lambda d: nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=d), nn.ReLU(), nn.Dense(16, 5, seed=2, dtype=d)),
    "batchnorm-dropout": lambda d: nn.Sequential(
        nn.Dense(12, 16, seed=1, dtype=d), nn.BatchNorm(16, dtype=d), nn.ReLU(),
        nn.Dropout(0.2, seed=4), nn.Dense(16, 8, seed=2, dtype=d), nn.Tanh(),
        nn.Dense(8, 5, seed=3, dtype=d)),
}
OPTIMIZERS = {
    "adam": lambda p: Adam(p, lr=0.01),
    "adam-amsgrad-l1-wd": lambda p: Adam(p, lr=0.01, amsgrad=True, l1=1e-3, weight_decay=1e-2),
    "adamw": lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
}
LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "bce": nn.BCEWithLogitsLoss}


def _data(dtype, loss_name, batches, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batches * N, 12)).astype(dtype)
    if loss_name == "ce":
        return X, rng.integers(0, 5, batches * N)
    if loss_name == "mse":
        return X, rng.standard_normal((batches * N, 5)).astype(dtype)
    return X, (rng.random((batches * N, 5)) > 0.5).astype(dtype)


def _assert_same(a, b, opt_a, opt_b):
    """test_train_step's check (parameters, gradients, buffers, optimizer state, bit for bit)
    and the dropout layers' counters."""
    _assert_same_numbers(a, b, opt_a, opt_b)
    for la, lb in zip(a, b):
        assert getattr(la, "step", None) == getattr(lb, "step", None)


def _self_dot(w):
    return float((blas.sdot if w.dtype == F32 else blas.ddot)(w, w))


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("net", sorted(NETS))
def test_run_batches_is_run_batch_by_batch_bit_for_bit(net, loss_name, opt_name, dtype,
                                                        n_threads):
    pynn.set_num_threads(n_threads)
    batches = 5
    X, y = _data(dtype, loss_name, 1 + 2 * batches)
    a = NETS[net](dtype)
    b = copy.deepcopy(a)
    opt_a, opt_b = OPTIMIZERS[opt_name](a.parameters()), OPTIMIZERS[opt_name](b.parameters())
    loss_a, loss_b = LOSSES[loss_name](), LOSSES[loss_name]()
    # one step each first: it loads the optimizer's runs, which run_batches needs
    assert a.train_step(X[:N], y[:N], loss_a, opt_a) == b.train_step(X[:N], y[:N], loss_b,
                                                                       opt_b)
    program = a.compiled_step(X[:N], loss_a, opt_a)
    for block in range(2):
        rows = slice(N + block * batches * N, N + (block + 1) * batches * N)
        # (1-D, as the estimators' weights are: BLAS's dot reads it where it lies)
        half_alpha, weights = 0.5e-2, a[0].weight.data.ravel()
        values = program.run_batches(X[rows], y[rows], batches, weights, half_alpha, N)
        assert values is not None and values.shape == (batches,)
        expected = []
        for i in range(batches):
            batch = slice(rows.start + i * N, rows.start + (i + 1) * N)
            penalty = half_alpha * _self_dot(b[0].weight.data.ravel()) / N  # before the update
            expected.append(penalty + b.train_step(X[batch], y[batch], loss_b, opt_b))
        assert values.tolist() == expected
        _assert_same(a, b, opt_a, opt_b)
    # and the steps after it are run's again
    assert a.train_step(X[:N], y[:N], loss_a, opt_a) == b.train_step(X[:N], y[:N], loss_b,
                                                                       opt_b)
    _assert_same(a, b, opt_a, opt_b)


def test_run_batches_without_a_penalty_returns_the_losses():
    X, y = _data(F32, "ce", 4)
    a = NETS["dense-relu"](F32)
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters(), lr=0.01), Adam(b.parameters(), lr=0.01)
    loss = nn.CrossEntropyLoss()
    a.train_step(X[:N], y[:N], loss, opt_a)
    b.train_step(X[:N], y[:N], loss, opt_b)
    values = a.compiled_step(X[:N], loss, opt_a).run_batches(X[N:], y[N:], 3)
    assert values.tolist() == [b.train_step(X[i * N:(i + 1) * N], y[i * N:(i + 1) * N], loss,
                                            opt_b) for i in range(1, 4)]


def _declined(program, model, opt, X, y, count):
    """run_batches answers None and every number stays where it was."""
    before = copy.deepcopy((model, opt.state_dict()))
    assert program.run_batches(X, y, count) is None
    _assert_same(model, before[0], opt, _with_state(before[1], model))


def _with_state(state, model):
    opt = Adam(copy.deepcopy(model).parameters(), lr=0.01)
    opt.load_state_dict(state)
    return opt


@pytest.mark.parametrize("case", ["not-loaded", "rows", "dtype", "labels", "non-contiguous",
                                  "count"])
def test_run_batches_declines_what_run_would_not_take(case):
    X, y = _data(F32, "ce", 4)
    model = NETS["batchnorm-dropout"](F32)
    opt = Adam(model.parameters(), lr=0.01)
    loss = nn.CrossEntropyLoss()
    program = model.compiled_step(X[:N], loss, opt)
    if case != "not-loaded":
        model.train_step(X[:N], y[:N], loss, opt)
    Xb, yb, count = X[N:], y[N:], 3
    if case == "rows":
        Xb, yb = X[N:-1], y[N:-1]
    elif case == "dtype":
        Xb = Xb.astype(F64)
    elif case == "labels":
        yb = yb.copy()
        yb[5] = 5  # out of range for 5 classes
    elif case == "non-contiguous":
        Xb = np.asfortranarray(Xb)
    elif case == "count":
        count = 2
    _declined(program, model, opt, Xb, yb, count)


def test_run_batches_declines_optimizers_whose_runs_are_not_adams():
    X, y = _data(F32, "ce", 4)
    model = NETS["dense-relu"](F32)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    model.train_step(X[:N], y[:N], loss, opt)
    program = model.compiled_step(X[:N], loss, opt)
    data = [p.data.copy() for p in model.parameters()]
    assert program.run_batches(X[N:], y[N:], 3) is None
    for p, d in zip(model.parameters(), data):
        np.testing.assert_array_equal(p.data, d)


@pytest.mark.parametrize("options", [
    dict(), dict(alpha=0.0), dict(batch_norm=True), dict(dropout=0.1),
    dict(shuffle=False, batch_size=40),  # (150 rows: a last batch of 30)
], ids=["default", "no-alpha", "batch-norm", "dropout", "unshuffled"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_estimator_fits_through_run_batches_as_batch_by_batch(options, dtype, monkeypatch):
    from sklearn.datasets import load_iris

    from pynn.sklearn import MLPClassifier

    X, y = load_iris(return_X_y=True)
    X = X.astype(dtype)
    params = {**dict(hidden_layer_sizes=(8, 6), max_iter=4, batch_size=20, random_state=0),
              **options}
    called = []
    original = train_step.TrainStep.run_batches
    monkeypatch.setattr(train_step.TrainStep, "run_batches",
                        lambda self, *a, **k: called.append(1) or original(self, *a, **k))
    together = MLPClassifier(**params).fit(X, y)
    assert called, "run_batches was not used"
    monkeypatch.setattr(train_step.TrainStep, "run_batches", lambda self, *a, **k: None)
    alone = MLPClassifier(**params).fit(X, y)
    assert together.loss_curve_ == alone.loss_curve_
    for a, b in zip(together.coefs_ + together.intercepts_, alone.coefs_ + alone.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=0.01), lambda p: SGD(p, lr=0.1)],
                         ids=["adam", "sgd-plain"])
def test_quick_steps_are_update_runs_quick_answers_at_once(make):
    a = NETS["dense-relu"](F32)
    b = copy.deepcopy(a)
    opt_a, opt_b = (make([{"params": list(m.parameters())[:2]},
                          {"params": list(m.parameters())[2:], "lr": 0.02}]) for m in (a, b))
    loaded_a, loaded_b = opt_a.update_runs().version, opt_b.update_runs().version
    steps = opt_a.quick_steps(loaded_a, 4)
    expected = []
    for _ in range(4):
        answer = opt_b.update_runs(loaded_b)
        assert answer.runs is None
        expected.append(list(answer.steps))
    assert steps.tolist() == expected
    # and the optimizer goes on from there as the one answered step by step
    assert list(opt_a.update_runs(loaded_a).steps) == list(opt_b.update_runs(loaded_b).steps)
    # an edited group needs the full bookkeeping: no quick answer, nothing moved
    opt_a.param_groups[1]["lr"] = 0.03
    before = [group_state["step"] for group_state in opt_a._group_state]
    assert opt_a.quick_steps(loaded_a, 3) is None
    assert [group_state["step"] for group_state in opt_a._group_state] == before


@pytest.mark.parametrize("case", ["sparse", "weighted", "l1"])
def test_estimator_batches_run_batches_cannot_take_go_one_by_one(case, monkeypatch):
    import scipy.sparse as sp
    from sklearn.datasets import load_iris

    from pynn.sklearn import MLPClassifier, _batch_step

    X, y = load_iris(return_X_y=True)
    tried = []
    original = _batch_step._BatchStep._run_batches
    monkeypatch.setattr(_batch_step._BatchStep, "_run_batches",
                        lambda self, *a: tried.append(1) or original(self, *a))
    params = dict(hidden_layer_sizes=(8,), max_iter=3, batch_size=20, random_state=0)
    fit = {}
    if case == "sparse":
        X = sp.csr_matrix(np.where(X > 2, X, 0.0))
    elif case == "weighted":
        fit["sample_weight"] = np.linspace(0.5, 1.5, len(y))
    else:
        params["l1"] = 1e-4
    model = MLPClassifier(**params).fit(X, y, **fit)
    assert tried == [] and model.n_iter_ == 3


def test_an_epochs_blocks_hold_its_batches_in_order_as_runs_of_one_size():
    from sklearn.utils import gen_batches

    from pynn.sklearn._batch_step import _BLOCK_BYTES, _epoch_blocks

    X = np.zeros((1797, 64), np.float32)
    batches = list(gen_batches(1797, 32))
    assert _epoch_blocks(batches, X) == [(0, 1797, [(0, 56, 32), (1792, 1, 5)])]
    # wide rows: several blocks, each about _BLOCK_BYTES, the runs relative to the block
    wide = np.zeros((1797, _BLOCK_BYTES // (4 * 32 * 10)), np.float32)  # 10 batches a block
    blocks = _epoch_blocks(batches, wide)
    assert [(b0, b1) for b0, b1, _ in blocks] == [(k, min(k + 320, 1797))
                                                  for k in range(0, 1797, 320)]
    assert blocks[0][2] == [(0, 10, 32)] and blocks[-1][2] == [(0, 6, 32), (192, 1, 5)]
    covered = [(b0 + lo + i * n, b0 + lo + (i + 1) * n)
               for b0, _, runs in blocks for lo, count, n in runs for i in range(count)]
    assert covered == [(b.start, b.stop) for b in batches]

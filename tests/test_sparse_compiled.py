"""Sparse inputs in the compiled programs (issue 21 item 7): a CSR batch through the compiled
training step (its first op "sparse_dense"), bit for bit the eager sparse step for 1 and 2
threads, equal to training on the dense copy (float64, 1e-10) in train_step, Trainer.fit and
the estimators; the inference program's CSR predict; the kernels' two walks (column view and
rows) against the dense product."""
import copy

import numpy as np
import pytest
import scipy.sparse as sp

import pynn
from pynn import nn, optim
from pynn.backend import backend_for

from conftest import assert_close
from test_sparse import _csr, _digits_binary

NETS = {
    "relu": lambda k, dt: [nn.Dense(k, 12, dtype=dt), nn.ReLU(), nn.Dense(12, 3, dtype=dt)],
    # GELU: the Dense keeps its pre-activation for the backward
    "gelu": lambda k, dt: [nn.Dense(k, 12, dtype=dt), nn.GELU(), nn.Dense(12, 3, dtype=dt)],
    "plain": lambda k, dt: [nn.Dense(k, 3, dtype=dt)],
    # (no bias before BatchNorm: its gradient is round-off, which Adam's step would magnify)
    "blocks": lambda k, dt: [nn.Dense(k, 12, dtype=dt, bias=False), nn.BatchNorm(12, dtype=dt),
                             nn.Tanh(),
                             nn.Dropout(0.2),
                             nn.Residual(nn.Sequential(nn.LayerNorm(12, dtype=dt),
                                                       nn.Dense(12, 12, dtype=dt), nn.SiLU())),
                             nn.Dense(12, 3, dtype=dt)],
}
OPTIMIZERS = {
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "sgd": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
}


def _net(name, k, dtype, seed=0):
    pynn.manual_seed(seed)
    return nn.Sequential(*NETS[name](k, dtype))


def _flat(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()])


def test_the_compiled_step_runs_a_csr_batch_in_its_program(rng):
    X = _csr(rng, 32, 50, np.float64)
    y = rng.integers(0, 3, 32)
    loss = nn.CrossEntropyLoss()
    for name, ops in [("relu", ["sparse_dense", "dense"]),
                      ("blocks", ["sparse_dense", "bn", "dropout", "res_begin", "rownorm",
                                  "dense", "res_end", "dense"])]:
        model = _net(name, 50, np.float64)
        opt = optim.Adam(model.parameters())
        program = model.compiled_step(X, loss, opt)
        assert program is not None and program.op_names() == ops
        assert program.run(X, y) is not None
        # the dense batch has a program of its own, and the CSR's is found again
        assert model.compiled_step(X.toarray(), loss, opt).op_names()[0] == "dense"
        assert model.compiled_step(X, loss, opt) is program


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(NETS))
def test_compiled_csr_step_is_the_eager_step_bit_for_bit(name, opt_name, index_dtype, dtype,
                                                         n_threads, rng):
    # unsorted indices, explicit zeros, an empty row (_csr): the same cores either way
    X = _csr(rng, 40, 70, dtype, index_dtype=index_dtype)
    y = rng.integers(0, 3, 40)
    a = _net(name, 70, dtype)
    b = copy.deepcopy(a)
    opt_a, opt_b = OPTIMIZERS[opt_name](a.parameters()), OPTIMIZERS[opt_name](b.parameters())
    la, lb = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    for step in range(4):
        program = a.compiled_step(X, la, opt_a)
        # finite_only: the step in two calls (forward, then backward and update)
        va = program.run(X, y, finite_only=step % 2 == 1)
        vb = nn.Module.train_step(b, X, y, lb, opt_b)
        assert va == vb, f"step {step}: {va} != {vb}"
    for (key, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=key)
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=f"{key}.grad")
    for (key, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers()):
        np.testing.assert_array_equal(ba, bb, err_msg=key)


def test_the_compiled_csr_step_is_the_same_for_one_and_two_threads(rng):
    from pynn import _threads

    X = _csr(rng, 64, 300, np.float64, density=0.05)
    y = rng.integers(0, 3, 64)
    results, saved, before = [], _threads.PARALLEL_MIN_ELEMENTS, pynn.get_num_threads()
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        _threads.PARALLEL_MIN_ELEMENTS = 1  # threads even on this small batch
        try:
            model = _net("gelu", 300, np.float64)
            opt = optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(5):
                model.train_step(X, y, nn.CrossEntropyLoss(), opt)
            assert model._recent_train_steps[0][2].sparse
            results.append(_flat(model))
        finally:
            _threads.PARALLEL_MIN_ELEMENTS = saved
            pynn.set_num_threads(before)
    np.testing.assert_array_equal(*results)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", ["relu", "gelu", "blocks"])
def test_compiled_csr_step_trains_to_the_dense_copys_weights(name, opt_name, rng):
    X = _csr(rng, 96, 80, np.float64, density=0.1)
    y = rng.integers(0, 3, 96)
    weights = []
    for data in (X, X.toarray()):
        model = _net(name, 80, np.float64)
        opt = OPTIMIZERS[opt_name](model.parameters())
        loss = nn.CrossEntropyLoss()
        for step in range(6):
            rows = slice(16 * step, 16 * step + 16)
            assert model.compiled_step(data[rows], loss, opt) is not None
            model.train_step(data[rows], y[rows], loss, opt)
        weights.append(_flat(model))
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-10, atol=1e-10)


def test_trainer_fit_on_csr_runs_the_compiled_step(rng, monkeypatch):
    from pynn.nn.train_step import TrainStep

    X = _csr(rng, 200, 60, np.float64, density=0.1)
    y = rng.integers(0, 3, 200)
    sparse_runs = []
    run = TrainStep.run

    def counting(self, *args, **kwargs):
        value = run(self, *args, **kwargs)
        sparse_runs.append(self.sparse and value is not None)
        return value

    monkeypatch.setattr(TrainStep, "run", counting)
    weights = []
    for data in (X, X.toarray()):
        model = _net("relu", 60, np.float64)
        pynn.Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters())).fit(
            data, y, epochs=2, batch_size=32, shuffle=True, seed=1, verbose=0)
        weights.append(_flat(model))
    # every CSR batch of full size took the compiled step (the last, 8 rows, has its own)
    assert sparse_runs.count(True) == 2 * 7
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_estimators_on_csr_run_the_compiled_step_to_the_dense_copys_weights(kind):
    from pynn.sklearn import MLPClassifier, MLPRegressor

    X, y = _digits_binary()
    X[X < 0.5] = 0
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    fits = [cls(hidden_layer_sizes=(12,), max_iter=15, random_state=0, solver="adam")
            .fit(data, y) for data in (sp.csr_matrix(X), X)]
    if kind == "classifier":  # (the regressor's scaled loss takes the eager lines)
        last = fits[0]._model._recent_train_steps[0]
        assert last is not None and last[2].sparse
    for a, c in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ predict
def test_the_inference_program_predicts_a_csr_in_its_call(rng):
    X = _csr(rng, 2500, 30, np.float32)
    model = nn.Sequential(nn.Dense(30, 16), nn.BatchNorm(16), nn.ReLU(), nn.Dense(16, 4),
                          nn.Softmax())
    model.eval()
    expected = model.predict(X.toarray(), batch_size=1000)
    program = model._inference_program()
    assert program.fits(X)
    got = model.predict(X, batch_size=1000)
    assert_close(got, expected, np.float32, 30)
    # the layers' own eval forward (infer) on each batch: bit for bit
    np.testing.assert_array_equal(got, np.concatenate(
        [model.infer(X[lo:lo + 1000]) for lo in range(0, 2500, 1000)]))


# ------------------------------------------------------------------ the kernels' two walks
def _walks_columns(X, m):
    from pynn._kernels.sparse import walks_columns

    return walks_columns(X.shape[1], m, X.nnz, X.dtype.itemsize)


@pytest.mark.parametrize("shape", [(2, 5000, 1, 2e-3), (3, 40000, 2, 2e-4),
                                   (64, 40000, 8, 3e-3)],
                         ids=["rows", "rows-wide", "columns"])
def test_both_walks_equal_the_dense_product(shape, dtype, rng):
    # a row of W that stays cached, or a batch whose column view would cost more than its
    # products, walks its rows; a wide W with enough stored values walks the column view
    n, k, m, density = shape
    X = _csr(rng, n, k, dtype, density=density)
    assert _walks_columns(X, m) == (shape[0] == 64)
    W = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dZ = rng.standard_normal((n, m)).astype(dtype)
    dZ[1] = 0  # a row of zero gradient adds nothing, in either walk
    cy = backend_for("cython")
    dense = X.toarray()
    assert_close(cy.sparse_dense_forward(X, W, b), dense @ W.T + b, dtype, 30)
    dW, db = np.ones_like(W), np.ones_like(b)
    cy.sparse_dense_backward(dZ, X, dW, db)
    assert_close(dW, 1 + dZ.T @ dense, dtype, 30)
    assert_close(db, 1 + dZ.sum(axis=0), dtype, 30)


def test_the_column_view_sums_sorted_indices_as_the_row_walk(rng):
    # canonical CSR (sorted indices): the view's column order is the rows' stored order, so
    # its results are the row walk's bits; the walk over the rows is what a batch slicing
    # W's columns to a cached width gives (the same values in each row, W's other columns
    # never read)
    X = _csr(rng, 64, 40000, np.float64, density=3e-3, unsorted=False, explicit_zeros=False)
    used = np.unique(X.indices)
    assert _walks_columns(X, 8) and not _walks_columns(X[:, used], 8)
    W = rng.standard_normal((8, 40000))
    dZ = rng.standard_normal((64, 8))
    cy = backend_for("cython")
    narrow = sp.csr_matrix(X[:, used])
    narrow.sort_indices()
    np.testing.assert_array_equal(cy.sparse_dense_forward(X, W),
                                  cy.sparse_dense_forward(narrow, np.ascontiguousarray(W[:, used])))
    dW, dW_narrow = np.zeros_like(W), np.zeros((8, used.size))
    cy.sparse_dense_backward(dZ, X, dW)
    cy.sparse_dense_backward(dZ, narrow, dW_narrow)
    np.testing.assert_array_equal(dW[:, used], dW_narrow)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
def test_the_compiled_step_walks_the_column_view_as_the_eager_step(index_dtype, n_threads,
                                                                    rng):
    X = _csr(rng, 32, 40000, np.float64, density=4e-3, index_dtype=index_dtype)
    assert _walks_columns(X, 12)
    y = rng.integers(0, 3, 32)
    a = _net("gelu", 40000, np.float64)
    b = copy.deepcopy(a)
    opt_a, opt_b = optim.Adam(a.parameters()), optim.Adam(b.parameters())
    for _ in range(3):
        assert a.train_step(X, y, nn.CrossEntropyLoss(), opt_a) == nn.Module.train_step(
            b, X, y, nn.CrossEntropyLoss(), opt_b)
    assert a._recent_train_steps[0][2].sparse
    np.testing.assert_array_equal(_flat(a), _flat(b))
    a.eval()  # predict's program: each batch as the layers' own eval forward gives it
    np.testing.assert_array_equal(a.predict(X, batch_size=16), np.concatenate(
        [a.infer(X[:16]), a.infer(X[16:])]))
    np.testing.assert_array_equal(a.predict(X, batch_size=32), a.infer(X))  # (the view)

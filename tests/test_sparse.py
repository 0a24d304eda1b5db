"""Sparse inputs (issue 21 item 7): the CSR kernels against their SciPy reference and the dense
product, the first Dense's gradients against finite differences, training on CSR equal to
training on its dense copy (train_step, Trainer.fit), and the bad inputs."""
import numpy as np
import pytest
import scipy.sparse as sp

import pynn
from pynn import nn, optim
from pynn.backend import backend_for

from conftest import assert_close, numerical_grad


def _csr(rng, n, k, dtype, density=0.2, index_dtype=np.int32, explicit_zeros=True,
         unsorted=True):
    """A random CSR (n, k) with empty rows, explicit zeros and unsorted column indices."""
    X = sp.random(n, k, density=density, format="csr", dtype=np.float64, random_state=rng)
    X.data = rng.standard_normal(X.nnz)
    if n > 2:  # an empty row in the middle
        X = sp.csr_matrix(X.multiply(np.arange(n)[:, None] != n // 2))
    X = X.astype(dtype)
    if explicit_zeros and X.nnz:
        X.data[::5] = 0  # stored zeros stay stored
    if unsorted and X.nnz:
        for i in range(n):  # reverse each row's entries: indices no longer sorted
            lo, hi = X.indptr[i], X.indptr[i + 1]
            X.indices[lo:hi] = X.indices[lo:hi][::-1].copy()
            X.data[lo:hi] = X.data[lo:hi][::-1].copy()
        X.has_sorted_indices = False
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    return X


# ------------------------------------------------------------------ the kernels
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=["i32", "i64"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (0, 5, 3), (3, 257, 9),
                                   (131, 263, 17)])
def test_csr_kernels_equal_the_reference_and_the_dense_product(shape, index_dtype, dtype,
                                                               n_threads, rng):
    n, k, m = shape
    X = _csr(rng, n, k, dtype, index_dtype=index_dtype)
    W = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dZ = rng.standard_normal((n, m)).astype(dtype)
    dense = X.toarray()
    results = []
    for name in ("numpy", "cython"):
        be = backend_for(name)
        Y = be.sparse_dense_forward(X, W, b)
        Y0 = be.sparse_dense_forward(X, W)
        dW = np.full((m, k), 0.5, dtype)  # gradients accumulate
        db = np.full(m, 0.25, dtype)
        be.sparse_dense_backward(dZ, X, dW, db)
        dW_only = np.zeros((m, k), dtype)
        be.sparse_dense_backward(dZ, X, dW_only, None)
        results.append((Y, Y0, dW, db, dW_only))
        assert_close(Y, dense @ W.T + b, dtype, k)
        assert_close(Y0, dense @ W.T, dtype, k)
        assert_close(dW, 0.5 + dZ.T @ dense, dtype, n)
        assert_close(db, 0.25 + dZ.sum(0), dtype, n)
        assert_close(dW_only, dZ.T @ dense, dtype, n)
    for a, c in zip(*results):
        assert_close(c, a, dtype, max(n, k))


def test_csr_kernels_are_the_same_for_any_thread_count(rng):
    X = _csr(rng, 300, 400, np.float32)
    W = rng.standard_normal((37, 400)).astype(np.float32)
    dZ = rng.standard_normal((300, 37)).astype(np.float32)
    fast = backend_for("cython")
    before = pynn.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            pynn.set_num_threads(t)
            dW = np.zeros_like(W)
            db = np.zeros(37, np.float32)
            fast.sparse_dense_backward(dZ, X, dW, db)
            out.append((fast.sparse_dense_forward(X, W), dW, db))
    finally:
        pynn.set_num_threads(before)
    for a, c in zip(*out):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("fmt", ["csc", "coo", "csr_array"])
def test_other_sparse_formats_are_converted_to_csr(fmt, backend, rng):
    X = _csr(rng, 20, 30, np.float64, unsorted=False)
    other = sp.csr_array(X) if fmt == "csr_array" else X.asformat(fmt)
    W = rng.standard_normal((4, 30))
    assert_close(backend.sparse_dense_forward(other, W), X.toarray() @ W.T, np.float64, 30)


def test_bad_sparse_inputs_name_the_argument(backend, rng):
    X = _csr(rng, 6, 8, np.float64)
    W = rng.standard_normal((3, 8))
    with pytest.raises(ValueError, match="X must have shape \\(batch, 8\\)"):
        backend.sparse_dense_forward(_csr(rng, 6, 9, np.float64), W)
    with pytest.raises(TypeError, match="X has dtype float32"):
        backend.sparse_dense_forward(X.astype(np.float32), W)
    with pytest.raises(TypeError, match="X must be a SciPy sparse matrix"):
        backend.sparse_dense_forward(X.toarray(), W)
    bad = X.copy()
    bad.data[1] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        backend.sparse_dense_forward(bad, W)
    bad = X.copy()
    bad.indices[0] = 8  # out of range: a kernel would write outside dW
    with pytest.raises(ValueError, match="X has column indices outside"):
        backend.sparse_dense_backward(np.ones((6, 3)), bad, np.zeros((3, 8)))
    with pytest.raises(ValueError, match="X must have 5 rows"):
        backend.sparse_dense_backward(np.ones((5, 3)), X, np.zeros((3, 8)))
    with pytest.raises(ValueError, match="dW must have shape"):
        backend.sparse_dense_backward(np.ones((6, 3)), X, np.zeros((3, 7)))


# ------------------------------------------------------------------ the layer
def _net(k, seed=0, act=nn.Tanh, dtype=np.float64, bias=True):
    return nn.Sequential(nn.Dense(k, 6, seed=seed, dtype=dtype, bias=bias), act(),
                         nn.Dense(6, 3, seed=seed + 1, dtype=dtype))


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, nn.GELU, nn.Sigmoid],
                         ids=lambda a: a.__name__)
def test_first_dense_gradients_match_finite_differences(act, backend, rng):
    X = _csr(rng, 9, 11, np.float64)
    net = _net(11, act=act).set_backend(backend.name)
    # off ReLU's kink: an empty row's pre-activation is the bias, zero at initialization
    net[0].bias.data[...] = rng.standard_normal(6)
    R = rng.standard_normal((9, 3))

    def f():
        return float(np.sum(R * net.forward(X)))

    net.zero_grad()
    net.forward(X)
    assert net.backward(R) is None  # the data gets no gradient
    first = net[0]
    for p in (first.weight, first.bias):
        assert_close(p.grad, numerical_grad(f, p.data), np.float64, 1e8)


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU, nn.ELU], ids=lambda a: a.__name__)
def test_csr_trains_to_the_dense_copys_weights(act, backend, rng):
    X = _csr(rng, 40, 25, np.float64)
    y = rng.integers(0, 3, 40)
    weights = []
    for data in (X, X.toarray()):
        net = _net(25, act=act).set_backend(backend.name)
        opt = optim.AdamW(net.parameters(), lr=1e-2)
        loss = nn.CrossEntropyLoss()
        for step in range(5):
            rows = slice(8 * step, 8 * step + 8)
            net.train_step(data[rows], y[rows], loss, opt)
        weights.append([p.data.copy() for p in net.parameters()])
    for a, c in zip(*weights):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)


def test_sparse_x_to_a_layer_that_is_not_a_dense_is_refused(rng):
    X = _csr(rng, 4, 5, np.float32)
    with pytest.raises(TypeError, match="BatchNorm: X must be a numpy.ndarray, got csr_matrix; "
                                        "a SciPy sparse input is taken by a Dense only"):
        nn.BatchNorm(5).forward(X)
    with pytest.raises(TypeError, match="X must be a numpy.ndarray"):
        nn.Sequential(nn.Dropout(0.5), nn.Dense(5, 2)).forward(X)
    with pytest.raises(ValueError, match="X must have shape \\(batch, 6\\)"):
        nn.Dense(6, 2).forward(X)
    with pytest.raises(TypeError, match="X has dtype float32"):
        nn.Dense(5, 2, dtype=np.float64).forward(X)


def test_predict_on_csr_equals_predict_on_its_dense_copy(rng):
    X = _csr(rng, 2500, 30, np.float32)
    net = nn.Sequential(nn.Dense(30, 16), nn.BatchNorm(16), nn.ReLU(), nn.Dense(16, 4))
    net.eval()
    assert_close(net.predict(X, batch_size=1000), net.predict(X.toarray(), batch_size=1000),
                 np.float32, 30)
    assert_close(net.predict(X.tocsc()), net.predict(X.toarray()), np.float32, 30)


# ------------------------------------------------------------------ Trainer.fit
def test_trainer_fit_on_csr_equals_fit_on_the_dense_copy(rng):
    X = _csr(rng, 120, 40, np.float64, density=0.1)
    y = rng.integers(0, 3, 120)
    w = rng.uniform(0.5, 2.0, 120)
    results = []
    for data in (X.tocsc(), X.toarray()):
        net = _net(40, act=nn.ReLU)
        trainer = pynn.Trainer(net, nn.CrossEntropyLoss(), optim.Adam(net.parameters()))
        hist = trainer.fit(data, y, sample_weight=w, epochs=3, batch_size=16, shuffle=True,
                           seed=3, validation_split=0.25, verbose=0)
        results.append((hist.history, [p.data.copy() for p in net.parameters()],
                        trainer.evaluate(data, y), trainer.predict(data)))
    (h1, p1, e1, o1), (h2, p2, e2, o2) = results
    for a, c in zip(p1, p2):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    for key in set(h2) - {"seconds"}:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-10)
    assert e1 == pytest.approx(e2, rel=1e-10)
    np.testing.assert_allclose(o1, o2, rtol=1e-10, atol=1e-12)


def test_trainer_batches_of_a_csr_are_csr_slices(rng):
    # the source never densifies: every batch the model sees is CSR
    X = _csr(rng, 50, 20, np.float32)
    seen = []
    net = _net(20, act=nn.ReLU, dtype=np.float32)
    forward, compiled_step = net.forward, net.compiled_step

    def spy(Xb):
        seen.append(Xb)
        return forward(Xb)

    def spy_compiled(Xb, *args, **kwargs):  # (the compiled step takes CSR batches too)
        seen.append(Xb)
        return compiled_step(Xb, *args, **kwargs)

    net.forward, net.compiled_step = spy, spy_compiled
    pynn.Trainer(net, nn.CrossEntropyLoss(), optim.SGD(net.parameters(), lr=0.1)).fit(
        X, rng.integers(0, 3, 50), epochs=1, batch_size=8, verbose=0)
    assert seen and all(sp.issparse(Xb) and Xb.format == "csr" for Xb in seen)


# ------------------------------------------------------------------ pynn.sklearn
def _digits_binary():
    """scikit-learn's test_mlp.py data: the first 200 digits of classes 0 and 1, min-max
    scaled."""
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.preprocessing import MinMaxScaler

    X, y = datasets.load_digits(n_class=2, return_X_y=True)
    return MinMaxScaler().fit_transform(X[:200]), y[:200]


@pytest.mark.parametrize("csr_container", [sp.csr_matrix, sp.csr_array])
def test_sklearn_test_sparse_matrices(csr_container):
    # scikit-learn's test_mlp.py::test_sparse_matrices, against pynn.sklearn
    from pynn.sklearn import MLPClassifier

    X_digits_binary, y_digits_binary = _digits_binary()
    X = X_digits_binary[:50]
    y = y_digits_binary[:50]
    X_sparse = csr_container(X)
    mlp = MLPClassifier(solver="lbfgs", hidden_layer_sizes=15, random_state=1)
    mlp.fit(X, y)
    pred1 = mlp.predict(X)
    mlp.fit(X_sparse, y)
    pred2 = mlp.predict(X_sparse)
    np.testing.assert_almost_equal(pred1, pred2)
    pred1 = mlp.predict(X)
    pred2 = mlp.predict(X_sparse)
    np.testing.assert_array_equal(pred1, pred2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("settings", [dict(solver="adam", shuffle=True),
                                      dict(solver="sgd", early_stopping=True),
                                      dict(solver="lbfgs")], ids=["adam", "sgd-early", "lbfgs"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_estimators_on_csr_train_to_the_dense_copys_weights(kind, settings):
    from pynn.sklearn import MLPClassifier, MLPRegressor

    X, y = _digits_binary()
    X[X < 0.5] = 0  # sparse enough to mean it
    Xs = sp.csc_matrix(X)  # CSC: converted once
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    w = np.linspace(0.5, 1.5, len(y))
    fits = [cls(hidden_layer_sizes=(12,), max_iter=15, random_state=0, **settings)
            .fit(data, y, sample_weight=w) for data in (Xs, X)]
    for a, c in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fits[0].predict(Xs), fits[1].predict(X), rtol=1e-10,
                               atol=1e-10)


def test_a_fit_on_a_csr_never_allocates_its_dense_matrix(rng):
    # dense, this X would take 16 GB: a fit that densified anything of its size would fail
    # or show in the peak of traced allocations
    import tracemalloc

    n, k, nnz = 20_000, 200_000, 40_000
    X = sp.csr_matrix((rng.random(nnz, dtype=np.float32),
                       (np.sort(rng.integers(0, n, nnz)), rng.integers(0, k, nnz))),
                      shape=(n, k))
    y = rng.integers(0, 2, n)
    model = nn.Sequential(nn.Dense(k, 4), nn.ReLU(), nn.Dense(4, 2))
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()))
    tracemalloc.start()
    try:
        trainer.fit(X, y, epochs=1, batch_size=512, validation_split=0.1, verbose=0)
        trainer.evaluate(X, y)
        trainer.predict(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weights_bytes = 4 * k * 4
    assert peak < 20 * weights_bytes + 10 * X.data.nbytes < n * k * 4 / 100

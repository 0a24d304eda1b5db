"""One training epoch end to end: 784-256-128-10 MLP (BatchNorm, ReLU), Adam, batch 128, on
60000 synthetic MNIST-shaped samples, through ``Trainer.fit``; NumPy vs Cython backend in one run.

Target: Cython >= 2x the NumPy reference. Quote figures from
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 -m pytest bench/test_bench_train.py \
        --benchmark-only --benchmark-json=out/bench_train.json
    python bench/ratios.py out/bench_train.json
"""
import numpy as np
import pytest

import pynn
from conftest import assert_matches_reference
from pynn.nn import BatchNorm, CrossEntropyLoss, Dense, ReLU, Sequential
from pynn.optim import Adam
from pynn.train import Trainer

N, D, H1, H2, K, BATCH = 60000, 784, 256, 128, 10, 128


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.random((N, D), dtype=np.float32)  # pixel-like values in [0, 1)
    teacher = rng.standard_normal((D, K)).astype(np.float32)
    y = (X @ teacher).argmax(axis=1)  # learnable labels, all classes present
    return X, y


def _trainer(seed=0, dtype=np.float32):
    model = Sequential(Dense(D, H1, init="he_normal", seed=seed, dtype=dtype),
                       BatchNorm(H1, dtype=dtype), ReLU(),
                       Dense(H1, H2, init="he_normal", seed=seed + 1, dtype=dtype),
                       BatchNorm(H2, dtype=dtype), ReLU(),
                       Dense(H2, K, seed=seed + 2, dtype=dtype))
    return Trainer(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3))


@pytest.fixture
def use_backend(backend):
    before = pynn.get_backend().name
    pynn.set_backend(backend.name)
    yield backend.name
    pynn.set_backend(before)


def test_train_one_epoch(benchmark, use_backend, n_threads, data):
    benchmark.group = f"train epoch 784-256-128-10 BN ReLU Adam batch {BATCH} float32 " \
                      f"threads{n_threads}"
    X, y = data

    def setup():
        return (_trainer(),), {}

    def epoch(trainer):
        return trainer.fit(X, y, epochs=1, batch_size=BATCH, seed=0, verbose=0)

    history = benchmark.pedantic(epoch, setup=setup, rounds=3, iterations=1)
    assert np.isfinite(history.history["loss"][0])

    # Checked once against the reference: a few identical steps on both backends give the same
    # losses and outputs. In float64: Adam divides each gradient by its own RMS, so a gradient
    # that is pure rounding noise (a Dense bias before BatchNorm has zero true gradient; so do
    # weights of dead units) becomes a full +-lr step whose sign differs between backends. In
    # float32 that noise is large enough to move outputs by ~1e-3 after 8 steps; in float64 the
    # only such parameters are the pre-BatchNorm biases, which cannot change the outputs. (Not
    # raw weights, for that same reason.)
    results = {}
    for name in ("numpy", use_backend):
        pynn.set_backend(name)
        t = _trainer(seed=5, dtype=np.float64)
        h = t.fit(X[:1024], y[:1024], epochs=1, batch_size=BATCH, seed=1, verbose=0)
        results[name] = (h.history["loss"][0], t.predict(X[-256:]))
    pynn.set_backend(use_backend)
    assert_matches_reference(results[use_backend][0], results["numpy"][0], rtol=1e-9)
    assert_matches_reference(results[use_backend][1], results["numpy"][1], rtol=1e-7, atol=1e-9)

"""pynn.manual_seed: one global seed for init, Dropout masks, Trainer shuffling and splits."""
import numpy as np
import pytest

import pynn
from pynn.data import split_indices
from pynn.nn import CrossEntropyLoss, Dense, Dropout, ReLU, Sequential
from pynn.optim import SGD


@pytest.fixture(autouse=True)
def unseeded_after():
    yield
    pynn.manual_seed(None)


def run():
    """Build and train with no per-call seed anywhere; every parameter and the history."""
    model = Sequential(Dense(6, 16), ReLU(), Dropout(0.3), Dense(16, 3))
    rng = np.random.default_rng(123)  # the data are fixed: only pynn's own draws vary
    X, y = rng.standard_normal((80, 6)).astype(np.float32), rng.integers(0, 3, 80)
    trainer = pynn.Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    history = trainer.fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    return np.concatenate([p.data.ravel() for p in model.parameters()]), history.history["loss"]


def test_same_seed_same_run_other_seed_other_run():
    pynn.manual_seed(7)
    a, loss_a = run()
    pynn.manual_seed(7)
    b, loss_b = run()
    pynn.manual_seed(8)
    c, _ = run()
    np.testing.assert_array_equal(a, b)
    assert loss_a == loss_b
    assert not np.array_equal(a, c)


def test_unseeded_runs_differ():
    a, _ = run()
    b, _ = run()
    assert not np.array_equal(a, b)


def test_each_source_follows_the_seed():
    draws = []
    for _ in range(2):
        pynn.manual_seed(3)
        draws.append((Dense(4, 5).weight.data.copy(), Dropout(0.5).seed,
                      split_indices(np.arange(20), 0.3)[1],
                      pynn.data.GaussianNoise(1.0)(np.zeros((2, 3)))))
    for first, second in zip(*draws):
        np.testing.assert_array_equal(first, second)
    # successive draws from one seed are different numbers, not the same one again
    pynn.manual_seed(3)
    assert not np.array_equal(Dense(4, 5).weight.data, Dense(4, 5).weight.data)


def test_explicit_seeds_win_and_do_not_advance_the_stream():
    explicit = Dense(4, 5, seed=11).weight.data.copy()
    pynn.manual_seed(0)
    np.testing.assert_array_equal(Dense(4, 5, seed=11).weight.data, explicit)
    assert Dropout(0.5, seed=4).seed == 4
    after_explicit = Dense(4, 5).weight.data.copy()
    pynn.manual_seed(0)
    np.testing.assert_array_equal(Dense(4, 5).weight.data, after_explicit)


def test_trainer_seed_from_the_stream_is_recorded_for_resume(tmp_path):
    pynn.manual_seed(5)
    model = Sequential(Dense(3, 2, seed=0))
    trainer = pynn.Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    trainer.fit(np.zeros((10, 3), np.float32), np.zeros(10, int), epochs=1, verbose=0)
    first = trainer._seed
    pynn.manual_seed(5)
    trainer.fit(np.zeros((10, 3), np.float32), np.zeros(10, int), epochs=1, verbose=0)
    assert trainer._seed == first


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (1.5, TypeError), ("0", TypeError)])
def test_bad_seed(seed, exc):
    with pytest.raises(exc, match="seed"):
        pynn.manual_seed(seed)

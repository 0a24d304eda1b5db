"""No leaks (issue 11, item 4): 2,000 training steps with a periodic ``predict`` keep resident
memory flat after warm-up. Every kernel allocates (outputs, dense_backward's dZ and bias
partial sums, batchnorm's scratch), so a missing free or a reference cycle holding arrays shows
up here as growth."""
import gc
import os
import sys

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.optim import Adam

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/statm")

STEPS = 2000
WARMUP = 300
MAX_GROWTH = 4 << 20  # bytes


def rss():
    """Resident set size now (not the peak), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_2000_training_steps_with_predict_keep_memory_flat(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 20)).astype(np.float32)
    y = rng.integers(0, 3, 512)
    model = nn.Sequential(nn.Dense(20, 64, seed=0), nn.BatchNorm(64), nn.ReLU(),
                          nn.Dropout(0.2, seed=1), nn.Dense(64, 32, seed=2), nn.Tanh(),
                          nn.Dense(32, 3, seed=3), backend=backend)
    loss = nn.CrossEntropyLoss(backend=backend)
    opt = Adam(model.parameters(), lr=1e-3, amsgrad=True)
    samples = []
    for step in range(STEPS):
        lo = (step * 32) % 512
        opt.zero_grad()
        value = loss.forward(model.forward(X[lo:lo + 32]), y[lo:lo + 32])
        model.backward(loss.backward())
        opt.step()
        if step % 100 == 99:
            assert np.isfinite(value)
            assert model.predict(X, batch_size=128).shape == (512, 3)
        if step + 1 >= WARMUP and (step + 1) % 100 == 0:
            gc.collect()
            samples.append(rss())
    growth = max(samples) - samples[0]
    print(f"\n[pynn-reliability] {backend}: RSS {samples[0] / 2**20:.1f} MB after warm-up, "
          f"max growth {growth / 2**10:.0f} KB over {STEPS - WARMUP} steps")
    assert growth < MAX_GROWTH, [f"{s / 2**20:.1f} MB" for s in samples]


def test_the_trainer_keeps_memory_flat_across_fits():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 10)).astype(np.float32)
    y = rng.integers(0, 2, 256)
    model = nn.Sequential(nn.Dense(10, 32, seed=0), nn.BatchNorm(32), nn.ReLU(),
                          nn.Dense(32, 2, seed=1))
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3))
    samples = []
    for i in range(12):  # 12 fits x 5 epochs x 8 batches = 480 steps, plus validation
        trainer.fit(X, y, epochs=5, batch_size=32, verbose=0, seed=i, validation_split=0.2)
        trainer.predict(X)
        if i >= 2:
            gc.collect()
            samples.append(rss())
    assert max(samples) - samples[0] < MAX_GROWTH, [f"{s / 2**20:.1f} MB" for s in samples]

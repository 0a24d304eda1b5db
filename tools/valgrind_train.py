"""A short training run that touches every kernel, for tools/valgrind_train.sh (valgrind makes
Python ~50x slower: keep it small). Runs serial and threaded paths, float32 and float64."""
import os
import sys
import tempfile

import numpy as np

import pynn
from pynn import _threads, nn
from pynn.backend import backend_for
from pynn.optim import SGD, Adagrad, Adam, AdamW, RMSprop


def train(dtype, steps=3):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 20)).astype(dtype)
    y = rng.integers(0, 3, 64)
    model = nn.Sequential(nn.Dense(20, 32, seed=0, dtype=dtype), nn.BatchNorm(32, dtype=dtype),
                          nn.ReLU(), nn.Dropout(0.3, seed=1), nn.Dense(32, 16, seed=2, dtype=dtype),
                          nn.Tanh(), nn.Dense(16, 16, seed=3, dtype=dtype), nn.ELU(0.5),
                          nn.Dense(16, 16, seed=4, dtype=dtype), nn.LeakyReLU(0.1),
                          nn.Dense(16, 8, seed=5, dtype=dtype), nn.Sigmoid(),
                          nn.Dense(8, 8, seed=6, dtype=dtype), nn.Square(), nn.Step(),
                          nn.Dense(8, 3, seed=7, dtype=dtype))
    loss = nn.CrossEntropyLoss()
    params = list(model.parameters())  # a generator: every optimizer below needs them all
    for opt in (Adam(params, lr=1e-3, amsgrad=True, weight_decay=1e-4),
                AdamW(params, lr=1e-3), SGD(params, lr=1e-2, momentum=0.9, nesterov=True),
                SGD(params, lr=1e-2, l1=1e-4), RMSprop(params, lr=1e-3, centered=True,
                                                       momentum=0.9),
                Adagrad(params, lr=1e-2, lr_decay=1e-3)):
        for step in range(steps):
            rows = slice(step * 16, (step + 1) * 16)
            opt.zero_grad()
            value = loss.forward(model.forward(X[rows]), y[rows])
            model.backward(loss.backward())
            opt.step()
            assert np.isfinite(value), value
    assert np.isfinite(model.predict(X, batch_size=20)).all()
    # the other losses and the Softmax layer
    head = nn.Sequential(nn.Dense(20, 4, seed=9, dtype=dtype), nn.Softmax())
    Y = head.forward(X)
    head.backward(np.ones_like(Y))
    for crit, target in ((nn.MSELoss(), Y), (nn.BCEWithLogitsLoss(), (Y > 0.25).astype(dtype))):
        crit.forward(head.forward(X), target)
        head.backward(crit.backward())
    # value-only and long-row softmax cross-entropy (the chunked float32 path)
    fast = backend_for("cython")
    Z = rng.standard_normal((3, 5000)).astype(dtype)
    fast.softmax_cross_entropy_loss(Z, np.array([0, 4999, 7]), need_grad=False)
    fast.softmax_cross_entropy_loss(Z, np.array([0, 4999, 7]))
    fast.mse_loss(Z, Z, need_grad=False)
    fast.bce_with_logits_loss(Z, np.abs(Z) % 1, need_grad=False)
    # edge shapes: empty batches, one column, special values
    fast.dense_forward(np.empty((0, 5), dtype), np.ones((3, 5), dtype), np.ones(3, dtype), "relu")
    fast.dense_forward(np.ones((4, 0), dtype), np.ones((3, 0), dtype), np.ones(3, dtype))
    fast.softmax_forward(np.array([[np.nan, 1.0], [-np.inf, -np.inf], [np.inf, 0.0]], dtype))
    fast.activation_forward(np.array([np.nan, np.inf, -np.inf, 1e30, -1e30], dtype), "tanh")
    return model


def main():
    for n_threads in (1, 2):
        pynn.set_num_threads(n_threads)
        _threads.PARALLEL_MIN_ELEMENTS = 1 if n_threads > 1 else 1 << 15
        for dtype in (np.float32, np.float64):
            model = train(dtype)
    # a Trainer run with validation, and a save/load round trip
    rng = np.random.default_rng(1)
    X = rng.standard_normal((96, 6)).astype(np.float32)
    y = rng.integers(0, 2, 96)
    model = nn.Sequential(nn.Dense(6, 16, seed=0), nn.BatchNorm(16), nn.ReLU(), nn.Dense(16, 2))
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), Adam(model.parameters(), lr=1e-2))
    trainer.fit(X, y, epochs=2, batch_size=32, verbose=0, seed=0, validation_split=0.25)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.npz")
        pynn.save(model, path)
        assert np.array_equal(pynn.load(path).predict(X), model.predict(X))
    print("valgrind_train.py: done", file=sys.stderr)


if __name__ == "__main__":
    main()

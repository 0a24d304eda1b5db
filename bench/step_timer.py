"""Time one case of the 784-256-128-10 BatchNorm ReLU network in this process and print JSON:
the PyTorch-style training step (zero_grad, forward, loss, backward, Adam step; batch 128) and
``predict`` over 60,000 rows (batch 1024). Medians of ``--reps`` timed repetitions after a
warm-up, float32.

Run it as a whole process per contender, alternating, to compare two trees or settings, e.g.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step_timer.py --case train
It runs against older pynn trees too (before ``backward(dY, input_grad=False)`` existed).
"""
import argparse
import inspect
import json
import time

import numpy as np

import pynn
from pynn.nn import BatchNorm, CrossEntropyLoss, Dense, ReLU, Sequential
from pynn.optim import Adam

D, H1, H2, K = 784, 256, 128, 10


def _model():
    return Sequential(Dense(D, H1, seed=0), BatchNorm(H1), ReLU(),
                      Dense(H1, H2, seed=1), BatchNorm(H2), ReLU(), Dense(H2, K, seed=2))


def time_train(steps, reps, batch=128):
    rng = np.random.default_rng(0)
    X = rng.random((batch, D), dtype=np.float32)
    y = rng.integers(0, K, batch)
    model, loss = _model(), CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=1e-3)
    takes_flag = "input_grad" in inspect.signature(model.backward).parameters
    kw = {"input_grad": False} if takes_flag else {}  # older trees skipped dX on their own

    def step():
        opt.zero_grad()
        loss.forward(model.forward(X), y)
        model.backward(loss.backward(), **kw)
        opt.step()

    for _ in range(20):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return float(np.median(times))


def time_predict(reps, n=60000, batch=1024):
    X = np.random.default_rng(1).random((n, D), dtype=np.float32)
    model = _model()
    model.predict(X[:batch * 2], batch_size=batch)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.predict(X, batch_size=batch)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["train", "predict"], required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    if args.case == "train":
        value = {"train_step_ms": 1e3 * time_train(args.steps, args.reps)}
    else:
        value = {"predict_60k_ms": 1e3 * time_predict(args.reps)}
    value.update(threads=pynn.get_num_threads(), pynn=pynn.__file__)
    print(json.dumps(value))


if __name__ == "__main__":
    main()

"""Timing a product's candidate strategies, and the kernels' own rules, for the planner.

FFTW's "measure": each candidate runs the very kernel a plan will call (pynn._kernels.dense,
which takes the products lock as any call does) on scratch operands of the product's shape, a
warm-up call each (packing buffers, BLAS's threads woken) then MIN_REPS to MAX_REPS rounds, the
candidates alternated within a round so a burst of load elsewhere on the host hits them alike;
each candidate's time is its minimum. The operands are constants: the values do not change how
long a product takes, and filling them costs a memset where random numbers would cost more than
the product.
"""
import time

import numpy as np

# Rounds per key: at least MIN_REPS, then more while the key has had less than
# KEY_SECONDS (at most MAX_REPS): a product of ~50 us timed three times was one host hiccup
# away from the wrong pick (16 x 784 x 256 on two threads measured slower on its column tiles
# than on one thread, the other way round in every longer run).
MIN_REPS = 3
MAX_REPS = 20
KEY_SECONDS = 0.003
# A round past this many seconds is the last (a big product: its candidates differ by more
# than the noise already, and the budget is better spent on the next key).
LONG_ROUND_SECONDS = 0.008


def _dense():
    from .._kernels import dense  # imported on first use: importing pynn does not need it

    return dense


def blas_thread_control():
    """Whether BLAS can run single-threaded in pynn's team (else nothing is worth timing:
    every product is one BLAS call on BLAS's threads)."""
    return _dense().blas_thread_control()


def parallel_min_macs():
    """Multiply-adds below which the fixed rules keep a product on one thread."""
    return _dense().parallel_min_macs()


def forward_estimate(key):
    return _dense().forward_estimate(key.n, key.k, key.m, key.threads)


def backward_estimate(key):
    return _dense().backward_estimate(key.n, key.m, key.k, key.has_dW, key.has_dX, key.threads)


def team(key, strategy):
    """Threads of pynn's team ``key``'s product runs on with ``strategy``."""
    if key.op == "forward":
        return _dense().forward_team(key.n, key.m, strategy, key.threads)
    return _dense().backward_team(key.n, key.m, key.k, key.has_dW, key.has_dX, strategy,
                                  key.threads)[0]


def _runner(key):
    """A function running ``key``'s product with a strategy, on scratch operands."""
    dense = _dense()
    dtype = np.dtype(key.dtype)
    n, k, m, threads = key.n, key.k, key.m, key.threads
    X = np.full((n, k), 0.5, dtype)
    W = np.full((m, k), 0.01, dtype)
    b = np.zeros(m, dtype)
    if key.op == "forward":
        Y = np.empty((n, m), dtype)
        return lambda s: dense.dense_forward(X, W, b, Y, dense.IDENTITY, 0.0, 0.0, threads,
                                             None, s)
    dY = np.full((n, m), 0.01, dtype)
    dW = np.zeros((m, k), dtype) if key.has_dW else None
    dX = np.empty((n, k), dtype) if key.has_dX else None
    return lambda s: dense.dense_backward(dY, X, W, None, dW, b, dX, dense.IDENTITY, 0.0,
                                          0.0, threads, None, s)


def time_candidates(key, candidates):
    """{strategy: seconds} of ``key``'s product with each of ``candidates`` (see the module
    doc)."""
    run = _runner(key)
    for strategy in candidates:
        run(strategy)
    best = dict.fromkeys(candidates, float("inf"))
    first = time.perf_counter()
    for rep in range(MAX_REPS):
        start = time.perf_counter()
        for strategy in candidates:
            t0 = time.perf_counter()
            run(strategy)
            best[strategy] = min(best[strategy], time.perf_counter() - t0)
        end = time.perf_counter()
        if end - start > LONG_ROUND_SECONDS or (rep + 1 >= MIN_REPS
                                                and end - first > KEY_SECONDS):
            break
    return best

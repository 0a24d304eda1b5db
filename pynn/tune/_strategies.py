"""The dense products' strategies by name, and what a product is (its key).

The codes are the C side's (csrc/_dense.pxd: ``pynn._kernels.dense.strategy_codes()`` hands
them to Python and tests/test_tune.py holds the two equal). A forward's code is its threading
(the low two bits) plus its orientation: TRANSPOSED for BLAS's transposed product, DOT for
pynn's own few-rows kernel (on one thread or on column tiles). A backward's is its threading,
with DIRECT for pynn's own products (csrc/_direct.h) instead of BLAS's.
"""
from collections import namedtuple

import numpy as np

ONE_THREAD, TILES, BLAS_THREADS, GEMV = 0, 1, 2, 3
THREADING = 3
TRANSPOSED = 4
FEW_ROWS = ONE_THREAD | TRANSPOSED
DOT = 8
ORIENTATIONS = TRANSPOSED | DOT
# a backward's products by pynn's own kernel (the bit DOT sets for a forward)
DIRECT = 8

FORWARD_NAMES = {ONE_THREAD: "one_thread", TILES: "tiles", BLAS_THREADS: "blas_threads",
                 GEMV: "gemv", FEW_ROWS: "few_rows", TILES | TRANSPOSED: "few_rows_tiles",
                 BLAS_THREADS | TRANSPOSED: "few_rows_blas_threads", DOT: "dot",
                 DOT | TILES: "dot_tiles"}
BACKWARD_NAMES = {ONE_THREAD: "one_thread", TILES: "tiles", BLAS_THREADS: "blas_threads",
                  DIRECT: "direct", DIRECT | TILES: "direct_tiles"}
NAMES = {"forward": FORWARD_NAMES, "backward": BACKWARD_NAMES}
CODES = {op: {name: code for code, name in names.items()} for op, names in NAMES.items()}

# One product: op "forward" (n rows of k features into m) or "backward" (dZ of n rows by m
# against X of n by k; has_dW / has_dX: which products it computes), its dtype's name and the
# threads it may use. A forward's has_dW and has_dX are False.
Key = namedtuple("Key", "op n k m dtype threads has_dW has_dX")

DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def macs(key):
    """Multiply-adds of the product ``key``."""
    products = 1 if key.op == "forward" else int(key.has_dW) + int(key.has_dX)
    return key.n * key.k * key.m * products


def with_orientation(strategy, orientation):
    """A forward ``strategy``'s threading in the orientation of ``orientation`` (a one-thread
    forward's strategy: GEMV, the transposed FEW_ROWS, DOT or the plain ONE_THREAD). DOT has
    no BLAS threads: its threaded form is its column tiles."""
    if orientation == GEMV:
        return GEMV
    threading = ONE_THREAD if strategy == GEMV else strategy & THREADING
    if orientation & DOT:
        return DOT | (TILES if threading == TILES else ONE_THREAD)
    return threading | (orientation & TRANSPOSED)


def describe(key):
    """``key`` as the dict ``pynn.tune.choices()`` and the wisdom file show it."""
    return key._asdict()

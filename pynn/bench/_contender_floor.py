"""The ``floor`` of ``pynn bench``: the case's bare matrix products into preallocated outputs
(the faster of numpy's matmul and scipy's BLAS gemm), so pynn's time reads as a multiple of
what its products alone cost."""
import numpy as np

# Loaded by path by pynn/bench/_worker.py, after it loaded _cases.py as _pynn_bench_cases
# (this file is not imported as part of the pynn package: see _worker.py).
from _pynn_bench_cases import SEED, batch_bounds, dense_dims, time_reps


def _gemm_calls(spec, dtype, variant):
    """The case's bare matrix products with preallocated outputs, as a list of thunks per
    "call" (one training step, one predict call, one epoch).

    Training step, per Dense layer (X: the layer's input, W: (out, in)): forward X @ W.T,
    dW = dY.T @ X, and dX = dY @ W except for the first layer. Predict and latency: the
    forward products per batch of rows. Epoch: a training step's products for every batch's size.
    variant "numpy": ``np.matmul(a, b, out=c)``; "scipy": ``scipy.linalg.blas`` ?gemm writing
    into c (the row-major product computed as the column-major transpose, no copies).
    """
    rng = np.random.default_rng(SEED)
    dims = dense_dims(spec)
    W = [rng.standard_normal((o, i)).astype(dtype) for i, o in dims]

    if variant == "numpy":
        def mm(a, b, c, ta=False, tb=False):
            np.matmul(a.T if ta else a, b.T if tb else b, out=c)
    else:
        from scipy.linalg import blas

        gemm = blas.dgemm if np.dtype(dtype) == np.float64 else blas.sgemm

        def mm(a, b, c, ta=False, tb=False):
            # row-major c = op(a) @ op(b)  <=>  column-major c.T = op(b).T @ op(a).T
            gemm(1.0, b.T, a.T, c=c.T, overwrite_c=True, trans_a=tb, trans_b=ta)

    def step_products(rows):
        acts = [rng.random((rows, i)).astype(dtype) for i, _ in dims]
        outs = [np.empty((rows, o), dtype) for _, o in dims]
        dWs = [np.empty_like(w) for w in W]
        dXs = [np.empty((rows, i), dtype) for i, _ in dims]
        calls = []
        for k in range(len(dims)):
            calls.append((mm, acts[k], W[k], outs[k], False, True))       # Y = X @ W.T
        for k in range(len(dims) - 1, -1, -1):
            calls.append((mm, outs[k], acts[k], dWs[k], True, False))     # dW = dY.T @ X
            if k > 0:
                calls.append((mm, outs[k], W[k], dXs[k], False, False))   # dX = dY @ W
        return calls

    def forward_products(rows):
        acts = [rng.random((rows, i)).astype(dtype) for i, _ in dims]
        outs = [np.empty((rows, o), dtype) for _, o in dims]
        return [(mm, acts[k], W[k], outs[k], False, True) for k in range(len(dims))]

    kind = spec["kind"]
    if kind == "fit":
        kind = "step" if spec["per"] == "step" else "epoch"
    if kind == "step":
        calls = step_products(spec["batch"])
    else:
        bounds = batch_bounds(spec["n"], spec["batch"])
        make = forward_products if kind in ("predict", "latency") else step_products
        by_rows = {}
        calls = []
        for lo, hi in bounds:
            if hi - lo not in by_rows:
                by_rows[hi - lo] = make(hi - lo)
            calls.extend(by_rows[hi - lo])
    _check_products(calls)
    return calls


def _check_products(calls):
    """Each distinct product once against numpy's ``@``: the floor computes the right thing
    and writes into its preallocated output (no hidden copy)."""
    seen = set()
    for mm, a, b, c, ta, tb in calls:
        if id(c) in seen:
            continue
        seen.add(id(c))
        c[...] = np.nan
        mm(a, b, c, ta, tb)
        expected = (a.T if ta else a) @ (b.T if tb else b)
        if not np.allclose(c, expected, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(expected).max())):
            raise AssertionError(f"floor product {a.shape}x{b.shape} (ta={ta}, tb={tb}) is wrong")


def time_floor(spec, dtype, threads, info):
    from threadpoolctl import threadpool_limits

    import scipy.linalg.blas  # noqa: F401  (loaded before the limit, so the limit reaches it)

    threadpool_limits(threads)
    variants = {}
    for variant in ("numpy", "scipy"):
        calls = _gemm_calls(spec, dtype, variant)

        def run(calls=calls):
            for mm, a, b, c, ta, tb in calls:
                mm(a, b, c, ta, tb)

        # an epoch's "warmup" counts batches; here one call is a whole epoch of products
        warmup = spec["warmup"] if spec["kind"] in ("step", "latency") else 1
        if spec["kind"] == "fit" and spec["per"] == "step":
            warmup = spec["calls"]
        variants[variant] = time_reps(run, spec["calls"], warmup, spec["reps"])
    best = min(variants, key=lambda v: float(np.median(variants[v])))
    info["floor_variants"] = {v: t for v, t in variants.items()}
    info["floor_best"] = {"numpy": "np.matmul(a, b, out=c)",
                          "scipy": "scipy.linalg.blas gemm"}[best]
    info["floor_products"] = len(_gemm_calls(spec, dtype, "numpy"))
    return variants[best]

"""Issue 21's sparse line: one epoch of Trainer.fit on a 100,000 x 50,000 CSR with 0.1%
non-zeros (float32; dense, the matrix would take 20 GB), with the peak of traced allocations
(tracemalloc: numpy's buffers and pynn's scratch) and the process's peak resident set.

    python bench/sparse_fit_memory.py [--rows 100000] [--features 50000] [--density 0.001]

The traced peak counts what the fit allocates beyond X itself (built before tracing starts).
"""
import argparse
import resource
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

import pynn
from pynn import nn, optim


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=50_000)
    ap.add_argument("--density", type=float, default=0.001)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = sp.random(args.rows, args.features, density=args.density, format="csr",
                  dtype=np.float32, random_state=rng)
    y = rng.integers(0, 10, args.rows)
    model = nn.Sequential(nn.Dense(args.features, args.hidden), nn.ReLU(),
                          nn.Dense(args.hidden, 10))
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()))
    dense_bytes = args.rows * args.features * 4
    weights_bytes = sum(p.data.nbytes for p in model.parameters())
    x_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    tracemalloc.start()
    t0 = time.perf_counter()
    trainer.fit(X, y, epochs=1, batch_size=args.batch_size, verbose=0)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mb = 1 / 2**20
    print(f"CSR {args.rows} x {args.features}, {X.nnz} non-zeros ({x_bytes * mb:.1f} MB held; "
          f"dense it would be {dense_bytes * mb:.0f} MB); weights {weights_bytes * mb:.1f} MB")
    print(f"one epoch (batch {args.batch_size}, Adam, {pynn.get_num_threads()} threads): "
          f"{seconds:.1f} s; traced peak during fit {peak * mb:.1f} MB; "
          f"process peak RSS {rss * mb:.0f} MB")
    if peak >= dense_bytes / 100:
        raise SystemExit("the fit's traced peak reached 1% of the dense matrix")


if __name__ == "__main__":
    main()

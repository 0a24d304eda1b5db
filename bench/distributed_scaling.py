"""Time one data-parallel training step, and the allreduce inside it (issue 19's measurement).

    python bench/distributed_scaling.py --net medium --threads 2        # 1 process x 2 threads
    python bench/distributed_scaling.py --net medium --threads 1        # 1 process x 1 thread
    mpirun -n 2 python bench/distributed_scaling.py --net medium        # 2 ranks x 1 thread

Each run trains the net (medium: 784-256-128-10 with BatchNorm, global batch 256; wide:
784-1024-1024-10, global batch 512; float32, Adam) with ``DataParallel.step`` (Trainer.fit's step) on its
rank's contiguous part of every global batch (the compiled step: forward, backward, one
allreduce of the gradient arena, update), and prints one JSON line from rank 0: the median
time per step over ``--rounds`` rounds of ``--steps`` steps, and the allreduce's own time per
step (the same buffer reduced alone, between the rounds). ``--compare`` runs the three
configurations above, alternated, each in its own process, and prints the table that
docs/distributed.md quotes.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

NETS = {"medium": ([784, 256, 128, 10], True, 256), "wide": ([784, 1024, 1024, 10], False, 512)}


def _model(widths, batchnorm):
    from pynn import nn

    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Dense(a, b))
        if i < len(widths) - 2:
            layers += ([nn.BatchNorm(b)] if batchnorm else []) + [nn.ReLU()]
    return nn.Sequential(*layers)


def measure(net, steps, rounds, threads):
    import numpy as np

    import pynn
    from pynn import nn, optim
    from pynn.distributed import DataParallel

    if threads:
        pynn.set_num_threads(threads)
    widths, batchnorm, batch = NETS[net]
    pynn.manual_seed(0)
    model = _model(widths, batchnorm)
    dp = DataParallel(model)
    w = dp.world
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], batch)
    part = slice(batch * w.rank // w.size, batch * (w.rank + 1) // w.size)  # (even here)
    Xs, ys = np.ascontiguousarray(X[part]), y[part]
    loss, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-4)
    share = Xs.shape[0] / batch

    def step():  # Trainer.fit's step: the global batch's rows are known, nothing to reduce
        dp.step(Xs, ys, loss, opt, share=share, rows=batch, zero_grad="model")

    for _ in range(steps):  # warm-up: plans, programs, MPI connections
        step()
    step_times, reduce_times = [], []
    grads = dp._gradient_buffers()
    for _ in range(rounds):
        w.sum([0.0])  # start each round together
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        step_times.append((time.perf_counter() - t0) / steps)
        w.sum([0.0])
        t0 = time.perf_counter()
        for _ in range(steps):
            for g in grads:
                w.sum_(g)
        reduce_times.append((time.perf_counter() - t0) / steps)
    if w.rank == 0:
        from threadpoolctl import threadpool_info

        # the BLAS the kernels call: scipy's (scipy.libs/; numpy's own copy is in numpy.libs/)
        infos = [i for i in threadpool_info() if i["user_api"] == "blas"]
        blas = next((i for i in infos if "scipy.libs" in i["filepath"]),
                    infos[0] if infos else {})
        print(json.dumps({
            "net": net, "ranks": w.size, "threads": pynn.get_num_threads(),
            "global_batch": batch, "parameters": int(sum(p.size for p in model.parameters())),
            "step_ms": 1e3 * float(np.median(step_times)),
            "allreduce_ms": 1e3 * float(np.median(reduce_times)) if w.size > 1 else 0.0,
            "blas": f"{blas.get('internal_api')} {blas.get('version')} "
                    f"{blas.get('architecture')}"}))


def compare(net, steps, rounds, pairs, mpirun_args=()):
    """The three configurations, alternated, each a fresh process (``mpirun_args``: extra
    options for the 2-rank run's mpirun, e.g. Open MPI MCA settings)."""
    here = os.path.abspath(__file__)
    mpirun = shutil.which("mpirun", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    base = [sys.executable, here, "--net", net, "--steps", str(steps), "--rounds", str(rounds)]
    runs = {"1 process x 1 thread": base + ["--threads", "1"],
            "1 process x 2 threads": base + ["--threads", "2"],
            "2 ranks x 1 thread": [mpirun, "-n", "2", *root, *mpirun_args] + base}
    results = {k: [] for k in runs}
    for _ in range(pairs):
        for name, cmd in runs.items():
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(line.strip().splitlines()[-1]))
    print(f"{net}: median of {pairs} processes, each the median of {rounds} rounds of {steps} "
          f"steps")
    base_ms = {}
    for name, rows in results.items():
        step = sorted(r["step_ms"] for r in rows)[len(rows) // 2]
        red = sorted(r["allreduce_ms"] for r in rows)[len(rows) // 2]
        base_ms[name] = step
        print(f"  {name:24s} {step:8.3f} ms/step  allreduce {red:6.3f} ms "
              f"({100 * red / step:4.1f}%)  [{rows[0]['blas']}]")
    two = base_ms["2 ranks x 1 thread"]
    print(f"  2 ranks vs 1 x 2 threads: {base_ms['1 process x 2 threads'] / two:.2f}x the speed; "
          f"vs 1 x 1 thread: {base_ms['1 process x 1 thread'] / two:.2f}x")


# Ring allreduce over a network: 2(N-1) messages in turn, each paying the link's latency, and
# 2(N-1)/N of the buffer through each link (reduce-scatter, then all-gather). The latencies
# are typical one-way MPI latencies of such links (TCP over Ethernet; RDMA for 100 Gbit/s).
LINKS = {"10 Gbit/s Ethernet (TCP)": (10e9, 25e-6), "25 Gbit/s (RoCE)": (25e9, 5e-6),
         "100 Gbit/s (InfiniBand)": (100e9, 2e-6)}
RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def allreduce_seconds(ranks, parameters, bits_per_second, latency, bytes_per_value=4):
    if ranks == 1:
        return 0.0
    return (2 * (ranks - 1) * latency
            + 2 * (ranks - 1) / ranks * bytes_per_value * parameters * 8 / bits_per_second)


def model_table(net, step_ms, parameters, batch):
    """Markdown: the modelled step time and speedup over one node for 1..256 ranks (nodes),
    each computing its 1/N of the global batch at the measured per-row cost, then the ring
    allreduce; and the rows per rank at which the allreduce equals the compute (below it,
    communication dominates: scaling stops paying)."""
    step = step_ms / 1e3
    lines = [f"{net}: {parameters:,} parameters, global batch {batch}, one node's step "
             f"{step_ms:.3f} ms", "",
             "| ranks | " + " | ".join(LINKS) + " |", "|---:|" + "---:|" * len(LINKS)]
    for n in RANKS:
        cells = []
        for bps, lat in LINKS.values():
            t = step / n + allreduce_seconds(n, parameters, bps, lat)
            cells.append(f"{1e3 * t:.3f} ms ({step / t:.2f}x)")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "rows per rank at which compute = allreduce (more rows per rank keep "
                  "scaling paying):", ""]
    for name, (bps, lat) in LINKS.items():
        per_row = step / batch
        need = {n: allreduce_seconds(n, parameters, bps, lat) / per_row for n in (8, 64, 256)}
        lines.append(f"- {name}: " + ", ".join(f"{n} ranks {r:,.0f} rows (global batch "
                                                   f"{r * n:,.0f})" for n, r in need.items()))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", choices=sorted(NETS), default="medium")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None,
                    help="pynn threads (default: the rank's share of the cores)")
    ap.add_argument("--compare", type=int, metavar="PAIRS", default=0,
                    help="run the three configurations PAIRS times, alternated")
    ap.add_argument("--mpirun-args", default="",
                    help="extra mpirun options for --compare's 2-rank run (one string)")
    ap.add_argument("--model", type=float, metavar="STEP_MS", default=None,
                    help="print the scaling model for a measured one-node step time")
    args = ap.parse_args()
    if args.model is not None:
        widths, _, batch = NETS[args.net]
        params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        params += 2 * sum(widths[1:-1]) if NETS[args.net][1] else 0
        print(model_table(args.net, args.model, params, batch))
    elif args.compare:
        compare(args.net, args.steps, args.rounds, args.compare, args.mpirun_args.split())
    else:
        measure(args.net, args.steps, args.rounds, args.threads)


if __name__ == "__main__":
    main()

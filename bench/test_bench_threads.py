"""One thread pool, whatever loaded libgomp first: one training step of 784-256-128-10
(BatchNorm, ReLU, Adam, batch 128) timed in a fresh process per setting, since libgomp reads its
wait policy only when it loads.

- "plain": nothing set;
- "torch first": torch imported before pynn (torch loads its own OpenMP runtime first);
- "OMP_WAIT_POLICY=PASSIVE" / "=ACTIVE": a user's or a job scheduler's setting;
- "1 thread": OMP_NUM_THREADS=1, for the 1 vs 2 thread speedup.

The median step time of each process is recorded in extra_info and printed; the check: every
2-thread setting computes bit-identical losses (the settings change speed, never numbers).
"""
import json
import os
import subprocess
import sys

import pytest

STEP_SCRIPT = r"""
import json, os, sys, time
if os.environ.get("PYNN_BENCH_TORCH_FIRST"):
    import torch  # noqa: F401
import numpy as np
import pynn
from pynn import nn
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Dense(784, 256, seed=0), nn.BatchNorm(256), nn.ReLU(),
                      nn.Dense(256, 128, seed=1), nn.BatchNorm(128), nn.ReLU(),
                      nn.Dense(128, 10, seed=2))
loss = nn.CrossEntropyLoss()
opt = pynn.optim.Adam(model.parameters())
X = rng.standard_normal((128, 784)).astype(np.float32)
y = rng.integers(0, 10, 128)
times, value = [], None
for i in range(220):
    t = time.perf_counter()
    opt.zero_grad()
    value = loss.forward(model.forward(X), y)
    model.backward(loss.backward(), input_grad=False)
    opt.step()
    if i >= 20:  # warm-up excluded
        times.append(time.perf_counter() - t)
print(json.dumps({"median_ms": float(np.median(times)) * 1e3, "loss": value}))
"""

SETTINGS = {
    "plain": {},
    "torch first": {"PYNN_BENCH_TORCH_FIRST": "1"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_WAIT_POLICY=ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
RESULTS = {}


def _run(extra_env, cwd):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update(extra_env)
    # cwd outside the source tree: ``python -c`` puts the current directory on sys.path, and
    # from a clone's root that is the uncompiled pynn, not the installed one
    out = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=600, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_training_step_under_thread_settings(benchmark, setting, tmp_path):
    if "PYNN_BENCH_TORCH_FIRST" in SETTINGS[setting]:
        pytest.importorskip("torch")
    benchmark.group = "training step 784-256-128-10 by thread setting (one process each)"
    result = benchmark.pedantic(_run, args=(SETTINGS[setting], tmp_path), rounds=1,
                                iterations=1)
    benchmark.extra_info.update(result)
    RESULTS[setting] = result
    print(f"\n{setting}: median training step {result['median_ms']:.3f} ms")
    two = {k: r for k, r in RESULTS.items() if k != "1 thread"}
    assert len({r["loss"] for r in two.values()}) == 1, f"a setting changed the numbers: {two}"
    if "plain" in RESULTS and setting != "plain":
        print(f"{setting} / plain: {result['median_ms'] / RESULTS['plain']['median_ms']:.2f}x")

"""Why `import pynn` sets the thread wait policies: one training step of 784-256-128-10
(BatchNorm, ReLU, Adam, batch 128) timed in a fresh process per setting, since libgomp and
OpenBLAS read these variables only when they load.

- "pynn defaults": what `import pynn` sets (OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=2000,
  OPENBLAS_THREAD_TIMEOUT=4);
- "library defaults": libgomp's and OpenBLAS's own spin-waits (GOMP_SPINCOUNT=300000 and
  OPENBLAS_THREAD_TIMEOUT=28 are their defaults; setting them keeps pynn from overriding).

The median step time of each process is recorded in extra_info and printed; the check: both
settings compute bit-identical losses.
"""
import json
import os
import subprocess
import sys

import pytest

STEP_SCRIPT = r"""
import json, time
import numpy as np
import pynn
from pynn import nn
pynn.set_num_threads(2)
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
    "pynn defaults": {},
    "library defaults": {"GOMP_SPINCOUNT": "300000", "OPENBLAS_THREAD_TIMEOUT": "28"},
}
RESULTS = {}


def _run(extra_env, cwd):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")}
    env.update(extra_env)
    # cwd outside the source tree: ``python -c`` puts the current directory on sys.path, and
    # from a clone's root that is the uncompiled pynn, not the installed one
    out = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=600, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_training_step_under_thread_wait_settings(benchmark, setting, tmp_path):
    benchmark.group = "training step 784-256-128-10 by thread wait setting (one process each)"
    result = benchmark.pedantic(_run, args=(SETTINGS[setting], tmp_path), rounds=1,
                                iterations=1)
    benchmark.extra_info.update(result)
    RESULTS[setting] = result
    print(f"\n{setting}: median training step {result['median_ms']:.3f} ms")
    if len(RESULTS) == len(SETTINGS):
        losses = {r["loss"] for r in RESULTS.values()}
        assert len(losses) == 1, f"settings changed the numbers: {RESULTS}"
        ratio = RESULTS["library defaults"]["median_ms"] / RESULTS["pynn defaults"]["median_ms"]
        print(f"library defaults / pynn defaults: {ratio:.1f}x")

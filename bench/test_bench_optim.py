"""Optimizer steps: pynn's fused kernels vs the NumPy reference and torch (optional).

Run (2 threads, float32; quoted figures with the OpenBLAS variables unset):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 -m pytest bench/test_bench_optim.py \
        --benchmark-only --benchmark-columns=min,median,mean -s
The module prints, at its end, the ratios the issue asks for (from this one run, by minimum
time) and each optimizer's effective bandwidth next to a measured copy bandwidth.
"""
import numpy as np
import pytest

from pynn.nn import Parameter
from pynn.optim import SGD, Adagrad, Adam, AdamW, RMSprop

from conftest import assert_matches_reference

try:
    import torch
except ImportError:  # torch is an optional benchmark dependency
    torch = None

N_BIG = 10_000_000
MLP_SHAPES = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]

# name: (pynn class, kwargs, torch kwargs, state buffers)
# bytes moved per element / itemsize: read p, g and every state buffer; write p and every state
# buffer, i.e. 3 + 2 * states.
OPTIMIZERS = {
    "adam": (Adam, dict(lr=1e-3), dict(fused=True), 2),
    "adamw": (AdamW, dict(lr=1e-3), dict(fused=True), 2),
    "rmsprop": (RMSprop, dict(lr=1e-3), dict(foreach=True), 1),
    "adagrad": (Adagrad, dict(lr=1e-2), dict(foreach=True), 1),
    "sgd_momentum": (SGD, dict(lr=1e-2, momentum=0.9), dict(foreach=True), 1),
}

RESULTS = {}  # (case, impl) -> min seconds


def _record(benchmark, case, impl):
    if benchmark.stats is None:  # --benchmark-disable: the code ran once, untimed
        return
    RESULTS[(case, impl)] = benchmark.stats.stats.min


def _pynn_params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    for p in params:
        p.grad = rng.standard_normal(p.shape, dtype=np.float32) * 0.01
    return params


def _check_against_reference(cls, kwargs, shapes):
    """One step of the fused kernel and of the NumPy reference from the same state agree."""
    fast = _pynn_params(shapes)
    ref = _pynn_params(shapes)
    cls(fast, backend="cython", **kwargs).step()
    cls(ref, backend="numpy", **kwargs).step()
    for a, b in zip(fast, ref):
        assert_matches_reference(a.data, b.data)


def _torch_setup(cls_name, shapes, torch_kwargs, lr_kwargs, n_threads):
    if torch is None:
        pytest.skip("torch is not installed (optional: pip install torch==2.13.0)")
    torch.set_num_threads(n_threads)
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 0.01
    opt = getattr(torch.optim, cls_name)(params, **lr_kwargs, **torch_kwargs)
    return opt


# ------------------------------------------------------------------------------ 10M parameters
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_bench_10M_pynn(benchmark, name, n_threads):
    cls, kwargs, _, _ = OPTIMIZERS[name]
    benchmark.group = f"optim {name} 10M float32"
    _check_against_reference(cls, kwargs, [(N_BIG,)])
    opt = cls(_pynn_params([(N_BIG,)]), backend="cython", **kwargs)
    benchmark.pedantic(opt.step, rounds=20, warmup_rounds=2)
    _record(benchmark, f"{name} 10M", "pynn")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_bench_10M_torch(benchmark, name, n_threads):
    cls, kwargs, torch_kwargs, _ = OPTIMIZERS[name]
    benchmark.group = f"optim {name} 10M float32"
    opt = _torch_setup(cls.__name__, [(N_BIG,)], torch_kwargs, kwargs, n_threads)
    benchmark.pedantic(opt.step, rounds=20, warmup_rounds=2)
    _record(benchmark, f"{name} 10M", "torch")


@pytest.fixture(scope="module")
def traffic_floor(tmp_path_factory):
    """bench/membench.pyx's loop, compiled for this run (it is not part of pynn)."""
    from membench_build import MembenchUnavailable, load_membench

    try:
        return load_membench(str(tmp_path_factory.mktemp("membench"))).traffic_floor
    except MembenchUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("states", [1, 2])
def test_bench_10M_floor(benchmark, states, n_threads, traffic_floor):
    """The memory floor: a C loop moving an optimizer step's bytes (bench/membench.pyx)."""
    benchmark.group = f"memory floor 10M float32, {states} state buffer(s)"
    p, g = np.zeros(N_BIG, np.float32), np.full(N_BIG, 1e-3, np.float32)
    s = [np.zeros(N_BIG, np.float32) for _ in range(states)] + [np.empty(0, np.float32)] * (
        2 - states)
    benchmark.pedantic(traffic_floor, args=(p, g, s[0], s[1], n_threads), rounds=20,
                       warmup_rounds=2)
    np.testing.assert_allclose(s[0][:3], p[:3])  # the loop did run: both grew by g per call
    _record(benchmark, f"floor {states}", "c-loop")


# ------------------------------------------------------------------------------ MLP parameters
@pytest.mark.parametrize("backend_name", ["cython", "numpy"])
def test_bench_mlp_adam_pynn(benchmark, backend_name, n_threads):
    benchmark.group = "optim adam MLP 784-256-128-10 float32"
    if backend_name == "cython":
        _check_against_reference(Adam, dict(lr=1e-3), MLP_SHAPES)
    opt = Adam(_pynn_params(MLP_SHAPES), lr=1e-3, backend=backend_name)
    benchmark.pedantic(opt.step, rounds=200, warmup_rounds=5)
    _record(benchmark, "adam MLP", "pynn" if backend_name == "cython" else "numpy")


def test_bench_mlp_adam_torch(benchmark, n_threads):
    benchmark.group = "optim adam MLP 784-256-128-10 float32"
    opt = _torch_setup("Adam", MLP_SHAPES, dict(fused=True), dict(lr=1e-3), n_threads)
    benchmark.pedantic(opt.step, rounds=200, warmup_rounds=5)
    _record(benchmark, "adam MLP", "torch")


# ------------------------------------------------------------------ Adam's two eps placements
# torch's form (sqrt(v) / sqrt(1 - beta2^t) + eps: two divisions per element) against
# scikit-learn's (pynn.sklearn's SklearnAdam: one), on parameters that stay in cache, where the
# divisions rather than the memory traffic bound the loop.
N_CACHED = 1 << 17


@pytest.mark.parametrize("form", ["torch", "sklearn"])
def test_bench_adam_eps_placement(benchmark, form, n_threads):
    from pynn.sklearn._solvers import SklearnAdam

    cls = Adam if form == "torch" else SklearnAdam
    benchmark.group = f"optim adam {N_CACHED} float32, eps placement"
    _check_against_reference(cls, dict(lr=1e-3), [(N_CACHED,)])
    opt = cls(_pynn_params([(N_CACHED,)]), lr=1e-3, backend="cython")
    benchmark.pedantic(opt.step, rounds=200, warmup_rounds=5)
    _record(benchmark, "adam eps placement", form)


# ------------------------------------------------------------------------------ copy bandwidth
def test_bench_copy_10M(benchmark, n_threads):
    benchmark.group = "copy 10M float32 (bandwidth reference)"
    a = np.ones(N_BIG, np.float32)
    b = np.empty_like(a)
    benchmark.pedantic(np.copyto, args=(b, a), rounds=20, warmup_rounds=2)
    _record(benchmark, "copy 10M", "numpy")


@pytest.fixture(scope="module", autouse=True)
def _print_ratios():
    yield
    if not RESULTS:
        return
    lines = ["", "optimizer ratios (min times, this run):"]
    copy = RESULTS.get(("copy 10M", "numpy"))
    copy_bw = 2 * 4 * N_BIG / copy / 1e9 if copy else None
    for name, (_, _, torch_kwargs, states) in OPTIMIZERS.items():
        ours = RESULTS.get((f"{name} 10M", "pynn"))
        theirs = RESULTS.get((f"{name} 10M", "torch"))
        floor = RESULTS.get((f"floor {states}", "c-loop"))
        if ours is None:
            continue
        bw = (3 + 2 * states) * 4 * N_BIG / ours / 1e9
        line = f"  {name:13s} 10M: pynn {ours * 1e3:7.2f} ms ({bw:5.1f} GB/s"
        line += f", copy {copy_bw:5.1f} GB/s)" if copy_bw else ")"
        if floor is not None:
            line += f"; C-loop floor {floor * 1e3:7.2f} ms (pynn/floor {ours / floor:4.2f}x)"
        if theirs is not None:
            kind = "fused" if torch_kwargs.get("fused") else "foreach"
            line += f"; torch {kind} {theirs * 1e3:7.2f} ms; speedup {theirs / ours:4.2f}x"
        lines.append(line)
    ours = RESULTS.get(("adam MLP", "pynn"))
    if ours is not None:
        line = f"  adam MLP (235,146 params): pynn {ours * 1e6:7.1f} us"
        ref = RESULTS.get(("adam MLP", "numpy"))
        tt = RESULTS.get(("adam MLP", "torch"))
        if tt is not None:
            line += f"; torch fused {tt * 1e6:7.1f} us ({tt / ours:4.2f}x)"
        if ref is not None:
            line += f"; numpy reference {ref * 1e6:7.1f} us ({ref / ours:4.2f}x)"
        lines.append(line)
    print("\n".join(lines))

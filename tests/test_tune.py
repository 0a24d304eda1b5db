"""pynn.tune: the products' strategies as data, decided once per product and taken by every path.

Estimate mode is the fixed rules bit for bit; each strategy forced gives the reference's numbers
and the same bits on the eager and the compiled paths; wisdom files round-trip and refuse what
is not theirs; a CSR plan never times its sparse layer's product; products on BLAS's own threads
exclude the others (the products lock) without changing anyone's answers. No timing is asserted:
what the tuner picks on this host is its business, that every path agrees is ours."""
import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.backend.codes import IDENTITY, RELU
from pynn.optim import Adam
from pynn.tune import _measure, _planner
from pynn.tune._strategies import (BACKWARD_NAMES, BLAS_THREADS, DIRECT, DOT, FEW_ROWS,
                                   FORWARD_NAMES, GEMV, ONE_THREAD, THREADING, TILES,
                                   TRANSPOSED)

from conftest import assert_close

F32, F64 = np.float32, np.float64
_dense = pytest.importorskip("pynn._kernels.dense")
CONTROL = _dense.blas_thread_control()


def _with_threads(n):
    before = pynn.get_num_threads()
    pynn.set_num_threads(n)
    return before


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    before = _with_threads(request.param)
    yield request.param
    pynn.set_num_threads(before)


# -- the codes and the estimate -------------------------------------------------------------
def test_the_strategy_codes_are_the_kernels():
    codes = _dense.strategy_codes()
    assert (codes["ONE_THREAD"], codes["TILES"], codes["BLAS_THREADS"], codes["GEMV"],
            codes["THREADING"], codes["TRANSPOSED"], codes["FEW_ROWS"], codes["DOT"],
            codes["DIRECT"]) == (
        ONE_THREAD, TILES, BLAS_THREADS, GEMV, THREADING, TRANSPOSED, FEW_ROWS, DOT, DIRECT)


@pytest.mark.skipif(not CONTROL, reason="the BLAS has no thread setter: one rule, BLAS threads")
def test_the_estimate_is_the_fixed_rules():
    est = _dense.forward_estimate
    # pynn's own kernel up to 4 rows, and up to 16 of a weight of 2**15 elements; on column
    # tiles from 2**18 multiply-adds
    assert est(1, 784, 256, 2) == est(16, 784, 256, 1) == est(4, 64, 32, 2) == DOT
    assert est(4, 784, 256, 2) == est(16, 784, 256, 2) == DOT | TILES
    assert est(17, 784, 256, 1) == ONE_THREAD
    assert est(16, 64, 32, 2) == ONE_THREAD  # a small weight: the GEMM (its rows' bits)
    assert est(128, 784, 256, 2) == TILES and est(128, 784, 256, 1) == ONE_THREAD
    assert est(32, 64, 32, 2) == ONE_THREAD  # below 2**18 multiply-adds: one thread
    assert _dense.backward_estimate(128, 256, 784, True, False, 2) == TILES
    assert _dense.backward_estimate(32, 32, 64, True, True, 2) == ONE_THREAD


SHAPES = [(1, 300, 70), (3, 50, 70), (16, 300, 263), (40, 64, 128), (130, 90, 70),
          (257, 120, 300)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_estimate_mode_gives_the_fixed_rules_bits(fast, dtype, threads, rng, shape):
    # the kernels' own estimate (strategy -1, the constants in csrc/_dense.pxd) against the
    # backend's call in estimate mode, which passes pynn.tune's choice
    pynn.tune.set_mode("estimate")
    n, k, m = shape
    X = rng.standard_normal((n, k)).astype(dtype)
    W = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    Y = np.empty((n, m), dtype)
    _dense.dense_forward(X, W, b, Y, RELU, 0.0, 0.0, threads)
    np.testing.assert_array_equal(fast.dense_forward(X, W, b, "relu"), Y)
    dY = rng.standard_normal((n, m)).astype(dtype)
    dW, db, dX = np.zeros((m, k), dtype), np.zeros(m, dtype), np.empty((n, k), dtype)
    _dense.dense_backward(dY, X, W, None, dW, db, dX, IDENTITY, 0.0, 0.0, threads)
    dW2, db2 = np.zeros((m, k), dtype), np.zeros(m, dtype)
    dX2 = fast.dense_backward(dY, X, W, None, dW2, db2)
    for a, e in ((dW2, dW), (db2, db), (dX2, dX)):
        np.testing.assert_array_equal(a, e)
    assert all(c["source"] == "estimate" for c in pynn.tune.choices())


# -- every strategy, forced -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FORWARD_NAMES.values()))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_forward_strategy_matches_the_reference(fast, ref, dtype, threads, rng, shape,
                                                      name):
    pynn.tune._force({"forward": name})
    n, k, m = shape
    X = rng.standard_normal((n, k)).astype(dtype)
    W = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    for activation in (None, "relu", "tanh"):
        assert_close(fast.dense_forward(X, W, b, activation),
                     ref.dense_forward(X, W, b, activation), dtype, k=k, err_msg=activation)
    # a kept pre-activation (the smooth kinds' backward reads it)
    Z = np.empty((n, m), dtype)
    assert_close(fast.dense_forward(X, W, b, "gelu", preact_out=Z),
                 ref.dense_forward(X, W, b, "gelu", preact_out=np.empty((n, m), dtype)),
                 dtype, k=k)
    assert_close(Z, ref.dense_forward(X, W, b), dtype, k=k)
    assert [c["strategy"] for c in pynn.tune.choices()] == [name]


@pytest.mark.parametrize("name", sorted(BACKWARD_NAMES.values()))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_backward_strategy_matches_the_reference(fast, ref, dtype, threads, rng, shape,
                                                       name):
    pynn.tune._force({"backward": name})
    n, k, m = shape
    X = rng.standard_normal((n, k)).astype(dtype)
    W = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(dtype)
    dY = rng.standard_normal((n, m)).astype(dtype)
    Y = np.maximum(rng.standard_normal((n, m)), 0).astype(dtype)
    for need_dX, frozen in ((True, False), (False, False), (True, True)):
        grads = []
        for be in (fast, ref):
            dW = None if frozen else np.zeros((m, k), dtype)
            db = np.zeros(m, dtype)
            dX = be.dense_backward(dY, X, W, Y, dW, db, "relu", need_dX=need_dX)
            grads.append((dW, db, dX))
        for a, e in zip(*grads):
            if e is None:
                assert a is None
            else:
                assert_close(a, e, dtype, k=max(n, m))


@pytest.mark.parametrize("shape", SHAPES + [(64, 70, 33), (200, 17, 5)], ids=str)
def test_the_direct_backward_rounds_alike_on_any_tiling(dtype, rng, shape):
    # every element summed over the batch in order in its own lane: the team's tiles (by rows
    # or by columns, dW and dX on halves of the team) give the one thread's bits
    n, k, m = shape
    X = rng.standard_normal((n, k)).astype(dtype)
    W = rng.standard_normal((m, k)).astype(dtype)
    dY = rng.standard_normal((n, m)).astype(dtype)
    codes = _dense.strategy_codes()
    direct, tiles = codes["DIRECT"], codes["DIRECT"] | codes["TILES"]
    out = []
    for strategy, threads in ((direct, 1), (tiles, 2), (tiles, 3)):
        dW, db, dX = np.full((m, k), 0.5, dtype), np.zeros(m, dtype), np.empty((n, k), dtype)
        _dense.dense_backward(dY, X, W, None, dW, db, dX, IDENTITY, 0.0, 0.0, threads, None,
                              strategy)
        out.append((dW, dX))
    for dW, dX in out[1:]:
        np.testing.assert_array_equal(dW, out[0][0])
        np.testing.assert_array_equal(dX, out[0][1])
    # accumulating onto dW's 0.5
    assert_close(out[0][0], 0.5 + dY.T.astype(np.float64) @ X, dtype, k=n)
    assert_close(out[0][1], dY.astype(np.float64) @ W, dtype, k=m)


PAIRS = [("one_thread", "one_thread"), ("tiles", "tiles"), ("blas_threads", "blas_threads"),
         ("few_rows", "tiles"), ("few_rows_tiles", "one_thread"),
         ("few_rows_blas_threads", "blas_threads"), ("gemv", "tiles"), ("dot", "tiles"),
         ("dot_tiles", "one_thread"), ("one_thread", "direct"), ("tiles", "direct_tiles"),
         ("dot", "direct")]


def _net(dtype):
    return nn.Sequential(nn.Dense(96, 128, seed=1, dtype=dtype), nn.BatchNorm(128, dtype=dtype),
                         nn.ReLU(), nn.Dense(128, 64, seed=2, dtype=dtype), nn.GELU(),
                         nn.Dense(64, 10, seed=3, dtype=dtype))


@pytest.mark.parametrize("rows", [16, 70])
@pytest.mark.parametrize("forward, backward", PAIRS)
def test_eager_and_compiled_agree_under_every_forced_strategy(dtype, threads, rows, forward,
                                                              backward):
    pynn.tune._force({"forward": forward, "backward": backward})
    rng = np.random.default_rng(4)
    X = rng.standard_normal((rows, 96)).astype(dtype)
    y = rng.integers(0, 10, rows)
    a = _net(dtype)
    b = copy.deepcopy(a)
    opt_a, opt_b = Adam(a.parameters(), lr=0.01), Adam(b.parameters(), lr=0.01)
    loss = nn.CrossEntropyLoss()
    for _ in range(3):
        assert a.train_step(X, y, loss, opt_a) == nn.Module.train_step(b, X, y, loss, opt_b)
    assert a.compiled_step(X, loss, opt_a) is not None
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    # predict's program (unfolded) and the layers' own eval forward, batches of 32 rows
    a.eval()
    program = a._inference_program()
    assert program is not None and program.compiled
    expected = np.concatenate([a.infer(X[lo:lo + 32]) for lo in range(0, rows, 32)])
    np.testing.assert_array_equal(program.run(X, 32, fold=False), expected)


# -- the planner ------------------------------------------------------------------------------
def test_modes_and_their_errors(monkeypatch):
    assert pynn.tune.get_mode() == "measure"
    with pytest.raises(ValueError, match="mode must be one of"):
        pynn.tune.set_mode("fast")
    monkeypatch.setenv("PYNN_TUNE", "estimate")
    _planner._state["mode"] = None
    assert pynn.tune.get_mode() == "estimate"
    monkeypatch.setenv("PYNN_TUNE", "sometimes")
    _planner._state["mode"] = None
    with pytest.warns(RuntimeWarning, match="PYNN_TUNE"):
        assert pynn.tune.get_mode() == "measure"
    with pytest.raises(ValueError, match="strategies"):
        pynn.tune._force({"backward": "gemv"})


def test_a_plan_decides_its_products_once_and_is_rebuilt_after_clear(threads):
    model = _net(F32)
    X = np.random.default_rng(0).standard_normal((64, 96)).astype(F32)
    model.forward(X)
    keys = {tuple(c["key"].values()) for c in pynn.tune.choices()}
    # the three forwards and backwards (the first without dX), decided at the plan's build
    assert len(keys) >= 6
    assert ("backward", 64, 96, 128, "float32", threads, True, False) in keys
    plan = model._compiled_for(X)
    count = pynn.tune.measurements()
    model.forward(X)
    assert model._compiled_for(X) is plan and pynn.tune.measurements() == count
    pynn.tune.clear()
    assert pynn.tune.choices() == []
    assert model._compiled_for(X) is not plan  # its strategies may be stale: rebuilt


@pytest.mark.skipif(not CONTROL, reason="the BLAS has no thread setter: nothing is timed")
def test_measured_choices_say_what_they_timed():
    before = _with_threads(2)
    try:
        X = np.random.default_rng(0).standard_normal((64, 128)).astype(F32)
        model = nn.Sequential(nn.Dense(128, 64, seed=1), nn.ReLU(), nn.Dense(64, 10, seed=2))
        model.forward(X)
    finally:
        pynn.set_num_threads(before)
    # (a forward's one-thread key, its orientation, is decided just before its own)
    measured = [c for c in pynn.tune.choices() if c["source"] == "measured"
                and c["key"]["threads"] == 2]
    assert measured, pynn.tune.choices()
    biggest = measured[0]  # the biggest product is timed first
    assert biggest["key"]["n"] * biggest["key"]["k"] * biggest["key"]["m"] == 64 * 128 * 64
    assert biggest["strategy"] in biggest["times"] and biggest["measuring_ms"] > 0
    # one thread against the team's tiles; BLAS's own threads are not timed (OFFER_BLAS_THREADS)
    assert set(biggest["times"]) == {"one_thread", "tiles"}
    assert all("blas_threads" not in c["times"] for c in pynn.tune.choices())
    mode, count, ms = pynn.tune.summary()  # (the first layer's backward: 64 x 128 x 64 too)
    assert (mode, count) == ("measure", len(pynn.tune.choices())) and ms >= biggest["measuring_ms"]


@pytest.mark.skipif(not CONTROL, reason="the BLAS has no thread setter: nothing is timed")
@pytest.mark.parametrize("gain, picked", [(0.02, "estimate"), (0.2, "other")])
def test_a_candidate_must_beat_the_fixed_rules_clearly(monkeypatch, gain, picked):
    # noise-sized wins keep the estimate, so two runs of one script choose alike
    key = _planner.forward_key(64, 128, 64, np.dtype(F32), 2)
    fixed = _dense.forward_estimate(64, 128, 64, 2)
    other = TILES if fixed == ONE_THREAD else ONE_THREAD
    monkeypatch.setattr(_measure, "time_candidates",
                        lambda k, c: {s: 1.0 - gain if s == other else 1.0 for s in c})
    assert _planner.prepare([key]) == [fixed if picked == "estimate" else other]


@pytest.mark.skipif(not CONTROL, reason="the BLAS has no thread setter: nothing is timed")
def test_products_below_the_parallel_threshold_are_not_timed_on_threads(monkeypatch):
    # below 2**18 multiply-adds a step's product stays on one thread, whatever tiles time
    # alone; from there the team's tiles are a candidate again
    monkeypatch.setattr(_measure, "time_candidates",
                        lambda k, c: {s: 0.5 if s & THREADING == TILES else 0.4 if s == DOT
                                      else 1.0 for s in c})
    limit = _dense.parallel_min_macs()
    assert limit == 1 << 18
    small = [_planner.forward_key(32, 64, 64, np.dtype(F32), 2),
             _planner.backward_key(32, 32, 64, np.dtype(F32), 2, True, True),
             _planner.forward_key(8, 1024, 16, np.dtype(F32), 2)]  # DOT's column tiles too
    assert all(_planner.macs(k) < limit for k in small)
    picked = _planner.prepare(small)
    assert [s & THREADING for s in picked] == [ONE_THREAD] * 3 and picked[2] == DOT
    on_two = [c for c in pynn.tune.choices() if c["key"]["threads"] == 2]
    assert {c["source"] for c in on_two if c["key"]["op"] == "forward"} == {"only candidate"}
    assert all("tiles" not in name for c in on_two for name in c["times"])
    big = _planner.forward_key(64, 128, 64, np.dtype(F32), 2)
    assert _planner.macs(big) >= limit and _planner.prepare([big]) == [TILES]


@pytest.mark.parametrize("key_seconds, rounds", [(0.0, _measure.MIN_REPS),
                                                  (60.0, _measure.MAX_REPS)])
def test_small_products_are_timed_more_rounds(monkeypatch, key_seconds, rounds):
    # at least MIN_REPS rounds (after a warm-up call each), then more while the key has had
    # less than KEY_SECONDS, at most MAX_REPS; each candidate's time is its minimum
    calls = {ONE_THREAD: 0, TILES: 0}

    def run(strategy):
        calls[strategy] += 1

    monkeypatch.setattr(_measure, "_runner", lambda key: run)
    monkeypatch.setattr(_measure, "KEY_SECONDS", key_seconds)
    key = _planner.forward_key(64, 128, 64, np.dtype(F32), 2)
    times = _measure.time_candidates(key, [ONE_THREAD, TILES])
    assert calls == {ONE_THREAD: 1 + rounds, TILES: 1 + rounds}
    assert set(times) == {ONE_THREAD, TILES} and all(t >= 0 for t in times.values())


def test_a_few_rows_keep_one_threads_bits_on_two(fast, dtype, rng):
    # the estimate's promise for up to 4 rows holds for measured choices too: the two-thread
    # key takes the one-thread key's strategy, or for pynn's own kernel its column tiles (which
    # round every output as one thread does)
    X = rng.standard_normal((3, 300)).astype(dtype)
    W = rng.standard_normal((1021, 300)).astype(dtype)
    outs = []
    for n in (1, 2):
        before = _with_threads(n)
        try:
            outs.append(fast.dense_forward(X, W, None, "relu"))
        finally:
            pynn.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    strategies = {c["key"]["threads"]: c["strategy"] for c in pynn.tune.choices()}
    same_bits = {"dot": ("dot", "dot_tiles")}.get(strategies[1], (strategies[1],))
    assert strategies[2] in same_bits


def test_show_config_reports_the_tuner(capsys):
    pynn.show_config()
    assert "tuner: measure" in capsys.readouterr().out


# -- wisdom ----------------------------------------------------------------------------------
def _decide_some():
    model = _net(F32)
    model.forward(np.ones((40, 96), F32))
    return pynn.tune.choices()


def test_wisdom_round_trip(tmp_path):
    made = _decide_some()
    path = tmp_path / "wisdom.json"
    assert pynn.tune.save(path) == len(made)
    document = json.loads(path.read_text())
    assert document["format"] == "pynn-tune-wisdom" and document["cpu"]
    generation = pynn.tune.generation()
    pynn.tune.clear()
    assert pynn.tune.load(str(path)) == len(made)
    assert pynn.tune.generation() != generation
    loaded = pynn.tune.choices()
    assert [(c["key"], c["strategy"]) for c in loaded] == [(c["key"], c["strategy"])
                                                           for c in made]
    assert {c["source"] for c in loaded} == {"wisdom"}


def test_wisdom_from_another_machine_is_refused(tmp_path):
    _decide_some()
    path = tmp_path / "wisdom.json"
    pynn.tune.save(path)
    document = json.loads(path.read_text())
    document["cpu"] = "Some Other CPU 9000"
    path.write_text(json.dumps(document))
    pynn.tune.clear()
    with pytest.warns(RuntimeWarning, match="wisdom.json.*another machine.*cpu"):
        assert pynn.tune.load(path) == 0
    assert pynn.tune.choices() == []


def test_bad_wisdom_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no wisdom file at .*missing.json"):
        pynn.tune.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="path: .*bad.json.* is not a pynn wisdom file"):
        pynn.tune.load(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="path: .*not a pynn wisdom file"):
        pynn.tune.load(bad)
    _decide_some()
    pynn.tune.save(bad)
    document = json.loads(bad.read_text())
    document["choices"][0]["strategy"] = "rm -rf"
    bad.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="choice 0: no .* strategy named 'rm -rf'"):
        pynn.tune.load(bad)
    document["choices"][0].update(strategy="tiles", n=-3)
    bad.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="choice 0: n, k, m and threads"):
        pynn.tune.load(bad)


# -- sparse plans ----------------------------------------------------------------------------
def test_a_csr_plan_never_times_its_sparse_product(monkeypatch, threads):
    sparse = pytest.importorskip("scipy.sparse")
    timed = []
    real = _measure._runner
    monkeypatch.setattr(_measure, "_runner", lambda key: timed.append(key) or real(key))
    X = sparse.random(64, 50_000, density=1e-3, format="csr", dtype=F32, random_state=0)
    y = np.random.default_rng(0).integers(0, 10, 64)
    model = nn.Sequential(nn.Dense(50_000, 64, seed=1), nn.ReLU(), nn.Dense(64, 10, seed=2))
    opt = Adam(model.parameters())
    loss = nn.CrossEntropyLoss()
    program = model.compiled_step(X, loss, opt)
    assert program is not None and program.op_names()[0] == "sparse_dense"
    model.train_step(X, y, loss, opt)
    model.eval()
    model.predict(X)
    keys = [c["key"] for c in pynn.tune.choices()]
    assert keys and all(key["k"] != 50_000 for key in keys), keys
    assert all(key.k != 50_000 for key in timed)


# -- the products lock -----------------------------------------------------------------------
@pytest.mark.parametrize("forced", [None, {"forward": "blas_threads", "backward": "tiles"},
                                    {"forward": "tiles", "backward": "blas_threads"}],
                         ids=["measured", "predict-blas", "train-blas"])
def test_predict_from_threads_while_another_trains(forced):
    # products on BLAS's own threads hold the products lock exclusively, every other one
    # shares it: the answers are those of the same calls one at a time
    if forced is not None:
        pynn.tune._force(forced)
    before = _with_threads(2)
    try:
        rng = np.random.default_rng(8)
        served = nn.Sequential(nn.Dense(300, 256, seed=1), nn.BatchNorm(256), nn.ReLU(),
                               nn.Dense(256, 10, seed=2))
        served.forward(rng.standard_normal((64, 300)).astype(F32))
        served.eval()
        inputs = [rng.standard_normal((rows, 300)).astype(F32) for rows in (1, 16, 300)]
        expected = [served.predict(X, batch_size=256) for X in inputs]
        trained = nn.Sequential(nn.Dense(300, 256, seed=3), nn.ReLU(),
                                nn.Dense(256, 10, seed=4))
        alone = copy.deepcopy(trained)
        Xt = rng.standard_normal((256, 300)).astype(F32)
        yt = rng.integers(0, 10, 256)
        loss = nn.CrossEntropyLoss()
        opt_alone = Adam(alone.parameters())
        for _ in range(8):
            alone.train_step(Xt, yt, loss, opt_alone)
        opt = Adam(trained.parameters())
        done = threading.Event()

        def train():
            try:
                for _ in range(8):
                    trained.train_step(Xt, yt, loss, opt)
            finally:
                done.set()

        def serve(i):
            return i % 3, served.predict(inputs[i % 3], batch_size=256)

        trainer = threading.Thread(target=train)
        trainer.start()
        with ThreadPoolExecutor(max_workers=4) as pool:
            for i, out in pool.map(serve, range(60)):
                np.testing.assert_array_equal(out, expected[i])
        trainer.join()
        assert done.is_set()
        for pa, pb in zip(trained.parameters(), alone.parameters()):
            np.testing.assert_array_equal(pa.data, pb.data)
    finally:
        pynn.set_num_threads(before)


# -- pynn bench ------------------------------------------------------------------------------
def test_bench_retimes_a_repetition_in_which_the_tuner_measured():
    from pynn.bench._cases import TunerWatch, time_reps

    count = [0]
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 2:  # the first timed repetition's call: the tuner measures
            count[0] += 1

    watch = TunerWatch(lambda: count[0])
    times = time_reps(fn, 1, 1, 3, watch)
    assert len(times) == 3 and watch.retimed == 1 and len(calls) == 5


def test_fixed_rules_set_the_choices_aside_and_bring_them_back():
    # pynn.search's trials run in it, so a worker process and this one decide alike
    _decide_some()
    made = pynn.tune.choices()
    outer = pynn.tune.generation()
    with _planner.fixed_rules():
        with _planner.fixed_rules():  # nested (trials in threads): the outermost restores
            assert pynn.tune.get_mode() == "estimate" and pynn.tune.choices() == []
            _decide_some()
            assert {c["source"] for c in pynn.tune.choices()} == {"estimate"}
        assert pynn.tune.get_mode() == "estimate"
    assert pynn.tune.get_mode() == "measure" and pynn.tune.choices() == made
    assert pynn.tune.generation() > outer  # plans built inside are rebuilt

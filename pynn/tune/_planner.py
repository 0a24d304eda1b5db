"""The process's choices: one strategy per product key, decided once and kept.

A key not seen yet is decided when a plan is built (``prepare``: all of the plan's keys, the
biggest products first) or, for an eager call, when it first runs. In "measure" mode its
candidates are timed (``_measure``) within a budget per ``prepare``; past the budget, below
a size where timing cannot matter, above one where a single repetition would take longer than
the budget, or without an OpenBLAS thread setter, the fixed rules' estimate decides. In
"estimate" mode the estimate always decides: today's rules, bit for bit.

Every caller of a product looks its strategy up here (the eager kernels, a plan, a compiled
training step, an inference program), so one key gets one strategy in the process: eager and
compiled stay bit-identical. Anything that can change a decided choice (``clear``, ``set_mode``,
``load``, ``_force``) bumps ``generation()``; plans and programs built under another
generation are rebuilt.

A forward's orientation (GEMV, transposed or plain) is decided on the one-thread key of the
shape and every thread count uses it; a forward of at most SAME_BITS_MAX_ROWS rows takes the
one-thread key's strategy on any thread count, so its result is the same on any (the fixed
rules' promise). Other strategies may round the last bits differently (docs/design.md,
"Measured plans"): that is why one key has one strategy in the process.
"""
import contextlib
import os
import threading
import time
import warnings

from . import _measure
from ._strategies import (BLAS_THREADS, CODES, DIRECT, DOT, DTYPE_NAMES, FEW_ROWS, GEMV, NAMES,
                          ONE_THREAD, TILES, TRANSPOSED, Key, describe, macs, with_orientation)

MODES = ("measure", "estimate")
# Seconds of timing one ``prepare`` (a plan build) may spend; the keys left then take the
# estimate. Enough for a medium net's six products several times over; a wide net's biggest.
BUDGET_SECONDS = 0.1
# Below this many multiply-adds a product takes the estimate untimed: its candidates differ by
# a microsecond or two, less than timing them would resolve on a busy host.
MIN_MEASURED_MACS = 1 << 15
# A backward is timed from fewer: pynn's own products (DIRECT) against BLAS's differ most
# there (a 32-row batch's 32 x 10 products: ~0.3 against ~2 us), which the minimum of 3-20
# rounds resolves. (A forward below MIN_MEASURED_MACS keeps the GEMM, whose rows round alike
# whatever the batch: predict in batches gives predict's bits on the whole.)
MIN_MEASURED_BACKWARD_MACS = 1 << 10
# pynn's own backward products are timed up to this many multiply-adds: past it BLAS's
# packing pays for itself and timing them only spends the budget (the medium step's
# 128 x 784 x 256 dW: 487 against 451 us on two threads; the wide one's 256 x 1024 x 1024:
# 14.7 against 7.9 ms).
DIRECT_MAX_MACS = 1 << 23
# Above this many, one repetition takes longer than the budget (~15 ms at 2 cores): estimate.
MAX_MEASURED_MACS = 1 << 29
# BLAS's own threads as a timed candidate: off. Measured (AMD EPYC, 2 cores, scipy's OpenBLAS
# 0.3.30, pthreads build): once a product has run on OpenBLAS's threads they keep spinning
# (sched_yield) for its THREAD_TIMEOUT, ~0.1 s, and pynn's OpenMP team fights them for the
# cores: every product timed after it, tiles included, took ~4 ms instead of 0.1-2 ms, and
# `pynn bench`'s medium step went from 1.36 ms to 28.7 ms, the wide one from 20.3 to 57 ms,
# with the planner mixing the two pools. The strategy stays (forced, or from a wisdom file:
# tested, and the products lock keeps it correct next to the others); with OFFER_BLAS_THREADS
# it is timed from BLAS_THREADS_MIN_MACS multiply-adds (below, waking its threads costs more
# than they save) when there are threads to use and OpenBLAS's setter exists.
OFFER_BLAS_THREADS = False
BLAS_THREADS_MIN_MACS = 1 << 21
# A timed candidate replaces the fixed rules' choice only when it is faster by more than this
# fraction: a few percent is this host's noise (the medium step's 128 x 128 x 10 forward timed
# 10 us on one thread and on tiles, the pick flipping between runs), and a pick that flips with
# noise makes two runs of one script round differently for nothing.
MIN_GAIN = 0.05
# Below the fixed rules' parallel threshold (the kernels' DENSE_PARALLEL_MIN_MACS, 2**18
# multiply-adds) a product on more than one thread times no threaded candidate: it runs on one.
# Timed alone, back to back, the team is awake and both cores' caches hold the operands, and
# tiles measured 1-2 us faster on such products (AMD EPYC Zen 3, 2 cores: a 32 x 64 x 64 forward
# 6.1 against 7.2 us, a 32 x 64 x 32 backward 7.3 against 8.8); inside a step of a few tens of
# us they are not: sk-digits' fit, those two on one thread instead, took 0.82-1.00x the time
# (median 0.95x; in-process alternation, four runs), and the medium step's 128 x 128 x 10
# forward measured the same either way (0.99-1.01x).
# Forward orientations: the matrix-vector path up to GEMV_MAX_ROWS rows, the transposed one up
# to FEW_ROWS_MAX_ROWS, pynn's own kernel up to DOT_MAX_ROWS (the estimate takes pynn's kernel
# up to 16 rows, and neither of the others).
GEMV_MAX_ROWS = 16
FEW_ROWS_MAX_ROWS = 64
DOT_MAX_ROWS = 32
# A forward of at most this many rows gives the same result on any thread count (the
# estimate's promise, kept): it takes the one-thread key's strategy, or that kernel's column
# tiles when they round alike (DOT's do; BLAS's column tiles round differently from one whole
# product).
SAME_BITS_MAX_ROWS = 4


class Choice:
    """A key's decided strategy, how it was decided (``source``: "measured", "estimate",
    "over budget", "only candidate", "wisdom" or "forced"), the candidates' times (seconds,
    by code) and the time spent deciding it (``measuring_ms``)."""

    __slots__ = ("strategy", "source", "times", "measuring_ms")

    def __init__(self, strategy, source, times=None, measuring_ms=0.0):
        self.strategy, self.source = strategy, source
        self.times = times or {}
        self.measuring_ms = measuring_ms


_lock = threading.RLock()
_choices = {}  # Key -> Choice
_state = {"mode": None, "generation": 0, "forced": None, "measured": 0,
          "fixed_depth": 0, "fixed_saved": None}


def get_mode():
    """"measure" or "estimate" (``set_mode``, else the environment's PYNN_TUNE, else
    "measure")."""
    mode = _state["mode"]
    if mode is None:
        value = os.environ.get("PYNN_TUNE", "").strip().lower()
        if value and value not in MODES:
            warnings.warn(f"PYNN_TUNE={value!r} is not one of {MODES}; pynn measures",
                          RuntimeWarning, stacklevel=3)
        mode = _state["mode"] = value if value in MODES else "measure"
    return mode


def set_mode(mode):
    """How products not decided yet are decided: "measure" (time the candidates once) or
    "estimate" (the fixed rules). Forgets the choices made so far, so the mode decides every
    product from now on (``load`` wisdom after this, not before)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with _lock:
        _state["mode"] = mode
        _forget()


def clear():
    """Forget every choice (and what deciding them spent): products are decided again."""
    with _lock:
        _forget()


def generation():
    """A number that changes whenever a decided choice may have changed (plans built under
    another one are rebuilt)."""
    return _state["generation"]


def measurements():
    """How many keys have been timed in this process (``pynn bench`` re-times a repetition
    during which this moved)."""
    return _state["measured"]


def _forget():
    _choices.clear()
    _state["generation"] += 1


@contextlib.contextmanager
def fixed_rules():
    """Within the block every product takes the fixed rules' strategy (estimate mode) and the
    process's choices are set aside, restored when the outermost such block (from any thread)
    ends; plans built inside are rebuilt after (the generation moves on entry and exit). For
    work whose result must not depend on which process ran it: pynn.search's trials, which run
    here or in worker processes, each of which would measure for itself."""
    with _lock:
        if _state["fixed_depth"] == 0:
            _state["fixed_saved"] = (dict(_choices), _state["mode"])
            _state["mode"] = "estimate"
            _forget()
        _state["fixed_depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["fixed_depth"] -= 1
            if _state["fixed_depth"] == 0:
                choices, _state["mode"] = _state["fixed_saved"]
                _state["fixed_saved"] = None
                _forget()
                _choices.update(choices)


def _force(strategies):
    """Test hook: every product takes ``strategies`` ({"forward": name, "backward": name}, a
    missing op its estimate), or None to go back to the mode. Forgets the choices."""
    if strategies is not None:
        for op, name in strategies.items():
            if op not in NAMES or name not in NAMES[op].values():
                raise ValueError(f"strategies: no {op!r} strategy named {name!r}")
    with _lock:
        _state["forced"] = None if strategies is None else dict(strategies)
        _forget()


def _set_choices(entries):
    """Install (Key, Choice) pairs (``load``): replaces those keys' choices."""
    with _lock:
        for key, choice in entries:
            _choices[key] = choice
        _state["generation"] += 1


def snapshot():
    """(Key, Choice) pairs of every choice, in the order they were decided."""
    with _lock:
        return list(_choices.items())


# -- lookups ---------------------------------------------------------------------------------
def forward_key(n, k, m, dtype, threads):
    return Key("forward", n, k, m, DTYPE_NAMES[dtype], threads, False, False)


def backward_key(n, m, k, dtype, threads, has_dW, has_dX):
    return Key("backward", n, k, m, DTYPE_NAMES[dtype], threads, bool(has_dW), bool(has_dX))


def forward_strategy(n, k, m, dtype, threads):
    """The strategy of a forward of n rows of k features into m in ``dtype`` on ``threads``."""
    choice = _choices.get(("forward", n, k, m, DTYPE_NAMES[dtype], threads, False, False))
    if choice is not None:
        return choice.strategy
    return prepare([forward_key(n, k, m, dtype, threads)])[0]


def backward_strategy(n, m, k, dtype, threads, has_dW, has_dX):
    """The strategy of a backward (dZ n x m, X n x k) computing dW and/or dX."""
    choice = _choices.get(("backward", n, k, m, DTYPE_NAMES[dtype], threads, bool(has_dW),
                           bool(has_dX)))
    if choice is not None:
        return choice.strategy
    return prepare([backward_key(n, m, k, dtype, threads, has_dW, has_dX)])[0]


def prepare(keys):
    """Decide every key of ``keys`` not decided yet, the biggest products first, timing them
    (in "measure" mode) within one BUDGET_SECONDS; the strategies, in order of ``keys``."""
    with _lock:
        # biggest first; ties in the caller's order (a set's would vary between runs)
        todo = sorted(dict.fromkeys(key for key in keys if key not in _choices), key=macs,
                      reverse=True)
        deadline = time.perf_counter() + BUDGET_SECONDS
        for key in todo:
            if key not in _choices:  # (a forward's one-thread key may have come first)
                _decide(key, deadline)
        return [_choices[key].strategy for key in keys]


# -- deciding --------------------------------------------------------------------------------
def _decide(key, deadline):
    forced = _state["forced"]
    if forced is not None:
        name = forced.get(key.op)
        strategy = _estimate(key) if name is None else CODES[key.op][name]
        _choices[key] = Choice(strategy, "forced")
        return
    if get_mode() == "estimate" or not _measure.blas_thread_control():
        _choices[key] = Choice(_estimate(key), "estimate")
        return
    orientation = None
    if key.op == "forward" and key.threads > 1:
        # the orientation is the one-thread key's, decided first (see the module doc)
        single = key._replace(threads=1)
        if single not in _choices:
            _decide(single, deadline)
        orientation = _choices[single].strategy
    candidates = _candidates(key, orientation)
    if len(candidates) == 1:
        _choices[key] = Choice(candidates[0], "only candidate")
    elif not _min_measured(key) <= macs(key) <= MAX_MEASURED_MACS:
        _choices[key] = Choice(_estimate(key, orientation), "estimate")
    elif time.perf_counter() > deadline:
        _choices[key] = Choice(_estimate(key, orientation), "over budget")
    else:
        t0 = time.perf_counter()
        times = _measure.time_candidates(key, candidates)
        best = min(times, key=times.get)
        fixed = _estimate(key, orientation)
        if fixed in times and times[best] > times[fixed] * (1.0 - MIN_GAIN):
            best = fixed  # not clearly faster: keep the fixed rules' choice (MIN_GAIN)
        _choices[key] = Choice(best, "measured", times, (time.perf_counter() - t0) * 1e3)
        _state["measured"] += 1


def _min_measured(key):
    return MIN_MEASURED_BACKWARD_MACS if key.op == "backward" else MIN_MEASURED_MACS


def _estimate(key, orientation=None):
    """The fixed rules' strategy of ``key``, in ``orientation`` when one was decided."""
    if key.op == "backward":
        return _measure.backward_estimate(key)
    strategy = _measure.forward_estimate(key)
    return strategy if orientation is None else with_orientation(strategy, orientation)


def _candidates(key, orientation):
    """The strategies worth timing for ``key``; a forward on more than one thread only in
    ``orientation`` (its one-thread key's choice)."""
    n, threads, total = key.n, key.threads, macs(key)
    if key.op == "forward" and threads == 1:
        found = [ONE_THREAD]
        if n <= GEMV_MAX_ROWS:
            found.append(GEMV)
        if n <= FEW_ROWS_MAX_ROWS:
            found.append(FEW_ROWS)
        if n <= DOT_MAX_ROWS:
            found.append(DOT)
        return found
    if key.op == "backward":
        return _backward_candidates(key, total)
    if total < _measure.parallel_min_macs():  # one thread (see the constants)
        return [orientation if orientation in (DOT, GEMV) else
                ONE_THREAD | ((orientation or 0) & TRANSPOSED)]
    if orientation == DOT:  # no BLAS: its column tiles, or one thread
        return [DOT | TILES, DOT] if _measure.team(key, DOT | TILES) >= 2 else [DOT]
    if orientation == GEMV or (key.op == "forward" and n <= SAME_BITS_MAX_ROWS):
        return [orientation]  # on one thread: the one-thread key's result (see above)
    flag = (orientation or 0) & TRANSPOSED
    found = []
    if _measure.team(key, TILES | flag) >= 2:
        found.append(TILES | flag)
    if OFFER_BLAS_THREADS and threads > 1 and total >= BLAS_THREADS_MIN_MACS:
        found.append(BLAS_THREADS | flag)
    # one thread, unless the product is big enough for BLAS's threads and another way to
    # use the second core exists (then one thread cannot win but on a host busy elsewhere)
    if not found or total < BLAS_THREADS_MIN_MACS:
        found.insert(0, ONE_THREAD | flag)
    return found


def _backward_candidates(key, total):
    """A backward's: BLAS and pynn's own products (DIRECT), each on one thread and, from the
    parallel threshold, on the team's tiles (one thread then only below BLAS_THREADS_MIN_MACS,
    as for a forward)."""
    found = []
    if total >= _measure.parallel_min_macs() and _measure.team(key, TILES) >= 2:
        found.append(TILES)
        if total <= DIRECT_MAX_MACS:
            found.append(DIRECT | TILES)
    if OFFER_BLAS_THREADS and key.threads > 1 and total >= BLAS_THREADS_MIN_MACS:
        found.append(BLAS_THREADS)
    if not found or total < BLAS_THREADS_MIN_MACS:
        found[:0] = [ONE_THREAD, DIRECT] if total <= DIRECT_MAX_MACS else [ONE_THREAD]
    return found


def choice_dicts():
    """``pynn.tune.choices()``: every choice as a dict."""
    result = []
    for key, choice in snapshot():
        names = NAMES[key.op]
        result.append({"key": describe(key), "strategy": names[choice.strategy],
                       "source": choice.source,
                       "times": {names[c]: t for c, t in choice.times.items()},
                       "measuring_ms": choice.measuring_ms})
    return result

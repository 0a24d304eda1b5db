"""Shared machinery of the property-based fuzz tests (tests/test_fuzz_*.py, issue 11 item 1).

Profiles (hypothesis settings):
  default                  ``FAST_EXAMPLES`` examples per test, derandomized (the same cases on
                           every CI run), no example database written into the tree.
  PYNN_FUZZ_PROFILE=long   ``LONG_EXAMPLES`` per test, fresh random cases on every run.

Every generated case that reaches a pynn call is counted (``count``); the totals are printed at
the end of the pytest run and, with PYNN_FUZZ_REPORT=path, written there as JSON.

Arrays are described by recipes (values + layout) and built afresh for each backend, so both see
identical arguments (the ops update some of them in place).
"""
import collections
import faulthandler
import json
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import pynn
from pynn import _threads

PROFILE = os.environ.get("PYNN_FUZZ_PROFILE", "fast")
if PROFILE not in ("fast", "long"):
    raise ValueError(f"PYNN_FUZZ_PROFILE must be 'fast' or 'long', got {PROFILE!r}")
LONG = PROFILE == "long"
FAST_EXAMPLES = 100
LONG_EXAMPLES = 700
# A call that has not returned after this long is a hang: dump every thread's stack and exit.
HANG_SECONDS = 1800 if LONG else 300

SETTINGS = settings(
    max_examples=LONG_EXAMPLES if LONG else FAST_EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)

# ---------------------------------------------------------------------------- case counting
CASES = collections.Counter()
RAISED = collections.Counter()  # cases refused with a ValueError/TypeError naming an argument


def count(test_name, n=1):
    CASES[test_name] += n


class _Reporter:
    """A pytest plugin object, registered by ``reporting``: prints and saves the totals."""

    def pytest_terminal_summary(self, terminalreporter):
        if not CASES:
            return
        total = sum(CASES.values())
        terminalreporter.write_sep("-", f"pynn fuzz ({PROFILE} profile): {total:,} generated "
                                        f"cases in {len(CASES)} tests")
        for name, n in sorted(CASES.items()):
            terminalreporter.write_line(f"  {n:8,d}  {name}  ({RAISED[name]:,d} refused by name, "
                                        f"{n - RAISED[name]:,d} compared with the reference)")
        for label, n in sorted(KNOWN_HITS.items()):
            terminalreporter.write_line(f"  known finding hit {n:,d} times: {label}")
        path = os.environ.get("PYNN_FUZZ_REPORT")
        if path:
            with open(path, "w") as f:
                json.dump({"profile": PROFILE, "total": total, "cases": dict(CASES),
                           "refused": dict(RAISED),
                           "known_findings_hit": dict(KNOWN_HITS)}, f,
                          indent=1, sort_keys=True)


def reporting(config):
    if not config.pluginmanager.has_plugin("pynn-fuzz-report"):
        config.pluginmanager.register(_Reporter(), "pynn-fuzz-report")


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Register the reporter; turn a hang into a loud failure (stacks dumped, process exits)."""
    reporting(request.config)
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request, monkeypatch):
    """Run a whole fuzz test with 1 or 2 threads; with 2, every kernel takes its threaded path."""
    before = pynn.get_num_threads()
    pynn.set_num_threads(request.param)
    if request.param > 1:
        monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 1)
    yield request.param
    pynn.set_num_threads(before)


# ---------------------------------------------------------------------------- values
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Everything a kernel must refuse with TypeError (complex, object, half, ints, bool, longdouble).
BAD_DTYPES = [np.float16, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_, object,
              np.complex64, np.complex128, np.longdouble]


def specials(dtype):
    dtype = np.dtype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    return [0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e30, float(tiny), -float(tiny),
            float(tiny) * 7, 1e-30, -1e-30, 1.0, -1.0]


@st.composite
def float_values(draw, shape, dtype, regime=None):
    """Values of ``shape``: normal data at a drawn scale, with special values sprinkled in
    (NaN, +-inf, +-1e30, denormals, signed zeros) unless the regime is "finite"."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3, 30.0]))
    a = (np.random.default_rng(seed).standard_normal(size) * scale).astype(dtype)
    if regime is None:
        regime = draw(st.sampled_from(["finite", "finite", "special", "extreme"]))
    if size and regime != "finite":
        k = draw(st.integers(1, 6 if regime == "special" else max(1, size)))
        sp = specials(dtype)
        if regime == "extreme":
            sp = [1e30, -1e30, sp[7], sp[8]]
        idx = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=min(k, 12)))
        for i in idx:
            a[i] = dtype.type(draw(st.sampled_from(sp)))
    return a.reshape(shape)


# ---------------------------------------------------------------------------- layouts
IN_LAYOUTS = ["C", "C", "C", "F", "strided", "negstride", "readonly", "unaligned", "bcast"]
OUT_LAYOUTS = ["C", "C", "C", "unaligned", "F", "strided", "readonly"]


class Arr:
    """A recipe: ``build()`` returns a fresh array with these values and this memory layout."""

    def __init__(self, values, layout="C"):
        self.layout = layout
        if layout == "bcast" and values.ndim and values.size:
            values = np.broadcast_to(values[:1], values.shape).copy()
        self.values = values

    def build(self):
        a = self.values
        lay = self.layout
        if lay == "C" or a.ndim == 0 and lay in ("F", "strided", "negstride", "bcast"):
            return a.copy()
        if lay == "F":
            return np.asfortranarray(a.copy())
        if lay == "strided":
            big = np.full(tuple(2 * s + 1 for s in a.shape), np.nan if a.dtype.kind == "f" else 7,
                          dtype=a.dtype)
            view = big[tuple(slice(1, 2 * s + 1, 2) for s in a.shape)]
            view[...] = a
            return view
        if lay == "negstride":
            rev = tuple(slice(None, None, -1) for _ in a.shape)
            return a[rev].copy()[rev]
        if lay == "readonly":
            c = a.copy()
            c.flags.writeable = False
            return c
        if lay == "unaligned":
            off = 1 if a.dtype.itemsize > 1 else 0
            buf = np.zeros(a.nbytes + a.dtype.itemsize + 1, np.uint8)
            u = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
            u[...] = a
            return u
        if lay == "bcast":
            return np.broadcast_to(a[:1], a.shape) if a.size else a.copy()
        raise AssertionError(lay)

    def __repr__(self):
        return f"Arr({self.values.dtype}{list(self.values.shape)}, {self.layout})"


class Bad:
    """A recipe for an invalid argument (wrong dtype, shape, kind); ``build()`` is fresh too."""

    def __init__(self, make, what):
        self.make, self.what = make, what

    def build(self):
        return self.make()

    def __repr__(self):
        return f"Bad({self.what})"


def build(obj):
    """Build recipes inside (nested) tuples, lists and dicts; other values pass through."""
    if isinstance(obj, (Arr, Bad)):
        return obj.build()
    if isinstance(obj, dict):
        return {k: build(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(build(v) for v in obj)
    return obj


@st.composite
def in_array(draw, shape, dtype, layouts=IN_LAYOUTS, regime=None):
    return Arr(draw(float_values(shape, dtype, regime)), draw(st.sampled_from(layouts)))


@st.composite
def out_array(draw, shape, dtype, allow_none=True):
    """An output argument: None (allocate) or a caller's array pre-filled with garbage."""
    if allow_none and draw(st.booleans()):
        return None
    garbage = np.full(shape, np.nan if np.dtype(dtype).kind == "f" else 3, dtype=dtype)
    return Arr(garbage, draw(st.sampled_from(OUT_LAYOUTS)))


@st.composite
def corrupt(draw, recipe):
    """Replace one argument by something invalid: another dtype, shape or kind."""
    values = recipe.values if isinstance(recipe, Arr) else None
    kinds = ["dtype", "kind"] + (["shape"] if values is not None else [])
    how = draw(st.sampled_from(kinds))
    if values is None:
        values = np.zeros((2, 2))
    if how == "dtype":
        dt = draw(st.sampled_from(BAD_DTYPES + list(FLOATS)))
        if np.dtype(dt) == values.dtype:
            dt = np.float16
        with np.errstate(all="ignore"):
            v = values.astype(dt)
        return Bad(lambda: v.copy(), f"dtype {np.dtype(dt)}")
    if how == "shape":
        change = draw(st.sampled_from(["grow", "shrink", "add_axis", "drop_axis", "empty"]))
        shape = list(values.shape)
        if change == "grow" and shape:
            shape[draw(st.integers(0, len(shape) - 1))] += 1
        elif change == "shrink" and shape and max(shape) > 0:
            i = max(range(len(shape)), key=lambda j: shape[j])
            shape[i] -= 1
        elif change == "add_axis":
            shape.append(1)
        elif change == "drop_axis" and shape:
            shape.pop()
        else:
            shape = [0] * max(1, len(shape))
        if tuple(shape) == values.shape:  # e.g. "empty" of an empty array: still valid
            shape = list(values.shape) + [2]
        v = np.zeros(shape, values.dtype)
        return Bad(lambda: v.copy(), f"shape {tuple(shape)}")
    which = draw(st.sampled_from(["list", "None", "scalar", "str"]
                                 + (["0-d"] if values.ndim else [])))
    if which == "list":
        lst = values.tolist()
        return Bad(lambda: lst, "a list")
    if which == "None":
        return Bad(lambda: None, "None")
    if which == "scalar":
        return Bad(lambda: 1.0, "a float")
    if which == "str":
        return Bad(lambda: "X", "a str")
    return Bad(lambda: np.array(1.0, values.dtype), "a 0-d array")


BAD_SCALARS = [float("nan"), float("inf"), -1.0, -1, "0.1", None, True, [0.1], 10**400,
               np.float32(np.nan), np.array(0.1), 1 + 1j]


# ---------------------------------------------------------------------------- running both
def op_parameters(backend_cls, op):
    import inspect

    return [p for p in inspect.signature(getattr(backend_cls, op)).parameters if p != "self"]


def _names_an_argument(exc, names):
    msg = str(exc)
    return any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", msg) for n in names)


def assert_names_an_argument(exc, names):
    assert _names_an_argument(exc, names), (
        f"{type(exc).__name__}({str(exc)!r}) does not name any argument of {names}")


def run(fn):
    """("ok", result) or ("raised", exception); judged by ``same_outcome``."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "mean of empty slice"
        try:
            return "ok", fn()
        except Exception as exc:  # noqa: BLE001 - anything but ValueError/TypeError fails below
            return "raised", exc


# Errors of findings whose fix has not landed yet: (regex on the message, label). Hits are
# counted ("known finding hit N times"), not failed, so the fuzzing keeps looking for new ones;
# each such finding also needs a strict xfail test naming its cause. Every finding so far is
# fixed, each with a plain test (the "findings" sections of test_fuzz_backend.py and
# test_fuzz_layers.py).
KNOWN = []
KNOWN_HITS = collections.Counter()


def same_outcome(ref, fast, names, case=None):
    """Both raised the same ValueError/TypeError naming an argument (True), or both returned
    (False); anything else fails."""
    (rk, rv), (fk, fv) = ref, fast
    if rk == "raised" or fk == "raised":
        assert rk == fk, f"reference {rk} {rv!r} but cython {fk} {fv!r}"
        assert type(rv) is type(fv) and str(rv) == str(fv), (rv, fv)
        names_one = isinstance(rv, (ValueError, TypeError)) and _names_an_argument(rv, names)
        if not names_one:
            for pattern, label in KNOWN:
                if re.search(pattern, str(rv)):
                    KNOWN_HITS[label] += 1
                    return True
            if not isinstance(rv, (ValueError, TypeError)):
                raise rv
            assert_names_an_argument(rv, names)
        if case is not None:
            RAISED[case] += 1
        return True
    return False


# ---------------------------------------------------------------------------- comparing
def eps(dtype):
    return float(np.finfo(dtype).eps)


def assert_same(actual, expected, tol, loose=None, what="result"):
    """``actual`` matches the reference ``expected``: same shape and dtype, NaN exactly where
    the reference has NaN, the same infinities, finite values within ``tol`` (elementwise,
    broadcastable). Entries under ``loose`` (order-dependent overflow, ill-conditioned) are
    only required to exist."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != reference {e.shape}"
    assert a.dtype == e.dtype, f"{what}: dtype {a.dtype} != reference {e.dtype}"
    strict = np.ones(a.shape, bool) if loose is None else ~np.broadcast_to(loose, a.shape)
    with np.errstate(all="ignore"):
        an, en = np.isnan(a), np.isnan(e)
        bad = strict & (an != en)
        inf_mismatch = (np.isinf(a) | np.isinf(e)) & ~an & ~en & (a != e)
        bad |= strict & inf_mismatch
        t = np.broadcast_to(np.asarray(tol, dtype=np.float64), a.shape)
        if a.dtype.kind == "f":
            # An error bound beyond the dtype's range: whether the rounded result is an
            # infinity or a large finite value depends on the summation order.
            beyond = ~(t <= float(np.finfo(a.dtype).max) / 16)
            bad &= ~beyond
            strict = strict & ~beyond
        fin = strict & np.isfinite(a) & np.isfinite(e)
        diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
        bad |= fin & ~(diff <= t)
    if bad.any():
        idx = np.argwhere(bad)[:5] if a.ndim else [()]
        rows = [f"  at {tuple(int(i) for i in ix)}: cython {a[tuple(ix)]!r} reference "
                f"{e[tuple(ix)]!r} tol {t[tuple(ix)]:.3g}" for ix in idx]
        raise AssertionError(f"{what}: {int(bad.sum())} of {a.size} entries differ\n"
                             + "\n".join(rows))


def finite_part(a):
    """|a| as float64 with the non-finite entries zeroed (for error bounds)."""
    a = np.abs(np.asarray(a, dtype=np.float64))
    return np.where(np.isfinite(a), a, 0.0)

"""Dropout: counter-based masks (same for any thread count, bit-identical across backends)."""
import numpy as np
import pytest

from conftest import ODD_SHAPES
from pynn import _threads
from pynn.backend.codes import GOLDEN64, dropout_key, dropout_threshold, mix64

SHAPES = ODD_SHAPES + [(2, 3, 5), (40000,)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_forward_matches_reference_bit_for_bit(ref, fast, shape, p, dtype, n_threads, rng):
    X = rng.standard_normal(shape).astype(dtype)
    Y_ref, m_ref = ref.dropout_forward(X, p, seed=42, step=3)
    Y, m = fast.dropout_forward(X, p, seed=42, step=3)
    assert m.dtype == np.uint8 and m.shape == shape
    assert Y.dtype == dtype and Y.shape == shape
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(Y, Y_ref)
    assert set(np.unique(m)) <= {0, 1}


@pytest.mark.parametrize("name", ["numpy", "cython"])
def test_mask_independent_of_thread_count(name, rng, monkeypatch):
    from pynn import get_num_threads, set_num_threads
    from pynn.backend import backend_for

    be = backend_for(name)
    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 1)  # really run threaded
    X = rng.standard_normal(100003).astype(np.float32)
    before = get_num_threads()
    try:
        masks = []
        for n in (1, 2, 3):
            set_num_threads(n)
            assert _threads.threads_for(X.size) == n
            masks.append(be.dropout_forward(X, 0.3, seed=7, step=11)[1])
    finally:
        set_num_threads(before)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


def test_mask_follows_the_documented_formula(backend):
    # independent of both implementations: draws from base.mix64 on Python ints
    seed, step, p = 123, 5, 0.4
    X = np.ones(64)
    _, m = backend.dropout_forward(X, p, seed=seed, step=step)
    key = dropout_key(seed, step)
    thr = dropout_threshold(p)
    expected = [
        int((mix64(key + (i + 1) * GOLDEN64) >> 32) >= thr) for i in range(64)
    ]
    np.testing.assert_array_equal(m, expected)


def test_extreme_seed_and_step(ref, fast):
    X = np.arange(1000, dtype=np.float64)
    top = 2**64 - 1
    Y_ref, m_ref = ref.dropout_forward(X, 0.5, seed=top, step=top)
    Y, m = fast.dropout_forward(X, 0.5, seed=top, step=top)
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(Y, Y_ref)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction(backend, p, n_threads):
    n = 1_000_000
    _, m = backend.dropout_forward(np.ones(n, np.float32), p, seed=2024, step=0)
    kept = m.mean(dtype=np.float64)
    # binomial standard deviation; 6 sigma is a false-alarm rate of ~1e-9
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 6 * sigma


def test_keep_fraction_in_blocks_is_uniform(fast):
    # no region of the counter space is biased (e.g. the high indices handled by thread 2)
    n, p = 1 << 20, 0.25
    _, m = fast.dropout_forward(np.ones(n), p, seed=1, step=1)
    blocks = m.reshape(16, -1).mean(axis=1)
    sigma = np.sqrt(p * (1 - p) / (n // 16))
    assert np.all(np.abs(blocks - (1 - p)) < 6 * sigma)


def test_different_step_or_seed_gives_different_mask(backend):
    X = np.ones(10000)
    m0 = backend.dropout_forward(X, 0.5, seed=1, step=0)[1]
    m0_again = backend.dropout_forward(X, 0.5, seed=1, step=0)[1]
    m1 = backend.dropout_forward(X, 0.5, seed=1, step=1)[1]
    m2 = backend.dropout_forward(X, 0.5, seed=2, step=0)[1]
    np.testing.assert_array_equal(m0, m0_again)
    # independent masks agree on about half the elements, never on (nearly) all
    assert 0.45 < np.mean(m0 == m1) < 0.55
    assert 0.45 < np.mean(m0 == m2) < 0.55


def test_p_zero_keeps_everything(backend, dtype, rng):
    X = rng.standard_normal((33, 17)).astype(dtype)
    Y, m = backend.dropout_forward(X, 0.0, seed=9, step=9)
    assert m.all()
    np.testing.assert_array_equal(Y, X)


def test_kept_values_are_scaled(backend, dtype, n_threads, rng):
    p = 0.25
    X = rng.standard_normal((64, 65)).astype(dtype)
    Y, m = backend.dropout_forward(X, p, seed=3, step=4)
    keep = m.astype(bool)
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(Y[~keep], 0)
    np.testing.assert_allclose(Y[keep], X[keep] / (1 - p), rtol=1e-6)


def test_nan_propagates_like_the_reference(ref, fast):
    X = np.full(1000, np.nan)
    X[::3] = 1.0
    Y_ref, _ = ref.dropout_forward(X, 0.5, seed=0, step=0)
    Y, _ = fast.dropout_forward(X, 0.5, seed=0, step=0)
    np.testing.assert_array_equal(Y, Y_ref)  # equal_nan: NaN * 0 is NaN in both
    assert np.isnan(Y).sum() == np.isnan(X).sum()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_reuses_the_mask(ref, fast, shape, dtype, n_threads, rng):
    p = 0.3
    X = rng.standard_normal(shape).astype(dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    _, m = fast.dropout_forward(X, p, seed=5, step=6)
    dX = fast.dropout_backward(dY, m, p)
    np.testing.assert_array_equal(dX, ref.dropout_backward(dY, m, p))
    expected = (dY * m * dtype(1 / (1 - p))).astype(dtype)
    np.testing.assert_array_equal(dX, expected)
    if m.size:
        np.testing.assert_array_equal(dX[m == 0], 0)


def test_read_only_inputs_and_preallocated_outputs(backend, ref, dtype, rng):
    X = rng.standard_normal((20, 30)).astype(dtype)
    X.flags.writeable = False
    out = np.full(X.shape, np.nan, dtype)
    mask_out = np.full(X.shape, 7, np.uint8)
    Y, m = backend.dropout_forward(X, 0.5, seed=1, step=2, out=out, mask_out=mask_out)
    assert Y is out and m is mask_out
    Y_ref, m_ref = ref.dropout_forward(X, 0.5, seed=1, step=2)
    np.testing.assert_array_equal(m, m_ref)
    np.testing.assert_array_equal(Y, Y_ref)
    m.flags.writeable = False
    dY = rng.standard_normal(X.shape).astype(dtype)
    dY.flags.writeable = False
    dX_out = np.empty(X.shape, dtype)
    assert backend.dropout_backward(dY, m, 0.5, out=dX_out) is dX_out
    np.testing.assert_array_equal(dX_out, ref.dropout_backward(dY, m_ref, 0.5))


# ----------------------------------------------------------------------------- bad input

X4 = np.ones((2, 2))
BAD = [
    ("dropout_forward", (X4, 1.0, 0, 0), ValueError, "p must be < 1"),
    ("dropout_forward", (X4, -0.1, 0, 0), ValueError, "p must be >= 0"),
    ("dropout_forward", (X4, float("nan"), 0, 0), ValueError, "p must be finite"),
    ("dropout_forward", (X4, "0.5", 0, 0), TypeError, "p must be a real number"),
    ("dropout_forward", (X4, 0.5, -1, 0), ValueError, "seed must be in"),
    ("dropout_forward", (X4, 0.5, 0, 2**64), ValueError, "step must be in"),
    ("dropout_forward", (X4, 0.5, 1.5, 0), TypeError, "seed must be an int"),
    ("dropout_forward", (X4.astype(np.int32), 0.5, 0, 0), TypeError, "X must have dtype"),
    ("dropout_backward", (X4, np.ones((2, 2), bool), 0.5), TypeError, "mask must be the uint8"),
    ("dropout_backward", (X4, np.ones((2, 3), np.uint8), 0.5), ValueError, "mask must have shape"),
    ("dropout_backward", (X4, np.ones((2, 2), np.uint8), 1.0), ValueError, "p must be < 1"),
]


@pytest.mark.parametrize("method,args,exc,match", BAD, ids=[c[-1] for c in BAD])
def test_bad_input_names_the_argument(backend, method, args, exc, match):
    with pytest.raises(exc, match=match):
        getattr(backend, method)(*args)


def test_bad_mask_out(backend):
    with pytest.raises(TypeError, match="mask_out has dtype"):
        backend.dropout_forward(X4, 0.5, 0, 0, mask_out=np.ones((2, 2), bool))

"""The global seed: ``pynn.manual_seed(seed)`` makes everything pynn draws without a seed of
its own reproducible (weight init, Dropout masks, Trainer shuffling and splits, data helpers).

Each unseeded draw takes the next child of one ``numpy.random.SeedSequence`` rooted at the
global seed, so a program that builds and trains the same things in the same order gets the
same numbers, and the children are statistically independent. Without ``manual_seed`` every
unseeded draw comes from the OS's entropy, as before. An explicit seed or Generator passed to a
call is always used as given and does not advance the global stream.
"""
import threading

import numpy as np

from ._checks import check_int

_lock = threading.Lock()
_root = None  # the SeedSequence of the global seed, or None: OS entropy


def manual_seed(seed):
    """Seed every random draw pynn makes without a per-call seed (torch's ``manual_seed``).

    Parameters
    ----------
    seed : int >= 0, or None
        None returns to unseeded draws from the OS's entropy (pynn's addition).
    """
    global _root
    root = None if seed is None else np.random.SeedSequence(check_int("seed", seed, 0))
    with _lock:
        _root = root


def _next_sequence():
    with _lock:
        return None if _root is None else _root.spawn(1)[0]


def rng(seed=None):
    """``seed`` as a Generator: a Generator is used as is, an int seeds a new one, None takes
    the next child of the global seed (``manual_seed``), or OS entropy without one."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(_next_sequence())
    return np.random.default_rng(seed)


def draw_seed():
    """A non-negative 63-bit int seed, from the global seed stream when there is one (for
    objects that record their seed, like Dropout and Trainer checkpoints)."""
    seq = _next_sequence()
    if seq is None:
        return int(np.random.SeedSequence().entropy % (1 << 63))
    return int(seq.generate_state(2, np.uint64)[0] >> np.uint64(1))

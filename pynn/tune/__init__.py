"""pynn.tune: how each matrix product runs, chosen by timing instead of by rule.

Every dense product (a forward, or a backward computing dW and/or dX) has a few strategies:
one thread; tiles over pynn's OpenMP team with BLAS single-threaded in each; one call on
BLAS's own threads; for a few rows a matrix-vector product per row, the transposed product or
pynn's own dot-product kernel ("dot"); for a backward pynn's own products, which pack nothing
("direct", on one thread or the team's tiles).
Which is fastest depends on the CPU, the BLAS and the shape. In "measure" mode (the default)
the first plan that needs a product (its key: op, rows, widths, dtype, threads) times the
candidates once (BLAS's own threads excepted: docs/design.md, "Measured plans"), a few
repetitions each on scratch operands, within ~0.1 s per plan build,
and the process keeps the choice; in "estimate" mode (``set_mode`` or PYNN_TUNE=estimate) the
fixed rules pynn had before decide, bit for bit. Every path of a product (eager, a plan, a
compiled training step, ``predict``) takes the same choice, so they stay bit-identical.

``save``/``load`` keep the choices in a JSON wisdom file so a service starts tuned; a file from
another CPU or BLAS is refused with a warning.

    >>> import pynn
    >>> pynn.tune.get_mode() in ("measure", "estimate")
    True
"""
from ._planner import clear, generation, get_mode, measurements, set_mode
from ._planner import _force  # noqa: F401  (test hook: pynn.tune._force)
from ._planner import choice_dicts as _choice_dicts
from ._wisdom import load, save


def choices():
    """Every product decided in this process: a list of dicts with its ``key`` (op, n, k, m,
    dtype, threads, has_dW, has_dX), the ``strategy`` name, its ``source`` ("measured",
    "estimate", "over budget", "only candidate", "wisdom", "forced"), the candidates'
    ``times`` (seconds, by name; measured choices only) and ``measuring_ms``."""
    return _choice_dicts()


def summary():
    """(mode, number of choices, milliseconds spent measuring them): what ``show_config``
    prints."""
    found = choices()
    return get_mode(), len(found), sum(c["measuring_ms"] for c in found)


__all__ = ["choices", "clear", "generation", "get_mode", "load", "measurements", "save",
           "set_mode", "summary"]

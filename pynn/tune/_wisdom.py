"""Wisdom files: the process's choices saved as JSON, so a service starts tuned.

Data, never code: a format tag, what the choices were measured on (the CPU model, the BLAS the
kernels call: its library, version and kernel as threadpoolctl reports them, and pynn's
version), and one entry per choice (its key and strategy name). A file from another CPU or
BLAS is refused with a warning naming the path (the choices would be another machine's
guesses); a file that is not a wisdom file raises ValueError naming the ``path`` argument.
Written atomically (pynn._atomic, the helper every save uses): a reader sees the old file or
the new one.
"""
import json
import os
import platform
import warnings

from .._atomic import atomic_open
from .._version import __version__
from . import _planner
from ._strategies import CODES, DTYPE_NAMES, NAMES, Key, describe

FORMAT = "pynn-tune-wisdom"
VERSION = 1
_DTYPES = set(DTYPE_NAMES.values())


def machine_tag():
    """What choices are only valid on: {"cpu": model name, "blas": [library, version, kernel],
    "pynn": version}."""
    import scipy.linalg  # noqa: F401  (loads the kernels' BLAS, so threadpoolctl sees it)
    from threadpoolctl import threadpool_info

    libraries = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    # the kernels call scipy's BLAS; numpy's (when another) does not decide their speed
    scipys = [lib for lib in libraries if "scipy" in (lib.get("filepath") or "")]
    blas = sorted({(lib.get("internal_api"), lib.get("version"), lib.get("architecture"))
                   for lib in scipys or libraries}, key=str)
    return {"cpu": _cpu_model(), "blas": [list(entry) for entry in blas], "pynn": __version__}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save(path):
    """Write the process's choices to the wisdom file ``path`` (atomically); returns how many
    were written."""
    entries = []
    for key, choice in _planner.snapshot():
        entries.append({**describe(key), "strategy": NAMES[key.op][choice.strategy]})
    document = {"format": FORMAT, "version": VERSION, **machine_tag(), "choices": entries}
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    return len(entries)


def load(path):
    """Take the choices of the wisdom file ``path`` (they replace this process's choices of the
    same products); returns how many were taken, 0 when the file is another machine's (with a
    RuntimeWarning naming the path and what differs)."""
    fspath = os.fspath(path)
    try:
        with open(fspath, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"path: no wisdom file at {fspath!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"path: {fspath!r} is not a pynn wisdom file ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"path: {fspath!r} is not a pynn wisdom file (no format "
                         f"{FORMAT!r})")
    if document.get("version") != VERSION:
        raise ValueError(f"path: {fspath!r} is wisdom format version "
                         f"{document.get('version')!r}; this pynn reads {VERSION}")
    here = machine_tag()
    differs = [name for name in ("cpu", "blas", "pynn") if document.get(name) != here[name]]
    if differs:
        warnings.warn(
            f"wisdom file {fspath!r} was measured on another machine or library ("
            + "; ".join(f"{name}: {document.get(name)!r}, here {here[name]!r}"
                        for name in differs)
            + "): not loaded, products are decided here", RuntimeWarning, stacklevel=2)
        return 0
    entries = document.get("choices")
    if not isinstance(entries, list):
        raise ValueError(f"path: {fspath!r} has no list of choices")
    taken = [_entry(fspath, i, entry) for i, entry in enumerate(entries)]
    _planner._set_choices(taken)
    return len(taken)


def _entry(fspath, i, entry):
    """(Key, Choice) of choice ``i`` of the file, or ValueError naming it."""
    def bad(what):
        return ValueError(f"path: {fspath!r}, choice {i}: {what}")

    if not isinstance(entry, dict):
        raise bad("not an object")
    op = entry.get("op")
    if op not in CODES:
        raise bad(f"op must be 'forward' or 'backward', got {op!r}")
    sizes = [entry.get(name) for name in ("n", "k", "m", "threads")]
    if not all(type(v) is int and v >= 1 for v in sizes):
        raise bad("n, k, m and threads must be positive integers")
    if entry.get("dtype") not in _DTYPES:
        raise bad(f"dtype must be one of {sorted(_DTYPES)}, got {entry.get('dtype')!r}")
    flags = [entry.get("has_dW"), entry.get("has_dX")]
    if not all(type(v) is bool for v in flags) or (op == "forward" and any(flags)):
        raise bad("has_dW and has_dX must be booleans (false for a forward)")
    strategy = CODES[op].get(entry.get("strategy"))
    if strategy is None:
        raise bad(f"no {op} strategy named {entry.get('strategy')!r}")
    n, k, m, threads = sizes
    key = Key(op, n, k, m, entry["dtype"], threads, *flags)
    return key, _planner.Choice(strategy, "wisdom")

"""Backends: where the loops run. ``set_backend("numpy" | "cython")`` swaps them globally."""
from .base import ACTIVATIONS, Backend
from .numpy_ref import NumpyBackend

_BACKEND_NAMES = ("cython", "numpy")
_instances = {}
_current = "cython"


def _make(name):
    if name == "numpy":
        return NumpyBackend()
    from .cython import CythonBackend  # fails loudly when the kernels were not built

    return CythonBackend()


def backend_for(name=None):
    """The backend instance called ``name`` (the current one for None)."""
    if name is None:
        name = _current
    elif isinstance(name, Backend):
        return name
    if name not in _BACKEND_NAMES:
        raise ValueError(f"backend must be one of {_BACKEND_NAMES}, got {name!r}")
    if name not in _instances:
        _instances[name] = _make(name)
    return _instances[name]


def set_backend(name):
    """Make ``name`` ("cython", the default, or "numpy") the backend of new computations."""
    global _current
    backend_for(name)  # validate and build before switching
    _current = name


def get_backend():
    """The current backend instance."""
    return backend_for(None)


__all__ = ["ACTIVATIONS", "Backend", "NumpyBackend", "backend_for", "get_backend", "set_backend"]

"""Backends: where the loops run. ``set_backend("numpy" | "cython")`` swaps them globally."""
from .base import Backend
from .codes import ACTIVATIONS
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


def _builtin_name(backend):
    """The registered name of a built-in backend instance, else ValueError.

    Only the name is stored as the current backend, so an instance of any other class (a
    user's Backend subclass) would be silently replaced by the built-in of the same ``name``
    attribute: refuse it instead.
    """
    name = getattr(backend, "name", None)
    if name in _BACKEND_NAMES and type(backend) is type(backend_for(name)):
        return name
    raise ValueError(
        f"name must be a backend name {_BACKEND_NAMES} or one of their instances (as "
        f"get_backend returns), got an instance of {type(backend).__qualname__}"
    )


def set_backend(name):
    """Make ``name`` the backend of new computations.

    Parameters
    ----------
    name : str or Backend
        "cython" (the default) or "numpy", or what ``get_backend()`` returned, so that
        ``prev = get_backend(); ...; set_backend(prev)`` restores the previous backend.
    """
    global _current
    if isinstance(name, Backend):
        name = _builtin_name(name)
    elif not isinstance(name, str):
        raise TypeError(f"name must be a str or a Backend, got {type(name).__name__}")
    backend_for(name)  # validate and build before switching
    _current = name


def get_backend():
    """The current backend instance."""
    return backend_for(None)


__all__ = ["ACTIVATIONS", "Backend", "NumpyBackend", "backend_for", "get_backend", "set_backend"]

"""Which module classes a pynn file may name, and a model's architecture as plain JSON values
(``pynn.io.architecture``, ``build``, ``register``): the part of a file that says what to
build. A file is data: it picks a class from the table of registered ones and passes it plain
JSON values (``cls.from_config``), never code; an architecture is validated (known types,
bounded nesting, the shapes it implies) before anything is allocated.
"""
from ._archive import ModelFileError
from ..nn import activations as _act
from ..nn.batchnorm import BatchNorm
from ..nn.containers import ModuleList, Sequential
from ..nn.dense import Dense
from ..nn.dropout import Dropout
from ..nn.module import Module
from ..nn.normalization import LayerNorm, RMSNorm
from ..nn.residual import Residual
from ..nn.standardizer import Standardizer

# How deeply a file's architecture may nest containers (a hostile file's limit).
_MAX_DEPTH = 32

# The only classes a file may name.
_TYPES = {}


def register(cls):
    """Allow ``pynn.load`` to rebuild modules of class ``cls`` from their ``config()``.

    Built-in layers and containers are registered already. Use as a decorator on a custom
    Module whose ``__init__(**config())`` rebuilds it; saving a module of an unregistered
    class raises TypeError.
    """
    if not isinstance(cls, type) or not issubclass(cls, Module):
        raise TypeError(f"cls must be a pynn Module subclass, got {cls!r}")
    known = _TYPES.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"a module type named {cls.__name__!r} is registered already "
                         f"({known.__module__}.{known.__qualname__})")
    _TYPES[cls.__name__] = cls
    return cls


def _register_builtins():
    for cls in (Dense, BatchNorm, LayerNorm, RMSNorm, Dropout, Sequential, ModuleList, Residual,
                Standardizer):
        register(cls)
    for name in ("Identity", "Step", "Sigmoid", "Tanh", "ReLU", "Square", "LeakyReLU", "ELU",
                 "GELU", "SiLU", "Softplus", "Mish", "Softmax"):
        register(getattr(_act, name))


_register_builtins()


def _is_list_container(cls):
    # containers whose children are their constructor arguments
    return issubclass(cls, (Sequential, ModuleList, Residual))


def _child_names(cls, count):
    """The state_dict names of a list container's ``count`` children: "0", "1", ..., or the
    class's ``child_names`` (Residual's "block"), whose number a file must then match."""
    names = getattr(cls, "child_names", None)
    if names is None:
        return [str(i) for i in range(count)]
    if count != len(names):
        raise ModelFileError(f"architecture: {cls.__name__} takes {len(names)} layer(s), got "
                             f"{count}")
    return list(names)


# ---------------------------------------------------------------------------- architecture
def architecture(model):
    """The model's architecture as plain JSON-able values: ``{"type": ..., "config": ...}``
    for a module, ``{"type": "Sequential", "layers": [...]}`` for a list container."""
    cls = type(model)
    if _TYPES.get(cls.__name__) is not cls:
        raise TypeError(
            f"model: cannot save a module of type {cls.__name__}: register it with "
            f"pynn.io.register (known: {', '.join(sorted(_TYPES))})"
        )
    if _is_list_container(cls):
        return {"type": cls.__name__, "layers": [architecture(m) for m in model.layers]}
    return {"type": cls.__name__, "config": model.config()}


def _arch_type(arch, depth):
    if depth > _MAX_DEPTH:
        raise ModelFileError("architecture is nested too deeply")
    if not isinstance(arch, dict) or not isinstance(arch.get("type"), str):
        raise ModelFileError(f"architecture: expected {{'type': ...}}, got {str(arch)[:80]}")
    cls = _TYPES.get(arch["type"])
    if cls is None:
        raise ModelFileError(f"unknown layer type {arch['type']!r} "
                             f"(known: {', '.join(sorted(_TYPES))})")
    if _is_list_container(cls):
        if not isinstance(arch.get("layers"), list):
            raise ModelFileError(f"architecture: {arch['type']} needs a list of layers")
    elif not isinstance(arch.get("config", {}), dict):
        raise ModelFileError(f"architecture: config of {arch['type']} must be a dict")
    return cls


def _expected_shapes(arch, prefix="", depth=0):
    """{state_dict key: shape} implied by a header's architecture, validating it as we go;
    None when a module type cannot tell without being built (a registered custom module)."""
    cls = _arch_type(arch, depth)
    if _is_list_container(cls):
        out = {}
        for name, sub in zip(_child_names(cls, len(arch["layers"])), arch["layers"]):
            shapes = _expected_shapes(sub, f"{prefix}{name}.", depth + 1)
            if shapes is None:
                return None
            out.update(shapes)
        return out
    try:
        shapes = cls.state_shapes(arch.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"architecture: {arch['type']}: {exc}") from None
    if shapes is None:
        return None
    return {prefix + k: tuple(v) for k, v in shapes.items()}


def build(arch, depth=0):
    """A fresh model from an architecture description (as ``architecture`` returns)."""
    cls = _arch_type(arch, depth)
    if _is_list_container(cls):
        _child_names(cls, len(arch["layers"]))  # a Residual of one block, say
        children = [build(sub, depth + 1) for sub in arch["layers"]]
        return cls(children)
    try:
        return cls.from_config(dict(arch.get("config", {})))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"architecture: cannot build {arch['type']}: {exc}") from None

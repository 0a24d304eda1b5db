"""The module base class: parameters, buffers and child modules registered on assignment.

Shaped like ``torch.nn.Module``: ``self.weight = Parameter(...)`` registers a parameter,
``self.register_buffer("running_mean", a)`` a buffer, ``self.fc = Dense(...)`` a child. Every
walk over a model (``named_parameters``, ``state_dict``, ``train()``, ``zero_grad``, saving,
the optimizer) comes from this one mechanism, so any module can contain modules and nesting
works everywhere without special cases.

Two base classes hold the rest: ``StateDict`` (pynn/nn/_state_dict.py) its state as torch keeps
it, ``ModuleRun`` (pynn/nn/_module_run.py) its calls as a whole model (``train_step``,
``compiled_step``, ``infer``, ``predict``).
"""
import inspect

import numpy as np

from ..backend import backend_for
from ._module_run import ModuleRun
from ._module_run import _check_batch_size  # noqa: F401  (still importable from here)
from ._state_dict import StateDict
from .parameter import Parameter, ParameterArena, arenas_of


class Module(StateDict, ModuleRun):
    """Base of every layer and container: ``forward(X) -> Y``, ``backward(dY) -> dX``.

    ``backward(dY, input_grad=False)`` may skip computing dX (the first layer of a training
    step does not need it) and then returns None. Gradients accumulate into ``p.grad``.

    ``backend_name`` is None to follow ``pynn.set_backend``, or "numpy"/"cython" to pin this
    module (``set_backend`` pins a module and all its children).
    """

    #: bumped whenever any module registers, replaces or removes a parameter, buffer or child,
    #: so compiled plans can tell in one compare that no layer changed what it holds
    registry_version = 0
    #: bumped whenever any module's ``backend_name`` is assigned (plans re-check their backends)
    backend_version = 0

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        self.training = True
        self.backend_name = None

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() call "
                f"(call super().__init__() first in {type(self).__name__}.__init__)"
            )
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(a pynn.nn.Parameter or None is required)")
            Module.registry_version += 1
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                f"{name!r} (a pynn Module or None is required)")
            Module.registry_version += 1
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                "(a numpy.ndarray or None is required)")
            buffers[name] = value
        else:
            if name == "backend_name":
                Module.backend_version += 1
            object.__setattr__(self, name, value)

    def _forget(self, name):
        Module.registry_version += 1
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # Only called when normal lookup fails: registered entries live in the tables.
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        if any(name in t for t in (self._parameters, self._buffers, self._modules)):
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for an absent one) as ``name``."""
        _check_name(self, name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"param must be a pynn.nn.Parameter or None, got "
                            f"{type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, array, persistent=True):
        """Register ``array`` (an ndarray, or None) as non-trainable state ``name``.

        Persistent buffers (running statistics) are part of ``state_dict`` and saved files.
        """
        _check_name(self, name)
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"buffer {name!r} must be a numpy.ndarray or None, got "
                            f"{type(array).__name__}")
        self._forget(name)
        self._buffers[name] = array
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        """Register ``module`` (or None) as the child ``name``."""
        _check_name(self, name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"module must be a pynn Module or None, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ walking the tree
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for this module and every descendant, depth first ("" is self)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                           remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, table, prefix, recurse):
        seen = set()
        walk = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in walk:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter), e.g. ("0.weight", ...); a shared parameter appears once."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        """(dotted name, ndarray) of the buffers, e.g. ("1.running_mean", ...)."""
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode=True):
        """Training mode (batch statistics, dropout on) for self and every descendant."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter: frozen ones get no gradient and no update."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        """Zero every parameter's gradient (one memset per arena when the parameters are packed).

        ``set_to_none`` is accepted for torch compatibility: gradients are always arrays here.
        """
        # Which arenas hold exactly this module's parameters changes only when something is
        # packed or registered: remembered until then (a training loop calls this every step).
        key = (ParameterArena.generation, Module.registry_version)
        cache = self.__dict__.get("_zero_grad_plan")
        if cache is None or cache[0] != key:
            params = list(self.parameters())
            arenas = arenas_of(params)
            cache = (key, list(arenas.values()) if arenas else params)
            self.__dict__["_zero_grad_plan"] = cache  # a cache, not state: no registration
        for holder in cache[1]:
            holder.zero_grad()  # one memset per arena, or per parameter

    @property
    def arenas(self):
        """{dtype: ParameterArena} holding exactly this module's parameters.

        Always current: after an optimizer re-packed the parameters (param groups) this is the
        optimizer's arena. When no single arena per dtype holds exactly them (an optimizer over
        only some of them), they are packed here first.
        """
        params = list(self.parameters())
        if not params:
            return {}
        return arenas_of(params) or self.pack()

    def pack(self):
        """(Re)pack every parameter into one arena per dtype; values and gradients are kept."""
        by_dtype = {}
        for p in self.parameters():
            by_dtype.setdefault(p.dtype, []).append(p)
        return {dt: ParameterArena(ps) for dt, ps in by_dtype.items()}

    # ------------------------------------------------------------------ backends
    @property
    def backend(self):
        return backend_for(self.backend_name)

    def set_backend(self, name):
        """Pin this module and all its children to a backend ("numpy", "cython") or None."""
        if name is not None:
            backend_for(name)  # validate before changing anything
        for m in self.modules():
            m.backend_name = name
        return self

    # ------------------------------------------------------------------ calling
    def __call__(self, X):
        return self.forward(X)

    def forward(self, X):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, dY, input_grad=True):
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def __getstate__(self):
        # a lock (infer's) can be neither pickled nor deep-copied; each copy makes its own when
        # needed
        state = dict(self.__dict__)
        state.pop("_infer_lock", None)
        state.pop("_zero_grad_plan", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # ------------------------------------------------------------------ description
    def config(self):
        """Constructor arguments as plain values (for summaries and saved architectures)."""
        return {}

    def saved_module(self):
        """The module ``pynn.save`` and checkpoints write for this one: itself, or the model a
        wrapper trains (``pynn.distributed.DataParallel``)."""
        return self

    @classmethod
    def from_config(cls, config):
        """A new module from ``config()``'s values (how ``pynn.load`` rebuilds it)."""
        return cls(**config)

    @classmethod
    def state_shapes(cls, config):
        """Shapes of the parameters and buffers a module built from ``config`` will hold,
        without building it (so a hostile file is rejected before anything large is
        allocated); None when unknown (the module is then built to find out)."""
        return None

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def __repr__(self):
        children = [(n, m) for n, m in self._modules.items() if m is not None]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        inner = "\n".join(
            "  (" + n + "): " + repr(m).replace("\n", "\n  ") for n, m in children
        )
        return f"{type(self).__name__}(\n{inner}\n)"

    def _check_cached(self, what):
        if getattr(self, what, None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")


def _check_name(module, name):
    if "_parameters" not in module.__dict__:
        raise AttributeError("cannot register before Module.__init__() call")
    if not isinstance(name, str) or not name or "." in name:
        raise KeyError(f"name must be a non-empty string without '.', got {name!r}")


def accepts_input_grad(module):
    """Whether ``module.backward`` takes ``input_grad`` (a custom module may not)."""
    cls = type(module)
    known = _INPUT_GRAD.get(cls)
    if known is None:
        try:
            params = inspect.signature(cls.backward).parameters
            known = "input_grad" in params or any(
                p.kind is p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            known = False
        _INPUT_GRAD[cls] = known
    return known


_INPUT_GRAD = {}

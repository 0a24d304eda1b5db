"""Containers: ``Sequential`` (layers in order, with fusion as its execution detail) and
``ModuleList`` (modules held for a custom module's own forward).

Which compiled program runs a Sequential's call (its plans, its compiled training step, its
inference program) is its base class ``SequentialPrograms``'s (pynn/nn/_sequential_programs.py).
"""
import numpy as np

from .activations import (ELU, Activation, LeakyReLU, ReLU, fusable, is_plain_activation,
                          needs_preactivation)
from .batchnorm import BatchNorm
from .dense import Dense
from . import plan as _plan
from ._sequential_programs import SequentialPrograms
from ._sequential_programs import _MAX_PLANS  # noqa: F401  (still importable from here)
from .module import Module, accepts_input_grad

# Activations after which a Dense with init=None gets He initialization (the ReLU family).
_RELU_FAMILY = (ReLU, LeakyReLU, ELU)

# Kinds of a step in a Sequential's execution plan.
_PLAIN, _DENSE_ACT, _BN_ACT = range(3)


def _check_modules(modules):
    for i, m in enumerate(modules):
        if not isinstance(m, Module):
            raise TypeError(f"layers[{i}] must be a pynn Module, got {type(m).__name__}")


def _layer_list(layers):
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
        return list(layers[0])
    return list(layers)


class Sequential(SequentialPrograms, Module):
    """Modules applied in order; backward runs them in reverse.

    Fusion is this container's execution detail and never changes a layer: a Dense or a
    BatchNorm directly followed by an activation whose derivative can be taken from its output
    (identity, step, sigmoid, tanh, ReLU, leaky ReLU with slope >= 0, ELU with alpha > 0) runs
    as one kernel call with the activation in its epilogue, and so does a Dense followed by
    GELU, SiLU, Softplus or Mish (the Dense then keeps its pre-activation for their
    derivative); the forward's intermediate values are kept here, not on the layers. The
    layers themselves still compute exactly their own function when called alone or from
    another container.

    The parameters are packed into one contiguous arena per dtype when the container is built.

    Parameters
    ----------
    *layers : Module (or one list of them)
    backend : "numpy", "cython" or None (follow ``pynn.set_backend``)
    """

    #: plans and inference programs flatten a Sequential nested in another (pynn.nn.plan)
    _plan_role = "sequence"

    def __init__(self, *layers, backend=None):
        super().__init__()
        layers = _layer_list(layers)
        _check_modules(layers)
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)
        dtypes = {m.dtype for m in self.modules() if m is not self and hasattr(m, "dtype")}
        if len(dtypes) > 1:
            raise TypeError(f"layers must share one dtype, got {sorted(d.name for d in dtypes)}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        if backend is not None:
            self.set_backend(backend)
        self._plan_key = None
        self._plan = None
        self._ctx = None
        # Execution plans by input (shape, dtype), see pynn.nn.plan. _compile=False runs eagerly
        # (the tests compare the two paths).
        self._compiled = {}
        self._uncompilable = None  # (step list, CSR input) a plan could not be built for
        self._compile = True
        self._inference = None  # the inference program of predict (pynn.nn.inference)
        self._default_inits()
        self.pack()

    # -- construction -------------------------------------------------------------------
    @property
    def layers(self):
        """The children, in order (a new list)."""
        return [m for m in self._modules.values() if m is not None]

    def _default_inits(self):
        """init=None means: He before the ReLU family, Xavier otherwise (the next activation,
        looked up past a BatchNorm or Dropout in between). Only a Dense whose weights are still its
        provisional construction-time draw is re-drawn, and only once."""
        layers = self.layers
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense) or not layer._auto_init:
                continue
            layer._auto_init = False
            following = next(
                (l for l in layers[i + 1:] if isinstance(l, (Activation, Dense))), None
            )
            if isinstance(following, _RELU_FAMILY):
                layer.reset_parameters("he_normal")

    def _steps(self):
        """The execution plan: [(kind, layer, activation layer or None)], rebuilt only when
        the children change."""
        layers = self.layers
        key = tuple(map(id, layers))
        if key == self._plan_key:
            return self._plan
        plan = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            kind = _DENSE_ACT if isinstance(layer, Dense) else (
                _BN_ACT if isinstance(layer, BatchNorm) else _PLAIN)
            if kind != _PLAIN and is_plain_activation(nxt):
                plan.append((kind, layer, nxt))
                i += 2
            else:
                plan.append((_PLAIN, layer, None))
                i += 1
        self._plan, self._plan_key = plan, key
        return plan

    def __getstate__(self):
        # plans and compiled steps are caches of raw buffers and C programs: a copy or an
        # unpickled model builds its own on first use
        state = super().__getstate__()
        state["_compiled"] = {}
        state["_uncompilable"] = None
        state["_recent_train_steps"] = ()
        state["_inference"] = None
        return state

    # -- running --------------------------------------------------------------------------
    def forward(self, X):
        plan = self._compiled_for(X)
        if plan is not None:
            out = plan.forward(X)
            self._ctx = plan
            return out
        ctx = []
        for kind, layer, act in self._steps():
            if kind != _PLAIN:
                a, p = fusable(act, "dense" if kind == _DENSE_ACT else "batchnorm")
                if a is not None:
                    if kind == _DENSE_ACT:
                        # (a Dense's context keeps its pre-activation where mean and invstd
                        # go for a BatchNorm)
                        Z = None
                        if needs_preactivation(act):
                            Y, Z = layer._apply(X, a, p, keep_preactivation=True)
                        else:
                            Y = layer._apply(X, a, p)
                        ctx.append((X, Y, Z, None, a, p))
                    elif layer.training:
                        Y, mean, invstd = layer._train_apply(X, a, p)
                        ctx.append((X, Y, mean, invstd, a, p))
                    else:
                        Y = layer._eval_apply(X, a, p)
                        ctx.append((X, Y, None, None, a, p))
                    X = Y
                    continue
                # the activation's derivative needs its input: run the two layers unfused
                X = act.forward(layer.forward(X))
                ctx.append(None)
                continue
            X = layer.forward(X)
            ctx.append(None)
        self._ctx = ctx
        return X

    def backward(self, dY, input_grad=True):
        """Backward through every step in reverse; returns dX, or None with
        ``input_grad=False`` (the training loop's choice: the first layer then skips its dX)."""
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("Sequential.backward called before forward")
        if isinstance(ctx, _plan.Plan):
            return ctx.backward(ctx.check_grad(dY), input_grad)
        steps = self._steps()
        if len(steps) != len(ctx):
            raise RuntimeError("Sequential changed between forward and backward")
        for k in range(len(steps) - 1, -1, -1):
            need = input_grad or k > 0
            kind, layer, act = steps[k]
            c = ctx[k]
            if c is not None:
                X, Y, mean, invstd, a, p = c
                if kind == _DENSE_ACT:
                    dY = layer._grad(dY, X, Y, a, p, input_grad=need, Z=mean)
                else:
                    dY = layer._grad(dY, X, Y, mean, invstd, a, p, input_grad=need)
            elif act is not None:
                dY = _backward(layer, act.backward(dY), need)
            else:
                dY = _backward(layer, dY, need)
        return dY

    def infer(self, X):
        """Eval-mode forward that writes nothing on the model: safe from several threads."""
        for kind, layer, act in self._steps():
            if kind != _PLAIN:
                a, p = fusable(act)
                if kind == _DENSE_ACT:
                    X = layer._apply(X, a, p)
                else:
                    X = layer._eval_apply(X, a, p)
                if a is None:
                    X = act.infer(X)
            else:
                X = layer.infer(X)
        return X

    # -- description ------------------------------------------------------------------------
    def fused_steps(self):
        """[(index, "Dense+relu"), ...]: the layer pairs that run as one kernel call."""
        out, i = [], 0
        for kind, layer, act in self._steps():
            if kind != _PLAIN and fusable(
                    act, "dense" if kind == _DENSE_ACT else "batchnorm")[0] is not None:
                out.append((i, f"{type(layer).__name__}+{act.activation}"))
            i += 1 if act is None else 2
        return out

    def summary(self):
        """A table of layers and parameter counts (also returned as a string)."""
        rows = [("#", "layer", "parameters")]
        total = 0
        for name, layer in self._modules.items():
            n = sum(p.size for p in layer.parameters())
            total += n
            rows.append((name, repr(layer).replace("\n", " "), f"{n:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
        rule = "-" * len(lines[0])
        fused = ", ".join(f"{name} at {i}" for i, name in self.fused_steps()) or "none"
        text = "\n".join(
            [lines[0], rule, *lines[1:], rule,
             f"total parameters: {total:,} ({self.dtype.name}); fused: {fused}"]
        )
        print(text)
        return text

    # -- list-like access ---------------------------------------------------------------------
    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        layers = self.layers
        if isinstance(i, slice):
            return Sequential(*layers[i])
        return layers[i]

    def __iter__(self):
        return iter(self.layers)

    def append(self, module):
        """Add ``module`` at the end (registered as the next index)."""
        _check_modules([module])
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ... (torch's ``nn.ModuleList``).

    Holds modules for a custom module's own ``forward``/``backward``; it has no forward
    itself. Its modules' parameters are the container's, so optimizers, ``state_dict`` and
    saving see them.
    """

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module):
        _check_modules([module])
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        modules = list(modules)
        _check_modules(modules)
        for m in modules:
            self.add_module(str(len(self._modules)), m)
        return self

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        items = list(self._modules.values())
        if isinstance(i, slice):
            return ModuleList(items[i])
        return items[i]

    def __iter__(self):
        return iter(list(self._modules.values()))

    @property
    def layers(self):
        return list(self._modules.values())


def _backward(layer, dY, input_grad):
    if accepts_input_grad(layer):
        return layer.backward(dY, input_grad=input_grad)
    dX = layer.backward(dY)  # a custom module with backward(dY): it computes dX anyway
    return dX if input_grad else None

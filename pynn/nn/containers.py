"""Containers: ``Sequential`` (layers in order, with fusion as its execution detail) and
``ModuleList`` (modules held for a custom module's own forward)."""
import numpy as np

from ..backend._sparse import is_sparse
from .activations import (ELU, Activation, LeakyReLU, ReLU, fusable, is_plain_activation,
                          needs_preactivation)
from .batchnorm import BatchNorm
from .dense import Dense
from . import plan as _plan
from .inference import InferencePlan
from .module import Module, _check_batch_size, accepts_input_grad
from .train_step import program_for

# Activations after which a Dense with init=None gets He initialization (the ReLU family).
_RELU_FAMILY = (ReLU, LeakyReLU, ELU)

# Kinds of a step in a Sequential's execution plan.
_PLAIN, _DENSE_ACT, _BN_ACT = range(3)

# Plans kept per container (a training batch size, the last partial batch, a validation size).
_MAX_PLANS = 4


def _check_modules(modules):
    for i, m in enumerate(modules):
        if not isinstance(m, Module):
            raise TypeError(f"layers[{i}] must be a pynn Module, got {type(m).__name__}")


def _layer_list(layers):
    if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
        return list(layers[0])
    return list(layers)


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Fusion is this container's execution detail and never changes a layer: a Dense or a
    BatchNorm directly followed by an activation whose derivative can be taken from its output
    (identity, step, sigmoid, tanh, ReLU, leaky ReLU with slope >= 0, ELU with alpha > 0) runs
    as one kernel call with the activation in its epilogue, and so does a Dense followed by
    GELU, SiLU, Softplus or Mish (the Dense then keeps its pre-activation for their
    derivative); the forward's intermediate values are kept here, not on the layers. The layers themselves still compute exactly their
    own function when called alone or from another container.

    The parameters are packed into one contiguous arena per dtype when the container is built.

    Parameters
    ----------
    *layers : Module (or one list of them)
    backend : "numpy", "cython" or None (follow ``pynn.set_backend``)
    """

    #: (loss, optimizer, plan, compiled step) of the last compiled_step: a training loop calls
    #: with the same three every step, so the next call checks just these
    _last_train_step = None
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
        state["_last_train_step"] = None
        state["_inference"] = None
        return state

    # -- running --------------------------------------------------------------------------
    def _compiled_for(self, X, sparse=False):
        """The plan for input ``X`` (built on first sight of its shape), or None to run eagerly.
        ``sparse``: a CSR ``X`` gets one too (the compiled training step's, which alone runs
        a plan on one)."""
        csr = sparse and is_sparse(X) and X.format == "csr"
        if (type(X) is not np.ndarray and not csr) or not self._compile:
            return None
        steps = self._steps()
        key = (X.shape, X.dtype, csr)
        plan = self._compiled.get(key)
        if plan is not None and plan.structure is steps and plan.fits(X):
            return plan
        failed = self._uncompilable
        if failed is not None and failed[0] is steps and failed[1] == csr:
            return None
        plan = _plan.build(self, X)
        if plan is None:
            self._uncompilable = (steps, csr)
            return None
        if len(self._compiled) >= _MAX_PLANS:
            self._compiled.clear()  # many shapes in turn: keep memory bounded
        self._compiled[key] = plan
        return plan if plan.fits(X) else None

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

    def train_step(self, X, y, loss, optimizer):
        """One training step, the loss value: ``Module.train_step``'s four lines, compiled
        into one call without the GIL when every layer, the loss and the optimizer are pynn's
        (``compiled_step``), bit-identical to them; else those lines run as written."""
        program = self.compiled_step(X, loss, optimizer)
        if program is not None:
            value = program.run(X, y)
            if value is not None:
                return value
        return super().train_step(X, y, loss, optimizer)

    def compiled_step(self, X, loss, optimizer, *, zero_grad="optimizer"):
        """The compiled step (pynn.nn.train_step) of this container's plan for batches like
        ``X`` with this loss and optimizer, or None (see ``Module.compiled_step``): built once,
        then the last call's answer is checked first, as a training loop calls with the same
        loss, optimizer and batch shape step after step."""
        if zero_grad not in ("optimizer", "model"):
            raise ValueError(f"zero_grad must be 'optimizer' or 'model', got {zero_grad!r}")
        if not self._compile:
            return None
        claim = getattr(optimizer, "claim_parameters", None)
        if claim is not None:
            # An optimizer re-packs its parameters when another packed them since its last
            # step: let it happen now, before the plan checks where the parameters live.
            claim()
        last = self._last_train_step
        if (last is not None and last[0] is loss and last[1] is optimizer
                and last[2].fits(X) and last[3].fits(loss, optimizer)):
            program = last[3]
        else:
            plan = self._compiled_for(X, sparse=True)
            program = None if plan is None else program_for(plan, loss, optimizer)
            self._last_train_step = None if program is None else (loss, optimizer, plan, program)
        if zero_grad == "model" and program is not None and program.zero_first:
            return None  # its zero_grad is the optimizer's, not the model's
        return program

    def predict(self, X, batch_size=1024):
        """Eval-mode outputs over batches of ``batch_size`` (see ``Module.predict``), through
        the container's inference program (pynn.nn.inference: built on first use and kept
        while nothing it recorded is replaced; it reads the weights and statistics in place,
        so it is never stale): one call into C for the whole forward, BatchNorm folded into
        the Dense before it for many rows, activations fused, the results written straight
        into the output. A sparse X runs in the program too (its rows as CSR, through the
        first Dense's sparse core) when the first layer is a Dense; else (or no rows)
        ``Module.predict``'s batches."""
        if is_sparse(X) and X.ndim == 2 and X.format != "csr":
            X = X.tocsr()  # once, not per batch
        rows = (isinstance(X, np.ndarray) or is_sparse(X)) and X.ndim == 2 and X.shape[0] > 0
        program = self._inference_program() if rows else None
        if program is None or not program.fits(X):
            return super().predict(X, batch_size)
        if type(batch_size) is not int or batch_size < 1:
            _check_batch_size(batch_size)
        return program.run(X, batch_size)

    def _inference_program(self):
        """The inference program (kept on the container), or None (``predict`` then runs the
        layers' own ``infer``)."""
        if not self._compile:
            return None
        program = self.__dict__.get("_inference")
        if program is None or not program.holds():
            program = self._inference = InferencePlan.build(self)
        return program

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

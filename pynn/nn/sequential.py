"""Sequential: a stack of layers run in order, with its parameters packed into one arena."""
import numpy as np

from ..backend.base import activation_code, derivative_from_output
from .activations import ELU, Activation, LeakyReLU, ReLU
from .dense import Dense
from .module import Module
from .parameter import ParameterArena, arenas_of

# Activations after which a Dense with init=None gets He initialization (the ReLU family).
_RELU_FAMILY = (ReLU, LeakyReLU, ELU)


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    A Dense directly followed by an activation whose derivative can be taken from its output
    (identity, step, sigmoid, tanh, ReLU, leaky ReLU with slope >= 0, ELU with alpha > 0) runs
    as one fused kernel call; the activation layer then passes values through untouched.
    All parameters are packed into one contiguous arena per dtype (``self.arenas``).

    Parameters
    ----------
    *layers : Module
    backend : "numpy", "cython" or None (follow ``pynn.set_backend``)
    """

    def __init__(self, *layers, backend=None):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers[{i}] must be a pynn Module, got {type(layer).__name__}")
        self.layers = list(layers)
        dtypes = {layer.dtype for layer in self.layers if hasattr(layer, "dtype")}
        if len(dtypes) > 1:
            raise TypeError(f"layers must share one dtype, got {sorted(d.name for d in dtypes)}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        if backend is not None:
            self.set_backend(backend)
        self._plan = self._fusion_plan()
        self._default_inits()
        self.arenas = self.pack()

    # -- construction -------------------------------------------------------------------
    def _fusion_plan(self):
        """Steps of forward: (layer, fused activation layer or None)."""
        plan = []
        i = 0
        while i < len(self.layers):
            layer = self.layers[i]
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if isinstance(layer, Dense) and isinstance(nxt, Activation):
                kind, param = activation_code(nxt.activation, nxt.param)
                if derivative_from_output(kind, param):
                    layer.fuse(nxt.activation, nxt.param)
                    plan.append((layer, nxt))
                    i += 2
                    continue
            if isinstance(layer, Dense):
                layer.fuse(None)
            plan.append((layer, None))
            i += 1
        return plan

    def _default_inits(self):
        """init=None means: He before the ReLU family, Xavier otherwise (the next activation,
        looked up past a BatchNorm or Dropout in between). Only a Dense whose weights are still its
        provisional construction-time draw is re-drawn, and only once."""
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Dense) or not layer._auto_init:
                continue
            layer._auto_init = False
            following = next(
                (l for l in self.layers[i + 1:] if isinstance(l, (Activation, Dense))), None
            )
            if isinstance(following, _RELU_FAMILY):
                layer.reset_parameters("he_normal")

    def pack(self):
        """(Re)pack every parameter into one arena per dtype; values and gradients are kept."""
        by_dtype = {}
        for p in self.parameters():
            by_dtype.setdefault(p.dtype, []).append(p)
        return {dt: ParameterArena(ps) for dt, ps in by_dtype.items()}

    def set_backend(self, name):
        """Pin this model (all its layers) to a backend ("numpy", "cython") or None."""
        self.backend_name = name
        for layer in self.layers:
            if isinstance(layer, Sequential):
                layer.set_backend(name)
            else:
                layer.backend_name = name
        return self

    # -- Module API ---------------------------------------------------------------------
    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self):
        """[(name, Parameter)] with names like "0.weight" (layer index, attribute)."""
        out = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                out += [(f"{i}.{n}", p) for n, p in layer.named_parameters()]
            else:
                out += [(f"{i}.{p.name}", p) for p in layer.parameters()]
        return out

    def zero_grad(self):
        if not all(a.owns_all() for a in self.arenas.values()):
            # An optimizer re-packed the parameters (param groups): adopt its arenas when they
            # hold exactly this model's parameters, so this stays one memset per dtype.
            self.arenas = arenas_of(self.parameters()) or self.arenas
        if all(a.owns_all() for a in self.arenas.values()):
            for arena in self.arenas.values():
                arena.zero_grad()  # one memset instead of one per parameter
        else:
            super().zero_grad()

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def forward(self, X):
        for layer, fused in self._plan:
            X = layer.forward(X)
            if fused is not None:
                # the activation ran in the Dense epilogue; keep the layer's cache coherent
                fused._X = None
                fused._Y = X
        return X

    def backward(self, dY):
        for k in range(len(self._plan) - 1, -1, -1):
            layer, _ = self._plan[k]
            if k == 0 and isinstance(layer, Dense):
                # The input needs no gradient: skip the dX GEMM of the first layer.
                layer.backward(dY, need_dX=False)
                return None
            dY = layer.backward(dY)
        return dY

    def predict(self, X, batch_size=1024):
        """Forward in eval mode over batches of ``batch_size``; restores the previous mode."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        was_training = self.training
        self.eval()
        try:
            if X.shape[0] == 0:
                return self.forward(X)
            outs = [self.forward(X[i:i + batch_size]).copy()
                    for i in range(0, X.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(outs, axis=0)

    def summary(self):
        """A table of layers, output widths and parameter counts (also returned as a string)."""
        rows = [("#", "layer", "parameters")]
        total = 0
        for i, layer in enumerate(self.layers):
            n = sum(p.size for p in layer.parameters())
            total += n
            rows.append((str(i), repr(layer), f"{n:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
        rule = "-" * len(lines[0])
        fused = sum(1 for _, f in self._plan if f is not None)
        text = "\n".join(
            [lines[0], rule, *lines[1:], rule,
             f"total parameters: {total:,} ({self.dtype.name}); fused Dense+activation: {fused}"]
        )
        print(text)
        return text

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

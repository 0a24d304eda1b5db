"""The residual connection: ``x + block(x)`` (He et al. 2016; the blocks of ResNet-MLPs,
MLP-Mixer and every transformer). torch has no such module; see ``Residual`` for its key
names."""
import numpy as np

from ._layer_checks import check_input
from .containers import Sequential, _backward, _check_modules, _layer_list
from .module import Module


class Residual(Module):
    """``Y = X + block(X)``; the backward sums both paths, ``dX = dY + block.backward(dY)``.

    Parameters
    ----------
    *layers : Module (or one list of them)
        The block: one module, or several, which are made a ``Sequential`` (so
        ``Residual(LayerNorm(256), Dense(256, 512), GELU(), Dense(512, 256))`` is the block of
        a ResNet-MLP). It must map its input to an output of the same shape.

    Its child is named ``block``: the state_dict keys of ``Residual(Dense(4, 4))`` are
    ``block.weight`` and ``block.bias``, and inside a Sequential ``"2.block.0.weight"`` and so
    on; a torch module written as ``self.block = ...`` with ``forward = x + self.block(x)``
    has the same keys. Residuals nest in Sequential (and in each other), and are saved, loaded
    and summarized like any container.

    Shape
    -----
    - Input: (N, F)
    - Output: (N, F)
    """

    #: the name of each constructor argument's child, for a saved architecture's keys
    #: (pynn.io): the one block
    child_names = ("block",)

    def __init__(self, *layers):
        super().__init__()
        layers = _layer_list(layers)
        if not layers:
            raise TypeError("Residual needs a block: one module, or several for a Sequential")
        _check_modules(layers)
        self.block = layers[0] if len(layers) == 1 else Sequential(layers)
        dtypes = {m.dtype for m in self.block.modules() if hasattr(m, "dtype")}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
        self._X_shape = None

    @property
    def layers(self):
        """The children, in order: [block]."""
        return [self.block]

    def _sum(self, X, out):
        if not isinstance(out, np.ndarray) or out.shape != X.shape:
            raise ValueError(f"Residual: the block maps an input of shape {X.shape} to "
                             f"{getattr(out, 'shape', type(out).__name__)}; x + block(x) needs "
                             "the same shape")
        return X + out

    def forward(self, X):
        X = check_input(self, X)
        self._X_shape = X.shape
        return self._sum(X, self.block.forward(X))

    def infer(self, X):
        X = check_input(self, X)
        return self._sum(X, self.block.infer(X))

    def backward(self, dY, input_grad=True):
        """The block's gradients accumulate; dX = dY + the block's dX (None with
        ``input_grad=False``, which the block's backward is then asked too)."""
        self._check_cached("_X_shape")
        dY = check_input(self, dY, "dY", shape=self._X_shape)
        dX = _backward(self.block, dY, input_grad)
        return dY + dX if input_grad else None

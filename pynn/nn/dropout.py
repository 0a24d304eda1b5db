"""Inverted dropout with a counter-based mask."""
from .._checks import check_int, check_real
from .._random import draw_seed
from ._layer_checks import check_input
from .module import Module


class Dropout(Module):
    """Zero each element with probability ``p`` in training, scale the rest by ``1 / (1 - p)``.

    The mask comes from a counter-based generator keyed by (seed, call number, element index):
    the same for any thread count, reproducible from the seed, reused by backward.
    Identity in eval mode. Srivastava et al., JMLR 2014.

    Parameters
    ----------
    p : float in [0, 1)
    seed : int, optional
        None draws one: from ``pynn.manual_seed``'s stream when set, else from the OS.

    Shape
    -----
    - Input: any shape
    - Output: same shape
    """

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        self.p = check_real("p", p, 0.0, 1.0, high_open=True,
                            message="p must be in [0, 1), got {value}")
        if seed is None:
            seed = draw_seed()
        self.seed = check_int("seed", seed, 0)
        self.step = 0  # forward calls in training mode so far: each gets a fresh mask
        self._mask = None
        self._like = None  # the forward input's (shape, dtype): what backward checks dY against

    def forward(self, X):
        X = check_input(self, X)
        self._like = (X.shape, X.dtype)
        if not self.training or self.p == 0.0:
            self._mask = None
            return X
        Y, self._mask = self.backend.dropout_forward(X, self.p, self.seed, self.step)
        self.step += 1
        return Y

    def backward(self, dY, input_grad=True):
        self._check_cached("_like")
        if not input_grad:
            return None
        # checked in every mode: the identity must not pass any object on as a gradient
        shape, dtype = self._like
        dY = check_input(self, dY, "dY", dtype=dtype, shape=shape)
        if self._mask is None:
            return dY  # eval mode / p == 0: the identity
        return self.backend.dropout_backward(dY, self._mask, self.p)

    def infer(self, X):
        return check_input(self, X)  # the identity in eval mode

    def config(self):
        return {"p": self.p, "seed": self.seed}

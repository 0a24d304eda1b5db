"""How a module is run as a model: ``train_step`` (the eager training step, the PyTorch-style
loop's four lines), ``compiled_step`` (None here), ``infer`` (an eval-mode forward that writes
nothing on the module) and ``predict`` (``infer`` over batches, any thread). ``Module``
(pynn/nn/module.py) inherits it and holds what every module is: its parameters, buffers and
children registered and walked, its modes, arenas and backend, and the layer contract
(``forward``/``backward``) these calls run through. ``Sequential`` overrides all four:
``infer`` with its fused steps, the others with its compiled programs
(pynn/nn/_sequential_programs.py). This part is what a training loop and a user ask of a whole
model, that one what every layer is built from, and each changes for its own reasons."""
import threading

import numpy as np

from ..backend._sparse import is_sparse
from .eager_step import eager_step


class ModuleRun:
    """``Module``'s calls on a whole model (see the module doc)."""

    def train_step(self, X, y, loss, optimizer):
        """One training step, returning the loss value: the PyTorch-style loop's four lines
        (``optimizer.zero_grad()``; the loss of ``forward(X)`` against ``y``; ``backward`` with
        no input gradient; ``optimizer.step()``). A module with a ``compiled_step`` (a
        ``Sequential`` of pynn's layers) runs them as one compiled call with the same results;
        these lines are the eager step every path falls back to."""
        value, _ = eager_step(self, X, optimizer, lambda out: loss.forward(out, y), loss.backward)
        return value

    def compiled_step(self, X, loss, optimizer, *, zero_grad="optimizer"):
        """A compiled program for one training step on batches like ``X`` with this loss and
        optimizer: ``program.run(X, y)`` does ``train_step``'s work in one call and returns the
        loss value, or None when that batch needs the eager lines. None here: only a module
        that can compile itself (``Sequential``) has one.

        ``zero_grad``: who zeroes the gradients in the eager lines the program stands for:
        "optimizer" (``train_step``'s lines) or "model" (a loop calling ``model.zero_grad()``,
        as ``Trainer`` does: only a program that zeroes just what that zeroes is returned)."""
        return None

    def infer(self, X):
        """Eval-mode forward that changes nothing on the module (safe from several threads).

        Built-in layers and containers read their parameters and running statistics and write
        nothing. A custom module without its own ``infer`` runs ``forward`` in eval mode under a
        per-module lock, and its modes are restored afterwards.
        """
        lock = self.__dict__.get("_infer_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_infer_lock", threading.Lock())
        with lock:
            modes = [(m, m.training) for m in self.modules()]
            self.eval()
            try:
                return self.forward(X)
            finally:
                for m, mode in modes:
                    m.training = mode

    def predict(self, X, batch_size=1024):
        """Eval-mode outputs over batches of ``batch_size``. Writes nothing on the model (the
        model's mode, caches and running statistics are untouched), so several threads may
        predict with one model at once, even while it is in training mode."""
        _check_batch_size(batch_size)
        if not isinstance(X, np.ndarray) and not is_sparse(X):
            raise TypeError(f"X must be a numpy.ndarray or a SciPy sparse matrix, got "
                            f"{type(X).__name__}")
        if is_sparse(X) and X.format != "csr":
            X = X.tocsr()  # once, not per batch: the rows are sliced below
        if X.ndim < 1 or X.shape[0] <= batch_size:
            return self.infer(X)
        outs = [self.infer(X[i:i + batch_size]) for i in range(0, X.shape[0], batch_size)]
        return np.concatenate(outs, axis=0)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")

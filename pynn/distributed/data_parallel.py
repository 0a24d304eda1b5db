"""``DataParallel``: one replica of a model per MPI rank, gradients summed by an allreduce (the
model of Horovod and of torch's DistributedDataParallel).

Every rank holds the same parameters (rank 0's, broadcast when wrapping) and runs the same
optimizer on the same gradients, so the replicas stay bit-identical without ever sending a
parameter again. A step on the global batch: each rank runs its rows' forward and backward
with the loss gradient of the *global* mean (its rows' share of it), one in-place allreduce of
the gradient arena adds the ranks' parts up, and every rank applies the same update.
"""
import math

import numpy as np

from ..nn.batchnorm import BatchNorm
from ..nn.eager_step import eager_step
from ..nn.module import Module
from ..nn.parameter import ParameterArena
from ._world import world as _the_world


class DataParallel(Module):
    """Train ``module`` data-parallel over the ranks of the MPI job this process is part of.

    Parameters
    ----------
    module : pynn Module
        The model. Wrapping broadcasts rank 0's parameters and buffers to every rank.
    sync_batchnorm : bool, default False
        False: each BatchNorm normalizes with its own rank's batch statistics (torch's DDP);
        its running statistics are rank 0's (``sync_buffers``). True: the batch statistics
        and their gradients are reduced over the ranks (torch's SyncBatchNorm), so N ranks of
        B/N rows train exactly like one process of B rows (those layers then run eagerly).

    Wrapping also sets the default thread count to this rank's share of the node's cores (the
    user's ``set_num_threads`` / OMP_NUM_THREADS win) and makes an uncaught exception on any
    rank end the whole job (MPI_Abort) instead of leaving the others waiting.

    ``forward``, ``predict``, ``state_dict``, ``load_state_dict`` and ``pynn.save`` are the
    wrapped model's. ``backward`` and ``train_step`` are collective: every rank calls them.
    Outside an MPI launcher the world has one rank and all of this costs nothing.

    Examples
    --------
    ``mpirun -n 4 python train.py`` with, in train.py::

        model = DataParallel(nn.Sequential(...))
        Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters())).fit(X, y, ...)
    """

    def __init__(self, module, sync_batchnorm=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module must be a pynn Module, got {type(module).__name__}")
        if isinstance(module, DataParallel):
            raise TypeError("module is a DataParallel already")
        self.module = module
        self.world = w = _the_world()
        self.sync_batchnorm = bool(sync_batchnorm)
        self.__dict__["_grads"] = (None, ())
        w.share_cores()
        w.abort_on_error()
        for layer in module.modules():
            if type(layer) is BatchNorm:
                layer.sync_statistics(w if self.sync_batchnorm and w.size > 1 else None)
        self.broadcast()

    # -- what the ranks share ---------------------------------------------------------------
    @property
    def rank(self):
        return self.world.rank

    @property
    def world_size(self):
        return self.world.size

    def broadcast(self):
        """Rank 0's parameters and buffers into every rank's (collective)."""
        for arena in self.module.arenas.values():
            self.world.broadcast_(arena.data)
        self.sync_buffers()

    def sync_buffers(self):
        """Rank 0's buffers (BatchNorm's running statistics and counters) into every rank's
        (collective): what torch's DDP does before each forward. ``Trainer`` calls it before
        validation and at the end of ``fit``; the running statistics are then exactly those
        rank 0 computed from its own rows."""
        for _, buf in self.module.named_buffers():
            if buf is not None and buf.flags.c_contiguous:
                self.world.broadcast_(buf)

    def _gradient_buffers(self):
        generation, buffers = self.__dict__["_grads"]
        if generation != ParameterArena.generation:
            buffers = tuple(arena.grad for arena in self.module.arenas.values())
            self.__dict__["_grads"] = (ParameterArena.generation, buffers)
        return buffers

    def sync_gradients(self, share=None):
        """Sum the ranks' gradients in place, each first multiplied by ``share`` (this rank's
        weight in the global mean; None: as they are). One allreduce per parameter dtype
        (collective)."""
        for grad in self._gradient_buffers():
            if share is not None and share != 1.0:
                grad *= grad.dtype.type(share)
            self.world.sum_(grad)

    # -- the wrapped model ----------------------------------------------------------------
    def forward(self, X):
        return self.module.forward(X)

    def backward(self, dY, input_grad=True):
        """The model's backward, then the ranks' gradients combined as the gradient of the
        mean over all their rows: each rank weighs its part by its rows' share (with equal
        shards, torch DDP's average)."""
        dX = self.module.backward(dY, input_grad=input_grad)
        rows = np.asarray(dY).shape[0]
        total = self.world.sum([rows])[0]
        self.sync_gradients(rows / total if total else 0.0)
        return dX

    def infer(self, X):
        return self.module.infer(X)

    def predict(self, X, batch_size=1024):
        return self.module.predict(X, batch_size=batch_size)

    def state_dict(self, prefix="", keep_vars=False):
        return self.module.state_dict(prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict=True):
        return self.module.load_state_dict(state_dict, strict=strict)

    def saved_module(self):
        return self.module

    def config(self):
        return {"sync_batchnorm": self.sync_batchnorm}

    @property
    def dtype(self):
        return getattr(self.module, "dtype", np.float32)

    # -- steps ------------------------------------------------------------------------------
    def train_step(self, X, y, loss, optimizer):
        """One step on this rank's rows ``X, y`` (collective): the loss's gradient is that of
        the mean over every rank's rows, summed by one allreduce before the update. Returns the
        global loss value. The compiled step runs when the model has one."""
        rows = self.world.sum([X.shape[0]])[0]
        value, _ = self.step(X, y, loss, optimizer, share=X.shape[0] / rows if rows else 0.0,
                             rows=rows)
        return value

    def step(self, X, y, loss, optimizer, *, share, rows, sample_weight=None,
             zero_grad="optimizer", finite_only=False, clip=None, loss_value=None):
        """The step both ``train_step`` and ``Trainer`` run (collective): this rank's part of
        a global batch of ``rows`` rows, whose share of the global mean is ``share`` (its rows'
        weight over the batch's; 1 for a summed loss). Returns ``(global value, this rank's
        output or None)``.

        ``loss_value(out) -> local value`` replaces ``loss.forward(out, y[, sample_weight])``
        (``Trainer`` counts it); ``clip(model)`` edits the global gradients before the update.
        """
        if X.shape[0] == 0:
            return self._idle_step(optimizer, zero_grad, finite_only), None
        program = None if sample_weight is not None or clip else self.module.compiled_step(
            X, loss, optimizer, zero_grad=zero_grad)
        reduce = _Reduction(self, share, rows)
        value = None if program is None else program.run(X, y, finite_only, reduce=reduce)
        if value is not None:
            return value, program.output()
        if loss_value is None:
            def loss_value(out):
                return loss.forward(out, y) if sample_weight is None else loss.forward(
                    out, y, sample_weight=sample_weight)

        def loss_grad():
            # the gradient of the global mean: this rank's rows weigh ``share`` of it (so a
            # synchronized BatchNorm's backward reduces gradients of one loss)
            grad = loss.backward()
            return grad if share == 1.0 else grad * grad.dtype.type(share)

        def before_update(model):
            self.sync_gradients()
            if clip:
                clip(model)

        return eager_step(self.module, X, optimizer, lambda out: reduce.value(loss_value(out)),
                          loss_grad, zero_grad=zero_grad, finite_only=finite_only,
                          clip=before_update)

    def _idle_step(self, optimizer, zero_grad, finite_only):
        """A rank with no rows in this batch: it adds zeros to the sums and updates alike."""
        if self.sync_batchnorm and self.world.size > 1:
            raise ValueError(
                f"a batch with fewer rows than the {self.world.size} ranks left rank "
                f"{self.world.rank} without rows; with sync_batchnorm every rank must take "
                f"part in each BatchNorm's statistics: use a batch_size (and a last batch) of "
                f"at least {self.world.size} rows")
        (self.module if zero_grad == "model" else optimizer).zero_grad()
        value = self.world.sum([0.0])[0]
        if finite_only and not math.isfinite(value):
            return value
        self.sync_gradients()
        optimizer.step()
        return value


class _Reduction:
    """What a data-parallel step reduces between its backward and its update."""

    __slots__ = ("dp", "share", "rows")

    def __init__(self, dp, share, rows):
        self.dp, self.share, self.rows = dp, share, rows

    def value(self, local):
        """The global loss from this rank's (the same number on every rank)."""
        return float(self.dp.world.sum([local * self.share])[0])

    def __call__(self, local):
        """The compiled step's hook: its gradients are this rank's part of the global mean
        already (the program's gradient rows are ``rows``)."""
        value = self.value(local)
        self.dp.sync_gradients()
        return value

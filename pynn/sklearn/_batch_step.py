"""One epoch's batches of the estimators' stochastic solvers: their rows gathered in blocks
(laid out by ``_epoch_blocks`` once per fit, gathered by ``_gathered_blocks`` per epoch) and
each batch's step with scikit-learn's per-batch L2 term (``_BatchStep``): pynn's compiled
step, several batches of a block in one call into C where they can go together, else the eager
lines. Apart from pynn/sklearn/_solvers.py, which holds what an epoch and a fit decide
(optimizers, schedules, stopping, L-BFGS), because this part runs per batch and changes with
how a step runs."""
import numpy as np
from scipy.linalg import blas

from .. import nn
from ..backend._sparse import is_sparse
from ..nn.eager_step import eager_step
from ..nn.utils import clip_grad_norm_, clip_grad_value_

# ||W||^2 of the penalty, once a step: BLAS's dot called directly (no ndarray.dot dispatch),
# the same float32/float64 accumulation; the compiled batches (TrainStep.run_batches) call
# the same function from C, so the same bits
_SELF_DOT = {np.dtype(np.float32): blas.sdot, np.dtype(np.float64): blas.ddot}

# the rows of the batches gathered at once (one fancy index per block, not per batch)
_BLOCK_BYTES = 1 << 20


def _epoch_blocks(batches, X):
    """The epoch's batches (slices, in order) in blocks of consecutive ones, worked out once
    per fit (every epoch has the same batches; only the rows change): per block its rows'
    ``(start, stop)`` and its runs of consecutive batches of one size, each ``(first row in
    the block, count, rows per batch)``. A block holds about _BLOCK_BYTES of X, at least a
    batch."""
    widest = max(b.stop - b.start for b in batches)
    # a sparse row's bytes: its average share of the stored values and their column indices
    row_bytes = ((X.data.nbytes + X.indices.nbytes) // max(1, X.shape[0]) if is_sparse(X)
                 else X[:1].nbytes)
    per_block = max(1, _BLOCK_BYTES // max(1, widest * row_bytes))
    blocks = []
    for k in range(0, len(batches), per_block):
        block = batches[k:k + per_block]
        start = block[0].start
        runs = []
        for b in block:
            n_rows = b.stop - b.start
            if runs and runs[-1][2] == n_rows:
                runs[-1][1] += 1
            else:
                runs.append([b.start - start, 1, n_rows])
        blocks.append((start, block[-1].stop, [tuple(r) for r in runs]))
    return blocks


def _gathered_blocks(blocks, order, shuffled, X, target, sample_weight):
    """Per block of ``_epoch_blocks``: its runs and its rows of X, target and sample_weight
    (None), gathered in ``order`` when ``shuffled`` (one fancy index per block, not per batch;
    views when not shuffled)."""
    sparse = is_sparse(X)
    for start, stop, runs in blocks:
        rows = order[start:stop] if shuffled else slice(start, stop)
        # (take: the faster gather of dense rows; CSR rows are gathered by scipy, still CSR)
        Xb = np.take(X, rows, axis=0) if shuffled and not sparse else X[rows]
        yield (runs, Xb, target[rows], None if sample_weight is None else sample_weight[rows])


class _BatchStep:
    """One mini-batch's step with scikit-learn's per-batch L2 term: its value (data loss plus
    the penalty), the model and optimizer updated.

    pynn's compiled step (zero_grad, forward, loss, backward, update in one C call, the same
    numbers) whenever the batch needs nothing between those: no sample weights, no clipping, a
    loss pynn's kernels compute unscaled (classification with one output column or with
    softmax); else the eager lines (pynn.nn.eager_step) with the estimator's loss."""

    def __init__(self, est, unweighted):
        self.est = est
        self.model, self.opt = est._model, est._optimizer
        self.params = list(self.model.parameters())
        self.clip_norm, self.clip_value = est.clip_grad_norm, est.clip_grad_value
        self.compiled = (isinstance(self.model, nn.Sequential) and unweighted
                         and self.clip_norm is None and self.clip_value is None
                         and est._loss.unscaled)
        self.pynn_loss = est._loss.pynn_loss
        self.program = None
        self.one_by_one = None  # a program whose steps run_batches cannot take together

    def new_epoch(self):
        self.program = None  # looked up again each epoch: scoring and schedules ran

    def run_block(self, runs, Xb, tb, swb, total):
        """The block's batches (``_epoch_blocks``' runs over the rows Xb, tb and swb) stepped
        in order: ``total`` plus each one's value times its size, added one by one as
        scikit-learn adds them. A run of batches of one size takes one call into C
        (``TrainStep.run_batches``) when the compiled step can run them so, with the same
        numbers."""
        together = (self.compiled and swb is None and type(Xb) is np.ndarray
                    and not self.est.l1)  # (what run_batches can take, known per block)
        for lo, count, n_rows in runs:
            while count:
                hi = lo + count * n_rows
                if together and count > 1:
                    values = self._run_batches(Xb[lo:hi], tb[lo:hi], count, n_rows)
                    if values is not None:
                        for value in values.tolist():
                            total += value * n_rows
                        break
                    # else one batch alone; the rest try again (the first step of a program
                    # loads the optimizer's runs, which run_batches needs)
                hi = lo + n_rows
                sw = None if swb is None else swb[lo:hi]
                total += self(Xb[lo:hi], tb[lo:hi], sw, n_rows) * n_rows
                lo, count = hi, count - 1
        return total

    def _run_batches(self, X, t, count, n_rows):
        """``count`` unweighted dense batches of ``n_rows`` for the compiled step, without l1,
        in one call (``run_batches``), their values with the L2 term; None, having run
        nothing, when they must go one by one."""
        est = self.est
        program = self._program(X[:n_rows], n_rows)
        if program is None or program is self.one_by_one:
            return None
        est._set_weight_decay(n_rows)
        penalized = bool(est.alpha)  # (_penalty's condition; weight_sum = n_rows > 0)
        values = program.run_batches(X, t, count, est._weights_flat if penalized else None,
                                     0.5 * est.alpha, n_rows)
        if values is None and program.loaded is not None:
            self.one_by_one = program  # declined with its runs loaded: for good (e.g. SGD)
        return values

    def _program(self, Xi, n_rows):
        """The compiled step for batches like Xi: the step compiled for a batch shape serves
        every batch of the shape, as between them only this loop touches the model."""
        program = self.program
        sparse = type(Xi) is not np.ndarray and is_sparse(Xi)  # (the check costs ~1 us)
        if (program is None or program.n != n_rows or program.sparse != sparse
                or not (sparse or Xi.flags.c_contiguous)):
            program = self.program = self.model.compiled_step(Xi, self.pynn_loss, self.opt)
        return program

    def __call__(self, Xi, ti, sw, n_rows):
        est = self.est
        weight_sum = n_rows if sw is None else float(sw.sum())
        est._set_weight_decay(weight_sum)
        value = est._penalty(weight_sum)
        if self.compiled:
            program = self._program(Xi, n_rows)
            step_value = None if program is None else program.run(Xi, ti)
            if step_value is None:  # declined: the eager lines
                step_value = nn.Module.train_step(self.model, Xi, ti, self.pynn_loss, self.opt)
            return value + float(step_value)
        grads = []

        def data_loss(out):
            loss, grad = est._loss(out, ti, sw)
            grads.append(grad)
            return loss

        loss, _ = eager_step(self.model, Xi, self.opt, data_loss, grads.pop, zero_grad="model",
                             clip=self._clip)
        return value + loss

    def _clip(self, model):
        if self.clip_norm is not None:
            clip_grad_norm_(self.params, self.clip_norm)
        if self.clip_value is not None:
            clip_grad_value_(self.params, self.clip_value)

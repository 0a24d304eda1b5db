"""A plan's compiled training step: ``zero_grad``, forward, loss, backward and the optimizer
update in one call into C without the GIL (pynn._kernels.train_step).

``Sequential.train_step(X, y, loss, optimizer)`` is the four lines of the PyTorch-style loop
(``Module.train_step``: ``optimizer.zero_grad()``; ``loss.forward(model.forward(X), y)``;
``model.backward(..., input_grad=False)``; ``optimizer.step()``) with the same results, bit for
bit, through the program ``Sequential.compiled_step`` asks ``program_for`` here. A program is
built from the container's plan (pynn.nn.plan: shapes checked and buffers allocated once per
input shape) and adds what the plan leaves to Python: the loss, the update, and the calls
between kernels. Per step, Python checks the batch and the labels, counts the BatchNorm batches
(``BatchCounter``), and lets the optimizer do its own bookkeeping and describe its update as
records (``update_runs``, pynn.backend.update_runs); then one C call runs every kernel. The
gradients are overwritten rather than zeroed and accumulated when the optimizer owns exactly
the plan's trainable parameters (the same values, without the memset).

Dropout in training mode runs in the program with the eager layer's mask: its key comes from
the layer's seed and step counter, which ``run`` moves once per step as the eager forward does
(so checkpoints and the eager path continue the same stream). LayerNorm, RMSNorm and Residual
blocks (nested Sequentials flattened by the plan) are ops too. A CSR batch (scikit-learn's
sparse X) has a plan of its own (``Plan.sparse``) whose first Dense becomes the program's
"sparse_dense" op: the eager sparse kernels' cores on the batch's arrays, checked per step.

Anything it does not know runs the four eager lines instead, never a guess: another backend, a
layer the plan has no op for (Softmax, BatchNorm or Dropout in eval mode, Dropout with p=0),
another loss, an
optimizer without ``update_runs``, a batch or target that needs converting or is wrong (the
eager path then raises its own error). The runs of optimizers whose loops the program has no
address for (Adagrad, RMSprop) run right after the C call.

This file is what every step does with the program (``program_for``'s cache, ``fits``, ``run``,
the optimizer's runs loaded: ``_load_updates``); recording it from the plan once is its base
class's, ``TrainStepRecording`` (pynn/nn/_train_step_record.py): apart because the one runs on
every step and the other once per (plan, loss, optimizer), and each changes for its own reasons.
"""
import functools
import math

import numpy as np

from .. import _threads
from ..backend._sparse import csr_arrays
from ..backend.codes import (BACKWARD, FORWARD, LOSS_CE, OP_BN, OP_DROPOUT, UPD_ADAM, UPD_SGD,
                             UPDATE, dropout_key)
from ..backend.update_runs import AdamRun, SGDRun, run_update
from ._train_step_record import TrainStepRecording, _addr, _default_loss, _signature

# the optimizer runs whose loops a program holds (any other runs after it)
_UPDATE_KINDS = {AdamRun: UPD_ADAM, SGDRun: UPD_SGD}
_WHOLE_STEP = FORWARD | BACKWARD | UPDATE
_MAX_PROGRAMS = 4  # per plan: (loss, optimizer) pairs a model trains with in turn


def program_for(plan, loss, optimizer):
    """The compiled step on ``plan`` with this loss and optimizer (built on first use and kept
    on the plan), or None when the eager lines must run (see the module doc)."""
    programs = plan.train_steps
    key = (id(loss), id(optimizer))
    modes = _modes(plan)
    entry = programs.get(key)
    if entry is not None and entry[0] is loss and entry[1] is optimizer:
        program = entry[2]
        if program is None:
            if entry[3] == modes:
                return None  # still nothing to compile (a train() may change that)
        elif program.fits(loss, optimizer):
            return program
    if len(programs) >= _MAX_PROGRAMS:
        programs.clear()
    program = TrainStep.build(plan, loss, optimizer)
    programs[key] = (loss, optimizer, program, modes)
    return program


def _modes(plan):
    """What decides whether the plan's BatchNorm and Dropout layers can be compiled."""
    return tuple((s.layer.training, getattr(s.layer, "p", None)) for s in plan.steps
                 if s.kind == OP_BN or s.kind == OP_DROPOUT)


class TrainStep(TrainStepRecording):
    """The compiled step of one (plan, loss, optimizer); see the module doc."""

    # -- validity -----------------------------------------------------------------------------
    def fits(self, loss, optimizer):
        """Nothing the program recorded beyond the plan (which checks its own) has changed."""
        if not (_default_loss(loss) and self.signature == _signature(optimizer)):
            return False
        for layer, eps in self.bn_settings:
            if not layer.training or layer.eps != eps:
                return False
        for _, layer, p in self.dropouts:
            if not layer.training or layer.p != p:
                return False
        for layer, eps in self.rownorms:
            if layer.eps != eps:
                return False
        return True

    def _checked_target(self, y, rows):
        """y for ``rows`` rows as the program reads it (labels as intp, each in range), else
        None (the eager step, whose loss names what is wrong)."""
        if type(y) is not np.ndarray or not y.flags.c_contiguous:
            return None
        if self.loss_kind == LOSS_CE:
            if y.shape != (rows,) or y.dtype.kind not in "iu":
                return None
            y = y if y.dtype == np.intp else y.astype(np.intp)
            return y if self._labels_in_range(y, self.k_out) else None
        if y.shape != (rows, self.k_out) or y.dtype != self.plan.dtype:
            return None
        return y

    def _set_gradient_rows(self, rows):
        """The loss gradient a mean over ``rows`` rows (callers check it changed first)."""
        self.prog.set_gradient_rows(rows)
        self.grad_rows = rows

    # -- running ------------------------------------------------------------------------------
    def run(self, X, y, finite_only=False, reduce=None):
        """One step; the loss value, or None when the eager step must run instead.

        ``finite_only``: a non-finite loss skips the update (as ``Trainer`` with TerminateOnNaN
        does); the step then takes two C calls instead of one.

        ``reduce``: data parallelism's hook (``pynn.distributed``): the loss gradient is that
        of the mean over ``reduce.rows`` rows (the global batch's), and ``reduce(value)`` runs
        between the backward and the update: it makes every replica's gradients the global
        ones and returns the global loss value (the one returned, and checked by
        ``finite_only``, so every replica takes the same branch)."""
        target = self._checked_target(y, self.n)
        if target is None:
            return None  # the eager loss names what is wrong
        call = self._caller(X)
        momenta = self.momenta
        for i, counter in self.counters:
            momenta[i] = counter.next_momentum()
        keys = self.keys
        for i, layer, _ in self.dropouts:  # each forward draws a fresh mask, as the eager one
            keys[i] = dropout_key(layer.seed, layer.step)
            layer.step += 1
        if self.zero_first:
            self.optimizer.zero_grad()
        rows = self.n if reduce is None else reduce.rows
        if rows != self.grad_rows:
            self._set_gradient_rows(rows)
        if reduce is not None:
            value = reduce(call(target, momenta, FORWARD | BACKWARD))
            if finite_only and not math.isfinite(value):
                return value  # every replica skips the update alike
            after = self._load_updates()
            call(target, momenta, UPDATE)
        elif finite_only:
            value = call(target, momenta, FORWARD)
            if not math.isfinite(value):
                if not self.zero_first:
                    self.optimizer.zero_grad()  # as the eager zero_grad left them
                return value
            after = self._load_updates()
            call(target, momenta, BACKWARD | UPDATE)
        else:
            after = self._load_updates()
            value = call(target, momenta, _WHOLE_STEP)
        for update in after:
            run_update(update, self.backend)
        return value

    def run_batches(self, X, y, count, penalty=None, half_alpha=0.0, weight_sum=1.0):
        """``count`` steps in one call into C, batch b being rows [b n, (b + 1) n) of X and y:
        each step ``run``'s, bit for bit (BatchNorm momenta, dropout keys and the optimizer's
        bookkeeping move per step as ``run`` moves them), without Python between the steps.
        Returns the loss values (float64, one per batch), each plus, with ``penalty`` (the
        weights, an array of the program's dtype), scikit-learn's L2 term
        ``half_alpha * dot(penalty, penalty) / weight_sum`` read before that step's update;
        or None, having run nothing, when the steps must go through ``run`` one by one: a CSR
        program, gradients the optimizer does not zero, an optimizer whose runs are not all
        Adam's or not yet loaded (a first ``run`` loads them), a block or targets ``run``
        would not take."""
        n = self.n
        if (self.sparse or self.zero_first or count < 1 or not self.held or self.loaded is None
                or any(type(r) is not AdamRun for _, r in self.held)):
            return None
        if (type(X) is not np.ndarray or X.dtype != self.plan.dtype
                or X.shape != (count * n,) + self.plan.shape[1:]
                or not (X.flags.c_contiguous and X.flags.aligned)):
            return None
        target = self._checked_target(y, count * n)
        if target is None:
            return None
        momenta = np.tile(self.momenta, (count, 1))
        for i, counter in self.counters:
            for b in range(count):
                momenta[b, i] = counter.next_momentum()
        keys = np.tile(self.keys, (count, 1))
        for i, layer, _ in self.dropouts:  # each forward draws a fresh mask, as in run
            for b in range(count):
                keys[b, i] = dropout_key(layer.seed, layer.step)
                layer.step += 1
        self._load_updates()  # the first step's (Adam's runs only: none to run after it)
        # Between the steps nothing touches the optimizer, so the others' bookkeeping is the
        # quick kind: step counts only.
        later = self.optimizer.quick_steps(self.loaded, count - 1)
        if later is None:
            raise RuntimeError("the optimizer's runs changed between two steps of a block")
        steps = np.zeros((count, len(self.held)))  # (row 0: its scalars are set already)
        for j, i in self.adam_steps:
            steps[1:, j] = later[:, i]
        if n != self.grad_rows:
            self._set_gradient_rows(n)
        values = np.empty(count)
        self.prog.run_batches(X, target, momenta, keys, steps, values, penalty, half_alpha,
                              weight_sum)
        return values

    def _caller(self, X):
        """``(target, momenta, phases) -> value``: the program's run on batch X (a CSR
        batch's arrays checked once, as the eager kernels check them: csr_arrays)."""
        if not self.sparse:
            return functools.partial(self.prog.run, X)
        data, indices, indptr = csr_arrays("X", X, self.plan.dtype, self.plan.shape[1])
        return functools.partial(self.prog.run_csr, data, indices, indptr)

    def output(self):
        """The last step's model output (the program's buffer: valid until the next step)."""
        return self.plan.steps[-1].Y

    def _load_updates(self):
        """The optimizer's bookkeeping for one step, its Adam/SGD runs loaded into the
        program; returns the other runs, to run after it."""
        answer = self.optimizer.update_runs(self.loaded)
        runs = answer.runs
        prog = self.prog
        if runs is None:  # the same loops on the same arrays: only the step counts moved
            steps = answer.steps
            for j, i in self.adam_steps:
                prog.set_step(j, steps[i])
            if self.sgd_steady:  # the step after SGD's first: the loop's steady variant
                for j, scalars in self.sgd_steady:
                    prog.set_sgd(j, **scalars)
                self.sgd_steady = []
            return ()
        held = [(i, r) for i, r in enumerate(runs) if type(r) in _UPDATE_KINDS and r.param.size]
        after = [r for r in runs if type(r) not in _UPDATE_KINDS]
        # The optimizer caches its flat slices and makes all of them anew when its layout or
        # state buffers change, so the parameter slices' identities tell whether the program's
        # addresses still hold.
        if len(held) != len(self.held) or any(
                r.param is not old.param for (_, r), (_, old) in zip(held, self.held)):
            prog.clear_updates()
            for _, r in held:
                _add_update(prog, r)
            self.held = held
        self.adam_steps, self.sgd_steady = [], []
        for j, (i, r) in enumerate(held):
            if type(r) is AdamRun:
                prog.set_adam(j, **r.loop_scalars(), lr=r.lr,
                              eps_before_correction=r.eps_before_correction)
                self.adam_steps.append((j, i))
            else:
                mode = r.loop_mode()
                scalars = dict(lr=r.lr, momentum=r.momentum, dampening=r.dampening,
                               weight_decay=r.weight_decay, l1=r.l1, nesterov=r.nesterov)
                prog.set_sgd(j, mode=self.sgd_modes[mode], **scalars)
                if mode == "first":
                    self.sgd_steady.append((j, dict(scalars, mode=self.sgd_modes["momentum"])))
        # the quick path replays these runs; runs after the program need every step's
        self.loaded = answer.version if not after else None
        return after


def _add_update(prog, run):
    """Run ``run``'s loop in the program (its scalars come from set_adam / set_sgd)."""
    size = run.param.size
    if type(run) is AdamRun:
        states = dict(state1=run.exp_avg.ctypes.data, state2=run.exp_avg_sq.ctypes.data,
                      state3=_addr(run.max_exp_avg_sq))
    else:
        momentum = run.momentum_buffer if run.loop_mode() != "plain" else None
        states = dict(state1=_addr(momentum))
    prog.add_update(kind=_UPDATE_KINDS[type(run)], size=size,
                    n_threads=_threads.threads_for(size), param=run.param.ctypes.data,
                    grad=run.grad.ctypes.data, **states)

"""A Sequential's compiled training step: ``zero_grad``, forward, loss, backward and the
optimizer update in one call into C without the GIL (pynn._kernels.step).

``Sequential.train_step(X, y, loss, optimizer)`` is the four lines of the PyTorch-style loop
(``optimizer.zero_grad()``; ``loss.forward(model.forward(X), y)``; ``model.backward(...,
input_grad=False)``; ``optimizer.step()``) with the same results, bit for bit. It is built on
the container's plan (pynn.nn.plan: shapes checked and buffers allocated once per input shape)
and adds what the plan leaves to Python: the loss, the update, and the calls between kernels.
Per step, Python checks the batch and the labels, moves the BatchNorm counters, and lets the
optimizer do its own bookkeeping (step counts, hyper-parameters a schedule changed, state
buffers) with its loops collected instead of run (``Optimizer._collect_step``); then one C call
runs every kernel. The gradients are overwritten rather than zeroed and accumulated when the
optimizer owns exactly the model's trainable parameters (the same values, without the memset).

Anything it does not know runs the four eager lines instead, never a guess: another backend, a
layer the plan has no op for (Dropout, Softmax, BatchNorm in eval mode, custom modules), another
loss, a batch or target that needs converting or is wrong (the eager path then raises its own
error). Optimizers whose loops the program has no address for (Adagrad, RMSprop) run their own
fused kernel right after the C call.
"""
import math

import numpy as np

from .. import _threads
from ..backend import backend_for
from ..backend.codes import IDENTITY
from ..backend.cython import CythonBackend
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from ..optim.optimizer import Optimizer
from .module import Module
from .parameter import Parameter, ParameterArena
from . import plan as _plan

_OP_DENSE, _OP_BN, _OP_ACT = 0, 1, 2
_LOSS_KINDS = {CrossEntropyLoss: 0, MSELoss: 1, BCEWithLogitsLoss: 2}
_UPD_ADAM, _UPD_SGD = 0, 1
_FORWARD, _BACKWARD, _UPDATE = 1, 2, 4  # phases of a run
_MAX_PROGRAMS = 4  # per plan: (loss, optimizer) pairs a model trains with in turn


def train_step(seq, X, y, loss, optimizer):
    """``Sequential.train_step``: the compiled step when it applies, else the eager one."""
    program = cached_program(seq, X, loss, optimizer)
    if program is not None:
        value = program.run(X, y)
        if value is not None:
            return value
    return Module.train_step(seq, X, y, loss, optimizer)


def cached_program(seq, X, loss, optimizer):
    """``program_for``, checking the last call's answer first: a training loop calls with the
    same loss, optimizer and batch shape step after step."""
    if isinstance(optimizer, Optimizer):
        # An optimizer re-packs its parameters when another packed them since its last step:
        # let it happen now, before the plan checks where the parameters live.
        optimizer._check_arenas()
    last = seq._last_train_step
    if (last is not None and last[0] is loss and last[1] is optimizer
            and type(X) is np.ndarray and last[2].fits(X)
            and last[3].fits(seq, loss, optimizer)):
        return last[3]
    program = program_for(seq, X, loss, optimizer)
    seq._last_train_step = None if program is None else (loss, optimizer, program.plan, program)
    return program


def fit_step_finder(model):
    """``(model, X, loss, optimizer) -> compiled step or None`` for a fit loop that zeroes the
    gradients with ``model.zero_grad()``: only a Sequential that compiles has one, and only a
    step whose zero_grad zeroes exactly what model.zero_grad zeroes."""
    from .containers import Sequential

    if not isinstance(model, Sequential) or not model._compile:
        return lambda *args: None

    def find(model, X, loss, optimizer):
        program = cached_program(model, X, loss, optimizer)
        return None if program is None or program.zero_first else program

    return find


def program_for(seq, X, loss, optimizer):
    """The compiled step of ``seq`` for batches like X with this loss and optimizer, or None
    when the eager lines must run (see the module doc)."""
    plan = seq._compiled_for(X)
    return None if plan is None else _program_for(plan, seq, loss, optimizer)


def _program_for(plan, seq, loss, optimizer):
    programs = plan.train_steps
    key = (id(loss), id(optimizer))
    modes = tuple(s.layer.training for s in plan.steps if s.kind == _plan._BN)
    entry = programs.get(key)
    if entry is not None and entry[0] is loss and entry[1] is optimizer:
        program = entry[2]
        if program is None:
            if entry[3] == modes:
                return None  # still nothing to compile (a train() may change that)
        elif program.fits(seq, loss, optimizer):
            return program
    if len(programs) >= _MAX_PROGRAMS:
        programs.clear()
    program = TrainStep.build(plan, seq, loss, optimizer)
    programs[key] = (loss, optimizer, program, modes)
    return program


class _Unsupported(Exception):
    pass


class _Collector(CythonBackend):
    """A backend whose optimizer loops are recorded, not run (see ``Optimizer._collect_step``):
    Adam's and SGD's go into the C program, any other runs after it, in order.

    A call is (kind, param, grad, state 1..3, scalars, mode, flag, threads, quick): ``quick``
    is what the program needs on a step whose only change is the step count (see
    ``TrainStep._collect_updates``): Adam's (lr, eps, eps placement) for ``set_step``, SGD's
    steady scalars, mode and flag (a quick step is never SGD's first)."""

    def __init__(self, sgd_modes):
        self.calls = []
        self.after = []
        self._sgd_modes = sgd_modes
        self._real = backend_for("cython")
        self._adam_hypers = None

    def adam_step(self, *arrays, **hypers):
        # the hyper-parameters before the loop's scalars are derived from them
        self._adam_hypers = (hypers["lr"], hypers["eps"],
                             hypers.get("eps_before_correction", False))
        return super().adam_step(*arrays, **hypers)

    def _adam_step(self, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, beta1, beta2, eps,
                   weight_decay, l1, decay, step_size, bc2_sqrt, n_threads):
        self.calls.append((_UPD_ADAM, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq,
                           (beta1, beta2, eps, weight_decay, l1, decay, step_size, bc2_sqrt),
                           0, False, n_threads, self._adam_hypers))

    def _sgd_step(self, param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, l1,
                  nesterov, first_step, n_threads):
        buf = momentum_buffer if momentum != 0 and param.size > 0 else None
        plain, first, ongoing = self._sgd_modes
        scalars = (lr, momentum, dampening, weight_decay, l1, 0.0, 0.0, 0.0)
        steady = ongoing if buf is not None else plain
        self.calls.append((_UPD_SGD, param, grad, buf, None, None, scalars,
                           first if buf is not None and first_step else steady,
                           bool(nesterov), n_threads, (*scalars, steady, bool(nesterov))))

    def _adagrad_step(self, *args):
        self.after.append((self._real._adagrad_step, args))

    def _rmsprop_step(self, *args):
        self.after.append((self._real._rmsprop_step, args))


def _addr(a):
    return 0 if a is None else a.ctypes.data


class TrainStep:
    """The compiled step of one (plan, loss, optimizer); see the module doc."""

    @classmethod
    def build(cls, plan, seq, loss, optimizer):
        try:
            return cls(plan, seq, loss, optimizer)
        except _Unsupported:
            return None

    def __init__(self, plan, seq, loss, optimizer):
        from .._kernels import optim as _optim_kernels
        from .._kernels import step as _step

        self._step = _step
        self.plan = plan
        self.optimizer = optimizer
        if not (type(loss) in _LOSS_KINDS and _default_loss(loss)
                and isinstance(optimizer, Optimizer)):
            raise _Unsupported
        backends = {s.be for s in plan.steps} | {loss.backend, backend_for(optimizer.backend_name)}
        if any(type(be) is not CythonBackend for be in backends):
            raise _Unsupported
        n = plan.shape[0]
        self.n, self.k_out = n, plan.out_width
        self.loss_kind = _LOSS_KINDS[type(loss)]
        self.signature = _signature(seq, optimizer)
        own = _owns_gradients(seq, optimizer)
        self.zero_first = not own
        loops = _optim_kernels.update_loops()
        self.collector = _Collector((loops["sgd_plain"], loops["sgd_first"],
                                     loops["sgd_momentum"]))
        prog = _step.StepProgram(plan.dtype == np.float32, len(plan.steps), 4, not own, loops)
        self.keep = []  # every scratch array the program points into
        # (op index, layer, the eps the program runs it with, [its step count, a view of it])
        self.bn_layers = []
        for i, s in enumerate(plan.steps):
            self._add_op(prog, plan, i, s)
        self.G = np.empty((n, self.k_out), plan.dtype)
        prog.set_loss(self.loss_kind, self.G.ctypes.data, n, self.k_out,
                      _threads.threads_for(n * self.k_out))
        self.momenta = np.zeros(max(len(plan.steps), 1), np.float64)
        self.prog = prog
        self.arrays = []  # the optimizer's arrays the program's updates point into
        self.nonempty = []  # which of the optimizer's loop calls are in the program
        self.optimizer_version = None  # the optimizer's _version the updates were loaded at
        self.quick = []  # per update: (index, its call, SGD's steady arguments or None: Adam)

    def _add_op(self, prog, plan, i, s):
        n = plan.shape[0]
        k = plan.shape[1] if i == 0 else plan.steps[i - 1].Y.shape[1]
        m = s.Y.shape[1]
        X = 0 if i == 0 else plan.steps[i - 1].Y.ctypes.data
        if s.kind == _plan._DENSE:
            w, b = s.w, s.b
            dW = w._grad if w._requires_grad else None
            db = b._grad if b is not None and b._requires_grad else None
            dX = s.dX if i > 0 else None
            nt, n_acc = self._step.dense_backward_threads(n, m, k, dW is not None,
                                                          dX is not None, s.nt)
            dz = self._scratch(n * m, plan.dtype) if s.code != IDENTITY else None
            acc = self._scratch(n_acc * m, np.float64) if db is not None else None
            prog.add_op(_OP_DENSE, s.code, s.param, n, k, m, s.nt, nt, n_acc, 0.0, X,
                        s.Y.ctypes.data, _addr(dX), w._data.ctypes.data,
                        _addr(None if b is None else b._data), _addr(dW), _addr(db),
                        _addr(dz), _addr(acc), 0, 0, 0, 0, 0)
        elif s.kind == _plan._BN:
            layer = s.layer
            if not layer.training or n < 2:
                raise _Unsupported  # eval statistics, or the layer's own error
            g, bt = s.w, s.b
            fwd, bwd = self._step.batchnorm_scratch(n, m)
            prog.add_op(_OP_BN, s.code, s.param, n, m, m, s.nt, 0, 0, layer.eps, X,
                        s.Y.ctypes.data, s.dX.ctypes.data, g._data.ctypes.data,
                        bt._data.ctypes.data, _addr(g._grad if g._requires_grad else None),
                        _addr(bt._grad if bt._requires_grad else None),
                        0, _addr(self._scratch(bwd, np.float64)),
                        _addr(self._scratch(fwd, np.float64)), s.mean.ctypes.data,
                        s.invstd.ctypes.data, layer.running_mean.ctypes.data,
                        layer.running_var.ctypes.data)
            self.bn_layers.append((i, layer, layer.eps, [None, None]))
        elif s.kind == _plan._ACT:
            dX = s.dX if i > 0 else None
            prog.add_op(_OP_ACT, s.code, s.param, n, m, m, s.nt, 0, 0, 0.0, X,
                        s.Y.ctypes.data, _addr(dX), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        else:
            raise _Unsupported  # Dropout, Softmax: the eager step runs them

    def _scratch(self, size, dtype):
        a = np.empty(max(int(size), 1), dtype)
        self.keep.append(a)
        return a

    # -- validity -----------------------------------------------------------------------------
    def fits(self, seq, loss, optimizer):
        """Nothing the program recorded beyond the plan (which checks its own) has changed."""
        if not (_default_loss(loss) and self.signature == _signature(seq, optimizer)):
            return False
        for _, layer, eps, _ in self.bn_layers:
            if not layer.training or layer.eps != eps:
                return False
        return True

    def _target(self, y):
        """y when the program can read it as is (labels as intp), else None (eager step)."""
        if type(y) is not np.ndarray or not y.flags.c_contiguous:
            return None
        if self.loss_kind == 0:
            if y.shape != (self.n,) or y.dtype.kind not in "iu":
                return None
            return y if y.dtype == np.intp else y.astype(np.intp)
        if y.shape != (self.n, self.k_out) or y.dtype != self.plan.dtype:
            return None
        return y

    # -- running ------------------------------------------------------------------------------
    def run(self, X, y, finite_only=False):
        """One step; the loss value, or None when the eager step must run instead.

        ``finite_only``: a non-finite loss skips the update (as ``Trainer`` with TerminateOnNaN
        does); the step then takes two C calls instead of one."""
        target = self._target(y)
        if target is None or (self.loss_kind == 0 and not self._step.labels_in_range(
                target, self.k_out)):
            return None  # the eager loss names what is wrong
        for i, layer, _, counter in self.bn_layers:
            count = layer._buffers["num_batches_tracked"]
            if count is not counter[0]:
                # counted in place, as the layer's own forward does, through a memoryview:
                # an int item is ~0.05 us where the array's += is ~0.8 us, per layer and step
                counter[0], counter[1] = count, count.reshape(1).data
            view = counter[1]
            view[0] += 1
            momentum = layer.momentum
            self.momenta[i] = 1.0 / view[0] if momentum is None else momentum
        if self.zero_first:
            self.optimizer.zero_grad()
        if finite_only:
            value = self.prog.run(X, target, self.momenta, _FORWARD)
            if not math.isfinite(value):
                if not self.zero_first:
                    self.optimizer.zero_grad()  # as the eager zero_grad left them
                return value
            after = self._collect_updates()
            self.prog.run(X, target, self.momenta, _BACKWARD | _UPDATE)
        else:
            after = self._collect_updates()
            value = self.prog.run(X, target, self.momenta, _FORWARD | _BACKWARD | _UPDATE)
        for fn, args in after:
            fn(*args)
        return value

    def output(self):
        """The last step's model output (the program's buffer: valid until the next step)."""
        return self.plan.steps[-1].Y

    def _collect_updates(self):
        """The optimizer's bookkeeping for one step, its Adam/SGD loops loaded into the
        program; returns the other loops, to run after it."""
        steps = self.optimizer._quick_step(self.optimizer_version)
        if steps is not None:  # the same loops on the same arrays: only the step moved
            prog = self.prog
            for j, i, sgd in self.quick:
                if sgd is None:
                    prog.set_step(j, steps[i])
                else:
                    prog.set_update(j, *sgd)
            return ()
        collector = self.collector
        collector.calls.clear()
        collector.after.clear()
        self.optimizer._collect_step(collector)
        calls = collector.calls
        prog = self.prog
        # The optimizer caches its flat slices and makes all of them anew when its layout or
        # state buffers change, so the parameter slices' identities tell whether the program's
        # addresses still hold.
        arrays = self.arrays
        if len(calls) != len(arrays) or any(c[1] is not a[0] for c, a in zip(calls, arrays)):
            prog.clear_updates()
            for kind, p, g, s1, s2, s3, _, _, _, nt, _ in calls:
                if p.size:
                    prog.add_update(kind, p.size, nt, p.ctypes.data, g.ctypes.data, _addr(s1),
                                    _addr(s2), _addr(s3))
            self.arrays = [c[1:6] for c in calls]  # alive while the program points into them
            self.nonempty = [i for i, c in enumerate(calls) if c[1].size]
        self.quick = []
        for j, i in enumerate(self.nonempty):
            c = calls[i]
            prog.set_update(j, *c[6], c[7], c[8])
            if c[0] == _UPD_ADAM:
                prog.set_adam(j, *c[10])
            self.quick.append((j, i, None if c[0] == _UPD_ADAM else c[10]))
        self.optimizer_version = self.optimizer._steady_version
        return collector.after


def _default_loss(loss):
    """The loss computes what the program computes: the plain mean, no weights."""
    return (getattr(loss, "reduction", "mean") == "mean"
            and getattr(loss, "weight", None) is None
            and getattr(loss, "pos_weight", None) is None)


def _signature(seq, optimizer):
    """What decides whether the program's gradients and updates still apply: which
    parameters are frozen, where the arenas are, which parameters the optimizer holds."""
    # (adding a param group re-packs: the generation moves)
    return Parameter.freeze_version, ParameterArena.generation, len(optimizer.param_groups)


def _owns_gradients(seq, optimizer):
    """The optimizer holds exactly the model's trainable parameters: its zero_grad zeroes
    just what the backward writes, so the backward may overwrite instead."""
    held = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = [p for p in seq.parameters() if p.requires_grad]
    return (all(p.requires_grad for p in held) and len(held) == len(trainable)
            and {id(p) for p in held} == {id(p) for p in trainable})

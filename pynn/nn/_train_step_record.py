"""How a compiled training step is recorded: the plan's steps handed to the C program as ops
(``add_dense``, ``add_batchnorm``, ``add_dropout``, ...) with their buffers' and scratch arrays'
addresses, the loss set, and what ``fits`` will check later (the loss's defaults, the
optimizer's signature, each BatchNorm's, Dropout's, LayerNorm's and RMSNorm's settings).
``TrainStep`` (pynn/nn/train_step.py) inherits it and holds what every step does with the
program (the batch and labels checked, the counters moved, the optimizer's runs loaded, the C
call): this part runs once per (plan, loss, optimizer), that one on every step, and a new kind
of op changes this part alone. ``_Unsupported`` raised anywhere here means the eager lines run
instead (``build`` answers None)."""
import numpy as np

from .. import _threads
from ..backend import backend_for
from ..tune import _planner as _tune
from ..backend.codes import (IDENTITY, LOSS_BCE, LOSS_CE, LOSS_MSE, OP_ACT, OP_BN, OP_DENSE,
                             OP_DROPOUT, OP_RES_BEGIN, OP_RES_END, OP_ROWNORM, STEP_KINDS,
                             dropout_threshold, kernel_params)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .parameter import Parameter, ParameterArena
from .plan import grad_of

_LOSS_KINDS = {CrossEntropyLoss: LOSS_CE, MSELoss: LOSS_MSE, BCEWithLogitsLoss: LOSS_BCE}
_BLOCK_OPS = (OP_DROPOUT, OP_ROWNORM, OP_RES_BEGIN, OP_RES_END)


class _Unsupported(Exception):
    pass


def _addr(a):
    return 0 if a is None else a.ctypes.data


class TrainStepRecording:
    """``TrainStep.build`` and its recording (see the module doc)."""

    @classmethod
    def build(cls, plan, loss, optimizer):
        try:
            return cls(plan, loss, optimizer)
        except _Unsupported:
            return None

    def __init__(self, plan, loss, optimizer):
        # the compiled kernels, imported when a program is first built (importing pynn does not
        # need them)
        from .._kernels import batchnorm as _batchnorm_kernels
        from .._kernels import dense as _dense_kernels
        from .._kernels import optim as _optim_kernels
        from .._kernels import rownorm as _rownorm_kernels
        from .._kernels import train_step as _kernel
        from .._kernels.checks import labels_in_range
        from ..backend.cython import CythonBackend

        self._kernel = _kernel
        # each kernel family's scratch sizes
        self._dense_kernels = _dense_kernels
        self._batchnorm_kernels = _batchnorm_kernels
        self._rownorm_kernels = _rownorm_kernels
        self._labels_in_range = labels_in_range
        self.plan = plan
        self.optimizer = optimizer
        if not (type(loss) in _LOSS_KINDS and _default_loss(loss)
                and hasattr(optimizer, "update_runs")):
            raise _Unsupported
        self.backend = backend_for(optimizer.backend_name)
        backends = {s.be for s in plan.steps} | {loss.backend, self.backend}
        if any(type(be) is not CythonBackend for be in backends):
            raise _Unsupported
        n = plan.shape[0]
        self.n, self.k_out = n, plan.out_width
        self.sparse = plan.sparse  # batches are CSR (the first op: OP_SPARSE_DENSE)
        self.loss_kind = _LOSS_KINDS[type(loss)]
        self.signature = _signature(optimizer)
        own = _owns_gradients(plan, optimizer)
        self.zero_first = not own
        loops = _optim_kernels.update_loops()
        # SGD's loop variants by ``SGDRun.loop_mode()``
        self.sgd_modes = {mode: loops["sgd_" + mode] for mode in ("plain", "first", "momentum")}
        prog = _kernel.StepProgram(plan.dtype == np.float32, len(plan.steps), 4, not own, loops)
        self.keep = []  # every scratch array the program points into
        self.bn_settings = []  # (BatchNorm layer, the eps the program runs it with)
        self.counters = []  # (op index, the BatchNorm layer's BatchCounter)
        self.dropouts = []  # (op index, Dropout layer, its p when built)
        self.rownorms = []  # (LayerNorm/RMSNorm layer, the eps the program runs it with)
        self.G = np.empty((n, self.k_out), plan.dtype)
        # where each op's gradient arrives (its dY): the next op's dX, the loss's G for the
        # last; a residual's end passes its own on
        self.dY_addr = [0] * len(plan.steps)
        self.dX_addr = [0] * len(plan.steps)
        for i in range(len(plan.steps) - 1, -1, -1):
            self.dY_addr[i] = (self.G.ctypes.data if i == len(plan.steps) - 1
                               else self.dX_addr[i + 1])
            s = plan.steps[i]
            self.dX_addr[i] = (self.dY_addr[i] if s.kind == OP_RES_END
                               else _addr(s.dX if i > 0 or s.kind == OP_ROWNORM else None))
        for i, s in enumerate(plan.steps):
            self._add_op(prog, plan, i, s)
        self.keys = np.zeros(max(len(plan.steps), 1), np.uint64)  # dropout ops' keys per step
        prog.set_keys(self.keys.ctypes.data)
        prog.set_loss(kind=self.loss_kind, G=self.G.ctypes.data, n=n, k=self.k_out,
                      n_threads=_threads.threads_for(n * self.k_out))
        self.momenta = np.zeros(max(len(plan.steps), 1), np.float64)
        self.grad_rows = n  # the rows the program's loss gradient is a mean over
        self.prog = prog
        self.held = []  # the runs in the program: their arrays stay alive while it points in
        self.loaded = None  # the optimizer's version the runs were loaded at (None: reload)
        self.adam_steps = []  # (update index, run index) of Adam's runs: set_step's per step
        self.sgd_steady = []  # (update index, set_sgd's keywords) after SGD's first step

    def _add_op(self, prog, plan, i, s):
        n, k = plan.shape[0], s.in_width
        if s.kind in _BLOCK_OPS:
            return self._add_block_op(prog, plan, i, s)
        if plan.sparse and i == 0:
            return self._add_sparse_dense(prog, n, k, s)
        m = s.Y.shape[1]
        X = 0 if s.src < 0 else plan.steps[s.src].Y.ctypes.data
        dX = s.dX if i > 0 else None  # the first op's only when the caller wants it: never
        param, param2 = kernel_params(s.param)  # (the activation's two scalars)
        if s.kind == OP_DENSE:
            w, b = s.w, s.b
            dW = w._grad if w._requires_grad else None
            db = b._grad if b is not None and b._requires_grad else None
            # the eager kernels' strategies for these products (pynn.tune): the same bits
            fwd_strategy = _tune.forward_strategy(n, k, m, plan.dtype, s.nt)
            bwd_strategy = _tune.backward_strategy(n, m, k, plan.dtype, s.nt, dW is not None,
                                                   dX is not None)
            nt, n_acc = self._dense_kernels.backward_team(n, m, k, dW is not None,
                                                         dX is not None, bwd_strategy, s.nt)
            dz = self._scratch(n * m, plan.dtype) if s.code != IDENTITY else None
            acc = self._scratch(n_acc * m, np.float64) if db is not None else None
            forward = self._dense_kernels.forward_scratch(n, k, m, fwd_strategy)
            forward = self._scratch(forward, plan.dtype) if forward else None
            prog.add_dense(act=s.code, param=param, param2=param2, n=n, k=k, m=m,
                           n_threads=s.nt, forward_strategy=fwd_strategy,
                           backward_strategy=bwd_strategy, backward_threads=nt,
                           bias_rows=n_acc, X=X,
                           Y=s.Y.ctypes.data, dX=_addr(dX), W=w._data.ctypes.data,
                           b=_addr(None if b is None else b._data), dW=_addr(dW), db=_addr(db),
                           dz=_addr(dz), bias_sums=_addr(acc), forward_scratch=_addr(forward),
                           Z=_addr(s.Z))
        elif s.kind == OP_BN:
            layer = s.layer
            if not layer.training or n < 2:
                raise _Unsupported  # eval statistics, or the layer's own error
            g, bt = s.w, s.b
            fwd, bwd = self._batchnorm_kernels.scratch_sizes(n, m)
            prog.add_batchnorm(
                act=s.code, param=param, param2=param2, n=n, features=m, n_threads=s.nt,
                eps=layer.eps, X=X,
                Y=s.Y.ctypes.data, dX=s.dX.ctypes.data,  # (the kernel always computes dX)
                gamma=g._data.ctypes.data, beta=bt._data.ctypes.data,
                dgamma=_addr(g._grad if g._requires_grad else None),
                dbeta=_addr(bt._grad if bt._requires_grad else None),
                backward_scratch=_addr(self._scratch(bwd, np.float64)),
                forward_scratch=_addr(self._scratch(fwd, np.float64)),
                mean=s.mean.ctypes.data, invstd=s.invstd.ctypes.data,
                running_mean=layer.running_mean.ctypes.data,
                running_var=layer.running_var.ctypes.data)
            self.bn_settings.append((layer, layer.eps))
            self.counters.append((i, layer._counter()))
        elif s.kind == OP_ACT:
            prog.add_activation(act=s.code, param=param, param2=param2, n=n, width=m,
                                n_threads=s.nt, X=X, Y=s.Y.ctypes.data, dX=_addr(dX))
        else:
            raise _Unsupported  # Softmax: the eager step runs it

    def _add_sparse_dense(self, prog, n, k, s):
        """The first Dense on the CSR batch: the eager sparse kernels' cores, the activation in
        the forward's call (Z kept as the plan keeps it), dW and db; no dX."""
        param, param2 = kernel_params(s.param)
        w, b = s.w, s.b
        dz = self._scratch(n * s.Y.shape[1], self.plan.dtype) if s.code != IDENTITY else None
        prog.add_sparse_dense(act=s.code, param=param, param2=param2, n=n, k=k,
                              m=s.Y.shape[1], n_threads=s.nt, Y=s.Y.ctypes.data,
                              W=w._data.ctypes.data, b=_addr(None if b is None else b._data),
                              dW=_addr(grad_of(w)), db=_addr(grad_of(b)), dz=_addr(dz),
                              Z=_addr(s.Z),
                              thread_rows=self._scratch(s.nt * n, np.float64).ctypes.data)

    def _add_block_op(self, prog, plan, i, s):
        """Add op i of a block kind (_BLOCK_OPS): dropout, rownorm, a residual's marks."""
        n, width, layer = plan.shape[0], s.in_width, s.layer
        X = 0 if s.src < 0 else plan.steps[s.src].Y.ctypes.data
        common = dict(n=n, n_threads=s.nt, X=X)
        if s.kind == OP_DROPOUT:
            if not layer.training or layer.p == 0.0:
                raise _Unsupported  # the identity: the eager lines copy it
            prog.add_dropout(width=width, threshold=dropout_threshold(layer.p),
                             scale=1.0 / (1.0 - layer.p), Y=s.Y.ctypes.data,
                             dX=self.dX_addr[i], mask=s.mask.ctypes.data, **common)
            self.dropouts.append((i, layer, layer.p))
        elif s.kind == OP_ROWNORM:
            w, b = s.w, s.b
            eps = layer.kernel_eps()
            prog.add_rownorm(
                features=width, eps=eps, Y=s.Y.ctypes.data, dX=self.dX_addr[i],
                gamma=_addr(s.data(w)), beta=_addr(s.data(b)),
                dgamma=_addr(grad_of(w)), dbeta=_addr(grad_of(b)),
                mean=_addr(s.mean), invstd=s.invstd.ctypes.data,
                affine_scratch=_addr(self._scratch(2 * width, np.float64)),
                backward_scratch=_addr(self._scratch(
                    self._rownorm_kernels.backward_scratch(n, width), np.float64)), **common)
            self.rownorms.append((layer, layer.eps))
        elif s.kind == OP_RES_BEGIN:
            end = next(j for j, e in enumerate(plan.steps) if e.begin == i)
            prog.add_residual_begin(width=width, dX=self.dX_addr[i],
                                    skip_grad=self.dY_addr[end], **common)
        else:
            skip = plan.steps[s.begin].src
            prog.add_residual_end(width=width, Y=s.Y.ctypes.data, dY=self.dY_addr[i],
                                  skip=0 if skip < 0 else plan.steps[skip].Y.ctypes.data,
                                  **common)

    def op_names(self):
        """The program's ops in order, by name (``codes.STEP_KINDS``'s without the "OP_",
        lower case): what one step runs, e.g. ["res_begin", "rownorm", "dense", ...]."""
        names = {v: k[3:].lower() for k, v in STEP_KINDS.items() if k.startswith("OP_")}
        return [names[kind] for kind in self.prog.op_kinds()]

    def _scratch(self, size, dtype):
        a = np.empty(max(int(size), 1), dtype)
        self.keep.append(a)
        return a


def _default_loss(loss):
    """The loss computes what the program computes: the plain mean, no weights, no label
    smoothing."""
    return (getattr(loss, "reduction", "mean") == "mean"
            and getattr(loss, "weight", None) is None
            and getattr(loss, "pos_weight", None) is None
            and not getattr(loss, "label_smoothing", 0.0))


def _signature(optimizer):
    """What decides whether the program's gradients and updates still apply: which
    parameters are frozen, where the arenas are, which parameters the optimizer holds."""
    # (adding a param group re-packs: the generation moves)
    return Parameter.freeze_version, ParameterArena.generation, len(optimizer.param_groups)


def _owns_gradients(plan, optimizer):
    """The optimizer holds exactly the plan's trainable parameters: its zero_grad zeroes just
    what the backward writes, so the backward may overwrite instead."""
    held = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = [p for p, _, _ in plan.params if p.requires_grad]
    return (all(p.requires_grad for p in held) and len(held) == len(trainable)
            and {id(p) for p in held} == {id(p) for p in trainable})

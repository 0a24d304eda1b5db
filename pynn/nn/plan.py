"""A Sequential's compiled execution plan: validated once per (input shape, dtype), run many times.

The eager path validates every operand of every kernel call and allocates every output. A plan
does that once: when a ``Sequential`` of built-in layers first sees an input shape, it checks
the layers' shapes against each other, allocates every intermediate output, statistics and
gradient buffer, and from then on its ``forward``/``backward`` check only the one array the
caller hands in (type, dtype, shape, layout) and call the backend's loops (the ``_<op>``
methods both backends implement) on the prepared buffers. Same loops, same fusion, same results
as the eager path; no allocation per step except the arrays returned to the caller, which are
copies (a caller keeping an output across steps must not see it change).

A plan never guesses: any module it does not know (a custom module, a container other than a
Sequential or a Residual, a Standardizer) makes ``build`` return None and the container runs
eagerly. Nested Sequentials are flattened into the plan's steps, and a Residual becomes its
block's steps between a begin and an end step (``OP_RES_BEGIN``: its input, kept; the end adds
it to the block's output, and the backward adds the skip's gradient to the block's input
gradient). It re-checks before
each call that the parameters still live where it recorded them (an optimizer may re-pack
them) and is rebuilt when they moved, when the thread count or a backend changed, or when
pynn.tune's choices may have changed (``tune.generation()``). Building a plan decides its dense
products' strategies (``tune``: timed once per product in "measure" mode, biggest first), so its
first step does not pay for it; a CSR plan's first Dense is the sparse product, never timed.

This file is what every call does with a plan (``fits``, ``check_grad``, ``forward``,
``backward``) and ``build``, its entry; recording it from the container is its base class's,
``PlanRecording`` (pynn/nn/_plan_record.py): apart because the one runs on every step and the
other once per input shape and model change, and each changes for its own reasons.
"""
import numpy as np

from .. import _threads
from .. import backend as _backends
from ..tune import _planner as _tune
from ..backend._arrays import FLOAT_DTYPES, as_kernel_array
from ..backend._sparse import is_sparse
from ..backend.codes import (IDENTITY, OP_ACT, OP_BN, OP_DENSE, OP_RES_BEGIN, OP_RES_END,
                             OP_ROWNORM, OP_SOFTMAX, dropout_key, dropout_threshold)
from ._layer_checks import check_input
from ._plan_record import PlanRecording, _Mismatch, _add_steps, _backend_key
from .module import Module
from .parameter import ParameterArena


def build(seq, X):
    """The plan of Sequential ``seq`` for inputs shaped like ``X``, or None when some step is
    not a built-in layer (the container then runs eagerly). A CSR ``X`` gets a plan for the
    compiled training step only (``Plan.sparse``): its first step must be a Dense."""
    if X.ndim != 2 or X.dtype not in FLOAT_DTYPES:
        return None
    steps = []
    if not _add_steps(seq._steps(), steps) or not steps:
        return None
    sparse = is_sparse(X)
    if sparse and steps[0].kind != OP_DENSE:
        return None  # only a Dense takes sparse data: the eager path says so
    try:
        return Plan(seq, steps, X.shape, X.dtype, sparse)
    except _Mismatch:
        return None  # the eager path raises the layer's own error


class Plan(PlanRecording):
    """Prepared buffers and kernel calls for one input shape and dtype (see the module doc)."""

    # -- validity -------------------------------------------------------------------------
    def fits(self, X):
        """X is an input this plan was built for, and nothing the plan recorded has moved."""
        if self.sparse:
            if not (is_sparse(X) and X.format == "csr" and X.shape == self.shape
                    and X.dtype == self.dtype):
                return False
        elif type(X) is not np.ndarray or X.shape != self.shape or X.dtype != self.dtype or not (
                X.flags.c_contiguous and X.flags.aligned):
            return False  # (the eager path copies such an X before a kernel reads it)
        if _threads.get_num_threads() != self.n_threads:
            return False
        if _tune.generation() != self.tune_generation:
            return False  # a strategy may have changed: the compiled steps hold them
        if Module.registry_version != self.registry_version:
            return False  # some layer now holds other parameters or buffers
        if ParameterArena.generation != self.generation:
            # parameters move only when some arena packs: look, then remember it was fine
            for (p, data, grad) in self.params:
                if p._data is not data or p._grad is not grad:
                    return False
            self.generation = ParameterArena.generation
        for m, rm, rv in self.buffers:
            # the buffer table itself: Module.__getattr__ costs ~0.5 us an attribute, per step
            table = m._buffers
            if table["running_mean"] is not rm or table["running_var"] is not rv:
                return False
        if (Module.backend_version != self.backend_version
                or _backends._current != self.backend_key[0]):
            if _backend_key(self.steps) != self.backend_key:
                return False
            self.backend_version = Module.backend_version  # assigned, but the same names
        for act, param in self.act_params:
            if act.param != param:
                return False  # a slope or alpha was changed after the plan was built
        return True

    def check_grad(self, dY):
        """The gradient handed to ``backward``: an array shaped like the output, made a plain,
        C-contiguous, aligned ndarray (``as_kernel_array``)."""
        check_input(self.steps[-1].layer, dY, "dY", features=self.out_width, dtype=self.dtype)
        if dY.shape[0] != self.shape[0]:
            raise ValueError(f"dY must have shape {(self.shape[0], self.out_width)} to match the "
                             f"forward's output, got {dY.shape}")
        return as_kernel_array(dY)

    # -- running ----------------------------------------------------------------------------
    def forward(self, X):
        """act(...(X)) through every step into the prepared buffers; returns a copy."""
        self.X = X
        X0, steps = X, self.steps
        for s in steps:
            layer, be = s.layer, s.be
            kind = s.kind
            if kind == OP_RES_BEGIN:
                continue  # its block reads its input
            if kind == OP_RES_END:
                skip = steps[s.begin].src
                np.add(X0 if skip < 0 else steps[skip].Y, X, out=s.Y)  # the eager X + out
            elif kind == OP_ROWNORM:
                be._rownorm_forward(X, s.data(s.w), s.data(s.b), layer.kernel_eps(), s.Y,
                                    s.mean, s.invstd, s.nt)
            elif kind == OP_DENSE:
                b = s.b
                be._dense_forward(X, s.w._data, None if b is None else b._data, s.Y,
                                  s.code, s.param, s.nt, s.Z)
            elif kind == OP_BN:
                s.eval_ran = not layer.training
                if layer.training:
                    if X.shape[0] < 2:
                        layer._train_apply(X)  # raises the layer's own error
                    be._batchnorm_forward_train(
                        X, s.w._data, s.b._data, layer.running_mean, layer.running_var,
                        layer._counter().next_momentum(), layer.eps, s.Y, s.mean, s.invstd,
                        s.code, s.param, s.nt)
                else:
                    be._batchnorm_forward_eval(
                        X, s.w._data, s.b._data, layer.running_mean,
                        layer.running_var, layer.eps, s.Y, s.code, s.param, s.nt)
            elif kind == OP_ACT:
                be._activation_forward(X.reshape(-1), s.Y.reshape(-1), s.code, s.param, s.nt)
            elif kind == OP_SOFTMAX:
                be._softmax_forward(X, s.Y, s.nt)
            else:  # dropout
                s.dropped = layer.training and layer.p > 0.0
                if not s.dropped:
                    s.Y[...] = X
                else:
                    be._dropout_forward(
                        X.reshape(-1), dropout_threshold(layer.p), 1.0 / (1.0 - layer.p),
                        dropout_key(layer.seed, layer.step), s.Y.reshape(-1),
                        s.mask.reshape(-1), s.nt)
                    layer.step += 1
            X = s.Y
        return X.copy()

    def backward(self, dY, input_grad):
        """Gradients into the parameters' .grad; dX (a copy) or None."""
        X0, steps = self.X, self.steps
        skip_grads = {}  # a residual's begin index: the gradient reaching its output
        for i in range(len(steps) - 1, -1, -1):
            s = steps[i]
            layer, be = s.layer, s.be
            X = X0 if s.src < 0 else steps[s.src].Y
            need = input_grad or i > 0
            dX = s.dX if need else None
            kind = s.kind
            if kind == OP_RES_END:
                skip_grads[s.begin] = dY
                continue  # the block's output gets the same gradient: dX is dY
            if kind == OP_ROWNORM:
                dX = s.dX  # the kernel always computes dX; the sums need the same pass
                be._rownorm_backward(dY, X, s.data(s.w), s.mean, s.invstd,
                                     grad_of(s.w), grad_of(s.b), dX, s.nt)
            elif kind == OP_RES_BEGIN:
                if not need:
                    return None
                np.add(skip_grads.pop(i), dY, out=dX)  # the eager dY + the block's dX
            elif kind == OP_DENSE:
                w, b = s.w, s.b
                dW = w._grad if w._requires_grad else None
                db = b._grad if b is not None and b._requires_grad else None
                if dW is None and db is None and dX is None:
                    return None
                be._dense_backward(dY, X, w._data, None if s.code == IDENTITY else s.Y, dW, db,
                                   dX, s.code, s.param, s.nt, s.Z)
            elif kind == OP_BN:
                if s.eval_ran:  # rare: backward through running statistics, done in NumPy
                    dX = layer._grad(dY, X, s.Y, None, None, _act_name(s), s.param, need)
                else:
                    g, bt = s.w, s.b
                    dX = s.dX  # the kernel always computes dX; the sums need the same pass
                    be._batchnorm_backward(
                        dY, X, g._data, s.mean, s.invstd,
                        None if s.code == IDENTITY else s.Y,
                        g._grad if g._requires_grad else None,
                        bt._grad if bt._requires_grad else None, dX, s.code, s.param, s.nt)
            elif not need:
                return None
            elif kind == OP_ACT:
                be._activation_backward(dY.reshape(-1), X.reshape(-1), s.Y.reshape(-1),
                                        dX.reshape(-1), s.code, s.param, s.nt)
            elif kind == OP_SOFTMAX:
                be._softmax_backward(dY, s.Y, dX, s.nt)
            elif s.dropped:
                be._dropout_backward(dY.reshape(-1), s.mask.reshape(-1), 1.0 / (1.0 - layer.p),
                                     dX.reshape(-1), s.nt)
            else:
                dX[...] = dY
            if not need:
                return None
            dY = dX
        return dY.copy()


def grad_of(param):
    """The gradient a backward accumulates into: None for a frozen (or missing) parameter."""
    return param._grad if param is not None and param._requires_grad else None


def _act_name(step):
    return None if step.act is None else step.act.activation

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
"""
import numpy as np

from .. import _threads
from .. import backend as _backends
from ..tune import _planner as _tune
from ..backend._arrays import FLOAT_DTYPES, as_kernel_array
from ..backend._sparse import is_sparse
from ..backend.codes import (IDENTITY, OP_ACT, OP_BN, OP_DENSE, OP_DROPOUT, OP_RES_BEGIN,
                             OP_RES_END, OP_ROWNORM, OP_SOFTMAX, activation_code, dropout_key,
                             dropout_threshold)
from .activations import Softmax, fusable, is_plain_activation, needs_preactivation
from .batchnorm import BatchNorm
from .dense import Dense
from .dropout import Dropout
from ._layer_checks import check_input
from .module import Module
from .normalization import LayerNorm, RMSNorm
from .parameter import ParameterArena


class _Step:
    """One kernel call of the plan and its buffers."""

    __slots__ = ("kind", "layer", "act", "code", "param", "Y", "Z", "dX", "mean", "invstd",
                 "mask", "nt", "eval_ran", "dropped", "be", "w", "b", "src", "in_width",
                 "begin")

    def __init__(self, kind, layer, act, code, param):
        self.kind, self.layer, self.act, self.code, self.param = kind, layer, act, code, param
        # Z: a Dense's pre-activation, kept for an activation whose derivative needs it
        self.Y = self.Z = self.dX = self.mean = self.invstd = self.mask = None
        self.be = layer.backend
        # the layer's parameters (weight/gamma, bias/beta), looked up once
        self.w = layer._parameters.get("weight")
        self.b = layer._parameters.get("bias")
        self.nt = 1
        self.eval_ran = False  # BatchNorm ran with running statistics in the last forward
        self.dropped = False  # Dropout was active (training, p > 0) in the last forward
        self.src = -1  # the step whose Y is this step's input (-1: the batch)
        self.in_width = 0
        self.begin = None  # a residual's end: its begin step's index

    def data(self, param):
        """The array of ``param`` (self.w or self.b), or None where the layer has none."""
        return None if param is None else param._data



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


def _add_steps(entries, steps):
    """Append the steps of a container's step list ``entries`` (``Sequential._steps()``),
    nested Sequentials flattened and Residuals between their marker steps; False when some
    module has no step."""
    for _, layer, act in entries:
        cls = type(layer)
        role = plan_role(layer)
        if role == "sequence":
            if not _add_steps(layer._steps(), steps):
                return False
            continue
        if role == "residual":
            block = layer.block
            inner = (block._steps() if plan_role(block) == "sequence"
                     else [(None, block, None)])
            steps.append(_Step(OP_RES_BEGIN, layer, None, IDENTITY, 0.0))
            if not _add_steps(inner, steps):
                return False
            steps.append(_Step(OP_RES_END, layer, None, IDENTITY, 0.0))
            continue
        # an activation whose derivative needs its input runs as a step of its own (unless a
        # Dense keeps its pre-activation for it: needs_preactivation)
        into = "dense" if cls is Dense else "batchnorm"
        fused = act if act is not None and fusable(act, into)[0] is not None else None
        if act is None or fused is not None:
            modules = [(layer, fused)]
        else:
            modules = [(layer, None), (act, None)]
        for module, with_act in modules:
            step = _step_for(module, with_act)
            if step is None:
                return False
            steps.append(step)
    return True


def plan_role(module):
    """How plans flatten ``module``: "sequence" (a Sequential: its steps), "residual" (its
    block between two marks), or None. Declared by the class itself (``_plan_role`` in its own
    namespace), never inherited: a subclass may run other code. (The containers import this
    module, so it names them by this attribute, not by class.)"""
    return type(module).__dict__.get("_plan_role")


def _step_for(layer, act):
    """The step running ``layer`` (a Dense's or BatchNorm's activation layer ``act`` in its
    epilogue), or None when the plan has no step for it."""
    cls = type(layer)
    if cls is BatchNorm and "_stats_reducer" in layer.__dict__:
        return None  # synchronized statistics: the layer's own (eager) forward
    if cls is Dense or cls is BatchNorm:
        kind = OP_DENSE if cls is Dense else OP_BN
        name, param = (None, None) if act is None else (act.activation, act.param)
    elif is_plain_activation(layer):
        kind, name, param = OP_ACT, layer.activation, layer.param
    elif cls is Softmax:
        kind, name, param = OP_SOFTMAX, None, None
    elif cls is Dropout:
        kind, name, param = OP_DROPOUT, None, None
    elif cls is LayerNorm or cls is RMSNorm:
        kind, name, param = OP_ROWNORM, None, None
    else:
        return None
    return _Step(kind, layer, act, *activation_code(name, param))


class Plan:
    """Prepared buffers and kernel calls for one input shape and dtype (see the module doc)."""

    def __init__(self, seq, steps, shape, dtype, sparse=False):
        self.structure = seq._steps()  # the container's step list this plan was built from
        self.steps = steps
        # for CSR batches: only a compiled training step runs it (Sequential._compiled_for);
        # its first Dense reads the batch's arrays and has no dX buffer
        self.sparse = sparse
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.n_threads = _threads.get_num_threads()
        self.backend_key = _backend_key(steps)
        self.backend_version = Module.backend_version
        n, width = shape
        src, begins = -1, []  # the step whose Y the next step reads; open residuals' begins
        for i, s in enumerate(steps):
            layer = s.layer
            s.src, s.in_width = src, width
            src = i
            if s.kind == OP_RES_BEGIN:
                begins.append(i)
                src = s.src  # its block reads its input: it has no Y
                continue
            if s.kind == OP_RES_END:
                s.begin = begins.pop()
                if steps[s.begin].in_width != width:
                    raise _Mismatch  # the Residual's own error names the shapes
                s.nt = _threads.threads_for(n * width)
            elif s.kind == OP_ROWNORM:
                if layer.num_features != width or layer.dtype != self.dtype:
                    raise _Mismatch
                s.mean = np.empty(n, np.float64) if type(layer) is LayerNorm else None
                s.invstd = np.empty(n, np.float64)
                s.nt = _threads.threads_for(n * width)
            elif s.kind == OP_DENSE:
                if layer.in_features != width or layer.dtype != self.dtype:
                    raise _Mismatch
                width = layer.out_features
                s.nt = self.n_threads
                layer._auto_init = False  # weights in use: no container re-draws them now
                if s.act is not None and needs_preactivation(s.act):
                    s.Z = np.empty((n, width), self.dtype)
            elif s.kind == OP_BN:
                if layer.num_features != width or layer.dtype != self.dtype:
                    raise _Mismatch
                s.mean = np.empty(width, np.float64)
                s.invstd = np.empty(width, np.float64)
                s.nt = _threads.threads_for(n * width)
            else:
                s.nt = _threads.threads_for(n * width)
                if s.kind == OP_DROPOUT:
                    s.mask = np.empty((n, width), np.uint8)
            s.Y = np.empty((n, width), self.dtype)
        self.out_width = width
        # dX buffers: step i's dX is the dY of the step before (step 0's only when the caller
        # wants it); a residual's end passes its dY down as its dX
        for s in steps[1:] if sparse else steps:
            if s.kind != OP_RES_END:
                s.dX = np.empty((n, s.in_width), self.dtype)
        # (parameter, its data, its grad) of every parameter of the container, in its order
        self.params = [(p, p._data, p._grad) for p in seq.parameters()]
        self.generation = ParameterArena.generation
        self.act_params = []  # (activation layer, its parameter when the plan was built)
        for s in steps:
            act = s.act if s.act is not None else (s.layer if s.kind == OP_ACT else None)
            if act is not None and act.param is not None:
                self.act_params.append((act, act.param))
        self.registry_version = Module.registry_version
        self.buffers = [(m, m.running_mean, m.running_var) for m in
                        (s.layer for s in steps if s.kind == OP_BN)]
        self.X = None
        # compiled training steps on this plan, by (loss, optimizer): pynn.nn.train_step
        self.train_steps = {}
        self.tune_generation = _tune.generation()
        _tune.prepare(self.product_keys())

    def product_keys(self):
        """The tuner's keys of the plan's dense products on the compiled kernels (their calls
        in ``forward`` and, training, ``backward`` without the first step's dX): not a CSR
        plan's first step, whose product is the sparse one."""
        n, keys = self.shape[0], []
        for i, s in enumerate(self.steps):
            if s.kind != OP_DENSE or (self.sparse and i == 0) or s.be.name != "cython":
                continue
            k, m = s.in_width, s.Y.shape[1]
            keys.append(_tune.forward_key(n, k, m, self.dtype, s.nt))
            keys.append(_tune.backward_key(n, m, k, self.dtype, s.nt, s.w._requires_grad,
                                           i > 0))
        return keys

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


def _backend_key(steps):
    """What decides every step's backend: the global choice and each layer's own."""
    return _backends._current, tuple([s.layer.backend_name for s in steps])


def grad_of(param):
    """The gradient a backward accumulates into: None for a frozen (or missing) parameter."""
    return param._grad if param is not None and param._requires_grad else None


def _act_name(step):
    return None if step.act is None else step.act.activation


class _Mismatch(Exception):
    """A layer does not take the width or dtype before it: no plan (the eager path then raises
    the layer's own error)."""

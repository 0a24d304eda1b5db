"""How a Sequential's plan is recorded: the container's layers walked into steps (nested
Sequentials flattened, a Residual's block between its marks, an activation fused into the step
before it where it can be), then every step's buffers allocated and checked against the step
before (``PlanRecording.__init__``), and what ``fits`` will check before each call (the
parameters, buffers, backends and activation parameters as they were). ``Plan``
(pynn/nn/plan.py) inherits it and holds what every call does with the steps (``fits``,
``forward``, ``backward``): this part runs once per input shape and model change, that one on
every step, and a new kind of layer changes this part first."""
import numpy as np

from .. import _threads
from .. import backend as _backends
from ..tune import _planner as _tune
from ..backend.codes import (IDENTITY, OP_ACT, OP_BN, OP_DENSE, OP_DROPOUT, OP_RES_BEGIN,
                             OP_RES_END, OP_ROWNORM, OP_SOFTMAX, activation_code)
from .activations import Softmax, fusable, is_plain_activation, needs_preactivation
from .batchnorm import BatchNorm
from .dense import Dense
from .dropout import Dropout
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


class PlanRecording:
    """``Plan``'s construction (see the module doc): its steps' buffers, the threads, the
    tuner's strategies prepared, and what ``fits`` compares against."""

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


def _backend_key(steps):
    """What decides every step's backend: the global choice and each layer's own."""
    return _backends._current, tuple([s.layer.backend_name for s in steps])


class _Mismatch(Exception):
    """A layer does not take the width or dtype before it: no plan (the eager path then raises
    the layer's own error)."""

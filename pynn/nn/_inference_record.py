"""How a Sequential's inference program is recorded: its layers walked into ops (``build``),
what ``holds`` will check before each call (``_record``) and the ops handed to the C program
(``_compiled``). ``InferencePlan`` (pynn/nn/inference.py) inherits it and holds what every
``predict`` call does with the ops (check, choose, run): this part runs once per model change,
that one on every call, and a new kind of layer changes this part alone."""
import numpy as np

from .. import _threads
from .. import backend as _backends
from ..backend.codes import IDENTITY, activation_code, kernel_params
from .activations import Softmax, fusable, is_plain_activation
from .batchnorm import BatchNorm
from .dense import Dense
from .dropout import Dropout
from .module import Module
from .normalization import LayerNorm, RMSNorm
from .parameter import ParameterArena
from ._plan_record import plan_role
from .standardizer import Standardizer


class _Op:
    """One op of the program: ``kind`` ("standardize", "dense", "batchnorm", "activation",
    "softmax", "rownorm", "res_begin", "res_end"), its layer (a mark's: its Residual), the
    activation run in its epilogue (``code``, ``param``, ``act``: the activation layer or
    None), its output width; a dense op's ``pre``/``post``: the index of the
    Standardizer op before it and of the BatchNorm op after it that fold into it (or -1); a
    Standardizer or BatchNorm op's ``foldable``."""

    __slots__ = ("kind", "layer", "code", "param", "act", "width", "pre", "post", "foldable")

    def __init__(self, kind, layer, width, code=IDENTITY, param=0.0, act=None):
        self.kind, self.layer, self.width = kind, layer, width
        self.code, self.param, self.act = code, param, act
        self.pre = self.post = -1
        self.foldable = False


class InferenceRecording:
    """``InferencePlan.build`` and ``_record`` (see the module doc)."""

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, seq):
        """The program of ``seq``, or None when a layer is not a built-in one or the layers do
        not fit together (``predict`` then runs each layer's own ``infer``, which raises the
        layer's own error)."""
        dtype = seq.dtype
        layers = _flat_layers(seq.layers)
        ops, width, i, opened = [], None, 0, []  # opened: the open residuals' widths
        while i < len(layers):
            layer = layers[i]
            cls_ = type(layer)
            if cls_ in (Standardizer, Dense, BatchNorm, LayerNorm, RMSNorm):
                n_in = layer.num_features if cls_ is not Dense else layer.in_features
                if layer.dtype != dtype or (width is not None and n_in != width):
                    return None
                if not ops:
                    in_width = n_in
            if cls_ is Standardizer:
                if layer.mean is None:
                    return None  # not fitted: its infer says so
                op = _Op("standardize", layer, layer.num_features)
                op.foldable = type(layers[i + 1]) is Dense if i + 1 < len(layers) else False
                i += 1
            elif cls_ is Dense:
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                op = _Op("dense", layer, layer.out_features)
                if ops and ops[-1].foldable and ops[-1].kind == "standardize":
                    op.pre = len(ops) - 1
                if type(nxt) is BatchNorm and nxt.num_features == layer.out_features:
                    op.post = len(ops) + 1  # the activation runs after BatchNorm
                    i += 1
                else:
                    op.code, op.param, op.act, i = _epilogue(layers, i + 1, "dense")
            elif cls_ is BatchNorm:
                op = _Op("batchnorm", layer, layer.num_features)
                op.code, op.param, op.act, i = _epilogue(layers, i + 1)
                op.foldable = bool(ops) and ops[-1].post == len(ops)
            elif cls_ in (LayerNorm, RMSNorm):
                op = _Op("rownorm", layer, layer.num_features)
                i += 1
            elif cls_ is _Mark:
                if width is None:
                    return None  # starts with a residual: its width comes from the data
                if layer.begin:
                    opened.append(width)
                elif opened.pop() != width:
                    return None  # the block changes the width: Residual.infer's error
                op = _Op("res_begin" if layer.begin else "res_end", layer.residual, width)
                i += 1
            elif is_plain_activation(layer) or cls_ is Softmax:
                if width is None:
                    return None  # starts with an activation: its width comes from the data
                kind = "softmax" if cls_ is Softmax else "activation"
                op = _Op(kind, layer, width)
                if kind == "activation":
                    op.code, op.param = activation_code(layer.activation, layer.param)
                    op.act = layer
                i += 1
            else:
                return None
            ops.append(op)
            width = op.width
        if not ops:
            return None
        if any(not _readable(a, dtype) for op in ops for a in _arrays(op)):
            return None  # an array assigned by hand the kernels cannot read: infer says why
        return cls(seq, ops, in_width)

    def _record(self, seq):
        """What ``holds`` checks: everything the program found by looking that could be
        replaced without a write into an array it reads."""
        self.registry_version = Module.registry_version
        self.backend_version = Module.backend_version
        self.backend_current = _backends._current
        self.generation = ParameterArena.generation
        self.params = [(p, p._data) for op in self.ops if op.kind not in _MARKS
                       for p in op.layer.parameters()]
        self.buffers = [(op.layer._buffers, name, op.layer._buffers[name])
                        for op in self.ops for name in _BUFFERS.get(op.kind, ())]
        self.settings = [(op.layer, "eps", op.layer.eps) for op in self.ops
                         if op.kind in ("batchnorm", "rownorm")]
        # (an activation's name too: GELU's form is an attribute of the layer)
        self.settings += [(op.act, name, getattr(op.act, name)) for op in self.ops
                          if op.act is not None for name in ("activation", "param")]
        self.backends = [None if op.kind in _MARKS else op.layer.backend for op in self.ops]


# The buffers each kind of op reads (the parameters are the layer's own, all of them).
_BUFFERS = {"standardize": ("mean", "scale"), "batchnorm": ("running_mean", "running_var")}
# The ops that mark where a Residual's block begins and ends (they read no arrays).
_MARKS = ("res_begin", "res_end")


class _Mark:
    """Where a Residual's block begins or ends in the flattened layers."""

    def __init__(self, residual, begin):
        self.residual, self.begin = residual, begin


def _flat_layers(layers):
    """The layers as one list: Dropout left out (the identity in eval mode), nested
    Sequentials flattened, a Residual's block between its begin and end marks."""
    flat = []
    for layer in layers:
        if type(layer) is Dropout:
            continue
        role = plan_role(layer)
        if role == "sequence":
            flat += _flat_layers(layer.layers)
        elif role == "residual":
            block = layer.block
            inner = block.layers if plan_role(block) == "sequence" else [block]
            flat += [_Mark(layer, True), *_flat_layers(inner), _Mark(layer, False)]
        else:
            flat.append(layer)
    return flat


def _arrays(op):
    """The arrays op reads."""
    if op.kind in _MARKS:
        return []
    layer = op.layer
    arrays = [p._data for p in layer.parameters()]
    return arrays + [layer._buffers[name] for name in _BUFFERS.get(op.kind, ())]


def _readable(a, dtype):
    """``a`` can be read in place by the kernels (a buffer may have been assigned by hand)."""
    return (type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.aligned)


def _epilogue(layers, i, into="batchnorm"):
    """(activation code, param, activation layer, next index) when layers[i] is an activation
    that can run in the epilogue of the op ``into`` before it; (IDENTITY, 0.0, None, i)
    otherwise. (No backward here: a Dense runs the smooth kinds in its epilogue without
    keeping its pre-activation.)"""
    act = layers[i] if i < len(layers) else None
    if is_plain_activation(act):
        name, param = fusable(act, into)
        if name is not None:
            return (*activation_code(name, param), act, i + 1)
    return IDENTITY, 0.0, None, i


def _compiled(plan):
    """The plan as one C program (pynn._kernels.inference), or None when a layer is not on the
    Cython backend."""
    from ..backend.cython import CythonBackend

    if any(be is not None and type(be) is not CythonBackend for be in plan.backends):
        return None
    from .._kernels import inference as _kernel

    program = _kernel.InferenceProgram(plan.dtype == np.float32, len(plan.ops),
                                       _threads.PARALLEL_MIN_ELEMENTS)
    width = plan.in_width
    for op in plan.ops:
        layer = op.layer
        param, param2 = kernel_params(op.param)  # (the activation's two scalars)
        if op.kind == "dense":
            bias = layer.bias
            program.add_dense(act=op.code, param=param, param2=param2, k=width, m=op.width,
                              W=layer.weight._data.ctypes.data,
                              b=0 if bias is None else bias._data.ctypes.data,
                              pre=op.pre, post=op.post)
        elif op.kind == "batchnorm":
            program.add_batchnorm(act=op.code, param=param, param2=param2, features=op.width,
                                  eps=layer.eps, gamma=layer.weight._data.ctypes.data,
                                  beta=layer.bias._data.ctypes.data,
                                  running_mean=layer.running_mean.ctypes.data,
                                  running_var=layer.running_var.ctypes.data,
                                  foldable=op.foldable)
        elif op.kind == "standardize":
            program.add_standardize(width=op.width, mean=layer.mean.ctypes.data,
                                    scale=layer.scale.ctypes.data, foldable=op.foldable)
        elif op.kind == "rownorm":
            weight, bias = layer._parameters.get("weight"), layer._parameters.get("bias")
            program.add_rownorm(features=op.width, eps=layer.kernel_eps(),
                                gamma=0 if weight is None else weight._data.ctypes.data,
                                beta=0 if bias is None else bias._data.ctypes.data,
                                center=type(layer) is LayerNorm)
        elif op.kind == "res_begin":
            program.add_residual_begin(width=op.width)
        elif op.kind == "res_end":
            program.add_residual_end(width=op.width)
        elif op.kind == "activation":
            program.add_activation(act=op.code, param=param, param2=param2, width=op.width)
        else:
            program.add_softmax(width=op.width)
        width = op.width
    return program

"""A Sequential's inference program: the eval-mode forward of one ``predict`` call, compiled.

For many rows, BatchNorm (running statistics) is folded into the Dense before it and a
Standardizer into the Dense after it; for a few rows, where folding (a float64 copy of every
folded weight) would cost more than the rows, the layers run as they are, reading the weights
and statistics in place. LayerNorm and RMSNorm run their kernel; nested Sequentials are
flattened and a Residual's block runs between two marks (its input copied aside at the first,
added to the block's output at the second). Activations run in the epilogues, and each batch's
result is written straight into the output. Nothing is kept between calls, so a prediction is
never stale. See ``InferencePlan``.
"""
import numpy as np

from .. import _threads
from ..backend._arrays import as_kernel_array
from ..backend.codes import (IDENTITY, OP_ACT, OP_BN, OP_DENSE, OP_RES_BEGIN, OP_RES_END,
                             OP_ROWNORM, OP_SOFTMAX, activation_code)
from .activations import Softmax, fusable, is_plain_activation
from .batchnorm import BatchNorm
from .dense import Dense
from .dropout import Dropout
from .normalization import LayerNorm, RMSNorm
from .plan import plan_role
from .standardizer import Standardizer


# Ops of an unfolded program besides the step kinds it shares with the plans: a Dense reading
# its layer's arrays at run time, and a Standardizer.
_DENSE_LIVE, _STANDARDIZE = "dense-live", "standardize"


class InferencePlan:
    """The eval-mode program of a Sequential for one ``predict`` call.

    Folded (``fold=True``, for many rows): BatchNorm (running statistics) is folded into the
    Dense before it, and a Standardizer into the Dense after it (W' = W * s per output row,
    b' = (b - mean) * s + beta; the columns for a Standardizer), computed in float64 and rounded
    once. Unfolded (for a few rows): each layer runs its own kernel on its live arrays, the
    layer-by-layer eval forward. Either way activations run in the epilogues and Dropout is the
    identity. Buffers for one batch are allocated per call and every batch's result is written
    straight into the output. Nothing is written on the model, so any number of threads may
    predict with it at once.
    """

    def __init__(self, ops, dtype, in_width, out_width):
        self.ops, self.dtype = ops, dtype
        self.in_width, self.out_width = in_width, out_width

    @classmethod
    def for_rows(cls, seq, n):
        """The program for a call on ``n`` rows: unfolded unless folding costs less than the
        rows (an estimate in elements touched: every folded weight copied, against the
        normalizations' extra passes over n rows), so always for a net with nothing to fold;
        None as ``build``."""
        program = cls.build(seq, fold=False)
        if program is None or n * program.unfolded_row_cost <= program.fold_cost:
            return program
        return cls.build(seq, fold=True)

    @classmethod
    def build(cls, seq, fold=True):
        """The program of ``seq`` now (its current weights), or None when a layer is not a
        built-in one (then ``predict`` runs each layer's own ``infer``)."""
        layers = _flat_layers(seq.layers)
        dtype = seq.dtype
        ops, width, in_width = [], None, None
        fold_cost = row_cost = 0  # see for_rows
        pending = None  # a Standardizer's (mean, scale) waiting for the next Dense
        opened = []  # the widths of the residuals begun and not yet ended
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if type(layer) is Standardizer and layer.mean is not None and type(nxt) is Dense:
                if layer.dtype != dtype:
                    return None
                in_width = in_width or layer.num_features
                fold_cost += nxt.weight._data.size
                row_cost += layer.num_features
                i += 1
                if fold:
                    pending = (layer.mean.astype(np.float64), layer.scale.astype(np.float64))
                else:
                    ops.append((_STANDARDIZE, None, layer, None, IDENTITY, 0.0,
                                layer.num_features))
                    width = layer.num_features
                continue
            if type(layer) is Dense:
                if layer.dtype != dtype or (width is not None and layer.in_features != width):
                    return None
                i += 1
                if not fold:
                    if type(nxt) is BatchNorm and nxt.num_features == layer.out_features:
                        fold_cost += layer.weight._data.size
                        row_cost += nxt.num_features
                        code, param = IDENTITY, 0.0  # the activation runs after BatchNorm
                    else:
                        code, param, i = _epilogue(layers, i, "dense")
                    in_width = in_width or layer.in_features
                    width = layer.out_features
                    ops.append((_DENSE_LIVE, layer.backend, layer, None, code, param, width))
                    continue
                W = layer.weight._data.astype(np.float64)
                b = (np.zeros(layer.out_features) if layer.bias is None
                     else layer.bias._data.astype(np.float64))
                if pending is not None:  # (X - mean) / scale, then W: fold into the columns
                    mean, scale = pending
                    W = W / scale
                    b = b - W @ mean
                    pending = None
                if type(nxt) is BatchNorm and nxt.num_features == layer.out_features:
                    s = nxt.weight._data.astype(np.float64) / np.sqrt(
                        nxt.running_var.astype(np.float64) + nxt.eps)
                    W = W * s[:, None]
                    b = (b - nxt.running_mean.astype(np.float64)) * s + \
                        nxt.bias._data.astype(np.float64)
                    i += 1
                code, param, i = _epilogue(layers, i, "dense")
                in_width = in_width or layer.in_features
                width = layer.out_features
                ops.append((OP_DENSE, layer.backend, np.ascontiguousarray(W, dtype),
                            np.ascontiguousarray(b, dtype), code, param, width))
                continue
            if pending is not None:
                return None
            if type(layer) is _Mark:
                i += 1
                if layer.begin:
                    if width is None:
                        return None  # starts with a residual: its width comes from the data
                    opened.append(width)
                elif not opened or opened.pop() != width:
                    return None  # the block changes the width: Residual.infer's error
                ops.append((OP_RES_BEGIN if layer.begin else OP_RES_END, None, None, None,
                            IDENTITY, 0.0, width))
            elif type(layer) in (LayerNorm, RMSNorm):
                if layer.dtype != dtype or (width is not None and layer.num_features != width):
                    return None
                in_width = in_width or layer.num_features
                width = layer.num_features
                ops.append((OP_ROWNORM, layer.backend, layer, None, IDENTITY, 0.0, width))
                i += 1
            elif type(layer) is BatchNorm:
                if layer.dtype != dtype or (width is not None and layer.num_features != width):
                    return None
                code, param, i = _epilogue(layers, i + 1)
                in_width = in_width or layer.num_features
                width = layer.num_features
                ops.append((OP_BN, layer.backend, layer, None, code, param, width))
            elif is_plain_activation(layer):
                code, param = activation_code(layer.activation, layer.param)
                ops.append((OP_ACT, layer.backend, None, None, code, param, width))
                i += 1
            elif type(layer) is Softmax:
                ops.append((OP_SOFTMAX, layer.backend, None, None, IDENTITY, 0.0, width))
                i += 1
            else:
                return None
        if not ops or ops[0][6] is None or in_width is None or opened:
            return None  # starts with an activation: its width comes from the data
        program = cls(ops, dtype, in_width, width)
        program.fold_cost, program.unfolded_row_cost = fold_cost, row_cost
        return program

    def fits(self, X):
        return (type(X) is np.ndarray and X.ndim == 2 and X.dtype == self.dtype
                and X.shape[1] == self.in_width)

    def run(self, X, batch_size):
        """Outputs for every row of X, ``batch_size`` rows at a time."""
        n = X.shape[0]
        X = as_kernel_array(X)
        out = np.empty((n, self.out_width), self.dtype)
        rows = max(1, min(batch_size, n))
        widest = max(op[6] for op in self.ops)
        buffers = [np.empty(rows * widest, self.dtype), np.empty(rows * widest, self.dtype)]
        dense_threads = _threads.get_num_threads()
        last = len(self.ops) - 1
        for lo in range(0, n, rows):
            hi = min(lo + rows, n)
            h = X[lo:hi]
            skips, flip = [], 0  # the open residuals' inputs; the buffer the next op writes
            for j, (kind, be, W, b, code, param, width) in enumerate(self.ops):
                if kind == OP_RES_BEGIN:
                    skips.append(h.copy())  # the two buffers take turns under the block
                    continue
                Y = out[lo:hi] if j == last else \
                    buffers[flip][:(hi - lo) * width].reshape(hi - lo, width)
                flip = 1 - flip
                if kind == OP_RES_END:
                    np.add(skips.pop(), h, out=Y)  # Residual.infer's X + block(X)
                elif kind == OP_ROWNORM:
                    _rownorm(W, h, Y)
                elif kind == OP_DENSE:
                    be._dense_forward(h, W, b, Y, code, param, dense_threads)
                elif kind == _DENSE_LIVE:  # the layer's own arrays, read where they are now
                    bias = W.bias
                    be._dense_forward(h, W.weight._data, None if bias is None else bias._data,
                                      Y, code, param, dense_threads)
                elif kind == _STANDARDIZE:  # Standardizer.infer's arithmetic, into Y
                    np.subtract(h, W.mean, out=Y)
                    np.divide(Y, W.scale, out=Y)
                elif kind == OP_BN:
                    bn = W
                    be._batchnorm_forward_eval(
                        h, bn.weight._data, bn.bias._data, bn.running_mean, bn.running_var,
                        bn.eps, Y, code, param, _threads.threads_for(Y.size))
                elif kind == OP_ACT:
                    be._activation_forward(h.reshape(-1), Y.reshape(-1), code, param,
                                           _threads.threads_for(Y.size))
                else:
                    be._softmax_forward(h, Y, _threads.threads_for(Y.size))
                h = Y
        return out


class _Mark:
    """Where a Residual's block begins or ends in the flattened layers."""

    def __init__(self, begin):
        self.begin = begin


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
            flat += [_Mark(True), *_flat_layers(inner), _Mark(False)]
        else:
            flat.append(layer)
    return flat


def _rownorm(layer, X, Y):
    """LayerNorm's or RMSNorm's eval forward (its ``infer``'s kernel) from X into Y."""
    weight, bias = layer._parameters.get("weight"), layer._parameters.get("bias")
    mean = np.empty(X.shape[0], np.float64) if type(layer) is LayerNorm else None
    layer.backend._rownorm_forward(
        X, None if weight is None else weight._data, None if bias is None else bias._data,
        layer.kernel_eps(), Y, mean, np.empty(X.shape[0], np.float64),
        _threads.threads_for(Y.size))


def _epilogue(layers, i, into="batchnorm"):
    """(activation code, param, next index) when layers[i] is an activation that can run in the
    epilogue of the op ``into`` before it; (IDENTITY, 0.0, i) otherwise. (No backward here: a
    Dense runs the smooth kinds in its epilogue without keeping its pre-activation.)"""
    act = layers[i] if i < len(layers) else None
    if is_plain_activation(act):
        name, param = fusable(act, into)
        if name is not None:
            return (*activation_code(name, param), i + 1)
    return IDENTITY, 0.0, i

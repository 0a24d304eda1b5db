"""A Sequential's compiled execution plan: validated once per (input shape, dtype), run many times.

The eager path validates every operand of every kernel call and allocates every output. A plan
does that once: when a ``Sequential`` of built-in layers first sees an input shape, it checks
the layers' shapes against each other, allocates every intermediate output, statistics and
gradient buffer, and from then on its ``forward``/``backward`` check only the one array the
caller hands in (type, dtype, shape, layout) and call the backend's loops (the ``_<op>``
methods both backends implement) on the prepared buffers. Same loops, same fusion, same results
as the eager path; no allocation per step except the arrays returned to the caller, which are
copies (a caller keeping an output across steps must not see it change).

A plan never guesses: any module it does not know (a custom module, a nested container, a
Standardizer) makes ``build`` return None and the container runs eagerly. It re-checks before
each call that the parameters still live where it recorded them (an optimizer may re-pack
them) and is rebuilt when they moved, when the thread count or a backend changed.
"""
import numpy as np

from .. import _threads
from ..backend.base import (FLOAT_DTYPES, IDENTITY, activation_code, as_kernel_array,
                            dropout_key, dropout_threshold)
from .activations import Activation, Softmax
from .batchnorm import BatchNorm
from .dense import Dense
from .dropout import Dropout
from .module import Module, check_input

# Step kinds of a plan.
_DENSE, _BN, _ACT, _SOFTMAX, _DROPOUT = range(5)


class _Step:
    """One kernel call of the plan and its buffers."""

    __slots__ = ("kind", "layer", "act", "code", "param", "Y", "dX", "mean", "invstd", "mask",
                 "nt", "eval_ran", "dropped", "be", "w", "b")

    def __init__(self, kind, layer, act, code, param):
        self.kind, self.layer, self.act, self.code, self.param = kind, layer, act, code, param
        self.Y = self.dX = self.mean = self.invstd = self.mask = None
        self.be = layer.backend
        # the layer's parameters (weight/gamma, bias/beta), looked up once
        self.w = layer._parameters.get("weight")
        self.b = layer._parameters.get("bias")
        self.nt = 1
        self.eval_ran = False  # BatchNorm ran with running statistics in the last forward
        self.dropped = False  # Dropout was active (training, p > 0) in the last forward


def build(seq, X):
    """The plan of Sequential ``seq`` for inputs shaped like ``X``, or None when some step is
    not a built-in layer (the container then runs eagerly)."""
    if X.ndim != 2 or X.dtype not in FLOAT_DTYPES:
        return None
    steps = []
    for kind, layer, act in seq._steps():
        if type(layer) is Dense:
            steps.append(_with_act(_DENSE, layer, act))
        elif type(layer) is BatchNorm:
            steps.append(_with_act(_BN, layer, act))
        elif isinstance(layer, Activation) and type(layer).forward is Activation.forward:
            steps.append(_Step(_ACT, layer, None, *activation_code(layer.activation, layer.param)))
        elif type(layer) is Softmax:
            steps.append(_Step(_SOFTMAX, layer, None, IDENTITY, 0.0))
        elif type(layer) is Dropout:
            steps.append(_Step(_DROPOUT, layer, None, IDENTITY, 0.0))
        else:
            return None
        if act is not None and steps[-1].act is None:  # not fusable: the activation alone
            steps.append(_Step(_ACT, act, None, *activation_code(act.activation, act.param)))
    if not steps:
        return None
    try:
        return Plan(seq, steps, X.shape, X.dtype)
    except _Mismatch:
        return None  # the eager path raises the layer's own error


def _with_act(kind, layer, act):
    if act is None:
        return _Step(kind, layer, None, IDENTITY, 0.0)
    from .containers import _fusable

    name, param = _fusable(act)
    if name is None:
        return _Step(kind, layer, None, IDENTITY, 0.0)
    return _Step(kind, layer, act, *activation_code(name, param))


class Plan:
    """Prepared buffers and kernel calls for one input shape and dtype (see the module doc)."""

    def __init__(self, seq, steps, shape, dtype):
        self.structure = seq._steps()  # the container's step list this plan was built from
        self.steps = steps
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.n_threads = _threads.get_num_threads()
        self.backend_key = _backend_key(steps)
        n, width = shape
        for i, s in enumerate(steps):
            layer = s.layer
            if s.kind == _DENSE:
                if layer.in_features != width or layer.dtype != self.dtype:
                    raise _mismatch(layer, i, width, self.dtype)
                width = layer.out_features
                s.nt = self.n_threads
                layer._auto_init = False  # weights in use: no container re-draws them now
            elif s.kind == _BN:
                if layer.num_features != width or layer.dtype != self.dtype:
                    raise _mismatch(layer, i, width, self.dtype)
                s.mean = np.empty(width, np.float64)
                s.invstd = np.empty(width, np.float64)
                s.nt = _threads.threads_for(n * width)
            else:
                s.nt = _threads.threads_for(n * width)
                if s.kind == _DROPOUT:
                    s.mask = np.empty((n, width), np.uint8)
            s.Y = np.empty((n, width), self.dtype)
        self.out_width = width
        # dX buffers: step i's dX is step i-1's dY (step 0's only when the caller wants it)
        widths = [shape[1]] + [s.Y.shape[1] for s in steps[:-1]]
        for s, w in zip(steps, widths):
            s.dX = np.empty((n, w), self.dtype)
        self.params = [(p, p._data, p._grad) for p in seq.parameters()]
        self.registry_version = Module.registry_version
        self.buffers = [(m, m.running_mean, m.running_var) for m in
                        (s.layer for s in steps if s.kind == _BN)]
        self.X = None

    # -- validity -------------------------------------------------------------------------
    def fits(self, X):
        """X is an input this plan was built for, and nothing the plan recorded has moved."""
        if X.shape != self.shape or X.dtype != self.dtype or not (
                X.flags.c_contiguous and X.flags.aligned):
            return False  # (the eager path copies such an X before a kernel reads it)
        if _threads.get_num_threads() != self.n_threads:
            return False
        if Module.registry_version != self.registry_version:
            return False  # some layer now holds other parameters or buffers
        for (p, data, grad) in self.params:
            if p._data is not data or p._grad is not grad:
                return False
        for m, rm, rv in self.buffers:
            if m.running_mean is not rm or m.running_var is not rv:
                return False
        if _backend_key(self.steps) != self.backend_key:
            return False
        for s in self.steps:
            act = s.act if s.act is not None else (s.layer if s.kind == _ACT else None)
            if act is not None and act.param is not None and float(act.param) != s.param:
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
        for s in self.steps:
            layer, be = s.layer, s.be
            kind = s.kind
            if kind == _DENSE:
                b = s.b
                be._dense_forward(X, s.w._data, None if b is None else b._data, s.Y,
                                  s.code, s.param, s.nt)
            elif kind == _BN:
                s.eval_ran = not layer.training
                if layer.training:
                    if X.shape[0] < 2:
                        layer._train_apply(X)  # raises the layer's own error
                    layer.num_batches_tracked += 1
                    momentum = layer.momentum
                    if momentum is None:
                        momentum = 1.0 / float(layer.num_batches_tracked)
                    be._batchnorm_forward_train(
                        X, s.w._data, s.b._data, layer.running_mean,
                        layer.running_var, momentum, layer.eps, s.Y, s.mean, s.invstd, s.code,
                        s.param, s.nt)
                else:
                    be._batchnorm_forward_eval(
                        X, s.w._data, s.b._data, layer.running_mean,
                        layer.running_var, layer.eps, s.Y, s.code, s.param, s.nt)
            elif kind == _ACT:
                be._activation_forward(X.reshape(-1), s.Y.reshape(-1), s.code, s.param, s.nt)
            elif kind == _SOFTMAX:
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
        X0 = self.X
        for i in range(len(self.steps) - 1, -1, -1):
            s = self.steps[i]
            layer, be = s.layer, s.be
            X = self.steps[i - 1].Y if i else X0
            need = input_grad or i > 0
            dX = s.dX if need else None
            kind = s.kind
            if kind == _DENSE:
                w, b = s.w, s.b
                dW = w._grad if w._requires_grad else None
                db = b._grad if b is not None and b._requires_grad else None
                if dW is None and db is None and dX is None:
                    return None
                be._dense_backward(dY, X, w._data, None if s.code == IDENTITY else s.Y, dW, db,
                                   dX, s.code, s.param, s.nt)
            elif kind == _BN:
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
            elif kind == _ACT:
                be._activation_backward(dY.reshape(-1), X.reshape(-1), s.Y.reshape(-1),
                                        dX.reshape(-1), s.code, s.param, s.nt)
            elif kind == _SOFTMAX:
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
    from .. import backend

    return backend._current, tuple(s.layer.backend_name for s in steps)


def _act_name(step):
    return None if step.act is None else step.act.activation


class _Mismatch(Exception):
    pass


def _mismatch(layer, i, width, dtype):
    return _Mismatch(f"layer {i} ({type(layer).__name__}) does not take width {width}, {dtype}")


# ---------------------------------------------------------------------------- inference
# Ops of an inference program.
_I_DENSE, _I_BN, _I_ACT, _I_SOFTMAX, _I_AFFINE = range(5)


class InferencePlan:
    """The eval-mode program of a Sequential for one ``predict`` call.

    BatchNorm (running statistics) is folded into the Dense before it, and a Standardizer into
    the Dense after it (W' = W * s per output row, b' = (b - mean) * s + beta; the columns for
    a Standardizer), computed in float64 and rounded once; activations run in the epilogues;
    Dropout is the identity. Buffers for one batch are allocated per call and every batch's
    result is written straight into the output. Nothing is written on the model, so any number
    of threads may predict with it at once.
    """

    def __init__(self, ops, dtype, in_width, out_width):
        self.ops, self.dtype = ops, dtype
        self.in_width, self.out_width = in_width, out_width

    @classmethod
    def build(cls, seq):
        """The program of ``seq`` now (its current weights), or None when a layer is not a
        built-in one (then ``predict`` runs each layer's own ``infer``)."""
        from ..data import Standardizer

        layers = [layer for layer in seq.layers if type(layer) is not Dropout]
        dtype = seq.dtype
        ops, width, in_width = [], None, None
        pending = None  # a Standardizer's (mean, scale) waiting for the next Dense
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if type(layer) is Standardizer and layer.mean is not None and type(nxt) is Dense:
                if layer.dtype != dtype:
                    return None
                pending = (layer.mean.astype(np.float64), layer.scale.astype(np.float64))
                in_width = in_width or layer.num_features
                i += 1
                continue
            if type(layer) is Dense:
                if layer.dtype != dtype or (width is not None and layer.in_features != width):
                    return None
                W = layer.weight._data.astype(np.float64)
                b = (np.zeros(layer.out_features) if layer.bias is None
                     else layer.bias._data.astype(np.float64))
                if pending is not None:  # (X - mean) / scale, then W: fold into the columns
                    mean, scale = pending
                    W = W / scale
                    b = b - W @ mean
                    pending = None
                i += 1
                if type(nxt) is BatchNorm and nxt.num_features == layer.out_features:
                    s = nxt.weight._data.astype(np.float64) / np.sqrt(
                        nxt.running_var.astype(np.float64) + nxt.eps)
                    W = W * s[:, None]
                    b = (b - nxt.running_mean.astype(np.float64)) * s + \
                        nxt.bias._data.astype(np.float64)
                    i += 1
                code, param, i = _epilogue(layers, i)
                in_width = in_width or layer.in_features
                width = layer.out_features
                ops.append((_I_DENSE, layer.backend, np.ascontiguousarray(W, dtype),
                            np.ascontiguousarray(b, dtype), code, param, width))
                continue
            if pending is not None:
                return None
            if type(layer) is BatchNorm:
                if layer.dtype != dtype or (width is not None and layer.num_features != width):
                    return None
                code, param, i = _epilogue(layers, i + 1)
                in_width = in_width or layer.num_features
                width = layer.num_features
                ops.append((_I_BN, layer.backend, layer, None, code, param, width))
            elif isinstance(layer, Activation) and type(layer).forward is Activation.forward:
                code, param = activation_code(layer.activation, layer.param)
                ops.append((_I_ACT, layer.backend, None, None, code, param, width))
                i += 1
            elif type(layer) is Softmax:
                ops.append((_I_SOFTMAX, layer.backend, None, None, IDENTITY, 0.0, width))
                i += 1
            else:
                return None
        if not ops or ops[0][6] is None or in_width is None:
            return None  # starts with an activation: its width comes from the data
        return cls(ops, dtype, in_width, width)

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
            for j, (kind, be, W, b, code, param, width) in enumerate(self.ops):
                Y = out[lo:hi] if j == last else \
                    buffers[j % 2][:(hi - lo) * width].reshape(hi - lo, width)
                if kind == _I_DENSE:
                    be._dense_forward(h, W, b, Y, code, param, dense_threads)
                elif kind == _I_BN:
                    bn = W
                    be._batchnorm_forward_eval(
                        h, bn.weight._data, bn.bias._data, bn.running_mean, bn.running_var,
                        bn.eps, Y, code, param, _threads.threads_for(Y.size))
                elif kind == _I_ACT:
                    be._activation_forward(h.reshape(-1), Y.reshape(-1), code, param,
                                           _threads.threads_for(Y.size))
                else:
                    be._softmax_forward(h, Y, _threads.threads_for(Y.size))
                h = Y
        return out


def _epilogue(layers, i):
    """(activation code, param, next index) when layers[i] is an activation that can run in the
    epilogue of the op before it; (IDENTITY, 0.0, i) otherwise."""
    act = layers[i] if i < len(layers) else None
    if isinstance(act, Activation) and type(act).forward is Activation.forward:
        from .containers import _fusable

        name, param = _fusable(act)
        if name is not None:
            return (*activation_code(name, param), i + 1)
    return IDENTITY, 0.0, i

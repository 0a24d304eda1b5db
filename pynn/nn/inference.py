"""A Sequential's inference program: the eval-mode forward of ``predict``, prepared once and kept
on the model.

The program records which layers run and which arrays they read (weights, biases, running
statistics, a Standardizer's mean and scale), never copies of them: every call reads the arrays
as they are then, so a write into a parameter's ``.data`` or a running statistic is seen by the
next call. What cannot be seen that way -- an array replaced by another (an optimizer re-packing
the parameters, a buffer assigned, a refitted Standardizer), a layer added or replaced, a
backend, an ``eps`` or an activation's parameter or form changed -- is checked before each call
(``holds``) and makes the container build a new program. Nested Sequentials are flattened and a
Residual's block runs between two marks (its input set aside at the first, added to the
block's output at the second); LayerNorm and RMSNorm run their kernel. With every layer on the
Cython backend the whole forward is one call into C without the GIL (pynn._kernels.inference);
otherwise the layers' backends run the same ops from Python. See ``InferencePlan``. Each dense
op's product runs with pynn.tune's strategy for its batch's rows (the eager kernel's for the
same product), passed per call: ``strategies``.
"""
import numpy as np

from .. import _threads
from .. import backend as _backends
from ..tune import _planner as _tune
from ..backend._arrays import as_kernel_array
from ..backend._sparse import csr_arrays, is_sparse
from ..backend.codes import IDENTITY, activation_code, kernel_params
from .activations import Softmax, fusable, is_plain_activation
from .batchnorm import BatchNorm
from .dense import Dense
from .dropout import Dropout
from .module import Module
from .normalization import LayerNorm, RMSNorm
from .parameter import ParameterArena
from .plan import plan_role
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


class InferencePlan:
    """The eval-mode program of a Sequential, kept on it for every ``predict`` call while it
    ``holds``.

    For a few rows the layers run as they are (the layer-by-layer eval forward, bit for bit);
    for many, where folding costs less than the normalizations' passes over the rows (``folds``:
    the folded weights' elements against the rows times the normalizations' widths; never for a
    net with nothing to fold), each BatchNorm is folded into the Dense before it and a
    Standardizer into the Dense after it, per call, from the arrays as they are then, in float64
    and rounded once (equal to the layer-by-layer forward up to that rounding). Activations run
    in the epilogues, Dropout is the identity. Every buffer belongs to one call and each batch
    is written straight into the output; nothing is written on the model, so any number of
    threads may predict at once.
    """

    def __init__(self, seq, ops, in_width):
        self.ops, self.in_width = ops, in_width
        self.dtype = seq.dtype
        self.out_width = ops[-1].width
        fold_cost = row_cost = 0  # see folds: elements touched
        for op in ops:
            if op.kind == "dense":
                fold_cost += op.layer.weight._data.size * ((op.pre >= 0) + (op.post >= 0))
            if op.foldable:
                row_cost += op.width
        self.fold_cost, self.unfolded_row_cost = fold_cost, row_cost
        self._record(seq)
        self.program = _compiled(self)
        # (op index, input width, output width) of the dense ops, and their strategies per
        # (rows, last batch's rows, threads, CSR X, tune.generation()): see ``strategies``
        self.dense_ops, width = [], in_width
        for i, op in enumerate(ops):
            if op.kind == "dense":
                self.dense_ops.append((i, width, op.width))
            width = op.width
        self._strategies = {}
        self._last_strategies = (None, None)  # (key, codes) of the last call: see strategies

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

    # -- validity and choices ---------------------------------------------------------------
    def holds(self):
        """Nothing the program recorded has been replaced (see the module doc)."""
        if (Module.registry_version != self.registry_version
                or Module.backend_version != self.backend_version
                or _backends._current != self.backend_current):
            return False
        if ParameterArena.generation != self.generation:
            # parameters move only when some arena packs: look, then remember it was fine
            for p, data in self.params:
                if p._data is not data:
                    return False
            self.generation = ParameterArena.generation
        for table, name, array in self.buffers:
            if table[name] is not array:
                return False
        for obj, name, value in self.settings:
            now = getattr(obj, name)
            if now is not value and now != value:
                return False
        return True

    def fits(self, X):
        """X is an input of the program: an ndarray, or a CSR when the compiled program
        starts with a Dense (``takes_csr``), of its dtype and input width."""
        if type(X) is not np.ndarray and not (self.takes_csr and is_sparse(X)
                                              and X.format == "csr"):
            return False
        return X.ndim == 2 and X.dtype == self.dtype and X.shape[1] == self.in_width

    @property
    def takes_csr(self):
        """A CSR X runs in the one C call (``run_csr``): the first op is a Dense, which reads
        its arrays through the sparse product's core."""
        return self.program is not None and self.ops[0].kind == "dense"

    def folds(self, rows):
        """Whether a call on ``rows`` rows runs folded: folding costs less than running the
        normalizations on every row."""
        return rows * self.unfolded_row_cost > self.fold_cost

    def describe(self, rows):
        """The ops a call on ``rows`` rows runs, as names: "dense+relu", "batchnorm+tanh",
        "standardize+dense+batchnorm+relu" (folded), "softmax", ..."""
        fold = self.compiled and self.folds(rows)
        names = []
        for op in self.ops:
            if fold and op.foldable:
                continue
            name = op.layer.activation if op.kind == "activation" else op.kind
            code, act = op.code, op.act
            if fold and op.kind == "dense":
                if op.pre >= 0:
                    name = "standardize+" + name
                if op.post >= 0:
                    name += "+batchnorm"
                    code, act = self.ops[op.post].code, self.ops[op.post].act
            if op.kind in ("dense", "batchnorm") and code != IDENTITY:
                name += "+" + act.activation
            names.append(name)
        return names

    @property
    def compiled(self):
        """The whole forward runs as one C call (every layer on the Cython backend)."""
        return self.program is not None

    # -- running ------------------------------------------------------------------------------
    def strategies(self, n, batch_size, threads, csr=False):
        """The compiled program's ``strategies`` for n rows in batches of ``batch_size`` on
        ``threads``: two per op, a dense op's for a full batch and for the last one (pynn.tune's
        choices for those products; a CSR X's first op is the sparse product: none)."""
        rows = min(batch_size, n)
        tail = n % rows or rows
        key = (rows, tail, threads, csr, _tune.generation())
        last = self._last_strategies
        if last[0] == key:
            return last[1]  # predict on the same rows again: no dict lookup (latency path)
        codes = self._strategies.get(key)
        if codes is None:
            dense = [d for d in self.dense_ops if not (csr and d[0] == 0)]
            keys = [_tune.forward_key(r, k, m, self.dtype, threads)
                    for _, k, m in dense for r in (rows, tail)]
            chosen = _tune.prepare(keys)
            codes = np.zeros(2 * len(self.ops), np.int32)
            for j, (i, _, _) in enumerate(dense):
                codes[2 * i:2 * i + 2] = chosen[2 * j:2 * j + 2]
            if len(self._strategies) >= 16:
                self._strategies.clear()  # many batch sizes in turn: keep it bounded
            self._strategies[key] = codes
        self._last_strategies = (key, codes)  # one tuple: threads read a consistent pair
        return codes

    def run(self, X, batch_size, fold=None):
        """Outputs for every row of X (``fits``), ``batch_size`` rows at a time; ``fold``:
        True/False to force the choice ``folds`` makes (the compiled program only folds)."""
        n = X.shape[0]
        out = np.empty((n, self.out_width), self.dtype)
        if n == 0:
            return out
        if is_sparse(X):
            # unfolded: the layer-by-layer eval forward's answers, bit for bit, as the
            # per-batch ``infer`` gave them before the program took CSR
            data, indices, indptr = csr_arrays("X", X, self.dtype, self.in_width)
            threads = _threads.get_num_threads()
            self.program.run_csr(data, indices, indptr, out, batch_size, threads,
                                 self.strategies(n, batch_size, threads, csr=True))
            return out
        X = as_kernel_array(X)
        if self.program is not None:
            threads = _threads.get_num_threads()
            self.program.run(X, out, batch_size, threads,
                             self.folds(n) if fold is None else fold,
                             self.strategies(n, batch_size, threads))
            return out
        return self._run_layers(X, out, batch_size)

    def _run_layers(self, X, out, batch_size):
        """The ops unfolded, each on its layer's backend (a layer not on the Cython backend)."""
        n = X.shape[0]
        rows = max(1, min(batch_size, n))
        widest = max(op.width for op in self.ops)
        buffers = [np.empty(rows * widest, self.dtype), np.empty(rows * widest, self.dtype)]
        dense_threads = _threads.get_num_threads()
        last = len(self.ops) - 1
        for lo in range(0, n, rows):
            hi = min(lo + rows, n)
            h = X[lo:hi]
            skips, flip = [], 0  # the open residuals' inputs; the buffer the next op writes
            for j, (op, be) in enumerate(zip(self.ops, self.backends)):
                layer, kind = op.layer, op.kind
                if kind == "res_begin":
                    skips.append(h.copy())  # the two buffers take turns under the block
                    continue
                Y = out[lo:hi] if j == last else \
                    buffers[flip][:(hi - lo) * op.width].reshape(hi - lo, op.width)
                flip = 1 - flip
                if kind == "res_end":
                    np.add(skips.pop(), h, out=Y)  # Residual.infer's X + block(X)
                elif kind == "rownorm":
                    _rownorm(layer, h, Y)
                elif kind == "dense":
                    bias = layer.bias
                    be._dense_forward(h, layer.weight._data, None if bias is None else bias._data,
                                      Y, op.code, op.param, dense_threads)
                elif kind == "standardize":  # Standardizer.infer's arithmetic, into Y
                    np.subtract(h, layer.mean, out=Y)
                    np.divide(Y, layer.scale, out=Y)
                elif kind == "batchnorm":
                    be._batchnorm_forward_eval(
                        h, layer.weight._data, layer.bias._data, layer.running_mean,
                        layer.running_var, layer.eps, Y, op.code, op.param,
                        _threads.threads_for(Y.size))
                elif kind == "activation":
                    be._activation_forward(h.reshape(-1), Y.reshape(-1), op.code, op.param,
                                           _threads.threads_for(Y.size))
                else:
                    be._softmax_forward(h, Y, _threads.threads_for(Y.size))
                h = Y
        return out


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


def _rownorm(layer, X, Y):
    """LayerNorm's or RMSNorm's eval forward (its ``infer``'s kernel) from X into Y."""
    weight, bias = layer._parameters.get("weight"), layer._parameters.get("bias")
    mean = np.empty(X.shape[0], np.float64) if type(layer) is LayerNorm else None
    layer.backend._rownorm_forward(
        X, None if weight is None else weight._data, None if bias is None else bias._data,
        layer.kernel_eps(), Y, mean, np.empty(X.shape[0], np.float64),
        _threads.threads_for(Y.size))


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

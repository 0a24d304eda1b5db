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

This file is what each ``predict`` call does with the program (``holds``, ``fits``, the choices
of folding and strategies, ``run``); recording it from the model once is its base class's,
``InferenceRecording`` (pynn/nn/_inference_record.py): apart because the one runs on every
call and the other once per model change, and each changes for its own reasons.
"""
import numpy as np

from .. import _threads
from .. import backend as _backends
from ..tune import _planner as _tune
from ..backend._arrays import as_kernel_array
from ..backend._sparse import csr_arrays, is_sparse
from ..backend.codes import IDENTITY
from ._inference_record import InferenceRecording, _compiled
from .module import Module
from .normalization import LayerNorm
from .parameter import ParameterArena


class InferencePlan(InferenceRecording):
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


def _rownorm(layer, X, Y):
    """LayerNorm's or RMSNorm's eval forward (its ``infer``'s kernel) from X into Y."""
    weight, bias = layer._parameters.get("weight"), layer._parameters.get("bias")
    mean = np.empty(X.shape[0], np.float64) if type(layer) is LayerNorm else None
    layer.backend._rownorm_forward(
        X, None if weight is None else weight._data, None if bias is None else bias._data,
        layer.kernel_eps(), Y, mean, np.empty(X.shape[0], np.float64),
        _threads.threads_for(Y.size))

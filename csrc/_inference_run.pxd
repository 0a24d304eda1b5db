# The inference program's batch loop (pynn._kernels.inference, csrc/inference.pyx): its op
# records and the nogil loop that runs them over a run's batches, with the folding of a folded
# run. inference.pyx builds the records and sets a run up (strategies, buffers, the products
# lock) and calls _run; apart from it because the builder and the set-up hold the GIL and
# Python's arguments, while this is the loop the run spends its time in, and it reads nothing
# but the records. The layers run through the very loops their per-call kernels use (the .pxd
# cores of dense, batchnorm, rownorm and activations): an unfolded run is the layer-by-layer
# eval forward bit for bit.
from libc.math cimport sqrt
from libc.string cimport memcpy

from _types cimport idx_t
from _activations_threads cimport act_forward_threads, softmax_forward_threads
from _batchnorm cimport bn_forward_eval_core
from _dense cimport dense_forward_core, dense_forward_scratch
from _rownorm cimport rn_forward_core
from _sparse cimport ColumnView, CsrArrays, csr_forward_rows


cdef enum:
    # the op kinds (the builder's methods name them)
    INF_DENSE = 0
    INF_BN = 1
    INF_ACT = 2
    INF_SOFTMAX = 3
    INF_STANDARDIZE = 4
    INF_ROWNORM = 5      # LayerNorm (center) or RMSNorm
    INF_RES_BEGIN = 6    # a Residual's input copied aside
    INF_RES_END = 7      # ... added to its block's output


cdef struct InfOp:
    int kind, act
    double param, param2  # the activation's two scalars (codes.kernel_params)
    double eps
    idx_t k, m          # input and output width
    void* W             # dense: weight (m x k) / batchnorm, rownorm: gamma (rownorm: or
                        # NULL) / standardize: mean
    void* b             # dense: bias or NULL / batchnorm, rownorm: beta (rownorm: or NULL) /
                        # standardize: scale
    void* rm            # batchnorm: running statistics
    void* rv
    int pre, post       # dense: the standardize op before it and the batchnorm op after it
                        # that a folded run folds into it (-1: none)
    bint folded         # standardize, batchnorm: folded into a dense op in a folded run
    idx_t fold_at       # dense with pre or post: offset of its folded W' and b' in the
                        # run's fold scratch (elements)
    bint center         # rownorm: LayerNorm (rows centered) rather than RMSNorm
    int slot            # res_begin, res_end: the skip buffer (the residual's nesting depth)


cdef struct CsrRows:
    # run_csr's X; the column view's scratch (for the batch with the most stored values) and
    # the sparse product's n doubles per thread
    CsrArrays arrays
    char* scratch
    double* acc


cdef struct InfProgram:
    # What the batch loop reads of an InferenceProgram (the rest of its fields are the builder's
    # and the set-up's)
    InfOp* ops
    int n_ops
    idx_t widest        # the widest op's output: what a run's buffers hold per row
    idx_t min_parallel  # elements below which an elementwise op runs on one thread


ctypedef fused real:
    float
    double


cdef inline void _run(InfProgram* prog, const real* X, real* out, idx_t n, idx_t rows,
                      int n_threads, bint fold, real* buffers, real* dense_scratch,
                      double* bn_scratch, real* folds, double* rn_scratch, real* skips,
                      const CsrRows* csr, const int* codes) noexcept nogil:
    """The batches of a run (see InferenceProgram.run; csr: run_csr's X, or NULL; codes: two
    strategies per op, for a full batch and for the last)."""
    cdef int i, last = -1, cur
    cdef idx_t lo, hi, r, r2, elems
    cdef InfOp* o
    cdef InfOp* bn
    cdef const real* h
    cdef real* Y
    cdef const real* W
    cdef const real* b
    cdef int act, nt, strategy
    cdef double param, param2
    cdef idx_t out_width = 0
    cdef real* skip
    cdef ColumnView view  # the sparse first op's batch by column (csr_forward_rows)
    if fold:
        for i in range(prog.n_ops):
            o = &prog.ops[i]
            if o.kind == INF_DENSE and (o.pre >= 0 or o.post >= 0):
                _fold(prog, o, folds + o.fold_at)
    for i in range(prog.n_ops):
        if not (fold and prog.ops[i].folded):
            last = i
            out_width = prog.ops[i].m
    lo = 0
    while lo < n:
        hi = min(lo + rows, n)
        r = hi - lo
        h = X + lo * prog.ops[0].k if X != NULL else NULL  # (NULL: csr's rows)
        cur = 0
        for i in range(last + 1):
            o = &prog.ops[i]
            if fold and o.folded:
                continue
            if o.kind == INF_RES_BEGIN:  # h stays the input of the block's first op
                memcpy(skips + o.slot * rows * prog.widest, h, r * o.m * sizeof(real))
                continue
            Y = out + lo * out_width if i == last else buffers + cur * rows * prog.widest
            elems = r * o.m
            nt = n_threads if elems >= prog.min_parallel else 1
            if o.kind == INF_DENSE:
                W, b = <const real*>o.W, <const real*>o.b
                act, param, param2 = o.act, o.param, o.param2
                if fold and (o.pre >= 0 or o.post >= 0):
                    W = folds + o.fold_at
                    b = W + o.m * o.k
                    if o.post >= 0:  # the BatchNorm's activation, in this epilogue now
                        bn = &prog.ops[o.post]
                        act, param, param2 = bn.act, bn.param, bn.param2
                if csr != NULL and i == 0:
                    csr_forward_rows(&csr.arrays, lo, r, o.k, W, b, Y, o.m, act, <real>param,
                                     <real>param2, NULL, csr.scratch, &view, csr.acc,
                                     n_threads)
                else:
                    strategy = codes[2 * i + (r != rows)]
                    dense_forward_core(h, W, b, Y,
                                       dense_scratch if dense_forward_scratch(r, o.k, o.m,
                                                                              strategy)
                                       else NULL, r, o.k, o.m, act, <real>param, <real>param2,
                                       NULL, n_threads, strategy)
            elif o.kind == INF_BN:
                bn_forward_eval_core(h, <const real*>o.W, <const real*>o.b, <const real*>o.rm,
                                     <const real*>o.rv, o.eps, Y, bn_scratch, r, o.m, o.act,
                                     <real>o.param, <real>o.param2, nt)
            elif o.kind == INF_ACT:
                act_forward_threads(o.act, <real>o.param, <real>o.param2, h, Y, elems, nt)
            elif o.kind == INF_SOFTMAX:
                softmax_forward_threads(h, Y, r, o.m, nt)
            elif o.kind == INF_ROWNORM:
                _affine_in_double(<const real*>o.W, <const real*>o.b, rn_scratch, o.m)
                rn_forward_core(h, Y, r, o.m, o.eps, rn_scratch, rn_scratch + o.m,
                                rn_scratch + 2 * prog.widest if o.center else NULL,
                                rn_scratch + 2 * prog.widest + rows, nt)
            elif o.kind == INF_RES_END:
                skip = skips + o.slot * rows * prog.widest
                for r2 in range(elems):  # Residual.infer's X + block(X), in the dtype
                    Y[r2] = skip[r2] + h[r2]
            else:
                _standardize(h, <const real*>o.W, <const real*>o.b, Y, r, o.m)
            h = Y
            cur = 1 - cur
        lo = hi


cdef inline void _affine_in_double(const real* gamma, const real* beta, double* dest,
                                   idx_t f) noexcept nogil:
    """A rownorm's gamma and beta in double, 1 and 0 where the layer has none (as its per-call
    kernel converts them)."""
    cdef idx_t j
    for j in range(f):
        dest[j] = <double>gamma[j] if gamma != NULL else 1.0
        dest[f + j] = <double>beta[j] if beta != NULL else 0.0


cdef inline void _standardize(const real* x, const real* mean, const real* scale, real* y,
                              idx_t n, idx_t f) noexcept nogil:
    """y := (x - mean) / scale per row: Standardizer's arithmetic in the dtype (NumPy's
    subtract, then divide)."""
    cdef idx_t i, j
    for i in range(n):
        for j in range(f):
            y[i * f + j] = (x[i * f + j] - mean[j]) / scale[j]


cdef inline void _fold(InfProgram* prog, const InfOp* d, real* dest) noexcept nogil:
    """Dense op d's W' (m x k) and b' (m) into dest, from the arrays as they are now: the
    Standardizer before it folded into W's columns, the BatchNorm after it into W's rows (see
    inference.pyx's module doc); in double, rounded once."""
    cdef const InfOp* st = &prog.ops[d.pre] if d.pre >= 0 else NULL
    cdef const InfOp* bn = &prog.ops[d.post] if d.post >= 0 else NULL
    cdef const real* W = <const real*>d.W
    cdef const real* b = <const real*>d.b
    cdef real* Wf = dest
    cdef real* bf = dest + d.m * d.k
    cdef idx_t j, c
    cdef double s, w, shift
    for j in range(d.m):
        s = 1.0
        if bn != NULL:
            s = <double>(<const real*>bn.W)[j] / sqrt(<double>(<const real*>bn.rv)[j] + bn.eps)
        shift = <double>b[j] if b != NULL else 0.0
        for c in range(d.k):
            w = <double>W[j * d.k + c]
            if st != NULL:  # (x - mean) / scale, then W: W / scale, and W' mean off the bias
                w = w / <double>(<const real*>st.b)[c]
                shift -= w * <double>(<const real*>st.W)[c]
            Wf[j * d.k + c] = <real>(w * s)
        if bn != NULL:
            shift = (shift - <double>(<const real*>bn.rm)[j]) * s + <double>(<const real*>bn.b)[j]
        bf[j] = <real>shift

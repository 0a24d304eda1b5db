# The compiled training step's records (pynn._kernels.train_step): its ops, the optimizer's
# update runs, what runs fused, and the update loop over a range of one run. Shared by
# train_step.pyx and the _train_step_*.pxd beside it.
from _types cimport floating, idx_t

# The step kinds, the C side of pynn/backend/codes.py's (the same names and values;
# train_step.step_kinds() hands these to Python and tests/test_train_step.py holds the two
# equal).
cdef enum:
    # op kinds: a plan's steps; a program runs all but OP_SOFTMAX
    OP_DENSE = 0
    OP_BN = 1
    OP_ACT = 2
    OP_SOFTMAX = 3
    OP_DROPOUT = 4
    OP_ROWNORM = 5    # LayerNorm (mean != NULL) or RMSNorm
    OP_RES_BEGIN = 6  # a Residual's input: Y is X (no buffer); backward dX := dY + the skip's
    OP_RES_END = 7    # Y := X + the Residual's input (skip); backward: dX is dY (no buffer)
    OP_SPARSE_DENSE = 8  # the first Dense on the CSR batch handed to run_csr (_sparse.pxd)
    # loss kinds
    LOSS_CE = 0
    LOSS_MSE = 1
    LOSS_BCE = 2
    # update kinds: the optimizer loops a program holds by address
    UPD_ADAM = 0
    UPD_SGD = 1
    # phases of a run (a bit mask)
    FORWARD = 1
    BACKWARD = 2
    UPDATE = 4

cdef enum:
    # parameters whose update runs on their gradient's column tiles: a Dense's W and b and its
    # BatchNorm's gamma and beta
    MAX_TIED = 4

ctypedef void (*adam_f_t)(float*, const float*, float*, float*, float*, idx_t, double, double,
                          double, double, double, double, double, double, int) noexcept nogil
ctypedef void (*adam_d_t)(double*, const double*, double*, double*, double*, idx_t, double,
                          double, double, double, double, double, double, double,
                          int) noexcept nogil
ctypedef void (*sgd_f_t)(float*, const float*, float*, idx_t, double, double, double, double,
                         double, int, bint, int) noexcept nogil
ctypedef void (*sgd_d_t)(double*, const double*, double*, idx_t, double, double, double,
                         double, double, int, bint, int) noexcept nogil


cdef struct Op:
    int kind, act, nt, bnt, n_acc
    int fstrat, bstrat         # dense: the forward's and the backward's strategies (_dense.pxd)
    int fused_nt               # dense: > 0 when the forward of the BatchNorm op after it runs
                               # in the same region, on the same column tiles (see fusion)
    double param, param2, eps  # the activation's parameters (codes.kernel_params); BN's eps
    idx_t n, k, m              # rows, input width, output width
    void* X                    # input (NULL: the batch handed to run())
    void* Y
    void* dX                   # NULL: no input gradient wanted
    void* W                    # weight / gamma
    void* b                    # bias / beta (NULL: none)
    void* dW                   # NULL: frozen
    void* db
    void* dz                   # dense: dZ scratch (activation)
    void* fwd                  # dense: the forward's scratch (dense_forward_scratch; or NULL)
    void* zs                   # dense: the kept pre-activation (codes.keeps_preactivation)
    double* acc                # dense: bias partial sums / batchnorm: backward scratch /
                               # sparse dense: n doubles per thread
    double* fscratch           # batchnorm: forward scratch
    double* mean
    double* invstd
    void* rm                   # batchnorm running statistics
    void* rv
    void* skip                 # res_end: the residual's input (NULL: the batch); res_begin:
                               # the gradient reaching the residual's output (its res_end's dY)
    unsigned char* mask        # dropout: the kept elements, for the backward
    unsigned long long threshold  # dropout: an element is kept when (draw >> 32) >= it


cdef struct Update:
    int kind, nt, mode
    bint flag
    idx_t size
    void* p
    void* g
    void* s1
    void* s2
    void* s3
    double a[8]                # the loop's scalars, set by set_adam() / set_sgd() before a run
    double lr                  # Adam: what set_step() derives the step's scalars from, with
    bint eps_before            # the form (eps before the correction: scikit-learn's)


cdef struct Tied:
    # A parameter whose update runs in the fused backward region, column tile by column tile,
    # on the thread that just wrote that tile of its gradient: update u's elements
    # [off + c0 row, off + c1 row) for columns c0..c1.
    int u
    idx_t off, row


cdef struct Piece:
    # Elements [lo, hi) of update u: what the fused backward region's threads update evenly
    # shared, after their own tiles (everything in the updates but the tied parameters).
    int u
    idx_t lo, hi


cdef struct Fusion:
    # What runs fused (_train_step_fusion.pxd). tail: the BatchNorm op whose backward runs in one
    # region with the dense op before it, which ends the backward (no dX), and so with the
    # update (-1: none); the updates tied to that region and the rest of the updates as pieces
    # (rest: n_rest of them, malloc'd), re-derived whenever the updates change.
    int tail, n_tied, n_rest
    Tied tied[MAX_TIED]
    Piece* rest


cdef struct Loops:
    # The optimizers' loops by address (pynn._kernels.optim, compiled with its no-FMA flags)
    void* adam
    void* sgd


cdef inline void update_range(const Loops* loops, const Update* u, floating* tag, idx_t lo,
                              idx_t hi, int nt) noexcept nogil:
    """Elements lo..hi of update u's loop, on nt threads (``tag`` only selects the dtype)."""
    cdef idx_t n = hi - lo
    if n <= 0:
        return
    if u.kind == UPD_ADAM:
        if floating is float:
            (<adam_f_t>loops.adam)(<float*>u.p + lo, <float*>u.g + lo, <float*>u.s1 + lo,
                                     <float*>u.s2 + lo,
                                     <float*>u.s3 + lo if u.s3 != NULL else NULL, n, u.a[0],
                                     u.a[1], u.a[2], u.a[3], u.a[4], u.a[5], u.a[6], u.a[7], nt)
        else:
            (<adam_d_t>loops.adam)(<double*>u.p + lo, <double*>u.g + lo, <double*>u.s1 + lo,
                                     <double*>u.s2 + lo,
                                     <double*>u.s3 + lo if u.s3 != NULL else NULL, n, u.a[0],
                                     u.a[1], u.a[2], u.a[3], u.a[4], u.a[5], u.a[6], u.a[7], nt)
    else:
        if floating is float:
            (<sgd_f_t>loops.sgd)(<float*>u.p + lo, <float*>u.g + lo,
                                   <float*>u.s1 + lo if u.s1 != NULL else NULL, n, u.a[0],
                                   u.a[1], u.a[2], u.a[3], u.a[4], u.mode, u.flag, nt)
        else:
            (<sgd_d_t>loops.sgd)(<double*>u.p + lo, <double*>u.g + lo,
                                   <double*>u.s1 + lo if u.s1 != NULL else NULL, n, u.a[0],
                                   u.a[1], u.a[2], u.a[3], u.a[4], u.mode, u.flag, nt)

# What a compiled training step (pynn._kernels.train_step) runs fused, and the fused regions.
#
# A dense layer and the BatchNorm after it can share column tiles: a dense forward by columns
# gives thread t all rows of columns c0..c1, which is all a BatchNorm column tile needs; a
# BatchNorm backward's column tile is all rows of dZ for the dense backward's weight rows
# c0..c1 (dW = dZ.T X needs no other column of dZ). When both split the columns alike, the
# pair runs as one parallel region with no barrier: each thread goes from the product to the
# normalization (or back) on data it just wrote, and the two layers wait for their slowest
# thread once instead of twice. And when the dense layer is the first (no dX: nothing reads W
# after dW), its thread updates the rows of W, b, gamma and beta it just wrote the gradients
# of, while they are in its cache, and then takes its share of the rest of the update: the
# backward of the last two layers and the whole update are one region. Each column is
# computed by the same loops in the same order as unfused, by whichever thread, and the
# updates are elementwise: the same bits.
from cython.parallel cimport prange
from libc.stdlib cimport realloc

from _types cimport floating, idx_t
from _activations cimport IDENTITY
from _batchnorm cimport _col_tile, bn_backward_cols, bn_forward_cols, bn_team
from _dense cimport (DENSE_THREADING, DENSE_TILES, dense_forward_cols,
                     dense_forward_cols_tiled, dense_forward_team, dense_tile, pynn_blas_control)
from _dense_backward cimport dense_backward_blas_nt, dense_backward_tile, dense_dz_cols
from _train_step cimport (MAX_TIED, OP_BN, OP_DENSE, Fusion, Loops, Op, Piece, Update,
                          update_range)

cdef enum:
    # Elements a thread's share of an update starts on a multiple of (from the piece's start):
    # 16 floats are one 64-byte line, so two threads' shares of a piece that starts on a line
    # never split one.
    SHARE_UNIT = 16


cdef inline bint _tiles_agree(idx_t m, int nt) noexcept nogil:
    """A dense layer's nt tiles of m columns (weight rows) are BatchNorm's column tiles."""
    cdef int t
    if bn_team(m, nt) != nt:
        return False
    for t in range(1, nt):
        if _col_tile(t, nt, m) != dense_tile(t, nt, m):
            return False
    return True


cdef inline void plan_fusion(Op* ops, int n_ops, Fusion* fusion) noexcept nogil:
    """Which ops run fused: each dense op's ``fused_nt`` and ``fusion.tail`` (the ops are
    fixed when the program is built)."""
    cdef int i, nt
    cdef Op* d
    cdef Op* b
    fusion.tail = -1
    for i in range(n_ops):
        ops[i].fused_nt = 0
    if not pynn_blas_control():
        return  # BLAS threads its own products: no per-thread tiles to share
    for i in range(n_ops - 1):
        d = &ops[i]
        b = &ops[i + 1]
        # forward: tiles by columns as dense_forward_core splits them, and BatchNorm's agree
        nt = dense_forward_team(d.n, d.m, d.fstrat, d.nt)
        if (d.kind == OP_DENSE and b.kind == OP_BN and b.X == d.Y
                and d.fstrat & DENSE_THREADING == DENSE_TILES
                and dense_forward_cols_tiled(d.n, d.m, d.fstrat) and nt >= 2
                and _tiles_agree(d.m, nt)):
            d.fused_nt = nt
    # backward: the dense op where the backward ends (no dX, which would read every column of
    # dZ), with dense_backward_core's team splitting dW by rows, and the BatchNorm after it on
    # the same column tiles. (The dense op alone, its dZ by column tiles, measured 2-5% slower
    # than unfused on a 784-256-128-10 ReLU net when the host's caches are contended.)
    if n_ops > 1:
        d = &ops[0]
        b = &ops[1]
        if (d.kind == OP_DENSE and d.dX == NULL and (d.dW != NULL or d.db != NULL)
                and d.bnt >= 2 and d.n_acc == d.bnt and b.kind == OP_BN and b.X == d.Y
                and _tiles_agree(d.m, d.bnt)):
            fusion.tail = 1


cdef inline int tie_updates(const Op* ops, const Update* upd, int n_upd, size_t itemsize,
                            Fusion* fusion) noexcept nogil:
    """Find the fused backward's parameters in the updates (``tied``) and cut the rest of the
    updates into pieces. 0, or -1 (out of memory: nothing tied, the update runs unfused)."""
    cdef const Op* b
    cdef const Op* d
    cdef void* params[MAX_TIED]
    cdef void* grads[MAX_TIED]
    cdef idx_t rows[MAX_TIED]
    cdef idx_t cut_lo[MAX_TIED]
    cdef idx_t cut_hi[MAX_TIED]
    cdef int i, j, u, n_cut
    cdef idx_t off, lo, count
    cdef const Update* up
    cdef Piece* pieces
    fusion.n_tied = 0
    fusion.n_rest = 0
    if fusion.tail < 0 or n_upd == 0:
        return 0
    b = &ops[fusion.tail]
    d = &ops[fusion.tail - 1]
    params[0], grads[0], rows[0] = d.W, d.dW, d.k
    params[1], grads[1], rows[1] = d.b, d.db, 1
    params[2], grads[2], rows[2] = b.W, b.dW, 1
    params[3], grads[3], rows[3] = b.b, b.db, 1
    pieces = <Piece*>realloc(fusion.rest, (n_upd + MAX_TIED) * sizeof(Piece))
    if pieces == NULL:
        return -1
    fusion.rest = pieces
    for i in range(MAX_TIED):
        if grads[i] == NULL:
            continue  # frozen: nothing to update
        count = d.m * rows[i]
        for u in range(n_upd):
            up = &upd[u]
            if (<char*>grads[i] < <char*>up.g
                    or <char*>grads[i] >= <char*>up.g + up.size * itemsize):
                continue
            off = (<char*>grads[i] - <char*>up.g) // itemsize
            # the same offset in the parameters, and the whole parameter in this update
            if <char*>up.p + off * itemsize == <char*>params[i] and off + count <= up.size:
                fusion.tied[fusion.n_tied].u = u
                fusion.tied[fusion.n_tied].off = off
                fusion.tied[fusion.n_tied].row = rows[i]
                fusion.n_tied += 1
            break
    # the rest: each update minus its tied ranges, in element order
    for u in range(n_upd):
        n_cut = 0
        for i in range(fusion.n_tied):
            if fusion.tied[i].u == u:
                cut_lo[n_cut] = fusion.tied[i].off
                cut_hi[n_cut] = fusion.tied[i].off + d.m * fusion.tied[i].row
                n_cut += 1
        lo = 0
        while True:
            j = -1  # the first cut at or after lo
            for i in range(n_cut):
                if cut_lo[i] >= lo and (j < 0 or cut_lo[i] < cut_lo[j]):
                    j = i
            off = upd[u].size if j < 0 else cut_lo[j]
            if off > lo:
                pieces[fusion.n_rest].u = u
                pieces[fusion.n_rest].lo = lo
                pieces[fusion.n_rest].hi = off
                fusion.n_rest += 1
            if j < 0:
                break
            lo = cut_hi[j]
    return 0


cdef inline idx_t _share(idx_t lo, idx_t hi, int t, int nt) noexcept nogil:
    """First element of thread t's share of [lo, hi) (a multiple of SHARE_UNIT from lo)."""
    if t >= nt:
        return hi
    return min(lo + ((hi - lo) * t // nt) // SHARE_UNIT * SHARE_UNIT, hi)


cdef inline void dense_bn_forward(const Op* d, const Op* b, floating* X,
                                  double momentum) noexcept nogil:
    """A dense forward by column tiles, each thread then normalizing its own columns."""
    cdef int t, nt = d.fused_nt
    cdef idx_t c0, c1
    for t in prange(nt, schedule="static", num_threads=nt):
        c0 = dense_tile(t, nt, d.m)
        c1 = dense_tile(t + 1, nt, d.m)
        dense_forward_cols(X, <floating*>d.W, <floating*>d.b, <floating*>d.Y,
                           <floating*>d.fwd, c0, c1, d.n, d.k, d.m, d.act, <floating>d.param,
                           <floating>d.param2, <floating*>d.zs, d.fstrat)
        bn_forward_cols(<floating*>d.Y, <floating*>b.W, <floating*>b.b, <floating*>b.rm,
                        <floating*>b.rv, momentum, b.eps, <floating*>b.Y, b.mean, b.invstd,
                        b.fscratch, b.n, b.k, c0, c1, b.act, <floating>b.param,
                        <floating>b.param2)


cdef inline void tail_backward(const Op* ops, const Fusion* fusion, const Update* upd,
                               const Loops* loops, floating* X0, floating* dY, bint update,
                               bint accumulate) noexcept nogil:
    """The backward of BatchNorm op ``fusion.tail`` and the dense op before it (no dX) by
    column tiles: BatchNorm's dX, the dense layer's dZ and bias sums, dW's rows; with
    ``update``, the tied parameters' updates on the same tiles and the rest shared out."""
    cdef const Op* b = &ops[fusion.tail]
    cdef const Op* d = &ops[fusion.tail - 1]
    cdef floating* Xd = X0 if d.X == NULL else <floating*>d.X
    cdef floating* dYd = <floating*>b.dX                         # the dense layer's dY
    cdef floating* z = <floating*>d.dz if d.dz != NULL else dYd  # its dZ
    cdef int t, nt = d.bnt
    cdef int i
    cdef idx_t c0, c1
    for t in prange(nt, schedule="static", num_threads=nt):
        c0 = dense_tile(t, nt, d.m)
        c1 = dense_tile(t + 1, nt, d.m)
        bn_backward_cols(dY, <floating*>b.Y if b.act != IDENTITY else NULL, <floating*>b.X,
                         <floating*>b.W, b.mean, b.invstd, <floating*>b.dW, <floating*>b.db,
                         dYd, b.acc, b.n, b.k, c0, c1, b.act, <floating>b.param,
                         <floating>b.param2, accumulate)
        dense_dz_cols(d.act, <floating>d.param, <floating>d.param2, dYd, <floating*>d.Y,
                      <floating*>d.zs, <floating*>d.dz, d.acc, d.n_acc, d.n, d.m, c0, c1)
        dense_backward_tile(t, nt, z, Xd, <floating*>d.W, <floating*>d.dW, <floating*>d.db,
                            d.acc, d.n_acc, NULL, d.n, d.m, d.k, accumulate,
                            dense_backward_blas_nt(d.bstrat, 1))
        if update:
            for i in range(fusion.n_tied):
                update_range(loops, &upd[fusion.tied[i].u], z,
                             fusion.tied[i].off + c0 * fusion.tied[i].row,
                             fusion.tied[i].off + c1 * fusion.tied[i].row, 1)
            for i in range(fusion.n_rest):
                update_range(loops, &upd[fusion.rest[i].u], z,
                             _share(fusion.rest[i].lo, fusion.rest[i].hi, t, nt),
                             _share(fusion.rest[i].lo, fusion.rest[i].hi, t + 1, nt), 1)

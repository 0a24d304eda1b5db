"""Where an optimizer's parameters and state live (a mixin of ``Optimizer``; see the layout part
of pynn.optim.optimizer's doc): one ParameterArena per dtype in group order, each group on a
cache line; state buffers laid out like the arena; per group the slices a step updates, frozen
parameters left out, made once and kept until the layout changes (``Optimizer._version``
moves whenever they are dropped)."""
import math

from ..nn.parameter import ALIGN_BYTES, Parameter, ParameterArena, aligned_empty


class FlatLayout:
    """The packing, state buffers and update slices of ``Optimizer``."""

    def _pack(self):
        """One arena per dtype in group order, each group on a cache line; record the slices."""
        by_dtype = {}
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                by_dtype.setdefault(p.dtype, []).append((gi, p))
        self._arenas, self._layout = {}, {}
        self._segments = [[] for _ in self.param_groups]
        self._runs_version = None
        self._drop_slices()
        for dtype, items in by_dtype.items():
            params = [p for _, p in items]
            starts = [k for k in range(len(items)) if k == 0 or items[k][0] != items[k - 1][0]]
            arena = params[0].arena
            line = ALIGN_BYTES // dtype.itemsize
            reusable = (
                # Already packed like this (a Sequential's arena and one group): keep it, so the
                # model's arena stays the optimizer's.
                arena is not None
                and len(arena.params) == len(params)
                and all(a is b for a, b in zip(arena.params, params))
                and arena.owns_all()
                and arena.data.ctypes.data % ALIGN_BYTES == 0
                and all(arena.offsets[k] % line == 0 for k in starts)
            )
            if not reusable:
                arena = ParameterArena(params, segment_starts=starts)
            self._arenas[dtype] = arena
            for p, off in zip(params, arena.offsets):
                self._layout[p] = (dtype, off, p.shape)
            bounds = starts + [len(items)]
            for k0, k1 in zip(bounds[:-1], bounds[1:]):
                start = arena.offsets[k0]
                stop = arena.offsets[k1 - 1] + params[k1 - 1].size
                self._segments[items[k0][0]].append((dtype, start, stop))

    def _update_runs(self):
        """Per group, the slices of the arena to update: its segments minus frozen parameters
        (``requires_grad=False``), consecutive trainable parameters merged into one slice.
        Re-derived only when some parameter was frozen or unfrozen."""
        if self._runs_version == Parameter.freeze_version:
            return
        self._runs = []
        for group in self.param_groups:
            runs = []
            last = None
            for p in group["params"]:
                dtype, off, _ = self._layout[p]
                if not p.requires_grad:
                    last = None
                elif last is not None and last[0] == dtype and last[2] == off:
                    last[2] = off + p.size
                else:
                    last = [dtype, off, off + p.size]
                    runs.append(last)
            self._runs.append([tuple(r) for r in runs])
        self._runs_version = Parameter.freeze_version
        self._drop_slices()

    def claim_parameters(self):
        """Re-pack the parameters into this optimizer's arenas if something else packed them
        since its last look (every step and zero_grad look first). A caller that looks where
        the parameters live before the step (a compiled training step) calls it first."""
        if self._arena_generation == ParameterArena.generation:
            return  # nothing was packed anywhere since the last look
        if not all(a.owns_all() for a in self._arenas.values()):
            self._repack()
        self._arena_generation = ParameterArena.generation

    def _repack(self):
        """Re-pack the parameters (after add_param_group or a foreign re-pack), moving state."""
        saved = [
            (p, key, self._view(p, key).copy())
            for p in self._layout
            for key in self._buffers.get(self._layout[p][0], {})
        ]
        self._pack()
        self._buffers = {}
        for p, key, value in saved:
            self._view(p, key)[...] = value

    def _buffer(self, dtype, key):
        """The flat, arena-sized state buffer ``key`` of ``dtype`` (zeros when first made)."""
        bufs = self._buffers.setdefault(dtype, {})
        buf = bufs.get(key)
        if buf is None:
            buf = bufs[key] = aligned_empty(self._arenas[dtype].data.size, dtype)
            buf.fill(0)
            self._drop_slices()
        return buf

    def _view(self, p, key):
        dtype, off, shape = self._layout[p]
        n = math.prod(shape)
        return self._buffer(dtype, key)[off:off + n].reshape(shape)

    def _drop_slices(self):
        self._slice_cache = {}
        self._forget_configs()

    def _ensure_state(self, gi, key, fill=0.0):
        """Initialize buffer ``key`` over group ``gi`` (once) with ``fill``."""
        gstate = self._group_state[gi]
        if key not in gstate["keys"]:
            for dtype, start, stop in self._segments[gi]:
                self._buffer(dtype, key)[start:stop] = fill
            gstate["keys"].add(key)

    def _slices(self, gi, *keys):
        """Per trainable slice of group ``gi``: (param, grad, *state buffers) flat slices (None
        for a key that is None). Frozen parameters are left out."""
        for dtype, start, stop in self._runs[gi]:
            arena = self._arenas[dtype]
            yield (arena.data[start:stop], arena.grad[start:stop]) + tuple(
                None if k is None else self._buffer(dtype, k)[start:stop] for k in keys
            )

    def _for_slices(self, gi, keys, **hypers):
        """One run of the optimizer's loop per trainable slice of group ``gi`` (see
        ``_slices``): the backend's step named by ``run_type`` called with the slices and
        ``hypers``, or inside ``update_runs`` a ``run_type`` record of them, not run.

        The slices are made once and kept until the layout changes (re-pack, freezing, a new
        state buffer); the backend checks them on their first use only (``_prechecked``), also
        when they are only described (``_check_only``).
        """
        collected = self._collected
        kernel = getattr(self.backend, self.run_type.kernel)
        cached = self._slice_cache.get((gi, keys))
        if cached is None:
            cached = list(self._slices(gi, *keys))
            for args in cached:
                kernel(*args, _check_only=collected is not None, **hypers)
            self._slice_cache[(gi, keys)] = cached
            if collected is None:
                return
        elif collected is None:
            for args in cached:
                kernel(*args, _prechecked=True, **hypers)
            return
        make = self.run_type
        for args in cached:
            collected.append(make(*args, **hypers))

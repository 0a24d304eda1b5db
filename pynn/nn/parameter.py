"""Parameters and the parameter arena: one contiguous buffer per dtype for a model's values and
another for its gradients, so one fused kernel call can update (or an Allreduce average) them all.
"""
import math

import numpy as np

# Arena buffers (and optimizer state laid out like them) start on a cache line.
ALIGN_BYTES = 64


def aligned_empty(n, dtype, align=ALIGN_BYTES):
    """An uninitialized flat array of ``n`` elements whose first element is ``align``-aligned."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + align, dtype=np.uint8)
    shift = (-raw.ctypes.data) % align
    return raw[shift:shift + n * dtype.itemsize].view(dtype)


class Parameter:
    """A trainable array with its gradient.

    ``data`` and ``grad`` are views into an arena's flat buffers. Assigning ``p.data = a`` or
    ``p.grad = g`` copies into the existing buffer (shapes must match), so every view of the
    parameter, and the arena the optimizer updates, stays valid. ``grad`` is always an array
    (zeros at first); only ``zero_grad`` clears it: backward passes accumulate.

    ``requires_grad = False`` freezes the parameter: layers skip its gradient work (a frozen
    Dense weight costs no dW GEMM) and optimizers leave it unchanged.
    """

    __slots__ = ("_data", "_grad", "_arena", "_offset", "_requires_grad", "name")

    #: bumped whenever any parameter is frozen or unfrozen, so an optimizer re-derives which
    #: slices of its arena to update only when something changed (one int compare per step)
    freeze_version = 0

    def __init__(self, data, name=None, requires_grad=True):
        data = np.asarray(data)
        if data.dtype not in (np.float32, np.float64):
            raise TypeError(f"data must have dtype float32 or float64, got {data.dtype}")
        self.name = name
        self._arena = None
        self._offset = 0
        self._requires_grad = True
        self.requires_grad = requires_grad
        ParameterArena([self], _initial=np.array(data, order="C"))

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"requires_grad must be a bool, got {type(value).__name__}")
        if bool(value) != self._requires_grad:
            self._requires_grad = bool(value)
            Parameter.freeze_version += 1

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._data[...] = _same_shape("data", value, self._data)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad[...] = 0  # torch's p.grad = None means "no gradient": zeros here
            return
        self._grad[...] = _same_shape("grad", value, self._grad)

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    @property
    def arena(self):
        """The ParameterArena whose buffers hold this parameter."""
        return self._arena

    @property
    def offset(self):
        """Start of this parameter in its arena's flat buffers (in elements)."""
        return self._offset

    def zero_grad(self):
        self._grad[...] = 0

    def __reduce__(self):
        # copy.deepcopy and pickle rebuild a standalone parameter (its own one-parameter arena)
        # from copies of the values; copying the arena views one by one would leave the copy's
        # data outside its arena, and an optimizer would then update an array nobody reads.
        return _rebuild_parameter, (self._data.copy(), self._grad.copy(), self.name,
                                    self._requires_grad)

    def __repr__(self):
        name = f"{self.name!r}, " if self.name else ""
        frozen = "" if self._requires_grad else ", requires_grad=False"
        return f"Parameter({name}shape={self.shape}, dtype={self.dtype}{frozen})"


def _rebuild_parameter(data, grad, name, requires_grad):
    p = Parameter(data, name=name, requires_grad=requires_grad)
    p.grad = grad
    return p


def _same_shape(name, value, target):
    value = np.asarray(value)
    if value.shape != target.shape:
        raise ValueError(f"{name} must have shape {target.shape}, got {value.shape}")
    if value.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got dtype {value.dtype}")
    return value


class ParameterArena:
    """Packs parameters of one dtype into a flat ``data`` buffer and a flat ``grad`` buffer.

    Parameters are laid out in the order given; each parameter's ``data``/``grad`` become views.
    Packing keeps values (data and accumulated gradients). A parameter belongs to one arena at a
    time: packing it again moves it, and the old arena no longer tracks it.
    """

    #: incremented by every packing (see ``__init__``)
    generation = 0

    def __init__(self, params, _initial=None, segment_starts=()):
        params = list(params)
        if not params:
            raise ValueError("params must hold at least one Parameter")
        dtypes = {p.dtype if _initial is None else _initial.dtype for p in params}
        if len(dtypes) != 1:
            raise TypeError(f"params must all have one dtype, got {sorted(map(str, dtypes))}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("params holds the same Parameter twice")
        self.dtype = np.dtype(dtypes.pop())
        # Every packing moves parameters: holders of arenas compare this to know whether theirs
        # could have lost a parameter since they last looked (one int compare per step).
        ParameterArena.generation += 1
        self.params = params
        self.offsets = []
        # Parameters at these indices start on a cache line (an optimizer's param groups), so
        # the threads of a fused update never share a line between two groups' kernel calls.
        line = ALIGN_BYTES // self.dtype.itemsize
        segment_starts = set(segment_starts)
        total = 0
        for i, p in enumerate(params):
            if i in segment_starts:
                total = -(-total // line) * line
            self.offsets.append(total)
            total += p.size if _initial is None else _initial.size
        self.data = aligned_empty(total, self.dtype)
        self.grad = aligned_empty(total, self.dtype)
        self.data.fill(0)  # padding between segments is never updated: keep it finite
        self.grad.fill(0)
        for p, start in zip(params, self.offsets):
            if _initial is not None:
                values, grads, shape = _initial, None, _initial.shape
            else:
                values, grads, shape = p._data, p._grad, p.shape
            n = math.prod(shape)
            data_view = self.data[start:start + n].reshape(shape)
            grad_view = self.grad[start:start + n].reshape(shape)
            data_view[...] = values
            if grads is not None:
                grad_view[...] = grads
            p._data, p._grad, p._arena, p._offset = data_view, grad_view, self, start

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        self.grad.fill(0)

    def owns_all(self):
        """True while every parameter packed here still lives here (none was re-packed)."""
        return all(p._arena is self for p in self.params)


def pack(params):
    """Pack ``params`` (all one dtype) into one new arena, in order; returns the arena."""
    return ParameterArena(params)


def arenas_of(params):
    """{dtype: arena} when the arenas now holding ``params`` hold exactly those parameters
    (one arena per dtype, each still owning all of its parameters); otherwise None.

    Lets a model adopt the arena an optimizer re-packed its parameters into, so zeroing the
    model's gradients stays one memset per dtype.
    """
    by_dtype = {}
    for p in params:
        by_dtype.setdefault(p.dtype, []).append(p)
    out = {}
    for dtype, ps in by_dtype.items():
        arena = ps[0]._arena
        if arena is None or any(p._arena is not arena for p in ps):
            return None
        if len(arena.params) != len(ps) or not arena.owns_all():
            return None
        out[dtype] = arena
    return out

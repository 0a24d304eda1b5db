"""Where ``Trainer.fit`` and ``evaluate`` get their batches: arrays in memory, rows of a
``numpy.memmap`` gathered one batch at a time (the array is never loaded whole), or an
iterable of ready-made ``(X, y)`` / ``(X, y, sample_weight)`` batches for data that does not
fit in memory at all. A SciPy sparse ``X`` (scikit-learn's sparse inputs) becomes CSR once and its
batches are CSR row slices: never densified. Each batch comes out in the model's dtype, checked (finite values, labels
in range) and with its row weights.
"""
import numpy as np

from ..backend._arrays import row_weights
from ..backend._sparse import as_sparse_array, is_sparse
from ..data import as_array, batch_bounds, split_indices
from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss


class Targets:
    """Checks and converts inputs and targets for one model and loss."""

    def __init__(self, model, loss, dtype):
        self.model, self.loss, self.dtype = model, loss, dtype

    def output_width(self, X):
        """The model's number of outputs, from a forward pass over (at most) two rows."""
        X2 = self.convert("X", X[:2])
        try:
            return self.model.predict(X2).shape[1] if hasattr(self.model, "predict") else \
                self.model.forward(X2).shape[1]
        except (ValueError, TypeError) as exc:
            raise ValueError(f"X does not fit the model: {exc}") from None

    def convert(self, name, X):
        """``X`` in the model's dtype, checked: a 2-D ndarray, or CSR for a sparse ``X``."""
        if is_sparse(X):
            return as_sparse_array(name, X, self.dtype)
        return as_array(name, X, self.dtype, ndim=2)

    def prepare(self, X, y, xname="X", yname="y", width=None):
        """Convert once to the model's dtype (labels to int), validate, return (X, y, width)."""
        X = self.convert(xname, X)
        if X.shape[0] == 0:
            raise ValueError(f"{xname} is empty")
        y, width = self.targets(X, y, xname, yname, width)
        return X, y, width

    def targets(self, X, y, xname="X", yname="y", width=None):
        """``y`` checked against ``X`` (anything with a shape, e.g. a memmap) and the loss;
        returns (y, width)."""
        if y is None:
            raise ValueError(f"{yname} is required")
        try:
            y_arr = np.asarray(y)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{yname} must be a numeric array: {exc}") from None
        if y_arr.shape[:1] != X.shape[:1]:
            raise ValueError(f"{xname} and {yname} must have the same length, got {X.shape[0]} "
                             f"and {y_arr.shape[0] if y_arr.ndim else 'a scalar'}")
        if width is None:
            width = self.output_width(X)
        if isinstance(self.loss, CrossEntropyLoss):
            y_arr = as_array(yname, y_arr)
            if y_arr.ndim != 1:
                raise ValueError(f"{yname} must be 1-D class labels for CrossEntropyLoss, got "
                                 f"shape {y_arr.shape}")
            if y_arr.dtype.kind in "fb":
                if y_arr.dtype.kind == "f" and np.any(y_arr != np.round(y_arr)):
                    raise ValueError(f"{yname} must hold integer class labels for "
                                     f"CrossEntropyLoss, got non-integer values")
            y_arr = y_arr.astype(np.int64)
            lo, hi = int(y_arr.min()), int(y_arr.max())
            if lo < 0 or hi >= width:
                raise ValueError(f"{yname} must be class labels in [0, {width}) for a model with "
                                 f"{width} outputs, got values in [{lo}, {hi}]")
            return np.ascontiguousarray(y_arr), width
        y_arr = as_array(yname, y_arr, self.dtype, ndim=(1, 2))
        if y_arr.ndim == 1:
            y_arr = y_arr.reshape(-1, 1)
        if y_arr.shape[1] != width:
            raise ValueError(f"{yname} must have shape ({X.shape[0]}, {width}) to match the "
                             f"model's outputs, got {y_arr.shape}")
        if isinstance(self.loss, BCEWithLogitsLoss) and (y_arr.min() < 0 or y_arr.max() > 1):
            raise ValueError(f"{yname} must hold probabilities in [0, 1] for BCEWithLogitsLoss, "
                             f"got values in [{y_arr.min()}, {y_arr.max()}]")
        return np.ascontiguousarray(y_arr), width


def is_memmap(X):
    return isinstance(X, np.memmap)


def check_memmap(name, X):
    """A memmap's shape and dtype, checked without reading it."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty")


class ArrayBatches:
    """Mini-batches of ``X, y, w`` (``w`` the row weights, or None).

    ``X`` is in memory in the model's dtype, or a memmap (``rows``: the indices of this part,
    e.g. the training side of a split, None for all), whose batches are gathered and converted
    one at a time by ``convert``; ``y`` and ``w`` are in memory, one entry per row of the part.
    """

    width = None  # the model's output width: fit knows it up front for arrays

    def __init__(self, X, y, w, rows=None, convert=None):
        self.X, self.y, self.w, self.rows, self.convert = X, y, w, rows, convert
        self.n = int(y.shape[0])

    def n_batches(self, batch_size):
        return len(batch_bounds(self.n, batch_size))

    def whole(self):
        """(X, y, w) when everything is in memory, else None."""
        return (self.X, self.y, self.w) if self.convert is None else None

    def batches(self, batch_size, order=None, shard=None):
        """(X_batch, y_batch, w_batch) over the rows in ``order`` (a permutation) or in turn.

        ``shard(rows) -> slice``: data parallelism's part of each batch; X_batch then holds
        only those rows (a rank gathers only its own), y_batch and w_batch the whole batch's
        (the rank weighs its part by them)."""
        for lo, hi in batch_bounds(self.n, batch_size):
            idx = slice(lo, hi) if order is None else order[lo:hi]
            xidx = idx
            if shard is not None:
                part = shard(hi - lo)
                xidx = slice(lo + part.start, lo + part.stop) if order is None else idx[part]
            if self.convert is None:
                Xb = self.X[xidx]
            else:
                # A memmap reads just these rows (fancy indexing copies them out); converted
                # and checked per batch, so the file is never loaded whole.
                Xb = self.convert(self.X[xidx if self.rows is None else self.rows[xidx]])
            yield Xb, self.y[idx], None if self.w is None else self.w[idx]


class StreamBatches:
    """Batches from ``source``: a callable returning an iterator per epoch, or a re-iterable
    object (a one-shot iterator serves one epoch only). Items are ``(X, y)`` or
    ``(X, y, sample_weight)``, converted with ``targets``."""

    n = None

    def __init__(self, source, targets, name="X"):
        if not callable(source):
            try:
                iter(source)
            except TypeError:
                raise TypeError(f"{name} must be an array, a callable returning an iterator of "
                                f"batches, or an iterable of batches, got "
                                f"{type(source).__name__}") from None
        self.source, self.targets, self.name = source, targets, name
        self.width = None

    def one_shot(self):
        """True for an iterator that is exhausted after one pass (a generator)."""
        return not callable(self.source) and iter(self.source) is self.source

    def n_batches(self, batch_size):
        return None

    def whole(self):
        return None

    def batches(self, batch_size=None, order=None, shard=None):
        """The source's batches, in its order (``batch_size`` and ``order`` do not apply);
        ``shard`` as for ``ArrayBatches.batches`` (every rank reads each whole batch)."""
        it = self.source() if callable(self.source) else iter(self.source)
        for b, item in enumerate(it):
            where = f"{self.name} batch {b}"
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise ValueError(f"{where}: each batch must be a tuple (X, y) or "
                                 f"(X, y, sample_weight), got {type(item).__name__}")
            Xb, yb, self.width = self.targets.prepare(item[0], item[1], f"{where} X",
                                                      f"{where} y", self.width)
            wb = None if len(item) == 2 else row_weights(f"{where} sample_weight", item[2],
                                                         Xb.shape[0])
            yield (Xb if shard is None else Xb[shard(Xb.shape[0])]), yb, wb


def array_source(targets, X, y, sample_weight, xname="X", yname="y", wname="sample_weight",
                 width=None):
    """An ArrayBatches over ``X, y`` (in memory or a memmap) and its ``width``."""
    if is_memmap(X):
        check_memmap(xname, X)
        y, width = targets.targets(X, y, xname, yname, width)
        w = row_weights(wname, sample_weight, X.shape[0])
        return ArrayBatches(X, y, w, convert=_converter(targets, xname)), width
    X, y, width = targets.prepare(X, y, xname, yname, width)
    return ArrayBatches(X, y, row_weights(wname, sample_weight, X.shape[0])), width


def source_for(targets, X, y, sample_weight, names=("X", "y", "sample_weight"), width=None):
    """The batch source of ``X, y``: batches from an iterable when ``y`` is None and ``X`` is
    no array, else arrays (in memory or a memmap); and the output width (None if unknown)."""
    if y is None and not isinstance(X, np.ndarray) and not is_sparse(X):
        if sample_weight is not None:
            raise ValueError(f"{names[2]} cannot be given with batches from an iterable; "
                             f"yield (X, y, sample_weight) batches instead")
        return StreamBatches(X, targets, names[0]), width
    return array_source(targets, X, y, sample_weight, *names, width=width)


def fit_sources(targets, X, y, sample_weight, validation_split, validation_data, epochs):
    """``fit``'s training source, its validation source from ``validation_data`` (None
    without), and the model's output width."""
    train, width = source_for(targets, X, y, sample_weight)
    if isinstance(train, StreamBatches):
        if validation_split is not None:
            raise ValueError("validation_split needs arrays; with batches from an iterable "
                             "pass validation_data")
        if train.one_shot() and epochs > 1:
            raise ValueError("X is a one-shot iterator (e.g. a generator), which can serve one "
                             "epoch only; pass a callable returning a fresh iterator per epoch, "
                             "or a re-iterable object")
    if validation_data is None:
        return train, None, width
    if not isinstance(validation_data, (tuple, list)):
        return train, StreamBatches(validation_data, targets, "validation_data"), width
    if len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (X_val, y_val) or "
                         "(X_val, y_val, sample_weight_val), or batches")
    val, width = array_source(targets, validation_data[0], validation_data[1],
                              validation_data[2] if len(validation_data) == 3 else None,
                              "X_val", "y_val", "sample_weight_val", width)
    return train, val, width


def holdout(train, validation_split, stratify, seed):
    """(training part, validation part) of an array source: ``validation_split`` of the rows,
    shuffled from ``seed`` and stratified by class if asked."""
    if isinstance(validation_split, bool) or not isinstance(
        validation_split, (int, float)
    ) or not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be a number in (0, 1), got "
                         f"{validation_split!r}")
    if train.n < 2:
        raise ValueError("validation_split needs at least 2 samples")
    tr, va = split_indices(train.y, validation_split, stratify=stratify, seed=seed)
    parts = []
    for idx in (tr, va):
        w = None if train.w is None else train.w[idx]
        if train.convert is None:
            parts.append(ArrayBatches(train.X[idx], train.y[idx], w))
        else:
            parts.append(ArrayBatches(train.X, train.y[idx], w, rows=idx,
                                      convert=train.convert))
    return parts


def _converter(targets, name):
    return lambda Xb: as_array(name, Xb, targets.dtype, ndim=2)

"""Data helpers: validation splits, scaling, label encoding, mini-batches and augmentation."""
import inspect

import numpy as np

from ._checks import check_int, check_real
from .backend._arrays import as_array
from ._random import rng as _rng
from .nn.standardizer import Standardizer


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
        0.0 < value < 1.0
    ):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def split_indices(y, val_fraction, stratify=False, seed=None):
    """Shuffled (train_index, val_index) for ``len(y)`` samples.

    With ``stratify`` each class contributes its share of ``round(val_fraction * n)``
    validation samples (largest-remainder rounding; at least one when the class has two or
    more), so both parts keep the class proportions. Both index arrays come back shuffled.
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    y = np.asarray(y)
    n = y.shape[0]
    rng = _rng(seed)
    if not stratify:
        perm = rng.permutation(n)
        n_val = int(round(val_fraction * n))
        if n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        return perm[n_val:], perm[:n_val]
    if y.ndim != 1:
        raise ValueError(f"stratify needs 1-D class labels, got shape {y.shape}")
    classes, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse)
    # Largest remainder: the total is round(val_fraction * n), shared out in proportion, so
    # rounding per class cannot drift the total (5 + 5 samples at 0.3 give 3, not 4).
    quota = val_fraction * counts
    k = np.floor(quota).astype(np.int64)
    short = int(round(val_fraction * n)) - int(k.sum())
    if short > 0:
        k[np.argsort(-(quota - k), kind="stable")[:short]] += 1
    # A class with two or more samples appears in both parts.
    k = np.where(counts >= 2, np.clip(k, 1, counts - 1), k)
    train, val = [], []
    for c in range(classes.size):
        idx = np.flatnonzero(inverse == c)
        idx = idx[rng.permutation(idx.size)]
        val.append(idx[:k[c]])
        train.append(idx[k[c]:])
    train = np.concatenate(train)
    val = np.concatenate(val)
    return train[rng.permutation(train.size)], val[rng.permutation(val.size)]


def train_val_split(X, y, val_fraction=0.2, stratify=False, seed=None):
    """Split ``X, y`` into shuffled training and validation parts.

    Parameters
    ----------
    X, y : array-like with the same first dimension
    val_fraction : float in (0, 1), default 0.2
    stratify : bool, default False
        Keep the class proportions of ``y`` (integer or string labels) in both parts.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    X_train, X_val, y_train, y_val
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same length, got {X.shape[0]} and {y.shape[0]}")
    tr, va = split_indices(y, val_fraction, stratify=stratify, seed=seed)
    return X[tr], X[va], y[tr], y[va]


def one_hot(y, num_classes=None, dtype=np.float32):
    """Rows of a one-hot matrix for integer labels ``y`` in [0, num_classes)."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"y must be 1-D integer labels, got dtype {y.dtype} and shape {y.shape}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"y must be in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    out = np.zeros((y.size, num_classes), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out


class LabelEncoder:
    """Map arbitrary labels (ints, strings) to 0..K-1 and back, classes sorted like np.unique."""

    def __init__(self):
        self.classes_ = None

    def fit(self, y):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        self.classes_ = np.unique(y)
        return self

    def transform(self, y):
        if self.classes_ is None:
            raise RuntimeError("LabelEncoder is not fitted; call fit(y) first")
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, self.classes_.size - 1)
        bad = self.classes_[idx] != y
        if np.any(bad):
            raise ValueError(f"y contains labels not seen in fit: {np.unique(y[bad])[:5].tolist()}")
        return idx.astype(np.int64)

    def fit_transform(self, y):
        return self.fit(y).transform(y)

    def inverse_transform(self, idx):
        if self.classes_ is None:
            raise RuntimeError("LabelEncoder is not fitted; call fit(y) first")
        return self.classes_[np.asarray(idx)]


def batch_bounds(n, batch_size):
    """(start, stop) of the mini-batches over ``n`` samples.

    A trailing batch of a single sample is merged into the one before (BatchNorm cannot
    normalize one sample in training mode, and every sample still gets used).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    starts = list(range(0, n, batch_size))
    bounds = [(s, min(s + batch_size, n)) for s in starts]
    if len(bounds) >= 2 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def minibatches(X, y=None, batch_size=32, shuffle=True, seed=None):
    """Iterate over ``(X_batch, y_batch)`` (or ``X_batch`` without ``y``).

    Parameters
    ----------
    X, y : ndarray with the same first dimension
    batch_size : int
    shuffle : bool, default True
        A new permutation per call, drawn from ``seed`` (an int or a Generator, which advances).
    """
    n = len(X)
    if y is not None and len(y) != n:
        raise ValueError(f"X and y must have the same length, got {n} and {len(y)}")
    order = _rng(seed).permutation(n) if shuffle else None
    for a, b in batch_bounds(n, batch_size):
        idx = slice(a, b) if order is None else order[a:b]
        yield (X[idx], y[idx]) if y is not None else X[idx]


class GaussianNoise:
    """Augmentation: add ``N(0, std**2)`` noise to each training batch (never to validation).

    Parameters
    ----------
    std : float >= 0
    """

    def __init__(self, std):
        if isinstance(std, bool) or not isinstance(std, (int, float, np.floating)) or not (
            np.isfinite(std) and std >= 0
        ):
            raise ValueError(f"std must be a finite number >= 0, got {std!r}")
        self.std = float(std)

    def __call__(self, X, rng=None):
        if self.std == 0:
            return X
        noise = _rng(rng).standard_normal(X.shape)
        return (X + self.std * noise).astype(X.dtype)

    def __repr__(self):
        return f"GaussianNoise(std={self.std})"


class RandomShift:
    """Augmentation: translate each image of a batch by a random whole number of pixels.

    Every sample gets its own shift (dy, dx), each drawn uniformly from
    ``[-max_shift, max_shift]``; pixels shifted in from outside the image take ``fill``. Apply
    it to raw pixels (whose background is ``fill``), before any standardization: put a fitted
    ``Standardizer`` first in the model to standardize after the shift.

    Parameters
    ----------
    image_shape : (height, width)
        Each row of a batch is one image of this shape, flattened row by row.
    max_shift : int >= 0, default 2
        Less than both height and width.
    fill : float, default 0
    """

    def __init__(self, image_shape, max_shift=2, fill=0.0):
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2:
            raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
        self.image_shape = tuple(check_int(f"image_shape[{i}]", v, 1)
                                 for i, v in enumerate(image_shape))
        self.max_shift = check_int("max_shift", max_shift, 0, min(self.image_shape) - 1)
        self.fill = check_real("fill", fill)

    def __call__(self, X, rng=None):
        height, width = self.image_shape
        if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != height * width:
            raise ValueError(f"X must be a 2-D array of images with {height * width} "
                             f"(= {height} x {width}) columns, got shape "
                             f"{getattr(X, 'shape', type(X).__name__)}")
        s = self.max_shift
        if s == 0 or X.shape[0] == 0:
            return X
        shifts = _rng(rng).integers(-s, s + 1, size=(X.shape[0], 2))
        images = X.reshape(-1, height, width)
        padded = np.full((X.shape[0], height + 2 * s, width + 2 * s), self.fill, X.dtype)
        padded[:, s:s + height, s:s + width] = images
        out = np.empty_like(images)
        # One slice per distinct shift (at most (2s + 1)**2), not one per sample.
        for dy, dx in np.unique(shifts, axis=0):
            rows = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            # the image moves by (dy, dx): out[y, x] = image[y - dy, x - dx]
            out[rows] = padded[rows, s - dy:s - dy + height, s - dx:s - dx + width]
        return out.reshape(X.shape)

    def __repr__(self):
        return (f"RandomShift(image_shape={self.image_shape}, max_shift={self.max_shift}, "
                f"fill={self.fill})")


def augmentation_caller(hook):
    """Wrap an augmentation hook as ``f(X_batch, rng) -> X_batch``.

    A hook is any callable taking a batch and returning one of the same shape; one that also
    accepts an ``rng`` keyword gets the Trainer's generator, so augmented runs are reproducible
    and resumable.
    """
    if not callable(hook):
        raise TypeError(f"augment hooks must be callable, got {type(hook).__name__}")
    try:
        takes_rng = "rng" in inspect.signature(hook).parameters
    except (TypeError, ValueError):
        takes_rng = False
    if takes_rng:
        return lambda X, rng: hook(X, rng=rng)
    return lambda X, rng: hook(X)


__all__ = ["GaussianNoise", "LabelEncoder", "RandomShift", "Standardizer", "as_array",
           "batch_bounds", "minibatches", "one_hot", "split_indices", "train_val_split"]

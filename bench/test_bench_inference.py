"""Inference on a few rows: the latency of ``predict`` on the medium net (eval mode), and of a
one-row Dense forward, each beside what it is measured against in one run.

- ``predict`` on 1 and 16 rows: the program ``predict`` keeps on the model (unfolded for a few
  rows: the layers on their live arrays, one call into C), against the same program forced to
  fold (every folded weight computed per call, what ``predict`` ran on a few rows before) and
  NumPy's matrix products.
- one row of 784 -> 256: the Cython kernel (a matrix-vector product for at most 4 rows)
  against the NumPy reference backend (``X @ W.T``).
"""
import numpy as np
import pytest

from pynn import nn
from pynn.backend import backend_for

from conftest import assert_matches_reference


def _medium_net():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Dense(784, 256, seed=1), nn.BatchNorm(256), nn.ReLU(),
                          nn.Dense(256, 128, seed=2), nn.BatchNorm(128), nn.ReLU(),
                          nn.Dense(128, 10, seed=3))
    X = rng.standard_normal((128, 784)).astype(np.float32)
    for _ in range(3):
        model.forward(X)  # running statistics away from 0 and 1
    return model.eval(), X


def _numpy_predict(model, X):
    h = X
    for layer in model:
        if isinstance(layer, nn.Dense):
            h = h @ layer.weight.data.T + layer.bias.data
        elif isinstance(layer, nn.BatchNorm):
            h = (h - layer.running_mean) / np.sqrt(layer.running_var + layer.eps) \
                * layer.weight.data + layer.bias.data
        else:
            h = np.maximum(h, 0)
    return h


@pytest.mark.parametrize("how", ["predict", "folded", "numpy"])
@pytest.mark.parametrize("rows", [1, 16])
def test_predict_few_rows(benchmark, n_threads, rows, how):
    benchmark.group = f"predict medium net, {rows} row(s) f32"
    model, X = _medium_net()
    x = X[:rows].copy()
    if how == "predict":
        run = lambda: model.predict(x)  # noqa: E731
    elif how == "folded":
        program = model._inference_program()
        run = lambda: program.run(x, 1024, fold=True)  # noqa: E731
    else:
        run = lambda: _numpy_predict(model, x)  # noqa: E731
    out = benchmark(run)
    assert_matches_reference(out, _numpy_predict(model, x))


@pytest.mark.parametrize("backend_name", ["cython", "numpy"])
def test_dense_forward_one_row(benchmark, n_threads, backend_name):
    benchmark.group = "dense_forward 1x784->256 f32"
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 784)).astype(np.float32)
    W = (rng.standard_normal((256, 784)) * np.sqrt(2.0 / 784)).astype(np.float32)
    b = (rng.standard_normal(256) * 0.1).astype(np.float32)
    Y = np.empty((1, 256), np.float32)
    benchmark(backend_for(backend_name).dense_forward, x, W, b, "relu", out=Y)
    assert_matches_reference(Y, backend_for("numpy").dense_forward(x, W, b, "relu"))

"""The inference program ``predict`` keeps on a Sequential (pynn.nn.inference): rebuilt whenever
something it recorded is replaced, never stale, safe from many threads at once, and the same
answers on every path (tests/test_plan.py: folding, the few-rows choice, writes into arrays)."""
import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.data import Standardizer

F32, F64 = np.float32, np.float64


def _model(dtype=F64, slope=0.1):
    rng = np.random.default_rng(0)
    Xtr = (rng.standard_normal((64, 6)) * 3 + 2).astype(dtype)
    model = nn.Sequential(
        Standardizer(dtype=dtype).fit(Xtr), nn.Dense(6, 9, seed=1, dtype=dtype),
        nn.BatchNorm(9, dtype=dtype), nn.LeakyReLU(slope), nn.Dense(9, 4, seed=2, dtype=dtype))
    for _ in range(3):
        model.forward(Xtr)  # running statistics away from 0 and 1
    model[4].bias.data[:] = 0.3
    return model.eval()


def _layer_by_layer(model, X):
    for layer in model:
        X = layer.infer(X)
    return X


def _check(model, X):
    """predict on a few rows (unfolded: the same bits) and on all of X (folded)."""
    program = model._inference_program()
    assert program is not None and not program.folds(3) and program.folds(len(X))
    np.testing.assert_array_equal(model.predict(X[:3]), _layer_by_layer(model, X[:3]))
    tol = dict(rtol=1e-12, atol=1e-13) if X.dtype == F64 else dict(rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(X), _layer_by_layer(model, X), **tol)
    return program


def _repack(model):
    model.pack()
    model[1].weight.data[0, 0] += 1.0  # a write into the new arena must show


# What can change without a write into an array the program reads: each must rebuild it.
EDITS = {
    "buffer assigned": lambda m: setattr(m[2], "running_mean", m[2].running_mean + 0.5),
    "standardizer refit": lambda m: m[0].fit(np.random.default_rng(1).random((20, 6)) * 5),
    "parameters re-packed": _repack,
    "eps": lambda m: setattr(m[2], "eps", 0.5),
    "slope": lambda m: setattr(m[3], "negative_slope", -0.2),
    "layer replaced": lambda m: m.add_module("4", nn.Dense(9, 4, seed=5, dtype=F64)),
    "bias removed": lambda m: setattr(m[4], "bias", None),
    "layer on numpy": lambda m: m[4].set_backend("numpy"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_what_replaces_an_array_or_a_setting_rebuilds_the_program(edit, rng):
    model = _model()
    X = rng.standard_normal((40, 6))
    program = _check(model, X)
    assert model._inference_program() is program  # kept while nothing changed
    before = model.predict(X)
    EDITS[edit](model)
    rebuilt = _check(model, X)
    assert rebuilt is not program
    if edit == "layer on numpy":  # another backend: the same function, run from Python
        assert not rebuilt.compiled
        np.testing.assert_allclose(model.predict(X), before, rtol=1e-12, atol=1e-13)
    else:
        assert rebuilt.compiled
        assert not np.allclose(model.predict(X), before)


def test_the_global_backend_switch_is_followed(rng):
    model = _model()
    X = rng.standard_normal((40, 6))
    compiled = model.predict(X)
    pynn.set_backend("numpy")
    try:
        program = _check(model, X)
        assert not program.compiled
        # the NumPy backend runs the layers unfolded: the layer-by-layer forward, any rows
        np.testing.assert_array_equal(model.predict(X), _layer_by_layer(model, X))
        np.testing.assert_allclose(model.predict(X), compiled, rtol=1e-12, atol=1e-13)
    finally:
        pynn.set_backend("cython")
    assert _check(model, X).compiled


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_predict_from_many_threads_at_once(dtype):
    # each call has its own buffers; the weights are only read
    pynn.set_num_threads(2)
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Dense(300, 256, seed=1, dtype=dtype), nn.BatchNorm(256, dtype=dtype),
                          nn.ReLU(), nn.Dense(256, 64, seed=2, dtype=dtype),
                          nn.BatchNorm(64, dtype=dtype), nn.Tanh(),
                          nn.Dense(64, 10, seed=3, dtype=dtype), nn.Softmax())
    model.forward(rng.standard_normal((64, 300)).astype(dtype))
    model.eval()
    inputs = [rng.standard_normal((rows, 300)).astype(dtype) for rows in (1, 3, 7, 16, 40, 900)]
    expected = [model.predict(X, batch_size=256) for X in inputs]

    def call(i):
        return i % len(inputs), model.predict(inputs[i % len(inputs)], batch_size=256)

    with ThreadPoolExecutor(max_workers=6) as pool:
        for i, out in pool.map(call, range(240)):
            np.testing.assert_array_equal(out, expected[i])


def test_buffers_the_kernels_cannot_read_fall_back_to_the_layers(rng):
    model = _model(F32)
    X = rng.standard_normal((5, 6)).astype(F32)
    model[2].running_var = np.ones(9, F32).repeat(2)[::2]  # strided: the layer copies it
    assert model._inference_program() is None
    np.testing.assert_array_equal(model.predict(X), _layer_by_layer(model, X))
    model[2].running_var = np.ones(9)  # float64 in a float32 model: the layer's own error
    with pytest.raises(TypeError, match="running_var"):
        model.predict(X)


def test_inputs_of_any_layout_and_no_rows(rng):
    model = _model()
    X = rng.standard_normal((40, 6))
    expected = model.predict(X)
    np.testing.assert_array_equal(model.predict(np.asfortranarray(X)), expected)
    np.testing.assert_array_equal(model.predict(np.repeat(X, 2, axis=0)[::2]), expected)
    assert model.predict(X[:0]).shape == (0, 4)
    for batch in (1, 3, 40, np.int64(7)):
        np.testing.assert_allclose(model.predict(X, batch_size=batch), expected, rtol=1e-12,
                                   atol=1e-13)


def test_copies_keep_no_program_and_predict_on_their_own(rng):
    model = _model()
    X = rng.standard_normal((40, 6))
    expected = model.predict(X)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert twin.__dict__["_inference"] is None
        np.testing.assert_array_equal(twin.predict(X), expected)
        twin[1].weight.data[:] = 0.0
        np.testing.assert_array_equal(model.predict(X), expected)
        assert not np.allclose(twin.predict(X), expected)


# ------------------------------------------------------------------- the smooth activations
def _smooth_model(dtype):
    """Every smooth kind (issue 21) in a Dense epilogue, Softplus with its two scalars, SiLU
    after a BatchNorm as an op of its own; up to 16 rows take the few-rows kernel (DENSE_DOT
    in csrc/_dense.pxd), more the GEMM."""
    rng = np.random.default_rng(4)
    Xtr = (rng.standard_normal((64, 300)) * 2 + 1).astype(dtype)
    model = nn.Sequential(
        Standardizer(dtype=dtype).fit(Xtr), nn.Dense(300, 128, seed=1, dtype=dtype), nn.GELU(),
        nn.Dense(128, 64, seed=2, dtype=dtype), nn.BatchNorm(64, dtype=dtype), nn.SiLU(),
        nn.Dense(64, 32, seed=3, dtype=dtype), nn.Softplus(beta=1.5, threshold=4.0),
        nn.Dense(32, 16, seed=4, dtype=dtype), nn.Mish(),
        nn.Dense(16, 8, seed=5, dtype=dtype), nn.GELU(approximate="tanh"),
        nn.Dense(8, 3, seed=6, dtype=dtype))
    for _ in range(3):
        model.forward(Xtr)
    return model.eval()


@pytest.mark.parametrize("n_threads", [1, 2], ids=["t1", "t2"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_smooth_activations_run_in_the_program_with_the_layers_bits(dtype, n_threads):
    pynn.set_num_threads(n_threads)
    model = _smooth_model(dtype)
    X = np.random.default_rng(5).standard_normal((900, 300)).astype(dtype)
    program = model._inference_program()
    assert program.compiled
    assert program.describe(3) == ["standardize", "dense+gelu", "dense", "batchnorm", "silu",
                                   "dense+softplus", "dense+mish", "dense+gelu_tanh", "dense"]
    for rows in (1, 4, 5, 16, 40):  # per-row products, the few-rows product, the usual one
        assert not program.folds(rows)
        np.testing.assert_array_equal(model.predict(X[:rows]), _layer_by_layer(model, X[:rows]))
    assert program.folds(len(X))
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == F64 else dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(model.predict(X), _layer_by_layer(model, X), **tol)
    model[12].set_backend("numpy")  # the ops from Python: softplus's pair through the backend
    assert not model._inference_program().compiled
    np.testing.assert_allclose(model.predict(X[:16]), _layer_by_layer(model, X[:16]), **tol)


@pytest.mark.parametrize("edit", ["softplus threshold", "softplus beta", "gelu form"])
def test_a_smooth_activations_parameter_or_form_rebuilds_the_program(edit):
    model = _smooth_model(F64)
    X = np.random.default_rng(6).standard_normal((7, 300)) * 3
    program = model._inference_program()
    before = model.predict(X)
    if edit == "softplus threshold":
        model[7].threshold = 0.5
    elif edit == "softplus beta":
        model[7].beta = -1.0
    else:
        model[2].approximate, model[2].activation = "tanh", "gelu_tanh"
    rebuilt = model._inference_program()
    assert rebuilt is not program and rebuilt.compiled
    np.testing.assert_array_equal(model.predict(X), _layer_by_layer(model, X))
    assert not np.allclose(model.predict(X), before)

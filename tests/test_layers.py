"""Layers, Sequential and losses through the public layer API, on both backends."""
import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.backend import set_backend

from conftest import assert_close, numerical_grad

F32, F64 = np.float32, np.float64


@pytest.fixture(params=["numpy", "cython"])
def backend_name(request):
    set_backend(request.param)
    yield request.param
    set_backend("cython")


ACTIVATION_LAYERS = [
    nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, lambda: nn.LeakyReLU(0.2), lambda: nn.LeakyReLU(-0.3),
    lambda: nn.ELU(0.7), nn.Square, nn.Step, nn.Softmax,
]


def _away_from_kinks(rng, shape):
    # |v| >= 0.1 keeps central differences off the kinks of ReLU/step/ELU at 0
    v = rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return v.astype(F64)


def _check_layer_dx(layer, X, rng, atol=1e-6):
    """dX from backward equals central differences of sum(forward(X) * R)."""
    Y = layer.forward(X)
    R = rng.standard_normal(Y.shape)
    layer.zero_grad()
    dX = layer.backward(R.copy())
    num = numerical_grad(lambda: float(np.sum(layer.forward(X) * R)), X)
    np.testing.assert_allclose(dX, num, rtol=1e-6, atol=atol)


@pytest.mark.parametrize("make", ACTIVATION_LAYERS)
def test_activation_layer_gradients(backend_name, make, rng):
    layer = make()
    _check_layer_dx(layer, _away_from_kinks(rng, (4, 5)), rng)


def test_dense_gradients_dx_dw_db(backend_name, rng):
    layer = nn.Dense(5, 3, seed=0, dtype=F64)
    X = rng.standard_normal((4, 5))
    R = rng.standard_normal((4, 3))
    objective = lambda: float(np.sum(layer.forward(X) * R))  # noqa: E731
    layer.forward(X)
    layer.zero_grad()
    dX = layer.backward(R)
    np.testing.assert_allclose(dX, numerical_grad(objective, X), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.weight.grad, numerical_grad(objective, layer.weight.data),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.bias.grad, numerical_grad(objective, layer.bias.data),
                               rtol=1e-6, atol=1e-8)


def test_batchnorm_gradients_training_and_eval(backend_name, rng):
    layer = nn.BatchNorm(3, dtype=F64)
    layer.weight.data = rng.uniform(0.5, 2.0, 3)
    layer.bias.data = rng.standard_normal(3)
    X = rng.standard_normal((6, 3)) * 3 + 1
    _check_layer_dx(layer, X, rng)
    layer.running_mean[...] = rng.standard_normal(3)
    layer.running_var[...] = rng.uniform(0.5, 2.0, 3)
    layer.eval()
    _check_layer_dx(layer, X, rng)
    R = rng.standard_normal((6, 3))
    objective = lambda: float(np.sum(layer.forward(X) * R))  # noqa: E731
    layer.zero_grad()
    layer.forward(X)
    layer.backward(R)
    np.testing.assert_allclose(layer.weight.grad, numerical_grad(objective, layer.weight.data),
                               rtol=1e-6, atol=1e-8)


def test_dropout_backward_uses_the_forward_mask(backend_name, rng):
    layer = nn.Dropout(0.4, seed=3)
    X = rng.standard_normal((50, 20))
    Y = layer.forward(X)
    kept = Y != 0
    assert 0.45 < kept.mean() < 0.75
    np.testing.assert_allclose(Y[kept], X[kept] / 0.6, rtol=1e-12)
    dX = layer.backward(np.ones_like(X))
    np.testing.assert_array_equal(dX != 0, kept)
    # a new training call draws a new mask; eval is the identity
    assert not np.array_equal(layer.forward(X) != 0, kept)
    layer.eval()
    assert layer.forward(X) is X and layer.backward(X) is X


def _model(dtype=F64, backend=None):
    return nn.Sequential(
        nn.Dense(6, 8, seed=1, dtype=dtype), nn.BatchNorm(8, dtype=dtype), nn.Tanh(),
        nn.Dense(8, 7, seed=2, dtype=dtype), nn.ReLU(),
        nn.Dense(7, 5, seed=3, dtype=dtype), nn.Sigmoid(),
        nn.Dense(5, 3, seed=4, dtype=dtype), backend=backend,
    )


def test_sequential_gradient_over_packed_parameter_vector(backend_name, rng):
    model = _model()
    loss = nn.CrossEntropyLoss()
    X = rng.standard_normal((9, 6))
    y = rng.integers(0, 3, 9)
    (arena,) = model.arenas.values()
    model.zero_grad()
    loss.forward(model.forward(X), y)
    model.backward(loss.backward())
    analytic = arena.grad.copy()
    numeric = numerical_grad(lambda: loss.forward(model.forward(X), y), arena.data)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    assert arena.data.size == sum(p.size for p in model.parameters())


@pytest.mark.parametrize("loss_cls", [nn.MSELoss, nn.BCEWithLogitsLoss])
def test_elementwise_losses_gradient_through_a_model(backend_name, loss_cls, rng):
    model = nn.Sequential(nn.Dense(4, 6, seed=0, dtype=F64), nn.ELU(), nn.Dense(6, 2, seed=1, dtype=F64))
    X = rng.standard_normal((5, 4))
    T = rng.uniform(0, 1, (5, 2))
    loss = loss_cls()
    (arena,) = model.arenas.values()
    model.zero_grad()
    loss.forward(model.forward(X), T)
    model.backward(loss.backward())
    numeric = numerical_grad(lambda: loss.forward(model.forward(X), T), arena.data)
    np.testing.assert_allclose(arena.grad, numeric, rtol=1e-5, atol=1e-8)


def test_backends_give_the_same_model_results(rng):
    X = rng.standard_normal((33, 6))
    y = rng.integers(0, 3, 33)
    results = []
    for name in ("numpy", "cython"):
        model = _model(backend=name)
        loss = nn.CrossEntropyLoss(backend=name)
        value = loss.forward(model.forward(X), y)
        model.backward(loss.backward())
        results.append((value, model.arenas[np.dtype(F64)].grad.copy(), model.forward(X)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-10, atol=1e-12)


def test_fused_dense_activation_equals_separate_layers(backend_name, rng):
    X = rng.standard_normal((10, 4)).astype(F32)
    fused = nn.Sequential(nn.Dense(4, 5, seed=0, init="xavier_normal"), nn.Sigmoid())
    assert fused.fused_steps() == [(0, "Dense+sigmoid")]  # the sigmoid runs in the epilogue
    dense = nn.Dense(4, 5, seed=0, init="xavier_normal")
    act = nn.Sigmoid()
    assert_close(fused.forward(X), act.forward(dense.forward(X)), F32)
    R = rng.standard_normal((10, 5)).astype(F32)
    fused.backward(R)
    dense.backward(act.backward(R))
    assert_close(fused[0].weight.grad, dense.weight.grad, F32, k=10)
    assert_close(fused[0].bias.grad, dense.bias.grad, F32, k=10)


def test_square_and_negative_slope_are_not_fused():
    model = nn.Sequential(nn.Dense(2, 2), nn.Square(), nn.Dense(2, 2), nn.LeakyReLU(-0.5))
    assert model.fused_steps() == []


def test_gradients_accumulate_until_zero_grad(backend_name, rng):
    model = _model()
    X = rng.standard_normal((5, 6))
    out = model.forward(X)
    model.backward(np.ones_like(out))
    once = [p.grad.copy() for p in model.parameters()]
    model.forward(X)
    model.backward(np.ones_like(out))
    for p, g in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-12, atol=1e-14)
    model.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())


def test_grad_is_an_array_and_assignment_copies_into_the_arena():
    model = nn.Sequential(nn.Dense(3, 2), nn.Dense(2, 1))
    p = model[0].weight
    assert isinstance(p.grad, np.ndarray) and not p.grad.any()
    view = p.grad
    p.grad = np.full((2, 3), 2.0)
    assert view is p.grad and np.all(view == 2.0)
    p.grad[...] = 3.0
    (arena,) = model.arenas.values()
    np.testing.assert_array_equal(arena.grad[:6], 3.0)
    p.data = np.zeros((2, 3))
    assert not arena.data[:6].any()
    with pytest.raises(ValueError, match=r"grad must have shape \(2, 3\)"):
        p.grad = np.zeros((3, 2))


@pytest.mark.parametrize("make", [lambda: nn.Dense(4, 3), lambda: nn.BatchNorm(4)])
@pytest.mark.parametrize("bad", [np.float64, np.int64, np.float16])
def test_layer_never_casts_silently(make, bad):
    layer = make()
    with pytest.raises(TypeError, match=rf"X has dtype {np.dtype(bad).name} but the layer's dtype is float32"):
        layer.forward(np.ones((3, 4), dtype=bad))


def test_float64_layers_take_float64():
    layer = nn.Dense(4, 3, dtype=F64)
    assert layer.forward(np.ones((2, 4))).dtype == F64
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nn.Dense(4, 3, dtype=np.int32)


def test_empty_batch(backend_name):
    X = np.zeros((0, 4), F32)
    assert nn.Dense(4, 3).forward(X).shape == (0, 3)
    assert nn.ReLU().forward(X).shape == (0, 4)
    model = nn.Sequential(nn.Dense(4, 3), nn.ReLU(), nn.Dense(3, 2))
    assert model.forward(X).shape == (0, 2)
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        nn.BatchNorm(4).forward(X)
    with pytest.raises(ValueError, match="empty batch"):
        nn.MSELoss().forward(np.zeros((0, 2), F32), np.zeros((0, 2), F32))
    with pytest.raises(ValueError, match="empty batch"):
        nn.CrossEntropyLoss().forward(np.zeros((0, 2), F32), np.zeros(0, np.int64))


def test_batchnorm_single_sample_training_raises_eval_works():
    bn = nn.BatchNorm(3)
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        bn.forward(np.ones((1, 3), F32))
    bn.eval()
    np.testing.assert_allclose(bn.forward(np.ones((1, 3), F32)), 1 / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_nan_propagates(backend_name):
    X = np.array([[np.nan, 1.0, -1.0, 2.0]], F32)
    assert np.isnan(nn.Dense(4, 2).forward(X)).all()
    assert np.isnan(nn.Sigmoid().forward(X)[0, 0])
    assert np.isnan(nn.Tanh().forward(X)[0, 0])


def test_dropout_validation():
    for p in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
            nn.Dropout(p)


def test_layer_constructor_validation():
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        nn.Dense(0, 3)
    with pytest.raises(TypeError, match="out_features must be an int"):
        nn.Dense(3, 2.5)
    with pytest.raises(ValueError, match="init must be one of"):
        nn.Dense(3, 2, init="lecun")
    with pytest.raises(ValueError, match="momentum must be a number in"):
        nn.BatchNorm(3, momentum=2)
    with pytest.raises(TypeError, match=r"layers\[1\] must be a pynn Module"):
        nn.Sequential(nn.Dense(2, 2), "relu")
    with pytest.raises(TypeError, match="layers must share one dtype"):
        nn.Sequential(nn.Dense(2, 2), nn.Dense(2, 2, dtype=F64))


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.Dense(2, 2).backward(np.ones((1, 2), F32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.MSELoss().backward()


def test_step_is_zero_at_zero_with_zero_gradient(backend_name):
    step = nn.Step()
    X = np.array([[-1.0, 0.0, 2.0]], F32)
    np.testing.assert_array_equal(step.forward(X), [[0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(step.backward(np.ones_like(X)), 0.0)


def test_default_init_follows_the_next_activation():
    fan_in = 400
    relu_model = nn.Sequential(nn.Dense(fan_in, 300, seed=0), nn.BatchNorm(300), nn.ReLU())
    tanh_model = nn.Sequential(nn.Dense(fan_in, 300, seed=0), nn.Tanh())
    he_std = np.sqrt(2.0 / fan_in)
    xavier_std = np.sqrt(2.0 / (fan_in + 300))
    assert abs(relu_model[0].weight.data.std() / he_std - 1) < 0.02
    assert abs(tanh_model[0].weight.data.std() / xavier_std - 1) < 0.02


@pytest.mark.parametrize("name,bound_or_std,uniform", [
    ("he_normal", np.sqrt(2 / 200), False), ("he_uniform", np.sqrt(6 / 200), True),
    ("xavier_normal", np.sqrt(2 / 500), False), ("xavier_uniform", np.sqrt(6 / 500), True),
])
def test_initializer_scales(name, bound_or_std, uniform):
    w = nn.init.get_initializer(name)((300, 200), rng=0)
    assert w.dtype == F32 and w.shape == (300, 200)
    if uniform:
        assert np.abs(w).max() <= bound_or_std
        assert abs(w.std() / (bound_or_std / np.sqrt(3)) - 1) < 0.02
    else:
        assert abs(w.std() / bound_or_std - 1) < 0.02
    np.testing.assert_array_equal(w, nn.init.get_initializer(name)((300, 200), rng=0))


def test_scaled_normal_init():
    w = nn.init.scaled_normal((500, 400), scale=0.05, rng=1)
    assert abs(w.std() / 0.05 - 1) < 0.02 and abs(w.mean()) < 0.002


def test_predict_batches_and_restores_mode(rng):
    model = nn.Sequential(nn.Dense(3, 4, seed=0), nn.BatchNorm(4), nn.ReLU(), nn.Dropout(0.5, seed=0),
                          nn.Dense(4, 2, seed=1))
    X = rng.standard_normal((25, 3)).astype(F32)
    full = model.predict(X, batch_size=100)
    np.testing.assert_allclose(model.predict(X, batch_size=7), full, rtol=1e-6)
    assert model.training
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.predict(X, batch_size=0)


def test_summary_lists_layers_and_parameter_count(capsys):
    model = nn.Sequential(nn.Dense(784, 256), nn.ReLU(), nn.Dense(256, 10))
    text = model.summary()
    assert "total parameters: 203,530" in text and "fused: Dense+relu at 0" in text
    assert "Dense(in_features=784" in capsys.readouterr().out


def test_wrapping_a_used_dense_never_redraws_its_weights(rng):
    dense = nn.Dense(20, 10, seed=0)
    nn.Sequential(dense, nn.ReLU())  # gives the layer its He default
    he_weights = dense.weight.data.copy()
    nn.Sequential(dense, nn.ReLU())  # already given its default by the first container
    np.testing.assert_array_equal(dense.weight.data, he_weights)
    used = nn.Dense(20, 10, seed=1)
    used.forward(rng.standard_normal((3, 20)).astype(F32))
    before = used.weight.data.copy()
    nn.Sequential(used, nn.ReLU())
    np.testing.assert_array_equal(used.weight.data, before)


def test_zeros_initializer_draws_nothing():
    pynn.manual_seed(5)
    expected = pynn.nn.init.get_initializer("he_normal")((3, 2))
    pynn.manual_seed(5)
    layer = nn.Dense(2, 3, init="zeros", dtype=F64)
    assert layer.weight.data.dtype == F64 and not layer.weight.data.any()
    # the global stream was not advanced by the zeros
    np.testing.assert_array_equal(pynn.nn.init.get_initializer("he_normal")((3, 2)), expected)

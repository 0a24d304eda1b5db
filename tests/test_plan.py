"""The compiled plan of a Sequential (pynn.nn.plan) against the same container run eagerly:
identical numbers, every fallback, and no allocation per step."""
import tracemalloc

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.optim import SGD, Adam

F32, F64 = np.float32, np.float64


def _nets(dtype):
    return {
        "dense-relu": lambda: nn.Sequential(nn.Dense(6, 9, seed=1, dtype=dtype), nn.ReLU(),
                                            nn.Dense(9, 4, seed=2, dtype=dtype)),
        "recipe": lambda: nn.Sequential(
            nn.Dense(6, 9, seed=1, dtype=dtype), nn.BatchNorm(9, dtype=dtype), nn.ReLU(),
            nn.Dense(9, 7, seed=2, dtype=dtype), nn.BatchNorm(7, momentum=None, dtype=dtype),
            nn.Tanh(), nn.Dense(7, 4, seed=3, dtype=dtype)),
        "unfusable": lambda: nn.Sequential(
            nn.Dense(6, 5, seed=1, dtype=dtype), nn.Square(), nn.BatchNorm(5, dtype=dtype),
            nn.LeakyReLU(-0.3), nn.Dense(5, 4, bias=False, seed=2, dtype=dtype), nn.ELU(0.5)),
        "dropout-softmax": lambda: nn.Sequential(
            nn.Dense(6, 8, seed=1, dtype=dtype), nn.Sigmoid(), nn.Dropout(0.4, seed=3),
            nn.Dense(8, 4, seed=2, dtype=dtype), nn.Softmax()),
    }


def _train(model, X, y, steps, input_grad, opt_cls=Adam):
    loss = nn.MSELoss()
    T = np.eye(4, dtype=X.dtype)[y]
    opt = opt_cls(model.parameters(), lr=0.05)
    trace = []
    for _ in range(steps):
        opt.zero_grad()
        out = model.forward(X)
        trace.append(loss.forward(out, T))
        dX = model.backward(loss.backward(), input_grad=input_grad)
        trace.append(dX)
        opt.step()
    return trace


@pytest.mark.parametrize("backend_name", ["numpy", "cython"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("net", ["dense-relu", "recipe", "unfusable", "dropout-softmax"])
def test_plan_equals_the_eager_path(net, dtype, backend_name, rng):
    X = rng.standard_normal((11, 6)).astype(dtype)
    y = rng.integers(0, 4, 11)
    runs = []
    for compiled in (True, False):
        model = _nets(dtype)[net]().set_backend(backend_name)
        model._compile = compiled
        trace = _train(model, X, y, 4, input_grad=True) + _train(model, X, y, 2, False)
        runs.append((trace, model.state_dict(), model.predict(X)))
        assert bool(model._compiled) is compiled
    (t1, s1, p1), (t2, s2, p2) = runs
    for a, b in zip(t1, t2):
        if a is None or b is None:
            assert a is None and b is None
        else:
            np.testing.assert_array_equal(a, b)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    # predict folds BatchNorm into the Dense before it: equal up to rounding
    np.testing.assert_allclose(p1, p2, rtol=1e-5 if dtype == F32 else 1e-12,
                               atol=1e-6 if dtype == F32 else 1e-13)


def test_plan_handles_eval_mode_frozen_layers_and_new_shapes(rng):
    X = rng.standard_normal((9, 6))
    runs = []
    for compiled in (True, False):
        model = _nets(F64)["recipe"]()
        model._compile = compiled
        model[0].requires_grad_(False)
        model[1].eval()  # one BatchNorm on running statistics, the other on batch statistics
        out = [model.forward(X), model.backward(np.ones((9, 4)))]
        out += [model.forward(X[:5]), model.backward(np.ones((5, 4)), input_grad=False)]
        out += [p.grad.copy() for p in model.parameters()]
        runs.append(out)
    for a, b in zip(*runs):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
    assert not runs[0][-10].any() and not runs[0][-9].any()  # the frozen Dense: no gradient


def test_plan_follows_repacked_parameters_and_changed_slopes(rng):
    X = rng.standard_normal((8, 6))
    y = rng.integers(0, 4, 8)
    a = nn.Sequential(nn.Dense(6, 5, seed=1, dtype=F64), nn.LeakyReLU(0.2),
                      nn.Dense(5, 4, seed=2, dtype=F64))
    b = nn.Sequential(nn.Dense(6, 5, seed=1, dtype=F64), nn.LeakyReLU(0.2),
                      nn.Dense(5, 4, seed=2, dtype=F64))
    b._compile = False
    for m in (a, b):
        m.forward(X)  # the plan is built here, before the optimizer re-packs the parameters
        params = list(m.parameters())
        opt = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.2}], lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()
            loss.forward(m.forward(X), y)
            m.backward(loss.backward(), input_grad=False)
            opt.step()
        m[1].negative_slope = 0.5
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    np.testing.assert_array_equal(a.forward(X), b.forward(X))


def test_unknown_modules_run_eagerly(rng):
    class Twice(nn.Module):
        def forward(self, X):
            return 2 * X

        def backward(self, dY, input_grad=True):
            return 2 * dY

    model = nn.Sequential(nn.Dense(3, 3, dtype=F64), Twice(), nn.Dense(3, 2, dtype=F64))
    X = rng.standard_normal((4, 3))
    out = model.forward(X)
    assert not model._compiled
    expected = 2 * (X @ model[0].weight.data.T + model[0].bias.data) @ model[2].weight.data.T
    np.testing.assert_allclose(out, expected + model[2].bias.data, rtol=1e-12)
    assert pynn.gradcheck(model, X)


def test_an_activation_with_its_own_derivative_is_not_fused(rng):
    # A subclass of a built-in activation that overrides backward must run its own code, in a
    # plan and after a Dense alike: fused, its derivative would silently be the kernel's (and
    # gradcheck could not catch a wrong one).
    class HalfSlopeTanh(nn.Tanh):
        def backward(self, dY, input_grad=True):
            return 0.5 * super().backward(dY, input_grad)

    model = nn.Sequential(nn.Dense(3, 4, dtype=F64, seed=0), HalfSlopeTanh(),
                          nn.Dense(4, 2, dtype=F64, seed=1))
    X = rng.standard_normal((5, 3))
    dY = rng.standard_normal((5, 2))
    model.forward(X)
    dX = model.backward(dY)
    h = np.tanh(X @ model[0].weight.data.T + model[0].bias.data)
    expected = ((dY @ model[2].weight.data) * 0.5 * (1 - h**2)) @ model[0].weight.data
    np.testing.assert_allclose(dX, expected, rtol=1e-12)
    with pytest.raises(pynn.GradcheckError):
        pynn.gradcheck(model, X)


def test_outputs_are_not_overwritten_by_the_next_step(rng):
    model = _nets(F32)["dense-relu"]()
    X1 = rng.standard_normal((5, 6)).astype(F32)
    X2 = rng.standard_normal((5, 6)).astype(F32)
    out1 = model.forward(X1)
    keep = out1.copy()
    dX1 = model.backward(np.ones_like(out1))
    keep_dx = dX1.copy()
    model.forward(X2)
    model.backward(np.ones_like(out1))
    np.testing.assert_array_equal(out1, keep)
    np.testing.assert_array_equal(dX1, keep_dx)


def test_bad_gradients_are_refused_by_name(rng):
    model = _nets(F32)["dense-relu"]()
    model.forward(rng.standard_normal((5, 6)).astype(F32))
    with pytest.raises(TypeError, match="dY has dtype float64"):
        model.backward(np.ones((5, 4)))
    with pytest.raises(ValueError, match="dY must have shape"):
        model.backward(np.ones((6, 4), F32))
    with pytest.raises(ValueError, match=r"dY must have shape \(batch, 4\)"):
        model.backward(np.ones((5, 3), F32))


def test_a_training_step_allocates_only_what_it_returns(rng):
    model = nn.Sequential(nn.Dense(64, 256), nn.BatchNorm(256), nn.ReLU(), nn.Dense(256, 10))
    X = rng.standard_normal((128, 64)).astype(F32)
    y = rng.integers(0, 10, 128)
    loss = nn.CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss.forward(model.forward(X), y)
        model.backward(loss.backward(), input_grad=False)
        opt.step()

    for _ in range(3):
        step()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # the output copy (128 x 10 floats) and the loss gradient; no hidden-layer buffers
    # (one 128 x 256 float32 buffer alone would be 131 kB)
    assert peak < 32_000, peak


def test_plan_notices_a_removed_bias_and_a_replaced_buffer(rng):
    X = rng.standard_normal((6, 6))
    model = _nets(F64)["recipe"]()
    model.forward(X)
    model[0].bias = None
    model[1].running_mean = np.full(9, 0.5)
    model.eval()
    out = model.forward(X)
    model._compile = False
    np.testing.assert_array_equal(out, model.forward(X))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_inference_program_folds_and_matches_layer_by_layer_eval(dtype, rng):
    from pynn.data import Standardizer

    Xtr = (rng.standard_normal((64, 6)) * 3 + 2).astype(dtype)
    model = nn.Sequential(
        Standardizer(dtype=dtype).fit(Xtr),
        nn.Dense(6, 9, seed=1, dtype=dtype), nn.BatchNorm(9, dtype=dtype), nn.ReLU(),
        nn.Dropout(0.3, seed=2),
        nn.Dense(9, 7, seed=2, dtype=dtype), nn.BatchNorm(7, dtype=dtype), nn.Square(),
        nn.Dense(7, 4, seed=3, dtype=dtype), nn.Softmax())
    for _ in range(3):
        model.forward(Xtr)  # running statistics away from 0 and 1
    program = nn.inference.InferencePlan.build(model)
    # 37 rows fold (the weights are tiny): the Standardizer and both BatchNorms disappear into
    # the Dense layers, the ReLU into the first one's epilogue
    assert program.describe(37) == ["standardize+dense+batchnorm+relu", "dense+batchnorm",
                                     "square", "dense", "softmax"]
    X = rng.standard_normal((37, 6)).astype(dtype)
    model.eval()
    h = X
    for layer in model:
        h = layer.forward(h)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == F32 else dict(rtol=1e-12, atol=1e-13)
    for batch in (1, 5, 37, 100):
        np.testing.assert_allclose(model.predict(X, batch_size=batch), h, **tol)
    np.testing.assert_allclose(model.infer(X), h, **tol)
    assert model.predict(X[:0]).shape == (0, 4)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_a_few_rows_run_unfolded_and_many_folded(dtype, rng):
    # folding computes every folded weight in float64: for a few rows the layers run as they
    # are (the layer-by-layer eval forward, the same bits), for many the folded program runs
    from pynn.data import Standardizer
    from pynn.nn.inference import InferencePlan

    Xtr = (rng.standard_normal((64, 6)) * 3 + 2).astype(dtype)
    model = nn.Sequential(
        Standardizer(dtype=dtype).fit(Xtr), nn.Dense(6, 9, seed=1, dtype=dtype),
        nn.BatchNorm(9, dtype=dtype), nn.ReLU(), nn.Dense(9, 4, seed=2, dtype=dtype))
    for _ in range(3):
        model.forward(Xtr)
    model.eval()
    # fold cost: the Standardizer's and BatchNorm's folds into the 6 x 9 weight; per unfolded
    # row: 6 + 9 extra elements
    program = InferencePlan.build(model)
    assert not program.folds(7) and program.folds(8)
    assert program.describe(7) == ["standardize", "dense", "batchnorm+relu", "dense"]
    assert program.describe(8) == ["standardize+dense+batchnorm+relu", "dense"]
    X = rng.standard_normal((37, 6)).astype(dtype)

    def layer_by_layer(X):
        for layer in model:
            X = layer.infer(X)
        return X

    for n in (1, 4, 7):
        np.testing.assert_array_equal(model.predict(X[:n]), layer_by_layer(X[:n]))
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == F32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model.predict(X), layer_by_layer(X), **tol)
    # nothing to fold: never a copy of the weights, however many rows
    plain = nn.Sequential(nn.Dense(6, 9, seed=1, dtype=dtype), nn.ReLU(),
                          nn.Dense(9, 4, seed=2, dtype=dtype))
    assert not InferencePlan.build(plain).folds(10**6)
    assert InferencePlan.build(plain).describe(10**6) == ["dense+relu", "dense"]


def test_predict_is_never_stale(rng):
    # predict keeps its program on the model and reads the arrays in place: its answer is the
    # model's as it is now, after a training step, after load_state_dict, after a write
    # straight into a parameter's or a running statistic's array, on a few rows (the layers as
    # they are) and on many (BatchNorm folded per call); the program itself is kept throughout
    # (tests/test_inference.py: what makes it rebuild)
    model = nn.Sequential(nn.Dense(6, 9, seed=1, dtype=F64), nn.BatchNorm(9, dtype=F64),
                          nn.ReLU(), nn.Dense(9, 4, seed=2, dtype=F64))
    other = nn.Sequential(nn.Dense(6, 9, seed=7, dtype=F64), nn.BatchNorm(9, dtype=F64),
                          nn.ReLU(), nn.Dense(9, 4, seed=8, dtype=F64))
    X = rng.standard_normal((16, 6))
    y = rng.integers(0, 4, 16)
    loss = nn.CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=0.05)

    def layer_by_layer(m, rows):
        h = X[:rows]
        for layer in m:
            h = layer.infer(h)
        return h

    def check():
        model.eval()
        program = model._inference_program()
        assert not program.folds(3) and program.folds(16)
        np.testing.assert_array_equal(model.predict(X[:3]), layer_by_layer(model, 3))
        np.testing.assert_allclose(model.predict(X), layer_by_layer(model, 16), rtol=1e-12,
                                   atol=1e-13)
        model.train()
        return program

    program = check()
    before = model.predict(X[:3])
    model.train_step(X, y, loss, opt)
    assert check() is program
    assert not np.allclose(model.predict(X[:3]), before)
    other.forward(X)  # running statistics of its own
    model.load_state_dict(other.state_dict())
    assert check() is program
    np.testing.assert_array_equal(model.predict(X[:3]), other.predict(X[:3]))
    np.testing.assert_array_equal(model.predict(X), other.predict(X))
    model[0].weight.data[0, 0] += 1.0
    model[1].running_var[:] *= 4.0
    assert check() is program
    assert not np.allclose(model.predict(X[:3]), other.predict(X[:3]))
    assert not np.allclose(model.predict(X), other.predict(X))


def test_inference_falls_back_for_unknown_layers_and_bad_input(rng):
    class Twice(nn.Module):
        def forward(self, X):
            return 2 * X

    model = nn.Sequential(nn.Dense(3, 3, dtype=F64), Twice())
    assert nn.inference.InferencePlan.build(model) is None
    X = rng.standard_normal((4, 3))
    np.testing.assert_allclose(model.predict(X), 2 * model[0].forward(X), rtol=1e-12)
    with pytest.raises(TypeError, match="float32"):
        nn.Sequential(nn.Dense(3, 2)).predict(X)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        nn.Sequential(nn.Dense(3, 2, dtype=F64)).predict(X[:, :2])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        nn.Sequential(nn.Dense(3, 2, dtype=F64)).predict(X, batch_size=0)


def test_plan_follows_a_layer_pinned_to_another_backend(rng):
    X = rng.standard_normal((9, 6))
    model = _nets(F64)["dense-relu"]()
    model.forward(X)
    plan = model._compiled_for(X)
    assert plan is not None and plan.fits(X)
    model[2].backend_name = "numpy"  # one layer pinned: the plan's kernels no longer apply
    assert not plan.fits(X)
    eager = _nets(F64)["dense-relu"]().set_backend("numpy")
    np.testing.assert_allclose(model.forward(X), eager.forward(X), rtol=1e-12)
    model[2].backend_name = None  # back as it was: the same plan serves again
    rebuilt = model._compiled_for(X)
    assert rebuilt.fits(X)
    model[2].backend_name = None  # assigned, but nothing changed
    assert rebuilt.fits(X)

"""The module system: registration, walks, state dicts, modes, freezing, containers, fusion kept
in the container, the inference path, and agreement with torch.nn."""
import threading

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.optim import SGD, Adam

F32, F64 = np.float32, np.float64


def _mlp(dtype=F64, seed=0):
    return nn.Sequential(
        nn.Dense(6, 8, seed=seed, dtype=dtype), nn.BatchNorm(8, dtype=dtype), nn.ReLU(),
        nn.Dense(8, 3, seed=seed + 1, dtype=dtype),
    )


class Block(nn.Module):
    """A custom module with children, written the torch way."""

    def __init__(self, n_in=6, n_hidden=5, n_out=3, dtype=F64):
        super().__init__()
        self.body = nn.Sequential(nn.Dense(n_in, n_hidden, seed=3, dtype=dtype), nn.Tanh())
        self.heads = nn.ModuleList([nn.Dense(n_hidden, n_out, seed=4, dtype=dtype)])
        self.register_buffer("calls", np.zeros((), np.int64))
        self.scale = 2.0  # a plain attribute

    def forward(self, X):
        return self.heads[0].forward(self.body.forward(X)) * self.scale

    def backward(self, dY, input_grad=True):
        return self.body.backward(self.heads[0].backward(dY * self.scale), input_grad)


# ---------------------------------------------------------------------------- registration
def test_assignment_registers_parameters_buffers_and_children():
    m = Block()
    assert [n for n, _ in m.named_parameters()] == [
        "body.0.weight", "body.0.bias", "heads.0.weight", "heads.0.bias"]
    assert [n for n, _ in m.named_buffers()] == ["calls"]
    assert [n for n, _ in m.named_children()] == ["body", "heads"]
    assert [n for n, _ in m.named_modules()] == [
        "", "body", "body.0", "body.1", "heads", "heads.0"]
    assert len(list(m.modules())) == 6 and len(list(m.children())) == 2
    assert "scale" not in m._parameters and m.scale == 2.0
    seen = []
    assert m.apply(lambda mod: seen.append(type(mod).__name__)) is m
    assert seen == ["Dense", "Tanh", "Sequential", "Dense", "ModuleList", "Block"]


def test_registration_errors_name_the_attribute():
    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        NoInit()
    d = nn.Dense(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        d.weight = np.zeros((2, 2))
    with pytest.raises(TypeError, match="buffer 'running_mean'"):
        nn.BatchNorm(2).running_mean = [0.0, 0.0]
    with pytest.raises(KeyError, match="without '.'"):
        d.register_buffer("a.b", np.zeros(1))
    d.bias = None  # an absent parameter, as torch allows
    assert [n for n, _ in d.named_parameters()] == ["weight"]


def test_shared_parameter_is_listed_once():
    d = nn.Dense(3, 3)
    model = nn.Sequential(d, nn.ReLU(), d)
    assert len(list(model.parameters())) == 2
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_train_eval_recursive_and_requires_grad():
    m = Block()
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())
    with pytest.raises(TypeError, match="mode must be a bool"):
        m.train("no")
    m.body.requires_grad_(False)
    assert [p.requires_grad for p in m.parameters()] == [False, False, True, True]
    with pytest.raises(TypeError, match="requires_grad must be a bool"):
        m.heads[0].weight.requires_grad = 1


# ---------------------------------------------------------------------------- state dicts
def test_state_dict_keys_order_and_copies():
    model = _mlp()
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"]
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"].dtype == np.int64
    sd["0.weight"][...] = 7  # copies: the model is untouched
    assert not np.any(model[0].weight.data == 7)
    live = model.state_dict(keep_vars=True)
    assert live["0.weight"] is model[0].weight and live["1.running_mean"] is model[1].running_mean


def test_load_state_dict_round_trip_and_validation_before_any_write():
    src, dst = _mlp(seed=0), _mlp(seed=10)
    src[1].running_mean[...] = 0.5
    dst.load_state_dict(src.state_dict())
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)

    target = _mlp(seed=20)
    before = target.state_dict()
    bad = src.state_dict()
    bad["3.weight"] = np.zeros((3, 9))  # one wrong shape, listed after good entries
    with pytest.raises(ValueError, match=r"'3.weight'.*shape \(3, 9\)"):
        target.load_state_dict(bad)
    bad = src.state_dict()
    bad["1.running_var"] = bad["1.running_var"].astype(F32)
    with pytest.raises(TypeError, match=r"\['1.running_var'\] has dtype float32"):
        target.load_state_dict(bad)
    bad = src.state_dict()
    del bad["0.bias"]
    bad["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['0.bias'\].*unexpected keys \['extra'\]"):
        target.load_state_dict(bad)
    for k, v in target.state_dict().items():  # nothing changed
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    result = target.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(target[0].weight.data, src[0].weight.data)


# ------------------------------------------------------------------ fusion stays in the container
def test_container_fusion_never_changes_the_layer():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 4)).astype(F32)
    d = nn.Dense(4, 3, seed=0)
    relu_model = nn.Sequential(d, nn.ReLU())
    tanh_model = nn.Sequential(d, nn.Tanh())
    plain = X @ d.weight.data.T + d.bias.data
    assert relu_model.fused_steps() == [(0, "Dense+relu")]
    np.testing.assert_allclose(d(X), plain, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(relu_model(X), np.maximum(plain, 0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tanh_model(X), np.tanh(plain), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(relu_model(X), np.maximum(plain, 0), rtol=1e-6, atol=1e-6)


def test_dense_batchnorm_relu_runs_fused_and_matches_the_layers_run_alone(rng):
    model = _mlp()
    assert model.fused_steps() == [(1, "BatchNorm+relu")]
    X = rng.standard_normal((7, 6))
    R = rng.standard_normal((7, 3))
    out = model.forward(X)
    model.zero_grad()
    dX = model.backward(R)
    grads = [p.grad.copy() for p in model.parameters()]
    twin = _mlp()
    twin.load_state_dict(model.state_dict())
    twin[1].running_mean[...] = 0
    twin[1].running_var[...] = 1
    twin[1].num_batches_tracked[...] = 0
    layers = twin.layers
    h = X
    for layer in layers:
        h = layer.forward(h)
    np.testing.assert_allclose(out, h, rtol=1e-12, atol=1e-12)
    twin.zero_grad()
    g = R
    for layer in reversed(layers):
        g = layer.backward(g)
    np.testing.assert_allclose(dX, g, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, twin.parameters()):
        np.testing.assert_allclose(a, b.grad, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- the backward contract
def test_backward_returns_dx_for_every_module_and_container(rng):
    X = rng.standard_normal((5, 6))
    nested = nn.Sequential(nn.Sequential(nn.Dense(6, 4, dtype=F64), nn.ReLU()),
                           nn.Sequential(nn.Dense(4, 2, dtype=F64)))
    for m in (nested, Block(), nn.Dense(6, 3, dtype=F64), nn.BatchNorm(6, dtype=F64),
              nn.Dropout(0.2, seed=0), nn.Tanh(), nn.Softmax()):
        Y = m.forward(X)
        dX = m.backward(np.ones_like(Y))
        assert isinstance(dX, np.ndarray) and dX.shape == X.shape, type(m).__name__
        m.forward(X)
        assert m.backward(np.ones_like(Y), input_grad=False) is None, type(m).__name__


def test_input_grad_false_skips_only_the_input_gradient(rng):
    X = rng.standard_normal((5, 6))
    a, b = _mlp(), _mlp()
    for m, flag in ((a, True), (b, False)):
        m.zero_grad()
        m.forward(X)
        m.backward(np.ones((5, 3)), input_grad=flag)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_frozen_parameters_get_no_gradient_and_no_update(rng):
    X = rng.standard_normal((8, 6))
    y = rng.integers(0, 3, 8)
    model = _mlp()
    model[0].requires_grad_(False)
    frozen_before = model[0].weight.data.copy(), model[0].bias.data.copy()
    opt = Adam(model.parameters(), lr=0.1, weight_decay=0.1)
    loss = nn.CrossEntropyLoss()
    for _ in range(3):
        opt.zero_grad()
        loss.forward(model.forward(X), y)
        model.backward(loss.backward(), input_grad=False)
        assert not model[0].weight.grad.any() and not model[0].bias.grad.any()
        opt.step()
    np.testing.assert_array_equal(model[0].weight.data, frozen_before[0])
    np.testing.assert_array_equal(model[0].bias.data, frozen_before[1])
    assert not np.array_equal(model[3].weight.data, _mlp()[3].weight.data)  # the rest trains
    model[0].requires_grad_(True)  # unfreezing takes effect at the next step
    opt.zero_grad()
    loss.forward(model.forward(X), y)
    model.backward(loss.backward(), input_grad=False)
    opt.step()
    assert not np.array_equal(model[0].weight.data, frozen_before[0])


# ---------------------------------------------------------------------------- containers
def test_nested_containers_train_save_load_and_summarize(tmp_path, rng):
    model = nn.Sequential(
        nn.Sequential(nn.Dense(6, 8, seed=4, dtype=F64), nn.BatchNorm(8, dtype=F64), nn.ReLU()),
        nn.Dropout(0.1, seed=1),
        nn.Sequential(nn.Dense(8, 3, seed=5, dtype=F64)),
    )
    assert [n for n, _ in model.named_parameters()][:2] == ["0.0.weight", "0.0.bias"]
    X = rng.standard_normal((16, 6))
    y = rng.integers(0, 3, 16)
    loss = nn.CrossEntropyLoss()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    values = []
    for _ in range(40):
        opt.zero_grad()
        values.append(loss.forward(model.forward(X), y))
        model.backward(loss.backward(), input_grad=False)
        opt.step()
    assert values[-1] < 0.5 * values[0]
    pynn.save(model, tmp_path / "nested.npz")
    back = pynn.load(tmp_path / "nested.npz")
    assert list(back.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert "0.0.weight" not in model.summary()  # one row per child
    assert "fused: " in model.summary()


def test_module_list_and_registered_custom_module_save_and_load(tmp_path, rng):
    @pynn.io.register
    class Scaled(nn.Module):
        def __init__(self, n=4, factor=3.0):
            super().__init__()
            self.n, self.factor = n, factor
            self.layers = nn.ModuleList([nn.Dense(n, n, dtype=F64), nn.Dense(n, 2, dtype=F64)])

        def forward(self, X):
            return self.layers[1].forward(self.layers[0].forward(X)) * self.factor

        def config(self):
            return {"n": self.n, "factor": self.factor}

    try:
        m = Scaled()
        X = rng.standard_normal((3, 4))
        pynn.save(m, tmp_path / "custom.npz")
        back = pynn.load(tmp_path / "custom.npz")
        assert isinstance(back, Scaled) and back.factor == 3.0
        np.testing.assert_array_equal(back.forward(X), m.forward(X))
        np.testing.assert_array_equal(back.predict(X), m.forward(X))
    finally:
        pynn.io._architecture._TYPES.pop("Scaled", None)


def test_model_arenas_follow_an_optimizer_repack():
    model = _mlp()
    first = model[0]
    rest = [p for p in model.parameters() if all(p is not q for q in first.parameters())]
    opt = Adam([{"params": list(first.parameters()), "lr": 1e-2}, {"params": rest}])
    (arena,) = model.arenas.values()
    assert arena is first.weight.arena  # the optimizer's arena, not a stale one
    assert arena.owns_all() and {id(p) for p in arena.params} == {id(p) for p in model.parameters()}
    opt.zero_grad()


# ------------------------------------------------------------------ inference is read-only
def test_concurrent_predict_on_a_training_model_is_exact_and_mutates_nothing(rng):
    model = nn.Sequential(nn.Dense(20, 64, dtype=F32), nn.BatchNorm(64), nn.ReLU(),
                          nn.Dropout(0.5, seed=0), nn.Dense(64, 5))
    X = rng.standard_normal((512, 20)).astype(F32)
    model.forward(X)  # a training step's statistics
    model.train()
    buffers = {k: v.copy() for k, v in model.named_buffers()}
    expected = model.predict(X, batch_size=128)
    results, errors = [], []

    def worker():
        try:
            for _ in range(8):
                results.append(model.predict(X, batch_size=128))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 32
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert all(m.training for m in model.modules())
    for k, v in model.named_buffers():
        np.testing.assert_array_equal(v, buffers[k], err_msg=k)
    # eval-mode semantics: running statistics, no dropout (one 512-row product instead of four
    # 128-row ones: equal up to the products' rounding)
    model.eval()
    np.testing.assert_allclose(model.forward(X), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- gradcheck
LAYERS = [
    lambda: nn.Dense(5, 4, dtype=F64),
    lambda: nn.Dense(5, 4, bias=False, dtype=F64),
    lambda: nn.BatchNorm(5, dtype=F64),
    lambda: nn.BatchNorm(5, dtype=F64).eval(),
    lambda: nn.Dropout(0.3, seed=2),
    nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, lambda: nn.LeakyReLU(0.1), lambda: nn.ELU(0.5),
    nn.Square, nn.Softmax,
]


@pytest.mark.parametrize("make", LAYERS)
def test_gradcheck_passes_on_every_layer(make, rng):
    X = rng.uniform(0.1, 2.0, (6, 5)) * rng.choice([-1.0, 1.0], (6, 5))  # off the kinks
    assert pynn.gradcheck(make(), X)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_gradcheck_passes_on_composed_networks(act, rng):
    X = rng.standard_normal((8, 6))
    net = nn.Sequential(nn.Dense(6, 7, seed=1, dtype=F64), nn.BatchNorm(7, dtype=F64), act(),
                        nn.Dense(7, 3, seed=2, dtype=F64))
    assert pynn.gradcheck(net, X)
    assert pynn.gradcheck(Block(), X)
    nested = nn.Sequential(nn.Sequential(nn.Dense(6, 4, seed=3, dtype=F64), act()),
                           Block(4, 5, 2))
    assert pynn.gradcheck(nested, X)


def test_gradcheck_catches_half_a_gradient_and_names_it(rng):
    class Half(nn.Dense):
        def backward(self, dY, input_grad=True):
            return super().backward(dY * 0.5, input_grad)

    X = rng.standard_normal((4, 3))
    with pytest.raises(pynn.GradcheckError,
                       match=r"Half: (input|weight|bias)\[.*analytic .* numeric"):
        pynn.gradcheck(Half(3, 2, dtype=F64), X)
    assert pynn.gradcheck(Half(3, 2, dtype=F64), X, raise_exception=False) is False
    with pytest.raises(TypeError, match="float64"):
        pynn.gradcheck(nn.Dense(3, 2), X)


def test_gradcheck_leaves_the_module_unchanged(rng):
    net = _mlp()
    X = rng.standard_normal((8, 6))
    before = net.state_dict()
    grads = [p.grad.copy() for p in net.parameters()]
    pynn.gradcheck(net, X)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    for p, g in zip(net.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)


# ---------------------------------------------------------------------------- against torch
def _torch():
    return pytest.importorskip("torch")


def test_torch_state_dict_loads_and_gives_the_same_eval_outputs(rng):
    torch = _torch()
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                             torch.nn.Linear(8, 3)).double()
    with torch.no_grad():  # give the running statistics non-trivial values
        tm.train()
        tm(torch.randn(32, 6, dtype=torch.float64) * 3 + 1)
    tm.eval()
    model = _mlp(seed=5)
    model.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    X = rng.standard_normal((10, 6))
    with torch.no_grad():
        expected = tm(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12, atol=1e-12)
    model.eval()
    np.testing.assert_allclose(model.forward(X), expected, rtol=1e-12, atol=1e-12)

    before = model.state_dict()
    bad = {k: v.numpy() for k, v in tm.state_dict().items()}
    bad["0.weight"] = bad["0.weight"][:, :5].copy()
    with pytest.raises(ValueError, match=r"\['0.weight'\] has shape \(8, 5\)"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # and back: pynn's state dict loads into torch with strict key matching
    tm2 = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 3)).double()
    tm2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})


def test_nested_containers_match_torch_gradients_including_dx(rng):
    torch = _torch()
    torch.manual_seed(1)
    tm = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh()),
        torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)),
    ).double()
    model = nn.Sequential(
        nn.Sequential(nn.Dense(6, 8, dtype=F64), nn.BatchNorm(8, dtype=F64), nn.Tanh()),
        nn.Sequential(nn.Dense(8, 5, dtype=F64), nn.ReLU(), nn.Dense(5, 3, dtype=F64)),
    )
    model.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    X = rng.standard_normal((9, 6))
    y = rng.integers(0, 3, 9)
    Xt = torch.from_numpy(X.copy()).requires_grad_(True)
    lt = torch.nn.functional.cross_entropy(tm(Xt), torch.from_numpy(y))
    lt.backward()
    loss = nn.CrossEntropyLoss()
    value = loss.forward(model.forward(X), y)
    dX = model.backward(loss.backward())
    assert value == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    tgrads = {n: p.grad.numpy() for n, p in tm.named_parameters()}
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[name], rtol=1e-9, atol=1e-12, err_msg=name)
    for name, b in tm.named_buffers():
        np.testing.assert_allclose(model.state_dict()[name], b.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_batchnorm_momentum_none_is_torchs_cumulative_average(rng):
    torch = _torch()
    bn = nn.BatchNorm(4, momentum=None, dtype=F64)
    tb = torch.nn.BatchNorm1d(4, momentum=None).double()
    for _ in range(3):
        X = rng.standard_normal((6, 4)) * 2 + 1
        bn.forward(X)
        tb(torch.from_numpy(X))
    np.testing.assert_allclose(bn.running_mean, tb.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, tb.running_var.numpy(), rtol=1e-12)
    assert int(bn.num_batches_tracked) == int(tb.num_batches_tracked) == 3


def test_deepcopy_and_pickle_give_an_independent_trainable_model(rng):
    import copy
    import pickle

    model = _mlp()
    X = rng.standard_normal((8, 6))
    y = rng.integers(0, 3, 8)
    custom = Block()
    custom.predict(X)  # the per-module inference lock must not stop copies
    np.testing.assert_array_equal(copy.deepcopy(custom).predict(X), custom.predict(X))
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        before = model.state_dict()
        np.testing.assert_array_equal(twin.forward(X), model.forward(X))
        loss = nn.CrossEntropyLoss()
        opt = SGD(twin.parameters(), lr=0.5)
        opt.zero_grad()
        loss.forward(twin.forward(X), y)
        twin.backward(loss.backward(), input_grad=False)
        opt.step()
        changed = twin.state_dict()
        assert not np.array_equal(changed["0.weight"], before["0.weight"])  # the copy trains
        for k, v in model.state_dict().items():  # the original does not move
            if k.startswith("1.running") or k.endswith("num_batches_tracked"):
                continue  # model.forward above updated its own statistics
            np.testing.assert_array_equal(v, before[k], err_msg=k)

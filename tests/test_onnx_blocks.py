"""pynn.onnx and issue 21's layers: GELU (both forms), SiLU, Softplus (beta, threshold), Mish,
LayerNorm, RMSNorm and Residual export so that ONNX Runtime predicts what ``model.predict``
does (float32 within 2e-5, float64 within 1e-12 of the output's scale) for 1, 7 and 1000 rows
at the opsets where their forms change, and load back with the same predictions; a ResNet-MLP
does both; foreign LayerNormalization, Gelu, Mish, Softplus graphs and torch's GELU expression
load and match ONNX Runtime; the residual skip is the one branch the loader reads."""
import numpy as np
import pytest

from pynn import nn
from pynn.io import ModelFileError

onnx = pytest.importorskip("onnx")
import pynn.onnx as pynn_onnx  # noqa: E402
from onnx import helper  # noqa: E402

from test_onnx import DTYPES, ROWS, assert_close, ort_predict  # noqa: E402
from test_onnx_load import _check_against_ort, _expect_refusal, make_model, save  # noqa: E402

# where a layer's form changes: LayerNormalization (17), Mish and ReduceMean's axes input
# (18), Gelu (20, the default), RMSNormalization (23)
OPSETS = [op for op in (13, 17, 18, 20, 23) if op <= onnx.defs.onnx_opset_version()]
LAYERS = {
    "gelu": lambda dt: nn.GELU(), "gelu_tanh": lambda dt: nn.GELU("tanh"),
    "silu": lambda dt: nn.SiLU(), "softplus": lambda dt: nn.Softplus(),
    "softplus_beta2_threshold5": lambda dt: nn.Softplus(2.0, 5.0),
    "softplus_negative_beta": lambda dt: nn.Softplus(-0.5, 3.0), "mish": lambda dt: nn.Mish(),
    "layernorm": lambda dt: nn.LayerNorm(8, eps=1e-3, dtype=dt),
    "layernorm_no_bias": lambda dt: nn.LayerNorm(8, bias=False, dtype=dt),
    "layernorm_no_affine": lambda dt: nn.LayerNorm(8, elementwise_affine=False, dtype=dt),
    "rmsnorm": lambda dt: nn.RMSNorm(8, dtype=dt),
    "rmsnorm_no_affine_eps": lambda dt: nn.RMSNorm(8, eps=1e-3, elementwise_affine=False,
                                                    dtype=dt),
    "residual": lambda dt: nn.Residual(nn.Dense(8, 8, seed=4, dtype=dt), nn.SiLU()),
}


def _data(dtype, n=1000, d=6, seed=0):
    # wide enough for every tail: GELU's and Mish's negative side, Softplus past threshold
    return (np.random.default_rng(seed).normal(size=(n, d)) * 4 + 0.5).astype(dtype)


def _perturbed(model, seed=3):
    """Parameters away from their defaults (a norm's ones and zeros would hide a swap)."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] += (rng.normal(size=p.data.shape) * 0.3).astype(p.data.dtype)
    return model.eval()


def _alone(name, dtype):
    """Dense(6, 8) -> the layer -> Dense(8, 3): the layer sees a full range of values."""
    return _perturbed(nn.Sequential(nn.Dense(6, 8, seed=1, dtype=dtype), LAYERS[name](dtype),
                                    nn.Dense(8, 3, seed=2, dtype=dtype)))


def _resnet_mlp(dtype):
    """Dense, Residual(LayerNorm, Dense, GELU, Dropout, Dense), LayerNorm, ReLU, Dense."""
    return _perturbed(nn.Sequential(
        nn.Dense(6, 16, seed=1, dtype=dtype),
        nn.Residual(nn.LayerNorm(16, dtype=dtype), nn.Dense(16, 32, seed=2, dtype=dtype),
                    nn.GELU(), nn.Dropout(0.1), nn.Dense(32, 16, seed=3, dtype=dtype)),
        nn.LayerNorm(16, dtype=dtype), nn.ReLU(), nn.Dense(16, 4, seed=4, dtype=dtype)))


def _exported_and_loaded(tmp_path, model, dtype, opset=None):
    X = _data(dtype)
    path = tmp_path / "m.onnx"
    pynn_onnx.export(model, path, opset=opset)
    loaded = pynn_onnx.load(path)
    for n in ROWS:
        expected = model.predict(X[:n])
        assert_close(ort_predict(path, X[:n]), expected, dtype)
        assert_close(loaded.predict(X[:n]), expected, dtype)
    return loaded


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_new_layer_predicts_in_onnx_runtime_and_loads_back(tmp_path, name, dtype, opset):
    model = _alone(name, dtype)
    loaded = _exported_and_loaded(tmp_path, model, dtype, opset)
    layer, back = model[1], loaded[1]
    assert type(back) is type(layer) and len(loaded) == 3
    # the arguments come back too (a norm's eps: exactly where the file holds a float64 one)
    config, got = layer.config(), back.config()
    if dtype == np.float32 and "eps" in config:
        config.pop("eps"), got.pop("eps")
    if isinstance(layer, nn.Residual):
        config, got = [type(m) for m in layer.block], [type(m) for m in back.block]
    assert got == config


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_a_resnet_mlp_exports_and_loads_back(tmp_path, dtype):
    model = _resnet_mlp(dtype)
    loaded = _exported_and_loaded(tmp_path, model, dtype)
    assert [type(m).__name__ for m in loaded] == ["Dense", "Residual", "LayerNorm", "ReLU",
                                                  "Dense"]
    assert [type(m).__name__ for m in loaded[1].block] == ["LayerNorm", "Dense", "GELU",
                                                           "Dense"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_nested_residuals_and_a_block_of_dropout_alone(tmp_path, dtype):
    inner = nn.Residual(nn.Dense(8, 8, seed=5, dtype=dtype), nn.Tanh())
    # (a Residual of layers without a dtype says float32, so a float64 net cannot hold one)
    dropout_only = [nn.Residual(nn.Dropout(0.5))] if dtype == np.float32 else []
    model = _perturbed(nn.Sequential(
        nn.Dense(6, 8, seed=1, dtype=dtype), nn.Residual(inner, nn.RMSNorm(8, dtype=dtype)),
        *dropout_only, nn.Residual(inner), nn.Dense(8, 2, seed=2, dtype=dtype)))
    loaded = _exported_and_loaded(tmp_path, model, dtype)
    assert [type(m).__name__ for m in loaded[1].block] == ["Residual", "RMSNorm"]
    if dropout_only:
        assert [type(m).__name__ for m in loaded[2].block] == ["Identity"]  # x + x


def test_the_default_opset_writes_onnx_operators_for_float32(tmp_path):
    model = nn.Sequential(nn.Dense(6, 8), nn.LayerNorm(8), nn.GELU(), nn.Mish(),
                          nn.Dense(8, 8), nn.GELU("tanh")).eval()
    ops = [n.op_type for n in pynn_onnx.to_model(model).graph.node]
    assert ops == ["Gemm", "LayerNormalization", "Gelu", "Mish", "Gemm", "Gelu"]
    # float64: expressions that ONNX Runtime runs in double, eps held exactly
    model64 = nn.Sequential(nn.Dense(6, 8, dtype=np.float64),
                            nn.LayerNorm(8, dtype=np.float64), nn.GELU()).eval()
    ops = {n.op_type for n in pynn_onnx.to_model(model64).graph.node}
    assert not ops & {"LayerNormalization", "Gelu", "Erf", "Softplus"}


def test_a_residual_that_changes_the_width_is_refused_by_export():
    model = nn.Sequential(nn.Dense(6, 8), nn.Residual(nn.Dense(8, 4)))
    with pytest.raises(ValueError, match="Residual at '1' maps 8 features to 4"):
        pynn_onnx.to_model(model)


# ---------------------------------------------------------------------------- foreign files
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("bias", [True, False])
def test_a_foreign_layernormalization_graph_loads(tmp_path, dtype, bias):
    rng = np.random.default_rng(0)
    w = {"W1": rng.normal(size=(6, 8)), "b1": rng.normal(size=8),
         "g": rng.uniform(0.5, 1.5, 8), "W2": rng.normal(size=(8, 3))}
    if bias:
        w["beta"] = rng.normal(size=8)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["h1"]),
             helper.make_node("LayerNormalization", ["h1", "g"] + (["beta"] if bias else []),
                              ["h2"], name="ln", axis=-1, epsilon=1e-3),
             helper.make_node("Relu", ["h2"], ["h3"]),
             helper.make_node("MatMul", ["h3", "W2"], ["y"])]
    model = _check_against_ort(save(tmp_path, make_model(nodes, w, dtype)), dtype)
    assert [type(m).__name__ for m in model] == ["Dense", "LayerNorm", "ReLU", "Dense"]
    assert model[1].bias_arg is bias and model[1].eps == pytest.approx(1e-3, rel=1e-7)


@pytest.mark.parametrize("op, attrs, kind", [
    ("Gelu", {}, "GELU"), ("Gelu", {"approximate": "tanh"}, "GELU"), ("Mish", {}, "Mish"),
    ("Softplus", {}, "Softplus")])
def test_foreign_gelu_mish_and_softplus_operators_load(tmp_path, op, attrs, kind):
    w = {"W": np.random.default_rng(1).normal(size=(6, 6)) * 3}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node(op, ["h"], ["y"], **attrs)]
    model = _check_against_ort(save(tmp_path, make_model(nodes, w, opset=20)), np.float32)
    assert type(model[1]).__name__ == kind


def test_torch_s_gelu_expression_loads_as_gelu(tmp_path):
    # what torch.onnx writes for nn.GELU() below opset 20
    w = {"W": np.random.default_rng(1).normal(size=(6, 6)) * 3, "sqrt2": 1.4142135381698608,
         "one": 1.0, "half": 0.5}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Div", ["h", "sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["p"]),
             helper.make_node("Mul", ["h", "p"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    model = _check_against_ort(save(tmp_path, make_model(nodes, w)), np.float32)
    assert type(model[1]) is nn.GELU and model[1].approximate == "none"
    # another constant is another function, not GELU
    w["half"] = 0.25
    _expect_refusal(tmp_path, make_model(nodes, w), "a branch")


# ---------------------------------------------------------------------------- the skip only
def test_the_residual_skip_is_the_only_branch_the_loader_reads(tmp_path):
    w = {"W": np.eye(6), "b": np.zeros(6), "W4": np.ones((4, 6))}
    gemm = helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc", transB=1)
    # x + relu(fc(x)): loads
    nodes = [gemm, helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["x", "r"], ["y"], name="skip")]
    model = _check_against_ort(save(tmp_path, make_model(nodes, w)), np.float32)
    assert [type(m).__name__ for m in model[0].block] == ["Dense", "ReLU"]
    # the block's inside read from outside it
    nodes = [gemm, helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["x", "r"], ["s"], name="skip"),
             helper.make_node("Sigmoid", ["h"], ["q"], name="leak"),
             helper.make_node("Add", ["s", "q"], ["y"], name="join")]
    _expect_refusal(tmp_path, make_model(nodes, w), "node 'leak' (Sigmoid)")
    # two paths besides the skip
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="left"),
             helper.make_node("Sigmoid", ["x"], ["s"], name="right"),
             helper.make_node("Add", ["x", "a"], ["y"], name="skip")]
    _expect_refusal(tmp_path, make_model(nodes, w), "feeds 2 nodes", "a branch")
    # a block that changes the width
    nodes = [helper.make_node("Gemm", ["x", "W4"], ["h"], transB=1),
             helper.make_node("Add", ["x", "h"], ["y"], name="skip")]
    _expect_refusal(tmp_path, make_model(nodes, w), "node 'skip' (Add)", "4 features")
    # x + x is no block
    nodes = [helper.make_node("Add", ["x", "x"], ["y"], name="double")]
    _expect_refusal(tmp_path, make_model(nodes, w), "node 'double' (Add)", "not supported")


def test_hostile_constants_in_the_new_forms_are_refused(tmp_path):
    w = {"g": [1.0, np.nan, 1.0, 1.0, 1.0, 1.0]}
    nodes = [helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln")]
    _expect_refusal(tmp_path, make_model(nodes, w), "node 'ln'", "NaN or Inf")
    # a softplus whose beta is NaN is no Softplus
    w = {"beta": np.nan, "threshold": 20.0}
    nodes = [helper.make_node("Mul", ["x", "beta"], ["z"]),
             helper.make_node("Greater", ["z", "threshold"], ["g"]),
             helper.make_node("Softplus", ["z"], ["sp"]),
             helper.make_node("Div", ["sp", "beta"], ["d"]),
             helper.make_node("Where", ["g", "x", "d"], ["y"])]
    with pytest.raises(ModelFileError):
        pynn_onnx.load(save(tmp_path, make_model(nodes, w)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_flipped_bytes_in_a_resnet_mlp_load_or_raise_modelfileerror(tmp_path, dtype):
    path = tmp_path / "resnet.onnx"
    pynn_onnx.export(_resnet_mlp(dtype), path)
    good = path.read_bytes()
    rng = np.random.default_rng(2)
    for trial in range(200):
        data = bytearray(good)
        for at in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            data[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            pynn_onnx.load(path)
        except ModelFileError:
            pass


def test_float64_gelu_holds_on_the_far_tails(tmp_path):
    X = np.concatenate([np.linspace(-60, 60, 2401), [0.0, -1e-300, 1e-300, 6.5 * 2 ** 0.5]])
    model = nn.Sequential(nn.GELU()).eval()
    wide = nn.Sequential(nn.Dense(1, 1, dtype=np.float64), nn.GELU()).eval()
    wide[0].weight.data[...] = 1.0
    wide[0].bias.data[...] = 0.0
    path = tmp_path / "gelu.onnx"
    pynn_onnx.export(wide, path)
    X = X.reshape(-1, 1)
    expected = model.predict(X)
    got = ort_predict(path, X)
    assert_close(got, expected, np.float64)
    # the negative tail is tiny but not lost: within 1e-14 of each value's own magnitude there
    neg = X[:, 0] < -1
    np.testing.assert_allclose(got[neg], expected[neg], rtol=1e-12, atol=1e-300)


def test_a_weight_of_another_element_type_and_a_non_utf8_name_are_refused(tmp_path):
    # (found by flipping bytes: np.dtype(None) is float64, so an unknown element type passed
    # for float64 models; protobuf returns a name that is not UTF-8 as bytes)
    w = {"W": np.ones((3, 6)), "b": np.zeros(3)}
    proto = make_model([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], w,
                       np.float64)
    proto.graph.initializer[0].data_type = onnx.TensorProto.INT32
    _expect_refusal(tmp_path, proto, "INT32", "the model's input float64")
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="zzzzzz")]
    data = make_model(nodes, {}).SerializeToString().replace(b"zzzzzz", bytes(range(250, 256)))
    path = tmp_path / "latin.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match="not UTF-8"):
        pynn_onnx.load(path)

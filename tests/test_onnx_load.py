"""pynn.onnx.load on other tools' graphs and on hostile files: Gemm-style (transB 0 and 1,
alpha, beta) and MatMul+Add-style MLPs with BatchNormalization, built with onnx.helper, load
and predict what ONNX Runtime predicts; an operator or graph shape pynn cannot express names
its node and operator; a corrupt or hostile file is a ModelFileError (a ValueError) or an
OSError, never a crash or a huge allocation (SECURITY.md)."""
import numpy as np
import pytest

from pynn import nn
from pynn.io import ModelFileError

onnx = pytest.importorskip("onnx")
import pynn.onnx as pynn_onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from test_onnx import DTYPES, ROWS, assert_close, ort_predict  # noqa: E402

ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def make_model(nodes, weights, dtype=np.float32, width=6, opset=17, inputs=(), outputs=None,
               initializers=()):
    """A model reading x (N, width) and writing y, with ``weights`` as initializers."""
    elem = ELEM[dtype]
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info("x", elem, ["N", width]), *inputs],
        outputs or [helper.make_tensor_value_info("y", elem, None)],
        [numpy_helper.from_array(np.asarray(v, dtype), k) for k, v in weights.items()]
        + list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=8)


def save(tmp_path, model, name="f.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _weights(rng, **shapes):
    return {k: rng.normal(size=s) * 0.5 for k, s in shapes.items()}


def _bn_weights(rng, prefix, n):
    return {f"{prefix}_scale": rng.uniform(0.5, 1.5, n), f"{prefix}_b": rng.normal(size=n),
            f"{prefix}_mean": rng.normal(size=n), f"{prefix}_var": rng.uniform(0.3, 3.0, n)}


def _bn(prefix, x, y, **attrs):
    return helper.make_node("BatchNormalization", [x, *(f"{prefix}_{k}" for k in
                            ("scale", "b", "mean", "var"))], [y], name=prefix, **attrs)


def _data(dtype, n=1000, d=6):
    return np.random.default_rng(3).normal(size=(n, d)).astype(dtype)


def _check_against_ort(path, dtype):
    X = _data(dtype)
    model = pynn_onnx.load(path)
    for n in ROWS:
        assert_close(model.predict(X[:n]), ort_predict(path, X[:n], "x"), dtype)
    return model


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_a_gemm_style_graph_with_batchnormalization_matches_onnx_runtime(tmp_path, dtype):
    rng = np.random.default_rng(0)
    w = {**_weights(rng, W1=(16, 6), b1=(16,), W2=(16, 8), b2=(1, 8), W3=(5, 8)),
         **_bn_weights(rng, "bn", 16)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], name="fc1", transB=1),
             _bn("bn", "h1", "h2", epsilon=1e-3, momentum=0.8),
             helper.make_node("Relu", ["h2"], ["h3"]),
             # transB=0: W2 is (in, out); alpha and beta scale the product and the bias
             helper.make_node("Gemm", ["h3", "W2", "b2"], ["h4"], name="fc2", alpha=0.5,
                              beta=2.0),
             helper.make_node("LeakyRelu", ["h4"], ["h5"], alpha=0.2),
             helper.make_node("Gemm", ["h5", "W3"], ["h6"], name="fc3", transB=1),
             helper.make_node("Softmax", ["h6"], ["y"], axis=1)]
    model = _check_against_ort(save(tmp_path, make_model(nodes, w, dtype)), dtype)
    assert [type(m).__name__ for m in model.layers] == ["Dense", "BatchNorm", "ReLU", "Dense",
                                                        "LeakyReLU", "Dense", "Softmax"]
    assert model[1].eps == np.float32(1e-3) and model[1].momentum == pytest.approx(0.2)
    assert model[5].bias is None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_a_matmul_add_style_graph_with_batchnormalization_matches_onnx_runtime(tmp_path,
                                                                                dtype):
    rng = np.random.default_rng(1)
    w = {**_weights(rng, W1=(6, 16), b1=(16,), W2=(16, 8), b2=(8,), W3=(8, 4)),
         **_bn_weights(rng, "norm", 16), "ratio": 0.3}
    # ONNX Runtime has no float64 Elu kernel
    last = "Elu" if dtype == np.float32 else "Sigmoid"
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "W1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]),
             _bn("norm", "a1", "n1"),
             helper.make_node("Sigmoid", ["n1"], ["s1"]),
             helper.make_node("Dropout", ["s1", "ratio"], ["d1", "mask"]),
             helper.make_node("MatMul", ["d1", "W2"], ["m2"]),
             helper.make_node("Add", ["b2", "m2"], ["a2"]),  # the bias first
             helper.make_node("Tanh", ["a2"], ["t2"]),
             helper.make_node("MatMul", ["t2", "W3"], ["m3"]),  # no bias
             helper.make_node("Identity", ["m3"], ["i3"]),
             helper.make_node(last, ["i3"], ["y"])]
    model = _check_against_ort(save(tmp_path, make_model(nodes, w, dtype)), dtype)
    assert [type(m).__name__ for m in model.layers] == [
        "Dense", "BatchNorm", "Sigmoid", "Dense", "Tanh", "Dense", "Identity",
        "ELU" if last == "Elu" else "Sigmoid"]


def test_weights_listed_as_inputs_constant_nodes_and_an_old_softmax_load(tmp_path):
    rng = np.random.default_rng(2)
    w = _weights(rng, W=(6, 3), b=(3,))
    # keep_initializers_as_inputs (IR 3): the weights are graph inputs with stored defaults
    as_inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape)
                 for k, v in w.items()]
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(
                 (rng.normal(size=(3, 3)) * 0.5).astype(np.float32))),
             helper.make_node("Gemm", ["x", "W", "b"], ["h"]),
             helper.make_node("Gemm", ["h", "c"], ["g"]),
             helper.make_node("Softmax", ["g"], ["y"])]  # opset 11: the default axis is 1
    path = save(tmp_path, make_model(nodes, w, opset=11, inputs=as_inputs))
    _check_against_ort(path, np.float32)


def _expect_refusal(tmp_path, model, *fragments):
    path = save(tmp_path, model)
    with pytest.raises(ModelFileError) as info:
        pynn_onnx.load(path)
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


W_GEMM = {"W": np.ones((3, 6)), "b": np.zeros(3)}


@pytest.mark.parametrize("where", ["first", "later"])
def test_an_unsupported_operator_names_its_node_and_itself(tmp_path, where):
    conv = helper.make_node("Conv", ["h" if where == "later" else "x", "K"], ["y"],
                            name="conv1")
    nodes = [conv] if where == "first" else [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), conv]
    _expect_refusal(tmp_path, make_model(nodes, {**W_GEMM, "K": np.ones((1, 1, 1))}),
                    "node 'conv1' (Conv)", "operator Conv is not supported")


def test_a_branch_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="left"),
             helper.make_node("Sigmoid", ["x"], ["s"], name="right"),
             helper.make_node("Add", ["a", "s"], ["y"], name="join")]
    _expect_refusal(tmp_path, make_model(nodes, {}), "feeds 2 nodes", "a branch")
    # a node off the chain
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Identity", ["W"], ["unused"], name="stray")]
    _expect_refusal(tmp_path, make_model(nodes, W_GEMM), "node 'stray' (Identity) is not on "
                    "the chain")
    # a tensor inside a pattern read from outside: the Mul of a float64 LeakyReLU
    nodes = [helper.make_node("Greater", ["x", "zero"], ["g"]),
             helper.make_node("Mul", ["x", "slope"], ["m"]),
             helper.make_node("Where", ["g", "x", "m"], ["y"]),
             helper.make_node("Relu", ["m"], ["z"], name="reader")]
    _expect_refusal(tmp_path, make_model(nodes, {"zero": 0.0, "slope": 0.1}),
                    "node 'reader' (Relu) reads a tensor inside")
    # the Greater of a Step read by another node than its Cast
    nodes = [helper.make_node("Greater", ["x", "zero"], ["g"], name="gt"),
             helper.make_node("Cast", ["g"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Where", ["g", "c", "c"], ["y"])]
    _expect_refusal(tmp_path, make_model(nodes, {"zero": 0.0}), "node 'gt' (Greater)",
                    "followed by a Cast")


def test_a_dynamic_weight_is_refused(tmp_path):
    W = helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 6])
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)]
    _expect_refusal(tmp_path, make_model(nodes, {}, inputs=[W]), "node 'fc' (Gemm)",
                    "a dynamic weight")
    # a weight computed in the graph
    nodes = [helper.make_node("Transpose", ["W0"], ["W"]),
             helper.make_node("Gemm", ["x", "W"], ["y"], name="fc")]
    _expect_refusal(tmp_path, make_model(nodes, {"W0": np.ones((3, 6))}), "node 'fc' (Gemm)",
                    "a dynamic weight")


@pytest.mark.parametrize("node, weights, fragment", [
    (helper.make_node("Gemm", ["x", "W"], ["y"], name="n", transA=1), W_GEMM, "transA=1"),
    (helper.make_node("Gemm", ["x", "W"], ["y"], name="n", broadcast=1), W_GEMM,
     "attribute 'broadcast' is not supported"),
    (helper.make_node("Gemm", ["x", "W"], ["y"], name="n", alpha=2), W_GEMM,
     "attribute 'alpha' must be FLOAT"),
    (helper.make_node("Gemm", ["x", "W"], ["y"], name="n"), W_GEMM, "takes 3 features but the "
     "tensor before it has 6"),
    (helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="n", transB=1),
     {**W_GEMM, "C": np.zeros((2, 3))}, "bias C has shape (2, 3)"),
    (helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="n", transB=1),
     {"W": np.full((3, 6), np.nan), "b": np.zeros(3)}, "weight 'W' holds NaN or Inf"),
    (_bn("n", "x", "y", training_mode=1), _bn_weights(np.random.default_rng(0), "n", 6),
     "training_mode=0"),
    (_bn("n", "x", "y"), {**_bn_weights(np.random.default_rng(0), "n", 6),
                          "n_var": -np.ones(6)}, "a negative running variance"),
    (_bn("n", "x", "y"), {**_bn_weights(np.random.default_rng(0), "n", 6),
                          "n_mean": np.ones(5)}, "differ in length"),
    (helper.make_node("Softmax", ["x"], ["y"], name="n", axis=0), {}, "softmax over axis 0"),
    (helper.make_node("Mul", ["x", "W"], ["y"], name="n"), W_GEMM, "only as Square"),
    (helper.make_node("Greater", ["x", "W"], ["y"], name="n"), W_GEMM,
     "threshold 'W' has shape (3, 6)"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_what_pynn_cannot_express_names_the_node(tmp_path, node, weights, fragment):
    _expect_refusal(tmp_path, make_model([node], weights), "node 'n' (", fragment)


def test_the_graph_must_be_one_float_input_and_one_output(tmp_path):
    relu = [helper.make_node("Relu", ["x"], ["y"])]
    two = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z")]
    _expect_refusal(tmp_path, make_model(relu, {}, outputs=two), "2 outputs")
    other = helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 6])
    _expect_refusal(tmp_path, make_model(relu, {}, inputs=[other]), "2 inputs ('x', 'x2')")
    half = make_model(relu, {})
    half.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    _expect_refusal(tmp_path, half, "must be a float32 or float64 tensor, got FLOAT16")
    image = make_model(relu, {})
    image.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 4
    _expect_refusal(tmp_path, image, "must be 2-D (batch, features), got 3")
    mixed = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], W_GEMM)
    mixed.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((3, 6)), "W"))
    _expect_refusal(tmp_path, mixed, "weight 'W' is DOUBLE, the model's input float32")
    _expect_refusal(tmp_path, make_model([helper.make_node("Relu", ["x"], ["y"]),
                                          helper.make_node("Relu", ["x"], ["y"])], {}),
                    "tensor 'y' is produced twice")


def test_too_many_nodes_are_refused_before_the_walk(tmp_path):
    n = pynn_onnx._graph.MAX_NODES + 1
    names = ["x", *(f"t{i}" for i in range(n - 1)), "y"]
    nodes = [helper.make_node("Identity", [a], [b]) for a, b in zip(names, names[1:])]
    _expect_refusal(tmp_path, make_model(nodes, {}), f"{n} nodes, more than")


def _gemm_with(tensor):
    return make_model([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)], {},
                      initializers=[tensor])


def test_external_data_is_refused_and_never_opened(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(18, np.float32).tobytes())
    tensor = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 6])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../" + secret.name), ("offset", "0"), ("length", "72")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "sub").mkdir()
    path = save(tmp_path / "sub", _gemm_with(tensor))
    with pytest.raises(ModelFileError, match="external data"):
        pynn_onnx.load(path)


@pytest.mark.parametrize("dims, raw", [([1 << 31, 1 << 31], b"\0" * 16), ([1 << 62, 4], b""),
                                       ([3, 6], b"\0" * 70), ([-1, 6], b"")])
def test_a_declared_shape_the_data_does_not_fill_is_refused_before_allocation(tmp_path, dims,
                                                                              raw):
    tensor = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=dims, raw_data=raw)
    with pytest.raises(ModelFileError, match="weight 'W'"):
        pynn_onnx.load(save(tmp_path, _gemm_with(tensor)))


def test_a_weight_with_more_than_two_dimensions_is_refused(tmp_path):
    tensor = numpy_helper.from_array(np.ones((3, 6, 1), np.float32), "W")
    with pytest.raises(ModelFileError, match="at most 2 dimensions"):
        pynn_onnx.load(save(tmp_path, _gemm_with(tensor)))


def _exported(tmp_path, dtype=np.float32):
    X = _data(dtype)
    model = nn.Sequential(nn.Standardizer(dtype=dtype).fit(X), nn.Dense(6, 8, dtype=dtype),
                          nn.BatchNorm(8, dtype=dtype), nn.ELU(), nn.Dense(8, 3, dtype=dtype))
    path = tmp_path / "good.onnx"
    pynn_onnx.export(model.eval(), path, metadata={"classes": [0, 1, 2]})
    return path


def test_garbage_truncated_and_foreign_files_raise_valueerror_or_oserror(tmp_path):
    good = _exported(tmp_path).read_bytes()
    rng = np.random.default_rng(0)
    bad = {"empty": b"", "text": b"hello, I am not a model\n", "npz": b"PK\x03\x04" + b"\0" * 60,
           **{f"random{k}": rng.bytes(int(rng.integers(1, 4000))) for k in range(20)},
           **{f"cut{k}": good[:k] for k in (1, 10, 100, len(good) // 2, len(good) - 1)}}
    for name, data in bad.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(data)
        with pytest.raises(ModelFileError):
            pynn_onnx.load(path)
    with pytest.raises(FileNotFoundError):
        pynn_onnx.load(tmp_path / "missing.onnx")
    with pytest.raises(ModelFileError, match="not a regular file"):
        pynn_onnx.load(tmp_path)


def test_flipped_bytes_load_or_raise_modelfileerror_never_anything_else(tmp_path):
    good = bytearray(_exported(tmp_path).read_bytes())
    rng = np.random.default_rng(1)
    loaded = 0
    for trial in range(300):
        data = bytearray(good)
        for at in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            data[at] = int(rng.integers(0, 256))
        path = tmp_path / "flipped.onnx"
        path.write_bytes(bytes(data))
        try:
            pynn_onnx.load(path)
            loaded += 1  # a flip inside a weight's bytes is still a model
        except ModelFileError:
            pass
    assert loaded < 300


def test_metadata_that_is_not_a_json_object_is_refused(tmp_path):
    proto = onnx.load(str(_exported(tmp_path)))
    for value, fragment in (("{not json", "not valid JSON"), ("[1, 2]", "a JSON object")):
        for prop in proto.metadata_props:
            if prop.key == "pynn.metadata":
                prop.value = value
        with pytest.raises(ModelFileError, match=fragment):
            pynn_onnx.load(save(tmp_path, proto), return_metadata=True)

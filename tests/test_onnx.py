"""pynn.onnx.export: what ONNX Runtime predicts from an exported file is what ``model.predict``
does (float32 within 2e-5, float64 within 1e-12) for 1, 7 and 1000 rows and every layer; the
file passes onnx's full check and carries pynn's metadata; a layer ONNX cannot express names
itself; export -> load keeps the predictions."""
import json
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import nn

onnx = pytest.importorskip("onnx")
import pynn.onnx as pynn_onnx  # noqa: E402

TOL = {np.float32: 2e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
ROWS = (1, 7, 1000)
# every activation pynn has (Softmax: as the last layer, see _net)
ACTIVATIONS = {
    "identity": nn.Identity, "step": nn.Step, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
    "relu": nn.ReLU, "square": nn.Square, "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "elu": lambda: nn.ELU(0.7), "softmax": nn.Softmax,
}


def assert_close(actual, expected, dtype):
    """Within the dtype's tolerance relative to the output's scale: an output near 0 is a sum
    of products that cancelled, with no relative precision of its own."""
    rtol = TOL[dtype]
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def ort_predict(path, X, input_name="input"):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: X})[0]


def _data(dtype, n=1000, d=6, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, d)) * 3 + 1).astype(dtype)


def _randomize_batchnorm(bn, rng):
    """Running statistics and an affine part far from the defaults (else BN is the identity)."""
    n = bn.num_features
    bn.running_mean[...] = rng.normal(size=n)
    bn.running_var[...] = rng.uniform(0.3, 3.0, size=n)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, size=n)
    bn.bias.data[...] = rng.normal(size=n) * 0.3


def _net(act, dtype, X, seed=0):
    """Standardizer -> Dense -> BatchNorm -> act -> Dense -> act -> Dense (-> Softmax)."""
    rng = np.random.default_rng(seed)
    make = ACTIVATIONS[act]
    hidden = nn.ReLU if act == "softmax" else make
    layers = [nn.Standardizer(dtype=dtype).fit(X), nn.Dense(X.shape[1], 16, seed=1, dtype=dtype),
              nn.BatchNorm(16, dtype=dtype), hidden(), nn.Dense(16, 16, seed=2, dtype=dtype),
              hidden(), nn.Dropout(0.3), nn.Dense(16, 3, seed=3, dtype=dtype)]
    if act == "softmax":
        layers.append(make())
    model = nn.Sequential(*layers)
    _randomize_batchnorm(layers[2], rng)
    for dense in (layers[1], layers[4], layers[7]):
        dense.bias.data[...] = rng.normal(size=dense.out_features) * 0.1
    return model.eval()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_onnx_runtime_predicts_what_model_predict_does(tmp_path, act, dtype):
    X = _data(dtype)
    model = _net(act, dtype, X)
    path = tmp_path / "m.onnx"
    pynn_onnx.export(model, path)
    for n in ROWS:
        assert_close(ort_predict(path, X[:n]), model.predict(X[:n]), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_export_then_load_keeps_the_predictions(tmp_path, act, dtype):
    X = _data(dtype)
    model = _net(act, dtype, X)
    path = tmp_path / "m.onnx"
    pynn_onnx.export(model, path)
    loaded = pynn_onnx.load(path)
    assert not loaded.training and loaded.dtype == dtype
    # Dropout is gone and the BatchNorm after a Dense is folded into it; the rest comes back
    # as the layers it was
    kinds = [type(m).__name__ for m in loaded.layers]
    expect = [type(m).__name__ for m in model.layers if type(m) not in (nn.Dropout,
                                                                          nn.BatchNorm)]
    assert kinds == expect
    for n in ROWS:
        assert_close(loaded.predict(X[:n]), model.predict(X[:n]), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_a_batchnorm_without_a_dense_before_it_is_batchnormalization(tmp_path, dtype):
    X = _data(dtype)
    rng = np.random.default_rng(1)
    first, later = nn.BatchNorm(6, dtype=dtype), nn.BatchNorm(8, dtype=dtype)
    model = nn.Sequential(first, nn.Dense(6, 8, dtype=dtype), nn.Tanh(), later,
                          nn.Dense(8, 2, dtype=dtype)).eval()
    _randomize_batchnorm(first, rng)
    _randomize_batchnorm(later, rng)
    path = tmp_path / "bn.onnx"
    proto = pynn_onnx.export(model, path)
    assert [n.op_type for n in proto.graph.node] == ["BatchNormalization", "Gemm", "Tanh",
                                                     "BatchNormalization", "Gemm"]
    for n in ROWS:
        assert_close(ort_predict(path, X[:n]), model.predict(X[:n]), dtype)
    loaded = pynn_onnx.load(path)
    assert [type(m).__name__ for m in loaded.layers] == ["BatchNorm", "Dense", "Tanh",
                                                         "BatchNorm", "Dense"]
    assert loaded[0].momentum == first.momentum
    assert_close(loaded.predict(X), model.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_nested_sequential_and_modulelist_export_as_their_layers_in_order(tmp_path, dtype):
    X = _data(dtype, n=50)
    inner = [nn.Dense(6, 5, seed=1, dtype=dtype), nn.ELU(), nn.Dense(5, 4, seed=2, dtype=dtype),
             nn.Sigmoid(), nn.Dense(4, 2, seed=3, dtype=dtype)]
    nested = nn.Sequential(nn.Sequential(inner[0], nn.ModuleList([inner[1]])),
                           nn.ModuleList([inner[2], inner[3]]), inner[4])
    path = tmp_path / "nested.onnx"
    proto = pynn_onnx.export(nested, path)
    assert proto.graph.initializer[0].name == "0.0.weight"  # the state_dict key
    flat = nn.Sequential(*inner).eval()
    assert_close(ort_predict(path, X), flat.predict(X), dtype)


def test_dropout_is_dropped_and_a_model_of_nothing_else_is_the_identity(tmp_path):
    X = _data(np.float32, n=9)
    proto = pynn_onnx.export(nn.Sequential(nn.Dropout(0.5)), tmp_path / "d.onnx")
    assert [n.op_type for n in proto.graph.node] == ["Identity"]
    np.testing.assert_array_equal(ort_predict(tmp_path / "d.onnx", X), X)


def test_a_single_layer_exports(tmp_path):
    X = _data(np.float64, n=5)
    dense = nn.Dense(6, 3, seed=0, dtype=np.float64)
    pynn_onnx.export(dense, tmp_path / "one.onnx")
    assert_close(ort_predict(tmp_path / "one.onnx", X), dense.predict(X), np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_step_is_exactly_pynns_at_zero_and_square_and_standardizer_are_bit_for_bit(tmp_path,
                                                                                    dtype):
    X = np.array([[-1.0, 0.0, -0.0, 1e-30, 2.5]], dtype)
    fitted = nn.Standardizer(dtype=dtype).fit(_data(dtype)[:, :5])
    for layer in (nn.Step(), nn.Square(), fitted):
        # a Standardizer of mean 0 and scale 1 in front: the model's dtype, X unchanged
        model = nn.Sequential(nn.Standardizer(num_features=5, dtype=dtype), layer)
        path = tmp_path / f"{type(layer).__name__}.onnx"
        pynn_onnx.export(model, path)
        np.testing.assert_array_equal(ort_predict(path, X), model.predict(X))


def test_the_file_passes_the_full_check_and_names_its_dimensions(tmp_path):
    X = _data(np.float32)
    path = tmp_path / "m.onnx"
    pynn_onnx.export(_net("relu", np.float32, X), path, input_name="pixels",
                     output_name="logits")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("pixels", "logits")
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 6]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3]
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert_close(ort_predict(path, X[:7], "pixels"), _net("relu", np.float32, X).predict(X[:7]),
                 np.float32)


def test_metadata_holds_pynns_version_the_architecture_and_the_users_metadata(tmp_path):
    X = _data(np.float32)
    model = _net("tanh", np.float32, X)
    meta = {"classes": ["a", "b", "c"], "features": [f"x{j}" for j in range(6)]}
    path = tmp_path / "m.onnx"
    pynn_onnx.export(model, path, metadata=meta)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["pynn.version"] == pynn.__version__
    assert json.loads(props["pynn.architecture"]) == pynn.io.architecture(model)
    assert json.loads(props["pynn.metadata"]) == meta
    assert pynn_onnx.load(path, return_metadata=True)[1] == meta
    with pytest.raises(TypeError, match="metadata must be JSON-serializable"):
        pynn_onnx.export(model, path, metadata={"bad": object()})


def test_opset_default_override_and_validation(tmp_path):
    X = _data(np.float64)
    model = _net("elu", np.float64, X)
    proto = pynn_onnx.export(model, tmp_path / "d.onnx")
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", pynn_onnx.DEFAULT_OPSET)]
    # the oldest IR version of the opset, which older runtimes accept
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    proto = pynn_onnx.export(model, tmp_path / "13.onnx", opset=13)
    assert proto.opset_import[0].version == 13
    assert_close(ort_predict(tmp_path / "13.onnx", X), model.predict(X), np.float64)
    newest = onnx.defs.onnx_opset_version()
    for bad in (12, newest + 1, "17", 17.0, True):
        with pytest.raises(ValueError, match=f"opset must be an int from 13 to {newest}"):
            pynn_onnx.export(model, tmp_path / "bad.onnx", opset=bad)
    assert not (tmp_path / "bad.onnx").exists()


class Doubler(nn.Module):
    def forward(self, X):
        return 2 * X


class MyReLU(nn.ReLU):
    def infer(self, X):
        return np.maximum(X, 0.5)


@pytest.mark.parametrize("layer, name", [(Doubler(), "Doubler"), (MyReLU(), "MyReLU")])
def test_a_layer_onnx_cannot_express_names_its_type_and_path(tmp_path, layer, name):
    model = nn.Sequential(nn.Dense(3, 3), nn.Sequential(nn.Tanh(), layer))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"the previous file")
    with pytest.raises(TypeError, match=f"cannot export the {name} at '1.1'"):
        pynn_onnx.export(model, path)
    assert path.read_bytes() == b"the previous file"  # written atomically, or not at all


def test_bad_arguments_raise_naming_them(tmp_path):
    dense = nn.Dense(3, 2)
    with pytest.raises(TypeError, match="model must be a pynn Module"):
        pynn_onnx.export("model", tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="input_name must be a non-empty str"):
        pynn_onnx.export(dense, tmp_path / "m.onnx", input_name="")
    with pytest.raises(ValueError, match="input_name and output_name must differ"):
        pynn_onnx.export(dense, tmp_path / "m.onnx", input_name="x", output_name="x")
    with pytest.raises(ValueError, match="Standardizer at '0' is not fitted"):
        pynn_onnx.export(nn.Sequential(nn.Standardizer(), dense), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="Dense at '1' takes 3 features but the layer before "
                                         "it gives 4"):
        pynn_onnx.export(nn.Sequential(nn.Dense(2, 4), dense), tmp_path / "m.onnx")
    with pytest.raises(OSError, match="cannot write"):
        pynn_onnx.export(dense, tmp_path / "no" / "such" / "dir" / "m.onnx")


def test_import_pynn_does_not_import_onnx():
    code = ("import sys, pynn, pynn.onnx, pynn.cli; "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_onnx_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'pynn\[onnx\]'"):
        pynn_onnx.export(nn.Dense(2, 2), tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=r"pynn\[onnx\]"):
        pynn_onnx.load(tmp_path / "m.onnx")

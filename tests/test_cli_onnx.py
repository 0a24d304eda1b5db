"""`pynn export MODEL.npz --out MODEL.onnx`, and `pynn evaluate`/`predict` on the .onnx file:
the same accuracy (loss, predictions) as the .npz it came from, with the training columns,
class labels and target scaling carried in the file's metadata; errors are one line."""
import csv
import json

import numpy as np
import pytest

from pynn.cli import main
from pynn.datasets import load_digits

onnx = pytest.importorskip("onnx")

from test_cli import _write_csv  # noqa: E402


def _train(tmp_path, *argv):
    out = tmp_path / "run"
    assert main(["train", "--hidden", "32", "--epochs", "3", "--seed", "0", "--verbose", "0",
                 "--out", str(out), *argv]) == 0
    return out / "model.npz"


def _evaluate(tmp_path, model, *data):
    report = tmp_path / f"{model.suffix[1:]}.json"
    assert main(["evaluate", str(model), *data, "--report", str(report)]) == 0
    return json.loads(report.read_text())


def test_export_then_evaluate_gives_the_accuracy_of_the_npz(tmp_path, capsys):
    npz = _train(tmp_path)
    onnx_path = tmp_path / "run" / "model.onnx"
    assert main(["export", str(npz), "--out", str(onnx_path)]) == 0
    assert f"wrote {onnx_path} (ONNX opset 20, float32)" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
    a = _evaluate(tmp_path, npz, "--dataset", "digits")
    b = _evaluate(tmp_path, onnx_path, "--dataset", "digits")
    assert b["accuracy"] == a["accuracy"] and b["n"] == a["n"] == 1797
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    # and ONNX Runtime, fed the raw pixels, predicts the classes pynn does
    ort = pytest.importorskip("onnxruntime")
    X, y = load_digits()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": X.astype(np.float32)})[0]
    assert (logits.argmax(1) == y).mean() == pytest.approx(a["accuracy"])


def test_a_csv_model_keeps_its_column_names_and_class_labels(tmp_path):
    X, y = load_digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    columns = [f"px{j}" for j in range(64)]
    _write_csv(tmp_path / "train.csv", X[:600], names[y[:600]], columns, target="digit")
    npz = _train(tmp_path, "--data", str(tmp_path / "train.csv"), "--target", "digit")
    assert main(["export", str(npz)]) == 0  # --out defaults to MODEL with .onnx
    onnx_path = npz.with_suffix(".onnx")
    # the test file's columns in another order, the label first: matched by name
    order = np.random.default_rng(0).permutation(64)
    test = tmp_path / "test.csv"
    with open(test, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["digit", *[columns[j] for j in order]])
        for row, label in zip(X[600:900], names[y[600:900]]):
            w.writerow([label, *[f"{row[j]:g}" for j in order]])
    a = _evaluate(tmp_path, npz, "--data", str(test))
    b = _evaluate(tmp_path, onnx_path, "--data", str(test))
    assert b["accuracy"] == a["accuracy"] and b["n"] == 300
    rows = {}
    for model in (npz, onnx_path):
        preds = tmp_path / f"{model.suffix[1:]}.csv"
        assert main(["predict", str(model), "--data", str(test), "--out", str(preds)]) == 0
        rows[model.suffix] = list(csv.reader(open(preds)))
    assert rows[".onnx"][0] == rows[".npz"][0] == ["prediction", *[f"p_{c}" for c in
                                                                    sorted(names.tolist())]]
    assert [r[0] for r in rows[".onnx"]] == [r[0] for r in rows[".npz"]]
    np.testing.assert_allclose(np.array([r[1:] for r in rows[".onnx"][1:]], float),
                               np.array([r[1:] for r in rows[".npz"][1:]], float), rtol=1e-4)


def test_a_regression_model_keeps_its_target_scaling(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    np.savez(tmp_path / "d.npz", X=X, y=X @ [10.0, -20.0, 5.0] + 100)
    npz = _train(tmp_path, "--data", str(tmp_path / "d.npz"), "--task", "regression")
    assert main(["export", str(npz), "--opset", "13"]) == 0
    onnx_path = npz.with_suffix(".onnx")
    assert onnx.load(str(onnx_path)).opset_import[0].version == 13
    a = _evaluate(tmp_path, npz, "--data", str(tmp_path / "d.npz"))
    b = _evaluate(tmp_path, onnx_path, "--data", str(tmp_path / "d.npz"))
    assert b["mse"] == pytest.approx(a["mse"], rel=1e-5)


def test_a_foreign_onnx_file_takes_columns_by_position_and_labels_as_indices(tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper

    X, y = load_digits(dtype=np.float64)
    # a nearest-centroid classifier written as one Gemm: scores 2 c.x - |c|^2
    centroids = np.stack([X[y == k].mean(0) for k in range(10)])
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "W", "b"], ["scores"], transB=1)], "centroids",
        [helper.make_tensor_value_info("pixels", TensorProto.DOUBLE, ["N", 64])],
        [helper.make_tensor_value_info("scores", TensorProto.DOUBLE, ["N", 10])],
        [numpy_helper.from_array(2 * centroids, "W"),
         numpy_helper.from_array(-(centroids ** 2).sum(1), "b")])
    path = tmp_path / "centroids.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                       ir_version=8).SerializeToString())
    result = _evaluate(tmp_path, path, "--dataset", "digits")
    expect = (((X[:, None, :] - centroids) ** 2).sum(-1).argmin(1) == y).mean()
    assert result["accuracy"] == pytest.approx(expect) and expect > 0.85


@pytest.mark.parametrize("argv, code, message", [
    (["export", "missing.npz"], 1, "missing.npz: no such file"),
    (["export", "MODEL", "--opset", "99"], 1, "opset must be an int from 13 to"),
    (["export", "MODEL", "--opset", "0"], 2, "expected a positive integer"),
    (["export", "MODEL", "--out", "MODEL"], 1, "would overwrite the model it exports"),
    (["evaluate", "GARBAGE", "--dataset", "digits"], 1, "not an ONNX model"),
    (["predict", "GARBAGE", "--dataset", "digits", "--out", "p.csv"], 1, "not an ONNX model"),
])
def test_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    if "MODEL" in argv:
        _train(tmp_path).rename(tmp_path / "MODEL")
    (tmp_path / "GARBAGE").write_bytes(b"\x08\x07garbage")
    argv = ["GARBAGE.onnx" if a == "GARBAGE" else a for a in argv]
    (tmp_path / "GARBAGE.onnx").write_bytes(b"\x08\x07garbage")
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_export_help(capsys):
    assert main(["export", "--help"]) == 0
    assert "--opset" in capsys.readouterr().out

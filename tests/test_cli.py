"""The pynn command: train / evaluate / predict, and its error paths (one line, no traceback)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn.cli import main
from pynn.datasets import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_csv(path, X, y, names=None, target="label"):
    names = names or [f"f{j}" for j in range(X.shape[1])]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, target])
        for row, label in zip(X, y):
            w.writerow([*[f"{v:g}" for v in row], label])


def test_train_lecture_recipe_on_digits(tmp_path, capsys):
    """The must-show: `pynn train --seed 0` reaches >= 97% on the held-out 20% of digits."""
    out = tmp_path / "run"
    assert main(["train", "--seed", "0", "--out", str(out), "--verbose", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["test_accuracy"] >= 0.97
    assert report["n_test"] == 359  # round(0.2 * 1797)
    assert {"test_loss", "history", "config"} <= set(report)
    assert report["config"]["hidden"] == [256, 128] and report["config"]["seed"] == 0
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "test accuracy" in capsys.readouterr().out
    # the saved model takes raw pixels (the Standardizer is its first layer)
    X, y = load_digits()
    model = pynn.load(out / "model.npz")
    assert (model.predict(X).argmax(1) == y).mean() > 0.97


def test_train_evaluate_predict_on_a_user_csv(tmp_path, capsys):
    X, y = load_digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    data = tmp_path / "train.csv"
    _write_csv(data, X[:600], names[y[:600]], target="digit")
    out = tmp_path / "run"
    report = tmp_path / "r.json"
    assert main(["train", "--data", str(data), "--target", "digit", "--hidden", "32",
                 "--epochs", "10", "--lr", "0.01", "--out", str(out), "--report", str(report),
                 "--verbose", "0", "--optimizer", "adamw"]) == 0
    rep = json.loads(report.read_text())
    assert rep["task"] == "classification" and 0 <= rep["test_accuracy"] <= 1
    assert rep["classes"] == sorted(names.tolist())

    test = tmp_path / "test.csv"
    _write_csv(test, X[600:700], names[y[600:700]], target="digit")
    assert main(["evaluate", str(out / "model.npz"), "--data", str(test),
                 "--report", str(tmp_path / "e.json")]) == 0
    assert "accuracy" in capsys.readouterr().out
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev["n"] == 100 and ev["accuracy"] > 0.5

    preds = tmp_path / "preds.csv"
    assert main(["predict", str(out / "model.npz"), "--data", str(test), "--out",
                 str(preds)]) == 0
    rows = list(csv.reader(open(preds)))
    assert rows[0][0] == "prediction" and len(rows) == 101
    assert rows[0][1:] == [f"p_{c}" for c in sorted(names.tolist())]
    acc = np.mean([r[0] == t for r, t in zip(rows[1:], names[y[600:700]])])
    assert acc == pytest.approx(ev["accuracy"])


def test_train_regression_from_npz(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    np.savez(tmp_path / "d.npz", X=X, y=X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200))
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "30", "--hidden", "16", "--lr", "0.02", "--batch-size", "16",
                 "--out", str(out), "--verbose", "0"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["task"] == "regression" and rep["test_accuracy"] is None
    assert rep["test_loss"] < 1.0
    assert main(["predict", str(out / "model.npz"), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize("argv, code, message", [
    (["train", "--bogus"], 2, "unrecognized arguments"),
    (["train", "--hidden", "12,x"], 2, "layer widths"),
    (["train", "--epochs", "0"], 2, "positive integer"),
    (["train", "--dataset", "cifar"], 2, "invalid choice"),
    (["train", "--dataset", "digits", "--data", "x.csv"], 2, "not allowed with"),
    (["train", "--data", "missing.csv"], 1, "missing.csv: no such file"),
    (["train", "--target", "y"], 1, "--target needs --data"),
    (["evaluate", "missing.npz", "--dataset", "digits"], 1, "no such file"),
    (["predict", "m.npz", "--dataset", "digits"], 2, "--out"),
    (["frobnicate"], 2, "invalid choice"),
    (["train", "--schedule", "onecycle", "--warmup", "2"], 1, "--warmup does not combine"),
    (["train", "--schedule", "linear"], 2, "invalid choice"),
    (["train", "--clip-grad-norm", "0"], 2, "--clip-grad-norm"),
])
def test_argument_errors_are_one_line(argv, code, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_files_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n3,oops,1\n")
    (tmp_path / "short.csv").write_text("a,b,label\n1,2\n")
    (tmp_path / "model.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    (tmp_path / "pickled.npz").write_bytes(b"\x80\x04\x95 pickle")
    (tmp_path / "ok.csv").write_text("a,b,label\n1,2,0\n3,4,1\n" * 10)
    cases = [
        (["train", "--data", "bad.csv"], "'b', line 3: 'oops' is not a number"),
        (["train", "--data", "short.csv"], "line 2 has 2 fields"),
        (["train", "--data", "ok.csv", "--target", "nope"], "'nope' not in the header"),
        (["evaluate", "model.npz", "--data", "ok.csv"], "not a pynn model file"),
        (["predict", "pickled.npz", "--data", "ok.csv", "--out", "p.csv"], "pickle"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_feature_count_mismatch(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--out", str(out),
                 "--verbose", "0"]) == 0
    (tmp_path / "few.csv").write_text("a,b,label\n1,2,0\n")
    assert main(["evaluate", str(out / "model.npz"), "--data", str(tmp_path / "few.csv")]) == 1
    assert "the model expects 64" in capsys.readouterr().err


def test_python_dash_m_pynn_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "pynn", "evaluate", str(tmp_path / "x.npz"),
                        "--dataset", "digits"], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("pynn evaluate: error:")
    r = subprocess.run([sys.executable, "-m", "pynn", "--help"], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0 and "train" in r.stdout


# ---------------------------------------------------------------------------- column matching
def _tiny_model(tmp_path):
    """A model trained by `pynn train` on 5 named features of different scales; (model path,
    X, labels, feature names)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 5)) * [1.0, 10.0, 0.1, 3.0, 100.0] + [0.0, 5.0, -1.0, 2.0, 50.0]
    y = np.array(["a", "b", "c"])[(X[:, 0] + X[:, 2] * 10 > 0).astype(int) + (X[:, 1] > 5)]
    names = ["age", "height", "dose", "score", "weight"]
    _write_csv(tmp_path / "train.csv", X, y, names=names, target="kind")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--target", "kind",
                 "--hidden", "8", "--epochs", "10", "--out", str(out), "--verbose", "0"]) == 0
    return str(out / "model.npz"), X, y, names


def _write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)


def _predict(model, path, tmp_path, name):
    out = tmp_path / name
    assert main(["predict", model, "--data", str(path), "--out", str(out)]) == 0
    return list(csv.reader(open(out)))


def test_predict_matches_csv_columns_by_name_in_any_order(tmp_path, capsys):
    model, X, y, names = _tiny_model(tmp_path)
    cols = [*names, "kind"]
    rows = [[*[f"{v:g}" for v in r], label] for r, label in zip(X, y)]
    _write_rows(tmp_path / "same.csv", cols, rows)
    expected = _predict(model, tmp_path / "same.csv", tmp_path, "p0.csv")
    assert len(expected) == 151

    # the same columns shuffled (the label too), and without the label
    order = [4, 2, 5, 0, 3, 1]
    _write_rows(tmp_path / "shuffled.csv", [cols[j] for j in order],
                [[r[j] for j in order] for r in rows])
    assert _predict(model, tmp_path / "shuffled.csv", tmp_path, "p1.csv") == expected
    order = [3, 1, 4, 0, 2]
    _write_rows(tmp_path / "features.csv", [cols[j] for j in order],
                [[r[j] for j in order] for r in rows])
    assert _predict(model, tmp_path / "features.csv", tmp_path, "p2.csv") == expected
    # an extra column (an id) is not a feature
    _write_rows(tmp_path / "extra.csv", ["id", *reversed(cols)],
                [[i, *reversed(r)] for i, r in enumerate(rows)])
    assert _predict(model, tmp_path / "extra.csv", tmp_path, "p3.csv") == expected

    # evaluate matches by name too, and finds the label by its name
    capsys.readouterr()
    assert main(["evaluate", model, "--data", str(tmp_path / "same.csv")]) == 0
    same = capsys.readouterr().out
    assert main(["evaluate", model, "--data", str(tmp_path / "shuffled.csv")]) == 0
    assert capsys.readouterr().out.replace("shuffled", "same") == same


def test_predict_without_a_header_is_positional(tmp_path):
    model, X, y, names = _tiny_model(tmp_path)
    rows = [[f"{v:g}" for v in r] for r in X]
    _write_rows(tmp_path / "named.csv", names, rows)
    expected = _predict(model, tmp_path / "named.csv", tmp_path, "p0.csv")
    # every line is a row (the first is not taken for a header), with or without the label
    _write_rows(tmp_path / "bare.csv", None, rows)
    assert _predict(model, tmp_path / "bare.csv", tmp_path, "p1.csv") == expected
    _write_rows(tmp_path / "bare_labelled.csv", None, [[*r, k] for r, k in zip(rows, y)])
    assert _predict(model, tmp_path / "bare_labelled.csv", tmp_path, "p2.csv") == expected


def test_predict_names_the_missing_columns(tmp_path, capsys):
    model, X, _, names = _tiny_model(tmp_path)
    # same count of columns, but "dose" is not among them
    header = ["age", "height", "score", "weight", "colour"]
    _write_rows(tmp_path / "wrong.csv", header, [[f"{v:g}" for v in r] for r in X])
    assert main(["predict", model, "--data", str(tmp_path / "wrong.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert "missing column 'dose'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.csv").exists()
    _write_rows(tmp_path / "two.csv", ["age", "height", "score"], [[1, 2, 3]])
    assert main(["predict", model, "--data", str(tmp_path / "two.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 1
    assert "missing columns 'dose', 'weight'" in capsys.readouterr().err


def test_a_model_trained_on_an_npz_takes_csv_columns_by_position(tmp_path):
    # An .npz has no column names (pynn train calls them x0, x1, ...): nothing to match.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--hidden", "4", "--epochs", "2",
                 "--out", str(out), "--verbose", "0"]) == 0
    model = str(out / "model.npz")
    assert pynn.load(model, return_metadata=True)[1]["features_named"] is False
    expected = _predict(model, tmp_path / "d.npz", tmp_path, "p0.csv")
    _write_rows(tmp_path / "named.csv", ["u", "v", "w"], [[f"{v:.17g}" for v in r] for r in X])
    assert _predict(model, tmp_path / "named.csv", tmp_path, "p1.csv") == expected
    # ...unless the header has all of those names: then they are matched
    _write_rows(tmp_path / "x.csv", ["x2", "x0", "x1"],
                [[f"{v:.17g}" for v in (r[2], r[0], r[1])] for r in X])
    assert _predict(model, tmp_path / "x.csv", tmp_path, "p2.csv") == expected


def _train_report(tmp_path, *extra):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--hidden", "16", "--epochs", "6",
                 "--patience", "100", "--out", str(out), "--verbose", "0", "--lr", "0.01",
                 *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_train_schedule_warmup_and_clipping(tmp_path):
    rep = _train_report(tmp_path, "--schedule", "cosine", "--warmup", "2",
                        "--clip-grad-norm", "1.0", "--class-weight", "balanced")
    # warm-up 0.1 -> 1 over 2 epochs, then a cosine from the full rate over the other 4
    expected = [0.001, 0.0055] + [0.005 * (1 + np.cos(np.pi * t / 4)) for t in range(4)]
    np.testing.assert_allclose(rep["history"]["lr"], expected, rtol=1e-12)
    recipe = rep["config"]["recipe"]
    assert "LinearLR warm-up over 2 epochs, then CosineAnnealingLR(T_max=4)" in recipe
    assert "clipped to norm 1.0" in recipe and "balanced class weights" in recipe
    assert rep["test_accuracy"] > 0.8


def test_train_onecycle(tmp_path):
    rep = _train_report(tmp_path, "--schedule", "onecycle")
    lrs = rep["history"]["lr"]
    assert lrs[0] == pytest.approx(0.01 / 25)  # OneCycleLR starts at max_lr / div_factor
    assert max(lrs) <= 0.01 and lrs[1] > lrs[0] and lrs[-1] < lrs[2]
    assert "OneCycleLR(max_lr=0.01, per batch)" in rep["config"]["recipe"]

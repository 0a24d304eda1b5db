"""Issue 21's blocks beyond the layers: the inference program runs LayerNorm, RMSNorm and
Residual blocks (bit for bit each layer's own ``infer``), the scikit-learn estimators take
activation="gelu"/"silu" and layer_norm=True (compiled, Dropout included), and the ResNet-MLP
recipe trains from ``pynn train --block resnet``."""
import copy
import json

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.nn.inference import InferencePlan
from pynn.train.recipe import build_resnet_mlp


def _nets(dtype):
    return {
        "resnet": build_resnet_mlp(12, [16, 24, 20], 5, dropout=0.2, seed=3),
        "norms-nested": nn.Sequential(
            nn.Dense(12, 16, seed=1, dtype=dtype), nn.BatchNorm(16, dtype=dtype), nn.ReLU(),
            nn.Residual(nn.RMSNorm(16, dtype=dtype), nn.Dense(16, 16, seed=2, dtype=dtype),
                        nn.Residual(nn.LayerNorm(16, bias=False, dtype=dtype)), nn.SiLU()),
            nn.Sequential(nn.RMSNorm(16, elementwise_affine=False, dtype=dtype),
                          nn.Dense(16, 5, seed=3, dtype=dtype))),
    }


@pytest.mark.parametrize("rows", [3, 2000], ids=["few", "many"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["resnet", "norms-nested"])
def test_predict_runs_the_blocks_in_its_program_bit_for_bit(name, dtype, rows):
    if name == "resnet" and dtype == np.float64:
        pytest.skip("the recipe builds float32")
    model = _nets(dtype)[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 12)).astype(model.dtype)
    model.train_step(rng.standard_normal((64, 12)).astype(model.dtype), np.arange(64) % 5,
                     nn.CrossEntropyLoss(),
                     pynn.optim.Adam(model.parameters(), lr=0.05))  # move off the init
    model.eval()
    plan = InferencePlan.build(model)
    assert plan is not None and plan.compiled  # one C call, the blocks included
    expected = nn.Module.predict(model, X, batch_size=256)  # each layer's own infer
    got = model.predict(X, batch_size=256)
    assert model._inference is not None and model._inference.holds()
    np.testing.assert_array_equal(plan.run(X, 256, fold=False), expected)
    np.testing.assert_array_equal(plan._run_layers(X, np.empty_like(got), 256), expected)
    if name == "norms-nested" and rows > 3:  # BatchNorm folded into its Dense: rounds apart
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(got, expected)


def test_the_kept_program_sees_the_norms_weights_and_rebuilds_for_a_new_eps():
    model = nn.Sequential(nn.Dense(6, 8, seed=1), nn.Residual(nn.LayerNorm(8), nn.Dense(8, 8)),
                          nn.RMSNorm(8), nn.Dense(8, 3, seed=2)).eval()
    X = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    model.predict(X)
    kept = model._inference
    model[1].block[0].weight.data[:] = 2.0  # a write in place: read by the next call
    np.testing.assert_array_equal(model.predict(X), nn.Module.predict(model, X))
    assert model._inference is kept
    model[2].eps = 1e-2  # a setting: the program is rebuilt
    np.testing.assert_array_equal(model.predict(X), nn.Module.predict(model, X))
    assert model._inference is not kept


def test_a_residual_changing_the_width_is_not_compiled_for_predict():
    model = nn.Sequential(nn.Dense(4, 4, seed=1), nn.Residual(nn.Dense(4, 3, seed=2)))
    assert InferencePlan.build(model) is None
    with pytest.raises(ValueError, match="same shape"):
        model.predict(np.ones((2, 4), np.float32))


def test_estimators_take_gelu_silu_and_layer_norm():
    pytest.importorskip("sklearn")
    from pynn.datasets import load_digits
    from pynn.sklearn import MLPClassifier, MLPRegressor

    X, y = load_digits()
    X = X[:400] / 16.0
    clf = MLPClassifier((32, 32), activation="gelu", layer_norm=True, dropout=0.1,
                        learning_rate_init=0.01, batch_size=50, max_iter=10,
                        random_state=0).fit(X, y[:400])
    kinds = [type(m).__name__ for m in clf.model_.layers]
    assert kinds == ["Dense", "LayerNorm", "GELU", "Dropout", "Dense", "LayerNorm", "GELU",
                     "Dropout", "Dense"]
    assert clf.score(X, y[:400]) > 0.8
    # the steps ran compiled: every model program built on the fit's batches
    assert any(entry[2] is not None for plan in clf.model_._compiled.values()
               for entry in plan.train_steps.values())
    reg = MLPRegressor(hidden_layer_sizes=(16,), activation="silu", layer_norm=True, max_iter=20,
                       random_state=0).fit(X, y[:400].astype(float))
    assert type(reg.model_.layers[1]).__name__ == "LayerNorm"
    with pytest.raises(ValueError, match="batch_norm and layer_norm"):
        MLPClassifier(batch_norm=True, layer_norm=True, max_iter=1).fit(X, y[:400])
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="swish", max_iter=1).fit(X, y[:400])


def test_the_resnet_recipe_and_its_arguments():
    model = build_resnet_mlp(10, [8, 16, 12], 3, dropout=0.1)
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["Dense", "Residual", "Residual", "LayerNorm", "ReLU", "Dense"]
    assert [type(m).__name__ for m in model[1].block] == ["LayerNorm", "Dense", "GELU",
                                                          "Dropout", "Dense"]
    assert model[2].block[1].out_features == 12
    twin = build_resnet_mlp(10, [8, 16, 12], 3, dropout=0.1)
    for pa, pb in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    with pytest.raises(ValueError, match="hidden"):
        build_resnet_mlp(10, [], 3)


def test_pynn_train_block_resnet(tmp_path):
    from pynn.cli import main

    out = tmp_path / "run"
    assert main(["train", "--block", "resnet", "--hidden", "64,128", "--epochs", "8",
                 "--dropout", "0.1", "--optimizer", "adamw", "--seed", "0", "--out", str(out),
                 "--verbose", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["block"] == "resnet"
    assert "LayerNorm" in report["config"]["recipe"]
    assert report["test_accuracy"] > 0.9
    model = pynn.load(out / "model.npz")
    assert any(type(m).__name__ == "Residual" for m in model.layers)
    copy.deepcopy(model)  # (a loaded ResNet copies like any model)

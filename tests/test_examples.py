"""The lecture's examples (examples/NN_*.py): each claim asserted on the quick, small sizes.

Each script is loaded by path and its ``run(out_dir, quick=True)`` called; it must write its
picture and return the numbers the claim rests on.
"""
import importlib.util
import math
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name, tmp_path):
    pytest.importorskip("matplotlib")  # every example draws its picture
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run(tmp_path, quick=True)
    picture = tmp_path / f"{name}.png"
    assert picture.stat().st_size > 10_000, f"{name} did not draw its picture"
    return result


def test_01_perceptron_is_logistic_regression_and_xor_needs_a_hidden_layer(tmp_path):
    r = run_example("01_perceptron", tmp_path)
    np.testing.assert_allclose(r["theta_pynn"], r["theta_irls"], atol=1e-5)
    if r["theta_sklearn"] is not None:
        np.testing.assert_allclose(r["theta_pynn"], r["theta_sklearn"], atol=1e-5)
    # the best linear unit on XOR is w = 0, b = 0: loss log 2, no point on the right side
    assert r["xor_linear_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert r["xor_linear_accuracy"] <= 0.75
    assert r["xor_hidden_accuracy"] == 1.0
    assert r["xor_hidden_loss"] < 1e-2


def test_02_boolean_functions_in_two_layers(tmp_path):
    r = run_example("02_boolean", tmp_path)
    assert r["checked"] > 0 and r["mismatches"] == 0
    assert r["shown_mismatches"] == {"dnf": 0, "cnf": 0}
    sizes = r["sizes"]
    assert r["width"]["parity"] == [2 ** (n - 1) for n in sizes]
    assert r["width"]["AND (dnf)"] == [1] * len(sizes)
    assert r["width"]["AND (cnf)"] == [2**n - 1 for n in sizes]


def test_03_polytopes_and_unions_exact_off_the_boundaries(tmp_path):
    r = run_example("03_polytopes", tmp_path)
    for name, layers in (("polytope", 2), ("union", 3)):
        assert r[name]["layers"] == layers
        assert 0 < r[name]["inside"] < r[name]["points"]
        assert r[name]["mismatches"] == 0


def test_04_square_layers_compute_polynomials_of_degree_2_to_the_L(tmp_path):
    r = run_example("04_square", tmp_path)
    for L, degree in r["exact_degree"].items():
        assert degree == 2**L
        assert r["residuals"][L][2**L] < 1e-9
        assert r["residuals"][L][2**L - 1] > 1e-6
    assert r["product_max_error"] < 1e-10


def test_05_backprop_on_the_lecture_graph(tmp_path):
    r = run_example("05_backprop", tmp_path)
    assert r["values"] == {"a": 2.0, "b": 1.0, "c": 3.0, "d": 2.0, "e": 6.0}
    assert r["grads"] == {"a": 2.0, "b": 5.0, "c": 2.0, "d": 3.0, "e": 1.0}
    np.testing.assert_allclose(r["numeric"], [2.0, 5.0], rtol=1e-8)
    assert r["pynn_values"]["e"] == pytest.approx(6.0, abs=1e-12)
    for key in "abcd":
        assert r["pynn_grads"][key] == pytest.approx(r["grads"][key], abs=1e-12)
    assert r["gradcheck"] is True
    assert r["wrong_caught"] is not None and "gradcheck failed" in r["wrong_caught"]


def test_06_sigmoid_gradients_vanish(tmp_path):
    r = run_example("06_vanishing", tmp_path)
    norms = r["norms"]
    assert r["sigmoid_over_relu"] < 1e-3  # orders of magnitude
    sigmoid = norms["sigmoid"]
    assert sigmoid[0] < 1e-3 * sigmoid[-2]  # first hidden layer vs last
    for name in ("relu", "leaky relu", "elu", "tanh"):
        assert norms[name][0] > 0.05 * norms[name][-2], name


def test_07_initialization_explodes_collapses_or_keeps_the_variance(tmp_path):
    r = run_example("07_init", tmp_path)
    relu = r["relu"]
    assert relu["a = 1 (large)"][-1] / relu["a = 1 (large)"][0] > 1e12
    assert relu["a = 0.01 (small)"][-1] / relu["a = 0.01 (small)"][0] < 1e-12
    assert relu["Xavier"][-1] / relu["Xavier"][0] < 0.05  # halved at every layer
    assert 0.5 < relu["He"][-1] / relu["He"][0] < 2.0
    tanh = r["tanh"]
    assert tanh["a = 1 (large)"][-1] > 0.9  # saturated at +-1
    assert tanh["a = 0.01 (small)"][-1] < 1e-10


def test_08_batchnorm_makes_every_init_train(tmp_path):
    r = run_example("08_batchnorm", tmp_path)
    final, curves = r["final"], r["curves"]
    assert final["plain, W = 0.01 N(0,1)"] < 0.2
    assert final["plain, W = 0.5 N(0,1)"] < 0.2
    assert final["plain, He"] > 0.8
    for key in ("BatchNorm, W = 0.01 N(0,1)", "BatchNorm, He", "BatchNorm, W = 0.5 N(0,1)"):
        assert final[key] > 0.8, key
    assert curves["BatchNorm, He"][0] > curves["plain, He"][0] + 0.05  # ahead after epoch 1
    assert r["spread"]["BatchNorm"] < 0.1 < r["spread"]["plain"]


def test_09_regularizers_narrow_the_gap_and_l1_is_sparse(tmp_path):
    r = run_example("09_regularization", tmp_path)
    gap, acc = r["gap"], r["test_accuracy"]
    for name in ("L2", "L1", "dropout", "early stopping", "augmentation"):
        assert gap[name] < gap["none"], name
    assert r["epochs_run"]["early stopping"] < r["epochs_run"]["none"]
    assert acc["early stopping"] > acc["none"]
    assert max(acc.values()) > acc["none"] + 0.02
    assert r["sparsity"]["L1"] > 0.2
    assert r["sparsity"]["L1"] > 2 * r["sparsity"]["L2"] > 2 * r["sparsity"]["none"]


def test_10_optimizers(tmp_path):
    r = run_example("10_optimizers", tmp_path)
    escape, distance = r["escape_steps"], r["valley_distance"]
    assert escape["momentum"] < escape["SGD"]
    for name in ("Adagrad", "RMSprop", "Adam"):
        assert escape[name] < escape["momentum"], name
    assert distance["momentum"] < 0.1 * distance["SGD"]
    assert distance["Nesterov"] < 0.1 * distance["SGD"]
    final, first = r["digits_final_loss"], r["digits_first_loss"]
    for name in final:
        assert final[name] < first[name], name
    for name in ("momentum", "Nesterov", "Adam"):
        assert final[name] < final["SGD"], name


def test_11_learning_rates_and_schedules(tmp_path):
    r = run_example("11_learning_rate", tmp_path)
    low, good, high = (r["rates"][k]["loss"] for k in
                       ("too low (1e-4)", "good (0.1)", "too high (2.0)"))
    assert low[-1] > 0.9 * low[0]  # barely moved
    assert good[-1] < 0.2 * good[0]
    assert max(high) > 1e3 * good[0] and high[-1] > 10 * good[-1]
    settled = r["settled"]
    constant = settled["constant 0.5"]
    for name in ("StepLR(5, 0.5)", "ExponentialLR(0.85)", "ReduceLROnPlateau(0.5, 2)"):
        assert settled[name] < constant, name
    schedules = r["schedules"]
    np.testing.assert_allclose(schedules["StepLR(5, 0.5)"]["lr"][:10], [0.5] * 5 + [0.25] * 5)
    lr = schedules["ExponentialLR(0.85)"]["lr"]
    np.testing.assert_allclose(lr, 0.5 * 0.85 ** np.arange(len(lr)))
    plateau = np.array(schedules["ReduceLROnPlateau(0.5, 2)"]["lr"])
    assert np.all(np.diff(plateau) <= 0)
    np.testing.assert_allclose(np.log2(plateau / 0.5), np.round(np.log2(plateau / 0.5)))


def test_13_recipe_on_mnist_5k(tmp_path):
    r = run_example("13_recipe", tmp_path)
    assert r["chosen"] in r["tuning"]
    assert r["tuning"][r["chosen"]] == max(r["tuning"].values())
    # the quick run trains 4 epochs (the full one reaches >= 95%; see examples/README.md)
    assert r["test_accuracy"] > 0.93


def test_14_blocks_residual_layernorm_trains_compiled(tmp_path):
    r = run_example("14_blocks", tmp_path)
    best = r["best"]
    assert all(acc > 0.85 for acc in best.values()), best
    # the residual network keeps up with the BatchNorm one (quick run: 3 epochs)
    assert best["residual + LayerNorm"] >= best["BatchNorm"] - 0.03, best
    # every step compiled, Dropout and the residual blocks included
    assert all(r["ops"].values()), r["ops"]
    block = ["res_begin", "rownorm", "dense", "dropout", "dense", "res_end"]
    assert r["ops"]["residual + LayerNorm"] == ["dense"] + block * 3 + ["rownorm", "act", "dense"]


def test_15_tfidf_sparse_inputs_train_as_their_dense_copy(tmp_path):
    pytest.importorskip("sklearn")
    r = run_example("15_tfidf", tmp_path)
    assert r["density"] < 0.02 and r["n_features"] > 1000
    # the CSR fit is the dense fit: float64 round-off apart
    assert r["weight_gap"] < 1e-10
    assert r["dense_bytes"] > 20 * r["csr_bytes"]
    for name, accuracy in r["accuracy"].items():
        assert accuracy > 0.9, name

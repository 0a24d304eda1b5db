"""pynn.theory: the lecture's hand-built networks compute their functions exactly."""
import itertools

import numpy as np
import pytest

import pynn
from pynn import nn
from pynn.theory import (boolean_network, polytope_network, product_network,
                         truth_table_inputs, union_network)


def test_truth_table_inputs_follow_itertools_product():
    for n in (1, 3, 5):
        expected = np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float32)
        np.testing.assert_array_equal(truth_table_inputs(n), expected)
    assert truth_table_inputs(2, np.float64).dtype == np.float64


@pytest.mark.parametrize("form", ["dnf", "cnf"])
@pytest.mark.parametrize("n", range(1, 11))
def test_boolean_network_exact_for_random_functions(n, form):
    rng = np.random.default_rng(n)
    X = truth_table_inputs(n)
    for _ in range(3):
        table = rng.integers(0, 2, 2**n)
        model = boolean_network(table, form=form)
        out = model.forward(X)
        assert out.shape == (2**n, 1)
        np.testing.assert_array_equal(out[:, 0], table)
        # predict (the inference program) agrees with the training-mode forward
        np.testing.assert_array_equal(model.predict(X)[:, 0], table)


@pytest.mark.parametrize("form", ["dnf", "cnf"])
def test_boolean_network_structure_and_known_functions(form):
    X = truth_table_inputs(3, np.float64)
    parity = X.sum(axis=1).astype(int) % 2
    majority = (X.sum(axis=1) >= 2).astype(int)
    for table in (parity, majority, np.zeros(8, int), np.ones(8, int), [True] * 4 + [False] * 4):
        model = boolean_network(table, form=form, dtype=np.float64)
        np.testing.assert_array_equal(model.forward(X)[:, 0], np.asarray(table, int))
        kinds = [type(m) for m in model.layers]
        assert kinds == [nn.Dense, nn.Step, nn.Dense, nn.Step]
    # dnf has one hidden unit per 1 of the table, cnf one per 0
    for table in ([1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 1, 1, 1]):
        ones = int(np.sum(table))
        hidden = boolean_network(table, form=form).layers[0].out_features
        assert hidden == (ones if form == "dnf" else 8 - ones)


@pytest.mark.parametrize("table, message", [
    ([0, 1, 1], "length 2\\*\\*n"),
    ([1], "length 2\\*\\*n"),
    ([], "length 2\\*\\*n"),
    ([0, 2, 1, 0], "only 0 and 1"),
    ([0.5, 1], "only 0 and 1"),
    (["a", "b"], "only 0 and 1"),
    ([[0, 1], [1, 0]], "1-D"),
])
def test_boolean_network_bad_table(table, message):
    with pytest.raises(ValueError, match=message):
        boolean_network(table)


def test_boolean_network_bad_form_and_dtype():
    with pytest.raises(ValueError, match="form"):
        boolean_network([0, 1], form="anf")
    with pytest.raises(TypeError, match="dtype"):
        boolean_network([0, 1], dtype=np.int32)
    with pytest.raises(ValueError, match="n must be"):
        truth_table_inputs(0)


def _random_polytope(rng, d, m):
    """m half-spaces a . x <= b around a random centre, so the polytope is not empty."""
    A = rng.standard_normal((m, d))
    centre = rng.uniform(-0.5, 0.5, d)
    b = A @ centre + rng.uniform(0.3, 1.0, m)
    return A, b


def _off_boundary(A_list, b_list, X, margin=1e-3):
    keep = np.ones(len(X), bool)
    for A, b in zip(A_list, b_list):
        slack = np.abs(X @ A.T - b) / np.linalg.norm(A, axis=1)
        keep &= (slack > margin).all(axis=1)
    return keep


@pytest.mark.parametrize("d, m", [(1, 2), (2, 3), (2, 7), (3, 5), (5, 12)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_polytope_network_exact_off_the_boundary(d, m, dtype):
    rng = np.random.default_rng(10 * d + m)
    A, b = _random_polytope(rng, d, m)
    X = rng.uniform(-2, 2, (4000, d))
    X = X[_off_boundary([A], [b], X)]
    inside = (X @ A.T <= b).all(axis=1)
    assert 0 < inside.sum() < len(X)  # both kinds of points are tested
    out = polytope_network(A, b, dtype=dtype).forward(X.astype(dtype))
    np.testing.assert_array_equal(out[:, 0], inside)


def test_polytope_network_boundary_counts_as_inside():
    # the unit square [0, 1]^2: its corners and edges are in {x : A x <= b}
    A = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    b = np.array([1.0, 0, 1, 0])
    X = np.array([[0, 0], [1, 1], [0.5, 0], [1, 0.3], [1.5, 0.5], [-0.1, 0.5]])
    out = polytope_network(A, b, dtype=np.float64).forward(X)
    np.testing.assert_array_equal(out[:, 0], [1, 1, 1, 1, 0, 0])


@pytest.mark.parametrize("d, k", [(1, 3), (2, 1), (2, 4), (3, 3)])
def test_union_network_exact_off_the_boundaries(d, k):
    rng = np.random.default_rng(100 + 10 * d + k)
    polys = [_random_polytope(rng, d, int(rng.integers(d + 1, d + 6))) for _ in range(k)]
    X = rng.uniform(-2, 2, (5000, d))
    X = X[_off_boundary([A for A, _ in polys], [b for _, b in polys], X)]
    inside = np.zeros(len(X), bool)
    for A, b in polys:
        inside |= (X @ A.T <= b).all(axis=1)
    assert 0 < inside.sum() < len(X)
    model = union_network(polys, dtype=np.float64)
    assert [type(m) for m in model.layers] == [nn.Dense, nn.Step] * 3
    np.testing.assert_array_equal(model.forward(X)[:, 0], inside)


@pytest.mark.parametrize("call, message", [
    (lambda: polytope_network(np.ones(3), np.ones(3)), "A must be 2-D"),
    (lambda: polytope_network(np.ones((3, 2)), np.ones(2)), r"b must have shape \(3,\)"),
    (lambda: polytope_network(np.ones((3, 2)), np.ones((3, 1))), r"b must have shape \(3,\)"),
    (lambda: polytope_network(np.ones((0, 2)), np.ones(0)), "at least one row"),
    (lambda: polytope_network([[1.0, np.nan]], [1.0]), "A contains NaN"),
    (lambda: polytope_network([["x"]], [1.0]), "A must be numeric"),
    (lambda: union_network([]), "non-empty list"),
    (lambda: union_network([(np.ones((2, 2)),)]), r"polytopes\[0\] must be a pair"),
    (lambda: union_network([(np.ones((2, 2)), np.ones(2)), (np.ones((2, 3)), np.ones(2))]),
     r"polytopes\[1\] A must have 2 columns"),
    (lambda: union_network([(np.ones((2, 2)), np.ones(3))]), r"polytopes\[0\] b must have shape"),
])
def test_polytope_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_product_network_multiplies_exactly():
    rng = np.random.default_rng(0)
    X = rng.uniform(-10, 10, (1000, 2))
    model = product_network()
    np.testing.assert_allclose(model.forward(X)[:, 0], X[:, 0] * X[:, 1], rtol=1e-12, atol=1e-12)
    assert [type(m) for m in model.layers] == [nn.Dense, nn.Square, nn.Dense]
    # its backward is the product rule: d(xy)/dx = y, d(xy)/dy = x
    dX = model.backward(np.ones((1000, 1)))
    np.testing.assert_allclose(dX, X[:, ::-1], rtol=1e-12, atol=1e-12)
    assert pynn.gradcheck(product_network(), X[:5])


def test_theory_is_exported():
    assert pynn.theory.boolean_network is boolean_network

"""The lecture's constructions: networks whose weights are written down, not trained.

Each function returns a ``pynn.nn.Sequential`` of Dense and Step (or Square) layers that computes
its function exactly, so the lecture's expressiveness claims can be run and checked:

- ``boolean_network(table, form)``: any Boolean function of n inputs in two layers, as a
  disjunction of minterms ("dnf") or a conjunction of clauses ("cnf").
- ``polytope_network(A, b)``: the indicator of the convex polytope {x : A x <= b} in two layers.
- ``union_network([(A1, b1), ...])``: the indicator of a union of polytopes in three layers.
- ``product_network()``: x * y with one hidden layer of squares.

``Step(v)`` is 1 for v > 0 and 0 otherwise. Every weight and bias below is a small integer or a
half-integer, exact in float32, so the outputs are exact wherever the inputs are.
"""
import itertools

import numpy as np

from .data import as_array
from .nn import Dense, Sequential, Square, Step
from .nn._layer_checks import check_dtype_arg

FORMS = ("dnf", "cnf")


def truth_table_inputs(n, dtype=np.float32):
    """The (2**n, n) matrix of every 0/1 input, row i = ``itertools.product([0, 1], repeat=n)[i]``.

    Row i is the binary expansion of i with the first input as the most significant bit.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return np.array(list(itertools.product([0, 1], repeat=int(n))), dtype=check_dtype_arg(dtype))


def _check_table(table):
    """``table`` as a 1-D int array of 0/1 of length 2**n (n >= 1); returns (table, n)."""
    try:
        arr = np.asarray(table)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"table must be a 0/1 array, could not convert it: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"table must be 1-D (one value per input row), got shape {arr.shape}")
    size = arr.shape[0]
    if size < 2 or size & (size - 1):
        raise ValueError(f"table must have length 2**n with n >= 1 (2, 4, 8, ...), got {size}")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise ValueError("table must hold only 0 and 1 (or False and True)")
    return arr.astype(np.int64), size.bit_length() - 1


def _two_step_layers(n_in, W1, b1, W2, b2, dtype):
    model = Sequential(Dense(n_in, W1.shape[0], dtype=dtype), Step(),
                       Dense(W1.shape[0], W2.shape[0], dtype=dtype), Step())
    _set(model, [(W1, b1), (W2, b2)])
    return model


def _set(model, weights):
    dense = [m for m in model.layers if isinstance(m, Dense)]
    for layer, (W, b) in zip(dense, weights):
        layer.weight.data[...] = W
        layer.bias.data[...] = b


def _match_units(patterns):
    """Weights and biases of units that fire exactly on their 0/1 pattern.

    For a pattern p with k ones, w = 2p - 1 gives w . x = (ones of x where p has them) - (ones
    of x where p has none) <= k, with equality only at x = p; so w . x - k + 1/2 > 0 iff x = p.
    """
    W = 2.0 * patterns - 1.0
    return W, 0.5 - patterns.sum(axis=1)


def boolean_network(table, form="dnf", dtype=np.float32):
    """A two-layer Step network computing the Boolean function given by its truth table.

    Parameters
    ----------
    table : array-like of 0/1, length 2**n
        Entry i is the function's value at ``itertools.product([0, 1], repeat=n)[i]`` (the
        rows of ``truth_table_inputs(n)``).
    form : "dnf" or "cnf"
        "dnf": one hidden unit per input where the function is 1 (its minterm fires only
        there), the output an OR of them. "cnf": one hidden unit per input where the function
        is 0 (its clause is false only there), the output an AND of them. A constant function
        gets one hidden unit that never (dnf) or always (cnf) fires.
    dtype : float32 (default) or float64

    Returns
    -------
    Sequential(Dense(n, m), Step(), Dense(m, 1), Step()) whose ``forward(truth_table_inputs(n))``
    is ``table`` as a (2**n, 1) array.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    table, n = _check_table(table)
    dtype = check_dtype_arg(dtype)
    inputs = truth_table_inputs(n, np.float64)
    if form == "dnf":
        W1, b1 = _match_units(inputs[table == 1])
        if W1.shape[0] == 0:  # the constant 0: a unit that never fires
            W1, b1 = np.zeros((1, n)), np.array([-0.5])
        W2 = np.ones((1, W1.shape[0]))
        b2 = np.array([-0.5])  # OR: at least one unit fired
    else:
        W1, b1 = _match_units(inputs[table == 0])
        W1, b1 = -W1, -b1  # a clause: 1 everywhere except at its pattern
        if W1.shape[0] == 0:  # the constant 1: a unit that always fires
            W1, b1 = np.zeros((1, n)), np.array([0.5])
        W2 = np.ones((1, W1.shape[0]))
        b2 = np.array([0.5 - W1.shape[0]])  # AND: every unit fired
    return _two_step_layers(n, W1, b1, W2, b2, dtype)


def _check_polytope(A, b, name="A", bname="b", dims=None):
    A = as_array(name, A, np.float64, ndim=2)
    if A.shape[0] < 1 or A.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {A.shape}")
    if dims is not None and A.shape[1] != dims:
        raise ValueError(f"{name} must have {dims} columns like the first polytope's, got "
                         f"shape {A.shape}")
    b = as_array(bname, b, np.float64)
    if b.shape != (A.shape[0],):
        raise ValueError(f"{bname} must have shape ({A.shape[0]},), one bound per row of {name}, "
                         f"got {b.shape}")
    return A, b


def polytope_network(A, b, dtype=np.float32):
    """A two-layer Step network that outputs 1 exactly on the polytope {x : A x <= b}.

    Hidden unit i is ``Step(A_i x - b_i)``, 1 where constraint i is violated; the output is
    ``Step(1/2 - sum of violations)``, 1 where none is. Points on a boundary count as inside,
    up to the rounding of ``A x`` in ``dtype``.

    Parameters
    ----------
    A : array-like (m, d)
    b : array-like (m,)
    dtype : float32 (default) or float64

    Returns
    -------
    Sequential(Dense(d, m), Step(), Dense(m, 1), Step())
    """
    A, b = _check_polytope(A, b)
    m, d = A.shape
    return _two_step_layers(d, A, -b, -np.ones((1, m)), np.array([0.5]), check_dtype_arg(dtype))


def union_network(polytopes, dtype=np.float32):
    """A three-layer Step network that outputs 1 exactly on a union of polytopes.

    Layer 1 has one violation unit per constraint of every polytope, layer 2 one unit per
    polytope (1 where none of its constraints is violated, as in ``polytope_network``), and the
    output is their OR.

    Parameters
    ----------
    polytopes : non-empty sequence of (A, b) pairs, each as in ``polytope_network``, all with
        the same number of columns d
    dtype : float32 (default) or float64

    Returns
    -------
    Sequential(Dense(d, sum m_k), Step(), Dense(sum m_k, K), Step(), Dense(K, 1), Step())
    """
    if isinstance(polytopes, np.ndarray) or not hasattr(polytopes, "__len__") \
            or len(polytopes) == 0:
        raise ValueError("polytopes must be a non-empty list of (A, b) pairs")
    checked, dims = [], None
    for k, pair in enumerate(polytopes):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"polytopes[{k}] must be a pair (A, b)")
        A, b = _check_polytope(*pair, name=f"polytopes[{k}] A", bname=f"polytopes[{k}] b",
                               dims=dims)
        dims = A.shape[1]
        checked.append((A, b))
    A_all = np.vstack([A for A, _ in checked])
    b_all = np.concatenate([b for _, b in checked])
    K, total = len(checked), A_all.shape[0]
    W2 = np.zeros((K, total))
    start = 0
    for k, (A, _) in enumerate(checked):
        W2[k, start:start + A.shape[0]] = -1.0  # polytope k: none of its own constraints violated
        start += A.shape[0]
    dtype = check_dtype_arg(dtype)
    model = Sequential(Dense(dims, total, dtype=dtype), Step(), Dense(total, K, dtype=dtype),
                       Step(), Dense(K, 1, dtype=dtype), Step())
    _set(model, [(A_all, -b_all), (W2, np.full(K, 0.5)), (np.ones((1, K)), np.array([-0.5]))])
    return model


def product_network(dtype=np.float64):
    """x * y with one hidden layer of squares: ``((x + y)**2 - (x - y)**2) / 4``.

    Returns
    -------
    Sequential(Dense(2, 2), Square(), Dense(2, 1)) mapping rows (x, y) to x * y.
    """
    dtype = check_dtype_arg(dtype)
    model = Sequential(Dense(2, 2, dtype=dtype), Square(), Dense(2, 1, dtype=dtype))
    _set(model, [(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2)),
                 (np.array([[0.25, -0.25]]), np.zeros(1))])
    return model


__all__ = ["boolean_network", "polytope_network", "product_network", "truth_table_inputs",
           "union_network"]

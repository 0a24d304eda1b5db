"""Topic 5. Backpropagation is the chain rule on a graph.

The lecture's graph e = (a + b) * (b + 1) at a = 2, b = 1, with c = a + b and d = b + 1:

forward:   c = 3, d = 2, e = c * d = 6
backward:  de/de = 1; de/dc = d = 2, de/dd = c = 3;
           de/da = de/dc * dc/da = 2;  de/db = de/dc * dc/db + de/dd * dd/db = 2 + 3 = 5
           (b reaches e along two paths, and the chain rule adds them).

Checked three ways: by hand (the chain rule, written out below), by central finite
differences, and by pynn's own kernels on the same numbers: a Dense layer computes (c, d) and
``pynn.theory.product_network`` (Dense, Square, Dense) computes c * d, and their ``backward``
returns de/da and de/db. Finally ``pynn.gradcheck`` checks a whole small network's backward
against finite differences, and catches a layer whose derivative is wrong.
"""
import argparse
import pathlib

import numpy as np

import pynn
from pynn import nn
from pynn.nn._gradcheck import central_differences
from pynn.theory import product_network


def by_hand(a, b):
    """Forward values and backward gradients of every node, by the chain rule."""
    c = a + b
    d = b + 1
    e = c * d
    de = 1.0
    dc = de * d  # e = c * d
    dd = de * c
    da = dc * 1.0  # c = a + b
    db = dc * 1.0 + dd * 1.0  # b feeds c and d: the two paths add
    return {"a": a, "b": b, "c": c, "d": d, "e": e}, {"a": da, "b": db, "c": dc, "d": dd, "e": de}


def by_pynn(a, b):
    """The same graph as pynn layers: Dense for (c, d), the product network for c * d."""
    sums = nn.Dense(2, 2, dtype=np.float64)
    sums.weight.data[...] = [[1.0, 1.0], [0.0, 1.0]]  # c = a + b, d = b
    sums.bias.data[...] = [0.0, 1.0]  # ... + 1
    product = product_network()
    cd = sums.forward(np.array([[a, b]]))
    e = product.forward(cd)
    d_cd = product.backward(np.ones((1, 1)))
    d_ab = sums.backward(d_cd)
    return {"c": cd[0, 0], "d": cd[0, 1], "e": e[0, 0]}, {
        "a": d_ab[0, 0], "b": d_ab[0, 1], "c": d_cd[0, 0], "d": d_cd[0, 1]}


class WrongTanh(nn.Tanh):
    """tanh with a wrong derivative (1 - y instead of 1 - y**2), for gradcheck to catch."""

    def backward(self, dY, input_grad=True):
        return dY * (1 - self._Y)


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a, b = 2.0, 1.0
    values, grads = by_hand(a, b)
    point = np.array([a, b])
    numeric = central_differences(lambda: (point[0] + point[1]) * (point[1] + 1), point, 1e-6)
    pynn_values, pynn_grads = by_pynn(a, b)

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4))
    network = nn.Sequential(nn.Dense(4, 5, dtype=np.float64, seed=0), nn.Tanh(),
                            nn.Dense(5, 5, dtype=np.float64, seed=1),
                            nn.BatchNorm(5, dtype=np.float64),
                            nn.ReLU(), nn.Dense(5, 3, dtype=np.float64, seed=2))
    network_ok = pynn.gradcheck(network, X)
    wrong = nn.Sequential(nn.Dense(4, 5, dtype=np.float64, seed=0), WrongTanh(),
                          nn.Dense(5, 3, dtype=np.float64, seed=1))
    try:
        pynn.gradcheck(wrong, X)
        caught = None
    except pynn.GradcheckError as exc:
        caught = str(exc)

    print(f"forward:  c = {values['c']:g}, d = {values['d']:g}, e = {values['e']:g}")
    print(f"chain rule:          de/da = {grads['a']:g}, de/db = {grads['b']:g}")
    print(f"finite differences:  de/da = {numeric[0]:.8f}, de/db = {numeric[1]:.8f}")
    print(f"pynn's kernels:      e = {pynn_values['e']:g}, de/da = {pynn_grads['a']:g}, "
          f"de/db = {pynn_grads['b']:g} (de/dc = {pynn_grads['c']:g}, de/dd = {pynn_grads['d']:g})")
    print(f"pynn.gradcheck on Dense-Tanh-Dense-BatchNorm-ReLU-Dense: {network_ok}")
    print(f"pynn.gradcheck on a tanh with a wrong derivative: {caught}")
    print("=> backprop is the chain rule, and the kernels compute exactly it.")

    _plot(out_dir / "05_backprop.png", values, grads, numeric, pynn_grads)
    return {"values": values, "grads": grads, "numeric": numeric, "pynn_values": pynn_values,
            "pynn_grads": pynn_grads, "gradcheck": network_ok, "wrong_caught": caught}


def _plot(path, values, grads, numeric, pynn_grads):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.set_xlim(-0.3, 3.3)
    ax.set_ylim(-0.5, 2.6)
    where = {"a": (0, 2), "b": (0, 0.5), "c": (1.5, 2), "d": (1.5, 0.5), "e": (3, 1.25)}
    labels = {"a": "a", "b": "b", "c": "c = a + b", "d": "d = b + 1", "e": "e = c * d"}
    edges = [("a", "c", "dc/da = 1"), ("b", "c", "dc/db = 1"), ("b", "d", "dd/db = 1"),
             ("c", "e", "de/dc = d = 2"), ("d", "e", "de/dd = c = 3")]
    for start, end, local in edges:
        (x0, y0), (x1, y1) = where[start], where[end]
        ax.annotate("", xy=(x1 - 0.25, y1 + 0.08 * np.sign(y0 - y1)), xytext=(x0 + 0.25, y0),
                    arrowprops={"arrowstyle": "->", "color": "0.4", "lw": 1.5})
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, local, ha="center", fontsize=9,
                color="C3", rotation=np.degrees(np.arctan2(y1 - y0, x1 - x0)) * 0.6)
    for node, (x, y) in where.items():
        ax.text(x, y, f"{labels[node]}\nvalue {values[node]:g}\ngrad {grads[node]:g}",
                ha="center", va="center", fontsize=10,
                bbox={"boxstyle": "round", "fc": "#e8f0fb", "ec": "C0"})
    ax.text(1.5, -0.35,
            f"de/da, de/db: chain rule {grads['a']:g}, {grads['b']:g}   |   finite differences "
            f"{numeric[0]:.6f}, {numeric[1]:.6f}   |   pynn kernels {pynn_grads['a']:g}, "
            f"{pynn_grads['b']:g}", ha="center", fontsize=9)
    ax.set_title("e = (a + b)(b + 1) at a = 2, b = 1: values forward, gradients backward "
                 "(red: local derivatives)")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

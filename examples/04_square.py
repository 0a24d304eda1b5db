"""Topic 4. The square activation phi(v) = v**2 computes polynomials.

The lecture's question: *what can a network with the activation phi(v) = v**2 compute, and is
it a universal approximator?*

Answer. Each Dense layer is affine and each Square layer doubles the degree, so a network with
L Square layers computes a polynomial of degree (at most) 2**L in its inputs, whatever its
width. With the depth fixed, these networks therefore span a finite-dimensional space of
polynomials and are *not* universal approximators: no width lets a one-square-layer network
approximate x**3 or |x| on [-1, 1] better than the best quadratic does. Squares do multiply,
though, exactly: x * y = ((x + y)**2 - (x - y)**2) / 4 is one hidden layer of two Square units
(``pynn.theory.product_network``), so with enough depth every polynomial can be built, and
polynomials are dense in the continuous functions on a compact set (Weierstrass): universality
returns only as the depth grows with the accuracy wanted.

Shown below: random Square networks with L = 1..4 are fitted exactly by a polynomial of degree
2**L and by none of degree 2**L - 1, and the product network multiplies to rounding error.
"""
import argparse
import pathlib

import numpy as np

from pynn import nn
from pynn.theory import product_network


def square_network(depth, width=3, seed=0):
    """x -> Dense -> Square -> ... (depth Square layers) -> Dense -> y, random weights."""
    rng = np.random.default_rng(seed)
    layers, fan_in = [], 1
    for _ in range(depth):
        layers += [nn.Dense(fan_in, width, dtype=np.float64, seed=rng), nn.Square()]
        fan_in = width
    layers.append(nn.Dense(fan_in, 1, dtype=np.float64, seed=rng))
    model = nn.Sequential(*layers)
    for layer in model.layers:  # random biases too, so every coefficient of the polynomial is used
        if isinstance(layer, nn.Dense):
            layer.bias.data[...] = rng.uniform(-0.5, 0.5, layer.bias.shape)
    return model


def fit_residual(x, y, degree):
    """Relative RMS residual of the least-squares polynomial of ``degree`` (Chebyshev basis)."""
    fit = np.polynomial.Chebyshev.fit(x, y, degree)
    return float(np.sqrt(np.mean((fit(x) - y) ** 2)) / np.sqrt(np.mean(y**2)))


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    depths = [1, 2, 3] if quick else [1, 2, 3, 4]
    x = np.linspace(-1, 1, 400)
    curves, residuals, exact_degree = {}, {}, {}
    for L in depths:
        y = square_network(L, seed=L).predict(x[:, None])[:, 0]
        curves[L] = y
        residuals[L] = [fit_residual(x, y, d) for d in range(0, 2**L + 3)]
        # the smallest degree whose polynomial fits the network to rounding error
        exact_degree[L] = next(d for d, r in enumerate(residuals[L]) if r < 1e-9)

    rng = np.random.default_rng(0)
    XY = rng.uniform(-10, 10, (1000 if quick else 100_000, 2))
    product = product_network().predict(XY)[:, 0]
    product_error = float(np.abs(product - XY[:, 0] * XY[:, 1]).max())

    for L in depths:
        print(f"{L} Square layer(s): the network is a polynomial of degree {exact_degree[L]} "
              f"(residual of the degree-{2**L} fit {residuals[L][2**L]:.1e}, of the "
              f"degree-{2**L - 1} fit {residuals[L][2**L - 1]:.1e})")
    print(f"x * y by ((x + y)^2 - (x - y)^2) / 4, one hidden layer of 2 Square units: "
          f"max error {product_error:.1e} on {len(XY)} points in [-10, 10]^2")
    print("=> L square layers compute polynomials of degree 2**L: not universal at fixed depth.")

    _plot(out_dir / "04_square.png", x, curves, residuals)
    return {"exact_degree": exact_degree, "residuals": residuals,
            "product_max_error": product_error}


def _plot(path, x, curves, residuals):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 3, 1)
    for L, y in curves.items():
        ax.plot(x, y / np.abs(y).max(), label=f"L = {L}")
    ax.set_title("random networks with L Square layers\n(output scaled to max 1)")
    ax.set_xlabel("x")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 3, 2)
    for L, r in residuals.items():
        ax.semilogy(range(len(r)), np.maximum(r, 1e-17), marker="o", ms=3, label=f"L = {L}")
        ax.axvline(2**L, color=ax.lines[-1].get_color(), ls=":", lw=1)
    ax.set_xlabel("degree of the fitted polynomial")
    ax.set_ylabel("relative residual")
    ax.set_title("exact fit from degree 2**L on (dotted lines)")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 3, 3)
    grid = np.linspace(-3, 3, 121)
    G = np.array(np.meshgrid(grid, grid)).reshape(2, -1).T
    Z = product_network().predict(G)[:, 0].reshape(grid.size, grid.size)
    image = ax.contourf(grid, grid, Z, levels=21, cmap="RdBu_r")
    ax.contour(grid, grid, Z, levels=[-4, -2, -1, 0, 1, 2, 4], colors="k", linewidths=0.6)
    fig.colorbar(image, ax=ax)
    ax.set_title("product_network(x, y): x * y exactly\n(2 Square units)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

"""Topic 3. Step networks carve the input space: two layers give any convex polytope, three any
union of polytopes.

``pynn.theory.polytope_network(A, b)``: one hidden Step unit per half-space a_i . x <= b_i,
firing where the point violates it, and an output that fires when none does: exactly
{x : A x <= b}. ``pynn.theory.union_network([(A1, b1), ...])`` adds a layer: one unit per
polytope (as above), then an OR. So three layers of step units describe any region that is a
finite union of polytopes, convex or not, connected or not. The networks are exact: checked
below against the membership test ``(A x <= b).all()`` on random points, away from the
boundaries (on a boundary, rounding of A x decides).
"""
import argparse
import pathlib

import numpy as np

from pynn.theory import polytope_network, union_network


def regular_polygon(sides, centre, radius, phase=0.0):
    """(A, b) of a regular polygon: side k's outward normal at angle phase + 2 pi k / sides."""
    angles = phase + 2 * np.pi * np.arange(sides) / sides
    A = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return A, A @ np.asarray(centre) + radius


def box(x0, x1, y0, y1):
    A = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    return A, np.array([x1, -x0, y1, -y0])


def inside(polytopes, X):
    """The membership test the networks are checked against."""
    hit = np.zeros(len(X), bool)
    for A, b in polytopes:
        hit |= (X @ A.T <= b).all(axis=1)
    return hit


def off_boundaries(polytopes, X, margin=1e-6):
    keep = np.ones(len(X), bool)
    for A, b in polytopes:
        keep &= (np.abs(X @ A.T - b) / np.linalg.norm(A, axis=1) > margin).all(axis=1)
    return keep


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pentagon = regular_polygon(5, (0.0, 0.0), 1.0, phase=np.pi / 2)
    # a non-convex, disconnected region: an L made of two boxes, a triangle and a hexagon
    region = [box(-2.5, -0.5, -2.5, -1.5), box(-2.5, -1.5, -2.5, 0.5),
              regular_polygon(3, (1.3, 1.2), 0.6, phase=-np.pi / 2),
              regular_polygon(6, (1.2, -1.2), 0.9)]

    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (20_000 if quick else 200_000, 2))
    results = {}
    for name, polytopes, model in [
        ("polytope", [pentagon], polytope_network(*pentagon, dtype=np.float64)),
        ("union", region, union_network(region, dtype=np.float64)),
    ]:
        points = X[off_boundaries(polytopes, X)]
        expected = inside(polytopes, points)
        got = model.predict(points)[:, 0]
        results[name] = {"points": len(points), "inside": int(expected.sum()),
                         "mismatches": int(np.count_nonzero(got != expected)),
                         "layers": len(model.layers) // 2}
        print(f"{name:8s}: {len(model.layers) // 2} Dense+Step layers, {len(points)} random "
              f"points ({int(expected.sum())} inside): "
              f"{results[name]['mismatches']} misclassified")
    print("=> two step layers make a convex polytope, three make any union of them.")

    _plot(out_dir / "03_polytopes.png", pentagon, region)
    return results


def _plot(path, pentagon, region):
    from matplotlib.figure import Figure

    grid = np.linspace(-3, 3, 401)
    G = np.array(np.meshgrid(grid, grid)).reshape(2, -1).T
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    for k, (model, polytopes, title) in enumerate([
        (polytope_network(*pentagon), [pentagon],
         "polytope_network: {x : A x <= b}\n(5 hidden units, 2 layers)"),
        (union_network(region), region,
         "union_network: 4 polytopes, non-convex and disconnected\n(3 layers)"),
    ]):
        ax = fig.add_subplot(1, 2, 1 + k)
        out = model.predict(G.astype(np.float32))[:, 0].reshape(grid.size, grid.size)
        ax.contourf(grid, grid, out, levels=[-0.5, 0.5, 1.5], colors=["#f2f2f2", "#4a90d9"])
        for A, b in polytopes:  # the hyper-planes of the first layer's units
            for a, c in zip(A, b):
                if abs(a[1]) > 1e-9:
                    ax.plot(grid, (c - a[0] * grid) / a[1], color="0.3", lw=0.6, ls="--")
                else:
                    ax.axvline(c / a[0], color="0.3", lw=0.6, ls="--")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_title(title)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

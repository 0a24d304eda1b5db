"""Topic 6. Gradients vanish through saturating activations.

A 10-layer network (width 64, each layer Dense + activation, then a Dense to 10 classes) gets
one batch of standardized inputs and random labels; the gradient of the cross-entropy with
respect to each layer's weights is measured after one backward pass, for sigmoid, tanh, ReLU,
leaky ReLU and ELU, each with the lecture's default initialization (Xavier for sigmoid and
tanh, He for the ReLU family: pynn's ``init=None``).

Backprop multiplies by phi'(v) once per layer. The sigmoid's derivative is at most 1/4, so the
gradient shrinks by a factor of about 4 or more per layer: the first layer's gradient comes out
orders of magnitude below the last's, and below what the ReLU network's first layer gets,
whose derivative is 1 wherever the unit is active.
"""
import argparse
import pathlib

import numpy as np

from pynn import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
               "leaky relu": nn.LeakyReLU, "elu": nn.ELU}


def deep_network(activation, depth=10, width=64, n_in=32, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    layers, fan_in = [], n_in
    for _ in range(depth):
        layers += [nn.Dense(fan_in, width, seed=rng), ACTIVATIONS[activation]()]
        fan_in = width
    layers.append(nn.Dense(fan_in, n_classes, seed=rng))
    return nn.Sequential(*layers)


def layer_gradient_norms(model, X, y):
    """||dL/dW|| of each Dense layer (first to last) after one forward and backward pass."""
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    loss.forward(model.forward(X), y)
    model.backward(loss.backward(), input_grad=False)
    return [float(np.linalg.norm(m.weight.grad)) for m in model.layers if isinstance(m, nn.Dense)]


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    batch = 128 if quick else 512
    seeds = range(2 if quick else 5)
    X = rng.standard_normal((batch, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    norms = {}
    for name in ACTIVATIONS:
        # the geometric mean over a few initializations: one draw can be lucky
        runs = [layer_gradient_norms(deep_network(name, seed=s), X, y) for s in seeds]
        norms[name] = np.exp(np.log(runs).mean(axis=0))

    print("gradient norm of each layer's weights, first ... last hidden layer, output layer:")
    for name, g in norms.items():
        print(f"  {name:10s} first {g[0]:.2e}  last hidden {g[-2]:.2e}  output {g[-1]:.2e}  "
              f"first/last hidden {g[0] / g[-2]:.1e}")
    ratio = norms["sigmoid"][0] / norms["relu"][0]
    print(f"sigmoid's first-layer gradient / ReLU's: {ratio:.1e}")
    print("=> sigmoid gradients vanish with depth; ReLU-family gradients keep their size.")

    _plot(out_dir / "06_vanishing.png", norms)
    return {"norms": {k: v.tolist() for k, v in norms.items()}, "sigmoid_over_relu": ratio}


def _plot(path, norms):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for (name, g), marker in zip(norms.items(), "osD^v"):
        ax.semilogy(range(1, len(g) + 1), g, marker=marker, label=name)
    ax.set_xlabel("layer (1 = first, 11 = output)")
    ax.set_ylabel("||dL / dW|| of the layer")
    ax.set_xticks(range(1, len(g) + 1))
    ax.set_title("gradient per layer of a 10-layer network (one backward pass)")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

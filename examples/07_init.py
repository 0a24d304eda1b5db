"""Topic 7. Initialization sets the scale of every layer's activations.

Standard-normal inputs go through 10 layers (width 256) with weights W = a * N(0, 1):

- a large (a = 1): each ReLU layer multiplies the activations' second moment by about
  a**2 * fan_in / 2 = 128: they explode (a factor of 10**21 after 10 layers);
- a small (a = 0.01): the factor is 0.0128: they collapse towards 0;
- Xavier (variance 2 / (fan_in + fan_out) = 1 / fan_in here) halves the second moment at
  every ReLU layer, as ReLU zeroes half of its inputs (the slow collapse of the 1/1000 row);
- He (variance 2 / fan_in) makes up for exactly that half: the variance stays put.

With tanh (right panel) a = 1 saturates every unit at +-1 (variance near 1, derivatives
near 0: nothing can learn), a = 0.01 collapses, and Xavier and He stay within an order of
magnitude over the 10 layers (tanh's slope, below 1 away from 0, shrinks them slowly).
"""
import argparse
import functools
import pathlib

import numpy as np

from pynn import nn

INITS = {
    "a = 1 (large)": functools.partial(nn.init.scaled_normal, scale=1.0),
    "a = 0.01 (small)": functools.partial(nn.init.scaled_normal, scale=0.01),
    "Xavier": nn.init.xavier_normal,
    "He": nn.init.he_normal,
}


def activation_variances(init, activation, X, depth=10, width=256, seed=0):
    """Variance of the activations after each of ``depth`` Dense + activation layers."""
    rng = np.random.default_rng(seed)
    layers, fan_in = [], X.shape[1]
    for _ in range(depth):
        layers += [nn.Dense(fan_in, width, init=init, seed=rng), activation()]
        fan_in = width
    model = nn.Sequential(*layers)
    variances, h = [], X
    for layer in model.layers:
        h = layer.forward(h)
        if not isinstance(layer, nn.Dense):
            variances.append(float(h.astype(np.float64).var()))
    return variances


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X = np.random.default_rng(0).standard_normal((256 if quick else 2000, 256)).astype(np.float32)
    results = {}
    for act_name, activation in (("relu", nn.ReLU), ("tanh", nn.Tanh)):
        results[act_name] = {name: activation_variances(init, activation, X)
                             for name, init in INITS.items()}
        print(f"{act_name}: variance of the activations after layer 1 and layer 10")
        for name, v in results[act_name].items():
            print(f"  {name:18s} {v[0]:10.3e} -> {v[-1]:10.3e}   (x {v[-1] / v[0]:.1e})")
    print("=> too large explodes, too small collapses; He keeps the variance through ReLU layers.")

    _plot(out_dir / "07_init.png", results)
    return results


def _plot(path, results):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    for k, (act_name, curves) in enumerate(results.items()):
        ax = fig.add_subplot(1, 2, 1 + k)
        for (name, v), marker in zip(curves.items(), "osD^"):
            ax.semilogy(range(1, len(v) + 1), v, marker=marker, label=name)
        ax.set_xlabel("layer")
        ax.set_ylabel("variance of the activations")
        ax.set_title(f"{act_name}: W = a N(0, 1), Xavier, He (width 256)")
        ax.set_xticks(range(1, 11))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

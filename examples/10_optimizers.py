"""Topic 10. Optimizers: SGD, momentum, Nesterov, Adagrad, RMSprop and Adam.

Each of pynn's optimizers is run on two surfaces in the plane, the point (x, y) being one pynn
``Parameter`` whose gradient is written in before each ``step()``, and on a real problem:

- a saddle, f = x**2 - y**2, from (1, 0.001): the gradient along y starts a thousand times
  smaller than along x. Plain SGD slides into the saddle point and stays there for hundreds of
  steps; momentum builds up speed along y and leaves; the adaptive methods (Adagrad, RMSprop,
  Adam) divide each coordinate by its own gradient scale and leave at once;
- a Rosenbrock-like valley, f = (1 - x)**2 + 10 (y - x**2)**2, from (-1.2, 1): a curved,
  narrow valley. SGD reaches the valley floor, then crawls along it; momentum and Nesterov
  (after some swinging across it) reach the minimum at (1, 1), Adam nearly;
- the bundled digits (a 64-64-10 ReLU network, each optimizer with a usual learning rate):
  training-loss curves.
"""
import argparse
import pathlib

import numpy as np

import pynn
from pynn import nn
from pynn.data import Standardizer
from pynn.datasets import load_digits

OPTIMIZERS = {  # name -> (class, options on the surfaces, options on digits)
    "SGD": (pynn.optim.SGD, {"lr": 0.01}, {"lr": 0.05}),
    "momentum": (pynn.optim.SGD, {"lr": 0.01, "momentum": 0.9},
                 {"lr": 0.05, "momentum": 0.9}),
    "Nesterov": (pynn.optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True},
                 {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "Adagrad": (pynn.optim.Adagrad, {"lr": 0.5}, {"lr": 0.05}),
    "RMSprop": (pynn.optim.RMSprop, {"lr": 0.01}, {"lr": 1e-3}),
    "Adam": (pynn.optim.Adam, {"lr": 0.05}, {"lr": 3e-3}),
}


SADDLE_STEPS = 150


def saddle(p):
    x, y = p
    return x**2 - y**2, np.array([2 * x, -2 * y])


def valley(p):
    x, y = p
    return (1 - x) ** 2 + 10 * (y - x**2) ** 2, np.array(
        [-2 * (1 - x) - 40 * x * (y - x**2), 20 * (y - x**2)])


def trajectory(optimizer, options, surface, start, steps):
    """The points an optimizer visits on ``surface`` (value and gradient of a 2-vector)."""
    point = nn.Parameter(np.array(start, dtype=np.float64))
    opt = optimizer([point], **options)
    path = [point.data.copy()]
    for _ in range(steps):
        point.grad = surface(point.data)[1]
        opt.step()
        path.append(point.data.copy())
        if not np.all(np.abs(point.data) < 10):  # left the picture: stop following it
            break
    return np.array(path)


def digits_curves(epochs):
    X, y = load_digits()
    X = Standardizer().fit_transform(X)
    curves = {}
    for name, (optimizer, _, options) in OPTIMIZERS.items():
        model = nn.Sequential(nn.Dense(64, 64, seed=0), nn.ReLU(), nn.Dense(64, 10, seed=1))
        trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), optimizer(model.parameters(),
                                                                         **options))
        curves[name] = trainer.fit(X, y, epochs=epochs, batch_size=64, seed=0,
                                   verbose=0).history["loss"]
    return curves


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = 150 if quick else 300
    saddle_paths = {name: trajectory(opt, options, saddle, (1.0, 1e-3), SADDLE_STEPS)
                    for name, (opt, options, _) in OPTIMIZERS.items()}
    valley_paths = {name: trajectory(opt, options, valley, (-1.2, 1.0), steps)
                    for name, (opt, options, _) in OPTIMIZERS.items()}
    # steps until |y| > 1 on the saddle (SADDLE_STEPS if never), distance to (1, 1) on the valley
    escape = {name: int(np.argmax(np.abs(p[:, 1]) > 1)) or SADDLE_STEPS
              for name, p in saddle_paths.items()}
    distance = {name: float(np.linalg.norm(p[-1] - 1.0)) for name, p in valley_paths.items()}
    curves = digits_curves(5 if quick else 15)

    print(f"{'':10s} {'saddle: steps to |y| > 1':>25s} {'valley: distance to (1,1)':>27s} "
          f"{'digits: final loss':>20s}")
    for name in OPTIMIZERS:
        print(f"{name:10s} {escape[name]:>25d} {distance[name]:>27.4f} {curves[name][-1]:>20.4f}")
    print("=> momentum and adaptive steps leave saddles and follow valleys where SGD crawls.")

    _plot(out_dir / "10_optimizers.png", saddle_paths, valley_paths, curves)
    return {"escape_steps": escape, "valley_distance": distance,
            "digits_final_loss": {k: v[-1] for k, v in curves.items()},
            "digits_first_loss": {k: v[0] for k, v in curves.items()}}


def _plot(path, saddle_paths, valley_paths, curves):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.5, 4.2), layout="constrained")
    for k, (surface, paths, box, title) in enumerate([
        (saddle, saddle_paths, (-1.5, 1.5, -1.5, 1.5), "saddle x^2 - y^2 from (1, 0.001)"),
        (valley, valley_paths, (-1.6, 1.6, -0.6, 2.0), "valley (1-x)^2 + 10 (y-x^2)^2"),
    ]):
        ax = fig.add_subplot(1, 3, 1 + k)
        gx = np.linspace(box[0], box[1], 200)
        gy = np.linspace(box[2], box[3], 200)
        GX, GY = np.meshgrid(gx, gy)
        Z = surface(np.array([GX, GY]))[0]
        if surface is valley:
            Z = np.log1p(Z)
        ax.contour(GX, GY, Z, levels=12, colors="0.75", linewidths=0.6)
        for i, (name, p) in enumerate(paths.items()):
            ax.plot(p[:, 0], p[:, 1], color=f"C{i}", lw=1.4, label=name)
        ax.plot(*paths["SGD"][0], "ko")
        if surface is valley:
            ax.plot(1, 1, "k*", ms=12)
        ax.set_xlim(box[0], box[1])
        ax.set_ylim(box[2], box[3])
        ax.set_title(title)
        ax.legend(fontsize=8, loc="lower right" if k == 1 else "upper left")
    ax = fig.add_subplot(1, 3, 3)
    for i, (name, loss) in enumerate(curves.items()):
        ax.semilogy(range(1, len(loss) + 1), loss, color=f"C{i}", marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("digits, 64-64-10 ReLU")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=72)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

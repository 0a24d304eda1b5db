"""Topic 8. BatchNorm speeds up and stabilizes training, and makes the initialization matter less.

The same network (4 hidden layers of 64 ReLU units) is trained on the bundled digits with SGD
(learning rate 0.05, momentum 0.9), once plain and once with a BatchNorm before every ReLU, from
three weight scales: W = 0.01 N(0, 1) (small), He, and W = 0.5 N(0, 1) (large). Without
BatchNorm the small scale never leaves chance (the signal and its gradient collapse layer by
layer, as in topic 7) and the large one blows up in its first epoch (``TerminateOnNaN`` stops
it); only He trains. With BatchNorm every layer's input is re-standardized per batch, so the
scale of W hardly matters: all three train to about the same accuracy, and from the same He
start the BatchNorm network is well ahead after the first epoch.
"""
import argparse
import functools
import pathlib
import warnings

import numpy as np

import pynn
from pynn import nn
from pynn.data import Standardizer, train_val_split
from pynn.datasets import load_digits

LR = 0.05
INITS = {
    "W = 0.01 N(0,1)": functools.partial(nn.init.scaled_normal, scale=0.01),
    "He": nn.init.he_normal,
    "W = 0.5 N(0,1)": functools.partial(nn.init.scaled_normal, scale=0.5),
}


def network(init, batchnorm, depth=4, width=64, seed=0):
    rng = np.random.default_rng(seed)
    layers, fan_in = [], 64
    for _ in range(depth):
        layers.append(nn.Dense(fan_in, width, init=init, seed=rng))
        if batchnorm:
            layers.append(nn.BatchNorm(width))
        layers.append(nn.ReLU())
        fan_in = width
    layers.append(nn.Dense(fan_in, 10, init=init, seed=rng))
    return nn.Sequential(*layers)


def train(model, data, epochs):
    X_train, y_train, X_val, y_val = data
    opt = pynn.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a diverging run stops on its NaN
        history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=64,
                              validation_data=(X_val, y_val), seed=0, verbose=0)
    # the accuracy of the weights training ends with (a diverged run keeps its last finite ones)
    final = trainer.evaluate(X_val, y_val)["accuracy"]
    return history.history.get("val_accuracy", []), final, history.stop_reason


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_digits()
    X_train, X_val, y_train, y_val = train_val_split(X, y, 0.25, stratify=True, seed=0)
    scaler = Standardizer().fit(X_train)
    data = (scaler.transform(X_train), y_train, scaler.transform(X_val), y_val)
    epochs = 4 if quick else 20

    curves, final, stops = {}, {}, {}
    for bn in (False, True):
        for name, init in INITS.items():
            key = f"{'BatchNorm' if bn else 'plain'}, {name}"
            curves[key], final[key], stops[key] = train(network(init, bn), data, epochs)
            first = f"{curves[key][0]:.3f}" if curves[key] else "diverged"
            note = f" (stopped: {stops[key]})" if stops[key] else ""
            print(f"{key:28s} validation accuracy after epoch 1: {first}, at the end: "
                  f"{final[key]:.3f}{note}")
    spread = {bn: max(v for k, v in final.items() if k.startswith(bn))
              - min(v for k, v in final.items() if k.startswith(bn))
              for bn in ("plain", "BatchNorm")}
    print(f"spread of the final accuracy across the three inits: plain {spread['plain']:.3f}, "
          f"BatchNorm {spread['BatchNorm']:.3f}")
    print("=> with BatchNorm every init trains, and fast; without it only the right one does.")

    _plot(out_dir / "08_batchnorm.png", curves, epochs)
    return {"curves": curves, "final": final, "spread": spread}


def _plot(path, curves, epochs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    for k, prefix in enumerate(("plain", "BatchNorm")):
        ax = fig.add_subplot(1, 2, 1 + k)
        for (key, curve), marker in zip(((k_, c) for k_, c in curves.items()
                                         if k_.startswith(prefix)), "os^"):
            ax.plot(range(1, len(curve) + 1), curve, marker=marker, ms=4,
                    label=key.split(", ")[1] + ("" if len(curve) == epochs else " (diverged)"))
        ax.set_ylim(0, 1)
        ax.set_xlim(0.5, epochs + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"{'without' if prefix == 'plain' else 'with'} BatchNorm (digits, "
                     f"4 hidden ReLU layers, SGD lr {LR})")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="center right")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

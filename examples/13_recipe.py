"""Topic 13. The recipe, all of it, on the bundled MNIST-5k.

1. Hold out a test set (20%, stratified) and touch it once, at the end; split a validation set
   (15%) off the rest for every decision.
2. Normalize: a ``Standardizer`` fitted on the training images only, with one common scale for
   all pixels (``scale_floor=1``), placed first in the model so the saved model takes raw
   pixels and the augmentation can work on them.
3. ReLU units with He initialization (pynn's default before a ReLU), BatchNorm before each
   ReLU, a little dropout.
4. Adam or RMSprop: which one, and its learning rate, are tuned on the validation set with
   short runs.
5. A decaying learning rate (``ExponentialLR``), early stopping on the validation loss (keeping
   the best epoch's weights), and small random shifts of the training images
   (``pynn.data.RandomShift``).
6. Watch the curves: training and validation loss and accuracy per epoch, the learning rate.

It reaches >= 95% accuracy on the 1000 held-out test images.
"""
import argparse
import pathlib

import numpy as np

import pynn
from pynn import nn
from pynn.data import RandomShift, Standardizer, train_val_split
from pynn.datasets import load_mnist_5k
from pynn.train import EarlyStopping

OPTIMIZERS = {"Adam": pynn.optim.Adam, "RMSprop": pynn.optim.RMSprop}


def network(scaler, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        scaler,
        nn.Dense(784, 512, seed=rng), nn.BatchNorm(512), nn.ReLU(), nn.Dropout(0.2, seed=seed),
        nn.Dense(512, 256, seed=rng), nn.BatchNorm(256), nn.ReLU(), nn.Dropout(0.2, seed=seed + 1),
        nn.Dense(256, 10, seed=rng),
    )


def fit(scaler, optimizer, lr, train, val, epochs, patience=None):
    model = network(scaler)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    callbacks = [EarlyStopping(patience=patience)] if patience else []
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=callbacks)
    history = trainer.fit(*train, epochs=epochs, batch_size=64, validation_data=val, seed=0,
                          verbose=0, scheduler=pynn.optim.ExponentialLR(opt, gamma=0.9),
                          augment=RandomShift((28, 28), max_shift=1))
    return trainer, history


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_mnist_5k()
    X_rest, X_test, y_rest, y_test = train_val_split(X, y, 0.2, stratify=True, seed=0)
    X_train, X_val, y_train, y_val = train_val_split(X_rest, y_rest, 0.15, stratify=True,
                                                     seed=1)
    scaler = Standardizer(scale_floor=1.0).fit(X_train)
    train, val = (X_train, y_train), (X_val, y_val)

    # tune the optimizer and its learning rate on the validation set, with short runs
    candidates = [("Adam", 1e-3), ("Adam", 3e-3), ("RMSprop", 1e-3)]
    if quick:
        candidates = candidates[:2]
    tuning = {}
    for optimizer, lr in candidates:
        _, history = fit(scaler, optimizer, lr, train, val, epochs=1 if quick else 3)
        tuning[f"{optimizer} lr={lr:g}"] = history.history["val_accuracy"][-1]
    best = max(tuning, key=tuning.get)
    optimizer, lr = candidates[list(tuning).index(best)]

    trainer, history = fit(scaler, optimizer, lr, train, val, epochs=4 if quick else 30,
                           patience=6)
    test = trainer.evaluate(X_test, y_test)
    h = history.history

    print(f"MNIST-5k: {len(X_train)} training, {len(X_val)} validation, {len(X_test)} test "
          f"images")
    for name, acc in tuning.items():
        print(f"  tuning {name:18s} validation accuracy {acc:.4f}")
    print(f"chosen: {best}; trained {len(h['loss'])} epochs"
          f"{' (' + history.stop_reason + ')' if history.stop_reason else ''}")
    print(f"best validation accuracy {max(h['val_accuracy']):.4f}")
    print(f"test accuracy {test['accuracy']:.4f} (test loss {test['loss']:.4f})")
    print(f"=> normalize, ReLU + He, BatchNorm, {optimizer}, decaying lr, early stopping, "
          f"shifts: {test['accuracy']:.1%} on held-out MNIST digits.")

    _plot(out_dir / "13_recipe.png", tuning, best, h, test["accuracy"])
    return {"tuning": tuning, "chosen": best, "epochs": len(h["loss"]),
            "val_accuracy": max(h["val_accuracy"]), "test_accuracy": test["accuracy"],
            "test_loss": test["loss"]}


def _plot(path, tuning, best, h, test_accuracy):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 3, 1)
    names = list(tuning)
    ax.barh(names, [tuning[n] for n in names],
            color=["C2" if n == best else "0.6" for n in names])
    for i, n in enumerate(names):
        ax.text(tuning[n], i, f" {tuning[n]:.3f}", va="center")
    ax.set_xlim(min(tuning.values()) - 0.05, 1.0)
    ax.set_title("1. tune on validation (short runs)")
    ax.set_xlabel("validation accuracy")
    epochs = np.arange(1, len(h["loss"]) + 1)
    ax = fig.add_subplot(1, 3, 2)
    ax.plot(epochs, h["loss"], label="training loss")
    ax.plot(epochs, h["val_loss"], label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    lr_axis = ax.twinx()
    lr_axis.plot(epochs, h["lr"], color="0.5", ls="--", label="learning rate")
    lr_axis.set_yscale("log")
    lr_axis.set_ylabel("learning rate")
    lines = ax.get_lines() + lr_axis.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    ax.set_title(f"2. train {best}: the curves")
    ax = fig.add_subplot(1, 3, 3)
    ax.plot(epochs, h["accuracy"], label="training (augmented, dropout on)")
    ax.plot(epochs, h["val_accuracy"], label="validation")
    ax.axhline(test_accuracy, color="C3", ls=":", label=f"test: {test_accuracy:.3f}")
    ax.axhline(0.95, color="k", lw=0.8, ls="--", label="95%")
    ax.set_ylim(0.85, 1.0)
    ax.set_xlabel("epoch")
    ax.set_title("3. accuracy; the test set once, at the end")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

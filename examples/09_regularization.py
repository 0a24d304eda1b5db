"""Topic 9. Regularization: L1, L2, dropout, early stopping and data augmentation.

A small overfitting problem: 150 training images of the bundled digits, a fifth of them with a
wrong label, and a network far too big for them (64-256-256-10, ReLU), trained with Adam for
150 epochs. Without regularization the training loss goes to ~0 while the validation loss
turns and climbs: the network memorizes the training set, wrong labels included. Each
regularizer narrows the gap between the two curves and raises the test accuracy:

- L2 (``weight_decay``) pulls every weight towards 0 in proportion to its size;
- L1 (the optimizers' ``l1=``) pulls with a constant force, so the weights the data does not
  hold up end at (about) 0: the L1 network's first layer is sparse;
- Dropout (``nn.Dropout(0.5)``) trains a random half-network at each step;
- early stopping (``EarlyStopping``) keeps the weights of the best validation epoch;
- augmentation (``pynn.data.GaussianNoise``) trains on a new noisy copy of every batch.

The test accuracy, measured on images that neither training nor early stopping saw, is in the
right-hand panel.
"""
import argparse
import pathlib

import numpy as np

import pynn
from pynn import nn
from pynn.data import GaussianNoise, Standardizer, train_val_split
from pynn.datasets import load_digits
from pynn.train import EarlyStopping

#: name -> (optimizer options, dropout, callbacks, augmentation)
VARIANTS = {
    "none": ({}, 0.0, False, None),
    "L2": ({"weight_decay": 1e-2}, 0.0, False, None),
    "L1": ({"l1": 1e-3}, 0.0, False, None),
    "dropout": ({}, 0.5, False, None),
    "early stopping": ({}, 0.0, True, None),
    "augmentation": ({}, 0.0, False, GaussianNoise(1.0)),
}


LABEL_NOISE = 0.2


def network(dropout, seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in ((64, 256), (256, 256)):
        layers += [nn.Dense(fan_in, fan_out, seed=rng), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout, seed=seed))
    return nn.Sequential(*layers, nn.Dense(256, 10, seed=rng))


def load_small_digits(n_train, n_val):
    """n_train training, n_val validation images, the rest for testing; standardized."""
    X, y = load_digits()
    X_rest, X_train, y_rest, y_train = train_val_split(X, y, n_train / len(X), stratify=True,
                                                       seed=0)
    X_test, X_val, y_test, y_val = train_val_split(X_rest, y_rest, n_val / len(X_rest),
                                                   stratify=True, seed=1)
    # Noisy labels make memorizing costly: a fifth of the training labels are wrong.
    rng = np.random.default_rng(2)
    flip = rng.random(n_train) < LABEL_NOISE
    y_train = np.where(flip, (y_train + rng.integers(1, 10, n_train)) % 10, y_train)
    scaler = Standardizer().fit(X_train)
    return [(scaler.transform(A), b) for A, b in ((X_train, y_train), (X_val, y_val),
                                                  (X_test, y_test))]


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (X_train, y_train), (X_val, y_val), (X_test, y_test) = load_small_digits(150, 300)
    epochs = 40 if quick else 150

    histories, test_acc, first_layer = {}, {}, {}
    for name, (options, dropout, early, augment) in VARIANTS.items():
        model = network(dropout)
        opt = pynn.optim.Adam(model.parameters(), lr=1e-3, **options)
        callbacks = [EarlyStopping(patience=15)] if early else []
        trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=callbacks)
        history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=32,
                              validation_data=(X_val, y_val), seed=0, verbose=0,
                              augment=augment)
        histories[name] = history.history
        test_acc[name] = trainer.evaluate(X_test, y_test)["accuracy"]
        first_layer[name] = model.layers[0].weight.data.ravel().copy()

    # A weight counts as zero below 1% of the largest first-layer weight of its network.
    sparsity = {name: float(np.mean(np.abs(w) < 0.01 * np.abs(w).max()))
                for name, w in first_layer.items()}
    gap = {name: h["val_loss"][-1] - h["loss"][-1] for name, h in histories.items()}
    for name in VARIANTS:
        h = histories[name]
        print(f"{name:15s} epochs {len(h['loss']):3d}  train loss {h['loss'][-1]:.4f}  "
              f"val loss {h['val_loss'][-1]:.3f} (best {min(h['val_loss']):.3f})  test accuracy "
              f"{test_acc[name]:.3f}  first-layer weights near 0: {sparsity[name]:.0%}")
    print("=> every regularizer narrows the train/validation gap; L1 makes the weights sparse.")

    _plot(out_dir / "09_regularization.png", histories, test_acc, first_layer)
    return {"test_accuracy": test_acc, "sparsity": sparsity, "gap": gap,
            "final_train_loss": {k: h["loss"][-1] for k, h in histories.items()},
            "final_val_loss": {k: h["val_loss"][-1] for k, h in histories.items()},
            "epochs_run": {k: len(h["loss"]) for k, h in histories.items()}}


def _plot(path, histories, test_acc, first_layer):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.3), layout="constrained")
    axes = [fig.add_subplot(1, 4, k + 1) for k in range(4)]
    for i, (name, h) in enumerate(histories.items()):
        epochs = range(1, len(h["loss"]) + 1)
        axes[0].semilogy(epochs, h["loss"], color=f"C{i}", label=name)
        axes[1].plot(epochs, h["val_loss"], color=f"C{i}", label=name)
    axes[0].set_title("training loss")
    axes[1].set_title("validation loss")
    axes[1].set_ylim(0.6, 1.3)
    for ax in axes[:2]:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    bins = np.linspace(-0.4, 0.4, 81)
    for name, color in (("none", "C0"), ("L2", "C1"), ("L1", "C2")):
        axes[2].hist(first_layer[name], bins=bins, histtype="step", color=color, lw=1.5,
                     label=name)
    axes[2].set_yscale("log")
    axes[2].set_title("first-layer weights: L1 piles them at 0")
    axes[2].legend()
    names = list(test_acc)
    axes[3].barh(names, [test_acc[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    axes[3].set_xlim(min(test_acc.values()) - 0.03, 1.0)
    for i, n in enumerate(names):
        axes[3].text(test_acc[n] + 0.002, i, f"{test_acc[n]:.3f}", va="center")
    axes[3].set_title("test accuracy (150 training images)")
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

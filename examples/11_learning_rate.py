"""Topic 11. The learning rate: too low, too high, about right, and annealed.

A small 64-8-10 ReLU network on the bundled digits, trained with plain SGD on batches of 16:

- too low (1e-4): the loss barely moves in the epochs given;
- too high (2.0): the steps overshoot, the loss jumps up by orders of magnitude, and the
  network ends at chance level, its ReLUs dead (an overflow would stop the run:
  ``TerminateOnNaN``);
- about right (0.1): fast and steady.

Annealing: from a rate that is fast but noisy (0.5), each step still jumps around the minimum
by an amount that scales with the rate; decaying it lets the last epochs settle lower, on the
validation loss too: ``StepLR`` halves the rate every 5 epochs, ``ExponentialLR`` multiplies
it by 0.85 per epoch, ``ReduceLROnPlateau`` halves it when the validation loss has not improved
for 2 epochs.
"""
import argparse
import pathlib
import warnings

import numpy as np

import pynn
from pynn import nn
from pynn.data import Standardizer, train_val_split
from pynn.datasets import load_digits

START_LR = 0.5
RATES = {"too low (1e-4)": 1e-4, "good (0.1)": 0.1, "too high (2.0)": 2.0}
SCHEDULES = {
    f"constant {START_LR}": None,
    "StepLR(5, 0.5)": lambda opt: pynn.optim.StepLR(opt, step_size=5, gamma=0.5),
    "ExponentialLR(0.85)": lambda opt: pynn.optim.ExponentialLR(opt, gamma=0.85),
    "ReduceLROnPlateau(0.5, 2)": lambda opt: pynn.optim.ReduceLROnPlateau(opt, factor=0.5,
                                                                          patience=2),
}


def train(data, lr, epochs, schedule=None):
    X_train, y_train, X_val, y_val = data
    model = nn.Sequential(nn.Dense(64, 8, seed=0), nn.ReLU(), nn.Dense(8, 10, seed=1))
    opt = pynn.optim.SGD(model.parameters(), lr=lr)
    trainer = pynn.Trainer(model, nn.CrossEntropyLoss(), opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a diverging run stops on its NaN
        history = trainer.fit(X_train, y_train, epochs=epochs, batch_size=16,
                              validation_data=(X_val, y_val), seed=0, verbose=0,
                              scheduler=schedule(opt) if schedule else None)
    return history


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_digits()
    X_train, X_val, y_train, y_val = train_val_split(X, y, 0.25, stratify=True, seed=0)
    scaler = Standardizer().fit(X_train)
    data = (scaler.transform(X_train), y_train, scaler.transform(X_val), y_val)
    epochs = 10 if quick else 30

    rates = {name: train(data, lr, epochs) for name, lr in RATES.items()}
    schedules = {name: train(data, START_LR, epochs, schedule)
                 for name, schedule in SCHEDULES.items()}
    for name, h in rates.items():
        loss = h.history.get("loss", [])
        note = f" (stopped: {h.stop_reason})" if h.stop_reason else ""
        progress = (f"epoch 1 {loss[0]:.3f} -> epoch {len(loss)} {loss[-1]:.4f}" if loss else
                    "none finished")
        print(f"lr {name:16s} training loss {progress}{note}")
    tail = max(1, epochs // 5)  # the mean over the last epochs smooths out single-epoch noise
    settled = {}
    for name, h in schedules.items():
        settled[name] = float(np.mean(h.history["val_loss"][-tail:]))
        print(f"{name:26s} lr {h.history['lr'][0]:.3g} -> {h.history['lr'][-1]:.3g}, "
              f"validation loss over the last {tail} epochs {settled[name]:.4f}")
    print("=> too low crawls, too high jumps; decaying the rate settles lower than keeping it.")

    _plot(out_dir / "11_learning_rate.png", rates, schedules)
    return {"rates": {k: h.history for k, h in rates.items()},
            "rate_stop_reason": {k: h.stop_reason for k, h in rates.items()},
            "schedules": {k: h.history for k, h in schedules.items()}, "settled": settled}


def _plot(path, rates, schedules):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 3, 1)
    for i, (name, h) in enumerate(rates.items()):
        loss = h.history.get("loss", [])
        ax.semilogy(range(1, len(loss) + 1), loss, color=f"C{i}", marker="o", ms=3, label=name)
    ax.set_title("training loss, constant learning rates")
    ax.set_xlabel("epoch")
    ax.legend()
    ax = fig.add_subplot(1, 3, 2)
    for i, (name, h) in enumerate(schedules.items()):
        loss = h.history["val_loss"]
        ax.plot(range(1, len(loss) + 1), loss, color=f"C{i}", label=name)
    ax.set_title(f"validation loss from lr {START_LR}: constant vs annealed")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, None)
    ax.legend()
    ax = fig.add_subplot(1, 3, 3)
    for i, (name, h) in enumerate(schedules.items()):
        lr = h.history["lr"]
        ax.semilogy(range(1, len(lr) + 1), lr, color=f"C{i}", label=name, drawstyle="steps-mid")
    ax.set_title("the learning rate of each epoch")
    ax.set_xlabel("epoch")
    ax.legend()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)

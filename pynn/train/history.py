"""``History``: what ``Trainer.fit`` recorded per epoch, and its learning-curve plot."""
import os

import numpy as np


# ---------------------------------------------------------------------------- History
class History:
    """What ``fit`` recorded.

    Attributes
    ----------
    history : dict of lists
        One entry per epoch under "loss", each metric (e.g. "accuracy"), "val_loss" and
        "val_<metric>" when there is validation data, "lr" (of the first param group, as used in
        that epoch) and "seconds" (wall time of the epoch, validation included).
    epoch : list of int
        The epoch numbers recorded (0-based).
    stop_reason : str or None
        Why training stopped before ``epochs`` (early stopping, a non-finite loss).
    """

    def __init__(self, history=None, epoch=None):
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.epoch = list(epoch) if epoch is not None else list(
            range(len(next(iter(self.history.values()), [])))
        )
        self.stop_reason = None

    def append(self, epoch, logs):
        self.epoch.append(int(epoch))
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        return f"History(epochs={len(self)}, keys={sorted(self.history)})"

    def plot(self, path, title=None):
        """Draw the learning curves to ``path`` (PNG): loss and accuracy, training vs
        validation, with the learning rate on a second axis of the loss panel.

        Needs matplotlib (``pip install 'pynn[plot]'``).
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(
                "History.plot needs matplotlib, an optional dependency: "
                "pip install 'pynn[plot]' (or pip install matplotlib)"
            ) from None
        h = self.history
        if not h.get("loss"):
            raise ValueError("history is empty: nothing to plot")
        metrics = [k for k in h if k not in ("loss", "lr", "seconds") and not k.startswith("val_")]
        ncols = 1 + bool(metrics)
        # Figure + Agg canvas, not pyplot: no global state, no GUI backend needed.
        fig = Figure(figsize=(5.5 * ncols, 4), layout="constrained")
        FigureCanvasAgg(fig)
        epochs = np.arange(1, len(h["loss"]) + 1)
        ax = fig.add_subplot(1, ncols, 1)
        ax.plot(epochs, h["loss"], label="train loss", color="C0")
        if "val_loss" in h:
            ax.plot(epochs, h["val_loss"], label="validation loss", color="C1")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_yscale("log" if min(h["loss"]) > 0 else "linear")
        handles, labels = ax.get_legend_handles_labels()
        if h.get("lr"):
            ax2 = ax.twinx()
            ax2.plot(epochs, h["lr"], color="0.5", linestyle="--", label="learning rate")
            ax2.set_ylabel("learning rate")
            if min(h["lr"]) > 0 and max(h["lr"]) / min(h["lr"]) > 10:
                ax2.set_yscale("log")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, loc="upper right")
        ax.set_title("loss")
        if metrics:
            ax = fig.add_subplot(1, ncols, 2)
            for i, m in enumerate(metrics):
                ax.plot(epochs, h[m], label=f"train {m}", color=f"C{2 * i}")
                if f"val_{m}" in h:
                    ax.plot(epochs, h[f"val_{m}"], label=f"validation {m}", color=f"C{2 * i + 1}")
            ax.set_xlabel("epoch")
            ax.set_title(", ".join(metrics))
            ax.legend(loc="lower right")
        if title:
            fig.suptitle(title)
        fig.savefig(os.fspath(path), dpi=110)
        return path

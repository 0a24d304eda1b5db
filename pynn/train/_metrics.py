"""What ``fit`` and ``evaluate`` record: the loss over many batches in the loss's reduction, and
the metrics (accuracy, or the user's callables)."""
import numpy as np

from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss


def check_training_reduction(loss):
    """The loss's reduction, which must give one number per batch to train on."""
    reduction = getattr(loss, "reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss.reduction must be 'mean' or 'sum' to train with, got "
                         f"{reduction!r}")
    return reduction


class LossTotal:
    """The loss over many batches, in the loss's reduction: "mean" weighs each batch's mean by
    the batch's total weight (its row count without weights), so the result is the weighted
    mean over every row seen; "sum" adds the batches' sums."""

    def __init__(self, loss):
        self.loss = loss
        self.reduction = check_training_reduction(loss)
        self.total = 0.0
        self.weight = 0.0

    def add(self, out, y, w):
        """The loss of one batch (a float; ``loss.backward()`` then has its gradient)."""
        if w is None:  # custom losses without sample weights keep working
            value = self.loss.forward(out, y)
            self.record(value, y.shape[0])
        else:
            value = self.loss.forward(out, y, sample_weight=w)
            self.record(value, float(w.sum()))
        return value

    def record(self, value, batch_weight):
        """Count a batch's loss computed elsewhere (the compiled step), of total weight
        ``batch_weight`` (its row count without weights)."""
        self.total += value * batch_weight if self.reduction == "mean" else value
        self.weight += batch_weight

    def value(self):
        if self.reduction == "sum" or self.weight == 0:
            return float(self.total)  # no weight seen: 0, or nan from a nan batch
        return float(self.total / self.weight)


def score_batches(model, loss, metrics, batches, batch_size):
    """(LossTotal, metric sums weighted by rows, rows seen) of ``model.predict`` over
    ``batches`` of (X, y, w): evaluation's loop, in one process or on one rank's part."""
    total = LossTotal(loss)
    sums = dict.fromkeys(metrics, 0.0)
    seen = 0
    for Xb, yb, wb in batches:
        out = model.predict(Xb, batch_size=batch_size)
        total.add(out, yb, wb)
        for k, f in metrics.items():
            sums[k] += f(out, yb) * yb.shape[0]
        seen += yb.shape[0]
    return total, sums, seen


def accuracy_for(loss):
    """The accuracy metric f(output, y) of a classification loss."""
    if isinstance(loss, CrossEntropyLoss):
        return lambda out, y: float(np.count_nonzero(out.argmax(axis=1) == y)) / y.shape[0]
    if isinstance(loss, BCEWithLogitsLoss):
        return lambda out, y: float(np.count_nonzero((out > 0) == (y > 0.5))) / y.size
    raise ValueError(f"metric 'accuracy' needs a classification loss, got {type(loss).__name__}")


def resolve_metrics(metrics, loss):
    """{name: f(output, y) -> float} from the Trainer's ``metrics`` argument."""
    if metrics == "auto":
        # accuracy for the classification losses; none for a regression loss (MSE, L1, Huber)
        metrics = ["accuracy"] if isinstance(loss, (CrossEntropyLoss, BCEWithLogitsLoss)) else []
    if metrics is None:
        metrics = []
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    out = {}
    for m in metrics:
        if m in ("accuracy", "acc"):
            out["accuracy"] = accuracy_for(loss)
        elif callable(m):
            out[getattr(m, "__name__", f"metric{len(out)}")] = m
        else:
            raise ValueError(f"metrics: unknown metric {m!r} (use 'accuracy' or a callable)")
    return out

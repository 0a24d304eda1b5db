"""What ``Trainer.fit`` does around its batches: class weights turned into row weights
(scikit-learn's ``class_weight``: each row's sample weight times its class's weight), the
epoch's loss from its batches' (weighted) losses, the metrics, and gradient clipping before
each step."""
import numbers

import numpy as np

from ._checks import check_real
from .backend._arrays import row_weights
from .nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .nn.utils import clip_grad_norm_, clip_grad_value_


def class_weight_table(class_weight, loss, width, y=None):
    """``class_weight`` as one weight per class: (C,) for CrossEntropyLoss, (2,) (negative,
    positive) for a one-output BCEWithLogitsLoss; None passes through.

    ``class_weight`` is a dict {class: weight} (classes left out weigh 1, as in scikit-learn),
    a sequence of C weights, or "balanced": ``n / (n_classes * count(class))`` over the classes
    present in ``y`` (scikit-learn's formula), which needs the labels up front.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str) and class_weight == "balanced" and y is None:
        raise ValueError("class_weight='balanced' needs the labels up front; with batches "
                         "from an iterable pass a dict {class: weight}")
    if isinstance(loss, CrossEntropyLoss):
        n_classes = width
    elif isinstance(loss, BCEWithLogitsLoss) and width == 1:
        n_classes = 2
    else:
        raise ValueError(
            f"class_weight needs CrossEntropyLoss or a one-output BCEWithLogitsLoss, got "
            f"{type(loss).__name__} with {width} outputs (use sample_weight, or "
            f"BCEWithLogitsLoss(pos_weight=...) for several binary outputs)")
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict, a sequence or 'balanced', got "
                             f"{class_weight!r}")
        labels = y if isinstance(loss, CrossEntropyLoss) else (y.ravel() > 0.5)
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
        present = counts > 0
        table = np.ones(n_classes)
        table[present] = labels.shape[0] / (np.count_nonzero(present) * counts[present])
        return table
    if isinstance(class_weight, dict):
        table = np.ones(n_classes)
        for key, value in class_weight.items():
            if isinstance(key, bool) or not isinstance(key, numbers.Integral) or \
                    not 0 <= key < n_classes:
                raise ValueError(f"class_weight keys must be classes in [0, {n_classes}), got "
                                 f"{key!r}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"class_weight[{key!r}] must be a number, got "
                                f"{type(value).__name__}")
            table[int(key)] = float(value)
        return row_weights("class_weight", table, n_classes)
    return row_weights("class_weight", np.asarray(class_weight), n_classes)


class ClassWeights:
    """``fit``'s class_weight as per-class weights (``class_weight_table``), made as soon as
    the model's output width is known: up front for arrays, at the first batch of an
    iterable."""

    def __init__(self, class_weight, loss, width=None, y=None):
        self.class_weight, self.loss = class_weight, loss
        self.table = None
        if class_weight is None:
            return
        if width is not None:
            self.table = class_weight_table(class_weight, loss, width, y)
        elif isinstance(class_weight, str):
            class_weight_table(class_weight, loss, width, y)  # refused now: "balanced" needs y

    def rows(self, sample_weight, y, width):
        """A batch's row weights: its sample weights (float64, or None) times its rows'
        class weights; None when neither is given."""
        if self.class_weight is None:
            return sample_weight
        if self.table is None:
            self.table = class_weight_table(self.class_weight, self.loss, width)
        return combined_row_weights(sample_weight, self.table, self.loss, y)


def combined_row_weights(sample_weight, table, loss, y):
    """Row weights of a batch: its sample weights (float64, or None) times its rows' class
    weights from ``table`` (or None); None when both are None."""
    if table is None:
        return sample_weight
    if isinstance(loss, CrossEntropyLoss):
        per_row = table[y]
    else:
        # a probability target weighs like the mix of the two classes it stands for
        t = y.reshape(-1).astype(np.float64)
        per_row = table[0] * (1.0 - t) + table[1] * t
    return per_row if sample_weight is None else sample_weight * per_row


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


class GradientClipping:
    """``fit``'s clip_grad_value / clip_grad_norm, applied to a model's gradients; false when
    neither is set."""

    def __init__(self, max_norm=None, max_value=None):
        self.max_norm = None if max_norm is None else check_real("clip_grad_norm", max_norm,
                                                                 low=0.0, low_open=True)
        self.max_value = None if max_value is None else check_real("clip_grad_value", max_value,
                                                                   low=0.0, low_open=True)

    def __bool__(self):
        return self.max_norm is not None or self.max_value is not None

    def __call__(self, model):
        params = list(model.parameters())
        if self.max_value is not None:
            clip_grad_value_(params, self.max_value)
        if self.max_norm is not None:
            clip_grad_norm_(params, self.max_norm)


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
        metrics = [] if isinstance(loss, MSELoss) else ["accuracy"]
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

"""``fit``'s class weights turned into row weights (scikit-learn's ``class_weight``: each row's
sample weight times its class's weight)."""
import numbers

import numpy as np

from ..backend._arrays import row_weights
from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss


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

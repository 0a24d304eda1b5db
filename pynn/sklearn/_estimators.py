"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's parameters, defaults and fitted
attributes, on pynn."""
import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._base import _BaseMLP
from ._loss import SklearnLoss

_SHARED_DOC = """
    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2, epsilon,
    n_iter_no_change, max_fun
        scikit-learn's, with its defaults and meaning (``sklearn.neural_network``), and:

        - ``activation`` also takes "leaky_relu", "elu", "square", "step", "gelu" (torch's
          exact GELU) and "silu".
        - ``solver`` also takes "rmsprop", "adagrad" (torch's update rules, ``epsilon`` as
          their eps) and "adamw" (``alpha`` as decoupled weight decay, ``alpha / batch size``
          per step, like the L2 term's scaling). The same ``random_state`` gives scikit-learn's
          initial weights, batch order and validation split.
        - ``learning_rate`` ("constant", "invscaling", "adaptive", as scikit-learn defines
          them) applies to every stochastic solver but "adam", which scikit-learn's ignores it
          for.
    batch_norm : bool, default False
        BatchNorm after each hidden layer's matrix product, before its activation.
    layer_norm : bool, default False
        LayerNorm (per sample over the layer's units, learned scale and shift) after each
        hidden layer's matrix product, before its activation; not with ``batch_norm``.
    dropout : float in [0, 1), default 0
        Dropout after each hidden activation (stochastic solvers only).
    l1 : float >= 0, default 0
        L1 penalty ``l1 * sum |W|`` on the weights (not the intercepts), added to the loss.
    lr_scheduler : callable, optional
        ``lr_scheduler(optimizer)`` returns a ``pynn.optim`` schedule, stepped once per epoch
        after scikit-learn's own ``learning_rate`` rule, e.g.
        ``functools.partial(pynn.optim.StepLR, step_size=30, gamma=0.5)``.
    clip_grad_norm, clip_grad_value : float > 0, optional
        Clip each mini-batch's loss gradient before the step, as
        ``pynn.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` do (stochastic solvers); the
        optimizer adds the penalties' gradients after, as torch's weight decay.

    Data types: float32 ``X`` trains a float32 network and predicts float32; float64 or
    integer ``X`` a float64 one (scikit-learn's rule). Later calls convert to the network's
    dtype. Dense input only.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    n_iter_, n_layers_, n_outputs_, out_activation_, coefs_, intercepts_, n_features_in_,
    feature_names_in_
        scikit-learn's (``classes_`` for the classifier). ``coefs_`` are (fan_in, fan_out) views
        of the network's weights.
    validation_loss_curve_ : list or None
        The validation loss of every epoch when ``early_stopping``.
    model_ : pynn.nn.Sequential
        The network (logits out, for a classifier); ``pynn.save(est.model_, path)`` writes it.
"""


def _store_params(est, params):
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = ("Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on pynn.\n"
               + _SHARED_DOC + """
    class_weight : dict, "balanced" or None, default None
        Weights of the classes (scikit-learn's convention): multiplied into ``sample_weight``.
        Not for multilabel targets.

    Examples
    --------
    >>> from pynn.sklearn import MLPClassifier
    >>> clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2])
    """)

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 batch_norm=False, layer_norm=False, dropout=0.0, l1=0.0, lr_scheduler=None,
                 clip_grad_norm=None, clip_grad_value=None, class_weight=None):
        _store_params(self, locals())

    # -- what differs from the regressor ------------------------------------------------
    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             accept_sparse=["csr", "csc"], reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
            if (y.ndim == 1 and len(self.classes_) > 1
                    and self._label_binarizer.y_type_ in ("binary", "multiclass")):
                return X, _one_hot(y, self.classes_)
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(bool)

    def _multiclass(self):
        return self._label_binarizer.y_type_ == "multiclass"

    def _out_activation(self):
        return "softmax" if self._multiclass() else "logistic"

    def _make_loss(self):
        return SklearnLoss("log_loss" if self._multiclass() else "binary_log_loss",
                           self.n_outputs_)

    def _loss_target(self, y, dtype):
        if self._multiclass():
            return np.ascontiguousarray(y.argmax(axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=dtype)

    def _with_class_weight(self, y, sample_weight):
        if self.class_weight is None:
            return sample_weight
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets")
        index = y.argmax(axis=1) if y.shape[1] > 1 else y[:, 0].astype(np.intp)
        n_classes = len(self.classes_)
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight has labels not in classes_: {sorted(unknown)}")
            per_class = np.array([float(self.class_weight.get(c, 1.0))
                                  for c in self.classes_.tolist()])
        else:
            present = np.unique(index)
            per_class = np.ones(n_classes)
            per_class[present] = compute_class_weight("balanced", classes=present, y=index)
        weights = per_class[index]
        return weights if sample_weight is None else weights * sample_weight

    def _validation_labels(self, y):
        return self._label_binarizer.inverse_transform(y)

    def _probabilities(self, logits):
        """softmax (multiclass) or sigmoid (binary, multilabel) of the logits: pynn's loss
        reads its output as that."""
        return self._loss.pynn_loss.probabilities(logits)

    def _labels(self, logits):
        probs = self._probabilities(logits)
        if self.n_outputs_ == 1:
            probs = probs.ravel()
        return self._label_binarizer.inverse_transform(probs)

    def _score_logits(self, logits, y, sample_weight):
        if not np.isfinite(logits).all():
            return np.nan
        return accuracy_score(y, self._labels(logits), sample_weight=sample_weight)

    # -- public API ------------------------------------------------------------------------
    def predict(self, X):
        """Predicted class labels, (n_samples,) or (n_samples, n_classes) for multilabel."""
        check_is_fitted(self)
        return self._labels(self._forward_logits(X))

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), in the network's dtype."""
        check_is_fitted(self)
        probs = self._probabilities(self._forward_logits(X))
        if self.n_outputs_ == 1:
            p = probs.ravel()
            return np.vstack([1 - p, p]).T
        return probs

    def predict_log_proba(self, X):
        """Logarithm of ``predict_proba``."""
        probs = self.predict_proba(X)
        return np.log(probs, out=probs)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X, y``; ``classes`` (every label) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = ("Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on pynn.\n"
               + _SHARED_DOC + """
    loss : "squared_error" or "poisson", default "squared_error"
        scikit-learn's: "poisson" uses a log link (the network outputs the log of the mean).

    Examples
    --------
    >>> from pynn.sklearn import MLPRegressor
    >>> reg = MLPRegressor(hidden_layer_sizes=(64,), random_state=0).fit(X, y)
    >>> reg.predict(X[:2])
    """)

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 batch_norm=False, layer_norm=False, dropout=0.0, l1=0.0, lr_scheduler=None,
                 clip_grad_norm=None, clip_grad_value=None):
        _store_params(self, locals())

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), accept_sparse=["csr", "csc"],
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (np.any(y < 0) or np.sum(y) <= 0):
            raise ValueError("loss='poisson' needs y >= 0 with a positive sum")
        return X, y

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _make_loss(self):
        return SklearnLoss(self.loss, self.n_outputs_)

    def _loss_target(self, y, dtype):
        return np.ascontiguousarray(y, dtype=dtype)

    def _with_class_weight(self, y, sample_weight):
        return sample_weight

    def _validation_labels(self, y):
        return y.ravel() if y.shape[1] == 1 else y

    def _outputs(self, logits):
        out = np.exp(logits) if self.out_activation_ == "exp" else logits
        return out.ravel() if out.shape[1] == 1 else out

    def _score_logits(self, logits, y, sample_weight):
        pred = self._outputs(logits)
        if not np.isfinite(pred).all():
            return np.nan
        return r2_score(y, pred, sample_weight=sample_weight)

    def predict(self, X):
        """Predicted values, (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._outputs(self._forward_logits(X))

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X, y``."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


def _one_hot(y, classes):
    """What ``LabelBinarizer.transform(y)`` gives, as bools, for 1-D labels it was just fitted
    on (so every label is one of ``classes``, sorted, at least two): one column for two
    classes, else one per class. Its own checks are what makes it slow, and they passed in its
    fit."""
    codes = np.searchsorted(classes, y)
    if len(classes) == 2:
        return (codes == 1).reshape(-1, 1)
    out = np.zeros((len(y), len(classes)), bool)
    out[np.arange(len(y)), codes] = True
    return out

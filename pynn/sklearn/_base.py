"""What MLPClassifier and MLPRegressor share: their parameters, the network and its fitted
attributes, and ``fit``; the training itself (scikit-learn's semantics on pynn's compiled step
and optimizers) is in ``_solvers.py``."""
import numbers

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import nn
from ..backend._sparse import as_sparse_array, is_sparse
from ..train import snapshot
from ._solvers import STOCHASTIC_SOLVERS, _Solvers

#: hidden activations: scikit-learn's four, then pynn's
ACTIVATIONS = {
    "identity": None, "logistic": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "square": nn.Square, "step": nn.Step,
    "gelu": nn.GELU, "silu": nn.SiLU,
}
SOLVERS = ("lbfgs",) + STOCHASTIC_SOLVERS


class _BaseMLP(_Solvers, BaseEstimator):
    """Base of the two estimators; not for direct use."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_norm": ["boolean"],
        "layer_norm": ["boolean"],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "l1": [Interval(numbers.Real, 0, None, closed="left")],
        "lr_scheduler": [callable, None],
        "clip_grad_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "clip_grad_value": [Interval(numbers.Real, 0, None, closed="neither"), None],
    }

    # -------------------------------------------------------------------- fitted attributes
    @property
    def coefs_(self):
        """Weight matrices as (fan_in, fan_out) arrays: views of the model's weights, so writing
        into them changes the model (as writing into scikit-learn's does)."""
        check_is_fitted(self)
        return [layer.weight.data.T for layer in self._dense]

    @coefs_.setter
    def coefs_(self, values):
        self._set_layer_values("coefs_", values, lambda layer: layer.weight.data.T)

    @property
    def intercepts_(self):
        """Bias vectors, views of the model's."""
        check_is_fitted(self)
        return [layer.bias.data for layer in self._dense]

    @intercepts_.setter
    def intercepts_(self, values):
        self._set_layer_values("intercepts_", values, lambda layer: layer.bias.data)

    def _set_layer_values(self, name, values, view):
        check_is_fitted(self)
        values = list(values)
        if len(values) != len(self._dense):
            raise ValueError(f"{name} must hold {len(self._dense)} arrays, got {len(values)}")
        for i, (layer, value) in enumerate(zip(self._dense, values)):
            target = view(layer)
            value = np.asarray(value)
            if value.shape != target.shape:
                raise ValueError(f"{name}[{i}] must have shape {target.shape}, got "
                                 f"{value.shape}")
            target[...] = value

    @property
    def model_(self):
        """The trained pynn ``Sequential`` (outputs logits for a classifier); ``pynn.save``
        writes it like any other model."""
        check_is_fitted(self)
        return self._model

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_model")

    # -------------------------------------------------------------------- the network
    def _build(self, layer_units, dtype):
        """A fresh Sequential with scikit-learn's initialization, drawn from
        ``self._random_state`` in its order: per layer the (fan_in, fan_out) weights, then the
        biases, uniform in +-sqrt(factor / (fan_in + fan_out)), factor 2 for logistic, else 6
        (Glorot & Bengio 2010). The same random_state gives scikit-learn's initial weights."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        act = ACTIVATIONS[self.activation]
        layers, dense = [], []
        n_layers = len(layer_units) - 1
        for i, (fan_in, fan_out) in enumerate(zip(layer_units[:-1], layer_units[1:])):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            # zeros, overwritten at once: no draw from pynn.manual_seed's stream (the
            # estimator's randomness is scikit-learn's random_state)
            layer = nn.Dense(fan_in, fan_out, init="zeros", dtype=dtype)
            layer.weight.data = coef.T.astype(dtype)
            layer.bias.data = intercept.astype(dtype)
            layers.append(layer)
            dense.append(layer)
            if i == n_layers - 1:
                break  # the output layer gives logits; the loss applies the output function
            if self.batch_norm:
                layers.append(nn.BatchNorm(fan_out, dtype=dtype))
            if self.layer_norm:
                layers.append(nn.LayerNorm(fan_out, dtype=dtype))
            if act is not None:
                layers.append(act())
            if self.dropout > 0:
                # drawn only with dropout, so the default stream matches scikit-learn's
                seed = int(self._random_state.randint(np.iinfo(np.int32).max))
                layers.append(nn.Dropout(self.dropout, seed=seed))
        self._model = nn.Sequential(layers)
        self._dense = dense
        self._layer_units = list(layer_units)

    def _penalized_params(self):
        """(weights, the rest): alpha and l1 act on the weights only, as in scikit-learn."""
        weights = [layer.weight for layer in self._dense]
        ids = {id(w) for w in weights}
        return weights, [p for p in self._model.parameters() if id(p) not in ids]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_weights_flat", None)  # a view into the arena: re-derived after loading
        return state

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        if self.batch_norm and self.layer_norm:
            raise ValueError("batch_norm and layer_norm are two ways to normalize the hidden "
                             "layers: set one of them, not both")
        if self.dropout > 0 and self.solver == "lbfgs":
            raise ValueError("dropout needs a stochastic solver (sgd, adam, rmsprop, adagrad, "
                             "adamw): L-BFGS's line search needs a deterministic loss")
        first_pass = not hasattr(self, "_model") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if is_sparse(X) and X.format != "csr":
            X = X.tocsr()  # once: batches are CSR row slices
        if not first_pass:
            X = X.astype(self._model.dtype, copy=False)  # the network keeps its dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        sample_weight = self._with_class_weight(y, sample_weight)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        elif layer_units != self._layer_units:
            raise ValueError(
                f"warm_start/partial_fit: the network has layer sizes {self._layer_units}; "
                f"this call needs {layer_units} (hidden_layer_sizes, n_features or the number "
                f"of outputs changed)"
            )
        target = self._loss_target(y, X.dtype)
        if self.solver in STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, y, target, sample_weight, incremental)
        else:
            self._fit_lbfgs(X, target, sample_weight)
        if not all(np.isfinite(p.data).all() for p in self._model.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self._loss = self._make_loss()
        self._build(layer_units, dtype)
        self._best_state = snapshot(self._model)
        if hasattr(self, "_optimizer"):
            del self._optimizer  # a new network: fit makes a new optimizer too
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 data trains a float32 network, anything else float64.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    def _forward_logits(self, X, check_input=True):
        check_is_fitted(self)
        if check_input:
            X = self._validate_predict_input(X)
        if is_sparse(X):
            # CSR of the network's dtype (a CSC X converted once): the first Dense reads it
            return self._model.predict(as_sparse_array("X", X, self._model.dtype))
        return self._model.predict(np.ascontiguousarray(X, dtype=self._model.dtype))

    def _validate_predict_input(self, X):
        return validate_data(self, X, dtype=(np.float64, np.float32),
                             accept_sparse=["csr", "csc"], reset=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR/CSC: the first Dense's sparse kernels
        return tags

"""The training of the estimators: scikit-learn's MLP semantics (epochs, tol and
n_iter_no_change, learning-rate schedules, early stopping, L-BFGS) on a pynn Sequential and pynn
optimizers.

The loop per mini-batch (pynn/sklearn/_batch_step.py) is pynn's training step,
``model.train_step(Xb, yb, loss, optimizer)`` (one compiled call, or one for several batches
of a size) when the batch needs nothing between its parts, else its lines::

    model.zero_grad(); value, dY = loss(model.forward(Xb), yb, sample_weight)
    model.backward(dY, input_grad=False); [clip the gradients]; optimizer.step()

alpha's L2 term is the optimizer's weight decay on the weights group, so it runs inside the
update kernel either way.

The epoch loop is written here rather than through ``Trainer.fit`` because scikit-learn's MLP
defines things per batch that a Trainer callback cannot reach: the L2 term is divided by each
batch's (weighted) size, and the loss it records includes that term.
"""
import warnings

import numpy as np
import scipy.optimize
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import gen_batches
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result

from .. import nn, optim
from ..data import batch_bounds
from ..train import restore, snapshot
from ._batch_step import _SELF_DOT, _BatchStep, _epoch_blocks, _gathered_blocks

STOCHASTIC_SOLVERS = ("sgd", "adam", "rmsprop", "adagrad", "adamw")
# scikit-learn's adaptive schedule stops once the rate would go below this
_MIN_ADAPTIVE_LR = 1e-6


class SklearnAdam(optim.Adam):
    """pynn's Adam with epsilon where scikit-learn's MLP puts it: added to ``sqrt(v)`` before
    the bias correction of ``v`` (torch's Adam, pynn's default, adds it after). The kernel then
    runs scikit-learn's form, ``lr sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``
    at step ``t`` (``adam_loop_scalars``), one division per element; the group keeps the
    ``eps`` it was given.
    """

    _eps_before_correction = True


class _Solvers:
    """Mixin of ``_BaseMLP``: the optimizers, the epoch loop and L-BFGS. Uses the network
    (``_model``, ``_dense``) and the loss (``_loss``) that ``_BaseMLP`` builds."""

    def _make_optimizer(self):
        """The solver's optimizer with two groups: the weights, where alpha (as the group's
        weight_decay, set per batch: scikit-learn divides the L2 term by the batch's weighted
        size) and l1 act, and the rest (intercepts, BatchNorm), which no penalty touches."""
        weights, rest = self._penalized_params()
        lr = self.learning_rate_init
        betas = (self.beta_1, self.beta_2)
        groups = [{"params": weights, "weight_decay": 0.0, "l1": self.l1},
                  {"params": rest, "weight_decay": 0.0, "l1": 0.0}]
        if self.solver == "sgd":
            opt = optim.SGD(groups, lr=lr, momentum=self.momentum,
                            nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        elif self.solver == "adam":
            opt = SklearnAdam(groups, lr=lr, betas=betas, eps=self.epsilon)
        elif self.solver == "adamw":  # the weight decay decoupled
            opt = optim.AdamW(groups, lr=lr, betas=betas, eps=self.epsilon)
        elif self.solver == "rmsprop":
            opt = optim.RMSprop(groups, lr=lr, eps=self.epsilon)
        else:
            opt = optim.Adagrad(groups, lr=lr, eps=self.epsilon)
        self._optimizer = opt
        self._scheduler = self.lr_scheduler(opt) if self.lr_scheduler is not None else None

    def _bind_weight_views(self):
        """The weights' slice of the parameter arena (the penalties' values read it). Derived
        again for every fit: unpickling or a re-pack moves the arena."""
        self._optimizer.zero_grad()  # re-packs first if the parameters moved
        weights = self._penalized_params()[0]
        (arena,) = self._model.arenas.values()
        start = weights[0].offset
        stop = weights[-1].offset + weights[-1].size
        if stop - start != sum(w.size for w in weights):
            raise RuntimeError("the optimizer did not pack the weights contiguously")
        self._weights_flat = arena.data[start:stop]

    def _set_weight_decay(self, weight_sum):
        """alpha / (the batch's weighted size) on the weights group; changed only when the
        batch size changes (the last batch, and back), values the optimizer has stepped with
        before, so it takes up their checked configuration again (Optimizer._known_configs)."""
        decay = self.alpha / weight_sum if weight_sum > 0 else 0.0
        group = self._optimizer.param_groups[0]
        if group["weight_decay"] != decay:
            group["weight_decay"] = decay

    def _penalty(self, weight_sum):
        """The penalties' share of the loss scikit-learn records, from the weights before the
        step: 0.5 * alpha * ||W||^2 / weight_sum (+ l1 * sum |W|)."""
        value = 0.0
        if self.alpha and weight_sum > 0:
            value += 0.5 * self.alpha * self._sum_squared_weights() / weight_sum
        if self.l1:
            value += self.l1 * self._l1_norm()
        return value

    def _sum_squared_weights(self):
        weights = self._weights_flat
        return float(_SELF_DOT[weights.dtype](weights, weights))

    def _l1_norm(self):
        return float(np.abs(self._weights_flat).sum())

    # -------------------------------------------------------------------- fit
    def _fit_stochastic(self, X, y, target, sample_weight, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._make_optimizer()
        self._bind_weight_views()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, y, target, sample_weight, validation = self._validation_split(X, y, target,
                                                                         sample_weight)
        n_samples = X.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        blocks = _epoch_blocks(self._batches(n_samples), X)
        step = _BatchStep(self, sample_weight is None)
        model = self._model
        model.train()  # predict (validation scores) runs in eval mode regardless
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    # what sklearn.utils.shuffle does (the same draws), without its checks
                    sample_idx = sample_idx[self._random_state.permutation(n_samples)]
                accumulated_loss = 0.0
                step.new_epoch()
                for runs, Xb, tb, swb in _gathered_blocks(blocks, sample_idx, self.shuffle,
                                                          X, target, sample_weight):
                    accumulated_loss = step.run_block(runs, Xb, tb, swb, accumulated_loss)
                if self._end_epoch(accumulated_loss / n_samples, n_samples, validation,
                                   incremental):
                    break
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            model.eval()
        if self.early_stopping:
            restore(model, self._best_state)

    def _validation_split(self, X, y, target, sample_weight):
        """(X, y, target, sample_weight) to train on and the held-out
        (X_val, y_val, target_val, sw_val), all None without early stopping."""
        if not self.early_stopping:
            return X, y, target, sample_weight, (None, None, None, None)
        sw_val = None
        stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
        parts = [X, y, target] + ([sample_weight] if sample_weight is not None else [])
        split = train_test_split(*parts, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X, X_val, y, y_val, target, target_val = split[:6]
        if sample_weight is not None:
            sample_weight, sw_val = split[6:]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        y_val = self._validation_labels(y_val)
        return X, y, target, sample_weight, (X_val, y_val, target_val, sw_val)

    def _batches(self, n_samples):
        """The epoch's batches as slices, in order (scikit-learn's batch_size rules)."""
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        if self.batch_norm:
            # BatchNorm cannot normalize a single sample: pynn merges a trailing one-sample
            # batch into the one before
            return [slice(lo, hi) for lo, hi in batch_bounds(n_samples, batch_size)]
        return list(gen_batches(n_samples, batch_size))

    def _end_epoch(self, loss, n_samples, validation, incremental):
        """Record the epoch's loss, score it, step the schedule: True when training stops."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        self._update_no_improvement_count(*validation)
        self._end_epoch_lr()
        if self._no_improvement_count > self.n_iter_no_change:
            if self.early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d "
                       "consecutive epochs." % (self.tol, self.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d "
                       "consecutive epochs." % (self.tol, self.n_iter_no_change))
            if self._trigger_stopping(msg):
                return True
            self._no_improvement_count = 0
        if incremental:
            return True
        if self.n_iter_ == self.max_iter:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                "optimization hasn't converged yet." % self.max_iter,
                ConvergenceWarning,
            )
        return False

    def _end_epoch_lr(self):
        """scikit-learn's per-epoch rate for 'invscaling' (t_ counts samples), then a
        user ``lr_scheduler``. scikit-learn's adam ignores ``learning_rate``; so does this."""
        if self.solver != "adam" and self.learning_rate == "invscaling":
            self._set_lr(float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t)
        if self._scheduler is not None:
            self._scheduler.step()

    def _set_lr(self, lr):
        """Change the rate as scikit-learn's SGD does: its velocity is kept in units of
        parameter change (``v = momentum * v - lr * g``), torch's buffer in units of gradient
        (``p -= lr * buf``), so the buffer is rescaled by old/new rate to carry the same
        velocity over."""
        old = self._optimizer.param_groups[0]["lr"]
        if lr == old:
            return
        if self.solver == "sgd":
            for state in self._optimizer.state.values():
                if "momentum_buffer" in state:
                    state["momentum_buffer"] *= old / lr
        for group in self._optimizer.param_groups:
            group["lr"] = lr

    def _trigger_stopping(self, msg):
        """True to stop; 'adaptive' instead divides the rate by 5 until it is below 1e-6."""
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        lr = self._optimizer.param_groups[0]["lr"]
        if lr <= _MIN_ADAPTIVE_LR:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_lr(lr / 5.0)
        if self.verbose:
            print(msg + " Setting learning rate to %f" % (lr / 5.0))
        return False

    def _update_no_improvement_count(self, X_val, y_val, target_val, sw_val):
        if self.early_stopping:
            out = self._model.predict(X_val)
            self.validation_loss_curve_.append(self._loss(out, target_val, sw_val)[0])
            score = self._score_logits(out, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = snapshot(self._model)
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, target, sample_weight):
        """scipy's L-BFGS-B over the model's flat parameter arena, full batch."""
        model = self._model
        weights, rest = self._penalized_params()
        # the arena laid out weights first, as for the stochastic solvers
        arena = nn.ParameterArena(weights + rest)
        n_weights = sum(w.size for w in weights)
        self._weights_flat = arena.data[:n_weights]
        weight_sum = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        model.train()

        def loss_and_grad(flat):
            arena.data[...] = flat
            model.zero_grad()
            value, grad = self._loss(model.forward(X), target, sample_weight)
            model.backward(grad, input_grad=False)
            value += self._penalty(weight_sum)
            grad = arena.grad.astype(np.float64)
            weight_grads = grad[:n_weights]  # plus the penalties' gradients, as scikit-learn's
            if self.alpha and weight_sum > 0:
                weight_grads += self.alpha / weight_sum * self._weights_flat
            if self.l1:
                weight_grads += self.l1 * np.sign(self._weights_flat)
            return value, grad

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                   **_get_additional_lbfgs_options_dict("iprint", iprint)}
        try:
            result = scipy.optimize.minimize(loss_and_grad, arena.data.astype(np.float64),
                                             method="L-BFGS-B", jac=True, options=options)
        finally:
            model.eval()
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        arena.data[...] = result.x

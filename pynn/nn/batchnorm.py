"""Batch normalization over the batch axis."""
import numpy as np

from .._checks import MAX_FEATURES, check_int, check_real
from ._layer_checks import check_dtype_arg, check_input, config_int
from .module import Module
from .parameter import Parameter


class BatchCounter:
    """A BatchNorm's ``num_batches_tracked`` moved by one training batch, and the momentum
    its running statistics move by for that batch: the one place the layer's forward, a
    plan's forward and a compiled training step count batches.

    Counted in place, as ``+= 1`` on the 0-d buffer would, through a memoryview of it: an int
    item is ~0.05 us where the array's += is ~0.8 us, per layer and step. A buffer replaced
    (``load_state_dict``, an assignment) is followed at the next count."""

    __slots__ = ("layer", "count", "view")

    def __init__(self, layer):
        self.layer = layer
        self.count = self.view = None

    def next_momentum(self):
        count = self.layer._buffers["num_batches_tracked"]
        if count is not self.count:
            self.count, self.view = count, count.reshape(1).data
        view = self.view
        view[0] += 1
        momentum = self.layer.momentum
        # with momentum None the running statistics are the cumulative average
        return 1.0 / view[0] if momentum is None else momentum


class BatchNorm(Module):
    """Batch normalization. Ioffe & Szegedy, ICML 2015.

    Training: ``Y = gamma * (X - mean) / sqrt(var + eps) + beta`` with the batch mean and biased
    variance; running statistics move by ``momentum`` towards the batch mean and the *unbiased*
    variance (torch's convention). Evaluation uses the running statistics.

    Parameters
    ----------
    num_features : int
    momentum : float in [0, 1] or None, default 0.1
        None: the running statistics are the cumulative average over all batches (torch's).
    eps : float > 0, default 1e-5
    dtype : float32 (default) or float64

    Shape
    -----
    - Input: (N, num_features), N >= 2 in training mode
    - Output: (N, num_features)

    Attributes
    ----------
    weight, bias : Parameter (gamma, initialized to 1; beta, initialized to 0)
    running_mean, running_var : ndarray buffers (0 and 1 at first)
    num_batches_tracked : 0-d int64 buffer, training batches seen
    """

    def __init__(self, num_features, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = check_int("num_features", num_features, 1, MAX_FEATURES)
        if momentum is not None:
            momentum = check_real(
                "momentum", momentum, 0.0, 1.0,
                message="momentum must be a number in [0, 1] or None, got {value}")
        self.momentum = momentum
        self.eps = check_real("eps", eps, 0.0, low_open=True)
        self.dtype = check_dtype_arg(dtype)
        self.weight = Parameter(np.ones(self.num_features, self.dtype), name="weight")
        self.bias = Parameter(np.zeros(self.num_features, self.dtype), name="bias")
        self.register_buffer("running_mean", np.zeros(self.num_features, self.dtype))
        self.register_buffer("running_var", np.ones(self.num_features, self.dtype))
        # torch's counter (and state_dict key); with momentum=None it makes the running
        # statistics a cumulative average
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        self._cache = None

    # Functional halves (nothing cached on the layer), so a container can fuse the activation
    # that follows into these kernels without changing what this layer computes for others.
    def _train_apply(self, X, activation=None, param=None):
        """act(BN(X)) with batch statistics; updates the running statistics.
        Returns (Y, mean, invstd)."""
        X = check_input(self, X, features=self.num_features, dtype=self.dtype)
        if X.shape[0] < 2:
            raise ValueError(
                f"BatchNorm: expected more than 1 value per feature in training mode, got "
                f"input of shape {X.shape} (use eval() to normalize single samples)"
            )
        momentum = self._counter().next_momentum()
        reducer = self.__dict__.get("_stats_reducer")
        if reducer is not None:
            return _synced_forward(self, X, momentum, reducer, activation, param)
        return self.backend.batchnorm_forward_train(
            X, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            momentum, self.eps, activation=activation, param=param,
        )

    def sync_statistics(self, reducer):
        """Compute training-mode batch statistics over the rows of every replica (torch's
        SyncBatchNorm): ``reducer.sum(values)`` returns the sum over the replicas of a float64
        array, the same on each (``pynn.distributed.DataParallel(sync_batchnorm=True)`` sets
        its MPI world here); None goes back to this process's rows. The forward then averages
        over the global batch and the backward reduces its two column sums, so N replicas of
        B/N rows train like one of B. Parameter gradients stay this replica's part (the
        gradients' allreduce adds them up). Runs eagerly (the compiled step does not take it).
        """
        if reducer is None:
            self.__dict__.pop("_stats_reducer", None)
        else:
            self.__dict__["_stats_reducer"] = reducer  # not state: never saved or pickled
        Module.registry_version += 1  # plans built before do not know

    def _counter(self):
        """This layer's ``BatchCounter`` (made on first use; a copy makes its own)."""
        counter = self.__dict__.get("_batch_counter")
        if counter is None:
            # a cache, not state: no registration (and __getstate__ leaves it behind)
            counter = self.__dict__["_batch_counter"] = BatchCounter(self)
        return counter

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_batch_counter", None)  # a memoryview: neither pickled nor deep-copied
        state.pop("_stats_reducer", None)  # an MPI communicator: the copy is not synced
        return state

    def _eval_apply(self, X, activation=None, param=None):
        """act(BN(X)) with the running statistics; reads the layer, writes nothing."""
        X = check_input(self, X, features=self.num_features, dtype=self.dtype)
        return self.backend.batchnorm_forward_eval(
            X, self.weight.data, self.bias.data, self.running_mean, self.running_var, self.eps,
            activation=activation, param=param,
        )

    def _grad(self, dY, X, Y, mean, invstd, activation=None, param=None, input_grad=True):
        """Accumulate dgamma, dbeta (unless frozen); dX or None. ``mean`` None: the forward
        ran in eval mode (the layer was an affine map with the running statistics)."""
        # dY's batch size too: the eval-mode NumPy code below would broadcast a (1, F) dY
        dY = check_input(self, dY, "dY", features=self.num_features, dtype=self.dtype,
                         shape=X.shape)
        dgamma = self.weight.grad if self.weight.requires_grad else None
        dbeta = self.bias.grad if self.bias.requires_grad else None
        if dgamma is None and dbeta is None and not input_grad:
            return None
        if mean is not None and "_stats_reducer" in self.__dict__:
            dX = _synced_backward(self, dY, X, Y, mean, invstd, dgamma, dbeta, activation,
                                  param)
            return dX if input_grad else None
        if mean is not None:
            dX = self.backend.batchnorm_backward(
                dY, X, self.weight.data, mean, invstd, dgamma, dbeta, Y=Y,
                activation=activation, param=param,
            )
            return dX if input_grad else None
        return self._eval_grad(dY, X, activation, param, dgamma, dbeta, input_grad)

    def _eval_grad(self, dY, X, activation, param, dgamma, dbeta, input_grad):
        # In eval mode the layer is affine with the running statistics (constants):
        # dX = dZ * gamma * invstd, with dZ = dY * act'(Z) when an activation was fused.
        mean = self.running_mean.astype(np.float64)
        invstd = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        if activation is not None:
            Z = self._eval_apply(X)
            dY = self.backend.activation_backward(
                dY, Z, self.backend.activation_forward(Z, activation, param), activation, param
            )
        xhat = (X - mean) * invstd
        if dbeta is not None:
            dbeta += dY.sum(axis=0, dtype=np.float64).astype(self.dtype)
        if dgamma is not None:
            dgamma += (dY * xhat).sum(axis=0).astype(self.dtype)
        if not input_grad:
            return None
        return (dY * (self.weight.data * invstd)).astype(self.dtype)

    def forward(self, X):
        if self.training:
            Y, mean, invstd = self._train_apply(X)
            self._cache = (X, Y, mean, invstd)
        else:
            Y = self._eval_apply(X)
            self._cache = (X, Y, None, None)
        return Y

    def backward(self, dY, input_grad=True):
        self._check_cached("_cache")
        X, Y, mean, invstd = self._cache
        return self._grad(dY, X, Y, mean, invstd, input_grad=input_grad)

    def infer(self, X):
        return self._eval_apply(X)

    def config(self):
        return {
            "num_features": self.num_features,
            "momentum": self.momentum,
            "eps": self.eps,
            "dtype": self.dtype.name,
        }

    @classmethod
    def state_shapes(cls, config):
        n = config_int(config, "num_features")
        return {"weight": (n,), "bias": (n,), "running_mean": (n,), "running_var": (n,),
                "num_batches_tracked": ()}



# torch's SyncBatchNorm, in float64 NumPy (as the reference backend's BatchNorm): the local
# column sums are reduced over the replicas, each a fixed number of times per step, so every
# replica calls the reducer in the same order.
def _synced_forward(layer, X, momentum, reducer, activation, param):
    x = X.astype(np.float64)
    totals = reducer.sum(np.append(x.sum(axis=0), x.shape[0]))
    n = totals[-1]
    if n < 2:
        raise ValueError(f"BatchNorm: expected more than 1 value per feature in training "
                         f"mode over all replicas, got {int(n)} rows")
    mean = totals[:-1] / n
    var = reducer.sum(((x - mean) ** 2).sum(axis=0)) / n
    invstd = 1.0 / np.sqrt(var + layer.eps)
    layer.running_mean[...] = ((1.0 - momentum) * layer.running_mean.astype(np.float64)
                               + momentum * mean)
    layer.running_var[...] = ((1.0 - momentum) * layer.running_var.astype(np.float64)
                              + momentum * var * n / (n - 1))
    layer.__dict__["_synced_rows"] = n
    Y = _synced_normalize(layer, x, mean, invstd)
    if activation is not None:  # a container fused the activation after it
        Y = layer.backend.activation_forward(Y, activation, param)
    return Y, mean, invstd


def _synced_normalize(layer, x, mean, invstd):
    return ((x - mean) * invstd * layer.weight.data + layer.bias.data).astype(layer.dtype)


def _synced_backward(layer, dY, X, Y, mean, invstd, dgamma, dbeta, activation, param):
    """dY is the gradient of the global loss (the mean over every replica's rows)."""
    x = X.astype(np.float64)
    if activation is not None:
        Z = _synced_normalize(layer, x, mean, invstd)
        dY = layer.backend.activation_backward(dY, Z, Y, activation, param)
    dz = dY.astype(np.float64)
    xhat = (x - mean) * invstd
    sums = np.concatenate([dz.sum(axis=0), (dz * xhat).sum(axis=0)])
    if dbeta is not None:
        dbeta += sums[:layer.num_features]
    if dgamma is not None:
        dgamma += sums[layer.num_features:]
    total = layer.__dict__["_stats_reducer"].sum(sums)
    n = layer.__dict__["_synced_rows"]
    sum_dz, sum_dz_xhat = total[:layer.num_features], total[layer.num_features:]
    return (layer.weight.data * invstd / n * (n * dz - sum_dz - xhat * sum_dz_xhat)).astype(
        layer.dtype)

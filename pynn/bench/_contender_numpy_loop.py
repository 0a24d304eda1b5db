"""The ``numpy-loop`` contender of ``pynn bench``: the training loop a student writes in plain
NumPy (:class:`NumpyLoopMLP`), the same network and update rule as pynn's."""
import numpy as np

# Loaded by path by pynn/bench/_worker.py, after it loaded _cases.py as _pynn_bench_cases
# (this file is not imported as part of the pynn package: see _worker.py).
from _pynn_bench_cases import (LR, SEED, batch_bounds, epoch_order, inference_weights,
                               initial_weights, run_case)


class NumpyLoopMLP:
    """The training loop a student writes in plain NumPy: forward, softmax cross-entropy,
    backward, Adam; BatchNorm when asked. Nothing preallocated, nothing fused.

    Same network and update rule as the pynn contender (Dense -> [BatchNorm ->] ReLU blocks,
    mean cross-entropy, Adam with lr 1e-3, betas (0.9, 0.999), eps 1e-8; BatchNorm with batch
    statistics, eps 1e-5, running statistics with momentum 0.1 and the unbiased variance), so
    from the same weights it follows the same loss trajectory (checked by the tests).

    ``params``: list per Dense layer of dicts with "W" (out, in), "b" and, for a hidden layer
    with BatchNorm, "gamma", "beta", "running_mean", "running_var".
    """

    def __init__(self, sizes, bn, dtype=np.float32, seed=SEED, params=None,
                 lr=LR, betas=(0.9, 0.999), eps=1e-8, bn_eps=1e-5, momentum=0.1):
        self.sizes, self.bn, self.dtype = tuple(sizes), bn, np.dtype(dtype)
        self.lr, self.beta1, self.beta2, self.eps = lr, betas[0], betas[1], eps
        self.bn_eps, self.momentum = bn_eps, momentum
        if params is None:
            params = initial_weights(sizes, bn, dtype, seed)
        self.params = params
        self.trainable = [(i, k) for i, layer in enumerate(params)
                          for k in ("W", "b", "gamma", "beta") if k in layer]
        self.m = [np.zeros_like(params[i][k]) for i, k in self.trainable]
        self.v = [np.zeros_like(params[i][k]) for i, k in self.trainable]
        self.t = 0

    @classmethod
    def from_pynn(cls, model, sizes, bn, **kwargs):
        """The same weights (and running statistics) as a :func:`pynn_model` network."""
        sd = model.state_dict()
        n_layers = len(sizes) - 1
        per_block = 3 if bn else 2
        params = []
        for i in range(n_layers):
            d = i * per_block
            layer = {"W": sd[f"{d}.weight"].copy(), "b": sd[f"{d}.bias"].copy()}
            if bn and i < n_layers - 1:
                layer.update(gamma=sd[f"{d + 1}.weight"].copy(), beta=sd[f"{d + 1}.bias"].copy(),
                             running_mean=sd[f"{d + 1}.running_mean"].copy(),
                             running_var=sd[f"{d + 1}.running_var"].copy())
            params.append(layer)
        return cls(sizes, bn, dtype=sd["0.weight"].dtype, params=params, **kwargs)

    def forward(self, X, train=True):
        """Logits, and what backward needs."""
        cache = []
        a = X
        for i, layer in enumerate(self.params):
            z = a @ layer["W"].T + layer["b"]
            if i == len(self.params) - 1:
                cache.append((a, None))
                return z, cache
            bn = None
            if "gamma" in layer:
                if train:
                    mean = z.mean(axis=0)
                    var = z.var(axis=0)
                    n = z.shape[0]
                    mom = self.momentum
                    layer["running_mean"] = (1 - mom) * layer["running_mean"] + mom * mean
                    layer["running_var"] = (1 - mom) * layer["running_var"] + \
                        mom * var * n / (n - 1)
                else:
                    mean, var = layer["running_mean"], layer["running_var"]
                invstd = 1.0 / np.sqrt(var + self.bn_eps)
                xhat = (z - mean) * invstd
                z = layer["gamma"] * xhat + layer["beta"]
                bn = (xhat, invstd)
            cache.append((a, (z, bn)))
            a = np.maximum(z, 0)

    def step(self, X, y):
        """One training step on the batch (X, y); returns the mean cross-entropy."""
        logits, cache = self.forward(X)
        n = X.shape[0]
        # softmax cross-entropy
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(n), y]))
        dz = p
        dz[np.arange(n), y] -= 1
        dz /= n
        # backward
        grads = {}
        for i in range(len(self.params) - 1, -1, -1):
            layer = self.params[i]
            a_prev, _ = cache[i]
            grads[i, "W"] = dz.T @ a_prev
            grads[i, "b"] = dz.sum(axis=0)
            if i == 0:
                break  # no gradient for the data
            da = dz @ layer["W"]
            z_prev, bn = cache[i - 1][1]
            dz = da * (z_prev > 0)  # ReLU
            if bn is not None:
                xhat, invstd = bn
                prev = self.params[i - 1]
                grads[i - 1, "gamma"] = (dz * xhat).sum(axis=0)
                grads[i - 1, "beta"] = dz.sum(axis=0)
                dxhat = dz * prev["gamma"]
                dz = invstd / n * (n * dxhat - dxhat.sum(axis=0)
                                   - xhat * (dxhat * xhat).sum(axis=0))
        # Adam
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        for j, (i, k) in enumerate(self.trainable):
            layer, g = self.params[i], grads[i, k]
            self.m[j] = b1 * self.m[j] + (1 - b1) * g
            self.v[j] = b2 * self.v[j] + (1 - b2) * g * g
            m_hat = self.m[j] / (1 - b1 ** self.t)
            v_hat = self.v[j] / (1 - b2 ** self.t)
            layer[k] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return float(loss)

    def predict(self, X, batch_size=1024):
        return np.concatenate([self.forward(X[i:i + batch_size], train=False)[0]
                               for i in range(0, X.shape[0], batch_size)], axis=0)


def time_numpy_loop(spec, X, y, dtype, threads, info):
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    params = None
    if spec["kind"] in ("predict", "latency"):
        params = inference_weights(spec, dtype)
    net = NumpyLoopMLP(spec["sizes"], spec["bn"], dtype, params=params)
    batch = spec["batch"]
    warm = min(spec["warmup"], len(batch_bounds(X.shape[0], batch))) * batch

    def run(Xe, ye, order, bounds):
        for lo, hi in bounds:
            idx = order[lo:hi]
            net.step(Xe[idx], ye[idx])

    return run_case(
        spec, X, y, net.step, lambda Xp: net.predict(Xp, batch),
        lambda rep: run(X, y, epoch_order(rep, X.shape[0]), batch_bounds(X.shape[0], batch)),
        lambda: run(X, y, np.arange(warm), batch_bounds(warm, batch)))

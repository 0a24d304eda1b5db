"""The other libraries as contenders of ``pynn bench``: torch eager (Adam fused where it
applies) and scikit-learn's MLPClassifier. Each imports its library only inside its contender,
so a missing one is a skip, not an error."""
import numpy as np

# Loaded by path by pynn/bench/_worker.py, after it loaded _cases.py as _pynn_bench_cases
# (this file is not imported as part of the pynn package: see _worker.py).
from _pynn_bench_cases import (LR, SEED, batch_bounds, epoch_order, inference_weights,
                               layer_dims, run_case, time_epochs, time_fits)


def torch_model(torch, sizes, bn, dtype, dropout=0.0):
    layers = []
    dims = layer_dims(sizes)
    for i, (n_in, n_out) in enumerate(dims):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(dims) - 1:
            if bn:
                layers.append(torch.nn.BatchNorm1d(n_out))
            layers.append(torch.nn.ReLU())
            if dropout:
                layers.append(torch.nn.Dropout(dropout))
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
    return torch.nn.Sequential(*layers).to(tdtype[np.dtype(dtype)])


def torch_resnet(torch, spec, dtype):
    """The "resnet" case's ResNet-MLP in torch (the same layers as pynn_resnet)."""
    nn = torch.nn
    n_in, d, n_out = spec["sizes"]

    class Residual(nn.Module):
        def __init__(self, *layers):
            super().__init__()
            self.block = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.block(x)

    layers = [nn.Linear(n_in, d)]
    for _ in range(spec["blocks"]):
        layers.append(Residual(nn.LayerNorm(d), nn.Linear(d, spec["inner"]), nn.GELU(),
                               nn.Dropout(spec["dropout"]), nn.Linear(spec["inner"], d)))
    layers += [nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, n_out)]
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
    return nn.Sequential(*layers).to(tdtype[np.dtype(dtype)])


def torch_load_weights(torch, model, weights):
    """``inference_weights``' arrays into a :func:`torch_model` network."""
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]
    with torch.no_grad():
        for layer, w in zip(linear, weights):
            layer.weight.copy_(torch.from_numpy(w["W"]))
            layer.bias.copy_(torch.from_numpy(w["b"]))
        for layer, w in zip(norms, weights):
            layer.weight.copy_(torch.from_numpy(w["gamma"]))
            layer.bias.copy_(torch.from_numpy(w["beta"]))
            layer.running_mean.copy_(torch.from_numpy(w["running_mean"]))
            layer.running_var.copy_(torch.from_numpy(w["running_var"]))
    return model


def torch_adam(torch, params, info, name="adam"):
    """Adam (or AdamW: ``name``) with ``fused=True`` where this torch supports it, else
    ``foreach=True``."""
    params = list(params)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    info["torch_optimizer"] = cls.__name__
    try:
        opt = cls(params, lr=LR, fused=True)
        info["torch_adam"] = "fused"
    except (RuntimeError, ValueError, TypeError) as exc:
        opt = cls(params, lr=LR, foreach=True)
        info["torch_adam"] = f"foreach (fused refused: {exc})"
    return opt


def time_torch(spec, X, y, dtype, threads, info):
    import torch

    torch.set_num_threads(threads)
    info.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                torch_config=torch.__config__.parallel_info())
    if spec.get("net") == "resnet":
        model = torch_resnet(torch, spec, dtype)
    else:
        model = torch_model(torch, spec["sizes"], spec["bn"], dtype,
                            dropout=spec.get("dropout", 0.0))
    loss_fn = torch.nn.CrossEntropyLoss()
    name = spec.get("optimizer", "adam")
    opt = torch_adam(torch, model.parameters(), info, name)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    batch = spec["batch"]

    def step(Xb, yb):
        opt.zero_grad()
        loss = loss_fn(model(Xb), yb)
        loss.backward()
        opt.step()
        return loss

    def predict(Xp):  # (only the predict and latency cases call it: eval mode throughout)
        with torch.no_grad():
            if Xp.shape[0] <= batch:
                return model(Xp)
            return torch.cat([model(Xp[i:i + batch]) for i in range(0, Xp.shape[0], batch)])

    if spec["kind"] in ("predict", "latency"):
        torch_load_weights(torch, model, inference_weights(spec, dtype)).eval()
        info.pop("torch_adam")  # no training here: no Adam to report
        info.pop("torch_optimizer")
    else:
        try:  # a fused step the build cannot run shows here, not in the middle of the timing
            step(Xt[:2], yt[:2])
        except RuntimeError as exc:
            if info["torch_adam"] != "fused":
                raise
            cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
            opt = cls(model.parameters(), lr=LR, foreach=True)
            info["torch_adam"] = f"foreach (fused step failed: {exc})"

    n = X.shape[0]
    warm = min(spec["warmup"], len(batch_bounds(n, batch))) * batch

    def run(order, bounds):
        order = torch.from_numpy(order)
        for lo, hi in bounds:
            idx = order[lo:hi]
            step(Xt[idx], yt[idx])

    return run_case(spec, Xt, yt, step, predict,
                     lambda rep: run(epoch_order(rep, n), batch_bounds(n, batch)),
                     lambda: run(np.arange(warm), batch_bounds(warm, batch)))


# ------------------------------------------------------------------------------ scikit-learn
def time_sklearn(spec, X, y, dtype, threads, info):
    from threadpoolctl import threadpool_limits

    import sklearn
    from sklearn.neural_network import MLPClassifier

    threadpool_limits(threads)
    info["sklearn_version"] = sklearn.__version__
    if spec["kind"] == "fit":
        info["epoch_via"] = "sklearn.neural_network.MLPClassifier.fit"
        return time_fits(MLPClassifier, spec, X, y, info)
    info["note"] = "MLPClassifier has no BatchNorm: Dense-ReLU layers of the same widths"
    batch = spec["batch"]
    clf = MLPClassifier(hidden_layer_sizes=spec["sizes"][1:-1], activation="relu",
                        solver="adam", batch_size=batch, learning_rate_init=LR, shuffle=True,
                        random_state=SEED)
    classes = np.arange(spec["sizes"][-1])
    warm = min(spec["warmup"], len(batch_bounds(X.shape[0], batch))) * batch
    # partial_fit: one pass (epoch) over the data it is given, in shuffled mini-batches; the
    # warm-up pass over a few batches also initializes the weights
    clf.partial_fit(X[:warm], y[:warm], classes=classes)
    return time_epochs(lambda rep: clf.partial_fit(X, y), spec["reps"])

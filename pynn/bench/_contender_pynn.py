"""The pynn contenders of ``pynn bench`` (pynn, pynn-eager, pynn-loop, pynn-numpy,
pynn-after-torch): the network, pynn's training step (:func:`pynn_train_step`, the one place
that says which public path is timed) and the timing of each case kind."""
import numpy as np

# Loaded by path by pynn/bench/_worker.py, after it loaded _cases.py as _pynn_bench_cases
# (this file is not imported as part of the pynn package: see _worker.py).
from _pynn_bench_cases import (LR, SEED, TunerWatch, batch_bounds, epoch_order,
                               inference_weights, layer_dims, run_case, time_fits)


def pynn_resnet(spec, dtype, seed=SEED):
    """The "resnet" case's ResNet-MLP (see _cases.py), He init, float ``dtype``."""
    from pynn import nn

    n_in, d, n_out = spec["sizes"]
    inner = spec["inner"]
    layers = [nn.Dense(n_in, d, init="he_normal", seed=seed, dtype=dtype)]
    for b in range(spec["blocks"]):
        layers.append(nn.Residual(
            nn.LayerNorm(d, dtype=dtype),
            nn.Dense(d, inner, init="he_normal", seed=seed + 2 * b + 1, dtype=dtype), nn.GELU(),
            nn.Dropout(spec["dropout"], seed=seed + b),
            nn.Dense(inner, d, init="he_normal", seed=seed + 2 * b + 2, dtype=dtype)))
    layers += [nn.LayerNorm(d, dtype=dtype), nn.ReLU(),
               nn.Dense(d, n_out, init="xavier_normal", seed=seed + 99, dtype=dtype)]
    return nn.Sequential(*layers)


def pynn_model(sizes, bn, dtype, seed=SEED, dropout=0.0):
    """Dense (He init) [-> BatchNorm] -> ReLU [-> Dropout] blocks, then a Dense to the
    outputs."""
    from pynn import nn

    layers = []
    dims = layer_dims(sizes)
    for i, (n_in, n_out) in enumerate(dims):
        last = i == len(dims) - 1
        layers.append(nn.Dense(n_in, n_out, init="xavier_normal" if last else "he_normal",
                               seed=seed + i, dtype=dtype))
        if not last:
            if bn:
                layers.append(nn.BatchNorm(n_out, dtype=dtype))
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout, seed=seed + i))
    return nn.Sequential(*layers)


def load_weights(model, weights):
    """``inference_weights``' arrays into a :func:`pynn_model` network, in place."""
    from pynn import nn

    dense = [m for m in model if isinstance(m, nn.Dense)]
    norms = [m for m in model if isinstance(m, nn.BatchNorm)]
    for layer, w in zip(dense, weights):
        layer.weight.data = w["W"]
        layer.bias.data = w["b"]
    for layer, w in zip(norms, weights):
        layer.weight.data = w["gamma"]
        layer.bias.data = w["beta"]
        layer.running_mean[...] = w["running_mean"]
        layer.running_var[...] = w["running_var"]
    return model


def pynn_train_step(model, loss, optimizer, eager=False):
    """pynn's training step, ``step(X, y) -> loss value``, and the name of the path it takes.

    Every pynn contender and case takes its step from here, so this is the one place to change
    when pynn's fastest public training path changes: ``model.train_step`` (the compiled step),
    or with ``eager`` the PyTorch-style loop of the README. The path taken is recorded in the
    results, so a table always says what it timed.
    """
    if not eager:
        return (lambda X, y: model.train_step(X, y, loss, optimizer)), "model.train_step"

    def step(X, y):
        optimizer.zero_grad()
        value = loss.forward(model.forward(X), y)
        model.backward(loss.backward(), input_grad=False)  # no dX for the data
        optimizer.step()
        return value

    return step, "eager (zero_grad, forward, loss, backward, step)"


def time_pynn(spec, X, y, dtype, threads, backend, info, fit=True, eager=False):
    import pynn
    from pynn import nn

    pynn.set_backend(backend)
    pynn.set_num_threads(threads)
    if spec["kind"] == "fit":
        from pynn.sklearn import MLPClassifier

        info.update(pynn_file=pynn.__file__, pynn_version=pynn.__version__,
                    pynn_threads=pynn.get_num_threads(), pynn_backend=pynn.get_backend().name,
                    epoch_via="pynn.sklearn.MLPClassifier.fit")
        times = time_fits(MLPClassifier, spec, X, y, info)
        info["tuner"] = tuner_info(0)  # (each fit's first steps tune: part of a user's fit)
        return times
    if spec.get("net") == "resnet":
        model = pynn_resnet(spec, dtype)
    else:
        model = pynn_model(spec["sizes"], spec["bn"], dtype, dropout=spec.get("dropout", 0.0))
    if spec["kind"] in ("predict", "latency"):
        load_weights(model, inference_weights(spec, dtype)).eval()
    loss = nn.CrossEntropyLoss()
    optimizer = pynn.optim.AdamW if spec.get("optimizer") == "adamw" else pynn.optim.Adam
    opt = optimizer(model.parameters(), lr=LR)
    step, path = pynn_train_step(model, loss, opt, eager=eager)
    info.update(pynn_file=pynn.__file__, pynn_version=pynn.__version__,
                pynn_threads=pynn.get_num_threads(), pynn_backend=pynn.get_backend().name)
    if spec["kind"] == "step" or (spec["kind"] == "epoch" and not fit):
        info["step_path"] = path
    if spec["kind"] == "step" and not eager:
        program = model.compiled_step(X[:spec["batch"]], loss, opt)
        # what the timed step runs: the compiled program's ops, or the eager lines
        info["compiled_ops"] = None if program is None else program.op_names()
    batch = spec["batch"]
    bounds = batch_bounds(X.shape[0], batch)
    warm = min(spec["warmup"], len(bounds)) * batch
    if spec["kind"] == "epoch" and fit:
        info["epoch_via"] = "Trainer.fit(epochs=1, verbose=0)"
        trainer = pynn.Trainer(model, loss, opt)

        def warm_epoch():
            trainer.fit(X[:warm], y[:warm], epochs=1, batch_size=batch, seed=0, verbose=0)

        def epoch(rep):
            trainer.fit(X, y, epochs=1, batch_size=batch, seed=rep, verbose=0)
    else:
        if spec["kind"] == "epoch":
            info["epoch_via"] = "hand-written loop over the same batches"

        def run(Xe, ye, order, b):
            model.train()
            for lo, hi in b:
                idx = order[lo:hi]
                step(Xe[idx], ye[idx])

        def warm_epoch():
            run(X, y, np.arange(warm), batch_bounds(warm, batch))

        def epoch(rep):
            run(X, y, epoch_order(rep, X.shape[0]), bounds)

    def predict(Xp):
        return model.predict(Xp, batch_size=batch)

    watch = TunerWatch(pynn.tune.measurements)
    times = run_case(spec, X, y, step, predict, epoch, warm_epoch, watch)
    info["tuner"] = tuner_info(watch.retimed)
    return times


def tuner_info(retimed):
    """What pynn.tune decided in this process (``info["tuner"]``): its mode, every choice
    (key, strategy, how it was decided, the candidates' times), the milliseconds spent
    measuring, and how many repetitions were timed again because the tuner measured during
    them (``retimed``)."""
    import pynn

    mode, _, measuring_ms = pynn.tune.summary()
    return {"mode": mode, "choices": pynn.tune.choices(), "measuring_ms": measuring_ms,
            "retimed": retimed}

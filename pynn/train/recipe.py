"""The lecture's recipe, one place for everything that builds it: ``pynn train`` and
``pynn.search`` train the same network with the same optimizers.

The network: for each hidden width, Dense (He init) -> BatchNorm -> ReLU [-> Dropout], then a
Dense output layer (Xavier init). Every layer is seeded from one ``seed``, so two runs with the
same arguments start from the same weights and draw the same dropout masks.
"""
from .._checks import check_int, check_real

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam", "radam")
_OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
                      "adagrad": "Adagrad", "nadam": "NAdam", "radam": "RAdam"}


def build_mlp(n_in, hidden, n_out, dropout=0.0, seed=0):
    """The recipe's Sequential: ``[Dense(He) -> BatchNorm -> ReLU (-> Dropout)] x len(hidden)
    -> Dense(Xavier)``, float32.

    Parameters
    ----------
    n_in, n_out : int
        Input features and outputs (classes, or regression targets).
    hidden : sequence of int
        Hidden layer widths; empty for a linear model.
    dropout : float in [0, 1), default 0
        Dropout probability after each hidden block (0: no Dropout layers).
    seed : int, default 0
        Seeds every layer's initialization and dropout masks.
    """
    from ..nn import BatchNorm, Dense, Dropout, ReLU, Sequential

    n_in = check_int("n_in", n_in, 1)
    n_out = check_int("n_out", n_out, 1)
    dropout = check_real("dropout", dropout, 0.0, 1.0, high_open=True)
    seed = check_int("seed", seed, 0)
    layers, width = [], n_in
    for i, h in enumerate(hidden):
        h = check_int(f"hidden[{i}]", h, 1)
        layers += [Dense(width, h, init="he_normal", seed=seed * 1000 + i), BatchNorm(h), ReLU()]
        if dropout > 0:
            layers.append(Dropout(dropout, seed=seed * 1000 + i))
        width = h
    layers.append(Dense(width, n_out, init="xavier_normal", seed=seed * 1000 + 999))
    return Sequential(*layers)


def make_optimizer(name, params, lr):
    """The recipe's optimizer ``name`` (one of OPTIMIZERS) over ``params`` at learning rate ``lr``,
    with torch's defaults otherwise; SGD gets momentum 0.9."""
    from .. import optim

    if name not in _OPTIMIZER_CLASSES:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    kwargs = {"lr": lr}
    if name == "sgd":
        kwargs["momentum"] = 0.9  # plain SGD on this recipe crawls; momentum is the lecture's fix
    return getattr(optim, _OPTIMIZER_CLASSES[name])(params, **kwargs)

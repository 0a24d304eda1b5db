"""What a search searches: the lecture's knobs, their checks and defaults, grids and the
distributions random search draws from."""
import itertools
import math

import numpy as np

from .._checks import check_int, check_real
from ..train.recipe import OPTIMIZERS


def _check_hidden(name, value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of layer widths like (256, 128), got "
                        f"{type(value).__name__}")
    return tuple(check_int(f"{name}[{i}]", h, 1) for i, h in enumerate(value))


def _check_optimizer(name, value):
    if value not in OPTIMIZERS:
        raise ValueError(f"{name} must be one of {', '.join(OPTIMIZERS)}, got {value!r}")
    return value


# The lecture's knobs: name -> (check(name, value) -> value, default, kind). "log" knobs are
# plotted on a log axis, "categorical" ones by position; continuous distributions are allowed
# on "real" and "log" knobs only.
KNOBS = {
    "lr": (lambda n, v: check_real(n, v, 0.0, low_open=True), 1e-3, "log"),
    # the per-epoch lr multiplier of ExponentialLR: 1 keeps lr constant
    "lr_decay": (lambda n, v: check_real(n, v, 0.0, 1.0, low_open=True), 0.95, "real"),
    "batch_size": (lambda n, v: check_int(n, v, 1), 64, "int"),
    "dropout": (lambda n, v: check_real(n, v, 0.0, 1.0, high_open=True), 0.0, "real"),
    "hidden": (_check_hidden, (256, 128), "categorical"),
    "optimizer": (_check_optimizer, "adam", "categorical"),
}
DEFAULTS = {name: spec[1] for name, spec in KNOBS.items()}


class LogUniform:
    """``exp(U(log low, log high))``: every decade of [low, high] is equally likely.

    The lecture's way to draw a learning rate: 1e-4..1e-3 gets as many trials as 1e-2..1e-1,
    where a uniform draw would put 90% of them in the top decade.
    """

    def __init__(self, low, high):
        self.low = check_real("low", low, 0.0, low_open=True)
        self.high = check_real("high", high, self.low, low_open=True)

    def sample(self, rng):
        return float(np.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def bounds(self):
        return (self.low, self.high)

    def __repr__(self):
        return f"LogUniform({self.low:g}, {self.high:g})"


class Uniform:
    """``U(low, high)``: every value of [low, high) equally likely."""

    def __init__(self, low, high):
        self.low = check_real("low", low)
        self.high = check_real("high", high, self.low, low_open=True)

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def bounds(self):
        return (self.low, self.high)

    def __repr__(self):
        return f"Uniform({self.low:g}, {self.high:g})"


class Choice:
    """One of ``options``, each with probability 1 / len(options)."""

    def __init__(self, options):
        self.options = list(options) if isinstance(options, (list, tuple)) else None
        if not self.options:
            raise ValueError(f"options must be a non-empty list, got {options!r}")

    def sample(self, rng):
        # by index: options may be tuples (hidden sizes), which rng.choice would turn into rows
        return self.options[int(rng.integers(len(self.options)))]

    def __repr__(self):
        return f"Choice({self.options!r})"


# Random search's default space and the default grid (`pynn search --method grid`) span the same
# knobs and ranges, so the two can be compared point for point: 16 grid points (4 x 2 x 2),
# the other knobs at their defaults.
DEFAULT_SPACE = {
    "lr": LogUniform(1e-4, 1e-1),
    "batch_size": Choice([32, 64, 128]),
    "dropout": Uniform(0.0, 0.3),
}
DEFAULT_GRID = {
    "lr": [1e-4, 1e-3, 1e-2, 1e-1],
    "batch_size": [32, 128],
    "dropout": [0.0, 0.3],
}


def _check_knob(where, name):
    if name not in KNOBS:
        raise ValueError(f"{where}: unknown knob {name!r}; the knobs are {', '.join(KNOBS)}")


def check_grid(grid):
    """``grid`` (knob -> list of values) with every value checked; a dict of tuples."""
    if not isinstance(grid, dict) or not grid:
        raise TypeError(f"grid must be a non-empty dict of knob -> list of values, got "
                        f"{grid!r}")
    checked = {}
    for name, values in grid.items():
        _check_knob("grid", name)
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
        check = KNOBS[name][0]
        checked[name] = tuple(check(f"grid[{name!r}][{i}]", v) for i, v in enumerate(values))
    return checked


def expand_grid(grid):
    """Every combination of a checked grid, in order (the last knob varies fastest), each with
    the other knobs at their defaults."""
    names = list(grid)
    return [{**DEFAULTS, **dict(zip(names, combo))}
            for combo in itertools.product(*(grid[n] for n in names))]


def check_space(space):
    """``space`` (knob -> distribution, list of options or a fixed value) with every bound and
    option checked; lists become ``Choice``."""
    if not isinstance(space, dict) or not space:
        raise TypeError(f"space must be a non-empty dict of knob -> distribution, got {space!r}")
    checked = {}
    for name, dist in space.items():
        _check_knob("space", name)
        check, _, kind = KNOBS[name]
        where = f"space[{name!r}]"
        if isinstance(dist, list):
            dist = Choice(dist)
        if isinstance(dist, Choice):
            dist = Choice([check(f"{where}.options[{i}]", v) for i, v in enumerate(dist.options)])
        elif isinstance(dist, (Uniform, LogUniform)):
            if kind not in ("real", "log"):
                raise TypeError(f"{where}: {name} takes a list of values (Choice), not a "
                                f"continuous {type(dist).__name__}")
            for label, bound in zip(("low", "high"), dist.bounds()):
                check(f"{where}.{label}", bound)
        elif hasattr(dist, "sample"):
            pass  # a distribution of the user's own: each draw is checked by sample_space
        else:
            dist = Choice([check(where, dist)])  # a fixed value
        checked[name] = dist
    return checked


def sample_space(space, n_trials, rng):
    """``n_trials`` parameter dicts drawn from a checked space (the knobs in the space's order,
    one draw each per trial), the other knobs at their defaults."""
    trials = []
    for t in range(n_trials):
        params = dict(DEFAULTS)
        for name, dist in space.items():
            params[name] = KNOBS[name][0](f"space[{name!r}] draw {t}", dist.sample(rng))
        trials.append(params)
    return trials

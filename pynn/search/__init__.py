"""Hyper-parameter search over the lecture's knobs (lr, lr annealing factor, batch size,
dropout, hidden sizes, optimizer): ``grid_search`` and ``random_search`` train the recipe of
``pynn train`` per trial, score it on one validation holdout, run trials in parallel through
joblib (the ``search`` extra), and return a ``SearchResult`` (a table best first, the winner
refit, a plot of the score against each knob).

>>> from pynn.search import LogUniform, Uniform, random_search
>>> result = random_search(X, y, {"lr": LogUniform(1e-4, 1e-1), "dropout": Uniform(0, 0.5)},
...                        n_trials=16, n_jobs=2)
>>> print(result.table())
"""
from .core import grid_search, random_search
from .result import SearchResult
from .space import DEFAULT_GRID, DEFAULT_SPACE, DEFAULTS, KNOBS, Choice, LogUniform, Uniform

__all__ = ["Choice", "DEFAULTS", "DEFAULT_GRID", "DEFAULT_SPACE", "KNOBS", "LogUniform",
           "SearchResult", "Uniform", "grid_search", "random_search"]

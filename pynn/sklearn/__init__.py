"""scikit-learn drop-in estimators: ``MLPClassifier`` and ``MLPRegressor``.

Same parameter names, defaults and fitted attributes as ``sklearn.neural_network``'s classes,
trained by pynn's compiled Sequential step and optimizers, plus what scikit-learn's MLP lacks
(``batch_norm``, ``layer_norm``, ``dropout``, ``l1``, more activations (``gelu``, ``silu``, ...)
and solvers, ``lr_scheduler``, ``class_weight``, a validation loss curve). Needs the ``sklearn``
extra: ``pip install 'pynn[sklearn]'``.
"""
try:
    import sklearn  # noqa: F401
except ImportError:
    raise ImportError(
        "pynn.sklearn needs scikit-learn, an optional dependency: "
        "pip install 'pynn[sklearn]' (or pip install scikit-learn)"
    ) from None

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

"""Layers, containers, losses, initializers (``nn.init``), gradient clipping (``nn.utils``) and
``gradcheck``."""
from . import init, utils
from ._gradcheck import GradcheckError, gradcheck
from .activations import (ELU, GELU, Activation, Identity, LeakyReLU, Mish, ReLU, Sigmoid, SiLU,
                          Softmax, Softplus, Square, Step, Tanh)
from .batchnorm import BatchNorm
from .containers import ModuleList, Sequential
from .dense import Dense
from .dropout import Dropout
from .losses import (BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, Loss, MSELoss,
                     SmoothL1Loss)
from ._state_dict import IncompatibleKeys
from .module import Module
from .normalization import LayerNorm, RMSNorm
from .residual import Residual
from .parameter import Parameter, ParameterArena, pack
from .standardizer import Standardizer

# The execution plans (``plan``, ``inference``, ``train_step``) are the containers' internals:
# importable as submodules, not part of the names ``from pynn.nn import *`` hands out.
__all__ = [
    "Activation", "BCEWithLogitsLoss", "BatchNorm", "CrossEntropyLoss", "Dense", "Dropout", "ELU",
    "GELU", "GradcheckError", "HuberLoss", "Identity", "IncompatibleKeys", "L1Loss",
    "LayerNorm", "LeakyReLU", "Loss", "MSELoss", "Mish", "Module", "ModuleList", "Parameter",
    "ParameterArena", "RMSNorm", "ReLU", "Residual", "Sequential", "Sigmoid", "SiLU",
    "SmoothL1Loss",
    "Softmax",
    "Softplus", "Square", "Standardizer", "Step", "Tanh", "gradcheck", "init", "pack", "utils",
]

"""Layers, containers, losses and initializers."""
from . import inference, init, plan, utils
from .activations import ELU, Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Square, Step, Tanh
from .batchnorm import BatchNorm
from .containers import ModuleList, Sequential
from .dense import Dense
from .dropout import Dropout
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .module import IncompatibleKeys, Module
from .parameter import Parameter, ParameterArena, pack

__all__ = [
    "Activation", "BCEWithLogitsLoss", "BatchNorm", "CrossEntropyLoss", "Dense", "Dropout", "ELU",
    "Identity", "IncompatibleKeys", "LeakyReLU", "Loss", "MSELoss", "Module", "ModuleList",
    "Parameter", "ParameterArena", "ReLU", "Sequential", "Sigmoid", "Softmax", "Square", "Step",
    "Tanh", "inference", "init", "pack", "plan", "utils",
]

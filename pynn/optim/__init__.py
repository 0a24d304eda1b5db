"""Optimizers and learning-rate schedules (torch's names, arguments, defaults and semantics).

Each optimizer packs its parameters into one contiguous arena per dtype and updates a whole
param group with one fused backend call per step.
"""
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .lr_scheduler import (CosineAnnealingLR, ExponentialLR, LinearLR, LRScheduler, MultiStepLR,
                           ReduceLROnPlateau, StepLR)
from .lr_sequences import OneCycleLR, SequentialLR
from .nadam import NAdam
from .optimizer import Optimizer
from .radam import RAdam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Adagrad", "Adam", "AdamW", "CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LinearLR",
    "MultiStepLR", "NAdam", "OneCycleLR", "Optimizer", "RAdam", "RMSprop", "ReduceLROnPlateau",
    "SGD", "SequentialLR", "StepLR",
]

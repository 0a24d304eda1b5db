"""Training: ``Trainer`` (fit, evaluate, predict, resume), its callbacks and ``History``, and
the lecture's recipe (``pynn.train.recipe``)."""
from .callbacks import (CSVLogger, Callback, EarlyStopping, LRSchedulerCallback,
                        ModelCheckpoint, TerminateOnNaN, restore, snapshot)
from .history import History
from .trainer import Trainer

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LRSchedulerCallback",
           "ModelCheckpoint", "TerminateOnNaN", "Trainer", "restore", "snapshot"]

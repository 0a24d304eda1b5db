"""``pynn.callbacks``, the callbacks' public path before they moved into ``pynn.train``: the same
classes, for code that imports them from here."""
from .train.callbacks import (CSVLogger, Callback, EarlyStopping, LRSchedulerCallback,
                              ModelCheckpoint, TerminateOnNaN, restore, snapshot)

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "LRSchedulerCallback", "ModelCheckpoint",
           "TerminateOnNaN", "restore", "snapshot"]

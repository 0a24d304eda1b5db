"""Saving and loading: models and training checkpoints as one ``.npz`` file with a JSON header,
no pickle (``_model_file.py``); what a file may build (``_architecture.py``: ``register`` adds a
custom module); reading an untrusted archive (``_archive.py``); atomic writes through
``pynn._atomic`` (on the ground floor: pynn.tune's wisdom files use it too)."""
from ._archive import ModelFileError
from ._architecture import architecture, build, register
# read_header and the format constants are pynn.io's too (SECURITY.md points at read_header),
# outside __all__ as before.
from ._model_file import (FORMAT_CHECKPOINT, FORMAT_MODEL, VERSION, load,  # noqa: F401
                          load_checkpoint, read_header, save, save_checkpoint)

ModelFileError.__module__ = __name__  # where users catch it (pynn.io), whoever raises it

__all__ = ["ModelFileError", "architecture", "build", "load", "load_checkpoint", "register",
           "save", "save_checkpoint"]

"""``fit(resume_from=...)``: a Trainer's checkpoint checked before set-up, then applied."""
import os

from .. import io as _io
from .history import History


def read_resume(path):
    """The checkpoint's header (checked now; the state is applied after set-up)."""
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"resume_from: no checkpoint at {os.fspath(path)!r}")
    header = _io.read_header(path)
    extra = header.get("extra")
    if header.get("format") != _io.FORMAT_CHECKPOINT or not isinstance(extra, dict) or \
            "rng" not in extra:
        raise _io.ModelFileError(f"resume_from: {os.fspath(path)} was not written by a "
                                 f"Trainer (no training state)")
    return header


def apply_resume(trainer, path, header):
    """Restore the checkpoint at ``path`` (``header`` from ``read_resume``) into ``trainer``,
    set up for this fit: the epoch to continue after."""
    extra = header["extra"]
    if extra["n_train"] != trainer._n_train or extra["seed"] != trainer._seed:
        raise ValueError(
            f"resume_from: the checkpoint was trained on {extra['n_train']} samples with "
            f"seed {extra['seed']}; this call has {trainer._n_train} samples and seed "
            f"{trainer._seed} (pass the same data, validation setting and seed)"
        )
    info = _io.load_checkpoint(path, trainer.model, trainer.optimizer)
    extra = info["extra"]
    trainer._rng.bit_generator.state = extra["rng"]
    states = extra.get("callbacks") or {}
    for key, cb in zip(trainer._callback_keys(), trainer._active):
        if key in states:
            cb.load_state_dict(states[key])
    trainer.history = History(info["history"] or {})
    trainer.history.stop_reason = None
    epoch = int(info["epoch"] or 0)
    trainer._log(f"resumed from {os.fspath(path)} after epoch {epoch}")
    return epoch

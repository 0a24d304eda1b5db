"""Saving and loading models and training checkpoints: one ``.npz`` file, no pickle.

File layout (a plain, uncompressed NumPy ``.npz`` archive)::

    __pynn__            0-d unicode array: a JSON header (format, version, architecture, ...)
    param/<name>        one array per parameter ("0.weight", "0.bias", ...)
    buffer/<name>       non-trainable state ("1.running_mean", "0.mean", ...)
    state/<k>           arrays inside optimizer / scheduler / callback state (checkpoints only)

The header is a plain string array (never an object array), and every array is read with our
own header check, so nothing is ever unpickled. Before any array is allocated its declared
size is checked against the bytes the archive actually holds, and the architecture's parameter
shapes are checked against the stored arrays, so a hostile header cannot make ``load`` allocate
gigabytes. Writes go to a temporary file in the target directory and are moved into place with
``os.replace``: a crash mid-write never leaves a half-written model behind.

What a file may build (the registered module types, architectures) is ``_architecture.py``; how
an archive is read without trusting it is ``_archive.py``; atomic writes ``pynn._atomic``.
"""
import json
import os

import numpy as np

from ._archive import Archive, ModelFileError
from .._atomic import atomic_open
from ._architecture import _arch_type, _expected_shapes, architecture, build
from ..nn.dropout import Dropout
from ..nn.module import Module
from ..nn.parameter import Parameter

FORMAT_MODEL = "pynn.model"
FORMAT_CHECKPOINT = "pynn.checkpoint"
# 2: BatchNorm saves num_batches_tracked. Version 1 files still load (the counter starts at 0).
VERSION = 2
_READABLE_VERSIONS = (1, 2)
HEADER_KEY = "__pynn__"

# The largest JSON header a file may hold (a hostile file's limit).
_MAX_HEADER_BYTES = 64 << 20


# ---------------------------------------------------------------------------- state (de)serialization
def _encode(obj, arrays):
    """JSON-able copy of ``obj``; ndarrays and NumPy scalars go to ``arrays`` (``state/<k>``)
    and are referenced by key. Keeps tuples and non-string dict keys (torch's optimizer state is
    keyed by int), which JSON alone would turn into lists and strings."""
    if isinstance(obj, (np.ndarray, np.generic)):
        key = f"state/{len(arrays)}"
        arrays[key] = np.array(obj)
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save a value of type {type(obj).__name__} in a checkpoint")


def _decode(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            try:
                a = arrays[obj["__array__"]]
            except (KeyError, TypeError):
                raise ModelFileError(f"missing state array {obj['__array__']!r}") from None
            return a[()] if obj.get("scalar") else a
        if "__dict__" in obj:
            return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def _hashable(k):
    return k.item() if isinstance(k, np.generic) else k


# ---------------------------------------------------------------------------- writing
def _model_arrays(model):
    """The model's state_dict as archive members: ``param/<key>`` and ``buffer/<key>``."""
    arrays = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if isinstance(value, Parameter):
            arrays[f"param/{key}"] = np.asarray(value.data, order="C")
        else:
            arrays[f"buffer/{key}"] = np.asarray(value, order="C")  # keeps 0-d as 0-d
    return arrays


def _atomic_savez(path, header, arrays):
    with atomic_open(path, "wb") as f:
        # A file object, not a name: np.savez would append ".npz" to a name.
        np.savez(f, **{HEADER_KEY: np.array(json.dumps(header))}, **arrays)


def save(model, path, metadata=None):
    """Save ``model`` (architecture, weights, BatchNorm statistics) to one ``.npz`` file.

    Parameters
    ----------
    model : Sequential or a single layer
    path : str or os.PathLike
        Written atomically (temporary file + rename); the name is used as given.
    metadata : dict, optional
        JSON-able extra information (e.g. class names, the loss), returned by
        ``load(path, return_metadata=True)``.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a pynn Module, got {type(model).__name__}")
    model = model.saved_module()  # a wrapper (DataParallel) saves the model it trains
    header = {"format": FORMAT_MODEL, "version": VERSION, "architecture": architecture(model),
              "metadata": _plain_json("metadata", metadata or {})}
    _atomic_savez(path, header, _model_arrays(model))


def _plain_json(name, value):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serializable: {exc}") from None


def _dropout_steps(model):
    # Keyed "<module name>." (the state_dict prefix of the layer).
    return {f"{name}." if name else "": m.step for name, m in model.named_modules()
            if isinstance(m, Dropout)}


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=None, history=None,
                    extra=None):
    """Save everything needed to continue training exactly where it stopped.

    Holds the model (as ``save`` does, so ``load`` reads a checkpoint too), the optimizer's and
    the scheduler's ``state_dict()``, Dropout step counters, the epoch, the history and ``extra``
    (JSON-able values and arrays; the Trainer keeps its RNG and callback state there).
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a pynn Module, got {type(model).__name__}")
    model = model.saved_module()  # a wrapper (DataParallel) saves the model it trains
    arrays = _model_arrays(model)
    state_arrays = {}
    if history is not None and hasattr(history, "history"):
        history = history.history
    header = {
        "format": FORMAT_CHECKPOINT, "version": VERSION, "architecture": architecture(model),
        "metadata": {},
        "epoch": None if epoch is None else int(epoch),
        "history": _encode(history, state_arrays),
        "optimizer": _encode(None if optimizer is None else optimizer.state_dict(), state_arrays),
        "scheduler": _encode(None if scheduler is None else scheduler.state_dict(), state_arrays),
        "dropout_steps": _dropout_steps(model),
        "extra": _encode(extra, state_arrays),
    }
    arrays.update(state_arrays)
    _atomic_savez(path, header, arrays)


# ---------------------------------------------------------------------------- reading
def _read_header(archive):
    """The file's JSON header, checked: a pynn model or checkpoint of a version this pynn
    reads."""
    if HEADER_KEY not in archive.members:
        raise ModelFileError(f"{archive.path}: not a pynn model file (an npz without a "
                             f"{HEADER_KEY!r} header)")
    raw = archive.read(HEADER_KEY, max_bytes=_MAX_HEADER_BYTES)
    if raw.dtype.kind != "U" or raw.shape != ():
        raise ModelFileError(f"{archive.path}: {HEADER_KEY} must be a 0-d string array")
    try:
        header = json.loads(str(raw[()]))
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{archive.path}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") not in (FORMAT_MODEL,
                                                                    FORMAT_CHECKPOINT):
        raise ModelFileError(f"{archive.path}: not a pynn model file (unknown format)")
    if header.get("version") not in _READABLE_VERSIONS:
        raise ModelFileError(
            f"{archive.path}: file format version {header.get('version')!r} is not supported "
            f"(this pynn reads version {VERSION})"
        )
    return header


def _state_members(archive):
    """{state_dict key: archive member} for the stored parameters and buffers."""
    out = {}
    for name in archive.members:
        for kind in ("param/", "buffer/"):
            if name.startswith(kind):
                key = name[len(kind):]
                if key in out:
                    raise ModelFileError(f"{archive.path}: {key!r} is stored twice")
                out[key] = name
    return out


def _check_state_shapes(archive, expected, members, optional=()):
    """Stored keys and declared shapes against ``expected`` ({key: shape}); ``optional`` keys
    may be missing (older files)."""
    stored = {k: tuple(archive.declared_shape(m)) for k, m in members.items()}
    missing = sorted(set(expected) - set(stored) - set(optional))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{archive.path}: arrays do not match the architecture "
                             f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for key, shape in stored.items():
        if shape != tuple(expected[key]):
            raise ModelFileError(f"{archive.path}: {members[key]} has shape {shape} but "
                                 f"the architecture needs {tuple(expected[key])}")


def _optional_keys(header, keys):
    # Version 1 files predate BatchNorm's num_batches_tracked.
    if header.get("version") == 1:
        return {k for k in keys if k.rsplit(".", 1)[-1] == "num_batches_tracked"}
    return set()


def _read_state(archive, model, members, strict_keys):
    """Read the stored arrays and load them into ``model`` (validated before any write)."""
    state = {key: archive.read(member) for key, member in members.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{archive.path}: {exc}") from None
    if result.unexpected_keys or set(result.missing_keys) - set(strict_keys):
        raise ModelFileError(f"{archive.path}: arrays do not match the model "
                             f"(missing {result.missing_keys[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]})")


def _read_model(archive, header):
    """Check the architecture against the stored arrays, then build the model and fill it."""
    arch = header.get("architecture")
    archive.check_member_headers(skip=(HEADER_KEY,))
    members = _state_members(archive)
    expected = _expected_shapes(arch)
    if expected is not None:
        _check_state_shapes(archive, expected, members, _optional_keys(header, expected))
    # Only now, with every shape confirmed against the data the file holds, allocate.
    model = build(arch)
    # A registered custom module could not tell its shapes before being built: check now.
    have = {k: v.shape for k, v in model.state_dict(keep_vars=True).items()}
    _check_state_shapes(archive, have, members, _optional_keys(header, have))
    _read_state(archive, model, members, _optional_keys(header, have))
    return model


def load(path, return_metadata=False):
    """Load a model written by ``save`` (or the model inside a ``save_checkpoint`` file).

    Parameters
    ----------
    path : str or os.PathLike
    return_metadata : bool, default False
        Also return the ``metadata`` dict given to ``save``.

    Returns
    -------
    model : Sequential (or the saved layer), in training mode
    metadata : dict, only with ``return_metadata=True``

    Raises
    ------
    FileNotFoundError
    ModelFileError
        A corrupt, truncated, pickled or foreign file, an unknown layer type, or arrays that do
        not match the architecture; raised before any large allocation.
    """
    archive = Archive(path)
    try:
        header = _read_header(archive)
        model = _read_model(archive, header)
        steps = header.get("dropout_steps") or {}
        _restore_dropout_steps(archive, model, steps)
    finally:
        archive.close()
    if return_metadata:
        meta = header.get("metadata")
        return model, meta if isinstance(meta, dict) else {}
    return model


def read_header(path):
    """The decoded JSON header of a model or checkpoint file (no arrays are read)."""
    archive = Archive(path)
    try:
        return _read_header(archive)
    finally:
        archive.close()


def _dropout_updates(archive, model, steps):
    """[(Dropout layer, step)] from a header's ``dropout_steps``, checked, not yet applied."""
    if not isinstance(steps, dict):
        raise ModelFileError(f"{archive.path}: dropout_steps must be a dict")
    layers = {f"{name}." if name else "": m for name, m in model.named_modules()}
    updates = []
    for prefix, step in steps.items():
        layer = layers.get(prefix)
        if not isinstance(layer, Dropout) or isinstance(step, bool) or not isinstance(step, int) \
                or step < 0:
            raise ModelFileError(f"{archive.path}: bad Dropout step entry {prefix!r}: {step!r}")
        updates.append((layer, step))
    return updates


def _restore_dropout_steps(archive, model, steps):
    for layer, step in _dropout_updates(archive, model, steps):
        layer.step = step


def load_checkpoint(path, model, optimizer=None, scheduler=None):
    """Restore a checkpoint written by ``save_checkpoint`` into existing objects.

    ``model`` must have the checkpoint's architecture (parameter names and shapes); its weights,
    BatchNorm statistics and Dropout counters are overwritten, and so are the optimizer's and the
    scheduler's states when given. Everything is read and checked before anything changes: a bad
    file raises and leaves the model, optimizer and scheduler as they were.

    Returns
    -------
    dict with "epoch", "history" (dict of lists or None), "extra", "optimizer", "scheduler"
    (the decoded state dicts).
    """
    model = model.saved_module()  # a wrapper (DataParallel) restores the model it trains
    archive = Archive(path)
    try:
        header = _read_header(archive)
        if header["format"] != FORMAT_CHECKPOINT:
            raise ModelFileError(f"{archive.path}: a model file, not a checkpoint (use pynn.load)")
        _arch_type(header.get("architecture"), 0)
        archive.check_member_headers(skip=(HEADER_KEY,))
        members = _state_members(archive)
        have = {k: v.shape for k, v in model.state_dict(keep_vars=True).items()}
        optional = _optional_keys(header, have)
        try:
            _check_state_shapes(archive, have, members, optional)
        except ModelFileError as exc:
            raise ValueError(f"model does not match the checkpoint {archive.path}: it has "
                             f"{_fmt_shapes(have)}; {exc}") from None
        archive.check_member_headers(skip=(HEADER_KEY,))
        state = {key: archive.read(member) for key, member in members.items()}
        dropout = _dropout_updates(archive, model, header.get("dropout_steps") or {})
        state_arrays = {n: archive.read(n) for n in archive.members if n.startswith("state/")}
        out = {k: _decode(header.get(k), state_arrays)
               for k in ("history", "optimizer", "scheduler", "extra")}
        out["epoch"] = header.get("epoch")
    finally:
        archive.close()
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and out[name] is None:
            raise ValueError(f"checkpoint {path} holds no {name} state")
    try:
        writes = model._state_writes(state, strict=False)[0]
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{os.fspath(path)}: {exc}") from None
    # The optimizer and the scheduler check everything before they change anything; if the
    # scheduler then refuses, the optimizer is put back, so nothing is half-restored.
    backups = [(obj, obj.state_dict()) for obj in (optimizer, scheduler) if obj is not None]
    try:
        if optimizer is not None:
            optimizer.load_state_dict(out["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(out["scheduler"])
    except BaseException:
        for obj, saved in backups:
            obj.load_state_dict(saved)
        raise
    for dest, value in writes:
        dest[...] = value
    for layer, step in dropout:
        layer.step = step
    return out


def _fmt_shapes(d):
    items = list(d.items())
    s = ", ".join(f"{k}{tuple(v)}" for k, v in items[:4])
    return s + (", ..." if len(items) > 4 else "")

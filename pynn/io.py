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
"""
import json
import math
import os
import re
import zipfile

import numpy as np

from ._atomic import atomic_open
from .nn import activations as _act
from .nn.batchnorm import BatchNorm
from .nn.containers import ModuleList, Sequential
from .nn.dense import Dense
from .nn.dropout import Dropout
from .nn.module import Module
from .nn.parameter import Parameter

FORMAT_MODEL = "pynn.model"
FORMAT_CHECKPOINT = "pynn.checkpoint"
# 2: BatchNorm saves num_batches_tracked. Version 1 files still load (the counter starts at 0).
VERSION = 2
_READABLE_VERSIONS = (1, 2)
HEADER_KEY = "__pynn__"

# Limits for hostile files: the JSON header and the nesting of the architecture.
_MAX_HEADER_BYTES = 64 << 20
_MAX_DEPTH = 32
# Deflate cannot compress better than about 1032:1, so a compressed member that claims more is lying.
_MAX_DEFLATE_RATIO = 1032
# pynn writes uncompressed archives. Compressed members (another tool's) may inflate to at most
# this many times the file's size in all: a zip bomb (16 MB of zeros deflate to 16 KB, within
# the ratio above) is refused before anything is inflated. 100:1 is Apache POI's default limit.
_MAX_INFLATE_RATIO = 100


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be loaded: corrupt, truncated, pickled, foreign,
    an unknown layer type, or a header whose shapes do not match the data it holds."""


# ---------------------------------------------------------------------------- module types
# The only classes a file may name. A file is data: it picks a class from this table and passes
# it plain JSON values (``cls.from_config``), never code.
_TYPES = {}


def register(cls):
    """Allow ``pynn.load`` to rebuild modules of class ``cls`` from their ``config()``.

    Built-in layers and containers are registered already. Use as a decorator on a custom
    Module whose ``__init__(**config())`` rebuilds it; saving a module of an unregistered
    class raises TypeError.
    """
    if not isinstance(cls, type) or not issubclass(cls, Module):
        raise TypeError(f"cls must be a pynn Module subclass, got {cls!r}")
    known = _TYPES.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"a module type named {cls.__name__!r} is registered already "
                         f"({known.__module__}.{known.__qualname__})")
    _TYPES[cls.__name__] = cls
    return cls


def _register_builtins():
    from .data import Standardizer

    for cls in (Dense, BatchNorm, Dropout, Sequential, ModuleList, Standardizer):
        register(cls)
    for name in ("Identity", "Step", "Sigmoid", "Tanh", "ReLU", "Square", "LeakyReLU", "ELU",
                 "Softmax"):
        register(getattr(_act, name))


_register_builtins()


def _is_list_container(cls):
    # containers whose children are their constructor arguments
    return issubclass(cls, (Sequential, ModuleList))


# ---------------------------------------------------------------------------- architecture
def architecture(model):
    """The model's architecture as plain JSON-able values: ``{"type": ..., "config": ...}``
    for a module, ``{"type": "Sequential", "layers": [...]}`` for a list container."""
    cls = type(model)
    if _TYPES.get(cls.__name__) is not cls:
        raise TypeError(
            f"model: cannot save a module of type {cls.__name__}: register it with "
            f"pynn.io.register (known: {', '.join(sorted(_TYPES))})"
        )
    if _is_list_container(cls):
        return {"type": cls.__name__, "layers": [architecture(m) for m in model.layers]}
    return {"type": cls.__name__, "config": model.config()}


def _arch_type(arch, depth):
    if depth > _MAX_DEPTH:
        raise ModelFileError("architecture is nested too deeply")
    if not isinstance(arch, dict) or not isinstance(arch.get("type"), str):
        raise ModelFileError(f"architecture: expected {{'type': ...}}, got {str(arch)[:80]}")
    cls = _TYPES.get(arch["type"])
    if cls is None:
        raise ModelFileError(f"unknown layer type {arch['type']!r} "
                             f"(known: {', '.join(sorted(_TYPES))})")
    if _is_list_container(cls):
        if not isinstance(arch.get("layers"), list):
            raise ModelFileError(f"architecture: {arch['type']} needs a list of layers")
    elif not isinstance(arch.get("config", {}), dict):
        raise ModelFileError(f"architecture: config of {arch['type']} must be a dict")
    return cls


def _expected_shapes(arch, prefix="", depth=0):
    """{state_dict key: shape} implied by a header's architecture, validating it as we go;
    None when a module type cannot tell without being built (a registered custom module)."""
    cls = _arch_type(arch, depth)
    if _is_list_container(cls):
        out = {}
        for i, sub in enumerate(arch["layers"]):
            shapes = _expected_shapes(sub, f"{prefix}{i}.", depth + 1)
            if shapes is None:
                return None
            out.update(shapes)
        return out
    try:
        shapes = cls.state_shapes(arch.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"architecture: {arch['type']}: {exc}") from None
    if shapes is None:
        return None
    return {prefix + k: tuple(v) for k, v in shapes.items()}


def build(arch, depth=0):
    """A fresh model from an architecture description (as ``architecture`` returns)."""
    cls = _arch_type(arch, depth)
    if _is_list_container(cls):
        children = [build(sub, depth + 1) for sub in arch["layers"]]
        return cls(children)
    try:
        return cls.from_config(dict(arch.get("config", {})))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"architecture: cannot build {arch['type']}: {exc}") from None


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
class _Archive:
    """An npz opened with zipfile; arrays are read only after their headers pass the checks."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise FileNotFoundError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            kind = _sniff(self.path)
            raise ModelFileError(f"{self.path}: not a pynn model file ({kind}: {exc})") from None
        self.members = {}
        total = inflated = 0
        for info in self.zip.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            # Nothing is ever extracted, but a name that could climb out of a directory, or
            # two members of one name (which one a reader picks depends on the reader), do
            # not make a clean pynn file.
            what = ("a path-like" if _path_like(info.filename) else
                    "a duplicate" if name in self.members else None)
            if what is not None:
                self.close()
                raise ModelFileError(f"{self.path}: not a clean pynn model file ({what} member "
                                     f"name {info.filename!r})")
            self.members[name] = info
            total += info.compress_size
            if info.compress_type != zipfile.ZIP_STORED:
                inflated += info.file_size
        if total > size:
            self.close()
            raise ModelFileError(f"{self.path}: truncated or corrupt archive "
                                 f"(members claim {total} bytes, the file has {size})")
        if inflated > _MAX_INFLATE_RATIO * size:
            self.close()
            raise ModelFileError(f"{self.path}: compressed members would inflate to {inflated} "
                                 f"bytes, over {_MAX_INFLATE_RATIO} times the file's {size} "
                                 f"(a zip bomb?); pynn writes uncompressed archives")

    def close(self):
        self.zip.close()

    def read(self, name, max_bytes=None):
        info = self.members.get(name)
        if info is None:
            raise ModelFileError(f"{self.path}: missing array {name!r}")
        try:
            with self.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ModelFileError(f"{self.path}: {name}: unsupported .npy version {version}")
                if dtype.hasobject:
                    raise ModelFileError(
                        f"{self.path}: {name} holds Python objects (a pickle); refusing to load it"
                    )
                nbytes = self.stored_bytes(name, info, shape, dtype)
                if max_bytes is not None and nbytes > max_bytes:
                    raise ModelFileError(f"{self.path}: {name} is too large ({nbytes} bytes)")
                data = f.read(nbytes)
                if len(data) != nbytes:
                    raise ModelFileError(f"{self.path}: {name} is truncated")
        except ModelFileError:
            raise
        except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, ValueError(header)
            raise ModelFileError(f"{self.path}: {name}: corrupt data ({exc})") from None
        arr = np.frombuffer(data, dtype=dtype)
        arr = arr.reshape(shape, order="F" if fortran else "C")
        return np.array(arr, order="C")  # writeable, owned, C-contiguous

    def stored_bytes(self, name, info, shape, dtype):
        """The bytes an .npy header's ``shape`` and ``dtype`` claim, checked against what the
        archive holds for the member, before anything is allocated. Exact integers: a count
        that would wrap in int64 ((2**32, 2**32) is 0 there) is just too large."""
        if any(d < 0 for d in shape):
            raise ModelFileError(f"{self.path}: {name}: invalid shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size or (
            info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
        ) or (info.compress_type != zipfile.ZIP_STORED
              and info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1)):
            raise ModelFileError(
                f"{self.path}: {name}: header claims shape {shape} ({nbytes} bytes) but "
                f"the archive holds {info.compress_size} bytes for it (truncated or corrupt)"
            )
        return nbytes

    def header(self):
        if HEADER_KEY not in self.members:
            raise ModelFileError(f"{self.path}: not a pynn model file (an npz without a "
                                 f"{HEADER_KEY!r} header)")
        raw = self.read(HEADER_KEY, max_bytes=_MAX_HEADER_BYTES)
        if raw.dtype.kind != "U" or raw.shape != ():
            raise ModelFileError(f"{self.path}: {HEADER_KEY} must be a 0-d string array")
        try:
            header = json.loads(str(raw[()]))
        except (ValueError, RecursionError) as exc:
            raise ModelFileError(f"{self.path}: header is not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") not in (FORMAT_MODEL,
                                                                        FORMAT_CHECKPOINT):
            raise ModelFileError(f"{self.path}: not a pynn model file (unknown format)")
        if header.get("version") not in _READABLE_VERSIONS:
            raise ModelFileError(
                f"{self.path}: file format version {header.get('version')!r} is not supported "
                f"(this pynn reads version {VERSION})"
            )
        return header


def _path_like(filename):
    """An absolute name, a drive, or a ".." component (under / or \\ separators)."""
    return (filename[:1] in ("/", "\\") or re.match(r"[A-Za-z]:", filename) is not None
            or ".." in re.split(r"[/\\]", filename))


def _sniff(path):
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "unreadable"
    if head[:1] == b"\x80":
        return "looks like a pickle"
    if head[:6] == b"\x93NUMPY":
        return "a single .npy array"
    if head[:2] == b"PK":
        return "a truncated or corrupt zip archive"
    return "not a zip archive"


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
    stored = {k: tuple(_declared_shape(archive, m)) for k, m in members.items()}
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
    _check_member_headers(archive)
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


def _check_member_headers(archive):
    """Every stored array's header (no pickles, sane shapes) before any array is read."""
    for name in archive.members:
        if name != HEADER_KEY:
            _declared_shape(archive, name)


def _declared_shape(archive, name):
    info = archive.members[name]
    try:
        with archive.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(f)
    except Exception as exc:
        raise ModelFileError(f"{archive.path}: {name}: corrupt array header ({exc})") from None
    if dtype.hasobject:
        raise ModelFileError(
            f"{archive.path}: {name} holds Python objects (a pickle); refusing to load it"
        )
    # The claimed size against the stored bytes now, before any model is built: a header and
    # an architecture agreeing on a terabyte shape must not make load allocate it.
    archive.stored_bytes(name, info, shape, dtype)
    return shape


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
    archive = _Archive(path)
    try:
        header = archive.header()
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
    archive = _Archive(path)
    try:
        return archive.header()
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
    archive = _Archive(path)
    try:
        header = archive.header()
        if header["format"] != FORMAT_CHECKPOINT:
            raise ModelFileError(f"{archive.path}: a model file, not a checkpoint (use pynn.load)")
        _arch_type(header.get("architecture"), 0)
        _check_member_headers(archive)
        members = _state_members(archive)
        have = {k: v.shape for k, v in model.state_dict(keep_vars=True).items()}
        optional = _optional_keys(header, have)
        try:
            _check_state_shapes(archive, have, members, optional)
        except ModelFileError as exc:
            raise ValueError(f"model does not match the checkpoint {archive.path}: it has "
                             f"{_fmt_shapes(have)}; {exc}") from None
        _check_member_headers(archive)
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


__all__ = ["ModelFileError", "architecture", "build", "load", "load_checkpoint", "register",
           "save", "save_checkpoint"]

"""Reading a ``.npz`` archive that may be hostile: pynn.io's file reader.

An archive is opened with zipfile and nothing is ever extracted or unpickled. Before any array
is read, every member is checked: no path-like or duplicate names, the members' sizes within
the file's, compressed members within what deflate can do and what the file's size allows (a
zip bomb is refused before anything inflates). An array is read only after its ``.npy`` header
passes: no object dtype (a pickle), and a declared size the archive actually holds, so a
header claiming a terabyte shape never makes the reader allocate it.
"""
import math
import os
import re
import zipfile

import numpy as np

# Deflate cannot compress better than about 1032:1, so a compressed member that claims more is lying.
_MAX_DEFLATE_RATIO = 1032
# pynn writes uncompressed archives. Compressed members (another tool's) may inflate to at most
# this many times the file's size in all: a zip bomb (16 MB of zeros deflate to 16 KB, within
# the ratio above) is refused before anything is inflated. 100:1 is Apache POI's default limit.
_MAX_INFLATE_RATIO = 100


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be loaded: corrupt, truncated, pickled, foreign,
    an unknown layer type, or a header whose shapes do not match the data it holds."""


class Archive:
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

    def check_member_headers(self, skip=()):
        """Every stored array's header (no pickles, sane shapes) before any array is read;
        members named in ``skip`` are not arrays the caller will read as such."""
        for name in self.members:
            if name not in skip:
                self.declared_shape(name)

    def declared_shape(self, name):
        info = self.members[name]
        try:
            with self.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, _, dtype = reader(f)
        except Exception as exc:
            raise ModelFileError(f"{self.path}: {name}: corrupt array header ({exc})") from None
        if dtype.hasobject:
            raise ModelFileError(
                f"{self.path}: {name} holds Python objects (a pickle); refusing to load it"
            )
        # The claimed size against the stored bytes now, before any model is built: a header and
        # an architecture agreeing on a terabyte shape must not make load allocate it.
        self.stored_bytes(name, info, shape, dtype)
        return shape


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

"""Files are data, never code (issue 11, item 7): hostile ``.npz`` files are rejected with
ModelFileError before any large allocation, and nothing is ever unpickled.

tests/test_io.py already covers: a raw pickle file, an object array member, a foreign npz, an
unknown layer type inside a Sequential, an architecture claiming 10^6 x 10^6 next to a 2 x 2
array, an .npy header claiming 10^12 elements next to 16 bytes, truncation and version checks.
This file adds the cases those leave open: pickles that would run code, members that are not
.npy at all, path-like and duplicate member names, compressed members (a zip bomb), shapes whose
element count overflows, terabyte shapes on which header and architecture agree, checkpoint state
arrays, and JSON headers that name unknown, code-like or malformed layers.
"""
import io
import json
import os
import resource
import warnings
import zipfile

import numpy as np
import pytest

import pynn
from pynn.io import ModelFileError, load, load_checkpoint, read_header, save, save_checkpoint
from pynn.nn import Dense, Sequential

# Anything a hostile file gets us to allocate must stay far below this.
SMALL = 8 << 20


# ---------------------------------------------------------------------------- crafting files
def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header(shape, descr="<f4", payload=b""):
    """An .npy member whose header claims ``shape`` followed by ``payload`` (often much less)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _header(arch, fmt="pynn.model"):
    return _npy(np.array(json.dumps({"format": fmt, "version": 1, "architecture": arch})))


def _dense_arch(i, o):
    return {"type": "Sequential",
            "layers": [{"type": "Dense", "config": {"in_features": i, "out_features": o}}]}


def _members(path):
    with zipfile.ZipFile(path) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def _write(path, members, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on duplicate names
        with zipfile.ZipFile(path, "w", compression=compression) as z:
            for name, data in members:
                z.writestr(name, data)
    return path


def _good_members(tmp_path, model=None):
    path = tmp_path / "good.npz"
    save(model if model is not None else Sequential(Dense(2, 2)), path)
    return _members(path)


def _replace(members, name, data):
    return [(n, data if n == name else d) for n, d in members]


class _Pwned:
    """Unpickling this writes a marker file: proof that a loader ran code from the file."""

    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _load_small(fn, *args):
    """Call ``fn(*args)`` expecting ModelFileError; return tracemalloc's peak in bytes."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as info:
            fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < SMALL, f"{peak / 2**20:.0f} MB allocated before rejecting the file"
    return info.value


# ---------------------------------------------------------------------------- pickles
@pytest.mark.parametrize("where", ["header", "param", "extra member", "checkpoint state"])
def test_pickles_inside_the_archive_never_run(tmp_path, where):
    marker = tmp_path / "pwned"
    _Pwned.marker = str(marker)
    evil = _npy(np.array([_Pwned()], dtype=object))
    assert not marker.exists()  # pickling did not run it either
    if where == "checkpoint state":
        model = Sequential(Dense(2, 2))
        save_checkpoint(tmp_path / "c.npz", model, extra={"a": np.zeros(3)})
        members = _replace(_members(tmp_path / "c.npz"), "state/0.npy", evil)
        path = _write(tmp_path / "evil.npz", members)
        err = _load_small(load_checkpoint, path, model)
    else:
        members = _good_members(tmp_path)
        if where == "header":
            members = _replace(members, "__pynn__.npy", evil)
        elif where == "param":
            members = _replace(members, "param/0.weight.npy", evil)
        else:
            members = members + [("notes.npy", evil)]
        path = _write(tmp_path / "evil.npz", members)
        err = _load_small(load, path)
        if where == "header":
            with pytest.raises(ModelFileError):
                read_header(path)
    assert "object" in str(err) or "pickle" in str(err)
    assert not marker.exists(), "loading a model file ran code from it"


def test_an_object_field_inside_a_structured_dtype_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _Pwned.marker = str(marker)
    rec = np.zeros(1, dtype=[("w", "<f4"), ("o", "O")])
    rec["o"][0] = _Pwned()
    members = _replace(_good_members(tmp_path), "param/0.bias.npy", _npy(rec))
    err = _load_small(load, _write(tmp_path / "evil.npz", members))
    assert "objects" in str(err) and not marker.exists()


@pytest.mark.parametrize("payload", [
    b"\x80\x04\x95" + b"\0" * 40,          # a raw pickle stream instead of an .npy
    b"\x93NUMPY\x01\x00\xff\xff" + b"{",   # an .npy magic with a header length past the end
    b"\x93NUMPY\x09\x00\x10\x00" + b"{}" * 8,  # an unknown .npy version
    b"",
])
def test_members_that_are_not_npy_arrays_are_refused(tmp_path, payload):
    members = _replace(_good_members(tmp_path), "param/0.weight.npy", payload)
    err = _load_small(load, _write(tmp_path / "bad.npz", members))
    assert "0.weight" in str(err)


# ---------------------------------------------------------------------------- member names
@pytest.mark.parametrize("name", ["../evil.npy", "/etc/evil.npy", "..\\evil.npy",
                                  "state/../../evil.npy"])
def test_path_like_member_names_are_refused(tmp_path, name):
    members = _good_members(tmp_path) + [(name, _npy(np.zeros(3, np.float32)))]
    err = _load_small(load, _write(tmp_path / "evil.npz", members))
    assert f"a path-like member name {name!r}" in str(err)
    with pytest.raises(ModelFileError, match="path-like"):
        read_header(tmp_path / "evil.npz")


@pytest.mark.parametrize("name", ["param/../../x.npy", "buffer/../0.weight.npy"])
def test_path_like_parameter_names_are_refused(tmp_path, name):
    # Refused as path-like before anything else (and under param/ and buffer/ every name
    # must be one the architecture expects anyway, as the next case shows).
    members = _good_members(tmp_path) + [(name, _npy(np.zeros(3, np.float32)))]
    err = _load_small(load, _write(tmp_path / "evil.npz", members))
    assert "path-like member name" in str(err)
    members = _good_members(tmp_path) + [("param/x.npy", _npy(np.zeros(3, np.float32)))]
    err = _load_small(load, _write(tmp_path / "extra.npz", members))
    assert "unexpected ['x']" in str(err)


def test_path_like_member_names_never_touch_the_filesystem(tmp_path):
    # What holds today: whatever the names, load reads members in memory and writes nothing.
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    members = _good_members(tmp_path) + [("../evil.npy", _npy(np.zeros(3, np.float32))),
                                         ("../../evil2.npy", _npy(np.zeros(3, np.float32)))]
    path = _write(work / "m.npz", members)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        try:
            load(path)
        except ModelFileError:
            pass
    finally:
        os.chdir(cwd)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_duplicate_member_names_are_refused(tmp_path):
    members = _good_members(tmp_path)
    members.append(("param/0.weight.npy", _npy(np.full((2, 2), 1e30, np.float32))))
    err = _load_small(load, _write(tmp_path / "dup.npz", members))
    assert "a duplicate member name 'param/0.weight.npy'" in str(err)


# ---------------------------------------------------------------------------- sizes
def test_zip_bomb_is_refused_before_inflating(tmp_path):
    # pynn writes uncompressed archives; a 16 MB member of zeros deflates to ~16 KB.
    model = Sequential(Dense(2048, 2048))
    members = _replace(_good_members(tmp_path, model), "param/0.weight.npy",
                       _npy(np.zeros((2048, 2048), np.float32)))
    path = _write(tmp_path / "bomb.npz", members, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 64 << 10
    err = _load_small(load, path)
    assert "zip bomb" in str(err)
    _load_small(read_header, path)


def test_compressed_members_within_the_ratio_still_load(tmp_path):
    # Another tool recompressing a pynn file: random weights barely compress, so it loads.
    model = Sequential(Dense(64, 64, seed=0))
    path = _write(tmp_path / "z.npz", _good_members(tmp_path, model), zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(load(path)[0].weight.data, model[0].weight.data)


def test_a_member_lying_about_its_inflated_size_is_refused(tmp_path):
    # The zip directory claims more than deflate can produce from the compressed bytes.
    members = _good_members(tmp_path)
    path = _write(tmp_path / "lie.npz", members, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("param/0.weight.npy")
    # The central directory entry: uncompressed size at offset 24, name length at 28, name at 46.
    idx = data.find(b"PK\x01\x02")
    while idx != -1:
        name_len = int.from_bytes(data[idx + 28:idx + 30], "little")
        if data[idx + 46:idx + 46 + name_len] == b"param/0.weight.npy":
            data[idx + 24:idx + 28] = (info.compress_size * 5000).to_bytes(4, "little")
        idx = data.find(b"PK\x01\x02", idx + 4)
    path.write_bytes(bytes(data))
    _load_small(load, path)


def _in_limited_child(fn, limit_extra=1 << 30):
    """Run ``fn`` in a forked child whose address space may grow by at most ``limit_extra``
    bytes (so an attempt to allocate terabytes fails there instead of swapping here); returns
    what fn returned (a short string)."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            with open("/proc/self/statm") as f:
                vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (vm + limit_extra, hard))
            out = fn()
        except BaseException as exc:
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode()[:4000])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def _outcome(fn, *args):
    def run():
        try:
            fn(*args)
        except ModelFileError as exc:
            return f"ModelFileError: {exc}"
        return "loaded"
    return run


def test_terabyte_shape_on_which_header_and_architecture_agree(tmp_path):
    n = 10**6
    path = _write(tmp_path / "tb.npz", [
        ("__pynn__.npy", _header(_dense_arch(n, n))),
        ("param/0.weight.npy", _npy_header((n, n), payload=b"\0" * 16)),
        ("param/0.bias.npy", _npy_header((n,), payload=b"\0" * 16)),
    ])
    out = _in_limited_child(_outcome(load, path))
    assert out.startswith("ModelFileError"), out


def test_large_shape_on_which_header_and_architecture_agree_allocates_nothing(tmp_path):
    n = 2048
    path = _write(tmp_path / "big.npz", [
        ("__pynn__.npy", _header(_dense_arch(n, n))),
        ("param/0.weight.npy", _npy_header((n, n), payload=b"\0" * 16)),
        ("param/0.bias.npy", _npy(np.zeros(n, np.float32))),
    ])
    _load_small(load, path)


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**61, 8), (2**40, 2**30, 2**30)])
def test_shapes_whose_element_count_overflows(tmp_path, shape):
    model = Sequential(Dense(2, 2))
    save_checkpoint(tmp_path / "c.npz", model, extra={"a": np.zeros(3)})
    members = _replace(_members(tmp_path / "c.npz"), "state/0.npy", _npy_header(shape))
    err = _load_small(load_checkpoint, _write(tmp_path / "ovf.npz", members), model)
    assert "shape" in str(err)


@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**62,), (3, -1)])
def test_checkpoint_state_claiming_absurd_shapes_is_refused(tmp_path, shape):
    model = Sequential(Dense(2, 2))
    save_checkpoint(tmp_path / "c.npz", model, extra={"a": np.zeros(3)})
    try:
        member = _npy_header(shape, payload=b"\0" * 16)
    except ValueError:  # numpy will not even write a negative shape: patch one in
        member = _npy_header((3, 7), payload=b"\0" * 16).replace(b"(3, 7)", b"(3, -1)")
    members = _replace(_members(tmp_path / "c.npz"), "state/0.npy", member)
    _load_small(load_checkpoint, _write(tmp_path / "huge.npz", members), model)


def test_header_larger_than_the_limit_is_refused(tmp_path):
    members = _replace(_good_members(tmp_path), "__pynn__.npy",
                       _npy_header((), descr="<U50000000", payload=b"\0" * 64))
    _load_small(load, _write(tmp_path / "h.npz", members))


# ---------------------------------------------------------------------------- JSON headers
@pytest.mark.parametrize("arch, match", [
    # (test_io.py checks Conv2d inside a Sequential; here at the top level)
    ({"type": "Conv2d", "config": {}}, "unknown layer type 'Conv2d'"),
    ({"type": "os.system", "config": {"command": "touch pwned"}}, "unknown layer type"),
    ({"type": "__import__", "config": {"name": "os"}}, "unknown layer type"),
    ({"type": "Module", "config": {}}, "unknown layer type"),
    ({"type": 3}, "architecture"),
    ({"type": None}, "architecture"),
    ("Sequential", "architecture"),
    ({"type": "Sequential", "layers": "Dense"}, "list of layers"),
    ({"type": "Sequential", "layers": [{"type": "ReLU", "config": {"inplace": True}}]},
     "cannot build ReLU"),
    ({"type": "Sequential", "layers": [{"type": "Dropout", "config": {"p": 2.0}}]},
     "cannot build Dropout"),
    ({"type": "Sequential", "layers": [{"type": "ReLU", "config": [1, 2]}]}, "must be a dict"),
    ({"type": "Dense", "config": {"in_features": 2.5, "out_features": 2}}, "in_features"),
    ({"type": "Dense", "config": {"in_features": True, "out_features": 2}}, "in_features"),
    ({"type": "Dense", "config": {"in_features": -2, "out_features": 2}}, "in_features"),
])
def test_hostile_or_unknown_architectures_are_refused(tmp_path, arch, match):
    path = _write(tmp_path / "a.npz", [("__pynn__.npy", _header(arch))])
    err = _load_small(load, path)
    assert match in str(err)
    assert not (tmp_path / "pwned").exists()


def test_deeply_nested_architectures_are_refused(tmp_path):
    arch = {"type": "ReLU", "config": {}}
    for _ in range(200):
        arch = {"type": "Sequential", "layers": [arch]}
    _load_small(load, _write(tmp_path / "deep.npz", [("__pynn__.npy", _header(arch))]))
    # JSON nested beyond the parser's recursion limit
    raw = ('{"format": "pynn.model", "version": 1, "architecture": '
           + "[" * 100_000 + "]" * 100_000 + "}")
    path = _write(tmp_path / "deeper.npz", [("__pynn__.npy", _npy(np.array(raw)))])
    _load_small(load, path)


@pytest.mark.parametrize("header", [
    "not json", "[]", '{"format": "pynn.model"}', '{"format": "evil", "version": 1}',
    '{"format": "pynn.model", "version": "1"}', "NaN",
])
def test_malformed_json_headers_are_refused(tmp_path, header):
    _load_small(load, _write(tmp_path / "j.npz", [("__pynn__.npy", _npy(np.array(header)))]))


def test_a_header_that_is_not_a_string_array_is_refused(tmp_path):
    members = _replace(_good_members(tmp_path), "__pynn__.npy", _npy(np.zeros(3)))
    err = _load_small(load, _write(tmp_path / "h.npz", members))
    assert "string" in str(err)


def test_hostile_dropout_steps_and_checkpoint_state_refs_are_refused(tmp_path):
    model = Sequential(Dense(2, 2), pynn.nn.Dropout(0.5, seed=1))
    save_checkpoint(tmp_path / "c.npz", model, extra={"a": np.zeros(3)})
    members = _members(tmp_path / "c.npz")
    header = json.loads(str(np.load(io.BytesIO(members[0][1]))))
    for steps in ({"1.": -1}, {"0.": 3}, {"1.": "x"}, ["1."]):
        h = dict(header, dropout_steps=steps)
        bad = _replace(members, "__pynn__.npy", _npy(np.array(json.dumps(h))))
        _load_small(load, _write(tmp_path / "s.npz", bad))
    h = dict(header, extra={"__array__": "state/999", "scalar": False})
    bad = _replace(members, "__pynn__.npy", _npy(np.array(json.dumps(h))))
    err = _load_small(load_checkpoint, _write(tmp_path / "r.npz", bad), model)
    assert "state/999" in str(err)

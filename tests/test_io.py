"""pynn.save / pynn.load / checkpoints: round trips, atomic writes, hostile files."""
import io
import json
import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest

import pynn
from pynn.data import Standardizer
from pynn.io import ModelFileError, load, load_checkpoint, save, save_checkpoint
from pynn.nn import (ELU, BatchNorm, CrossEntropyLoss, Dense, Dropout, LeakyReLU, ReLU,
                     Sequential, Sigmoid)
from pynn.optim import Adam, StepLR


def _model(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    scaler = Standardizer(dtype=dtype).fit(rng.normal(3, 2, (50, 6)))
    return Sequential(scaler, Dense(6, 16, seed=seed, dtype=dtype), BatchNorm(16, dtype=dtype),
                      LeakyReLU(0.1), Dropout(0.2, seed=7), Dense(16, 8, seed=seed + 1, dtype=dtype),
                      ELU(0.5), Dense(8, 3, bias=False, seed=seed + 2, dtype=dtype))


def _train_a_bit(model, steps=3):
    opt = Adam(model.parameters(), lr=1e-2)
    loss = CrossEntropyLoss()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(32, 6)).astype(model.dtype)
    y = rng.integers(0, 3, 32)
    for _ in range(steps):
        model.zero_grad()
        loss.forward(model.forward(X), y)
        model.backward(loss.backward())
        opt.step()
    return opt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_gives_identical_predictions(tmp_path, dtype):
    model = _model(dtype)
    _train_a_bit(model)  # BatchNorm running statistics move away from 0/1
    path = tmp_path / "m.npz"
    save(model, path, metadata={"classes": ["a", "b", "c"]})
    loaded, meta = load(path, return_metadata=True)
    X = np.random.default_rng(2).normal(size=(20, 6)).astype(dtype)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert meta == {"classes": ["a", "b", "c"]}
    assert [type(l).__name__ for l in loaded] == [type(l).__name__ for l in model]
    assert loaded[4].seed == 7 and loaded[3].negative_slope == 0.1
    np.testing.assert_array_equal(loaded[2].running_var, model[2].running_var)


def test_file_is_plain_npz_without_pickles(tmp_path):
    path = tmp_path / "m.npz"
    save(_model(), path)
    with np.load(path, allow_pickle=False) as z:
        assert z["__pynn__"].dtype.kind == "U" and z["__pynn__"].shape == ()
        header = json.loads(str(z["__pynn__"]))
        assert all(z[k].dtype != object for k in z.files)
    assert header["format"] == "pynn.model"
    assert header["architecture"]["layers"][1] == {"type": "Dense", "config": {
        "in_features": 6, "out_features": 16, "bias": True, "init": None, "dtype": "float32"}}


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save(_model(), path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save(_model(seed=5), path)
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["m.npz"]  # and no temp file is left behind


def test_truncated_file_raises(tmp_path):
    path = tmp_path / "m.npz"
    save(_model(), path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load(bad)


def test_pickled_and_foreign_files_raise(tmp_path):
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelFileError, match="pickle"):
        load(pkl)
    obj = tmp_path / "obj.npz"
    np.savez(obj, __pynn__=np.array(json.dumps({"format": "pynn.model", "version": 1})),
             payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="objects"):
        load(obj)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, X=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a pynn model file"):
        load(foreign)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ModelFileError, match="not a pynn model file"):
        load(txt)
    assert issubclass(ModelFileError, ValueError)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def _write_raw(path, header, arrays):
    np.savez(path, __pynn__=np.array(json.dumps(header)), **arrays)


def test_unknown_layer_type_raises(tmp_path):
    path = tmp_path / "m.npz"
    _write_raw(path, {"format": "pynn.model", "version": 1, "architecture": {
        "type": "Sequential", "layers": [{"type": "Conv2d", "config": {}}]}}, {})
    with pytest.raises(ModelFileError, match="unknown layer type 'Conv2d'"):
        load(path)


def test_absurd_shapes_raise_before_allocating(tmp_path):
    # An architecture claiming a 10^6 x 10^6 Dense (4 TB) with a tiny stored array.
    path = tmp_path / "huge_arch.npz"
    _write_raw(path, {"format": "pynn.model", "version": 1, "architecture": {
        "type": "Sequential", "layers": [{"type": "Dense", "config": {
            "in_features": 10**6, "out_features": 10**6}}]}},
        {"param/0.weight": np.zeros((2, 2), np.float32), "param/0.bias": np.zeros(2, np.float32)})
    # A .npy member whose header claims 10^12 elements but holds 16 bytes.
    lying = tmp_path / "huge_npy.npz"
    save(Sequential(Dense(2, 2)), lying)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(lying) as src:
        members = {n: src.read(n) for n in src.namelist()}
    members["param/0.weight.npy"] = buf.getvalue() + b"\0" * 16
    with zipfile.ZipFile(lying, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    tracemalloc.start()
    try:
        for p in (path, lying):
            with pytest.raises(ModelFileError, match="shape"):
                load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20


def test_shape_mismatch_and_version_raise(tmp_path):
    path = tmp_path / "m.npz"
    _write_raw(path, {"format": "pynn.model", "version": 1, "architecture": {
        "type": "Sequential", "layers": [{"type": "Dense", "config": {
            "in_features": 3, "out_features": 2}}]}},
        {"param/0.weight": np.zeros((3, 2), np.float32), "param/0.bias": np.zeros(2, np.float32)})
    with pytest.raises(ModelFileError, match=r"needs \(2, 3\)"):
        load(path)
    _write_raw(path, {"format": "pynn.model", "version": 99, "architecture": {}}, {})
    with pytest.raises(ModelFileError, match="version"):
        load(path)


def test_checkpoint_round_trip_restores_optimizer_scheduler_and_counters(tmp_path):
    model = _model()
    opt = _train_a_bit(model)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    model[4].step = 11
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, sched, epoch=3, history={"loss": [1.0, 0.5, float("nan")]},
                    extra={"rng": np.random.default_rng(0).bit_generator.state, "t": (1, 2)})
    fresh = _model(seed=9)
    fopt = Adam(fresh.parameters(), lr=1e-2)
    fsched = StepLR(fopt, step_size=1, gamma=0.5)
    X = np.ones((2, 6), np.float32)
    # a checkpoint is also a model file
    np.testing.assert_array_equal(load(path).predict(X), model.predict(X))
    info = load_checkpoint(path, fresh, fopt, fsched)
    assert info["epoch"] == 3 and info["history"]["loss"][:2] == [1.0, 0.5]
    assert np.isnan(info["history"]["loss"][2]) and info["extra"]["t"] == (1, 2)
    assert fresh[4].step == 11
    assert fopt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 5e-3
    assert fsched.get_last_lr() == sched.get_last_lr()
    for a, b in zip(fresh.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    # identical continuation: the optimizer state (moments, step counts) came back too
    for o in (opt, fopt):
        for p in o.param_groups[0]["params"]:
            p.grad = np.ones(p.shape)
        o.step()
    for a, b in zip(fresh.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_checkpoint_rejects_another_architecture(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _model(), epoch=1)
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        load_checkpoint(path, Sequential(Dense(6, 3)))
    with pytest.raises(ValueError, match="no optimizer state"):
        model = _model()
        load_checkpoint(path, model, Adam(model.parameters()))
    plain = tmp_path / "m.npz"
    save(_model(), plain)
    with pytest.raises(ModelFileError, match="not a checkpoint"):
        load_checkpoint(plain, _model())


def test_bad_checkpoint_changes_nothing(tmp_path):
    """Everything is checked before anything is applied: an optimizer or scheduler state that
    does not fit leaves the model, the optimizer and the scheduler as they were."""
    model = _model()
    opt = _train_a_bit(model)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model, opt, sched, epoch=2)

    target = _model(seed=5)
    params = list(target.parameters())
    two_groups = Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.1}])
    before = target.state_dict()
    before_opt = two_groups.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        load_checkpoint(path, target, two_groups)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert two_groups.state_dict()["param_groups"] == before_opt["param_groups"]

    # the scheduler refuses after the optimizer accepted: the optimizer is put back
    class Picky(StepLR):
        def load_state_dict(self, state_dict):
            raise ValueError("scheduler state does not fit")

    fopt = Adam(target.parameters(), lr=0.25)
    fsched = Picky(fopt, step_size=1)
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(path, target, fopt, fsched)
    assert fopt.param_groups[0]["lr"] == 0.25 and not fopt.state
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_nested_and_v1_files_load(tmp_path):
    inner = Sequential(Dense(4, 5, seed=1), BatchNorm(5), ReLU())
    model = Sequential(inner, Dense(5, 2, seed=2))
    path = tmp_path / "nested.npz"
    save(model, path)
    back = load(path)
    X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    # a version-1 file (before BatchNorm saved num_batches_tracked) still loads
    arrays = {f"{'param' if k.endswith(('weight', 'bias')) else 'buffer'}/{k}": v
              for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    _write_raw(path, {"format": "pynn.model", "version": 1,
                      "architecture": pynn.io.architecture(model)}, arrays)
    old = load(path)
    np.testing.assert_array_equal(old.predict(X), model.predict(X))
    assert int(old[0][1].num_batches_tracked) == 0


def test_package_exports():
    assert pynn.save is save and pynn.load is load and pynn.ModelFileError is ModelFileError
    assert pynn.save_checkpoint is save_checkpoint and pynn.load_checkpoint is load_checkpoint
    with pytest.raises(TypeError, match="model must be"):
        save("not a model", "x.npz")


def test_unsupported_layer_cannot_be_saved(tmp_path):
    from pynn.nn import Module

    class Custom(Module):
        pass

    with pytest.raises(TypeError, match="cannot save a module of type Custom: register it"):
        save(Sequential(Dense(2, 2), Custom()), tmp_path / "m.npz")
    assert not os.listdir(tmp_path)
    save(Sequential(Dense(2, 2), Sigmoid()), tmp_path / "ok.npz")

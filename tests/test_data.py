"""pynn.data: splits, scaling, encoding, batching, augmentation."""
import numpy as np
import pytest

from pynn.data import (GaussianNoise, LabelEncoder, RandomShift, Standardizer, as_array,
                       augmentation_caller, batch_bounds, minibatches, one_hot, split_indices,
                       train_val_split)


def test_stratified_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    tr, va = split_indices(y, 0.2, stratify=True, seed=0)
    assert np.bincount(y[va]).tolist() == [120, 60, 20]
    assert np.bincount(y[tr]).tolist() == [480, 240, 80]
    assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == y.size
    # shuffled, not the tail of each class
    assert not np.all(np.diff(va) > 0)


def test_split_is_reproducible_and_small_classes_land_in_both_parts():
    y = np.array([0] * 9 + [1] * 2)
    a = split_indices(y, 0.25, stratify=True, seed=3)
    b = split_indices(y, 0.25, stratify=True, seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert set(y[a[1]]) == {0, 1} and set(y[a[0]]) == {0, 1}


def test_train_val_split_returns_aligned_parts_and_checks_lengths():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10) % 2
    Xtr, Xva, ytr, yva = train_val_split(X, y, 0.3, stratify=True, seed=1)
    assert Xtr.shape == (7, 2) and Xva.shape == (3, 2)
    assert np.array_equal(Xtr[:, 0] // 2 % 2, ytr)  # rows kept with their labels
    with pytest.raises(ValueError, match="same length"):
        train_val_split(X, y[:9])
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(X, y, 1.5)


def test_standardizer_fits_on_train_only_and_is_a_layer():
    rng = np.random.default_rng(0)
    Xtr = rng.normal(5, 3, (200, 4))
    Xtr[:, 3] = 7.0  # constant feature
    s = Standardizer().fit(Xtr)
    Z = s.transform(Xtr)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Z[:, :3].std(0), 1, atol=1e-4)
    assert np.all(Z[:, 3] == 0)
    Xte = rng.normal(5, 3, (10, 4))
    # forward (layer) and transform give the same numbers
    np.testing.assert_array_equal(s.forward(Xte.astype(np.float32)), s.transform(Xte))
    np.testing.assert_allclose(s.inverse_transform(s.transform(Xte)), Xte, rtol=1e-5)
    with pytest.raises(ValueError, match="4 features"):
        s.transform(Xte[:, :3])
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(Xte)
    with pytest.raises(ValueError, match="NaN"):
        Standardizer().fit([[1.0, np.nan], [2.0, 3.0]])


def test_standardizer_scale_floor_gives_one_common_scale():
    X = np.array([[0, 0.0], [0, 10.0], [1, 20.0]])
    s = Standardizer(scale_floor=1.0).fit(X)
    assert s.scale[0] == s.scale[1] == np.float32(X[:, 1].std())
    with pytest.raises(ValueError, match="scale_floor"):
        Standardizer(scale_floor=2)


def test_one_hot_and_label_encoder():
    assert one_hot(np.array([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        one_hot(np.array([2]), 2)
    enc = LabelEncoder().fit(["cat", "dog", "cat", "emu"])
    assert enc.classes_.tolist() == ["cat", "dog", "emu"]
    assert enc.transform(["emu", "cat"]).tolist() == [2, 0]
    assert enc.inverse_transform([1]).tolist() == ["dog"]
    with pytest.raises(ValueError, match="not seen"):
        enc.transform(["yak"])


def test_minibatches_cover_every_sample_once():
    X = np.arange(23)
    y = -np.arange(23)
    seen = []
    for xb, yb in minibatches(X, y, batch_size=5, seed=0):
        assert np.array_equal(xb, -yb)
        seen.extend(xb.tolist())
    assert sorted(seen) == list(range(23)) and seen != list(range(23))
    assert [b.size for b in minibatches(X, batch_size=5, shuffle=False)] == [5, 5, 5, 5, 3]


def test_batch_bounds_merge_a_single_trailing_sample():
    # BatchNorm cannot normalize a batch of one in training mode
    assert batch_bounds(11, 5) == [(0, 5), (5, 11)]
    assert batch_bounds(1, 5) == [(0, 1)]
    with pytest.raises(ValueError, match="batch_size"):
        batch_bounds(10, 0)


def test_gaussian_noise_and_hooks():
    X = np.zeros((1000, 20), np.float32)
    noisy = GaussianNoise(0.5)(X, rng=np.random.default_rng(0))
    assert noisy.dtype == np.float32 and abs(noisy.std() - 0.5) < 0.01
    again = GaussianNoise(0.5)(X, rng=np.random.default_rng(0))
    assert np.array_equal(noisy, again)
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(-1)
    rng = np.random.default_rng(0)
    assert augmentation_caller(lambda b: b + 1)(X, rng)[0, 0] == 1
    assert augmentation_caller(GaussianNoise(0.0))(X, rng) is X
    with pytest.raises(TypeError, match="callable"):
        augmentation_caller(3)


def test_random_shift_moves_each_image_by_its_own_offset():
    rng = np.random.default_rng(0)
    images = rng.random((300, 5, 7)).astype(np.float32) + 1  # no pixel equals the fill
    shift = RandomShift((5, 7), max_shift=2, fill=-3.0)
    out = shift(images.reshape(300, 35), rng=np.random.default_rng(1)).reshape(300, 5, 7)
    assert out.dtype == np.float32
    offsets = set()
    for image, moved in zip(images, out):
        # the reference: np.roll, with the pixels that wrapped around replaced by the fill
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                expected = np.roll(image, (dy, dx), axis=(0, 1))
                rows = np.arange(5) - dy
                cols = np.arange(7) - dx
                outside = ((rows < 0) | (rows >= 5))[:, None] | ((cols < 0) | (cols >= 7))[None]
                expected[outside] = -3.0
                if np.array_equal(moved, expected):
                    matches.append((dy, dx))
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) == 25  # every offset in [-2, 2]^2 is drawn
    # seeded: the same generator state gives the same batch
    again = shift(images.reshape(300, 35), rng=np.random.default_rng(1)).reshape(300, 5, 7)
    np.testing.assert_array_equal(out, again)
    X = images.reshape(300, 35)
    assert RandomShift((5, 7), max_shift=0)(X) is X


def test_random_shift_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        RandomShift(28)
    with pytest.raises(ValueError, match="max_shift must be <= 4"):
        RandomShift((5, 7), max_shift=5)
    with pytest.raises(TypeError, match="max_shift must be an int"):
        RandomShift((5, 7), max_shift=1.5)
    with pytest.raises(ValueError, match="fill must be finite"):
        RandomShift((5, 7), fill=np.nan)
    with pytest.raises(ValueError, match=r"X must be a 2-D array of images with 35"):
        RandomShift((5, 7))(np.zeros((4, 36), np.float32))


def test_as_array_names_the_argument():
    with pytest.raises(ValueError, match="X contains NaN"):
        as_array("X", [[1.0, np.nan]])
    with pytest.raises(ValueError, match="too large for float32"):
        as_array("X", [1e300], np.float32)
    with pytest.raises(ValueError, match="y must be numeric"):
        as_array("y", ["a", "b"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_all_finite_kernel_agrees_with_numpy(dtype, n_threads):
    # the threaded bit test behind as_array's check of large inputs, against np.isfinite
    from pynn._kernels.checks import all_finite

    rng = np.random.default_rng(7)
    info = np.finfo(dtype)
    for n in (0, 1, 65535, 65536, 65537, 200_003):
        x = (rng.standard_normal(n) * 1e3).astype(dtype)
        if n:
            x[rng.integers(n)] = info.max  # the largest finite value is finite
            x[rng.integers(n)] = info.tiny / 4  # so is a subnormal
        assert all_finite(x, n_threads) is True
        for bad in (np.nan, np.inf, -np.inf):
            for where in {0, n // 2, n - 1} if n else ():
                y = x.copy()
                y[where] = bad
                assert all_finite(y, n_threads) is False, (n, bad, where)
                assert all_finite(y, n_threads) == bool(np.isfinite(y).all())


def test_as_array_finds_a_nan_deep_in_a_large_input():
    X = np.zeros((300, 400), np.float32)
    X[299, 399] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or Inf \(first at index \(299, 399\)"):
        as_array("X", X, np.float32)
    assert as_array("X", np.zeros((300, 400)), np.float32).dtype == np.float32

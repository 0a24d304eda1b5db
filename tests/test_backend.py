"""The backend contract: identical signatures, no silent fallback, one table of bad inputs."""
import inspect

import numpy as np
import pytest

import pynn
from pynn.backend import Backend, NumpyBackend, backend_for, get_backend, set_backend
from pynn.backend.cython import CythonBackend

from conftest import readonly

F32 = np.float32


def _abstract_names():
    return sorted(
        name for name, member in inspect.getmembers(Backend)
        if getattr(member, "__isabstractmethod__", False)
    )


def test_cython_backend_does_not_inherit_the_reference():
    assert not issubclass(CythonBackend, NumpyBackend)
    assert CythonBackend.__mro__[1] is Backend


@pytest.mark.parametrize("name", _abstract_names())
def test_both_backends_implement_each_abstract_method_with_identical_signatures(name):
    base = inspect.signature(getattr(Backend, name))
    for cls in (NumpyBackend, CythonBackend):
        assert name in vars(cls), f"{cls.__name__} does not implement {name}"
        assert inspect.signature(vars(cls)[name]) == base, f"{cls.__name__}.{name}"


def test_backends_define_nothing_public_beyond_the_interface():
    # Public methods live in the shared base only: validation cannot differ between backends.
    for cls in (NumpyBackend, CythonBackend):
        public = {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}
        assert public == set(), f"{cls.__name__} defines public methods {public}"


def test_set_backend_switches_and_rejects_unknown_names():
    before = get_backend().name
    try:
        set_backend("numpy")
        assert get_backend().name == "numpy"
        set_backend("cython")
        assert get_backend().name == "cython"
        with pytest.raises(ValueError, match="backend must be one of"):
            set_backend("torch")
        assert get_backend().name == "cython"
    finally:
        set_backend(before)


def test_cython_is_the_default_backend():
    import pynn.backend as b

    assert b._current == "cython"


def test_set_num_threads_validates_and_round_trips():
    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        assert pynn.get_num_threads() == 1
        with pytest.raises(ValueError, match="n must be >= 1"):
            pynn.set_num_threads(0)
        with pytest.raises(TypeError, match="n must be an int"):
            pynn.set_num_threads(1.5)
    finally:
        pynn.set_num_threads(before)


def test_set_num_threads_limits_blas_too():
    from threadpoolctl import threadpool_info

    before = pynn.get_num_threads()
    try:
        pynn.set_num_threads(1)
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas and all(lib["num_threads"] == 1 for lib in blas)
    finally:
        pynn.set_num_threads(before)


def test_show_config_reports_build_threads_blas_and_backend(capsys):
    pynn.show_config()
    out = capsys.readouterr().out
    assert "pynn " in out
    assert "OpenMP on" in out or "OpenMP off" in out
    assert "threads:" in out and "backend: cython" in out
    assert "blas:" in out


# --------------------------------------------------------------------------------------------
# One table of bad inputs, run against both backends. Each row: (method, args, kwargs,
# exception type, regex that must name the argument).

def _a(*shape, dtype=F32):
    return np.ones(shape, dtype=dtype)


LABELS = np.array([0, 1, 2], dtype=np.int64)

BAD_INPUTS = [
    # wrong types and dtypes
    ("activation_forward", ([[1.0, 2.0]], "relu"), {}, TypeError, r"X must be a numpy.ndarray"),
    ("activation_forward", (np.ones((2, 2), np.int64), "relu"), {}, TypeError, r"X must have dtype float32 or float64"),
    ("activation_forward", (np.ones((2, 2), np.float16), "relu"), {}, TypeError, r"X must have dtype"),
    ("activation_forward", (_a(2, 2), "swish"), {}, ValueError, r"activation must be one of"),
    ("activation_backward", (_a(2, 2), _a(2, 2, dtype=np.float64), _a(2, 2), "relu"), {}, TypeError, r"X has dtype float64"),
    ("activation_backward", (_a(2, 2), _a(2, 3), _a(2, 2), "relu"), {}, ValueError, r"X must have shape \(2, 2\)"),
    ("softmax_forward", (_a(4),), {}, ValueError, r"X must be 2-D"),
    ("dense_forward", (_a(3, 4), _a(5, 3)), {}, ValueError, r"W must have shape \(out_features, 4\)"),
    ("dense_forward", (_a(3, 4), _a(5, 4, dtype=np.float64)), {}, TypeError, r"W has dtype float64"),
    ("dense_forward", (_a(3, 4), _a(5, 4), _a(4)), {}, ValueError, r"b must have shape \(5,\)"),
    ("dense_forward", (_a(3, 4), _a(5, 4)), {"activation": "square"}, ValueError, r"cannot be fused"),
    ("dense_forward", (_a(3), _a(5, 3)), {}, ValueError, r"X must be 2-D"),
    ("dense_backward", (_a(3, 5), _a(3, 4), _a(5, 4), _a(3, 5), _a(5, 3)), {}, ValueError, r"dW must have shape \(5, 4\)"),
    ("dense_backward", (_a(3, 5), _a(2, 4), _a(5, 4), _a(3, 5), _a(5, 4)), {}, ValueError, r"X must have 3 rows"),
    ("dense_backward", (_a(3, 5), _a(3, 4), _a(5, 4), _a(3, 5), [[1.0] * 4] * 5), {}, TypeError, r"dW must be a numpy.ndarray or None"),
    ("mse_loss", (_a(3, 2), _a(3, 3)), {}, ValueError, r"T must have shape \(3, 2\)"),
    ("mse_loss", (_a(0, 2), _a(0, 2)), {}, ValueError, r"Y is an empty batch"),
    ("bce_with_logits_loss", (_a(3, 2), _a(3, 2, dtype=np.float64)), {}, TypeError, r"T has dtype float64"),
    ("softmax_cross_entropy_loss", (_a(3, 3), np.array([0.0, 1.0, 2.0])), {}, TypeError, r"labels must hold integer"),
    ("softmax_cross_entropy_loss", (_a(3, 3), np.array([0, 1, 3])), {}, ValueError, r"labels must be class indices in \[0, 3\)"),
    ("softmax_cross_entropy_loss", (_a(3, 3), np.array([0, -1, 2])), {}, ValueError, r"labels must be class indices"),
    ("softmax_cross_entropy_loss", (_a(3, 3), np.array([0, 1])), {}, ValueError, r"labels must have shape \(3,\)"),
    ("batchnorm_forward_train", (_a(1, 3), _a(3), _a(3), _a(3), _a(3)), {}, ValueError, r"X must have at least 2 rows"),
    ("batchnorm_forward_train", (_a(4, 3), _a(2), _a(3), _a(3), _a(3)), {}, ValueError, r"gamma must have shape \(3,\)"),
    ("batchnorm_forward_train", (_a(4, 3), _a(3), _a(3), _a(3), _a(3)), {"momentum": 1.5}, ValueError, r"momentum must be <= 1"),
    ("batchnorm_forward_train", (_a(4, 3), _a(3), _a(3), _a(3), _a(3)), {"eps": 0.0}, ValueError, r"eps must be > 0"),
    ("batchnorm_forward_train", (_a(4, 3), _a(3), _a(3), *readonly(_a(3)), _a(3)), {}, ValueError, r"running_mean is read-only"),
    ("dropout_forward", (_a(4), 1.0, 0, 0), {}, ValueError, r"p must be < 1"),
    ("dropout_forward", (_a(4), -0.1, 0, 0), {}, ValueError, r"p must be >= 0"),
    ("dropout_forward", (_a(4), 0.5, -1, 0), {}, ValueError, r"seed must be in"),
    ("dropout_backward", (_a(4), np.ones(4, np.float32), 0.5), {}, TypeError, r"mask must be the uint8"),
    # outputs: read-only, wrong dtype, wrong shape, strided
    ("activation_forward", (_a(2, 2), "relu"), {"out": readonly(_a(2, 2))[0]}, ValueError, r"out is read-only"),
    ("activation_forward", (_a(2, 2), "relu"), {"out": _a(2, 2, dtype=np.float64)}, TypeError, r"out has dtype float64"),
    ("activation_forward", (_a(2, 2), "relu"), {"out": _a(2, 3)}, ValueError, r"out must have shape \(2, 2\)"),
    ("activation_forward", (_a(2, 2), "relu"), {"out": _a(2, 4)[:, ::2]}, ValueError, r"out must be C-contiguous"),
    ("dense_forward", (_a(3, 4), _a(5, 4)), {"out": readonly(_a(3, 5))[0]}, ValueError, r"out is read-only"),
    ("dense_backward", (_a(3, 5), _a(3, 4), _a(5, 4), _a(3, 5), readonly(_a(5, 4))[0]), {}, ValueError, r"dW is read-only"),
    ("mse_loss", (_a(3, 2), _a(3, 2)), {"grad_out": readonly(_a(3, 2))[0]}, ValueError, r"grad_out is read-only"),
    ("batchnorm_backward", (_a(4, 3), _a(4, 3), _a(3), np.zeros(3), np.ones(3), _a(3), _a(3)), {"out": _a(3, 4)}, ValueError, r"out must have shape \(4, 3\)"),
    ("batchnorm_backward", (_a(4, 3), _a(4, 3), _a(3), np.zeros(3, F32), np.ones(3), _a(3), _a(3)), {}, TypeError, r"mean has dtype float32"),
]


@pytest.mark.parametrize(
    "method,args,kwargs,exc,pattern", BAD_INPUTS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(BAD_INPUTS)],
)
@pytest.mark.parametrize("name", ["numpy", "cython"])
def test_bad_input_raises_naming_the_argument(name, method, args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        getattr(backend_for(name), method)(*args, **kwargs)


@pytest.mark.parametrize("name", ["numpy", "cython"])
def test_non_contiguous_inputs_are_copied_not_misread(name):
    b = backend_for(name)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 10)).astype(F32)
    W = rng.standard_normal((4, 10)).astype(F32)
    strided = np.asfortranarray(X)
    expected = X @ W.T
    np.testing.assert_allclose(b.dense_forward(strided, W), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        b.dense_forward(X, np.asfortranarray(W)), expected, rtol=1e-5, atol=1e-5
    )
    every_other = rng.standard_normal((6, 20)).astype(F32)[:, ::2]
    np.testing.assert_array_equal(
        b.activation_forward(every_other, "relu"), np.maximum(every_other, 0)
    )

"""The backend contract: identical signatures, no silent fallback, one table of bad inputs."""
import inspect

import numpy as np
import pytest

import pynn
from pynn.backend import Backend, NumpyBackend, backend_for, get_backend, set_backend
from pynn.backend.cython import CythonBackend

from conftest import ODD_SHAPES, assert_close, readonly

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


def test_set_backend_accepts_what_get_backend_returned(capsys):
    prev = get_backend()
    try:
        set_backend("numpy")
        set_backend(prev)
        assert get_backend() is prev
        import pynn.backend as b

        assert b._current == prev.name  # a name, as backend_for expects, not the instance
        layer = pynn.nn.Dense(3, 2, seed=0)
        assert layer.forward(np.ones((4, 3), F32)).shape == (4, 2)
        pynn.show_config()
        assert f"backend: {prev.name}" in capsys.readouterr().out
        # The numpy instance round-trips the same way.
        set_backend(backend_for("numpy"))
        assert get_backend().name == "numpy"
    finally:
        set_backend(prev)


def test_set_backend_rejects_instances_of_other_classes_and_non_names():
    class Custom(NumpyBackend):
        pass

    before = get_backend()
    with pytest.raises(ValueError, match="name must be a backend name .* instance of .*Custom"):
        set_backend(Custom())  # its .name is "numpy", yet it is not the numpy backend
    with pytest.raises(TypeError, match="name must be a str or a Backend, got int"):
        set_backend(3)
    assert get_backend() is before


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


def _shifted(*shape, shift=1, dtype=F32):
    """Two C-contiguous arrays of ``shape`` over one buffer, the second ``shift`` elements on:
    they overlap without being the same elements."""
    size = int(np.prod(shape))
    buf = np.ones(size + shift, dtype=dtype)
    return buf[:size].reshape(shape), buf[shift:].reshape(shape)


# Arrays shared between the rows of the aliasing part of the table (no row writes: each raises
# before its kernel runs).
_SQ = _a(4, 4)                       # X and W of a square dense layer
_SQ_W = _a(4, 4)
_SH1, _SH2 = _shifted(3, 4)
_DW = _a(5, 4)                       # dense_backward: dW (5, 4) over which X (3, 4) may lie
_DY = _a(3, 5)                       # and dY (3, 5), over which db (5,) may lie
_BN = _a(4, 3)
_BN_ROW = _BN[0]                     # a (3,) view into a (4, 3) array
_F64 = np.ones((4, 3))
_I64 = np.zeros(9, np.int64)         # labels over the first 3 int64s, read as float64 (3, 3)
_P, _P_SHIFT = _shifted(8, shift=4)  # a parameter and a buffer over its second half
_V8 = _a(8)

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
    # outputs and in-place accumulators sharing memory with another argument of the call
    ("dense_forward", (_SQ, _SQ_W), {"out": _SQ}, ValueError, r"out must not share memory with X"),
    ("dense_forward", (_SQ, _SQ_W), {"out": _SQ_W}, ValueError, r"out must not share memory with W"),
    ("dense_forward", (_SQ, _a(4, 4), _SQ_W[1]), {"out": _SQ_W}, ValueError, r"out must not share memory with b"),
    ("dense_backward", (_a(3, 5), _a(3, 4), _DW, _a(3, 5), _DW), {}, ValueError, r"dW must not share memory with W"),
    ("dense_backward", (_a(3, 5), _DW[:3], _a(5, 4), _a(3, 5), _DW), {}, ValueError, r"dW must not share memory with X"),
    ("dense_backward", (_DY, _a(3, 4), _a(5, 4), _a(3, 5), _a(5, 4), _DY[0]), {}, ValueError, r"db must not share memory with dY"),
    ("dense_backward", (_a(3, 5), _a(3, 4), _a(5, 4), _a(3, 5), _DW, _DW.reshape(-1)[:5]), {}, ValueError, r"db must not share memory with dW"),
    ("dense_backward", (_a(3, 5), _SH1, _a(5, 4), _a(3, 5), _a(5, 4)), {"out": _SH1}, ValueError, r"out must not share memory with X"),
    ("dense_backward", (_a(3, 5), _a(3, 4), _a(5, 4), _a(3, 5), _DW), {"out": _DW[:3]}, ValueError, r"out must not share memory with dW"),
    ("activation_forward", (_SH1, "relu"), {"out": _SH2}, ValueError, r"out must not share memory with X \(except being X itself"),
    ("activation_backward", (_SH1, _a(3, 4), _a(3, 4), "relu"), {"out": _SH2}, ValueError, r"out must not share memory with dY"),
    ("activation_backward", (_a(3, 4), _SH1, _a(3, 4), "relu"), {"out": _SH2}, ValueError, r"out must not share memory with X"),
    ("activation_backward", (_a(3, 4), _a(3, 4), _SH1, "relu"), {"out": _SH2}, ValueError, r"out must not share memory with Y"),
    ("softmax_forward", (_SH1,), {"out": _SH1}, ValueError, r"out must not share memory with X"),
    ("softmax_backward", (_SH1, _a(3, 4)), {"out": _SH1}, ValueError, r"out must not share memory with dY"),
    ("softmax_backward", (_a(3, 4), _SH1), {"out": _SH1}, ValueError, r"out must not share memory with Y"),
    ("mse_loss", (_SH1, _a(3, 4)), {"grad_out": _SH1}, ValueError, r"grad_out must not share memory with Y"),
    ("mse_loss", (_a(3, 4), _SH1), {"grad_out": _SH2}, ValueError, r"grad_out must not share memory with T"),
    ("bce_with_logits_loss", (_SH1, _a(3, 4)), {"grad_out": _SH2}, ValueError, r"grad_out must not share memory with Z"),
    ("softmax_cross_entropy_loss", (_F64[:3], _I64[:3]), {"grad_out": _I64.view(np.float64).reshape(3, 3)}, ValueError, r"grad_out must not share memory with labels"),
    ("softmax_cross_entropy_loss", (_F64[:3], LABELS), {"grad_out": _F64[:3]}, ValueError, r"grad_out must not share memory with Z"),
    ("batchnorm_forward_train", (_BN, _a(3), _a(3), _a(3), _a(3)), {"out": _BN}, ValueError, r"out must not share memory with X"),
    ("batchnorm_forward_train", (_BN, _a(3), _a(3), _BN_ROW, _a(3)), {}, ValueError, r"running_mean must not share memory with X"),
    ("batchnorm_forward_train", (_a(4, 3), _BN_ROW, _a(3), _BN_ROW, _a(3)), {}, ValueError, r"running_mean must not share memory with gamma"),
    ("batchnorm_forward_train", (_a(4, 3), _a(3), _BN_ROW, _a(3), _BN_ROW), {}, ValueError, r"running_var must not share memory with beta"),
    ("batchnorm_forward_train", (_a(4, 3), _a(3), _a(3), _BN_ROW, _BN_ROW), {}, ValueError, r"running_var must not share memory with running_mean"),
    ("batchnorm_forward_train", (_a(4, 3), _a(3), _a(3), _a(3), _BN_ROW), {"out": _BN}, ValueError, r"out must not share memory with running_var"),
    ("batchnorm_forward_eval", (_BN, _a(3), _a(3), _a(3), _a(3)), {"out": _BN}, ValueError, r"out must not share memory with X"),
    ("batchnorm_forward_eval", (_a(4, 3), _a(3), _a(3), _BN_ROW, _a(3)), {"out": _BN}, ValueError, r"out must not share memory with running_mean"),
    ("batchnorm_backward", (_BN, _a(4, 3), _a(3), np.zeros(3), np.ones(3), _a(3), _a(3)), {"out": _BN}, ValueError, r"out must not share memory with dY"),
    ("batchnorm_backward", (_a(4, 3), _a(4, 3), _BN_ROW, np.zeros(3), np.ones(3), _BN_ROW, _a(3)), {}, ValueError, r"dgamma must not share memory with gamma"),
    ("batchnorm_backward", (_a(4, 3), _a(4, 3), _a(3), np.zeros(3), np.ones(3), _BN_ROW, _BN_ROW), {}, ValueError, r"dbeta must not share memory with dgamma"),
    ("batchnorm_backward", (_a(4, 3), _a(4, 3), _a(3), np.zeros(3), np.ones(3), None, _BN_ROW), {"out": _BN}, ValueError, r"out must not share memory with dbeta"),
    ("batchnorm_backward", (_a(4, 3), _a(4, 3), _a(3), np.zeros(3), np.ones(3), _a(3), _a(3)), {"out": _BN, "activation": "relu", "Y": _BN}, ValueError, r"out must not share memory with Y"),
    ("batchnorm_backward", (_F64, _F64 + 1, np.ones(3), _F64[0], np.ones(3), _F64[0], None), {}, ValueError, r"dgamma must not share memory with dY"),
    ("batchnorm_backward", (np.ones((4, 3)), _F64, np.ones(3), _F64[1], np.ones(3), None, None), {"out": _F64}, ValueError, r"out must not share memory with X"),
    ("dropout_forward", (_SH1, 0.5, 0, 0), {"out": _SH2}, ValueError, r"out must not share memory with X \(except being X itself"),
    ("dropout_forward", (_V8, 0.5, 0, 0), {"mask_out": _V8.view(np.uint8)[:8]}, ValueError, r"mask_out must not share memory with X"),
    ("dropout_forward", (_a(8), 0.5, 0, 0), {"out": _V8, "mask_out": _V8.view(np.uint8)[:8]}, ValueError, r"mask_out must not share memory with out"),
    ("dropout_backward", (_SH1, np.ones((3, 4), np.uint8), 0.5), {"out": _SH2}, ValueError, r"out must not share memory with dY"),
    ("dropout_backward", (_a(8), _V8.view(np.uint8)[:8], 0.5), {"out": _V8}, ValueError, r"out must not share memory with mask"),
    # optimizers: the fused loops take restrict pointers, so no two buffers may overlap
    ("sgd_step", (_V8, _V8), {"lr": 0.1}, ValueError, r"grad must not share memory with param"),
    ("sgd_step", (_P, _P_SHIFT), {"lr": 0.1}, ValueError, r"grad must not share memory with param"),
    ("sgd_step", (_a(8), _V8, _V8), {"lr": 0.1, "momentum": 0.9}, ValueError, r"momentum_buffer must not share memory with grad"),
    ("sgd_step", (_P, _a(8), _P_SHIFT), {"lr": 0.1, "momentum": 0.9}, ValueError, r"momentum_buffer must not share memory with param"),
    ("adagrad_step", (_a(8), _V8, _V8), {"step": 1, "lr": 0.1}, ValueError, r"state_sum must not share memory with grad"),
    ("rmsprop_step", (_a(8), _a(8), _V8, _V8), {"lr": 0.1}, ValueError, r"grad_avg must not share memory with square_avg"),
    ("rmsprop_step", (_a(8), _a(8), _V8, _a(8), _V8), {"lr": 0.1, "momentum": 0.5}, ValueError, r"momentum_buffer must not share memory with square_avg"),
    ("adam_step", (_a(8), _a(8), _V8, _V8), {"step": 1, "lr": 0.1}, ValueError, r"exp_avg_sq must not share memory with exp_avg"),
    ("adam_step", (_P, _a(8), _P_SHIFT, _a(8)), {"step": 1, "lr": 0.1}, ValueError, r"exp_avg must not share memory with param"),
    ("adam_step", (_a(8), _a(8), _V8, _a(8), _V8), {"step": 1, "lr": 0.1}, ValueError, r"max_exp_avg_sq must not share memory with exp_avg"),
    ("adam_step", (_a(8), _V8, _a(8), _a(8), _V8), {"step": 1, "lr": 0.1}, ValueError, r"max_exp_avg_sq must not share memory with grad"),
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


# --------------------------------------------------------------------------------------------
# In place: the elementwise kernels accept out being their input exactly (see the table above
# for partial overlaps and everything the other kernels reject), with the out-of-place result.

ELEMENTWISE = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "step", "square"]


@pytest.mark.parametrize("activation", ELEMENTWISE)
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
def test_activation_forward_in_place(backend, ref, dtype, n_threads, rng, shape, activation):
    X = rng.standard_normal(shape).astype(dtype)
    expected = ref.activation_forward(X, activation)
    Xi = X.copy()
    assert backend.activation_forward(Xi, activation, out=Xi) is Xi
    assert_close(Xi, expected, dtype)
    # "exactly" means the same elements, not the same Python object
    Xv = X.copy()
    backend.activation_forward(Xv, activation, out=Xv[...])
    assert_close(Xv, expected, dtype)


@pytest.mark.parametrize("target", ["dY", "X", "Y"])
@pytest.mark.parametrize("activation", ELEMENTWISE)
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
def test_activation_backward_in_place(backend, ref, dtype, n_threads, rng, shape, activation,
                                      target):
    X = rng.standard_normal(shape).astype(dtype)
    Y = ref.activation_forward(X, activation)
    dY = rng.standard_normal(shape).astype(dtype)
    expected = ref.activation_backward(dY, X, Y, activation)
    arrays = {"dY": dY.copy(), "X": X.copy(), "Y": Y.copy()}
    out = arrays[target]
    got = backend.activation_backward(arrays["dY"], arrays["X"], arrays["Y"], activation, out=out)
    assert got is out
    assert_close(out, expected, dtype)


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=str)
def test_dropout_in_place(backend, ref, dtype, n_threads, rng, shape):
    X = rng.standard_normal(shape).astype(dtype)
    Y_ref, mask_ref = ref.dropout_forward(X, 0.3, seed=5, step=7)
    Xi = X.copy()
    Y, mask = backend.dropout_forward(Xi, 0.3, seed=5, step=7, out=Xi)
    assert Y is Xi
    np.testing.assert_array_equal(mask, mask_ref)
    assert_close(Xi, Y_ref, dtype)
    dY = rng.standard_normal(shape).astype(dtype)
    dX_ref = ref.dropout_backward(dY, mask_ref, 0.3)
    dYi = dY.copy()
    assert backend.dropout_backward(dYi, mask, 0.3, out=dYi) is dYi
    assert_close(dYi, dX_ref, dtype)


@pytest.mark.parametrize("name", ["numpy", "cython"])
def test_dense_forward_out_over_x_was_wrong_and_is_now_rejected(name):
    # Before the check the Cython GEMM overwrote X while reading it (NumPy's temporary hid it).
    b = backend_for(name)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 6))
    W = rng.standard_normal((6, 6))
    before = X.copy()
    with pytest.raises(ValueError, match="out must not share memory with X"):
        b.dense_forward(X, W, None, out=X)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("name", ["numpy", "cython"])
def test_input_copied_to_c_order_may_share_memory_with_out(name):
    # A strided input is copied before the kernel runs, so out may overlap the caller's array:
    # the kernel reads the copy. (Here out is the C-ordered transpose of a Fortran-ordered X.)
    b = backend_for(name)
    rng = np.random.default_rng(4)
    X = np.asfortranarray(rng.standard_normal((5, 5)))
    W = rng.standard_normal((5, 5))
    expected = np.ascontiguousarray(X) @ W.T
    out = X.T
    assert out.flags.c_contiguous and np.shares_memory(out, X)
    b.dense_forward(X, W, None, out=out)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)

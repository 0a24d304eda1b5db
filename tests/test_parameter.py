"""Parameter and ParameterArena: views into flat buffers, re-packing, grad assignment."""
import numpy as np
import pytest

from pynn.nn import Parameter, ParameterArena, pack
from pynn.nn.parameter import arenas_of


def _three(dtype=np.float32):
    return [Parameter(np.arange(6, dtype=dtype).reshape(2, 3)),
            Parameter(np.full(4, 5, dtype=dtype)),
            Parameter(np.ones((3, 1), dtype=dtype))]


def test_a_lone_parameter_has_its_own_arena():
    p = Parameter(np.ones((2, 2), np.float64))
    assert p.arena is not None and p.arena.params == [p] and p.offset == 0
    assert np.shares_memory(p.data, p.arena.data) and np.shares_memory(p.grad, p.arena.grad)
    assert not np.any(p.grad)


def test_pack_makes_views_and_keeps_values_and_grads():
    params = _three()
    params[1].grad = np.arange(4)
    values = [p.data.copy() for p in params]
    arena = pack(params)
    assert arena.offsets == [0, 6, 10] and arena.size == 13
    for p, v, off in zip(params, values, arena.offsets):
        assert p.arena is arena and p.offset == off
        np.testing.assert_array_equal(p.data, v)
        assert np.shares_memory(p.data, arena.data) and np.shares_memory(p.grad, arena.grad)
    np.testing.assert_array_equal(arena.grad[6:10], np.arange(4))
    arena.data[:] = -1  # writes through the arena are what the layers see
    assert np.all(params[0].data == -1)


def test_repacking_moves_parameters_and_old_arena_stops_owning():
    params = _three()
    first = pack(params)
    params[2].grad = np.full((3, 1), 2.0)
    second = pack([params[2], params[0]])
    assert not first.owns_all() and second.owns_all()
    np.testing.assert_array_equal(params[2].grad, 2.0)
    np.testing.assert_array_equal(params[0].data, np.arange(6).reshape(2, 3))
    assert params[1].arena is first


def test_grad_and_data_assignment_copy_into_the_buffer():
    p = Parameter(np.zeros(3, np.float32))
    arena = p.arena
    g = np.array([1.0, 2.0, 3.0])  # float64 in, cast into the float32 buffer
    p.grad = g
    g[0] = 99
    assert p.grad[0] == 1.0 and p.grad.dtype == np.float32
    assert np.shares_memory(p.grad, arena.grad)
    p.data = [4, 5, 6]
    np.testing.assert_array_equal(arena.data, [4, 5, 6])
    p.grad = None  # torch's "no gradient": zeros here
    assert not np.any(arena.grad)
    with pytest.raises(ValueError, match="grad must have shape"):
        p.grad = np.ones(4)
    with pytest.raises(ValueError, match="data must have shape"):
        p.data = np.ones((3, 1))


def test_arena_buffers_are_cache_line_aligned_and_segments_start_on_a_line():
    params = _three(np.float64)
    arena = ParameterArena(params, segment_starts=[1, 2])
    assert arena.data.ctypes.data % 64 == 0 and arena.grad.ctypes.data % 64 == 0
    assert arena.offsets == [0, 8, 16]  # 8 doubles per line
    assert all(p.data.ctypes.data % 64 == 0 for p in params)
    assert not np.any(arena.data[6:8]) and not np.any(arena.grad[12:16])  # zero padding


def test_arena_zero_grad_and_errors():
    params = _three()
    arena = pack(params)
    for p in params:
        p.grad = np.ones(p.shape)
    arena.zero_grad()
    assert not any(np.any(p.grad) for p in params)
    with pytest.raises(ValueError, match="at least one"):
        ParameterArena([])
    with pytest.raises(TypeError, match="one dtype"):
        ParameterArena([Parameter(np.ones(2, np.float32)), Parameter(np.ones(2))])
    with pytest.raises(ValueError, match="same Parameter twice"):
        ParameterArena([params[0], params[0]])
    with pytest.raises(TypeError, match="float32 or float64"):
        Parameter(np.ones(2, np.int64))


def test_arenas_of_finds_an_arena_holding_exactly_the_parameters():
    params = _three()
    arena = pack(params)
    assert arenas_of(params) == {np.dtype(np.float32): arena}
    assert arenas_of(params[:2]) is None  # the arena holds more than these
    pack(params[:1])
    assert arenas_of(params) is None  # split over two arenas

"""Property tests of numpy's implicit rules: broadcasting, axes, keepdims, dtypes.

Random mutually broadcastable shapes (scalars, size-1 dimensions, either
operand the larger) for binary operations, and random axes (negative ones,
tuples, ``None``) with ``keepdims`` for reductions.  Values must equal numpy's
to rounding, and gradients must equal the closed form "derivative times the
weights, summed over the broadcast dimensions" (unbroadcast).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyzygote as pz

# Derandomized: the same 60 examples every run, so CI is reproducible; set
# derandomize=False (and raise max_examples) to explore new examples locally.
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)

two_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
three_shapes = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)
seeds = st.integers(0, 2**32 - 1)


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the dimensions broadcasting added to an array of ``shape``."""
    g = np.sum(g, axis=tuple(range(g.ndim - len(shape))))
    return np.sum(g, axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)


# op: (function, input generator for x and y, closed-form partial derivatives)
def _uniform(lo: float, hi: float) -> Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]:
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def _signed(lo: float, hi: float) -> Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]:
    return lambda rng, shape: rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


BINARY: dict[str, tuple[Any, Any, Any, Callable[..., tuple[Any, Any]]]] = {
    "add": (np.add, _uniform(-2, 2), _uniform(-2, 2), lambda x, y: (np.ones_like(x + y), np.ones_like(x + y))),
    "subtract": (np.subtract, _uniform(-2, 2), _uniform(-2, 2), lambda x, y: (np.ones_like(x - y), -np.ones_like(x - y))),
    "multiply": (np.multiply, _uniform(-2, 2), _uniform(-2, 2), lambda x, y: (y + 0 * x, x + 0 * y)),
    "divide": (np.divide, _uniform(-2, 2), _signed(0.5, 2), lambda x, y: (1 / y + 0 * x, -x / y**2)),
    "power": (np.power, _uniform(0.5, 2), _uniform(-2, 2), lambda x, y: (y * x ** (y - 1), x**y * np.log(x))),
    "maximum": (np.maximum, _uniform(-2, 2), _uniform(-2, 2), lambda x, y: ((x > y) * 1.0, (x < y) * 1.0)),
    "minimum": (np.minimum, _uniform(-2, 2), _uniform(-2, 2), lambda x, y: ((x < y) * 1.0, (x > y) * 1.0)),
    "arctan2": (np.arctan2, _signed(0.2, 2), _signed(0.2, 2), lambda x, y: (y / (x**2 + y**2), -x / (x**2 + y**2))),
    "hypot": (np.hypot, _signed(0.2, 2), _signed(0.2, 2), lambda x, y: (x / np.hypot(x, y), y / np.hypot(x, y))),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(shapes=two_shapes, seed=seeds)
def test_binary_broadcasting_values_and_gradients(name: str, shapes: Any, seed: int) -> None:
    op, gen_x, gen_y, partials = BINARY[name]
    rng = np.random.default_rng(seed)
    (sx, sy), out_shape = shapes.input_shapes, shapes.result_shape
    x, y = gen_x(rng, sx), gen_y(rng, sy)
    w = rng.standard_normal(out_shape)

    (value,) = pz.make_program(op, x, y)(x, y)
    expected = op(x, y)
    assert np.shape(value) == expected.shape == out_shape
    np.testing.assert_allclose(value, expected, rtol=1e-15, atol=0)

    gx, gy = pz.gradient(lambda a, b: np.sum(w * op(a, b)), x, y)
    dx, dy = partials(x, y)
    assert np.shape(gx) == sx and np.shape(gy) == sy
    np.testing.assert_allclose(gx, unbroadcast(w * dx, sx), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gy, unbroadcast(w * dy, sy), rtol=1e-12, atol=1e-12)

    # one operand closed over as a constant: the other's gradient is unchanged
    (gx_only,) = pz.gradient(lambda a: np.sum(w * op(a, y)), x)
    np.testing.assert_allclose(gx_only, gx, rtol=1e-14, atol=1e-14)


@SETTINGS
@given(shapes=three_shapes, seed=seeds)
def test_where_broadcasts_condition_and_branches(shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (sc, sx, sy), out_shape = shapes.input_shapes, shapes.result_shape
    cond, x, y = rng.random(sc) < 0.5, rng.standard_normal(sx), rng.standard_normal(sy)
    w = rng.standard_normal(out_shape)
    (value,) = pz.make_program(lambda a, b: np.where(cond, a, b), x, y)(x, y)
    np.testing.assert_array_equal(value, np.where(cond, x, y))
    gx, gy = pz.gradient(lambda a, b: np.sum(w * np.where(cond, a, b)), x, y)
    chosen = np.broadcast_to(cond, out_shape)
    np.testing.assert_allclose(gx, unbroadcast(w * chosen, sx), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gy, unbroadcast(w * ~chosen, sy), rtol=1e-13, atol=1e-13)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=3), scalar=st.floats(-3, 3), seed=seeds,
       single=st.booleans())
def test_python_scalars_are_weak_and_broadcast(shape: tuple[int, ...], scalar: float, seed: int, single: bool) -> None:
    dtype = np.float32 if single else np.float64
    x = np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(dtype)

    def f(a: Any) -> Any:
        return (scalar - a) * 2.0 + a / 3.0 + scalar * a**2 + np.maximum(a, scalar)

    (value,) = pz.make_program(f, x)(x)
    expected = f(x)
    assert value.dtype == expected.dtype == dtype and value.shape == shape
    np.testing.assert_allclose(value, expected, rtol=1e-6 if single else 1e-15)
    (g,) = pz.gradient(lambda a: np.sum(f(a)), x)
    assert np.asarray(g).dtype == dtype and np.shape(g) == shape
    closed = -2.0 + 1.0 / 3.0 + 2.0 * scalar * x.astype(np.float64) + (x > scalar) + 0.5 * (x == scalar)
    np.testing.assert_allclose(g, closed, rtol=1e-5 if single else 1e-13, atol=1e-5 if single else 1e-13)


_WEAK_PROGRAMS: dict[str, Callable[[Any, Any], Any]] = {
    "array times number": lambda w, c: np.sum(w * c),
    "Python arithmetic first": lambda w, c: np.sum(w * (c * 2.0 + 1) - c**2 / w),
    "negated and absolute": lambda w, c: np.sum(-c * w + abs(c) * w),
    "a numpy function of it is strong": lambda w, c: np.sum(w * np.exp(c)),
    "where": lambda w, c: np.sum(np.where(w > 1.0, w * c, c - w)),
    "where picks the number itself": lambda w, c: np.sum(np.where(w > 1.0, w, c) * w),
    "number alone": lambda w, c: np.sum(w) + c,
    "np.dot reads it as a float64 array": lambda w, c: np.sum(np.dot(w, c)),
    # numpy's functions read it with asarray (strong float64), and return numpy scalars (fuzzer)
    "np.mean of it is strong": lambda w, c: np.sum(np.mean(c) * w),
    "np.clip of it is strong": lambda w, c: np.sum(np.clip(c, np.float32(0.5), np.float32(2.5)) * w),
    "np.clip to it stays weak": lambda w, c: np.sum(np.clip(w, c, 2.0)),
}


@pytest.mark.parametrize("name", list(_WEAK_PROGRAMS))
@pytest.mark.parametrize("number", [0.5, 3])
def test_python_number_arguments_are_weak_as_in_numpy(name: str, number: Any) -> None:
    """Found by the API fuzzer: a Python float passed as an argument (a penalty weight, a time step)
    made a float32 model's value float64, where numpy keeps float32 (NEP 50) and so does JAX."""
    f = _WEAK_PROGRAMS[name]
    w = np.array([0.75, 1.5, 2.0], dtype=np.float32)
    want = f(w, number)
    value, (gw, gc) = pz.withgradient(f, w, number)
    assert np.asarray(value).dtype == np.asarray(want).dtype, (value, want)
    np.testing.assert_allclose(value, want, rtol=1e-6)
    assert gw.dtype == np.float32 and isinstance(gc, float)
    h = 1e-3
    np.testing.assert_allclose(gc, (f(w.astype(np.float64), number + h) - f(w.astype(np.float64), number - h)) / (2 * h), rtol=1e-4)
    # np.float64 is not weak: numpy promotes, and so does the trace
    strong = pz.withgradient(f, w, np.float64(number))[0]
    assert np.asarray(strong).dtype == np.asarray(f(w, np.float64(number))).dtype
    g = pz.grad(lambda w, c=1.0: f(w, c))(w, c=number)  # a keyword argument is data, and weak too
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, gw, rtol=1e-6)


def test_a_ufuncs_dtype_keyword_fixes_the_type_of_its_result_and_loop() -> None:
    """np.add(a32, b32, dtype=np.float64) is float64 in numpy; traced, it was float32 (found while
    checking np.dot of a Python float)."""
    w = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    for f in (
        lambda w: np.add(w, w, dtype=np.float64),
        lambda w: np.sin(w, dtype=np.float64),
        lambda w: np.multiply(w.astype(np.float64), 0.1, dtype=np.float32),
        lambda w: np.dot(w, 0.1),
    ):
        (got,) = pz.make_program(f, w)(w)
        assert got.dtype == f(w).dtype, (got.dtype, f(w).dtype)
        np.testing.assert_array_equal(got, f(w))
    with pytest.raises(TypeError, match="No loop matching"):
        pz.make_program(lambda w: np.less(w, 1.0, dtype=np.float64), w)


@st.composite
def shape_and_axis(draw: Any) -> tuple[tuple[int, ...], Any]:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=3))
    nd = len(shape)
    options = [st.none()]
    if nd:
        options += [st.integers(-nd, nd - 1), hnp.valid_tuple_axes(nd, min_size=1)]
    return shape, draw(st.one_of(*options))


def _expand(w: np.ndarray, x: np.ndarray, axis: Any) -> np.ndarray:
    """``w`` (a reduction's output shape) broadcast back over ``x``'s reduced axes."""
    kept = np.sum(x, axis=axis, keepdims=True).shape
    return np.broadcast_to(w.reshape(kept), x.shape)


# closed-form gradient from x, the kept-dims result r, the weights expanded over x, and the count n
REDUCTIONS: dict[str, tuple[Any, Callable[..., np.ndarray]]] = {
    "sum": (np.sum, lambda x, r, we, n: we),
    "mean": (np.mean, lambda x, r, we, n: we / n),
    "max": (np.max, lambda x, r, we, n: we * (x == r)),
    "min": (np.min, lambda x, r, we, n: we * (x == r)),
    "prod": (np.prod, lambda x, r, we, n: we * r / x),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@SETTINGS
@given(shape_axis=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_reductions_axes_keepdims(name: str, shape_axis: Any, keepdims: bool, seed: int) -> None:
    op, closed_form = REDUCTIONS[name]
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    expected = op(x, axis=axis, keepdims=keepdims)
    (value,) = pz.make_program(lambda a: op(a, axis=axis, keepdims=keepdims), x)(x)
    assert np.shape(value) == np.shape(expected)
    np.testing.assert_allclose(value, expected, rtol=1e-14, atol=0)

    w = rng.standard_normal(np.shape(expected))
    (g,) = pz.gradient(lambda a: np.sum(w * op(a, axis=axis, keepdims=keepdims)), x)
    r_kept = np.broadcast_to(op(x, axis=axis, keepdims=True), x.shape)
    count = x.size // max(np.size(expected), 1)
    closed = closed_form(x, r_kept, _expand(w, x, axis), count)
    assert np.shape(g) == shape
    np.testing.assert_allclose(g, closed, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(shape_axis=shape_and_axis(), seed=seeds)
def test_cumsum_axes(shape_axis: Any, seed: int) -> None:
    shape, axis = shape_axis
    if isinstance(axis, tuple):
        axis = axis[0]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    expected = np.cumsum(x, axis=axis)
    (value,) = pz.make_program(lambda a: np.cumsum(a, axis=axis), x)(x)
    np.testing.assert_allclose(value, expected, rtol=1e-14, atol=1e-15)
    w = rng.standard_normal(expected.shape)
    (g,) = pz.gradient(lambda a: np.sum(w * np.cumsum(a, axis=axis)), x)
    if axis is None:
        closed = np.cumsum(w[::-1])[::-1].reshape(shape)
    else:
        closed = np.flip(np.cumsum(np.flip(w, axis), axis=axis), axis)
    np.testing.assert_allclose(g, closed, rtol=1e-13, atol=1e-13)


@SETTINGS
@given(shape_axis=shape_and_axis())
def test_invalid_axes_raise_like_numpy(shape_axis: Any) -> None:
    shape, _ = shape_axis
    x = np.ones(shape)
    nd = max(len(shape), 1)  # numpy reductions accept axis 0 and -1 on 0-d arrays
    for bad in (nd, -nd - 1):
        with pytest.raises(np.exceptions.AxisError):
            np.sum(x, axis=bad)
        with pytest.raises(np.exceptions.AxisError):
            pz.gradient(lambda a: np.sum(np.sum(a, axis=bad)), x)


@SETTINGS
@given(shapes=two_shapes, seed=seeds)
def test_explicit_broadcast_functions(shapes: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (sx, sy), out = shapes.input_shapes, shapes.result_shape
    x, y = rng.standard_normal(sx), rng.standard_normal(sy)
    w = rng.standard_normal(out)

    def f(a: Any, b: Any) -> Any:
        ba, bb = np.broadcast_arrays(a, b)
        return np.sum(w * np.broadcast_to(a, out) * bb) + np.sum(ba * w)

    gx, gy = pz.gradient(f, x, y)
    yb = np.broadcast_to(y, out)
    np.testing.assert_allclose(gx, unbroadcast(w * yb + w, sx), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gy, unbroadcast(w * np.broadcast_to(x, out), sy), rtol=1e-12, atol=1e-12)
    (value,) = pz.make_program(f, x, y)(x, y)
    np.testing.assert_allclose(value, f(x, y), rtol=1e-13)

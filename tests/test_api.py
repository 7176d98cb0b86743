"""The public API: gradient, grad, withgradient, value_and_grad, pullback,
jacobian, hessian, jvp; pytrees, dtypes, and the errors users meet."""

from __future__ import annotations

import collections
import functools
import re
import traceback
import warnings
from typing import Any

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.testing import assert_allclose_gradients, check_grads, numerical_gradient
from tests.aliasing import assert_pullbacks_keep_their_point, assert_results_are_own


def simulate_trajectory(v: Any, gravity: float = 9.8, time: float = 1.0) -> Any:
    t = np.linspace(0.0, time, 100)
    return v * t - 0.5 * gravity * t**2


# --- the seed example ---------------------------------------------------------------
def test_seed_example_gradient_is_exactly_one() -> None:
    result = pz.gradient(lambda v: simulate_trajectory(v)[-1], 10.0)
    assert result == (1.0,)
    assert type(result[0]) is float


def test_seed_example_grad_and_value() -> None:
    assert pz.grad(lambda v: simulate_trajectory(v)[-1])(10.0) == 1.0
    value, grads = pz.withgradient(lambda v: simulate_trajectory(v)[-1], 10.0)
    assert grads == (1.0,)
    assert float(value) == pytest.approx(10.0 - 4.9, rel=1e-15)
    # the whole trajectory: d h(t) / dv = t
    (jac,) = pz.jacobian(simulate_trajectory, 10.0)
    np.testing.assert_array_equal(jac, np.linspace(0.0, 1.0, 100))


# --- the transforms -------------------------------------------------------------------
def test_gradient_of_several_arguments() -> None:
    x, y = np.array([1.0, 2.0]), 3.0
    gx, gy = pz.gradient(lambda x, y: np.sum(x * y) + y**2, x, y)
    np.testing.assert_array_equal(gx, [3.0, 3.0])
    assert gy == 9.0 and isinstance(gy, float)


def test_grad_argnums_and_value_and_grad() -> None:
    f = lambda x, y: x * y**2  # noqa: E731
    assert pz.grad(f)(2.0, 3.0) == 9.0
    assert pz.grad(f, argnums=1)(2.0, 3.0) == 12.0
    assert pz.grad(f, argnums=(0, 1))(2.0, 3.0) == (9.0, 12.0)
    value, g = pz.value_and_grad(f, argnums=(1,))(2.0, 3.0)
    assert float(value) == 18.0 and g == (12.0,)


def test_withgradient_matches_value_and_finite_differences() -> None:
    f = lambda w: np.sum(np.tanh(w) ** 2 * np.arange(1.0, 4.0))  # noqa: E731
    w = np.array([0.3, -0.2, 0.9])
    value, (g,) = pz.withgradient(f, w)
    assert float(value) == pytest.approx(f(w), rel=1e-15)
    np.testing.assert_allclose(g, numerical_gradient(f, w)[0], rtol=1e-8)


@pytest.mark.parametrize("sym", [False, True])
def test_hessian_of_quadratic_form(sym: bool) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    if sym:
        a = a + a.T
    b = rng.standard_normal(4)
    h = pz.hessian(lambda x: 0.5 * x @ a @ x + b @ x, rng.standard_normal(4))
    np.testing.assert_allclose(h, 0.5 * (a + a.T), rtol=1e-14, atol=1e-14)
    h2 = pz.hessian(lambda x: x @ a @ x, np.zeros(4))
    np.testing.assert_allclose(h2, a + a.T, rtol=1e-14, atol=1e-14)


def test_hessian_shapes_and_scalar_input() -> None:
    h = pz.hessian(lambda x: np.sum(x**3), np.arange(1.0, 7.0).reshape(2, 3))
    assert h.shape == (2, 3, 2, 3)
    expected = np.diag(6.0 * np.arange(1.0, 7.0)).reshape(2, 3, 2, 3)
    np.testing.assert_allclose(h, expected, rtol=1e-14)
    np.testing.assert_allclose(pz.hessian(lambda x: x**3, 2.0), 12.0, rtol=1e-14)


def test_the_hessian_in_a_python_float_is_a_float_as_its_gradient_is() -> None:
    # As Zygote.hessian(x -> x^3, 2.0) is a Float64, and as pz.jacobian(pz.grad(f), 2.0) was
    # (API fuzzer: the two disagreed, a 0-d array against a float).
    f = lambda x: x**3  # noqa: E731
    h = pz.hessian(f, 2.0)
    assert type(h) is float and h == pz.jacobian(pz.grad(f), 2.0)[0] == 12.0
    assert isinstance(pz.hessian(f, np.float64(2.0)), np.ndarray)  # numpy in, numpy out
    H = pz.hessian(lambda d: d["a"] ** 3 * d["b"] * np.sum(d["c"] ** 2), {"a": 2.0, "b": 1.0, "c": np.ones(2)})
    assert type(H["a"]["b"]) is float and H["a"]["b"] == 24.0 and H["b"]["b"] == 0.0
    np.testing.assert_array_equal(H["a"]["c"], [24.0, 24.0])
    np.testing.assert_array_equal(H["c"]["c"], 16.0 * np.eye(2))


@pytest.mark.parametrize(
    "out_shape, x_shape, y_shape",
    [((), (3,), ()), ((2,), (3,), (2,)), ((2, 3), (3,), (2, 1)), ((4, 2, 3), (2, 3), ()), ((2,), (), (2,))],
)
def test_jacobian_shapes_and_values(out_shape: tuple[int, ...], x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal(out_shape + x_shape)
    x, y = rng.standard_normal(x_shape), rng.standard_normal(y_shape)

    def f(x: Any, y: Any) -> Any:
        lin = np.tensordot(w, x, axes=len(x_shape)) if x_shape else w * x
        return np.sin(lin) * (y if np.ndim(y) <= len(out_shape) else np.sum(y)) + np.sum(y**2)

    jx, jy = pz.jacobian(f, x, y)
    assert np.shape(jx) == out_shape + x_shape
    assert np.shape(jy) == out_shape + y_shape
    for j, k in ((jx, 0), (jy, 1)):
        args = [x, y]
        flat = np.reshape(j, (int(np.prod(out_shape)), -1))
        for i in range(flat.shape[0]):
            ct = np.zeros(int(np.prod(out_shape)))
            ct[i] = 1.0
            ct = ct.reshape(out_shape)
            fd = numerical_gradient(lambda *a: np.sum(ct * f(*a)), *args)[k]
            np.testing.assert_allclose(flat[i], np.ravel(fd), rtol=1e-7, atol=1e-9)


def test_jvp() -> None:
    x, t = np.array([0.5, 1.0]), np.array([1.0, -2.0])
    y, ty = pz.jvp(lambda x: np.exp(x) * x[0], (x,), (t,))
    np.testing.assert_allclose(y, np.exp(x) * x[0], rtol=1e-15)
    np.testing.assert_allclose(ty, np.exp(x) * t * x[0] + np.exp(x) * t[0], rtol=1e-14)
    y, ty = pz.jvp(lambda a, b: a * b, (2.0, 3.0), (1.0, 10.0))
    assert float(y) == 6.0 and float(ty) == 23.0
    with pytest.raises(TypeError, match="tuples"):
        pz.jvp(lambda a: a, 1.0, 1.0)
    with pytest.raises(ValueError, match="same structure"):
        pz.jvp(lambda a: a, (1.0,), (1.0, 2.0))
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        pz.jvp(lambda a: a, (np.ones(2),), (np.ones(3),))


def test_pullback() -> None:
    x = np.array([1.0, 2.0, 3.0])
    y, back = pz.pullback(lambda x: np.cumsum(x) * 2.0, x)
    np.testing.assert_array_equal(y, np.cumsum(x) * 2.0)
    (g,) = back(np.array([1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(g, [4.0, 2.0, 2.0])
    (g,) = back(np.array([0.0, 1.0, 0.0]))  # a pullback can be called many times
    np.testing.assert_array_equal(g, [2.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="cotangent of shape"):
        back(np.ones(4))
    # structured outputs take structured cotangents
    y, back = pz.pullback(lambda x: {"a": x * 2.0, "b": (np.sum(x), x[0])}, x)
    (g,) = back({"a": np.ones(3), "b": (1.0, 10.0)})
    np.testing.assert_array_equal(g, [13.0, 3.0, 3.0])


def test_outputs_independent_of_inputs_give_zero_gradients() -> None:
    assert pz.gradient(lambda x: 1.0, 2.0) == (0.0,)
    assert pz.gradient(lambda x, y: x * 2.0, 2.0, 3.0) == (2.0, 0.0)
    assert pz.gradient(lambda x: x, 5.0) == (1.0,)
    (jac,) = pz.jacobian(lambda x: np.ones(3), np.ones(2))
    np.testing.assert_array_equal(jac, np.zeros((3, 2)))


def test_check_grads_on_a_composite_function() -> None:
    def f(w: Any, data: Any) -> Any:
        return {"loss": np.sum(np.tanh(data["x"] @ w) ** 2), "reg": np.abs(w) ** 1.5}

    w = np.array([0.4, -0.7])
    data = {"x": np.array([[1.0, 2.0], [0.5, -1.0], [0.3, 0.1]])}
    check_grads(f, (w, data), modes=("fwd", "rev"))
    check_grads(lambda w: np.sum(np.tanh(data["x"] @ w) ** 2), (w,), order=2)


# --- pytrees ---------------------------------------------------------------------------------
Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "params",
    [
        {"w": np.array([1.0, 2.0]), "b": 0.5},
        (np.array([[1.0, 2.0], [3.0, 4.0]]), [0.1, 0.2]),
        [np.ones(3), 2.0, {"deep": (3.0, np.array([1.0, -1.0]))}],
        {"layers": [{"w": 1.5}, {"w": np.array([2.0, 3.0])}], "s": (5.0, 3.0)},
        Point(2.0, np.array([1.0, 3.0])),
    ],
    ids=["dict", "tuple-numeric-list", "nested-list", "nested-dict", "namedtuple"],
)
def test_pytree_gradients_have_the_structure_of_the_arguments(params: Any) -> None:
    from pyzygote.pytree import flatten

    def f(p: Any) -> Any:
        leaves, _ = flatten(p)
        return sum(np.sum(np.sin(leaf) * (i + 1.0)) for i, leaf in enumerate(leaves))

    (g,) = pz.gradient(f, params)
    assert flatten(g)[1] == flatten(params)[1]
    assert type(g) is type(params)
    assert_allclose_gradients(g, numerical_gradient(f, params)[0], rtol=1e-8, atol=1e-10)
    for leaf, gl in zip(flatten(params)[0], flatten(g)[0]):
        assert np.shape(gl) == np.shape(leaf)
        assert isinstance(gl, float) == isinstance(leaf, float)


def test_static_leaves_get_none() -> None:
    assert pz.gradient(lambda x, name, opt: x * len(name), 2.0, "abc", None) == (3.0, None, None)
    (g,) = pz.gradient(lambda p: p["x"] ** 2, {"x": 3.0, "tag": "label"})
    assert g == {"x": 6.0, "tag": None}


def test_python_bools_are_static_flags() -> None:
    calls = []

    def f(x: Any, training: bool) -> Any:
        calls.append(training)
        return x * 2.0 if training else x

    assert pz.gradient(f, 1.0, True) == (2.0, None)
    assert pz.gradient(f, 1.0, False) == (1.0, None)
    assert pz.gradient(f, 5.0, True) == (2.0, None)
    assert calls == [True, False]  # one trace per flag value
    assert pz.gradient(lambda x, opts: x * 3.0 if opts["a"] else x, 1.0, {"a": True}) == (3.0, {"a": None})


def test_numeric_lists_are_arrays() -> None:
    (g,) = pz.gradient(lambda x: x[0] * x[1], [1.0, 2.0])
    np.testing.assert_array_equal(g, [2.0, 1.0])
    (g,) = pz.gradient(lambda x: np.sum(x**2), [1, 2])  # Python ints become float64
    np.testing.assert_array_equal(g, [2.0, 4.0])
    assert g.dtype == np.float64


def test_hessian_of_structured_parameters_is_nested_as_in_jax() -> None:
    f = lambda p: p["k"] ** 2 * np.sum(p["w"] ** 3)  # noqa: E731
    k, w = 3.0, np.array([1.0, 2.0])
    H = pz.hessian(f, {"k": k, "w": w})
    np.testing.assert_allclose(H["k"]["k"], 2 * np.sum(w**3))
    np.testing.assert_allclose(H["k"]["w"], 2 * k * 3 * w**2)
    np.testing.assert_allclose(H["w"]["k"], 2 * k * 3 * w**2)
    np.testing.assert_allclose(H["w"]["w"], np.diag(k**2 * 6 * w))
    # a tuple with a matrix: blocks have the shapes of the pair of leaves
    g = lambda p: np.sum(np.tanh(p[0] @ p[1]))  # noqa: E731
    A, v = np.array([[0.3, -0.2], [0.1, 0.4]]), np.array([0.5, -1.0])
    Hg = pz.hessian(g, (A, v))
    assert Hg[0][0].shape == (2, 2, 2, 2) and Hg[0][1].shape == (2, 2, 2) and Hg[1][1].shape == (2, 2)
    (gv,) = pz.gradient(lambda v: g((A, v)), v)
    fd = np.stack([(pz.gradient(lambda v: g((A, v)), v + e)[0] - pz.gradient(lambda v: g((A, v)), v - e)[0]) / 2e-6 for e in np.eye(2) * 1e-6], axis=1)
    np.testing.assert_allclose(Hg[1][1], fd, rtol=1e-6)
    # other leaves are held as they are, as pz.gradient holds them, with None for their blocks
    Hs = pz.hessian(lambda p: p["k"] ** 3 if p["name"] == "x" else 0.0, {"k": 1.0, "name": "x"})
    assert Hs["k"]["k"] == 6.0 and Hs["name"] is None and Hs["k"]["name"] is None
    with pytest.raises(TypeError, match="hessian takes an array, or arrays and numbers"):
        pz.hessian(lambda p: 1.0, {"name": "x"})


def test_structured_hessians_keep_no_function_alive() -> None:
    import gc
    import weakref

    def make() -> Any:
        big = np.ones(1000)
        return lambda p: p["a"] ** 2 * p["b"] + big[0]

    refs = []
    for _ in range(3):
        f = make()
        pz.hessian(f, {"a": 1.0, "b": 2.0})
        refs.append(weakref.ref(f))
        del f
    gc.collect()
    assert all(r() is None for r in refs)


def test_hessian_of_dict_ode_parameters() -> None:
    t = np.array([0.0, 0.5, 1.0])

    def loss(p: Any) -> Any:
        u = pz.odesolve(lambda u, p, t: -p["k"] * u + p["s"], np.array([1.0]), t, p, reltol=1e-10, abstol=1e-10)
        return np.sum(u**2)

    p = {"k": 0.7, "s": np.array(0.2)}
    H = pz.hessian(loss, p)

    def closed(k: float, s: float) -> float:  # u = s/k + (1 - s/k) e^{-kt}
        u = s / k + (1 - s / k) * np.exp(-k * t)
        return float(np.sum(u**2))

    e = 1e-4
    hkk = (closed(0.7 + e, 0.2) - 2 * closed(0.7, 0.2) + closed(0.7 - e, 0.2)) / e**2
    hks = (closed(0.7 + e, 0.2 + e) - closed(0.7 + e, 0.2 - e) - closed(0.7 - e, 0.2 + e) + closed(0.7 - e, 0.2 - e)) / (4 * e**2)
    np.testing.assert_allclose(H["k"]["k"], hkk, rtol=1e-5)
    np.testing.assert_allclose(H["k"]["s"], hks, rtol=1e-5)
    np.testing.assert_allclose(H["s"]["k"], hks, rtol=1e-5)


def test_jacobian_and_jvp_of_pytrees() -> None:
    (jac,) = pz.jacobian(lambda d: d["a"] * d["b"], {"a": 2.0, "b": np.ones(2)})
    np.testing.assert_array_equal(jac["a"], [1.0, 1.0])
    np.testing.assert_array_equal(jac["b"], 2.0 * np.eye(2))
    y, t = pz.jvp(lambda d: {"p": d["a"] * d["b"]}, ({"a": 2.0, "b": np.ones(2)},), ({"a": 1.0, "b": np.array([0.0, 1.0])},))
    np.testing.assert_array_equal(y["p"], [2.0, 2.0])
    np.testing.assert_array_equal(t["p"], [1.0, 3.0])


# --- dtypes --------------------------------------------------------------------------------------
def test_float32_in_float32_out() -> None:
    x = np.array([0.5, 1.5, -0.25], dtype=np.float32)
    f = lambda x: np.sum(np.sin(x) * 2.0 + x.mean() - np.exp2(x) + np.log10(np.abs(x)) + x**2)  # noqa: E731
    value, (g,) = pz.withgradient(f, x)
    assert np.asarray(value).dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(g, numerical_gradient(f, x.astype(np.float64))[0], rtol=2e-5)
    assert pz.gradient(lambda x: x * x, np.float32(3.0))[0].dtype == np.float32
    assert pz.hessian(lambda x: np.sum(x**3), x).dtype == np.float32
    assert pz.jacobian(lambda x: x**3, x)[0].dtype == np.float32
    y, t = pz.jvp(lambda x: x**3, (x,), (np.ones(3, np.float32),))
    assert y.dtype == t.dtype == np.float32
    assert pz.pullback(lambda x: x**3, x)[1](np.ones(3))[0].dtype == np.float32


def test_a_direction_beyond_float32s_range_is_named_not_blamed_on_the_function() -> None:
    # A float64 tangent or cotangent of a float32 value is rounded, as Zygote and numpy do; one
    # that overflows float32 became inf and was reported as the function's NaN gradient.
    x = np.array([1.0, 2.0], np.float32)
    f = lambda x: np.sin(x) * x  # noqa: E731
    _, back = pz.pullback(f, x)
    with pytest.raises(ValueError, match=r"the cotangent holds values beyond the float32 range"):
        back(np.array([1e39, 1.0]))
    with pytest.raises(ValueError, match=r"the tangent of x \(argument 0\) holds values beyond the float32 range"):
        pz.jvp(f, (x,), (np.array([1e39, 1.0]),))
    (g,) = back(np.array([1e38, 1.0]))  # within range: rounded and pulled back
    np.testing.assert_allclose(g, np.array([1e38, 1.0]) * (np.sin(x) + x * np.cos(x)), rtol=1e-6)


def test_mixed_precision_follows_numpy() -> None:
    x32, y64 = np.ones(2, np.float32), np.full(2, 2.0)
    value, (gx, gy) = pz.withgradient(lambda a, b: np.sum(a * b), x32, y64)
    assert np.asarray(value).dtype == np.float64
    assert gx.dtype == np.float32 and gy.dtype == np.float64
    np.testing.assert_array_equal(gx, [2.0, 2.0])


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "f",
    [lambda x: x if x > 0 else -x, lambda x: float(x) * 2.0, lambda x: int(x) * x, lambda x: x * (1.0 if x.item() else 0.0)],
    ids=["if", "float", "int", "item"],
)
def test_python_control_flow_on_traced_values(f: Any) -> None:
    with pytest.raises(pz.TracerBoolError, match="np.where") as info:
        pz.gradient(f, 1.0)
    assert isinstance(info.value, TypeError)


def test_complex_arguments_and_missing_cotangents_are_named() -> None:
    with pytest.raises(TypeError, match=r"z \(argument 0\): it is an array of complex values"):
        pz.gradient(lambda z: z * 2, 1 + 2j)
    _, back = pz.pullback(lambda x: 2 * x, np.ones(2))
    with pytest.raises(TypeError, match="the cotangent must be an array"):
        back(None)
    with pytest.raises(TypeError, match="the cotangent must hold real numbers"):
        back(np.array([1j, 1.0]))


def test_integer_argument_used_as_an_index_says_it_is_traced() -> None:
    with pytest.raises(pz.TracerBoolError, match=r"Python ints included.*functools\.partial"):
        pz.gradient(lambda x, n: np.sum(x[:n] ** 2), np.ones(3), 2)
    (g,) = pz.gradient(functools.partial(lambda x, n: np.sum(x[:n] ** 2), n=2), np.ones(3))
    np.testing.assert_array_equal(g, [2.0, 2.0, 0.0])


def _fill_numpy_array(u: Any) -> Any:
    du = np.zeros(2)
    du[0] = u[1]
    du[1] = -u[0]
    return du


def test_traced_value_written_into_a_numpy_array() -> None:
    with pytest.raises(pz.TracerBoolError, match=r"np\.zeros_like\(u\)") as info:
        pz.jacobian(_fill_numpy_array, np.ones(2))
    assert "setting an array element with a sequence" in str(info.value)
    with pytest.raises(pz.TracerBoolError, match="np.zeros_like"):
        pz.odesolve(lambda u, p, t: _fill_numpy_array(u), [1.0, 0.0], [0.0, 1.0], [])
    # The same code on a traced array is a functional update: the Jacobian of a rotation.
    (jac,) = pz.jacobian(_rotate, np.ones(2))
    np.testing.assert_array_equal(jac, [[0.0, 1.0], [-1.0, 0.0]])


def _rotate(u: Any) -> Any:
    du = np.zeros_like(u)
    du[0] = u[1]
    du[1] = -u[0]
    return du


def test_unsupported_numpy_function() -> None:
    with pytest.raises(pz.UnsupportedOperationError) as info:
        pz.gradient(lambda x: np.sum(np.unique(x)), np.ones(3))
    message = str(info.value)
    assert "numpy.unique" in message
    assert "supported_names() lists them" in message and len(message) < 400
    assert {"numpy.sin", "numpy.einsum", "scipy.special.expit"} <= set(pz.numpy_api.supported_names())
    with pytest.raises(pz.UnsupportedOperationError, match=r"np.linalg.lstsq\(np.vander\(x, deg \+ 1\), y"):  # user testing
        pz.gradient(lambda y: np.sum(np.polyfit(np.arange(3.0), y, 1)), np.ones(3))
    with pytest.raises(pz.UnsupportedOperationError, match="Similar ones that are traced: .*nanmean"):
        pz.gradient(lambda x: np.nanmedian(x), np.ones(3))
    # numpy's i0 is refused, scipy.special's is traced: the suggestion names which
    with pytest.raises(pz.UnsupportedOperationError, match=r"Similar ones that are traced: scipy\.special\.i0\."):
        pz.gradient(lambda x: np.sum(np.i0(x)), np.ones(3))
    with pytest.raises(pz.UnsupportedOperationError, match="numpy.fft.fft"):
        pz.gradient(lambda x: np.sum(np.fft.fft(x).real), np.ones(4))
    with pytest.raises(pz.TracerBoolError, match=r"out=y.*numpy array"):
        pz.gradient(lambda x: np.sum(np.sin(x, out=np.empty(2))), np.ones(2))


@pytest.mark.parametrize("bad, kind", [(np.ones(3, complex), "complex"), (np.array([1.0, None]), "object")])
def test_non_float_arguments_are_rejected_by_name(bad: np.ndarray, kind: str) -> None:
    with pytest.raises(TypeError, match=rf"y \(argument 1\).*{kind}"):
        pz.gradient(lambda x, y: np.sum(x * y), np.ones(3), bad)
    with pytest.raises(TypeError, match=rf"d \(argument 0\)\['b'\].*{kind}"):
        pz.gradient(lambda d: np.sum(d["a"] * d["b"]), {"a": np.ones(3), "b": bad})
    with pytest.raises(TypeError, match=rf"argument 1\b.*{kind}"):
        pz.jacobian(lambda *xs: xs[0] * xs[1], np.ones(3), bad)


def test_integer_and_boolean_arrays_are_data_with_no_gradient_as_in_zygote() -> None:
    labels, mask = np.array([0, 2]), np.array([True, False, True])
    g = pz.gradient(lambda d: np.sum(d["x"][d["labels"]] ** 2) + np.sum(np.where(d["mask"], d["x"], 0.0)), {"x": np.arange(3.0), "labels": labels, "mask": mask})
    assert g[0]["labels"] is None and g[0]["mask"] is None
    np.testing.assert_array_equal(g[0]["x"], [1.0, 0.0, 5.0])
    with pytest.raises(TypeError, match="integer"):  # forward mode and Jacobians still name them
        pz.jacobian(lambda x, i: x[i], np.ones(3), np.array([0]))


@pytest.mark.parametrize("transform", [pz.gradient, lambda f, x: pz.grad(f)(x), pz.withgradient, pz.hessian])
def test_non_scalar_output(transform: Any) -> None:
    with pytest.raises(ValueError, match="jacobian") as info:
        transform(lambda x: x * 2.0, np.ones(3))
    assert "pullback" in str(info.value)


# --- auxiliary outputs: Zygote's withgradient, JAX's has_aux -------------------------
def test_withgradient_returns_auxiliary_outputs_as_zygote_does() -> None:
    # Zygote's own docstring example: the gradient of sum(1 ./ x), with z = 1 ./ x returned too.
    x = np.array([1.0, 2.0, 4.0])
    (loss, z), (g,) = pz.withgradient(lambda x: (np.sum(1 / x), 1 / x), x)
    assert float(loss) == 1.75
    np.testing.assert_array_equal(z, 1 / x)
    np.testing.assert_allclose(g, -1 / x**2, rtol=1e-15)
    Fit = collections.namedtuple("Fit", ["loss", "residuals"])
    val, (g2,) = pz.withgradient(lambda x: Fit(np.sum(x**2), {"r": x - 1.0}), x)
    assert isinstance(val, Fit) and float(val.loss) == 21.0
    np.testing.assert_array_equal(val.residuals["r"], x - 1.0)
    np.testing.assert_array_equal(g2, 2 * x)
    val, _ = pz.withgradient(lambda x: [np.sum(x), x[0]], x)
    assert isinstance(val, list) and float(val[1]) == 1.0


def test_has_aux_follows_jax() -> None:
    x = np.array([1.0, 2.0, 4.0])
    g, aux = pz.grad(lambda x: (np.sum(x**3), {"x2": x**2}), has_aux=True)(x)
    np.testing.assert_array_equal(g, 3 * x**2)
    np.testing.assert_array_equal(aux["x2"], x**2)
    (val, aux), (gx, gy) = pz.value_and_grad(lambda x, y: (np.sum(x * y), x + y), argnums=(0, 1), has_aux=True)(x, 2.0)
    assert float(val) == 14.0 and gy == 7.0
    np.testing.assert_array_equal(gx, np.full(3, 2.0))
    np.testing.assert_array_equal(aux, x + 2.0)


def test_arguments_outside_argnums_are_data_as_in_jax() -> None:
    def loss(W: Any, X: Any, labels: Any) -> Any:  # integer labels index the logits
        logits = X @ W
        m = np.max(logits, axis=1, keepdims=True)
        return np.mean(m[:, 0] + np.log(np.sum(np.exp(logits - m), axis=1)) - logits[np.arange(len(labels)), labels])

    rng = np.random.default_rng(0)
    W, X, labels = rng.standard_normal((3, 4)), rng.standard_normal((5, 3)), np.array([0, 3, 1, 1, 2])
    for _ in range(2):  # the second time with other labels, changed in place
        g = pz.grad(loss)(W, X, labels)
        np.testing.assert_allclose(g, numerical_gradient(lambda W: loss(W, X, labels), W)[0], rtol=1e-7, atol=1e-9)
        labels[0] = 2
    (val, aux), (gW, gX) = pz.value_and_grad(lambda W, X, labels: (loss(W, X, labels), labels), argnums=(0, 1), has_aux=True)(W, X, labels)
    np.testing.assert_array_equal(aux, labels)
    np.testing.assert_allclose(gX, numerical_gradient(lambda X: loss(W, X, labels), X)[0], rtol=1e-7, atol=1e-9)
    # data where a derivative would be infinite is no error when nobody asks for that derivative
    assert_allclose_gradients(pz.grad(lambda w, x: np.sum(w * np.sqrt(x)))(np.ones(3), np.array([0.0, 1.0, 4.0])), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(pz.NonFiniteGradientError, match=r"x \(argument 1\)"), np.errstate(divide="ignore"):
        pz.grad(lambda w, x: np.sum(w * np.sqrt(x)), argnums=1)(np.ones(3), np.array([0.0, 1.0, 4.0]))


def test_data_used_as_plain_numbers_work_as_in_jax() -> None:
    # Found in review: float data became trace inputs, so range(int(T / dt)) on them failed.
    def euler(k: Any, dt: Any, T: Any) -> Any:
        x = 1.0
        for _ in range(int(round(T / dt))):
            x = x - dt * k * x
        return x

    for dt in (0.1, 0.05):
        n = int(round(1.0 / dt))
        assert pz.grad(euler)(0.5, dt, 1.0) == pytest.approx(-n * dt * (1 - dt * 0.5) ** (n - 1), rel=1e-12)


def test_zeros_like_of_a_traced_scalar_accumulates() -> None:
    def rhs(u: Any, p: Any, t: Any) -> Any:
        du = np.zeros_like(u)
        for i in range(2):
            s = np.zeros_like(u[i])  # what the error message for np.zeros advises
            for j in range(2):
                s += p[i, j] * u[j]
            du[i] = s
        return du

    P = np.array([[-1.0, 0.2], [0.1, -0.5]])
    got = pz.odesolve(rhs, np.ones(2), np.array([0.0, 1.0]), P, alg="Tsit5", reltol=1e-10, abstol=1e-10)[-1]
    from scipy.linalg import expm

    np.testing.assert_allclose(got, expm(P) @ np.ones(2), rtol=1e-8)


def test_float_data_are_inputs_and_integer_data_constants() -> None:
    from pyzygote.tracing import _CACHE, _MAX_TRACES_PER_FUNCTION

    def f(w: Any, batch: Any, labels: Any) -> Any:
        return np.sum((batch @ w)[np.arange(2), labels] ** 2)

    g = pz.grad(f)
    for k in range(_MAX_TRACES_PER_FUNCTION + 5):  # new float data: one trace for all (found in review: 40x slower)
        batch, w = np.full((2, 3), float(k)), np.arange(6.0).reshape(3, 2)
        np.testing.assert_allclose(g(w, batch, np.array([0, 1])), numerical_gradient(lambda w: f(w, batch, np.array([0, 1])), w)[0], rtol=1e-7)
    assert len(_CACHE[f]) == 1

    def pick(w: Any, labels: Any) -> Any:
        return np.sum(w[labels] ** 2)

    for k in range(_MAX_TRACES_PER_FUNCTION + 5):  # new integer labels: inputs too, one trace for all
        np.testing.assert_array_equal(pz.grad(pick)(np.arange(40.0), np.array([k])), 2.0 * k * (np.arange(40) == k))
    assert len(_CACHE[pick]) == 1

    def head(w: Any, labels: Any) -> Any:
        return np.sum(w[: int(labels[0]) + 1] ** 2)  # needs the labels' values: constants, a trace each

    for k in range(_MAX_TRACES_PER_FUNCTION + 5):
        np.testing.assert_array_equal(pz.grad(head)(np.arange(40.0), np.array([k])), 2.0 * np.arange(40) * (np.arange(40) <= k))
    assert len(_CACHE[head]) == _MAX_TRACES_PER_FUNCTION


def test_auxiliary_outputs_are_not_differentiated() -> None:
    # A zero cotangent on an auxiliary log(0) would make 0 * inf = NaN in the gradient.
    x = np.array([1.0, 2.0])
    with np.errstate(divide="ignore"):
        (loss, aux), (g,) = pz.withgradient(lambda x: (np.sum(x**2), np.log(x - 1.0)), x)
    assert np.isneginf(aux[0])
    np.testing.assert_array_equal(g, 2 * x)
    # and the gradient is the same as without the auxiliary output, also through an ODE solve
    t = np.linspace(0.0, 1.0, 5)

    def fit(k: Any) -> Any:
        u = pz.odesolve(lambda u, p, t: -p * u, np.array([1.0]), t, k, reltol=1e-10, abstol=1e-10)
        return np.sum(u**2), u

    (loss, u), (gk,) = pz.withgradient(fit, np.array([0.5]))
    np.testing.assert_allclose(u[:, 0], np.exp(-0.5 * t), rtol=1e-8)
    np.testing.assert_allclose(gk, [np.sum(-2 * t * np.exp(-t))], rtol=1e-7)
    np.testing.assert_array_equal(gk, pz.gradient(lambda k: fit(k)[0], np.array([0.5]))[0])


def test_auxiliary_outputs_inside_an_enclosing_transformation() -> None:
    x = np.array([1.0, 2.0, 4.0])

    def outer(w: Any) -> Any:
        (loss, aux), (g,) = pz.withgradient(lambda z: (np.sum(w * z**2), w * z), x)
        return np.sum(g) + np.sum(aux) + loss  # sum(2 w x) + sum(w x) + sum(w x^2)

    np.testing.assert_allclose(pz.gradient(outer, np.ones(3))[0], 3 * x + x**2, rtol=1e-15)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: pz.grad(f, has_aux=True)(np.ones(3)), r"has_aux=True needs a function returning a pair"),
        (lambda f: pz.value_and_grad(f, has_aux=True)(np.ones(3)), r"has_aux=True needs a function returning a pair"),
    ],
)
@pytest.mark.parametrize(
    ("f", "got"),
    [
        (lambda x: np.sum(x), r"an array of shape \(\)"),
        (lambda x: (x, 1.0), r"a tuple of 2 whose first element has shape \(3,\)"),
        (lambda x: (np.sum(x), x, x), r"a tuple of 3$"),
        (lambda x: {"loss": np.sum(x), "x": x}, r"a dict"),
    ],
)
def test_has_aux_needs_a_pair(call: Any, message: str, f: Any, got: str) -> None:
    with pytest.raises(ValueError, match=message + ".*" + got):
        call(f)


def test_auxiliary_outputs_errors_point_to_the_right_transformation() -> None:
    with pytest.raises(ValueError, match=r"gradient needs a function returning one scalar.*pz\.withgradient.*has_aux=True"):
        pz.gradient(lambda x: (np.sum(x), x), np.ones(3))
    with pytest.raises(ValueError, match=r"has_aux=True"):
        pz.grad(lambda x: (np.sum(x), x))(np.ones(3))
    with pytest.raises(ValueError, match=r"withgradient needs .*tuple \(loss, aux\.\.\.\).*a dict"):
        pz.withgradient(lambda x: {"loss": np.sum(x), "x": x}, np.ones(3))
    with pytest.raises(TypeError, match="withgradient needs a float output"):
        pz.withgradient(lambda x: (np.sum(x) > 0, x), np.ones(3))


def _bad_shapes(x: Any) -> Any:
    y = np.ones(4)
    return np.sum(x + y)  # the user's offending line


def _bad_matmul(x: Any) -> Any:
    return np.sum(x @ np.ones((4, 2)))


@pytest.mark.parametrize("f, numpy_error", [(_bad_shapes, "broadcast"), (_bad_matmul, "mismatch")])
def test_shape_errors_at_trace_time_point_at_user_code(f: Any, numpy_error: str) -> None:
    with pytest.raises(ValueError) as plain:
        f(np.ones(3))  # what numpy itself says
    assert numpy_error in str(plain.value)
    with pytest.raises(ValueError) as info:
        pz.gradient(f, np.ones(3))
    assert str(info.value) == str(plain.value)
    frames = traceback.extract_tb(info.tb)
    user = [fr for fr in frames if fr.name == f.__name__]
    assert user and user[-1].filename == __file__
    assert "np.sum(x" in (user[-1].line or "")


@pytest.mark.parametrize(
    "f, x",
    [(np.sqrt, 0.0), (lambda x: np.linalg.norm(x), np.zeros(3)), (lambda x: np.sum(np.log(x)), np.array([1.0, 0.0]))],
    ids=["sqrt0", "norm0", "log0"],
)
def test_non_finite_gradient(f: Any, x: Any) -> None:
    with pytest.raises(pz.NonFiniteGradientError, match=r"argument 0\b") as info:
        with np.errstate(all="ignore"):
            pz.gradient(f, x)
    assert isinstance(info.value, FloatingPointError)
    assert "np.sum((theta - prior) ** 2)" in str(info.value)  # a regularizer at its prior
    with pytest.raises(pz.NonFiniteGradientError, match="the tangent of the output"):
        with np.errstate(all="ignore"):
            pz.jvp(f, (x,), (np.ones_like(x),))


def test_jacobian_of_several_outputs_is_nested_as_jaxs_jacfwd() -> None:
    """User testing: pz.jacobian refused dict and tuple outputs, which jax.jacfwd takes."""
    x, w = np.array([0.1, 0.5, 1.0]), np.float64(2.0)

    def f(x: Any, w: Any) -> Any:
        return {"a": np.sin(x) * w, "b": np.sum(x**2), "c": (x[:2] * w, np.outer(x, x))}

    for inputs in [(x, w), (x.astype(np.float32), np.float32(2.0))]:
        Jx, Jw = pz.jacobian(f, *inputs)
        for path, part in [("a", lambda v: v["a"]), ("b", lambda v: v["b"]), ("c0", lambda v: v["c"][0]), ("c1", lambda v: v["c"][1])]:
            want_x, want_w = pz.jacobian(lambda a, b: part(f(a, b)), *inputs)
            np.testing.assert_allclose(part(Jx), want_x, rtol=1e-6, err_msg=path)
            np.testing.assert_allclose(part(Jw), want_w, rtol=1e-6, err_msg=path)
            assert part(Jx).dtype == want_x.dtype, path
    np.testing.assert_allclose(Jx["c"][1][1, 2], [0.0, 1.0, 0.5])  # d(x1 x2)/dx
    # fewer outputs than inputs: rows by reverse mode, cut the same way
    (J,) = pz.jacobian(lambda v: (np.sum(v), np.sum(v**2)), np.arange(5.0))
    np.testing.assert_allclose(J[0], np.ones(5))
    np.testing.assert_allclose(J[1], 2 * np.arange(5.0))


def test_jacobian_needs_an_output_and_hessian_differentiates_its_first_argument() -> None:
    with pytest.raises(ValueError, match="needs a function returning an array"):
        pz.jacobian(lambda x: (), 2.0)
    np.testing.assert_allclose(pz.hessian(lambda x, y: x**2 * y, 1.0, 2.0), 4.0)  # y held constant
    with pytest.raises(TypeError, match="hessian takes an array"):
        pz.hessian(lambda x: 1.0, "a")
    with pytest.raises(TypeError, match="float output"):
        pz.gradient(lambda x: x > 0, 1.0)


# --- pyzygote.testing -------------------------------------------------------------------------------
def test_check_grads_detects_a_wrong_derivative_rule(monkeypatch: Any) -> None:
    from pyzygote.primitive import PRIMITIVES

    sin = PRIMITIVES["sin"]
    right = sin.jvp

    def wrong(primals: Any, tangents: Any, **params: Any) -> Any:
        ans, t = right(primals, tangents, **params)
        return ans, t * 1.001

    x = (np.array([0.3, -1.2]),)
    check_grads(lambda x: np.sum(np.sin(x) * x), x, order=2)
    monkeypatch.setattr(sin, "jvp", wrong)
    for modes in (("fwd",), ("rev",)):
        with pytest.raises(AssertionError):
            check_grads(lambda x: np.sum(np.sin(x) * x), x, modes=modes)
    with pytest.raises(AssertionError, match="Hessian"):
        check_grads(lambda x: np.sum(np.sin(x) ** 2), x, order=2, modes=())


def test_check_grads_float32_and_validation() -> None:
    check_grads(lambda x: np.sum(np.exp(x) * x), (np.array([0.5, -0.5], np.float32),), order=2)
    check_grads(lambda x: np.sum(x, dtype=np.float32) ** 2, (np.array([0.5, -0.5]),))  # float32 output
    with pytest.raises(ValueError, match="order"):
        check_grads(np.sin, (1.0,), order=3)
    with pytest.raises(ValueError, match="modes"):
        check_grads(np.sin, (1.0,), modes=("backward",))
    for bad in (dict(modes="rev"), dict(modes=()), dict(n_directions=0), dict(eps=0.0), dict(rtol=np.nan)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            check_grads(np.sin, (1.0,), **bad)
    with pytest.raises(TypeError, match=r"check_grads\(f, \(x,\)\)"):
        check_grads(np.sin, np.ones(2))


def test_numerical_gradient_and_assert_allclose_gradients() -> None:
    params = {"w": np.array([1.0, 2.0]), "b": 0.5, "name": "layer"}
    f = lambda p: np.sum(p["w"] ** 2) * p["b"]  # noqa: E731
    (num,) = numerical_gradient(f, params)
    assert num["name"] is None and isinstance(num["b"], float)
    (exact,) = pz.gradient(f, params)
    assert_allclose_gradients(exact, num, rtol=1e-9)
    with pytest.raises(AssertionError, match="gradient\\[.b.\\]"):
        assert_allclose_gradients(exact, {**num, "b": num["b"] + 1e-3}, rtol=1e-9)
    with pytest.raises(AssertionError, match="structures differ"):
        assert_allclose_gradients(exact, (num,))
    with pytest.raises(ValueError, match="scalar"):
        numerical_gradient(lambda x: x * 2.0, np.ones(2))


# --- item assignment ----------------------------------------------------------------------------------
def _assignments(x: Any) -> Any:
    y = x * 1.0
    y[0] = x[1] ** 2  # a row from a scalar expression (broadcast)
    y[1:, ::2] = np.sin(x[1:, ::2])  # a strided slice
    y[np.array([True, False, True]), 1] = 3.0 * x[0, 1]  # a mask with a constant
    y[[2, 1], [0, 1]] = y[[1, 2], [1, 0]]  # fancy indices, reading y itself
    return y * x


@pytest.mark.parametrize("arg", ["copy", "argument"])
def test_item_assignment_values_and_gradients(arg: str) -> None:
    x = np.random.default_rng(4).standard_normal((3, 3))
    if arg == "argument":  # assigning into the argument itself, as numpy code may do
        def f(x: Any) -> Any:
            x[0, 0] = 2.0 * x[1, 1]
            return _assignments(x)
    else:
        f = _assignments
    expected = f(x.copy())
    x_before = x.copy()
    (value,) = pz.make_program(f, x)(x)
    np.testing.assert_allclose(value, expected, rtol=1e-15)
    ct = np.random.default_rng(5).standard_normal(expected.shape)
    (g,) = pz.pullback(f, x)[1](ct)
    np.testing.assert_allclose(g, numerical_gradient(lambda x: np.sum(ct * f(x.copy())), x)[0], rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(x, x_before)  # pyzygote never writes into the caller's array


def _numpy_views(x: Any) -> Any:
    """numpy code that writes through views and aliases; numpy decides what is a view."""
    y = x.copy()
    row = y[0:3]
    row *= 2.0  # writes into y
    z = y
    z += x[::-1]  # z is y
    y.reshape(2, 3)[0][1] = 5.0 * x[2]  # a view of a view of y
    m = y.reshape(2, 3).T  # a view of y
    m[0] += 1.0
    flat = m.reshape(-1)  # a copy: reshaping a transpose cannot be a view
    flat[0] = 100.0
    d = np.copy(y)  # a copy
    d[1] = -1.0
    _, piece = np.split(y, [4])  # split gives views
    piece[0] += 0.5
    late = y[::2]  # sees the write below
    y[2] = x[0] ** 2
    x[5] = 3.0  # the argument itself
    return np.concatenate([y, late * x[1:4], flat, d, x])


def test_writes_through_views_and_aliases_follow_numpy() -> None:
    x = np.arange(1.0, 7.0)
    want = _numpy_views(x.copy())
    got = pz.make_program(_numpy_views, x)(x)[0]
    np.testing.assert_array_equal(got, want)
    (jac,) = pz.jacobian(_numpy_views, x)
    fd = np.stack([(_numpy_views(x + e) - _numpy_views(x - e)) / 2e-6 for e in np.eye(6) * 1e-6], axis=-1)
    np.testing.assert_allclose(jac, fd, rtol=1e-7, atol=1e-6)
    x_before = x.copy()
    pz.gradient(lambda x: np.sum(_numpy_views(x)), x)
    np.testing.assert_array_equal(x, x_before)  # the caller's array is not written


@pytest.mark.parametrize(
    "op",
    [
        lambda y: np.meshgrid(y[:3], y[3:5], sparse=True)[0],
        lambda y: np.meshgrid(y[:2], y[2:4])[0],
        lambda y: np.pad(y, 0),
        lambda y: np.delete(y, []),
        lambda y: np.concatenate([y]),
        lambda y: np.roll(y, 0),
        lambda y: np.take(y, np.arange(5)),
        lambda y: np.positive(y),
        lambda y: +y,
    ],
)
def test_functions_that_copy_in_numpy_never_hand_back_their_input(op: Any) -> None:
    # Found in user testing: np.roll(u, 0) and friends returned u itself, so writing into the
    # result changed u.
    def f(x: Any) -> Any:
        y = x * 1.0
        r = op(y)
        r[(0,) * r.ndim] = 77.0
        return y

    x = np.arange(1.0, 6.0)
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))


@pytest.mark.parametrize(
    "op",
    [
        lambda y: y[[0, 1, 2]],  # integer arrays that happen to select every row, in order
        lambda y: y[np.arange(3)],
        lambda y: y[:, [0, 1, 2, 3]],
        lambda y: y[np.array([True, True, True])],
        lambda y: np.ravel(y[:, -1]),  # ravel of a strided column copies
        lambda y: y.T[0].ravel(),
        lambda y: np.flip(y[0]).ravel(),
    ],
)
def test_copies_that_select_everything_do_not_follow_later_writes(op: Any) -> None:
    """Found by the differential fuzzer: the handler handed back its input, which a later
    write into y then changed."""

    def f(x: Any) -> Any:
        y = x * 1.0
        r = op(y)
        y[...] = -1.0
        return r * 2.0

    x = np.arange(1.0, 13.0).reshape(3, 4)
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))
    (jac,) = pz.jacobian(f, x)
    steps = np.eye(x.size).reshape((x.size,) + x.shape)
    fd = np.stack([(f(x + e) - f(x - e)) / 2.0 for e in steps], axis=-1).reshape(jac.shape)
    np.testing.assert_array_equal(jac, fd)


def test_out_arguments_write_into_traced_arrays() -> None:
    def f(x: Any) -> Any:
        y = x * 1.0
        v = y[1:]
        np.multiply(v, x[:-1], out=v)  # into a view of y
        np.add(y, 1.0, out=y)
        np.nan_to_num(y, copy=False)
        np.clip(y, None, 6.0, out=y)  # numpy functions too, not only ufuncs (found in user testing)
        return y

    x = np.array([0.5, 2.0, 3.0])
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))
    (jac,) = pz.jacobian(f, x)
    np.testing.assert_allclose(jac, [[1, 0, 0], [2, 0.5, 0], [0, 0, 0]])  # the last entry is clipped

    def positional(u: Any) -> Any:  # out given by position (found in review: it was dropped)
        y = np.zeros_like(u[:2])
        np.dot(u.reshape(2, 2), u[:2], y)
        z = np.zeros_like(u)
        np.clip(u, 0.0, 1.0, z)
        return np.sum(y * np.arange(1, 3)) + np.sum(z)

    x4 = np.array([0.3, -1.2, 2.5, 0.7])
    np.testing.assert_allclose(pz.make_program(positional, x4)(x4)[0], positional(x4.copy()), rtol=1e-15)
    np.testing.assert_allclose(pz.gradient(positional, x4)[0], numerical_gradient(positional, x4)[0], rtol=1e-7)
    with pytest.raises(TypeError, match="does not support item assignment"):  # as on numpy's scalars
        pz.gradient(lambda u: (lambda s: (s.__setitem__(..., 1.0), s)[1])(np.sum(u)), x4)

    def g(x: Any) -> Any:
        w = x * 0.0
        np.cumsum(x, out=w)
        return np.sum(np.sum(w, out=np.zeros(())) * x)

    with pytest.raises(pz.TracerBoolError, match=r"numpy.sum\(\.\.\., out=y\).*numpy array"):
        pz.gradient(g, x)

    def into_numpy(x: Any) -> Any:
        y = np.zeros(3)
        y += x
        return np.sum(y)

    with pytest.raises(pz.TracerBoolError, match=r"numpy array.*y \+= x.*np.zeros_like"):
        pz.gradient(into_numpy, np.ones(3))


def test_in_place_operators_on_scalars_rebind_as_numpy_scalars_do() -> None:
    # Found in code review: mutating a traced scalar in place changed every name for it.
    def f(x: Any) -> Any:
        s, partial_sums = 0.0, []
        for i in range(3):
            s += x[i]  # numpy: x[i] and s are immutable scalars, s is rebound
            partial_sums.append(s)
        a = np.sum(x)
        a0 = a
        a *= 2.0
        y = x.copy()
        v = y[..., 0]  # but a 0-d view is an array: writing through it changes y
        v += 5.0
        return np.concatenate([np.stack(partial_sums + [a0 + a]), y])

    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))
    (jac,) = pz.jacobian(f, x)
    np.testing.assert_array_equal(jac[:4], [[1, 0, 0], [1, 1, 0], [1, 1, 1], [3, 3, 3]])


def _accumulate_into(acc: Any, v: Any) -> None:
    acc += v  # numpy: acc is a 0-d array, changed in place


def test_mutable_zero_d_arrays_change_in_place() -> None:
    # Found in review: 0-d arrays (as numpy makes them) were rebound like scalars, so a helper
    # accumulating into one left it at zero.
    def f(x: Any, s: Any) -> Any:
        acc = np.zeros_like(x[0])
        for i in range(3):
            _accumulate_into(acc, x[i] ** 2)
        c = np.copy(x[1])
        d = c
        c *= 3.0
        a = s  # a 0-d array argument
        s += 1.0
        return np.stack([acc, d, a])

    x, s = np.array([1.0, 2.0, 3.0]), np.array(2.0)
    np.testing.assert_array_equal(pz.make_program(f, x, s)(x, s)[0], f(x.copy(), s.copy()))
    jx, js = pz.jacobian(f, x, s)
    np.testing.assert_array_equal(jx, [[2, 4, 6], [0, 3, 0], [0, 0, 0]])
    np.testing.assert_array_equal(js, [0, 0, 1])


def test_writes_into_read_only_views_and_mismatched_in_place() -> None:
    def broadcast_write(x: Any) -> Any:
        b = np.broadcast_to(x, (2, 3))
        b[0, 0] = 1.0
        return np.sum(b)

    with pytest.raises(ValueError, match="read-only"):
        pz.gradient(broadcast_write, np.ones(3))
    with pytest.raises(ValueError, match="read-only"):
        broadcast_write(np.ones(3))  # numpy agrees

    def grow(x: Any) -> Any:
        y = x[:1].copy()
        y += x
        return np.sum(y)

    with pytest.raises(ValueError, match="non-broadcastable output operand"):
        pz.gradient(grow, np.ones(3))


def test_item_assignment_errors() -> None:
    def repeated(x: Any) -> Any:
        y = x * 1.0
        y[[0, 2, 0]] = x * np.array([1.0, 2.0, 3.0])  # numpy: the last assignment to 0 wins
        return y

    x = np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(pz.make_program(repeated, x)(x)[0], repeated(x))
    (J,) = pz.jacobian(repeated, x)
    np.testing.assert_array_equal(J, [[0.0, 0.0, 3.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])

    def traced_index(x: Any) -> Any:
        return x[x > 0]

    with pytest.raises(pz.UnsupportedOperationError, match="np.where"):
        pz.jacobian(traced_index, np.ones(3))


# --- derivatives at the edges of a rule's domain -----------------------------------------------------------
def test_power_and_product_at_zero() -> None:
    with np.errstate(all="ignore"):
        assert pz.gradient(lambda x: x**0.0, 0.0) == (0.0,)
        assert pz.gradient(lambda x: x**1.0, 0.0) == (1.0,)
        assert float(pz.hessian(lambda x: x**1.0, 0.0)) == 0.0
        assert float(pz.hessian(lambda x: x**2, 0.0)) == 2.0
        assert float(pz.hessian(lambda x: x**3, 0.0)) == 0.0
        np.testing.assert_array_equal(pz.gradient(np.prod, np.array([0.0, 2.0, 3.0]))[0], [6.0, 0.0, 0.0])
        np.testing.assert_array_equal(pz.gradient(np.prod, np.array([0.0, 2.0, 0.0]))[0], [0.0, 0.0, 0.0])
        h = pz.hessian(np.prod, np.array([0.0, 2.0, 0.0]))
        np.testing.assert_array_equal(h, [[0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])


def test_bad_function_and_argnums_are_named():
    with pytest.raises(TypeError, match="expected a function of numpy arrays"):
        pz.gradient("not a function", 1.0)
    with pytest.raises(ValueError, match=r"argnums=3 does not fit a call with 1 argument"):
        pz.grad(lambda x: x**2, argnums=3)(1.0)
    assert pz.grad(lambda x, y: x * y, argnums=-1)(2.0, 3.0) == 2.0
    assert pz.value_and_grad(lambda x, y: x * y, argnums=(0, 1))(2.0, 3.0)[1] == (3.0, 2.0)
    for bad in (None, 1.0, True, (0, 1.0)):
        with pytest.raises(TypeError, match="argnums must be an int or a tuple of ints"):
            pz.grad(lambda x, y: x * y, argnums=bad)(2.0, 3.0)


def test_results_never_alias_arguments_constants_or_each_other() -> None:
    # numpy arrays are mutable: writing into one result must not change another, an input, or the next call
    assert_results_are_own("numpy")


def test_pullback_keeps_its_point_when_an_argument_is_written_into() -> None:
    assert_pullbacks_keep_their_point("numpy")


def test_import_does_not_import_scipy() -> None:
    """SciPy's import is most of what `import pyzygote` used to cost; only solves need it."""
    import subprocess
    import sys

    code = "import sys, pyzygote; print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _ridge(w, X, y, l2=0.0, passes=1):
    r = X @ w - y
    for _ in range(passes):  # a Python int keyword: a constant, as in JAX
        r = r * 1.0
    return np.sum(r**2) + l2 * np.sum(w**2)


_RX = np.random.default_rng(5).standard_normal((6, 3))
_RY = np.random.default_rng(6).standard_normal(6)
_RW = np.array([0.3, -0.2, 0.5])


def test_keyword_arguments_are_passed_and_held_constant() -> None:
    """Found in user testing: pz.grad(f)(w, X=X) and pz.gradient(f, w, l2=1.0) raised TypeError."""
    want = 2 * _RX.T @ (_RX @ _RW - _RY) + 2 * 0.5 * _RW
    grads = pz.gradient(_ridge, _RW, _RX, _RY, l2=0.5, passes=2)
    assert len(grads) == 3
    np.testing.assert_allclose(grads[0], want, rtol=1e-13)
    np.testing.assert_allclose(pz.grad(_ridge)(_RW, X=_RX, y=_RY, l2=0.5), want, rtol=1e-13)
    value, g = pz.value_and_grad(_ridge)(_RW, _RX, _RY, l2=0.5)
    np.testing.assert_allclose(value, _ridge(_RW, _RX, _RY, l2=0.5), rtol=1e-14)
    np.testing.assert_allclose(g, want, rtol=1e-13)
    (val, _), _ = pz.withgradient(lambda w, s=1.0: (s * np.sum(w**2), w), _RW, s=2.0)
    np.testing.assert_allclose(val, 2.0 * np.sum(_RW**2))
    (jac,) = pz.jacobian(lambda w, scale=1.0: scale * (_RX @ w), _RW, scale=2.0)
    np.testing.assert_allclose(jac, 2.0 * _RX, rtol=1e-15)
    _, back = pz.pullback(lambda w, scale: scale * w, _RW, scale=3.0)
    (ct,) = back(np.ones(3))
    np.testing.assert_allclose(ct, 3.0)


@pytest.mark.parametrize("name", ["f", "primals", "tangents"])
def test_a_keyword_may_share_a_name_with_the_transforms_own_parameters(name: str) -> None:
    """User testing: loss(w, f=np.cos) through pz.gradient raised 'got multiple values for argument f'."""
    ns: dict = {"np": np}
    exec(f"def loss(w, {name}=1.0):\n    return {name} * np.sum(np.sin(w))", ns)
    loss, w, kw = ns["loss"], np.array([0.3, 1.1]), {name: 2.0}
    want = 2.0 * np.cos(w)
    np.testing.assert_allclose(pz.gradient(loss, w, **kw)[0], want, rtol=1e-15)
    np.testing.assert_allclose(pz.grad(loss)(w, **kw), want, rtol=1e-15)
    np.testing.assert_allclose(pz.value_and_grad(loss)(w, **kw)[1], want, rtol=1e-15)
    np.testing.assert_allclose(pz.withgradient(loss, w, **kw)[1][0], want, rtol=1e-15)
    np.testing.assert_allclose(pz.jacobian(loss, w, **kw)[0], want, rtol=1e-15)
    np.testing.assert_allclose(pz.hessian(loss, w, **kw), np.diag(-2.0 * np.sin(w)), rtol=1e-15)
    np.testing.assert_allclose(pz.jvp(loss, (w,), (np.array([1.0, 0.0]),), **kw)[1], want[0], rtol=1e-15)
    np.testing.assert_allclose(pz.pullback(loss, w, **kw)[1](1.0)[0], want, rtol=1e-15)


def test_a_new_keyword_value_reuses_the_trace() -> None:
    from pyzygote.tracing import _CACHE

    f = pz.grad(_ridge)
    f(_RW, _RX, _RY, l2=0.1)
    n = len(_CACHE.get(_ridge, {}))
    for l2 in (0.2, 0.3):
        np.testing.assert_allclose(f(_RW, _RX, _RY, l2=l2), 2 * _RX.T @ (_RX @ _RW - _RY) + 2 * l2 * _RW, rtol=1e-13)
    assert len(_CACHE.get(_ridge, {})) == n


def test_hessian_holds_further_arguments_constant() -> None:
    """Found in user testing: pz.hessian(f, params, group, x, y) raised 'takes 2 positional arguments'."""
    np.testing.assert_allclose(pz.hessian(_ridge, _RW, _RX, _RY, l2=0.5), 2 * _RX.T @ _RX + np.eye(3), rtol=1e-13)
    h = pz.hessian(lambda p, X, y: _ridge(p["w"], X, y, l2=p["l2"]), {"w": _RW, "l2": 0.5}, _RX, _RY)
    np.testing.assert_allclose(h["w"]["w"], 2 * _RX.T @ _RX + np.eye(3), rtol=1e-13)
    np.testing.assert_allclose(h["w"]["l2"], 2 * _RW, rtol=1e-13)


def test_keyword_names_appear_in_errors() -> None:
    with pytest.raises(pz.NonFiniteGradientError):
        pz.gradient(lambda w, c: np.sum(np.sqrt(w - c)), np.array([1.0, 2.0]), c=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bad'"):
        pz.gradient(_ridge, _RW, _RX, _RY, bad=1)


def test_jvp_takes_keyword_arguments_too() -> None:
    A = np.arange(6.0).reshape(2, 3)
    y, t = pz.jvp(lambda x, A=None, s=1.0: s * (A @ x), (np.ones(3),), (np.array([1.0, 0.0, 0.0]),), A=A, s=2.0)
    np.testing.assert_array_equal(y, 2.0 * A.sum(axis=1))
    np.testing.assert_array_equal(t, 2.0 * A[:, 0])


def test_jvp_names_where_the_tangents_differ_from_the_primals() -> None:
    """User testing: a tangent dict missing a key was told only "the same structure as primals"."""
    f = lambda p, x: p["a"] * p["b"] * np.sum(x)  # noqa: E731
    P, x = {"a": 1.0, "b": 2.0}, np.ones(2)
    said = {
        "tangents\\[0\\] lacks the key 'b'$": ({"a": 1.0}, x),
        "tangents\\[0\\] lacks the key 'b' and has the extra key 'c'$": ({"a": 1.0, "c": 0.0}, x),
        "tangents has 1 entries, where 2 are expected$": (P,),
        "tangents\\[1\\] is None, where an array is expected$": (P, None),
        "tangents\\[0\\]\\['b'\\] is \\{'z': an array\\}, where an array is expected$": ({"a": 1.0, "b": {"z": 1.0}}, x),
    }
    for message, tangents in said.items():
        with pytest.raises(ValueError, match="^tangents must have the same structure as primals: " + message):
            pz.jvp(f, (P, x), tangents)
    assert pz.jvp(f, (P, x), ({"a": 1.0, "b": 0.0}, x)) == (4.0, 8.0)


def test_check_grads_at_a_minimum_accepts_rounding_noise() -> None:
    """Found in user testing: at a fitted optimum the finite differences are all rounding noise
    (1e-8 against a gradient of 1e-15) and check_grads reported a mismatch."""
    from pyzygote.testing import check_grads

    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((20, 3)), rng.standard_normal(20)
    w = np.linalg.lstsq(A, b, rcond=None)[0]
    check_grads(lambda v: np.sum((A @ v - b) ** 2), (w,), order=2)
    with pytest.raises(AssertionError):  # a wrong rule is still caught there
        check_grads(lambda v: np.sum((A @ v - b) ** 2) + 1e-2 * np.sum(np.floor(v * 1e7)), (w,))


_LAYOUTS = {
    "ufunc-of-transpose": lambda y: y.T * 1.0,
    "unary-ufunc": lambda y: np.sin(y.T),
    "np.copy": lambda y: np.copy(y.T),
    "copy-C": lambda y: y.T.copy(),
    "copy-F": lambda y: y.copy(order="F"),
    "copy-K": lambda y: y.T.copy(order="K"),
    "astype": lambda y: y.T.astype(np.float64),
    "zeros_like": lambda y: np.zeros_like(y.T) + 0.0 * y.T,  # adds onto a Fortran-ordered array
    "ones_like-then-write": lambda y: np.ones_like(y.T),
    "ufunc-with-constant": lambda y: y.T + np.ones((4, 3)),
    "twice-transposed": lambda y: np.copy(y.T).T,
    "np.where": lambda y: np.where(y.T > 2, y.T, 0.0),
    "np.cumsum": lambda y: np.cumsum(y.T * 1.0, axis=0),
    "np.sort": lambda y: np.sort(y.T, axis=0),
    "np.diff": lambda y: np.diff(y.T, axis=0, prepend=0),
    "np.nan_to_num": lambda y: np.nan_to_num(y.T),
    "reshape-F-copy": lambda y: y.reshape(4, 3, order="F"),
    # found by the fuzzer's layout oracle
    "np.sum-along-an-axis": lambda y: np.sum(np.transpose(np.stack([y, y]), (2, 0, 1)), axis=1),
    "np.max-along-an-axis": lambda y: np.max(np.transpose(np.stack([y, y]), (2, 0, 1)), axis=1),
    "np.var-along-an-axis": lambda y: np.var(np.transpose(np.stack([y, y]), (2, 0, 1)), axis=1),
    "np.concatenate": lambda y: np.concatenate([y.T, y.T], axis=1),
    "np.vstack": lambda y: np.vstack([y.T, y.T]),
    "np.pad": lambda y: np.pad(y.T, 1),
    "np.roll": lambda y: np.roll(y.T, 1, axis=0),
    "np.tile": lambda y: np.tile(y.T, 1),
    "unary-plus": lambda y: +(y.T),
    "np.select-is-C": lambda y: np.select([y.T > 2], [y.T], 0.0),
    "fancy-index-after-a-slice": lambda y: y[:, [0, 1, 2, 3]],
    "take-at-traced-positions-is-C": lambda y: np.take(y, np.argsort(y[:, 0]) % 2, axis=1),
}


@pytest.mark.parametrize("make", sorted(_LAYOUTS))
def test_new_arrays_take_numpys_memory_layout_so_reshape_views_follow_numpy(make: str) -> None:
    """Found by the differential fuzzer: x.T * 1.0 is Fortran-ordered in numpy, so its
    reshape(-1) is a copy, and np.copy(x.T).T.reshape(-1) is a view."""

    def f(x: Any) -> Any:
        y = x * 1.0
        t = _LAYOUTS[make](y)
        flat = t.reshape(-1)
        flat[0] = 100.0 * x[0, 1]
        t[1, 1] = -x[1, 1]
        return t * 1.0, flat * 1.0

    x = np.arange(1.0, 13.0).reshape(3, 4)
    got, want = pz.make_program(f, x)(x), f(x.copy())
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    "call",
    [
        lambda f, W, x: pz.gradient(f, W=W, x=x),
        lambda f, W, x: pz.withgradient(f, W=W, x=x),
        lambda f, W, x: pz.jacobian(f, W=W, x=x),
        lambda f, W, x: pz.pullback(f, W=W, x=x),
        lambda f, W, x: pz.hessian(f, W=W, x=x),
        lambda f, W, x: pz.grad(f)(W=W, x=x),
        lambda f, W, x: pz.value_and_grad(f)(W=W, x=x),
    ],
)
def test_calls_with_keyword_arguments_only_say_what_to_pass_positionally(call) -> None:
    """Found in user testing: pz.gradient(loss, W=W, x=x) returned () silently."""
    loss = lambda W, x: np.sum((x @ W) ** 2)  # noqa: E731
    with pytest.raises(TypeError, match=r"differentiates with respect to positional arguments and got none \(keyword arguments W, x"):
        call(loss, np.ones((3, 2)), np.ones((2, 3)))


def test_the_hessian_of_a_function_whose_value_is_nan_raises() -> None:
    """Found in user testing: NaN in the data gave a finite Hessian (2 * I) with no error."""
    data = np.array([1.0, np.nan, 2.0])
    with pytest.raises(pz.NonFiniteGradientError, match="value is array\\(nan\\)"):
        pz.hessian(lambda x: np.sum((x - data) ** 2), np.zeros(3))
    np.testing.assert_array_equal(pz.hessian(lambda x: np.sum((x - data[[0, 2, 0]]) ** 2), np.zeros(3)), 2 * np.eye(3))


def test_derivative_terms_do_not_warn_but_the_value_still_does() -> None:
    """Found in user testing: mass-action rates u ** orders with u = 0 and order 0 printed numpy
    warnings from derivative terms (0 ** -1) that plain numpy never shows."""
    import warnings

    orders = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = pz.gradient(lambda u: np.sum(np.prod(u[:, None] ** orders, axis=0)), np.array([0.0, 1.0, 3.0]))
    np.testing.assert_array_equal(g, [1.0, 3.0, 1.0])
    with pytest.warns(RuntimeWarning, match="invalid value encountered in log"):
        pz.withgradient(lambda x: np.sum(np.log(x)), np.array([-1.0, 2.0]))


def test_derivative_terms_do_not_warn_in_pullback_jvp_or_jacobian() -> None:
    """Found in user testing: gradient was quiet but the other transformations printed the warnings."""
    import warnings

    x = np.array([0.0, 1.0, 4.0])
    power = lambda x: x**0.0  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(pz.pullback(power, x)[1](np.ones(3))[0], np.zeros(3))
        np.testing.assert_array_equal(pz.jvp(power, (x,), (np.ones(3),))[1], np.zeros(3))
        np.testing.assert_array_equal(pz.jacobian(power, x)[0], np.zeros((3, 3)))
    for transform in (lambda f, x: pz.pullback(f, x), lambda f, x: pz.jvp(f, (x,), (x,))):
        with pytest.warns(RuntimeWarning, match="invalid value encountered in log"):
            transform(lambda x: np.log(x) * 1.0, np.array([-1.0, 2.0]))


def _cross_entropy(W: Any, X: Any, y: Any) -> Any:
    logits = X @ W
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(X.shape[0]), y])


def test_new_integer_labels_reuse_the_trace_and_values_that_need_them_fall_back() -> None:
    """Found in user testing: every new minibatch of integer labels traced again (10x slower steps)."""
    from pyzygote.tracing import _CACHE

    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 3))
    g = pz.grad(_cross_entropy)
    for _ in range(5):
        X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
        np.testing.assert_allclose(g(W, X, y), numerical_gradient(lambda W: _cross_entropy(W, X, y), W)[0], rtol=1e-6, atol=1e-9)
    assert len(_CACHE[_cross_entropy]) == 1
    table = np.array([0.5, 2.0, 3.0])  # a numpy table indexed by the labels needs their values

    def weighted(w: Any, y: Any, mask: Any) -> Any:
        return np.sum(table[y] * w**2) + np.sum(np.where(mask, w, 0.0))

    for y in (np.array([0, 2, 1]), np.array([2, 2, 0])):
        mask = y > 0
        gw = pz.grad(weighted)(np.ones(3), y, mask)
        np.testing.assert_allclose(gw, 2 * table[y] + mask, rtol=1e-15)
    with pytest.raises(IndexError):
        pz.grad(_cross_entropy)(W, np.ones((2, 4)), np.array([0, 5]))


@pytest.mark.parametrize("layout", ["F", "transposed", "C"])
def test_an_arguments_own_memory_layout_decides_its_views(layout: str) -> None:
    """Found by the adversarial round: x.reshape(-1) of a Fortran-ordered argument is a copy in numpy."""

    def f(x: Any) -> Any:
        r = x.reshape(-1)
        r[0] = 100.0
        return x * 1.0

    base = np.arange(1.0, 7.0).reshape(2, 3)
    x = {"F": np.asfortranarray(base), "transposed": base.T.copy().T, "C": base}[layout]
    assert pz.make_program(f, x) is not pz.make_program(f, base) or layout == "C"  # traced per layout
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy(order="K")))


def test_a_numpy_array_changed_in_place_inside_the_function_is_read_afresh() -> None:
    """Found by the adversarial round (an old bug): a constant changed between two uses kept its first value."""

    def f(x: Any) -> Any:
        e = np.zeros(3)
        total = 0.0
        for k in range(3):
            e[:] = 0.0
            e[k] = 1.0
            total = total + np.sum(x * e) ** 2
        return total

    x = np.array([1.0, 2.0, 3.0])
    value, (g,) = pz.withgradient(f, x)
    assert value == f(x) == 14.0
    np.testing.assert_array_equal(g, 2 * x)


def test_a_numpy_array_read_then_reused_as_scratch_is_traced_again_from_what_was_read() -> None:
    """Found by the fuzzer: the second trace ran on the array as the first trace had left it."""
    B = np.array([5.0, 7.0])

    def f(x: Any) -> Any:
        v = np.sum(x * B)  # reads the caller's values
        B[...] = 0.0  # then uses the array as scratch
        B[0] = 1.0
        return v + np.sum(x * B)

    x = np.array([1.0, 2.0])
    value, (g,) = pz.withgradient(f, x)
    assert value == 20.0
    np.testing.assert_array_equal(g, [6.0, 7.0])
    np.testing.assert_array_equal(B, [1.0, 0.0])  # left as one numpy call leaves it
    value, (g,) = pz.withgradient(f, x)  # now it reads [1, 0], as numpy's second call would
    assert value == 1.0 + 1.0
    np.testing.assert_array_equal(g, [2.0, 0.0])


def test_integer_labels_in_sets_dicts_and_attributes_fall_back_to_their_values() -> None:
    """Found in review: with labels traced, set(y) counted equal labels as distinct (traced
    values hashed by identity), d[label] raised KeyError and X[m].T an AttributeError."""
    weights = {0: 1.0, 1: 2.0, 2: 0.5}

    def f(w, y, m):
        classes = len(set(y.tolist() if isinstance(y, np.ndarray) else y))
        scale = sum(weights[int(label)] for label in y)
        Z = w * np.arange(4.0)[m]
        return np.sum(w**2) * classes * scale + np.sum(Z.T @ Z)

    y, m = np.array([0, 1, 1, 2, 0]), np.array([True, False, True, True])
    w = np.array([0.5, -1.0, 2.0])
    value, (g,) = pz.withgradient(lambda w, y, m: f(w, y, m), w, y, m)[0], pz.gradient(f, w, y, m)[:1]
    np.testing.assert_allclose(value, f(w, y, m), rtol=1e-14)
    np.testing.assert_allclose(g, numerical_gradient(lambda w: f(w, y, m), w)[0], rtol=1e-7)
    with pytest.raises(pz.TracerBoolError, match="hash"):
        pz.gradient(lambda x: np.sum(x) * len({x[0], x[1]}), np.ones(2))


def test_hessian_takes_x_by_its_own_name_and_raises_only_for_nan() -> None:
    np.testing.assert_array_equal(pz.hessian(lambda x: np.sum(x**3), x=np.array([1.0, 2.0])), np.diag([6.0, 12.0]))
    with np.errstate(divide="ignore"):
        h = pz.hessian(lambda x: np.sum(x**2) + np.log(np.zeros(())), np.array([1.0, 2.0]))  # value -inf
    np.testing.assert_array_equal(h, 2 * np.eye(2))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32])
def test_small_integer_labels_stay_constants_so_index_arithmetic_does_not_wrap(dtype: Any) -> None:
    """Found by the regression sweep: traced int8 labels wrapped in i + n (w[int8(100)] of 300
    entries read entry 44) and compared with out-of-range Python integers wrongly."""
    w = np.arange(300.0)
    i = np.array([100, 7], dtype=dtype)
    f = lambda w, i: np.sum(w[i] ** 2) + np.sum(i >= -5) * np.sum(i < 300)  # noqa: E731
    value, g = pz.withgradient(f, w, i)
    assert value == f(w, i)
    np.testing.assert_array_equal(g[0], 2 * w * np.isin(np.arange(300), i))


def test_derivatives_at_a_nan_value_are_returned_for_optimizers_to_step_back_from() -> None:
    """A log-likelihood at a negative rate has a NaN value and a finite gradient.  The bad-input
    audit asked for an error; user testing then showed a BFGS line search stepping into such a
    point and crashing on it, where numpy and JAX hand back the NaN and let the optimizer decide.
    So the value is NaN and the gradient is the finite one; only a Hessian, which optimizers do
    not probe with, refuses a NaN value.  Where the value is not returned (pz.grad, pz.jacobian)
    a warning says it is NaN: user testing found NaN data passing through without any."""
    X = np.array([[1.0, 2.0], [1.0, -3.0]])

    def nll(w: Any) -> Any:
        return -np.sum(np.log(X @ w))

    w = np.ones(2)
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value, (g,) = pz.withgradient(nll, w)
        with pytest.warns(RuntimeWarning, match=r"pz.grad\(f\): the function's value is array\(nan\)"):
            np.testing.assert_allclose(pz.grad(nll)(w), g)
        with pytest.warns(RuntimeWarning, match="pz.jacobian: the function's value is"):
            np.testing.assert_allclose(pz.jacobian(lambda w: np.log(X @ w), w)[0], X / (X @ w)[:, None])
        with pytest.warns(RuntimeWarning, match="pz.jacobian: the function's value is"):  # reverse mode
            np.testing.assert_allclose(pz.jacobian(lambda w: np.log(X @ w)[1:], w)[0], X[1:] / (X @ w)[1:, None])
        with pytest.raises(pz.NonFiniteGradientError, match="value is array\\(nan\\)"):
            pz.hessian(nll, w)
    data = np.array([1.0, np.nan, 3.0])  # user testing: NaN data passed through without a word
    with pytest.warns(RuntimeWarning, match="NaN in the data"):
        (g_data,) = pz.gradient(lambda e: np.sum(e * X[0, 0]) + np.sum(data), np.ones(3))
    np.testing.assert_array_equal(g_data, np.ones(3))
    # a NaN an operation makes is named (user testing: np.log of a solution that went below zero)
    with pytest.warns(RuntimeWarning, match=r"the first operation that makes a non-finite value: np.log gives NaN at -1.0 \(entry \[1\]\)"):
        with np.errstate(invalid="ignore"):
            pz.gradient(lambda e: np.sum(e) + np.sum(np.log(np.array([1.0, -1.0]) * e[0] ** 2 * e[0] ** 0)), np.ones(2))
    assert np.isnan(value)
    np.testing.assert_allclose(g, -(X[0] / 3.0 + X[1] / -2.0))


def test_gradient_wants_the_scalar_itself_not_a_container_of_it() -> None:
    for out in (lambda s: [s], lambda s: {"loss": s}, lambda s: (s,)):
        with pytest.raises(ValueError, match="gradient needs a function returning one scalar, but it returned a (list|dict|tuple) holding one"):
            pz.gradient(lambda x, out=out: out(np.sum(x**2)), np.ones(3))
        with pytest.raises(ValueError, match="grad\\(f\\) needs .* holding one; return the scalar itself, or use has_aux"):
            pz.grad(lambda x, out=out: out(np.sum(x**2)))(np.ones(3))


def test_a_cotangent_must_have_the_outputs_structure() -> None:
    y, back = pz.pullback(lambda x: 2.0 * x, np.ones(3))
    for wrong, described in (({"a": np.ones(3)}, "{'a': an array}"), ((np.ones(3),), "\\(an array,\\)"), ([np.ones(3)], "\\[an array\\]")):
        with pytest.raises(ValueError, match=f"structure of the function's output \\(an array\\), got {described}"):
            back(wrong)
    _, back2 = pz.pullback(lambda x: (2.0 * x,), np.ones(3))
    np.testing.assert_array_equal(back2(np.ones(3))[0], 2 * np.ones(3))  # a bare array for a 1-tuple is taken as meant


def test_none_in_outputs_aux_and_parameters_passes_through_as_in_jax() -> None:
    """None is a tree without leaves (JAX's convention): found by the API fuzzer, pz.jacobian(pz.grad(loss))
    failed for parameters with a None entry, whose gradient holds None there."""
    loss = lambda p: 2.0 * np.sum(p["w"] ** 3)  # noqa: E731
    p = {"w": np.array([1.0, 2.0]), "b": None}
    (jac,) = pz.jacobian(pz.grad(loss), p)
    assert jac["b"] is None and jac["w"]["b"] is None
    np.testing.assert_array_equal(jac["w"]["w"], np.diag(12.0 * p["w"]))
    g, aux = pz.grad(lambda w: (np.sum(w**2), {"note": None, "y": 2 * w}), has_aux=True)(np.ones(2))
    assert aux["note"] is None
    np.testing.assert_array_equal(aux["y"], [2.0, 2.0])
    (j,) = pz.jacobian(lambda w: (3.0 * w, None), np.ones(2))
    assert j[1] is None
    np.testing.assert_array_equal(j[0], 3.0 * np.eye(2))
    y, back = pz.pullback(lambda w: (3.0 * w, None), np.ones(2))
    assert y[1] is None
    np.testing.assert_array_equal(back((np.ones(2), None))[0], [3.0, 3.0])
    with pytest.raises(ValueError, match=r"output \(\(an array, None\)\), got \(an array, an array\)"):
        back((np.ones(2), np.ones(2)))
    with pytest.raises(TypeError, match="the cotangent must be an array.*got None"):
        back(None)


def test_jacobian_dtype_is_the_wider_float_type_whichever_mode_runs() -> None:
    """Found by the API fuzzer: reverse mode (fewer outputs than inputs) gave the argument's type and
    forward mode the output's, so a float32 -> float64 map's Jacobian changed type with its shape."""
    x32, x64 = np.arange(1.0, 4.0, dtype=np.float32), np.arange(1.0, 4.0)
    for f, x, want in (
        (lambda x: x.astype(np.float64) ** 2, x32, np.float64),  # forward mode
        (lambda x: np.sum(x.astype(np.float64)) ** 2 * np.ones(2), x32, np.float64),  # reverse mode
        (lambda x: x.astype(np.float32)[:1] * 2, x64, np.float64),  # reverse mode
        (lambda x: x**2, x32, np.float32),
    ):
        (j,) = pz.jacobian(f, x)
        assert j.dtype == want, (j.dtype, want)
        x0, h = x.astype(np.float64), 1e-3
        fd = np.stack([(f(x0 + h * e).astype(np.float64) - f(x0 - h * e)) / (2 * h) for e in np.eye(3)], axis=-1)
        np.testing.assert_allclose(j, fd, rtol=1e-3)  # differences through a float32 cast
    (parts,) = pz.jacobian(lambda x: (x[:1].astype(np.float64), x**2), x32)
    assert [p.dtype for p in parts] == [np.float64, np.float32]


def test_jacobian_of_integer_or_boolean_outputs_is_refused() -> None:
    for f in (lambda x: np.floor(x).astype(int), lambda x: x > 0):
        with pytest.raises(TypeError, match="jacobian needs float outputs, got .* for the output"):
            pz.jacobian(f, np.array([0.5, 1.5]))
    # the API fuzzer: which output, and which leaf of hessian's x, is named
    with pytest.raises(TypeError, match=r"got bool\[2\] for output\['b'\]"):
        pz.jacobian(lambda x: {"a": 2 * x, "b": x > 0}, np.ones(2))
    with pytest.raises(TypeError, match=r"with respect to x\['n'\]: it is an array of integer values"):
        pz.hessian(lambda p: np.sum(p["w"] ** 2), {"w": np.ones(2), "n": np.array([1, 2])})


def test_grad_checks_its_function_argnums_and_engine_when_made_and_refuses_integer_argnums() -> None:
    """As JAX's grad: a mistake shows where the transformation is made, and differentiating an
    integer argument that argnums names is an error, not None."""
    with pytest.raises(TypeError, match="pz.grad expected a function to differentiate, got float"):
        pz.grad(3.0)
    with pytest.raises(TypeError, match="argnums must be an int or a tuple of ints, got '0'"):
        pz.value_and_grad(np.sum, argnums="0")
    with pytest.raises(ValueError, match="engine must be one of"):
        pz.grad(np.sum, engine="jaxx")
    with pytest.raises(TypeError, match="pz.grad differentiates argument 0 \\(argnums\\), which holds int64 values"):
        pz.grad(lambda x: np.sum(x * 1.0))(np.array([1, 2]))
    with pytest.raises(TypeError, match="pz.value_and_grad differentiates argument 1 \\(argnums\\), which holds bool values"):
        pz.value_and_grad(lambda x, m: np.sum(np.where(m, x, 0.0)), argnums=(0, 1))(np.ones(2), np.array([True, False]))
    # as data (outside argnums) they are fine
    np.testing.assert_array_equal(pz.grad(lambda x, m: np.sum(np.where(m, x, 0.0)))(np.ones(2), np.array([True, False])), [1.0, 0.0])


def test_masked_arrays_are_refused_rather_than_losing_their_mask() -> None:
    """Found by the bad-input audit: np.asarray drops the mask, so masked entries came back silently."""
    m = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    with pytest.raises(TypeError, match="x \\(argument 0\\) is a numpy masked array.*x.filled"):
        pz.withgradient(lambda x: np.sum(x**2), m)
    with pytest.raises(TypeError, match="an array the traced function uses is a numpy masked array"):
        pz.gradient(lambda x: np.sum(x * m), np.ones(2))


class _TensorLike:
    """The part of a PyTorch tensor pyzygote relies on (PyTorch is not a test dependency): numpy()
    refuses while it requires grad, as torch's does."""

    __module__ = "torch"

    def __init__(self, values: Any, requires_grad: bool = False, dtype: str = "torch.float64") -> None:
        self.values, self.requires_grad, self.dtype = np.asarray(values, dtype=np.float64), requires_grad, dtype

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return self.numpy()

    def detach(self) -> "_TensorLike":
        return _TensorLike(self.values, False, self.dtype)

    def cpu(self) -> "_TensorLike":
        return self

    def numpy(self) -> Any:
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self.values


def test_tensors_that_require_grad_are_taken_detached_and_bfloat16_is_named() -> None:
    """Found by the bad-input audit: PyTorch's own RuntimeError came through pz.gradient and pz.odesolve."""
    x = _TensorLike([1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(pz.gradient(lambda x: np.sum(x**2), x)[0], [2.0, 4.0])
    u = pz.odesolve(lambda u, p, t: -u, x, [0.0, 1.0], reltol=1e-10, abstol=1e-10)
    np.testing.assert_allclose(u[-1], np.exp(-1.0) * np.array([1.0, 2.0]), rtol=1e-8)
    with pytest.raises(TypeError, match="x \\(argument 0\\) is a bfloat16 tensor.*x.float\\(\\)"):
        pz.gradient(lambda x: np.sum(x**2), _TensorLike([1.0], dtype="torch.bfloat16"))


def test_messages_for_complex_values_empty_results_and_integer_tangents() -> None:
    with pytest.raises(pz.UnsupportedOperationError, match="real numbers only.*np.block"):
        pz.gradient(lambda x: np.sum(x * 1j), np.ones(2))
    with pytest.raises(ValueError, match="it returned an empty tuple"):
        pz.withgradient(lambda x: (), np.ones(2))
    np.testing.assert_array_equal(pz.jvp(lambda x: x**2, (np.ones(2),), (np.array([1, 2]),))[1], [2.0, 4.0])


def test_arrays_made_from_a_traced_scalar_are_new_and_writable() -> None:
    """Found by the fuzzer: np.expand_dims(s, 0), s[None], np.atleast_1d(s) and s[...] of a numpy
    scalar are new arrays in numpy, but writes into them raised."""
    x = np.array([0.3, -0.2, 0.9, 0.1])
    cases = [
        lambda x: (lambda v: (v.__setitem__(v > 0, v[v > 0] * 2), np.sum(v))[1])(np.expand_dims(np.sum(x), 0)),
        lambda x: (lambda v: (v.__setitem__(0, 5.0 * x[1]), np.sum(v))[1])(np.atleast_1d(np.sum(x))),
        lambda x: (lambda v: (v.__setitem__(slice(None), x[2]), np.sum(v))[1])(np.sum(x)[None]),
        lambda x: (lambda v: (v.__setitem__(Ellipsis, 5 * x[0]), np.sum(v))[1])(np.sum(x)[...]),
    ]
    for f in cases:
        value, (g,) = pz.withgradient(f, x)
        assert value == f(x.copy())
        np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-7, atol=1e-9)


def _view_at_traced_position_programs() -> list[tuple[Any, np.ndarray]]:
    x = np.array([[0.3, -0.2, 0.9], [0.1, 0.5, -0.4]])
    x3 = np.arange(24.0).reshape(2, 3, 4) / 10 - 1.0

    def column_write(x: Any) -> Any:
        y = x * 1.0
        col = y[:, np.argmax(y[0])]  # basic indexing: a view in numpy
        col *= 10.0
        return np.sum(y)

    def chained(x: Any) -> Any:
        y = x * 1.0
        y[np.argmax(x[:, 0])][1] = 7.0
        return np.sum(y * x)

    def sees_later_writes(x: Any) -> Any:
        y = x * 1.0
        c = y[:, np.argmax(y[0])]
        y[...] = y * 0.5
        return np.sum(c**2)

    def view_of_the_view(x: Any) -> Any:
        y = x * 1.0
        part = y[:, np.argmax(y[0])][1:]
        part *= 3.0
        return np.sum(y**2)

    def of_a_transpose(x: Any) -> Any:
        y = x * 1.0
        row = y.T[np.argmin(x[0])]
        row[:] = row * 2.0 + 1.0
        return np.sum(y * x)

    def reshapes(x: Any) -> Any:
        y = x * 1.0
        flat = y[np.argmax(x[:, 0, 0])].reshape(-1)  # contiguous: a view
        flat[::2] = 0.0
        z = y[:, np.argmax(x[0, :, 0])].reshape(-1)  # strided across the first axis: a copy
        z[:] = 100.0
        return np.sum(y**2) + np.sum(z)

    return [(column_write, x), (chained, x), (sees_later_writes, x), (view_of_the_view, x), (of_a_transpose, x), (reshapes, x3)]


@pytest.mark.parametrize("k", range(6))
def test_basic_indexing_at_a_traced_position_is_a_view_as_in_numpy(k: int) -> None:
    """Found by the fuzzer: y[:, i] with i = np.argmax(...) is a view in numpy (basic indexing), but
    pyzygote made a copy, so writes through it were lost and it missed later writes into y."""
    f, x = _view_at_traced_position_programs()[k]
    value, (g,) = pz.withgradient(f, x.copy())
    assert value == f(x.copy())
    np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-7, atol=1e-6)  # values up to 800: FD noise


def test_non_contiguous_arguments_copy_where_numpy_copies() -> None:
    """Found by the fuzzer: a strided argument (X[:, ::2]) was laid out as if contiguous, so
    x.ravel() was a view and writes into it changed x."""
    X = np.arange(1.0, 13.0).reshape(3, 4) / 4

    def f(x: Any) -> Any:
        flat = x.ravel()
        flat[0] = 100.0
        r = x.reshape(-1)
        r[-1] = -50.0
        return np.sum(x**2) + np.sum(flat) + np.sum(r)

    views = [
        lambda B: B[:, ::2], lambda B: B[::2], lambda B: B[::-1], lambda B: B[:, 1], lambda B: B[::-1, ::-2],
        lambda B: np.asfortranarray(B), lambda B: B.T[1:], lambda B: B[1],
    ]  # fmt: skip
    for view in views:
        x = view(X.copy())
        value, (g, ) = pz.withgradient(f, x)
        assert value == f(view(X.copy())), x.strides
        fd = np.zeros(x.shape)
        for i in np.ndindex(x.shape):  # central differences on arguments laid out the same way
            up, down = view(X.copy()), view(X.copy())
            up[i] += 1e-6
            down[i] -= 1e-6
            fd[i] = (f(up) - f(down)) / 2e-6
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-4)


_INDEX_HELPERS = {
    "unravel_index of argmax": lambda x: x[np.unravel_index(np.argmax(x), x.shape)] * np.sum(x),
    "unravel_index order F": lambda x: np.sum(x[np.unravel_index(np.argmin(x), x.shape, order="F")[0]] ** 2),
    "flat read at a traced position": lambda x: x.flat[np.argmax(x)] * x[0, 0],
    "flat write": lambda x: (lambda y: (y.flat.__setitem__(np.argmin(x), 3.0 * x[1, 1]), y.flat.__setitem__(slice(0, 2), x[0, :2] ** 2), np.sum(y**2))[-1])(x * 1.0),
    "count_nonzero": lambda x: np.sum(x) * np.count_nonzero(x > 0.2) + np.sum(np.count_nonzero(x > 0, axis=0) * x),
    "searchsorted into a table": lambda x: np.sum(pz.take(np.array([1.0, 2.0, 5.0, 7.0]), np.searchsorted(np.array([-0.5, 0.0, 0.5]), x)) * x),
    "searchsorted right into traced a": lambda x: np.sum(np.searchsorted(np.sort(x[0]), x[1], side="right") * x[1]),
    "digitize increasing": lambda x: np.sum(np.digitize(x, np.array([-0.5, 0.0, 0.5])) * x**2),
    "digitize decreasing right": lambda x: np.sum(np.digitize(x, np.array([0.5, 0.0, -0.5]), right=True) * x**2),
    "roll by a traced shift": lambda x: np.sum(np.roll(x, np.argmax(x[0]), axis=1) * np.arange(6.0).reshape(2, 3)),
    "roll flat by a traced shift": lambda x: np.sum(np.roll(x, np.argmin(x)) * np.arange(6.0).reshape(2, 3)),
    "copyto where": lambda x: (lambda y: (np.copyto(y, x**2, where=x > 0), np.sum(y * x))[-1])(x * 1.0),
    "view writes through": lambda x: (lambda y: (y.view().__setitem__((0, 0), 5.0 * x[1, 2]), np.sum(y**2))[-1])(x * 1.0),
}


@pytest.mark.parametrize("name", sorted(_INDEX_HELPERS))
def test_index_helpers_around_traced_positions(name: str) -> None:
    """Found refused by the fuzzer: unravel_index (argmax's companion), x.flat, count_nonzero,
    searchsorted/digitize, roll by a traced shift, copyto(where=) and x.view()."""
    f = _INDEX_HELPERS[name]
    x = np.array([[0.3, -0.2, 0.9], [0.1, 0.65, -0.4]])
    value, (g,) = pz.withgradient(f, x)
    assert value == f(x.copy())
    np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-7, atol=1e-8)
    x2 = x[::-1, ::-1] * 1.3  # a second point: the trace is reused with other positions
    np.testing.assert_allclose(pz.withgradient(f, x2)[0], f(x2.copy()), rtol=1e-14)


def test_np_diag_of_a_matrix_stays_numpys_read_only_view() -> None:
    """Found by the regression sweep: after results viewing temporaries became copies, np.diag(M)
    (numpy's read-only diagonal of M) became a writable copy that missed later writes into M."""

    def sees(x: Any) -> Any:
        M = np.outer(x, x) * 1.0
        d = np.diag(M)
        M[0, 0] = -7.0 * x[1]
        return np.sum(d * x)

    x = np.arange(1.0, 4.0)
    value, (g,) = pz.withgradient(sees, x)
    assert value == sees(x.copy())
    np.testing.assert_allclose(g, numerical_gradient(sees, x)[0], rtol=1e-7)

    def writes(x: Any) -> Any:
        d = np.diag(np.outer(x, x) * 1.0)
        d[0] = 1.0
        return np.sum(d)

    with pytest.raises(ValueError, match="read-only"):
        pz.gradient(writes, x)


def test_searchsorted_and_digitize_sort_nan_last_as_numpy_does() -> None:
    """Found by the Julia audit: NaN counted as below every bin (position 0), where numpy sorts NaN
    last, above every number, in the values and in a traced sorted array alike."""
    table = np.array([0.0, 1.0, 2.0])
    v = np.array([np.nan, 0.5, 5.0, 1.0])
    cases = {
        "left": lambda v: np.searchsorted(table, v),
        "right": lambda v: np.searchsorted(table, v, side="right"),
        "traced a with NaN": lambda v: np.searchsorted(np.sort(v), v),
        "traced a with NaN right": lambda v: np.searchsorted(np.sort(v), v, side="right"),
        "digitize": lambda v: np.digitize(v, table),
        "digitize right": lambda v: np.digitize(v, table, right=True),
        "digitize decreasing": lambda v: np.digitize(v, table[::-1]),
    }
    for name, f in cases.items():
        got = pz.make_program(f, v)(v)[0]
        np.testing.assert_array_equal(got, f(v), err_msg=name)


def test_a_setting_passed_positionally_to_gradient_is_named_as_such() -> None:
    """Found in user testing: pz.gradient(loss, p, alg, tol) differentiates tol too, and the error
    said only that tracing cannot read out a traced value."""

    def loss(x: Any, tol: Any) -> Any:
        return np.sum(x) if tol > 0 else 0.0

    with pytest.raises(pz.TracerBoolError, match="pass it as a keyword argument"):
        pz.gradient(loss, np.ones(2), 1e-6)
    assert pz.gradient(loss, np.ones(2), tol=1e-6)[0].tolist() == [1.0, 1.0]
    with pytest.raises(pz.TracerBoolError) as info:
        pz.gradient(lambda x: np.sum(x) if x[0] > 0 else 0.0, np.ones(2))
    assert "keyword" not in str(info.value)  # an array's entry is data, not a setting
    ode_loss = lambda p, tol: np.sum(pz.odesolve(lambda u, p, t: -p * u, [1.0], [0.0, 1.0], p, reltol=tol))  # noqa: E731
    with pytest.raises(pz.TracerBoolError, match="solver settings as keyword arguments"):
        pz.gradient(ode_loss, np.array([1.0]), 1e-6)


def test_a_loop_until_convergence_is_told_to_run_fixed_iterations() -> None:
    """Found in user testing: a Newton solve `while abs(step) > tol` got only the np.where hint."""

    def kepler(M: Any, e: float = 0.3) -> Any:
        E = M * 1.0
        step = np.ones_like(M)
        while np.max(np.abs(step)) > 1e-12:
            step = (E - e * np.sin(E) - M) / (1 - e * np.cos(E))
            E = E - step
        return np.sum(E)

    with pytest.raises(pz.TracerBoolError, match=r"fixed number of iterations \(for _ in range\(30\)\).*pz.nlsolve\(f, u0, p\)"):
        pz.gradient(kepler, np.array([0.5, 1.0]))


def test_jacobian_takes_no_rows_or_columns_for_keyword_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the Jacobian fuzzer: keyword data counted as inputs, so 3 columns became 1200
    pullbacks (reverse mode chosen for 1200 outputs against 2003 'inputs'), or 2003 columns."""
    from pyzygote.engines.numpy_engine import NumpyEngine

    asked = []
    real = NumpyEngine.linearize
    monkeypatch.setattr(NumpyEngine, "linearize", lambda self, prog, arrays, wrt, *a: asked.append(wrt) or real(self, prog, arrays, wrt, *a))
    monkeypatch.setattr(NumpyEngine, "vjp", lambda *a: pytest.fail("reverse mode for 1200 outputs of 3 inputs"))
    x, data = np.array([0.3, -0.7, 1.1]), np.linspace(0.0, 1.0, 2000)
    (J,) = pz.jacobian(lambda x, data: np.outer(np.tanh(data[:400]), x).ravel(), x, data=data, engine="numpy")
    assert asked == [(True, False)]
    np.testing.assert_array_equal(J, np.kron(np.tanh(data[:400])[:, None], np.eye(3)))


def test_a_square_jacobian_is_forward_mode_as_a_hessian_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """User testing: pz.jacobian(pz.grad(loss)) through a stiff solve took the reverse path (reverse
    over reverse), 3.5 times slower than pz.hessian, which is forward over reverse."""
    from pyzygote.engines.numpy_engine import NumpyEngine

    def loss(p: Any) -> Any:
        return np.sum(pz.odesolve(lambda u, p, t: -p * u**2, np.ones(2), np.linspace(0.0, 1.0, 5), p, reltol=1e-10, abstol=1e-12) ** 2)

    p = np.array([0.5, 1.5])
    want = pz.hessian(loss, p)
    monkeypatch.setattr(NumpyEngine, "vjp", lambda *a: pytest.fail("reverse mode for a square Jacobian"))
    np.testing.assert_allclose(pz.jacobian(pz.grad(loss), p)[0], want, rtol=1e-12)
    # the closed form: u = 1 / (1 + p t), the loss is sum over t of 2 / (1 + p t)^2 per component
    t = np.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(np.diag(want), [np.sum(6 * t**2 / (1 + q * t) ** 4) for q in p], rtol=1e-6)


def test_a_nan_gradient_at_a_nan_value_points_at_nan_in_the_data() -> None:
    """User testing: NaN in the data (a missing day) gave advice about log and sqrt at zero only."""
    data = np.array([1.0, np.nan, 2.0])
    with pytest.raises(pz.NonFiniteGradientError, match=r"NaN in the data .* np.where\(np.isnan\(data\)"):
        with np.errstate(invalid="ignore"):
            pz.gradient(lambda p: np.sum((p - data) ** 2), np.ones(3))
    with pytest.raises(pz.NonFiniteGradientError) as info:
        with np.errstate(divide="ignore"):
            pz.gradient(lambda p: np.sum(np.log(p)), np.zeros(3))
    assert "NaN in the data" not in str(info.value) and "log/sqrt/division at zero" in str(info.value)


def test_supported_names_count_a_scipy_ufunc_once_after_it_is_used() -> None:
    import scipy.special as sc

    before = pz.numpy_api.supported_names()
    pz.gradient(lambda x: np.sum(sc.xlogy(x, x) + sc.psi(x)), np.ones(2))
    assert pz.numpy_api.supported_names() == before and "scipy.special.psi" in before


def test_jacobian_and_hessian_refuse_jaxs_has_aux_by_name() -> None:
    """Found by the Jacobian fuzzer: has_aux=True reached the function as data, and Python said
    '<lambda>() got an unexpected keyword argument'."""
    for transform in (pz.jacobian, pz.hessian):
        with pytest.raises(TypeError, match=f"pz.{transform.__name__} takes no has_aux"):
            transform(lambda x: (np.sin(x), x), np.ones(2), has_aux=True)
    # a function with its own has_aux keyword still gets it
    (J,) = pz.jacobian(lambda x, has_aux: np.sin(x) * (2.0 if has_aux else 1.0), np.zeros(2), has_aux=True)
    np.testing.assert_allclose(J, 2.0 * np.eye(2))


def test_jax_keywords_are_refused_by_name_also_for_functions_taking_any_keyword() -> None:
    """User testing: pz.hessian(loss, x, y, argnums=1) with loss(x, y, **hparams) handed argnums
    to the function and returned d2/dx2 silently."""

    def loss(x: Any, y: Any, **hparams: Any) -> Any:
        return np.sum(x**2 * y**3) * hparams.get("scale", 1.0)

    x, y = np.ones(2), np.full(2, 2.0)
    for transform in (pz.hessian, pz.jacobian, pz.gradient, pz.withgradient, pz.pullback):
        with pytest.raises(TypeError, match=f"pz.{transform.__name__} takes no argnums"):
            transform(loss, x, y, argnums=1)
        with pytest.raises(TypeError, match=f"pz.{transform.__name__} takes no has_aux"):
            transform(loss, x, y, has_aux=True)
    with pytest.raises(TypeError, match="with respect to its first argument"):
        pz.hessian(loss, x, y, argnums=1)
    np.testing.assert_allclose(pz.gradient(loss, x, y, scale=2.0)[1], 2.0 * 3 * x**2 * y**2)  # other keywords are data
    (g,) = pz.gradient(lambda x, argnums=0: np.sum(x**2) * (argnums + 1), x, argnums=1)  # its own parameter
    np.testing.assert_allclose(g, 4.0 * x)


def test_gradients_keep_the_order_of_dicts_and_ordereddicts() -> None:
    """User testing: a torch state_dict (an OrderedDict, biases after weights) came back as a
    plain dict in sorted key order, so zip(params.values(), grads.values()) paired each weight
    with a bias's gradient, and broadcasting let the update run."""
    import collections

    from pyzygote.testing import assert_allclose_gradients, numerical_gradient

    params = collections.OrderedDict([("weight", np.ones((2, 2))), ("bias", np.zeros(2))])
    loss = lambda p: np.sum(np.tanh(p["weight"] @ np.array([1.0, 2.0]) + p["bias"]) ** 2)  # noqa: E731
    (g,) = pz.gradient(loss, params)
    assert type(g) is collections.OrderedDict and list(g) == ["weight", "bias"]
    assert all(p.shape == q.shape for p, q in zip(params.values(), g.values()))
    assert_allclose_gradients(g, numerical_gradient(loss, params)[0], rtol=1e-7)
    plain = {"z": 2.0, "a": np.ones(2)}
    (g,) = pz.gradient(lambda p: p["z"] * np.sum(p["a"]), plain)
    assert type(g) is dict and list(g) == ["z", "a"]
    H = pz.hessian(lambda p: p["z"] ** 2 * np.sum(p["a"]), plain)
    assert list(H) == ["z", "a"] and list(H["a"]) == ["z", "a"]
    # the same keys in another order are the same structure: tangents, cotangents, checks
    _, t = pz.jvp(lambda p: p["z"] * np.sum(p["a"]), (plain,), ({"a": np.ones(2), "z": 0.0},))
    assert t == 4.0
    assert_allclose_gradients({"a": np.ones(2), "z": 1.0}, {"z": 1.0, "a": np.ones(2)})


def test_integer_labels_in_another_librarys_arrays_are_data() -> None:
    """User testing: torch.long targets and JAX int arrays reached the function as they were, and
    indexing with them failed ("unsupported index tensor(...)"); float ones were converted."""

    class Foreign:  # stands in for a torch tensor or a JAX array: numpy reads it through __array__
        def __init__(self, a: Any) -> None:
            self.a = a

        def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
            return self.a if dtype is None else self.a.astype(dtype)

    W = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    nll = lambda w, y: -np.sum(np.log(w[np.arange(3), y]))  # noqa: E731
    y = np.array([0, 2, 1])
    want = pz.grad(nll)(W, y)
    np.testing.assert_allclose(pz.grad(nll)(W, Foreign(y)), want)
    g_w, g_y = pz.gradient(nll, W, Foreign(y))
    np.testing.assert_allclose(g_w, want)
    assert g_y is None or not np.any(g_y)
    np.testing.assert_allclose(pz.gradient(nll, Foreign(W), y)[0], want)  # a float one is differentiated


def test_another_librarys_integer_array_alone_is_refused_as_numpys_is() -> None:
    """Acceptance testing: torch.arange(4) and jnp.arange(4) (integer by default) got the gradient
    None from gradient, grad, value_and_grad and withgradient, silently, where np.arange(4) is
    refused: the integer checks looked at numpy arrays only."""

    class Foreign:  # numpy reads it through __array__, as it reads a torch tensor or a JAX array
        def __init__(self, a: Any) -> None:
            self.a = a

        def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
            return self.a if dtype is None else self.a.astype(dtype)

    f = lambda x: np.sum(np.sin(x) ** 2)  # noqa: E731
    calls = {
        "gradient": lambda x: pz.gradient(f, x),
        "withgradient": lambda x: pz.withgradient(f, x),
        "grad": lambda x: pz.grad(f)(x),
        "value_and_grad": lambda x: pz.value_and_grad(f)(x),
        "pullback": lambda x: pz.pullback(f, x),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match="integer"):
            call(Foreign(np.arange(4)))
    x = np.linspace(0.0, 1.0, 4)
    np.testing.assert_allclose(pz.gradient(f, Foreign(x))[0], np.sin(2 * x))
    for dtype in (np.int32, np.uint8):  # JAX's default integers, image data: constants of the trace
        with pytest.raises(TypeError, match="integer"):
            pz.gradient(f, np.arange(4, dtype=dtype))
        with pytest.raises(TypeError, match="integer"):
            pz.withgradient(f, Foreign(np.arange(4, dtype=dtype)))


def test_labels_passed_as_a_list_are_explained_when_they_index() -> None:
    """User testing: labels as a Python list became a differentiated float array, and indexing
    with them failed with a message that did not say why they were floats."""
    X, w = np.ones((3, 2)), np.array([0.5, -0.3])

    def nll(w: Any, X: Any, y: Any) -> Any:
        z = np.stack([X @ w, -(X @ w)], axis=1)
        return -np.sum(z[np.arange(3), y])

    with pytest.raises(IndexError, match=r"an argument pyzygote differentiates.*np.array\(y\)"):
        pz.gradient(nll, w, X, [0, 1, 1])
    with pytest.raises(IndexError, match=r"use .astype\(int\)\)\.$"):  # a computed float index: no such note
        pz.gradient(lambda v: v[v * 0.0], np.ones(2))
    np.testing.assert_allclose(pz.gradient(nll, w, X, np.array([0, 1, 1]))[0], [1.0, 1.0])  # -(z0 - z1 - z1) = X @ w


def test_grad_refuses_argnums_that_select_no_numbers() -> None:
    """User testing: arguments in the wrong order gave the gradient None, silently."""
    W = np.ones((2, 2))
    with pytest.raises(TypeError, match=r"differentiates argument 0 \(argnums=0\), which is 'relu': it holds no numbers"):
        pz.grad(lambda name, W: np.sum(W**2))("relu", W)
    np.testing.assert_allclose(pz.grad(lambda name, W: np.sum(W**2), argnums=1)("relu", W), 2 * W)
    assert pz.grad(lambda p: p["w"] ** 2)({"w": 3.0, "tag": "a"}) == {"w": 6.0, "tag": None}


def test_dataclass_parameters_are_containers_and_opaque_objects_are_refused() -> None:
    """User testing: parameters in a dataclass got the gradient None, and pz.jvp a zero tangent."""
    import dataclasses
    import types

    @dataclasses.dataclass(frozen=True)
    class Params:
        W: Any
        b: Any
        name: str = "layer"

        def __post_init__(self) -> None:
            if np.ndim(self.b) != 1:
                raise ValueError("b must be a vector")

    def loss(p: Any, x: Any) -> Any:
        assert p.name == "layer"
        return np.sum(np.tanh(x @ p.W + p.b) ** 2)

    p, x = Params(np.linspace(-1, 1, 6).reshape(3, 2), np.array([0.1, -0.2])), np.arange(6.0).reshape(2, 3) / 6
    (g, gx) = pz.gradient(loss, p, x)
    assert type(g) is Params and g.name is None
    want = pz.gradient(lambda W, b: loss(Params(W, b), x), p.W, p.b)
    np.testing.assert_allclose(g.W, want[0], rtol=1e-14)
    np.testing.assert_allclose(g.b, want[1], rtol=1e-14)
    np.testing.assert_allclose(pz.grad(loss)(p, x).W, want[0], rtol=1e-14)
    value, t = pz.jvp(lambda q: np.sum(q.W**3), (p,), (Params(np.ones((3, 2)), np.zeros(2)),))
    assert t == pytest.approx(np.sum(3 * p.W**2), rel=1e-14)
    H = pz.hessian(lambda q: np.sum(q.W**2) * np.sum(q.b**2), p)
    np.testing.assert_allclose(H.W.W, 2 * np.sum(p.b**2) * np.eye(6).reshape(3, 2, 3, 2), rtol=1e-14)
    with pytest.raises(TypeError, match=r"argument 0 is a SimpleNamespace holding arrays \(W, b\).*Make it a dataclass or pass a dict"):
        pz.gradient(loss, types.SimpleNamespace(W=p.W, b=p.b, name="layer"), x)
    # found by the API fuzzer: a Mapping that is not a dict, and arrays one container down,
    # got None gradients and a jvp that dropped their tangent, silently
    for opaque, where in (
        (types.MappingProxyType({"W": p.W, "b": p.b}), r"argument 0 is a mappingproxy holding arrays \('W', 'b'\)"),
        (types.SimpleNamespace(params={"W": p.W, "b": p.b}), r"argument 0 is a SimpleNamespace holding arrays \(params\)"),
    ):
        with pytest.raises(TypeError, match=where):
            pz.gradient(lambda q, x: np.sum(x), opaque, x)
        with pytest.raises(TypeError, match=where):
            pz.jvp(lambda q: x * 2.0, (opaque,), (opaque,))
    # held constant where it is data
    ns = types.SimpleNamespace(W=p.W, b=p.b, name="layer")
    np.testing.assert_allclose(pz.grad(lambda x, q: loss(q, x))(x, ns), pz.gradient(lambda x: loss(p, x), x)[0], rtol=1e-14)


def test_a_structured_hessian_reuses_the_functions_trace() -> None:
    """Found by the Jacobian fuzzer: pz.hessian of a dict x traced f again on every call (about
    0.1 s each in a Newton loop); it now cuts one flat vector into the leaves of f's own trace."""
    traced = []

    def f(p: Any, c: Any, scale: float = 1.0) -> Any:
        traced.append(1)
        return scale * (np.sum(p["a"] ** 3) * p["b"] + np.sin(p["b"]) * c + p["s"] ** 2 * np.sum(p["a"]))

    P = {"a": np.array([1.0, 2.0]), "b": np.float32(0.5), "s": 1.5}
    H = pz.hessian(f, P, 2.0, scale=3.0)
    H2 = pz.hessian(f, {"a": np.array([2.0, 1.0]), "b": np.float32(0.25), "s": 0.5}, 2.0, scale=3.0)
    assert len(traced) == 1
    flat = lambda v, c: f({"a": v[:2], "b": v[2], "s": v[3]}, c, scale=3.0)  # noqa: E731
    for h, v in ((H, np.array([1.0, 2.0, 0.5, 1.5])), (H2, np.array([2.0, 1.0, 0.25, 0.5]))):
        want = pz.hessian(flat, v, 2.0)
        np.testing.assert_allclose(h["a"]["a"], want[:2, :2], rtol=1e-14)
        np.testing.assert_allclose(h["a"]["b"], want[:2, 2], rtol=1e-14)
        np.testing.assert_allclose(h["b"]["b"], want[2, 2], rtol=1e-14)
        np.testing.assert_allclose(h["s"]["a"], want[3, :2], rtol=1e-14)
        assert h["b"]["b"].dtype == np.float64  # mixed precision promoted, as documented


def test_a_nan_gradient_from_nan_data_under_nansum_points_at_the_data() -> None:
    """Regression testing: with np.nansum the value is finite and the gradient NaN; the hint about
    NaN in the data was given only at a NaN value."""
    cases = np.array([3.0, np.nan, 7.0])
    # user testing: the message then says which array holds NaN, and where
    for args, holder in (((np.ones(3),), r"an array of shape \(3,\) that the function reads, entry \[1\]"), ((np.ones(3), cases), r"c \(argument 1\), entry \[1\]")):
        f = (lambda mu: -np.nansum(cases * np.log(mu) - mu)) if len(args) == 1 else (lambda mu, c: -np.nansum(c * np.log(mu) - mu))
        with pytest.raises(pz.NonFiniteGradientError, match=r"reads arrays that hold NaN \(" + holder + r" holds NaN\): is there NaN in the data"):
            pz.gradient(f, *args)


def test_a_nan_that_numpy_computes_from_constants_is_not_only_blamed_on_the_data() -> None:
    """User testing: a Hodgkin-Huxley rate on a voltage grid through -55, 0 / 0 computed before
    the parameters enter, was reported as NaN in the data only."""
    V = np.linspace(-80.0, 0.0, 81)

    def steady_state(p: Any) -> Any:
        with np.errstate(invalid="ignore"):
            an = 0.01 * (V + 55) / (1 - np.exp(-(V + 55) / 10))
        return np.sum(p[0] * (an / (an + 0.125)) ** 4)

    with pytest.raises(pz.NonFiniteGradientError, match=r"computes without its arguments, entry \[25\] holds NaN\): numpy made it from constants.*scipy.special.exprel"):
        pz.gradient(steady_state, np.array([36.0]))


def test_a_0_over_0_of_the_form_x_over_exp_x_minus_1_points_at_exprel_not_at_the_data() -> None:
    """User testing: a Hodgkin-Huxley rate 0.1 * (V + 40) / (1 - np.exp(-(V + 40) / 10)) at
    V = -40 named "a division gives NaN at (0.0, 0.0)", then advised about NaN in the data,
    missing observations and Poisson terms, none of which it had."""
    import scipy.special as sc

    cases = [
        lambda V: 0.1 * (V + 40) / (1 - np.exp(-(V + 40) / 10)),
        lambda V: (V + 40) / np.expm1((V + 40) / 10),
        lambda V: 3.0 * (V + 40) / (10.0 * (np.exp(V + 40) - 1.0)),
    ]
    for f in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(pz.NonFiniteGradientError) as info:
                pz.grad(f)(-40.0)
        text = str(info.value)
        assert "a division gives NaN at (0.0, 0.0), a 0 / 0 of the form y / (exp(y) - 1)" in text and "exprel" in text
        assert "missing observation" not in text and "Poisson" not in text and "eigh" not in text
        assert text.endswith("= 1 / exprel(-(V + 40) / 10).")
    # the advice holds: written with exprel, value and derivative are finite and exact at 0
    assert pz.grad(lambda V: 1.0 / sc.exprel(-(V + 40) / 10))(-40.0) == pytest.approx(0.05, rel=1e-12)
    # a 0 / 0 of another kind gets no such hint, and NaN read from data still gets the data advice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(pz.NonFiniteGradientError) as info:
            pz.grad(lambda x: np.sin(x) / x)(0.0)
        assert "exprel" not in str(info.value) and "missing observation" not in str(info.value)
        assert "Check for log/sqrt/division at zero" in str(info.value)  # the general checklist stays
        data = np.array([1.0, np.nan])
        with pytest.raises(pz.NonFiniteGradientError, match="missing observation"):
            pz.grad(lambda a: np.sum((a * np.ones(2) - data) ** 2))(1.0)


def test_nan_data_multiplying_a_parameter_gets_the_advice_that_works() -> None:
    """User testing: np.where(np.isnan(y), 0.0, y * np.log(lam) - lam), as the message advised, still
    gave NaN (NaN times the zero derivative of the discarded branch); the message now says to
    replace the NaN in the data too, which works."""
    y = np.array([1.0, np.nan, 3.0])
    with pytest.raises(pz.NonFiniteGradientError, match=r"that the function reads, entry \[1\] holds NaN.*y0 = np.where\(np.isnan\(y\), 0.0, y\)"):
        pz.gradient(lambda lam: -np.sum(np.where(np.isnan(y), 0.0, y * np.log(lam) - lam)), np.ones(3))
    data = np.stack([np.arange(3.0), y], axis=1)  # review: a column of data is data, not a computed constant
    with pytest.raises(pz.NonFiniteGradientError, match=r"that the function reads, entry \[1\] holds NaN.*is there NaN in the data"):
        pz.gradient(lambda lam: -np.sum(data[:, 1] * np.log(lam) - lam), np.ones(3))
    y0 = np.where(np.isnan(y), 0.0, y)
    (g,) = pz.gradient(lambda lam: -np.sum(np.where(np.isnan(y), 0.0, y0 * np.log(lam) - lam)), np.array([2.0, 2.0, 2.0]))
    np.testing.assert_allclose(g, [1 - 1 / 2, 0.0, 1 - 3 / 2])


def test_numpy_integer_scalars_are_numbers_as_python_ints_are() -> None:
    """User testing: {"V": np.int64(30)} (from an integer pandas column) got the gradient None
    silently, where {"V": 30} got d/dV."""
    f = lambda p: p["a"] * p["V"] ** 2  # noqa: E731
    (g,) = pz.gradient(f, {"a": 1.5, "V": np.int64(30)})
    assert g["V"] == pytest.approx(2 * 1.5 * 30) and g["a"] == pytest.approx(900.0)
    assert pz.hessian(lambda v: v**3, np.int64(2)) == pytest.approx(12.0)


def test_gradient_refuses_when_every_argument_is_integer() -> None:
    """User testing: Young's moduli given as integers (np.full(ne, 210000)) got None silently."""
    with pytest.raises(TypeError, match=r"nothing to differentiate: E \(argument 0\) is an array of integer values.*dtype=float"):
        pz.gradient(lambda E: np.sum(E.astype(float) ** 2), np.array([200, 1]))
    with pytest.raises(TypeError, match="nothing to differentiate"):
        pz.withgradient(lambda m: np.sum(np.where(m, 1.0, 0.0)), np.array([True, False]))
    # user testing: integer gains through an ODE solve (whose p takes integers as data) got None
    solve = lambda k: np.sum(pz.odesolve(lambda u, p, t: -p * u, np.ones(2), np.linspace(0, 1, 5), k))  # noqa: E731
    for transform in (pz.gradient, pz.withgradient):
        with pytest.raises(TypeError, match=r"nothing to differentiate: k \(argument 0\) is an array of integer"):
            transform(solve, np.array([2, 3]))
    # labels beside floating-point parameters are data, as before
    logp = np.log(np.full((3, 4), 0.25))
    gW, gy = pz.gradient(lambda W, y: -np.sum((W * logp)[np.arange(3), y]), np.ones((3, 4)), np.array([0, 1, 2]))
    assert gy is None
    np.testing.assert_allclose(gW, np.where(np.arange(4)[None, :] == np.arange(3)[:, None], -np.log(0.25), 0.0))


def test_complex_values_made_inside_a_traced_function_are_refused() -> None:
    """Found in user testing: a frequency response written with 1j, np.linalg.solve(K - w**2 M +
    1j w C, f), gave a wrong value and a zero gradient without an error (np.linalg dropped the
    imaginary parts).  Any complex value in a trace is now refused, with the real form to write."""
    K, f = np.array([[2.0, -1.0], [-1.0, 2.0]]), np.array([1.0, 0.0])

    def response(c: Any, w: float = 0.9) -> Any:
        return np.sum(np.abs(np.linalg.solve(K - w**2 * np.eye(2) + 1j * w * c * np.eye(2), f)) ** 2)

    complex_like = (  # review: a traced constant of complex dtype slipped past the checks
        lambda: pz.gradient(lambda x: np.sum(x * np.zeros_like(x, dtype=complex).astype(float)), np.ones(2)),
        lambda: pz.make_program(lambda x: np.isfinite(np.zeros_like(x, dtype=np.complex64)), np.ones(2)),
    )
    for call in (lambda: pz.withgradient(response, 0.3), lambda: pz.gradient(lambda x: np.sum(x * np.ones(2, complex)), np.ones(2)), *complex_like):
        with pytest.raises(pz.UnsupportedOperationError, match="real numbers only"):
            call()

    def real_form(c: Any, w: float = 0.9) -> Any:  # the advice, followed
        A, B = K - w**2 * np.eye(2), w * c * np.eye(2)
        z = np.linalg.solve(np.block([[A, -B], [B, A]]), np.concatenate([f, np.zeros(2)]))
        return np.sum(z**2)

    value, (g,) = pz.withgradient(real_form, 0.3)
    np.testing.assert_allclose(value, response(0.3), rtol=1e-12)  # numpy's complex value, untraced
    fd = (real_form(0.3 + 1e-6) - real_form(0.3 - 1e-6)) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # numpy's own, on making a matrix
def test_a_keyword_x_of_fs_own_is_data_in_hessian_and_numpy_matrices_are_refused() -> None:
    """Found by the API fuzzer: pz.hessian(loss, x=data) for loss(w, x=...) took the keyword as
    its own x and returned the Hessian at w = data; np.matrix's * (a matrix product) was traced
    as an array's (elementwise), silently."""

    def loss(w: Any, x: Any = np.zeros(2)) -> Any:
        return np.sum((w - x) ** 2) + np.sum(w**3)

    with pytest.raises(TypeError, match="positional"):
        pz.hessian(loss, x=np.array([1.0, 2.0]))
    np.testing.assert_allclose(pz.hessian(lambda x: np.sum(x**3), x=np.array([1.0, 2.0])), np.diag([6.0, 12.0]))
    m = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match="numpy matrix.*np.asarray"):
        pz.value_and_grad(lambda m: np.sum(m * m))(m)


def test_cotangents_of_the_wrong_kind_and_empty_argnums_are_refused() -> None:
    """Found by the API fuzzer: a boolean cotangent was read as 0/1, None as NaN (which the
    non-finite check then blamed on the function), and argnums=() returned () silently."""
    _, back = pz.pullback(lambda x: {"a": x * 2.0, "b": np.sum(x)}, np.ones(3))
    with pytest.raises(TypeError, match=r"cotangent \(output 0\) must hold numbers.*dtype bool"):
        back({"a": np.array([True, False, True]), "b": 1.0})
    with pytest.raises(ValueError, match=r"cotangent \(output 1\) holds NaN"):
        back({"a": np.ones(3), "b": np.nan})
    with pytest.raises(ValueError, match=r"cotangent \(output 0\) of shape \(2,\)"):
        back({"a": np.ones(2), "b": 1.0})
    np.testing.assert_allclose(back({"a": np.ones(3), "b": 2})[0], [4.0, 4.0, 4.0])  # integers are numbers
    with pytest.raises(ValueError, match=r"argnums=\(\) selects no argument"):
        pz.grad(lambda x: np.sum(x), argnums=())(np.ones(2))


def test_a_non_finite_gradient_names_the_operation_where_it_starts() -> None:
    """User testing: NonFiniteGradientError gave the same checklist for arctan2 at the origin in a
    radial-velocity model at e = 0 and arccos(1) in the branch np.where discards; it now names the
    first operation whose value or local derivative stops being finite, with its operands."""
    cases = [
        (lambda e: np.arctan2(e * np.sin(0.0), e * np.cos(0.0) - e) + e, 0.3, "np.arctan2 in its first operand is not finite at (0.0, 0.0)"),
        (lambda b: np.sum(np.where(b < 1.0, np.arccos(np.minimum(b, 1.0)), 0.0)), np.array([0.5, 1.0, 2.0]), "np.arccos is not finite at 1.0 (entry [1])"),
        (lambda x: np.sum(np.sqrt(x * x - 1.0)), np.array([2.0, 1.0]), "np.sqrt is not finite at 0.0 (entry [1])"),
        (lambda x: np.sum(np.where(x > 0, np.log(x), 0.0)), np.array([1.0, 0.0]), "np.log gives -inf at 0.0 (entry [1])"),
    ]
    for f, x, where in cases:
        with pytest.raises(pz.NonFiniteGradientError, match="The first operation it meets") as info, np.errstate(all="ignore"):
            pz.gradient(f, x)
        assert where in str(info.value), (where, str(info.value))
    # operations on data alone are not blamed: sqrt(0) of a constant has no derivative to take
    data = np.array([0.0, 4.0])
    with pytest.raises(pz.NonFiniteGradientError) as info, np.errstate(all="ignore"):
        pz.gradient(lambda x: np.sum(np.sqrt(data) * x + np.log(x)), np.array([1.0, 0.0]))
    assert "np.log gives -inf at 0.0 (entry [1])" in str(info.value)
    with pytest.raises(pz.NonFiniteGradientError, match="np.arccos is not finite"):
        pz.jacobian(lambda b: np.arccos(b), np.array([0.2, 1.0]))


def test_a_clamp_feeding_an_infinite_derivative_is_named() -> None:
    """User testing: np.sqrt(np.maximum(x, 0.0)) (Hertz contact) and np.arcsin(np.clip(n * s, -1, 1))
    (Snell's law past total internal reflection) raised blaming np.sqrt at 0 and np.arcsin at 1,
    never the clamp that put the entry there. The error stays (0 * inf is NaN in forward mode and
    on Zygote's broadcasts too), but it names the clamp, the bound and the value it replaced, and
    what to write; the double where it suggests gives the true derivative, 0 at clamped entries."""
    x = np.array([-0.5, 0.25, 1.0])
    cases = [
        (lambda x: np.sum(np.sqrt(np.maximum(x, 0.0))), "np.sqrt is not finite at 0.0 (entry [0]), where np.maximum (or np.clip's lower bound) put the bound 0.0 in place of -0.5"),
        (lambda x: np.sum(np.sqrt(np.maximum(0.0, x))), "where np.maximum (or np.clip's lower bound) put the bound 0.0 in place of -0.5"),
        (lambda x: np.sum(np.arcsin(np.clip(1.5 * x, -1.0, 1.0))), "np.arcsin is not finite at 1.0 (entry [2]), where np.minimum (or np.clip's upper bound) put the bound 1.0 in place of 1.5"),
        (lambda x: np.sum(np.arcsin(np.clip(-1.5 * x, -1.0, 1.0))), "np.arcsin is not finite at -1.0 (entry [2]), where np.maximum (or np.clip's lower bound) put the bound -1.0 in place of -1.5"),
    ]
    for f, where in cases:
        with pytest.raises(pz.NonFiniteGradientError) as info:
            pz.gradient(f, x)
        assert where in str(info.value), str(info.value)
        assert "np.where(x > 0, np.sqrt(np.where(x > 0, x, 1.0)), 0.0)" in str(info.value)
    # a tie is not a clamp: the derivative there is half of the infinite one, and the message does not say 0 * inf
    with pytest.raises(pz.NonFiniteGradientError) as info:
        pz.gradient(lambda x: np.sum(np.sqrt(np.maximum(x, 0.0))), np.array([0.0, 1.0]))
    assert "np.sqrt is not finite at 0.0 (entry [0])" in str(info.value) and "in place of" not in str(info.value)
    # a bound that depends on the arguments is not a clamp to a constant either
    with pytest.raises(pz.NonFiniteGradientError) as info:
        pz.gradient(lambda x: np.sum(np.sqrt(np.maximum(x, x[1] - 0.25))), x)
    assert "in place of" not in str(info.value)
    # what the message suggests: the double where and a clamp away from 0 give the true derivative
    np.testing.assert_allclose(
        pz.grad(lambda x: np.sum(np.where(x > 0, np.sqrt(np.where(x > 0, x, 1.0)), 0.0)))(x), [0.0, 1.0, 0.5], rtol=1e-15
    )
    np.testing.assert_allclose(pz.grad(lambda x: np.sum(np.sqrt(np.maximum(x, np.finfo(float).tiny))))(x), [0.0, 1.0, 0.5], rtol=1e-15)
    np.testing.assert_allclose(
        pz.grad(lambda x: np.sum(np.arcsin(np.clip(1.5 * x, -1 + 1e-12, 1 - 1e-12))))(x), [1.5 / np.sqrt(1 - 0.75**2), 1.5 / np.sqrt(1 - 0.375**2), 0.0], rtol=1e-14
    )


def test_the_diagnosis_runs_when_read_and_skips_values_only_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: the replay cost every caught NonFiniteGradientError 0.4 s on a long loop (a line
    search pays it at each rejected step), it named np.sqrt when np.sqrt only fed a mask, and
    pz.value_and_grad warned that it did not return a NaN value it returned."""
    import pyzygote.diagnose as diagnose

    calls = []
    real = diagnose.first_nonfinite
    monkeypatch.setattr(diagnose, "first_nonfinite", lambda *a, **k: calls.append(1) or real(*a, **k))

    def f(x: Any) -> Any:
        inside = np.sqrt(x) < 1.0  # a mask: sqrt's derivative never reaches the loss
        return np.sum(np.where(inside, x, 0.0)) + np.log(x[1] - 2.0)

    with np.errstate(divide="ignore"):
        with pytest.raises(pz.NonFiniteGradientError) as info:
            pz.gradient(f, np.array([0.0, 2.0]))
    assert not calls  # not run until the message is read
    assert "The first operation it meets, running the function again: np.log gives -inf at 0.0" in str(info.value)
    assert len(calls) == 1 and str(info.value) == str(info.value) and len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, g = pz.value_and_grad(lambda w: np.sum(w**2) + np.nan)(np.array([1.0, 2.0]))
        with pytest.raises(pz.NonFiniteGradientError):  # raised without first warning that it is returned
            pz.jacobian(lambda w: np.sqrt(w)[:1] + np.nan, np.array([0.0, 1.0]))
    assert np.isnan(value)
    np.testing.assert_array_equal(g, [2.0, 4.0])


def test_a_function_returning_none_is_named_a_forgotten_return() -> None:
    """User testing: a loss without its return statement read "returned shape(s) []. Use
    pz.jacobian for vector outputs"; pz.jvp and pz.pullback returned (None, ...) silently."""

    def loss(x: Any) -> None:
        np.sum(x**2)

    x = np.ones(2)
    calls = {
        "gradient": lambda: pz.gradient(loss, x),
        "gradient ": lambda: pz.grad(loss)(x),
        "gradient  ": lambda: pz.value_and_grad(loss)(x),
        "withgradient": lambda: pz.withgradient(loss, x),
        "has_aux=True": lambda: pz.value_and_grad(loss, has_aux=True)(x),
        "hessian": lambda: pz.hessian(loss, x),
        "hessian ": lambda: pz.hessian(lambda d: loss(d["a"]), {"a": x, "b": 1.0}),
        "jacobian": lambda: pz.jacobian(loss, x),
        "jvp": lambda: pz.jvp(loss, (x,), (x,)),
        "pullback": lambda: pz.pullback(loss, x),
    }
    for fname, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{re.escape(fname.strip())} needs a function returning .*, but it returned None \(did you forget return\?\)$"):
            call()
    # inside an enclosing trace too
    with pytest.raises(ValueError, match=r"returned None \(did you forget return\?\)"):
        pz.grad(lambda x: np.sum(pz.grad(loss)(x)))(x)


def test_ravel_flattens_parameter_trees_and_unravel_rebuilds_them() -> None:
    """User testing: a Laplace approximation over dict parameters needs the flat Hessian to
    invert, and pz.hessian gives nested blocks H[a][b]; pz.ravel (jax.flatten_util.ravel_pytree)
    gives the vector and a traced unravel."""
    q = {"mu": 0.3, "log_s": np.array([0.1, -0.2]), "L": np.array([[1.0, 0.5], [0.2, 2.0]])}
    flat, unravel = pz.ravel(q)
    # sorted keys, each leaf in C order; the Python float a float64 entry
    np.testing.assert_array_equal(flat, [1.0, 0.5, 0.2, 2.0, 0.1, -0.2, 0.3])
    assert flat.dtype == np.float64
    back = unravel(flat)
    assert list(back) == list(q) and back["L"].shape == (2, 2) and np.shape(back["mu"]) == ()
    for k in q:
        np.testing.assert_array_equal(back[k], q[k])
    flat[0] = 99.0  # neither the vector nor what unravel made shares memory with the other or with q
    assert q["L"][0, 0] == 1.0 and back["L"][0, 0] == 1.0
    back["log_s"][0] = 7.0
    assert flat[4] == 0.1

    # tuples, lists, nested containers, static leaves and None come back as they were
    tree = (np.float64(2.0), [np.arange(3.0), {"b": np.ones((1, 2)), "tag": "x"}], None, True)
    flat2, unravel2 = pz.ravel(tree)
    np.testing.assert_array_equal(flat2, [2.0, 0.0, 1.0, 2.0, 1.0, 1.0])
    rebuilt = unravel2(flat2 * 2)
    assert rebuilt[1][1]["tag"] == "x" and rebuilt[2] is None and rebuilt[3] is True
    np.testing.assert_array_equal(rebuilt[1][0], [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(rebuilt[1][1]["b"], [[2.0, 2.0]])
    assert float(rebuilt[0]) == 4.0

    # float32 stays float32; mixed with float64 the vector is float64 and each leaf gets its type back
    f32 = {"a": np.ones(2, np.float32), "b": np.float32(3.0)}
    v32, un32 = pz.ravel(f32)
    assert v32.dtype == np.float32 and un32(v32)["a"].dtype == np.float32
    vmix, unmix = pz.ravel({"a": np.ones(2, np.float32), "b": np.ones(1)})
    assert vmix.dtype == np.float64 and unmix(vmix)["a"].dtype == np.float32 and unmix(vmix)["b"].dtype == np.float64

    # the Laplace covariance: the Hessian in the flat vector is np.block of pz.hessian's nested blocks
    def nlp(p: Any) -> Any:
        s = np.exp(p["log_s"])
        return 0.5 * p["mu"] ** 2 + np.sum(s**2) + p["mu"] * np.sum(p["log_s"]) + np.sum(p["L"] @ s) * p["mu"] + np.sum(p["L"] ** 4)

    H = pz.hessian(lambda v: nlp(unravel(v)), pz.ravel(q)[0])
    blocks = pz.hessian(nlp, q)
    keys = sorted(q)
    size = {k: np.size(q[k]) for k in keys}
    M = np.block([[np.reshape(blocks[a][b], (size[a], size[b])) for b in keys] for a in keys])
    np.testing.assert_allclose(H, M, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(H, H.T, rtol=1e-14, atol=1e-14)
    # and the gradient in the vector is the dict's gradient raveled
    (g,) = pz.gradient(lambda v: nlp(unravel(v)), pz.ravel(q)[0])
    np.testing.assert_allclose(g, pz.ravel(pz.gradient(nlp, q)[0])[0], rtol=1e-15)

    # ravel of traced leaves, inside a differentiated function
    (gq,) = pz.gradient(lambda p: np.sum(pz.ravel(p)[0] ** 2), {"a": np.array([1.0, 2.0]), "b": 3.0})
    np.testing.assert_allclose(gq["a"], [2.0, 4.0])
    np.testing.assert_allclose(gq["b"], 6.0)

    # bad input is named
    with pytest.raises(TypeError, match=r"leaf \['n'\] is int64"):
        pz.ravel({"n": np.arange(3), "x": 1.0})
    with pytest.raises(ValueError, match=r"1-D vector of length 7 .* got shape \(6,\)"):
        unravel(np.ones(6))
    empty, unempty = pz.ravel({})
    assert empty.shape == (0,) and unempty(empty) == {}


def test_large_data_passed_positionally_to_jacobian_is_warned_about_once() -> None:
    """User testing: the SciPy idiom jac=lambda p, x, y: pz.jacobian(res, p, x, y)[0] computed
    2001 x 2001 blocks for x and y (225 ms against 0.5 ms with x and y as keywords), silently.
    A positional argument after the first whose block passes a million entries is named, once per
    function, with the keyword form; the blocks themselves are as before."""
    assert issubclass(pz.PositionalDataWarning, UserWarning)
    x = np.linspace(-10.0, 10.0, 1001)
    y = np.exp(-(x**2))

    def res(p: Any, x: Any, y: Any) -> Any:
        return p[0] * np.exp(-0.5 * ((x - p[1]) / p[2]) ** 2) - y

    p0 = np.array([1.0, 0.1, 0.8])
    with pytest.warns(pz.PositionalDataWarning) as caught:
        J = pz.jacobian(res, p0, x, y)
    assert len(caught) == 1, [str(w.message) for w in caught]
    text = str(caught[0].message)
    assert "x (argument 1), 1,001 entries, a block of 1,002,001; y (argument 2), 1,001 entries, a block of 1,002,001" in text
    assert "pz.jacobian(res, p, x=x, y=y)" in text and "functools.partial(res, x=x, y=y)" in text
    assert caught[0].filename == __file__  # at the user's line
    np.testing.assert_allclose(J[2], -np.eye(x.size))  # the blocks are computed as before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        J2 = pz.jacobian(res, p0, x, y)  # once per function
        Jk = pz.jacobian(res, p0, x=x, y=y)  # keywords: no blocks, no warning
        assert len(Jk) == 1
        np.testing.assert_allclose(Jk[0], J2[0], rtol=1e-15)
        # a large first argument is what is differentiated, and small data cost little
        pz.jacobian(lambda v, c: np.sin(v) * c, np.ones(1500), np.float64(2.0))
        pz.jacobian(lambda v, c, d: np.sin(v) * c + d, np.ones(3), np.ones(3), np.ones(3))
        # pz.hessian holds its later positional arguments: no blocks of theirs
        H = pz.hessian(lambda p, x, y: np.sum(res(p, x, y) ** 2), p0, x, y)
        assert H.shape == (3, 3)
    # another function warns too, naming a dict argument by its parameter
    with pytest.warns(pz.PositionalDataWarning, match=r"large: c \(argument 1\), 1,001 entries, a block of 1,002,001\. .*pz.jacobian\(f, p, c=c\)"):
        pz.jacobian(lambda v, c: v[0] * c["a"], np.ones(2), {"a": np.ones(1001)})
    # f(p, *data): no keywords to name (review: it advised x=x, y=y, which f does not take)
    def star(q: Any, *data: Any) -> Any:
        return q[0] * data[0] - data[1]

    with pytest.warns(pz.PositionalDataWarning) as caught:
        pz.jacobian(star, p0, x, y)
    text = str(caught[0].message)
    assert "pz.jacobian(star, p, x=x" not in text and "pz.jacobian(lambda p: star(p, *data), p)" in text, text
    assert "filterwarnings('ignore', category=pz.PositionalDataWarning)" in text


def test_a_nan_or_inf_written_into_a_constant_before_pz_expm_is_named_at_pz_expm() -> None:
    """User testing: np.nan written into a constant matrix factor of pz.expm's input was blamed on
    x / (1 - np.exp(-x)) and a RuntimeWarning that did not exist; with inf (a finite value, a NaN
    gradient) no operation was named. The diagnosis skipped every operation with a non-finite
    operand; a matrix function that meets one is now named, with the entry of its input."""
    A = np.array([[-1.0, 2.0], [0.5, -3.0]])
    M = np.array([[1.0, 1.0], [1.0, np.nan]])

    with pytest.raises(pz.NonFiniteGradientError) as info:
        pz.gradient(lambda a: np.sum(pz.expm(a * np.array([[1.0, 1.0], [1.0, np.nan]]))), A)
    text = str(info.value)
    assert "pz.expm meets NaN in its input, entry [1, 1]: NaN in every entry of its result and derivative" in text
    assert "or it was written in (np.nan in an array the function builds)" in text
    with pytest.raises(pz.NonFiniteGradientError, match=r"pz\.expm meets NaN in its input, entry \[1, 1\]"):
        pz.gradient(lambda a: np.sum(pz.expm(a * M)), A)
    with pytest.raises(pz.NonFiniteGradientError, match=r"pz\.expm meets -inf in its input, entry \[0, 0\]: a finite value there but not a finite derivative"):
        pz.gradient(lambda a: np.sum(pz.expm(a * np.array([[np.inf, 0.0], [0.0, 1.0]]))), A)
    # the same matrix, finite: no error (the gradient is checked elsewhere)
    assert np.all(np.isfinite(pz.gradient(lambda a: np.sum(pz.expm(a * np.ones((2, 2)))), A)[0]))


# --- pz.ZeroGradientWarning: a value that depends on an argument only through cut paths ---------
def _zero_gradient_warnings(call: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, pz.ZeroGradientWarning)]


def test_a_value_depending_on_the_arguments_only_through_argmax_of_a_comparison_is_warned_about() -> None:
    """User testing: the first spike time t[np.argmax(V > 0)] of an ODE solution had gradient
    [0, 0, 0] in the parameters, silently (JAX is silent too).  Every path from p to it passes
    through the comparison and np.argmax, which have no derivative."""
    t = np.linspace(0.0, 2.0, 201)
    rhs = lambda u, p, t: np.array([p[0] - p[1] * u[0]])  # noqa: E731  (u = (a / b)(1 - exp(-b t)) from 0)
    crossing = lambda p: pz.take(t, np.argmax(pz.odesolve(rhs, np.zeros(1), t, p)[:, 0] > 0.5))  # noqa: E731
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(crossing, np.array([1.0, 0.5])))
    np.testing.assert_array_equal(g, [0.0, 0.0])
    assert len(said) == 1
    assert said[0].startswith("pz.gradient: the function's value depends on p (argument 0) only through a comparison (>) and then np.argmax")
    assert "interpolate between the samples around the crossing" in said[0] and "softmax" in said[0]
    # once per trace: a second call (a fit's next step) is quiet
    assert _zero_gradient_warnings(lambda: pz.gradient(crossing, np.array([1.2, 0.5])))[1] == []

    # the advice holds: the interpolated crossing time has the derivative of the exact one,
    # t* = -log(1 - 0.5 b / a) / b, up to the interpolation's error
    def interpolated(p: Any) -> Any:
        V = pz.odesolve(rhs, np.zeros(1), t, p, reltol=1e-10, abstol=1e-12)[:, 0]
        k = np.argmax(V > 0.5)
        return pz.take(t, k - 1) + (0.5 - V[k - 1]) / (V[k] - V[k - 1]) * (t[1] - t[0])

    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(interpolated, np.array([1.0, 0.5])))
    a, b = 1.0, 0.5
    exact = [-0.5 / (a * a * (1 - 0.5 * b / a)), np.log(1 - 0.5 * b / a) / b**2 + 0.5 / (a * b * (1 - 0.5 * b / a))]
    assert said == []
    np.testing.assert_allclose(g, exact, rtol=1e-3)


def test_zero_gradient_warnings_for_steps_and_rounding_but_not_for_unused_or_partly_smooth_arguments() -> None:
    x = np.array([0.3, -1.2, 2.5])
    # a step function of the argument: its derivative is 0 wherever it is defined
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(np.where(x > 0.0, 1.0, 0.0)), x))
    np.testing.assert_array_equal(g, np.zeros(3))
    assert len(said) == 1 and "only through a comparison (>)" in said[0] and "smooth step" in said[0]
    # rounding, a position read at it, and astype(int)
    table = np.linspace(0.0, 1.0, 10)
    _, said = _zero_gradient_warnings(lambda: pz.grad(lambda s: pz.take(table, np.floor(s * 3.0).astype(int)))(1.7))
    assert len(said) == 1 and said[0].startswith("pz.grad(f): the function's value depends on s (argument 0) only through np.floor")
    _, said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(x.astype(int)) * 1.0, x))
    assert len(said) == 1 and "only through astype(int)" in said[0]
    # quiet: an unused argument, a dependence with one differentiable path among others, data
    # outside argnums, a loss's auxiliary values, and functions that are piecewise smooth
    quiet = [
        lambda: pz.gradient(lambda x, y: np.sum(x**2), x, np.ones(2)),
        lambda: pz.gradient(lambda x: np.sum(x**2) + np.sum(x > 0.0), x),
        lambda: pz.gradient(lambda x: x[np.argmax(x)], x),
        lambda: pz.gradient(lambda x: np.sum(np.where(x > 0.0, x, 0.0)) + np.sum(np.abs(x)) + np.max(x), x),
        lambda: pz.grad(lambda x, y: np.sum(x * (y > 0.0)), argnums=0)(x, x),
        lambda: pz.withgradient(lambda x: (np.sum(x**2), np.floor(x)), x),
        lambda: pz.value_and_grad(lambda x: (np.sum(x**2), np.sign(x)), has_aux=True)(x),
        lambda: pz.hessian(lambda x: np.sum(x**2 * np.sign(x)), x),
    ]
    for call in quiet:
        assert _zero_gradient_warnings(call)[1] == []


def test_zero_gradient_warnings_name_the_output_and_come_from_every_transformation() -> None:
    x = np.array([0.3, -1.2, 2.5])
    (J,), said = _zero_gradient_warnings(lambda: pz.jacobian(lambda x: (x**2, np.round(x)), x))
    assert len(said) == 1 and said[0].startswith("pz.jacobian: output[1] depends on x (argument 0) only through np.round")
    np.testing.assert_array_equal(J[1], np.zeros((3, 3)))
    _, said = _zero_gradient_warnings(lambda: pz.pullback(lambda x: np.sign(x) * 2.0, x))
    assert len(said) == 1 and said[0].startswith("pz.pullback: the function's value depends on x (argument 0) only through np.sign")
    H, said = _zero_gradient_warnings(lambda: pz.hessian(lambda x: np.sum(np.ceil(x) ** 2), x))
    np.testing.assert_array_equal(H, np.zeros((3, 3)))
    assert len(said) == 1 and said[0].startswith("pz.hessian: the function's value depends on x (argument 0) only through np.ceil")
    _, said = _zero_gradient_warnings(lambda: pz.hessian(lambda p: np.sum(np.ceil(p["a"])) + p["b"] ** 2, {"a": x, "b": 1.0}))
    assert len(said) == 1 and "depends on p (argument 0)['a'] only through np.ceil" in said[0]


def test_zero_gradient_advice_reads_the_times_with_pz_take_and_heaviside_is_a_step() -> None:
    """User testing: the rewrite the warning gave, t[k - 1] + ..., raised IndexError for a numpy t,
    and np.sum(np.heaviside(x, 0.5)) had gradient 0 without a warning (its NaN branch passed x on)."""
    t = np.linspace(0.0, 1.0, 11)
    _, said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: pz.take(t, np.argmax(x > 0.0)), np.array([-1.0, 2.0])))
    assert len(said) == 1 and "t0, t1 = pz.take(t, k - 1), pz.take(t, k)" in said[0]
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(np.heaviside(x, 0.5)), np.array([1.0, -1.0])))
    np.testing.assert_array_equal(g, [0.0, 0.0])
    assert len(said) == 1 and "only through" in said[0]
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(pz.make_program(lambda x: np.heaviside(x, 0.5), t)(np.array([np.nan, 0.0, 1.0]))[0], [np.nan, 0.5, 1.0])


def test_zero_gradient_warnings_name_the_function_the_user_called_not_its_parts() -> None:
    """np.trunc is pyzygote's np.where(x < 0, np.ceil(x), np.floor(x)): its warning named "a
    comparison (<), np.ceil and then np.floor", which the user did not write; a composite is
    named as called, with the advice for what it does."""
    x = np.array([1.3, -2.7, 0.4])
    for fn, name in [(np.trunc, "np.trunc"), (np.fix, "np.fix"), (np.around, "np.around"), (lambda v: np.modf(v)[1], "np.modf")]:
        (g,), said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(fn(x)), x))
        np.testing.assert_array_equal(g, np.zeros(3))
        assert len(said) == 1 and f"depends on x (argument 0) only through {name}, where" in said[0], said
        assert "interpolate between the neighbours" in said[0] and "smooth step" not in said[0]
    for fn, name in [(lambda v: np.heaviside(v, 0.5), "np.heaviside"), (lambda v: np.signbit(v) * 1.0, "np.signbit")]:
        _, said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(fn(x)), x))
        assert len(said) == 1 and f"only through {name}, where" in said[0], said
    assert "smooth step" in _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(np.heaviside(x, 0.5)), x))[1][0]
    # primitives keep their own words; what the user wrote beside a composite is named as written
    _, said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(np.floor(x) + np.trunc(x * 2.0)), x))
    assert len(said) == 1 and "only through np.floor and then np.trunc, where" in said[0], said
    # and a composite with a differentiable path (np.modf's fraction) is quiet
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(lambda x: np.sum(np.modf(x)[0]), x))
    assert said == [] and np.allclose(g, 1.0)


def test_zero_gradient_warnings_look_inside_ode_right_hand_sides_and_nlsolve_residuals() -> None:
    """A parameter that a right-hand side or a residual reads only through np.round had gradient 0,
    silently: the solve counted as differentiable in all of p.  Each leaf of p is looked at."""
    t = np.linspace(0.0, 2.0, 5)
    u0 = np.array([1.0])

    def decay(p: Any) -> Any:
        rhs = lambda u, q, t: -(q["a"] + np.round(q["b"][0])) * u  # noqa: E731
        return pz.odesolve(rhs, u0, t, p, reltol=1e-11, abstol=1e-12)[-1, 0]

    p = {"a": np.array([0.3]), "b": np.array([1.2, 5.0])}
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(decay, p))
    # u(2) = exp(-2 (a + round(b0))): d/da = -2 u(2); b, read through np.round, has none
    np.testing.assert_allclose(g["a"], [-2.0 * np.exp(-2.0 * 1.3)], rtol=1e-8)
    np.testing.assert_array_equal(g["b"], [0.0, 0.0])
    assert len(said) == 1, said
    assert said[0].startswith("pz.gradient: the function's value depends on p (argument 0)['b'] only through np.round in the right-hand side of pz.odesolve, where")
    assert "interpolate between the neighbours" in said[0]
    # and finite differences agree: the solution is a step function of b
    db = {"a": p["a"], "b": p["b"] + np.array([1e-3, 1e-3])}
    assert decay(db) == decay(p)

    def root(p: Any) -> Any:
        return pz.nlsolve(lambda u, p: u - np.round(p), np.array([1.0]), p)[0]

    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(root, np.array([2.2])))
    np.testing.assert_array_equal(g, [0.0])
    assert len(said) == 1 and "only through np.round in the residual of pz.nlsolve, where" in said[0], said
    # the root does not depend on where Newton starts
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(lambda s: pz.nlsolve(lambda u, p: u**2 - 2.0, s, None)[0], np.array([1.0])))
    np.testing.assert_array_equal(g, [0.0])
    assert len(said) == 1 and "only through the starting guess u0 of pz.nlsolve" in said[0], said

    # quiet: a parameter with a differentiable path beside the rounded one, a state or time that a
    # switch compares with p (the solution is continuous in p: StateSwitchWarning and
    # SwitchingTimeWarning speak of these), a starting guess beside p, and u0 of an ODE
    k = np.array([0.7])
    smooth_too = lambda u, p, t: -(np.round(p) + p) * u  # noqa: E731
    (g,), said = _zero_gradient_warnings(lambda: pz.gradient(lambda k: pz.odesolve(smooth_too, u0, t, k, reltol=1e-11, abstol=1e-12)[-1, 0], k))
    np.testing.assert_allclose(g, [-2.0 * np.exp(-2.0 * 1.7)], rtol=1e-8)
    assert said == []
    quiet = [
        lambda: pz.gradient(lambda k: pz.odesolve(lambda u, p, t: -np.where(u > p, 1.0, 2.0) * u, u0, t, k)[-1, 0], k),
        lambda: pz.gradient(lambda k: pz.odesolve(lambda u, p, t: np.where(t > p, 1.0, 0.0) + 0.0 * u, u0, t, k)[-1, 0], k),
        lambda: pz.gradient(lambda k: pz.odesolve(lambda u, p, t: -(1.0 + np.round(3.0 * u * p)) * u, u0, t, k)[-1, 0], k),
        lambda: pz.gradient(lambda k: pz.odesolve(lambda u, p, t: -np.round(p) * u, k, t, k)[-1, 0], k),
        lambda: pz.gradient(lambda k: pz.nlsolve(lambda u, p: u - np.round(p) - p, k, k)[0], k),
    ]
    for call in quiet:  # (their other warnings are recorded and dropped)
        assert _zero_gradient_warnings(call)[1] == []


def test_jvp_warns_of_a_cut_dependence_as_jacobian_does() -> None:
    """pz.jvp gave a tangent of exactly 0 from np.round(x) silently, where pz.jacobian (whose
    columns it computes) warned; an argument given a zero tangent is not being differentiated."""
    x = np.array([0.3, 1.7])
    (y, ty), said = _zero_gradient_warnings(lambda: pz.jvp(lambda x, y: x**2 + np.round(y), (x, x), (np.ones(2), np.ones(2))))
    np.testing.assert_array_equal(ty, 2.0 * x)
    assert len(said) == 1 and said[0].startswith("pz.jvp: the function's value depends on y (argument 1) only through np.round, where"), said
    assert _zero_gradient_warnings(lambda: pz.jvp(lambda x, y: x**2 + np.floor(y), (x, x), (np.ones(2), np.zeros(2))))[1] == []
    assert _zero_gradient_warnings(lambda: pz.jvp(lambda x: x**2 + np.ceil(x), (x,), (np.ones(2),)))[1] == []


def test_np_take_of_a_numpy_array_at_a_traced_position_points_to_pz_take() -> None:
    t = np.linspace(0.0, 1.0, 11)
    with pytest.raises(pz.TracerBoolError, match=r"np.take\(table, i\), which numpy makes an int\), use pz.take\(table, i\)"):
        pz.gradient(lambda x: np.take(t, np.argmax(x > 0.0)) * x[0], np.array([1.0, -1.0]))

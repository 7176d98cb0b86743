"""Transformations inside traced functions: pz.gradient of code that calls pz.gradient, and so on.

The inner transformation's derivative program is recorded into the enclosing
trace (``pyzygote.engines.inline``), so every combination is checked against
closed forms, against pz.hessian, and, for the Julia engine, against the NumPy
engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.testing import check_grads
from tests.test_julia_ode import julia as julia_with_ode_packages

X = np.array([1.0, 2.0, -0.5])


def cube_sum(y: Any) -> Any:
    return np.sum(y**3)


def slope_energy(x: Any) -> Any:
    """0.5 |grad cube_sum(x)|^2 = 4.5 sum x^4; its gradient is 18 x^3."""
    (g,) = pz.gradient(cube_sum, x)
    return 0.5 * np.sum(g**2)


def physics_informed(w: Any, x: Any) -> Any:
    """The inner gradient is in x, at the outer parameters w: sum_i (d/dx_i w0 sin(w1 x_i))^2."""
    (du,) = pz.gradient(lambda z: np.sum(w[0] * np.sin(w[1] * z)), x)
    return np.sum(du**2)


def physics_informed_closed_form(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    # L = w0^2 w1^2 sum cos^2(w1 x)
    c, s = np.cos(w[1] * x), np.sin(w[1] * x)
    return np.array(
        [
            2 * w[0] * w[1] ** 2 * np.sum(c**2),
            2 * w[0] ** 2 * w[1] * np.sum(c**2) - 2 * w[0] ** 2 * w[1] ** 2 * np.sum(c * s * x),
        ]
    )


def test_gradient_of_a_gradient_matches_the_closed_form():
    (g,) = pz.gradient(slope_energy, X)
    np.testing.assert_allclose(g, 18 * X**3, rtol=1e-14)
    np.testing.assert_allclose(pz.hessian(slope_energy, X), np.diag(54 * X**2), rtol=1e-14)


def test_inner_function_closing_over_outer_traced_values():
    w = np.array([0.7, 1.3])
    gw, gx = pz.gradient(physics_informed, w, X)
    np.testing.assert_allclose(gw, physics_informed_closed_form(w, X), rtol=1e-13)
    check_grads(physics_informed, (w, X), order=2)


def test_jax_style_grad_of_grad():
    assert pz.grad(pz.grad(lambda x: x**4))(2.0) == 48.0
    np.testing.assert_allclose(pz.grad(pz.grad(pz.grad(np.sin)))(0.3), -np.cos(0.3), rtol=1e-15)


def test_jvp_of_a_gradient_is_a_hessian_vector_product():
    f = lambda x: np.sum(np.sin(x) * x**2)  # noqa: E731
    v = np.array([0.3, -1.0, 2.0])
    _, hv = pz.jvp(lambda x: pz.gradient(f, x)[0], (X,), (v,))
    np.testing.assert_allclose(hv, pz.hessian(f, X) @ v, rtol=1e-13)


def test_third_derivatives_through_hessian_and_jacobian():
    (g,) = pz.gradient(lambda x: np.trace(pz.hessian(lambda y: np.sum(y**4), x)), X)
    np.testing.assert_allclose(g, 24 * X, rtol=1e-14)
    (g,) = pz.gradient(lambda x: np.sum(pz.jacobian(lambda y: y**2 * x[0], x)[0]), X)
    np.testing.assert_allclose(g, [4 * X[0] + 2 * (X[1] + X[2]), 2 * X[0], 2 * X[0]], rtol=1e-14)


def test_object_arrays_of_traced_values_as_arguments_of_inner_transformations():
    (g,) = pz.gradient(lambda x: np.sum(pz.gradient(cube_sum, np.array([x[0] ** 2, x[1]]))[0]), X[:2])
    np.testing.assert_allclose(g, [12 * X[0] ** 3, 6 * X[1]], rtol=1e-14)


def test_pullback_with_a_traced_cotangent():
    def f(x: Any) -> Any:
        _, back = pz.pullback(np.sin, x)
        return np.sum(back(x)[0])  # sum(cos(x) * x)

    (g,) = pz.gradient(f, X)
    np.testing.assert_allclose(g, np.cos(X) - X * np.sin(X), rtol=1e-14)


def test_gradient_of_a_gradient_norm_through_an_ode_solve():
    t = np.linspace(0.0, 1.0, 5)

    def loss(p: Any) -> Any:
        return np.sum(pz.odesolve(lambda u, q, s: -q[0] * u, [1.0], t, p, reltol=1e-10, abstol=1e-10) ** 2)

    def gradient_norm(p: Any) -> Any:
        return np.sum(pz.gradient(loss, p)[0] ** 2)

    p0 = np.array([0.7])
    (g,) = pz.gradient(gradient_norm, p0)
    np.testing.assert_allclose(g, 2 * pz.gradient(loss, p0)[0] * pz.hessian(loss, p0)[0], rtol=1e-7)


def pendulum_energy(q: Any, p: Any, k: Any) -> Any:
    return 0.5 * p**2 + k[0] * (1.0 - np.cos(q))


def hamiltonian(u: Any, k: Any, t: Any) -> Any:
    """Hamilton's equations: the right-hand side is a gradient of the energy."""
    dq, dp = pz.gradient(lambda q, p: pendulum_energy(q, p, k), u[0], u[1])
    return np.stack([dp, -dq])


def pendulum(u: Any, k: Any, t: Any) -> Any:
    return np.array([u[1], -k[0] * np.sin(u[0])])


T_PENDULUM = np.linspace(0.0, 5.0, 11)


def swing(rhs: Any, k: Any) -> Any:
    return np.sum(pz.odesolve(rhs, np.array([1.0, 0.0]), T_PENDULUM, k, reltol=1e-10, abstol=1e-10)[:, 0] ** 2)


def test_right_hand_side_written_as_a_gradient_of_the_energy():
    k = np.array([2.0])
    np.testing.assert_allclose(swing(hamiltonian, k), swing(pendulum, k), rtol=1e-14)
    np.testing.assert_allclose(pz.gradient(swing, hamiltonian, k)[1], pz.gradient(swing, pendulum, k)[1], rtol=1e-12)


def test_nested_results_are_not_cached_across_outer_traces():
    # The inner trace reads the outer w; a second outer call at another w must see the new value.
    for w in (np.array([0.7, 1.3]), np.array([-0.2, 0.4])):
        (gw, _) = pz.gradient(physics_informed, w, X)
        np.testing.assert_allclose(gw, physics_informed_closed_form(w, X), rtol=1e-13)


def test_assigning_inner_values_into_outer_arrays_is_refused():
    def outer(x: Any) -> Any:
        w = x * 1.0

        def inner(y: Any) -> Any:
            w[0] = y[0] * 3.0
            return np.sum(w * y)

        return np.sum(pz.gradient(inner, x)[0])

    with pytest.raises(pz.UnsupportedOperationError, match="enclosing trace"):
        pz.gradient(outer, X)


@pytest.mark.julia
def test_nested_transformations_agree_across_engines():
    w = np.array([0.7, 1.3])
    for f, args in ((slope_energy, (X,)), (physics_informed, (w, X))):
        want = pz.gradient(f, *args, engine="numpy")
        got = pz.gradient(f, *args, engine="julia")
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_allclose(pz.hessian(slope_energy, X, engine="julia"), np.diag(54 * X**2), rtol=1e-10)


@julia_with_ode_packages
def test_hamiltonian_right_hand_side_agrees_across_engines():
    k = np.array([2.0])
    (want,) = pz.gradient(lambda q: swing(hamiltonian, q), k, engine="numpy")
    (got,) = pz.gradient(lambda q: swing(hamiltonian, q), k, engine="julia")
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _decay_loss(p: Any, sensealg: str) -> Any:
    t = np.linspace(0.0, 1.0, 5)
    rhs = lambda u, q, s: -q[0] * u + q[1] * np.sin(s)  # noqa: E731
    return np.sum(pz.odesolve(rhs, [1.0], t, p, sensealg=sensealg, reltol=1e-10, abstol=1e-10) ** 2)


@julia_with_ode_packages
@pytest.mark.parametrize("sensealg", ["forward", "adjoint"])
def test_transformations_of_an_ode_loss_inside_a_differentiated_function_agree_across_engines(sensealg):
    """The Julia engine differentiates the ODE derivative primitives (odesolve_vjp,
    odesolve_tangent, odesolve_sens) with their own rules, forward over forward."""
    p0 = np.array([0.7, 0.3])
    v = np.array([1.0, -2.0])
    programs = (
        lambda p: np.sum(pz.gradient(lambda q: _decay_loss(q, sensealg), p)[0] ** 2),
        lambda p: pz.jvp(lambda q: _decay_loss(q, sensealg), (p,), (v,))[1] ** 2,
    )
    for f in programs:
        (want,) = pz.gradient(f, p0, engine="numpy")
        (got,) = pz.gradient(f, p0, engine="julia")
        np.testing.assert_allclose(got, want, rtol=1e-6)


@julia_with_ode_packages
def test_a_hessian_vector_product_by_adjoint_inside_a_differentiated_function_agrees_across_engines(monkeypatch):
    """With an adjoint sensealg and an explicit solver, pz.jvp of pz.grad is odesolve_hvp (forced
    here for two parameters): on Julia, PyZygote.odesolve_hvp and its rrule."""
    from pyzygote.primitives import ode as ode_prims

    monkeypatch.setattr(ode_prims, "_second_order_by_adjoint", lambda *_: True)
    t = np.linspace(0.0, 1.0, 5)
    rhs = lambda u, q, s: -q[0] * u + q[1] * np.sin(s) * u  # noqa: E731
    loss = lambda q: np.sum(pz.odesolve(rhs, [1.0], t, q, alg="Tsit5", sensealg="adjoint", reltol=1e-10, abstol=1e-10) ** 2)  # noqa: E731
    v = np.array([1.0, -2.0])
    f = lambda p: np.sum(pz.jvp(pz.grad(loss), (p,), (v,))[1] ** 2)  # noqa: E731
    p0 = np.array([0.7, 0.3])
    (want,) = pz.gradient(f, p0, engine="numpy")
    (got,) = pz.gradient(f, p0, engine="julia")
    np.testing.assert_allclose(got, want, rtol=1e-6)


SCALE = 1.0


def scaled_quartic(x: Any) -> Any:
    return SCALE * x**4


def test_transformed_transformations_see_rebound_globals():
    global SCALE
    second = pz.grad(pz.grad(scaled_quartic))
    try:
        assert second(1.0) == 12.0
        SCALE = 2.5  # read by scaled_quartic, inside the closures of two pz.grad wrappers
        assert second(1.0) == 30.0
    finally:
        SCALE = 1.0


def test_traced_values_that_outlive_their_trace_are_refused():
    kept: dict[str, Any] = {}

    def f(x: Any) -> Any:
        kept["x"] = x
        kept["back"] = pz.pullback(np.sin, x)[1]
        return np.sum(x**2)

    pz.gradient(f, X)
    with pytest.raises(pz.UnsupportedOperationError, match="trace has ended"):
        pz.gradient(np.sum, kept["x"])
    with pytest.raises(pz.UnsupportedOperationError, match="trace that has ended"):
        kept["back"](np.ones(3))
    with pytest.raises(pz.UnsupportedOperationError, match="after its trace ended"):
        pz.gradient(lambda z: np.sum(z * kept["x"]), X)


def test_side_effects_run_at_the_trace_and_what_they_kept_is_refused_after_it():
    """User testing: running statistics kept in a dict and a log of losses ran once and kept
    placeholders; numpy code reading them later got a placeholder back, float() of one
    complained about branching on traced values."""
    stats: dict[str, Any] = {"mean": np.zeros(3), "steps": 0}
    history: list[Any] = []

    def loss(w: Any) -> Any:
        stats["mean"] = 0.9 * stats["mean"] + 0.1 * w
        stats["steps"] += 1
        value = np.sum(w**2)
        history.append(value)
        return value

    for _ in range(3):
        pz.gradient(loss, X)
    assert stats["steps"] == 1 and len(history) == 1  # once, at the trace
    assert "trace that has ended" in repr(history[0])
    for use in (lambda: float(history[0]), lambda: bool(history[0] > 0), lambda: np.sum(stats["mean"] * 2.0), lambda: X + stats["mean"]):
        with pytest.raises(pz.UnsupportedOperationError, match="after its trace ended.*auxiliary outputs"):
            use()


def test_inner_transformations_cannot_see_into_julia_functions():
    doubled = pz.julia_function("x -> 2 .* x", result_shape=(3,))
    with pytest.raises(TypeError, match="nested in traced code cannot differentiate the Julia function"):
        pz.gradient(lambda x: np.sum(pz.gradient(lambda y: np.sum(doubled(y)), x)[0]), X, engine="numpy")


def test_linearized_programs_do_the_primal_work_once() -> None:
    from pyzygote.transforms.jvp import jvp_program
    from pyzygote.transforms.linearize import linearize_programs

    def f(x: Any, y: Any) -> Any:
        h = np.tanh(x[:, None] * y)
        return np.sum(np.exp(h), axis=0) * x[0]

    x, y = np.array([0.3, -0.7, 1.1]), np.array([0.5, 2.0])
    prog = pz.make_program(f, x, y)
    primal, linear = linearize_programs(prog, (True, False))
    assert {e.prim.name for e in linear.eqns}.isdisjoint({"tanh", "exp"})  # their values are residuals
    ys, *res = primal(x, y)
    jp = jvp_program(prog)
    dx = np.array([1.0, -2.0, 0.5])
    expect_y, expect_dy = jp(x, y, dx, np.zeros(2))
    np.testing.assert_allclose(ys, expect_y, rtol=1e-15)
    np.testing.assert_allclose(linear(*res, dx)[0], expect_dy, rtol=1e-14)
    np.testing.assert_allclose(linear(*res, 2 * dx)[0], 2 * expect_dy, rtol=1e-14)
    assert len(linearize_programs(prog, None, (0,))[1].outputs) == 1


def test_a_batch_of_tangents_matches_them_one_at_a_time() -> None:
    from pyzygote.engines.numpy_engine import NumpyEngine
    from pyzygote.transforms.batch import eval_batched

    def f(x: Any, y: Any) -> Any:
        z = x.copy()
        z[1:] += np.cumsum(x[:-1] * y[0])
        return np.tanh(np.outer(z, y)) @ y

    x, y = np.array([0.3, -0.7, 1.1]), np.array([0.5, 2.0])
    _, tangent = NumpyEngine().linearize(pz.make_program(f, x, y), [x, y], (True, False))
    T = np.random.default_rng(0).standard_normal((5, 3))
    expect = np.stack([tangent(t)[0] for t in T])
    flags = [False] * len(tangent.res) + [True]
    np.testing.assert_allclose(eval_batched(tangent.linear, [*tangent.res, T], flags, 5)[0], expect, rtol=1e-14)

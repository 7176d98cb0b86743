"""pz.nlsolve: Newton's method on a traced f(u, p), differentiated by the implicit function theorem.

Values and derivatives are checked against closed forms, finite differences and, for the
steady state of an ODE model, against pz.odesolve run to a long time.  Julia-marked tests
compare the engines (they need a real Julia, see tests/conftest.py).
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

import pyzygote as pz
from tests.test_julia_ode import julia as julia_with_ode_packages


def _central(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of f (any output shape) in each entry of x: shape (*out, len(x))."""
    cols = [(np.asarray(f(x + h * e)) - np.asarray(f(x - h * e))) / (2 * h) for e in np.eye(len(x))]
    return np.stack(cols, axis=-1)


# --- closed forms --------------------------------------------------------------------------------
def square(u, p):
    return u**2 - p


def sqrt_root(p):
    return pz.nlsolve(square, np.array([1.0]), p)[0]


def test_square_root_value_derivatives_and_second_derivative() -> None:
    p = np.array([2.0])
    assert sqrt_root(p) == pytest.approx(np.sqrt(2.0), rel=1e-15)
    np.testing.assert_allclose(pz.gradient(sqrt_root, p)[0], [0.5 / np.sqrt(2.0)], rtol=1e-13)
    np.testing.assert_allclose(pz.hessian(sqrt_root, p), [[-0.25 * 2.0**-1.5]], rtol=1e-12)
    value, tangent = pz.jvp(sqrt_root, (p,), (np.array([3.0]),))
    assert tangent == pytest.approx(3.0 * 0.5 / np.sqrt(2.0), rel=1e-13)
    # third order: the derivative of the Hessian, 3/8 p^(-5/2)
    third = pz.gradient(lambda q: pz.hessian(sqrt_root, q)[0, 0], p)[0]
    np.testing.assert_allclose(third, [0.375 * 2.0**-2.5], rtol=1e-10)


def test_a_vector_of_square_roots_has_a_diagonal_jacobian() -> None:
    p = np.array([4.0, 9.0, 0.25])
    u = pz.nlsolve(square, np.ones(3), p)
    np.testing.assert_allclose(u, [2.0, 3.0, 0.5], rtol=1e-14)
    (J,) = pz.jacobian(lambda q: pz.nlsolve(square, np.ones(3), q), p)
    np.testing.assert_allclose(J, np.diag(0.5 / np.sqrt(p)), rtol=1e-13, atol=1e-15)


A0 = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, -1.0], [0.5, 0.0, 2.0]])
B = np.array([1.0, -2.0, 0.5])


def linear(u, p):
    return (A0 + np.diag(p)) @ u - B


def test_a_linear_system_is_np_linalg_solve_with_its_derivatives() -> None:
    p = np.array([0.3, -0.2, 0.7])
    closed = lambda q: np.linalg.solve(A0 + np.diag(q), B)  # noqa: E731
    np.testing.assert_allclose(pz.nlsolve(linear, np.zeros(3), p), closed(p), rtol=1e-13)
    loss = lambda q: np.sum(np.sin(pz.nlsolve(linear, np.zeros(3), q)))  # noqa: E731
    want = lambda q: np.sum(np.sin(closed(q)))  # noqa: E731
    np.testing.assert_allclose(pz.gradient(loss, p)[0], pz.gradient(want, p)[0], rtol=1e-12)
    np.testing.assert_allclose(pz.hessian(loss, p), pz.hessian(want, p), rtol=1e-10, atol=1e-13)


def test_chemical_equilibrium_a_to_2b_has_its_closed_form() -> None:
    """A <-> 2B with [B]^2 = K [A] and [A] + [B] / 2 = T (mass balance): the quadratic's root."""

    def equilibrium(u, p):
        K, T = p[0], p[1]
        return np.stack([u[1] ** 2 - K * u[0], u[0] + 0.5 * u[1] - T])

    def closed(p):
        K, T = p[0], p[1]
        b = 0.5 * (-K / 2 + np.sqrt(K**2 / 4 + 4 * K * T))
        return np.stack([T - b / 2, b])

    p = np.array([0.3, 2.0])
    solve = lambda q: pz.nlsolve(equilibrium, np.array([1.0, 1.0]), q)  # noqa: E731
    np.testing.assert_allclose(solve(p), closed(p), rtol=1e-11)  # max|f| <= abstol = 1e-12
    np.testing.assert_allclose(pz.jacobian(solve, p)[0], pz.jacobian(closed, p)[0], rtol=1e-11)
    second = lambda q: solve(q)[1]  # noqa: E731
    np.testing.assert_allclose(pz.hessian(second, p), pz.hessian(lambda q: closed(q)[1], p), rtol=1e-10)


# --- Kepler's equation ---------------------------------------------------------------------------
def kepler(u, p):
    e, M = p[0], p[1]
    return u - e * np.sin(u) - M


def eccentric_anomaly(p):
    return pz.nlsolve(kepler, np.array([p[1]]), p)[0]


def test_kepler_against_its_closed_form_derivatives_and_finite_differences() -> None:
    p = np.array([0.6, 2.1])
    E = eccentric_anomaly(p)
    assert abs(E - 0.6 * np.sin(E) - 2.1) <= 1e-12
    denom = 1.0 - 0.6 * np.cos(E)
    g = pz.gradient(eccentric_anomaly, p)[0]
    np.testing.assert_allclose(g, [np.sin(E) / denom, 1.0 / denom], rtol=1e-13)
    np.testing.assert_allclose(g, _central(eccentric_anomaly, p), rtol=1e-8)
    H = pz.hessian(eccentric_anomaly, p)
    np.testing.assert_allclose(H, H.T, rtol=1e-14)
    np.testing.assert_allclose(H, _central(lambda q: pz.gradient(eccentric_anomaly, q)[0], p), rtol=1e-7, atol=1e-9)
    # forward over reverse: a jvp of the gradient is H v
    v = np.array([0.3, -1.2])
    _, Hv = pz.jvp(lambda q: pz.gradient(eccentric_anomaly, q)[0], (p,), (v,))
    np.testing.assert_allclose(Hv, H @ v, rtol=1e-12)


def test_a_fit_through_kepler_with_a_loss_of_many_anomalies() -> None:
    """Radial-velocity style: one eccentricity, many mean anomalies solved at once."""
    M = np.linspace(0.1, 6.0, 12)
    data = np.cos(np.linspace(0.0, 3.0, 12))

    def loss(e):
        E = pz.nlsolve(lambda u, p: u - p[0] * np.sin(u) - M, M.copy(), e)
        return np.sum((np.cos(E) - data) ** 2)

    e = np.array([0.35])
    np.testing.assert_allclose(pz.gradient(loss, e)[0], _central(loss, e), rtol=1e-7)
    np.testing.assert_allclose(pz.hessian(loss, e), _central(lambda q: pz.gradient(loss, q)[0], e), rtol=1e-6)


# --- the steady state of an ODE model ------------------------------------------------------------
def production(u, p, t):
    return np.stack([p[0] - p[1] * u[0] - p[2] * u[0] * u[1], p[2] * u[0] * u[1] - p[3] * u[1] + 0.1])


P_SS = np.array([1.0, 0.5, 1.0, 0.8])


def steady(p):
    return pz.nlsolve(lambda u, q: production(u, q, 0.0), np.array([1.0, 1.0]), p)


def after_long_time(p):
    return pz.odesolve(production, np.array([1.0, 1.0]), np.array([0.0, 200.0]), p, alg="Tsit5", reltol=1e-12, abstol=1e-12)[-1]


def test_steady_state_is_where_odesolve_ends_up_with_the_same_sensitivities() -> None:
    np.testing.assert_allclose(steady(P_SS), after_long_time(P_SS), rtol=1e-9)
    np.testing.assert_allclose(pz.jacobian(steady, P_SS)[0], pz.jacobian(after_long_time, P_SS)[0], rtol=1e-7, atol=1e-9)
    loss = lambda p: np.sum(steady(p) ** 2)  # noqa: E731
    H = pz.hessian(loss, P_SS)
    np.testing.assert_allclose(H, _central(lambda q: pz.gradient(loss, q)[0], P_SS), rtol=1e-6, atol=1e-8)


# --- what the derivative does not depend on ------------------------------------------------------
def test_the_derivative_in_u0_is_zero_even_when_u0_is_computed_from_p() -> None:
    p = np.array([3.0])
    with pytest.warns(pz.ZeroGradientWarning, match=r"depends on u0 \(argument 0\) only through the starting guess u0 of pz.nlsolve"):
        g_u0, g_p = pz.gradient(lambda u0, q: pz.nlsolve(square, u0, q)[0], np.array([1.0]), p)
    np.testing.assert_array_equal(g_u0, [0.0])
    assert g_p == pytest.approx(0.5 / np.sqrt(3.0), rel=1e-13)
    # a start computed from p does not add a path through u0
    from_p = lambda q: pz.nlsolve(square, 1.0 + 0.5 * q, q)[0]  # noqa: E731
    assert pz.gradient(from_p, p)[0] == pytest.approx(0.5 / np.sqrt(3.0), rel=1e-13)
    assert pz.hessian(from_p, p)[0, 0] == pytest.approx(-0.25 * 3.0**-1.5, rel=1e-11)
    # and the Jacobian in u0 is zero
    with pytest.warns(pz.ZeroGradientWarning, match="the starting guess u0 of pz.nlsolve"):
        (J,) = pz.jacobian(lambda u0: pz.nlsolve(square, u0, np.array([4.0, 9.0])), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(J, np.zeros((2, 2)))


def test_traced_values_read_from_the_closure_are_differentiated_like_p() -> None:
    p = np.array([0.6, 2.1])

    def through_closure(q):
        return pz.nlsolve(lambda u, _: u - q[0] * np.sin(u) - q[1], np.array([2.0]))[0]

    np.testing.assert_allclose(through_closure(p), eccentric_anomaly(p), rtol=1e-14)
    np.testing.assert_allclose(pz.gradient(through_closure, p)[0], pz.gradient(eccentric_anomaly, p)[0], rtol=1e-13)
    np.testing.assert_allclose(pz.hessian(through_closure, p), pz.hessian(eccentric_anomaly, p), rtol=1e-11)

    def both(e, M):  # e through p, M from the closure
        return pz.nlsolve(lambda u, q: u - q[0] * np.sin(u) - M, np.array([2.0]), e)[0]

    g_e, g_M = pz.gradient(both, p[:1], p[1])
    np.testing.assert_allclose([g_e[0], g_M], pz.gradient(eccentric_anomaly, p)[0], rtol=1e-13)


def test_p_as_a_dict_of_arrays() -> None:
    def f(u, p):
        return u**2 - p["scale"] * p["targets"]

    p = {"scale": 2.0, "targets": np.array([2.0, 8.0])}
    np.testing.assert_allclose(pz.nlsolve(f, np.ones(2), p), [2.0, 4.0], rtol=1e-14)
    (g,) = pz.gradient(lambda q: np.sum(pz.nlsolve(f, np.ones(2), q)), p)
    # u_i = sqrt(s t_i): du_i/ds = t_i / (2 u_i), du_i/dt_i = s / (2 u_i)
    assert g["scale"] == pytest.approx(2.0 / 4.0 + 8.0 / 8.0, rel=1e-13)
    np.testing.assert_allclose(g["targets"], [2.0 / 4.0, 2.0 / 8.0], rtol=1e-13)


# --- convergence -------------------------------------------------------------------------------
def test_the_line_search_rescues_newton_where_the_full_step_diverges() -> None:
    # Newton's full steps on arctan(u) from 3 overshoot farther and farther (|u| > 1.39 diverges).
    u = pz.nlsolve(lambda u, p: np.arctan(u), np.array([3.0]))
    assert abs(u[0]) <= 1e-12


def test_residuals_too_large_for_abstol_converge_by_the_step_size_test() -> None:
    # 1e8 (u^2 - 2): rounding keeps |f| near 1e8 * 4e-16 > abstol at the best float64 root.
    u = pz.nlsolve(lambda u, p: 1e8 * (u**2 - p), np.array([1.0]), np.array([2.0]), abstol=1e-14)
    assert u[0] == pytest.approx(np.sqrt(2.0), rel=4e-16)


def test_an_entry_converging_to_zero_beside_large_residuals_converges() -> None:
    """Root (sqrt(p), 0) with residuals of 1e10: rounding keeps |f| near 1e-6, and u[1] converges
    to a tiny number whose Newton steps are as small as itself, so the entrywise step test never
    passed and the line search failed; a step below rounding of the largest |u| now ends it."""

    def f(u, p):
        return np.stack([1e10 * (u[0] ** 2 - p[0]) + u[1], u[1] - 1e-3 * (u[0] ** 2 - p[0])])

    u = pz.nlsolve(f, np.array([1.0, 1.0]), np.array([2.0]))
    assert u[0] == pytest.approx(np.sqrt(2.0), rel=4e-16)
    assert abs(u[1]) < 1e-25
    (J,) = pz.jacobian(lambda q: pz.nlsolve(f, np.array([1.0, 1.0]), q), np.array([2.0]))
    np.testing.assert_allclose(J, [[0.5 / np.sqrt(2.0)], [0.0]], rtol=1e-13, atol=1e-15)


def test_no_decrease_along_a_step_that_is_not_negligible_is_a_solver_error() -> None:
    # u^2 - 1e30 from 1: the Newton step of 5e29 halved 30 times still overshoots
    with pytest.raises(pz.SolverError, match=r"no decrease of \|f\| along the Newton step, halved 30 times .*too far from the root"):
        pz.nlsolve(square, np.array([1.0]), np.array([1e30]))


def test_convergence_needs_both_a_small_residual_and_a_small_newton_step() -> None:
    # Newton from 10 on u^2 - 2: a loose abstol alone no longer stops it (the Newton step there is
    # not small); loose abstol and reltol stop it before the root is exact, at the first point where
    # max|f| <= abstol and the Newton step computed there is at most reltol * max|u|.
    assert pz.nlsolve(square, np.array([10.0]), np.array([2.0]), abstol=1e-2)[0] == pytest.approx(np.sqrt(2.0), rel=4e-16)
    loose = pz.nlsolve(square, np.array([10.0]), np.array([2.0]), abstol=1e-2, reltol=1e-2)
    assert 1e-12 < abs(loose[0] ** 2 - 2.0) <= 1e-2
    assert abs((loose[0] ** 2 - 2.0) / (2.0 * loose[0])) <= 1e-2 * loose[0]
    tight = pz.nlsolve(square, np.array([10.0]), np.array([2.0]))
    assert abs(tight[0] ** 2 - 2.0) <= 1e-12


def _acid(u, p):  # type: ignore[no-untyped-def]
    """A weak acid's equilibrium in mol/L: u = [H+, OH-, A-, HA], p = [Ka, Kw, Ct]."""
    Ka, Kw, Ct = p[0], p[1], p[2]
    H, OH, A, HA = u[0], u[1], u[2], u[3]
    return np.stack([H * OH - Kw, H * A - Ka * HA, A + HA - Ct, H - OH - A])


_ACID_U0 = np.array([1e-6, 1e-8, 1e-6, 1e-8])
_ACID_P = np.array([1.8e-5, 1e-14, 1e-6])  # 1 uM of an acid with Ka = 1.8e-5


def test_a_residual_tiny_from_the_start_is_solved_to_its_root() -> None:
    """A weak acid at 1 uM in mol/L (u = [H+, OH-, A-, HA]): every residual is below 1e-12 after
    one Newton step, which the residual test alone accepted, returning H+ several percent off and its
    gradient more.  The exact [H+] is the positive root of H^3 + Ka H^2 - (Kw + Ka Ct) H - Ka Kw = 0."""

    acid, u0, p = _acid, _ACID_U0, _ACID_P

    def exact(p):
        Ka, Kw, Ct = p
        roots = np.roots([1.0, Ka, -(Kw + Ka * Ct), -Ka * Kw])
        return float(roots[np.isreal(roots) & (roots.real > 0)].real[0])

    H = pz.nlsolve(acid, u0, p)[0]
    assert H == pytest.approx(exact(p), rel=1e-10)
    (g,) = pz.gradient(lambda q: pz.nlsolve(acid, u0, q)[0], p)
    h = 1e-6 * p
    fd = [(exact(p + h[i] * np.eye(3)[i]) - exact(p - h[i] * np.eye(3)[i])) / (2 * h[i]) for i in range(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-7)


def test_a_residual_that_decays_away_from_the_root_is_not_accepted_far_out() -> None:
    # u exp(-u) from 5: Newton walks off to infinity, where the residual is below abstol after 27
    # units; the Newton step there is about 1, so nothing converges.
    with pytest.raises(pz.SolverError, match=r"no convergence to max\|f\| <= abstol = 1e-12 with a Newton step max\|du\| <= reltol \* max\|u\|"):
        pz.nlsolve(lambda u, p: u * np.exp(-u) - p, np.array([5.0]), np.zeros(1))


def test_a_simple_root_at_zero_still_converges() -> None:
    # The relative step test cannot pass at u = 0; Newton lands there (or on rounding noise within
    # abstol) and stops.
    u = pz.nlsolve(lambda u, p: u * np.exp(-u) - p, np.array([0.5]), np.zeros(1))
    assert abs(u[0]) <= 1e-15
    (g,) = pz.gradient(lambda q: pz.nlsolve(lambda u, p: u * np.exp(-u) - p, np.array([0.5]), q)[0], np.zeros(1))
    assert g[0] == pytest.approx(1.0, rel=1e-12)  # d/dp of the inverse of u exp(-u) at 0
    # a root at 0 where rounding leaves f near 1e-18: (u + 0.1)^2 - 0.01
    w = pz.nlsolve(lambda u, p: (u + 0.1) ** 2 - p, np.array([0.3]), np.array([0.01]))
    assert abs(w[0]) <= 1e-15
    np.testing.assert_allclose(pz.nlsolve(lambda u, p: np.sin(u) - p, np.array([0.5, -0.4]), np.zeros(2)), [0.0, 0.0], atol=1e-300)


def test_a_double_root_is_refused_as_multiple() -> None:
    """u0^2 - p0 at p0 = 0: Newton halves u0 at each step, and the residual test alone accepted
    u0 near 1e-6 with the derivative 1 / (2 u0), large and finite where the true one (of sqrt(p0))
    is infinite; the scaled Jacobian was not singular there."""

    def f(u, p):
        return np.stack([u[0] ** 2 - p[0], u[1] - 1.0])

    with pytest.raises(pz.SolverError, match=r"Newton converged linearly, each full step 0.5 times the one before.*\(numerically\) multiple.*no derivative"):
        pz.nlsolve(f, np.array([1.0, 2.0]), np.zeros(2))
    with pytest.raises(pz.SolverError, match="multiple"):
        pz.jacobian(lambda q: pz.nlsolve(f, np.array([1.0, 2.0]), q), np.zeros(2))
    # a triple root: steps shrink by 2/3
    with pytest.raises(pz.SolverError, match=r"each full step 0.667 times"):
        pz.nlsolve(lambda u, p: np.stack([(u[0] - 1.0) ** 3 - p[0], u[1] - 2.0]), np.array([2.0, 0.0]), np.zeros(1))
    # alone at 0, u0 never converges relative to itself: maxiters, with the linear steps named
    with pytest.raises(pz.SolverError, match=r"within maxiters = 100 iterations; the last full Newton steps shrank linearly, by 0.5 each, as near a multiple root"):
        pz.nlsolve(square, np.array([1.0]), np.zeros(1))


def test_tiny_simple_roots_reached_by_many_halvings_within_abstol_are_solved() -> None:
    """Solubility products (s**2 = Ksp, 27 s**4 = Ksp for Fe(OH)3) and tiny equilibrium
    constants: Newton halves u (or shrinks it by 3/4) for dozens of steps with |f| <= abstol
    before the quadratic phase near the simple root.  An early refusal after 12 such steps
    (found in review) refused all of these; they are simple roots with finite derivatives."""
    cases = [
        (square, np.array([1.0]), np.array([1e-36]), 1e-18, 0.5e18),
        (square, np.array([1e-3]), np.array([1e-20]), 1e-10, 0.5e10),
        (lambda u, p: 27.0 * u**4 - p, np.array([1e-3]), np.array([2.7e-39]), 1e-10, 1.0 / (108.0 * 1e-30)),
        (lambda u, p: u**3 - p, np.array([1.0]), np.array([1e-30]), 1e-10, 1.0 / 3e-20),
    ]
    for f, u0, p, root, derivative in cases:
        assert pz.nlsolve(f, u0, p)[0] == pytest.approx(root, rel=1e-14)
        (g,) = pz.gradient(lambda q, f=f, u0=u0: pz.nlsolve(f, u0, q)[0], p)
        assert g[0] == pytest.approx(derivative, rel=1e-10)
    # u**2 + K u - K c0 (a weak acid, K = 1e-20, c0 = 1e-3): u = 3.16e-12
    k, c0 = 1e-20, 1e-3
    u = pz.nlsolve(lambda u, p: u**2 + p[0] * u - p[0] * p[1], np.array([1.0]), np.array([k, c0]))[0]
    assert u == pytest.approx((-k + np.sqrt(k * k + 4 * k * c0)) / 2, rel=1e-14)


def test_simple_roots_after_linear_looking_or_damped_steps_are_not_called_multiple() -> None:
    # u^2 - 2 from 1000: ten full steps each half the one before (far from the root, u^2 - 2 looks
    # like u^2), then quadratic convergence.
    assert pz.nlsolve(square, np.array([1000.0]), np.array([2.0]))[0] == pytest.approx(np.sqrt(2.0), rel=4e-16)
    # arctan(u) - 1 from 20: damped steps, each full step after them shorter by the damping factor
    u = pz.nlsolve(lambda u, p: np.arctan(u) - p, np.array([20.0]), np.array([1.0]))
    assert u[0] == pytest.approx(np.tan(1.0), rel=1e-15)
    # two simple roots 2e-6 apart (u^2 = 1e-12): linear steps down to 1e-6, then quadratic
    def f(u, p):
        return np.stack([u[0] ** 2 - p[0], u[1] - 1.0])

    (J,) = pz.jacobian(lambda q: pz.nlsolve(f, np.array([1.0, 2.0]), q), np.array([1e-12, 0.0]))
    assert J[0, 0] == pytest.approx(0.5 / 1e-6, rel=1e-6)
    # a simple root with the same first two steps as a double root: u^2 - p with p = 1e-4 (the
    # first steps halve u, the later ones converge quadratically)
    assert pz.nlsolve(square, np.array([1.0]), np.array([1e-4]))[0] == pytest.approx(1e-2, rel=1e-15)


# --- failures ----------------------------------------------------------------------------------
def test_no_convergence_within_maxiters_is_a_solver_error_naming_iteration_residual_and_point() -> None:
    with pytest.raises(pz.SolverError, match=r"within maxiters = 3 iterations \(Newton iteration 3, max\|f\| = [0-9.e+]+, at u = \[") as info:
        pz.nlsolve(square, np.array([1000.0]), np.array([2.0]), maxiters=3)
    assert "started from u0 = [1000] with p = [2]" in str(info.value)
    # inside a gradient too
    with pytest.raises(pz.SolverError, match="maxiters = 3"):
        pz.gradient(lambda q: pz.nlsolve(square, np.array([1000.0]), q, maxiters=3)[0], np.array([2.0]))


def test_a_singular_jacobian_is_a_solver_error() -> None:
    def dependent(u, p):  # the two equations see only u0 + u1
        return np.stack([u[0] + u[1] - p[0], 2.0 * (u[0] + u[1]) - p[1]])

    with pytest.raises(pz.SolverError, match=r"singular .*Newton iteration 1, max\|f\| = 3"):
        pz.nlsolve(dependent, np.zeros(2), np.array([1.0, 3.0]))
    # x^2 + 1 has no real root: Newton from 1 lands on the minimum at 0, where f' = 0
    with pytest.raises(pz.SolverError, match=r"singular .*Newton iteration 2, max\|f\| = 1, at u = \[0\]"):
        pz.nlsolve(lambda u, p: u**2 + 1.0, np.array([1.0]))


def _kinase(u, k):
    """Mass action: R <-> Ra (k0, k1), X -> Xp catalysed by Ra (k2), Xp -> X (k3); R + Ra and
    X + Xp are conserved, so the four steady-state equations are two pairs of dependent ones."""
    R, Ra, X, Xp = u[0], u[1], u[2], u[3]
    v = np.stack([k[0] * R, k[1] * Ra, k[2] * Ra * X, k[3] * Xp])
    return np.stack([-v[0] + v[1], v[0] - v[1], -v[2] + v[3], v[2] - v[3]])


def test_dependent_steady_state_equations_of_a_reaction_network_are_named_with_the_conservation_law() -> None:
    """User testing: a signalling model's steady state with conserved totals (R + Ra constant)
    failed as "singular ... the root is not isolated there", with no word of why or what to
    write; replacing one equation per conserved quantity by its total is the usual fix."""
    k = np.array([1.0, 2.0, 3.0, 0.5])
    u0 = np.array([1.0, 0.0, 1.0, 0.0])
    with pytest.raises(pz.SolverError) as info:
        pz.nlsolve(_kinase, u0, k)
    message = str(info.value)
    assert (
        "Its rows are linearly dependent (2 dependent combinations of f's equations): "
        "f[0] + f[1] is constant to first order in u (a conserved total, u[0] + u[1], if it is 0 for every u); "
        "f[2] + f[3] is constant to first order in u (a conserved total, u[2] + u[3], if it is 0 for every u). "
        "As in the steady state of a reaction network with conserved totals, f(u) = 0 does not fix these: replace one "
        "equation per conserved quantity by its conservation law, e.g. f[0] by u[0] + u[1] - total"
    ) in message, message

    # what it says to write: the root is then isolated, and is the closed form's, with its derivatives
    def conserved(u, q):
        f = _kinase(u, q[:4])
        return np.stack([u[0] + u[1] - q[4], f[1], u[2] + u[3] - q[5], f[3]])

    def closed(q):
        Ra = q[4] * q[0] / (q[0] + q[1])
        return q[5] * q[2] * Ra / (q[2] * Ra + q[3])

    q = np.array([1.0, 2.0, 3.0, 0.5, 1.0, 1.0])
    u = pz.nlsolve(conserved, u0, q)
    np.testing.assert_allclose(u[3], closed(q), rtol=1e-12)
    (g,) = pz.gradient(lambda q: pz.nlsolve(conserved, u0, q)[3], q)
    fd = np.array([(closed(q + h) - closed(q - h)) / 2e-6 for h in 1e-6 * np.eye(6)])
    np.testing.assert_allclose(g, fd, rtol=1e-7)


def test_dependent_equations_of_mixed_sign_and_zero_rows_are_named() -> None:
    from pyzygote.primitives.nonlinear import dependent_equations

    with pytest.raises(pz.SolverError, match=r"dependent combination of f's equations\): f\[0\] - 0\.5 \* f\[1\] is constant to first order in u \(Newton"):
        pz.nlsolve(lambda u, p: np.stack([u[0] - u[1] ** 2, 2.0 * (u[0] - u[1] ** 2) + p[0], u[2] - 1.0]), np.array([1.0, 2.0, 3.0]), np.array([1.0]))
    with pytest.raises(pz.SolverError, match=r"f\[1\] does not depend on u here \(its row of df/du is 0\)"):
        pz.nlsolve(lambda u, p: np.stack([u[0] - 1.0, 0.0 * u[1] + p[0]]), np.array([1.0, 0.0]), np.array([1.0]))
    # entries named by u's shape; a regular matrix has none
    J = np.array([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert "f[0, 0] + f[0, 1] is constant to first order in u (a conserved total, u[0, 0] + u[0, 1]" in dependent_equations(J, (2, 2))
    assert dependent_equations(np.eye(3)) == ""


def test_the_root_is_float64_and_gradients_take_the_arguments_type() -> None:
    """As the README says (pins documented behaviour): Newton runs in float64."""
    p32 = np.array([4.0, 9.0], np.float32)
    u = pz.nlsolve(square, np.ones(2, np.float32), p32)
    assert u.dtype == np.float64
    np.testing.assert_array_equal(u, [2.0, 3.0])
    (g,) = pz.gradient(lambda q: np.sum(pz.nlsolve(square, np.ones(2, np.float32), q)), p32)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [0.25, 1.0 / 6.0], rtol=1e-7)


def units(u, p):
    """Two equations in very different units: a residual in 1e8 of one and 1e-8 of the other.
    df/du = diag(1e8, 2e-8 u[1]), condition number 3e16, yet nothing about it is singular."""
    return np.stack([1e8 * (u[0] - p[0]), 1e-8 * (u[1] ** 2 - p[1])])


def test_a_badly_scaled_but_regular_jacobian_is_not_called_singular() -> None:
    p = np.array([3.0, 4.0])
    np.testing.assert_allclose(pz.nlsolve(units, np.ones(2), p, abstol=1e-30), [3.0, 2.0], rtol=1e-15)
    (J,) = pz.jacobian(lambda q: pz.nlsolve(units, np.ones(2), q, abstol=1e-30), p)
    np.testing.assert_allclose(J, [[1.0, 0.0], [0.0, 0.25]], rtol=1e-13, atol=1e-16)
    # scaling rows and columns does not hide a singular Jacobian
    with pytest.raises(pz.SolverError, match="singular"):
        pz.nlsolve(lambda u, q: np.stack([1e8 * (u[0] + u[1] - q[0]), 1e-8 * (u[0] + u[1] - q[1])]), np.ones(2), p)


def _with_singular_values(n: int, smallest: float) -> np.ndarray:
    """A random n x n matrix with singular values from 1 down to ``smallest``, log-spaced."""
    rng = np.random.default_rng(3)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return U @ np.diag(np.logspace(0, np.log10(smallest), n)) @ V.T


# a discretized Bratu problem, u'' + lam(x) exp(u) = 0 on 60 points: Jacobian condition number ~ 3e3
BRATU_N = 60
BRATU_H = 1.0 / (BRATU_N + 1)
BRATU_LAM = 2.0 + np.sin(np.pi * np.linspace(BRATU_H, 1.0 - BRATU_H, BRATU_N))


def bratu(u, lam):
    padded = np.concatenate([np.zeros(1), u, np.zeros(1)])
    return padded[:-2] - 2.0 * u + padded[2:] + BRATU_H**2 * lam * np.exp(u)


def _bratu_loss(q):
    return np.sum(pz.nlsolve(bratu, np.zeros(BRATU_N), q) ** 2)


def test_the_singular_values_are_computed_only_where_the_lu_estimate_nears_the_threshold(monkeypatch) -> None:
    """An SVD per Newton iteration took 7 of the 9 ms of each at n = 300: the LU that solves for
    the step estimates the scaled condition number, and the singular values decide only near
    SINGULAR_CONDITION, so a solve refuses exactly what it did."""
    from pyzygote.primitives.nonlinear import scaled_condition

    svds = []
    real_svd = np.linalg.svd
    monkeypatch.setattr(np.linalg, "svd", lambda *a, **k: svds.append(1) or real_svd(*a, **k))

    n, lam, loss = BRATU_N, BRATU_LAM, _bratu_loss
    u = pz.nlsolve(bratu, np.zeros(n), lam)
    assert np.max(np.abs(bratu(u, lam))) <= 1e-14 and 0.3 < np.max(u) < 0.6
    (g,) = pz.gradient(loss, lam)
    assert svds == []
    # the gradient against central differences of the (plain) loss in two entries
    for i in (5, 30):
        e = 1e-4 * np.eye(n)[i]
        np.testing.assert_allclose(g[i], (loss(lam + e) - loss(lam - e)) / 2e-4, rtol=1e-7)

    # ill-conditioned, 5e11 once scaled: the estimate is near enough for the SVD to decide, and it passes
    A = _with_singular_values(10, 1e-12)
    assert 1e11 < scaled_condition(A) < 1e12
    svds.clear()
    p = A @ np.linspace(1.0, 2.0, 10)
    u = pz.nlsolve(lambda u, q: A @ u - q, np.zeros(10), p)
    assert svds and np.max(np.abs(A @ u - p)) <= 1e-12
    # 5e14: singular, with the singular values' own condition number in the message
    A = _with_singular_values(10, 1e-15)
    condition = scaled_condition(A)
    assert 1e14 < condition < 1e15
    with pytest.raises(pz.SolverError, match=re.escape(f"singular (condition number {condition:.3g} with its rows and columns scaled): the root is not isolated there")):
        pz.nlsolve(lambda u, q: A @ u - q, np.zeros(10), A @ np.ones(10))


def test_a_root_that_is_not_isolated_is_a_solver_error_not_a_linalg_error() -> None:
    """Started exactly at a root where df/du is singular: the value would be a root, but it has no
    derivative, which np.linalg.solve would refuse with a bare LinAlgError."""

    def double(u, p):
        return np.stack([u[0] ** 2 - p[0], u[1] - p[1]])

    with pytest.raises(pz.SolverError, match=r"singular at the root .*no derivative in p\. Its rows are linearly dependent .*f\[0\] does not depend on u here \(its row of df/du is 0\) \(Newton iteration 1, max\|f\| = 0"):
        pz.nlsolve(double, np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(pz.SolverError, match="singular at the root"):
        pz.gradient(lambda q: pz.nlsolve(double, np.array([0.0, 1.0]), q)[0], np.array([0.0, 1.0]))


def test_nan_in_f_is_a_solver_error() -> None:
    with np.errstate(invalid="ignore"):
        with pytest.raises(pz.SolverError, match="f is NaN or inf at the starting point"):
            pz.nlsolve(lambda u, p: np.log(u) - p, np.array([-1.0]), np.array([1.0]))
        with pytest.raises(pz.SolverError, match="Jacobian df/du is NaN or inf"):
            pz.nlsolve(lambda u, p: np.sqrt(u) + 1.0, np.array([1.0]))


def test_bad_arguments_are_refused_before_solving() -> None:
    ok = lambda u, p: u - 1.0  # noqa: E731
    with pytest.raises(ValueError, match="u0 must be a non-empty 1-D array"):
        pz.nlsolve(ok, np.ones((2, 2)))
    with pytest.raises(ValueError, match="u0 must be a non-empty 1-D array"):
        pz.nlsolve(ok, 1.0)
    with pytest.raises(TypeError, match="u0 must be a 1-D array of floats.*int64"):
        pz.nlsolve(ok, np.array([1, 2]))
    with pytest.raises(ValueError, match="u0 contains NaN"):
        pz.nlsolve(ok, np.array([np.nan]))
    for bad in (0.0, -1e-8, np.inf, "1e-8"):
        with pytest.raises(ValueError, match="abstol must be a positive finite number"):
            pz.nlsolve(ok, np.ones(1), abstol=bad)
    for bad in (0, 2.5, -3, True):
        with pytest.raises(ValueError, match="maxiters must be a positive integer"):
            pz.nlsolve(ok, np.ones(1), maxiters=bad)
    with pytest.raises(ValueError, match=r"f of pz.nlsolve returned shape \(1,\), expected \(2,\)"):
        pz.nlsolve(lambda u, p: u[:1], np.ones(2))
    with pytest.raises(TypeError, match="f of pz.nlsolve returned None"):
        pz.nlsolve(lambda u, p: None, np.ones(2))
    with pytest.raises(TypeError, match="f must be a callable"):
        pz.nlsolve(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="xtol"):
        pz.nlsolve(ok, np.ones(1), xtol=1e-8)
    for bad in (0.0, 1.0, -1e-8, np.nan, "1e-8", True):
        with pytest.raises(ValueError, match="reltol must be a number between 0 and 1"):
            pz.nlsolve(ok, np.ones(1), reltol=bad)


def test_mistakes_in_f_are_told_in_terms_of_f_u_p_not_of_an_ode() -> None:
    """f is traced by the ODE machinery (as f(u, p, t)); its notes spoke of right-hand sides, t,
    tstops and solver steps."""

    def notes(exc: BaseException) -> str:
        return "\n".join(getattr(exc, "__notes__", []))

    def one(u):
        return u - 1.0

    with pytest.raises(TypeError, match="takes 1 positional argument") as info:
        pz.nlsolve(lambda u, p: one(u, p), np.ones(2))
    assert "pz.nlsolve traced f as f(u, p) with u of shape (2,)" in notes(info.value)
    assert "right-hand side" not in notes(info.value) and "scalar t" not in notes(info.value)
    with pytest.raises(pz.TracerBoolError) as info:
        pz.nlsolve(lambda u, p: u - 1.0 if u[0] > 0 else u, np.ones(2))
    assert "f of pz.nlsolve is traced once for every u and p" in notes(info.value)
    assert "tstops" not in notes(info.value)
    with pytest.raises(IndexError) as info:
        pz.nlsolve(lambda u, p: u[5] - 1.0, np.ones(2))
    assert "as many unknowns as f of pz.nlsolve reads" in notes(info.value)
    with pytest.raises(pz.UnsupportedOperationError, match="f of pz.nlsolve, '<lambda>', draws random numbers: .* every Newton iteration"):
        pz.grad(lambda a: pz.nlsolve(lambda u, p: u - a * np.random.rand(2), np.ones(2))[0])(1.0)
    with pytest.raises(TypeError, match=r"f of pz.nlsolve returned booleans \(a comparison"):
        pz.nlsolve(lambda u, p: u > 1.0, np.ones(2))


def test_f_of_three_or_one_argument_is_told_how_to_wrap_it() -> None:
    """An ODE right-hand side f(u, p, t) or a residual of u alone failed with Python's bare
    "missing 1 required positional argument: 't'" (user testing)."""

    def rhs(u, p, t):
        return p - u

    with pytest.raises(TypeError, match=r"pz.nlsolve calls f\(u, p\) with two positional arguments, but rhs\(u, p, t\) cannot be called so .*`lambda u, q: rhs\(u, q, 0.0\)`"):
        pz.nlsolve(rhs, np.ones(2), np.array([2.0, 3.0]))
    np.testing.assert_allclose(pz.nlsolve(lambda u, q: rhs(u, q, 0.0), np.ones(2), np.array([2.0, 3.0])), [2.0, 3.0], rtol=1e-15)
    with pytest.raises(TypeError, match=r"but <lambda>\(u\) cannot be called so .*`lambda u, p: g\(u\)`"):
        pz.nlsolve(lambda u: u - 1.0, np.ones(2))
    # defaults, *args and callable objects that take (u, p) are fine
    np.testing.assert_allclose(pz.nlsolve(lambda u, p, t=0.0: u - p, np.ones(1), np.array([2.0])), [2.0])
    np.testing.assert_allclose(pz.nlsolve(lambda *a: a[0] - a[1], np.ones(1), np.array([2.0])), [2.0])


def test_f_of_p_then_u_is_told_the_order() -> None:
    """f(p, u) would have solved for the wrong vector silently; names decide only when both say it."""

    def swapped(p, u):
        return u**2 - p

    with pytest.raises(TypeError, match=r"calls f\(u, p\), the unknowns first, but swapped\(p, u\) takes 'p' first.*`lambda u, p: f\(p, u\)`"):
        pz.nlsolve(swapped, np.ones(1), np.array([4.0]))
    np.testing.assert_allclose(pz.nlsolve(lambda u, p: swapped(p, u), np.ones(1), np.array([4.0])), [2.0], rtol=1e-12)
    np.testing.assert_allclose(pz.nlsolve(lambda x, theta: x**2 - theta, np.ones(1), np.array([4.0])), [2.0], rtol=1e-12)
    np.testing.assert_allclose(pz.nlsolve(lambda a, b: a**2 - b, np.ones(1), np.array([4.0])), [2.0], rtol=1e-12)


# --- the Julia engine ----------------------------------------------------------------------------
@pytest.mark.julia
def test_values_gradients_and_hessians_agree_across_engines() -> None:
    p = np.array([0.6, 2.1])
    loss = lambda q: eccentric_anomaly(q) ** 2 + np.sum(steady(np.concatenate([q, q]) * 0.5 + 0.5) ** 2)  # noqa: E731
    v_np, (g_np,) = pz.withgradient(loss, p, engine="numpy")
    v_jl, (g_jl,) = pz.withgradient(loss, p, engine="julia")
    assert v_jl == pytest.approx(v_np, rel=1e-12)
    np.testing.assert_allclose(g_jl, g_np, rtol=1e-10)
    np.testing.assert_allclose(pz.hessian(loss, p, engine="julia"), pz.hessian(loss, p, engine="numpy"), rtol=1e-10)
    _, t_np = pz.jvp(loss, (p,), (np.array([1.0, -0.5]),), engine="numpy")
    _, t_jl = pz.jvp(loss, (p,), (np.array([1.0, -0.5]),), engine="julia")
    assert t_jl == pytest.approx(t_np, rel=1e-10)
    # the steady state's Jacobian (forward mode over four parameters) against odesolve's
    (J_jl,) = pz.jacobian(steady, P_SS, engine="julia")
    np.testing.assert_allclose(J_jl, pz.jacobian(steady, P_SS, engine="numpy")[0], rtol=1e-10)
    np.testing.assert_allclose(J_jl, pz.jacobian(after_long_time, P_SS, engine="numpy")[0], rtol=1e-7, atol=1e-9)
    # a tangent in u0 alone moves nothing (Julia's dual numbers in u0 are dropped)
    u, du = pz.jvp(lambda u0: pz.nlsolve(square, u0, np.array([4.0, 9.0])), (np.ones(2),), (np.ones(2),), engine="julia")
    np.testing.assert_allclose(u, [2.0, 3.0], rtol=1e-14)
    np.testing.assert_array_equal(du, [0.0, 0.0])


@pytest.mark.julia
def test_closure_and_u0_derivatives_agree_across_engines() -> None:
    def f(u0, q):
        E = pz.nlsolve(lambda u, _: u - q[0] * np.sin(u) - q[1], u0)
        return np.sum(np.cos(E))

    args = (np.array([2.0]), np.array([0.6, 2.1]))
    g_np = pz.gradient(f, *args, engine="numpy")
    g_jl = pz.gradient(f, *args, engine="julia")
    np.testing.assert_array_equal(g_jl[0], [0.0])
    np.testing.assert_allclose(g_jl[1], g_np[1], rtol=1e-10)
    np.testing.assert_allclose(pz.hessian(lambda q: f(args[0], q), args[1], engine="julia"), pz.hessian(lambda q: f(args[0], q), args[1], engine="numpy"), rtol=1e-10)


@pytest.mark.julia
def test_julia_decides_singular_jacobians_by_the_same_lu_estimate_and_svd() -> None:
    """julia_src's _newton_step mirrors the NumPy engine's: no SVD for the Bratu problem, the SVD
    deciding near the threshold (a 5e11-conditioned system solved, a 2.8e14 one refused)."""
    v_np, (g_np,) = pz.withgradient(_bratu_loss, BRATU_LAM, engine="numpy")
    v_jl, (g_jl,) = pz.withgradient(_bratu_loss, BRATU_LAM, engine="julia")
    assert v_jl == pytest.approx(v_np, rel=1e-12)
    np.testing.assert_allclose(g_jl, g_np, rtol=1e-10)
    direction = np.cos(np.arange(BRATU_N))
    _, t_np = pz.jvp(_bratu_loss, (BRATU_LAM,), (direction,), engine="numpy")
    _, t_jl = pz.jvp(_bratu_loss, (BRATU_LAM,), (direction,), engine="julia")
    assert t_jl == pytest.approx(t_np, rel=1e-10)
    A = _with_singular_values(10, 1e-12)
    p = A @ np.linspace(1.0, 2.0, 10)
    (J,) = pz.jacobian(lambda q: pz.nlsolve(lambda u, r: A @ u - r, np.zeros(10), q), p, engine="julia")
    np.testing.assert_allclose(A @ J, np.eye(10), atol=1e-3)  # du/dp = A^-1, to a residual of about eps |A| |A^-1|
    A = _with_singular_values(10, 1e-15)
    with pytest.raises(pz.SolverError, match="singular"):
        pz.gradient(lambda q: np.sum(pz.nlsolve(lambda u, r: A @ u - r, np.zeros(10), q)), A @ np.ones(10), engine="julia")


@pytest.mark.julia
def test_a_failed_solve_on_julia_is_a_solver_error() -> None:
    loss = lambda q: pz.nlsolve(square, np.array([1000.0]), q, maxiters=3)[0]  # noqa: E731
    with pytest.raises(pz.SolverError, match=r"pz.nlsolve on the Julia engine failed: .*maxiters = 3.*Newton iteration 3"):
        pz.gradient(loss, np.array([2.0]), engine="julia")
    singular = lambda q: pz.nlsolve(lambda u, p: u**2 + p, np.array([1.0]), q)[0]  # noqa: E731
    with pytest.raises(pz.SolverError, match="singular"):
        pz.gradient(singular, np.array([1.0]), engine="julia")


@pytest.mark.julia
def test_a_badly_scaled_solve_on_julia_is_not_called_singular() -> None:
    p = np.array([3.0, 4.0])
    loss = lambda q: np.sum(pz.nlsolve(units, np.ones(2), q, abstol=1e-30) ** 3)  # noqa: E731
    assert pz.value_and_grad(loss, engine="julia")(p)[0] == pytest.approx(35.0, rel=1e-14)
    np.testing.assert_allclose(pz.gradient(loss, p, engine="julia")[0], [27.0, 3.0], rtol=1e-13)


@pytest.mark.julia
def test_an_entry_converging_to_zero_converges_on_julia_too() -> None:
    def f(u, p):
        return np.stack([1e10 * (u[0] ** 2 - p[0]) + u[1], u[1] - 1e-3 * (u[0] ** 2 - p[0])])

    (J,) = pz.jacobian(lambda q: pz.nlsolve(f, np.array([1.0, 1.0]), q), np.array([2.0]), engine="julia")
    np.testing.assert_allclose(J, [[0.5 / np.sqrt(2.0)], [0.0]], rtol=1e-13, atol=1e-15)
    with pytest.raises(pz.SolverError, match="halved 30 times"):
        pz.gradient(lambda q: pz.nlsolve(square, np.array([1.0]), q)[0], np.array([1e30]), engine="julia")


@pytest.mark.julia
def test_julia_converges_only_with_a_small_newton_step_and_refuses_multiple_roots() -> None:
    """The Julia engine's stopping rules are the NumPy engine's: a residual below abstol is not
    enough (a dilute weak acid, u exp(-u) walking off), a root at 0 still converges, and linear
    convergence is a multiple root."""

    acid, u0, p = _acid, _ACID_U0, _ACID_P
    loss = lambda q: pz.nlsolve(acid, u0, q)[0]  # noqa: E731
    value, g = pz.value_and_grad(loss, engine="julia")(p)
    assert value == pytest.approx(pz.nlsolve(acid, u0, p)[0], rel=1e-12)
    assert value == pytest.approx(9.597961735e-07, rel=1e-9)
    np.testing.assert_allclose(g, pz.gradient(loss, p, engine="numpy")[0], rtol=1e-10)
    decaying = lambda q: pz.nlsolve(lambda u, p: u * np.exp(-u) - p, np.array([5.0]), q)[0]  # noqa: E731
    with pytest.raises(pz.SolverError, match=r"pz.nlsolve on the Julia engine failed: no convergence to max\|f\| <= abstol .* reltol"):
        pz.gradient(decaying, np.zeros(1), engine="julia")
    at_zero = lambda q: pz.nlsolve(lambda u, p: u * np.exp(-u) - p, np.array([0.5]), q)[0]  # noqa: E731
    assert pz.gradient(at_zero, np.zeros(1), engine="julia")[0][0] == pytest.approx(1.0, rel=1e-12)

    def double(u, p):
        return np.stack([u[0] ** 2 - p[0], u[1] - 1.0])

    with pytest.raises(pz.SolverError, match=r"pz.nlsolve on the Julia engine failed: Newton converged linearly.*multiple"):
        pz.gradient(lambda q: pz.nlsolve(double, np.array([1.0, 2.0]), q)[0], np.zeros(2), engine="julia")
    simple = lambda q: pz.nlsolve(square, np.array([1000.0]), q)[0]  # noqa: E731
    assert pz.gradient(simple, np.array([2.0]), engine="julia")[0][0] == pytest.approx(0.5 / np.sqrt(2.0), rel=1e-13)


def test_julia_nonlinear_solve_failure_becomes_a_solver_error() -> None:
    """The translation of the Julia exception (its showerror text, as juliacall reports it)."""
    from pyzygote.julia import session

    text = "NonlinearSolveFailure: the Jacobian df/du is singular (Newton iteration 2, max|f| = 1.0, at u = [0.0])"
    err = session.translate_error(TypeError(f"Julia: {text}"))
    assert isinstance(err, pz.SolverError)
    assert str(err) == f"pz.nlsolve on the Julia engine failed: {text[len('NonlinearSolveFailure: '):]}"


# --- NaN in p, captured values in failures (user testing) -----------------------------------------
def test_nan_or_inf_in_p_is_one_error_naming_the_entry_by_its_key_plain_and_inside_a_gradient() -> None:
    """A plain call said "ValueError: p contains NaN or inf", the same call inside pz.gradient a
    NonFiniteODEInputError "(as the solver sees it, a flat vector)": both now name the entry in
    pz.nlsolve's terms, with one class (a ValueError, as pz.odesolve raises for its inputs)."""

    def f(u, q):
        return u - q["a"] * q["k"][0]

    def g(q):
        return pz.nlsolve(f, np.array([1.0]), q)[0]

    q = {"a": 2.0, "k": np.array([1.0, np.inf])}
    message = r"^pz\.nlsolve: p\['k'\] contains NaN or inf: entry \[1\] is inf"
    for call in (lambda: g(q), lambda: pz.gradient(g, q)):
        with pytest.raises(pz.NonFiniteODEInputError, match=message):
            call()
    v = np.array([1.0, np.nan])
    for call in (lambda: pz.nlsolve(square, np.ones(2), v), lambda: pz.jacobian(lambda p: pz.nlsolve(square, np.ones(2), p), v)):
        with pytest.raises(ValueError, match=r"^pz\.nlsolve: p contains NaN or inf: entry \[1\] is nan") as info:
            call()
        assert isinstance(info.value, pz.NonFiniteODEInputError)
    # a nested p, and u0, inside derivatives: named as a plain call names them, in one line
    nested = {"a": {"b": np.array([8.0, np.nan])}}
    for call in (lambda: pz.nlsolve(lambda u, p: u**3 - p["a"]["b"], np.ones(2), nested), lambda: pz.gradient(lambda b: np.sum(pz.nlsolve(lambda u, p: u**3 - p["a"]["b"], np.ones(2), {"a": {"b": b}})), nested["a"]["b"]), lambda: pz.hessian(lambda b: np.sum(pz.nlsolve(lambda u, p: u**3 - p["a"]["b"], np.ones(2), {"a": {"b": b}})), nested["a"]["b"])):
        with pytest.raises(pz.NonFiniteODEInputError, match=r"^pz\.nlsolve: p\['a'\]\['b'\] contains NaN or inf: entry \[1\] is nan"):
            call()
    with pytest.raises(pz.NonFiniteODEInputError, match=r"^pz\.nlsolve: u0 contains NaN or inf: entry \[1\] is nan\.$"):
        pz.gradient(lambda u: np.sum(pz.nlsolve(lambda v, p: v**3 - p, u, 8.0)), np.array([1.0, np.nan]))


def test_nan_in_a_captured_traced_value_is_named_as_captured() -> None:
    def g(c):
        return pz.nlsolve(lambda u, q: u - q * c[1], np.array([1.0]), np.array([2.0]))[0]

    with pytest.raises(pz.NonFiniteODEInputError, match=r"^pz\.nlsolve: a value f reads from its closure \(captured, not passed in p\) contains NaN or inf: it is nan\.$"):
        pz.gradient(g, np.array([1.0, np.nan]))


def test_a_failed_solve_shows_captured_values_as_captured_not_as_p() -> None:
    """A backward Euler step with no real root, its state captured and p=None: the message read
    "started from u0 = [1.38094] with p = [1.38094]" (user testing)."""

    def step(un):
        return pz.nlsolve(lambda v, _: v - un - 0.3 * v**2, np.array([1.0]), None, maxiters=3)[0]

    with pytest.raises(pz.SolverError) as info:
        pz.gradient(step, 2.0)
    assert str(info.value).endswith("This solve started from u0 = [1] with p = None, and the values f reads from its closure (captured, not passed in p) = [2].")
    with pytest.raises(pz.SolverError) as info:
        pz.gradient(lambda un: pz.nlsolve(lambda v, q: v - un - q[0] * v**2, np.array([1.0]), q_, maxiters=3)[0], 2.0)
    assert str(info.value).endswith("with p = [0.3], and the values f reads from its closure (captured, not passed in p) = [2].")
    with pytest.raises(pz.SolverError) as info:
        pz.gradient(lambda un: pz.nlsolve(lambda v, q: v - un - q["dt"] * v**2, np.array([1.0]), {"dt": 0.3}, maxiters=3)[0], 2.0)
    assert str(info.value).endswith("with p['dt'] = 0.3, and the values f reads from its closure (captured, not passed in p) = [2].")


q_ = np.array([0.3])

def _shooting_start(y):
    """x(0) of x' = x**2 with x(1) = y: x(t) = x0 / (1 - x0 t), so x0 = y / (1 + y).  Newton's
    full first step from 0.1 (to 7.3 for y = 9) starts a solution that blows up at t = 0.137."""
    blow = lambda x, q, t: x**2  # noqa: E731
    hit = lambda x0, q: pz.odesolve(blow, x0, (0.0, 1.0), None, alg="Tsit5", reltol=1e-10, abstol=1e-12)[-1] - q  # noqa: E731
    return pz.nlsolve(hit, np.array([0.1]), y)


def test_a_trial_point_where_f_fails_its_own_solve_is_halved_as_nan() -> None:
    """A shooting method's Newton step to a start whose ODE solution blows up: the ODE's
    SolverError ended pz.nlsolve (integration review); the line search halves the step instead."""
    y = np.array([9.0])
    x0 = _shooting_start(y)
    np.testing.assert_allclose(x0, y / (1 + y), rtol=1e-9)
    (g,) = pz.gradient(lambda q: _shooting_start(q)[0], y)
    np.testing.assert_allclose(g, 1 / (1 + y) ** 2, rtol=1e-8)
    # f failing all along the step is still an error, naming the inner failure: a cube root by an
    # inner Newton allowed one iteration, which finds it only at the start u = 1
    cbrt = lambda u: pz.nlsolve(lambda v, q: v**3 - q, np.array([1.0]), u, maxiters=1)  # noqa: E731
    assert cbrt(np.array([1.0]))[0] == 1.0
    with pytest.raises(pz.SolverError, match=r"pz.nlsolve failed: f raised pz.SolverError along the whole Newton step.*the last: pz.nlsolve failed: no convergence") as info:
        pz.nlsolve(lambda u, p: cbrt(u) - p, np.array([1.0]), np.array([2.0]))
    assert str(info.value).endswith("This solve started from u0 = [1] with p = [2].")


@julia_with_ode_packages  # the residual solves an ODE
def test_a_trial_point_where_f_fails_its_own_solve_is_halved_on_julia_too() -> None:
    y = np.array([9.0])
    np.testing.assert_allclose(pz.gradient(lambda q: _shooting_start(q)[0], y, engine="julia")[0], 1 / (1 + y) ** 2, rtol=1e-8)
    np.testing.assert_allclose(pz.value_and_grad(lambda q: _shooting_start(q)[0], engine="julia")(y)[0], 0.9, rtol=1e-9)


def test_a_residual_made_afresh_per_call_is_not_kept_alive() -> None:
    """f's wrapper was kept in a global WeakKeyDictionary whose value called f, and the wrapper's
    cached trace held f in its closure check: a lambda made per call of a loss (with the data it
    captured) was never freed (integration review: 50 calls kept 50 closures over their arrays)."""
    import gc
    import weakref

    made = []

    def loss(k):
        data = np.full(1000, 2.0)
        f = lambda u, p: u**2 - p * data[0]  # noqa: E731
        made.append(weakref.ref(f))
        return pz.nlsolve(f, np.array([1.0]), k)[0]

    for k in (2.0, 3.0, 4.0):
        assert loss(np.array([k])) == pytest.approx(np.sqrt(2 * k), rel=1e-14)
    gc.collect()
    assert [r() for r in made] == [None, None, None]


def test_a_residual_kept_is_traced_once_and_again_when_its_closure_changes() -> None:
    calls = [0]
    c = 2.0

    def f(u, p):
        calls[0] += 1
        return u**2 - c * p

    assert pz.nlsolve(f, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(2.0, rel=1e-14)
    assert pz.nlsolve(f, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(2.0, rel=1e-14)
    assert calls == [1]
    c = 8.0
    assert pz.nlsolve(f, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(4.0, rel=1e-14)
    assert calls == [2]
    copied = functools.wraps(f)(lambda u, p: 2.0 * f(u, p) - 3.0 * u)  # f's __dict__ copied with it
    assert pz.nlsolve(copied, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(-(-3 - np.sqrt(9 + 8 * 32)) / 4, rel=1e-12)


# --- user testing, session 22 --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keyword", "match"),
    [
        ("method", r"method=: pz.nlsolve has one method, Newton's with a backtracking line search; it takes no method= or alg="),
        ("alg", r"alg=: pz.nlsolve has one method"),
        ("tol", r"tol=: the solve stops on two tolerances: abstol, the largest max\|f\(u, p\)\| .*, and reltol, the largest Newton step"),
        ("xtol", r"xtol=: here it is reltol, the largest Newton step at the root relative to max\|u\|"),
        ("ftol", r"ftol=: here it is abstol, the largest max\|f\(u, p\)\|"),
        ("maxiter", r"maxiter=: here it is maxiters"),
        ("max_iter", r"max_iter=: here it is maxiters"),
        ("maxfev", r"maxfev=: here it is maxiters"),
    ],
)
def test_other_solvers_keywords_are_pointed_to_nlsolves_own(keyword, match) -> None:
    """User testing: method= was told "here it is alg (a DifferentialEquations.jl solver name)",
    which nlsolve then refused; tol=, xtol= and maxiter= got no hint at all."""
    with pytest.raises(TypeError, match=match) as info:
        pz.nlsolve(square, np.array([1.0]), np.array([2.0]), **{keyword: "hybr" if keyword in ("method", "alg") else 1e-8})
    assert "DifferentialEquations" not in str(info.value)


def test_nan_at_the_start_names_the_entries_of_f_and_the_operation() -> None:
    """User testing: a negative pressure in np.log(P), or a mole number started at 0 in np.log(n),
    gave "f is NaN or inf at the starting point u0" with no word of which entry or operation."""

    def mixture(n, p):
        return np.stack([n[0] + n[1] - p[0], np.log(n[1]) - np.log(p[1]) - 2.0 * np.log(n[0])])

    with pytest.raises(pz.SolverError, match=r"at the starting point u0 \(f\[1\] = -inf\): running f again there, np.log gives -inf at 0.0, a pole .*\(Newton iteration 0"):
        pz.nlsolve(mixture, np.array([1.0, 0.0]), np.array([2.0, 0.5]))
    with pytest.raises(pz.SolverError, match=r"at the starting point u0 \(f\[1\] = nan\): running f again there, np.log gives NaN at -0.5"):
        pz.nlsolve(mixture, np.array([1.0, 1.0]), np.array([2.0, -0.5]))
    # the same inside a gradient (the primitive's implementation says it)
    with pytest.raises(pz.SolverError, match=r"\(f\[1\] = nan\): running f again there, np.log gives NaN at -0.5"):
        pz.gradient(lambda q: pz.nlsolve(mixture, np.array([1.0, 1.0]), q)[0], np.array([2.0, -0.5]))


def test_nan_along_a_whole_step_names_its_size_and_the_overflow_at_its_end() -> None:
    """User testing: from ln y = -30 an equilibrium failed with "f is NaN or inf along the whole
    Newton step, down to 2^-30 of it", with no word of the step's size or of np.exp overflowing."""
    step = np.exp(700.0) - 1.0  # Newton's step for exp(u) - 1 from u = -700
    with pytest.raises(pz.SolverError) as info:
        pz.nlsolve(lambda u, p: np.exp(u) - p, np.array([-700.0]), np.array([1.0]))
    message = str(info.value)
    assert f"along the whole Newton step (max|du| = {step:.3g}, against max|u| = 700), down to 2^-30 of it (f[0] = inf at the full step)" in message
    assert re.search(r"running f again there, np.exp gives inf at 1.0\d+e\+304 \(entry \[0\]\), an overflow", message)
    assert "Start closer to the root (u0), or rescale the unknowns" in message


def _counted(u, p):
    _COUNTED[0] += 1
    return u**2 - p


_COUNTED = [0]


def test_a_residual_written_afresh_in_each_call_is_traced_once() -> None:
    """User testing: pz.nlsolve(lambda u, pp: cstr(u, pp, 0.0), guess, p) in a helper called in a
    loop traced its new lambda at every call (28 ms against 0.58 ms for a function defined once),
    as README's own recipe for a steady state wrote it.  A new function with the same code, the same
    closure contents and defaults is the same function."""

    def steady(q):
        return pz.nlsolve(lambda u, p: _counted(u, p), np.array([1.0]), q)

    _COUNTED[0] = 0
    for k in (2.0, 3.0, 5.0, 7.0):
        assert steady(np.array([k]))[0] == pytest.approx(np.sqrt(k), rel=1e-14)
    assert _COUNTED == [1]

    def scaled(c, q):  # closure contents differ: each its own trace, and the right root
        return pz.nlsolve(lambda u, p: u**2 - c * p, np.array([1.0]), q)[0]

    assert [scaled(c, np.array([2.0])) for c in (2.0, 8.0, 2.0)] == pytest.approx([2.0, 4.0, 2.0], rel=1e-14)

    def pair():
        c = 2.0

        def set_c(v):
            nonlocal c
            c = v

        return (lambda u, p: u**2 - c * p), set_c

    first, set_first = pair()
    assert pz.nlsolve(first, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(2.0, rel=1e-14)
    set_first(8.0)  # the earlier function's cell rebound: a new one with c = 2.0 is not it any more
    second, _ = pair()
    assert pz.nlsolve(second, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(2.0, rel=1e-14)
    assert pz.nlsolve(first, np.array([1.0]), np.array([2.0]))[0] == pytest.approx(4.0, rel=1e-14)


def test_a_residual_over_an_array_made_afresh_in_a_loop_warns_as_odesolve_does() -> None:
    """A closure over data arrays is not kept to be reused (it would keep them alive): such a
    lambda is traced again at each call, and RetraceWarning, which odesolve gives at 50 new but
    identical functions, said nothing for pz.nlsolve (its wrapper of f was counted instead)."""
    data = np.array([2.0, 3.0])

    def steady(q):
        return pz.nlsolve(lambda u, p: u**2 - p * data, np.ones(2), q)

    with pytest.warns(pz.RetraceWarning, match=r"'test_a_residual_over_an_array_made_afresh_in_a_loop_warns_as_odesolve_does.<locals>.steady.<locals>.<lambda>' .*test_nlsolve.py\) has been traced 50 times"):
        for i in range(50):
            np.testing.assert_allclose(steady(np.array([1.0 + i, 2.0])), np.sqrt([2.0 * (1.0 + i), 6.0]), rtol=1e-14)


def test_f_receives_none_when_p_is_omitted_or_none() -> None:
    """User testing: without p, f was handed an empty traced vector, so `if p is None:` never
    fired; SciML passes NullParameters and diffrax args=None.  The values f reads from its
    closure are still differentiated."""
    seen = []

    def f(u, p):
        seen.append(p)
        return u**2 - (2.0 if p is None else p)

    assert pz.nlsolve(f, np.array([1.0]))[0] == pytest.approx(np.sqrt(2.0), rel=1e-14)
    assert pz.nlsolve(f, np.array([1.0]), None)[0] == pytest.approx(np.sqrt(2.0), rel=1e-14)
    assert pz.nlsolve(f, np.array([1.0]), np.array([3.0]))[0] == pytest.approx(np.sqrt(3.0), rel=1e-14)
    assert seen[0] is None and seen[-1] is not None
    a = 3.0
    (g,) = pz.gradient(lambda a: pz.nlsolve(lambda u, p: u**2 - a * (1.0 if p is None else np.nan), np.array([1.0]))[0], a)
    assert g == pytest.approx(0.5 / np.sqrt(a), rel=1e-12)
    with pytest.raises(TypeError, match="not subscriptable") as info:
        pz.nlsolve(lambda u, p: u - p[0], np.array([1.0]))
    assert "p was not given (or was None), and f receives None for it" in "\n".join(getattr(info.value, "__notes__", []))


@pytest.mark.julia
def test_f_receives_none_for_an_omitted_p_on_julia_too() -> None:
    loss = lambda a: pz.nlsolve(lambda u, p: u**2 - a * (1.0 if p is None else np.nan), np.array([1.0]))[0]  # noqa: E731
    assert pz.value_and_grad(loss, engine="julia")(3.0)[0] == pytest.approx(np.sqrt(3.0), rel=1e-14)
    assert pz.gradient(loss, 3.0, engine="julia")[0] == pytest.approx(0.5 / np.sqrt(3.0), rel=1e-12)


@pytest.mark.julia
def test_julia_names_the_entries_of_f_that_are_nan_and_the_size_of_the_step() -> None:
    """The entries of f, and the step's size, are named on the Julia engine too (not the operation:
    the diagnosis runs pyzygote's own operations, on the NumPy engine)."""
    mixture = lambda n, p: np.stack([n[0] + n[1] - p[0], np.log(n[1]) - np.log(p[1]) - 2.0 * np.log(n[0])])  # noqa: E731
    with pytest.raises(pz.SolverError, match=r"pz.nlsolve on the Julia engine failed: f is NaN or inf at the starting point u0 \(f\[1\] = -Inf\)"):
        pz.gradient(lambda q: pz.nlsolve(mixture, np.array([1.0, 0.0]), q)[0], np.array([2.0, 0.5]), engine="julia")
    with pytest.raises(pz.SolverError, match=r"along the whole Newton step \(max\|du\| = 1.01e304, against max\|u\| = 700.0\), down to 2\^-30 of it \(f\[0\] = Inf at the full step\)\. Start closer"):
        pz.gradient(lambda q: pz.nlsolve(lambda u, p: np.exp(u) - p, np.array([-700.0]), q)[0], np.array([1.0]), engine="julia")


def test_a_full_step_where_f_raises_does_not_replace_the_nan_message() -> None:
    """The message for NaN along a whole step evaluates f at the full step again, to name what
    overflowed there; where f raises SolverError there (a solve inside f failing) and is NaN at
    every shorter step, the failure is still the NaN's, not the inner solve's."""
    from pyzygote.primitives.nonlinear import _line_search

    class Residual:
        program = layout = None

        def __call__(self, u, p, t):
            if u[0] > 0.75:
                raise pz.SolverError("an inner solve failed")
            return np.array([np.nan])

    with pytest.raises(pz.SolverError, match=r"^pz.nlsolve failed: f is NaN or inf along the whole Newton step \(max\|du\| = 1, against max\|u\| = 0\), down to 2\^-30 of it\. Start closer"):
        _line_search(Residual(), np.zeros(0), np.array([0.0]), np.array([1.0]), np.array([1.0]), 1)


# --- user testing, session 22 (second round) ------------------------------------------------------
def _bratu_over_h2(n):  # type: ignore[no-untyped-def]
    """Bratu, u'' + lam exp(u) = 0, with the second difference divided by h^2 as written by hand:
    its residual's terms are 4 |u| / h^2, some 4e4 at n = 100, so rounding leaves max|f| near 1e-12."""
    h = 1.0 / (n + 1)

    def f(u, p):
        left = np.concatenate([np.zeros(1), u[:-1]])
        right = np.concatenate([u[1:], np.zeros(1)])
        return (left - 2.0 * u + right) / h**2 + p[0] * np.exp(u)

    def times_h2(u, p):  # the same equations multiplied by h^2: residuals near 1e-17 at the root
        padded = np.concatenate([np.zeros(1), u, np.zeros(1)])
        return padded[:-2] - 2.0 * u + padded[2:] + h**2 * p[0] * np.exp(u)

    return f, times_h2


@pytest.mark.parametrize("n, lam", [(100, 3.4), (300, 2.0)])
def test_a_residual_scaled_by_one_over_h_squared_converges_at_its_rounding_level(n, lam) -> None:
    """User testing: the line search stalled at max|f| = 1.6e-12 (n = 100) and 8.7e-12 (n = 300),
    above abstol = 1e-12 but at the rounding level of f's terms, with a Newton step of some 20
    eps max|u|: refused as "no decrease".  The root is that of the h^2-scaled equations, which
    reach abstol, and its derivative in lam their central difference."""
    f, times_h2 = _bratu_over_h2(n)
    u = pz.nlsolve(f, np.zeros(n), np.array([lam]))
    v = pz.nlsolve(times_h2, np.zeros(n), np.array([lam]))
    assert np.max(np.abs(u - v)) <= 1e-13 * np.max(v)
    (g,) = pz.gradient(lambda q: np.sum(pz.nlsolve(f, np.zeros(n), q)), np.array([lam]))
    d = 1e-6
    fd = (np.sum(pz.nlsolve(times_h2, np.zeros(n), np.array([lam + d]))) - np.sum(pz.nlsolve(times_h2, np.zeros(n), np.array([lam - d])))) / (2 * d)
    assert g[0] == pytest.approx(fd, rel=1e-6)
    # past the fold (3.51 for n = 100) there is no root, and |f| stalls far above its rounding level
    with pytest.raises(pz.SolverError, match="no decrease"):
        pz.nlsolve(f, np.zeros(n), np.array([3.6]))


@pytest.mark.julia
def test_a_residual_scaled_by_one_over_h_squared_converges_on_julia_too() -> None:
    f, _ = _bratu_over_h2(100)
    loss = lambda q: np.sum(pz.nlsolve(f, np.zeros(100), q))  # noqa: E731
    v_np, (g_np,) = pz.withgradient(loss, np.array([3.4]), engine="numpy")
    v_jl, (g_jl,) = pz.withgradient(loss, np.array([3.4]), engine="julia")
    assert v_jl == pytest.approx(v_np, rel=1e-12)
    np.testing.assert_allclose(g_jl, g_np, rtol=1e-10)
    with pytest.raises(pz.SolverError, match="no decrease"):
        pz.gradient(loss, np.array([3.6]), engine="julia")


def test_a_singular_jacobian_where_f_is_not_small_is_called_a_stationary_point_not_a_root() -> None:
    """User testing: u**2 - p at p = -1 (no real root) reached u = 0, where |f| = 1, and was told
    "the root is not isolated"; equations that are dependent everywhere are still named so."""
    with pytest.raises(pz.SolverError, match=r"singular \(condition number inf .*\): f has a stationary point here, where max\|f\| = 1 is not small: a minimum of \|f\| \(or a saddle\) that is not a root.*no root for this p: past a fold \(turning point\).*continuation in p") as info:
        pz.nlsolve(square, np.array([1.0]), np.array([-1.0]))
    assert "root is not isolated" not in str(info.value)

    def dependent(u, p):  # f is not along the null space of J here: no stationary point
        return np.stack([u[0] + u[1] - p[0], 2.0 * (u[0] + u[1]) - p[1]])

    with pytest.raises(pz.SolverError, match=r"singular .*the root is not isolated there.*f\[0\] - 0\.5 \* f\[1\] is constant") as info:
        pz.nlsolve(dependent, np.zeros(2), np.array([1.0, 3.0]))
    assert "stationary" not in str(info.value)
    from pyzygote.primitives.nonlinear import stationary

    assert stationary(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([1e-3, 1.0]))
    assert not stationary(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([1.0, 1.0]))


def test_no_decrease_past_the_fold_of_bratu_says_there_may_be_no_root_and_suggests_continuation() -> None:
    f, _ = _bratu_over_h2(100)
    with pytest.raises(pz.SolverError, match=r"no decrease .*no root for this p: past a fold \(turning point\) of the branch of roots.*continuation in p"):
        pz.nlsolve(f, np.zeros(100), np.array([3.6]))


@pytest.mark.julia
def test_julia_calls_a_singular_jacobian_where_f_is_not_small_a_stationary_point() -> None:
    with pytest.raises(pz.SolverError, match=r"Julia engine failed: the Jacobian df/du is singular .*f has a stationary point here.*no root for this p"):
        pz.gradient(lambda q: pz.nlsolve(square, np.array([1.0]), q)[0], np.array([-1.0]), engine="julia")
    f, _ = _bratu_over_h2(100)
    with pytest.raises(pz.SolverError, match=r"Julia engine failed: the line search found no decrease.*past a fold \(turning point\).*continuation in p"):
        pz.gradient(lambda q: np.sum(pz.nlsolve(f, np.zeros(100), q)), np.array([3.6]), engine="julia")


@pytest.mark.julia
def test_julia_solves_tiny_simple_roots_reached_by_many_halvings_within_abstol() -> None:
    (g,) = pz.gradient(lambda q: pz.nlsolve(square, np.array([1.0]), q)[0], np.array([1e-36]), engine="julia")
    assert g[0] == pytest.approx(0.5e18, rel=1e-10)
    with pytest.raises(pz.SolverError, match=r"Julia engine failed: .*within maxiters = 100 iterations; the last full Newton steps shrank linearly"):
        pz.gradient(lambda q: pz.nlsolve(square, np.array([1.0]), q)[0], np.zeros(1), engine="julia")

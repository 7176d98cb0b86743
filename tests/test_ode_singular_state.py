"""A right-hand side whose state starts at a point where its derivative is infinite (pyzygote.ode.singular).

The indirect-response PK/PD model doses into the gut, so the central amount is 0 at t0, and its
Hill term c ** h with h < 1 has an infinite derivative there; f is finite and the ODE well posed.
Acceptance testing (uat_kinet): Rodas5P, FBDF and KenCarp4 refused to start, and every gradient
failed at t0.  The references: Tsit5 (which never needs the Jacobian) for the solution, central
differences for the gradient, and the clamped model np.maximum(c, 1e-12), whose derivatives are
finite everywhere.
"""

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.errors import SolverError

P = np.array([1.0, 5.0, 50.0, 10.0, 0.5, 0.9, 1.0, 0.7])  # ka cl v kin kout imax ic50 h
U0 = np.array([100.0, 0.0, 20.0])
T = np.linspace(0.0, 12.0, 13)
TOL = dict(reltol=1e-10, abstol=1e-12)


def idr(u, p, t):
    ag, ac, r = u
    ka, cl, v, kin, kout, imax, ic50, h = p
    c = ac / v
    inh = imax * c**h / (ic50**h + c**h)
    return np.array([-ka * ag, ka * ag - cl * c, kin * (1 - inh) - kout * r])


def idr_clamped(u, p, t):
    ag, ac, r = u
    ka, cl, v, kin, kout, imax, ic50, h = p
    c = np.maximum(ac / v, 1e-12)
    inh = imax * c**h / (ic50**h + c**h)
    return np.array([-ka * ag, ka * ag - cl * ac / v, kin * (1 - inh) - kout * r])


def loss(p, f=idr, alg="Tsit5", sensealg="forward"):
    return np.sum(pz.odesolve(f, U0, T, p, alg=alg, sensealg=sensealg, **TOL)[:, 2])


@pytest.fixture(scope="module")
def central():
    """Central differences at two steps, which agree to 1e-7 of the largest entry (checked)."""
    out = []
    for rel in (1e-4, 1e-5):
        h = rel * np.abs(P)
        out.append(np.array([(loss(P + hi * e) - loss(P - hi * e)) / (2 * hi) for hi, e in zip(h, np.eye(len(P)))]))
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-7 * np.max(np.abs(out[1])))
    return out[1]


@pytest.mark.parametrize("alg", ["Rodas5P", "FBDF", "KenCarp4", "auto"])
def test_implicit_solvers_start_where_the_jacobian_is_infinite(alg):
    ref = pz.odesolve(idr, U0, T, P, alg="Tsit5", **TOL)
    u = pz.odesolve(idr, U0, T, P, alg=alg, **TOL)
    np.testing.assert_allclose(u, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ref[-1], [6.1442e-4, 33.465, 11.675], rtol=1e-4)


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P", "FBDF", "auto"])
@pytest.mark.parametrize("sensealg", ["forward", "adjoint"])
def test_gradient_from_a_state_at_the_singular_point(alg, sensealg, central):
    (g,) = pz.gradient(lambda p: loss(p, alg=alg, sensealg=sensealg), P)
    np.testing.assert_allclose(g, central, rtol=0, atol=1e-6 * np.max(np.abs(central)))
    # the clamped model's gradient, an independent derivative (h's entry differs by the clamp's
    # 1e-12 ** h, far below this tolerance)
    (gc,) = pz.gradient(lambda p: loss(p, f=idr_clamped, alg=alg, sensealg=sensealg), P)
    np.testing.assert_allclose(g, gc, rtol=0, atol=1e-6 * np.max(np.abs(central)))


def test_newton_matrix_differences_only_the_infinite_entry():
    from pyzygote.ode.rhs import RHS

    rhs = RHS.trace(idr, 3, 8)
    exact = rhs.jacobian_u(U0, P, 0.0, exact=True)
    assert not np.isfinite(exact[2, 1])
    J = rhs.jacobian_u(U0, P, 0.0)
    mask = np.isfinite(exact)
    np.testing.assert_array_equal(J[mask], exact[mask])  # exact entries are kept
    # the forward quotient of f_r along u[1] (c ** h is NaN below 0)
    d = np.sqrt(np.finfo(float).eps)
    quotient = (idr(U0 + d * np.eye(3)[1], P, 0.0)[2] - idr(U0, P, 0.0)[2]) / d
    assert J[2, 1] == pytest.approx(quotient, rel=1e-6)


def test_zero_direction_gives_zero_tangent_through_an_infinite_derivative():
    from pyzygote.ode.rhs import RHS
    from pyzygote.ode.singular import zero_aware_jvp

    rhs = RHS.trace(idr, 3, 8)
    along_v = np.eye(8)[2]  # c = ac / v stays 0 along v when ac = 0
    assert np.isnan(rhs.jacobian_p(U0, P, 0.0)[2, 2])  # the compiled derivative: 0 * inf in c ** h's rule
    (tangent,) = zero_aware_jvp(rhs.program, [U0, P, np.float64(0.0)], [np.zeros(3), along_v, None])
    np.testing.assert_array_equal(tangent, [0.0, 0.0, 0.0])
    # a direction that moves the state off the point keeps its infinite derivative
    (moving,) = zero_aware_jvp(rhs.program, [U0, P, np.float64(0.0)], [np.eye(3)[1], np.zeros(8), None])
    assert not np.isfinite(moving[2])


@pytest.mark.parametrize("sensealg", ["forward", "adjoint"])
def test_derivative_along_the_singular_state_names_it(sensealg):
    # d/d u0[1] moves the state off the point at t0, where J_u is infinite: no zero to take
    with pytest.raises(SolverError) as info:
        pz.gradient(lambda u0: np.sum(pz.odesolve(idr, u0, T, P, alg="Tsit5", sensealg=sensealg)[:, 2]), U0)
    text = str(info.value)
    assert "state entry u[1]" in text and "np.maximum(c, 1e-12)" in text
    assert "log-parameters" not in text


def test_a_right_hand_side_that_is_itself_not_finite_still_fails():
    def bad(u, p, t):
        return np.array([-p[0] * np.log(u[0])])  # log(0) = -inf at the start

    with pytest.raises(SolverError, match="NaN or inf"):
        pz.odesolve(bad, np.array([0.0]), np.array([0.0, 1.0]), np.array([1.0]), alg="Rodas5P")


def test_newton_matrix_quotients_dense_and_sparse_forward_and_backward():
    import scipy.sparse as sp

    from pyzygote.ode.singular import finite_newton_matrix

    d = np.sqrt(np.finfo(float).eps)
    u = np.array([0.0, 3.0])
    J = np.array([[np.inf, 1.0], [0.0, 6.0]])
    above = lambda v: np.array([np.sqrt(v[0]) + v[1], v[1] ** 2])  # noqa: E731 - defined at and above 0
    for M in (J, sp.csc_matrix(J), sp.csr_matrix(J)):
        with np.errstate(invalid="ignore"):
            out = finite_newton_matrix(M, above, u)
        dense = out.toarray() if sp.issparse(out) else out
        np.testing.assert_allclose(dense, [[np.sqrt(d) / d, 1.0], [0.0, 6.0]], rtol=1e-12)
        assert np.isinf((M.toarray() if sp.issparse(M) else M)[0, 0])  # the given matrix is left as it was
    below = lambda v: np.array([np.sqrt(-v[0]) if v[0] <= 0 else np.nan, v[1]])  # noqa: E731 - at and below 0
    assert finite_newton_matrix(np.array([[np.inf, 0.0], [0.0, 1.0]]), below, np.array([0.0, 1.0]))[0, 0] == pytest.approx(-np.sqrt(d) / d)
    # f itself not finite at the point: nothing is mended, the solve fails and says why
    with np.errstate(divide="ignore"):
        kept = finite_newton_matrix(np.array([[np.inf, 0.0], [0.0, 1.0]]), lambda v: np.array([np.log(v[0]), v[1]]), np.array([0.0, 1.0]))
    assert np.isinf(kept[0, 0])


def test_forward_sensitivities_pass_a_clamp_feeding_sqrt_and_the_adjoint_says_where_it_fails():
    # x crosses 0 at t = ln 2 and stays below; sqrt(max(x, 0)) is then constant in x, with
    # derivative 0, which the compiled sensitivities made 0 * inf (they failed there before)
    def f(u, p, t):
        x, y = u
        return np.array([-p[0] * x - 1.0, np.sqrt(np.maximum(x, 0.0)) - p[1] * y])

    u0, t, p = np.array([1.0, 0.0]), np.linspace(0.0, 2.0, 5), np.array([1.0, 0.5])

    def clamp_loss(q, sensealg):
        return np.sum(pz.odesolve(f, u0, t, q, alg="Tsit5", sensealg=sensealg, reltol=1e-10, abstol=1e-12)[:, 1])

    (g,) = pz.gradient(lambda q: clamp_loss(q, "forward"), p)
    fd = [(clamp_loss(p + 1e-6 * e, "forward") - clamp_loss(p - 1e-6 * e, "forward")) / 2e-6 for e in np.eye(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-5)
    with pytest.raises(SolverError, match="adjoint solve"):
        pz.gradient(lambda q: clamp_loss(q, "adjoint"), p)

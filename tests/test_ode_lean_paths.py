"""The NumPy engine's lean paths (pyzygote.ode.solvers): LAPACK's getrf/getrs called directly in
Radau and BDF, and the forward solution read at one time (Radau's dense output and the RK stepper's),
give bitwise the values of scipy.linalg.lu_factor/lu_solve, SciPy's OdeSolution and DenseSolution."""

import numpy as np
import pytest
from scipy.integrate import BDF, Radau

import pyzygote as pz
from pyzygote.ode import solvers
from pyzygote.ode.solvers import integrate, point_evaluator


def _robertson(t, y):
    return np.array([-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2])


@pytest.mark.parametrize("method", [Radau, BDF])
def test_lean_lu_steps_are_scipys(method):
    y0, rtol, atol = np.array([1.0, 0.0, 0.0]), 1e-6, 1e-10
    plain, lean = method(_robertson, 0.0, y0, 100.0, rtol=rtol, atol=atol), method(_robertson, 0.0, y0, 100.0, rtol=rtol, atol=atol)
    solvers._lean_dense_lu(lean)
    while plain.status == "running":
        plain.step()
        lean.step()
        assert lean.t == plain.t and np.array_equal(lean.y, plain.y)
    assert lean.status == "finished" and lean.nlu == plain.nlu > 0


def test_lean_lu_refuses_nan_like_lu_factor():
    solver = Radau(_robertson, 0.0, np.array([1.0, 0.0, 0.0]), 1.0)
    solvers._lean_dense_lu(solver)
    with pytest.raises(ValueError, match="infs or NaNs"):
        solver.lu(np.array([[1.0, np.nan], [0.0, 1.0]]))
    LU = solver.lu(np.array([[2.0, 1.0], [1.0, 3.0]]))
    np.testing.assert_allclose(solver.solve_lu(LU, np.array([3.0, 4.0])), [1.0, 1.0])
    with pytest.raises(ValueError, match="infs or NaNs"):
        solver.solve_lu(LU, np.array([np.inf, 1.0]))


@pytest.mark.parametrize("backwards", [False, True])
def test_point_evaluator_is_odesolutions(backwards):
    t0, t1 = (100.0, 0.0) if backwards else (0.0, 100.0)
    res = integrate(lambda t, y: _robertson(t, y) * 1e-3, t0, t1, np.array([1.0, 0.0, 0.0]), None, "Rodas5P", 1e-6, 1e-10, dense=True)
    fast = point_evaluator(res.dense)
    assert fast is not res.dense
    knots = res.t.tolist()
    times = knots + np.linspace(min(t0, t1) - 1.0, max(t0, t1) + 1.0, 301).tolist()
    for t in times:
        assert np.array_equal(fast(float(t)), res.dense(float(t))), t


@pytest.mark.parametrize("alg", ["Rodas5P", "Tsit5"])
@pytest.mark.parametrize("backwards", [False, True])
def test_point_evaluator_is_the_dense_solution_of_a_solve_with_tstops(alg, backwards):
    """A solve with tstops joins one dense output per piece; each is read by its lean path."""
    t0, t1 = (100.0, 0.0) if backwards else (0.0, 100.0)
    stops = (10.0, 55.5, 80.0)
    res = integrate(lambda t, y: _robertson(t, y) * 1e-3, t0, t1, np.array([1.0, 0.0, 0.0]), None, alg, 1e-6, 1e-10, dense=True, tstops=stops)
    fast = point_evaluator(res.dense)
    assert fast is not res.dense and len(res.dense.pieces) == 4
    assert all(point_evaluator(piece) is not piece for piece in res.dense.pieces)
    for t in res.t.tolist() + list(stops) + np.linspace(-1.0, 101.0, 301).tolist():
        assert np.array_equal(fast(float(t)), res.dense(float(t))), t


def test_point_evaluator_leaves_other_dense_outputs():
    res = integrate(lambda t, y: -y, 0.0, 1.0, np.array([1.0]), None, "Vern7", 1e-8, 1e-8, dense=True)
    assert point_evaluator(res.dense) is res.dense


@pytest.mark.parametrize("backwards", [False, True])
def test_point_evaluator_is_the_rk_steppers_dense_solution(backwards):
    t0, t1 = (3.0, 0.0) if backwards else (0.0, 3.0)
    res = integrate(lambda t, y: np.array([y[1], -np.sin(y[0])]), t0, t1, np.array([1.0, 0.0]), None, "Tsit5", 1e-8, 1e-8, dense=True)
    fast = point_evaluator(res.dense)
    assert fast is not res.dense
    for t in res.t.tolist() + np.linspace(-0.5, 3.5, 201).tolist():
        assert np.array_equal(fast(float(t)), res.dense(float(t))), t


def test_adjoint_through_radau_matches_finite_differences():
    u0, t = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.1, 1.0, 10.0])

    def rober(u, p, t):
        return np.array([-p[0] * u[0] + p[1] * u[1] * u[2], p[0] * u[0] - p[1] * u[1] * u[2] - p[2] * u[1] ** 2, p[2] * u[1] ** 2])

    def loss(p):
        u = pz.odesolve(rober, u0, t, p, alg="Rodas5P", sensealg="adjoint", reltol=1e-9, abstol=1e-12)
        return np.sum(u[:, 0] ** 2 + 1e4 * u[:, 1])

    p = np.array([0.04, 1e4, 3e7])
    (g,) = pz.gradient(loss, p, engine="numpy")
    fd = []
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-5 * p[i]
        fd.append((loss(p + e) - loss(p - e)) / (2 * e[i]))
    np.testing.assert_allclose(g, fd, rtol=1e-4)


class _CountedStops(tuple):
    """tstops that count how often they are read through."""

    reads = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().__iter__()


def test_integrate_finds_its_tstops_by_bisection_not_by_a_scan_per_call():
    """User testing: an adjoint restarting at 3601 monthly save times scanned all 301 yearly tstops
    for each backward segment, 14% of the gradient.  They are sorted once per tuple (a solve's
    Options hold one) and the stops of each piece found by bisection: the same stops, forward and
    backward, ends included."""
    stops = _CountedStops(float(s) for s in np.arange(0.0, 30.5, 0.5))
    f = lambda t, u: np.where(t % 1.0 < 0.5, 1.0, -1.0) * np.ones(1)  # noqa: E731  (switches at every stop)
    for a, b in [(0.3, 7.3), (7.3, 0.3), (2.0, 2.5), (2.5, 2.0), (29.0, 30.0), (12.25, 12.75)]:
        res = integrate(f, a, b, np.zeros(1), None, "Tsit5", 1e-10, 1e-12, tstops=stops)
        inside = [s for s in stops if min(a, b) < s < max(a, b)]
        assert res.success and set(inside) <= set(res.t.tolist())
        want = sum(np.where(np.floor(2 * s) % 2 == 0, 1.0, -1.0) * 1e-3 for s in np.arange(min(a, b), max(a, b), 1e-3) + 5e-4)
        np.testing.assert_allclose(res.u[-1, 0], want * np.sign(b - a), atol=1e-9)
    reads, _CountedStops.reads = _CountedStops.reads, 0
    assert reads - 6 <= 1  # the brute-force check above read them 6 times, integrate once

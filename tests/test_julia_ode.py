"""ODE solves on the Julia engine (DifferentialEquations.jl + SciMLSensitivity) against the NumPy engine.

The julia-marked tests need a real Julia with pyzygote's packages (see tests/conftest.py).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import pyzygote as pz
from tests.julia_gate import unavailable
from tests.test_ode import (
    K_GRID,
    P_LV,
    T_DECAY,
    T_INFUSION,
    T_LV,
    U0_GRID,
    U0_LV,
    decay,
    grid_decay,
    infusion,
    infusion_closed_form,
    lotka,
    robertson,
)


def _ode_packages_missing_reason() -> str:
    """Why a set-up Julia cannot solve ODEs ("" when it can, or when Julia is not set up at all)."""
    from pyzygote.julia.setup import julia_is_set_up, ode_packages_missing

    if not julia_is_set_up():
        return ""  # tests/conftest.py skips julia-marked tests with its own reason
    missing = ode_packages_missing()
    return f"ODE packages not direct dependencies of the project ({', '.join(missing)}): pyzygote setup-julia" if missing else ""


def julia(test):  # type: ignore[no-untyped-def]
    """Marked ``julia``, and skipped when the project lacks the ODE packages (failed where
    julia-marked tests are required: tests/julia_gate.py)."""
    reason = _ode_packages_missing_reason()
    test = pytest.mark.julia(test)
    return unavailable(reason)(test) if reason else test


TIGHT = dict(reltol=1e-10, abstol=1e-10)

LOTKA_JULIA = "(u, p, t) -> [p[1]*u[1] - p[2]*u[1]*u[2], -p[3]*u[2] + p[4]*u[1]*u[2]]"


def test_julia_rhs_on_the_numpy_engine_is_a_clear_error() -> None:
    rhs = pz.julia_function(LOTKA_JULIA)
    prob = pz.ODEProblem(rhs, U0_LV, (0.0, 10.0), P_LV)
    with pytest.raises(TypeError, match="Julia code"):
        pz.solve(prob, engine="numpy")
    with pz.engine("numpy"), pytest.raises(TypeError, match="Julia"):
        pz.gradient(lambda p: np.sum(pz.odesolve(rhs, U0_LV, T_LV, p)), P_LV)


def _lv_loss(sensealg: str):
    data = np.cos(T_LV)[:, None] * np.ones(2)

    def loss(p, u0):
        u = pz.odesolve(lotka, u0, T_LV, p, alg="Tsit5", sensealg=sensealg, **TIGHT)
        return np.sum((u - data) ** 2)

    return loss


@julia
@pytest.mark.parametrize("alg", ["Tsit5", "DP5", "Vern7", "Vern9", "Rodas5P", "FBDF", "KenCarp4", "auto"])
def test_decay_matches_closed_form_on_julia(alg: str) -> None:
    # An untraced odesolve runs on the NumPy engine (the audit); pz.solve takes the engine.
    prob = pz.ODEProblem(decay, np.array([2.0]), (0.0, float(T_DECAY[-1])), np.array([0.7]))
    u = pz.solve(prob, alg=alg, saveat=T_DECAY, reltol=1e-10, abstol=1e-12, engine="julia").u
    (J,) = pz.jacobian(lambda u0: pz.odesolve(decay, u0, T_DECAY, np.array([0.7]), alg=alg, reltol=1e-10, abstol=1e-12)[:, 0], np.array([2.0]), engine="julia")
    np.testing.assert_allclose(u[:, 0], 2.0 * np.exp(-0.7 * T_DECAY), rtol=1e-6)
    np.testing.assert_allclose(J[:, 0], np.exp(-0.7 * T_DECAY), rtol=1e-6)


@julia
@pytest.mark.parametrize("sensealg", ["auto", "forward", "adjoint", "backsolve"])
def test_lotka_volterra_gradients_agree_across_engines(sensealg: str) -> None:
    loss = _lv_loss(sensealg)
    g_np = pz.gradient(loss, P_LV, U0_LV, engine="numpy")
    g_jl = pz.gradient(loss, P_LV, U0_LV, engine="julia")
    for a, b in zip(g_jl, g_np):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@julia
def test_solve_on_julia_matches_numpy_and_reports_stats() -> None:
    prob = pz.ODEProblem(lotka, U0_LV, (0.0, 10.0), P_LV)
    sol_jl = pz.solve(prob, alg="Vern9", saveat=T_LV, reltol=1e-10, abstol=1e-10, engine="julia")
    sol_np = pz.solve(prob, alg="Vern9", saveat=T_LV, reltol=1e-10, abstol=1e-10, engine="numpy")
    assert sol_jl.retcode == "Success"
    assert sol_jl.u.shape == (101, 2)
    np.testing.assert_allclose(sol_jl.t, T_LV)
    np.testing.assert_allclose(sol_jl.u, sol_np.u, rtol=1e-7, atol=1e-9)
    assert sol_jl.stats["naccept"] > 0 and sol_jl.stats["nf"] > sol_jl.stats["naccept"]
    t = np.array([7.5, 0.05, 7.5, 10.0])  # sol(t) solves again on the same engine
    np.testing.assert_allclose(sol_jl(t), sol_np(t), rtol=1e-7, atol=1e-9)


@julia
def test_julia_function_right_hand_side() -> None:
    rhs = pz.julia_function(LOTKA_JULIA)
    u_jl = pz.odesolve(rhs, U0_LV, T_LV, P_LV, alg="Tsit5", **TIGHT)
    u_np = pz.odesolve(lotka, U0_LV, T_LV, P_LV, alg="Tsit5", **TIGHT)
    np.testing.assert_allclose(u_jl, u_np, rtol=1e-7, atol=1e-9)
    g_jl = pz.gradient(lambda p: np.sum(pz.odesolve(rhs, U0_LV, T_LV, p, **TIGHT) ** 2), P_LV, engine="julia")
    g_np = pz.gradient(lambda p: np.sum(pz.odesolve(lotka, U0_LV, T_LV, p, **TIGHT) ** 2), P_LV, engine="numpy")
    np.testing.assert_allclose(g_jl[0], g_np[0], rtol=1e-6)


@julia
@pytest.mark.parametrize("alg, sensealg", [("Rodas5P", "auto"), ("Rodas5P", "adjoint"), ("FBDF", "adjoint"), ("KenCarp4", "forward")])
def test_stiff_robertson_gradient_on_julia(alg: str, sensealg: str) -> None:
    t = np.array([0.0, 0.1, 1.0, 10.0])
    w = np.array([1.0, 1e4, 1.0])

    def loss(logp):
        u = pz.odesolve(
            robertson, np.array([1.0, 0.0, 0.0]), t, np.exp(logp), alg=alg, sensealg=sensealg, reltol=1e-10, abstol=1e-12
        )
        return np.sum(w * u[-1])

    logp = np.log([0.04, 3e7, 1e4])
    np.testing.assert_allclose(pz.gradient(loss, logp, engine="julia")[0], pz.gradient(loss, logp, engine="numpy")[0], rtol=1e-5)


@julia
def test_failed_solve_raises_solver_error_on_julia() -> None:
    blowup = lambda u, p, t: p[0] * u * u  # noqa: E731
    prob = pz.ODEProblem(blowup, [1.0], (0.0, 2.0), [1.0])
    sol = pz.solve(prob, alg="Tsit5", engine="julia")
    assert sol.retcode != "Success" and not sol.success
    loss = lambda p: pz.odesolve(blowup, np.array([1.0]), np.array([0.0, 2.0]), p)[-1, 0]  # noqa: E731
    # u' = u^2 from u = 1 blows up at t = 1: the error names where the solver stopped, not a save time
    with pytest.raises(pz.SolverError, match="stopped at t = ") as info:
        pz.gradient(loss, np.array([1.0]), engine="julia")
    reached = float(re.search(r"stopped at t = ([0-9.eE+-]+)", str(info.value)).group(1))
    # where in the blow-up the step size collapses depends on the controller: within 1% of t = 1
    assert 0.99 < reached < 1.01
    # a solve that fails before its first save time returns an empty, failed solution
    late = pz.solve(prob, alg="Tsit5", saveat=np.array([1.5, 2.0]), engine="julia")
    assert late.retcode != "Success" and late.u.shape == (0, 1)
    # one that fails after two save times reports those two, not the time it stopped at
    some = pz.solve(prob, alg="Tsit5", saveat=np.array([0.0, 0.5, 1.5, 2.0]), reltol=1e-10, abstol=1e-12, engine="julia")
    assert some.retcode != "Success"
    np.testing.assert_array_equal(some.t, [0.0, 0.5])
    np.testing.assert_allclose(some.u[:, 0], 1.0 / (1.0 - some.t), rtol=1e-8)


def _no_parameter_solve(u0, sensealg, p="empty"):
    if p == "absent":  # f gets p=None, as diffrax's args=None
        return pz.odesolve(lambda u, p, t: -0.7 * u if p is None else p[0], u0, T_DECAY, sensealg=sensealg, **TIGHT)
    B = np.zeros((1, 0))
    rhs = lambda u, p, t: -0.7 * u * np.prod(p) + B @ p  # noqa: E731
    return pz.odesolve(rhs, u0, T_DECAY, np.zeros(0), sensealg=sensealg, **TIGHT)


@pytest.mark.parametrize("p", ["empty", "absent"])
@pytest.mark.parametrize("sensealg", ["auto", "forward", "adjoint", "backsolve"])
def test_gradient_without_parameters_on_numpy(sensealg: str, p: str) -> None:
    (g,) = pz.gradient(lambda u0: np.sum(_no_parameter_solve(u0, sensealg, p)), np.array([2.0]), engine="numpy")
    np.testing.assert_allclose(g, [np.sum(np.exp(-0.7 * T_DECAY))], rtol=1e-7)


@julia
@pytest.mark.parametrize("p", ["empty", "absent"])
@pytest.mark.parametrize("sensealg", ["auto", "forward", "adjoint", "backsolve"])
def test_gradient_without_parameters_on_julia(sensealg: str, p: str) -> None:
    # SciMLSensitivity needs a parameter (ForwardDiffSensitivity divides by their count, and
    # BacksolveAdjoint's ZygoteVJP rejects unread ones), while the right-hand side must still
    # see the empty p it was written for: prod(p) == 1 and B @ p == 0.  An absent p reaches the
    # traced f as None; the program Julia runs takes an empty vector all the same.
    (g,) = pz.gradient(lambda u0: np.sum(_no_parameter_solve(u0, sensealg, p)), np.array([2.0]), engine="julia")
    np.testing.assert_allclose(g, [np.sum(np.exp(-0.7 * T_DECAY))], rtol=1e-7)
    u = pz.jacobian(lambda u0: _no_parameter_solve(u0, sensealg, p)[:, 0], np.array([2.0]), engine="julia")[0]
    np.testing.assert_allclose(u[:, 0], np.exp(-0.7 * T_DECAY), rtol=1e-7)


# Right-hand sides whose derivative in u or p is Zygote's `nothing`, which SciMLSensitivity's
# ZygoteVJP refuses (ZygoteVJPNothingError): u not read (a forcing integrated over time), u read
# only through a comparison, and a p that is given but not read.
T_UNREAD = np.linspace(0.0, 1.0, 5)
UNREAD = {
    "u unread": (lambda u, p, t: p[0] * np.cos(t) * np.ones(1), np.array([0.5]), np.array([2.0])),
    "u only compared": (lambda u, p, t: np.where(u < 1.0, p[0], p[1]), np.array([0.0]), np.array([2.0, 0.5])),
    "p unread": (lambda u, p, t: -u, np.array([2.0]), np.array([1.0])),
}


def _unread_loss(case: str, sensealg: str):
    rhs, u0, p = UNREAD[case]
    return lambda u0, p: np.sum(pz.odesolve(rhs, u0, T_UNREAD, p, alg="Tsit5", sensealg=sensealg, **TIGHT) ** 2)


@pytest.mark.parametrize("case", ["u unread", "p unread"])
@pytest.mark.parametrize("sensealg", ["adjoint", "backsolve"])
def test_right_hand_side_not_reading_u_or_p_on_numpy(case: str, sensealg: str) -> None:
    rhs, u0, p = UNREAD[case]
    du0, dp = pz.gradient(_unread_loss(case, sensealg), u0, p, engine="numpy")
    if case == "u unread":  # u(t) = u0 + p sin(t)
        u = u0[0] + p[0] * np.sin(T_UNREAD)
        np.testing.assert_allclose([du0[0], dp[0]], [np.sum(2 * u), np.sum(2 * u * np.sin(T_UNREAD))], rtol=1e-8)
    else:  # u(t) = u0 exp(-t), p enters nothing
        e = np.exp(-T_UNREAD)
        np.testing.assert_allclose([du0[0], dp[0]], [np.sum(2 * u0[0] * e**2), 0.0], rtol=1e-8, atol=1e-12)


@julia
@pytest.mark.parametrize("case", sorted(UNREAD))
@pytest.mark.parametrize("sensealg", ["auto", "forward", "adjoint", "backsolve"])
def test_right_hand_side_not_reading_u_or_p_on_julia(case: str, sensealg: str) -> None:
    rhs, u0, p = UNREAD[case]
    loss = _unread_loss(case, sensealg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pz.StateSwitchWarning)  # the comparison's case: known, and the same on both
        want = pz.gradient(loss, u0, p, engine="numpy")
        got = pz.gradient(loss, u0, p, engine="julia")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)


@julia
@pytest.mark.parametrize("sensealg", ["auto", "forward", "adjoint"])
def test_hessian_through_a_solve_agrees_across_engines(sensealg: str) -> None:
    # Julia: ForwardDiff over Zygote over SciMLSensitivity; NumPy: forward mode over the sensitivity system
    t = T_LV[:41]
    data = np.cos(t)[:, None] * np.ones(2)

    def loss(p):
        return np.sum((pz.odesolve(lotka, U0_LV, t, p, alg="Tsit5", sensealg=sensealg, **TIGHT) - data) ** 2)

    h_np = pz.hessian(loss, P_LV, engine="numpy")
    h_jl = pz.hessian(loss, P_LV, engine="julia")
    np.testing.assert_allclose(h_jl, h_np, rtol=1e-6, atol=1e-6 * np.abs(h_np).max())


@julia
@pytest.mark.parametrize("alg", ["TRBDF2", "Rodas4", "KenCarp47"])
def test_other_solvers_by_name_on_julia(alg: str) -> None:
    # exported by OrdinaryDiffEq's SDIRK and Rosenbrock solver packages, which pyzygote loads
    prob = pz.ODEProblem(decay, [2.0], (0.0, 2.0), [0.7])
    sol = pz.solve(prob, alg=alg, saveat=T_DECAY, reltol=1e-8, abstol=1e-10, engine="julia")
    assert sol.retcode == "Success"
    np.testing.assert_allclose(sol.u[:, 0], 2.0 * np.exp(-0.7 * T_DECAY), rtol=1e-5)
    (g,) = pz.gradient(lambda k: pz.odesolve(decay, np.array([2.0]), T_DECAY, k, alg=alg, reltol=1e-8, abstol=1e-10)[-1, 0], np.array([0.7]), engine="julia")
    np.testing.assert_allclose(g, [-2.0 * 2.0 * np.exp(-0.7 * 2.0)], rtol=1e-4)
    with pytest.raises(pz.JuliaError, match="NoSuchSolver"):
        pz.solve(prob, alg="NoSuchSolver", engine="julia")


def _full_install_missing() -> bool:
    from pyzygote.julia.setup import julia_status

    return "Sundials" not in julia_status().direct_deps


@julia
def test_sundials_solver_by_name_after_full_setup() -> None:
    if _full_install_missing():
        pytest.skip("Sundials.jl is not installed (pyzygote setup-julia --full)")
    prob = pz.ODEProblem(decay, [2.0], (0.0, 2.0), [0.7])
    sol = pz.solve(prob, alg="CVODE_BDF", saveat=T_DECAY, reltol=1e-8, abstol=1e-10, engine="julia")
    assert sol.retcode == "Success"
    np.testing.assert_allclose(sol.u[:, 0], 2.0 * np.exp(-0.7 * T_DECAY), rtol=1e-5)


@julia
def test_matrix_state_and_dict_parameters_on_julia() -> None:
    t = np.linspace(0.0, 1.0, 4)

    def loss(u0, rates):
        return np.sum(pz.odesolve(grid_decay, u0, t, {"rates": rates, "source": 0.2}, **TIGHT) ** 2)

    want = pz.gradient(loss, U0_GRID, K_GRID, engine="numpy")
    got = pz.gradient(loss, U0_GRID, K_GRID, engine="julia")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # different solvers at reltol 1e-10, as for Lotka-Volterra
    prob = pz.ODEProblem(grid_decay, U0_GRID, (0.0, 1.0), {"rates": K_GRID, "source": 0.0})
    sol = pz.solve(prob, "Tsit5", saveat=[0.0, 1.0], engine="julia", **TIGHT)
    assert sol.u.shape == (2, 2, 3)
    np.testing.assert_allclose(sol.u[-1], U0_GRID * np.exp(-K_GRID), rtol=1e-8)


@julia
def test_integer_labels_and_masks_in_p_on_julia() -> None:
    # They are constants of the traced right-hand side: 0-based labels become 1-based reads in Julia.
    f = lambda u, p, t: np.where(p["mask"], -p["k"][p["idx"]] * u, 0.1 * u)  # noqa: E731
    t, u0 = np.linspace(0.0, 1.0, 3), np.ones(4)
    idx, mask = np.array([0, 1, 1, 2]), np.array([True, True, False, True])
    loss = lambda k: np.sum(pz.odesolve(f, u0, t, {"k": k, "idx": idx, "mask": mask}, alg="Tsit5", **TIGHT)[-1])  # noqa: E731
    k = np.array([0.5, 1.0, 2.0])
    (g,) = pz.gradient(loss, k, engine="julia")
    np.testing.assert_allclose(g, [-np.exp(-0.5), -np.exp(-1.0), -np.exp(-2.0)], rtol=1e-7)
    np.testing.assert_allclose(float(loss(k)), float(pz.withgradient(loss, k, engine="numpy")[0]), rtol=1e-8)


@julia
@pytest.mark.parametrize("sensealg", ["forward", "adjoint"])
def test_tstops_on_julia_match_the_closed_form_and_numpy(sensealg: str) -> None:
    q = np.array([0.5, 10.0])
    opts = dict(alg="Tsit5", sensealg=sensealg, reltol=1e-10, abstol=1e-12, tstops=[2.0, 2.5])
    loss = lambda q: np.sum(pz.odesolve(infusion, [0.0], T_INFUSION, q, **opts)[:, 0] ** 2)  # noqa: E731
    value, (g_jl,) = pz.withgradient(loss, q, engine="julia")
    np.testing.assert_allclose(value, np.sum(infusion_closed_form(0.5, 10.0, T_INFUSION) ** 2), rtol=1e-7)
    (g_np,) = pz.gradient(loss, q, engine="numpy")
    np.testing.assert_allclose(g_jl, g_np, rtol=1e-5)
    prob = pz.ODEProblem(infusion, [0.0], (0.0, 10.0), q)
    sol = pz.solve(prob, "Tsit5", reltol=1e-10, abstol=1e-12, tstops=[2.0, 2.5], engine="julia")
    assert 2.0 in sol.t and 2.5 in sol.t
    np.testing.assert_allclose(sol([2.25, 9.0])[:, 0], infusion_closed_form(0.5, 10.0, np.array([2.25, 9.0])), rtol=1e-7)


@julia
def test_a_constant_zero_base_in_a_right_hand_side_on_julia() -> None:
    """From the engine's zero-base test, moved here (the audit): it needs the ODE packages."""
    x = np.array([0.0, 0.5, 1.0])
    g = lambda q: np.sum(pz.odesolve(lambda u, q, t: -u + x ** q[0], np.zeros(3), np.array([0.0, 1.0]), q, sensealg="adjoint", reltol=1e-10, abstol=1e-12))  # noqa: E731
    np.testing.assert_allclose(pz.gradient(g, np.array([0.5]), engine="julia")[0], pz.gradient(g, np.array([0.5]), engine="numpy")[0], rtol=1e-6)


# --- right-hand sides that capture values being differentiated (tests/test_ode_closures.py) -------
def _captured_and_through_p(sensealg: str):
    t = np.linspace(0.0, 1.5, 7)

    def captured(w, k):  # w read from the closure, lifted as parameters after p's k
        rhs = lambda u, p, t: np.stack([u[1], -(w * u[0]) * w - p["k"] * u[1]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.stack([w, 0.0 * w]), t, {"k": k}, alg="Tsit5", sensealg=sensealg, **TIGHT) ** 2)

    def through_p(w, k):
        rhs = lambda u, p, t: np.stack([u[1], -(p["w"] * u[0]) * p["w"] - p["k"] * u[1]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.stack([w, 0.0 * w]), t, {"k": k, "w": w}, alg="Tsit5", sensealg=sensealg, **TIGHT) ** 2)

    return captured, through_p


@julia
@pytest.mark.parametrize("sensealg", ["auto", "forward", "adjoint", "backsolve"])
def test_captured_values_agree_across_engines_and_with_p(sensealg: str) -> None:
    """On Julia the lifted values are entries of the solve's p (vcat(p, lifted...)), which
    SciMLSensitivity differentiates: the same gradient as through p, and as the NumPy engine's."""
    captured, through_p = _captured_and_through_p(sensealg)
    args = (2.0, 0.3)
    g_jl = pz.gradient(captured, *args, engine="julia")
    np.testing.assert_allclose(g_jl, pz.gradient(through_p, *args, engine="julia"), rtol=1e-9)
    np.testing.assert_allclose(g_jl, pz.gradient(captured, *args, engine="numpy"), rtol=1e-6)
    # the user's example: u = cos(w t), sum u^2 has the derivative -sum t sin(2 w t)
    t = np.linspace(0.0, 1.5, 7)

    def oscillator(w):
        rhs = lambda u, p, t: np.array([u[1], -w**2 * u[0]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.array([1.0, 0.0]), t, None, alg="Tsit5", sensealg=sensealg, **TIGHT)[:, 0] ** 2)

    assert pz.gradient(oscillator, 2.0, engine="julia")[0] == pytest.approx(-np.sum(t * np.sin(4.0 * t)), rel=1e-6)


@julia
@pytest.mark.parametrize("sensealg", ["forward", "adjoint"])
def test_second_derivatives_of_captured_values_agree_across_engines(sensealg: str) -> None:
    captured, through_p = _captured_and_through_p(sensealg)
    x = np.array([2.0, 0.3])
    h_jl = pz.hessian(lambda v: captured(v[0], v[1]), x, engine="julia")
    np.testing.assert_allclose(h_jl, pz.hessian(lambda v: through_p(v[0], v[1]), x, engine="julia"), rtol=1e-8)
    np.testing.assert_allclose(h_jl, pz.hessian(lambda v: captured(v[0], v[1]), x, engine="numpy"), rtol=1e-6, atol=1e-9)
    _, t_jl = pz.jvp(lambda v: captured(v[0], v[1]), (x,), (np.array([1.0, -2.0]),), engine="julia")
    _, t_np = pz.jvp(lambda v: captured(v[0], v[1]), (x,), (np.array([1.0, -2.0]),), engine="numpy")
    assert t_jl == pytest.approx(t_np, rel=1e-6)

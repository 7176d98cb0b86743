"""Derived systems of a large implicit ODE (forward sensitivities, the tangent of a sensitivity
system in a Hessian, copies of the tangent system) have Newton matrices made of copies of the
state block: Radau and BDF factorize that block once (pyzygote.ode.block_lu), not all the
n (1 + k) equations.  Asserted by the sizes factorized, and by the derivatives against finite
differences and against other routes, never by time."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pytest
import scipy.integrate._ivp.bdf as scipy_bdf
import scipy.integrate._ivp.radau as scipy_radau
from scipy.sparse import csc_matrix, random as sparse_random

import pyzygote as pz
from pyzygote.ode import block_lu
from pyzygote.ode.rhs import RHS, sensitivity_jacobian
from pyzygote.ode.solvers import dense_matrix, integrate
from pyzygote.primitives import ode as ode_prims

N = 160  # above DENSE_STATE_JACOBIAN_UP_TO: the state Jacobian is sparse
X = np.linspace(0.0, 1.0, N)
U0 = np.exp(-((X - 0.4) ** 2) / 0.01)
TIMES = np.linspace(0.0, 0.1, 3)
P0 = np.array([0.01, 1.0, 0.4])
TOL = dict(reltol=1e-7, abstol=1e-9)


@pytest.fixture(autouse=True)
def _numpy_engine():
    with pz.engine("numpy"):
        yield


def _reaction_diffusion(u: Any, p: Any, t: Any) -> Any:
    up = np.concatenate([u[:1], u, u[-1:]])  # insulated ends
    return p[0] * (up[2:] - 2 * u + up[:-2]) * (N - 1) ** 2 + p[1] * u * (1 - u) + p[2] * np.sin(3 * t) * X


def _loss(alg: str, sensealg: str = "auto") -> Any:
    def loss(p: Any) -> Any:
        U = pz.odesolve(_reaction_diffusion, U0, TIMES, p, alg=alg, sensealg=sensealg, **TOL)
        return np.sum((U - 0.5) ** 2)

    return loss


@pytest.fixture
def factorized(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """The sizes of the sparse LU factorizations made, counted by size; ``"block"`` counts block ones."""
    sizes: collections.Counter = collections.Counter()
    for module in (scipy_radau, scipy_bdf, block_lu):
        real = module.splu

        def watched(A: Any, *args: Any, real: Any = real, module: Any = module, **kwargs: Any) -> Any:
            sizes[A.shape[0]] += 1
            if module is block_lu:
                sizes["block"] += 1
            return real(A, *args, **kwargs)

        monkeypatch.setattr(module, "splu", watched)
    return sizes


def test_derived_jacobians_say_where_their_copies_of_the_state_block_are() -> None:
    """Each group of equations holds the state Jacobian, nothing couples two groups, and the
    groups cover every equation once (sensitivities, their tangent, copies of both)."""
    rng = np.random.default_rng(0)
    J = csc_matrix(sparse_random(170, 170, density=0.03, random_state=rng) + 3.0 * np.eye(170))
    sens = sensitivity_jacobian(J, 3)
    nested = sensitivity_jacobian(sens, 2)
    for M, copies in ((sens, 4), (nested, 12)):
        groups = M.groups
        assert groups.shape == (copies, 170) and np.array_equal(groups[0], np.arange(170))
        assert np.array_equal(np.sort(groups.ravel()), np.arange(M.shape[0]))
        D = dense_matrix(M)
        for g in groups:
            np.testing.assert_array_equal(D[np.ix_(g, g)], J.toarray())
        owner = np.empty(M.shape[0], dtype=np.int64)
        owner[groups] = np.arange(copies)[:, None]
        rows, cols = np.nonzero(D)
        assert np.all(owner[rows] == owner[cols])
    # Copies of the tangent system sharing their point repeat its Jacobian, groups and all.
    base = RHS.trace(_reaction_diffusion, N, 3)
    copies = base.tangent_system(1).copies(3)
    z = np.tile(np.concatenate([U0, np.linspace(0, 1, N)]), 3)
    q = np.tile(np.concatenate([P0, [0.1, 0.2, 0.3]]), 3)
    M = copies.jacobian_u(z, q, 0.1)
    assert M.groups.shape == (6, N)
    D, Js = dense_matrix(M), dense_matrix(base.jacobian_u(U0, P0, 0.1))
    for g in M.groups:
        np.testing.assert_allclose(D[np.ix_(g, g)], Js, rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("alg", ["Rodas5P", "FBDF"])
def test_a_solve_with_repeated_blocks_factorizes_one_and_matches_the_whole(alg: str, factorized: collections.Counter) -> None:
    """A linear system of 4 copies of a sparse block (different right-hand sides) and 5 states
    that only the forcing moves, solved with the block factorization and with the whole
    matrix's: the same solution to the tolerance, and only 40 x 40 matrices factorized
    (Radau's complex one included)."""
    from scipy.sparse import block_diag

    rng = np.random.default_rng(1)
    A = -(csc_matrix(sparse_random(40, 40, density=0.1, random_state=rng)) * 5.0 + 30.0 * csc_matrix(np.eye(40)))
    # and 5 equations in no group, whose Jacobian is zero (an adjoint's parameter cotangents)
    J = block_lu.repeated(block_diag([sensitivity_jacobian(A, 3), csc_matrix((5, 5))], format="csc"), sensitivity_jacobian(A, 3).groups)
    plain = csc_matrix(J)
    forcing = np.linspace(-1.0, 1.0, 165)
    fun = lambda t, y: J @ y + forcing * np.cos(t)  # noqa: E731
    y0 = np.linspace(1.0, 2.0, 165)
    by_block = integrate(fun, 0.0, 1.0, y0, np.array([0.0, 0.5, 1.0]), alg, 1e-10, 1e-12, jac=lambda t, y: J)
    sizes = dict(factorized)
    factorized.clear()
    whole = integrate(fun, 0.0, 1.0, y0, np.array([0.0, 0.5, 1.0]), alg, 1e-10, 1e-12, jac=lambda t, y: plain)
    assert by_block.success and whole.success
    assert set(sizes) == {40, "block"} and sizes["block"] == by_block.stats["nlu"] > 0, sizes
    assert set(factorized) == {165}
    np.testing.assert_allclose(by_block.u, whole.u, rtol=1e-8, atol=1e-10)


def _hessian_fd(f: Any, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = lambda y: pz.gradient(f, y)[0]  # noqa: E731
    return np.stack([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=1)


@pytest.mark.parametrize("alg", ["Rodas5P", "FBDF"])
def test_hessian_of_a_large_implicit_solve_factorizes_state_blocks(alg: str, factorized: collections.Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward over forward (sensitivities and their tangent, 160 x 4 and 160 x 16 equations)
    and the adjoint of 3 copies of the tangent system (2 x 160 states each, and the parameters'
    cotangents) factorize nothing larger than the gradient's adjoint, n + m equations; the two
    Hessians match each other and central differences of the gradient."""
    from pyzygote.ode import sensitivity

    monkeypatch.setattr(sensitivity, "EXPLICIT_ADJOINT_STEPS", -1)  # every adjoint piece implicit, none by Tsit5
    f = _loss(alg)
    hessians = []
    for by_adjoint in (False, True):
        monkeypatch.setattr(ode_prims, "_second_order_by_adjoint", lambda *_, route=by_adjoint: route)
        factorized.clear()
        hessians.append(pz.hessian(f, P0))
        assert factorized["block"] > 0 and max(s for s in factorized if s != "block") <= N + len(P0), factorized
    fof, H = hessians
    scale = np.abs(H).max()
    np.testing.assert_allclose(H, H.T, atol=1e-7 * scale)
    np.testing.assert_allclose(H, fof, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(H, _hessian_fd(f, P0), rtol=1e-5, atol=1e-6 * scale)


def test_second_derivatives_of_a_large_implicit_solve_take_the_adjoint_of_the_tangent_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a sparse state Jacobian, whatever the number of directions: forward over forward
    integrates n (1 + k)^2 equations, the copies of the tangent system 2 n k."""
    from pyzygote.ode.sensitivity import Options

    route = ode_prims._second_order_by_adjoint
    for alg in ("Rodas5P", "FBDF", "KenCarp4", "auto"):
        assert route(N, 3, Options(alg, 1e-8, 1e-8), "adjoint")
        assert not route(N, 3, Options(alg, 1e-8, 1e-8), "forward") and not route(100, 3, Options(alg, 1e-8, 1e-8), "adjoint")
    assert not route(N, 3, Options("Tsit5", 1e-8, 1e-8), "adjoint")
    # sensealg="auto" is the adjoint there, for the gradient and so for its tangent
    seen = []
    real = ode_prims.odesolve_hvp_p.bind
    monkeypatch.setattr(ode_prims.odesolve_hvp_p, "bind", lambda *a, **k: seen.append(k["sensealg"]) or real(*a, **k))
    f, v, h = _loss("Rodas5P"), np.array([1.0, -1.0, 0.5]), 1e-5
    _, hv = pz.jvp(pz.grad(f), (P0,), (v,))
    assert seen == ["adjoint"]
    g = lambda p: pz.gradient(f, p)[0]  # noqa: E731
    fd = (g(P0 + h * v) - g(P0 - h * v)) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_forward_sensitivities_of_a_large_implicit_solve_factorize_the_state_block(factorized: collections.Counter) -> None:
    (forward,) = pz.gradient(_loss("Rodas5P", "forward"), P0)
    assert factorized["block"] > 0 and max(s for s in factorized if s != "block") == N, factorized
    (adjoint,) = pz.gradient(_loss("Rodas5P", "adjoint"), P0)
    np.testing.assert_allclose(forward, adjoint, rtol=1e-6, atol=1e-8 * np.abs(adjoint).max())


def test_hessian_at_the_first_sparse_size_with_tstops_and_several_saves(factorized: collections.Counter) -> None:
    """Review: 151 states (the first with a sparse state Jacobian), alg="auto" (its Hessian by the
    adjoint of the tangent system, with Rodas5P), tstops inside the span and five save times the
    adjoint restarts at: the block factorization is used, and the Hessian matches central
    differences of the gradient."""
    n = 151
    x = np.linspace(0.0, 1.0, n)

    def rhs(u: Any, p: Any, t: Any) -> Any:
        up = np.concatenate([u[:1], u, u[-1:]])
        return p[0] * (up[2:] - 2 * u + up[:-2]) * (n - 1) ** 2 + p[1] * u * (1 - u) + p[2] * np.sin(3 * t) * x

    u0 = np.exp(-((x - 0.4) ** 2) / 0.01)

    def loss(p: Any) -> Any:
        # tighter than TOL: at reltol=1e-7 the gradients' differences are 5e-5 off in H[0, 0]
        # (the Hessian is not: it agrees with itself at reltol=1e-10 to 3e-8)
        U = pz.odesolve(rhs, u0, np.linspace(0.0, 0.05, 5), p, alg="auto", tstops=np.array([0.013, 0.031]), reltol=1e-10, abstol=1e-12)
        return np.sum((U[1:] - 0.5) ** 2 * x) + 0.01 * np.sum(U[-1] ** 3)

    H = pz.hessian(loss, P0)
    assert factorized["block"] > 0 and max(s for s in factorized if s != "block") <= n + len(P0), factorized
    scale = np.abs(H).max()
    np.testing.assert_allclose(H, H.T, atol=1e-7 * scale)
    np.testing.assert_allclose(H, _hessian_fd(loss, P0), rtol=1e-5, atol=1e-6 * scale)

"""Large state systems on the NumPy engine: the Jacobian of a right-hand side with many states is
derived without positions per column (pyzygote.primitives.indexing), and handed to the implicit
solvers as a scipy.sparse matrix where it is mostly zeros (pyzygote.ode.rhs)."""

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.ode.rhs import RHS
from pyzygote.ode.solvers import dense_matrix
from pyzygote.primitives import indexing


def _heat1d(u, p, t):
    du = np.zeros_like(u)
    du[1:-1] = p[0] * (u[2:] - 2 * u[1:-1] + u[:-2])
    du[0] = p[0] * (u[1] - u[0])
    du[-1] = p[0] * (u[-2] - u[-1])
    return du


def _laplacian_1d(n: int, c: float) -> np.ndarray:
    L = np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    L[0, 0] = L[-1, -1] = -1.0
    return c * L


def test_a_batch_gathered_column_by_column_builds_the_positions_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past _BATCHED_POSITIONS_AT_MOST, gathers of the Jacobian's columns are traced one column at a
    time, x[i] of the batched array; each built an arange of the whole batch (a stiff solve of
    2,000 states spent 9 of its 18 s there).  The Jacobian is the same."""
    monkeypatch.setattr(indexing, "_BATCHED_POSITIONS_AT_MOST", 16)
    built = []
    original = indexing.element_positions
    monkeypatch.setattr(indexing, "element_positions", lambda shape: built.append(shape) or original(shape))
    n = 30
    rhs = RHS.trace(_heat1d, n, 1)
    J = dense_matrix(rhs.jacobian_u(np.linspace(0, 1, n), np.array([0.7]), 0.0))
    np.testing.assert_array_equal(J, _laplacian_1d(n, 0.7))
    batched = [s for s in built if len(s) == 2 and s[0] == n]
    assert len(batched) <= len(set(batched)) and len(built) < n, built


def _grid(u, p, t):
    """A 2D heat grid as a user writes it: fluxes by item assignment, a conductivity per block
    from parameters, a switch in t and a Robin face (the acceptance tester's model, smaller)."""
    T = np.reshape(u, (12, 12))
    k = np.repeat(np.repeat(np.exp(p[:4].reshape(2, 2)), 6, axis=0), 6, axis=1)
    kx = 2 * k[1:, :] * k[:-1, :] / (k[1:, :] + k[:-1, :])
    Fx = np.zeros_like(T, shape=(13, 12))
    Fx[1:-1, :] = -kx * (T[1:, :] - T[:-1, :])
    Fx[0, :] = np.where(t < 0.5, 2.0, 0.0)
    Fx[-1, :] = np.exp(p[4]) * (T[-1, :] - 1.0)
    Fy = np.concatenate([0.0 * T[:, :1], -(T[:, 1:] - T[:, :-1]) * np.maximum(T[:, 1:], 0.5), 0.0 * T[:, :1]], axis=1)
    return np.ravel(-((Fx[1:, :] - Fx[:-1, :]) + (Fy[:, 1:] - Fy[:, :-1])))


_L80 = _laplacian_1d(80, 1.0)


MODELS = {
    "heat 1-D, item assignment": (_heat1d, 80, np.array([0.7])),
    "2-D grid, blocks, np.where, np.maximum, concatenate": (_grid, 144, np.array([0.1, -0.2, 0.3, 0.0, 0.5])),
    "a constant stencil matrix": (lambda u, p, t: p[0] * (_L80 @ u) - u**3, 80, np.array([2.0])),
    "np.roll and a sum over a window": (lambda u, p, t: p[0] * (np.roll(u, 1) - u) + np.sum(u[:3]) * np.sin(u), 90, np.array([1.5])),
}


@pytest.fixture
def sparse_from_64(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Sparse state Jacobians from 65 states (DENSE_STATE_JACOBIAN_UP_TO is 150), so that the
    models here stay small; what was traced with it is forgotten after."""
    from pyzygote.ode import rhs as rhs_module

    monkeypatch.setattr(rhs_module, "DENSE_STATE_JACOBIAN_UP_TO", 64)
    pz.clear_cache()
    yield
    pz.clear_cache()


@pytest.mark.parametrize("name", list(MODELS))
def test_large_sparse_jacobians_are_sparse_with_the_dense_ones_entries(name: str, sparse_from_64) -> None:  # type: ignore[no-untyped-def]
    """Above DENSE_STATE_JACOBIAN_UP_TO states, a Jacobian whose structure is mostly zeros comes from
    one Jacobian-vector product per colour of columns, as a scipy.sparse matrix: its entries are
    the dense Jacobian's (the program that gives all n columns), at points where the branches of
    np.where and np.maximum differ."""
    f, n, p = MODELS[name]
    rhs = RHS.trace(f, n, len(p))
    rng = np.random.default_rng(5)
    for t in (0.2, 0.8):
        u = rng.normal(size=n)
        J = rhs.jacobian_u(u, p, t)
        assert not isinstance(J, np.ndarray) and J.shape == (n, n)
        dense = rhs._get("jac", rhs._jacobian_program)(u, p, t)[0]
        np.testing.assert_allclose(J.toarray(), dense, rtol=1e-14, atol=1e-14)
        assert J.nnz <= 0.1 * n * n
    assert rhs._derived["coloured jacobian program"] is not None


def test_dense_and_small_jacobians_stay_dense() -> None:
    """A sum over all states couples each to every other: dense, as is any system of at most
    DENSE_STATE_JACOBIAN_UP_TO (150) states (a dense LU is faster there)."""
    coupled = RHS.trace(lambda u, p, t: -p[0] * u + np.mean(u), 300, 1)
    assert isinstance(coupled.jacobian_u(np.ones(300), np.array([1.0]), 0.0), np.ndarray)
    for n in (150, 151):
        J = RHS.trace(_heat1d, n, 1).jacobian_u(np.ones(n), np.array([0.7]), 0.0)
        assert isinstance(J, np.ndarray) == (n == 150)
        np.testing.assert_array_equal(dense_matrix(J), _laplacian_1d(n, 0.7))


@pytest.fixture
def dense_everywhere(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Gives the state systems traced after it their dense Jacobian, as before sparse ones
    (derived systems keep theirs); those traced during the test are forgotten after it."""

    def switch() -> None:
        monkeypatch.setattr(RHS, "_coloured_jacobian", lambda self: None)
        pz.clear_cache()

    yield switch
    pz.clear_cache()


@pytest.mark.parametrize("alg", ["FBDF", "Rodas5P", "auto"])
def test_solutions_and_gradients_with_the_sparse_jacobian_are_the_dense_ones(alg: str, sparse_from_64, dense_everywhere) -> None:  # type: ignore[no-untyped-def]
    """The Jacobian only steers the Newton iterations: solves and gradients (forward and adjoint)
    agree with those made with the dense one to the tolerance.  LSODA (auto) gets the band."""
    p0 = np.array([0.1, -0.2, 0.3, 0.0, 0.5])
    u0 = np.linspace(0.0, 1.0, 144)
    t = np.linspace(0.0, 1.0, 5)
    tight = dict(reltol=1e-10, abstol=1e-12, tstops=[0.5])

    def run() -> tuple[np.ndarray, ...]:
        U = pz.odesolve(_grid, u0, t, p0, alg=alg, **tight)
        loss = lambda p, s: np.sum(pz.odesolve(_grid, u0, t, p, alg=alg, sensealg=s, **tight)[-1] ** 2)  # noqa: E731
        return U, pz.gradient(loss, p0, "forward")[0], pz.gradient(loss, p0, "adjoint")[0]

    pz.clear_cache()
    sparse = run()
    rhs = RHS.trace(_grid, 144, 5)
    assert not isinstance(rhs.jacobian_u(u0, p0, 0.0), np.ndarray)
    dense_everywhere()
    assert isinstance(RHS.trace(_grid, 144, 5).jacobian_u(u0, p0, 0.0), np.ndarray)
    dense = run()
    for a, b in zip(sparse, dense):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(sparse[1], sparse[2], rtol=1e-6)


def test_lsoda_gets_the_band_of_a_banded_jacobian(sparse_from_64) -> None:  # type: ignore[no-untyped-def]
    """LSODA takes only dense or banded Jacobians: a 1-D stencil's comes banded (lband = uband =
    1), in LAPACK's packed form; a 2-D grid's numbering makes its band the grid's width."""
    from pyzygote.ode.solvers import _lsoda_jacobian

    for f, n, p, width in ((_heat1d, 80, np.array([0.7]), 1), (_grid, 144, np.array([0.1, -0.2, 0.3, 0.0, 0.5]), 12)):
        rhs = RHS.trace(f, n, len(p))
        jac = lambda t, u: rhs.jacobian_u(u, p, t)  # noqa: E731, B023
        u = np.random.default_rng(1).normal(size=n)
        kw = _lsoda_jacobian(jac, 0.0, u)
        assert (kw["lband"], kw["uband"]) == (width, width)
        J = jac(0.3, u).toarray()
        packed = kw["jac"](0.3, u)
        for i, j in zip(*np.nonzero(np.abs(np.arange(n)[:, None] - np.arange(n)) <= width)):
            assert packed[width + i - j, j] == J[i, j]
        assert np.count_nonzero(J) == np.count_nonzero(packed)
    coupled = RHS.trace(lambda u, p, t: -p[0] * u + np.mean(u), 100, 1)
    assert set(_lsoda_jacobian(lambda t, u: coupled.jacobian_u(u, np.array([1.0]), t), 0.0, np.ones(100))) == {"jac"}
    # A sparse matrix made from values (a derived system's) holds its nonzeros at this point only:
    # they may leave any band later, so it is dense for LSODA.
    from scipy.sparse import csc_matrix

    assert set(_lsoda_jacobian(lambda t, u: csc_matrix(np.diag(u)), 0.0, np.ones(100))) == {"jac"}


# A Brusselator on a 10 x 10 grid (200 states), stored species-first, u of shape (2, 10, 10):
# the two species of a cell are 100 states apart, half the system, so as numbered its Jacobian's
# band is too wide for LSODA; renumbered (reverse Cuthill-McKee) it is the grid-first one's.
_NB = 10


def _laplacian_2d(a):  # type: ignore[no-untyped-def]
    ap = np.pad(a, 1, mode="edge")
    return (ap[2:, 1:-1] + ap[:-2, 1:-1] + ap[1:-1, 2:] + ap[1:-1, :-2] - 4 * a) * (_NB - 1) ** 2


def _brusselator(a, b, p):  # type: ignore[no-untyped-def]
    return p[0] + a * a * b - (p[1] + 1) * a + p[2] * _laplacian_2d(a), p[1] * a - a * a * b + p[2] * _laplacian_2d(b)


def _species_first(u, p, t):  # type: ignore[no-untyped-def]
    return np.stack(_brusselator(u[0], u[1], p))


def _grid_first(u, p, t):  # type: ignore[no-untyped-def]
    return np.stack(_brusselator(u[..., 0], u[..., 1], p), axis=-1)


_X, _Y = np.meshgrid(np.linspace(0, 1, _NB), np.linspace(0, 1, _NB), indexing="ij")
_BRU_U0 = np.stack([1.0 + 0.5 * np.sin(2 * np.pi * _X) * np.cos(np.pi * _Y), 3.0 + 0.2 * _X])
_BRU_P = np.array([1.0, 3.0, 0.02])
_BRU_T = np.linspace(0.0, 1.0, 6)


@pytest.fixture
def lsoda_bands(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The (states, lband, uband) of every SciPy LSODA the NumPy engine starts (None for a dense Jacobian)."""
    import scipy.integrate

    seen = []

    class Watched(scipy.integrate.LSODA):  # type: ignore[misc]
        def __init__(self, fun, t0, y0, t_bound, **kw):  # type: ignore[no-untyped-def]
            seen.append((len(y0), kw.get("lband"), kw.get("uband")))
            super().__init__(fun, t0, y0, t_bound, **kw)

    monkeypatch.setattr(scipy.integrate, "LSODA", Watched)
    return seen


def test_lsoda_renumbers_the_states_of_a_species_first_grid_into_a_narrow_band() -> None:
    """As numbered, the species-first Brusselator's band is 100 on each side of 200 states: LSODA
    got the dense Jacobian.  Reverse Cuthill-McKee renumbers the states into a band of 2 x 10 (the
    grid-first numbering's), and the packed band holds the renumbered Jacobian's entries."""
    from pyzygote.ode.solvers import _lsoda_jacobian

    n = 2 * _NB * _NB
    rhs = RHS.trace(lambda u, p, t: np.ravel(_species_first(np.reshape(u, (2, _NB, _NB)), p, t)), n, 3)
    jac = lambda t, u: rhs.jacobian_u(u, _BRU_P, t)  # noqa: E731
    u = np.ravel(_BRU_U0) + np.random.default_rng(2).normal(size=n)
    kw = _lsoda_jacobian(jac, 0.0, u)
    order = kw["order"]
    assert sorted(order.tolist()) == list(range(n))
    assert kw["lband"] + kw["uband"] + 1 <= 0.25 * n and max(kw["lband"], kw["uband"]) <= 2 * _NB
    J = jac(0.3, u).toarray()[np.ix_(order, order)]  # the renumbered system's Jacobian
    packed = kw["jac"](0.3, u[order])
    for i, j in zip(*np.nonzero(J)):
        assert packed[kw["uband"] + i - j, j] == J[i, j]
    assert np.count_nonzero(J) == np.count_nonzero(packed)
    # whatever the order of the states: the same grid, its states shuffled
    shuffle = np.random.default_rng(3).permutation(n)
    back = np.argsort(shuffle)
    shuffled = RHS.trace(lambda u, p, t: np.ravel(_species_first(np.reshape(u[back], (2, _NB, _NB)), p, t))[shuffle], n, 3)
    kw = _lsoda_jacobian(lambda t, u: shuffled.jacobian_u(u, _BRU_P, t), 0.0, u[shuffle])
    assert max(kw["lband"], kw["uband"]) <= 2 * _NB + 1


def test_lsoda_renumbers_a_band_that_renumbering_narrows_enough() -> None:
    """Forward sensitivities of the grid-first layout: kron(J_u, I_3) numbered row by row has a
    band 3 times J_u's, within a quarter of the 800 equations; renumbered, 1 + 3 copies of J_u's
    pattern side by side, it is J_u's band (a factorization costs about n width^2).  The grid's
    own band, which renumbering does not narrow, is kept as numbered."""
    from pyzygote.ode.rhs import sensitivity_jacobian
    from pyzygote.ode.solvers import _lsoda_jacobian

    n = 2 * _NB * _NB
    grid = RHS.trace(lambda u, p, t: np.ravel(_grid_first(np.reshape(u, (_NB, _NB, 2)), p, t)), n, 3)
    u = np.ravel(np.moveaxis(_BRU_U0, 0, -1))
    own = _lsoda_jacobian(lambda t, u: grid.jacobian_u(u, _BRU_P, t), 0.0, u)
    assert "order" not in own and own["lband"] == own["uband"] == 2 * _NB
    sens = lambda t, z: sensitivity_jacobian(grid.jacobian_u(z[:n], _BRU_P, t), 3)  # noqa: E731
    J = sens(0.0, np.concatenate([u, np.zeros(3 * n)])).tocoo()
    assert np.max(J.row - J.col) == 3 * 2 * _NB and 2 * 3 * 2 * _NB + 1 <= 0.25 * 4 * n
    kw = _lsoda_jacobian(sens, 0.0, np.concatenate([u, np.zeros(3 * n)]))
    assert "order" in kw and max(kw["lband"], kw["uband"]) <= 2 * _NB + 1
    z = np.concatenate([u, np.random.default_rng(4).normal(size=3 * n)])
    packed, order = kw["jac"](0.2, z[kw["order"]]), kw["order"]
    renumbered = sens(0.2, z).toarray()[np.ix_(order, order)]
    for i, j in zip(*np.nonzero(renumbered)):
        assert packed[kw["uband"] + i - j, j] == renumbered[i, j]


def test_auto_solves_a_species_first_grid_banded_with_the_grid_first_solution(lsoda_bands) -> None:  # type: ignore[no-untyped-def]
    """alg='auto' (LSODA) solves the species-first grid with a band of at most 2 x 10 (its states
    renumbered), to the same solution as the grid-first layout (the same system, numbered so)
    and as Rodas5P at tight tolerances; its dense output is read back in the user's numbering."""
    tight = dict(reltol=1e-10, abstol=1e-12)
    U = pz.odesolve(_species_first, _BRU_U0, _BRU_T, _BRU_P, alg="auto", **tight)
    solves = [(lb, ub) for n, lb, ub in lsoda_bands if n == 200]  # (SciPy's leak check starts one of 2 states)
    assert solves and all(lb is not None and lb <= 2 * _NB and ub <= 2 * _NB for lb, ub in solves)
    G = pz.odesolve(_grid_first, np.moveaxis(_BRU_U0, 0, -1), _BRU_T, _BRU_P, alg="auto", **tight)
    np.testing.assert_allclose(U, np.moveaxis(G, -1, 1), rtol=1e-8, atol=1e-9)
    R = pz.odesolve(_species_first, _BRU_U0, _BRU_T, _BRU_P, alg="Rodas5P", reltol=1e-11, abstol=1e-13)
    np.testing.assert_allclose(U, R, rtol=1e-7, atol=1e-8)
    sol = pz.solve(pz.ODEProblem(_species_first, _BRU_U0, (0.0, 1.0), _BRU_P), alg="auto", **tight)
    np.testing.assert_allclose(sol(0.55), pz.odesolve(_species_first, _BRU_U0, np.array([0.0, 0.55]), _BRU_P, alg="Rodas5P", reltol=1e-11, abstol=1e-13)[-1], rtol=1e-6, atol=1e-7)


def test_auto_gradients_of_a_species_first_grid_are_banded_and_agree(lsoda_bands) -> None:  # type: ignore[no-untyped-def]
    """The adjoint of alg='auto' (sensealg='auto' takes it here: an implicit solver above 150
    states) gives LSODA the band of -J_u^T, its states renumbered as the ODE's, the parameters'
    rows empty (the dense (n + m) Jacobian before); forward sensitivities give it the band of their
    system's Jacobian, block-diagonal in 1 + k copies of J_u's pattern (dense before, BDF above
    1,000 equations).  The gradients agree with each other and with FBDF's adjoint."""

    def loss(p, alg, sensealg):  # type: ignore[no-untyped-def]
        U = pz.odesolve(_species_first, _BRU_U0, _BRU_T, p, alg=alg, sensealg=sensealg, reltol=1e-9, abstol=1e-11)
        return np.sum(U[:, 0, 2:5, 3:7] ** 2) + np.sum(U[-1, 1]) ** 2

    (adjoint,) = pz.gradient(lambda p: loss(p, "auto", "auto"), _BRU_P)
    backward = [(n, lb, ub) for n, lb, ub in lsoda_bands if n == 203]
    assert backward and all(lb is not None and lb <= 2 * _NB and ub <= 2 * _NB for _, lb, ub in backward)
    (forward,) = pz.gradient(lambda p: loss(p, "auto", "forward"), _BRU_P)
    # forward sensitivities: 200 (1 + 3) equations, 4 copies of J's pattern, each renumbered into its band
    sensitivities = [(lb, ub) for n, lb, ub in lsoda_bands if n == 800]
    assert sensitivities and all(lb is not None and lb <= 2 * _NB and ub <= 2 * _NB for lb, ub in sensitivities)
    (fbdf,) = pz.gradient(lambda p: loss(p, "FBDF", "adjoint"), _BRU_P)
    np.testing.assert_allclose(adjoint, forward, rtol=5e-7)
    np.testing.assert_allclose(adjoint, fbdf, rtol=2e-6)

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

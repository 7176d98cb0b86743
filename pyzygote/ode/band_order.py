"""LSODA on a large sparse system whose states, as numbered, put the Jacobian's entries far from
its diagonal: the states renumbered (reverse Cuthill-McKee) so that they lie in a narrow band.

LSODA takes a Jacobian dense or banded, nothing else.  A 2-D reaction-diffusion grid stored
species-first (``u`` of shape ``(2, N, N)``) couples state i to state i + N^2 (the other species
in the same cell), so its band is half the system: LSODA got the dense Jacobian and a 40 x 40
grid took 16 s to solve where the same model stored cell by cell (``(N, N, 2)``, band 2N) took
0.4 s.  Renumbered, the species-first system has that band too.  The renumbering is LSODA's
business only: :class:`Renumbered` gives the solver the renumbered system and reads its states,
dense output and Nordsieck array back in the caller's numbering, so every system that goes
through :func:`pyzygote.ode.solvers.integrate` (the ODE, its sensitivities, its adjoint) is
renumbered by its own Jacobian's pattern, and nothing outside sees it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.integrate import DenseOutput

__all__ = ["narrow_order", "Renumbered"]


def narrow_order(rows: np.ndarray, cols: np.ndarray, n: int, most: float) -> tuple[np.ndarray, int, int] | None:
    """``(order, lband, uband)``: new state i is old state ``order[i]``, and the entries
    ``(rows, cols)`` lie ``lband`` below and ``uband`` above the diagonal once renumbered; None
    when even so the band would be wider than ``most`` states."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    ones = np.ones(rows.size, dtype=np.int8)
    graph = csr_matrix((np.concatenate([ones, ones]), (np.concatenate([rows, cols]), np.concatenate([cols, rows]))), shape=(n, n))
    order = np.asarray(reverse_cuthill_mckee(graph, symmetric_mode=True), dtype=np.int64)
    position = np.argsort(order)
    new_rows, new_cols = position[rows], position[cols]
    lband, uband = int(max(0, np.max(new_rows - new_cols))), int(max(0, np.max(new_cols - new_rows)))
    if lband + uband + 1 > most:
        return None
    return order, lband, uband


class Renumbered:
    """A SciPy solver stepping the states in ``order`` (new i is old ``order[i]``), read back in
    the caller's numbering: ``y``, ``dense_output()``; everything else (``t``, ``status``,
    ``step_size``, ``njev``, LSODA's istate and work arrays) is the solver's own."""

    def __init__(self, solver: Any, order: np.ndarray):
        self._solver, self._position = solver, np.argsort(order)

    @staticmethod
    def problem(fun: Callable[[float, np.ndarray], np.ndarray], y0: np.ndarray, atol: Any, order: np.ndarray) -> tuple[Any, np.ndarray, Any]:
        """The right-hand side, initial state and absolute tolerance of the renumbered system."""
        position = np.argsort(order)

        def renumbered(t: float, v: np.ndarray) -> np.ndarray:
            return np.asarray(fun(t, v[position]))[order]

        atol = np.asarray(atol, dtype=float)
        return renumbered, np.asarray(y0, dtype=float)[order], atol[order] if atol.ndim else atol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._solver, name)

    def step(self) -> Any:
        return self._solver.step()

    @property
    def y(self) -> np.ndarray:
        return self._solver.y[self._position]

    def dense_output(self) -> DenseOutput:
        return _RenumberedDense(self._solver.dense_output(), self._position)


class _RenumberedDense(DenseOutput):
    """A step's interpolant in the caller's numbering (``yh``, LSODA's Nordsieck array, too: the
    adjoint's tolerances read each state's size from it)."""

    def __init__(self, inner: Any, position: np.ndarray):
        super().__init__(inner.t_old, inner.t)
        self._inner, self._position = inner, position

    def _call_impl(self, t: np.ndarray) -> np.ndarray:
        return self._inner._call_impl(t)[self._position]

    @property
    def yh(self) -> Any:
        yh = getattr(self._inner, "yh", None)
        return None if yh is None else yh[self._position]

"""Newton matrices of derived systems factorized one state block at a time.

The Jacobian an implicit solver gets for a derived system (forward sensitivities
``[u, S]``, the tangent of a sensitivity system in a Hessian, copies of the tangent
system) is, up to a permutation of its equations, copies of the ODE's own Jacobian
``J`` on its diagonal: :func:`pyzygote.ode.rhs.sensitivity_jacobian` leaves out the
blocks below it.  Radau's and BDF's Newton matrices ``c1 I - c2 J`` then are copies of
one ``b x b`` block, and one ``splu`` of it (with one solve for all copies' right-hand
sides together) does what ``splu`` of the whole ``r b`` equations did: on a 2-D
reaction-diffusion grid of 196 states with 12 parameters (a Hessian's 33,124 equations)
that whole factorization was three quarters of the Hessian's time.

:class:`RepeatedBlocks` is a sparse Jacobian that says where its copies are;
:func:`install` gives a SciPy Radau or BDF solver the factorization that reads it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.sparse import csc_matrix, issparse

from pyzygote.ode.sparsity import StructuralJacobian

__all__ = ["RepeatedBlocks", "repeated", "groups_of", "install", "BlockLU"]


class RepeatedBlocks(csc_matrix):
    """A sparse Jacobian whose equations fall into groups (the rows of ``groups``, (r, b) indices)
    such that it is the same ``b x b`` block within each group and zero between groups (the
    first group is ``0 .. b - 1``); equations in no group (an adjoint's parameter cotangents,
    which its sparse Jacobian leaves out) have zero rows and columns.  The claim is made by whoever
    builds it (kron and block_diag of one matrix), not checked; an operation on it gives a plain
    matrix, without the claim."""

    groups: np.ndarray


class StructuralRepeatedBlocks(RepeatedBlocks, StructuralJacobian):
    """Repeated blocks holding an entry at each place of a structural pattern, zero or not
    (the derived systems of a :class:`pyzygote.ode.sparsity.StructuralJacobian`)."""


def repeated(M: Any, groups: np.ndarray, structural: bool = False) -> RepeatedBlocks:
    """``M`` (sparse) as a :class:`RepeatedBlocks` with these ``groups``; ``structural`` when ``M``
    keeps every place of a structural pattern (LSODA's band needs that)."""
    out = (StructuralRepeatedBlocks if structural else RepeatedBlocks)(M)
    out.groups = np.asarray(groups, dtype=np.int64)
    return out


def groups_of(J: Any) -> np.ndarray:
    """The groups of ``J``: its own if it is a :class:`RepeatedBlocks`, else one group of all its equations."""
    groups = getattr(J, "groups", None)
    return groups if groups is not None else np.arange(np.shape(J)[0], dtype=np.int64)[None, :]


class BlockLU:
    """The LU factorization of a Newton matrix of repeated blocks: ``splu`` of its first block."""

    def __init__(self, lu: Any, groups: np.ndarray, complex_lu: bool, rest: np.ndarray, diagonal: np.ndarray):
        self.lu, self.groups, self.complex_lu = lu, groups, complex_lu
        self.rest, self.diagonal = rest, diagonal  # equations in no group, where the matrix is diagonal

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        R = np.asarray(rhs)[self.groups]  # (r, b): one column of right-hand sides per copy
        if np.iscomplexobj(R) and not self.complex_lu:
            X = self.lu.solve(np.ascontiguousarray(R.real.T)) + 1j * self.lu.solve(np.ascontiguousarray(R.imag.T))
        else:
            X = self.lu.solve(np.ascontiguousarray(R.T))
        out = np.empty(np.shape(rhs), dtype=X.dtype)
        out[self.groups] = X.T
        if self.rest.size:
            out[self.rest] = np.asarray(rhs)[self.rest] / self.diagonal
        return out


def splu(A: Any) -> Any:
    """SciPy's ``splu`` as its Radau and BDF call it (a name of this module, so tests can watch it)."""
    from scipy.sparse.linalg import splu as scipy_splu

    return scipy_splu(A)


def install(solver: Any, latest: list[Any]) -> None:
    """Give a SciPy Radau or BDF ``solver`` block factorizations: ``latest[0]`` holds the groups of
    the Jacobian it was last given (None for one without them), so a Newton matrix built from it
    (``c1 I - c2 J``: the solver always factorizes one built from its latest Jacobian) is
    factorized by its first block.  Solvers or Jacobians of other kinds keep SciPy's own."""
    if not (hasattr(solver, "lu") and hasattr(solver, "solve_lu")):
        return
    plain_lu: Callable[[Any], Any] = solver.lu
    plain_solve: Callable[[Any, Any], Any] = solver.solve_lu

    def lu(A: Any) -> Any:
        groups = latest[0]
        if groups is None or groups.shape[0] < 2 or not issparse(A) or A.shape[0] < groups.size:
            return plain_lu(A)
        solver.nlu += 1
        b = groups.shape[1]
        rest = np.zeros(0, dtype=np.int64)
        if A.shape[0] > groups.size:
            in_none = np.ones(A.shape[0], dtype=bool)
            in_none[groups] = False
            rest = np.flatnonzero(in_none)
        diagonal = A.diagonal()[rest] if rest.size else rest
        return BlockLU(splu(csc_matrix(A[:b, :b])), groups, np.iscomplexobj(A.data), rest, diagonal)

    def solve_lu(LU: Any, rhs: Any) -> Any:
        return LU.solve(rhs) if isinstance(LU, BlockLU) else plain_solve(LU, rhs)

    solver.lu, solver.solve_lu = lu, solve_lu

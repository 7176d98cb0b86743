"""Which save times of an ODE solution a program reads, for ``sensealg="auto"``.

The adjoint's backward solve restarts only at save times whose cotangent is not zero
(:func:`pyzygote.ode.sensitivity._interpolating_adjoint`), so a loss that reads the solution at a
few of its save times (the last state; the last ten years of a 300-year monthly solve) costs it
few restarts, however many save times there are.  This follows the elements of a solve's result
through the primitives that only move elements (indexing, reshapes, transposes, concatenations,
broadcasts: those whose scalar rule is :func:`pyzygote.transforms.scalarize.rearrangement`) to
the first operation that computes with them; the rows those elements came from are the ones read.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda k: pz.odesolve(lambda u, p, t: -p * u, np.ones(2), np.linspace(0, 1, 6), k)[-1, 0], 1.0)
>>> solve = next(e for e in prog.eqns if e.prim.name == "odesolve")
>>> rows_read(prog, solve.outputs[0]).nonzero()[0].tolist()
[5]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.ir import Program, Var

__all__ = ["rows_read"]

# Larger results are taken as read whole: following them costs an int64 per element.
MAX_FOLLOWED = 10_000_000


def rows_read(prog: Program, var: Var) -> np.ndarray:
    """A boolean per row (entry of the leading axis) of ``var``: whether ``prog`` reads any of its elements."""
    from pyzygote.transforms.scalarize import rearrangement

    shape = var.aval.shape
    rows = shape[0]
    if var.aval.size > MAX_FOLLOWED or var.aval.size == 0:
        return np.ones(rows, dtype=bool)
    per_row = var.aval.size // rows
    read = np.zeros(rows, dtype=bool)
    # the position in var of each element of each value followed (-1: from elsewhere)
    followed: dict[int, np.ndarray] = {var.uid: np.arange(var.aval.size, dtype=np.int64).reshape(shape)}

    def mark(positions: np.ndarray) -> None:
        at = positions[positions >= 0]
        read[np.unique(at // per_row)] = True

    for eqn in prog.eqns:
        ins = [followed.get(a.uid) if isinstance(a, Var) else None for a in eqn.inputs]
        if all(x is None for x in ins):
            continue
        if eqn.prim.scalar is rearrangement and len(eqn.outputs) == 1:
            operands = [np.full(a.aval.shape, -1, dtype=np.int64) if x is None else x for a, x in zip(eqn.inputs, ins)]
            moved = np.asarray(eqn.prim.impl(*operands, **eqn.params))
            if moved.dtype == np.int64 and moved.shape == eqn.outputs[0].aval.shape:
                followed[eqn.outputs[0].uid] = moved
                continue
        for x in ins:
            if x is not None:
                mark(x)
    for a in prog.outputs:
        if isinstance(a, Var) and a.uid in followed:
            mark(followed[a.uid])
    return read


def saves_read(prog: Any, eqn: Any) -> int | None:
    """How many save times of the solve ``eqn`` of ``prog`` the adjoint would stop at (its first
    time, and the later ones ``prog`` reads), or None when ``prog`` is unknown."""
    if prog is None or eqn is None:
        return None
    key = ("saves read", eqn.outputs[0].uid)
    hit = prog._compiled.get(key)
    if hit is None:
        read = rows_read(prog, eqn.outputs[0])
        hit = prog._compiled[key] = 1 + int(np.count_nonzero(read[1:]))
    return hit

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
    return _follow(prog, [var])[var.uid]


def _follow(prog: Program, vars_: list[Var]) -> dict[int, np.ndarray]:
    """:func:`rows_read` for each of ``vars_`` (results of distinct equations), in one pass over ``prog``.

    Each followed element carries its own number among all of theirs (the values of ``vars_``
    numbered one after another), so one pass serves every solve of a program however its values
    mix (a concatenation of two solves' rows): a pass per solve made a gradient through many
    chained solves (1,680 in a population model, acceptance testing) cost their square.
    """
    from pyzygote.transforms.scalarize import rearrangement

    read = {v.uid: np.ones(v.aval.shape[0], dtype=bool) for v in vars_}
    starts, owners, followed = [], [], {}
    total = 0
    for v in vars_:
        size = v.aval.size
        if size == 0 or total + size > MAX_FOLLOWED:
            continue  # read whole
        read[v.uid][:] = False
        followed[v.uid] = np.arange(total, total + size, dtype=np.int64).reshape(v.aval.shape)
        starts.append(total)
        owners.append(v)
        total += size
    if not owners:
        return read
    first = np.asarray(starts, dtype=np.int64)

    def mark(positions: np.ndarray) -> None:
        at = np.unique(positions[positions >= 0])
        which = np.searchsorted(first, at, side="right") - 1
        for i in np.unique(which):
            v = owners[i]
            read[v.uid][(at[which == i] - first[i]) // (v.aval.size // v.aval.shape[0])] = True

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
    time, and the later ones ``prog`` reads), or None when ``prog`` is unknown.  Found for every
    solve of ``prog`` at the first call."""
    if prog is None or eqn is None:
        return None
    hits = prog._compiled.get("saves read")
    if hits is None:
        solves = [e.outputs[0] for e in prog.eqns if e.prim.name == "odesolve" and e.outputs and e.outputs[0].aval.shape]
        hits = prog._compiled["saves read"] = {uid: 1 + int(np.count_nonzero(r[1:])) for uid, r in _follow(prog, solves).items()}
    hit = hits.get(eqn.outputs[0].uid)
    if hit is None:  # not an equation of prog as it was first seen
        hit = 1 + int(np.count_nonzero(rows_read(prog, eqn.outputs[0])[1:]))
    return hit

"""Linearization: a JVP program split into its primal part and its linear part.

The equations of a JVP program that touch no tangent form the *primal* program
``x -> (y..., residuals...)``; the others form the *linear* program
``(residuals..., dx...) -> dy...``, which is linear in ``dx``.  Reverse mode
transposes the linear program (:mod:`pyzygote.transforms.vjp`); Jacobians and
Hessians evaluate it once per column, so the primal work (an ODE's forward
sensitivities, say) is done once, as ``jax.linearize`` does it.

>>> import numpy as np, pyzygote as pz
>>> from pyzygote.transforms.linearize import linearize_programs
>>> primal, linear = linearize_programs(pz.make_program(lambda x: np.sin(x), 0.0))
>>> y, *res = primal(np.float64(0.0))
>>> linear(*res, np.float64(2.0))
(np.float64(2.0),)
"""

from __future__ import annotations

from typing import Any, Sequence

from pyzygote.gc_pause import gc_paused
from pyzygote.ir import Program, Var, split_by_dependence
from pyzygote.transforms.evaluate import program_from
from pyzygote.transforms.jvp import jvp_program

__all__ = ["linearize_programs", "split_linear"]


def split_linear(jp: Program, n_in: int) -> tuple[list[Any], list[Any], set[int]]:
    """The equations of JVP program ``jp`` (with ``n_in`` primal inputs) that touch no tangent,
    those that do, and the ids of the tangent-dependent variables."""
    return split_by_dependence(jp, {v.uid for v in jp.inputs[n_in:]})


def residuals_of(jp: Program, linear_eqns: list[Any], linear: set[int], outputs: Sequence[Any] = ()) -> list[Var]:
    """The primal values the linear equations (and the tangent ``outputs``) read."""
    const_ids = {v.uid for v in jp.constvars}
    found: dict[int, Var] = {}
    reads = [a for eqn in linear_eqns for a in eqn.inputs] + list(outputs)
    for a in reads:
        if isinstance(a, Var) and a.uid not in linear and a.uid not in const_ids:
            found.setdefault(a.uid, a)
    return list(found.values())


@gc_paused
def linearize_programs(
    prog: Program, wrt: tuple[bool, ...] | None = None, tangent_outputs: Sequence[int] | None = None
) -> tuple[Program, Program]:
    """Primal ``x -> (y..., residuals...)`` and linear ``(residuals..., dx...) -> dy...``.

    ``dx`` has one entry per float input of ``prog`` that ``wrt`` marks (all by default); the
    others are held constant, so nothing is computed for them.  ``tangent_outputs`` selects which
    tangents ``dy`` the linear program returns (all by default), and only their work is kept.
    """
    key = ("linearize", wrt, None if tangent_outputs is None else tuple(tangent_outputs))
    cached = prog._compiled.get(key)
    if cached is not None:
        return cached
    n_in, n_out = len(prog.inputs), len(prog.outputs)
    jp = jvp_program(prog, wrt)
    primal_eqns, linear_eqns, linear = split_linear(jp, n_in)
    touts = jp.outputs[n_out:]
    if tangent_outputs is not None:
        touts = tuple(touts[i] for i in tangent_outputs)
    linear_prog = program_from(jp.inputs[n_in:], linear_eqns, touts, jp)
    res_vars = residuals_of(jp, list(linear_prog.eqns), linear, touts)
    primal = program_from(jp.inputs[:n_in], primal_eqns, list(jp.outputs[:n_out]) + res_vars, jp)
    linear_prog = program_from([*res_vars, *jp.inputs[n_in:]], list(linear_prog.eqns), touts, jp)
    prog._compiled[key] = (primal, linear_prog)
    return primal, linear_prog

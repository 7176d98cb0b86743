"""Reverse mode as linearize-then-transpose.

The JVP program of ``f`` is split into its primal part (equations that do not
touch tangents) and its linear part.  The primal part becomes the forward
program ``x -> (y, residuals)``; transposing the linear part equation by
equation, last to first, gives the backward program ``(residuals, ct_y) ->
ct_x``.  Only linear primitives need transpose rules, so each nonlinear
primitive needs just its JVP rule.

>>> import numpy as np, pyzygote as pz
>>> from pyzygote.transforms.vjp import vjp_programs
>>> fwd, bwd = vjp_programs(pz.make_program(lambda x: x * x, 3.0))
>>> y, *res = fwd(np.float64(3.0))
>>> bwd(*res, np.float64(1.0))
(np.float64(6.0),)
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.gc_pause import gc_paused
from pyzygote.ir import Literal, Program, Var
from pyzygote.primitive import Undefined, add_tangents, zeros
from pyzygote.primitives.indexing import gather_p, scatter_add
from pyzygote.tracer import Builder
from pyzygote.transforms.evaluate import program_from
from pyzygote.transforms.jvp import jvp_program
from pyzygote.transforms.linearize import residuals_of, split_linear

__all__ = ["vjp_programs", "transpose_linear", "expected_pullbacks", "pullbacks_expected"]

# How many cotangents the backward program about to be built will be run on (pz.jacobian in
# reverse mode runs it once per output): work done once in the forward program (an ODE's
# forward sensitivities) is then worth more than work repeated per pullback (an adjoint solve).
_PULLBACKS: contextvars.ContextVar[int] = contextvars.ContextVar("pyzygote_pullbacks", default=1)


@contextlib.contextmanager
def expected_pullbacks(count: int) -> Iterator[None]:
    """Build backward programs in the knowledge that each will pull back ``count`` cotangents."""
    token = _PULLBACKS.set(max(1, int(count)))
    try:
        yield
    finally:
        _PULLBACKS.reset(token)


def pullbacks_expected() -> int:
    return _PULLBACKS.get()


@gc_paused
def vjp_programs(prog: Program, n_seeded: int | None = None) -> tuple[Program, Program]:
    """Forward ``x -> (y..., residuals...)`` and backward ``(residuals..., ct_y...) -> ct_x...``.

    ``ct_x`` has one entry per float input of ``prog``.  With ``n_seeded``, the
    backward program takes cotangents for the first ``n_seeded`` outputs only:
    the others are auxiliary values, which contribute nothing (not even a
    zero cotangent, which would turn an infinite local derivative into NaN).
    """
    n_in, n_out = len(prog.inputs), len(prog.outputs)
    n_seeded = n_out if n_seeded is None else n_seeded
    key = "vjp" if n_seeded == n_out else ("vjp", n_seeded)
    if pullbacks_expected() > 1:
        key = (key, "pullbacks", pullbacks_expected())
    cached = prog._compiled.get(key)
    if cached is not None:
        return cached
    jp = jvp_program(prog)
    primal_in, tangent_in = jp.inputs[:n_in], jp.inputs[n_in:]
    primal_eqns, linear_eqns, linear = split_linear(jp, n_in)
    seeded_out = jp.outputs[n_out : n_out + n_seeded]
    if n_seeded < n_out:
        linear_eqns = _feeding(linear_eqns, seeded_out)
    res_vars = residuals_of(jp, linear_eqns, linear)
    fwd = program_from(primal_in, primal_eqns, list(jp.outputs[:n_out]) + res_vars, jp)
    bwd = _backward_program(jp, linear_eqns, linear, res_vars, tangent_in, seeded_out)
    prog._compiled[key] = (fwd, bwd)
    return fwd, bwd


def _feeding(eqns: list[Any], outputs: tuple[Any, ...]) -> list[Any]:
    """The equations that the values ``outputs`` depend on, in order."""
    needed = {a.uid for a in outputs if isinstance(a, Var)}
    kept = []
    for eqn in reversed(eqns):
        if any(v.uid in needed for v in eqn.outputs):
            kept.append(eqn)
            needed.update(a.uid for a in eqn.inputs if isinstance(a, Var))
    return kept[::-1]


def _backward_program(
    jp: Program,
    linear_eqns: list[Any],
    linear: set[int],
    res_vars: list[Var],
    tangent_in: tuple[Var, ...],
    tangent_out: tuple[Any, ...],
) -> Program:
    b = Builder()
    res = [b.new_input(v.aval.shape, v.aval.dtype) for v in res_vars]
    cts = [b.new_input(a.aval.shape, a.aval.dtype) for a in tangent_out]
    primal_env = {v.uid: t for v, t in zip(res_vars, res)}
    primal_env.update((v.uid, c) for v, c in zip(jp.constvars, jp.consts))
    seeds = [(a, ct) for a, ct in zip(tangent_out, cts) if isinstance(a, Var) and a.uid in linear]
    ct_in = transpose_linear(linear_eqns, linear, primal_env, seeds, tangent_in)
    ct_in = [zeros(v.aval) if c is None else c for v, c in zip(tangent_in, ct_in)]
    return b.build(res + cts, ct_in)


def transpose_linear(
    eqns: list[Any],
    linear: set[int],
    primal_env: dict[int, Any],
    seeds: list[tuple[Var, Any]],
    wanted: tuple[Var, ...],
) -> list[Any]:
    """Propagate cotangents backwards through linear equations.

    The cotangents that reads of single entries send back to an array (``gather``'s transpose, a
    ``scatter_add``) are collected and scattered once, when the array's cotangent is used: a
    right-hand side that reads 73 parameters by index made 73 scatters into the parameter
    vector, and 72 sums of them, at every evaluation of its derivatives.
    """
    ct_env: dict[int, Any] = {}
    scattered: dict[int, list[tuple[Any, Any, tuple[int, ...]]]] = {}
    for v, ct in seeds:
        ct_env[v.uid] = add_tangents(ct_env.get(v.uid), ct)

    def cotangent(uid: int) -> Any:
        parts = scattered.pop(uid, None)
        ct = ct_env.pop(uid, None)
        if parts:
            shape = parts[0][2]
            if len(parts) == 1:
                values, positions = parts[0][0], parts[0][1]
            else:
                values = np.concatenate([np.reshape(c, (-1,)) for c, _, _ in parts])
                positions = np.concatenate([np.ravel(pos) for _, pos, _ in parts])
            ct = add_tangents(ct, scatter_add(values, positions, shape))
        return ct

    def primal(a: Any) -> Any:
        if isinstance(a, Literal):
            return a.value
        if a.uid in linear:
            return Undefined(a.aval)
        return primal_env[a.uid]

    for eqn in reversed(eqns):
        ct = cotangent(eqn.outputs[0].uid)
        if ct is None:
            continue
        x = eqn.inputs[0]
        if eqn.prim is gather_p and isinstance(x, Var) and x.uid in linear:
            scattered.setdefault(x.uid, []).append((ct, eqn.params["positions"], x.aval.shape))
            continue
        if eqn.prim.transpose is None:
            raise UnsupportedOperationError(
                f"primitive {eqn.prim.name} appears in a tangent computation but has no "
                "transpose rule (its JVP rule is not linear in the tangent)"
            )
        in_cts = eqn.prim.transpose(ct, *map(primal, eqn.inputs), **eqn.params)
        for a, c in zip(eqn.inputs, in_cts):
            if c is not None and isinstance(a, Var) and a.uid in linear:
                ct_env[a.uid] = add_tangents(ct_env.get(a.uid), c)
    for v in wanted:  # an input may be wanted twice: its cotangent stays for the second
        if v.uid in scattered:
            ct_env[v.uid] = cotangent(v.uid)
    return [ct_env.get(v.uid) for v in wanted]

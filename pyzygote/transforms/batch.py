"""A linear program run on a batch of tangents at once.

Jacobian and Hessian columns are one linear program (see
:mod:`pyzygote.transforms.linearize`) applied to each basis tangent.  Most
primitives gain nothing from seeing them together, and are applied column by
column; a primitive with a ``batch`` rule takes the whole batch in one call.
An ODE's tangent solve has one: the k directions are solved as one system of
``n (1 + k)`` equations, as forward sensitivities are, instead of k solves.

>>> import numpy as np, pyzygote as pz
>>> from pyzygote.transforms.linearize import linearize_programs
>>> primal, linear = linearize_programs(pz.make_program(lambda x: 3.0 * x, np.zeros(2)))
>>> y, *res = primal(np.zeros(2))
>>> eval_batched(linear, [*res, np.eye(2)], [False] * len(res) + [True], 2)[0]
array([[3., 0.],
       [0., 3.]])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pyzygote.ir import Literal, Program, Var

__all__ = ["eval_batched", "has_batch_rules"]


def has_batch_rules(prog: Program) -> bool:
    """Whether some equation of ``prog`` would take a batch in one call."""
    return any(eqn.prim.batch is not None for eqn in prog.eqns)


def eval_batched(prog: Program, args: Sequence[Any], batched: Sequence[bool], size: int) -> list[np.ndarray]:
    """``prog``'s outputs, each with a leading axis of ``size``, where the arguments that
    ``batched`` marks carry that leading axis (the others are shared by every column).

    A ``batch`` rule is called as ``rule(args, batched, **params)`` and returns the outputs
    with the leading axis, or ``None`` to be applied column by column."""
    env: dict[int, tuple[Any, bool]] = {v.uid: (x, b) for v, x, b in zip(prog.inputs, args, batched)}
    env.update((v.uid, (c, False)) for v, c in zip(prog.constvars, prog.consts))

    def read(a: Var | Literal) -> tuple[Any, bool]:
        return (a.value, False) if isinstance(a, Literal) else env[a.uid]

    for eqn in prog.eqns:
        ins = [read(a) for a in eqn.inputs]
        xs, flags = [x for x, _ in ins], [b for _, b in ins]
        if not any(flags):
            out, out_batched = eqn.prim.bind(*xs, **eqn.params), False
        else:
            rule = eqn.prim.batch
            out = None if rule is None else rule(xs, flags, **eqn.params)
            if out is None:
                out = _column_by_column(eqn, xs, flags, size)
            out_batched = True
        outs = out if eqn.prim.multiple_results else (out,)
        env.update((v.uid, (o, out_batched)) for v, o in zip(eqn.outputs, outs))
    results = []
    for a in prog.outputs:
        x, b = read(a)
        results.append(np.asarray(x) if b else np.repeat(np.asarray(x)[None], size, axis=0))
    return results


def _column_by_column(eqn: Any, xs: list[Any], flags: list[bool], size: int) -> Any:
    columns = [eqn.prim.bind(*(x[i] if b else x for x, b in zip(xs, flags)), **eqn.params) for i in range(size)]
    if eqn.prim.multiple_results:
        return tuple(np.stack(parts) for parts in zip(*columns))
    return np.stack(columns)

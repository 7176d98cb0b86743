"""Common-subexpression elimination: one equation per distinct computation.

Derivative programs built column by column re-derive the same primal values;
this pass keeps the first equation computing each value.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda x: np.sin(x) + np.sin(x), 1.0)
>>> len(prog.eqns), len(cse(prog).eqns)
(3, 2)
"""

from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from pyzygote.ir import Literal, Program, Var
from pyzygote.transforms.evaluate import prune

__all__ = ["cse"]


def _freeze(value: Any) -> Hashable:
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
        return value
    except TypeError:
        return ("id", id(value))


def cse(prog: Program) -> Program:
    rename: dict[int, Var] = {}
    seen: dict[Hashable, tuple[Var, ...]] = {}
    eqns = []

    def atom(a: Any) -> Any:
        return rename.get(a.uid, a) if isinstance(a, Var) else a

    def key_of(a: Any) -> Hashable:
        if isinstance(a, Literal):
            return ("lit", a.aval.dtype.str, a.value.tobytes())
        return a.uid

    for eqn in prog.eqns:
        inputs = tuple(atom(a) for a in eqn.inputs)
        key = (eqn.prim.name, tuple(key_of(a) for a in inputs), _freeze(tuple(sorted(eqn.params.items()))))
        hit = seen.get(key)
        if hit is not None:
            rename.update((v.uid, h) for v, h in zip(eqn.outputs, hit))
            continue
        seen[key] = eqn.outputs
        eqns.append(type(eqn)(eqn.prim, inputs, eqn.params, eqn.outputs))
    return prune(
        Program(prog.inputs, prog.constvars, prog.consts, eqns, tuple(atom(a) for a in prog.outputs))
    )

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

from pyzygote.ir import Program, Var
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
    frozen: dict[int, Hashable] = {}  # id of a params dict (alive with prog) -> its key
    eqns = []
    # Plain loops and a key per params dict: gradient programs of loops have 30,000 equations,
    # and this pass is part of their first call.
    for eqn in prog.eqns:
        inputs = eqn.inputs
        if rename:
            inputs = tuple(rename.get(a.uid, a) if a.__class__ is Var else a for a in inputs)
        params = eqn.params
        if params:
            pkey = frozen.get(id(params))
            if pkey is None:
                pkey = frozen[id(params)] = _freeze(tuple(sorted(params.items())))
        else:
            pkey = ()
        key = (eqn.prim.name, tuple(a.uid if a.__class__ is Var else ("lit", a.aval.dtype.str, a.value.tobytes()) for a in inputs), pkey)
        hit = seen.get(key)
        if hit is not None:
            rename.update((v.uid, h) for v, h in zip(eqn.outputs, hit))
            continue
        seen[key] = eqn.outputs
        eqns.append(eqn if inputs is eqn.inputs else type(eqn)(eqn.prim, inputs, params, eqn.outputs))
    outputs = tuple(rename.get(a.uid, a) if a.__class__ is Var else a for a in prog.outputs)
    return prune(Program(prog.inputs, prog.constvars, prog.consts, eqns, outputs))

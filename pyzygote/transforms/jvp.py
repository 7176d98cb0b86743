"""Forward mode: a program becomes its Jacobian-vector-product program.

Each equation is replaced by its primitive's JVP rule, applied to tracers of
a new program, so the result is an ordinary IR program: printable,
compilable, and transformable again.  ``None`` stands for a symbolic zero
tangent, so parts of a program that do not depend on the differentiated
inputs cost nothing.

>>> import numpy as np, pyzygote as pz
>>> from pyzygote.transforms.jvp import jvp_program
>>> prog = pz.make_program(lambda x: np.sin(x), 0.0)
>>> jvp_program(prog)(np.float64(0.0), np.float64(2.0))
(np.float64(0.0), np.float64(2.0))
"""

from __future__ import annotations

import contextvars
from typing import Any, Sequence

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.gc_pause import gc_paused
from pyzygote.ir import Literal, Program, Var
from pyzygote.primitive import zeros
from pyzygote.tracer import Builder

__all__ = ["jvp_eval", "jvp_program", "equation_being_differentiated"]

# The program and equation whose JVP rule is running, for a primitive whose rule chooses its
# method by how the program uses its result (``prim.jvp_reads_uses``): an ODE solve whose loss
# reads few of its save times (pyzygote.ode.rows_read).  Set for those primitives only.
_BEING_DIFFERENTIATED: contextvars.ContextVar[tuple[Program, Any] | None] = contextvars.ContextVar("pyzygote_jvp_equation", default=None)


def equation_being_differentiated() -> tuple[Program, Any] | None:
    """``(program, equation)`` whose JVP rule is running, for a primitive with ``jvp_reads_uses``."""
    return _BEING_DIFFERENTIATED.get()


def jvp_eval(prog: Program, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Run ``prog`` forward on primal values and tangents (``None`` = zero)."""
    env: dict[int, tuple[Any, Any]] = {v.uid: (p, t) for v, p, t in zip(prog.inputs, primals, tangents)}
    env.update((v.uid, (c, None)) for v, c in zip(prog.constvars, prog.consts))

    def read(a: Var | Literal) -> tuple[Any, Any]:
        return (a.value, None) if isinstance(a, Literal) else env[a.uid]

    for eqn in prog.eqns:
        ins = [read(a) for a in eqn.inputs]
        xs = [p for p, _ in ins]
        ts = [t for _, t in ins]
        if all(t is None for t in ts):
            out, tout = eqn.prim.bind(*xs, **eqn.params), None
        else:
            if eqn.prim.jvp is None:
                raise UnsupportedOperationError(f"primitive {eqn.prim.name} has no JVP rule")
            if eqn.prim.jvp_reads_uses:
                token = _BEING_DIFFERENTIATED.set((prog, eqn))
                try:
                    out, tout = eqn.prim.jvp(xs, ts, **eqn.params)
                finally:
                    _BEING_DIFFERENTIATED.reset(token)
            else:
                out, tout = eqn.prim.jvp(xs, ts, **eqn.params)
        outs = out if eqn.prim.multiple_results else (out,)
        touts = tout if eqn.prim.multiple_results else (tout,)
        if touts is None:
            touts = (None,) * len(outs)
        for v, o, t in zip(eqn.outputs, outs, touts):
            if not v.aval.is_float or (isinstance(t, (np.ndarray, np.generic)) and not np.any(t)):
                t = None  # a known-zero tangent costs nothing downstream
            env[v.uid] = (o, t)
    results = [read(a) for a in prog.outputs]
    return [p for p, _ in results], [t for _, t in results]


@gc_paused
def jvp_program(prog: Program, wrt: Sequence[bool] | None = None) -> Program:
    """``(x..., dx...) -> (y..., dy...)`` with a tangent input for each float input (each that
    ``wrt`` marks: the others are held constant, at no cost)."""
    b = Builder()
    primals = [b.new_input(v.aval.shape, v.aval.dtype) for v in prog.inputs]
    wanted = [True] * len(prog.inputs) if wrt is None else list(wrt)
    if len(wanted) != len(prog.inputs):
        raise ValueError(f"wrt has {len(wanted)} entries for a program of {len(prog.inputs)} inputs")
    tangents = [b.new_input(v.aval.shape, v.aval.dtype) if v.aval.is_float and w else None for v, w in zip(prog.inputs, wanted)]
    outs, touts = jvp_eval(prog, primals, tangents)
    touts = [zeros(a.aval) if t is None else t for a, t in zip(prog.outputs, touts)]
    return b.build(primals + [t for t in tangents if t is not None], list(outs) + touts)

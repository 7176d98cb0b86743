"""Loop-invariant code motion for right-hand sides.

An ODE solver calls the right-hand side ``f(u, p, t)`` (and the programs derived
from it) thousands of times with the same ``p``.  Whatever the program computes
from ``p`` alone (a stiffness matrix assembled from spring constants, a damping
matrix, and in derived programs their tangents along constant directions) is the
same at every step: it is computed once per ``p`` here, and each step runs the
rest.  A 10-mass chain whose right-hand side assembles ``K`` from ``p`` spent most
of each step rebuilding it.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda u, p, t: np.diag(p) @ u + t, np.ones(3), np.ones(3), 0.0)
>>> run = compile_hoisted(prog, 1)
>>> run(np.ones(3), np.array([1.0, 2.0, 3.0]), 0.5)[0]
array([1.5, 2.5, 3.5])
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pyzygote.ir import Program, Var, split_by_dependence

__all__ = ["compile_hoisted", "split_invariant"]

# Hoisting costs a comparison of p at every call (about a microsecond); it pays where the
# invariant part computes at least this many numbers (the gathers of p[0], p[1] of a small
# model do not repay it: the Lotka-Volterra benchmark's steps take a few microseconds).
HOIST_FROM_ELEMENTS = 64


def split_invariant(prog: Program, invariant: int) -> tuple[Program, Program] | None:
    """``(pre, step)``: ``pre`` computes from input ``invariant`` (and constants) the values the
    rest of ``prog`` reads; ``step`` takes ``prog``'s inputs followed by those values.  ``None``
    when too little depends on that input alone to be worth it."""
    varying = {v.uid for i, v in enumerate(prog.inputs) if i != invariant}
    pre_eqns, step_eqns, _ = split_by_dependence(prog, varying)
    work = sum(v.aval.size for e in pre_eqns for v in e.outputs)
    if work < HOIST_FROM_ELEMENTS:
        return None
    made = {v.uid for e in pre_eqns for v in e.outputs}
    read = {a.uid for e in step_eqns for a in e.inputs if isinstance(a, Var)}
    read |= {a.uid for a in prog.outputs if isinstance(a, Var)}
    carried = tuple(v for e in pre_eqns for v in e.outputs if v.uid in read and v.uid in made)
    pre = Program((prog.inputs[invariant],), prog.constvars, prog.consts, pre_eqns, carried)
    step = Program(prog.inputs + carried, prog.constvars, prog.consts, step_eqns, prog.outputs)
    return pre, step


def compile_hoisted(prog: Program, invariant: int, compile_step: Callable[[Program], Callable[..., Any]] | None = None) -> Callable[..., tuple[Any, ...]]:
    """``prog`` as a callable that computes the part depending on input ``invariant`` alone once
    for each value of it (compared by value at every call, so an array changed in place is seen).

    ``compile_step`` compiles the per-call program (default: the NumPy engine's compiler)."""
    from pyzygote.transforms.evaluate import compile_program

    compile_step = compile_step or compile_program
    split = split_invariant(prog, invariant)
    if split is None:
        return compile_step(prog)
    pre, step = split
    run_pre, run_step = compile_program(pre), compile_step(step)
    # (key, values), replaced whole so that threads solving with other values never mix them
    cache: list[tuple[bytes | None, tuple[Any, ...]]] = [(None, ())]

    def hoisted(*args: Any) -> tuple[Any, ...]:
        value = np.asarray(args[invariant])
        key = value.tobytes()
        hit_key, carried = cache[0]
        if key != hit_key:
            carried = run_pre(value)
            cache[0] = (key, carried)
        return run_step(*args, *carried)

    return hoisted

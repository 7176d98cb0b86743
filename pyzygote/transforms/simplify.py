"""Negations folded into the operations around them, bit for bit.

The transpose of ``a - b`` hands ``b`` the cotangent ``-ct``, so a loop's gradient program
negates a value, then adds it to an accumulated cotangent, scales it by a constant or slices it,
once per step: a velocity-Verlet spring chain's had 1,200 negations in 14,000 equations.  Each
rewrite here is exact in IEEE arithmetic (negation only flips a sign bit), so values do not
change, not even in the last bit:

    a + (-b)  ->  a - b        a - (-b)  ->  a + b        -(-x)  ->  x
    c * (-x)  ->  (-c) * x     (c a literal)               gather(-x)  ->  -gather(x)

A negation pushed through a ``gather`` (when nothing else reads it) may then fold into the sum
that reads the gathered values.  Negations
that fold nowhere stay; the ones left unread are pruned.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda x, y: x + -(2.0 * -y), 1.0, 2.0)
>>> [e.prim.name for e in prog.eqns], [e.prim.name for e in fold_negations(prog).eqns]
(['neg', 'mul', 'neg', 'add'], ['mul', 'sub'])
"""

from __future__ import annotations

from typing import Any

from pyzygote.ir import Eqn, Literal, Program, Var
from pyzygote.primitive import add_any
from pyzygote.transforms.evaluate import prune

__all__ = ["fold_negations"]


def fold_negations(prog: Program) -> Program:
    from pyzygote.primitives.elementwise import ELEMENTWISE
    from pyzygote.primitives.indexing import gather_p

    neg, add, sub, mul = (ELEMENTWISE[n] for n in ("neg", "add", "sub", "mul"))
    negated: dict[int, Var] = {}  # uid of a value -> the float value it is the negation of
    rename: dict[int, Any] = {}  # uid of a value -> the atom it equals
    eqns: list[Eqn] = []
    uses: dict[int, int] = {}
    for eqn in prog.eqns:
        for a in eqn.inputs:
            if a.__class__ is Var:
                uses[a.uid] = uses.get(a.uid, 0) + 1
    for a in prog.outputs:
        if a.__class__ is Var:
            uses[a.uid] = uses.get(a.uid, 0) + 2

    def minus(a: Any) -> Var | None:
        return negated.get(a.uid) if a.__class__ is Var else None

    def folded(a: Any) -> None:  # a read of the negation ``a`` is gone
        uses[a.uid] -= 1

    for eqn in prog.eqns:
        prim, ins = eqn.prim, eqn.inputs
        if rename and any(a.__class__ is Var and a.uid in rename for a in ins):
            ins = tuple(rename.get(a.uid, a) if a.__class__ is Var else a for a in ins)
            eqn = Eqn(prim, ins, eqn.params, eqn.outputs)
        if prim is neg:
            (x,), (out,) = ins, eqn.outputs
            inner = minus(x)
            if inner is not None and inner.aval == out.aval:  # -(-x) is x
                rename[out.uid] = inner
                continue
            if x.aval.dtype.kind == "f" and x.aval == out.aval:
                negated[out.uid] = x
        elif prim is add or prim is add_any or prim is sub:
            a, b = ins
            mb, ma = minus(b), minus(a)
            if mb is not None:  # a + (-b) is a - b; a - (-b) is a + b
                eqn = Eqn(add if prim is sub else sub, (a, mb), {}, eqn.outputs)
                folded(b)
            elif ma is not None and prim is not sub:  # (-a) + b is b - a
                eqn = Eqn(sub, (b, ma), {}, eqn.outputs)
                folded(a)
        elif prim is mul:
            a, b = ins
            for c, other in ((a, b), (b, a)):
                x = minus(other)
                if c.__class__ is Literal and x is not None and c.aval.dtype == x.aval.dtype:  # c * (-x) is (-c) * x
                    eqn = Eqn(mul, (Literal(-c.value, c.aval.dtype), x), {}, eqn.outputs)
                    folded(other)
                    break
        elif prim is gather_p:
            x = minus(ins[0])
            # gather(-x) is -gather(x), whose negation may fold further on; only for a negation
            # read by this gather alone, which then goes, so no equation is ever added.
            if x is not None and uses.get(ins[0].uid) == 1:
                (out,) = eqn.outputs
                picked = Var(out.aval)
                eqns.append(Eqn(gather_p, (x,), eqn.params, (picked,)))
                eqn = Eqn(neg, (picked,), {}, (out,))
                negated[out.uid] = picked
                folded(ins[0])
        eqns.append(eqn)
    outputs = tuple(rename.get(a.uid, a) if a.__class__ is Var else a for a in prog.outputs)
    return prune(Program(prog.inputs, prog.constvars, prog.consts, eqns, outputs))

"""Evaluate programs: a generic interpreter, and a compiler to straight-line Python.

:func:`eval_program` binds each equation again, so it works on numpy arrays
and on tracers alike (this is how transformations inline one program into
another).  :func:`compile_program` turns a program into one generated Python
function with every primitive pre-bound to its parameters: no dictionary
lookups or tracing at call time, which matters inside ODE solvers.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda x: np.cos(x) + 1.0, 0.0)
>>> compile_program(prog)(np.float64(0.0))
(np.float64(2.0),)
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.gc_pause import gc_paused
from pyzygote.ir import Eqn, Literal, Program, Var

__all__ = ["eval_program", "compile_program", "prune"]


def eval_program(prog: Program, *args: Any) -> list[Any]:
    if len(args) != len(prog.inputs):
        raise TypeError(f"program takes {len(prog.inputs)} inputs, got {len(args)}")
    env: dict[int, Any] = {v.uid: x for v, x in zip(prog.inputs, args)}
    env.update((v.uid, c) for v, c in zip(prog.constvars, prog.consts))

    def read(a: Var | Literal) -> Any:
        return a.value if isinstance(a, Literal) else env[a.uid]

    for eqn in prog.eqns:
        out = eqn.prim.bind(*map(read, eqn.inputs), **eqn.params)
        outs = out if eqn.prim.multiple_results else (out,)
        env.update((v.uid, o) for v, o in zip(eqn.outputs, outs))
    return [read(a) for a in prog.outputs]


def _specialize(eqn: Eqn) -> Callable[..., Any]:
    prim, params = eqn.prim, eqn.params
    if prim.specialize is not None:
        fn = prim.specialize(eqn)
        if fn is not None:
            return fn
    return functools.partial(prim.impl, **params) if params else prim.impl


# numpy scalars of these types compute as the ufuncs do; integer scalar arithmetic warns on
# overflow where ufuncs wrap silently.
_SCALAR_DTYPES = frozenset(map(np.dtype, (np.float64, np.float32, np.bool_)))


def numpy_scalar_template(eqn: Eqn) -> str | None:
    """``eqn`` as an expression template over numpy scalars, when every operand is rank 0 and
    its primitive has one (``Primitive.numpy_scalar``).

    A time-stepping loop's derivative programs are mostly such equations, and an operator on
    numpy scalars costs about a tenth of a ufunc call on them.
    """
    form = eqn.prim.numpy_scalar
    if form is None or eqn.prim.multiple_results:
        return None
    for atoms in (eqn.inputs, eqn.outputs):
        for a in atoms:
            aval = a.aval
            if aval.shape != () or aval.dtype not in _SCALAR_DTYPES:
                return None
    if eqn.prim.numpy_scalar_picks and any(a.aval.dtype != eqn.outputs[0].aval.dtype for a in eqn.inputs):
        return None
    return form(**eqn.params) if callable(form) else form


# The interpreter calls the operator itself where there is one: a lambda's frame costs more than
# the operation it wraps.
_OPERATORS = {
    "({0} + {1})": operator.add, "({0} - {1})": operator.sub, "({0} * {1})": operator.mul,
    "({0} / {1})": operator.truediv, "(-{0})": operator.neg, "({0} < {1})": operator.lt,
    "({0} <= {1})": operator.le, "({0} > {1})": operator.gt, "({0} >= {1})": operator.ge,
    "({0} == {1})": operator.eq, "({0} != {1})": operator.ne,
}  # fmt: skip


@functools.lru_cache(maxsize=None)
def _scalar_function(template: str, arity: int) -> Callable[..., Any]:
    if template in _OPERATORS:
        return _OPERATORS[template]
    names = [f"a{i}" for i in range(arity)]
    return eval(f"lambda {', '.join(names)}: {template.format(*names)}", {"_np": np})  # noqa: S307


def _literal_value(a: Literal, on_scalars: bool) -> Any:
    """A numpy scalar for an equation computed on numpy scalars (a 0-d array operand would send
    the operator back through the ufunc)."""
    return a.value[()] if on_scalars else a.value


def _by_ufuncs(prog: Program) -> Callable[..., tuple[Any, ...]]:
    """``prog`` evaluated by its primitives' ``impl`` alone: for operands that are Python floats,
    whose operators raise ZeroDivisionError where numpy gives inf and a warning."""
    return lambda *args: tuple(eval_program(prog, *args))


def compile_program(prog: Program) -> Callable[..., tuple[Any, ...]]:
    """A Python function evaluating ``prog`` with numpy; built once per program."""
    cached = prog._compiled.get("numpy")
    if cached is not None:
        return cached
    if len(prog.eqns) > INTERPRET_ABOVE:
        run = prog._compiled["numpy"] = gc_paused(_Interpreted)(prog)
        return run
    return _compiled(prog)


# Python compiles generated code at about 10-17 us a line, where running an equation from a list
# costs 15-55 ns more than running its compiled line (gradients of a 1,000-step Verlet chain,
# 31,000 equations: 0.54 s to compile, 15.2 ms a call interpreted, 14.8 ms compiled; of a 200-step
# MPC rollout, 5,400 equations: 2.1 and 1.8 ms), so programs longer than this run equation by
# equation until they have been called about as often as compiling would take to repay (ski
# rental; 100 calls when interpreting cost 0.1-0.2 us an equation more).  Compiling also takes
# memory in proportion (0.7 GB for a 400-cell, 8,000-step loop's gradient), so the longest
# programs are never compiled.
INTERPRET_ABOVE = 2000
INTERPRETED_CALLS = 250
COMPILE_AT_MOST = 50_000


class _Interpreted:
    """``prog`` run equation by equation; compiled at its ``INTERPRETED_CALLS + 1``-th call
    unless it is longer than ``COMPILE_AT_MOST``.

    A result's slot is given to a later result once the value has had its last use (as compiled
    code reuses its names), so intermediate arrays are freed as the program runs by the writes
    themselves, and equal literals share one slot: clearing slots after each equation, and
    copying a slot per result and per literal at each call, were a third of the interpreter's
    own time on a scalar loop's gradient.
    """

    def __init__(self, prog: Program):
        self.prog = prog
        self.calls = 0
        self.n_in = len(prog.inputs)
        self.compiled: Callable[..., tuple[Any, ...]] | None = None
        # One pass over the equations, in plain loops: a long loop's gradient program has 70,000
        # of them, and this setup is part of its first call.
        slots: dict[int, int] = {v.uid: i for i, v in enumerate(prog.inputs)}
        values: list[Any] = [None] * self.n_in  # the slots' initial values: constants and literals
        for v, c in zip(prog.constvars, prog.consts):
            slots[v.uid] = len(values)
            values.append(c)
        literal_slots: dict[tuple[Any, ...], int] = {}
        last: dict[int, int] = {}  # the last equation reading each value; outputs' is past the end
        for k, eqn in enumerate(prog.eqns):
            for a in eqn.inputs:
                if a.__class__ is Var:
                    last[a.uid] = k
        for a in prog.outputs:
            if a.__class__ is Var:
                last[a.uid] = len(prog.eqns)
        results: dict[int, int] = {}  # uid -> slot of the results still to be read
        spare: list[int] = []  # slots of results past their last use
        steps = []
        on_scalars = False
        for k, eqn in enumerate(prog.eqns):
            template = numpy_scalar_template(eqn)
            scalar = template is not None
            on_scalars |= scalar
            ins = []
            for a in eqn.inputs:
                if a.__class__ is Literal:
                    value = _literal_value(a, scalar)
                    key = (type(value), value.dtype, value.shape, value.tobytes())
                    i = literal_slots.get(key)
                    if i is None:
                        i = literal_slots[key] = len(values)
                        values.append(value)
                    ins.append(i)
                else:
                    ins.append(slots[a.uid])
                    if last[a.uid] == k and a.uid in results:  # (once, if read twice)
                        spare.append(results.pop(a.uid))
            outs = []
            for v in eqn.outputs:
                if spare:
                    i = spare.pop()
                else:
                    i = len(values)
                    values.append(None)
                slots[v.uid] = i
                outs.append(i)
                if v.uid in last:
                    results[v.uid] = i
            for v, i in zip(eqn.outputs, outs):
                if v.uid not in last:  # never read: its slot is free again after this equation
                    spare.append(i)
            steps.append(_step(eqn, template, tuple(ins), tuple(outs)))
        self.outputs = tuple(slots[a.uid] if a.__class__ is Var else _append(values, a.value) for a in prog.outputs)
        self.template = values
        self.steps = steps
        self.by_ufuncs = _by_ufuncs(prog)
        # Rank-0 inputs as numpy scalars where operators run on them (see _compiled)
        self.scalar_inputs = [(i, v.aval.dtype.type) for i, v in enumerate(prog.inputs) if on_scalars and v.aval.shape == ()]

    def __call__(self, *args: Any) -> tuple[Any, ...]:
        if len(args) != self.n_in:
            raise TypeError(f"program() takes {self.n_in} positional arguments but {len(args)} were given")
        if self.compiled is not None:
            return self.compiled(*args)
        self.calls += 1
        if self.calls > INTERPRETED_CALLS and len(self.steps) <= COMPILE_AT_MOST:
            self.compiled = _compiled(self.prog)
            return self.compiled(*args)
        env = self.template.copy()
        env[: self.n_in] = args
        for i, scalar in self.scalar_inputs:
            env[i] = scalar(env[i])
        try:
            # Operands are passed by arity, without building a list: on scalar steps that halves
            # the interpreter's own time per equation.
            for arity, fn, x, y, z, out in self.steps:
                if arity == 2:
                    env[out] = fn(env[x], env[y])
                elif arity == 1:
                    env[out] = fn(env[x])
                elif arity == 3:
                    env[out] = fn(env[x], env[y], env[z])
                elif arity == _ANY_ONE:
                    env[out] = fn(*[env[i] for i in x])
                else:
                    for i, r in zip(out, fn(*[env[i] for i in x])):
                        env[i] = r
        except ZeroDivisionError:
            return self.by_ufuncs(*args)
        return tuple([env[i] for i in self.outputs])


def _append(values: list[Any], value: Any) -> int:
    values.append(value)
    return len(values) - 1


_ANY_ONE, _ANY_SEVERAL = -1, -2  # step kinds: any number of operands, one result or several


def _step(eqn: Eqn, template: str | None, ins: tuple[int, ...], outs: tuple[int, ...]) -> tuple[Any, ...]:
    """One equation for :class:`_Interpreted`: ``(arity, fn, x, y, z, out)``, where ``out`` is a
    slot; with several results, or operands other than 1 to 3, the arity is ``_ANY_SEVERAL`` or
    ``_ANY_ONE``, ``x`` the operand slots and ``out`` the result slots if several."""
    fn = _specialize(eqn) if template is None else _scalar_function(template, len(eqn.inputs))
    if eqn.prim.multiple_results:
        return (_ANY_SEVERAL, fn, ins, -1, -1, outs)
    if 1 <= len(ins) <= 3:
        x, y, z = (*ins, -1, -1)[:3]
        return (len(ins), fn, x, y, z, outs[0])
    return (_ANY_ONE, fn, ins, -1, -1, outs[0])


@gc_paused
def _compiled(prog: Program) -> Callable[..., tuple[Any, ...]]:
    namespace: dict[str, Any] = {}
    names: dict[int, str] = {}
    for i, v in enumerate(prog.inputs):
        names[v.uid] = f"x{i}"
    for i, (v, c) in enumerate(zip(prog.constvars, prog.consts)):
        names[v.uid] = f"c{i}"
        namespace[f"c{i}"] = c

    def ref(a: Var | Literal, on_scalars: bool = False) -> str:
        if isinstance(a, Literal):
            name = f"k{len(namespace)}"
            namespace[name] = _literal_value(a, on_scalars)
            return name
        return names[a.uid]

    # A local lives until the function returns, so each value's name is given to a later result
    # once the value has had its last use: intermediate arrays are freed while the program runs,
    # as they would be in the user's own numpy code.
    last = {a.uid: k for k, eqn in enumerate(prog.eqns) for a in eqn.inputs if isinstance(a, Var)}
    for a in prog.outputs:
        if isinstance(a, Var):
            last[a.uid] = len(prog.eqns)
    spare: list[str] = []
    args_text = ", ".join(f"x{i}" for i in range(len(prog.inputs)))
    lines, on_scalars = [], False
    for k, eqn in enumerate(prog.eqns):
        template = numpy_scalar_template(eqn)
        on_scalars |= template is not None
        operands = [ref(a, template is not None) for a in eqn.inputs]
        if template is None:
            namespace[f"f{k}"] = _specialize(eqn)
            call = f"f{k}({', '.join(operands)})"
        else:
            call = template.format(*operands)
        for a in {a.uid: a for a in eqn.inputs if isinstance(a, Var)}.values():
            if last[a.uid] == k and names[a.uid].startswith("v"):
                spare.append(names[a.uid])
        outs = []
        for v in eqn.outputs:
            names[v.uid] = spare.pop() if spare else f"v{v.uid}"
            outs.append(names[v.uid])
        target = ", ".join(outs) + ("," if eqn.prim.multiple_results and len(outs) == 1 else "")
        lines.append(f"{target} = {call}")
    lines.append(f"return ({''.join(ref(a) + ', ' for a in prog.outputs)})")
    if on_scalars:
        namespace.update(_np=np, _by_ufuncs=_by_ufuncs(prog))
        # Rank-0 inputs as numpy scalars: a Python float operand would make the operators Python's
        # (no warnings, Python types), as t is when an ODE solver passes it.
        for i, v in enumerate(prog.inputs):
            if v.aval.shape == ():
                namespace[f"_t{i}"] = v.aval.dtype.type
                lines.insert(0, f"x{i} = _t{i}(x{i})")
        body = ["try:", *(f"    {line}" for line in lines)]
        body += ["except ZeroDivisionError:", f"    return _by_ufuncs({args_text})"]
    else:
        body = lines
    source = "\n".join([f"def program({args_text}):", *(f"    {line}" for line in body)])
    fn = define_function(source, "program", namespace, f"<pyzygote program {id(prog):x}>")
    prog._compiled["numpy"] = fn
    return fn


def define_function(source: str, name: str, namespace: dict[str, Any], filename: str) -> Callable[..., Any]:
    """Execute generated source defining ``name``; the function keeps its source as docstring."""
    exec(compile(source, filename, "exec"), namespace)
    fn = namespace[name]
    fn.__doc__ = source
    return fn


def prune(prog: Program) -> Program:
    """Drop equations and constants the outputs do not need."""
    live = {a.uid for a in prog.outputs if isinstance(a, Var)}
    kept = []
    for eqn in reversed(prog.eqns):  # without generators: derivative programs of loops are long
        outs = eqn.outputs
        if outs[0].uid in live if len(outs) == 1 else any(v.uid in live for v in outs):
            kept.append(eqn)
            for a in eqn.inputs:
                if a.__class__ is Var:
                    live.add(a.uid)
    kept.reverse()
    pairs = [(v, c) for v, c in zip(prog.constvars, prog.consts) if v.uid in live]
    return Program(
        inputs=prog.inputs,
        constvars=tuple(v for v, _ in pairs),
        consts=tuple(c for _, c in pairs),
        eqns=kept,
        outputs=prog.outputs,
    )


def program_from(inputs: Sequence[Var], eqns: list[Any], outputs: Sequence[Any], source: Program) -> Program:
    """A pruned program over ``eqns`` reusing the constants of ``source``."""
    return prune(
        Program(
            inputs=tuple(inputs),
            constvars=source.constvars,
            consts=source.consts,
            eqns=eqns,
            outputs=tuple(outputs),
        )
    )

"""Derivatives that are zero by construction: every path from an argument to an output is cut.

A function can depend on an argument only through operations that have no derivative: a
comparison, ``np.argmax`` of it, a position made by ``np.floor(...).astype(int)``,
``np.sign``.  Its derivative is then zero wherever it is defined, whatever the point; JAX and
Zygote return the zeros silently, and a fit stalls (user testing: the time of a spike read as
``t[np.argmax(V > 0)]`` had gradient ``[0, 0, 0]``).  This module finds such dependences in
a traced program, once per program (the result is cached on it), for the warning the
transformations give (:class:`ZeroGradientWarning`).

The analysis is structural, as the JVP transform's symbolic zeros are: a value carries a
tangent from an argument when an operation that has a derivative passes one on; a value of
integer or boolean type carries none.  Only outputs that depend on an argument (are computed
from it at all) and carry no tangent from it are reported: an argument that is not used, or
used along one differentiable path among others, is not.  A solve whose function was traced
(pz.odesolve's right-hand side, pz.nlsolve's residual) is looked into, leaf by leaf of ``p``
(:func:`_through_solve`); a composite of pyzygote's is named as the user called it (np.trunc).

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda x: np.sum(np.where(x > 0.0, 1.0, 0.0)) + 0.0, np.ones(2))
>>> cut_dependences(prog, [True])
[(0, 0, ('a comparison (>)',))]
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.errors import ZeroGradientWarning
from pyzygote.ir import Program, Var

__all__ = ["cut_dependences", "warn_if_cut", "ZeroGradientWarning"]

_COMPARED = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}
# How users wrote the operations that stop a derivative, and those that carry the cut on
# to an output (integer positions); plumbing (integer arithmetic, selects) is not named.
_SPELLED = {
    "floor": "np.floor", "ceil": "np.ceil", "round": "np.round (np.rint)", "sign": "np.sign",
    "floordiv": "// (np.floor_divide)", "argsort": "np.argsort", "searchsorted": "np.searchsorted (np.digitize)",
    "isnan": "np.isnan", "isinf": "np.isinf", "isfinite": "np.isfinite", "detsign": "the sign of np.linalg.slogdet",
}  # fmt: skip
_POSITIONS = frozenset({"argextreme", "argsort", "searchsorted"})
# Roundings, as messages name them (composites by the user's function: see _named), for the advice.
_ROUNDING = frozenset({
    "np.floor", "np.ceil", "np.round (np.rint)", "astype(int)", "// (np.floor_divide)",
    "np.trunc", "np.fix", "np.around", "np.round", "np.modf", "np.divmod",
})  # fmt: skip
_CACHE_KEY = "zero_gradient"


def _named(prog: Program, eqn: Any) -> str | None:
    """How the message names the operation of ``eqn``: the numpy function the user called where it
    is one of pyzygote's composites (np.trunc, not the comparison, np.ceil and np.floor it is made of)."""
    called = prog.spelled.get(eqn.outputs[0].uid) if eqn.outputs else None
    return _spelled(eqn) if called is None else _user_name(called)


def _user_name(func: Any) -> str:
    if isinstance(func, str):  # a ufunc's method: "maximum.reduce"
        return f"np.{func}"
    from pyzygote.numpy_api import _name

    name = _name(func)
    return "np." + name[len("numpy.") :] if name.startswith("numpy.") else name


def _spelled(eqn: Any) -> str | None:
    name = eqn.prim.name
    if name in _COMPARED:
        return f"a comparison ({_COMPARED[name]})"
    if name == "argextreme":
        return f"np.arg{eqn.params.get('which', 'max')}"
    if name == "convert_element_type":
        try:
            kind = np.dtype(eqn.params.get("dtype")).kind
        except TypeError:
            return None
        return "astype(int)" if kind in ("i", "u") else "astype(bool)" if kind == "b" else None
    return _SPELLED.get(name)


def cut_dependences(prog: Program, wrt: Sequence[bool]) -> list[tuple[int, int, tuple[str, ...]]]:
    """``(input, output, operations)`` for each floating-point output of ``prog`` that is
    computed from the floating-point input ``input`` (one ``wrt`` marks) only through
    operations with no derivative, those named in program order; cached on ``prog`` per ``wrt``."""
    key = (_CACHE_KEY, tuple(bool(w) for w in wrt))
    hit = prog._compiled.get(key)
    if hit is None:
        hit = prog._compiled[key] = _find(prog, wrt)
    return hit


def _floating(v: Any) -> bool:
    return v.aval.dtype.kind in "fc"


def _find(prog: Program, wrt: Sequence[bool]) -> list[tuple[int, int, tuple[str, ...]]]:
    reach, carry, stops = _flow(prog, wrt)
    found = []
    for o, out in enumerate(prog.outputs):
        if not isinstance(out, Var) or not _floating(out):
            continue
        lost = reach.get(out.uid, 0) & ~carry.get(out.uid, 0)
        if not lost:
            continue
        feeding = _feeding(prog, out)
        for k in range(len(prog.inputs)):
            if lost >> k & 1:
                names = [n for e, bits, said in stops if bits >> k & 1 and id(e) in feeding for n in said or (_named(prog, e),)]
                ordered = tuple(dict.fromkeys(n for n in names if n is not None))
                found.append((k, o, ordered or ("an operation with no derivative",)))
    return found


def _flow(prog: Program, wrt: Sequence[bool]) -> tuple[dict[int, int], dict[int, int], list[tuple[Any, int, tuple[str, ...]]]]:
    """Bit k of a value's masks stands for input k: ``reach`` where it is computed from the input
    at all, ``carry`` where a tangent of the input reaches it; and the equations where a tangent
    stops, with the bits it stopped and, for a solve, the operations of its function that stop it."""
    reach: dict[int, int] = {}
    carry: dict[int, int] = {}
    stops: list[tuple[Any, int, tuple[str, ...]]] = []
    for k, (v, w) in enumerate(zip(prog.inputs, wrt)):
        if w and _floating(v):
            reach[v.uid] = carry[v.uid] = 1 << k
    if not reach:
        return reach, carry, stops
    made: dict[int, Any] | None = None  # var uid -> the equation that made it, once a solve needs it
    for eqn in prog.eqns:
        r = c = 0
        solve = _through_solve(eqn)
        if solve is not None:
            if made is None:
                made = {v.uid: e for e in prog.eqns for v in e.outputs}
            start, leaves = solve
            pieces = _pieces(eqn.inputs[1], [size for size, *_ in leaves], made)
            if pieces is None:  # p is not the concatenation of the leaves here: all of it at once
                reaches, carries = any(lf[1] for lf in leaves), any(lf[2] for lf in leaves)
                said = () if carries else tuple(dict.fromkeys(op for lf in leaves if lf[1] for op in lf[3]))
                pieces, leaves = [eqn.inputs[1]], [(0, reaches, carries, said)]
            for x, (_, reaches, carries, said) in zip([eqn.inputs[0], *pieces], [(0, *start), *leaves]):
                if not (isinstance(x, Var) and x.uid in reach) or not reaches:
                    continue
                r |= reach[x.uid]
                if carries:
                    c |= carry.get(x.uid, 0)
                elif carry.get(x.uid, 0):
                    stops.append((eqn, carry[x.uid], said))
        else:
            for j, x in enumerate(eqn.inputs):
                if isinstance(x, Var) and x.uid in reach:
                    r |= reach[x.uid]
                    if j not in eqn.prim.no_tangent_from:
                        c |= carry.get(x.uid, 0)
        if not r:
            continue
        passed = 0 if eqn.prim.zero_derivative else c
        for v in eqn.outputs:
            reach[v.uid] = r
            if passed and _floating(v):
                carry[v.uid] = passed
        cut = c & ~(passed if any(_floating(v) for v in eqn.outputs) else 0)
        # named: where a tangent stops, and a position computed from what carries none (np.argmax
        # of a comparison); not the integer plumbing after it (an index's bounds checks)
        later = r & ~c if eqn.prim.name in _POSITIONS else 0
        if cut or later:
            stops.append((eqn, cut | later, ()))
    return reach, carry, stops


# Solves whose function is traced into a program of its own, ``(u, p leaves..., t) -> f``: what
# the function does with p decides whether the solution carries p's tangent.
_SOLVES = {"odesolve": "the right-hand side of pz.odesolve", "nlsolve": "the residual of pz.nlsolve"}
_START = "the starting guess u0 of pz.nlsolve (the root does not depend on where Newton starts)"


def _through_solve(eqn: Any) -> tuple[tuple[bool, bool, tuple[str, ...]], list[tuple[int, bool, bool, tuple[str, ...]]]] | None:
    """For a solve of a traced function (pz.odesolve's right-hand side, pz.nlsolve's residual):
    for u0, and for each leaf of p (and value the function captured) with its size, whether the
    solution is computed from it, whether its tangent reaches the solution, and where not, the
    operations that stop it.  None for any other equation, and for a Julia function, which is
    counted differentiable."""
    where = _SOLVES.get(eqn.prim.name)
    inner = getattr(eqn.params.get("rhs"), "leaf_program", None) if where else None
    if inner is None or len(inner.inputs) < 2 or len(eqn.inputs) != 2:
        return None
    key = (_CACHE_KEY, "solve", where)
    hit = inner._compiled.get(key)
    if hit is None:
        # u is the first input and t the last; p's leaves and the values f captured lie between
        last = len(inner.inputs) - 1
        wrt = [False] + [True] * (last - 1) + [False]
        reach, carry, stops = _flow(inner, [True] * len(inner.inputs))
        out = inner.outputs[0] if inner.outputs else None
        r, c = (reach.get(out.uid, 0), carry.get(out.uid, 0)) if isinstance(out, Var) else (0, 0)
        cut = {k: ops for k, o, ops in cut_dependences(inner, wrt) if o == 0}
        if eqn.prim.name == "odesolve":
            # A right-hand side that compares or rounds a value computed from p and u or t switches
            # at a state or time that moves with p: the solution is continuous in p and its exact
            # derivative is not 0 (StateSwitchWarning, SwitchingTimeWarning say so); only an
            # operation on p alone makes the solution a step function of p.
            ut = 1 | 1 << last
            feeding = _feeding(inner, out) if isinstance(out, Var) else set()
            for e, bits, _ in stops:
                if id(e) in feeding and any(isinstance(x, Var) and reach.get(x.uid, 0) & ut for x in e.inputs):
                    c |= bits & ~ut  # counted as carried: not this warning's to report
        leaves = [
            (int(np.prod(v.aval.shape)), bool(r >> k & 1), bool(c >> k & 1), tuple(f"{op} in {where}" for op in cut.get(k, ())))
            for k, v in enumerate(inner.inputs[1:-1], start=1)
        ]
        start = (True, True, ()) if eqn.prim.name == "odesolve" else (True, False, (_START,))
        hit = inner._compiled[key] = (start, leaves)
    return hit


def _pieces(p: Any, sizes: Sequence[int], made: dict[int, Any]) -> list[Any] | None:
    """The values that ``p`` concatenates, one per leaf of ``sizes`` (pz.odesolve flattens p's
    leaves and the captured values so), or None where it is made otherwise."""
    todo, pieces = [p], []
    for size in sizes:
        while todo:
            x = todo.pop(0)
            n = int(np.prod(x.aval.shape)) if hasattr(x, "aval") else -1
            if n == size:
                pieces.append(x)
                break
            e = made.get(x.uid) if isinstance(x, Var) and n > size else None
            if e is None or e.prim.name != "concatenate" or len(x.aval.shape) != 1:
                return None
            todo[:0] = list(e.inputs)
        else:
            return None
    return pieces if not todo else None


def _feeding(prog: Program, out: Var) -> set[int]:
    """The ids of the equations whose results ``out`` is computed from."""
    needed, eqns = {out.uid}, set()
    for eqn in reversed(prog.eqns):
        if any(v.uid in needed for v in eqn.outputs):
            eqns.add(id(eqn))
            needed.update(x.uid for x in eqn.inputs if isinstance(x, Var))
    return eqns


def warn_if_cut(
    prog: Program,
    wrt: Sequence[bool] | None,
    names: Callable[[], Sequence[str]],
    fname: str,
    outputs: Callable[[], Sequence[str] | None] = lambda: None,
    loss_only: bool = False,
) -> None:
    """Warn, once per program and ``wrt`` (None: every input), about each output (with
    ``loss_only``, the first, a loss returned with auxiliary values) that depends on a
    differentiated argument only through operations with no derivative (see
    :func:`cut_dependences`).  ``names()`` are the inputs' names as messages write them,
    ``outputs()`` the outputs' (called only to write the warning)."""
    wanted = [True] * len(prog.inputs) if wrt is None else list(wrt) + [False] * (len(prog.inputs) - len(wrt))
    key = (_CACHE_KEY + "_warned", tuple(wanted), loss_only)
    if prog._compiled.get(key):
        return
    prog._compiled[key] = True
    found = [hit for hit in cut_dependences(prog, wanted) if not loss_only or hit[1] == 0]
    if not found:
        return
    import warnings

    from pyzygote.tracing import _user_stacklevel

    given, shown = names(), outputs()
    groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
    for k, o, ops in found:
        groups.setdefault((o, ops), []).append(given[k] if k < len(given) else f"input {k}")
    sentences = []
    for (o, ops), args in groups.items():
        what = "the function's value" if shown is None or len(shown) < 2 else shown[o]
        which = args[0] if len(args) == 1 else ", ".join(args[:-1]) + " and " + args[-1]
        sentences.append(f"{what} depends on {which} only through {_joined(ops)}")
    every = {op for _, _, ops in found for op in ops}
    warnings.warn(
        f"pz.{fname}: " + "; ".join(sentences) + ", where the derivative stops: it is exactly 0 wherever it is "
        "defined (a step function of the argument), and a fit by gradient stalls. " + _advice(every)
        + "If the argument is data, pass it as a keyword argument (or leave it out of argnums) and this warning goes.",
        ZeroGradientWarning,
        stacklevel=_user_stacklevel(),
    )


def _joined(ops: Sequence[str]) -> str:
    return ops[0] if len(ops) == 1 else ", ".join(ops[:-1]) + " and then " + ops[-1]


def _advice(ops: set[str]) -> str:
    """What to write instead, for the kinds of operations met."""
    ops = {op.split(" in the ")[0] for op in ops}  # the same in a solve's function
    said = []
    if ops & {"np.argmax", "np.argmin"}:
        said.append(
            "For the time where a signal first crosses a level, interpolate between the samples around the crossing, "
            "k = np.argmax(V > 0.0); t0, t1 = pz.take(t, k - 1), pz.take(t, k) (pz.take reads a numpy array t at a "
            "traced position); t0 + (0.0 - V[k - 1]) / (V[k] - V[k - 1]) * (t1 - t0), which is "
            "differentiable in V; for the position of a maximum, weight the positions with a softmax, "
            "np.sum(t * w) with w = np.exp(b * (V - V.max())) normalized to sum 1. "
        )
    if any(op.startswith("a comparison") or op == "np.heaviside" for op in ops) and not ops & {"np.argmax", "np.argmin"}:
        said.append(
            "For a threshold, np.where(x > c, a, b), use a smooth step over a width you choose, "
            "b + (a - b) / (1 + np.exp(-(x - c) / width)). "
        )
    if ops & _ROUNDING:
        said.append("For a value read at a rounded position, interpolate between the neighbours (np.interp) instead. ")
    return "".join(said)

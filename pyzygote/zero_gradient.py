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
used along one differentiable path among others, is not.

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
    # Bit k of a value's masks stands for input k: `reach` where it is computed from the input
    # at all, `carry` where a tangent of the input reaches it.
    reach: dict[int, int] = {}
    carry: dict[int, int] = {}
    for k, (v, w) in enumerate(zip(prog.inputs, wrt)):
        if w and _floating(v):
            reach[v.uid] = carry[v.uid] = 1 << k
    if not reach:
        return []
    stops: list[tuple[Any, int]] = []  # (equation, bits it cut or carried on)
    for eqn in prog.eqns:
        r = c = 0
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
            stops.append((eqn, cut | later))
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
                names = [_named(prog, e) for e, bits in stops if bits >> k & 1 and id(e) in feeding]
                ordered = tuple(dict.fromkeys(n for n in names if n is not None))
                found.append((k, o, ordered or ("an operation with no derivative",)))
    return found


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

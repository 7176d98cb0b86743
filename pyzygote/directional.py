"""One-sided derivatives at kinks, read off the traced program exactly.

At a kink (``np.maximum(x, 0)`` at 0, ``np.clip`` at a bound, a tie in a sort) the derivative of
``f`` along ``d`` from one side is that of the branch ``f`` takes at ``x + t d`` for small
``t > 0``.  :func:`directional_derivative` runs the program forward on values and tangents, as
forward mode does, but decides each comparison, extremum, rounding and sort by the value and, where
the value ties, by the tangent (the order of ``a + t da`` against ``b + t db`` for small ``t``):
so it gives the one-sided derivative at the kink itself, with no step and no truncation error
(finite differences with a step of 5e-7 missed ``d/dx clip(x, -1, 1)**2 = 2`` at 1 by 5e-7, more
than the engines' tolerance).  Every other equation uses its primitive's own JVP rule.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda x: np.sum(np.clip(x, -1.0, 1.0) ** 2), np.array([1.0]))
>>> [directional_derivative(prog, [np.array([1.0])], [np.array([s])]).derivative for s in (1.0, -1.0)]
[0.0, -2.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.ir import Literal, Program

__all__ = ["directional_derivative", "Along", "DECIDED", "at_a_switch"]


@dataclass
class Along:
    """``f(x + t d) = value + t derivative + o(t)`` for small ``t > 0``; ``touched``: a kink or tie
    at ``x`` that ``d`` moves (else ``f`` is differentiable along ``d``); ``decided``: every switch
    the program meets could be decided (a determinant's sign at a singular matrix cannot)."""

    value: float
    derivative: float
    touched: bool
    decided: bool = True


class _Undecided(Exception):
    pass


def _f(x: Any) -> bool:
    return np.asarray(x).dtype.kind == "f"


def _order(a: Any, b: Any, da: Any, db: Any) -> Any:
    """The sign of ``(a + t da) - (b + t db)`` for small ``t > 0`` (0 where they tie to first order)."""
    with np.errstate(invalid="ignore"):
        return np.where(a > b, 1, np.where(a < b, -1, np.sign(da - db)))


def _extreme(name: str, ins: list[Any], ts: list[Any]) -> tuple[Any, Any, bool]:
    (a, b), (da, db) = ins, ts
    key = _order(a, b, da, db)
    if name in ("fmax", "fmin"):  # the number wins over a NaN
        key = np.where(np.isnan(b), 1, np.where(np.isnan(a), -1, key))
    first = key >= 0 if name in ("max", "fmax") else key <= 0
    first = np.where(np.isnan(a), True, np.where(np.isnan(b), False, first)) if name in ("max", "min") else first
    value = {"max": np.maximum, "min": np.minimum, "fmax": np.fmax, "fmin": np.fmin}[name](a, b)
    shape = np.shape(value)
    tangent = np.where(first, np.broadcast_to(da, shape), np.broadcast_to(db, shape))
    return value, tangent, bool(np.any((a == b) & (da != db)))


def _reduce_extreme(name: str, x: Any, dx: Any, axes: tuple[int, ...]) -> tuple[Any, Any, bool]:
    pick = np.max if name == "reduce_max" else np.min
    value = pick(x, axis=axes)
    tied = x == pick(x, axis=axes, keepdims=True)
    dx = np.broadcast_to(dx, np.shape(x))
    with np.errstate(invalid="ignore"):
        tangent = pick(np.where(tied, dx, -np.inf if name == "reduce_max" else np.inf), axis=axes)
    tangent = np.where(np.isnan(value), np.nan, tangent)
    return value, tangent, bool(np.sum(tied & (dx != np.expand_dims(tangent, axes))) > 0)


def _moved_float(x: Any, dx: Any) -> Any:
    """For a rounding or a cast: ``x`` nudged off an integer (where rounding switches) in the
    direction of ``dx``, to half-way to the next integer: the same side, no other switch crossed."""
    return np.where((np.floor(x) == x) & (dx != 0), x + 0.5 * np.sign(dx), x)


def _discrete(name: str, eqn: Any, ins: list[Any], ts: list[Any]) -> Any:
    """The value of a piecewise-constant equation on the side of ``x`` that the tangents point to."""
    params = eqn.params
    if name in ("lt", "le", "gt", "ge", "eq", "ne"):
        a, b = ins
        if not (_f(a) or _f(b)):
            return eqn.prim.impl(a, b)
        key = _order(a, b, ts[0], ts[1])
        return np.where(np.isnan(a) | np.isnan(b), eqn.prim.impl(a, b), eqn.prim.impl(key, 0))
    x, dx = ins[0], ts[0]
    if not _f(x) and name not in ("floordiv", "rem", "searchsorted"):
        return eqn.prim.impl(*ins, **params)
    if name in ("floor", "ceil"):
        return eqn.prim.impl(_moved_float(x, dx))
    if name == "round":  # rint switches at half-integers
        half = (x - np.floor(x) == 0.5) & (dx != 0)
        return np.where(half, np.floor(x) + (dx > 0), np.rint(x))
    if name == "sign":
        return np.where(x == 0, np.sign(dx), np.sign(x))
    if name == "convert_element_type":
        if np.dtype(params["dtype"]).kind == "b":
            return np.asarray((x != 0) | (dx != 0))
        return eqn.prim.impl(_moved_float(x, dx), **params)
    if name in ("and", "or", "xor", "not"):
        return eqn.prim.impl(*[(v != 0) | (t != 0) if _f(v) else v for v, t in zip(ins, ts)])
    if name in ("floordiv", "rem"):
        a, b = ins
        da, db = ts
        q, r = np.floor_divide(a, b), np.remainder(a, b)
        if not (_f(a) or _f(b)):
            return eqn.prim.impl(a, b)
        down = (r == 0) & (np.sign(da * b - a * db) * np.sign(b) < 0)  # a / b moves below a whole number
        return np.where(down, q - 1, q) if name == "floordiv" else np.where(down, r + b, r)
    if name == "argextreme":
        axis, which = params["axis"], params["which"]
        pick = np.max if which == "max" else np.min
        tied = x == pick(x, axis=axis, keepdims=True)
        key = np.where(tied, np.broadcast_to(dx, x.shape), -np.inf if which == "max" else np.inf)
        # among the tied entries, the one that moves furthest, the first of those as numpy's
        found = np.asarray((np.argmax if which == "max" else np.argmin)(key, axis=axis), dtype=eqn.outputs[0].aval.dtype)
        return np.where(np.any(np.isnan(x), axis=axis), eqn.prim.impl(x, **params), found)[()]
    if name == "argsort":
        axis = params["axis"]
        if np.any(np.isnan(x)):
            return eqn.prim.impl(x, **params)
        return np.lexsort((np.broadcast_to(dx, x.shape), x), axis=axis).astype(eqn.outputs[0].aval.dtype)
    if name == "searchsorted":
        a, v = ins
        da, dv = (np.broadcast_to(t, np.shape(s)) for t, s in zip(ts, ins))
        if not (_f(a) or _f(v)) or np.any(np.isnan(a)) or np.any(np.isnan(v)):
            return eqn.prim.impl(a, v, **params)
        va, vv = np.asarray(v).reshape(1, -1), np.asarray(dv).reshape(1, -1)
        key = _order(a[:, None], va, da[:, None], vv)
        below = key < 0 if params["side"] == "left" else key <= 0
        return np.sum(below, axis=0).reshape(np.shape(v)).astype(eqn.outputs[0].aval.dtype)[()]
    if name == "detsign":
        value = eqn.prim.impl(x)
        if value == 0:
            raise _Undecided  # the sign of det(A + t dA) at a singular A: not read off here
        return value
    raise _Undecided


# The equations decided here, by the side of their switch the tangents point to (those of
# pyzygote.subgradients._Branches).  Any other equation runs its own JVP rule.
DECIDED = frozenset(
    {"max", "min", "fmax", "fmin", "abs", "reduce_max", "reduce_min", "lt", "le", "gt", "ge", "eq", "ne", "floor",
     "ceil", "round", "sign", "convert_element_type", "and", "or", "xor", "not", "floordiv", "rem", "argextreme",
     "argsort", "searchsorted", "detsign"}
)  # fmt: skip


def _decide(eqn: Any, ins: list[Any], ts: list[Any]) -> tuple[Any, Any, bool]:
    """``(value, tangent, touched)`` of an equation of :data:`DECIDED` on the side ``ts`` point to."""
    name = eqn.prim.name
    zero = [np.zeros(np.shape(v)) if t is None else t for v, t in zip(ins, ts)]
    if name in ("max", "min", "fmax", "fmin") and eqn.outputs[0].aval.is_float:
        return _extreme(name, ins, zero)
    if name == "abs" and eqn.outputs[0].aval.is_float:
        x, dx = ins[0], zero[0]
        return eqn.prim.impl(x), np.where(x > 0, dx, np.where(x < 0, -dx, np.abs(dx))), bool(np.any((x == 0) & (dx != 0)))
    if name in ("reduce_max", "reduce_min") and eqn.outputs[0].aval.is_float:
        return _reduce_extreme(name, ins[0], zero[0], eqn.params["axes"])
    if name == "convert_element_type" and eqn.outputs[0].aval.is_float:  # a cast among floats: linear
        return eqn.prim.impl(ins[0], **eqn.params), None if ts[0] is None else eqn.prim.impl(ts[0], **eqn.params), False
    if name == "rem" and eqn.outputs[0].aval.is_float:
        a, b = ins
        value = _discrete(name, eqn, ins, zero)
        q = np.floor_divide(a, b) - (value != np.remainder(a, b))  # the quotient on that side
        return value, zero[0] - zero[1] * q, bool(np.any(value != np.remainder(a, b)))
    at = eqn.prim.impl(*ins, **eqn.params)
    value = _discrete(name, eqn, ins, zero)
    return value, None, not np.array_equal(np.asarray(at), np.asarray(value), equal_nan=True)


def directional_derivative(prog: Program, leaves: Sequence[Any], direction: Sequence[Any]) -> Along:
    """The value and one-sided derivative of the scalar program ``prog`` at ``leaves`` along
    ``direction`` (one tangent per input, ``None`` for zero), taking each switch on the side of
    ``x + t d`` for small ``t > 0``.  Switches tied to first order are taken as at ``x``."""
    from pyzygote.transforms.jvp import _BEING_DIFFERENTIATED

    env: dict[int, tuple[Any, Any]] = {v.uid: (np.asarray(x), None if d is None else np.asarray(d, dtype=np.float64)) for v, x, d in zip(prog.inputs, leaves, direction)}
    env.update((v.uid, (c, None)) for v, c in zip(prog.constvars, prog.consts))
    touched = False
    try:
        with np.errstate(all="ignore"):
            for eqn in prog.eqns:
                ins, ts = zip(*[(a.value, None) if isinstance(a, Literal) else env[a.uid] for a in eqn.inputs]) if eqn.inputs else ((), ())
                ins, ts = list(ins), list(ts)
                if eqn.prim.name in DECIDED:
                    out, tout, hit = _decide(eqn, ins, ts)
                    touched |= hit
                elif all(t is None for t in ts):
                    out, tout = eqn.prim.impl(*ins, **eqn.params), None
                elif eqn.prim.jvp_reads_uses:
                    token = _BEING_DIFFERENTIATED.set((prog, eqn))
                    try:
                        out, tout = eqn.prim.jvp(ins, ts, **eqn.params)
                    finally:
                        _BEING_DIFFERENTIATED.reset(token)
                else:
                    out, tout = eqn.prim.jvp(ins, ts, **eqn.params)
                outs = out if eqn.prim.multiple_results else (out,)
                touts = (tout,) if not eqn.prim.multiple_results else (None,) * len(outs) if tout is None else tout
                for v, o, t in zip(eqn.outputs, outs, touts):
                    env[v.uid] = (o, t if v.aval.is_float else None)
    except _Undecided:
        return Along(np.nan, np.nan, True, decided=False)
    (value, tangent), = [(a.value, None) if isinstance(a, Literal) else env[a.uid] for a in prog.outputs]
    return Along(float(np.asarray(value)), 0.0 if tangent is None else float(np.asarray(tangent)), touched)


def at_a_switch(prog: Program, leaves: Sequence[Any], found: Callable[[Any], bool]) -> bool:
    """Whether an equation that ``found`` names sits at its switch at ``leaves`` (a maximum of two
    equal values, an absolute value of 0, a sort of tied values, a comparison of equal values):
    only there do one-sided derivatives differ.  A plain evaluation, no derivative."""
    env: dict[int, Any] = {v.uid: np.asarray(x) for v, x in zip(prog.inputs, leaves)}
    env.update(zip((v.uid for v in prog.constvars), prog.consts))
    with np.errstate(all="ignore"):
        for eqn in prog.eqns:
            ins = [a.value if isinstance(a, Literal) else env[a.uid] for a in eqn.inputs]
            out = eqn.prim.impl(*ins, **eqn.params)
            outs = out if eqn.prim.multiple_results else (out,)
            env.update(zip((v.uid for v in eqn.outputs), outs))
            if found(eqn) and _switching(eqn, ins):
                return True
    return False


def _switching(eqn: Any, ins: list[Any]) -> bool:
    """Whether some tangent of the inputs would change ``eqn``'s choice: it is at its switch."""
    name = eqn.prim.name
    if name not in DECIDED:
        return True  # not read off here: taken as at one
    try:
        for k in range(len(ins)):
            if not _f(ins[k]):
                continue
            for sign in (1.0, -1.0):
                # distinct tangents, so that tied entries of one input part
                ramp = sign * (1.0 + np.arange(np.size(ins[k]), dtype=np.float64)).reshape(np.shape(ins[k]))
                ts = [ramp if j == k else None for j in range(len(ins))]
                if _decide(eqn, ins, ts)[2]:
                    return True
        return False
    except _Undecided:
        return True

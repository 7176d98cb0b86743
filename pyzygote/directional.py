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
    depth: int = -1  # the deepest of the directions that decided a tie (-1: none did)
    # the switches the (single) direction moves at x: (equation's position, output entry)
    switches: frozenset[tuple[int, int]] = frozenset()


class _Undecided(Exception):
    pass


def _f(x: Any) -> bool:
    return np.asarray(x).dtype.kind == "f"


def _lex(first: Any, levels: Sequence[Any]) -> tuple[Any, int]:
    """The sign of ``first + t levels[0] + t**2 levels[1] + ...`` for small ``t > 0`` (0 where all
    are 0), and the deepest level that decided an entry (-1: ``first`` decided them all)."""
    key, depth = np.sign(first), -1
    for k, level in enumerate(levels):
        open_ = key == 0
        key = np.where(open_, np.sign(level), key)
        if np.any(open_ & (key != 0)):
            depth = k
    return key, depth


def _order(a: Any, b: Any, das: Sequence[Any], dbs: Sequence[Any]) -> tuple[Any, int]:
    """The order of ``a`` and ``b`` moved along the tangents' levels (see :func:`_lex`)."""
    with np.errstate(invalid="ignore"):
        first = np.where(a > b, 1, np.where(a < b, -1, 0))
        return _lex(first, [np.subtract(da, db) for da, db in zip(das, dbs)])


def _extreme(name: str, ins: list[Any], ts: list[list[Any]]) -> tuple[Any, list[Any], int]:
    (a, b), (das, dbs) = ins, ts
    key, depth = _order(a, b, das, dbs)
    if name in ("fmax", "fmin"):  # the number wins over a NaN
        key = np.where(np.isnan(b), 1, np.where(np.isnan(a), -1, key))
    first = key >= 0 if name in ("max", "fmax") else key <= 0
    first = np.where(np.isnan(a), True, np.where(np.isnan(b), False, first)) if name in ("max", "min") else first
    value = {"max": np.maximum, "min": np.minimum, "fmax": np.fmax, "fmin": np.fmin}[name](a, b)
    shape = np.shape(value)
    return value, [np.where(first, np.broadcast_to(da, shape), np.broadcast_to(db, shape)) for da, db in zip(das, dbs)], depth


def _narrowed(x: Any, dxs: Sequence[Any], axis: Any, pick: Any) -> tuple[Any, list[Any], int]:
    """Which entries along ``axis`` are the extremum (``pick``) moved along the levels, the
    extremum's tangents, and the deepest level that parted a tie."""
    mask = x == pick(x, axis=axis, keepdims=True)
    worst = -np.inf if pick is np.max else np.inf
    tangents, depth = [], -1
    for k, dx in enumerate(dxs):
        dx = np.broadcast_to(dx, np.shape(x))
        with np.errstate(invalid="ignore"):
            m = pick(np.where(mask, dx, worst), axis=axis, keepdims=True)
        narrower = mask & (dx == m)
        if np.any(narrower != mask):
            depth = k
        mask = narrower
        tangents.append(np.squeeze(m, axis=axis))
    return mask, tangents, depth


def _reduce_extreme(name: str, x: Any, dxs: list[Any], axes: tuple[int, ...]) -> tuple[Any, list[Any], int]:
    pick = np.max if name == "reduce_max" else np.min
    value = pick(x, axis=axes)
    _, tangents, depth = _narrowed(x, dxs, axes, pick)
    return value, [np.where(np.isnan(value), np.nan, t) for t in tangents], depth


def _moved_float(x: Any, dxs: Sequence[Any]) -> tuple[Any, int]:
    """For a rounding or a cast: ``x`` nudged off an integer (where rounding switches) in the
    direction of the tangents, to half-way to the next integer: the same side, no other switch crossed."""
    side, depth = _lex(np.zeros(np.shape(x)), dxs)
    at = np.floor(x) == x
    return np.where(at, x + 0.5 * side, x), depth if np.any(at & (side != 0)) else -1


def _discrete(name: str, eqn: Any, ins: list[Any], ts: list[list[Any]]) -> tuple[Any, int]:
    """The value of a piecewise-constant equation on the side of ``x`` that the tangents point to,
    and the deepest level of them that decided it (-1: the value alone)."""
    params = eqn.params
    if name in ("lt", "le", "gt", "ge", "eq", "ne"):
        a, b = ins
        if not (_f(a) or _f(b)):
            return eqn.prim.impl(a, b), -1
        key, depth = _order(a, b, ts[0], ts[1])
        return np.where(np.isnan(a) | np.isnan(b), eqn.prim.impl(a, b), eqn.prim.impl(key, 0)), depth
    x, dxs = ins[0], ts[0]
    if not _f(x) and name not in ("floordiv", "rem", "searchsorted"):
        return eqn.prim.impl(*ins, **params), -1
    if name in ("floor", "ceil"):
        moved, depth = _moved_float(x, dxs)
        return eqn.prim.impl(moved), depth
    if name == "round":  # rint switches at half-integers
        side, depth = _lex(np.zeros(np.shape(x)), dxs)
        half = (x - np.floor(x) == 0.5) & (side != 0)
        return np.where(half, np.floor(x) + (side > 0), np.rint(x)), depth if np.any(half) else -1
    if name == "sign":
        side, depth = _lex(np.zeros(np.shape(x)), dxs)
        return np.where(x == 0, side, np.sign(x)), depth if np.any((x == 0) & (side != 0)) else -1
    if name == "convert_element_type":
        if np.dtype(params["dtype"]).kind == "b":
            side, depth = _lex(np.zeros(np.shape(x)), dxs)
            return np.asarray((x != 0) | (side != 0)), depth if np.any((x == 0) & (side != 0)) else -1
        moved, depth = _moved_float(x, dxs)
        return eqn.prim.impl(moved, **params), depth
    if name in ("and", "or", "xor", "not"):
        truths, depth = [], -1
        for v, levels in zip(ins, ts):
            if not _f(v):
                truths.append(v)
                continue
            side, d = _lex(np.zeros(np.shape(v)), levels)
            truths.append((v != 0) | (side != 0))
            depth = max(depth, d if np.any((v == 0) & (side != 0)) else -1)
        return eqn.prim.impl(*truths), depth
    if name in ("floordiv", "rem"):
        a, b = ins
        if not (_f(a) or _f(b)):
            return eqn.prim.impl(a, b), -1
        q, r = np.floor_divide(a, b), np.remainder(a, b)
        # a / b moves below a whole number where the first level moving it does so downwards
        side, depth = _lex(np.zeros(np.shape(q)), [(da * b - a * db) * np.sign(b) for da, db in zip(*ts)])
        down = (r == 0) & (side < 0)
        depth = depth if np.any((r == 0) & (side != 0)) else -1
        return (np.where(down, q - 1, q) if name == "floordiv" else np.where(down, r + b, r)), depth
    if name == "argextreme":
        axis, which = params["axis"], params["which"]
        mask, _, depth = _narrowed(x, dxs, axis, np.max if which == "max" else np.min)
        found = np.asarray(np.argmax(mask, axis=axis), dtype=eqn.outputs[0].aval.dtype)  # the first, as numpy's
        return np.where(np.any(np.isnan(x), axis=axis), eqn.prim.impl(x, **params), found)[()], depth
    if name == "argsort":
        if np.any(np.isnan(x)):
            return eqn.prim.impl(x, **params), -1
        keys = [np.broadcast_to(dx, x.shape) for dx in dxs]
        previous, depth = eqn.prim.impl(x, **params), -1
        for k in range(len(keys)):  # the deepest level whose order parts a tie
            order = np.lexsort((*keys[: k + 1][::-1], x), axis=params["axis"])
            if not np.array_equal(order, previous):
                depth = k
            previous = order
        return np.asarray(previous).astype(eqn.outputs[0].aval.dtype), depth
    if name == "searchsorted":
        a, v = ins
        if not (_f(a) or _f(v)) or np.any(np.isnan(a)) or np.any(np.isnan(v)):
            return eqn.prim.impl(a, v, **params), -1
        das = [np.broadcast_to(t, np.shape(a))[:, None] for t in ts[0]]
        dvs = [np.broadcast_to(t, np.shape(v)).reshape(1, -1) for t in ts[1]]
        key, depth = _order(a[:, None], np.asarray(v).reshape(1, -1), das, dvs)
        below = key < 0 if params["side"] == "left" else key <= 0
        return np.sum(below, axis=0).reshape(np.shape(v)).astype(eqn.outputs[0].aval.dtype)[()], depth
    if name == "detsign":
        value = eqn.prim.impl(x)
        if value == 0:
            raise _Undecided  # the sign of det(A + t dA) at a singular A: not read off here
        return value, -1
    raise _Undecided


# The equations decided here, by the side of their switch the tangents point to (those of
# pyzygote.subgradients._Branches).  Any other equation runs its own JVP rule.
DECIDED = frozenset(
    {"max", "min", "fmax", "fmin", "abs", "reduce_max", "reduce_min", "lt", "le", "gt", "ge", "eq", "ne", "floor",
     "ceil", "round", "sign", "convert_element_type", "and", "or", "xor", "not", "floordiv", "rem", "argextreme",
     "argsort", "searchsorted", "detsign"}
)  # fmt: skip


def _decide(eqn: Any, ins: list[Any], ts: list[list[Any]]) -> tuple[Any, list[Any] | None, int]:
    """``(value, tangents, depth)`` of an equation of :data:`DECIDED` on the side the tangents'
    levels point to (``ts[i][k]``: level ``k`` of input ``i``, None for zero); ``depth``: the
    deepest level that decided a tie (-1: none was decided by a tangent)."""
    name = eqn.prim.name
    zero = [[np.zeros(np.shape(v)) if t is None else t for t in levels] for v, levels in zip(ins, ts)]
    if name in ("max", "min", "fmax", "fmin") and eqn.outputs[0].aval.is_float:
        return _extreme(name, ins, zero)
    if name == "abs" and eqn.outputs[0].aval.is_float:
        x, dxs = ins[0], zero[0]
        side, depth = _lex(np.sign(x), dxs)
        return eqn.prim.impl(x), [np.where(side < 0, -dx, dx) for dx in dxs], depth
    if name in ("reduce_max", "reduce_min") and eqn.outputs[0].aval.is_float:
        return _reduce_extreme(name, ins[0], zero[0], eqn.params["axes"])
    if name == "convert_element_type" and eqn.outputs[0].aval.is_float:  # a cast among floats: linear
        return eqn.prim.impl(ins[0], **eqn.params), [None if t is None else eqn.prim.impl(t, **eqn.params) for t in ts[0]], -1
    value, depth = _discrete(name, eqn, ins, zero)
    if name == "rem" and eqn.outputs[0].aval.is_float:
        a, b = ins
        q = np.floor_divide(a, b) - (value != np.remainder(a, b))  # the quotient on that side
        return value, [da - db * q for da, db in zip(*zero)], depth
    return value, None, depth


def directional_derivative(prog: Program, leaves: Sequence[Any], *directions: Sequence[Any], record: bool = False) -> Along:
    """The value and one-sided derivative of the scalar program ``prog`` at ``leaves`` along the
    last of ``directions`` (each one tangent per input, ``None`` for zero), taking each switch on
    the side of ``x + t d1 + t**2 d2 + ...`` for small ``t > 0``: the earlier directions choose a
    side first (a tie-break), the last is differentiated along.  Switches that all of them leave
    tied are taken as at ``x``.  With ``record``, :attr:`Along.switches` names the entries of
    the switches that the direction moves at ``x``: those whose choice it turns the other way
    when reversed."""
    from pyzygote.transforms.jvp import _BEING_DIFFERENTIATED

    levels = len(directions)
    env: dict[int, tuple[Any, list[Any]]] = {
        v.uid: (np.asarray(x), [None if d[i] is None else np.asarray(d[i], dtype=np.float64) for d in directions])
        for i, (v, x) in enumerate(zip(prog.inputs, leaves))
    }
    env.update((v.uid, (c, [None] * levels)) for v, c in zip(prog.constvars, prog.consts))
    depth = -1
    switches: set[tuple[int, int]] = set()
    try:
        with np.errstate(all="ignore"):
            for position, eqn in enumerate(prog.eqns):
                ins, ts = [], []
                for a in eqn.inputs:
                    value, tangents = (a.value, [None] * levels) if isinstance(a, Literal) else env[a.uid]
                    ins.append(value)
                    ts.append(tangents)
                touts: list[Any]
                if eqn.prim.name in DECIDED:
                    out, decided, d = _decide(eqn, ins, ts)
                    depth = max(depth, d)
                    if record and d >= 0:
                        switches.update((position, int(i)) for i in np.flatnonzero(_parted(eqn, ins, ts, out, decided)))
                    touts = [None] * levels if decided is None else decided
                    touts = [touts]  # one output
                else:
                    out, touts = _forward(prog, eqn, ins, ts, levels, _BEING_DIFFERENTIATED)
                outs = out if eqn.prim.multiple_results else (out,)
                for v, o, t in zip(eqn.outputs, outs, touts):
                    env[v.uid] = (o, t if v.aval.is_float else [None] * levels)
    except _Undecided:
        return Along(np.nan, np.nan, True, decided=False)
    ((value, tangents),) = [(a.value, [None] * levels) if isinstance(a, Literal) else env[a.uid] for a in prog.outputs]
    last = tangents[-1] if levels else None
    derivative = 0.0 if last is None else float(np.asarray(last))
    return Along(float(np.asarray(value)), derivative, depth >= 0, depth=depth, switches=frozenset(switches))


def _parted(eqn: Any, ins: list[Any], ts: list[list[Any]], out: Any, tangents: list[Any] | None) -> np.ndarray:
    """The output entries of a decided equation whose choice the tangents turn the other way
    when reversed (a maximum of two equal values, the one moved up against the one moved down)."""
    back, back_tangents, _ = _decide(eqn, ins, [[None if t is None else -t for t in levels] for levels in ts])
    parted = np.asarray(out != back) if np.shape(out) == np.shape(back) else np.ones(np.shape(out), bool)
    for t, b in zip(tangents or [], back_tangents or []):
        if t is not None and b is not None:
            parted = parted | np.asarray(np.broadcast_to(t, np.shape(parted)) != -np.broadcast_to(b, np.shape(parted)))
    return np.atleast_1d(parted).ravel()


def _evaluated(eqn: Any, ins: list[Any]) -> Any:
    """``eqn``'s value as the NumPy engine computes it (small products as ``ndarray.dot``)."""
    from pyzygote.transforms.evaluate import _specialize

    return _specialize(eqn)(*ins)


def _forward(prog: Program, eqn: Any, ins: list[Any], ts: list[list[Any]], levels: int, being: Any) -> tuple[Any, list[list[Any]]]:
    """An equation's value, as the NumPy engine computes it (a JVP rule or another product may
    round it otherwise: an einsum's 0.0, as x @ W.T gives it, came out -5.6e-17 and a ReLU's tie
    at it was lost), and by its own JVP rule each level's tangents of its outputs."""
    n = len(eqn.outputs)
    per_output: list[list[Any]] = [[None] * levels for _ in range(n)]
    out = _evaluated(eqn, ins)
    for k in range(levels):
        level = [t[k] for t in ts]
        if all(t is None for t in level):
            continue
        token = being.set((prog, eqn)) if eqn.prim.jvp_reads_uses else None
        try:
            _, tout = eqn.prim.jvp(ins, level, **eqn.params)
        finally:
            if token is not None:
                being.reset(token)
        touts = (tout,) if not eqn.prim.multiple_results else (None,) * n if tout is None else tout
        for j, t in enumerate(touts):
            per_output[j][k] = t
    return out, per_output


def at_a_switch(prog: Program, leaves: Sequence[Any], found: Callable[[Any], bool]) -> bool:
    """Whether an equation that ``found`` names sits at its switch at ``leaves`` (a maximum of two
    equal values, an absolute value of 0, a sort of tied values, a comparison of equal values):
    only there do one-sided derivatives differ.  A plain evaluation, no derivative."""
    env: dict[int, Any] = {v.uid: np.asarray(x) for v, x in zip(prog.inputs, leaves)}
    env.update(zip((v.uid for v in prog.constvars), prog.consts))
    with np.errstate(all="ignore"):
        for eqn in prog.eqns:
            ins = [a.value if isinstance(a, Literal) else env[a.uid] for a in eqn.inputs]
            out = _evaluated(eqn, ins)
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
                ts = [[ramp if j == k else None] for j in range(len(ins))]
                if _decide(eqn, ins, ts)[2] >= 0:
                    return True
        return False
    except _Undecided:
        return True


# Tie-breaks tried for the pieces meeting at x: every order and every sign of up to this many
# entries (2**4 * 4! = 384 directions, one pass each), else this many seeded ones; and no more
# than this many forward passes for the pieces' gradients.
_ALL_ORDERS_UP_TO = 4
_SEEDED_ORDERS = 64
_MAX_PASSES = 5_000


def _tie_breaks(count: int) -> list[np.ndarray]:
    """Weights for ``count`` entries: distinct magnitudes in every order and with every sign."""
    from itertools import permutations, product

    if count <= _ALL_ORDERS_UP_TO:
        return [np.array(signs) * (1.0 + np.array(order)) for order in permutations(range(count)) for signs in product((1.0, -1.0), repeat=count)]
    rng = np.random.default_rng(0)
    return [rng.choice((1.0, -1.0), count) * (1.0 + rng.permutation(count)) for _ in range(_SEEDED_ORDERS)]


def piece_gradients(prog: Program, leaves: Sequence[Any], tied: Sequence[tuple[int, int]]) -> list[list[Any]] | None:
    """Gradients of the smooth pieces of ``f`` that meet at ``x``, where the entries ``tied``
    (``(leaf, entry)``) move a switch (a tie of three at a median: which of them is the middle;
    a ReLU of ``w0 + w1`` at 0: on or off for both).

    Each order and sign of those entries gives a tie-break direction ``w``; the piece that
    ``x + t w`` lies on for small ``t > 0`` is smooth there, and its gradient at ``x`` is a limit of
    ``f``'s gradients at nearby points (a Clarke subgradient).  A ``w`` is kept only where it decides
    every tie the program meets (no entry's own direction parts one further) and ``f`` is continuous
    along it; pieces are told apart by their derivative along a fixed random direction.  None where
    that needs more than ``_MAX_PASSES`` passes."""
    sizes = [np.size(x) if _f(x) else 0 for x in leaves]
    base = directional_derivative(prog, leaves, [None] * len(leaves)).value
    probe_rng = np.random.default_rng(1)
    probe = [probe_rng.standard_normal(np.shape(x)) if size else None for x, size in zip(leaves, sizes)]
    seen: set[float] = set()
    found = []
    for weights in _tie_breaks(len(tied)):
        w = [np.zeros(np.shape(x)) if size else None for x, size in zip(leaves, sizes)]
        for weight, (k, i) in zip(weights, tied):
            w[k].flat[i] = weight
        along = directional_derivative(prog, leaves, w, probe)
        if not along.decided or along.depth >= 1 or not abs(along.value - base) <= 1e-9 * max(1.0, abs(base)):
            continue
        signature = float(f"{along.derivative:.12g}")
        if signature in seen:
            continue
        if (len(found) + 1) * sum(sizes) > _MAX_PASSES:
            return None
        seen.add(signature)
        grad: list[Any] = [np.zeros(np.shape(x)) if size else None for x, size in zip(leaves, sizes)]
        try:
            for k, size in enumerate(sizes):
                for i in range(size):
                    e = [None] * len(leaves)
                    e[k] = np.zeros(np.shape(leaves[k]))
                    e[k].flat[i] = 1.0
                    piece = directional_derivative(prog, leaves, w, e)
                    if not piece.decided or piece.depth >= 1:
                        raise _Undecided  # w left a tie that this entry parts: not one piece
                    grad[k].flat[i] = piece.derivative
        except _Undecided:
            continue
        found.append(grad)
    return found


def convex_weights(point: np.ndarray, vertices: np.ndarray) -> np.ndarray | None:
    """Weights ``lam >= 0`` summing to 1 with ``vertices.T @ lam`` nearest ``point`` (non-negative
    least squares, the sum held by a heavily weighted row), or None."""
    from scipy.optimize import nnls

    scale = max(1.0, float(np.max(np.abs(vertices), initial=0.0)), float(np.max(np.abs(point), initial=0.0)))
    weight = 1e3 * scale
    a = np.vstack([vertices.T, np.full((1, len(vertices)), weight)])
    lam, _ = nnls(a, np.concatenate([point, [weight]]))
    total = float(np.sum(lam))
    return lam / total if total > 0 else None

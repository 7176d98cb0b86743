"""Trace Python functions into programs, once per abstract signature.

:func:`make_program` shows what pyzygote captured from a function.  Traces
are cached per function and signature (tree structure, shapes, dtypes, static
values).  A cached trace is reused only while the arrays it captured are
unchanged and the function's closure cells and globals still hold the same
objects, so mutating or rebinding captured data re-traces instead of silently
using stale constants.

>>> import numpy as np, pyzygote as pz
>>> print(pz.make_program(lambda x, y: x @ y, np.ones((2, 3)), np.ones(3)))
{ lambda ; a:f64[2,3] b:f64[3]. let
    c:f64[2] = einsum[spec='xy,y->x'] a b
  in (c,) }
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np

from pyzygote.ir import Program
from pyzygote.pytree import Static, flatten, unflatten
from pyzygote.tracer import Builder

__all__ = ["make_program", "Traced", "trace", "to_input_array", "clear_cache"]

_ALLOWED_KINDS = "f"


@dataclass
class Traced:
    """A traced function: its program, and how to map pytrees to and from it."""

    program: Program
    in_tree: Hashable
    leaves: list[Any]  # example leaves: arrays, or Static markers
    array_slots: list[int]  # which leaves are program inputs
    out_tree: Hashable
    guards: tuple[Any, ...]

    def inputs_from(self, leaves: list[Any]) -> list[np.ndarray]:
        return [leaves[i] for i in self.array_slots]


def to_input_array(x: Any, argname: str) -> np.ndarray:
    """Python numbers and lists become float64; numpy arrays keep their dtype."""
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        arr = np.asarray(x)
    else:
        arr = np.asarray(x, dtype=np.float64) if not hasattr(x, "__array__") else np.asarray(x)
    if arr.dtype.kind not in _ALLOWED_KINDS:
        kind = {"i": "integer", "u": "integer", "b": "boolean", "c": "complex", "O": "object"}.get(
            arr.dtype.kind, arr.dtype.name
        )
        raise TypeError(
            f"cannot differentiate with respect to {argname}: it is an array of {kind} values "
            f"(dtype {arr.dtype}); pyzygote differentiates float32/float64 arrays. "
            f"Convert it with np.asarray(..., dtype=float), or close over it if it is data."
        )
    return arr


_CACHE: "weakref.WeakKeyDictionary[Any, dict[Hashable, Traced]]" = weakref.WeakKeyDictionary()


def clear_cache() -> None:
    """Forget every cached trace."""
    _CACHE.clear()


def _closure_guard(f: Any) -> tuple[Any, ...]:
    """Identities of what ``f`` reads from its closure and globals."""
    code = getattr(f, "__code__", None)
    if code is None:
        return ()
    cells = tuple(id(c.cell_contents) for c in (f.__closure__ or ()) if _cell_filled(c))
    g = getattr(f, "__globals__", {})
    names = tuple(id(g[n]) for n in code.co_names if n in g)
    return cells + names


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _leaf_names(args: tuple[Any, ...], leaves: list[Any], tree: Hashable, argnames: list[str] | None) -> list[str]:
    """Human names for leaves: 'argument 2' or "argument 1['k']"."""
    names: list[str] = []

    def walk(t: Any, path: str) -> None:
        if t in ("*", "s"):
            names.append(path)
            return
        kind = t[0]
        if kind == "dict":
            for k, c in zip(t[1], t[2]):
                walk(c, f"{path}[{k!r}]")
        else:
            for i, c in enumerate(t[-1]):
                walk(c, f"{path}[{i}]")

    for i, c in enumerate(tree[1]):
        base = argnames[i] if argnames and i < len(argnames) else f"argument {i + 1}"
        walk(c, base)
    return names


def trace(f: Callable[..., Any], args: tuple[Any, ...], argnames: list[str] | None = None) -> tuple[Traced, list[np.ndarray]]:
    """Trace ``f(*args)`` (or reuse a valid cached trace); return it and the input arrays."""
    leaves, tree = flatten(tuple(args))
    names = _leaf_names(args, leaves, tree, argnames)
    arrays: list[Any] = []
    key_parts: list[Any] = [tree]
    for leaf, name in zip(leaves, names):
        if isinstance(leaf, Static):
            key_parts.append(leaf.key())
        else:
            arr = to_input_array(leaf, name)
            arrays.append(arr)
            key_parts.append((arr.shape, arr.dtype.str))
    key = tuple(key_parts)
    per_fn = _function_cache(f)
    hit = per_fn.get(key) if per_fn is not None else None
    if hit is not None and _still_valid(hit, f):
        return hit, arrays
    traced = _trace_fresh(f, leaves, tree, arrays)
    if per_fn is not None:
        per_fn[key] = traced
    return traced, arrays


def _function_cache(f: Any) -> dict[Hashable, Traced] | None:
    try:
        return _CACHE.setdefault(f, {})
    except TypeError:  # not weak-referenceable
        return None


def _still_valid(traced: Traced, f: Any) -> bool:
    closure_ids, captured = traced.guards
    if closure_ids != _closure_guard(f):
        return False
    return all(np.array_equal(orig, snap) for orig, snap in captured)


def _trace_fresh(f: Callable[..., Any], leaves: list[Any], tree: Hashable, arrays: list[np.ndarray]) -> Traced:
    b = Builder()
    tracers = [b.new_input(a.shape, a.dtype) for a in arrays]
    it = iter(tracers)
    slots = [i for i, leaf in enumerate(leaves) if not isinstance(leaf, Static)]
    traced_leaves = [leaf if isinstance(leaf, Static) else next(it) for leaf in leaves]
    guard_before = _closure_guard(f)
    out = f(*unflatten(tree, traced_leaves))
    out_leaves, out_tree = flatten(out)
    for leaf in out_leaves:
        if isinstance(leaf, Static):
            raise TypeError(f"the traced function returned {leaf.value!r}, which is not an array")
    prog = b.build(tracers, out_leaves)
    captured = tuple(
        (orig, snap) for orig, snap in ((o, b._const_values[v]) for v, o in _captured(b)) if isinstance(orig, np.ndarray)
    )
    return Traced(prog, tree, leaves, slots, out_tree, (guard_before, captured))


def _captured(b: Builder) -> list[tuple[Any, Any]]:
    return [(var, orig) for var, orig in b._consts.values()]


def make_program(f: Callable[..., Any], *args: Any) -> Program:
    """The IR program pyzygote traces from ``f(*args)``.

    >>> import numpy as np, pyzygote as pz
    >>> prog = pz.make_program(lambda x: np.sum(x ** 2), np.ones(3))
    >>> [e.prim.name for e in prog.eqns]
    ['pow', 'reduce_sum']
    """
    return trace(f, args)[0].program


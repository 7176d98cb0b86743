"""How the ``u`` and ``p`` a user writes map to the flat vectors solvers work with.

DifferentialEquations.jl takes a ``u0`` of any array shape and parameters of
any structure; diffrax takes pytrees.  pyzygote's solvers and sensitivities
work with flat float64 vectors, so ``u0`` of any shape is raveled (row-major)
and ``p`` (an array of any shape, or a dict, tuple or list of arrays and
numbers) is flattened leaf by leaf, dicts in sorted key order, and
concatenated.  The right-hand side still sees ``u`` and ``p`` as written: its
traced program is wrapped in one that reshapes the flat vectors and ravels
``du/dt`` (:meth:`Layout.wrap`), so both engines run the same flat program.

>>> import numpy as np
>>> layout, u, p = Layout.of(np.ones((2, 2)), {"w": np.zeros(3), "k": 2.0})
>>> layout.u_shape, u.shape, p.shape, layout.flat
((2, 2), (4,), (4,), False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from pyzygote.ir import Program
from pyzygote.primitives.shape import convert
from pyzygote.pytree import Static, flatten, unflatten
from pyzygote.tracer import Builder, Tracer, as_operand
from pyzygote.tracing import _leaf_names
from pyzygote.transforms.evaluate import eval_program

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """The shape of ``u`` and the structure and leaf shapes of ``p``."""

    u_shape: tuple[int, ...]
    p_tree: Hashable
    p_shapes: tuple[tuple[int, ...], ...]
    # Non-numeric leaves of p (a dataclass model's activation name): (position among the
    # leaves, hashable key) compared and hashed, so that another value traces anew; the
    # values themselves ride along.
    p_statics: tuple[tuple[int, Hashable], ...] = ()
    p_static_values: tuple[Any, ...] = field(default=(), compare=False, hash=False)
    p_static_names: tuple[str, ...] = field(default=(), compare=False, hash=False)
    # The numeric leaves' names as messages write them (p['logk']['K0']), in the flat vector's order.
    p_names: tuple[str, ...] = field(default=(), compare=False, hash=False)

    def named_p(self, p: np.ndarray, leaves: int = 100) -> str | None:
        """The flat vector ``p`` as a message shows it, leaf by leaf with p's own names and the first
        entries of each (``p['dose'] = 1, p['logk']['K0'] = -0.4776, ...``), entries beyond p's
        (traced values f reads from its closure) left out; None for a plain vector p."""
        from pyzygote.primitives.ode import _short

        p = np.ravel(np.asarray(p, dtype=float))
        if self.flat or len(self.p_names) != len(self.p_shapes) or p.size < self.m:
            return None
        shown, start = [], 0
        for name, shape in zip(self.p_names, self.p_shapes):
            size = math.prod(shape)
            value = p[start : start + size]
            shown.append(f"{name} = {f'{value[0]:.6g}' if shape == () else _short(value)}")
            start += size
        text = ", ".join(shown[:leaves]) + (f", ... ({len(shown) - leaves} more leaves)" if len(shown) > leaves else "")
        return text  # entries beyond p's (values f reads from its closure): the caller shows them

    def locate_in_p(self, index: int) -> tuple[str, list[int] | None]:
        """Where entry ``index`` of the flat vector ``q = [p, lifted...]`` comes from, as a message
        writes it: the leaf's name and the entry in it (``("p['k']", [1])``, ``("p", [3])`` for a
        vector p, ``None`` for a scalar leaf), or a value f reads from its closure (lifted, after p's
        ``m`` entries, with no entry shown: only the parts f reads are lifted)."""
        if index >= self.m:
            return "a value f reads from its closure (captured, not passed in p)", None
        if self.flat or len(self.p_names) != len(self.p_shapes):
            return "p", [index]
        start = 0
        for name, shape in zip(self.p_names, self.p_shapes):
            size = math.prod(shape)
            if index < start + size:
                return name, ([int(i) for i in np.unravel_index(index - start, shape)] if shape else None)
            start += size
        return "p", [index]

    def with_statics(self, numeric: list[Any]) -> list[Any]:
        """All of p's leaves: the numeric ones given, the static ones put back in place."""
        leaves = list(numeric)
        for (at, _), value in zip(self.p_statics, self.p_static_values):
            leaves.insert(at, Static(value))
        return leaves

    @staticmethod
    def vectors(n: int, m: int) -> "Layout":
        """``u`` and ``p`` as plain vectors of lengths n and m."""
        return Layout((n,), "*", ((m,),))

    @property
    def n(self) -> int:
        return math.prod(self.u_shape)

    @property
    def m(self) -> int:
        return sum(math.prod(s) for s in self.p_shapes)

    @property
    def flat(self) -> bool:
        return self == Layout.vectors(self.n, self.m)

    def example_args(self) -> tuple[Any, Any, float]:
        """``(u, p, t)`` of the user's shapes, to trace the right-hand side at."""
        return np.zeros(self.u_shape), unflatten(self.p_tree, self.with_statics([np.zeros(s) for s in self.p_shapes])), 0.0

    def wrap(self, prog: Program) -> Program:
        """``(u_flat, p_flat, t) -> ravel(du)`` from the traced ``(u, p leaves..., t) -> du``."""
        if self.flat:
            return prog
        b = Builder()
        u, p, t = (b.new_input(s, np.float64) for s in ((self.n,), (self.m,), ()))
        leaves, start = [], 0
        for shape in self.p_shapes:
            size = math.prod(shape)
            leaves.append(np.reshape(p[start : start + size], shape))
            start += size
        (du,) = eval_program(prog, np.reshape(u, self.u_shape), *leaves, t)
        return b.build([u, p, t], [np.ravel(du)])

    def states(self, U: Any) -> Any:
        """Solutions ``(T, n)`` as ``(T, *u0.shape)``."""
        return U if len(self.u_shape) == 1 else np.reshape(U, (np.shape(U)[0],) + self.u_shape)

    @staticmethod
    def of(u0: Any, p: Any, keep_none: bool = False) -> tuple["Layout", Any, Any]:
        """The layout of ``u0`` and ``p``, and both as flat float64 vectors (traced or not).

        A ``p`` of None is an empty vector, or, with ``keep_none``, reaches f as None (as
        diffrax's ``args=None``; SciML passes ``NullParameters()``): ``if p is None:`` in f then
        works, and ``p[0]`` fails on None, not on an index out of bounds of an empty array."""
        u = _numbers(u0, "u0")
        if u.size == 0:
            raise ValueError("u0 must have at least one element")
        if p is None and keep_none:
            # no leaves: the traced f takes (u, t), and wrap feeds it from an empty flat p
            return Layout(tuple(u.shape), ("none", ()), ()), np.ravel(u), np.zeros(0)
        if p is None:
            p = np.zeros(0)
        elif _scalars(p):
            p = as_operand(p)  # numbers and traced scalars in a list or tuple: a vector, as numpy reads it
        leaves, tree = flatten(p)
        wrapped_leaves, wrapped_tree = flatten((p,))
        names = _leaf_names((p,), wrapped_leaves, wrapped_tree, ["p"])
        # Strings and other non-numbers inside a container (a dataclass model's fields) reach
        # f as they are; a bare string p is still refused, by _numbers.
        statics = [(i, _as_static(leaf)) for i, leaf in enumerate(leaves) if _passes_through(leaf)] if tree != "s" else []
        held = {i for i, _ in statics}
        arrays = [_numbers(leaf, name) for i, (leaf, name) in enumerate(zip(leaves, names)) if i not in held]
        layout = Layout(
            tuple(u.shape),
            tree,
            tuple(a.shape for a in arrays),
            tuple((i, leaf.key()) for i, leaf in statics),
            tuple(leaf.value for _, leaf in statics),
            tuple(names[i] for i, _ in statics),
            tuple(name for i, name in enumerate(names) if i not in held) if tree != "s" else (),
        )
        if layout.flat:
            return layout, u, arrays[0]
        p_flat = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)
        return layout, np.ravel(u), p_flat


def _passes_through(leaf: Any) -> bool:
    """A leaf of p that reaches f as it is, outside the flat vector: a string, None, or an
    integer or boolean numpy array (group labels, a mask), which is data, as in pz.gradient."""
    if isinstance(leaf, np.ndarray):
        return leaf.dtype.kind in "biu"
    return isinstance(leaf, Static) and isinstance(leaf.value, (str, bytes, type(None)))


def _as_static(leaf: Any) -> Static:
    return leaf if isinstance(leaf, Static) else Static(leaf.copy())  # a later write into it retraces


def _numeric(leaves: list[Any], layout: "Layout") -> list[Any]:
    held = {at for at, _ in layout.p_statics}
    return [leaf for i, leaf in enumerate(leaves) if i not in held]


def leaf_values(p: Any) -> tuple[Any, ...]:
    """The leaves of ``p``, as :meth:`Layout.of` splits it: each a numpy array, or ``None`` where
    it is traced (being differentiated)."""
    from pyzygote.tracing import _from_torch

    if p is None:
        return ()
    if _scalars(p):
        return (None if any(isinstance(v, Tracer) for v in p) else np.asarray(p, dtype=float),)
    leaves = [leaf for leaf in flatten(p)[0] if not _passes_through(leaf)]
    return tuple(None if isinstance(leaf, Tracer) else np.asarray(_from_torch(leaf, "p")) for leaf in leaves)


def constant_entries(p: Any, layout: "Layout") -> tuple[int, ...]:
    """The positions in :meth:`Layout.of`'s flat ``p`` of the entries that are not traced.

    Their tangents are zero in every transformation, so their sensitivities need not be
    solved for: fitting 3 of 74 rates solves 3 sensitivity columns, not 74.
    """
    if p is None:
        return ()
    if _scalars(p):
        return tuple(i for i, v in enumerate(p) if not isinstance(v, Tracer))
    fixed: list[int] = []
    start = 0
    for leaf, shape in zip(_numeric(flatten(p)[0], layout), layout.p_shapes):
        size = math.prod(shape)
        if not isinstance(leaf, Tracer):
            fixed.extend(range(start, start + size))
        start += size
    return tuple(fixed)


def _scalars(p: Any) -> bool:
    """A plain list or tuple of numbers and traced scalars (not a namedtuple, no containers)."""
    if not isinstance(p, (list, tuple)) or hasattr(p, "_fields") or not p:
        return False
    return all(
        (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool))
        or (isinstance(v, (np.ndarray, Tracer)) and v.ndim == 0)
        for v in p
    )


def _numbers(x: Any, name: str) -> Any:
    """``x`` as a float64 array or traced value, or a clear error naming it."""
    if isinstance(x, (Static, dict, str, bytes, bool)) or x is None:
        value = x.value if isinstance(x, Static) else x
        raise TypeError(f"{name} must be an array of real numbers (any shape), got {value!r}")
    from pyzygote.tracing import _from_torch

    try:
        x = as_operand(_from_torch(x, name))
    except ValueError as exc:  # a ragged list
        raise ValueError(f"{name} must be an array of real numbers (any shape): {exc}") from None
    if isinstance(x, Tracer) and x.dtype.kind in "biu":
        raise TypeError(
            f"{name} is an integer or boolean array computed inside the differentiated function; an ODE's p "
            "takes such arrays (labels, masks) only as data: compute it from data, outside the differentiated function"
        )
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if not isinstance(x, Tracer) and not np.all(np.isfinite(x)):
        from pyzygote.errors import NonFiniteODEInputError  # a ValueError, as inside a gradient (_check_values)

        flat = np.ravel(np.asarray(x, dtype=float))
        i = int(np.argwhere(~np.isfinite(flat))[0][0])
        at = f"entry {[int(j) for j in np.unravel_index(i, np.shape(x))]} is" if np.ndim(x) else "it is"
        raise NonFiniteODEInputError(f"{name} contains NaN or inf: {at} {float(flat[i])!r} ({x!r})")
    return convert(x, np.float64)

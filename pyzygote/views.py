"""numpy's view semantics and memory layouts, for traced arrays.

numpy decides whether an operation returns a view (``y[0]``, ``y.T``, ``y.reshape(-1)`` of a
C-ordered ``y``) or a copy from the memory layout of its operands.  A traced array keeps, beside
its value, what numpy would know: the flat positions of its root array that it shows (a view),
or an array of its own positions laid out as numpy would lay it out (a root).  numpy itself
then decides, by running the same operation on those position arrays, whether a result shares
memory (a view, whose writes reach the root and which reads the root again after it changes)
and how a new array is laid out (``x.T * 1.0`` is Fortran-ordered, so its ``reshape(-1)`` is a
copy).

>>> import numpy as np, pyzygote as pz
>>> def f(x):
...     y = x * 1.0
...     row = y[0]      # a view: the write below changes y
...     row *= 10.0
...     return np.sum(y)
>>> float(pz.gradient(f, np.ones((2, 2)))[0][0, 0])
10.0
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.numpy_api import lookup
from pyzygote.tracer import Tracer, as_operand


# numpy functions whose result may be a view of their first argument (numpy decides, see _mark_view).
_VIEW_FUNCTIONS = frozenset(
    (
        np.reshape, np.ravel, np.transpose, np.swapaxes, np.moveaxis, np.squeeze, np.expand_dims,
        np.diagonal, np.broadcast_to, np.flip, np.fliplr, np.flipud, np.rot90, np.atleast_1d,
        np.atleast_2d, np.atleast_3d, np.split, np.array_split, np.hsplit, np.vsplit, np.broadcast_arrays,
    )
)  # fmt: skip


def memory_layout(t: Tracer) -> np.ndarray:
    """An array of ``t``'s shape laid out in memory as numpy would lay out ``t``: the flat
    positions it shows (a view), its own positions (a root with a layout of its own), or a
    C-ordered array."""
    if t._root is not None and t._positions is not None:
        return t._positions
    if t._dummy is not None:
        return t._dummy
    return np.zeros(t.shape, np.int8)


def _not_c_order(x: Any) -> bool:
    if not isinstance(x, Tracer) or x.ndim < 2:
        return False
    layout = x._positions if x._positions is not None else x._dummy
    return layout is not None and not layout.flags.c_contiguous


# numpy functions whose results are laid out like their inputs (order K), or by an order given.
# Others (dot, einsum, linalg) make C-ordered results, and running them to find out would cost
# a whole computation on position arrays.
_LAYOUT_FOLLOWING = frozenset(
    (
        np.where, np.copy, np.sort, np.cumsum, np.cumprod, np.diff, np.clip, np.nan_to_num, np.round,
        np.around, np.reshape, np.ravel, np.nancumsum, np.nancumprod, np.fix, np.real, np.imag,
        # reductions along axes, and the joining and tiling functions (found by the fuzzer)
        np.sum, np.mean, np.max, np.min, np.amax, np.amin, np.prod, np.var, np.std, np.any, np.all,
        np.nansum, np.nanmean, np.nanmax, np.nanmin, np.nanprod, np.nanvar, np.nanstd, np.ptp,
        np.concatenate, np.vstack, np.hstack, np.stack, np.column_stack, np.dstack, np.append,
        np.delete, np.pad, np.roll, np.tile, np.repeat, np.tril, np.triu, np.take, np.take_along_axis,
        np.gradient, np.outer, np.kron,
    )
)  # fmt: skip
# numpy functions that make C-ordered results whatever their inputs (and whose probe would fail:
# np.select wants boolean conditions), while pyzygote builds them from functions that follow layouts.
_C_ORDERED = frozenset((np.select,))


def _numpys_layout(func: Any, args: Any, kwargs: dict[str, Any], result: Any) -> None:
    """Give a new array the memory layout numpy gives it (np.where(c, x.T, 0.0), np.sort(x.T) and
    reshape in order F are Fortran-ordered): numpy's own function applied to arrays laid out as the
    arguments are.  Only asked when an argument is not C-ordered or an order is given."""
    if isinstance(result, Tracer) and result._root is None and func in _C_ORDERED:
        result._dummy = None
    if not isinstance(result, Tracer) or result._root is not None or result.ndim < 2 or func not in _LAYOUT_FOLLOWING:
        return
    given = [*args, *kwargs.values()]
    flat = [e for a in given for e in (a if isinstance(a, (list, tuple)) else (a,))]
    if not (any(_not_c_order(a) for a in flat) or "order" in kwargs or (func in (np.reshape, np.ravel) and len(args) > 2)):
        return

    def layout(a: Any) -> Any:
        if isinstance(a, Tracer):
            return memory_layout(a)
        return type(a)(layout(e) for e in a) if isinstance(a, (list, tuple)) and not hasattr(a, "_fields") else a

    try:
        with np.errstate(all="ignore"):
            like = func(*(layout(a) for a in args), **{k: layout(v) for k, v in kwargs.items()})
    except Exception:  # noqa: BLE001  (a function numpy runs differently on these arrays: keep C order)
        return
    if isinstance(like, np.ndarray):
        _lay_out_like(result, like)


def positions_strided_like(a: np.ndarray) -> np.ndarray | None:
    """The flat positions ``0 .. a.size - 1`` of an array of ``a``'s shape, laid out in memory with
    ``a``'s strides (a non-contiguous argument, ``X[:, ::2]``), so that numpy decides views of it as
    it does for ``a``; ``None`` where that cannot be mirrored (overlapping or odd strides)."""
    if a.size == 0 or any(s % a.itemsize for s in a.strides):
        return None
    steps = [s // a.itemsize for s, n in zip(a.strides, a.shape)]
    if any(step == 0 and n > 1 for step, n in zip(steps, a.shape)):
        return None  # a broadcast: elements share memory
    low = sum(min(0, (n - 1) * step) for n, step in zip(a.shape, steps))
    high = sum(max(0, (n - 1) * step) for n, step in zip(a.shape, steps))
    buffer = np.empty(high - low + 1, np.int64)
    view = np.lib.stride_tricks.as_strided(buffer[-low:], a.shape, tuple(8 * step for step in steps))
    view[...] = np.arange(a.size, dtype=np.int64).reshape(a.shape)
    return view


def _lay_out_like(out: Tracer, like: np.ndarray) -> None:
    """Give the new array ``out`` the memory layout of ``like`` (numpy's for it)."""
    if out._root is not None or like.ndim < 2 or like.flags.c_contiguous or tuple(like.shape) != out.shape:
        return
    positions = np.empty_like(like, dtype=np.int64)  # order K: like's layout
    positions[...] = np.arange(out.size, dtype=np.int64).reshape(out.shape)
    out._dummy = positions


def _mark_view(parent: Tracer, result: Any, rearrange: Callable[[np.ndarray], Any]) -> Any:
    """Make ``result`` (an array, or a list of them) a view of ``parent`` where numpy would make one.

    numpy itself decides: the same operation is applied to an array of the root's
    flat positions, and when its result shares that array's memory it is a view
    (with numpy's read-only flag), holding the positions the view shows.
    """
    results = result if isinstance(result, (list, tuple)) else (result,)
    if not any(isinstance(r, Tracer) and r._builder is parent._builder for r in results):
        return result
    # A view at traced positions is the root of its own views (it reads its parent again).
    root = parent._root if parent._root is not None and parent._source is None else parent
    if root.ndim == 0 and not root._array0d:
        # numpy's scalars are immutable: what is made from one (s[None], np.expand_dims(s, 0),
        # s[...]) is a new array, and a writable one
        fresh = [r.copy() if r is parent else r for r in results]
        for r in fresh:
            if isinstance(r, Tracer) and r.ndim == 0:
                r._array0d = True
        return type(result)(fresh) if isinstance(result, list) else tuple(fresh) if isinstance(result, tuple) else fresh[0]
    if root._dummy is None:
        root._dummy = np.arange(root.size, dtype=np.int64).reshape(root.shape)
    base = parent._positions if root is not parent else root._dummy
    try:
        positions = rearrange(base)
    except Exception:  # noqa: BLE001  (numpy's own error was raised, or not, by the traced call)
        return result
    all_positions = positions if isinstance(result, (list, tuple)) else (positions,)
    out = []
    for r, pos in zip(results, all_positions):
        if isinstance(r, Tracer) and r is parent and isinstance(pos, np.ndarray):
            # A handler may hand back its input when nothing changes (y[[0, 1, 2]] of three rows,
            # np.ravel of a 1-D column); numpy made a copy there unless its result is a view.
            if not np.may_share_memory(pos, base):
                r = r.copy()
                _lay_out_like(r, pos)
        elif isinstance(r, Tracer) and isinstance(pos, np.ndarray) and pos.size:
            if np.may_share_memory(pos, root._dummy):
                r._root, r._positions, r._seen = root, pos, root._version
            else:  # a copy (advanced indexing): laid out as numpy lays out its copy
                _lay_out_like(r, pos)
        out.append(r)
    if isinstance(result, (list, tuple)):
        return type(result)(out) if not hasattr(result, "_fields") else type(result)(*out)
    return out[0]


class _Flat:
    """``x.flat`` of a traced array: indexing it reads a copy, assigning through it writes into ``x``."""

    def __init__(self, x: Tracer):
        self._x = x

    def __len__(self) -> int:
        return self._x.size

    def __getitem__(self, index: Any) -> Any:
        return lookup("getitem")(np.reshape(self._x.copy(), (-1,)), index)

    def __setitem__(self, index: Any, value: Any) -> None:
        x = self._x
        if isinstance(index, Tracer):
            x[np.unravel_index(index, x.shape)] = value
            return
        where = np.arange(x.size).reshape(-1)[index]
        x[np.unravel_index(where, x.shape)] = np.broadcast_to(as_operand(value), np.shape(where))


def _basic_at_traced_positions(index: Any) -> bool:
    """numpy's basic indexing with a traced integer among the items (y[:, i], y[i, 1:], with i from
    np.argmax): a view in numpy, as 0-d integers index like Python integers."""
    items = index if isinstance(index, tuple) else (index,)
    traced = False
    for item in items:
        if isinstance(item, Tracer):
            if item.ndim != 0 or item.dtype.kind not in "iu":
                return False
            traced = True
        elif not (item is None or item is Ellipsis or isinstance(item, slice)):
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
                return False
    return traced


def _view_at_traced_positions(parent: Tracer, result: Tracer, index: Any) -> Tracer:
    """Make ``result = parent[index]`` (traced integers in ``index``) a view of ``parent``: it
    reads ``parent[index]`` again when the array under it changes, and writes go to ``parent[index]``."""
    root = parent._root if parent._root is not None and parent._source is None else parent
    result._root, result._source, result._seen = root, (parent, index), root._version
    # Its layout for views of it: numpy's strides for this index at any one position.
    items = index if isinstance(index, tuple) else (index,)
    at_zero = tuple(0 if isinstance(i, Tracer) else i for i in items)
    buffer = np.empty_like(memory_layout(parent), dtype=np.int64)
    shown = buffer[at_zero]
    shown[...] = np.arange(shown.size, dtype=np.int64).reshape(shown.shape)
    result._dummy = shown
    return result


def _fresh(result: Any, inputs: Sequence[Any]) -> Any:
    """numpy functions other than views return new arrays: never one of their inputs itself.

    Handlers may return an input unchanged (``np.roll(x, 0)``, ``np.pad(x, 0)``); a write
    into the result must not reach that input.
    """
    tracers = [e for a in inputs for e in (a if isinstance(a, (list, tuple)) else (a,)) if isinstance(e, Tracer)]
    given = {id(e) for e in tracers}
    # What the inputs are views of: a result viewing one of them is numpy's view (np.diag of a
    # matrix is its read-only diagonal), a result viewing a temporary is a new array in numpy
    # (np.take's transpose of what it gathered).
    under = given | {id(e._root) for e in tracers if e._root is not None}
    return _new(result, given, under)


def _new(r: Any, given: set[int], under: set[int]) -> Any:
    # A module-level function, not a closure calling itself: that closure was a reference cycle
    # per traced numpy call, left for the garbage collector (0.3 s of a long loop's first gradient).
    if isinstance(r, Tracer):
        temporary_view = r._root is not None and id(r._root) not in under
        return r.copy() if id(r) in given or temporary_view else r
    if isinstance(r, (list, tuple)) and not hasattr(r, "_fields"):
        return type(r)(_new(e, given, under) for e in r)
    return r

"""Indexing with traced integers: ``take``/``put_add``, ``argsort``, ``argmax``/``argmin``.

:mod:`pyzygote.primitives.indexing` resolves constant indices at trace time.
Indices that depend on the data (``np.argsort(x)``, ``np.argmax(y)``, an index
computed from a traced value) are operands instead: ``take`` reads a flat
array at 0-based row-major positions given at run time, and ``put_add``, its
transpose, adds values back at such positions.  On top of them, numpy's
``sort``, ``median``, ``quantile``/``percentile``, ``take_along_axis``,
``take`` and ``x[i]`` with traced integers are compositions.  Sorting is
stable on both engines (numpy's ``kind="stable"``, Julia's ``sortperm``) and
compares values only, so ties are ordered the same way.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.median(x), np.array([3.0, 1.0, 2.0]))[0]
array([0., 0., 1.])
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, Undefined, defjvp
from pyzygote.primitives.shape import convert, normalize_axis
from pyzygote.tracer import CONTINUOUS, Tracer, as_operand, composition, is_weak

__all__ = [
    "take",
    "put_add",
    "argsort",
    "argextreme",
    "searchsorted",
    "take_p",
    "put_add_p",
    "argsort_p",
    "argextreme_p",
    "searchsorted_p",
]

_INT = np.dtype(np.int64)


def _positions(idx: Any, size: int) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise IndexError("a traced index is out of bounds for its axis (numpy raises IndexError here too)")
    return idx


# --- take: x.ravel()[idx] -------------------------------------------------------------------
take_p = Primitive("take")


@take_p.def_abstract_eval
def _take_aval(x: Aval, idx: Aval) -> Aval:
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take needs integer positions, got {idx.dtype}")
    return Aval(idx.shape, x.dtype)


@take_p.def_impl
def _take_impl(x: Any, idx: Any) -> Any:
    x = np.asarray(x)
    return x.reshape(-1)[_positions(idx, x.size)]


defjvp(take_p, lambda g, ans, x, idx: take_p.bind(g, idx), None)


@take_p.def_transpose
def _take_transpose(ct: Any, x: Any, idx: Any) -> tuple[Any, None]:
    if isinstance(idx, Undefined):
        raise TypeError("take is linear only in the array it reads")
    return put_add(ct, idx, x.aval.shape), None


@take_p.def_julia
def _take_julia(e: Any, x: Any, idx: Any) -> str:
    if x.aval.ndim == 0:  # a 0-d array is a Julia number; every valid position is 0
        return x if idx.aval.ndim == 0 else f"fill({x}, size({idx}))"
    return f"PyZygote.take({x}, {idx})"


def _per_column(idx: Any, k: int, size: int, batched: bool) -> Any:
    """Positions into k arrays of ``size`` entries laid end to end: column j's at ``j * size + idx[j]``
    (``idx`` shared by the columns unless ``batched``)."""
    ndim = np.ndim(idx) - (1 if batched else 0)
    offsets = np.reshape(np.arange(k, dtype=_INT) * size, (k,) + (1,) * ndim)
    return (idx if batched else np.expand_dims(idx, 0)) + offsets


def _take_batch(args: Any, batched: Any) -> Any:
    """Columns in a leading axis: one take for all of them (a control read at a traced time index
    took one take per sensitivity column, 1.9 million calls in a 41-parameter fit)."""
    (x, idx), (bx, bi) = args, batched
    if not bx:
        return take_p.bind(x, idx)
    k = np.shape(x)[0]
    return take_p.bind(x, _per_column(idx, k, int(np.prod(np.shape(x)[1:], dtype=np.int64)), bi))


take_p.batch = _take_batch


def take(x: Any, idx: Any) -> Any:
    """``x.ravel()[idx]`` for integer positions ``idx`` that may be traced."""
    return take_p.bind(as_operand(x), as_operand(idx).astype(_INT))


# --- put_add: zeros(shape) with v added at positions idx ----------------------------------
put_add_p = Primitive("put_add")


@put_add_p.def_abstract_eval
def _put_add_aval(v: Aval, idx: Aval, *, shape: tuple[int, ...]) -> Aval:
    if v.shape != idx.shape:
        raise ValueError(f"put_add needs values of the shape of the positions {idx.shape}, got {v.shape}")
    return Aval(shape, v.dtype)


@put_add_p.def_impl
def _put_add_impl(v: Any, idx: Any, *, shape: tuple[int, ...]) -> np.ndarray:
    v = np.asarray(v)
    out = np.zeros(int(np.prod(shape, dtype=np.int64)), v.dtype)
    np.add.at(out, _positions(idx, out.size).ravel(), v.ravel())
    return out.reshape(shape)


defjvp(put_add_p, lambda g, ans, v, idx, *, shape: put_add_p.bind(g, idx, shape=shape), None)


@put_add_p.def_transpose
def _put_add_transpose(ct: Any, v: Any, idx: Any, *, shape: tuple[int, ...]) -> tuple[Any, None]:
    if isinstance(idx, Undefined):
        raise TypeError("put_add is linear only in the values it adds")
    return take(ct, idx), None


@put_add_p.def_julia
def _put_add_julia(e: Any, v: Any, idx: Any, *, shape: tuple[int, ...]) -> str:
    from pyzygote.julia.codegen import jtuple

    if not shape:
        return v if v.aval.ndim == 0 else f"sum({v})"
    return f"PyZygote.put_add({v}, {idx}, {jtuple(tuple(int(s) for s in shape))})"


def _put_add_batch(args: Any, batched: Any, *, shape: tuple[int, ...]) -> Any:
    (v, idx), (bv, bi) = args, batched
    k = np.shape(v)[0] if bv else np.shape(idx)[0]
    if not bv:
        v = np.broadcast_to(v, (k, *np.shape(v)))
    return put_add_p.bind(v, _per_column(idx, k, int(np.prod(shape, dtype=np.int64)), bi), shape=(k, *shape))


put_add_p.batch = _put_add_batch


def put_add(v: Any, idx: Any, shape: tuple[int, ...]) -> Any:
    """Zeros of ``shape`` with ``v`` added at the flat positions ``idx`` (the transpose of :func:`take`)."""
    return put_add_p.bind(v, idx, shape=tuple(int(s) for s in shape))


# --- argsort and argmax/argmin: integer results, no derivative ---------------------------
def _no_derivative(prim: Primitive) -> None:
    prim.jvp = lambda primals, tangents, **params: (prim.bind(*primals, **params), None)


argsort_p = Primitive("argsort")
argsort_p.def_abstract_eval(lambda x, *, axis: Aval(x.shape, _INT))
argsort_p.def_impl(lambda x, *, axis: np.argsort(x, axis=axis, kind="stable").astype(_INT))
_no_derivative(argsort_p)
argsort_p.def_julia(lambda e, x, *, axis: f"PyZygote.argsort_along({x}, {axis + 1})")


def argsort(x: Any, axis: int) -> Any:
    x = as_operand(x)
    return argsort_p.bind(x, axis=normalize_axis(axis, x.ndim))


argextreme_p = Primitive("argextreme")
argextreme_p.def_abstract_eval(lambda x, *, axis, which: Aval(x.shape[:axis] + x.shape[axis + 1 :], _INT))
argextreme_p.def_impl(
    lambda x, *, axis, which: np.asarray((np.argmax if which == "max" else np.argmin)(x, axis=axis), _INT)[()]
)
_no_derivative(argextreme_p)
_JULIA_ARG = {"max": "PyZygote.argmax_along", "min": "PyZygote.argmin_along"}
argextreme_p.def_julia(lambda e, x, *, axis, which: f"{_JULIA_ARG[which]}({x}, {axis + 1})")


def argextreme(x: Any, axis: int, which: str) -> Any:
    x = as_operand(x)
    if x.shape[axis] == 0:
        raise ValueError(f"attempt to get arg{which} of an empty sequence")
    return argextreme_p.bind(x, axis=axis, which=which)


searchsorted_p = Primitive("searchsorted")


@searchsorted_p.def_abstract_eval
def _searchsorted_aval(a: Aval, v: Aval, *, side: str) -> Aval:
    if a.ndim != 1:
        raise ValueError("object too deep for desired array: searchsorted needs a 1-D a")
    return Aval(v.shape, _INT)


# numpy's binary search orders as its sort does: NaN last, -0.0 equal to 0.0.
searchsorted_p.def_impl(lambda a, v, *, side: np.asarray(np.searchsorted(a, v, side=side), _INT)[()])
_no_derivative(searchsorted_p)
searchsorted_p.def_julia(lambda e, a, v, *, side: f"PyZygote.numpy_searchsorted({a}, {v}, {str(side == 'right').lower()})")


def _searchsorted_batch(args: Any, batched: Any, *, side: str) -> Any:
    (a, v), (a_batched, _) = args, batched
    return None if a_batched else searchsorted_p.bind(a, v, side=side)  # positions of each column's v


_searchsorted_batch.pays = lambda eqn: False  # type: ignore[attr-defined]
searchsorted_p.batch = _searchsorted_batch


def searchsorted(a: Any, v: Any, side: str = "left") -> Any:
    """numpy's ``searchsorted(a, v, side)`` for a sorted 1-D ``a``: a binary search per entry of
    ``v``, where either may be traced."""
    return searchsorted_p.bind(as_operand(a), as_operand(v), side=side)


# --- scalar rules (pyzygote.transforms.scalarize) -------------------------------------
def _set_scalar_rules() -> None:
    from pyzygote.transforms.scalarize import lookup

    def table(elements: list[str]) -> str:
        return f"({', '.join(elements)},)" if elements else "()"  # literals: a constant of the code

    take_p.scalar = lookup(lambda s, x, idx: [f"_at({table(x)}, {j})" for j in idx])
    searchsorted_p.scalar = lookup(
        lambda s, a, v, *, side: [f"_searchsorted({table(a)}, {x}, {side == 'right'})" for x in v]
    )


_set_scalar_rules()


# --- numpy functions ------------------------------------------------------------------------
def _flat_axis(x: Any, axis: Any) -> tuple[Any, int]:
    """``x`` and a normalized axis; ``axis=None`` means the raveled array, as in numpy."""
    x = as_operand(x)
    if axis is None:
        return np.ravel(x), 0
    return x, normalize_axis(axis, x.ndim)


def _strides(shape: tuple[int, ...]) -> list[int]:
    return [int(np.prod(shape[k + 1 :], dtype=np.int64)) for k in range(len(shape))]


def _along_axis_positions(shape: tuple[int, ...], idx: Any, axis: int) -> Any:
    """Flat positions of ``take_along_axis``: ``idx`` along ``axis``, the own index elsewhere."""
    strides = _strides(shape)
    grid = np.indices(idx.shape, dtype=np.int64)
    fixed = sum(grid[k] * strides[k] for k in range(len(shape)) if k != axis)
    return idx * strides[axis] + fixed


def _wrapped(idx: Any, n: int, size: int) -> Any:
    """Negative indices count from the end, as numpy's do.  An index outside ``[-n, n)`` becomes
    ``size``, a flat position past the end of the whole array, so that reading it raises however
    the other axes' offsets would have added up."""
    idx = as_operand(idx)
    if idx.dtype.kind not in "iu":
        raise IndexError("arrays used as indices must be of integer type")
    inside = np.logical_and(idx >= -n, idx < n)
    return np.where(inside, np.where(idx < 0, idx + n, idx), size).astype(_INT)


@implements(np.take_along_axis)
def _np_take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    arr, axis = _flat_axis(arr, axis)
    indices = as_operand(indices)
    if indices.ndim != arr.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    shape = tuple(max(a, 1) if i == axis else a for i, a in enumerate(arr.shape))
    indices = np.broadcast_to(indices, tuple(i if k == axis else shape[k] for k, i in enumerate(indices.shape)))
    positions = _along_axis_positions(arr.shape, _wrapped(indices, arr.shape[axis], arr.size), axis)
    return take(arr, np.minimum(positions, arr.size))


@implements(np.argsort)
def _np_argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
    if order is not None:
        raise UnsupportedOperationError("numpy.argsort's order= is for structured arrays, which cannot be traced")
    a, axis = _flat_axis(a, axis)
    return argsort(a, axis)


@implements(np.sort)
@composition(CONTINUOUS)  # sorted values trade places continuously, with kinks where they cross
def _np_sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
    if order is not None:
        raise UnsupportedOperationError("numpy.sort's order= is for structured arrays, which cannot be traced")
    a, axis = _flat_axis(a, axis)
    return np.take_along_axis(a, argsort(a, axis), axis)


def _arg_handler(which: str) -> Any:
    def handler(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
        if out is not None:
            raise UnsupportedOperationError(f"numpy.arg{which}'s out= is not supported while tracing")
        flat, ax = _flat_axis(a, axis)
        result = argextreme(flat, ax, which)
        if keepdims:
            kept = [1] * np.ndim(a) if axis is None else list(flat.shape[:ax]) + [1] + list(flat.shape[ax + 1 :])
            result = np.reshape(result, kept)
        return result

    return handler


implements(np.argmax)(_arg_handler("max"))
implements(np.argmin)(_arg_handler("min"))


def _sorted_along(a: Any, axis: Any) -> tuple[Any, int]:
    a, axis = _flat_axis(a, axis)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return np.sort(a, axis=axis), axis


def _with_nan(out: Any, s: Any, axis: int) -> Any:
    """NaN where a slice holds a NaN, as numpy's median and quantile give (sorting puts NaN
    last, so the middle of the sorted slice would be a number)."""
    last = np.take(s, [s.shape[axis] - 1], axis=axis)
    has_nan = np.isnan(np.squeeze(last, axis=axis))  # NaN sorts last: the slice's last value tells
    return np.where(has_nan, np.nan, out)


def _quantile_sorted(s: Any, q: np.ndarray, axis: int) -> Any:
    """numpy's default ("linear") quantiles of ``s``, sorted along ``axis``, at constant ``q``."""
    n = s.shape[axis]
    if n == 0:
        raise ValueError("quantiles of an empty array")
    pos = q * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(s.dtype)
    below = np.take(s, lo.ravel(), axis=axis)
    above = np.take(s, hi.ravel(), axis=axis)
    shape = [1] * s.ndim
    shape[axis] = lo.size
    frac = frac.reshape(shape)
    # numpy's own interpolation (_lerp): from the nearer end, so that it is exact at both.
    diff = above - below
    out = np.where(frac >= 0.5, above - diff * (1.0 - frac), below + diff * frac)
    out = np.moveaxis(out, axis, 0)
    return np.reshape(out, q.shape + out.shape[1:])


def _quantile(a: Any, q: Any, axis: Any, keepdims: bool, method: str, name: str, scale: float) -> Any:
    if method != "linear":
        raise UnsupportedOperationError(f"numpy.{name} supports method='linear' (the default) while tracing")
    if isinstance(q, Tracer):
        raise UnsupportedOperationError(f"numpy.{name} needs constant quantiles q while tracing")
    # numpy's result type: a Python float q is weak (float32 data stay float32), an array q is not.
    q_type = q if isinstance(q, (int, float)) else np.asarray(q).dtype
    q = np.asarray(q, dtype=np.float64) / scale
    if np.any((q < 0) | (q > 1)) or np.any(np.isnan(q)):
        raise ValueError(f"{'Percentiles' if scale == 100 else 'Quantiles'} must be in the range [0, {scale:g}]")
    orig = as_operand(a)
    s, ax = _sorted_along(orig, axis)
    s = s.astype(np.result_type(s.dtype, q_type))
    out = _with_nan(_quantile_sorted(s, q, ax), s, ax)
    if keepdims:
        if axis is None:
            out = np.reshape(out, q.shape + (1,) * orig.ndim)
        else:
            out = np.expand_dims(out, q.ndim + ax)
    return out


def _quantile_handler(name: str, scale: float) -> Any:
    def handler(
        a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
        method: str = "linear", keepdims: bool = False, **kw: Any,
    ) -> Any:
        if out is not None or kw:
            raise UnsupportedOperationError(f"numpy.{name} keywords out= and {sorted(kw)} are not supported while tracing")
        if isinstance(axis, (tuple, list)):
            raise UnsupportedOperationError(f"numpy.{name} over several axes is not supported while tracing")
        return _quantile(a, q, axis, keepdims, method, name, scale)

    return handler


implements(np.quantile)(_quantile_handler("quantile", 1.0))
implements(np.percentile)(_quantile_handler("percentile", 100.0))


@implements(np.median)
def _np_median(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False, keepdims: bool = False) -> Any:
    if out is not None:
        raise UnsupportedOperationError("numpy.median's out= is not supported while tracing")
    if isinstance(axis, (tuple, list)):
        raise UnsupportedOperationError("numpy.median over several axes is not supported while tracing")
    orig = as_operand(a)
    s, ax = _sorted_along(orig, axis)
    n = s.shape[ax]
    if n == 0:
        raise ValueError("median of an empty array")
    mid = np.take(s, [(n - 1) // 2, n // 2], axis=ax)
    out = _with_nan(np.mean(mid, axis=ax), s, ax)  # numpy's: the mean of the middle one or two
    if keepdims:
        out = np.reshape(out, (1,) * orig.ndim) if axis is None else np.expand_dims(out, ax)
    return out


# --- indexing with traced integers -----------------------------------------------------------
def traced_getitem(x: Any, index: Any) -> Any:
    """``x[index]`` where some items are traced integers (or integer arrays) and the others
    integers, integer arrays, slices or ``...``: numpy's advanced indexing.  The result has
    the broadcast shape of the integer items in place of their axes when they are adjacent,
    and first otherwise, followed or surrounded by the sliced axes."""
    items = _integer_items(index, x.ndim)
    sliced = [k for k, item in enumerate(items) if isinstance(item, slice)]
    if not sliced:
        return take(x, _flat_positions(x, items))
    # Slices select a constant part first; the integer items then index that part, moved to the front.
    advanced = [k for k in range(len(items)) if k not in sliced]
    part = x[tuple(item if k in sliced else slice(None) for k, item in enumerate(items))]
    front = np.moveaxis(part, advanced, list(range(len(advanced))))
    out = take(front, _flat_positions(front, tuple(items[k] for k in advanced)))
    if advanced == list(range(advanced[0], advanced[-1] + 1)):  # adjacent: numpy keeps them in place
        nb = out.ndim - (x.ndim - len(advanced))
        out = np.moveaxis(out, list(range(nb)), list(range(advanced[0], advanced[0] + nb)))
    return out


def _leading_positions(x: Any, items: tuple[Any, ...]) -> tuple[Any, np.ndarray]:
    """The flat position of each indexed subarray's first element (``x.size`` for an index
    outside its axis) and the offsets of the subarray's elements from it."""
    strides = _strides(x.shape)
    wrapped = [_wrapped(item, x.shape[k], x.size) for k, item in enumerate(items)]
    outside = functools.reduce(np.logical_or, [np.equal(w, x.size) for w in wrapped])
    pos = np.where(outside, x.size, sum(w * strides[k] for k, w in enumerate(wrapped)))
    return pos, np.arange(strides[len(items) - 1], dtype=np.int64).reshape(x.shape[len(items) :])


def _integer_items(index: Any, ndim: int) -> tuple[Any, ...]:
    """The items of an index holding traced integers, with ``...`` expanded and without trailing
    full slices (``x[i, :]`` is ``x[i]``); ``None`` and boolean masks mixed in are refused."""
    items = list(index) if isinstance(index, tuple) else [index]
    for item in items:
        if item is None or (isinstance(item, (np.ndarray, Tracer)) and item.dtype == bool):
            raise UnsupportedOperationError(
                "an index that mixes traced integers with None (np.newaxis) or a boolean mask is not "
                "supported; index with the integers and slices first, then add the axis with np.expand_dims"
            )
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in [item for item in items if not isinstance(item, (np.ndarray, Tracer))]:
        k = next(k for k, item in enumerate(items) if not isinstance(item, (np.ndarray, Tracer)) and item is Ellipsis)
        items[k : k + 1] = [slice(None)] * max(ndim - (len(items) - 1), 0)
    if len(items) > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but {len(items)} were indexed")
    while items and isinstance(items[-1], slice) and items[-1] == slice(None):
        items.pop()
    return tuple(items)


def _flat_positions(x: Any, items: tuple[Any, ...]) -> Any:
    """The flat positions ``x[items]`` reads, ``x.size`` (past the end) for any index outside its axis."""
    pos, tail = _leading_positions(x, items)
    return np.reshape(pos, np.shape(pos) + (1,) * tail.ndim) + tail


# Deciding which of K assigned values is the last at its position compares all pairs.
_MAX_ASSIGNED = 4096


def traced_setitem(y: Any, index: Any, value: Any) -> Any:
    """The new value of ``y`` after ``y[index] = value`` with traced integers in ``index``
    (alone or with slices, as :func:`traced_getitem` reads them).

    As in numpy, the last of repeated positions wins and an index outside its axis raises
    ``IndexError``.  It is a composition: the assigned positions are marked with ``put_add``
    and ``value`` is selected there, so the derivative with respect to ``y`` is zero where
    ``y`` was overwritten and the one with respect to ``value`` flows only from the winning
    entries.
    """
    from pyzygote.primitives.shape import assigned_to_shape, convert

    items = _integer_items(index, y.ndim)
    advanced = [k for k, item in enumerate(items) if not isinstance(item, slice)]
    # The positions a read with the same index would see, read from a table of positions.
    grid = np.arange(y.size, dtype=_INT).reshape(y.shape)
    flat_shape = traced_getitem(grid, items)
    shape = tuple(flat_shape.shape)
    if 0 in shape:  # nothing is assigned (y[idx, 2:2] = v), as in numpy
        return y
    flat = np.ravel(flat_shape)
    values = np.ravel(assigned_to_shape(convert(as_operand(value), y.dtype), shape))
    counts = np.ones(flat.shape[0], _INT)
    combos = np.broadcast_shapes(*(np.shape(items[k]) for k in advanced))
    if int(np.prod(combos)) > 1 and not _distinct_by_a_constant(y, items, advanced, combos):
        # numpy's rule for repeated positions: the last assignment wins.  Repeats can only be
        # among the combinations of the integer items; each stands for the same slice offsets.
        n = int(np.prod(combos))
        if n > _MAX_ASSIGNED:
            raise UnsupportedOperationError(
                f"assigning at {n} traced positions is not supported (at most {_MAX_ASSIGNED}); "
                "build the array with np.where instead"
            )
        strides = _strides(y.shape)
        lead = np.ravel(sum(_wrapped(items[k], y.shape[k], y.size) * strides[k] for k in advanced))
        order = np.arange(n, dtype=_INT)
        # The last k at each k's position, plus one.  `lead * 0` makes the ranks traced, so they
        # are broadcast at run time instead of becoming a constant of n * n entries.
        last = np.max(np.equal(lead[:, None], lead[None, :]) * (lead * 0 + order + 1), axis=1)
        overwritten = np.reshape(np.greater(last, order + 1), combos)
        overwritten = np.ravel(np.broadcast_to(_combos_in_result(overwritten, items, advanced, len(shape)), shape))
        counts = np.where(overwritten, 0, counts)
        values = np.where(overwritten, np.zeros((), y.dtype), values)
    hit = np.greater(put_add(as_operand(counts), flat, (y.size,)), 0)
    if y.dtype == bool:  # put_add adds; one winner per position makes the sum its value
        placed = np.not_equal(put_add(values.astype(_INT), flat, (y.size,)), 0)
    else:
        placed = put_add(values, flat, (y.size,))
    return np.reshape(np.where(hit, placed, np.ravel(y)), y.shape)


def _distinct_by_a_constant(y: Any, items: tuple[Any, ...], advanced: list[int], combos: tuple[int, ...]) -> bool:
    """Whether a constant integer item alone tells every combination apart
    (``Y[np.arange(n), labels] = 1``), so that no position can repeat."""
    for k in advanced:
        if isinstance(items[k], Tracer):
            continue
        c = np.broadcast_to(np.asarray(items[k]), combos).ravel() % max(y.shape[k], 1)
        if np.unique(c).size == c.size:
            return True
    return False


def _combos_in_result(per_combo: Any, items: tuple[Any, ...], advanced: list[int], ndim: int) -> Any:
    """``per_combo`` (over the integer items' broadcast shape) placed among the result's axes:
    where numpy puts the broadcast axes (in place when the integer items are adjacent, first
    otherwise), with size-1 axes for the sliced ones."""
    nb = per_combo.ndim
    sliced_before = advanced[0] if advanced == list(range(advanced[0], advanced[-1] + 1)) else 0
    return np.reshape(per_combo, (1,) * sliced_before + tuple(per_combo.shape) + (1,) * (ndim - sliced_before - nb))


def masked_setitem(y: Any, mask: Any, value: Any) -> Any:
    """The new value of ``y`` after ``y[mask] = value`` with a traced boolean ``mask``.

    numpy broadcasts ``value`` to ``(number of True entries,) + y.shape[mask.ndim:]``; a value
    that fits that for any count (a scalar, or an array of the trailing shape) is a
    ``np.where``.  A value with one entry per True entry depends on the data and is refused.
    """
    from pyzygote.primitives.shape import convert

    mask = as_operand(mask)
    if mask.ndim > y.ndim or tuple(mask.shape) != tuple(y.shape[: mask.ndim]):
        raise IndexError(
            f"boolean index of shape {tuple(mask.shape)} does not match the indexed array of shape {tuple(y.shape)}"
        )
    tail = tuple(y.shape[mask.ndim :])
    from pyzygote.selection import Selection, same_mask

    if isinstance(value, Selection):  # y[m] *= 2, y[m] = np.sqrt(y[m]): numpy's copy, changed, written back
        if not same_mask(value._mask, mask) or tuple(value._tail) != tail:
            raise UnsupportedOperationError(
                "y[mask] = x[other_mask] with traced masks: the selected entries need not line up. "
                "Write y = np.where(mask, new_values, y) with new_values of y's shape"
            )
        return np.where(np.reshape(mask, mask.shape + (1,) * len(tail)), convert(value._values, y.dtype), y)
    value = convert(as_operand(value), y.dtype)
    if not tail and value.ndim > 1:  # numpy's own rule for a mask over every axis
        raise TypeError(
            f"NumPy boolean array indexing assignment requires a 0 or 1-dimensional input, input has {value.ndim} dimensions"
        )
    if value.ndim > len(tail):
        lead = value.shape[: value.ndim - len(tail)]
        if any(n != 1 for n in lead):
            raise UnsupportedOperationError(
                f"y[mask] = value with a traced mask needs a value that fits any number of selected "
                f"elements (a scalar, or shape {tail}); a value of shape {tuple(value.shape)} depends on how "
                "many entries are True. Use np.where(mask, new_values, y) with new_values of y's shape"
            )
        value = np.reshape(value, value.shape[len(lead) :])
    return np.where(np.reshape(mask, mask.shape + (1,) * len(tail)), value, y)


def take_public(a: Any, indices: Any, axis: int | None = None) -> Any:
    """numpy's ``np.take(a, indices, axis)``, also where only ``indices`` is traced.

    numpy hands ``np.take`` to a traced value only when ``a`` is one, so reading a constant
    table at a traced position (``table[i]``, ``np.take(table, i)``) needs this spelling.

    >>> import numpy as np, pyzygote as pz
    >>> table = np.array([10.0, 20.0, 30.0])
    >>> pz.gradient(lambda x: pz.take(table, np.argmax(x)) * np.max(x), np.array([1.0, 3.0, 2.0]))[0]
    array([ 0., 20.,  0.])
    """
    if not (isinstance(a, Tracer) or isinstance(indices, Tracer)):
        return np.take(a, indices, axis=axis)
    return _np_take(a, indices, axis)


@implements(np.take)
def _np_take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: str = "raise") -> Any:
    from pyzygote.primitives.indexing import take_static

    if out is not None or mode != "raise":
        raise UnsupportedOperationError("numpy.take supports neither out= nor mode= while tracing")
    if not isinstance(indices, Tracer):
        return take_static(a, indices, axis=axis)
    a, axis = _flat_axis(a, axis)
    moved = traced_getitem(np.moveaxis(a, axis, 0), indices)
    m = np.ndim(indices)
    perm = list(range(m, m + axis)) + list(range(m)) + list(range(m + axis, moved.ndim))
    return np.transpose(moved, perm)


# --- np.add.at and np.bincount: sums at (repeated) positions ------------------------------------
def _ufunc_at(sign: float, name: str) -> Any:
    def handler(a: Any, indices: Any, b: Any = None) -> None:
        from pyzygote.primitives.shape import assigned_to_shape, convert

        if not isinstance(a, Tracer):
            raise UnsupportedOperationError(
                f"np.{name}.at(a, ...) with traced values writes them into a, a numpy array, which cannot hold "
                "them; make a traced array first (a = np.zeros_like(x), or a = a + 0.0 * x[0])"
            )
        if b is None:
            raise TypeError(f"np.{name}.at needs the values to {name}")
        from pyzygote.primitives.indexing import stacked_positions

        indices = stacked_positions(indices)
        grid = np.arange(a.size, dtype=_INT).reshape(a.shape)
        index = indices if isinstance(indices, tuple) else (indices,)
        if any(isinstance(i, Tracer) and i.dtype == bool for i in index):
            raise UnsupportedOperationError(f"np.{name}.at through a traced boolean mask is not supported; use np.where")
        traced = any(isinstance(i, Tracer) for i in index)
        positions = traced_getitem(grid, indices) if traced else as_operand(grid[indices])
        values = assigned_to_shape(convert(as_operand(b), a.dtype), tuple(np.shape(positions)))
        added = put_add(np.ravel(values) * sign, np.ravel(positions), (a.size,))
        a[...] = a + np.reshape(added, a.shape)

    return handler


implements("add.at")(_ufunc_at(1.0, "add"))
implements("subtract.at")(_ufunc_at(-1.0, "subtract"))


@implements(np.bincount)
def _np_bincount(x: Any, weights: Any = None, minlength: int = 0) -> Any:
    """Sums of ``weights`` per label, for constant labels ``x`` (the count is then known)."""
    if isinstance(x, Tracer):
        raise UnsupportedOperationError(
            "np.bincount of traced labels has a length that depends on the data; pass the labels as "
            "constant integers (weights may be traced), or use pz.take / np.add.at into an array of known length"
        )
    labels = np.asarray(x)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError("np.bincount needs a 1-D array of non-negative integers")
    if labels.size and labels.min() < 0:
        raise ValueError("'list' argument must have no negative elements")
    n = max(int(labels.max()) + 1 if labels.size else 0, int(minlength))
    if weights is None:
        return np.bincount(labels, minlength=minlength)
    w = as_operand(weights)
    if w.shape != labels.shape:
        raise ValueError("The weights and list don't have the same length.")
    return put_add(w.astype(np.float64), labels.astype(_INT), (n,))


# --- integer bookkeeping around traced positions ----------------------------------------------
@implements(np.unravel_index)
def _np_unravel_index(indices: Any, shape: Any, order: str = "C") -> Any:
    """numpy's ``unravel_index`` of traced flat positions (``np.argmax(x)`` of a matrix)."""
    if not isinstance(indices, Tracer):
        return np.unravel_index(indices, shape, order=order)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"only int indices permitted, got {indices.dtype}")
    dims = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if order not in ("C", "F"):
        raise ValueError("order must be 'C' or 'F'")
    rest, out = indices, {}
    axes = range(len(dims) - 1, -1, -1) if order == "C" else range(len(dims))
    for k in axes:  # the fastest-varying axis first
        out[k] = rest % dims[k]
        rest = rest // dims[k]
    return tuple(out[k] for k in range(len(dims)))


@implements(np.count_nonzero)
def _np_count_nonzero(a: Any, axis: Any = None, *, keepdims: bool = False) -> Any:
    return np.sum(np.not_equal(a, 0), axis=axis, keepdims=keepdims, dtype=_INT)


@implements(np.searchsorted)
def _np_searchsorted(a: Any, v: Any, side: str = "left", sorter: Any = None) -> Any:
    """Where ``v`` would go in the sorted 1-D ``a``: how many entries are below it (``left``) or
    not above it (``right``).  Integer positions: no derivative."""
    if sorter is not None:
        a = np.take(a, sorter)
    weak = is_weak(v)
    a, v = as_operand(a), as_operand(v)
    # numpy searches in the common type (an int64 table is read as float64 for float positions:
    # above 2**53 that rounds its entries), weighing a Python number as weak, as it does
    common = np.result_type(a.dtype, np.zeros((), v.dtype).item() if weak else v.dtype)
    a, v = convert(a, common), convert(v, common)
    if a.ndim != 1:
        raise ValueError("object too deep for desired array: searchsorted needs a 1-D a")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return searchsorted(a, v, side)


@implements(np.digitize)
def _np_digitize(x: Any, bins: Any, right: bool = False) -> Any:
    if isinstance(bins, Tracer):
        raise UnsupportedOperationError(
            "numpy.digitize with traced bins cannot be traced (whether they increase or decrease decides the "
            "result); for increasing bins use np.searchsorted(bins, x, side='left' if right else 'right')"
        )
    bins = np.asarray(bins)
    steps = np.diff(bins)
    side = "left" if right else "right"
    if np.all(steps >= 0):
        return np.searchsorted(bins, x, side=side)
    if np.all(steps <= 0):
        return len(bins) - np.searchsorted(bins[::-1], x, side=side)
    raise ValueError("bins must be monotonically increasing or decreasing")


_static_roll = None


def _np_roll(a: Any, shift: Any, axis: Any = None) -> Any:
    """numpy's ``roll``; a traced ``shift`` (a 0-d integer) reads at positions computed from it."""
    if not isinstance(shift, Tracer):
        return _static_roll(a, shift, axis=axis)  # type: ignore[misc]
    if shift.ndim != 0 or shift.dtype.kind not in "iu" or (axis is not None and np.ndim(axis) != 0):
        raise UnsupportedOperationError("numpy.roll by a traced shift takes one integer shift and one axis (or none)")
    a = as_operand(a)
    flat = axis is None
    x = np.reshape(a, (-1,)) if flat else a
    k = 0 if flat else normalize_axis(int(axis), x.ndim)
    n = x.shape[k]
    if n == 0:
        return a
    out = np.take(x, (np.arange(n) - shift) % n, axis=k)
    return np.reshape(out, a.shape) if flat else out


def _install_roll() -> None:
    global _static_roll
    from pyzygote.numpy_api import HANDLERS

    _static_roll = HANDLERS[np.roll]
    implements(np.roll)(_np_roll)


_install_roll()


@implements(np.copyto)
def _np_copyto(dst: Any, src: Any, casting: str = "same_kind", where: Any = True) -> None:
    """``np.copyto(dst, src, where=mask)`` into a traced ``dst``: its entries replaced where the mask holds."""
    if not isinstance(dst, Tracer):
        raise UnsupportedOperationError(
            "numpy.copyto into a numpy array cannot hold traced values; make dst from a traced one (np.zeros_like(x))"
        )
    if casting != "same_kind":
        raise UnsupportedOperationError("numpy.copyto supports only casting='same_kind' while tracing")
    dst[...] = np.where(where, src, dst) if where is not True else np.broadcast_to(as_operand(src), dst.shape)


def _refuse_numpy_destination(name: str, a: Any) -> None:
    if not isinstance(a, Tracer):
        raise UnsupportedOperationError(
            f"numpy.{name} writes into a numpy array, which cannot hold traced values; make the array from a "
            "traced one (K = np.zeros_like(x, shape=(n, n)))"
        )


def _cyclic(values: Any, count: int, name: str) -> Any:
    """``values`` repeated to ``count`` entries, as numpy's flat assignment repeats them."""
    v = np.ravel(as_operand(values))
    if v.shape[0] == count or v.shape[0] == 1:
        return v if v.shape[0] == count else np.broadcast_to(v, (count,))
    if v.shape[0] == 0:
        raise ValueError(f"numpy.{name}: values must not be empty")
    return np.concatenate([v] * (count // v.shape[0]) + [v[: count % v.shape[0]]])


@implements(np.fill_diagonal)
def _np_fill_diagonal(a: Any, val: Any, wrap: bool = False) -> None:
    """``np.fill_diagonal(K, v)`` on a traced ``K``: its main diagonal set in place, as numpy does.
    (numpy dispatches on ``K`` alone: a numpy ``K`` with a traced ``v`` fails in numpy's own code,
    whose error the tracer explains.)"""
    if a.ndim < 2:
        raise ValueError("array must be at least 2-d")
    if a.ndim > 2 and len(set(a.shape)) != 1:
        raise ValueError("All dimensions of input must be of equal length")
    if wrap and a.ndim == 2 and a.shape[0] > a.shape[1] + 1:
        raise UnsupportedOperationError("traced np.fill_diagonal does not take wrap=True for a tall matrix")
    k = min(a.shape)
    at = np.arange(k)
    a[(at,) * a.ndim] = _cyclic(val, k, "fill_diagonal")


@implements(np.put)
def _np_put(a: Any, ind: Any, v: Any, mode: str = "raise") -> None:
    """``np.put(a, ind, v)`` on a traced ``a``: ``a.flat[ind] = v`` with ``v`` repeated as numpy repeats it."""
    _refuse_numpy_destination("put", a)
    if mode != "raise":
        raise UnsupportedOperationError("traced np.put supports only mode='raise'")
    from pyzygote.primitives.indexing import stacked_positions

    ind = stacked_positions(ind)
    if isinstance(ind, Tracer):
        if ind.dtype.kind == "b":  # numpy casts the positions to intp: True is 1
            ind = ind.astype(_INT)
        if ind.dtype.kind not in "iu":
            from pyzygote.primitives.indexing import differentiated_position_note

            raise TypeError(f"np.put: ind must hold integers, got a traced {ind.dtype} array.{differentiated_position_note(ind)}")
        ind = np.ravel(ind)  # numpy reads the positions flat, whatever their shape
        a.flat[ind] = _cyclic(v, int(np.size(ind)), "put")
        return
    positions = np.ravel(np.asarray(ind))
    if positions.size == 0:
        return  # numpy writes nothing (an empty list is a float array)
    if positions.dtype.kind not in "iu":
        raise TypeError("np.put: ind must hold integers")
    if positions.size:
        a.flat[positions] = _cyclic(v, positions.size, "put")

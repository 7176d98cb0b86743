"""Indexing: ``gather`` and ``scatter_add`` over static positions.

Every static index numpy understands (integers, slices with steps, ``None``,
``Ellipsis``, integer and boolean constant arrays) is resolved by numpy itself
at trace time, on an array of element positions: ``positions =
arange(x.size).reshape(x.shape)[index]``.  So the IR needs one gather
primitive whose ``positions`` hold row-major flat positions, and its
transpose, ``scatter_add``.  The same trick traces numpy functions that only
rearrange elements (``flip``, ``roll``, ``diagonal``, ``take``, ...).
Item assignment ``y[i] = v`` becomes ``select(keep, y, scatter_add(v))``.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(x[::2] ** 2), np.arange(4.0))[0]
array([0., 0., 4., 0.])
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval, Literal
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, deflinear
from pyzygote.tracer import Builder, Tracer, as_operand
from pyzygote.julia import codegen as jl
from pyzygote.transforms.batch import leading_axis_batch

__all__ = ["gather", "scatter_add", "element_positions"]


def element_positions(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def _shared_positions(shape: tuple[int, ...]) -> np.ndarray:
    """:func:`element_positions`, read-only and kept: an assembly loop indexes the same matrix
    once per element (an arange of its size each time was a quarter of the trace), and a
    batch too large to gather at once is indexed once per column (``x[i]`` of the batched
    array: a stiff solve of 2,000 states spent 9 of its 18 s on those aranges)."""
    return (_kept_positions if math.prod(shape) <= _BATCHED_POSITIONS_AT_MOST else _kept_large_positions)(shape)


def _read_only_positions(shape: tuple[int, ...]) -> np.ndarray:
    out = element_positions(shape)
    out.setflags(write=False)
    return out


_kept_positions = functools.lru_cache(maxsize=16)(_read_only_positions)
# Large ones are kept few: each takes 8 bytes per element (32 MB for 2,000 columns of 2,000).
_kept_large_positions = functools.lru_cache(maxsize=2)(_read_only_positions)


# --- gather -----------------------------------------------------------------
gather_p = Primitive("gather")


@gather_p.def_abstract_eval
def _gather_aval(x: Aval, *, positions: np.ndarray, index: Any) -> Aval:
    return Aval(positions.shape, x.dtype)


@gather_p.def_impl
def _gather_impl(x: Any, *, positions: np.ndarray, index: Any) -> Any:
    if index is not None:  # basic indexing: numpy's fast path
        return np.asarray(x)[index]
    return np.ravel(x)[positions]


def _gather_specialize(eqn: Any) -> Callable[[Any], Any] | None:
    """Basic indexing of an array as ``x[index]`` itself (an itemgetter: 0.1 us, where the
    keyword call of ``impl`` takes 1.5 us); a loop's ``np.diff`` and slices are thousands."""
    index = eqn.params["index"]
    return operator.itemgetter(index) if index is not None and eqn.inputs[0].aval.ndim >= 1 else None


gather_p.specialize = _gather_specialize
deflinear(gather_p, lambda ct, x, *, positions, index: (scatter_add(ct, positions, x.aval.shape),))
gather_p.def_julia(lambda e, x, *, positions, index: jl.gather(e, x, positions, index))


# Positions for all columns at once take k times the memory of one column's: past this many, the
# columns are gathered (and scattered) one at a time.
_BATCHED_POSITIONS_AT_MOST = 1 << 20


def _batched_positions(k: int, size: int, positions: np.ndarray) -> np.ndarray | None:
    """``positions`` in each of ``k`` arrays of ``size`` elements laid one after another."""
    if k * positions.size > _BATCHED_POSITIONS_AT_MOST:
        return None
    out = np.reshape(np.arange(k, dtype=np.int64) * size, (k,) + (1,) * positions.ndim) + positions
    out.setflags(write=False)
    return out


@leading_axis_batch
def _gather_batch(x: Any, k: int, *, positions: np.ndarray, index: Any) -> Any:
    size = int(np.prod(x.shape[1:], dtype=np.int64))
    where = _batched_positions(k, size, positions)
    if where is None:
        return None
    whole = None if index is None else (slice(None),) + (index if isinstance(index, tuple) else (index,))
    return gather_p.bind(x, positions=where, index=whole)


gather_p.batch = _gather_batch


def gather(x: Any, positions: np.ndarray, index: Any = None) -> Any:
    if positions.shape == np.shape(x) and np.array_equal(positions, _shared_positions(tuple(np.shape(x)))):
        return x
    positions = np.array(positions, dtype=np.int64)
    positions.setflags(write=False)
    return gather_p.bind(x, positions=positions, index=index)


def has_repeats(positions: np.ndarray) -> bool:
    """Whether a position occurs twice.  A sort and a comparison of neighbours: np.unique took
    3.9 s for the 2.9M positions of a finite-element assembly (user testing), a sort 0.16 s."""
    ordered = np.sort(positions, axis=None)
    return bool(np.any(ordered[1:] == ordered[:-1]))


# --- scatter_add --------------------------------------------------------------
scatter_add_p = Primitive("scatter_add")


@scatter_add_p.def_abstract_eval
def _scatter_aval(v: Aval, *, positions: np.ndarray, shape: tuple[int, ...], unique: bool) -> Aval:
    if v.shape != positions.shape:
        raise ValueError(f"scatter_add needs values of shape {positions.shape}, got {v}")
    return Aval(shape, v.dtype)


@scatter_add_p.def_impl
def _scatter_impl(v: Any, *, positions: np.ndarray, shape: tuple[int, ...], unique: bool) -> np.ndarray:
    v = np.asarray(v)
    out = np.zeros(math.prod(shape), dtype=v.dtype)  # math.prod: np.prod's dispatch was a third of the call
    if unique:
        out[positions.ravel()] = v.ravel()
    else:
        np.add.at(out, positions.ravel(), v.ravel())
    return out.reshape(shape)


def _scatter_specialize(eqn: Any) -> Callable[[Any], Any] | None:
    """Sums at repeated positions of float64 values by ``np.bincount``: it adds the values in
    their order to zeros as ``np.add.at`` does (the same sums, bit for bit) in a third of the
    time on small arrays (the transpose of a loop's ``np.diff``).  Not for no values: bincount
    then counts, and gives int64 zeros."""
    params = eqn.params
    if params["unique"] or eqn.inputs[0].aval.dtype != np.float64 or params["positions"].size == 0:
        return None
    flat, shape = params["positions"].ravel(), params["shape"]
    size = math.prod(shape)
    return lambda v: np.bincount(flat, np.ravel(v), size).reshape(shape)


scatter_add_p.specialize = _scatter_specialize
deflinear(scatter_add_p, lambda ct, v, *, positions, shape, unique: (gather(ct, positions),))
scatter_add_p.def_julia(lambda e, v, *, positions, shape, unique: jl.scatter_add(e, v, positions, shape))


@leading_axis_batch
def _scatter_batch(v: Any, k: int, *, positions: np.ndarray, shape: tuple[int, ...], unique: bool) -> Any:
    where = _batched_positions(k, int(np.prod(shape, dtype=np.int64)), positions)
    if where is None:
        return None
    return scatter_add_p.bind(v, positions=where, shape=(k, *shape), unique=unique)


scatter_add_p.batch = _scatter_batch


def scatter_add(v: Any, positions: np.ndarray, shape: tuple[int, ...]) -> Any:
    positions = np.array(positions, dtype=np.int64)
    positions.setflags(write=False)
    unique = not has_repeats(positions)
    return scatter_add_p.bind(v, positions=positions, shape=tuple(shape), unique=unique)


# --- indexing handlers ----------------------------------------------------------
def differentiated_position_note(item: Any) -> str:
    """For a traced float used as a position: when it is an argument being differentiated, why
    (a number passed positionally becomes a float64 array) and what to do."""
    if isinstance(item, Tracer) and item._var in {v for _, v in item._builder._inputs.values()}:
        return (
            " This index is an argument pyzygote differentiates: numbers and lists of numbers become "
            "float64 arrays. Pass labels as an integer numpy array (np.array(y)), as a keyword "
            "argument, or leave them out of pz.grad's argnums"
        )
    return ""


def _check_static(index: Any) -> tuple[Any, bool]:
    if isinstance(index, range) or (isinstance(index, tuple) and any(isinstance(i, range) for i in index)):
        # numpy takes a range as the integer array it spells (P[range(n), y])
        spelled = lambda r: np.arange(r.start, r.stop, r.step)  # noqa: E731 - integers even when empty
        index = spelled(index) if isinstance(index, range) else tuple(spelled(i) if isinstance(i, range) else i for i in index)
    items = index if isinstance(index, tuple) else (index,)
    basic = True
    for item in items:
        if isinstance(item, Tracer):
            if item.dtype.kind == "f":
                raise IndexError(f"arrays used as indices must be of integer type (a traced float index: use .astype(int)).{differentiated_position_note(item)}")
            raise UnsupportedOperationError(
                "this use of a traced index depends on the data and cannot be traced: a traced boolean "
                "mask mixed with other indices selects a data-dependent number of elements. A mask alone "
                "works, x[mask] or x[mask, :], for sums, means and elementwise math, and y[mask] = v or "
                "y[mask] *= v; otherwise use np.where(mask, x, 0.0). Traced integer positions work with "
                "slices: x[i], x[:, i], x[i, j] = v, np.take, np.take_along_axis"
            )
        if isinstance(item, (list, np.ndarray)):
            basic = False
        elif not (item is None or item is Ellipsis or isinstance(item, (slice, int, np.integer))):
            raise IndexError(f"unsupported index {item!r}")
    return index, basic


@implements("getitem")
def _getitem(x: Any, index: Any) -> Any:
    x = as_operand(x)
    index = stacked_positions(index)
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(item, Tracer) and item.dtype.kind in "iu" for item in items):
        from pyzygote.primitives.traced_indexing import traced_getitem

        return traced_getitem(x, index)
    mask = _traced_mask(items)
    if mask is not None:
        from pyzygote.selection import select

        return select(x, mask)
    index, basic = _check_static(index)
    positions = _shared_positions(tuple(x.shape))[index]
    return gather(x, np.asarray(positions), index if basic else None)


def _traced_mask(items: tuple[Any, ...]) -> Tracer | None:
    """The traced boolean mask of ``x[mask]``, ``x[mask, ...]`` or ``x[mask, :]``, if that is the index."""
    rest = [item for item in items[1:] if not (item is Ellipsis or (isinstance(item, slice) and item == slice(None)))]
    first = items[0] if items else None
    if not rest and isinstance(first, Tracer) and first.dtype == bool:
        return first
    return None


def stacked_positions(index: Any) -> Any:
    """``x[[i, 0]]`` with a traced ``i``: a list holding traced integers is an index array, and so
    is ``np.array([i, j])`` of traced positions (an object array; fuzzer: numpy's bare IndexError)."""
    def one(item: Any) -> Any:
        if isinstance(item, list) and any(isinstance(v, Tracer) for v in item):
            return np.stack([as_operand(v) for v in item])
        if isinstance(item, np.ndarray) and item.dtype == object and any(isinstance(v, Tracer) for v in item.flat):
            return as_operand(item)
        return item

    return tuple(one(item) for item in index) if isinstance(index, tuple) else one(index)


@implements("setitem")
def _setitem(y: Any, index: Any, value: Any) -> Any:
    index = stacked_positions(index)
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(item, Tracer) for item in items):
        from pyzygote.primitives import traced_indexing

        mask = _traced_mask(items)
        if mask is not None:
            return traced_indexing.masked_setitem(y, mask, value)
        if all(not isinstance(item, Tracer) or item.dtype.kind in "iu" for item in items):
            return traced_indexing.traced_setitem(y, index, value)
    index, _ = _check_static(index)
    positions = np.asarray(_shared_positions(tuple(y.shape))[index])
    value = convert(as_operand(value), y.dtype)
    value = assigned_to_shape(value, positions.shape)
    flat = positions.ravel()
    if has_repeats(flat):  # numpy: the last assignment to a position wins
        first_from_end = np.unique(flat[::-1], return_index=True)[1]
        last = np.sort(flat.size - 1 - first_from_end)
        positions, value = flat[last], gather(np.ravel(value), last, None)
    added = _increment_of(y, positions, value)
    if added is not None:
        # y[idx] += k: y + scatter_add(k) adds the same two numbers at idx (y[idx] + k) and adds
        # zero elsewhere (so -0.0 becomes 0.0), without the mask of y's size that select keeps
        # as a constant per assignment: a finite-element loop of K[np.ix_(d, d)] += ke over 450
        # elements kept 450 masks of K's size (user testing).
        return _accumulate(y, positions, added)
    keep = np.ones(y.shape, dtype=bool)
    keep.reshape(-1)[positions.ravel()] = False
    return select(keep, y, scatter_add(value, positions, y.shape))


def _accumulate(y: Any, positions: np.ndarray, added: Any) -> Any:
    """``y + scatter_add(added, positions)``; when ``y`` is itself ``y0 + scatter_add(v, p)``
    (the previous element of an assembly loop), one scatter of all the values so far into
    ``y0``, as ``np.add.at`` would do them: the loop's intermediate matrices are then unused
    and dropped, and its cost no longer grows with elements x matrix size."""
    builder = y._builder
    add = _produced_by(builder, y._var)
    if add is not None and add.prim.name == "add" and add.outputs[0].aval.shape == y.shape:
        for i, atom in enumerate(add.inputs):
            scatter = _produced_by(builder, atom)
            base = add.inputs[1 - i]
            if scatter is None or scatter.prim.name != "scatter_add" or isinstance(base, Literal) or base.aval.shape != y.shape:
                continue
            earlier = scatter.inputs[0]
            joined = _produced_by(builder, earlier)
            pieces = list(joined.inputs) if joined is not None and joined.prim.name == "concatenate" and joined.outputs[0].aval.ndim == 1 else [earlier]
            from pyzygote.primitives.shape import concatenate_p, reshape

            # The pieces of earlier elements are 1-D already: bound as they are, not through
            # np.ravel (a view per piece per element made the trace quadratic in elements).
            parts = [a.value if isinstance(a, Literal) else Tracer(builder, a) for a in pieces]
            parts = [p if np.ndim(p) == 1 else reshape(p, (int(np.size(p)),)) for p in parts]
            values = concatenate_p.bind(*parts, reshape(as_operand(added), (int(np.size(added)),)), axis=0)
            where = np.concatenate([np.ravel(scatter.params["positions"]), np.ravel(positions)])
            where.setflags(write=False)
            # Elements share nodes, so positions repeat; not checked again for each element.
            return Tracer(builder, base) + scatter_add_p.bind(values, positions=where, shape=tuple(y.shape), unique=False)
    return y + scatter_add(added, positions, y.shape)


def _produced_by(builder: Builder, atom: Any, window: int = 12) -> Any:
    """The equation among the builder's last ``window`` that produced ``atom``, or None."""
    for eqn in reversed(builder.eqns[-window:]):
        if any(v is atom for v in eqn.outputs):
            return eqn
    return None


def _increment_of(y: Any, positions: np.ndarray, value: Any) -> Any:
    """``k`` when ``value`` was computed as ``gather(y, positions) + k`` (``y[idx] += k``), else None."""
    if not isinstance(y, Tracer) or not isinstance(value, Tracer) or value._builder is not y._builder or value.shape != positions.shape:
        return None
    builder = y._builder
    add = _produced_by(builder, value._var)
    if add is None or add.prim.name != "add" or add.outputs[0].aval.dtype != y.dtype:
        return None
    target = y._var
    for i, atom in enumerate(add.inputs):
        read = _produced_by(builder, atom)
        if read is not None and read.prim.name == "gather" and read.inputs[0] is target and np.array_equal(read.params["positions"], positions):
            other = add.inputs[1 - i]
            k = other.value if isinstance(other, Literal) else Tracer(builder, other)
            return assigned_to_shape(as_operand(k), positions.shape)
    return None


def traced_constant(like: Tracer, value: np.ndarray) -> Tracer:
    """A constant that is itself traced, so that it can be assigned into."""
    builder: Builder = like._builder
    value = np.array(value)
    if value.dtype.kind == "c":  # traced values are checked when they are made: here
        from pyzygote.tracer import _complex_error

        raise _complex_error(f"a {value.dtype} array like a traced one (np.zeros_like(x, dtype=complex))")
    out = Tracer(builder, builder.to_atom(value))
    out._array0d = out.ndim == 0
    return out


def _like(a: Any, fill_value: Any, dtype: Any, shape: Any, order: str = "K") -> Any:
    """numpy's ``*_like``: a new, writable array; traced when ``a`` or ``fill_value`` is."""
    from pyzygote.primitives.shape import broadcast_to_shape, convert
    from pyzygote.views import _lay_out_like, memory_layout

    a = as_operand(a)
    shape = a.shape if shape is None else ((int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape))
    dtype = np.dtype(dtype) if dtype is not None else a.dtype
    if isinstance(fill_value, Tracer):
        out = broadcast_to_shape(convert(fill_value, dtype), shape).copy()
        out._array0d = out.ndim == 0
    else:
        value = np.full(shape, fill_value, dtype)
        if not isinstance(a, Tracer):
            return value
        out = traced_constant(a, value)  # 0-d too: s += ... must work
    if isinstance(a, Tracer) and shape == a.shape and a.ndim > 1:
        _lay_out_like(out, np.array(memory_layout(a), order=order))  # np.zeros_like(x.T) is Fortran-ordered
    return out


@implements(np.zeros_like, np.empty_like)
def _zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kwargs: Any) -> Any:
    return _like(a, 0, dtype, shape, order)


@implements(np.ones_like)
def _ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kwargs: Any) -> Any:
    return _like(a, 1, dtype, shape, order)


@implements(np.full_like)
def _full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True, shape: Any = None, **kwargs: Any) -> Any:
    return _like(a, fill_value, dtype, shape, order)


# --- numpy functions that only rearrange elements --------------------------------
def _rearrangement(func: Callable[..., Any]) -> Callable[..., Any]:
    def handler(a: Any, *args: Any, **kwargs: Any) -> Any:
        a = as_operand(a)
        for v in list(args) + list(kwargs.values()):
            _check_static(v if not isinstance(v, tuple) else v)
        positions = np.asarray(func(element_positions(a.shape), *args, **kwargs))
        return gather(a, positions)

    return handler


for _f in (np.flip, np.fliplr, np.flipud, np.roll, np.diagonal, np.rot90, np.repeat, np.tile):
    implements(_f)(_rearrangement(_f))
take_static = _rearrangement(np.take)  # traced indices: pyzygote.primitives.traced_indexing


@implements(np.diag)
def _np_diag(v: Any, k: int = 0) -> Any:
    v = as_operand(v)
    if v.ndim == 2:
        return np.diagonal(v, k)
    if v.ndim != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = v.shape[0] + abs(k)
    positions = np.diagonal(element_positions((n, n)), k)
    return scatter_add(v, positions, (n, n))


def _triangle(func: Callable[..., Any]) -> Callable[..., Any]:
    def handler(m: Any, k: int = 0) -> Any:
        m = as_operand(m)
        keep = func(np.ones(m.shape, dtype=bool), k)
        return select(keep, m, np.zeros((), m.dtype))

    return handler


implements(np.tril)(_triangle(np.tril))
implements(np.triu)(_triangle(np.triu))

from pyzygote.primitives.logic import select  # noqa: E402
from pyzygote.primitives.shape import assigned_to_shape, convert, normalize_axis  # noqa: E402


@implements(np.diff)
def _np_diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = np._NoValue, append: Any = np._NoValue) -> Any:
    """n-th differences along ``axis`` as slices subtracted, numpy's definition."""
    a = as_operand(a)
    axis = normalize_axis(axis, a.ndim)

    def edge(v: Any) -> Any:
        v = as_operand(v)
        if v.ndim == 0:  # a scalar stands for a slab of thickness 1, as in numpy
            v = np.broadcast_to(v, a.shape[:axis] + (1,) + a.shape[axis + 1 :])
        return v

    if prepend is not np._NoValue:
        a = np.concatenate([edge(prepend), a], axis=axis)
    if append is not np._NoValue:
        a = np.concatenate([a, edge(append)], axis=axis)
    upper = tuple(slice(1, None) if i == axis else slice(None) for i in range(a.ndim))
    lower = tuple(slice(None, -1) if i == axis else slice(None) for i in range(a.ndim))
    for _ in range(n):
        a = a[upper] - a[lower]
    return a


# --- scalar rules (pyzygote.transforms.scalarize) -------------------------------------
def _set_scalar_rules() -> None:
    from pyzygote.transforms.scalarize import rearrangement, sum_of

    gather_p.scalar = rearrangement

    def scatter_rule(s: Any, v: list[str], *, positions: np.ndarray, shape: tuple, unique: bool) -> list[str]:
        terms: list[list[str]] = [[] for _ in range(int(np.prod(shape, dtype=np.int64)))]
        for p, e in zip(positions.ravel(), v):
            terms[int(p)].append(e)
        return [sum_of(t) for t in terms]

    scatter_add_p.scalar = scatter_rule


_set_scalar_rules()

"""Shape primitives: broadcast, reshape (row-major), transpose, dtype conversion,
concatenate; and the numpy functions built from them.

All are linear, so each has a transpose rule and its JVP is itself.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(np.broadcast_to(x, (4, 3))), np.ones(3))[0]
array([4., 4., 4.])
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, Undefined, deflinear
from pyzygote.tracer import Tracer, as_operand
from pyzygote.julia import codegen as jl
from pyzygote.transforms.batch import leading_axis_batch

__all__ = [
    "broadcast_in_dim",
    "reshape",
    "transpose",
    "convert",
    "concatenate",
    "broadcast_operands",
    "normalize_axis",
    "normalize_axes",
]


def normalize_axis(axis: int, ndim: int, argname: str = "axis") -> int:
    """numpy's negative-axis rule, decided once here."""
    axis = int(axis)
    if not -ndim <= axis < max(ndim, 1) or (ndim == 0 and axis not in (0, -1)):
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim if ndim else 0


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    axes = tuple(normalize_axis(a, ndim) for a in axis)
    if len(set(axes)) != len(axes):
        raise ValueError("duplicate value in 'axis'")
    return axes


# --- broadcast_in_dim ---------------------------------------------------
broadcast_in_dim_p = Primitive("broadcast_in_dim")


@broadcast_in_dim_p.def_abstract_eval
def _bcast_aval(x: Aval, *, shape: tuple[int, ...], dims: tuple[int, ...]) -> Aval:
    if len(dims) != x.ndim or any(x.shape[i] not in (1, shape[d]) for i, d in enumerate(dims)):
        raise ValueError(f"cannot broadcast {x} to shape {shape} along dims {dims}")
    return Aval(shape, x.dtype)


@broadcast_in_dim_p.def_impl
def _bcast_impl(x: Any, *, shape: tuple[int, ...], dims: tuple[int, ...]) -> np.ndarray:
    expanded = [1] * len(shape)
    for i, d in enumerate(dims):
        expanded[d] = np.shape(x)[i]
    return np.broadcast_to(np.reshape(x, expanded), shape)


def _bcast_transpose(ct: Any, x: Undefined, *, shape: tuple[int, ...], dims: tuple[int, ...]) -> Any:
    new_axes = tuple(d for d in range(len(shape)) if d not in dims)
    expanded = tuple(d for i, d in enumerate(dims) if x.aval.shape[i] == 1 and shape[d] != 1)
    summed = reduce_sum(ct, tuple(sorted(new_axes + expanded)))
    return (reshape(summed, x.aval.shape),)


deflinear(broadcast_in_dim_p, _bcast_transpose)
broadcast_in_dim_p.def_julia(lambda e, x, *, shape, dims: jl.broadcast_in_dim(x, shape, dims))
broadcast_in_dim_p.batch = leading_axis_batch(
    lambda x, k, *, shape, dims: broadcast_in_dim_p.bind(x, shape=(k, *shape), dims=(0, *(d + 1 for d in dims)))
)


def shape_of(x: Any) -> tuple[int, ...]:
    """``np.shape(x)`` without numpy's dispatch for traced arrays (asked on every broadcast)."""
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def broadcast_in_dim(x: Any, shape: Sequence[int], dims: Sequence[int]) -> Any:
    shape, dims = tuple(shape), tuple(dims)
    if shape_of(x) == shape and dims == tuple(range(len(shape))):
        return x
    return broadcast_in_dim_p.bind(x, shape=shape, dims=dims)


def broadcast_to_shape(x: Any, shape: Sequence[int]) -> Any:
    """numpy's trailing-axis alignment, made explicit."""
    shape = tuple(shape)
    have = shape_of(x)
    if have == shape:
        return x
    if np.broadcast_shapes(have, shape) != shape:  # numpy's own error message where it has one
        raise ValueError(f"cannot broadcast an array of shape {have} to shape {shape}")
    return broadcast_in_dim(x, shape, range(len(shape) - len(have), len(shape)))


def assigned_to_shape(value: Any, shape: Sequence[int]) -> Any:
    """``value`` broadcast for ``y[index] = value`` into a target of ``shape``: numpy also
    accepts extra leading dimensions of size 1 (a (1, 6) value into 6 elements)."""
    shape = tuple(shape)
    while np.ndim(value) > len(shape) and np.shape(value)[0] == 1:
        value = reshape(value, np.shape(value)[1:])
    return broadcast_to_shape(value, shape)


def broadcast_operands(*xs: Any) -> list[Any]:
    """Broadcast operands to one shape; rank-0 operands stay scalars.

    Elementwise primitives accept operands of the output shape or of shape
    ``()``: a scalar broadcasts the same way in every engine, so it needs no
    explicit equation.
    """
    shapes = [shape_of(x) for x in xs]
    if len({s for s in shapes if s}) <= 1:  # nothing to broadcast; np.broadcast_shapes costs microseconds
        return list(xs)
    shape = np.broadcast_shapes(*shapes)
    return [x if not s else broadcast_to_shape(x, shape) for x, s in zip(xs, shapes)]


# --- reshape (row-major, like numpy) ------------------------------------
reshape_p = Primitive("reshape")


@reshape_p.def_abstract_eval
def _reshape_aval(x: Aval, *, shape: tuple[int, ...]) -> Aval:
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise ValueError(f"cannot reshape array of size {x.size} into shape {shape}")
    return Aval(shape, x.dtype)


# The method skips np.reshape's dispatch (a microsecond, paid at every step of a loop that packs
# numbers into a state vector).
reshape_p.def_impl(lambda x, *, shape: x.reshape(shape) if isinstance(x, (np.ndarray, np.generic)) else np.reshape(x, shape))
deflinear(reshape_p, lambda ct, x, *, shape: (reshape(ct, x.aval.shape),))
reshape_p.def_julia(lambda e, x, *, shape: jl.rowmajor_reshape(x, x.aval.shape, shape))
reshape_p.batch = leading_axis_batch(lambda x, k, *, shape: reshape_p.bind(x, shape=(k, *shape)))


def _reshape_specialize(eqn: Any) -> Callable[[Any], Any] | None:
    """Single numbers into and out of one-entry arrays, as a loop packs its daily numbers with
    ``np.stack`` and its gradient unpacks their cotangents: the entry read as a numpy scalar
    (``x[0]``), which the scalar steps it feeds compute on as operators (a 0-d array sent each
    of them through a ufunc, about a microsecond), and a number into a fresh one-entry array by
    ``np.array`` (half of a numpy scalar's ``reshape``)."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    dtype = x.aval.dtype
    if dtype not in _SCALAR_DTYPES:
        return None
    if out.aval.shape == () and x.aval.shape:
        return operator.itemgetter((0,) * len(x.aval.shape))
    if x.aval.shape == () and out.aval.shape == (1,):
        return lambda x: _array([x], dtype)
    return None


_SCALAR_DTYPES = frozenset(map(np.dtype, (np.float64, np.float32, np.bool_)))
_array = np.array
reshape_p.specialize = _reshape_specialize


def reshape(x: Any, shape: Sequence[int]) -> Any:
    shape = tuple(int(s) for s in shape)
    if np.shape(x) == shape:
        return x
    return reshape_p.bind(x, shape=shape)


# --- transpose ----------------------------------------------------------
transpose_p = Primitive("transpose")


@transpose_p.def_abstract_eval
def _transpose_aval(x: Aval, *, perm: tuple[int, ...]) -> Aval:
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError("axes don't match array")
    return Aval(tuple(x.shape[p] for p in perm), x.dtype)


transpose_p.def_impl(lambda x, *, perm: np.transpose(x, perm))
deflinear(transpose_p, lambda ct, x, *, perm: (transpose(ct, tuple(np.argsort(perm))),))
transpose_p.def_julia(lambda e, x, *, perm: jl.permute(x, perm))
transpose_p.batch = leading_axis_batch(lambda x, k, *, perm: transpose_p.bind(x, perm=(0, *(p + 1 for p in perm))))


def transpose(x: Any, perm: Sequence[int]) -> Any:
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    return transpose_p.bind(x, perm=perm)


# --- convert_element_type ---------------------------------------------
convert_p = Primitive("convert_element_type")
convert_p.def_abstract_eval(lambda x, *, dtype: Aval(x.shape, dtype))
convert_p.def_impl(lambda x, *, dtype: np.asarray(x).astype(dtype))
deflinear(convert_p, lambda ct, x, *, dtype: (convert(ct, x.aval.dtype),))
convert_p.batch = leading_axis_batch(lambda x, k, *, dtype: convert_p.bind(x, dtype=dtype))


@convert_p.def_julia
def _convert_julia(e: Any, x: Any, *, dtype: Any) -> str:
    src, dst = x.aval.dtype, np.dtype(dtype)
    if src == dst:
        return x
    if dst.kind == "b":  # numpy: nonzero is True
        return f"PyZygote.ne.({x}, 0)"
    if src.kind == "f" and dst.kind == "f":  # also converts ForwardDiff duals
        return f"PyZygote.convert_eltype({jl.julia_type(dst)}, {x})"
    if dst.kind in "iu" and src.kind in "fiu":  # truncates toward zero and wraps; never throws
        return f"PyZygote.astype_int({jl.julia_type(dst)}, {x})"
    return f"{jl.julia_type(dst)}.({x})"


def convert(x: Any, dtype: Any) -> Any:
    dtype = np.dtype(dtype)
    if isinstance(x, Tracer):
        return x if x.dtype == dtype else convert_p.bind(x, dtype=dtype)
    return np.asarray(x, dtype=dtype)


# --- concatenate --------------------------------------------------------
concatenate_p = Primitive("concatenate")


@concatenate_p.def_abstract_eval
def _concat_aval(*xs: Aval, axis: int) -> Aval:
    first = xs[0]
    for k, x in enumerate(xs[1:], 1):
        if x.ndim != first.ndim:
            raise ValueError(
                "all the input arrays must have same number of dimensions, but the array at index 0 has "
                f"{first.ndim} dimension(s) and the array at index {k} has {x.ndim} dimension(s)"
            )
        for i, (a, b) in enumerate(zip(first.shape, x.shape)):
            if i != axis and a != b:
                raise ValueError(  # numpy's words
                    "all the input array dimensions except for the concatenation axis must match exactly, but "
                    f"along dimension {i}, the array at index 0 has size {a} and the array at index {k} has size {b}"
                )
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return Aval(tuple(shape), first.dtype)


concatenate_p.def_impl(lambda *xs, axis: np.concatenate(xs, axis=axis))


def _concatenate_specialize(eqn: Any) -> Callable[..., Any]:
    axis = eqn.params["axis"]  # bound positionally: numpy's keyword parsing is a third of a small call
    return lambda *xs: _concatenate(xs, axis)


_concatenate = np.concatenate
concatenate_p.specialize = _concatenate_specialize


def _concat_batch(args: Any, batched: Any, *, axis: int) -> Any:
    k = next(shape_of(x)[0] for x, b in zip(args, batched) if b)
    # The shared operands are repeated for each column, as the columns one at a time read them.
    xs = [x if b else broadcast_in_dim_p.bind(x, shape=(k, *shape_of(x)), dims=tuple(range(1, len(shape_of(x)) + 1))) for x, b in zip(args, batched)]
    return concatenate_p.bind(*xs, axis=axis + 1)


_concat_batch.pays = lambda eqn: False  # type: ignore[attr-defined]
concatenate_p.batch = _concat_batch


def _concat_transpose(ct: Any, *xs: Any, axis: int) -> tuple[Any, ...]:
    out, start = [], 0
    for x in xs:
        n = (x.aval.shape if isinstance(x, Undefined) else np.shape(x))[axis]
        index = (slice(None),) * axis + (slice(start, start + n),)
        out.append(ct[index] if isinstance(x, Undefined) else None)
        start += n
    return tuple(out)


deflinear(concatenate_p, _concat_transpose)


@concatenate_p.def_julia
def _concat_julia(e: Any, *xs: Any, axis: int) -> str:
    args = ", ".join(xs)
    if axis == 0:
        return f"vcat({args})"
    if axis == 1:
        return f"hcat({args})"
    return f"cat({args}; dims = {axis + 1})"


def concatenate(xs: Sequence[Any], axis: int) -> Any:
    return xs[0] if len(xs) == 1 else concatenate_p.bind(*xs, axis=axis)


# --- numpy functions built from these ------------------------------------
def _operands_same_dtype(xs: Sequence[Any]) -> list[Any]:
    xs = [as_operand(x) for x in xs]
    dtype = np.result_type(*(x.dtype for x in xs))
    return [convert(x, dtype) for x in xs]


@implements(np.reshape)
def _np_reshape(a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None, copy: Any = None) -> Any:
    a = as_operand(a)
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if order not in ("C", "F", "A"):
        raise ValueError(f"order must be one of 'C', 'F', 'A' (got {order!r})")
    # numpy resolves -1 and reports size mismatches with its own message.
    shape = np.empty(a.shape, dtype=np.bool_).reshape(shape).shape
    if order == "A":  # Fortran order for an array laid out so in memory
        order = "F" if _fortran_only(a) else "C"
    if order == "F" and (a.ndim > 1 or len(shape) > 1):
        # Column-major: reverse the axes, reshape row-major to the reversed shape, reverse back.
        flipped = transpose(a, tuple(reversed(range(a.ndim))))
        out = reshape(flipped, tuple(reversed(shape)))
        return transpose(out, tuple(reversed(range(len(shape)))))
    return reshape(a, shape)


def _fortran_only(a: Any) -> bool:
    from pyzygote.tracer import Tracer
    from pyzygote.views import memory_layout

    layout = memory_layout(a) if isinstance(a, Tracer) else np.asarray(a)
    return bool(layout.flags.f_contiguous and not layout.flags.c_contiguous)


@implements(np.ravel)
def _np_ravel(a: Any, order: str = "C") -> Any:
    if order == "K":  # in memory order
        from pyzygote.primitives.indexing import gather
        from pyzygote.tracer import Tracer
        from pyzygote.views import memory_layout

        a = as_operand(a)
        if not isinstance(a, Tracer):
            return np.ravel(a, order="K")
        ids = np.empty_like(memory_layout(a), dtype=np.int64)
        ids[...] = np.arange(a.size, dtype=np.int64).reshape(a.shape)
        return gather(reshape(a, (a.size,)), np.ravel(ids, order="K"), None)
    return _np_reshape(a, (-1,), order=order)


@implements(np.transpose)
def _np_transpose(a: Any, axes: Any = None) -> Any:
    a = as_operand(a)
    perm = tuple(reversed(range(a.ndim))) if axes is None else normalize_axes(axes, a.ndim)
    if len(perm) != a.ndim:
        raise ValueError("axes don't match array")
    return transpose(a, perm)


@implements(np.swapaxes)
def _np_swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    a = as_operand(a)
    perm = list(range(a.ndim))
    i, j = normalize_axis(axis1, a.ndim), normalize_axis(axis2, a.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


@implements(np.moveaxis)
def _np_moveaxis(a: Any, source: Any, destination: Any) -> Any:
    a = as_operand(a)
    src, dst = normalize_axes(source, a.ndim), normalize_axes(destination, a.ndim)
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(a.ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


@implements(np.squeeze)
def _np_squeeze(a: Any, axis: Any = None) -> Any:
    a = as_operand(a)
    if axis is None:
        axes = tuple(i for i, s in enumerate(a.shape) if s == 1)
    else:
        axes = normalize_axes(axis, a.ndim)
        if any(a.shape[i] != 1 for i in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(a, [s for i, s in enumerate(a.shape) if i not in axes])


@implements(np.expand_dims)
def _np_expand_dims(a: Any, axis: Any) -> Any:
    a = as_operand(a)
    nd = a.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1)
    axes = normalize_axes(axis, nd)
    it = iter(a.shape)
    return reshape(a, [1 if i in axes else next(it) for i in range(nd)])


@implements(np.broadcast_to)
def _np_broadcast_to(array: Any, shape: Any, subok: bool = False) -> Any:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return broadcast_to_shape(as_operand(array), shape)


@implements(np.broadcast_arrays)
def _np_broadcast_arrays(*args: Any, subok: bool = False) -> tuple[Any, ...]:
    xs = [as_operand(a) for a in args]
    shape = np.broadcast_shapes(*(x.shape for x in xs))
    return tuple(broadcast_to_shape(x, shape) for x in xs)


@implements(np.atleast_1d)
def _np_atleast_1d(*arys: Any) -> Any:
    out = [reshape(x, (1,)) if np.ndim(x) == 0 else x for x in map(as_operand, arys)]
    return out[0] if len(out) == 1 else out


def _cast_all(xs: list[Any], dtype: Any, casting: str) -> list[Any]:
    """numpy's ``dtype=`` and ``casting=`` of the joining functions."""
    if dtype is None:
        return xs
    dtype = np.dtype(dtype)
    for x in xs:
        if not np.can_cast(x.dtype, dtype, casting):
            raise TypeError(f"Cannot cast array data from {x.dtype!r} to {dtype!r} according to the rule {casting!r}")
    return [convert(x, dtype) for x in xs]


@implements(np.concatenate)
def _np_concatenate(arrays: Any, axis: Any = 0, out: Any = None, dtype: Any = None, casting: str = "same_kind") -> Any:
    xs = _cast_all(_operands_same_dtype(arrays), dtype, casting)
    if axis is None:
        xs, axis = [reshape(x, (x.size,)) for x in xs], 0
    if xs[0].ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    return concatenate(xs, normalize_axis(axis, xs[0].ndim))


@implements(np.stack)
def _np_stack(arrays: Any, axis: int = 0, out: Any = None, dtype: Any = None, casting: str = "same_kind") -> Any:
    xs = _cast_all(_operands_same_dtype(arrays), dtype, casting)
    shapes = {x.shape for x in xs}
    if len(shapes) != 1:
        raise ValueError("all input arrays must have the same shape")
    ax = normalize_axis(axis, xs[0].ndim + 1)
    return concatenate([_np_expand_dims(x, ax) for x in xs], ax)


@implements(np.hstack)
def _np_hstack(tup: Any, dtype: Any = None, casting: str = "same_kind") -> Any:
    xs = [as_operand(x) for x in tup]
    xs = [reshape(x, (1,)) if x.ndim == 0 else x for x in xs]
    return _np_concatenate(xs, axis=0 if xs[0].ndim == 1 else 1, dtype=dtype, casting=casting)


@implements(np.vstack)
def _np_vstack(tup: Any, dtype: Any = None, casting: str = "same_kind") -> Any:
    xs = [as_operand(x) for x in tup]
    xs = [reshape(x, (1, x.size)) if x.ndim < 2 else x for x in xs]
    return _np_concatenate(xs, axis=0, dtype=dtype, casting=casting)


@implements(np.copy)
def _np_copy(a: Any, order: str = "K", *args: Any, dtype: Any = None, **kwargs: Any) -> Any:
    a = as_operand(a)
    out = a if dtype is None else convert(a, dtype)
    out = out.copy(order) if out is a and isinstance(out, Tracer) else out  # a new array, never an alias
    if isinstance(out, Tracer):
        out._array0d = out.ndim == 0  # np.copy of a scalar is a (mutable) 0-d array
    return out


@implements("astype")
def _astype(a: Any, dtype: Any) -> Any:
    dtype = np.dtype(dtype)
    if dtype.kind not in "fbiu":
        raise TypeError(f"astype({dtype}) of a traced array: only float, integer and bool types can be traced")
    # To integers numpy truncates toward zero: piecewise constant, no derivative (an index).
    return convert(as_operand(a), dtype)


@implements(np.shape)
def _np_shape(a: Any) -> tuple[int, ...]:
    return as_operand(a).shape


@implements(np.ndim)
def _np_ndim(a: Any) -> int:
    return as_operand(a).ndim


@implements(np.size)
def _np_size(a: Any, axis: Any = None) -> int:
    a = as_operand(a)
    return a.size if axis is None else a.shape[axis]


@implements(np.linspace)
def _np_linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, retstep: bool = False, dtype: Any = None, axis: int = 0) -> Any:
    """Traced endpoints: ``start + (stop - start) * fraction`` with constant fractions."""
    start, stop = as_operand(start), as_operand(stop)
    if start.ndim or stop.ndim or retstep or axis != 0:
        raise UnsupportedOperationError("traced np.linspace supports scalar start and stop (no retstep, axis)")
    # numpy's type: of start, stop and a Python float (float32 endpoints stay float32)
    kind = np.result_type(start.dtype, stop.dtype, 1.0)
    fraction = np.linspace(0.0, 1.0, num, endpoint=endpoint).astype(kind)
    out = convert(start, kind) + (convert(stop, kind) - convert(start, kind)) * fraction
    return out if dtype is None else convert(out, dtype)


from pyzygote.primitives.reduction import reduce_sum  # noqa: E402  (mutual use)


# --- scalar rules (pyzygote.transforms.scalarize): these only move elements --------
def _set_scalar_rules() -> None:
    from pyzygote.transforms.scalarize import elementwise, rearrangement

    for prim in (broadcast_in_dim_p, reshape_p, transpose_p, concatenate_p):
        prim.scalar = rearrangement
    convert_p.scalar = lambda s, x, *, dtype: elementwise("float({0})" if dtype == np.float64 else "bool({0})")(s, x)
    # numpy's scalar types cast as astype does between floats and booleans (not to integers:
    # np.int64(nan) raises where astype gives a value)
    convert_p.numpy_scalar = lambda *, dtype: f"_np.{np.dtype(dtype).name}({{0}})" if np.dtype(dtype).kind in "fb" else None


_set_scalar_rules()

"""Reductions along axes: sum, max, min, prod, and cumulative sum.

The primitives drop the reduced axes; ``keepdims`` is a reshape added by the
numpy handlers, so engines see one convention.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.max(x), np.array([1.0, 3.0, 2.0]))[0]
array([0., 1., 0.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, defjvp, deflinear
from pyzygote.tracer import Tracer, as_operand
from pyzygote.julia import codegen as jl
from pyzygote.transforms.batch import leading_axis_batch

__all__ = ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "cumsum_p"]


def _reduced_aval(x: Aval, *, axes: tuple[int, ...]) -> Aval:
    return Aval(tuple(s for i, s in enumerate(x.shape) if i not in axes), x.dtype)


def _restore(ct: Any, x_shape: tuple[int, ...], axes: tuple[int, ...]) -> Any:
    """Broadcast a reduced array back over the axes it lost."""
    kept = [i for i in range(len(x_shape)) if i not in axes]
    return broadcast_in_dim(ct, x_shape, kept)


# --- sum ------------------------------------------------------------------
reduce_sum_p = Primitive("reduce_sum")
reduce_sum_p.def_abstract_eval(_reduced_aval)
reduce_sum_p.def_impl(lambda x, *, axes: np.sum(x, axis=axes, dtype=np.asarray(x).dtype))  # numpy would widen narrow ints and count bools
deflinear(reduce_sum_p, lambda ct, x, *, axes: (_restore(ct, x.aval.shape, axes),))
# Julia's sum and cumsum widen integers narrower than 64 bits (Base.add_sum); numpy keeps the
# dtype it was asked for (np.sum(x, dtype=np.int8) wraps), so those reduce with + itself.
_NARROW_INTS = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32))
# Booleans too: numpy's np.sum(mask, dtype=bool) is a logical or, Julia's sum a count.
_OWN_TYPE = _NARROW_INTS | {np.dtype(bool)}


def _own_type_dims(x: Any, axes: tuple[int, ...]) -> str:
    return ":" if len(axes) == x.aval.ndim else jl.jdims(tuple(sorted(axes)))


@reduce_sum_p.def_julia
def _sum_julia(e: Any, x: Any, *, axes: tuple[int, ...]) -> str:
    if x.aval.dtype not in _OWN_TYPE:
        return jl.reduction("sum", x, axes)
    return f"PyZygote.numpy_sum({x}, {_own_type_dims(x, axes)})"


def _shifted_axes(prim: Primitive) -> Any:
    """The batch rule of a reduction: the same reduction of the axes after the columns' axis."""
    return leading_axis_batch(lambda x, k, *, axes: prim.bind(x, axes=tuple(a + 1 for a in axes)))


reduce_sum_p.batch = _shifted_axes(reduce_sum_p)


def reduce_sum(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_sum_p.bind(x, axes=tuple(axes))


# --- max / min: the derivative is shared equally among ties ----------------
def _extremum(name: str, fn: Any) -> Primitive:
    prim = Primitive(name)
    prim.def_abstract_eval(_reduced_aval)

    @prim.def_impl
    def impl(x: Any, *, axes: tuple[int, ...]) -> Any:
        if np.size(x) == 0:
            raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
        return fn(x, axis=axes)

    def rule(g: Any, ans: Any, x: Any, *, axes: tuple[int, ...]) -> Any:
        mask = np.equal(x, _restore(ans, np.shape(x), axes)).astype(x.dtype)
        return reduce_sum(g * mask, axes) / reduce_sum(mask, axes)

    defjvp(prim, rule)
    return prim


reduce_max_p = _extremum("reduce_max", np.max)
reduce_min_p = _extremum("reduce_min", np.min)
# Julia's maximum/minimum propagate NaN like numpy's max/min.
reduce_max_p.def_julia(lambda e, x, *, axes: jl.reduction("maximum", x, axes))
reduce_max_p.batch = _shifted_axes(reduce_max_p)
reduce_min_p.def_julia(lambda e, x, *, axes: jl.reduction("minimum", x, axes))
reduce_min_p.batch = _shifted_axes(reduce_min_p)


def reduce_max(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_max_p.bind(x, axes=tuple(axes))


def reduce_min(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_min_p.bind(x, axes=tuple(axes))


# --- prod -----------------------------------------------------------------
reduce_prod_p = Primitive("reduce_prod")
reduce_prod_p.def_abstract_eval(_reduced_aval)
reduce_prod_p.def_impl(lambda x, *, axes: np.prod(x, axis=axes, dtype=np.asarray(x).dtype))
reduce_prod_p.batch = _shifted_axes(reduce_prod_p)


def _prod_jvp(g: Any, ans: Any, x: Any, *, axes: tuple[int, ...]) -> Any:
    """d prod / dx_i = the product of the other elements, exact at zeros too.

    With z zeros in a group, P the product of its nonzero elements and e the
    zeros other than x_i: ``others_i`` is P (or P / x_i) when e = 0; when e = 1
    it is that zero's value times the same (0, but with the right derivative,
    so Hessians are right at a single zero too); when e >= 2 it is 0.
    """
    zero = np.equal(x, 0.0)
    r = lambda v: _restore(v, np.shape(x), axes)  # noqa: E731
    masked = np.where(zero, 0.0, x)
    nonzero_prod = r(reduce_prod(masked + zero.astype(x.dtype), axes))  # zeros replaced by 1
    zeros_sum = r(reduce_sum(x - masked, axes))  # 0, but carries the zeros' tangents
    excluded = r(reduce_sum(zero.astype(x.dtype), axes)) - zero.astype(x.dtype)
    others_nonzero = np.where(zero, nonzero_prod, nonzero_prod / (masked + zero.astype(x.dtype)))
    others = np.where(
        np.equal(excluded, 0.0),
        others_nonzero,
        np.where(np.equal(excluded, 1.0), others_nonzero * (zeros_sum - (x - masked)), 0.0),
    )
    return reduce_sum(g * others, axes)


defjvp(reduce_prod_p, _prod_jvp)
# PyZygote.prod: Base.prod with a derivative rule that holds at zero factors under ForwardDiff 1.
@reduce_prod_p.def_julia
def _prod_julia(e: Any, x: Any, *, axes: tuple[int, ...]) -> str:
    if x.aval.dtype in _NARROW_INTS:  # Base.prod widens them (mul_prod)
        return f"PyZygote.numpy_prod({x}, {_own_type_dims(x, axes)})"
    return jl.reduction("PyZygote.prod", x, axes)


def reduce_prod(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_prod_p.bind(x, axes=tuple(axes))


# --- cumulative sum -------------------------------------------------------
cumsum_p = Primitive("cumsum")
cumsum_p.def_abstract_eval(lambda x, *, axis, reverse: x)


@cumsum_p.def_impl
def _cumsum_impl(x: Any, *, axis: int, reverse: bool) -> Any:
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=np.asarray(x).dtype), axis)
    return np.cumsum(x, axis=axis, dtype=np.asarray(x).dtype)


deflinear(cumsum_p, lambda ct, x, *, axis, reverse: (cumsum_p.bind(ct, axis=axis, reverse=not reverse),))
cumsum_p.batch = leading_axis_batch(lambda x, k, *, axis, reverse: cumsum_p.bind(x, axis=axis + 1, reverse=reverse))


@cumsum_p.def_julia
def _cumsum_julia(e: Any, x: Any, *, axis: int, reverse: bool) -> str:
    add = "PyZygote.numpy_cumsum({}, {})" if x.aval.dtype in _OWN_TYPE else "cumsum({}; dims = {})"
    if not reverse:
        return add.format(x, axis + 1)
    flipped = e.bind(f"reverse({x}; dims = {axis + 1})")
    summed = e.bind(add.format(flipped, axis + 1))
    return f"reverse({summed}; dims = {axis + 1})"


# --- numpy handlers -----------------------------------------------------------
# What a masked-out element contributes, so that where= is a select before the reduction.
_IDENTITY = {"sum": 0, "prod": 1, "max": -np.inf, "min": np.inf}


def _masked(a: Any, where: Any, name: str) -> Any:
    """``a`` with the elements ``where`` excludes replaced by the reduction's identity."""
    if where is True:
        return a
    where = as_operand(where)
    if where.dtype != np.bool_:
        raise TypeError(f"where= must be a boolean array, got {where.dtype}")
    identity = _IDENTITY[name]
    if a.dtype.kind in "iu" and np.isinf(identity):
        info = np.iinfo(a.dtype)
        identity = info.min if identity < 0 else info.max
    mask = broadcast_to_shape(where, a.shape)
    return select(mask, a, np.asarray(identity, dtype=a.dtype))


def _reduction_handler(name: str, reducer: Any) -> Any:
    def handler(
        a: Any,
        axis: Any = None,
        dtype: Any = None,
        out: Any = None,
        keepdims: bool = False,
        initial: Any = np._NoValue,
        where: Any = True,
    ) -> Any:
        if out is not None:
            raise UnsupportedOperationError("out= is not supported in traced reductions")
        a = as_operand(a)
        # numpy's max and min of booleans are booleans (any and all); reduced as int64 here
        boolean_extreme = dtype is None and a.dtype == np.bool_ and name in ("max", "min")
        if dtype is not None:
            a = convert(a, dtype)
        elif a.dtype == np.bool_ or (name in ("sum", "prod") and a.dtype.kind == "i"):
            a = convert(a, np.int64)  # numpy accumulates integers in 64 bits
        elif name in ("sum", "prod") and a.dtype.kind == "u":
            a = convert(a, np.uint64)
        if where is not True and initial is np._NoValue and name in ("max", "min"):
            raise ValueError(
                f"reduction operation '{'maximum' if name == 'max' else 'minimum'}' does not have an identity, "
                "so to use a where mask one has to specify 'initial'"
            )
        axes = normalize_axes(axis, a.ndim)
        result = reducer(_masked(a, where, name), axes)
        if initial is not np._NoValue:
            combine = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}[name]
            result = combine(result, np.asarray(initial, dtype=result.dtype))
        if boolean_extreme:  # (review: they were int64)
            result = convert(result, np.bool_)
        if keepdims:
            result = reshape(result, [1 if i in axes else s for i, s in enumerate(a.shape)])
        return result

    return handler


_sum = implements(np.sum, "add.reduce")(_reduction_handler("sum", reduce_sum))
implements(np.max, np.amax, "maximum.reduce")(_reduction_handler("max", reduce_max))
implements(np.min, np.amin, "minimum.reduce")(_reduction_handler("min", reduce_min))
implements(np.prod, "multiply.reduce")(_reduction_handler("prod", reduce_prod))


def _count(a: Any, axis: Any, where: Any, keepdims: bool) -> Any:
    """How many elements each slice of a mean or variance averages: constant unless ``where`` is traced."""
    if where is True:
        return int(np.prod([a.shape[i] for i in normalize_axes(axis, a.ndim)], dtype=np.int64))
    if isinstance(where, Tracer):
        return _sum(broadcast_to_shape(where, a.shape), axis=axis, keepdims=keepdims)
    return np.sum(np.broadcast_to(np.asarray(where), a.shape), axis=axis, keepdims=keepdims)


def _in_dtype(count: Any, like: Any) -> Any:
    """A count to divide ``like`` by without promoting float32 to float64 (numpy divides in the
    result's precision); a Python number already divides without promotion."""
    if isinstance(count, (int, float)):
        return count
    return convert(as_operand(count), as_operand(like).dtype)


@implements(np.mean)
def _np_mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = True) -> Any:
    a = as_operand(a)
    if a.dtype.kind != "f" and dtype is None:
        dtype = np.float64
    total = _sum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)
    mean = total / _in_dtype(_count(a, axis, where, keepdims), total)
    # numpy divides an integer (or boolean) total into its own dtype, truncating
    return mean.astype(dtype) if np.dtype(dtype).kind in "biu" else mean


@implements(np.var)
def _np_var(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: float = 0,
    keepdims: bool = False,
    *,
    where: Any = True,
    mean: Any = np._NoValue,
    correction: Any = np._NoValue,
) -> Any:
    if correction is not np._NoValue:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    a = as_operand(a)
    if mean is np._NoValue:
        mean = _np_mean(a, axis=axis, dtype=dtype, keepdims=True, where=where)
    centered = a - mean
    if where is not True:  # zeros where left out, so that a NaN there cannot reach the derivative
        centered = select(broadcast_to_shape(as_operand(where), a.shape), centered, np.zeros((), centered.dtype))
    squares = _sum(centered * centered, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)
    # numpy divides by max(count - ddof, 0): too few entries give inf or NaN, never a negative variance
    count = _count(a, axis, where, keepdims)
    denominator = max(count - ddof, 0) if isinstance(count, int) else np.maximum(count - ddof, 0)
    return squares / _in_dtype(denominator, squares)


@implements(np.std)
def _np_std(*args: Any, **kwargs: Any) -> Any:
    """numpy's ``std``: the square root of :func:`_np_var`, which takes the same arguments."""
    return np.sqrt(_np_var(*args, **kwargs))


# --- NaN-ignoring reductions and the peak-to-peak range: where= over the non-NaN entries ---------
def _not_nan(a: Any, where: Any) -> Any:
    a = as_operand(a)
    keep = np.logical_not(np.isnan(a)) if a.dtype.kind == "f" else np.ones(a.shape, dtype=bool)
    return keep if where is True else np.logical_and(keep, where)


@implements(np.nansum)
def _np_nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, initial: Any = np._NoValue, where: Any = True) -> Any:
    return _sum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, initial=initial, where=_not_nan(a, where))


@implements(np.nanprod)
def _np_nanprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, initial: Any = np._NoValue, where: Any = True) -> Any:
    return np.prod(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, initial=initial, where=_not_nan(a, where))


@implements(np.nanmean)
def _np_nanmean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = True) -> Any:
    return _np_mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=_not_nan(a, where))


def _nan_var(std: bool) -> Any:
    def handler(
        a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: float = 0, keepdims: bool = False,
        *, where: Any = True, mean: Any = np._NoValue, correction: Any = np._NoValue,
    ) -> Any:  # fmt: skip
        kept = _not_nan(a, where)
        v = _np_var(a, axis, dtype, out, ddof, keepdims, where=kept, mean=mean, correction=correction)
        return np.sqrt(v) if std else v

    return handler


implements(np.nanvar)(_nan_var(std=False))
implements(np.nanstd)(_nan_var(std=True))


def _nan_extreme(name: str) -> Any:
    def handler(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = np._NoValue, where: Any = True) -> Any:
        a = as_operand(a)
        reduce = np.max if name == "max" else np.min
        if a.dtype.kind != "f":
            return reduce(a, axis=axis, out=out, keepdims=keepdims, initial=initial, where=where)
        kept = _not_nan(a, where)
        start = (-np.inf if name == "max" else np.inf) if initial is np._NoValue else initial
        result = reduce(a, axis=axis, keepdims=keepdims, initial=start, where=kept)
        if initial is not np._NoValue:
            return result
        empty = np.logical_not(np.any(kept, axis=axis, keepdims=keepdims))  # numpy: NaN, with a warning
        return np.where(empty, np.asarray(np.nan, a.dtype), result)

    return handler


implements(np.nanmax)(_nan_extreme("max"))
implements(np.nanmin)(_nan_extreme("min"))


@implements(np.ptp)
def _np_ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    return np.subtract(np.max(a, axis=axis, keepdims=keepdims), np.min(a, axis=axis, keepdims=keepdims))


@implements(np.cumsum, "add.accumulate")
def _np_cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    a = as_operand(a)
    if dtype is not None:
        a = convert(a, dtype)
    elif a.dtype.kind in "bi":  # numpy accumulates booleans and integers in 64 bits
        a = convert(a, np.int64)
    elif a.dtype.kind == "u":
        a = convert(a, np.uint64)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    return cumsum_p.bind(a, axis=normalize_axis(axis, a.ndim), reverse=False)


@implements(np.trace)
def _np_trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None, out: Any = None) -> Any:
    a = as_operand(a)
    return _sum(np.diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


from pyzygote.primitives.logic import select  # noqa: E402  (mutual use)
from pyzygote.primitives.shape import (  # noqa: E402  (mutual use)
    broadcast_in_dim,
    broadcast_to_shape,
    convert,
    normalize_axes,
    normalize_axis,
    reshape,
)


# --- scalar rules (pyzygote.transforms.scalarize) -------------------------------------
def _set_scalar_rules() -> None:
    from functools import reduce

    from pyzygote.transforms.scalarize import reduction, sum_of

    reduce_sum_p.scalar = reduction(sum_of)
    reduce_prod_p.scalar = reduction(lambda xs: "(" + " * ".join(xs) + ")" if xs else "1.0")
    reduce_max_p.scalar = reduction(lambda xs: reduce(lambda a, b: f"_max({a}, {b})", xs))
    reduce_min_p.scalar = reduction(lambda xs: reduce(lambda a, b: f"_min({a}, {b})", xs))

    def cumsum_rule(s: Any, x: list[str], *, axis: int, reverse: bool) -> list[str]:
        from pyzygote.primitives.indexing import element_positions

        pos = np.moveaxis(element_positions(s.out.shape), axis, -1).reshape(-1, s.out.shape[axis])
        out = list(x)
        for line in pos:
            line = line[::-1] if reverse else line
            for k in range(1, len(line)):
                out[line[k]] = f"({out[line[k - 1]]} + {x[line[k]]})"
        return out

    cumsum_p.scalar = cumsum_rule


_set_scalar_rules()

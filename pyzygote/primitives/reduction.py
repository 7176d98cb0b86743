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

from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, defjvp, deflinear
from pyzygote.tracer import as_operand
from pyzygote.julia import codegen as jl

__all__ = ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "cumsum"]


def _reduced_aval(x: Aval, *, axes: tuple[int, ...]) -> Aval:
    return Aval(tuple(s for i, s in enumerate(x.shape) if i not in axes), x.dtype)


def _restore(ct: Any, x_shape: tuple[int, ...], axes: tuple[int, ...]) -> Any:
    """Broadcast a reduced array back over the axes it lost."""
    kept = [i for i in range(len(x_shape)) if i not in axes]
    return broadcast_in_dim(ct, x_shape, kept)


# --- sum ------------------------------------------------------------------
reduce_sum_p = Primitive("reduce_sum")
reduce_sum_p.def_abstract_eval(_reduced_aval)
reduce_sum_p.def_impl(lambda x, *, axes: np.sum(x, axis=axes))
deflinear(reduce_sum_p, lambda ct, x, *, axes: (_restore(ct, x.aval.shape, axes),))
reduce_sum_p.def_julia(lambda e, x, *, axes: jl.reduction("sum", x, axes))


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
reduce_min_p.def_julia(lambda e, x, *, axes: jl.reduction("minimum", x, axes))


def reduce_max(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_max_p.bind(x, axes=tuple(axes))


def reduce_min(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_min_p.bind(x, axes=tuple(axes))


# --- prod -----------------------------------------------------------------
reduce_prod_p = Primitive("reduce_prod")
reduce_prod_p.def_abstract_eval(_reduced_aval)
reduce_prod_p.def_impl(lambda x, *, axes: np.prod(x, axis=axes))
# As in HIPS autograd: d prod / dx_i = prod / x_i (undefined at exact zeros).
defjvp(reduce_prod_p, lambda g, ans, x, *, axes: reduce_sum(g * (_restore(ans, np.shape(x), axes) / x), axes))
reduce_prod_p.def_julia(lambda e, x, *, axes: jl.reduction("prod", x, axes))


def reduce_prod(x: Any, axes: tuple[int, ...]) -> Any:
    return x if not axes else reduce_prod_p.bind(x, axes=tuple(axes))


# --- cumulative sum -------------------------------------------------------
cumsum_p = Primitive("cumsum")
cumsum_p.def_abstract_eval(lambda x, *, axis, reverse: x)


@cumsum_p.def_impl
def _cumsum_impl(x: Any, *, axis: int, reverse: bool) -> Any:
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis)
    return np.cumsum(x, axis=axis)


deflinear(cumsum_p, lambda ct, x, *, axis, reverse: (cumsum_p.bind(ct, axis=axis, reverse=not reverse),))


@cumsum_p.def_julia
def _cumsum_julia(e: Any, x: Any, *, axis: int, reverse: bool) -> str:
    if not reverse:
        return f"cumsum({x}; dims = {axis + 1})"
    flipped = e.bind(f"reverse({x}; dims = {axis + 1})")
    summed = e.bind(f"cumsum({flipped}; dims = {axis + 1})")
    return f"reverse({summed}; dims = {axis + 1})"


# --- numpy handlers -----------------------------------------------------------
def _reduction_handler(reducer: Any, allow_empty: bool = True) -> Any:
    def handler(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        if out is not None or kw.get("where", True) is not True:
            raise NotImplementedError("out= and where= are not supported in traced reductions")
        if kw.get("initial", np._NoValue) is not np._NoValue:
            raise NotImplementedError("initial= is not supported in traced reductions")
        a = as_operand(a)
        if dtype is not None:
            a = convert(a, dtype)
        elif a.dtype == np.bool_:
            a = convert(a, np.int64)
        axes = normalize_axes(axis, a.ndim)
        result = reducer(a, axes)
        if keepdims:
            result = reshape(result, [1 if i in axes else s for i, s in enumerate(a.shape)])
        return result

    return handler


_sum = implements(np.sum, "add.reduce")(_reduction_handler(reduce_sum))
implements(np.max, np.amax, "maximum.reduce")(_reduction_handler(reduce_max))
implements(np.min, np.amin, "minimum.reduce")(_reduction_handler(reduce_min))
implements(np.prod, "multiply.reduce")(_reduction_handler(reduce_prod))


@implements(np.mean)
def _np_mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
    a = as_operand(a)
    if a.dtype.kind != "f" and dtype is None:
        dtype = np.float64
    total = _sum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)
    count = int(np.prod([a.shape[i] for i in normalize_axes(axis, a.ndim)], dtype=np.int64))
    return total / count


@implements(np.cumsum, "add.accumulate")
def _np_cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    a = as_operand(a)
    if dtype is not None:
        a = convert(a, dtype)
    if axis is None:
        a, axis = reshape(a, (a.size,)), 0
    return cumsum_p.bind(a, axis=normalize_axis(axis, a.ndim), reverse=False)


@implements(np.trace)
def _np_trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None, out: Any = None) -> Any:
    a = as_operand(a)
    return _sum(np.diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


from pyzygote.primitives.shape import (  # noqa: E402  (mutual use)
    broadcast_in_dim,
    convert,
    normalize_axes,
    normalize_axis,
    reshape,
)

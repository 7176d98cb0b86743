"""numpy functions traced as numpy code over other traced functions.

None of these has a primitive of its own: derivatives, Julia code and scalar
code all come from the functions each one is written with, so the engines
cannot disagree about them.  Where numpy has a numerically careful formula,
so does the composition (``logaddexp`` shifts by the larger operand), and
where two formulas are each exact everywhere, ``np.where`` picks the stable
one, which keeps derivatives of every order exact, ties included.  Each is
checked against numpy's own result and against finite differences in
``tests/test_composites.py``.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda y: np.trapezoid(y, dx=0.5), np.ones(3))[0]
array([0.25, 0.5 , 0.25])
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from typing import Any, Sequence

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.numpy_api import implements
from pyzygote.primitives.shape import convert, normalize_axis
from pyzygote.primitives.traced_indexing import searchsorted, take
from pyzygote.tracer import CONTINUOUS, SMOOTH, Tracer, as_operand, composition

__all__: list[str] = []


def _no_keywords(name: str, kw: dict[str, Any]) -> None:
    if kw:
        raise UnsupportedOperationError(f"numpy.{name} keywords {sorted(kw)} are not supported while tracing")


def _along(axis: int, ndim: int, index: Any) -> tuple[Any, ...]:
    """An index tuple that applies ``index`` along ``axis`` only."""
    return tuple(index if i == axis else slice(None) for i in range(ndim))


def _is_traced(*xs: Any) -> bool:
    return any(isinstance(x, Tracer) for x in xs)


# --- elementwise ----------------------------------------------------------------------
@composition(SMOOTH)
def _log_add(x: Any, y: Any, exp: Any, log1p: Any) -> Any:
    """``log(exp(x) + exp(y))`` in base e or 2, shifted by the larger operand.

    ``a + log1p(exp(b - a))`` is exact for either order of ``a`` and ``b``;
    choosing the order with ``np.where`` keeps it stable and its derivatives
    of every order exact (a tie takes one branch, not an average of two).
    """
    x, y = _in_ufunc_type(np.logaddexp, x, y)
    first = np.greater_equal(x, y)
    a, b = np.where(first, x, y), np.where(first, y, x)
    # Equal infinities: numpy's result is that infinity; b - a would be NaN.
    same_inf = np.logical_and(np.isinf(a), np.equal(a, b))
    zero = np.zeros((), a.dtype)
    d = np.where(same_inf, zero, b) - np.where(same_inf, zero, a)
    return a + log1p(exp(d))


def _in_ufunc_type(ufunc: Any, *xs: Any) -> list[Any]:
    """The operands converted to the type numpy's ``ufunc`` computes in (a Python number is
    weak: float32 and 0.5 stay float32)."""
    from pyzygote.primitives.elementwise import _dtype_arg

    kinds = ufunc.resolve_dtypes(tuple(_dtype_arg(x) for x in xs) + (None,))
    return [convert(as_operand(x), k) for x, k in zip(xs, kinds)]


@implements(np.logaddexp)
def _np_logaddexp(x: Any, y: Any, **kw: Any) -> Any:
    _no_keywords("logaddexp", kw)
    return _log_add(x, y, np.exp, np.log1p)


@implements(np.logaddexp2)
def _np_logaddexp2(x: Any, y: Any, **kw: Any) -> Any:
    _no_keywords("logaddexp2", kw)
    return _log_add(x, y, np.exp2, lambda z: np.log1p(z) / float(np.log(2.0)))


@implements("logaddexp.reduce")
def _np_logaddexp_reduce(x: Any, axis: Any = 0, dtype: Any = None, keepdims: bool = False, **kw: Any) -> Any:
    """log(sum(exp(x))) along ``axis``, shifted by the largest entry (numpy adds pairwise, each
    pair shifted by its larger one); an all -inf slice gives -inf, as numpy's does."""
    _no_keywords("logaddexp.reduce", kw)
    x = as_operand(x) if dtype is None else convert(as_operand(x), np.dtype(dtype))
    if x.dtype.kind != "f":
        x = convert(x, np.float64)
    axes = tuple(range(x.ndim)) if axis is None else axis
    if x.size == 0:  # numpy's identity of logaddexp: -inf for each empty slice
        total = np.sum(x, axis=axes, keepdims=True) - np.inf
        return total if keepdims else np.squeeze(total, axis=axes)
    m = np.max(x, axis=axes, keepdims=True)
    finite = np.isfinite(m)  # else the slice's result is its max: -inf, inf or NaN, as numpy's
    shift = np.where(finite, m, 0.0)
    total = np.where(finite, np.log(np.where(finite, np.sum(np.exp(x - shift), axis=axes, keepdims=True), 1.0)) + shift, m)
    return total if keepdims else np.squeeze(total, axis=axes)


@implements(np.sinc)
@composition(SMOOTH)
def _np_sinc(x: Any) -> Any:
    """``sin(pi x) / (pi x)``, and its Taylor series where ``|pi x| < 0.1``: there the quotient
    loses digits, and at 0, where numpy gives 1, derivatives of every order come from the series
    (``np.where`` with 1 would make the second derivative 0 instead of ``-pi**2 / 3``)."""
    x = as_operand(x)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    y = np.pi * x
    # The quotient's derivatives cancel to about eps / y**2 near 0: float32 takes the series
    # further out (its first omitted term is below float32's eps up to 0.5).
    near = np.less(np.abs(y), 0.1 if x.dtype == np.float64 else 0.5)
    z = y * y
    # 1 - z/3! + z^2/5! - ...: the first omitted term is below 1e-21 where float64 uses the series
    series = 1.0 - z / 6.0 * (1.0 - z / 20.0 * (1.0 - z / 42.0 * (1.0 - z / 72.0 * (1.0 - z / 110.0))))
    away = np.where(near, 1.0, y)
    return np.where(near, series, np.sin(away) / away)


@implements(np.deg2rad, np.radians)
def _np_deg2rad(x: Any, **kw: Any) -> Any:
    _no_keywords("deg2rad", kw)
    return np.multiply(x, np.pi / 180.0)


@implements(np.rad2deg, np.degrees)
def _np_rad2deg(x: Any, **kw: Any) -> Any:
    _no_keywords("rad2deg", kw)
    return np.multiply(x, 180.0 / np.pi)


@implements(np.heaviside)
def _np_heaviside(x: Any, h0: Any, **kw: Any) -> Any:
    _no_keywords("heaviside", kw)
    x, h0 = _in_ufunc_type(np.heaviside, x, h0)
    zero, one = np.zeros((), x.dtype), np.ones((), x.dtype)
    step = np.where(np.less(x, 0.0), zero, np.where(np.greater(x, 0.0), one, h0))
    # NaN as a constant, not x passed through: a step has no derivative in x (a branch reading x
    # hid that from pz.ZeroGradientWarning, user testing)
    return np.where(np.isnan(x), np.full((), np.nan, x.dtype), step)


@implements(np.modf)
def _np_modf(x: Any, **kw: Any) -> tuple[Any, Any]:
    """``(x - trunc(x), trunc(x))``: the fractional part carries the derivative, with ``x``'s sign
    (and ``modf(±inf) = (±0.0, ±inf)``, as numpy's)."""
    _no_keywords("modf", kw)
    x = as_operand(x)
    dtype = np.modf(np.zeros((), x.dtype))[0].dtype  # numpy's loop: integers are made floats (int64 float64)
    if x.dtype != dtype:
        x = convert(x, dtype)
    whole = np.trunc(x)
    infinite = np.isinf(x)
    finite_whole = np.where(infinite, np.zeros((), x.dtype), whole)  # no inf - inf
    # numpy's fraction has x's sign, -0.0 for a negative whole number: x - x is +0.0, -(x - x) is -0.0
    frac = np.where(np.less(x, 0), -(finite_whole - x), x - finite_whole)
    # x itself where it is ±0.0 or ±inf's zero: the sign numpy gives
    return np.where(infinite, np.copysign(np.zeros((), x.dtype), x), np.where(np.equal(x, 0), x, frac)), whole


@implements(np.divmod)
def _np_divmod(x: Any, y: Any, **kw: Any) -> tuple[Any, Any]:
    """``(x // y, x % y)``, numpy's ``floor_divide`` and ``remainder``."""
    _no_keywords("divmod", kw)
    return np.floor_divide(x, y), np.remainder(x, y)


@implements(np.fmod)
def _np_fmod(x: Any, y: Any, **kw: Any) -> Any:
    """C's ``fmod``, the remainder with the sign of ``x``: ``remainder(x, |y|)`` where ``x`` has no
    sign bit and ``-remainder(-x, |y|)`` where it has, ``remainder(|x|, |y|)`` with ``x``'s sign
    (exact, as numpy's).  Each branch is a remainder of ``x`` itself, so the derivative in ``x`` is
    1 also at ``x = 0``, where ``|x|`` has derivative 0 (review: it was 0 there), and
    ``-trunc(x / y)`` in ``y``."""
    _no_keywords("fmod", kw)
    if type(y) is int and as_operand(x).dtype.kind in "iu":
        info = np.iinfo(as_operand(x).dtype)
        if not info.min <= y <= info.max:  # numpy's, where the divisor is converted to x's dtype
            raise OverflowError(f"Python integer {y} out of bounds for {as_operand(x).dtype}")
        if y == info.min < 0:  # |y| is beyond the dtype: every other x is smaller in magnitude (review)
            return np.where(np.equal(x, y), 0, x)
    size = _magnitude(y)
    r = np.remainder(x, size)
    if as_operand(r).dtype.kind in "iu":  # -x wraps at the lowest integer: C's remainder from r itself
        return np.where(np.less(x, 0), np.where(np.equal(r, 0), r, r - size), r)
    return np.where(np.signbit(x), -np.remainder(operator.neg(x), size), r)


def _magnitude(v: Any) -> Any:
    """``|v|``, a Python number staying one: ``np.absolute(2.0)`` is a float64 scalar, which made
    ``np.fmod`` of a float32 array and ``2.0`` float64 (and of int32 and ``3`` int64)."""
    return abs(v) if type(v) in (int, float) else np.absolute(v)


@implements(np.nan_to_num)
def _np_nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None, neginf: Any = None) -> Any:
    x = as_operand(x)
    if x.dtype.kind != "f":
        return x
    big = float(np.finfo(x.dtype).max)
    y = np.where(np.isnan(x), nan, x)
    y = np.where(np.isposinf(y), big if posinf is None else posinf, y)
    y = np.where(np.isneginf(y), -big if neginf is None else neginf, y)
    if not copy and isinstance(x, Tracer):  # numpy replaces in place
        x[...] = y
        return x
    return y


@implements(np.isposinf)
def _np_isposinf(x: Any, out: Any = None) -> Any:
    x = as_operand(x)
    return np.logical_and(np.isinf(x), np.greater(x, 0.0))


@implements(np.isneginf)
def _np_isneginf(x: Any, out: Any = None) -> Any:
    x = as_operand(x)
    return np.logical_and(np.isinf(x), np.less(x, 0.0))


@implements(np.isclose)
def _np_isclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Any:
    a, b = as_operand(a), as_operand(b)
    close = np.less_equal(np.abs(a - b), atol + rtol * np.abs(b))
    close = np.logical_and(close, np.logical_and(np.isfinite(a), np.isfinite(b)))
    close = np.logical_or(close, np.equal(a, b))  # equal infinities
    if equal_nan:
        close = np.logical_or(close, np.logical_and(np.isnan(a), np.isnan(b)))
    return close


@implements(np.any)
def _np_any(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = None) -> Any:
    if out is not None or where is not None:
        raise UnsupportedOperationError("traced np.any does not support out= or where=")
    return np.greater(np.sum(np.not_equal(a, 0), axis=axis, keepdims=keepdims), 0)


@implements(np.all)
def _np_all(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = None) -> Any:
    if out is not None or where is not None:
        raise UnsupportedOperationError("traced np.all does not support out= or where=")
    return np.equal(np.sum(np.equal(a, 0), axis=axis, keepdims=keepdims), 0)


@implements(np.select)
def _np_select(condlist: Sequence[Any], choicelist: Sequence[Any], default: Any = 0) -> Any:
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    out = default
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        out = np.where(cond, choice, out)
    return as_operand(out)


@implements(np.polyval)
def _np_polyval(p: Any, x: Any) -> Any:
    """Horner's rule, as numpy evaluates it."""
    p = as_operand(p)
    y = np.zeros_like(as_operand(x) * p[0])
    for k in range(p.shape[0]):
        y = y * x + p[k]
    return y


# --- reductions and integrals ---------------------------------------------------------
@implements(*(f for f in (np.trapezoid, getattr(np, "trapz", None)) if f is not None))
def _np_trapezoid(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Any:
    y = as_operand(y)
    axis = normalize_axis(axis, y.ndim)
    if x is None:
        d = dx
    else:
        x = as_operand(x)
        if x.ndim == 1:
            d = np.reshape(np.diff(x), tuple(-1 if i == axis else 1 for i in range(y.ndim)))
        else:
            d = np.diff(x, axis=axis)
    upper, lower = y[_along(axis, y.ndim, slice(1, None))], y[_along(axis, y.ndim, slice(None, -1))]
    return np.sum(d * (upper + lower) / 2.0, axis=axis)


@implements(np.average)
def _np_average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *, keepdims: bool = False) -> Any:
    a = as_operand(a)
    if weights is None:
        avg = np.mean(a, axis=axis, keepdims=keepdims)
        scale = np.asarray(a.size / max(avg.size, 1), dtype=avg.dtype)
    else:
        w = as_operand(weights)
        if w.shape != a.shape:
            if axis is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            if w.ndim != 1 or not isinstance(axis, (int, np.integer)):
                raise TypeError("1D weights expected when shapes of a and weights differ.")
            ax = normalize_axis(axis, a.ndim)
            if w.shape[0] != a.shape[ax]:
                raise ValueError("Length of weights not compatible with specified axis.")
            w = np.reshape(w, tuple(-1 if i == ax else 1 for i in range(a.ndim)))
        scale = np.sum(np.broadcast_to(w, a.shape) * 1.0, axis=axis, keepdims=keepdims)
        avg = np.sum(a * w, axis=axis, keepdims=keepdims) / scale
    if returned:
        return avg, np.broadcast_to(scale, np.shape(avg))
    return avg


def _variables_by_row(a: Any, rowvar: bool, dtype: Any, first: bool) -> Any:
    """``a`` as a 2-d array whose rows are the variables (numpy's ``rowvar`` convention: ``m`` is
    transposed unless it is 1-d, ``y`` unless it has one row)."""
    a = as_operand(a)
    if a.ndim > 2:
        raise ValueError(f"{'m' if first else 'y'} has more than 2 dimensions")
    flip = a.ndim != 1 if first else (a.ndim == 2 and a.shape[0] != 1)
    a = np.reshape(a, (1, -1)) if a.ndim < 2 else a
    return convert(a.T if not rowvar and flip else a, dtype)


def _observation_weights(name: str, given: Any, n: int) -> Any:
    """numpy's checks of ``fweights`` (whole repeat counts) and ``aweights``, with its errors."""
    w = convert(as_operand(given), np.float64)
    if name == "fweights" and not isinstance(w, Tracer) and not np.all(w == np.around(w)):
        raise TypeError("fweights must be integer")
    if w.ndim > 1:
        raise RuntimeError(f"cannot handle multidimensional {name}")
    if w.ndim == 0 or w.shape[0] != n:
        raise RuntimeError(f"incompatible numbers of samples and {name}")
    if not isinstance(w, Tracer) and np.any(w < 0):
        raise ValueError(f"{name} cannot be negative")
    return w


@implements(np.cov)
def _np_cov(
    m: Any, y: Any = None, rowvar: bool = True, bias: bool = False, ddof: Any = None,
    fweights: Any = None, aweights: Any = None, *, dtype: Any = None,
) -> Any:  # fmt: skip
    """numpy's covariance estimate: deviations from the (weighted) means, their products summed
    and divided by the degrees of freedom numpy counts."""
    if ddof is not None and ddof != int(ddof):
        raise ValueError("ddof must be an integer")
    if dtype is None:
        dtype = np.result_type(*(as_operand(a).dtype for a in (m, y) if a is not None), np.float64)
    x = _variables_by_row(m, rowvar, dtype, first=True)
    if y is not None:
        x = np.concatenate([x, _variables_by_row(y, rowvar, dtype, first=False)], axis=0)
    n = x.shape[1]
    ddof = (0 if bias else 1) if ddof is None else int(ddof)
    fw = None if fweights is None else _observation_weights("fweights", fweights, n)
    aw = None if aweights is None else _observation_weights("aweights", aweights, n)
    w = aw if fw is None else (fw if aw is None else fw * aw)
    mean, total = np.average(x, axis=1, weights=w, returned=True)
    total = total[0]
    if w is None:
        dof = n - ddof
    elif ddof == 0:
        dof = total
    elif aw is None:
        dof = total - ddof
    else:
        dof = total - ddof * np.sum(w * aw) / total
    if not isinstance(dof, Tracer) and dof <= 0:
        warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=3)
        dof = 0.0
    # numpy subtracts the mean and scales in place, rounding back to x's and c's own dtypes
    dev = convert(x - mean[:, None], x.dtype)
    c = dev @ (dev if w is None else dev * w).T
    return np.squeeze(convert(c * np.true_divide(1, dof), c.dtype))


@implements(np.corrcoef)
def _np_corrcoef(x: Any, y: Any = None, rowvar: bool = True, bias: Any = None, ddof: Any = None, *, dtype: Any = None) -> Any:
    """The covariance divided by both standard deviations, at most 1 in magnitude as numpy makes it."""
    if bias is not None or ddof is not None:
        warnings.warn("bias and ddof have no effect and are deprecated", DeprecationWarning, stacklevel=3)
    c = _np_cov(x, y, rowvar, dtype=dtype)
    if c.ndim == 0:
        return c / c  # numpy's answer for one variable: 1, or NaN
    d = np.diagonal(c)
    s = np.sqrt(d)
    diagonal = np.eye(d.shape[0], dtype=bool)
    # numpy clips to [-1, 1] to undo rounding.  Here the diagonal is d / d, exactly 1 (or NaN for a
    # constant variable, as numpy's), and only the other entries are clipped, by a select whose
    # side is the rounding's: no kink of the clip, at a side rounding picks, in the derivative.
    r = np.where(diagonal, 0.0, c / s[:, None] / s[None, :])
    return np.where(diagonal, d / d, np.where(np.abs(r) > 1, np.sign(r), r))


@implements(np.cumprod, "multiply.accumulate")
def _np_cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """Products of leading elements by doubling strides (a log-depth scan): no division, so zeros are fine."""
    a = as_operand(a)
    if dtype is not None:
        a = a.astype(dtype)
    elif a.dtype.kind in "bi" and a.dtype != np.int64:  # numpy multiplies these in 64 bits, as np.cumsum
        a = a.astype(np.int64)  # (review: int32 stayed int32 and wrapped, booleans stayed booleans)
    elif a.dtype.kind == "u" and a.dtype != np.uint64:
        a = a.astype(np.uint64)
    if axis is None:
        a, axis = np.ravel(a), 0
    axis = normalize_axis(axis, a.ndim)
    n, k = a.shape[axis], 1
    while k < n:  # after this pass, each element holds the product of the 2k elements ending at it
        ones = np.ones(a.shape[:axis] + (k,) + a.shape[axis + 1 :], dtype=a.dtype)
        a = a * np.concatenate([ones, a[_along(axis, a.ndim, slice(None, n - k))]], axis=axis)
        k *= 2
    return a


def _running_extreme(ufunc: Any, name: str) -> Any:
    """``np.maximum.accumulate`` (``np.minimum``): the running maximum along an axis, by doubling
    strides as in :func:`_np_cumprod`.  Each pass takes ``ufunc`` of an element and the one ``k``
    before it, so the derivative is np.maximum's: at a tie it is split between the tied entries
    (on the Julia engine, whose max gives ties to its second operand, the earlier entry has it)."""

    def handler(a: Any, axis: Any = 0, dtype: Any = None, out: Any = None) -> Any:
        a = as_operand(a)
        if dtype is not None:
            a = a.astype(dtype)
        if a.ndim == 0:
            raise TypeError(f"cannot {name}.accumulate on a scalar")  # numpy's words
        if axis is None:
            raise TypeError("an integer is required for the axis")
        axis = normalize_axis(axis, a.ndim)
        if a.dtype == np.bool_:
            neutral: Any = name == "minimum"
        elif a.dtype.kind == "f":
            neutral = -np.inf if name == "maximum" else np.inf
        else:
            info = np.iinfo(a.dtype)
            neutral = info.min if name == "maximum" else info.max
        n, k = a.shape[axis], 1
        while k < n:  # after this pass, each element holds the extreme of the 2k elements ending at it
            pad = np.full(a.shape[:axis] + (k,) + a.shape[axis + 1 :], neutral, dtype=a.dtype)
            a = ufunc(a, np.concatenate([pad, a[_along(axis, a.ndim, slice(None, n - k))]], axis=axis))
            k *= 2
        return a

    return handler


implements("maximum.accumulate")(_running_extreme(np.maximum, "maximum"))
implements("minimum.accumulate")(_running_extreme(np.minimum, "minimum"))


def _cumulative(name: str, running: Any, initial: float) -> None:
    """numpy 2.1's ``np.cumulative_sum`` / ``np.cumulative_prod``: the running sum or product
    along an axis (required above one dimension), optionally after the empty one."""
    fn = getattr(np, name, None)
    if fn is None:  # numpy 2.0
        return

    @implements(fn)
    def handler(x: Any, /, *, axis: Any = None, dtype: Any = None, out: Any = None, include_initial: bool = False) -> Any:
        x = as_operand(x)
        if axis is None:
            if x.ndim > 1:
                raise ValueError("For arrays which have more than one dimension ``axis`` argument is required.")
            x, axis = np.reshape(x, (-1,)), 0
        result = running(x, axis=axis, dtype=dtype)
        if include_initial:
            axis = normalize_axis(axis, result.ndim)
            first = np.full(result.shape[:axis] + (1,) + result.shape[axis + 1 :], initial, dtype=result.dtype)
            result = np.concatenate([first, result], axis=axis)
        return result


_cumulative("cumulative_sum", np.cumsum, 0)
_cumulative("cumulative_prod", np.cumprod, 1)


def _nan_cumulative(fn: Any, running: Any, neutral: float) -> None:
    """``np.nancumsum`` / ``np.nancumprod``: NaN entries count as the neutral element.  The
    NaN is replaced by a ``where`` before the running operation, so its entry gets a zero
    derivative and no NaN reaches the others' (as for ``np.nansum``).  Integers and booleans
    hold no NaN: theirs is the plain running operation, in numpy's integer dtype (the ``where``
    with a float neutral element made them float64; review)."""

    @implements(fn)
    def handler(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
        a = as_operand(a)
        if a.dtype.kind not in "fc":
            return running(a, axis=axis, dtype=dtype)
        return running(np.where(np.isnan(a), neutral, a), axis=axis, dtype=dtype)


_nan_cumulative(np.nancumsum, np.cumsum, 0.0)
_nan_cumulative(np.nancumprod, np.cumprod, 1.0)


@implements(np.gradient)
def _np_gradient(f: Any, *varargs: Any, axis: Any = None, edge_order: int = 1) -> Any:
    """Second-order central differences inside, one-sided ones at the edges (numpy's formulas).
    Integers are made float64 first, as numpy does, so that their differences do not wrap
    (review: uint8 data wrapped, -124 came out 4)."""
    f = as_operand(f)
    if f.dtype.kind in "iu":
        f = f.astype(np.float64)
    axes = tuple(range(f.ndim)) if axis is None else tuple(normalize_axis(a, f.ndim) for a in np.atleast_1d(axis))
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    if len(varargs) == 0:
        spacings: list[Any] = [1.0] * len(axes)
    elif len(varargs) == 1 and np.ndim(varargs[0]) == 0:
        spacings = list(varargs) * len(axes)
    elif len(varargs) == len(axes):
        spacings = list(varargs)
    else:
        raise TypeError("invalid number of arguments")
    results = []
    for ax, h in zip(axes, spacings):
        if _is_traced(h):
            raise UnsupportedOperationError("traced np.gradient needs constant spacings or coordinates")
        n = f.shape[ax]
        if n < edge_order + 1:
            raise ValueError("Shape of array too small to calculate a numerical gradient, at least (edge_order + 1) elements are required.")
        along = _gradient_along(f, ax, n, np.asarray(h, dtype=float), edge_order)
        results.append(convert(along, f.dtype) if f.dtype.kind == "f" else along)  # numpy's output type
    return results[0] if len(results) == 1 else tuple(results)


def _gradient_along(f: Any, ax: int, n: int, h: np.ndarray, edge_order: int) -> Any:
    if h.ndim == 0:
        dx = np.full(n - 1, float(h))
    elif h.shape == (n,):
        dx = np.diff(h)
    else:
        raise ValueError("when 1d, distances must match the length of the corresponding dimension")

    def at(index: Any) -> Any:
        return f[_along(ax, f.ndim, index)]

    def coef(c: np.ndarray) -> np.ndarray:
        return np.reshape(c, tuple(-1 if i == ax else 1 for i in range(f.ndim)))

    if np.all(dx == dx[0]):  # numpy's formulas for even spacing, so results match it exactly
        return _even_gradient(at, float(dx[0]), edge_order, ax, n)
    h1, h2 = dx[:-1], dx[1:]
    inner = (
        at(slice(None, -2)) * coef(-h2 / (h1 * (h1 + h2)))
        + at(slice(1, -1)) * coef((h2 - h1) / (h1 * h2))
        + at(slice(2, None)) * coef(h1 / (h2 * (h1 + h2)))
    )
    if edge_order == 1:
        first = (at(slice(1, 2)) - at(slice(0, 1))) / dx[0]
        last = (at(slice(-1, None)) - at(slice(-2, -1))) / dx[-1]
    else:
        a1, a2 = dx[0], dx[1]
        first = (
            at(slice(0, 1)) * (-(2.0 * a1 + a2) / (a1 * (a1 + a2)))
            + at(slice(1, 2)) * ((a1 + a2) / (a1 * a2))
            + at(slice(2, 3)) * (-a1 / (a2 * (a1 + a2)))
        )
        b1, b2 = dx[-2], dx[-1]
        last = (
            at(slice(-3, -2)) * (b2 / (b1 * (b1 + b2)))
            + at(slice(-2, -1)) * (-(b2 + b1) / (b1 * b2))
            + at(slice(-1, None)) * ((2.0 * b2 + b1) / (b2 * (b1 + b2)))
        )
    return np.concatenate([first, inner, last], axis=ax) if n > 2 else np.concatenate([first, last], axis=ax)


def _even_gradient(at: Any, h: float, edge_order: int, ax: int, n: int) -> Any:
    inner = (at(slice(2, None)) - at(slice(None, -2))) / (2.0 * h)
    if edge_order == 1:
        first = (at(slice(1, 2)) - at(slice(0, 1))) / h
        last = (at(slice(-1, None)) - at(slice(-2, -1))) / h
    else:
        first = -1.5 / h * at(slice(0, 1)) + 2.0 / h * at(slice(1, 2)) - 0.5 / h * at(slice(2, 3))
        last = 0.5 / h * at(slice(-3, -2)) - 2.0 / h * at(slice(-2, -1)) + 1.5 / h * at(slice(-1, None))
    return np.concatenate([first, inner, last], axis=ax) if n > 2 else np.concatenate([first, last], axis=ax)


@implements(np.ediff1d)
def _np_ediff1d(ary: Any, to_end: Any = None, to_begin: Any = None) -> Any:
    diffs = np.diff(np.ravel(ary))
    # numpy casts to_begin and to_end to the differences' type
    parts = [convert(np.ravel(as_operand(to_begin)), diffs.dtype)] if to_begin is not None else []
    parts.append(diffs)
    if to_end is not None:
        parts.append(convert(np.ravel(as_operand(to_end)), diffs.dtype))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


@implements(np.interp)
def _np_interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None) -> Any:
    """Piecewise-linear interpolation; ``xp`` must be increasing, as numpy assumes."""
    if period is not None:
        raise UnsupportedOperationError("traced np.interp does not support period")
    xp_c = None if _is_traced(xp) else np.asarray(xp, dtype=float)
    fp = as_operand(fp).astype(np.float64)  # numpy interpolates in float64
    if xp_c is not None and (xp_c.ndim != 1 or fp.shape != xp_c.shape):
        raise ValueError("fp and xp are not of the same length.")
    if xp_c is not None and len(xp_c) >= 2 and np.any(np.diff(xp_c) < 0):
        # numpy returns nonsense here, silently (user testing: a forcing table stored newest first)
        raise ValueError("np.interp needs increasing xp; for a table stored in decreasing order, pass xp[::-1] and fp[::-1]")
    if xp_c is not None and not _is_traced(x):
        left = fp[0] if left is None else left
        right = fp[-1] if right is None else right
        # Constant positions: each value is a fixed blend of two neighbours of fp.
        xc = np.asarray(x, dtype=float)
        j = np.clip(np.searchsorted(xp_c, xc, side="right") - 1, 0, max(len(xp_c) - 2, 0))
        span = np.diff(xp_c)[j] if len(xp_c) > 1 else np.ones_like(xc)
        w = (xc - xp_c[j]) / np.where(span == 0.0, 1.0, span)
        inside = fp[j] + (np.take(fp, np.minimum(j + 1, len(xp_c) - 1)) - fp[j]) * w
        return np.where(xc < xp_c[0], left, np.where(xc > xp_c[-1], right, np.where(xc == xp_c[-1], fp[-1], inside)))
    # Traced positions: each finds its segment by binary search.
    # Continuous unless left or right differ from the ends of fp.
    with composition(CONTINUOUS) if left is None and right is None else contextlib.nullcontext():
        # numpy interpolates in float64, whatever the types of x and xp
        x64, xp64 = (as_operand(v).astype(np.float64) for v in (x, xp))
        return _interp_traced(x64, xp64, fp, fp[0] if left is None else left, fp[-1] if right is None else right)


def _interp_traced(x: Any, xp: Any, fp: Any, left: Any, right: Any) -> Any:
    n = xp.shape[0]
    if n < 2:
        y = np.broadcast_to(fp[0], x.shape)  # inside a one-point table is the point itself
    else:
        # The segment whose left end is the last knot at or below x, as numpy's binary search finds it.
        j = np.clip(searchsorted(xp, x, side="right") - 1, 0, n - 2)
        span = xp[1:] - xp[:-1]
        slope = (fp[1:] - fp[:-1]) / np.where(np.equal(span, 0.0), 1.0, span)
        y = take(fp, j) + take(slope, j) * (x - take(xp, j))
    y = np.where(np.less(x, xp[0]), left, np.where(np.greater(x, xp[-1]), right, np.where(np.equal(x, xp[-1]), fp[-1], y)))
    if n < 2:
        return y  # numpy's one-point table gives fp[0] at NaN too (neither below nor above it)
    return np.where(np.isnan(x), x, y)  # NaN sorts last, past every segment: numpy's result is NaN


# --- shapes ---------------------------------------------------------------------------
@implements(np.atleast_2d)
def _np_atleast_2d(*arys: Any) -> Any:
    out = [np.reshape(x, (1,) * (2 - x.ndim) + x.shape) if x.ndim < 2 else x for x in map(as_operand, arys)]
    return out[0] if len(out) == 1 else tuple(out)


@implements(np.atleast_3d)
def _np_atleast_3d(*arys: Any) -> Any:
    shapes = {0: lambda s: (1, 1, 1), 1: lambda s: (1, s[0], 1), 2: lambda s: s + (1,)}
    out = [np.reshape(x, shapes[x.ndim](x.shape)) if x.ndim < 3 else x for x in map(as_operand, arys)]
    return out[0] if len(out) == 1 else tuple(out)


@implements(np.column_stack)
def _np_column_stack(tup: Sequence[Any]) -> Any:
    cols = [as_operand(x) for x in tup]
    return np.concatenate([np.reshape(c, (-1, 1)) if c.ndim < 2 else c for c in cols], axis=1)


@implements(np.dstack)
def _np_dstack(tup: Sequence[Any]) -> Any:
    return np.concatenate([_np_atleast_3d(x) for x in tup], axis=2)


@implements(np.append)
def _np_append(arr: Any, values: Any, axis: Any = None) -> Any:
    if axis is None:
        return np.concatenate([np.ravel(arr), np.ravel(values)])
    return np.concatenate([arr, values], axis=axis)


@implements(np.delete)
def _np_delete(arr: Any, obj: Any, axis: Any = None) -> Any:
    if _is_traced(obj):
        raise UnsupportedOperationError("traced np.delete needs constant indices")
    arr = as_operand(arr)
    if axis is None:
        arr, axis = np.ravel(arr), 0
    axis = normalize_axis(axis, arr.ndim)
    keep = np.delete(np.arange(arr.shape[axis]), obj)
    return np.take(arr, keep, axis=axis)


@implements(np.meshgrid)
def _np_meshgrid(*xi: Any, copy: bool = True, sparse: bool = False, indexing: str = "xy") -> Any:
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    xs = [np.ravel(x) for x in xi]
    ndim = len(xs)
    shapes = [tuple(-1 if i == k else 1 for i in range(ndim)) for k in range(ndim)]
    if indexing == "xy" and ndim > 1:
        shapes[0] = (1, -1) + (1,) * (ndim - 2)
        shapes[1] = (-1, 1) + (1,) * (ndim - 2)
    grids = [np.reshape(x, s) for x, s in zip(xs, shapes)]
    if not sparse:
        full = np.broadcast_shapes(*(g.shape for g in grids))
        grids = [np.broadcast_to(g, full) for g in grids]
    return tuple(np.copy(g) for g in grids) if copy else tuple(grids)


def _split_points(n: int, sections: Any, equal: bool) -> list[int]:
    if isinstance(sections, (int, np.integer)):
        k = int(sections)
        if k <= 0:
            raise ValueError("number sections must be larger than 0.")
        if equal and n % k:
            raise ValueError("array split does not result in an equal division")
        each, extra = divmod(n, k)
        sizes = [each + 1] * extra + [each] * (k - extra)
        return list(np.cumsum(sizes)[:-1])
    return [operator.index(i) for i in sections]


def _split(ary: Any, sections: Any, axis: int, equal: bool) -> list[Any]:
    ary = as_operand(ary)
    axis = normalize_axis(axis, ary.ndim)
    bounds = [0, *_split_points(ary.shape[axis], sections, equal), ary.shape[axis]]
    return [ary[_along(axis, ary.ndim, slice(lo, hi))] for lo, hi in zip(bounds[:-1], bounds[1:])]


@implements(np.split)
def _np_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> Any:
    return _split(ary, indices_or_sections, axis, equal=True)


@implements(np.array_split)
def _np_array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> Any:
    return _split(ary, indices_or_sections, axis, equal=False)


@implements(np.hsplit)
def _np_hsplit(ary: Any, indices_or_sections: Any) -> Any:
    ary = as_operand(ary)
    return _split(ary, indices_or_sections, 1 if ary.ndim > 1 else 0, equal=True)


@implements(np.vsplit)
def _np_vsplit(ary: Any, indices_or_sections: Any) -> Any:
    ary = as_operand(ary)
    if ary.ndim < 2:
        raise ValueError("vsplit only works on arrays of 2 or more dimensions")
    return _split(ary, indices_or_sections, 0, equal=True)


@implements(np.pad)
def _np_pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> Any:
    """``constant``, ``edge``, ``wrap``, ``reflect`` and ``symmetric`` padding, axis by axis."""
    x = as_operand(array)
    if isinstance(pad_width, dict):  # numpy 2's {axis: width}: other axes are not padded
        per_axis = np.zeros((x.ndim, 2), dtype=np.int64)
        for axis, width in pad_width.items():
            per_axis[normalize_axis(axis, x.ndim)] = np.broadcast_to(np.asarray(width, dtype=np.int64), (2,))
        pad_width = per_axis
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    if np.any(widths < 0):
        raise ValueError("index can't contain negative values")
    extra = set(kwargs) - ({"constant_values"} if mode == "constant" else set())
    if mode not in ("constant", "edge", "wrap", "reflect", "symmetric") or extra:
        raise UnsupportedOperationError(
            f"traced np.pad supports mode 'constant' (scalar constant_values), 'edge', 'wrap', "
            f"'reflect' and 'symmetric' without further options; got mode={mode!r} with {sorted(kwargs)}"
        )
    value = kwargs.get("constant_values", 0)
    if np.ndim(value) != 0:
        raise UnsupportedOperationError("traced np.pad supports one scalar constant_values")
    for ax in range(x.ndim):
        before, after = (int(w) for w in widths[ax])
        n = x.shape[ax]
        if mode in ("wrap", "reflect", "symmetric", "edge") and n == 0 and before + after:
            raise ValueError(f"can't extend empty axis {ax} using modes other than 'constant'")
        limit = n - 1 if mode == "reflect" else n
        if mode in ("wrap", "reflect", "symmetric") and max(before, after) > limit:
            raise UnsupportedOperationError(f"traced np.pad with mode {mode!r} pads at most {limit} along axis {ax}")

        def side(width: int, at_start: bool) -> Any:
            shape = x.shape[:ax] + (width,) + x.shape[ax + 1 :]
            if mode == "constant":
                return np.broadcast_to(np.asarray(value, dtype=x.dtype), shape)
            if mode == "edge":
                return np.broadcast_to(x[_along(ax, x.ndim, slice(0, 1) if at_start else slice(n - 1, n))], shape)
            if mode == "wrap":
                idx = np.arange(n - width, n) if at_start else np.arange(0, width)
            elif mode == "reflect":
                idx = np.arange(width, 0, -1) if at_start else np.arange(n - 2, n - 2 - width, -1)
            else:  # symmetric
                idx = np.arange(width - 1, -1, -1) if at_start else np.arange(n - 1, n - 1 - width, -1)
            return np.take(x, idx, axis=ax)

        parts = ([side(before, True)] if before else []) + [x] + ([side(after, False)] if after else [])
        x = np.concatenate(parts, axis=ax) if len(parts) > 1 else x
    return x


@implements(np.kron)
def _np_kron(a: Any, b: Any) -> Any:
    a, b = as_operand(a), as_operand(b)
    nd = max(a.ndim, b.ndim)
    sa, sb = (1,) * (nd - a.ndim) + a.shape, (1,) * (nd - b.ndim) + b.shape
    ea = np.reshape(a, tuple(d for n in sa for d in (n, 1)))
    eb = np.reshape(b, tuple(d for n in sb for d in (1, n)))
    return np.reshape(ea * eb, tuple(m * n for m, n in zip(sa, sb)))


@implements(np.block)
def _np_block(arrays: Any) -> Any:
    """numpy's ``block``: nested lists of arrays joined along the last axis at the innermost
    level, the one before it a level up, ... (saddle-point systems ``[[K, C.T], [C, 0]]``)."""
    if isinstance(arrays, tuple):
        raise TypeError(f"{arrays!r} is a tuple. Only lists can be used to arrange blocks, and np.block does not allow implicit conversion from tuple to ndarray.")
    depths: set[int] = set()

    def depth(x: Any, level: int) -> None:
        if isinstance(x, tuple):
            raise TypeError("np.block: only lists can be used to arrange blocks, not tuples")
        if isinstance(x, list):
            if not x:
                raise ValueError("List at arrays" + "[0]" * level + " cannot be empty")
            for y in x:
                depth(y, level + 1)
        else:
            depths.add(level)

    depth(arrays, 0)
    if len(depths) != 1:
        raise ValueError("List depths are mismatched: every block must sit at the same depth of nested lists")
    (levels,) = depths
    leaves: list[Any] = []

    def collect(x: Any) -> None:
        if isinstance(x, list):
            for y in x:
                collect(y)
        else:
            leaves.append(as_operand(x))

    collect(arrays)
    ndim = max([levels] + [leaf.ndim for leaf in leaves])
    it = iter(leaves)

    def join(x: Any, level: int) -> Any:
        if not isinstance(x, list):
            leaf = next(it)
            return np.reshape(leaf, (1,) * (ndim - leaf.ndim) + tuple(leaf.shape))
        parts = [join(y, level + 1) for y in x]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=ndim - (levels - level))

    out = join(arrays, 0)
    return np.copy(out) if levels == 0 else out  # numpy returns a copy


@implements(np.insert)
def _np_insert(arr: Any, obj: Any, values: Any, axis: Any = None) -> Any:
    """numpy's ``insert`` at one constant position (``np.insert(K, 2, row, axis=0)``): a
    concatenation of the two parts and the values between them."""
    arr = as_operand(arr)
    if axis is None:
        arr, axis = np.ravel(arr), 0
    axis = normalize_axis(axis, arr.ndim)
    if isinstance(obj, Tracer) or np.ndim(obj) != 0 or isinstance(obj, (bool, np.bool_)) or np.asarray(obj).dtype.kind not in "iu":
        from pyzygote.primitives.indexing import differentiated_position_note

        raise UnsupportedOperationError(
            f"traced np.insert takes one constant integer position; for several, call it once per position.{differentiated_position_note(obj)}"
        )
    n = arr.shape[axis]
    at = int(obj)
    if not -n <= at <= n:
        raise IndexError(f"index {at} is out of bounds for axis {axis} with size {n}")
    at = at + n if at < 0 else at
    v = convert(as_operand(values), arr.dtype) if as_operand(values).dtype != arr.dtype else as_operand(values)
    # As numpy: the values get the array's rank (leading 1s), their first axis moves to `axis`,
    # whose length is the number inserted, and they broadcast to that slot.
    v = np.reshape(v, (1,) * (arr.ndim - v.ndim) + tuple(v.shape)) if v.ndim < arr.ndim else v
    piece = np.moveaxis(v, 0, axis) if v.ndim else v
    piece = np.broadcast_to(piece, arr.shape[:axis] + (piece.shape[axis],) + arr.shape[axis + 1 :])
    left = arr[(slice(None),) * axis + (slice(0, at),)]
    right = arr[(slice(None),) * axis + (slice(at, None),)]
    return np.concatenate([left, piece, right], axis=axis)


@implements(np.cross)
def _np_cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: Any = None) -> Any:
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = np.moveaxis(as_operand(a), axisa, -1), np.moveaxis(as_operand(b), axisb, -1)
    if a.shape[-1] not in (2, 3) or b.shape[-1] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    if a.shape[-1] == 2 and b.shape[-1] == 2:
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    if a.shape[-1] == 2 or b.shape[-1] == 2:
        raise UnsupportedOperationError("traced np.cross needs two 2-vectors or two 3-vectors")
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    c = np.stack(np.broadcast_arrays(a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), axis=-1)
    return np.moveaxis(c, -1, axisc)


# --- convolution ------------------------------------------------------------------------
# Above this many entries, the matrix of shifted copies of the longer signal (and the positions
# it is gathered from, which the program keeps) costs more memory than a sum of shifted slices
# costs equations.
_SHIFTED_COPIES_AT_MOST = 1 << 22
# numpy's codes for the modes, which it also takes
_MODES = {0: "valid", 1: "same", 2: "full"}


def _full_convolution(a: Any, v: Any) -> Any:
    """The full convolution of the 1-D arrays ``a`` and ``v``, ``len(v) <= len(a)``: entry ``k``
    is the sum over ``i`` of ``v[i] * a[k - i]``, ``a`` taken as 0 outside its range."""
    n, m = a.shape[0], v.shape[0]
    padded = np.pad(a, m - 1) if m > 1 else a
    if m <= 8 or (n + m - 1) * m > _SHIFTED_COPIES_AT_MOST:
        terms = [v[i] * padded[m - 1 - i : m - 1 - i + n + m - 1] for i in range(m)]
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total
    # Row k holds padded[k + m - 1 - i] for i = 0 .. m - 1: one gather and one product.
    shifts = np.arange(n + m - 1)[:, None] + np.arange(m - 1, -1, -1)[None, :]
    return np.matmul(padded[shifts], v)


def _one_d(x: Any, name: str, what: str) -> Any:
    x = as_operand(x)
    x = np.reshape(x, (1,)) if x.ndim == 0 else x
    if x.ndim != 1:
        raise ValueError(f"numpy.{name}: {what} must be 1-D, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} cannot be empty")  # numpy's
    return x


def _convolve_mode(a: Any, v: Any, mode: str, name: str) -> Any:
    """numpy's convolution of 1-D ``a`` and ``v`` (either may be the longer) in ``mode``."""
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool):
        mode = _MODES.get(int(mode), mode)
    if mode not in ("full", "same", "valid"):
        raise ValueError(f"numpy.{name}: mode must be 'full', 'same' or 'valid', got {mode!r}")
    if v.shape[0] > a.shape[0]:  # numpy swaps them: convolution is symmetric
        a, v = v, a
    n, m = a.shape[0], v.shape[0]
    full = _full_convolution(a, v)
    if mode == "full":
        return full
    if mode == "same":
        start = (m - 1) // 2
        return full[start : start + n]
    return full[m - 1 : n]


@implements(np.convolve)
def _np_convolve(a: Any, v: Any, mode: str = "full") -> Any:
    """numpy's ``convolve``, a sum of shifted copies (no FFT), so its derivatives are
    convolutions again: with respect to the signal, the correlation with the kernel."""
    return _convolve_mode(_one_d(a, "convolve", "a"), _one_d(v, "convolve", "v"), mode, "convolve")


@implements(np.correlate)
def _np_correlate(a: Any, v: Any, mode: str = "valid") -> Any:
    a, v = _one_d(a, "correlate", "a"), _one_d(v, "correlate", "v")
    if a.shape[0] >= v.shape[0]:
        return _convolve_mode(a, v[::-1], mode, "correlate")
    # numpy correlates the longer with the shorter and reverses the result
    return _convolve_mode(v, a[::-1], mode, "correlate")[::-1]

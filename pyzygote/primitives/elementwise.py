"""Elementwise arithmetic and transcendental functions, and their numpy ufuncs.

Operands of an elementwise primitive have the output's shape or shape ``()``
(a scalar broadcasts alike in every engine); any other broadcasting was made
explicit by the handler.  Each primitive's derivative is one line of the
tables below, one entry per argument, in the style of HIPS autograd.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(np.sin(x) * 2.0), np.zeros(2))[0]
array([2., 2.])
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, Undefined, add_any, defjvp
from pyzygote.tracer import Tracer, as_operand, is_weak
from pyzygote.transforms.batch import elementwise_batch
from pyzygote.julia import codegen as jl

__all__ = ["elementwise_aval", "ufunc_handler", "unbroadcast", "ELEMENTWISE"]

ELEMENTWISE: dict[str, Primitive] = {}


def elementwise_aval(*xs: Aval, out_dtype: Any = None) -> Aval:
    shape: tuple[int, ...] = ()
    for x in xs:  # a plain loop: every equation of every trace comes through here
        if x.shape and x.shape != shape:
            if shape:
                raise ValueError(f"elementwise operands must share a shape or be scalars, got {({x.shape for x in xs if x.shape})}")
            shape = x.shape
    if out_dtype is None and xs[0].shape == shape:
        return xs[0]
    return Aval(shape, out_dtype or xs[0].dtype)


def unbroadcast(ct: Any, aval: Aval) -> Any:
    """Cotangent of a scalar operand that was broadcast against an array."""
    if aval.shape == () and shape_of(ct) != ():
        return reduce_sum(ct, tuple(range(len(shape_of(ct)))))
    return ct


def _like(g: Any, ans: Any) -> Any:
    """The tangent ``g`` of a scalar operand, broadcast to the output's shape."""
    shape = shape_of(ans)
    return g if shape_of(g) == shape else broadcast_in_dim(g, shape, ())


def _dtype_arg(x: Any) -> Any:
    """The argument numpy's type resolution sees: Python scalars stay weak."""
    if isinstance(x, bool):
        return np.dtype(np.bool_)
    if isinstance(x, (int, float, complex)) and not isinstance(x, np.generic):
        return type(x)
    if is_weak(x):  # a traced Python float argument
        return float
    return as_operand(x).dtype


def ufunc_handler(ufunc: np.ufunc, prim: Primitive) -> Callable[..., Any]:
    """numpy's dtype and broadcasting rules for one ufunc, made explicit."""
    # Tracing and every derivative rule come through here once per operation, so numpy's type
    # resolution is asked once per combination of operand types.
    resolved: dict[tuple[Any, ...], tuple[np.dtype, ...]] = {}

    def handler(*args: Any, dtype: Any = None, **kwargs: Any) -> Any:
        if kwargs:
            unexpected = {k: v for k, v in kwargs.items() if k not in ("casting", "order", "subok")}
            if unexpected or kwargs.get("casting", "same_kind") != "same_kind":
                raise UnsupportedOperationError(
                    f"numpy.{ufunc.__name__} keywords {sorted(kwargs)} are not supported while tracing"
                )
        if len(args) != ufunc.nin:
            raise TypeError(f"numpy.{ufunc.__name__} takes {ufunc.nin} arguments, got {len(args)}")
        key = tuple(_dtype_arg(a) for a in args) + (None if dtype is None else np.dtype(dtype),)
        dtypes = resolved.get(key)
        if dtypes is None:
            # dtype= fixes the output's type, and so the loop's (np.add(a32, b32, dtype=np.float64))
            signature = {} if dtype is None else {"signature": (None,) * ufunc.nin + (np.dtype(dtype),)}
            dtypes = resolved[key] = ufunc.resolve_dtypes(key[:-1] + (None,), **signature)
        for i, (a, d) in enumerate(zip(args, dtypes)):
            if type(a) is int and d.kind in "iu" and not _fits(a, d):
                return _out_of_bounds(ufunc, i, a, d, args)
        xs = [convert(as_operand(a), d) for a, d in zip(args, dtypes)]
        shapes = {shape_of(x) for x in xs}
        shapes.discard(())
        if len(shapes) <= 1:  # equal shapes and scalars: nothing to make explicit
            return prim.bind(*xs)
        try:
            np.broadcast_shapes(*(x.shape for x in xs))
        except ValueError:  # numpy's own message for ufuncs
            shapes_text = " ".join(str(x.shape) for x in xs)
            raise ValueError(f"operands could not be broadcast together with shapes {shapes_text} ") from None
        return prim.bind(*broadcast_operands(*xs))

    return handler


def _fits(value: int, dtype: np.dtype) -> bool:
    info = np.iinfo(dtype)
    return bool(info.min <= value <= info.max)


# A comparison of x with a Python integer beyond x's dtype, as the same comparison with that
# dtype's max (or min) as the bound: x < 2**70 is x <= max (all True), x == 2**70 is x > max (all
# False).  Exact, as numpy's, where comparing in float64 is not (int64 2**63 - 1 == 2**63 was True).
_ABOVE_MAX = {np.less: np.less_equal, np.less_equal: np.less_equal, np.not_equal: np.less_equal,
              np.greater: np.greater, np.greater_equal: np.greater, np.equal: np.greater}  # fmt: skip
_BELOW_MIN = {np.less: np.less, np.less_equal: np.less, np.equal: np.less,
              np.greater: np.greater_equal, np.greater_equal: np.greater_equal, np.not_equal: np.greater_equal}  # fmt: skip
_SWAPPED = {np.less: np.greater, np.less_equal: np.greater_equal, np.greater: np.less,
            np.greater_equal: np.less_equal, np.equal: np.equal, np.not_equal: np.not_equal}  # fmt: skip


def _out_of_bounds(ufunc: np.ufunc, at: int, value: int, dtype: np.dtype, args: Sequence[Any]) -> Any:
    """A Python integer that an integer operand's dtype cannot hold (``uint8_array + 300``,
    ``uint8_array > -1``) was converted to it, wrapping silently (review: ``+ 300`` added 44,
    ``> -1`` was False).  numpy raises its OverflowError, except in comparisons, which compare the
    values: every entry of the other operand is below (or above) ``value``."""
    if ufunc not in _SWAPPED:
        raise OverflowError(f"Python integer {value} out of bounds for {dtype}")
    op = ufunc if at == 1 else _SWAPPED[ufunc]  # as x op value
    info = np.iinfo(dtype)
    if value > info.max:
        return _ABOVE_MAX[op](args[1 - at], int(info.max))
    return _BELOW_MIN[op](args[1 - at], int(info.min))


def _define(name: str, ufunc: Any, *jvps: Any, out_dtype: Any = None) -> Primitive:
    prim = Primitive(name)
    prim.def_abstract_eval(lambda *xs: elementwise_aval(*xs, out_dtype=out_dtype))
    prim.def_impl(ufunc)
    if jvps:
        defjvp(prim, *jvps)
        prim.zero_derivative = all(rule is _zero for rule in jvps)
    if isinstance(ufunc, np.ufunc):
        implements(ufunc)(ufunc_handler(ufunc, prim))
        prim.batch = elementwise_batch(ufunc)
    ELEMENTWISE[name] = prim
    return prim


def _zero(*_: Any, **__: Any) -> None:
    """Rule of a piecewise-constant function: no tangent."""
    return None


add_any.batch = elementwise_batch(np.add)

_LN2, _LN10 = float(np.log(2.0)), float(np.log(10.0))  # weak Python floats keep float32 float32

# --- unary: d f(x) = rule(g, ans, x) ---------------------------------------
sin_p = _define("sin", np.sin, lambda g, ans, x: g * np.cos(x))
cos_p = _define("cos", np.cos, lambda g, ans, x: g * -np.sin(x))
tan_p = _define("tan", np.tan, lambda g, ans, x: g * (1.0 + ans * ans))
asin_p = _define("asin", np.arcsin, lambda g, ans, x: g / np.sqrt(1.0 - x * x))
acos_p = _define("acos", np.arccos, lambda g, ans, x: g / -np.sqrt(1.0 - x * x))
atan_p = _define("atan", np.arctan, lambda g, ans, x: g / (1.0 + x * x))
sinh_p = _define("sinh", np.sinh, lambda g, ans, x: g * np.cosh(x))
cosh_p = _define("cosh", np.cosh, lambda g, ans, x: g * np.sinh(x))
tanh_p = _define("tanh", np.tanh, lambda g, ans, x: g * (1.0 - ans * ans))
asinh_p = _define("asinh", np.arcsinh, lambda g, ans, x: g / np.sqrt(x * x + 1.0))
acosh_p = _define("acosh", np.arccosh, lambda g, ans, x: g / (np.sqrt(x - 1.0) * np.sqrt(x + 1.0)))
atanh_p = _define("atanh", np.arctanh, lambda g, ans, x: g / (1.0 - x * x))
exp_p = _define("exp", np.exp, lambda g, ans, x: g * ans)
exp2_p = _define("exp2", np.exp2, lambda g, ans, x: g * (ans * _LN2))
expm1_p = _define("expm1", np.expm1, lambda g, ans, x: g * (ans + 1.0))
log_p = _define("log", np.log, lambda g, ans, x: g / x)
log2_p = _define("log2", np.log2, lambda g, ans, x: g / (x * _LN2))
log10_p = _define("log10", np.log10, lambda g, ans, x: g / (x * _LN10))
log1p_p = _define("log1p", np.log1p, lambda g, ans, x: g / (x + 1.0))
sqrt_p = _define("sqrt", np.sqrt, lambda g, ans, x: g / (ans * 2.0))
cbrt_p = _define("cbrt", np.cbrt, lambda g, ans, x: g / (ans * ans * 3.0))
abs_p = _define("abs", np.absolute, lambda g, ans, x: g * np.sign(x))
sign_p = _define("sign", np.sign, _zero)
floor_p = _define("floor", np.floor, _zero)
ceil_p = _define("ceil", np.ceil, _zero)
round_p = _define("round", np.rint, _zero)


# --- binary: one rule per argument ------------------------------------------
_TIE_WEIGHTS: dict[np.dtype, tuple[np.ndarray, ...]] = {}


def _balanced(x: Any, y: Any) -> Any:
    """1 where x wins, 1/2 at ties, 0 where y wins: ties share the derivative."""
    # The primitives themselves, and weights made once: a loop's clip and maximum at every step
    # made this a third of the time its derivative program took to build.
    from pyzygote.primitives.logic import COMPARISONS, select

    dt = np.result_type(x.dtype, y.dtype)
    weights = _TIE_WEIGHTS.get(dt)
    if weights is None:
        weights = _TIE_WEIGHTS[dt] = tuple(np.asarray(v, dt) for v in (1.0, 0.5, 0.0))
        for w in weights:
            w.setflags(write=False)
    one, half, zero = weights
    if x.dtype != y.dtype:  # numpy's type resolution decides how they compare
        return select(np.greater(x, y), one, select(np.equal(x, y), half, zero))
    return select(COMPARISONS["gt"].bind(x, y), one, select(COMPARISONS["eq"].bind(x, y), half, zero))


def _safe_log(x: Any) -> Any:
    positive = np.greater(x, 0.0)
    return np.where(positive, np.log(np.where(positive, x, 1.0)), 0.0)


mul_p = _define("mul", np.multiply, lambda g, ans, x, y: g * y, lambda g, ans, x, y: x * g)
div_p = _define("div", np.true_divide, lambda g, ans, x, y: g / y, lambda g, ans, x, y: g * (-ans / y))
def _pow_base_rule(g: Any, ans: Any, x: Any, y: Any) -> Any:
    if not isinstance(y, Tracer) and np.all(np.not_equal(y, 0.0)):
        # A constant exponent, as in nearly every x**2: the guard below is known to be false, and
        # x**1.0 is x. Loops square their state at every step, so these equations add up.
        return g * (y * x if np.all(np.equal(y, 2.0)) else y * x ** (y - 1.0))
    # y = 0 gives 0 rather than 0 * x**-1 (NaN at x = 0): x**0 and second derivatives of x**1
    return g * np.where(np.equal(y, 0.0), 0.0, y * x ** (y - 1.0))


pow_p = _define(
    "pow",
    np.power,
    _pow_base_rule,
    lambda g, ans, x, y: g * (_safe_log(x) * ans),
)
max_p = _define("max", np.maximum, lambda g, ans, x, y: g * _balanced(x, y), lambda g, ans, x, y: g * _balanced(y, x))
min_p = _define("min", np.minimum, lambda g, ans, x, y: g * _balanced(y, x), lambda g, ans, x, y: g * _balanced(x, y))
atan2_p = _define(
    "atan2",
    np.arctan2,
    lambda g, ans, y, x: g * (x / (x * x + y * y)),
    lambda g, ans, y, x: g * (-y / (x * x + y * y)),
)
hypot_p = _define("hypot", np.hypot, lambda g, ans, x, y: g * (x / ans), lambda g, ans, x, y: g * (y / ans))
rem_p = _define("rem", np.remainder, lambda g, ans, x, y: _like(g, ans), lambda g, ans, x, y: g * -np.floor_divide(x, y))
floordiv_p = _define("floordiv", np.floor_divide, _zero, _zero)


def _nan_aware(winner: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """fmax/fmin rules: the non-NaN operand is the winner when the other is NaN."""

    def rule(g: Any, ans: Any, x: Any, y: Any) -> Any:
        return g * np.where(np.isnan(y), 1.0, np.where(np.isnan(x), 0.0, winner(x, y)))

    return rule


fmax_p = _define(
    "fmax", np.fmax, _nan_aware(_balanced), lambda g, ans, x, y: _nan_aware(_balanced)(g, ans, y, x)
)
fmin_p = _define(
    "fmin",
    np.fmin,
    _nan_aware(lambda x, y: _balanced(y, x)),
    lambda g, ans, x, y: _nan_aware(lambda a, b: _balanced(b, a))(g, ans, y, x),
)


# --- linear ones carry transposes (they appear in tangent programs) ---------
def _linear(name: str, ufunc: Any, transpose: Callable[..., Any], *jvps: Any) -> Primitive:
    prim = _define(name, ufunc, *jvps)
    prim.def_transpose(transpose)
    return prim


neg_p = _linear("neg", np.negative, lambda ct, x: (-ct,), lambda g, ans, x: -g)
add_p = _linear(
    "add",
    np.add,
    lambda ct, x, y: tuple(unbroadcast(ct, a.aval) if isinstance(a, Undefined) else None for a in (x, y)),
    lambda g, ans, x, y: _like(g, ans),
    lambda g, ans, x, y: _like(g, ans),
)
sub_p = _linear(
    "sub",
    np.subtract,
    lambda ct, x, y: (
        unbroadcast(ct, x.aval) if isinstance(x, Undefined) else None,
        unbroadcast(-ct, y.aval) if isinstance(y, Undefined) else None,
    ),
    lambda g, ans, x, y: _like(g, ans),
    lambda g, ans, x, y: _like(-g, ans),
)


@mul_p.def_transpose
def _mul_transpose(ct: Any, x: Any, y: Any) -> tuple[Any, Any]:
    if isinstance(x, Undefined):
        return unbroadcast(ct * y, x.aval), None
    return None, unbroadcast(x * ct, y.aval)


@div_p.def_transpose
def _div_transpose(ct: Any, x: Any, y: Any) -> tuple[Any, None]:
    if isinstance(y, Undefined):
        raise TypeError("div is linear only in its numerator")
    return unbroadcast(ct / y, x.aval), None


# --- Julia rules: dot-broadcasting works on arrays and on scalars alike ------------
_JULIA_TEMPLATES = {
    "atan": "atan.({0})", "sinh": "sinh.({0})", "cosh": "cosh.({0})",
    "tanh": "tanh.({0})", "asinh": "asinh.({0})", "exp": "exp.({0})", "exp2": "exp2.({0})", "expm1": "expm1.({0})",
    "cbrt": "cbrt.({0})", "abs": "PyZygote.absolute.({0})", "sign": "PyZygote.sign.({0})",
    "floor": "floor.({0})", "ceil": "ceil.({0})", "round": "round.({0})",  # ties to even, as rint
    "neg": ".-{0}", "sub": "{0} .- {1}", "div": "{0} ./ {1}",
    "max": "max.({0}, {1})", "min": "min.({0}, {1})",  # NaN propagates, as in numpy
    "fmax": "PyZygote.fmax.({0}, {1})", "fmin": "PyZygote.fmin.({0}, {1})",
    "atan2": "atan.({0}, {1})", "hypot": "hypot.({0}, {1})",
    # numpy's remainder has the sign of the divisor, as mod; PyZygote's keeps numpy's derivatives
    # where x / y is an integer (DiffRules' and ChainRules' are NaN there)
    "rem": "PyZygote.remainder.({0}, {1})",
    "floordiv": "fld.({0}, {1})",
}  # fmt: skip
# Outside the real domain numpy gives NaN where Julia throws: PyZygote's nan_* helpers
# (Julia's sin, cos and tan throw at +-inf).
_JULIA_TEMPLATES.update({
    "sin": "PyZygote.nan_sin.({0})", "cos": "PyZygote.nan_cos.({0})", "tan": "PyZygote.nan_tan.({0})",
    "log": "PyZygote.nan_log.({0})", "log2": "PyZygote.nan_log2.({0})", "log10": "PyZygote.nan_log10.({0})",
    "log1p": "PyZygote.nan_log1p.({0})", "sqrt": "PyZygote.nan_sqrt.({0})", "asin": "PyZygote.nan_asin.({0})",
    "acos": "PyZygote.nan_acos.({0})", "acosh": "PyZygote.nan_acosh.({0})", "atanh": "PyZygote.nan_atanh.({0})",
})  # fmt: skip


def _julia_rule(template: str) -> Callable[..., str]:
    return lambda e, *xs: template.format(*xs)


def _bool_or(template: str, bool_template: str) -> Callable[..., str]:
    """numpy's add and multiply on booleans are logical or / and."""
    return lambda e, x, y: (bool_template if e.out.dtype == np.bool_ else template).format(x, y)


@pow_p.def_julia
def _pow_julia(e: Any, x: Any, y: Any) -> str:
    """``x.^y``; an integral literal exponent is written as an Int literal, which Julia
    lowers to ``literal_pow`` (so ``x.^2`` is exact and fine for negative ``x``).
    Otherwise ``PyZygote.nan_pow``: a negative base with a non-integral exponent is NaN,
    as in numpy, where Julia's ``^`` throws a DomainError."""
    base = f"({x})" if x.literal is not None and not x.startswith("(") else x
    if y.literal is not None and y.aval.dtype.kind == "f":
        p = float(y.literal)
        if p == 0 and x.aval.dtype == e.out.dtype:  # x.^0's rule in Zygote is 0 * x.^-1, NaN at 0
            return f"one.({x})"
        if np.isfinite(p) and p == int(p) and abs(p) <= 2**31:
            return f"{base}.^{jl.julia_literal(int(p), np.int64)}"
    if e.out.dtype.kind != "f":
        return f"{base}.^{y}"
    return f"PyZygote.nan_pow.({x}, {y})"


for _name, _template in _JULIA_TEMPLATES.items():
    ELEMENTWISE[_name].def_julia(_julia_rule(_template))
for _name, _helper in (("rem", "int_mod"), ("floordiv", "int_fld")):  # integers: 0 for a zero divisor, as numpy
    ELEMENTWISE[_name].def_julia(
        lambda e, x, y, _t=_JULIA_TEMPLATES[_name], _h=_helper: (
            f"PyZygote.{_h}.({x}, {y})" if e.out.dtype.kind in "iu" else _t.format(x, y)
        )
    )
add_p.def_julia(_bool_or("{0} .+ {1}", "{0} .| {1}"))
mul_p.def_julia(_bool_or("{0} .* {1}", "{0} .& {1}"))


# --- numpy functions that are compositions ---------------------------------
@implements(np.square)
def _np_square(x: Any, **kw: Any) -> Any:
    return np.multiply(x, x, **kw)


@implements(np.reciprocal)
def _np_reciprocal(x: Any, **kw: Any) -> Any:
    return np.true_divide(1.0, x, **kw)


@implements(np.positive)
def _np_positive(x: Any) -> Any:
    return as_operand(x)


@implements(np.fabs)
def _np_fabs(x: Any) -> Any:
    return np.absolute(x)


@implements(np.trunc, np.fix)
def _np_trunc(x: Any, **kw: Any) -> Any:
    """Rounding toward zero: ``ceil`` below zero, ``floor`` above (derivative zero, as both)."""
    x = as_operand(x)
    return np.where(np.less(x, 0), np.ceil(x, **kw), np.floor(x, **kw))


@implements(np.signbit)
def _np_signbit(x: Any) -> Any:
    """``x < 0``, and ``True`` at ``-0.0``: ``atan2(-0.0, -1) = -pi`` is the one comparison IEEE
    arithmetic offers that tells the zeros apart (a NaN's sign bit is not read)."""
    x = as_operand(x)
    if x.dtype.kind != "f":
        return np.less(x, 0)
    return np.where(np.equal(x, 0), np.less(np.arctan2(x, -1.0), 0), np.less(x, 0))


@implements(np.copysign)
def _np_copysign(x: Any, y: Any, **kw: Any) -> Any:
    """``|x|`` with the sign of ``y``, a zero ``y``'s too (a traced NaN's sign is not read)."""
    zero = np.zeros_like(y) if isinstance(y, (np.ndarray, np.generic, Tracer)) else 0.0  # a Python float stays weak
    magnitude = np.absolute(np.add(x, zero))  # numpy's result dtype and shape for x and y
    one = np.ones((), magnitude.dtype)
    return np.multiply(magnitude, np.where(np.signbit(y), -one, one), **kw)


@implements(np.float_power)
def _np_float_power(x: Any, y: Any) -> Any:
    return np.power(convert(as_operand(x), np.float64), y)


@implements(np.round, np.around)
def _np_round(a: Any, decimals: int = 0, out: Any = None) -> Any:
    a = as_operand(a)
    if a.dtype.kind in "iu":  # numpy keeps integers integers (review: they were made float64)
        if decimals >= 0:
            return a
        scale = 10.0**-decimals  # to a multiple of 10**-decimals, in floats, cast back as numpy does
        return convert(np.rint(a / scale) * scale, a.dtype)
    if decimals:
        scale = 10.0**decimals
        return np.rint(as_operand(a) * scale) / scale
    return np.rint(a)


@implements(np.clip)
def _np_clip(a: Any, a_min: Any = None, a_max: Any = None, out: Any = None, *, min: Any = None, max: Any = None, **kw: Any) -> Any:
    def given(v: Any) -> bool:
        return v is not None and v is not np._NoValue

    lo = a_min if given(a_min) else (min if given(min) else None)
    hi = a_max if given(a_max) else (max if given(max) else None)
    if lo is None and hi is None:
        raise ValueError("One of max or min must be given")
    x = as_operand(a)
    if x.dtype.kind in "iu":  # a Python integer bound beyond x's dtype clips nothing, as numpy's
        info = np.iinfo(x.dtype)
        lo = info.min if type(lo) is int and lo < info.min else lo
        hi = info.max if type(hi) is int and hi > info.max else hi
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x


from pyzygote.primitives.reduction import reduce_sum  # noqa: E402
from pyzygote.primitives.shape import broadcast_in_dim, broadcast_operands, convert, shape_of  # noqa: E402


# --- scalar rules (pyzygote.transforms.scalarize): Python float arithmetic ------------
_SCALAR_TEMPLATES = {
    "sin": "_m.sin({0})", "cos": "_m.cos({0})", "tan": "_m.tan({0})",
    "asin": "_m.asin({0})", "acos": "_m.acos({0})", "atan": "_m.atan({0})",
    "sinh": "_m.sinh({0})", "cosh": "_m.cosh({0})", "tanh": "_m.tanh({0})",
    "asinh": "_m.asinh({0})", "acosh": "_m.acosh({0})", "atanh": "_m.atanh({0})",
    "exp": "_m.exp({0})", "exp2": "_m.pow(2.0, {0})", "expm1": "_m.expm1({0})",
    "log": "_m.log({0})", "log2": "_m.log2({0})", "log10": "_m.log10({0})",
    "log1p": "_m.log1p({0})", "sqrt": "_m.sqrt({0})", "cbrt": "_cbrt({0})",
    "abs": "abs({0})", "sign": "float(_sign({0}))", "floor": "float(_m.floor({0}))",
    "ceil": "float(_m.ceil({0}))", "round": "float(round({0}))",
    "mul": "({0} * {1})", "div": "({0} / {1})", "pow": "_pow({0}, {1})",
    "max": "_max({0}, {1})", "min": "_min({0}, {1})", "fmax": "_fmax({0}, {1})",
    "fmin": "_fmin({0}, {1})", "atan2": "_m.atan2({0}, {1})", "hypot": "_m.hypot({0}, {1})",
    "rem": "({0} % {1})", "floordiv": "({0} // {1})",
    "neg": "(-{0})", "add": "({0} + {1})", "sub": "({0} - {1})",
}  # fmt: skip


def _set_scalar_rules() -> None:
    from pyzygote.transforms.scalarize import elementwise

    for name, template in _SCALAR_TEMPLATES.items():
        ELEMENTWISE[name].scalar = elementwise(template)

    def pow_rule(s: Any, x: list[str], y: list[str]) -> list[str]:
        # Small integer exponents multiply out: faster, and exact like numpy's.
        if len(y) == 1 and y[0] in ("2.0", "3.0", "1.0"):
            k = int(float(y[0]))
            return elementwise("(" + " * ".join(["{0}"] * k) + ")")(s, x)
        return elementwise("_pow({0}, {1})")(s, x, y)

    pow_p.scalar = pow_rule
    # numpy's scalar arithmetic is the ufunc's (same rounding, same warnings) at a tenth of the
    # call: long loops of scalar steps spend most of their time in ufunc dispatch.
    for name in ("add", "sub", "mul", "div", "neg"):
        ELEMENTWISE[name].numpy_scalar = _SCALAR_TEMPLATES[name]
    # np.minimum and np.maximum as comparisons: the second operand on ties (-0.0 against 0.0),
    # the first NaN, no warning, as the ufuncs (a ufunc call on two numpy scalars costs about a
    # microsecond, twenty times these; a bucket model's loop clamps at every step)
    for name, op in (("min", "<"), ("max", ">")):
        ELEMENTWISE[name].numpy_scalar = f"({{0}} if ({{0}} {op} {{1}} or {{0}} != {{0}}) else {{1}})"
        ELEMENTWISE[name].numpy_scalar_picks = True


_set_scalar_rules()

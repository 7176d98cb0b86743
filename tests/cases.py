"""One or more test cases per registered primitive (``pyzygote.primitive.PRIMITIVES``).

A case is a numpy-level function that exercises the primitive when traced,
and an input generator respecting the primitive's domain (away from kinks
and jumps, so central differences are accurate) with random shapes.  A few
primitives have no numpy spelling of their own (``add_any`` only appears in
derivative programs; reverse ``cumsum`` and duplicate-position ``scatter_add``
only in transposes): their cases bind the primitive directly and give a plain
numpy reference ``ref``.

``kind`` is ``"smooth"`` (differentiable: JVP, VJP and dot-product tests),
``"zero"`` (piecewise constant: the derivative is exactly zero) or ``"bool"``
(boolean output: no derivative at all).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.special

from pyzygote.primitive import add_any
from pyzygote.primitives.error_function import erfcx_derivative_p, mills_ratio_p
from pyzygote.primitives.indexing import scatter_add
from pyzygote.primitives.reduction import cumsum_p
from pyzygote.primitives.traced_indexing import put_add

__all__ = ["Case", "CASES", "ALL_CASES", "rng_for"]


@dataclass
class Case:
    label: str
    fn: Callable[..., Any]
    make: Callable[[np.random.Generator], tuple[Any, ...]]
    ref: Callable[..., Any] | None = None  # plain-numpy reference (values, finite differences) when ``fn`` is not one
    kind: str = "smooth"
    eps: float = 1e-6  # central-difference step; linear functions may use 1.0 (exact)
    rtol: float = 1e-6  # derivative vs central differences
    dot_rtol: float = 1e-10  # <ct, J t> vs <J^T ct, t>
    f32_rtol: float = 2e-6  # float32 values vs numpy's float32 values
    value_rtol: float = 1e-13  # float64 values vs the numpy reference
    prim: str = field(default="", init=False)

    @property
    def reference(self) -> Callable[..., Any]:
        return self.ref or self.fn

    @property
    def id(self) -> str:
        return f"{self.prim}-{self.label}"


def rng_for(case: Case, salt: str = "") -> np.random.Generator:
    """A generator seeded by the case id: reproducible, different per case."""
    return np.random.default_rng(zlib.crc32(f"{case.id}{salt}".encode()))


# --- input generators -------------------------------------------------------------
def rshape(rng: np.random.Generator, lo: int = 0, hi: int = 3) -> tuple[int, ...]:
    return tuple(int(n) for n in rng.integers(1, 4, size=rng.integers(lo, hi + 1)))


def uniform(lo: float, hi: float, *, lo_ndim: int = 0, signed: bool = False) -> Callable[..., tuple[Any, ...]]:
    """One array in [lo, hi] (or +-[lo, hi] when ``signed``) of a random shape."""

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        shape = rshape(rng, lo_ndim)
        x = rng.uniform(lo, hi, shape)
        return (x * rng.choice([-1.0, 1.0], shape) if signed else x,)

    return make


def broadcast_pair(rng: np.random.Generator, mode: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    s = rshape(rng, 1, 3)
    if mode == "same":
        other = s
    elif mode == "scalar":
        other = ()
    else:  # a trailing part with some size-1 dimensions
        other = tuple(1 if rng.random() < 0.5 else n for n in s[int(rng.integers(0, len(s))) :])
    return (s, other) if rng.random() < 0.5 else (other, s)


def pair(lo: float, hi: float, lo2: float | None = None, hi2: float | None = None, *, mode: str = "same", signed: bool = False) -> Callable[..., tuple[Any, ...]]:
    lo2 = lo if lo2 is None else lo2
    hi2 = hi if hi2 is None else hi2

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        sx, sy = broadcast_pair(rng, mode)
        x, y = rng.uniform(lo, hi, sx), rng.uniform(lo2, hi2, sy)
        if signed:
            x, y = x * rng.choice([-1.0, 1.0], sx), y * rng.choice([-1.0, 1.0], sy)
        return x, y

    return make


def distinct_pair(mode: str) -> Callable[..., tuple[Any, ...]]:
    """Two arrays whose broadcast elements differ by at least 0.1 (no ties: max/min are smooth)."""

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        sx, sy = broadcast_pair(rng, mode)
        y = rng.uniform(-1.0, 1.0, sy)
        gap = rng.uniform(0.1, 1.0, np.broadcast_shapes(sx, sy)) * rng.choice([-1.0, 1.0], np.broadcast_shapes(sx, sy))
        x = (y + gap) if sx == np.broadcast_shapes(sx, sy) else rng.uniform(2.0, 3.0, sx) * np.sign(rng.uniform(-1, 1))
        return x, y

    return make


def away_from_integers(lo: float, hi: float) -> Callable[..., tuple[Any, ...]]:
    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        shape = rshape(rng)
        return (rng.integers(int(lo), int(hi), shape) + rng.uniform(0.15, 0.85, shape),)

    return make


def rem_pair(mode: str) -> Callable[..., tuple[Any, ...]]:
    """x, y with x / y away from integers (remainder and floor_divide are smooth there)."""

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        sx, sy = broadcast_pair(rng, mode)
        out = np.broadcast_shapes(sx, sy)
        if sx == out:
            y = rng.uniform(0.7, 2.0, sy) * rng.choice([-1.0, 1.0])
            q = rng.integers(-3, 3, out) + rng.uniform(0.2, 0.8, out)
            return q * y, y
        x = np.asarray(rng.uniform(1.0, 3.0, sx))
        q = rng.integers(1, 3, out) + rng.uniform(0.2, 0.8, out)
        return x, x / q

    return make


def matrix(n: int | None = None) -> Callable[[np.random.Generator], np.ndarray]:
    def make(rng: np.random.Generator) -> np.ndarray:
        k = n or int(rng.integers(2, 5))
        return np.eye(k) * 2.0 + 0.4 * rng.standard_normal((k, k))

    return make


def with_nonfinite(rng: np.random.Generator) -> tuple[Any, ...]:
    x = rng.standard_normal(rshape(rng, 1))
    flat = x.reshape(-1)
    for v in (np.nan, np.inf, -np.inf):
        if rng.random() < 0.7:
            flat[int(rng.integers(0, flat.size))] = v
    return (x,)


def with_ties(rng: np.random.Generator) -> tuple[Any, ...]:
    x = rng.standard_normal(rshape(rng, 1))
    y = np.where(rng.random(x.shape) < 0.5, x, rng.standard_normal(x.shape))
    return x, y


def fixed(*shapes: tuple[int, ...]) -> Callable[..., tuple[Any, ...]]:
    return lambda rng: tuple(rng.standard_normal(s) for s in shapes)


# --- the table ------------------------------------------------------------------------
CASES: dict[str, list[Case]] = {}


def case(prim: str, label: str, fn: Callable[..., Any], make: Callable[..., Any], **kw: Any) -> None:
    c = Case(label, fn, make, **kw)
    c.prim = prim
    CASES.setdefault(prim, []).append(c)


def _rand_axis(shape_rank: int, rng: np.random.Generator) -> int:
    return int(rng.integers(-shape_rank, shape_rank))


# add_any: only derivative programs produce it; bind it directly.
case("add_any", "bind", lambda x, y: add_any.bind(x, y), pair(-2, 2), ref=np.add, eps=1.0)

# shape primitives (linear: a unit step is exact)
case("broadcast_in_dim", "broadcast_to", lambda x: np.broadcast_to(x, (2,) + x.shape), uniform(-2, 2), eps=1.0)
case("broadcast_in_dim", "size1", lambda x: np.broadcast_to(x[:, None, :], (2, 3, x.shape[-1])), fixed((2, 4)), eps=1.0)
case("broadcast_in_dim", "add-bcast", lambda x, y: x + y, fixed((2, 1, 3), (4, 1)))
case("reshape", "ravel", lambda x: np.ravel(x), uniform(-2, 2, lo_ndim=2), eps=1.0)
case("reshape", "reshape", lambda x: x.reshape(3, -1), fixed((2, 3, 2)), eps=1.0)
case("reshape", "keepdims", lambda x: np.sum(x, axis=1, keepdims=True), fixed((3, 2, 2)), eps=1.0)
case("transpose", "T", lambda x: x.T, fixed((2, 3, 4)), eps=1.0)
case("transpose", "moveaxis", lambda x: np.moveaxis(x, 0, -1), fixed((2, 3, 4)), eps=1.0)
case("transpose", "swapaxes", lambda x: np.swapaxes(x, -1, 0), fixed((3, 1, 2)), eps=1.0)
case("convert_element_type", "f64-to-f32", lambda x: x.astype(np.float32), uniform(-2, 2), eps=1.0, rtol=1e-6, dot_rtol=1e-6)
case("convert_element_type", "bool-to-f64", lambda x: (x > 0).astype(np.float64) * x, uniform(0.1, 2, signed=True))
case("concatenate", "axis", lambda x, y: np.concatenate([x, y, x], axis=-1), fixed((2, 3), (2, 1)), eps=1.0)
case("concatenate", "block-saddle", lambda x, y: np.block([[x, y], [y.T, np.zeros((1, 1))]]), fixed((2, 2), (2, 1)), eps=1.0)
case("concatenate", "block-mixed-rank", lambda x, y: np.block([[x[0], 1.0], [y[:, 0], 2.0]]), fixed((2, 2), (2, 1)), eps=1.0)
case("concatenate", "stack", lambda x, y: np.stack([x, y], axis=1), fixed((3, 2), (3, 2)), eps=1.0)
case("concatenate", "hstack-scalars", lambda x, y: np.hstack([x, y, x]), fixed((), (2,)), eps=1.0)

# reductions
case("reduce_sum", "all", lambda x: np.sum(x), uniform(-2, 2, lo_ndim=1), eps=1.0)
case("reduce_sum", "axis", lambda x: np.sum(x, axis=-2), fixed((2, 3, 2)), eps=1.0)
case("reduce_sum", "axes-keepdims", lambda x: x.sum(axis=(0, 2), keepdims=True), fixed((2, 3, 2)), eps=1.0)
case("reduce_sum", "mean", lambda x: np.mean(x, axis=0), fixed((4, 3)), eps=1.0)
case("reduce_max", "all", lambda x: np.max(x), uniform(-2, 2, lo_ndim=1))
case("reduce_max", "axis", lambda x: np.max(x, axis=-1, keepdims=True), fixed((3, 4)))
case("reduce_min", "all", lambda x: np.min(x), uniform(-2, 2, lo_ndim=1))
case("reduce_min", "axis", lambda x: x.min(axis=0), fixed((3, 4)))
case("reduce_prod", "all", lambda x: np.prod(x), uniform(0.5, 1.5, lo_ndim=1, signed=True))
case("reduce_prod", "axis", lambda x: np.prod(x, axis=1), lambda rng: (rng.uniform(0.5, 1.5, (2, 3, 2)),))


def _with_zeros(rng: np.random.Generator) -> tuple[Any, ...]:
    """Columns with no zero, one zero and two zeros: np.prod's derivative is exact there too."""
    x = rng.uniform(0.5, 1.5, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))
    x[1, 1] = x[0, 2] = x[2, 2] = x[0, 3] = x[1, 3] = x[2, 3] = 0.0
    return (x,)


case("reduce_prod", "zeros", lambda x: np.prod(x, axis=0), _with_zeros)
case("reduce_prod", "zeros-all", lambda x: np.prod(x[:, :3]), _with_zeros)
# empty axes, reduced and kept (mapslices cannot take a first slice of an empty kept axis)
case("reduce_prod", "empty-kept", lambda x: np.prod(x, axis=1), lambda rng: (rng.uniform(0.5, 1.5, (0, 3)),))
case("reduce_prod", "empty-reduced", lambda x: np.prod(x, axis=1), lambda rng: (rng.uniform(0.5, 1.5, (3, 0)),))
case("reduce_prod", "empty-middle", lambda x: np.prod(x, axis=(0, 2)), lambda rng: (rng.uniform(0.5, 1.5, (2, 0, 3)),))
case("cumsum", "flat", lambda x: np.cumsum(x), uniform(-2, 2), eps=1.0)
case("cumsum", "axis", lambda x: np.cumsum(x, axis=-1), fixed((2, 4)), eps=1.0)
case(
    "cumsum",
    "reverse",
    lambda x: cumsum_p.bind(x, axis=0, reverse=True),
    fixed((4, 2)),
    ref=lambda x: np.flip(np.cumsum(np.flip(x, 0), axis=0), 0),
    eps=1.0,
)

# elementwise unary: domains away from singularities and kinks
_UNARY = {
    "sin": (np.sin, uniform(-3, 3)),
    "cos": (np.cos, uniform(-3, 3)),
    "tan": (np.tan, uniform(-1.2, 1.2)),
    "asin": (np.arcsin, uniform(-0.9, 0.9)),
    "acos": (np.arccos, uniform(-0.9, 0.9)),
    "atan": (np.arctan, uniform(-3, 3)),
    "sinh": (np.sinh, uniform(-2, 2)),
    "cosh": (np.cosh, uniform(-2, 2)),
    "tanh": (np.tanh, uniform(-2, 2)),
    "asinh": (np.arcsinh, uniform(-3, 3)),
    "acosh": (np.arccosh, uniform(1.2, 3)),
    "atanh": (np.arctanh, uniform(-0.9, 0.9)),
    "exp": (np.exp, uniform(-2, 2)),
    "exp2": (np.exp2, uniform(-2, 2)),
    "expm1": (np.expm1, uniform(-2, 2)),
    "log": (np.log, uniform(0.2, 3)),
    "log2": (np.log2, uniform(0.2, 3)),
    "log10": (np.log10, uniform(0.2, 3)),
    "log1p": (np.log1p, uniform(-0.7, 3)),
    "sqrt": (np.sqrt, uniform(0.2, 3)),
    "cbrt": (np.cbrt, uniform(0.2, 3, signed=True)),
    "abs": (np.abs, uniform(0.1, 3, signed=True)),
    "neg": (np.negative, uniform(-3, 3)),
}
for _name, (_f, _make) in _UNARY.items():
    case(_name, _f.__name__, _f, _make)
case("abs", "fabs", np.fabs, uniform(0.1, 3, signed=True))
case("gammaln", "gammaln", lambda x: scipy.special.gammaln(x), uniform(0.3, 5))
case("gammaln", "betaln", lambda x, y: scipy.special.betaln(x, y), pair(0.3, 4, mode="same"))
case("polygamma", "digamma", lambda x: scipy.special.digamma(x), uniform(0.3, 5))
case("bessel", "j0", lambda x: scipy.special.j0(x), uniform(-4, 4))
case("bessel", "y1", lambda x: scipy.special.y1(x), uniform(0.5, 6))
case("bessel", "iv", lambda x: scipy.special.iv(2.5, x), uniform(0.2, 4))
case("bessel", "kv", lambda x: scipy.special.kv(1.5, x) + scipy.special.k0(x), uniform(0.2, 4))
case("bessel", "jv-yv", lambda x: scipy.special.jv(3, x) * scipy.special.yv(0.5, x), uniform(0.5, 6))
case("special_integral", "dawsn", lambda x: scipy.special.dawsn(x), uniform(-3, 3))
case("special_integral", "exp1", lambda x: scipy.special.exp1(x), uniform(0.1, 4))
case("special_integral", "ellipk", lambda m: scipy.special.ellipk(m), uniform(-2, 0.9))
case("special_integral", "ellipe", lambda m: scipy.special.ellipe(m) * scipy.special.ellipk(m), uniform(-2, 0.9))
# where the derivatives switch to their series (|m| < 0.05, |x| > 10), on both engines
case("special_integral", "ellip-series", lambda m: scipy.special.ellipk(m) + scipy.special.ellipe(m) * m, uniform(-0.04, 0.04))
case("special_integral", "dawsn-series", lambda x: scipy.special.dawsn(x), uniform(11, 40, signed=True))
case("gammainc", "gammainc", lambda x: scipy.special.gammainc(2.5, x), uniform(0.1, 6))
case("gammainc", "gammaincc", lambda x: scipy.special.gammaincc(0.7, x) * scipy.special.gammainc(1.0, x), uniform(0.1, 6))
case("betainc", "betainc", lambda x: scipy.special.betainc(2.5, 1.5, x), uniform(0.05, 0.95))
case("betainc", "student-t-cdf", lambda t: 1 - 0.5 * scipy.special.betainc(2.5, 0.5, 5.0 / (5.0 + t * t)), uniform(0.2, 4))
# a traced: P's series below x = a + 1, Q's continued fraction above (both in each draw), and a
# censored gamma observation's log-survival in (shape, scale)
case("gammainc_da", "gammainc-a", lambda a, x: scipy.special.gammainc(a, x), pair(0.3, 6, 0.1, 9, mode="broadcast"))
case("gammainc_da", "gammaincc-a", lambda a, x: scipy.special.gammaincc(a, x) * a, pair(0.3, 6, 0.1, 9, mode="scalar"))
case("gammainc_da", "censored-gamma", lambda k, s: np.log(scipy.special.gammaincc(k, 3.0 / s)), pair(0.5, 4, 0.4, 5))
case("erf", "erf", lambda x: scipy.special.erf(x), uniform(-2, 2))
case("erfc", "erfc", lambda x: scipy.special.erfc(x), uniform(-2, 3))
case("erfc", "ndtr", lambda x: scipy.special.ndtr(x), uniform(-6, 3))
case("erfcx", "erfcx", lambda x: scipy.special.erfcx(x), uniform(-1, 5))
case(
    "erfcx_derivative", "bind", lambda x: erfcx_derivative_p.bind(x, order=1), uniform(0.5, 30),  # both sides of x = 8
    ref=lambda x: (2 * x * scipy.special.erfcx(x) - 2 / np.sqrt(np.pi)).astype(x.dtype), value_rtol=1e-11,
)
case("exprel_derivative", "exprel", lambda x: scipy.special.exprel(x), uniform(0.0, 4.0, signed=True))  # both sides of |x| = 1
case("exprel_derivative", "hodgkin-huxley-rate", lambda v: 1.0 / scipy.special.exprel(-(v + 40.0) / 10.0), uniform(-60.0, -20.0))
case("erfinv", "erfinv", lambda x: scipy.special.erfinv(x), uniform(-0.9, 0.9))
case("erfcinv", "erfcinv", lambda x: scipy.special.erfcinv(x), uniform(0.1, 1.9))
case("erfcinv", "ndtri", lambda x: scipy.special.ndtri(x), uniform(0.05, 0.95))
case("log_ndtr", "log_ndtr", lambda x: scipy.special.log_ndtr(x), uniform(-8, 4))
case(
    "mills_ratio", "bind", lambda x: mills_ratio_p.bind(x), uniform(-8, 4),
    ref=lambda x: (np.exp(-(x**2) / 2 - scipy.special.log_ndtr(x)) / np.sqrt(2 * np.pi)).astype(x.dtype),
    value_rtol=1e-12,
)
case("div", "reciprocal", np.reciprocal, uniform(0.3, 2, signed=True))
case("mul", "square", np.square, uniform(-2, 2))

for _name, _f in (("sign", np.sign), ("floor", np.floor), ("ceil", np.ceil), ("round", np.rint)):
    case(_name, _f.__name__, _f, away_from_integers(-3, 3), kind="zero")
case("round", "round-decimals", lambda x: np.round(x * 10.0, 1), away_from_integers(-3, 3), kind="zero")

# elementwise binary, same shapes and numpy broadcasting (a traced scalar included)
_BINARY = {
    "add": (np.add, lambda m: pair(-2, 2, mode=m)),
    "sub": (np.subtract, lambda m: pair(-2, 2, mode=m)),
    "mul": (np.multiply, lambda m: pair(-2, 2, mode=m)),
    "div": (np.true_divide, lambda m: pair(-2, 2, 0.3, 2, mode=m, signed=True)),
    "pow": (np.power, lambda m: pair(0.3, 2, -2, 2, mode=m)),
    "max": (np.maximum, distinct_pair),
    "min": (np.minimum, distinct_pair),
    "fmax": (np.fmax, distinct_pair),
    "fmin": (np.fmin, distinct_pair),
    "atan2": (np.arctan2, lambda m: pair(0.2, 2, 0.2, 2, mode=m, signed=True)),
    "hypot": (np.hypot, lambda m: pair(0.2, 2, 0.2, 2, mode=m, signed=True)),
    "rem": (np.remainder, rem_pair),
}
for _name, (_f, _pair) in _BINARY.items():
    for _mode in ("same", "scalar", "bcast"):
        case(_name, f"{_f.__name__}-{_mode}", _f, _pair(_mode))
case("pow", "int-exponent", lambda x: x**3, uniform(-2, 2))
case("pow", "sqr-const", lambda x: np.power(x, 2.0), uniform(-2, 2))
case("pow", "base-const", lambda y: 2.5**y, uniform(-2, 2))
case("pow", "float_power", lambda x: np.float_power(x, 1.5), uniform(0.2, 2))
case("neg", "operator", lambda x: -x, uniform(-2, 2), eps=1.0)
case("mul", "literal", lambda x: 3.0 * x, uniform(-2, 2), eps=1.0)
case("div", "literal", lambda x: x / 4.0, uniform(-2, 2), eps=1.0)
case("rem", "operator", lambda x: x % 1.5, lambda rng: ((rng.integers(-3, 3, rshape(rng)) + rng.uniform(0.1, 0.9)) * 1.5,))
for _mode in ("same", "scalar", "bcast"):
    case("floordiv", f"floor_divide-{_mode}", np.floor_divide, rem_pair(_mode), kind="zero")
case("max", "clip", lambda x: np.clip(x, -0.5, 0.5), lambda rng: (np.concatenate([rng.uniform(-0.4, 0.4, 3), rng.uniform(0.6, 2.0, 2) * [-1.0, 1.0]]),))
case("min", "clip-max", lambda x: np.clip(x, None, 0.5), lambda rng: (np.concatenate([rng.uniform(-1, 0.4, 3), rng.uniform(0.6, 2.0, 2)]),))
# running extremes: passes of np.maximum (np.minimum) by doubling strides (standard normal entries: no ties)
case("max", "maximum.accumulate", lambda x: np.maximum.accumulate(x), fixed((7,)))
case("max", "maximum.accumulate-axis", lambda x: np.maximum.accumulate(x, axis=-1), fixed((3, 5)))
case("min", "minimum.accumulate-axis0", lambda x: np.minimum.accumulate(x, axis=0), fixed((6, 2)))

# comparisons and logic: boolean outputs
for _name, _f in (("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)):
    case(_name, _f.__name__, _f, with_ties, kind="bool")
    case(_name, f"{_f.__name__}-scalar", lambda x, _f=_f: _f(x, 0.25), uniform(-1, 1), kind="bool")
case("and", "logical_and", lambda x, y: np.logical_and(x > 0, y > 0), pair(-1, 1, mode="bcast"), kind="bool")
case("and", "operator", lambda x, y: (x > 0) & (y < 0.5), pair(-1, 1), kind="bool")
case("or", "logical_or", lambda x, y: np.logical_or(x > 0, y > 0), pair(-1, 1, mode="scalar"), kind="bool")
case("xor", "logical_xor", lambda x, y: np.logical_xor(x > 0, y > 0), pair(-1, 1), kind="bool")
case("not", "logical_not", lambda x: np.logical_not(x > 0), uniform(-1, 1), kind="bool")
case("not", "invert", lambda x: ~(x > 0), uniform(-1, 1), kind="bool")
case("isnan", "isnan", np.isnan, with_nonfinite, kind="bool")
case("isinf", "isinf", np.isinf, with_nonfinite, kind="bool")
case("isfinite", "isfinite", np.isfinite, with_nonfinite, kind="bool")

# select (np.where)
case("select", "where-relu", lambda x: np.where(x > 0, x, 0.1 * x), uniform(0.1, 2, signed=True))
case("select", "where-two", lambda x, y: np.where(x > y, x * y, y - x), distinct_pair("bcast"))
case("select", "where-const-cond", lambda x, y: np.where(np.array([True, False, True]), x, y), fixed((2, 3), ()))


def _through_traced_masks(x: Any) -> Any:
    y = x * 1.0
    y[y < 0] *= -0.5  # pyzygote/selection.py: x[mask] with a traced mask
    y[x > 1] = np.sqrt(y[x > 1])
    return y + np.sum(np.log(x[x > 0])) + np.mean(x[x[:, 0] > -3] ** 2, axis=0) + np.linalg.norm(x[x < 0])


case("select", "traced-masks", _through_traced_masks, uniform(0.1, 2, lo_ndim=2, signed=True))
case("select", "tril", lambda x: np.tril(x), fixed((3, 3)), eps=1.0)

# indexing
case("gather", "basic", lambda x: x[1:, ::2], fixed((3, 5)), eps=1.0)
case("gather", "int-newaxis", lambda x: x[..., None, 0], fixed((2, 3)), eps=1.0)
case("gather", "fancy-repeated", lambda x: x[[0, 2, 0, 1]], fixed((3, 2)), eps=1.0)
case("gather", "mask", lambda x: x[np.array([True, False, True, True])], fixed((4,)), eps=1.0)


def _filled_diagonal(x: Any, v: Any) -> Any:
    K = x * 1.0
    np.fill_diagonal(K, v)
    return K


def _put(x: Any, v: Any) -> Any:
    y = x * 1.0
    np.put(y, [0, 4, 2], v)
    return y


case("gather", "fill-diagonal", lambda x, v: _filled_diagonal(x, v) * x, fixed((3, 4), (3,)))
case("gather", "fill-diagonal-scalar", lambda x, v: _filled_diagonal(x, v[0]), fixed((3, 3), (1,)), eps=1.0)
case("gather", "put-cyclic", lambda x, v: _put(x, v) * x, fixed((2, 3), (2,)))
case("concatenate", "insert-row", lambda x, r: np.insert(x, 1, r, axis=0), fixed((3, 2), (2,)), eps=1.0)
case("concatenate", "insert-column", lambda x, c: np.insert(x, -1, c, axis=1), fixed((3, 2), (3,)), eps=1.0)
case("concatenate", "insert-flat", lambda x: np.insert(x, 6, 7.0), fixed((2, 3)), eps=1.0)
case("gather", "flip-roll", lambda x: np.roll(np.flip(x, 0), 1, axis=1), fixed((2, 3)), eps=1.0)
case("gather", "diagonal-take", lambda x: np.diagonal(x) * np.take(x, [2, 0], axis=1)[:, 0], fixed((3, 3)))
case("gather", "trace", lambda x: np.trace(x), fixed((3, 3)), eps=1.0)
case("gather", "repeat-tile", lambda x: np.tile(np.repeat(x, 2), 2), fixed((3,)), eps=1.0)
case("scatter_add", "diag", lambda v: np.diag(v), fixed((3,)), eps=1.0)


def _assign(x: Any, v: Any) -> Any:
    y = x.copy()
    y[1:, 0] = v
    return y * 2.0


case("scatter_add", "setitem", _assign, fixed((3, 2), (2,)), eps=1.0)


def _repeated_positions(prim: str, add_at: Callable[..., Any], positions: np.ndarray) -> None:
    """A case of a primitive that adds values into zeros at (repeated) flat positions."""
    case(
        prim,
        "repeated-positions",
        lambda v: add_at(v, positions, (5,)),
        fixed(positions.shape),
        ref=lambda v: np.bincount(positions.ravel(), weights=v.ravel(), minlength=5).astype(v.dtype),
        eps=1.0,
    )


_repeated_positions("scatter_add", scatter_add, np.array([[0, 3], [3, 1]]))

# traced integer positions (pyzygote/primitives/traced_indexing.py); uniform draws have no ties
case("take", "sort", lambda x: np.sort(x, axis=0), uniform(-1, 1, lo_ndim=1))
case("take", "sort-last-axis-and-flat", lambda x: np.sort(x) * 2.0 + np.sort(x, axis=None).sum(), uniform(-1, 1, lo_ndim=1))
case("take", "median-quantile", lambda x: np.median(x) + np.quantile(x, [0.2, 0.75]) * np.percentile(x, 40), uniform(-1, 1, lo_ndim=1))
case("take", "median-axis", lambda x: np.median(x, axis=-1, keepdims=True) * x, fixed((3, 4)))
case("take", "index-at-argmax", lambda x: x[np.argmax(x)] * x + x[np.argsort(x)[::-1]], fixed((5,)))
case("take", "take-along-axis", lambda x: np.take_along_axis(x, np.argsort(x, axis=0)[:2], axis=0), fixed((3, 4)))
case("take", "two-traced-indices", lambda x: x[np.argmin(x, axis=0) % 2, np.argmax(x, axis=1)[:1] + 1], fixed((3, 4)))
case("take", "np-take-axis", lambda x: np.take(x, np.argmax(x, axis=1), axis=1), fixed((3, 4)))
_repeated_positions("put_add", put_add, np.array([[4, 0], [4, 2]]))
case("take", "traced-with-slices", lambda x: x[:, np.argmax(x[0])] * 2.0 + x[np.argmin(x[:, 0]), 1:].sum() + x[..., 1::2, np.argmax(x[1])], fixed((3, 4)))


def _assign_with_slices(x: Any) -> Any:
    y = x * 1.0
    y[np.argmax(x[:, 0]), 1:] = x[0, :3] ** 2
    y[:, np.argmin(x[0])] += 1.0
    y[1:, np.stack([np.argmax(x[2]), np.argmax(x[2])])] = x[1:, :2]  # repeated columns: the last wins
    return y


case("put_add", "assign-with-slices", _assign_with_slices, fixed((3, 4)))
case("argsort", "argsort", lambda x: np.argsort(x, axis=0) * 1.0, uniform(-1, 1, lo_ndim=1), kind="zero")
case("argsort", "flat", lambda x: np.argsort(x, axis=None) * x.ravel(), uniform(-1, 1, lo_ndim=1))
case("argextreme", "argmax", lambda x: np.argmax(x) * 1.0, uniform(-1, 1, lo_ndim=1), kind="zero")
case("argextreme", "argmin-axis", lambda x: np.argmin(x, axis=-1) * 1.0, uniform(-1, 1, lo_ndim=1), kind="zero")

_TABLE = np.linspace(-1.0, 1.0, 7)
case("searchsorted", "into-a-constant-table", lambda x: np.searchsorted(_TABLE, x) * 1.0, uniform(-1, 1), kind="zero")
case("searchsorted", "right-into-traced", lambda x: np.searchsorted(np.sort(x.ravel()), 0.5 * x, side="right") * x, uniform(-1, 1, lo_ndim=1))
case("searchsorted", "interp-traced-positions", lambda x: np.interp(x, _TABLE, np.cos(3.0 * _TABLE)), uniform(-1.2, 1.2, signed=True))

# linear algebra
case("einsum", "matmul", lambda a, b: a @ b, fixed((2, 3), (3, 4)))
case("einsum", "matvec", lambda a, b: np.matmul(a, b), fixed((3, 2), (2,)))
case("einsum", "batched-bcast", lambda a, b: a @ b, fixed((2, 1, 2, 3), (3, 3, 2)))
case("einsum", "dot-inner", lambda a, b: np.dot(a, b) + np.inner(a, b), fixed((3,), (3,)))
case("einsum", "outer", lambda a, b: np.outer(a, b), fixed((3,), (2,)))
case("einsum", "tensordot", lambda a, b: np.tensordot(a, b, axes=([0, 2], [1, 0])), fixed((2, 3, 4), (4, 2)))
case("einsum", "repeated-index", lambda a, b: np.einsum("iij,j->i", a, b), fixed((3, 3, 2), (2,)))
case("einsum", "implicit", lambda a, b: np.einsum("ij,jk", a, b), fixed((2, 2), (2, 3)))
case("einsum", "vdot-const", lambda a: np.vdot(a, np.arange(4.0)), fixed((2, 2)), eps=1.0)
case("einsum", "size-one-broadcast", lambda a, b: np.einsum("ij,ij->i", a, b) + np.einsum("i,i->", a[0], np.ones(1)), fixed((3, 3), (1, 3)))
case("reduce_sum", "norm-keepdims-3d", lambda x: np.linalg.norm(x, keepdims=True) * x, fixed((2, 3, 4)))


def _system(rng: np.random.Generator) -> tuple[Any, ...]:
    a = matrix()(rng)
    return a, rng.standard_normal(a.shape[0])


case("solve", "vector", lambda a, b: np.linalg.solve(a, b), _system, f32_rtol=2e-5)
case("solve", "matrix", lambda a, b: np.linalg.solve(a, b), lambda rng: (matrix(3)(rng), rng.standard_normal((3, 2))), f32_rtol=2e-5)
case("inv", "inv", np.linalg.inv, lambda rng: (matrix()(rng),), f32_rtol=2e-5)
case("det", "det", np.linalg.det, lambda rng: (matrix()(rng),), f32_rtol=2e-5)
case("det", "logdet-like", lambda a: np.log(np.abs(np.linalg.det(a))), lambda rng: (matrix(3)(rng),), f32_rtol=2e-5)


def _spd(rng: np.random.Generator) -> tuple[Any, ...]:
    b = matrix()(rng)
    return (b @ b.T + np.eye(b.shape[0]),)


def _lower_read(rng: np.random.Generator) -> tuple[Any, ...]:
    """An SPD lower triangle under an unrelated upper one, which numpy's cholesky never reads."""
    (a,) = _spd(rng)
    return (a + np.triu(rng.standard_normal(a.shape), 1),)


def _spd_and_residual(rng: np.random.Generator) -> tuple[Any, ...]:
    (a,) = _spd(rng)
    return a, rng.standard_normal(a.shape[0])


case("cholesky", "factor", np.linalg.cholesky, _spd, f32_rtol=2e-5)
case("cholesky", "reads-lower", lambda a: np.linalg.cholesky(a, upper=True), _lower_read, f32_rtol=2e-5)
case(
    "cholesky",
    "gaussian-loglik",
    lambda a, r: -np.sum(np.log(np.diagonal(np.linalg.cholesky(a)))) - 0.5 * np.sum(np.linalg.solve(np.linalg.cholesky(a), r) ** 2),
    _spd_and_residual,
    f32_rtol=2e-5,
)


def _symmetric(rng: np.random.Generator) -> tuple[Any, ...]:
    """A symmetric matrix with eigenvalues at least 0.3 apart (eigenvectors are smooth there)."""
    k = int(rng.integers(2, 5))
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    w = np.cumsum(rng.uniform(0.3, 1.0, k)) - 1.0
    return ((q * w) @ q.T,)


def _upper_read(rng: np.random.Generator) -> tuple[Any, ...]:
    """Symmetric in its upper triangle, unrelated below it (numpy reads only one with UPLO="U")."""
    (a,) = _symmetric(rng)
    return (np.triu(a) + np.tril(rng.standard_normal(a.shape), -1),)


def _eigvec_weights(k: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, k * k).reshape(k, k) + np.eye(k)


def _signed_eigh(a: Any, uplo: str = "L") -> tuple[Any, Any]:
    """numpy's eigh with pyzygote's sign convention for eigenvectors."""
    from pyzygote.primitives.linalg import signed_eigenvectors

    w, v = np.linalg.eigh(a, UPLO=uplo)
    return w, signed_eigenvectors(v)


case("eigh", "eigenvalues", np.linalg.eigvalsh, _symmetric, f32_rtol=2e-5)
case(
    "eigh",
    "eigenvectors",
    lambda a: np.linalg.eigh(a).eigenvectors * _eigvec_weights(a.shape[0]),
    _symmetric,
    ref=lambda a: _signed_eigh(a)[1] * _eigvec_weights(a.shape[0]),
    f32_rtol=1e-4,
)
case(
    "eigh",
    "upper-both",
    lambda a: np.linalg.eigh(a, UPLO="U")[1] * np.linalg.eigh(a, UPLO="U")[0] ** 2,
    _upper_read,
    ref=lambda a: _signed_eigh(a, "U")[1] * _signed_eigh(a, "U")[0] ** 2,
    f32_rtol=1e-4,
)
def _rectangular(rng: np.random.Generator) -> tuple[Any, ...]:
    """A matrix with well separated singular values, square, tall or wide."""
    m, n = [(3, 3), (4, 2), (2, 4), (1, 3)][rng.integers(4)]
    k = min(m, n)
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return ((q1 * np.linspace(2.0, 0.7, k)) @ q2.T,)


def _svd_weights(shape: tuple[int, ...]) -> np.ndarray:
    return np.linspace(-1.0, 1.5, int(np.prod(shape))).reshape(shape)


def _signed_svd(a: Any) -> tuple[Any, Any, Any]:
    from pyzygote.primitives.svd import svd_p

    return svd_p.impl(a)


case("svd", "singular-values", lambda a: np.linalg.svd(a, compute_uv=False), _rectangular, f32_rtol=2e-5)
case(
    "svd",
    "vectors",
    lambda a: np.sum(np.linalg.svd(a, full_matrices=False)[0] * _svd_weights((a.shape[0], min(a.shape))))
    + np.linalg.svd(a, full_matrices=False).Vh * _svd_weights((min(a.shape), a.shape[1])),
    _rectangular,
    ref=lambda a: np.sum(_signed_svd(a)[0] * _svd_weights((a.shape[0], min(a.shape)))) + _signed_svd(a)[2] * _svd_weights((min(a.shape), a.shape[1])),
    f32_rtol=1e-4,
)

case("pinv", "pinv", lambda a: np.linalg.pinv(a), _rectangular, f32_rtol=1e-4)
case("pinv", "pinv-orthogonal", lambda a: np.linalg.pinv(a * 0.0 + np.eye(*a.shape)) * a[0, 0] + np.linalg.pinv(a, rcond=1e-8), _rectangular, f32_rtol=1e-4)


def _qr_matrix(m: int, n: int, stack: tuple[int, ...] = ()) -> Callable[..., tuple[Any, ...]]:
    """An m x n matrix (or a stack of them) whose leading square block is well away from
    singular, so R's diagonal, which the derivatives divide by, is too; the signs of that
    block are mixed, so that LAPACK's R has diagonal entries of both signs."""

    def make(rng: np.random.Generator) -> tuple[Any, ...]:
        k = min(m, n)
        a = rng.uniform(-1.0, 1.0, stack + (m, n))
        a[..., :k, :k] += 2.0 * np.eye(k) * rng.choice([-1.0, 1.0], stack + (1, k))
        return (a,)

    return make


def _qr_weights(shape: tuple[int, ...]) -> np.ndarray:
    return np.linspace(-1.0, 1.5, int(np.prod(shape))).reshape(shape)


def _qr_rank_checked(a: Any) -> Any:
    from pyzygote.primitives.qr import qr_rank_check_p

    return qr_rank_check_p.bind(a)


for _label, _shape in (("tall", (4, 2)), ("square", (3, 3)), ("wide", (2, 4))):
    case(
        "qr",
        _label,
        lambda a: np.sum(np.linalg.qr(a)[0] * _qr_weights((a.shape[0], min(a.shape)))) + np.linalg.qr(a).R * _qr_weights((min(a.shape), a.shape[1])),
        _qr_matrix(*_shape),
        ref=lambda a: np.sum(np.linalg.qr(a)[0] * _qr_weights((a.shape[0], min(a.shape)))) + np.linalg.qr(a)[1] * _qr_weights((min(a.shape), a.shape[1])),
        f32_rtol=1e-4,
    )
case("qr", "r-mode", lambda a: np.linalg.qr(a, mode="r") ** 2, _qr_matrix(3, 1), f32_rtol=1e-4)
case("qr", "stack", lambda a: np.linalg.qr(a).Q ** 2 @ np.linalg.qr(a, mode="complete")[1] ** 2, _qr_matrix(2, 3, (2,)), f32_rtol=1e-4)
# qr's derivatives pass R through it (the identity where R's diagonal is not zero to working
# precision); bound directly, and inside qr's derivative programs through the cases above.
case("qr_rank_check", "bind", lambda a: _qr_rank_checked(a) * 2.0, _qr_matrix(4, 3), ref=lambda a: a * 2.0)


def _system(rng: np.random.Generator) -> tuple[Any, ...]:
    """A well conditioned matrix (square, tall or wide) and a right-hand side, a vector or two columns."""
    (a,) = _rectangular(rng)
    return a, rng.standard_normal((a.shape[0],) if rng.integers(2) else (a.shape[0], 2))


def _lstsq_outputs(a: Any, b: Any) -> Any:
    x, residuals, rank, s = np.linalg.lstsq(a, b)
    return np.sum(x * np.cos(x)) + np.sum(residuals) + 0.1 * np.sum(s) + rank


case("pinv", "lstsq", _lstsq_outputs, _system, f32_rtol=1e-4)
case("logabsdet", "slogdet", lambda a: np.linalg.slogdet(a)[1], lambda rng: (matrix()(rng),), f32_rtol=2e-5)
case("detsign", "slogdet", lambda a: np.linalg.slogdet(a)[0] * 1.0, lambda rng: (matrix()(rng),), kind="zero")
case("detsign", "signed-det", lambda a: np.linalg.slogdet(a).sign * np.exp(np.linalg.slogdet(a).logabsdet), lambda rng: (matrix()(rng),), f32_rtol=2e-5)

# --- the matrix exponential (pyzygote.primitives.matrix_exponential) ----------------------------
def _generator(rng: np.random.Generator, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Matrices of 1-norm about 2 (entries of the exponential up to about e^2), not symmetric."""
    k = int(rng.integers(1, 5))
    return 0.7 * rng.standard_normal(shape + (k, k))


def _expm_each(a: Any) -> np.ndarray:
    from scipy.linalg import expm

    return expm(np.asarray(a))


def _frechet_each(a: Any, e: Any) -> np.ndarray:
    """scipy.linalg.expm_frechet (one matrix at a time: it takes no stacks), in float64."""
    from scipy.linalg import expm_frechet

    a64, e64 = np.asarray(a, np.float64), np.asarray(e, np.float64)
    out = np.empty(a64.shape)
    for i in np.ndindex(a64.shape[:-2]):
        out[i] = expm_frechet(a64[i], e64[i], compute_expm=False)
    return out.astype(np.asarray(a).dtype)


def _rates(rng: np.random.Generator) -> tuple[Any, ...]:
    return (rng.uniform(0.3, 1.5, 3),)


def _chain(k: Any) -> Any:
    """Three compartments in a chain with a return flow; the amounts at t = 0.5, 1, 2 from a unit dose."""
    import pyzygote as pz

    a = np.array([[-k[0], 0.0, k[2]], [k[0], -k[1], 0.0], [0.0, k[1], -k[2]]])
    return np.stack([pz.expm(a * t)[:, 0] for t in (0.5, 1.0, 2.0)])


def _chain_ref(k: Any) -> np.ndarray:
    from scipy.linalg import expm

    k = np.asarray(k)
    a = np.array([[-k[0], 0.0, k[2]], [k[0], -k[1], 0.0], [0.0, k[1], -k[2]]])  # float64, as numpy builds it
    return np.stack([expm(a * t)[:, 0] for t in (0.5, 1.0, 2.0)])


def _frechet_args(rng: np.random.Generator) -> tuple[Any, ...]:
    a = _generator(rng, (2,))
    return a, rng.standard_normal(a.shape)


def _expm_bound(a: Any, e: Any) -> Any:
    from pyzygote.primitives.matrix_exponential import expm_frechet_p

    return expm_frechet_p.bind(a, e)


def _expm_case() -> None:
    import pyzygote as pz

    case("expm", "matrix", pz.expm, lambda rng: (_generator(rng),), ref=_expm_each, f32_rtol=2e-5, value_rtol=1e-14)
    case("expm", "stack", pz.expm, lambda rng: (_generator(rng, (2, 3)),), ref=_expm_each, f32_rtol=2e-5, value_rtol=1e-14)
    case("expm", "compartments", _chain, _rates, ref=_chain_ref, f32_rtol=2e-5, value_rtol=1e-14)
    case(
        "expm_frechet",
        "bind",
        _expm_bound,
        _frechet_args,
        ref=_frechet_each,
        f32_rtol=1e-4,
        value_rtol=1e-12,
    )


_expm_case()


# ODE solves: u' = A(p) u with A = [[-p0, 0.1], [0.1, -p1]], whose solution is expm(A t) u0.
# The solve always runs in float64 (odesolve's documented dtype), so the reference does too.
_T = np.linspace(0.0, 1.0, 4)


def _coupled_decay(u: Any, p: Any, t: Any) -> Any:
    return -p * u + 0.1 * u[::-1]


def _ode(sensealg: str) -> Callable[..., Any]:
    import pyzygote as pz

    def solve(u0: Any, p: Any) -> Any:  # the right-hand side defined once: traced once
        return pz.odesolve(_coupled_decay, u0, _T, p, alg="Tsit5", sensealg=sensealg, reltol=1e-12, abstol=1e-12)

    return solve


def _ode_exact(u0: Any, p: Any) -> np.ndarray:
    from scipy.linalg import expm

    u0, p = np.asarray(u0, np.float64), np.asarray(p, np.float64)
    a = np.array([[-p[0], 0.1], [0.1, -p[1]]])
    return np.stack([expm(a * t) @ u0 for t in _T])


def _ode_args(rng: np.random.Generator) -> tuple[Any, ...]:
    return rng.uniform(0.5, 1.5, 2), rng.uniform(0.5, 1.5, 2)


_ODE = dict(ref=_ode_exact, value_rtol=1e-9, f32_rtol=1e-9, rtol=1e-5)
case("odesolve", "forward-sensitivities", _ode("forward"), _ode_args, **_ODE)
case("odesolve_sens", "forward", _ode("forward"), _ode_args, **_ODE)
_U0 = np.array([0.7, 1.3])
# A constant u0: the sensitivities to it are not solved for (sensitivity_columns on Julia).
case("odesolve_sens", "forward-u0-constant", lambda p: _ode("forward")(_U0, p), lambda rng: _ode_args(rng)[1:],
     **dict(_ODE, ref=lambda p: _ode_exact(_U0, p)))
case("odesolve_tangent", "adjoint", _ode("adjoint"), _ode_args, dot_rtol=1e-7, **_ODE)
case("odesolve_vjp", "adjoint", _ode("adjoint"), _ode_args, dot_rtol=1e-7, **_ODE)
case("odesolve_vjp", "backsolve", _ode("backsolve"), _ode_args, dot_rtol=1e-7, **_ODE)


def _hvp(sensealg: str) -> Callable[..., Any]:
    """odesolve_hvp bound directly: second derivatives use it only for many directions
    (pyzygote.primitives.ode._second_order_by_adjoint), which these small cases do not reach."""
    from pyzygote.ode.rhs import RHS
    from pyzygote.ode.sensitivity import Options
    from pyzygote.primitives.ode import odesolve_hvp_p

    rhs = RHS.trace(lambda u, p, t: -p * u + 0.1 * u[::-1] * u, 2, 2)
    opts = Options("Tsit5", 1e-12, 1e-12)

    def hvp(*args: Any) -> Any:
        args = tuple(np.asarray(x).astype(np.float64) if not hasattr(x, "_builder") else x.astype(np.float64) for x in args)
        return odesolve_hvp_p.bind(*args, rhs=rhs, t=_T, opts=opts, sensealg=sensealg, wrt=(True, True))

    return hvp


def _hvp_args(rng: np.random.Generator) -> tuple[Any, ...]:
    return (rng.uniform(0.5, 1.5, 2), rng.uniform(0.5, 1.5, 2), rng.standard_normal((len(_T), 2)),
            rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal((len(_T), 2)))


case("odesolve_hvp", "adjoint", _hvp("adjoint"), _hvp_args, dot_rtol=1e-7, value_rtol=1e-9, f32_rtol=1e-9, rtol=1e-5, eps=1e-5)

# Nonlinear solves: u0^2 = p0 u1, u1 = p1, whose root from a positive start is (sqrt(p0 p1), p1).
def _residual(u: Any, p: Any) -> Any:
    return np.stack([u[0] ** 2 - p[0] * u[1], u[1] - p[1]])


def _nlsolve(u0: Any, p: Any) -> Any:
    import pyzygote as pz

    return pz.nlsolve(_residual, u0, p)


def _nlsolve_exact(u0: Any, p: Any) -> np.ndarray:
    p = np.asarray(p, np.float64)
    return np.array([np.sqrt(p[0] * p[1]), p[1]])


case("nlsolve", "newton", _nlsolve, _ode_args, ref=_nlsolve_exact, value_rtol=1e-12, f32_rtol=1e-12, rtol=1e-6)

ALL_CASES: list[Case] = [c for cases in CASES.values() for c in cases]

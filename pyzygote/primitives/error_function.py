"""The error function family and the normal distribution's CDF: scipy.special's ``erf``,
``erfc``, ``erfcx``, ``erfinv``, ``erfcinv``, ``ndtr``, ``log_ndtr`` and ``ndtri``, which
probit models, censored (Tobit) likelihoods and Gaussian expected improvement need.

The derivatives keep their relative precision in the tails, where ``erfc`` and ``ndtr``
underflow: ``log_ndtr``'s is the inverse Mills ratio ``pdf / cdf``, computed from ``erfcx``
(the scaled ``exp(x**2) * erfc(x)``), so at ``x = -40`` it is about 40, not ``0 / 0``.  ``ndtr`` and ``ndtri``
are ``erfc`` and ``erfcinv`` scaled, as SciPy computes them.  scipy.special is imported when
a rule first runs, not with pyzygote.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(scipy.special.log_ndtr(x)), np.array([-40.0, 0.0]))[0]
array([40.02496885,  0.79788456])
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval, ufunc_handler
from pyzygote.tracer import SMOOTH, composition

__all__ = ["erf_p", "erfc_p", "erfcx_p", "erfcx_derivative_p", "erfinv_p", "erfcinv_p", "log_ndtr_p", "mills_ratio_p"]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_PI_OVER_TWO = math.sqrt(math.pi) / 2.0
_SQRT2 = math.sqrt(2.0)


def _special() -> Any:
    import scipy.special

    return scipy.special


def _unary(name: str, julia: str) -> Primitive:
    """A primitive computing ``scipy.special.<name>`` in the argument's dtype, emitted as the
    broadcast Julia function ``julia`` (whose derivatives ForwardDiff and ChainRules know)."""
    prim = Primitive(name)
    prim.def_abstract_eval(lambda x: elementwise_aval(x))
    prim.def_impl(lambda x: np.asarray(getattr(_special(), name)(x), dtype=np.asarray(x).dtype)[()])
    prim.def_julia(lambda e, x: f"{julia}.({x})")
    return prim


erf_p = _unary("erf", "PyZygote.erf")
erfc_p = _unary("erfc", "PyZygote.erfc")
erfcx_p = _unary("erfcx", "PyZygote.erfcx")
erfinv_p = _unary("erfinv", "PyZygote.erfinv")
erfcinv_p = _unary("erfcinv", "PyZygote.erfcinv")
log_ndtr_p = _unary("log_ndtr", "PyZygote.log_ndtr")


def _gauss(x: Any) -> Any:
    """``2 / sqrt(pi) * exp(-x**2)``, the derivative of ``erf``."""
    return _TWO_OVER_SQRT_PI * np.exp(-(x * x))


defjvp(erf_p, lambda g, ans, x: g * _gauss(x))
defjvp(erfc_p, lambda g, ans, x: -(g * _gauss(x)))
defjvp(erfcx_p, lambda g, ans, x: g * erfcx_derivative_p.bind(x, order=1))
# erfcx's derivatives, each its own primitive as polygamma's are.  The closed form of the first,
# 2 x erfcx(x) - 2 / sqrt(pi), subtracts two numbers near 2 / sqrt(pi) for large x, and each
# higher order built upwards from the one below loses another factor x**2 (a Hessian at x = 1e4
# came out 2.4 times too large).  From x = 2 the orders are found downwards instead.
erfcx_derivative_p = Primitive("erfcx_derivative")
erfcx_derivative_p.def_abstract_eval(lambda x, *, order: elementwise_aval(x))
erfcx_derivative_p.def_julia(lambda e, x, *, order: f"PyZygote.erfcx_derivative.({x}, {order})")
defjvp(erfcx_derivative_p, lambda g, ans, x, *, order: g * erfcx_derivative_p.bind(x, order=order + 1))
ERFCX_DOWNWARDS_FROM = 2.0
ERFCX_DOWNWARDS_STEPS = 80  # from order + 80, enough for double precision at x = 2 (and more so above)


@erfcx_derivative_p.def_impl
def _erfcx_derivative(x: Any, *, order: int) -> Any:
    x = np.asarray(x)
    v = np.array(x, dtype=np.float64, ndmin=1)
    out = np.empty_like(v)
    low = v < ERFCX_DOWNWARDS_FROM
    with np.errstate(invalid="ignore"):  # at inf, whose derivatives are 0, and at NaN
        out[low] = _erfcx_upwards(v[low], order)
        out[~low] = _erfcx_downwards(v[~low], order)
    out[v == np.inf] = 0.0
    return np.asarray(out.reshape(x.shape), dtype=x.dtype)[()]


def _erfcx_upwards(x: np.ndarray, order: int) -> np.ndarray:
    """From ``e' = 2 x e - 2 / sqrt(pi)`` and ``e^(m+1) = 2 x e^(m) + 2 m e^(m-1)``: exact
    below x = 2 (each order loses at most a factor x**2 < 4)."""
    previous = _special().erfcx(x)
    current = 2.0 * x * previous - _TWO_OVER_SQRT_PI
    for m in range(1, order):
        previous, current = current, 2.0 * x * current + 2.0 * m * previous
    return current


def _erfcx_downwards(x: np.ndarray, order: int) -> np.ndarray:
    """Miller's algorithm: the derivatives are the recurrence's solution that shrinks relative to
    the other one (the derivatives of exp(x**2)), so running it downwards from arbitrary values
    far above ``order`` converges to them up to a factor, which ``erfcx(x)`` itself fixes."""
    above, current = np.zeros_like(x), np.ones_like(x)  # e^(m+1), e^(m), up to a common factor
    kept = current
    for m in range(order + ERFCX_DOWNWARDS_STEPS, 0, -1):
        if m == order:
            kept = current
        # (above - 2 x current) / 2m, written so that 2 x cannot overflow (x > floatmax / 2)
        above, current = current, (above / 2.0 - x * current) / m
        # keep the values near 1 (for large x each step grows them by x)
        scale = 1.0 / np.abs(current)
        above, current, kept = above * scale, current * scale, kept * scale
    return kept * (_special().erfcx(x) / current)


defjvp(erfinv_p, lambda g, ans, x: g * (_SQRT_PI_OVER_TWO * np.exp(ans * ans)))
defjvp(erfcinv_p, lambda g, ans, x: -(g * (_SQRT_PI_OVER_TWO * np.exp(ans * ans))))
# d log(ndtr(x)) = pdf(x) / ndtr(x), the inverse Mills ratio r(x), whose own derivative is
# -r (x + r): above 0 each order is a polynomial in x and r, finite wherever x is (the quotients
# of erfcx that the first-order formula suggests overflow to inf / inf in the upper tail).
# Below 0 the derivatives are erfcx's (see _log_ndtr_slope).
mills_ratio_p = Primitive("mills_ratio")
mills_ratio_p.def_abstract_eval(lambda x: elementwise_aval(x))


@mills_ratio_p.def_impl
def _mills_ratio(x: Any) -> Any:
    # ndtr(x) = erfcx(-x / sqrt(2)) * exp(-x**2 / 2) / 2, so r(x) = sqrt(2 / pi) / erfcx(-x / sqrt(2))
    x = np.asarray(x)
    return np.asarray(_TWO_OVER_SQRT_PI / _SQRT2 / _special().erfcx(-x / _SQRT2), dtype=x.dtype)[()]


mills_ratio_p.def_julia(lambda e, x: f"PyZygote.mills_ratio.({x})")
defjvp(log_ndtr_p, lambda g, ans, x: g * _log_ndtr_slope(x))


@composition(SMOOTH)
def _log_ndtr_slope(x: Any) -> Any:
    """log_ndtr's derivative, written so that its own derivatives keep their precision.  Below
    0 it is that of ``log(erfcx(y) / 2) - y**2`` for ``y = -x / sqrt(2)``: there ``r (x + r)``,
    the Mills ratio's derivative, subtracts numbers near x**2 (a third derivative at x = -1000
    came out 177 times too large), where erfcx's derivatives add up without cancelling."""
    below = x < 0
    y = np.where(below, -x, 0.0) / _SQRT2  # 0 and x where unused, so that their derivatives stay finite
    far = (2.0 * y - erfcx_derivative_p.bind(y, order=1) / erfcx_p.bind(y)) / _SQRT2
    return np.where(below, far, mills_ratio_p.bind(np.where(below, 0.0, x)))


defjvp(mills_ratio_p, lambda g, ans, x: -(g * (ans * (x + ans))))


def _scipy_ufunc(name: str, prim: Any) -> None:
    """Trace ``scipy.special.<name>`` with numpy's dtype and broadcasting rules."""

    def handler(*args: Any, **kw: Any) -> Any:
        return ufunc_handler(getattr(_special(), name), prim)(*args, **kw)

    implements_scipy_ufunc(name)(handler)


for _name, _prim in (("erf", erf_p), ("erfc", erfc_p), ("erfcx", erfcx_p), ("erfinv", erfinv_p), ("erfcinv", erfcinv_p), ("log_ndtr", log_ndtr_p)):
    _scipy_ufunc(_name, _prim)

# The normal CDF and its inverse, as SciPy computes them: erfc keeps the lower tail's
# relative precision, where 1 + erf would lose it.
_scipy_ufunc("ndtr", SimpleNamespace(bind=lambda x: 0.5 * erfc_p.bind(-x / _SQRT2)))
_scipy_ufunc("ndtri", SimpleNamespace(bind=lambda p: -_SQRT2 * erfcinv_p.bind(2.0 * p)))

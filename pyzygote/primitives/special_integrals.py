"""Integrals scipy.special computes that models reach for: Dawson's integral ``dawsn``, the
exponential integral ``exp1`` (well functions, radiative transfer) and the complete elliptic
integrals ``ellipk`` and ``ellipe`` in scipy's parameter ``m = k**2`` (pendulum periods, transit
light curves, coil inductances).

One primitive, the function's name a parameter: each derivative is written with these functions
and numpy's, so derivatives of every order stay in the IR.  On Julia they are SpecialFunctions'
``dawson``, ``expint``, ``ellipk`` and ``ellipe``, whose derivatives SpecialFunctions' ChainRules
extension (Zygote) and DiffRules (ForwardDiff) give.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> bool(np.isclose(pz.grad(lambda x: scipy.special.dawsn(x))(0.5), 1 - 2 * 0.5 * scipy.special.dawsn(0.5), rtol=1e-15))
True
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval
from pyzygote.primitives.special_parameters import handler_with_parameters, scalar_rule_by_impl

__all__ = ["special_integral_p"]


def _special() -> Any:
    import scipy.special

    return scipy.special


def _impl(x: Any, *, name: str) -> Any:
    return np.asarray(getattr(_special(), name)(x), dtype=np.asarray(x).dtype)[()]


special_integral_p = Primitive("special_integral")
special_integral_p.def_abstract_eval(lambda x, *, name: elementwise_aval(x))
special_integral_p.def_impl(_impl)


def _of(name: str, x: Any) -> Any:
    return special_integral_p.bind(x, name=name)


def _elliptic_series(terms: int = 14) -> dict[str, tuple[float, ...]]:
    """Maclaurin coefficients of dK/dm and dE/dm over pi/2 (DLMF 19.5.1-2): with
    a_n = (binomial(2n, n) / 4**n)**2, n a_n and -n a_n / (2n - 1) for m**(n - 1)."""
    k, e = [], []
    for n in range(1, terms + 1):
        a = Fraction(math.comb(2 * n, n), 4**n) ** 2
        k.append(float(n * a))
        e.append(float(-n * a / (2 * n - 1)))
    return {"ellipk": tuple(k), "ellipe": tuple(e)}


# Below this |m| the elliptic derivatives' closed forms lose digits (0 / 0 at m = 0; review: third
# derivatives 6e-6 off just above 1e-3): their Maclaurin series to m**13 is used, exact to about
# 1e-16 there.  PyZygote.jl's _ellipk_slope and _ellipe_slope use the same coefficients.
_SERIES_BELOW = 0.05
_SERIES = _elliptic_series()
_CLOSED = {  # DLMF 19.4.1
    "ellipk": lambda m: (_of("ellipe", m) / (1.0 - m) - _of("ellipk", m)) / (2.0 * m),
    "ellipe": lambda m: (_of("ellipe", m) - _of("ellipk", m)) / (2.0 * m),
}


def _horner(coefficients: tuple[float, ...], x: Any) -> Any:
    total = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        total = c + x * total
    return total


def _elliptic_derivative(name: str, m: Any) -> Any:
    """The derivative of K or E in m; each branch of the select gets an m where it is finite."""
    small = np.less(np.abs(m), _SERIES_BELOW)
    series = (np.pi / 2) * _horner(_SERIES[name], np.where(small, m, 0.0))
    return np.where(small, series, _CLOSED[name](np.where(small, 0.5, m)))


# Above this |x|, 1 - 2 x D(x) cancels, and each derivative of it more (review: a second
# derivative of the wrong sign at x = 1e4): D'(x) is -t (1 + 3 t + 15 t**2 + ...), t = 1 / (2 x**2),
# the asymptotic series (DLMF 7.12.1) to sixteen terms, exact to about 1e-16 from here, where the
# closed form's third derivative is still good to about 1e-11.  PyZygote.jl's _dawsn_slope is the same.
_DAWSON_SERIES_ABOVE = 10.0
_DAWSON_SERIES = tuple(float(math.prod(range(1, 2 * k, 2))) for k in range(1, 17))  # (2k - 1)!!


def _dawson_derivative(ans: Any, x: Any) -> Any:
    far = np.greater(np.abs(x), _DAWSON_SERIES_ABOVE)
    t = 1.0 / (2.0 * np.square(np.where(far, x, _DAWSON_SERIES_ABOVE)))
    return np.where(far, -t * _horner(_DAWSON_SERIES, t), 1.0 - 2.0 * x * ans)


# d f / dx in terms of f's family (DLMF 7.10, 6.6.1 and 19.4.1).
_DERIVATIVES: dict[str, Callable[[Any, Any], Any]] = {
    "dawsn": _dawson_derivative,
    "exp1": lambda ans, x: -np.exp(-x) / x,
    "ellipk": lambda ans, m: _elliptic_derivative("ellipk", m),
    "ellipe": lambda ans, m: _elliptic_derivative("ellipe", m),
}


def _jvp(g: Any, ans: Any, x: Any, *, name: str) -> Any:
    return g * _DERIVATIVES[name](ans, x)


defjvp(special_integral_p, _jvp)
# Julia: PyZygote's wrappers of SpecialFunctions' functions, NaN where scipy gives NaN
special_integral_p.def_julia(lambda e, x, *, name: f"PyZygote.{name}.({x})")


scalar_rule_by_impl(special_integral_p, "_special_integral", "name")

for _name in _DERIVATIVES:
    implements_scipy_ufunc(_name)(
        lambda x, _name=_name, **kw: handler_with_parameters(getattr(_special(), _name), special_integral_p, name=_name)(x, **kw)
    )

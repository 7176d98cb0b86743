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

import functools
from typing import Any, Callable

import numpy as np

from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval, ufunc_handler

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


# Below this |m| the elliptic derivatives' closed forms lose digits (0 / 0 at m = 0): their Maclaurin
# series, to m**3, is used instead, exact there to about 1e-12 and smooth across m = 0.
_SERIES_BELOW = 1e-3
_SERIES = {  # d/dm of K and E: (pi / 2) * (c0 + c1 m + c2 m**2 + c3 m**3), DLMF 19.5.1-2
    "ellipk": (1 / 4, 9 / 32, 75 / 256, 1225 / 4096),
    "ellipe": (-1 / 4, -3 / 32, -15 / 256, -175 / 4096),
}
_CLOSED = {  # DLMF 19.4.1
    "ellipk": lambda m: (_of("ellipe", m) / (1.0 - m) - _of("ellipk", m)) / (2.0 * m),
    "ellipe": lambda m: (_of("ellipe", m) - _of("ellipk", m)) / (2.0 * m),
}


def _elliptic_derivative(name: str, m: Any) -> Any:
    """The derivative of K or E in m; each branch of the select gets an m where it is finite."""
    small = np.less(np.abs(m), _SERIES_BELOW)
    near = np.where(small, m, 0.0)
    c0, c1, c2, c3 = _SERIES[name]
    series = (np.pi / 2) * (c0 + near * (c1 + near * (c2 + near * c3)))
    return np.where(small, series, _CLOSED[name](np.where(small, 0.5, m)))


# d f / dx in terms of f's family (DLMF 7.10, 6.6.1 and 19.4.1).
_DERIVATIVES: dict[str, Callable[[Any, Any], Any]] = {
    "dawsn": lambda ans, x: 1.0 - 2.0 * x * ans,
    "exp1": lambda ans, x: -np.exp(-x) / x,
    "ellipk": lambda ans, m: _elliptic_derivative("ellipk", m),
    "ellipe": lambda ans, m: _elliptic_derivative("ellipe", m),
}


def _jvp(g: Any, ans: Any, x: Any, *, name: str) -> Any:
    return g * _DERIVATIVES[name](ans, x)


defjvp(special_integral_p, _jvp)
# Julia: PyZygote's wrappers of SpecialFunctions' functions, NaN where scipy gives NaN
special_integral_p.def_julia(lambda e, x, *, name: f"PyZygote.{name}.({x})")


def _of_float(name: str, x: float) -> float:
    """One value as ``impl`` computes it, for scalarized right-hand sides."""
    return float(_impl(np.float64(x), name=name))


def _set_scalar_rule() -> None:
    from pyzygote.transforms.scalarize import register_helper

    register_helper("_special_integral", _of_float)
    special_integral_p.scalar = lambda s, x, *, name: [f"_special_integral({name!r}, {e})" for e in x]


_set_scalar_rule()


class _Bound:
    def __init__(self, name: str):
        self.name = name

    def bind(self, x: Any) -> Any:
        return special_integral_p.bind(x, name=self.name)


@functools.lru_cache(maxsize=None)
def _handler(name: str) -> Any:
    """scipy.special.<name>'s dtype rules (float32 stays float32, integers become float64)."""
    return ufunc_handler(getattr(_special(), name), _Bound(name))  # type: ignore[arg-type]


for _name in _DERIVATIVES:
    implements_scipy_ufunc(_name)(lambda x, _name=_name, **kw: _handler(_name)(x, **kw))

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

__all__ = ["erf_p", "erfc_p", "erfcx_p", "erfinv_p", "erfcinv_p", "log_ndtr_p", "mills_ratio_p"]

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
defjvp(erfcx_p, lambda g, ans, x: g * (2.0 * x * ans - _TWO_OVER_SQRT_PI))
defjvp(erfinv_p, lambda g, ans, x: g * (_SQRT_PI_OVER_TWO * np.exp(ans * ans)))
defjvp(erfcinv_p, lambda g, ans, x: -(g * (_SQRT_PI_OVER_TWO * np.exp(ans * ans))))
# d log(ndtr(x)) = pdf(x) / ndtr(x), the inverse Mills ratio r(x), whose own derivative is
# -r (x + r): each order is a polynomial in x and r, finite wherever x is (the quotients of
# erfcx that the first-order formula suggests overflow to inf / inf in the upper tail).
mills_ratio_p = Primitive("mills_ratio")
mills_ratio_p.def_abstract_eval(lambda x: elementwise_aval(x))


@mills_ratio_p.def_impl
def _mills_ratio(x: Any) -> Any:
    # ndtr(x) = erfcx(-x / sqrt(2)) * exp(-x**2 / 2) / 2, so r(x) = sqrt(2 / pi) / erfcx(-x / sqrt(2))
    x = np.asarray(x)
    return np.asarray(_TWO_OVER_SQRT_PI / _SQRT2 / _special().erfcx(-x / _SQRT2), dtype=x.dtype)[()]


mills_ratio_p.def_julia(lambda e, x: f"PyZygote.mills_ratio.({x})")
defjvp(log_ndtr_p, lambda g, ans, x: g * mills_ratio_p.bind(x))
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

"""The log-gamma function and its derivatives: scipy.special's ``gammaln``, ``digamma``
(``psi``) and ``betaln``, which count-data likelihoods (negative binomial, beta-binomial,
Dirichlet-multinomial) need of a fitted parameter, and ``gamma`` itself (a Weibull mean,
``lam * gamma(1 + 1 / k)``).

``polygamma`` of order n is one primitive whose derivative is the same primitive of order
n + 1 (``digamma`` is order 0), so derivatives of every order stay in the IR.  scipy.special
is imported when a rule first runs, not with pyzygote.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> pz.gradient(lambda a: np.sum(scipy.special.gammaln(a)), np.array([1.0, 2.0]))[0]  # digamma
array([-0.57721566,  0.42278434])
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval, ufunc_handler

__all__ = ["gammaln_p", "polygamma_p"]


def _special() -> Any:
    import scipy.special

    return scipy.special


def _same_dtype(fn: Any) -> Any:
    return lambda x, **params: np.asarray(fn(x, **params), dtype=np.asarray(x).dtype)[()]


gammaln_p = Primitive("gammaln")
gammaln_p.def_abstract_eval(lambda x: elementwise_aval(x))
gammaln_p.def_impl(_same_dtype(lambda x: _special().gammaln(x)))

polygamma_p = Primitive("polygamma")
polygamma_p.def_abstract_eval(lambda x, *, order: elementwise_aval(x))
polygamma_p.def_impl(_same_dtype(lambda x, *, order: _special().polygamma(order, x)))

# d log|Gamma(x)| = digamma(x) dx, everywhere Gamma(x) is finite and nonzero.
defjvp(gammaln_p, lambda g, ans, x: g * polygamma_p.bind(x, order=0))
defjvp(polygamma_p, lambda g, ans, x, *, order: g * polygamma_p.bind(x, order=order + 1))

# Julia: PyZygote.gammaln is log|Gamma| (SpecialFunctions' loggamma throws where Gamma < 0).
gammaln_p.def_julia(lambda e, x: f"PyZygote.gammaln.({x})")
polygamma_p.def_julia(lambda e, x, *, order: f"PyZygote.polygamma_of.({x}, {order})")


def _scipy_ufunc(name: str, prim: Primitive, **params: Any) -> None:
    """Trace ``scipy.special.<name>`` with numpy's dtype and broadcasting rules."""

    with_params = SimpleNamespace(bind=lambda x: prim.bind(x, **params))

    def handler(*args: Any, **kw: Any) -> Any:
        return ufunc_handler(getattr(_special(), name), with_params)(*args, **kw)  # type: ignore[arg-type]

    implements_scipy_ufunc(name)(handler)


_scipy_ufunc("gammaln", gammaln_p)
_scipy_ufunc("digamma", polygamma_p, order=0)
_scipy_ufunc("psi", polygamma_p, order=0)


@implements_scipy_ufunc("betaln")
def _betaln(a: Any, b: Any, **kw: Any) -> Any:
    special = _special()
    return special.gammaln(a, **kw) + special.gammaln(b, **kw) - special.gammaln(np.add(a, b), **kw)


@implements_scipy_ufunc("gamma")
def _gamma(x: Any, **kw: Any) -> Any:
    """Its sign times ``exp(gammaln(x))``, as JAX computes it: as many ulps from scipy's value as
    ``|gammaln(x)|`` (8e-14 relative at x = 171); scipy's inf, -inf and NaN at the poles, and its
    silent overflow to inf (where the derivative is not finite: pz.NonFiniteGradientError)."""
    lg = _special().gammaln(x, **kw)
    whole = np.floor(x)
    pole = np.logical_and(np.less_equal(x, 0), np.equal(x, whole))  # 0, the negative integers, -inf
    odd = np.equal(np.remainder(np.where(np.isfinite(whole), whole, 0), 2), 1)  # inf % 2 warns
    negative = np.logical_and(np.less(x, 0), odd)
    # Past the largest float: inf without numpy's overflow warning (scipy gives none), and a
    # derivative that is not finite either (inf times a constant's zero), as gamma's is there.
    most = float(np.log(np.finfo(lg.dtype).max))
    size = np.exp(np.minimum(lg, most)) * np.where(np.greater(lg, most), lg.dtype.type(np.inf), lg.dtype.type(1.0))
    value = np.where(negative, -size, size)
    return np.where(pole, np.where(np.equal(x, 0), np.copysign(np.inf, x), np.nan), value)


@implements_scipy_ufunc("loggamma")
def _loggamma(x: Any, **kw: Any) -> Any:
    """For real x, the principal branch's real values: ``gammaln`` where Gamma is positive (and at
    its poles at 0, inf), NaN below zero as scipy's real loop gives."""
    lg = _special().gammaln(x, **kw)
    return np.where(np.less(x, 0), np.nan, lg)

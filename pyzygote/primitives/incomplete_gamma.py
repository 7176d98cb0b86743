"""The regularized incomplete gamma functions of a constant ``a``: scipy.special's ``gammainc``
(lower, ``P(a, x)``) and ``gammaincc`` (upper, ``Q = 1 - P``): chi-square and Poisson
probabilities (``chi2.cdf(x, k) = gammainc(k / 2, x / 2)``), gamma-distributed waiting times.

Their derivative in ``x`` is ``±x**(a - 1) exp(-x) / Gamma(a)``, written with numpy and
``scipy.special.xlogy``/``gammaln`` so that derivatives of every order stay in the IR.  The
derivative in ``a`` has no closed form; as scipy and SpecialFunctions.jl, pyzygote takes ``a``
as a constant.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> bool(np.isclose(pz.grad(lambda x: scipy.special.gammainc(2.0, x))(1.5), 1.5 * np.exp(-1.5), rtol=1e-15))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval
from pyzygote.primitives.special_parameters import handler_with_parameters, scalar_rule_by_impl
from pyzygote.tracer import Tracer

__all__ = ["gammainc_p"]


def _special() -> Any:
    import scipy.special

    return scipy.special


def _impl(x: Any, *, a: float, upper: bool) -> Any:
    value = (_special().gammaincc if upper else _special().gammainc)(a, x)
    return np.asarray(value, dtype=np.asarray(x).dtype)[()]


gammainc_p = Primitive("gammainc")
gammainc_p.def_abstract_eval(lambda x, *, a, upper: elementwise_aval(x))
gammainc_p.def_impl(_impl)


def _density(x: Any, a: float) -> Any:
    """``x**(a - 1) exp(-x) / Gamma(a)``: as a power below x = 1 (exact at 0, where the log form's
    derivatives are 0 * inf), through logarithms above (no overflow of x**(a - 1) before exp(-x)
    underflows); each branch gets an x where it is finite."""
    log_norm = float(_special().gammaln(a))
    small = np.less(x, 1.0)
    near = np.where(small, x, 0.5)
    far = np.where(small, 1.0, x)
    return np.where(small, near ** (a - 1.0) * np.exp(-near - log_norm), np.exp((a - 1.0) * np.log(far) - far - log_norm))


def _jvp(g: Any, ans: Any, x: Any, *, a: float, upper: bool) -> Any:
    density = _density(x, a)
    return g * (-density if upper else density)


defjvp(gammainc_p, _jvp)
gammainc_p.def_julia(lambda e, x, *, a, upper: f"PyZygote.{'gammaincc' if upper else 'gammainc'}_of.({x}, {float(a)!r})")


scalar_rule_by_impl(gammainc_p, "_gammainc", "a", "upper")


def _constant_a(name: str, a: Any) -> float:
    if isinstance(a, Tracer):
        raise UnsupportedOperationError(
            f"scipy.special.{name}: its a is traced here, and the derivative in a is taken by neither scipy nor "
            "SpecialFunctions.jl, so a must be a number. An a given positionally to pz.gradient or pz.grad is "
            "differentiated (every positional argument is): pass a fixed shape as a keyword argument, "
            "pz.gradient(f, x, a=2.5), or close over it. For a fitted shape, the gamma distribution's log-density "
            "(a - 1) * np.log(x) - x / s - scipy.special.gammaln(a) - a * np.log(s) is traced in a; a censored "
            "observation's survival function in a fitted shape is not"
        )
    value = np.asarray(a)
    if value.ndim != 0 or value.dtype.kind not in "iuf":
        raise UnsupportedOperationError(
            f"scipy.special.{name} is traced for one real a at a time, got {value!r}: "
            f"np.stack([scipy.special.{name}(a, x) for a in values])"
        )
    return float(value)


for _name in ("gammainc", "gammaincc"):
    implements_scipy_ufunc(_name)(
        lambda a, x, _name=_name, **kw: handler_with_parameters(
            getattr(_special(), _name), gammainc_p, a=_constant_a(_name, a), upper=_name == "gammaincc"
        )(a, x, **kw)
    )

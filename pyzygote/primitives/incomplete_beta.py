"""The regularized incomplete beta function of constant ``a`` and ``b``: scipy.special's
``betainc(a, b, x)``, ``I_x(a, b)``.  It is the CDF of the beta distribution and, through it,
of Student's t (``1 - 0.5 betainc(df / 2, 0.5, df / (df + t**2))`` for ``t > 0``), of the F
distribution, and of the binomial distribution in its probability
(``P(K <= k) = betainc(n - k, k + 1, 1 - p)``).

Its derivative in ``x`` is the beta density ``x**(a - 1) (1 - x)**(b - 1) / B(a, b)``, written
with numpy so that derivatives of every order stay in the IR.  As scipy and SpecialFunctions.jl,
pyzygote takes ``a`` and ``b`` as constants.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> bool(np.isclose(pz.grad(lambda x: scipy.special.betainc(2.0, 3.0, x))(0.25), 12 * 0.25 * 0.75 ** 2, rtol=1e-14))
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

__all__ = ["betainc_p"]


def _special() -> Any:
    import scipy.special

    return scipy.special


def _impl(x: Any, *, a: float, b: float) -> Any:
    return np.asarray(_special().betainc(a, b, x), dtype=np.asarray(x).dtype)[()]


betainc_p = Primitive("betainc")
betainc_p.def_abstract_eval(lambda x, *, a, b: elementwise_aval(x))
betainc_p.def_impl(_impl)

# Below this log B(a, b), 1 / B(a, b) overflows a float64 (a = b = 500 gives -692).
_LOG_BETA_FLOOR = -600.0


def _density(x: Any, a: float, b: float) -> Any:
    """``x**(a - 1) (1 - x)**(b - 1) / B(a, b)`` on [0, 1], NaN outside (where betainc is).

    Near each end the factor that vanishes or diverges there is a power, exact at the end itself
    (the log form's derivatives there are 0 * inf), times the rest through logarithms.  Where
    1 / B(a, b) would overflow (a and b in the hundreds) the whole density goes through
    logarithms instead, with its limits at the ends."""
    if a < 0 or b < 0 or a == b == 0:  # betainc is NaN there: so is its derivative, as on the Julia side
        return x * np.nan
    log_beta = float(_special().betaln(a, b))
    inside = np.logical_and(np.greater_equal(x, 0.0), np.less_equal(x, 1.0))
    low = np.less(x, 0.5)
    if log_beta > _LOG_BETA_FLOOR:
        near0 = np.where(low, x, 0.25)
        near1 = np.where(low, 0.75, x)
        density = np.where(
            low,
            near0 ** (a - 1.0) * np.exp((b - 1.0) * np.log1p(-near0) - log_beta),
            (1.0 - near1) ** (b - 1.0) * np.exp((a - 1.0) * np.log(near1) - log_beta),
        )
    else:
        interior = np.logical_and(np.greater(x, 0.0), np.less(x, 1.0))
        xs = np.where(interior, x, 0.5)
        # a and b are large here: the density vanishes at both ends
        density = np.where(interior, np.exp((a - 1.0) * np.log(xs) + (b - 1.0) * np.log1p(-xs) - log_beta), 0.0)
    return np.where(inside, density, np.nan)


defjvp(betainc_p, lambda g, ans, x, *, a, b: g * _density(x, a, b))
betainc_p.def_julia(lambda e, x, *, a, b: f"PyZygote.betainc_of.({x}, {e.literal(float(a), np.float64)}, {e.literal(float(b), np.float64)})")
scalar_rule_by_impl(betainc_p, "_betainc", "a", "b")


def _constant(name: str, v: Any) -> float:
    if isinstance(v, Tracer):
        raise UnsupportedOperationError(
            f"scipy.special.betainc: its {name} is traced here, and its derivative in {name} is taken by neither scipy "
            f"nor SpecialFunctions.jl, so {name} must be a number. A {name} given positionally to pz.gradient or pz.grad "
            f"is differentiated (every positional argument is): pass a fixed one as a keyword argument, or close over "
            f"it. betainc is differentiated in x (a Student-t or binomial CDF in t or p)"
        )
    value = np.asarray(v)
    if value.ndim != 0 or value.dtype.kind not in "iuf":
        raise UnsupportedOperationError(
            f"scipy.special.betainc is traced for one real a and b at a time, got {name} = {value!r}: "
            "np.stack([scipy.special.betainc(a, b, x) for a, b in pairs])"
        )
    return float(value)


@implements_scipy_ufunc("betainc")
def _betainc(a: Any, b: Any, x: Any, **kw: Any) -> Any:
    params = dict(a=_constant("a", a), b=_constant("b", b))
    return handler_with_parameters(_special().betainc, betainc_p, **params)(a, b, x, **kw)

"""scipy.special's elementwise functions that statistics code reaches for, traced.

They are ufuncs, so a traced argument reaches pyzygote as numpy's do, and each
is a composition of numpy functions (no primitive of its own, like
:mod:`pyzygote.primitives.composites`).  Where two formulas are exact,
``np.where`` picks the one that cannot overflow, and the branch not taken is
given an argument it cannot overflow on either, so no ``inf * 0`` reaches a
derivative.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(scipy.special.expit(x)), np.zeros(2))[0]
array([0.25, 0.25])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.tracer import SMOOTH, as_operand, composition

__all__: list[str] = []


def _floating(x: Any) -> Any:
    x = as_operand(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _plain(name: str, kw: dict[str, Any]) -> None:
    if kw:
        raise UnsupportedOperationError(f"scipy.special.{name} keywords {sorted(kw)} are not supported while tracing")


def _shifted(x: Any) -> tuple[Any, Any, Any, Any]:
    """``m = min(x, 0)``, ``n = min(-x, 0) = m - x``, ``exp(m)`` and ``exp(n)``: both at most 1, so
    nothing overflows (and ``n`` stays finite at ``x = -inf``, where ``m - x`` would be NaN).

    ``expit`` and ``log_expit`` below are written so that ``m`` cancels out exactly: as a function
    of ``m`` and ``x`` they do not depend on ``m``.  Their derivatives of every order are then
    those of the smooth function, also at ``x = 0``, where ``min`` splits its derivative
    between the two sides (``n``'s split, ``-1/2``, is ``m``'s minus 1, as for ``m - x``).  No
    comparison is involved: ``expit`` of the state is the smooth switch that
    :class:`pyzygote.StateSwitchWarning` recommends, and must not set it off.
    """
    m, n = np.minimum(x, 0.0), np.minimum(-x, 0.0)
    return m, n, np.exp(m), np.exp(n)


@implements_scipy_ufunc("expit")
@composition(SMOOTH)
def _expit(x: Any, **kw: Any) -> Any:
    _plain("expit", kw)
    _, _, a, b = _shifted(_floating(x))
    return a / (a + b)


@implements_scipy_ufunc("log_expit")
@composition(SMOOTH)
def _log_expit(x: Any, **kw: Any) -> Any:
    _plain("log_expit", kw)
    m, n, a, b = _shifted(_floating(x))
    # log(a + b) twice: as log1p(expm1(m) + b), exact where x >= 0 (m = 0), and as
    # log1p(a + expm1(n)), exact where x <= 0 (n = 0); weighted by a, which is 1 where
    # x >= 0 and tiny where x << 0, so each counts where it is exact.
    log_sum = a * np.log1p(np.expm1(m) + b) + (1.0 - a) * np.log1p(a + np.expm1(n))
    return m - log_sum


@implements_scipy_ufunc("logit")
def _logit(p: Any, **kw: Any) -> Any:
    _plain("logit", kw)
    p = _floating(p)
    return np.log(p) - np.log1p(-p)


def _x_times(name: str, log: Any, inside: Any) -> Any:
    """``x * log(y)`` that is 0 where ``x == 0`` and ``y`` is not NaN, as SciPy defines it.

    ``y`` stays itself wherever ``log`` is finite, so that ``d/dx = log(y)`` at ``x == 0``
    too; elsewhere at ``x == 0`` it is replaced by a harmless value.
    """

    @composition(SMOOTH)  # the comparisons only keep log's NaN out of 0 * log(y)
    def handler(x: Any, y: Any, **kw: Any) -> Any:
        _plain(name, kw)
        x, y = _floating(x), _floating(y)
        harmless = np.logical_and(np.equal(x, 0.0), np.logical_not(np.logical_or(np.isnan(y), inside(y))))
        return x * log(np.where(harmless, 1.0 if log is np.log else 0.0, y))

    return handler


implements_scipy_ufunc("xlogy")(_x_times("xlogy", np.log, lambda y: np.logical_and(y > 0, y < np.inf)))
implements_scipy_ufunc("xlog1py")(_x_times("xlog1py", np.log1p, lambda y: np.logical_and(y > -1, y < np.inf)))

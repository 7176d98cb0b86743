"""scipy.special's ``exprel``, ``(exp(x) - 1) / x``, with derivatives of every order that keep
their precision at ``x = 0``.

Rates written as ``x / (1 - exp(-x))`` (Hodgkin-Huxley's ``alpha_m`` and ``alpha_n``, the
Goldman-Hodgkin-Katz current) are ``1 / exprel(-x)``.  The formula is 0 / 0 at ``x = 0``,
and its derivatives, taken by the chain rule, cancel catastrophically near it: the k-th
loses a factor ``x**(k + 1)`` of precision.  In user testing a Hodgkin-Huxley Hessian
through an implicit solver failed (the step size shrank to nothing) where the membrane
potential crossed the singular point; with ``exprel`` it solves.

The k-th derivative is ``E_k(x) = integral of s**k exp(x s) over [0, 1]``, one primitive
with the order as a parameter (as ``polygamma``'s are).  Above ``|x| = k + 1`` the recurrence
``E_k = (exp(x) - k E_(k-1)) / x`` loses nothing (each step scales errors by ``k / |x|``);
nearer 0 a series of positive terms gives it: ``sum x**j / (j! (j + k + 1))`` for ``x >= 0``,
and ``exp(x) sum |x|**j k! / (j + k + 1)!`` below.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> pz.gradient(lambda x: scipy.special.exprel(x), 0.0)[0]
0.5
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval, ufunc_handler
from pyzygote.numpy_api import implements_scipy_ufunc

__all__ = ["exprel_derivative_p", "exprel_derivative"]

exprel_derivative_p = Primitive("exprel_derivative")
exprel_derivative_p.def_abstract_eval(lambda x, *, order: elementwise_aval(x))
exprel_derivative_p.def_julia(lambda e, x, *, order: f"PyZygote.exprel_derivative.({x}, {order})")
defjvp(exprel_derivative_p, lambda g, ans, x, *, order: g * exprel_derivative_p.bind(x, order=order + 1))


def series_terms(order: int) -> int:
    """Terms of the series below ``|x| = order + 1``: the last is below 1e-20 of the sum."""
    return 40 + 3 * order


@exprel_derivative_p.def_impl
def _exprel_derivative(x: Any, *, order: int) -> Any:
    x = np.asarray(x)
    v = np.array(x, dtype=np.float64, ndmin=1)  # float32 in float64, then rounded
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf above x = 709, as scipy's
        out = _upwards(v, order)
        near = np.abs(v) <= order + 1
        if near.any():  # the series only where it is needed: it costs a hundred operations
            out[near] = _series(v[near], order)
        # rounded to float32 inside: its overflow to inf is scipy's answer, not a warning
        return np.asarray(out.reshape(x.shape), dtype=x.dtype)[()]


def _upwards(x: np.ndarray, order: int) -> np.ndarray:
    e = np.exp(x)
    current = np.expm1(x) / x
    for m in range(1, order + 1):
        current = (e - m * current) / x
    # past x = 709 exp(x) overflows, and inf - inf is NaN: every order is inf there
    return np.where(np.isnan(current) & (x > 0), np.inf, current)


def _series(x: np.ndarray, order: int) -> np.ndarray:
    """Near 0 (``|x| <= order + 1``), from positive terms on both sides."""
    up, down = np.zeros_like(x), np.zeros_like(x)
    term_up, term_down = np.ones_like(x), np.full_like(x, 1.0 / (order + 1))
    for j in range(series_terms(order)):
        up += term_up / (j + order + 1)  # sum x**j / (j! (j + k + 1))
        term_up *= x / (j + 1)
        down += term_down  # sum |x|**j k! / (j + k + 1)!
        term_down *= -x / (j + order + 2)
    return np.where(x >= 0.0, up, np.exp(np.minimum(x, 0.0)) * down)


def exprel_derivative(x: float, order: int) -> float:
    """``E_order(x)`` for one Python float, as the primitive computes it (the scalar rule's
    helper: an ODE right-hand side's rates cost microseconds, not a numpy call each)."""
    if abs(x) <= order + 1:
        total = 0.0
        if x >= 0.0:
            term = 1.0
            for j in range(series_terms(order)):
                total += term / (j + order + 1)
                term *= x / (j + 1)
            return total
        term = 1.0 / (order + 1)
        for j in range(series_terms(order)):
            total += term
            term *= -x / (j + order + 2)
        return math.exp(x) * total
    if x != x:
        return x
    if math.isinf(x):
        return 0.0 if x < 0 else math.inf
    try:
        e = math.exp(x)
    except OverflowError:  # past x = 709.78 every order is inf
        return math.inf
    current = math.expm1(x) / x
    for m in range(1, order + 1):
        current = (e - m * current) / x
    return current


def _scalar_rule(s: Any, x: list[str], *, order: int) -> list[str]:
    return [f"_exprel({e}, {order})" for e in x]


def _set_scalar_rule() -> None:
    from pyzygote.transforms.scalarize import register_helper

    register_helper("_exprel", exprel_derivative)
    exprel_derivative_p.scalar = _scalar_rule


_set_scalar_rule()


def _exprel(x: Any, **kw: Any) -> Any:
    import scipy.special

    exprel = SimpleNamespace(bind=lambda v: exprel_derivative_p.bind(v, order=0))
    return ufunc_handler(scipy.special.exprel, exprel)(x, **kw)


implements_scipy_ufunc("exprel")(_exprel)

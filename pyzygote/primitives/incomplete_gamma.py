"""The regularized incomplete gamma functions scipy.special's ``gammainc`` (lower, ``P(a, x)``)
and ``gammaincc`` (upper, ``Q = 1 - P``): chi-square and Poisson probabilities
(``chi2.cdf(x, k) = gammainc(k / 2, x / 2)``), gamma-distributed waiting times and their
censored observations (``log(gammaincc(k, t / theta))`` of a fitted shape ``k``).

Of a constant number ``a`` they are ``gammainc_p`` (params ``a``, ``upper``), differentiated in
``x`` only: ``±x**(a - 1) exp(-x) / Gamma(a)``, written with numpy and ``scipy.special.gammaln``
so that derivatives of every order stay in the IR.

Of a traced ``a`` (or an array of them) they are ``gammainc_da`` of the operands ``(a, x)``, whose
param ``order`` counts derivatives in ``a`` (0: ``P`` or ``Q`` itself, scipy's value): the
derivative of order ``k`` in ``a`` is the same primitive of order ``k + 1``, in ``x`` the ``k``-th
derivative in ``a`` of the density above, in traced numpy (``polygamma`` of ``a``).  The
derivatives in ``a`` have no closed form; as Cephes and XLA (JAX's ``igamma_grad_a``) compute
them, they are carried through ``P``'s power series where ``x < a + 1`` and through ``Q``'s
continued fraction (the modified Lentz method) elsewhere, here as truncated Taylor series in
``a`` (jets), so that every order is found the same way.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> bool(np.isclose(pz.grad(lambda x: scipy.special.gammainc(2.0, x))(1.5), 1.5 * np.exp(-1.5), rtol=1e-15))
True
>>> round(float(pz.grad(lambda a: scipy.special.gammaincc(a, 3.0))(2.5)), 12)  # mpmath: 0.22754855127826081...
0.227548551278
"""

from __future__ import annotations

from math import comb, factorial
from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.numpy_api import implements_scipy_ufunc
from pyzygote.primitive import Primitive, defjvp
from pyzygote.primitives.elementwise import elementwise_aval, ufunc_handler
from pyzygote.primitives.gamma import polygamma_p
from pyzygote.primitives.special_parameters import handler_with_parameters, scalar_rule_by_impl
from pyzygote.tracer import Tracer

__all__ = ["gammainc_p", "gammainc_da_p"]


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
gammainc_p.def_julia(lambda e, x, *, a, upper: f"PyZygote.{'gammaincc' if upper else 'gammainc'}_of.({x}, {e.literal(float(a), np.float64)})")


scalar_rule_by_impl(gammainc_p, "_gammainc", "a", "upper")


# --- a traced: gammainc_da(a, x; order, upper) -------------------------------------------------
gammainc_da_p = Primitive("gammainc_da")
gammainc_da_p.def_abstract_eval(lambda a, x, *, order, upper: elementwise_aval(a, x))

_EPS = float(np.finfo(np.float64).eps)
MAX_TERMS = 10_000  # the series and the fraction need about 10 sqrt(a) terms near x = a


def _jet_mul(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Product of truncated Taylor series (coefficients along the first axis)."""
    return np.stack([sum(u[i] * v[k - i] for i in range(k + 1)) for k in range(u.shape[0])])


def _jet_div(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out: list[np.ndarray] = []
    for k in range(u.shape[0]):
        out.append((u[k] - sum(v[i] * out[k - i] for i in range(1, k + 1))) / v[0])
    return np.stack(out)


def _jet_exp(u: np.ndarray) -> np.ndarray:
    out = [np.exp(u[0])]
    for k in range(1, u.shape[0]):
        out.append(sum(j * u[j] * out[k - j] for j in range(1, k + 1)) / k)
    return np.stack(out)


def _linear_jet(value: np.ndarray, slope: Any, n: int) -> np.ndarray:
    """``value + slope * t``: a quantity linear in ``a`` (``t`` its increment) to ``n`` terms."""
    out = np.zeros((n,) + value.shape)
    out[0] = value
    if n > 1:
        out[1] = slope
    return out


def _log_prefactor(a: np.ndarray, x: np.ndarray, shift: float, n: int) -> np.ndarray:
    """Taylor coefficients in ``a`` of ``a log(x) - x - log Gamma(a + shift)``."""
    special, b = _special(), a + shift
    terms = [a * np.log(x) - x - special.gammaln(b), np.log(x) - special.digamma(b)]
    terms += [-special.polygamma(j - 1, b) / factorial(j) for j in range(2, n)]
    return np.stack(terms[:n])


def _lower_series(a: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """``P = x**a exp(-x) / Gamma(a + 1) * sum_k x**k / ((a + 1) ... (a + k))`` to ``n`` Taylor
    coefficients in ``a``, for ``x < a + 1``, where the terms fall from the first.  Each
    coefficient's terms have one sign ((-1)**j), so its sum is found without cancellation."""
    term = np.zeros((n,) + a.shape)
    term[0] = 1.0
    total = term.copy()
    active = np.arange(a.size)
    for k in range(1, MAX_TERMS):
        if not active.size:
            break
        r, t = a[active] + k, term[:, active]
        q = np.empty_like(t)  # t * x / (r + da): the quotient by a linear jet, term by term
        q[0] = t[0] / r
        for j in range(1, n):
            q[j] = (t[j] - q[j - 1]) / r
        q *= x[active]
        term[:, active] = q
        total[:, active] += q
        active = active[~np.all(np.abs(q) <= _EPS * np.abs(total[:, active]), axis=0)]
    total[:, active] = np.nan
    return _jet_mul(_jet_exp(_log_prefactor(a, x, 1.0, n)), total)


def _upper_fraction(a: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """``Q = x**a exp(-x) / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / ...))``
    to ``n`` Taylor coefficients in ``a``, for ``x >= a + 1``, by the modified Lentz method: its
    factors tend to 1 and their derivatives to 0, where the ratio of the convergents' numerators
    and denominators (Cephes' recurrence) would take derivatives of numbers that grow with each
    term, losing digits with each order."""
    size = a.size
    d = _jet_div(_linear_jet(np.ones(size), 0.0, n), _linear_jet(x + 1.0 - a, -1.0, n))
    c = _linear_jet(np.full(size, 1e300), 0.0, n)  # Lentz's start 1 / tiny (b0 = 0)
    h = d.copy()
    active = np.arange(size)
    one = _linear_jet(np.ones(size), 0.0, n)
    for i in range(1, MAX_TERMS):
        if not active.size:
            break
        av, xv, m = a[active], x[active], active.size
        an = _linear_jet(-i * (i - av), float(i), n)
        bn = _linear_jet(xv + 1.0 - av + 2 * i, -1.0, n)
        dd = _jet_div(one[:, :m], _jet_mul(an, d[:, active]) + bn)
        cc = bn + _jet_div(an, c[:, active])
        factor = _jet_mul(dd, cc)
        hh = _jet_mul(h[:, active], factor)
        d[:, active], c[:, active], h[:, active] = dd, cc, hh
        # converged when the factor's change to each coefficient is below a rounding of it (or
        # of the size a coefficient of 1 / (x - a + 1) has, where one passes through zero)
        factor[0] -= 1.0
        scale = np.abs(hh[0]) / (xv - av + 1.0) ** np.arange(n)[:, None]
        active = active[~np.all(np.abs(factor) * np.abs(hh[0]) <= _EPS * (np.abs(hh) + scale), axis=0)]
    h[:, active] = np.nan
    return _jet_mul(_jet_exp(_log_prefactor(a, x, 0.0, n)), h)


def _derivatives_in_a(a: np.ndarray, x: np.ndarray, order: int, upper: bool) -> np.ndarray:
    """The ``order``-th derivative in ``a`` (``order >= 1``) of ``P``, or of ``Q = 1 - P``: 0 at
    x = 0 and x = inf and at a = inf (where P is constant), NaN where scipy's value is NaN and at
    a = 0 (where scipy's P is 1 but a continues only to one side)."""
    out = np.full(a.shape, np.nan)
    inside = (a > 0) & (x > 0) & np.isfinite(a) & np.isfinite(x)
    out[((x == 0) & (a > 0)) | ((x == np.inf) & (a > 0) & (a < np.inf)) | ((a == np.inf) & (x >= 0) & (x < np.inf))] = 0.0
    lower = inside & (x < a + 1.0)
    upper_side = inside & ~lower
    scale = factorial(order) * (-1.0 if upper else 1.0)
    if lower.any():
        out[lower] = _lower_series(a[lower], x[lower], order + 1)[order] * scale
    if upper_side.any():
        out[upper_side] = -_upper_fraction(a[upper_side], x[upper_side], order + 1)[order] * scale
    return out


@gammainc_da_p.def_impl
def _gammainc_da(a: Any, x: Any, *, order: int, upper: bool) -> Any:
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(x).dtype)
    if order == 0:  # scipy's own value
        value = (_special().gammaincc if upper else _special().gammainc)(a, x)
        return np.asarray(value, dtype=dtype)[()]
    av, xv = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(x, dtype=np.float64))
    with np.errstate(all="ignore"):
        out = _derivatives_in_a(av.ravel(), xv.ravel(), order, upper)
    return np.asarray(out.reshape(av.shape), dtype=dtype)[()]


def _density_derivative(a: Any, x: Any, order: int) -> Any:
    """The ``order``-th derivative in ``a`` of ``x**(a - 1) exp(-x) / Gamma(a)``, in traced numpy:
    ``f = exp(h)`` with ``h' = log(x) - digamma(a)``, ``h^(j) = -polygamma(j - 1, a)``, and
    ``f^(k) = sum_j C(k - 1, j) h^(j + 1) f^(k - 1 - j)``.  ``f`` is taken as ``_density`` takes
    it; at x = 0 the values are the limits from above (0 where a > 1; for order 0, 1 at a = 1 and
    inf below), NaN where they do not exist."""
    positive = np.greater(x, 0)
    small = np.logical_and(np.less(x, 1.0), positive)
    near = np.where(small, x, 0.5)
    far = np.where(small, 1.0, np.where(positive, x, 1.0))
    log_norm = _special().gammaln(a)
    density = np.where(small, near ** (a - 1.0) * np.exp(-near - log_norm), np.exp((a - 1.0) * np.log(far) - far - log_norm))
    t = density.dtype.type  # np.where of two Python numbers is float64
    if order == 0:
        at_zero = np.where(np.greater(a, 1.0), t(0.0), np.where(np.equal(a, 1.0), t(1.0), t(np.inf)))
    else:
        h = [None, np.log(np.where(positive, x, 1.0)) - polygamma_p.bind(a, order=0)]
        h += [-polygamma_p.bind(a, order=j - 1) for j in range(2, order + 1)]
        fs = [density]
        for k in range(1, order + 1):
            fs.append(sum(comb(k - 1, j) * (h[j + 1] * fs[k - 1 - j]) for j in range(k)))
        density = fs[order]
        at_zero = np.where(np.greater(a, 1.0), t(0.0), t(np.nan))
    return np.where(positive, density, np.where(np.equal(x, 0), at_zero, t(np.nan)))


def _da_jvp_x(g: Any, ans: Any, a: Any, x: Any, *, order: int, upper: bool) -> Any:
    # NaN where P is (a < 0), as PyZygote.jl's _gamma_density_da has it
    slope = np.where(np.less(a, 0.0), np.nan, _density_derivative(a, x, order))
    return g * (-slope if upper else slope)


defjvp(
    gammainc_da_p,
    lambda g, ans, a, x, *, order, upper: g * gammainc_da_p.bind(a, x, order=order + 1, upper=upper),
    _da_jvp_x,
)
gammainc_da_p.def_julia(lambda e, a, x, *, order, upper: f"PyZygote.gammainc_da.({a}, {x}, {order}, {2 if upper else 1})")


def _da_of_floats(order: int, upper: bool, a: float, x: float) -> float:
    return float(_gammainc_da(np.float64(a), np.float64(x), order=order, upper=upper))


def _register_scalar_rule() -> None:
    from pyzygote.transforms.scalarize import register_helper

    register_helper("_gammainc_da", _da_of_floats)
    gammainc_da_p.scalar = lambda s, a, x, *, order, upper: [f"_gammainc_da({order!r}, {upper!r}, {ea}, {ex})" for ea, ex in zip(a, x)]


_register_scalar_rule()


def _constant_a(name: str, a: Any) -> float | None:
    """A number ``a`` as a float (``gammainc_p``); None for a traced ``a`` or an array of them
    (``gammainc_da``)."""
    if isinstance(a, Tracer):
        return None
    value = np.asarray(a)
    if value.dtype.kind not in "iuf":
        raise UnsupportedOperationError(f"scipy.special.{name} is traced for real a, got {value!r}")
    return float(value) if value.ndim == 0 else None


def _traced_a_handler(name: str) -> Any:
    upper = name == "gammaincc"
    binder = _Binder(upper)
    return ufunc_handler(getattr(_special(), name), binder)  # type: ignore[arg-type]


class _Binder:
    """``gammainc_da`` of order 0 bound to ``(a, x)``: what ``ufunc_handler`` binds."""

    def __init__(self, upper: bool):
        self.upper = upper

    def bind(self, a: Any, x: Any) -> Any:
        return gammainc_da_p.bind(a, x, order=0, upper=self.upper)


_TRACED_A_HANDLERS: dict[str, Any] = {}


def _handler(name: str, a: Any, x: Any, **kw: Any) -> Any:
    constant = _constant_a(name, a)
    if constant is not None:
        return handler_with_parameters(getattr(_special(), name), gammainc_p, a=constant, upper=name == "gammaincc")(a, x, **kw)
    if name not in _TRACED_A_HANDLERS:
        _TRACED_A_HANDLERS[name] = _traced_a_handler(name)
    return _TRACED_A_HANDLERS[name](a, x, **kw)


for _name in ("gammainc", "gammaincc"):
    implements_scipy_ufunc(_name)(lambda a, x, _name=_name, **kw: _handler(_name, a, x, **kw))

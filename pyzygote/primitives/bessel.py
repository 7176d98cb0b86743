"""Bessel functions of a constant order: scipy.special's ``jv``, ``yv``, ``iv`` and ``kv``, and
``j0 j1 y0 y1 i0 i1 k0 k1`` (heat flow in cylinders, vibrating membranes, diffraction).

The derivative in ``x`` of each kind is a combination of the same kind at orders ``v - 1``
and ``v + 1`` (``J' = (J[v-1] - J[v+1]) / 2``, ``I' = (I[v-1] + I[v+1]) / 2``, ``K' = -(K[v-1]
+ K[v+1]) / 2``, ``Y`` as ``J``), so one primitive with the kind and the order as parameters
carries derivatives of every order.  The order is data: neither scipy nor SpecialFunctions.jl
differentiates in it.  Orders 0 and 1 are computed by scipy's own ``j0``, ``j1``, ... .

>>> import numpy as np, scipy.special, pyzygote as pz
>>> bool(np.isclose(pz.grad(lambda x: scipy.special.j0(x))(1.5), -scipy.special.j1(1.5), rtol=1e-15))
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

__all__ = ["bessel_p"]

# kind: (scipy's function of any order, of orders 0 and 1, sign of the v + 1 term, overall sign)
_KINDS = {
    "j": ("jv", ("j0", "j1"), -1.0, 1.0),
    "y": ("yv", ("y0", "y1"), -1.0, 1.0),
    "i": ("iv", ("i0", "i1"), 1.0, 1.0),
    "k": ("kv", ("k0", "k1"), 1.0, -1.0),
}


def _special() -> Any:
    import scipy.special

    return scipy.special


def _impl(x: Any, *, kind: str, order: float) -> Any:
    general, (zeroth, first), _, _ = _KINDS[kind]
    special = _special()
    if order in (0.0, 1.0):
        value = getattr(special, first if order else zeroth)(x)
    else:
        value = getattr(special, general)(order, x)
    return np.asarray(value, dtype=np.asarray(x).dtype)[()]


bessel_p = Primitive("bessel")
bessel_p.def_abstract_eval(lambda x, *, kind, order: elementwise_aval(x))
bessel_p.def_impl(_impl)


def _bessel_jvp(g: Any, ans: Any, x: Any, *, kind: str, order: float) -> Any:
    _, _, upper, sign = _KINDS[kind]
    below = bessel_p.bind(x, kind=kind, order=order - 1.0)
    above = bessel_p.bind(x, kind=kind, order=order + 1.0)
    return g * ((below + upper * above) * (0.5 * sign))


defjvp(bessel_p, _bessel_jvp)
# Julia: SpecialFunctions' besselj, bessely, besseli and besselk, NaN where scipy's are NaN
_JULIA = {"j": "PyZygote.besselj_of", "y": "PyZygote.bessely_of", "i": "PyZygote.besseli_of", "k": "PyZygote.besselk_of"}
bessel_p.def_julia(lambda e, x, *, kind, order: f"{_JULIA[kind]}.({x}, {e.literal(float(order), np.float64)})")


scalar_rule_by_impl(bessel_p, "_bessel", "kind", "order")


def _constant_order(name: str, v: Any) -> float:
    if isinstance(v, Tracer):
        raise UnsupportedOperationError(
            f"scipy.special.{name}: the order is differentiated by neither scipy nor SpecialFunctions.jl; "
            "pass it as a number (only x is traced)"
        )
    order = np.asarray(v)
    if order.ndim != 0 or order.dtype.kind not in "iuf":
        raise UnsupportedOperationError(
            f"scipy.special.{name} is traced for one real order at a time, got {order!r}: "
            f"np.stack([scipy.special.{name}(v, x) for v in orders])"
        )
    return float(order)


def _handler(name: str, kind: str, order: float) -> Any:
    """scipy.special.<name>'s dtype and broadcasting rules, binding the primitive to x alone (the
    order operand, ``jv(v, x)``'s ``v``, only takes part in numpy's type resolution)."""
    return handler_with_parameters(getattr(_special(), name), bessel_p, kind=kind, order=order)


def _register(kind: str) -> None:
    general, (zeroth, first), _, _ = _KINDS[kind]
    implements_scipy_ufunc(zeroth)(lambda x, **kw: _handler(zeroth, kind, 0.0)(x, **kw))
    implements_scipy_ufunc(first)(lambda x, **kw: _handler(first, kind, 1.0)(x, **kw))
    implements_scipy_ufunc(general)(lambda v, x, **kw: _handler(general, kind, _constant_order(general, v))(v, x, **kw))


for _kind in _KINDS:
    _register(_kind)

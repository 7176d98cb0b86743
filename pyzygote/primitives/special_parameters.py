"""scipy.special functions of a traced ``x`` and constant parameters (a Bessel order, an
incomplete gamma function's ``a``): the pieces their primitive families share.

The parameters are the primitive's params, not operands; they take part only in numpy's type
resolution of the ufunc (a Python number is weak: float32 ``x`` stays float32), and scalarized
right-hand sides compute such a function by a helper that calls the primitive's ``impl``.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> bool(np.isclose(pz.grad(lambda x: scipy.special.jv(2.0, x))(1.0), (scipy.special.jv(1.0, 1.0) - scipy.special.jv(3.0, 1.0)) / 2))
True
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from pyzygote.primitive import Primitive
from pyzygote.primitives.elementwise import ufunc_handler

__all__ = ["handler_with_parameters", "scalar_rule_by_impl"]


class _WithParameters:
    """``prim`` bound to its last operand with fixed ``params``: what ``ufunc_handler`` binds."""

    def __init__(self, prim: Primitive, params: tuple[tuple[str, Any], ...]):
        self.prim, self.params = prim, dict(params)

    def bind(self, *operands: Any) -> Any:
        return self.prim.bind(operands[-1], **self.params)


@functools.lru_cache(maxsize=None)
def _cached_handler(ufunc: Any, prim: Primitive, params: tuple[tuple[str, Any], ...]) -> Callable[..., Any]:
    return ufunc_handler(ufunc, _WithParameters(prim, params))  # type: ignore[arg-type]


def handler_with_parameters(ufunc: Any, prim: Primitive, **params: Any) -> Callable[..., Any]:
    """scipy.special ``ufunc``'s dtype and broadcasting rules, binding ``prim`` to ``x`` (its last
    operand) with ``params``; made once per ufunc and parameters."""
    return _cached_handler(ufunc, prim, tuple(sorted(params.items())))


def scalar_rule_by_impl(prim: Primitive, helper: str, *names: str) -> None:
    """Give ``prim`` a scalar rule (:mod:`pyzygote.transforms.scalarize`) that calls its ``impl`` on
    a float, with the params ``names`` written into the generated code as constants."""
    from pyzygote.transforms.scalarize import register_helper

    def of_float(*args: Any) -> float:
        *values, x = args
        return float(prim.impl(np.float64(x), **dict(zip(names, values))))

    register_helper(helper, of_float)
    prim.scalar = lambda s, x, **params: [f"{helper}({''.join(repr(params[n]) + ', ' for n in names)}{e})" for e in x]

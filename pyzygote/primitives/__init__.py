"""Primitive families; importing this package registers every rule.

One module per family holds each primitive's abstract evaluation, NumPy
implementation, derivative rules, Julia emission and numpy bindings.

>>> import pyzygote.primitives
>>> from pyzygote.primitive import PRIMITIVES
>>> "einsum" in PRIMITIVES and "gather" in PRIMITIVES
True
"""

from pyzygote.primitives import shape, reduction, elementwise, logic, indexing, traced_indexing, linalg, svd, qr, ode, nonlinear, julia_call, composites, scipy_special, gamma, error_function, exprel, bessel, special_integrals, incomplete_gamma, incomplete_beta, matrix_exponential  # noqa: F401

__all__ = ["shape", "reduction", "elementwise", "logic", "indexing", "traced_indexing", "linalg", "svd", "qr", "ode", "nonlinear", "julia_call", "composites", "scipy_special", "gamma", "error_function", "exprel", "bessel", "special_integrals", "incomplete_gamma", "incomplete_beta", "matrix_exponential"]

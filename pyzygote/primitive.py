"""Primitives and the helpers that register their rules.

A primitive carries every rule about itself: ``abstract_eval`` (shape and
dtype), ``impl`` (NumPy engine), ``jvp`` (forward derivative), ``transpose``
(only for primitives linear in some inputs: reverse mode is
linearize-then-transpose), ``julia`` (Julia emission), and optionally ``batch``
(many tangents at once, where that saves work).  Each primitive
family lives in one module of :mod:`pyzygote.primitives` and registers all of
them there.

Rules are written with ordinary numpy operations on their arguments, which
may be numpy arrays (evaluated at once) or tracers (recorded into the IR), so
a rule is also the code that builds derivative programs.

>>> from pyzygote.primitive import PRIMITIVES
>>> PRIMITIVES["sin"].impl(0.0)
np.float64(0.0)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.ir import Aval

__all__ = [
    "Primitive",
    "PRIMITIVES",
    "Undefined",
    "defjvp",
    "deflinear",
    "zeros",
    "add_tangents",
]

PRIMITIVES: dict[str, "Primitive"] = {}


def _tracer_type() -> type:
    global _TRACER
    if _TRACER is None:
        from pyzygote.tracer import Tracer  # not at import: pyzygote.tracer imports this module

        _TRACER = Tracer
    return _TRACER


_TRACER: Any = None


class Primitive:
    """A named operation of the IR with its rules registered beside it."""

    def __init__(self, name: str, *, multiple_results: bool = False):
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} is registered twice")
        self.name = name
        self.multiple_results = multiple_results
        self.abstract_eval: Callable[..., Any] | None = None
        self.impl: Callable[..., Any] | None = None
        self.jvp: Callable[..., Any] | None = None
        self.transpose: Callable[..., Any] | None = None
        self.julia: Callable[..., Any] | None = None
        self.scalar: Callable[..., Any] | None = None  # see pyzygote.transforms.scalarize
        self.batch: Callable[..., Any] | None = None  # see pyzygote.transforms.batch
        # On rank-0 operands: a Python expression over numpy scalars ("({0} * {1})") equal to
        # ``impl``, results and warnings alike (see pyzygote.transforms.evaluate); a str, or a
        # function of the params giving one or None.
        self.numpy_scalar: str | Callable[..., str | None] | None = None
        # Whether that expression returns one of its operands as it is (np.minimum's), so it
        # stands for ``impl`` only where every operand already has the result's dtype.
        self.numpy_scalar_picks = False
        # Whether the NumPy engine can run an equation, from its params (None: always); a Julia
        # function's call and a solve with a Julia right-hand side or solver cannot.
        self.on_numpy: Callable[..., bool] | None = None
        # No derivative in any input (np.floor, np.sign: piecewise constant), or none in the inputs
        # listed (their JVP rule is None); read by pyzygote.zero_gradient, whose warning names the
        # operation that leaves a derivative structurally zero.
        self.zero_derivative = False
        self.no_tangent_from: frozenset[int] = frozenset()
        # For compiled and interpreted programs: a function of the equation (its params and the
        # avals of its operands) giving a callable of the operands alone equal to ``impl``, or
        # None for ``impl`` with the params bound.  A long loop's gradient runs thousands of
        # equations on vectors of a few entries, where binding keywords on each call, and the
        # generic path of ``impl``, cost as much as the operation.
        self.specialize: Callable[..., Callable[..., Any] | None] | None = None
        # Whether the JVP rule reads the program and equation being differentiated
        # (pyzygote.transforms.jvp.equation_being_differentiated): an ODE solve's does.
        self.jvp_reads_uses = False
        PRIMITIVES[name] = self

    def __repr__(self) -> str:
        return f"Primitive({self.name})"

    def bind(self, *args: Any, **params: Any) -> Any:
        """Apply the primitive: record it when an argument is traced, else evaluate."""
        builder = None
        tracer = _TRACER or _tracer_type()
        for a in args:
            if isinstance(a, tracer):
                # The innermost trace records it; it lifts values of the traces around it.
                if builder is None or a._builder.level > builder.level:
                    builder = a._builder
        if builder is not None:
            return builder.add_eqn(self, args, params)
        return self.impl(*args, **params)

    # Registration decorators, so a family module reads as a table of rules.
    def def_abstract_eval(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.abstract_eval = fn
        return fn

    def def_impl(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.impl = fn
        return fn

    def def_transpose(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.transpose = fn
        return fn

    def def_julia(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.julia = fn
        return fn


class Undefined:
    """Marks a linear input of an equation being transposed (its value is unknown)."""

    __slots__ = ("aval",)

    def __init__(self, aval: Aval):
        self.aval = aval


def aval_of(x: Any) -> Aval:
    if isinstance(x, Undefined):
        return x.aval
    aval = getattr(x, "aval", None)
    return aval if isinstance(aval, Aval) else Aval.of(x)


def zeros(aval: Aval) -> np.ndarray:
    return np.zeros(aval.shape, aval.dtype)


def add_tangents(a: Any, b: Any) -> Any:
    """Sum of two tangents where ``None`` is a symbolic zero."""
    if a is None:
        return b
    if b is None:
        return a
    return add_any.bind(a, b)


def defjvp(prim: Primitive, *rules: Callable[..., Any] | None) -> None:
    """Register one JVP contribution per argument, as in HIPS autograd's tables.

    ``rules[i](g, ans, *args, **params)`` returns the tangent of the output
    due to the tangent ``g`` of argument ``i``; it must be linear in ``g``.
    ``None`` marks an argument that is not differentiable.
    """

    def jvp(primals: Sequence[Any], tangents: Sequence[Any], **params: Any) -> Any:
        ans = prim.bind(*primals, **params)
        out = None
        for rule, g in zip(rules, tangents):
            if g is not None and rule is not None:
                out = add_tangents(out, rule(g, ans, *primals, **params))
        return ans, out

    prim.jvp = jvp
    prim.no_tangent_from = frozenset(i for i, rule in enumerate(rules) if rule is None)


def deflinear(prim: Primitive, transpose: Callable[..., Any]) -> None:
    """Register a primitive that is linear in all its arguments.

    Its JVP applies the primitive to the tangents; ``transpose(ct, *args,
    **params)`` returns one cotangent per argument.
    """

    def jvp(primals: Sequence[Any], tangents: Sequence[Any], **params: Any) -> Any:
        ans = prim.bind(*primals, **params)
        if all(t is None for t in tangents):
            return ans, None
        ts = [zeros(aval_of(p)) if t is None else t for p, t in zip(primals, tangents)]
        return ans, prim.bind(*ts, **params)

    prim.jvp = jvp
    prim.transpose = transpose


# ``add_any`` sums tangents and cotangents; it is the one primitive every
# transformation relies on, so it lives here rather than in a family module.
add_any = Primitive("add_any")


@add_any.def_abstract_eval
def _add_any_aval(x: Aval, y: Aval) -> Aval:
    if x != y:
        raise TypeError(f"add_any needs equal avals, got {x} and {y}")
    return x


add_any.def_impl(np.add)
deflinear(add_any, lambda ct, x, y: (ct, ct))
add_any.def_julia(lambda e, x, y: f"{x} .+ {y}")

from pyzygote.transforms.scalarize import elementwise as _scalar_elementwise  # noqa: E402

add_any.scalar = _scalar_elementwise("({0} + {1})")
add_any.numpy_scalar = "({0} + {1})"

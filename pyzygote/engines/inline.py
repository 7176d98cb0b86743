"""Transformations called inside a trace: their programs are recorded into it.

``pz.gradient(g, x)`` called while pyzygote traces another function (``x``
being one of its traced values) computes nothing.  The derivative program of
``g`` is evaluated on the traced values, which records its equations in the
enclosing trace, and the enclosing transformation differentiates them like
any others.  Values of the enclosing trace that ``g`` reads from its closure
are extra inputs of ``g``'s program (``lifted``), held constant by the inner
transformation, as in JAX.

>>> import numpy as np, pyzygote as pz
>>> def slope_energy(x):  # d/dx of 0.5 * |dg/dx|^2 for g = sum(x^3)
...     (dg,) = pz.gradient(lambda y: np.sum(y**3), x)
...     return 0.5 * np.sum(dg**2)
>>> pz.gradient(slope_energy, np.array([1.0, 2.0]))  # 18 x^3
(array([ 18., 144.]),)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.engines.numpy_engine import _cached, grad_program, with_gaps
from pyzygote.transforms.batch import along_one_input, hessian_by_columns, per_column
from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Program
from pyzygote.tracer import Builder, Tracer
from pyzygote.transforms.evaluate import eval_program
from pyzygote.transforms.jvp import jvp_program
from pyzygote.transforms.linearize import linearize_programs
from pyzygote.transforms.vjp import vjp_programs

__all__ = ["InlineEngine"]


class InlineEngine:
    """The engine interface of :class:`pyzygote.engines.numpy_engine.NumpyEngine`, on traced values."""

    name = "inline"

    def __init__(self, lifted: Sequence[Any]):
        self.lifted = list(lifted)

    def evaluate(self, prog: Program, arrays: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(eval_program(prog, *arrays, *self.lifted))

    def value_and_grad(
        self, prog: Program, arrays: Sequence[Any], wrt: tuple[bool, ...] | None = None
    ) -> tuple[tuple[Any, ...], list[Any]]:
        # The lifted values (inputs after the arrays) are held constant: no derivative.
        mask = (*(wrt or (True,) * len(arrays)), *(False,) * len(self.lifted))
        y, *rest = eval_program(grad_program(prog, mask), *arrays, *self.lifted)
        n = sum(mask)
        return (y, *rest[n:]), with_gaps(rest[:n], mask)[: len(arrays)]

    def vjp(self, prog: Program, arrays: Sequence[Any]) -> tuple[tuple[Any, ...], Callable[..., Any]]:
        fwd, bwd = vjp_programs(prog)
        outs = eval_program(fwd, *arrays, *self.lifted)
        n, k = len(prog.outputs), len(arrays)
        ys, res = outs[:n], outs[n:]

        def backward(*cts: Any) -> tuple[Any, ...]:
            if not all(Builder.is_active(r._builder) for r in [*arrays, *res] if isinstance(r, Tracer)):
                raise UnsupportedOperationError(
                    "this pullback was made inside a trace that has ended: call it within the traced function"
                )
            return tuple(eval_program(bwd, *res, *cts)[:k])

        return tuple(ys), backward

    def _tangents_run(self, prog: Program, arrays: Sequence[Any], tangents: Sequence[Any]) -> list[Any]:
        # The lifted values are held constant: zero tangents (jvp_program takes one per float input).
        still = [np.zeros(v.shape, v.dtype) for v in self.lifted if v.dtype.kind == "f"]
        return eval_program(_cached(prog, "jvp", jvp_program), *arrays, *self.lifted, *tangents, *still)

    def jvp(self, prog: Program, arrays: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
        outs = self._tangents_run(prog, arrays, tangents)
        n = len(prog.outputs)
        return outs[:n], outs[n:]

    def linearize(
        self, prog: Program, arrays: Sequence[Any], wrt: tuple[bool, ...], tangent_outputs: Sequence[int] | None = None
    ) -> tuple[tuple[Any, ...], Callable[..., tuple[Any, ...]]]:
        # The lifted values are held constant: no tangent.
        primal, linear = linearize_programs(prog, (*wrt, *(False,) * len(self.lifted)), tangent_outputs)
        outs = eval_program(primal, *arrays, *self.lifted)
        n = len(prog.outputs)
        ys, res = outs[:n], outs[n:]
        tangent = lambda *ts: tuple(eval_program(linear, *res, *ts))  # noqa: E731
        avals = [v.aval for v in linear.inputs[len(res) :]]
        tangent.columns = lambda T, position=0: per_column(along_one_input(tangent, avals, position))(T)  # type: ignore[attr-defined]
        return tuple(ys), tangent

    def hessian(self, prog: Program, arrays: Sequence[Any], argnum: int) -> Any:
        wrt = tuple(i == argnum for i in range(len(arrays)))
        mask = (*wrt, *(False,) * len(self.lifted))
        _, tangent = self.linearize(grad_program(prog, mask), arrays, wrt, tangent_outputs=(1,))
        return hessian_by_columns(tangent.columns, arrays[argnum])

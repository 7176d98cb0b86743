"""Calls of a ``pz.julia_function`` inside traced numpy code (Julia engine only).

A Julia function called on traced values becomes one ``julia_call`` equation.
The Julia engine emits the call into the generated function, so Zygote
differentiates the user's Julia code together with the rest of the program;
the NumPy engine cannot run Julia code and says so.  The shapes and dtypes of
the results are fixed at trace time (see ``JuliaFunction`` in
:mod:`pyzygote.julia.functions`): from ``result_shape``, or from one call of
the function on arrays of ones.

>>> import numpy as np, pyzygote as pz
>>> scale = pz.julia_function("x -> 2 .* x", result_shape=(3,))
>>> prog = pz.make_program(lambda x: np.sum(scale(x) ** 2), np.ones(3))
>>> [e.prim.name for e in prog.eqns]
['julia_call', 'pow', 'reduce_sum']
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from pyzygote.ir import Aval
from pyzygote.primitive import Primitive

__all__ = ["julia_call", "julia_call_p"]

julia_call_p = Primitive("julia_call", multiple_results=True)


def _numpy_cannot(fn: Any) -> TypeError:
    return TypeError(
        f"this program calls the Julia function {fn!r}, which runs only on the Julia engine: "
        "pass engine='julia' (or set up Julia for engine='auto')"
    )


@julia_call_p.def_abstract_eval
def _julia_call_aval(*xs: Aval, fn: Any, in_tree: Hashable, out_avals: tuple[Aval, ...]) -> tuple[Aval, ...]:
    return out_avals


@julia_call_p.def_impl
def _julia_call_impl(*xs: Any, fn: Any, **_: Any) -> Any:
    raise _numpy_cannot(fn)


def _julia_call_jvp(primals: Any, tangents: Any, *, fn: Any, **_: Any) -> Any:
    # The Julia engine differentiates the whole generated program with Zygote; only pyzygote's
    # own transforms come here: the NumPy engine's, and those of a transformation nested in
    # traced code, which records its derivative program on either engine.
    from pyzygote.tracer import Builder

    if Builder.tracing():
        raise TypeError(
            f"a transformation nested in traced code cannot differentiate the Julia function {fn!r}: "
            "pyzygote differentiates nested transformations itself, and cannot see into Julia code. "
            "Take that derivative inside Julia (Zygote in the Julia function) or outside the traced code."
        )
    raise _numpy_cannot(fn)


julia_call_p.jvp = _julia_call_jvp
julia_call_p.on_numpy = lambda **_: False


@julia_call_p.def_julia
def _julia_call_julia(e: Any, *xs: Any, fn: Any, in_tree: Hashable, out_avals: tuple[Aval, ...]) -> str:
    from pyzygote.julia.codegen import jtuple
    from pyzygote.julia.functions import call_arguments

    sizes = jtuple([jtuple([str(d) for d in a.shape]) for a in out_avals])
    call = f"PyZygote.results({e.julia_object(fn)}({', '.join(call_arguments(in_tree, list(xs)))}), {sizes})"
    return f"first({call})" if len(out_avals) == 1 else call


def julia_call(fn: Any, in_tree: Hashable, out_avals: Sequence[Aval], operands: Sequence[Any]) -> list[Any]:
    """Record ``fn(*args)`` (the arguments flattened to ``operands`` with structure ``in_tree``)."""
    outs = julia_call_p.bind(*operands, fn=fn, in_tree=in_tree, out_avals=tuple(out_avals))
    return list(outs)

"""The Julia engine: programs compiled to Julia and differentiated by Zygote.jl.

Same interface as :class:`pyzygote.engines.numpy_engine.NumpyEngine`.  For each
program, the first call emits Julia source (:mod:`pyzygote.julia.codegen`),
evaluates it once in a fresh module, builds the closure over the program's
constants once, and caches it on ``prog._compiled["julia"]``; later calls cost
one call into Julia (plus Julia's own compilation the first time a new
derivative is taken).  See :mod:`pyzygote.julia.convert` for the array contract
and for when results are views of Julia memory (values, gradients, JVPs and
Hessians) or copies (a pullback's results, which its closure may still read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from pyzygote.ir import Aval, Program
from pyzygote.julia import session
from pyzygote.julia.convert import from_julia, results_from_julia, to_julia
from pyzygote.ode.solvers import runs_on_numpy

__all__ = ["JuliaEngine", "julia_engine", "julia_source"]


@dataclass
class CompiledProgram:
    fn: Any  # the Julia closure (x1, x2, ...) -> Tuple of outputs
    consts: tuple[np.ndarray, ...]  # views of the closure's constant arrays: results must not alias them
    calls_julia: bool  # calls a user's Julia function: its results may be arrays that function keeps
    source: str
    name: str
    module: Any

    def __del__(self, _release: Any = session.release_in_main_thread) -> None:
        _release(self.fn, self.consts, self.module)


def _compile(prog: Program) -> CompiledProgram:
    from pyzygote.julia.codegen import emit_program

    if _solves_odes(prog):
        session.load_ode_packages()
        if any(not runs_on_numpy(e.params["opts"].alg) for e in _equations(prog) if e.prim.name.startswith("odesolve")):
            session.load_extra_solvers()
    name = session.next_name("pz_program")
    emitted = emit_program(prog, name)
    module = session.new_module("Program", import_pyzygote=True)
    session.include_text(module, emitted.source, f"{emitted.name}.jl", origin="program")
    builder = session.runtime_call("getname", module, emitted.name, origin="program")
    fn, const_arrays = session.runtime_call("build", builder, *map(_maker_argument, emitted.consts), origin="program")
    consts = tuple(np.asarray(c) for c in const_arrays)
    calls_julia = any(eqn.prim.name == "julia_call" for eqn in _equations(prog))
    return CompiledProgram(fn, consts, calls_julia, emitted.source, emitted.name, module)


def _maker_argument(const: Any) -> Any:
    """A constant for the maker: arrays by the array contract, Julia functions as themselves."""
    from pyzygote.julia.functions import is_julia_function

    return const._julia() if is_julia_function(const) else to_julia(const)


def _equations(prog: Program) -> Iterator[Any]:
    """The equations of ``prog`` and of the programs emitted inside it: an nlsolve residual's
    and an ODE right-hand side's (``rhs.program``), which may solve an ODE themselves (a
    shooting method) or call a Julia function."""
    for eqn in prog.eqns:
        yield eqn
        inner = getattr(eqn.params.get("rhs"), "program", None)
        if inner is not None:
            yield from _equations(inner)


def _solves_odes(prog: Program) -> bool:
    return any(eqn.prim.name.startswith("odesolve") for eqn in _equations(prog))


def compiled(prog: Program) -> CompiledProgram:
    hit = prog._compiled.get("julia")
    if hit is None:
        with session.LOCK:
            hit = prog._compiled.get("julia")
            if hit is None:
                hit = prog._compiled["julia"] = _compile(prog)
    return hit


def julia_source(prog: Program) -> str:
    """The Julia source the engine runs for ``prog`` (compiles it if needed; starts Julia)."""
    return compiled(prog).source


def _check_count(values: Sequence[Any], avals: Sequence[Aval], what: str) -> None:
    if len(values) != len(avals):
        raise ValueError(f"the Julia engine returned {len(values)} {what}s, expected {len(avals)}; this is a pyzygote bug")


def _origin(c: CompiledProgram) -> str:
    """Whose code a Julia error comes from: generated code, or a user's Julia function in it."""
    return "user" if c.calls_julia else "program"


def _views(
    values: Sequence[Any], avals: Sequence[Aval], what: str, keep_apart: Sequence[Any], c: CompiledProgram
) -> tuple[Any, ...]:
    """Fresh results as numpy views of Julia memory (copied where they could alias ``keep_apart``).

    A program calling a user's Julia function may return an array that function keeps (a
    global, say): its results are copies."""
    if c.calls_julia:
        return _copies(values, avals, what)
    _check_count(values, avals, what)
    return results_from_julia(values, [(a.dtype, a.shape) for a in avals], what, keep_apart=keep_apart)


def _copies(values: Sequence[Any], avals: Sequence[Aval], what: str) -> tuple[Any, ...]:
    _check_count(values, avals, what)
    return tuple(from_julia(v, a.dtype, a.shape, what) for v, a in zip(values, avals))


class JuliaEngine:
    """Evaluate and differentiate programs with Julia and Zygote.

    Results are converted to numpy while the Julia lock is held: reading a
    Julia array from Python is itself a call into Julia.
    """

    name = "julia"

    def evaluate(self, prog: Program, arrays: Sequence[np.ndarray]) -> tuple[Any, ...]:
        c = compiled(prog)
        with session.LOCK:
            outs = session.runtime_call("evaluate", c.fn, *map(to_julia, arrays), origin=_origin(c))
            return _views(outs, prog.out_avals, "output", c.consts, c)

    def value_and_grad(
        self, prog: Program, arrays: Sequence[np.ndarray], wrt: tuple[bool, ...] | None = None
    ) -> tuple[tuple[Any, ...], list[Any]]:
        """All outputs, and the gradient of the first (a scalar) with respect to the inputs ``wrt``
        marks (Zygote computes them all; the others become ``None``)."""
        c = compiled(prog)
        with session.LOCK:
            vals, grads = session.runtime_call("value_and_gradient", c.fn, *map(to_julia, arrays), origin=_origin(c))
            values = _views(vals, prog.out_avals, "output", c.consts, c)
            grads = list(_views(grads, prog.in_avals, "gradient", c.consts + values, c))
            return values, grads if wrt is None else [g if w else None for g, w in zip(grads, wrt)]

    def vjp(self, prog: Program, arrays: Sequence[np.ndarray]) -> tuple[tuple[Any, ...], Callable[..., Any]]:
        c = compiled(prog)
        in_avals = prog.in_avals
        with session.LOCK:
            ys, back = session.runtime_call("pullback", c.fn, *map(to_julia, arrays), origin=_origin(c))
            values = _copies(ys, prog.out_avals, "output")
            held = session.MainThreadValue(back)

        def backward(*cts: Any) -> list[Any]:
            with session.LOCK:
                grads = session.call(held.value, *map(to_julia, cts), origin=_origin(c))
                return list(_copies(grads, in_avals, "cotangent"))

        return values, backward

    def jvp(self, prog: Program, arrays: Sequence[np.ndarray], tangents: Sequence[np.ndarray]) -> tuple[Any, Any]:
        c = compiled(prog)
        args = [to_julia(a) for a in arrays] + [to_julia(t) for t in tangents]
        with session.LOCK:
            ys, ts = session.runtime_call("jvp", c.fn, len(arrays), *args, origin=_origin(c))
            values = _views(ys, prog.out_avals, "output", c.consts, c)
            return values, _views(ts, prog.out_avals, "tangent", c.consts + values, c)

    def jacobian_forward(self, prog: Program, arrays: Sequence[np.ndarray], argnum: int) -> np.ndarray:
        """The Jacobian of the first output in input ``argnum``, shape ``out.shape + x.shape``,
        from one ``ForwardDiff.jacobian`` (columns in chunks of duals, not one call per column)."""
        c = compiled(prog)
        x, out = prog.in_avals[argnum], prog.out_avals[0]
        with session.LOCK:
            j = session.runtime_call("jacobian", c.fn, argnum + 1, *map(to_julia, arrays), origin=_origin(c))
            (jac,) = results_from_julia((j,), [(out.dtype, (out.size, x.size))], "Jacobian", c.consts)
        # Julia's rows and columns are column-major linear indices: a column-major reshape
        # gives each back its numpy index.
        return np.reshape(np.asarray(jac), out.shape + x.shape, order="F")

    def hessian(self, prog: Program, arrays: Sequence[np.ndarray], argnum: int) -> np.ndarray:
        c = compiled(prog)
        x = prog.in_avals[argnum]
        with session.LOCK:
            # PyZygote.hessian takes a Julia (1-based) argument number.
            h = session.runtime_call("hessian", c.fn, argnum + 1, *map(to_julia, arrays), origin=_origin(c))
            (hess,) = results_from_julia((h,), [(x.dtype, x.shape + x.shape)], "Hessian", c.consts)
            return np.asarray(hess)


_ENGINE: list[JuliaEngine] = []


def julia_engine() -> JuliaEngine:
    """The Julia engine, with Julia started (fails fast with JuliaNotAvailableError)."""
    session.start()
    if not _ENGINE:
        _ENGINE.append(JuliaEngine())
    return _ENGINE[0]

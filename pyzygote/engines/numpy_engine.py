"""The NumPy engine: runs programs and their derivative programs with numpy.

It is the embedded default and the executable reference for the Julia
engine.  Every derivative is an IR program (see :mod:`pyzygote.transforms`),
compiled once to straight-line Python and cached on the program.  Results
never alias arguments, constants, each other or kept residuals (see
:mod:`pyzygote.engines.results`).

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(x ** 3), np.array([1.0, 2.0]), engine="numpy")[0]
array([ 3., 12.])
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.engines.results import arrays_in, unaliased
from pyzygote.gc_pause import gc_paused
from pyzygote.ir import Eqn, Literal, Program, Var
from pyzygote.primitives.elementwise import ELEMENTWISE
from pyzygote.transforms.batch import along_one_input, eval_batched, has_batch_rules, hessian_by_columns, per_column
from pyzygote.transforms.cse import cse
from pyzygote.transforms.evaluate import compile_program, prune
from pyzygote.transforms.jvp import jvp_program
from pyzygote.transforms.linearize import linearize_programs
from pyzygote.transforms.simplify import fold_negations
from pyzygote.transforms.vjp import vjp_programs

__all__ = ["NumpyEngine", "grad_program", "with_gaps"]

_MUL = ELEMENTWISE["mul"]


def _cached(prog: Program, key: str, build: Callable[[Program], Program]) -> Program:
    hit = prog._compiled.get(key)
    if hit is None:
        hit = prog._compiled[key] = gc_paused(build)(prog)
    return hit


def grad_program(prog: Program, wrt: tuple[bool, ...] | None = None) -> Program:
    """``x -> (y, dy/dx..., aux...)`` as one program, for a program whose first output is a scalar ``y``.

    Further outputs are auxiliary values: computed with ``y``, not differentiated.
    With ``wrt``, only the inputs it marks get a derivative (the others are data,
    and nothing is computed for them).
    """

    def build(p: Program) -> Program:
        fwd, bwd = vjp_programs(p, n_seeded=1)
        n_out = len(p.outputs)
        ys, residuals = fwd.outputs[:n_out], fwd.outputs[n_out:]
        seed = Literal(np.ones((), dtype=p.outputs[0].aval.dtype), p.outputs[0].aval.dtype)
        # The backward program spliced after the forward one, its inputs replaced by what feeds
        # them: no equation is bound (and its rules run) again, which long programs feel.
        feeds = {v.uid: a for v, a in zip(bwd.inputs, (*residuals, seed))}
        eqns = list(fwd.eqns)
        consts = {v.uid: (v, c) for prog_ in (fwd, bwd) for v, c in zip(prog_.constvars, prog_.consts)}
        for eqn in bwd.eqns:
            if any(isinstance(a, Var) and a.uid in feeds for a in eqn.inputs):
                eqn = Eqn(eqn.prim, tuple(_fed(a, feeds) for a in eqn.inputs), eqn.params, eqn.outputs)
                times_one = _times_seed(eqn, seed)
                if times_one is not None:  # 1.0 * x is x, bit for bit
                    feeds[eqn.outputs[0].uid] = times_one
                    continue
                if all(isinstance(a, Literal) for a in eqn.inputs) and not eqn.prim.multiple_results:
                    # Of the seed alone (its broadcast, say): computed now, as tracing would.
                    (out,) = eqn.outputs
                    value = np.asarray(eqn.prim.impl(*(a.value for a in eqn.inputs), **eqn.params)).copy()
                    value.setflags(write=False)
                    consts[out.uid] = (out, value)
                    continue
            eqns.append(eqn)
        grads = [_fed(a, feeds) for a in bwd.outputs]  # one per float input
        if wrt is not None:
            of_floats = [w for w, v in zip(wrt, p.inputs) if v.aval.dtype.kind == "f"]
            grads = [g for g, wanted in zip(grads, of_floats) if wanted]
        program = Program(
            inputs=fwd.inputs,
            constvars=tuple(v for v, _ in consts.values()),
            consts=tuple(c for _, c in consts.values()),
            eqns=eqns,
            outputs=(ys[0], *grads, *ys[1:]),
        )
        if not _simplifying_pays(eqns):
            return prune(program)
        # A loop's gradient repeats computations (the forward pass's 0.5 * dt * a read twice,
        # the backward pass's scalings of one cotangent) and negates cotangents before adding
        # them: both go, without changing a bit of any value (one equation in nine for a
        # velocity-Verlet chain).
        return fold_negations(cse(program))

    return _cached(prog, "grad" if wrt is None or all(wrt) else ("grad", wrt), build)


def _simplifying_pays(eqns: Sequence[Eqn]) -> bool:
    """Whether dropping repeated equations and negations repays its time (about 4 us an
    equation, once): where they are numpy calls on arrays (about a microsecond each, on every
    call), not where nearly all are operators on single numbers (a tenth of that).  A scalar
    rainfall-runoff loop's gradient program (66,000 equations, 2% on arrays) lost 8% of them,
    which made later gradients 1% cheaper and the first 0.3 s dearer."""
    on_arrays = sum(1 for e in eqns if e.outputs and e.outputs[0].aval.shape != ())
    return on_arrays >= 0.1 * len(eqns)


def _times_seed(eqn: Eqn, seed: Literal) -> Any:
    """The other factor of ``seed * x`` when the product is ``x`` itself (same shape and dtype).

    A scalar loss's seed cotangent multiplies each term's local derivative once: a loop's
    gradient program had a thousand such products."""
    if eqn.prim is not _MUL or len(eqn.inputs) != 2:
        return None
    a, b = eqn.inputs
    other = b if a is seed else a if b is seed else None
    return other if other is not None and other.aval == eqn.outputs[0].aval else None


def _forward_mode_pays(prog: Program, arrays: Sequence[np.ndarray], wrt: tuple[bool, ...] | None) -> bool:
    """Whether a gradient is cheaper by forward mode: the rule lives beside the ODE primitive
    (:func:`pyzygote.primitives.ode.gradient_directions_prefer_forward_mode`); decided once per
    program and ``wrt``."""
    key = ("forward gradient", wrt)
    hit = prog._compiled.get(key)
    if hit is None:
        from pyzygote.ir import split_by_dependence
        from pyzygote.primitives.ode import gradient_directions_prefer_forward_mode

        flags = tuple(wrt) if wrt is not None else (True,) * len(arrays)
        floats = all(a.dtype.kind == "f" for a, w in zip(arrays, flags) if w)
        directions = sum(a.size for a, w in zip(arrays, flags) if w)
        hit = floats and 0 < directions and prog.outputs[0].aval.shape == ()
        if hit:
            _, _, reached = split_by_dependence(prog, {v.uid for v, w in zip(prog.inputs, flags) if w})
            hit = gradient_directions_prefer_forward_mode(prog, reached, directions)
        prog._compiled[key] = hit
    return hit


def _fed(a: Any, feeds: dict[int, Any]) -> Any:
    return feeds.get(a.uid, a) if isinstance(a, Var) else a


def with_gaps(grads: Sequence[Any], wrt: Sequence[bool] | None) -> list[Any]:
    """The wanted gradients spread back over all inputs, ``None`` for the others."""
    if wrt is None:
        return list(grads)
    it = iter(grads)
    return [next(it) if wanted else None for wanted in wrt]


def _constants(*progs: Program) -> list[Any]:
    """Arrays a compiled program may hand back as they are: its constants and literal outputs."""
    out: list[Any] = []
    for p in progs:
        out.extend(p.consts)
        out.extend(o.value for o in p.outputs if isinstance(o, Literal))
    return out


def _quiet_derivatives() -> Any:
    """numpy's floating-point warnings silenced where only derivatives are computed (a pullback's
    backward pass, a Hessian's columns).

    Derivative rules compute terms that ``np.where`` then discards (``x ** (y - 1)`` at ``x = 0``),
    so numpy's warnings there would be false alarms; a NaN or inf that reaches a result raises
    :class:`pyzygote.NonFiniteGradientError` instead.  Programs that also compute the function's
    value keep numpy's warnings, which may be about the value."""
    return np.errstate(all="ignore")


def _warning_as_the_value_would(
    derived: Program, prog: Program, arrays: Sequence[Any], extra: Sequence[Any] = ()
) -> Any:
    """Run ``derived`` (a program computing ``prog``'s value and derivatives) on ``arrays, *extra``,
    with numpy's floating-point warnings only where ``prog`` alone would give them.

    Derivative terms warn falsely (``0 ** -1`` in the derivative of ``x ** 0`` at 0), but numpy's
    warnings about the value itself (log of a negative) must stay: when anything warned, ``prog``
    alone is run again, with numpy's warnings as the user has them set.
    """
    warned: list[str] = []
    # Only what the user's settings would report (numpy ignores underflow by default).
    noted = {kind: "ignore" if how == "ignore" else "call" for kind, how in np.geterr().items()}
    with np.errstate(call=lambda kind, flag: warned.append(kind), **noted):
        outs = compile_program(derived)(*arrays, *extra)
    if warned:
        compile_program(prog)(*arrays)
    return outs


def _detached(res: Sequence[Any], arrays: Sequence[Any]) -> list[Any]:
    """Residuals kept for later, none sharing memory with an argument.

    The caller may write into an argument (a buffer reused between optimizer steps) before it
    calls the pullback, whose gradient must still be the one at the point it was taken: the Julia
    engine copies its arguments, and PyTorch refuses such a write.
    """
    owners = {id(_owner(a)) for a in arrays_in(arrays)}
    # By the arrays that own the memory, not by pairwise memory bounds: a loop's backward pass
    # keeps thousands of residuals (checking each against each argument made pullbacks 44% slower).
    return [r.copy() if isinstance(r, np.ndarray) and id(_owner(r)) in owners else r for r in res]


def _owner(a: np.ndarray) -> np.ndarray:
    """The array whose memory ``a`` views (``a`` itself if it owns its memory)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class NumpyEngine:
    """Evaluate and differentiate programs with numpy."""

    name = "numpy"

    def evaluate(self, prog: Program, arrays: Sequence[np.ndarray]) -> tuple[Any, ...]:
        return unaliased(compile_program(prog)(*arrays), [*arrays, *_constants(prog)])

    def value_and_grad(
        self, prog: Program, arrays: Sequence[np.ndarray], wrt: tuple[bool, ...] | None = None
    ) -> tuple[tuple[Any, ...], list[Any]]:
        """All outputs, and the gradient of the first (a scalar) with respect to the inputs ``wrt`` marks
        (every input by default; ``None`` for the others)."""
        if _forward_mode_pays(prog, arrays, wrt):
            return self._value_and_grad_forward(prog, arrays, wrt)
        gp = grad_program(prog, wrt)
        y, *rest = unaliased(_warning_as_the_value_would(gp, prog, arrays), [*arrays, *_constants(gp)])
        n = len(arrays) if wrt is None else sum(wrt)
        return (y, *rest[n:]), with_gaps(rest[:n], wrt)

    def _value_and_grad_forward(
        self, prog: Program, arrays: Sequence[np.ndarray], wrt: tuple[bool, ...] | None
    ) -> tuple[tuple[Any, ...], list[Any]]:
        """``value_and_grad`` by forward mode: the linearized program run once on the basis
        tangents of every differentiated entry together (see ``_forward_mode_pays``)."""
        flags = tuple(wrt) if wrt is not None else (True,) * len(arrays)
        ys, linear = self.linearize(prog, arrays, flags, tangent_outputs=(0,))
        wanted = [a for a, w in zip(arrays, flags) if w]
        sizes = [a.size for a in wanted]
        k = sum(sizes)
        basis = np.split(np.eye(k), np.cumsum(sizes)[:-1], axis=1)
        ts = [np.reshape(b, (k, *a.shape)).astype(a.dtype) for a, b in zip(wanted, basis)]
        with _quiet_derivatives():
            if has_batch_rules(linear.linear):
                flat = eval_batched(linear.linear, [*linear.res, *ts], [False] * len(linear.res) + [True] * len(ts), k)[0]
            else:
                flat = np.stack([linear.run(*linear.res, *(t[i] for t in ts))[0] for i in range(k)])
        flat = np.reshape(flat, (k,))
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        grads = [np.reshape(g, a.shape).astype(a.dtype) for g, a in zip(parts, wanted)]
        return tuple(ys), with_gaps(grads, wrt)

    def vjp(self, prog: Program, arrays: Sequence[np.ndarray]) -> tuple[tuple[Any, ...], Callable[..., Any]]:
        fwd, bwd = vjp_programs(prog)
        outs = _warning_as_the_value_would(fwd, prog, arrays)
        n = len(prog.outputs)
        ys, res = outs[:n], _detached(outs[n:], arrays)
        run_bwd = compile_program(bwd)
        # The residuals are kept for every call of the backward function: nothing returned may alias them.
        kept = [*arrays, *res, *_constants(fwd, bwd)]

        def backward(*cts: Any) -> tuple[Any, ...]:
            with _quiet_derivatives():
                return unaliased(run_bwd(*res, *cts), [*kept, *cts])

        return unaliased(ys, kept), backward

    def jvp(self, prog: Program, arrays: Sequence[np.ndarray], tangents: Sequence[np.ndarray]) -> tuple[Any, Any]:
        jp = _cached(prog, "jvp", jvp_program)
        outs = unaliased(_warning_as_the_value_would(jp, prog, arrays, tangents), [*arrays, *tangents, *_constants(jp)])
        n = len(prog.outputs)
        return outs[:n], outs[n:]

    def linearize(
        self, prog: Program, arrays: Sequence[np.ndarray], wrt: tuple[bool, ...], tangent_outputs: Sequence[int] | None = None
    ) -> tuple[tuple[Any, ...], "Linear"]:
        """The outputs, and the map from tangents of the inputs ``wrt`` marks to the output
        tangents (those ``tangent_outputs`` selects): the primal work is done once, here."""
        primal, linear = linearize_programs(prog, wrt, tangent_outputs)
        outs = _warning_as_the_value_would(primal, prog, arrays)
        n = len(prog.outputs)
        ys, res = outs[:n], _detached(outs[n:], arrays)
        kept = [*arrays, *res, *_constants(primal, linear)]
        return unaliased(ys, kept), Linear(linear, res, kept)

    def hessian(self, prog: Program, arrays: Sequence[np.ndarray], argnum: int) -> np.ndarray:
        """Forward-over-reverse: the gradient program linearized once, its linear part run on
        the basis tangents."""
        wrt = tuple(i == argnum for i in range(len(arrays)))
        with _quiet_derivatives():
            _, tangent = self.linearize(grad_program(prog, wrt), arrays, wrt, tangent_outputs=(1,))
        return hessian_by_columns(tangent.columns, arrays[argnum])


class Linear:
    """A linear program with its residuals bound: ``dx... -> dy...``."""

    def __init__(self, linear: Program, res: Sequence[Any], kept: Sequence[Any]):
        self.linear, self.res, self.kept = linear, list(res), list(kept)
        self.run = compile_program(linear)

    def __call__(self, *ts: Any) -> tuple[Any, ...]:
        with _quiet_derivatives():
            return unaliased(self.run(*self.res, *ts), [*self.kept, *ts])

    def columns(self, T: np.ndarray, position: int = 0) -> np.ndarray:
        """The first output tangent along each ``T[i]`` in tangent input ``position`` (the others
        zero), stacked."""
        avals = [v.aval for v in self.linear.inputs[len(self.res) :]]
        if not has_batch_rules(self.linear):
            return per_column(along_one_input(self, avals, position))(T)
        ts: list[Any] = [np.zeros(a.shape, a.dtype) for a in avals]
        ts[position] = T
        flags = [False] * len(self.res) + [i == position for i in range(len(avals))]
        with _quiet_derivatives():
            return eval_batched(self.linear, [*self.res, *ts], flags, len(T))[0]

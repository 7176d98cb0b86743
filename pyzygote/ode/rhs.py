"""A right-hand side ``f(u, p, t)`` traced once, with its derivative programs.

From the one traced program pyzygote derives, once per problem size:
the Jacobian ``df/du`` (for stiff solvers), the forward-sensitivity system
``(u, S) -> (f, J_u S + J_p)`` and the adjoint system ``lambda -> (-lambda^T J_u,
-lambda^T J_p)``.  All are IR programs, compiled to straight-line float code
when small (see :mod:`pyzygote.transforms.scalarize`).  The sensitivity and
tangent systems are also right-hand sides in their own right
(:meth:`RHS.sensitivity_system`, :meth:`RHS.tangent_system`), which is how
second derivatives of a solve become first derivatives of a bigger solve.

>>> import numpy as np
>>> rhs = RHS.trace(lambda u, p, t: -p[0] * u, 1, 1)
>>> rhs.jacobian_u(np.array([2.0]), np.array([3.0]), 0.0)
array([[-3.]])
"""

from __future__ import annotations

import collections
import functools
import inspect
import re
import threading
import types
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.errors import CapturedTracerError, TracerBoolError, UnsupportedOperationError
from pyzygote.ir import Literal, Program, Var
from pyzygote.ode.layout import Layout
from pyzygote.ode.solvers import dense_matrix
from pyzygote.primitives.logic import COMPARISONS
from pyzygote.primitives.shape import convert
from pyzygote.tracer import CONTINUOUS, SMOOTH, Builder, Tracer, as_operand
from pyzygote.tracing import guard_is_partial, trace
from pyzygote.transforms.cse import cse
from pyzygote.transforms.evaluate import eval_program, program_from
from pyzygote.transforms.jvp import jvp_eval
from pyzygote.transforms.hoist import compile_hoisted
from pyzygote.transforms.scalarize import compile_scalar, evaluation_ns
from pyzygote.transforms.vjp import vjp_programs

__all__ = ["RHS"]

# Piecewise-constant functions whose jumps, like a comparison's, carry a switching time.
_STEPS = frozenset({"floor", "ceil", "round", "sign", "floordiv", "rem", "argextreme", "argsort", "searchsorted"})
# Up to this many sensitivity entries (states x columns), columns go through the right-hand side
# one JVP at a time; above, together (RHS._along_columns).
_COLUMNS_ONE_BY_ONE = 32

# Continuous, with a derivative that jumps: invisible to first derivatives, not to second ones.
_KINKS = frozenset({"reduce_max", "reduce_min"})
# The same elementwise, unless pyzygote's smooth compositions made them (expit's min(x, 0)) or
# the kink is squared away (see _squared_away).
_ELEMENTWISE_KINKS = frozenset({"abs", "max", "min", "fmax", "fmin"})

# A solve that succeeds stays finite: its trajectory never crosses from numbers to NaN or inf.
_NEVER_CROSSED = frozenset({"isnan", "isinf", "isfinite"})
# Logical operations switch on numbers (nonzero is True); on booleans, the comparison that made
# them is the switch, and is counted where it is made.
_LOGICAL = frozenset({"and", "or", "xor", "not"})
# Compositions whose comparisons cannot make the right-hand side jump (pyzygote.tracer.composition).
_NO_JUMPS = frozenset({SMOOTH, CONTINUOUS})
_NO_KINKS = frozenset({SMOOTH})


def _truncates(eqn: Any) -> bool:
    """Whether ``eqn`` makes floats integers or booleans (``x.astype(int)`` rounds toward 0,
    ``x.astype(bool)`` compares with 0): a step like np.trunc's, which the tangent does not cross."""
    return (
        eqn.prim.name == "convert_element_type"
        and eqn.outputs[0].aval.dtype.kind in "iub"
        and any(isinstance(a, Var) and a.aval.dtype.kind == "f" for a in eqn.inputs)
    )


def _switches(prog: Program, eqn: Any, forgiven: frozenset[str], also: frozenset[str] = frozenset()) -> bool:
    """Whether ``eqn`` compares or rounds its inputs (or is one of ``also``), unless one of
    pyzygote's own compositions of a ``forgiven`` kind made it (``np.logaddexp`` picks its stable
    form with a comparison, and is smooth)."""
    name = eqn.prim.name
    if name not in COMPARISONS and name not in _STEPS and name not in also and not _truncates(eqn):
        return False
    if name in _NEVER_CROSSED or prog.choices.get(eqn.outputs[0].uid) in forgiven:
        return False
    return name not in _LOGICAL or any(a.aval.dtype != np.bool_ for a in eqn.inputs)


def _same_values(prog: Program) -> dict[int, int]:
    """Each variable's uid mapped to that of the first variable computed the same way
    (``u[1]`` read twice is one value), as :func:`pyzygote.transforms.cse.cse` would merge them."""
    canon: dict[int, int] = {}
    seen: dict[Any, int] = {}
    for e in prog.eqns:
        params = tuple((k, (v.shape, v.tobytes()) if isinstance(v, np.ndarray) else repr(v)) for k, v in sorted(e.params.items()))
        key = (e.prim.name, tuple(canon.get(a.uid, a.uid) if isinstance(a, Var) else ("literal", a.value.item()) for a in e.inputs), params)
        for k, v in enumerate(e.outputs):
            canon[v.uid] = seen.setdefault((key, k), v.uid)
    return canon


def _squared_away(prog: Program, eqn: Any, readers: dict[int, list[Any]], canon: dict[int, int]) -> bool:
    """Whether the elementwise kink ``eqn`` is 0 at its kink (``abs(a)``, ``max(a, 0)``,
    ``min(a, 0)``) and reaches the result only multiplied by something else 0 there (a multiple
    of ``a``) or raised to a power above 1: ``-k * v * np.abs(v)`` (quadratic drag) and
    ``np.maximum(v, 0) ** 2`` have continuous derivatives, so second derivatives miss nothing.
    ``readers`` and ``canon`` are by the values of :func:`_same_values`."""
    consts = dict(zip(prog.constvars, prog.consts))
    ids = lambda e: [canon.get(a.uid, a.uid) if isinstance(a, Var) else None for a in e.inputs]  # noqa: E731

    def zero(a: Any) -> bool:
        value = a.value if isinstance(a, Literal) else consts.get(a)
        return value is not None and not np.any(np.asarray(value))

    if eqn.prim.name != "abs" and not any(zero(a) for a in eqn.inputs):
        return False
    y = canon.get(eqn.outputs[0].uid, eqn.outputs[0].uid)
    # Values 0 at the kink: its input and output, and their multiples.
    vanishing = {y, *(u for u in ids(eqn) if u is not None)}
    for e in prog.eqns:
        ins = ids(e)
        if (e.prim.name == "mul" and any(u in vanishing for u in ins)) or (e.prim.name in ("neg", "div") and ins[0] in vanishing):
            vanishing.update(canon.get(v.uid, v.uid) for v in e.outputs)
    # Follow the kinked value through scalings; every path must end squared away.
    kinked, todo = {y}, [y]
    while todo:
        uid = todo.pop()
        uses = readers.get(uid, [])
        if not uses:
            return False  # an output of f: the kink reaches the result as it is
        for reader in uses:
            ins, name = ids(reader), reader.prim.name
            others = [u for u in ins if u != uid]
            if name == "mul" and (not others or any(u in vanishing for u in others)):
                continue  # y * y, or y times a multiple of the kink's input
            if name == "pow" and ins[0] == uid and isinstance(reader.inputs[1], Literal) and float(reader.inputs[1].value) > 1.0:
                continue
            if name == "neg" or (name == "mul" and not any(u in kinked for u in others)) or (name == "div" and ins[0] == uid):
                out = canon.get(reader.outputs[0].uid, reader.outputs[0].uid)
                if out not in kinked:
                    kinked.add(out)
                    todo.append(out)
                continue
            return False
    return True


# Primitives that hand t on unchanged in value: broadcasting it against an array of times.
_SAME_T = frozenset({"broadcast_in_dim", "reshape", "convert_element_type"})

# Per function and layout: the traced program and the RHS (with its derived programs) built from it.
_RHS: "weakref.WeakKeyDictionary[Any, dict[Layout, tuple[Program, RHS]]]" = weakref.WeakKeyDictionary()


def _as_derivative(du: Any) -> Any:
    """What a right-hand side returns (an array, a list of scalars) as one float64 array."""
    if du is None:
        raise TypeError("the right-hand side returned None; it must return du/dt (an array shaped like u0)")
    if isinstance(du, (dict, str, set)) or not (isinstance(du, (Tracer, list, tuple)) or hasattr(du, "__array__") or np.isscalar(du)):
        raise TypeError(
            f"the right-hand side returned a {type(du).__name__}; it must return du/dt as an array shaped like u0 "
            "(np.stack or np.concatenate the parts of a structured state)"
        )
    du = as_operand(du)
    if du.dtype.kind == "O":
        raise TypeError("the right-hand side returned a ragged or object array; it must return du/dt as an array shaped like u0")
    if du.dtype.kind == "b":
        raise TypeError("the right-hand side returned booleans; it must return du/dt as numbers (a comparison? see np.where)")
    if du.dtype.kind == "c":
        raise TypeError("the right-hand side returned complex numbers; pyzygote solves real ODEs (split real and imaginary parts into u)")
    return convert(du, np.float64)


def _trace_rhs(f: Callable[..., Any], layout: Layout, nest: bool = False) -> Any:
    """``f(u, p, t)`` traced at the shapes of ``layout`` (:func:`pyzygote.tracing.trace`), with
    notes on what went wrong; with ``nest``, inside the enclosing trace, whose values that ``f``
    reads become ``lifted``.  The residual of :func:`pyzygote.nlsolve` (a wrapper marked
    ``_pz_nlsolve``) gets notes about ``f(u, p)`` and Newton's method, not about ODEs."""
    nonlinear = getattr(f, "_pz_nlsolve", False)
    what = "f of pz.nlsolve" if nonlinear else "the right-hand side"
    try:
        # integer and boolean arrays in p (labels, masks) are data, constants of the trace
        traced, _ = trace(f, layout.example_args(), ["u", "p", "t"], output=_as_derivative, int_arrays_constant=True, nest=nest)
    except (TypeError, IndexError, ValueError) as exc:
        if isinstance(exc, TypeError) and layout.p_statics:
            shown = ", ".join(f"{name} = {value!r}" for name, value in zip(layout.p_static_names, layout.p_static_values))
            raise TypeError(
                f"{exc} (while tracing {what}: p's entries that are not numbers reach f as they are, "
                f"here {shown}: a parameter must be an array of real numbers; a setting such as an activation's "
                "name may be a string)"
            ) from exc
        said = _refusal_in_rhs(exc, layout, nonlinear) if isinstance(exc, TracerBoolError) else None
        if said is not None:  # the line of f that did it (pyzygote.tracing._at_user_line) kept
            exc.args = (said + "".join(str(exc).partition("\n  (")[1:]),)
        if hasattr(exc, "add_note"):  # Python 3.11+
            if nonlinear:
                exc.add_note(f"(pz.nlsolve traced f as f(u, p) with u of shape {layout.u_shape} and p as given)")
            else:
                exc.add_note(f"(pyzygote traced the right-hand side as f(u, p, t) with u of shape {layout.u_shape}, "
                             "p as given and a scalar t)")
            if "could not be broadcast" in str(exc) or (isinstance(exc, IndexError) and "only integers, slices" not in str(exc)):
                exc.add_note(
                    f"u has the shape of u0, {layout.u_shape}: check that u0 holds as many unknowns as f of pz.nlsolve reads"
                    if nonlinear
                    else f"u has the shape of u0, {layout.u_shape}: check that u0 holds as many states, in the "
                    "shape, that the right-hand side reads (a column u0 of shape (n, 1) broadcasts unlike a vector)"
                )
            if isinstance(exc, TracerBoolError) and said is None:
                exc.add_note(
                    "f of pz.nlsolve is traced once for every u and p, so `if u[0] > 1:` cannot branch: write "
                    "np.where(u[0] > 1.0, a, b)"
                    if nonlinear
                    else "A right-hand side is traced once for every u, p and t, so `if 5 < t < 45:` or `if u[0] > 1:` "
                    "cannot branch: write np.where((t > 5.0) & (t < 45.0), a, b), and pass the times where it "
                    "switches as tstops=[5.0, 45.0] so that the solver steps to them"
                )
        raise
    if traced.draws_random:
        if nonlinear:
            raise UnsupportedOperationError(
                f"f of pz.nlsolve, {getattr(f, '__qualname__', f)!r}, draws random numbers: it is traced once and "
                "evaluated at every Newton iteration, so its draws would be frozen, the same at each (Newton needs a "
                "deterministic f). Draw them outside and pass them in p"
            )
        raise UnsupportedOperationError(
            f"the right-hand side {getattr(f, '__qualname__', f)!r} draws random numbers: it is traced once "
            "and evaluated at every solver step, so its draws would be frozen, not new at each step (an "
            "ODE solver needs a deterministic right-hand side). Draw the noise outside, as a table of "
            "values in p read with np.interp(t, times, p['noise']), and solve again for new noise"
        )
    return traced


def _refusal_in_rhs(exc: TracerBoolError, layout: Layout, nonlinear: bool) -> str | None:
    """What to say of ``if``, ``int()`` or a use as a size of a value of the traced right-hand side
    (or f of pz.nlsolve), said first, naming the arguments it comes from; None to keep ``exc``'s.

    User testing: ``u.reshape(p["ngroups"], 4)`` with ``{"ngroups": 3}`` was told to pass the
    count through a closure "as arguments of a differentiated function are traced", in a call that
    differentiated nothing (p's numbers are float parameters, Python ints too); ``if t > 45:`` was
    told about loops and pz.nlsolve before the np.where and tstops that fit a right-hand side."""
    from pyzygote.tracer import input_positions

    what = getattr(exc, "what", None)
    positions = input_positions(exc)
    leaves = len(layout.p_shapes)
    if what is None or positions is None or not positions or max(positions) > leaves + 1:
        return None
    p_names = layout.p_names if len(layout.p_names) == leaves else ("p",) * leaves
    names = ["u"] + list(p_names) + ([] if nonlinear else ["t"])
    if len(names) < max(positions) + 1:
        return None
    from_ = list(dict.fromkeys(names[i] for i in positions))
    fn = "f of pz.nlsolve" if nonlinear else "the right-hand side"
    source = " and ".join(from_)
    if what in ("use as an index or size", "int()") and all(0 < i <= leaves for i in positions):
        key = re.fullmatch(r"p\[('[^']*')\]", from_[0])
        instead = f"{{{key.group(1)}: np.array(3)}}" if key else "np.array(3)"
        return (
            f"{source} is used as a size or an index ({what}) in {fn}, but p's numbers are float parameters, traced "
            f"as its inputs (a Python int or np.int64 in p too: {{'k': 1}} is the parameter 1.0). Pass a count as an "
            f"integer array in p, {instead} (integer and boolean arrays in p are data, not differentiated, and "
            "usable as sizes), or through a closure (lambda u, p, t: f(u, p, t, n=3))."
        )
    if what == "bool()/if" and not nonlinear:
        if "t" in from_:
            fix = "Write np.where(t > 45.0, a, b), and pass the times where it switches as tstops=[45.0] so that the solver steps to them."
        elif "u" in from_:
            fix = "Write np.where(u[0] > 1.0, a, b) (or np.maximum, np.clip)."
        else:
            fix = f"Write np.where({from_[0]} > 1.0, a, b), or pass a setting (a flag, a mode) through a closure."
        return (
            f"bool()/if of a value computed from {source} in {fn}: it is traced once for every u, p and t, so `if t > 45:` "
            f"or `if u[0] > 1:` cannot branch. {fix} If numpy itself did this (np.max or a comparison on an array that "
            "np.array([...]) made of traced values), build that array with np.stack([...])."
        )
    return None


def _traced_cells(f: Any) -> list[tuple[str, Any]]:
    """The closure variables of ``f`` that hold values of a trace that is running, by name: values
    being differentiated that ``f`` captured.  Functions ``f`` closes over (a wrapper's ``f``, a
    helper) and ``functools.partial``'s function are looked into, three levels deep."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    todo = [(f, 0)]
    while todo:
        g, depth = todo.pop()
        if g is None or id(g) in seen or depth > 3:
            continue
        seen.add(id(g))
        names = getattr(getattr(g, "__code__", None), "co_freevars", ())
        for i, cell in enumerate(getattr(g, "__closure__", None) or ()):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(content, Tracer) and Builder.is_active(content._builder):
                found.append((names[i] if i < len(names) else "?", content))
            elif isinstance(content, types.FunctionType):
                todo.append((content, depth + 1))
        if isinstance(g, functools.partial):
            todo.append((g.func, depth + 1))
    return found


def _captures_traced(f: Any) -> bool:
    """Whether ``f`` captured a value being differentiated in a closure cell (where most closures hold it)."""
    return bool(_traced_cells(f))


def captured_values(f: Any) -> str:
    """The values being differentiated that ``f`` captured in closure cells, for messages:
    ``"w (a float64 scalar)"``; empty when it reads them from deeper down."""
    return ", ".join(
        f"{name} (a {x.dtype} {'scalar' if x.ndim == 0 else f'array of shape {tuple(x.shape)}'})" for name, x in _traced_cells(f)
    )


def with_lifted(p: Any, lifted: "Sequence[Any]") -> Any:
    """The flat ``p`` with the lifted values of :meth:`RHS.trace_lifting` appended (raveled, float64)."""
    if not lifted:
        return p
    return np.concatenate([p, *(np.ravel(convert(x, np.float64)) for x in lifted)])


def lifted_data(lifted: "Sequence[Any]") -> tuple[bool, ...]:
    """Whether each lifted value is data, with no derivative: an integer or boolean (an index, a
    mask computed in the loss), or a float the enclosing trace computed from such values and
    constants alone.  The second is the usual form: an operation of the right-hand side that
    reads only enclosing values is recorded in their trace, so ``t >= np.argmax(w)`` lifts the
    index converted to a float, and ``np.where(w > 1.0, a, b)`` mixed with floats the mask so."""
    data_of: dict[int, set[int]] = {}
    flags = []
    for x in lifted:
        if np.dtype(x.dtype).kind != "f":
            flags.append(True)
            continue
        b = getattr(x, "_builder", None)
        if b is None:
            flags.append(False)
            continue
        data = data_of.get(id(b))
        if data is None:
            data = data_of[id(b)] = _data_values(b)
        flags.append(x._var.uid in data)
    return tuple(flags)


def _data_values(b: Builder) -> set[int]:
    """The uids of a trace's values computed from constants, integers and booleans alone."""
    data = {v.uid for v in b._const_values}
    for e in b.eqns:
        if all(isinstance(a, Literal) or a.uid in data or a.aval.dtype.kind != "f" for a in e.inputs):
            data.update(v.uid for v in e.outputs)
    return data


def lifted_constant_entries(m: int, lifted: "Sequence[Any]", data: "Sequence[bool] | None" = None) -> tuple[int, ...]:
    """The positions in :func:`with_lifted`'s vector of lifted values that are data
    (:func:`lifted_data`): no derivative, so their sensitivities need not be solved for."""
    fixed: list[int] = []
    start = m
    for x, is_data in zip(lifted, lifted_data(lifted) if data is None else data):
        size = int(np.prod(np.shape(x)))
        if is_data:
            fixed.extend(range(start, start + size))
        start += size
    return tuple(fixed)


# Whether this thread's last RHS.trace reused a cached trace that its cache check could not vouch for.
_REUSED = threading.local()

# RHSs of right-hand sides that read lifted values, by program (see _lifted_rhs): a closure made
# afresh each time a loss is traced shares its derived programs with the last one that traced the same.
_LIFTED: "collections.OrderedDict[Any, RHS]" = collections.OrderedDict()
_LIFTED_KEPT = 32
# ... and as many as hold this many bytes of constants (the newest always): a right-hand side
# made for each of many data sets holds its data table, which would otherwise stay 32 times over.
_LIFTED_BYTES = 256 << 20
_LIFTED_LOCK = threading.Lock()


def _lifted_rhs(f: Any, traced: Any, layout: Layout) -> RHS:
    """The RHS of flat ``(u, q, t)`` of a nested trace of ``f`` that lifted values (inputs after
    ``u``, p's leaves and ``t``).  Its leaf program takes ``(u, p leaves..., lifted..., t)``, so the
    analyses of :class:`RHS` that read p's leaves see the lifted values as more of them; its
    program splits ``q`` into those pieces.  RHSs are kept by the exact structure of the program
    (its constants' values, literals and parameters included; not the lifted values, which are
    inputs): a fresh closure over the same code and data reuses the derived programs."""
    prog = traced.program
    lifted = traced.lifted
    shape = prog.out_avals[0].shape
    if shape != layout.u_shape:
        raise ValueError(
            f"the right-hand side returned shape {shape}, expected {layout.u_shape} like u0 "
            "(it is called as f(u, p, t), SciML's argument order; SciPy's solve_ivp calls f(t, u))"
        )
    k = len(layout.p_shapes)
    ins = prog.inputs
    if len(ins) != k + 2 + len(lifted):
        raise AssertionError(f"a traced right-hand side has {len(ins)} inputs, expected {k + 2 + len(lifted)}")
    leaf_prog = Program(
        inputs=(ins[0], *ins[1 : k + 1], *ins[k + 2 :], ins[k + 1]),
        constvars=prog.constvars,
        consts=prog.consts,
        eqns=prog.eqns,
        outputs=prog.outputs,
        choices=prog.choices,
        spelled=prog.spelled,
    )
    code = getattr(getattr(f, "__func__", f), "__code__", None)
    try:
        key = (code, layout, _structure(leaf_prog))
        hash(key)
    except TypeError:
        key = None
    if key is not None:
        with _LIFTED_LOCK:
            hit = _LIFTED.get(key)
            if hit is not None:
                _LIFTED.move_to_end(key)
                return hit
    sizes = [int(np.prod(np.shape(x))) for x in lifted]
    n, m = layout.n, layout.m
    b = Builder()
    u, q, t = b.new_input((n,), np.float64), b.new_input((m + sum(sizes),), np.float64), b.new_input((), np.float64)
    pieces, start = [], 0
    for shape_, dtype in [*((s, np.dtype(np.float64)) for s in layout.p_shapes), *((np.shape(x), np.dtype(x.dtype)) for x in lifted)]:
        size = int(np.prod(shape_))
        piece = np.reshape(q[start : start + size], shape_)
        pieces.append(piece if dtype == np.float64 else convert(piece, dtype))
        start += size
    (du,) = eval_program(leaf_prog, np.reshape(u, layout.u_shape), *pieces, t)
    rhs = RHS(f, b.build([u, q, t], [np.ravel(du)]), n, m + sum(sizes))
    rhs.leaf_program = leaf_prog
    rhs.layout = layout
    if key is not None:
        with _LIFTED_LOCK:
            _LIFTED[key] = rhs
            held = sum(_const_bytes(r) for r in _LIFTED.values())
            while len(_LIFTED) > 1 and (len(_LIFTED) > _LIFTED_KEPT or held > _LIFTED_BYTES):
                held -= _const_bytes(_LIFTED.popitem(last=False)[1])
    return rhs


def _const_bytes(rhs: "RHS") -> int:
    return sum(int(np.asarray(c).nbytes) for c in rhs.leaf_program.consts)


class _Same:
    """An object compared by identity in a key: a parameter whose equality is not known to be exact."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def _exact(v: Any) -> Any:
    """``v`` as a hashable key equal only to that of an equal value, bit for bit (-0.0 is not 0.0)."""
    if isinstance(v, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(v)
        data = a.tobytes()
        if len(data) > 256:
            import hashlib

            data = hashlib.blake2b(data, digest_size=32).digest()
        return ("array", a.dtype.str, a.shape, data)
    if v is None or isinstance(v, (bool, str, bytes)) or type(v) is int:
        return (type(v).__name__, v)
    if type(v) is float:
        return ("float", v.hex())
    if isinstance(v, np.dtype):
        return ("dtype", v.str)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_exact(x) for x in v))
    if isinstance(v, slice):
        return ("slice", _exact(v.start), _exact(v.stop), _exact(v.step))
    if v is Ellipsis:
        return ("ellipsis",)
    return _Same(v)


def _structure(prog: Program) -> Any:
    """A key equal for two programs that compute the same thing in the same way: variables by
    their order of appearance, constants, literals and parameters by value."""
    ids: dict[int, int] = {}

    def var(v: Var) -> Any:
        return (ids.setdefault(v.uid, len(ids)), v.aval.shape, v.aval.dtype.str, prog.choices.get(v.uid))

    def atom(a: Any) -> Any:
        return ("literal", _exact(a.value)) if isinstance(a, Literal) else ids[a.uid]

    parts: list[Any] = [tuple(map(var, prog.inputs)), tuple((var(v), _exact(c)) for v, c in zip(prog.constvars, prog.consts))]
    for e in prog.eqns:
        ins = tuple(map(atom, e.inputs))
        params = tuple(sorted((k, _exact(v)) for k, v in e.params.items()))
        parts.append((_Same(e.prim), ins, params, tuple(map(var, e.outputs))))
    parts.append(tuple(map(atom, prog.outputs)))
    return tuple(parts)


class _Directions:
    n: int
    m: int

    def columns(self, cols: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Directions of ``(u0, p)`` to follow, as indices into their concatenation (all by default)."""
        return tuple(range(self.n + self.m)) if cols is None else tuple(cols)


class JuliaRHS(_Directions):
    """A ``pz.julia_function`` right-hand side: Julia code, run only by the Julia engine."""

    program = None

    def __init__(self, f: Any, n: int, m: int):
        self.f, self.n, self.m = f, n, m

    def __repr__(self) -> str:
        return f"<Julia rhs {self.f!r} n={self.n} m={self.m}>"

    def __call__(self, *args: Any) -> Any:
        raise TypeError(
            f"the right-hand side {self.f!r} is Julia code: solve this problem on the Julia engine "
            "(engine='julia'), or write the right-hand side with numpy for the NumPy engine"
        )

    jacobian_u = jacobian_p = sensitivity_rhs = initial_sensitivities = adjoint_rhs = adjoint_rhs_joined = backsolve_rhs = __call__


def _compiled_folded(exact: int) -> Callable[[Program], Callable[..., Any]]:
    """A derived program unrolled with its unit directions' zeros and ones folded away
    (:func:`pyzygote.transforms.scalarize.folded`), but for the first ``exact`` entries of its
    output: the right-hand side's value, in a system that carries it, is numpy's as in the
    right-hand side itself (``np.exp(800 * u) * 0.0`` is NaN where the exponential overflows;
    it was 0 in the forward sensitivities, which solved what the ODE solve refused)."""
    return lambda prog: compile_scalar(prog, fold=True, exact=exact)


class RHS(_Directions):
    """The traced right-hand side of ``u' = f(u, p, t)`` for given sizes of u and p."""

    def __init__(self, f: Callable[..., Any] | str, program: Program, n: int, m: int):
        # The name only: an RHS is cached under its function (weakly), so it must not hold it.
        self.name = f if isinstance(f, str) else getattr(f, "__name__", "f")
        self.program = program
        # The traced program with p as its leaves (u, p leaves..., t), before flattening.
        self.leaf_program = program
        self.n, self.m = n, m
        self._call = compile_hoisted(program, 1, compile_scalar)  # once per p: what p alone decides
        self._derived: dict[Any, Callable[..., Any]] = {}
        self._systems: dict[Any, RHS] = {}
        # A derived system's Jacobian, assembled from its base's (see sensitivity_system), and how
        # many leading entries of the state and of the parameters it reads (all, unless derived).
        self._structured_jacobian: Callable[..., Any] | None = None
        self._jacobian_reads = (n, m)
        # The shapes and names of u and p as the user wrote them (None for a derived system).
        self.layout: Layout | None = None
        # A derived system whose state and parameters start with this one's (the sensitivity and
        # tangent systems): its NaN-input message names the entry by the base's layout.
        self.base: RHS | None = None

    def __repr__(self) -> str:
        return f"<rhs {self.name} n={self.n} m={self.m}>"

    def _structure_key(self) -> Any:
        """:func:`_structure` of the traced program (``u, p leaves..., t``), computed once."""
        hit = self._derived.get("structure")
        if hit is None:
            hit = self._derived["structure"] = _structure(self.leaf_program)
        return hit

    @staticmethod
    def trace(f: Callable[..., Any], n: int, m: int, layout: Layout | None = None) -> "RHS":
        """Trace ``f`` at u of shape (n,), p of shape (m,), scalar t, or at the shapes of ``layout``.

        The trace is cached like any other (:func:`pyzygote.tracing.trace`): it is
        redone when what ``f`` reads from its closure or globals changes, and
        the derived programs of the :class:`RHS` are kept as long as it is valid.
        The RHS itself always works with flat vectors (see :mod:`pyzygote.ode.layout`).
        A plain function made afresh that does what one seen before does (a lambda written in
        the call, in a helper called in a loop) is traced as that one
        (:func:`pyzygote.same_function.earlier_equivalent`).
        """
        from pyzygote.julia.functions import is_julia_function
        from pyzygote.same_function import earlier_equivalent

        f = earlier_equivalent(f)
        layout = layout or Layout.vectors(n, m)
        if is_julia_function(f):
            if not layout.flat:
                raise TypeError(f"the Julia right-hand side {f!r} takes u and p as vectors; flatten them")
            return JuliaRHS(f, n, m)  # type: ignore[return-value]
        given, f = f, out_of_place(f)
        traced = _trace_rhs(f, layout)
        prog = traced.program
        try:
            per_fn = _RHS.setdefault(f, {})
        except TypeError:
            per_fn = {}
        hit = per_fn.get(layout)
        # a cached trace whose cache check stopped short of some of the data f reads (trace_lifting)
        _REUSED.last = hit is not None and hit[0] is prog and guard_is_partial(traced)
        if hit is None or hit[0] is not prog:
            shape = prog.out_avals[0].shape
            if shape != layout.u_shape:
                raise ValueError(
                    f"the right-hand side returned shape {shape}, expected {layout.u_shape} like u0 "
                    "(it is called as f(u, p, t), SciML's argument order; SciPy's solve_ivp calls f(t, u))"
                )
            if f is not given:  # once per trace: it runs f twice
                _warn_unwritten(given, layout)
            rhs = RHS(f, layout.wrap(prog), n, m)
            rhs.leaf_program = prog
            rhs.layout = layout
            hit = per_fn[layout] = (prog, rhs)
        return hit[1]

    @staticmethod
    def trace_lifting(f: Callable[..., Any], layout: Layout) -> tuple["RHS", tuple[Any, ...]]:
        """``f`` traced as :meth:`trace` does, and the traced values of enclosing traces that it
        reads: none, or values being differentiated that ``f`` captured from its closure
        (``lambda u, p, t: -w * u`` inside a loss of ``w``).

        Those are lifted (:class:`pyzygote.tracer.Builder` with ``lift``): they become inputs of
        the program after p's entries, so the RHS takes ``q = [p, ravel(lifted)...]`` (made by
        :func:`with_lifted`) of ``layout.m + sum(sizes)`` entries and every derivative with
        respect to them comes out as one with respect to p's.  They are inputs, never
        constants: the RHS, kept per program (:func:`_lifted_rhs`), is right for any values.
        """
        from pyzygote.julia.functions import is_julia_function
        from pyzygote.same_function import earlier_equivalent

        f = earlier_equivalent(f)  # as RHS.trace does, for the lifting path too
        if is_julia_function(f) or not Builder.tracing():
            return RHS.trace(f, layout.n, layout.m, layout), ()
        cached = None
        if not _captures_traced(f):
            try:
                cached = RHS.trace(f, layout.n, layout.m, layout)
            except CapturedTracerError:
                pass  # read from deeper down (a helper's closure, a container): traced again, lifting
            else:
                if not _REUSED.last:
                    return cached, ()  # traced now, or a cached trace checked in full
        # A cached trace whose check of f's closure stopped short (pyzygote.tracing._closure_guard
        # goes five levels deep, 2,000 objects) is compared with a trace made now: a value being
        # differentiated stored deeper down (obj.a.b.c.d.e.k = w) was silently read as the old
        # constant, its derivative lost (found in review).
        traced = _trace_rhs(out_of_place(f), layout, nest=True)
        if not traced.lifted:  # a captured traced value that f does not read
            if cached is None:
                return RHS.trace(f, layout.n, layout.m, layout), ()
            if _structure(traced.program) == cached._structure_key():
                return cached, ()
            return _lifted_rhs(f, traced, layout), ()  # the cached trace was stale
        return _lifted_rhs(f, traced, layout), tuple(traced.lifted)

    def switches_at_a_time_set_by_p(self, traced: tuple[bool, ...] | None = None) -> bool:
        """Whether ``f`` compares (or rounds) a value that depends on both ``t`` and ``p``:
        ``np.where(t >= p["t_on"], rate, 0.0)``.  Its derivative with respect to such a switching
        time comes from the jump at the switch, which needs events; a solve without them gives 0.
        ``traced`` marks the leaves of ``p`` being differentiated (all by default): a switching
        time read from a constant leaf is just a constant."""
        prog = self.leaf_program
        leaves = prog.inputs[1:-1]
        traced = tuple(traced) if traced is not None and len(traced) == len(leaves) else (True,) * len(leaves)
        hit = self._derived.get(("switch", traced))
        if hit is None:
            t_in = prog.inputs[-1]
            on_t, on_p = {t_in}, {v for v, d in zip(leaves, traced) if d}
            found = False
            for eqn in prog.eqns:
                ins = [a for a in eqn.inputs if isinstance(a, Var)]
                t_dep, p_dep = any(a in on_t for a in ins), any(a in on_p for a in ins)
                if t_dep and p_dep and _switches(prog, eqn, _NO_JUMPS):
                    found = True
                    break
                # A whole number computed from t alone (the day, np.floor(t)) steps at times known
                # in advance (MissingTstopsWarning's), so what it selects (a day's temperature) may
                # be compared with p: between steps it does not depend on t.
                if t_dep and not (_rounds(eqn.prim.name, eqn.params) and not p_dep):
                    on_t.update(eqn.outputs)
                if p_dep:
                    on_p.update(eqn.outputs)
            hit = self._derived[("switch", traced)] = found  # type: ignore[assignment]
        return bool(hit)

    def has_kinks_in_the_state(self) -> bool:
        """Whether ``f`` switches on the state (:meth:`switches_on_the_state`) or takes a maximum
        or minimum of something computed from ``u`` (``p[1] * np.max(u)``): continuous, with a
        Jacobian that jumps where the trajectory crosses the kink, which second derivatives
        through the solve miss."""
        return self._applies_to_the_state("ukink", _NO_KINKS, _KINKS, elementwise=True)

    def switches_on_the_state(self) -> bool:
        """Whether ``f`` compares (or rounds) a value computed from ``u``: ``np.where(u[0] < 1.0,
        p[0], p[1])``.  Where the trajectory crosses such a switch and ``f`` jumps there, the
        derivative misses the crossing time's own sensitivity, which needs events."""
        return self._applies_to_the_state("uswitch", _NO_JUMPS)

    def _applies_to_the_state(self, key: str, forgiven: frozenset[str], also: frozenset[str] = frozenset(), elementwise: bool = False) -> bool:
        """Whether ``f`` applies a comparison, a rounding or one of ``also`` to a value computed
        from ``u``, other than in a composition of a ``forgiven`` kind; with ``elementwise``, also
        an elementwise kink (``np.maximum``, ``np.abs``) that is not squared away."""
        hit = self._derived.get(key)
        if hit is None:
            prog = self.leaf_program
            canon = _same_values(prog) if elementwise else {}
            readers: dict[int, list[Any]] = {}
            for eqn in prog.eqns:
                for uid in {canon.get(a.uid, a.uid) for a in eqn.inputs if isinstance(a, Var)}:
                    readers.setdefault(uid, []).append(eqn)
            on_u = {prog.inputs[0]}
            hit = False
            for eqn in prog.eqns:
                if any(isinstance(a, Var) and a in on_u for a in eqn.inputs):
                    kink = (
                        elementwise
                        and eqn.prim.name in _ELEMENTWISE_KINKS
                        and eqn.outputs[0].aval.dtype.kind == "f"
                        and prog.choices.get(eqn.outputs[0].uid) not in forgiven
                        and not _squared_away(prog, eqn, readers, canon)
                    )
                    if kink or _switches(prog, eqn, forgiven, also):
                        hit = True
                        break
                    on_u.update(eqn.outputs)
            self._derived[key] = hit  # type: ignore[assignment]
        return bool(hit)

    def constant_switching_times(self, leaves: "Sequence[Any] | None" = None, span: "tuple[float, float] | None" = None) -> np.ndarray:
        """The times known in advance at which ``f`` switches, sorted: where it compares ``t``, or
        ``a * t + b`` for constants ``a`` and ``b`` (``(t - 5.0) / w``, as in ``np.heaviside(t - 5.0,
        1.0)``), or takes the sign of one, with constants (``t >= 2.5``, ``t < DOSES``) or values
        computed from the leaves of ``p`` that ``leaves`` gives as numpy arrays (``None`` for a
        traced leaf): ``t >= p["t_on"]``, ``t < p["tlag"] + 1.0``.  With ``span``, also the times
        inside it where ``a * t + b`` is rounded across a whole number (a piecewise-constant
        control read at ``np.floor(t / dt)``), up to ``_MAX_ROUNDED`` per value.  (A switch on
        ``t % 24`` is not found.)"""
        hit = self._derived.get("tswitch")
        if hit is None:
            prog = self.leaf_program
            consts = {v: c for v, c in zip(prog.constvars, prog.consts)}
            t_in = prog.inputs[-1]
            # a * t + b, elementwise, for values computed from t with constants
            affine: dict[Var, tuple[Any, Any]] = {t_in: (1.0, 0.0)}
            varying: set[Var] = {prog.inputs[0], t_in}  # what depends on u or t
            fixed: list[np.ndarray] = []
            compared: list[tuple[Var, Any, Any]] = []
            rounded: list[tuple[tuple[Any, Any], float]] = []  # forms rounded to whole numbers, and where they step

            def constant(x: Any) -> Any:
                if isinstance(x, Literal):
                    return np.asarray(x.value, dtype=float)
                return np.asarray(consts[x], dtype=float) if x in consts else None

            for eqn in prog.eqns:
                ins, name = eqn.inputs, eqn.prim.name
                known = [affine.get(a) if isinstance(a, Var) else None for a in ins]
                if name in COMPARISONS and len(ins) == 2:
                    for (x, c), form in ((ins, known[0]), (ins[::-1], known[1])):
                        if form is None:
                            continue
                        value = constant(c)
                        if value is not None:
                            fixed.append(_solved(form, value))
                        elif c not in varying:
                            compared.append((c, *form))
                elif name == "searchsorted" and known[1] is not None:  # np.interp(t, knots, ...): switches at each knot
                    value = constant(ins[0])
                    if value is not None:
                        fixed.append(_solved(known[1], value))
                    elif ins[0] not in varying:
                        compared.append((ins[0], *known[1]))
                elif name == "sign" and known[0] is not None:
                    fixed.append(_solved(known[0], np.zeros(())))
                elif known and known[0] is not None and _rounds(name, eqn.params):
                    rounded.append((known[0], 0.5 if name == "round" else 0.0))
                elif any(known):
                    form = _affine_step(name, eqn.params, ins, known, constant)
                    if form is not None:
                        affine[eqn.outputs[0]] = form
                if any(isinstance(a, Var) and a in varying for a in ins):
                    varying.update(eqn.outputs)
            feeding = program_from(prog.inputs[1:-1], list(prog.eqns), [c for c, _, _ in compared], prog) if compared else None
            forms = [(a, b) for _, a, b in compared]
            hit = self._derived["tswitch"] = (np.concatenate(fixed) if fixed else np.zeros(0), feeding, forms, rounded)  # type: ignore[assignment]
        fixed, feeding, forms, rounded = hit  # type: ignore[misc]
        if span is not None:
            fixed = np.concatenate([fixed, *(_whole_crossings(form, offset, span) for form, offset in rounded)])
        known = _values_from_leaves(feeding, leaves) if feeding is not None and leaves is not None else []
        solved = [_solved(form, value) for form, value in zip(forms, known) if value is not None]
        times = np.unique(np.concatenate([fixed, *solved]))
        return times[np.isfinite(times)]

    # --- plain evaluation -----------------------------------------------------------
    def __call__(self, u: np.ndarray, p: np.ndarray, t: float) -> np.ndarray:
        return self._call(u, p, t)[0]

    # --- derived programs, built on first use -------------------------------------------
    def _get(self, key: Any, build: Callable[[], Program], exact: int = 0) -> Callable[..., Any]:
        """The derived program ``build`` makes, compiled; ``exact`` leading entries of its output
        are values, not derivatives (see :func:`_compiled_folded`)."""
        fn = self._derived.get(key)
        if fn is None:
            prog = self._program(key, build)
            # p is the input before t in every derived program
            fn = self._derived[key] = compile_hoisted(prog, len(prog.inputs) - 2, _compiled_folded(exact))
        return fn

    def _value_states(self) -> int:
        """The leading states that are values, not derivatives: a sensitivity or tangent system's
        base's (its first states are the base's; the base's own sensitivities follow)."""
        root = self
        while root.base is not None:
            root = root.base
        return root.n

    def _program(self, key: Any, build: Callable[[], Program]) -> Program:
        prog = self._derived.get(("program", key))
        if prog is None:
            prog = self._derived[("program", key)] = cse(build())  # type: ignore[assignment]
        return prog  # type: ignore[return-value]

    def evaluation_costs(self, cols: tuple[int, ...]) -> tuple[float, float, float]:
        """Estimated nanoseconds of one evaluation of f, of its sensitivity system along ``cols``
        and of its adjoint system (:func:`pyzygote.transforms.scalarize.evaluation_ns`)."""
        costs = self._derived.get(("costs", cols))
        if costs is None:
            costs = self._derived[("costs", cols)] = (  # type: ignore[assignment]
                evaluation_ns(self.program),
                evaluation_ns(self._program(("sens", cols), lambda: self._sensitivity_program(cols))),
                evaluation_ns(self._program("adj", self._adjoint_program)),
            )
        return costs  # type: ignore[return-value]

    def jacobian_u(self, u: np.ndarray, p: np.ndarray, t: float, exact: bool = False) -> Any:
        """``df/du``: a numpy array, or a scipy.sparse matrix for a derived system or a large sparse
        one (:func:`pyzygote.ode.solvers.dense_matrix` makes it dense).

        It is the Newton matrix of the implicit solvers: unless ``exact``, its entries that are
        NaN or inf where f is finite (``c ** 0.7`` at c = 0) are difference quotients of f
        (:func:`pyzygote.ode.singular.finite_newton_matrix`)."""
        if self._structured_jacobian is not None:
            return self._structured_jacobian(u, p, t)
        # Only derivatives are computed here: numpy's warnings from parts of them that the rules
        # discard (the derivative of c ** 0 at c = 0 passes through 0 ** -1) are not the user's
        # (user testing: a RuntimeWarning that failed the solve under -W error); the solver sees
        # any NaN or inf that remains.
        coloured = self._coloured_jacobian()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            J = coloured(u, p, t) if coloured is not None else self._get("jac", self._jacobian_program)(u, p, t)[0]
        if exact:
            return J
        from pyzygote.ode.singular import finite_newton_matrix

        return finite_newton_matrix(J, lambda v: self(v, p, t), np.asarray(u, dtype=float))

    def jacobian_p(self, u: np.ndarray, p: np.ndarray, t: float) -> np.ndarray:
        """``df/dp``, an (n, m) numpy array (the adjoint's Newton matrices take its transpose)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # as jacobian_u
            return self._get("jac_p", self._jacobian_p_program)(u, p, t)[0]

    def _coloured_jacobian(self) -> Callable[..., Any] | None:
        """``(u, p, t) -> df/du`` as a scipy.sparse matrix, for a system of more than
        DENSE_STATE_JACOBIAN_UP_TO states whose Jacobian is mostly zeros by its structure
        (:func:`pyzygote.ode.sparsity.state_pattern`); None for the others.

        Its entries come from one Jacobian-vector product per colour of columns: the dense
        Jacobian took one per state, n^2 work and memory for each of its derivation and its
        evaluations (a 40 x 40 heat grid: 1,600 columns, 8 s to derive its program), and Radau
        and BDF factorized it densely (0.36 s an LU there).  With a sparse one they use splu."""
        key = "coloured jacobian"
        if key in self._derived:
            return self._derived[key]
        self._derived[key] = None  # type: ignore[assignment]
        n = self.n
        if n <= DENSE_STATE_JACOBIAN_UP_TO:
            return None
        from pyzygote.ode.sparsity import StructuralJacobian, column_colours, state_pattern

        try:
            pattern = state_pattern(self.program, n)
        except Exception:  # noqa: BLE001  (a rule that cannot read an equation: the dense Jacobian, as before)
            pattern = None
        if pattern is None or pattern.nnz > SPARSE_JACOBIAN_FILL * n * n:
            return None
        pattern = pattern.tocsc()
        pattern.sort_indices()
        colours = column_colours(pattern)
        seeds = np.zeros((n, int(colours.max(initial=-1)) + 1))
        seeds[np.arange(n), colours] = 1.0
        rows, indptr = pattern.indices.astype(np.int64), pattern.indptr.astype(np.int64)
        # Entry (i, j) is row i of its column's colour: no other column of that colour reads row i.
        where = (rows, np.repeat(colours, np.diff(indptr)))

        def build() -> Program:
            b = Builder()
            u, p, t = b.new_input((n,), np.float64), b.new_input((self.m,), np.float64), b.new_input((), np.float64)
            _, C = self._along_columns(u, p, t, seeds, None)
            return b.build([u, p, t], [C])

        compressed = self._get(key + " program", build)

        def jacobian(u: np.ndarray, p: np.ndarray, t: float) -> Any:
            C = np.reshape(compressed(u, p, t)[0], (n, seeds.shape[1]))
            return StructuralJacobian((C[where], rows.copy(), indptr.copy()), shape=(n, n))

        self._derived[key] = jacobian  # type: ignore[assignment]
        return jacobian

    def jacobian_u_program(self) -> Program:
        """The program ``(u, p, t) -> df/du`` behind :meth:`jacobian_u`, to be evaluated on traced
        values (the implicit derivative of :func:`pyzygote.nlsolve`)."""
        return self._program("jac", self._jacobian_program)

    def sensitivity_rhs(self, cols: tuple[int, ...] | None = None) -> Callable[..., Any]:
        """``(z, p, t) -> dz`` for ``z = [u, vec(S)]``, S of shape (n, len(cols)): the sensitivities
        to the directions ``cols`` of ``(u0, p)``."""
        cols = self.columns(cols)
        fast = self._get(("sens", cols), lambda: self._sensitivity_program(cols), exact=self._value_states())
        if self._structured_jacobian is not None:
            return fast
        n, k = self.n, len(cols)
        E = np.zeros((self.m, k))
        for j, c in enumerate(cols):
            if c >= n:
                E[c - n, j] = 1.0

        def sensitivities(z: np.ndarray, p: np.ndarray, t: float) -> Any:
            out = fast(z, p, t)
            if np.all(np.isfinite(out[0])):
                return out
            # inf * 0 in J_u S where S is exactly 0 (at t0, in states u0 does not depend on):
            # a derivative along a zero direction, 0 (pyzygote.ode.singular)
            from pyzygote.ode.singular import zero_aware_jvp

            u, S = z[:n], np.reshape(z[n:], (n, k))
            dS = np.zeros((n, k))
            try:
                for j in range(k):
                    (tout,) = zero_aware_jvp(self.program, [u, p, np.float64(t)], [S[:, j], E[:, j], None])
                    if tout is not None:
                        dS[:, j] = tout
            except Exception:  # noqa: BLE001 - an operation this numeric pass cannot run: the solve fails as before
                return out
            mended = np.concatenate([self(u, p, t), np.ravel(dS)])
            return [mended] if np.all(np.isfinite(mended)) else out

        return sensitivities

    def adjoint_rhs(self) -> Callable[..., Any]:
        """``(u, lam, p, t) -> (-lam^T J_u, -lam^T J_p)``."""
        return self._get("adj", self._adjoint_program)

    def adjoint_rhs_joined(self) -> Callable[..., Any]:
        """``(u, lam, p, t) -> (concatenate([-lam^T J_u, -lam^T J_p]),)``: :meth:`adjoint_rhs` as
        the one vector the adjoint solve integrates (unrolled, one array is made, not three)."""
        return self._get("adj_joined", self._adjoint_joined_program)

    def backsolve_rhs(self) -> Callable[..., Any]:
        """``(z, p, t) -> dz`` for ``z = [u, lam, mu]``: the state solved backwards with its adjoint."""
        return self._get("backsolve", self._backsolve_program, exact=self._value_states())

    # --- derived systems, themselves right-hand sides ------------------------------------
    def sensitivity_system(self, cols: tuple[int, ...] | None = None) -> "RHS":
        """``z' = g(z, p, t)`` for ``z = [u, vec(S)]``: solved from ``[u0, vec(eye(n, n + m)[:, cols])]``
        it gives u and its sensitivities S to the directions ``cols``."""
        cols = self.columns(cols)
        hit = self._systems.get(("sens", cols))
        if hit is None:
            n, k = self.n, len(cols)
            hit = self._systems[("sens", cols)] = RHS(f"sensitivities of {self!r}", cse(self._sensitivity_program(cols)), n * (1 + k), self.m)
            hit._structured_jacobian = hit._newton_jacobian(lambda z, p, t: sensitivity_jacobian(self.jacobian_u(z[:n], p, t), k), n, k)
            hit._jacobian_reads = (n, self.m)
            hit.base = self
        return hit

    def initial_sensitivities(self, cols: tuple[int, ...] | None = None) -> np.ndarray:
        """``vec(S(t0))``: the identity's columns for directions of u0, zero for those of p."""
        return np.eye(self.n, self.n + self.m)[:, list(self.columns(cols))].ravel()

    def tangent_system(self, k: int = 1) -> "RHS":
        """``[u, S]' = [f, J_u S + J_p D]`` with parameters ``[p, vec(D)]`` (S of shape (n, k),
        D of shape (m, k), both row-major): solved from ``[u0, vec(S0)]``, column j of S is the
        tangent of u along ``(S0[:, j], D[:, j])``.  k directions in one solve."""
        hit = self._systems.get(("tangent", k))
        if hit is None:
            n, m = self.n, self.m
            hit = self._systems["tangent", k] = RHS(f"tangent of {self!r}", cse(self._tangent_program(k)), n * (1 + k), m * (1 + k))
            hit._structured_jacobian = hit._newton_jacobian(lambda z, q, t: sensitivity_jacobian(self.jacobian_u(z[:n], q[:m], t), k), n, k)
            hit._jacobian_reads = (n, m)
            hit.base = self
        return hit

    def copies(self, k: int) -> "RHS":
        """``k`` independent copies of this system, solved as one: states ``vec(Z)`` (Z of shape
        (k, n), row-major) and parameters ``vec(Q)`` (k, m); copy j is ``Z[j]' = f(Z[j], Q[j], t)``.
        An adjoint solve of the copies gives k separate vector-Jacobian products at once (the
        batched Hessian-vector products of :data:`pyzygote.primitives.ode.odesolve_hvp_p`)."""
        hit = self._systems.get(("copies", k))
        if hit is None:
            n, m = self.n, self.m
            hit = self._systems["copies", k] = RHS(f"{k} copies of {self!r}", cse(self._copies_program(k)), n * k, m * k)

            reads_n, reads_m = self._jacobian_reads

            def block_diagonal(z: np.ndarray, q: np.ndarray, t: float) -> Any:
                from scipy.sparse import block_diag, identity, issparse, kron

                from pyzygote.ode.block_lu import groups_of, repeated

                Z, Q = np.reshape(z, (k, n)), np.reshape(q, (k, m))
                dense = n * k <= DENSE_JACOBIAN_UP_TO
                if np.all(Z[:, :reads_n] == Z[0, :reads_n]) and np.all(Q[:, :reads_m] == Q[0, :reads_m]):
                    # The directions of a Hessian share their point: one Jacobian, repeated.
                    J = self.jacobian_u(Z[0], Q[0], t)
                    if dense:
                        return np.kron(np.eye(k), dense_matrix(J))
                    whole = kron(identity(k, format="csc"), J, format="csc")
                    if not issparse(J):
                        return whole
                    G = groups_of(J)  # copy c is equations c N .. (c + 1) N - 1
                    return repeated(whole, np.concatenate([c * J.shape[0] + G for c in range(k)]))
                blocks = [self.jacobian_u(Z[j], Q[j], t) for j in range(k)]
                if dense:
                    from scipy.linalg import block_diag as dense_block_diag

                    return dense_block_diag(*map(dense_matrix, blocks))
                return block_diag(blocks, format="csc")

            hit._structured_jacobian = block_diagonal
        return hit

    def _newton_jacobian(self, blocks: Callable[..., Any], n: int, k: int) -> Callable[..., Any]:
        """The Jacobian of this derived system ``[u, S]' = [f, J_u S + J_p D]`` (n states, k
        columns) for implicit solvers' Newton steps: ``blocks`` (see :func:`sensitivity_jacobian`)
        above DENSE_JACOBIAN_UP_TO equations, and below it the whole Jacobian, with the block
        ``d(J_u S + J_p D)/du`` that ``blocks`` leaves out.  Without that block the Newton
        iteration of a stiff system can fail and the step shrink: Robertson's forward
        sensitivities (3 states, 3 rates, reltol=1e-8) took SciPy's BDF 15,524 steps where it
        takes 702 with it, and the plain solve 663 (acceptance testing: 14-58 times the
        adjoint's time with FBDF)."""
        N = self.n
        if N > DENSE_JACOBIAN_UP_TO:
            return blocks

        def build() -> Program:  # the first n columns: [J_u; d(J_u S + J_p D)/du]
            b = Builder()
            z, q, t = b.new_input((N,), np.float64), b.new_input((self.m,), np.float64), b.new_input((), np.float64)
            _, B = self._along_columns(z, q, t, np.eye(N)[:, :n], None)
            return b.build([z, q, t], [B])

        def jacobian(z: np.ndarray, q: np.ndarray, t: float) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # as jacobian_u
                B = self._get("coupled", build)(z, q, t)[0]
            if not np.all(np.isfinite(B)):
                # A state at a point where f's derivative is infinite (c ** 0.7 of a central amount
                # dosed from 0): the blocks, whose copies of J_u are mended by difference quotients
                # (RHS.jacobian_u), give Newton a finite matrix there, without the coupling block.
                return blocks(z, q, t)
            J = np.zeros((N, N))
            J[:, :n] = B
            J[n:, n:] = np.kron(B[:n], np.eye(k))
            return J

        return jacobian

    def _copies_program(self, k: int) -> Program:
        from pyzygote.transforms.batch import eval_batched

        n, m = self.n, self.m
        b = Builder()
        z, q, t = b.new_input((n * k,), np.float64), b.new_input((m * k,), np.float64), b.new_input((), np.float64)
        (dZ,) = eval_batched(self.program, [np.reshape(z, (k, n)), np.reshape(q, (k, m)), t], [True, True, False], k)
        return b.build([z, q, t], [np.ravel(dZ)])

    def _tangent_program(self, k: int) -> Program:
        n, m = self.n, self.m
        b = Builder()
        z, q, t = b.new_input((n * (1 + k),), np.float64), b.new_input((m * (1 + k),), np.float64), b.new_input((), np.float64)
        u, S, p, D = z[:n], np.reshape(z[n:], (n, k)), q[:m], np.reshape(q[m:], (m, k))
        du, dS = self._along_columns(u, p, t, S, D)
        return b.build([z, q, t], [np.concatenate([du, np.ravel(dS)])])

    def _along_columns(self, u: Any, p: Any, t: Any, TU: Any, TP: Any) -> tuple[Any, Any]:
        """``f(u, p, t)`` and ``J_u TU + J_p TP`` (n, k), for the k columns of ``TU`` (n, k) and
        ``TP`` (m, k), either ``None`` for zero.

        The columns go through the linearized right-hand side together, in a leading axis (as
        ``jax.vmap`` of a ``jvp``): one numpy operation per equation for all of them.  One JVP per
        column made a program k times as long, whose per-operation overhead dominated: a
        6-subject PK/PD model's 39 sensitivity columns were 2,500 operations of 6 numbers.
        """
        from pyzygote.transforms.batch import eval_batched
        from pyzygote.transforms.linearize import linearize_programs

        given = [T for T in (TU, TP) if T is not None]
        k = np.shape(given[0])[1] if given else 0
        if self.n * k <= _COLUMNS_ONE_BY_ONE:
            # A small system is unrolled to floats (pyzygote.transforms.scalarize), where one JVP
            # per column drops the products with the zeros of unit directions that the batch keeps:
            # 7% faster for the Lotka-Volterra benchmark's 4 columns.
            (du,) = eval_program(self.program, u, p, t)
            cols = []
            for j in range(k):
                tu = None if TU is None else TU[:, j]
                tp = None if TP is None else TP[:, j]
                if isinstance(tp, np.ndarray) and not np.any(tp):
                    tp = None
                _, (tout,) = jvp_eval(self.program, [u, p, t], [tu, tp, None])
                cols.append(np.zeros(self.n) if tout is None else tout)
            return du, np.stack(cols, axis=1) if cols else np.zeros((self.n, 0))
        primal, linear = linearize_programs(self.program, (TU is not None, TP is not None, False))
        du, *res = eval_program(primal, u, p, t)
        (dU,) = eval_batched(linear, [*res, *(np.transpose(T) for T in given)], [False] * len(res) + [True] * len(given), k)
        return du, np.transpose(dU)

    def _jacobian_program(self) -> Program:
        n, m = self.n, self.m
        b = Builder()
        u, p, t = b.new_input((n,), np.float64), b.new_input((m,), np.float64), b.new_input((), np.float64)
        _, J = self._along_columns(u, p, t, np.eye(n), None)
        return b.build([u, p, t], [J])

    def _jacobian_p_program(self) -> Program:
        n, m = self.n, self.m
        b = Builder()
        u, p, t = b.new_input((n,), np.float64), b.new_input((m,), np.float64), b.new_input((), np.float64)
        _, J = self._along_columns(u, p, t, None, np.eye(m))
        return b.build([u, p, t], [J])

    def _sensitivity_program(self, cols: tuple[int, ...]) -> Program:
        n, m, k = self.n, self.m, len(cols)
        b = Builder()
        z, p, t = b.new_input((n + n * k,), np.float64), b.new_input((m,), np.float64), b.new_input((), np.float64)
        u = z[:n]
        S = np.reshape(z[n:], (n, k))
        # Columns of u0 start from the identity and of p from zero; each column of p also has
        # the constant direction e_j in p.
        E = np.zeros((m, k))
        for j, c in enumerate(cols):
            if c >= n:
                E[c - n, j] = 1.0
        du, dS = self._along_columns(u, p, t, S, E if m and any(c >= n for c in cols) else None)
        return b.build([z, p, t], [np.concatenate([du, np.ravel(dS)])])

    def _adjoint_inputs(self) -> tuple[Builder, list[Tracer]]:
        """A builder and the adjoint programs' inputs ``u, lambda, p, t``."""
        b = Builder()
        shapes = ((self.n,), (self.n,), (self.m,), ())
        return b, [b.new_input(shape, np.float64) for shape in shapes]

    def _adjoint_program(self) -> Program:
        fwd, bwd = vjp_programs(self.program)
        b, (u, lam, p, t) = self._adjoint_inputs()
        _, *res = eval_program(fwd, u, p, t)
        ct_u, ct_p, _ = eval_program(bwd, *res, lam)
        return b.build([u, lam, p, t], [-ct_u, -ct_p])

    def _adjoint_joined_program(self) -> Program:
        b, inputs = self._adjoint_inputs()
        dlam, dmu = eval_program(self._program("adj", self._adjoint_program), *inputs)
        return b.build(inputs, [np.concatenate([dlam, dmu])])

    def _backsolve_program(self) -> Program:
        n, m = self.n, self.m
        b = Builder()
        z, p, t = b.new_input((2 * n + m,), np.float64), b.new_input((m,), np.float64), b.new_input((), np.float64)
        u, lam = z[:n], z[n : 2 * n]
        (du,) = eval_program(self.program, u, p, t)
        dlam, dmu = eval_program(self._adjoint_program(), u, lam, p, t)
        return b.build([z, p, t], [np.concatenate([du, dlam, dmu])])


def _values_from_leaves(prog: Program, leaves: "Sequence[Any]") -> list[np.ndarray]:
    """``prog``'s outputs (computed from p's leaves alone) at ``leaves``, raveled; those that
    need a traced leaf (``None``) are left out."""
    env: dict[Var, Any] = {v: x for v, x in zip(prog.inputs, leaves) if x is not None}
    env.update(zip(prog.constvars, prog.consts))
    for eqn in prog.eqns:
        if all(isinstance(a, Literal) or a in env for a in eqn.inputs):
            try:
                out = eqn.prim.bind(*(a.value if isinstance(a, Literal) else env[a] for a in eqn.inputs), **eqn.params)
            except Exception:  # a value this check cannot compute: it warns about the others
                continue
            env.update(zip(eqn.outputs, out if eqn.prim.multiple_results else (out,)))
    return [np.asarray(env[v], dtype=float) if isinstance(v, Var) and v in env else None for v in prog.outputs]


def _solved(form: tuple[Any, Any], value: Any) -> np.ndarray:
    """The times t where ``a * t + b == value``, raveled (none where ``a`` is 0)."""
    a, b = (np.asarray(x, dtype=float) for x in form)
    with np.errstate(divide="ignore", invalid="ignore"):
        times = (np.asarray(value, dtype=float) - b) / a
    return np.ravel(np.where(a != 0, times, np.nan))


# More whole-number crossings than this are a fine grid (np.floor(t * 1000)), not a schedule.
_MAX_ROUNDED = 1000


def _rounds(name: str, params: dict[str, Any]) -> bool:
    """Whether the equation rounds to whole numbers: floor, ceil, rint or a conversion to integers."""
    if name in ("floor", "ceil", "round"):
        return True
    return name == "convert_element_type" and np.dtype(params.get("dtype", float)).kind in "iu"


def _whole_crossings(form: tuple[Any, Any], offset: float, span: tuple[float, float]) -> np.ndarray:
    """The times in ``span`` where ``a * t + b`` passes a whole number plus ``offset``."""
    a, b = (np.ravel(np.asarray(x, dtype=float)) for x in form)
    a, b = np.broadcast_arrays(a, b)
    found: list[np.ndarray] = []
    for ai, bi in zip(a, b):
        if ai == 0 or not np.isfinite(ai) or not np.isfinite(bi):
            continue
        ends = np.sort([ai * span[0] + bi - offset, ai * span[1] + bi - offset])
        first, last = np.ceil(ends[0]), np.floor(ends[1])
        if last - first + 1 > _MAX_ROUNDED:
            continue
        found.append((np.arange(first, last + 1) + offset - bi) / ai)
    return np.concatenate(found) if found else np.zeros(0)


def _affine_step(name: str, params: dict[str, Any], ins: Any, known: list[Any], constant: Callable[[Any], Any]) -> Any:
    """``(a, b)`` of an equation's result, when it is ``a * t + b`` because its inputs are (``known``
    holds their forms, ``None`` for the others) or constants; else ``None``."""
    if name in _SAME_T:  # broadcast, reshape or convert: the same values
        return known[0] if params.get("dtype") is None or np.dtype(params["dtype"]).kind == "f" else None
    if name == "neg":
        a, b = known[0]
        return -np.asarray(a), -np.asarray(b)
    if name not in ("add", "sub", "mul", "div") or len(ins) != 2:
        return None
    (fx, fy), (cx, cy) = known, (constant(ins[0]), constant(ins[1]))
    if fx is not None and fy is None and cy is not None:  # (a t + b) op c
        a, b = fx
        if name == "add":
            return a, b + cy
        if name == "sub":
            return a, b - cy
        if name == "mul":
            return a * cy, b * cy
        return (a / cy, b / cy) if np.all(cy != 0) else None
    if fy is not None and fx is None and cx is not None:  # c op (a t + b)
        a, b = fy
        if name == "add":
            return a, cx + b
        if name == "sub":
            return -np.asarray(a), cx - b
        if name == "mul":
            return cx * a, cx * b
    return None


# Up to this many unknowns, the Jacobians of derived systems are dense: building a scipy.sparse
# matrix costs more than a dense LU of a small one (a 2-state model's forward sensitivities
# through Rodas5P spent most of their time in scipy.sparse constructors).
DENSE_JACOBIAN_UP_TO = 64
# The ODE's own Jacobian is dense up to this many states: a 1-D heat equation's warm solves with a
# sparse one (interleaved with dense ones, the best of 5) took 1.26 times as long at 120 states
# with FBDF and Rodas5P (splu's solves and sparse sums cost more than LAPACK's there), 0.9 and
# 0.5 times at 160, 0.4 and 0.16 times at 300.  Above it, it is sparse when at most this fraction
# of it can be nonzero (splu of a full matrix of 100 to 400 states took 3 times getrf's time).
DENSE_STATE_JACOBIAN_UP_TO = 150
SPARSE_JACOBIAN_FILL = 0.1


def sensitivity_jacobian(J: Any, k: int) -> Any:
    """Jacobian of ``[u, vec(S)]' = [f, J_u S + J_p]`` (S of shape (n, k), row-major) for implicit solvers' Newton steps.

    The block ``d(J_u S + J_p)/du`` (second derivatives of f) is left out: the error
    control, and so the solution's accuracy, does not use it, and tracing it column by column
    was most of the cost of a Hessian through a large stiff solve; but Newton then converges
    slower, and a small stiff system's steps shrink, so up to DENSE_JACOBIAN_UP_TO equations
    RHS._newton_jacobian adds it.  ``J_u S`` is ``kron(J_u, I_k)``
    acting on ``vec(S)``.  The tangent system ``[u, s]`` is the case ``k = 1``.

    So the result is 1 + k copies of ``J`` up to a permutation; for a sparse ``J`` (above
    DENSE_STATE_JACOBIAN_UP_TO states, or a derived system's) it says where they are
    (:class:`pyzygote.ode.block_lu.RepeatedBlocks`), and Radau and BDF factorize one.
    """
    from scipy.sparse import block_diag, csr_matrix, identity, issparse, kron

    from pyzygote.ode.block_lu import groups_of, repeated

    n = np.shape(J)[0]
    if n * (1 + k) <= DENSE_JACOBIAN_UP_TO:
        dense = np.zeros((n * (1 + k), n * (1 + k)))
        J = dense_matrix(J)
        dense[:n, :n] = J
        dense[n:, n:] = np.kron(J, np.eye(k))
        return dense
    from pyzygote.ode.sparsity import StructuralJacobian

    Jc = csr_matrix(J)
    whole = block_diag([Jc, kron(Jc, identity(k, format="csr"))], format="csc")
    if not issparse(J):
        return whole  # a small system's dense J (at most DENSE_STATE_JACOBIAN_UP_TO states): as it was
    # Copies of J's own repeated block: its groups, and theirs in each column of S (entry
    # (i, j) of S is equation n + i k + j), which kron(J, I_k) couples as J couples u
    # (pyzygote.ode.block_lu factorizes one block for them all).  kron and block_diag keep J's
    # places, zero or not: a structural J's system is structural, and LSODA can take its band
    # (1 + k copies of J's pattern, each renumbered into J's band).
    G = groups_of(J)
    groups = np.concatenate([G] + [n + G * k + j for j in range(k)])
    return repeated(whole, groups, structural=isinstance(J, StructuralJacobian))


_OUT_OF_PLACE: "weakref.WeakKeyDictionary[Any, Callable[..., Any]]" = weakref.WeakKeyDictionary()
_OUT_OF_PLACE_ATTRIBUTE = "_pyzygote_out_of_place"


def out_of_place(f: Any) -> Any:
    """``f`` as pyzygote calls it, ``f(u, p, t) -> du``.

    An in-place ``f(du, u, p, t)``, which DifferentialEquations.jl also takes (telling the
    two apart by their number of arguments), fills a fresh ``du`` of zeros; item assignment
    into it is traced as functional updates.  The wrapper is kept per function, so that its
    trace is cached as ``f``'s own would be.

    >>> import numpy as np
    >>> def decay(du, u, p, t):
    ...     du[0] = -p[0] * u[0]
    >>> out_of_place(decay)(np.array([2.0]), np.array([3.0]), 0.0)
    array([-6.])
    """
    if not _takes_du_u_p_t(f):
        return f
    from pyzygote.tracer import Tracer

    def make() -> Callable[..., Any]:
        def in_place(u: Any, p: Any, t: Any) -> Any:
            du = np.zeros_like(u)
            f(du, u, p, t)
            if isinstance(du, Tracer) and du._version == 0:
                raise TypeError(
                    f"the in-place right-hand side {getattr(f, '__name__', f)!r} wrote nothing into du: assign into "
                    "it (du[0] = ..., du[:] = ...), as DifferentialEquations.jl expects; `du = ...` rebinds the "
                    "name and leaves the solver's du at zero"
                )
            return du

        return in_place

    return wrapper_of(f, _OUT_OF_PLACE_ATTRIBUTE, _OUT_OF_PLACE, make)


def wrapper_of(f: Any, attribute: str, table: Any, make: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """``make()``, a wrapper calling ``f``, made once per ``f`` so that its trace is cached as ``f``'s own
    would be; named as ``f`` (for messages), with ``f`` as its ``_pz_f``.

    A plain function keeps its wrapper in its own ``__dict__`` under ``attribute`` (a cycle the
    collector frees): in a WeakKeyDictionary such as ``table``, the wrapper calling ``f`` kept
    ``f``, a closure made per call of a loss, alive for good; the closure walk of the wrapper's
    trace notes ``f`` by a marker (its ``_pz_f``).  Other callables use ``table``; one that
    cannot be weakly referred to is wrapped anew each time.
    """
    own = isinstance(f, types.FunctionType)
    try:
        hit = f.__dict__.get(attribute) if own else table.get(f)
    except TypeError:
        hit = None
    if hit is not None and getattr(hit, "_pz_f", None) is f:  # not one copied with f's __dict__ (functools.wraps)
        return hit
    hit = make()
    hit.__name__ = hit.__qualname__ = getattr(f, "__name__", "f")
    hit._pz_f = f  # type: ignore[attr-defined]
    try:
        if own:
            f.__dict__[attribute] = hit
        else:
            table[f] = hit
    except TypeError:
        pass
    return hit


# First parameters that name the derivative an in-place right-hand side fills: they decide
# for a function that takes three arguments as well as four (user testing: f(du, u, p, t=0.0)
# ran as f(u, p, t), silently wrong).
_DERIVATIVE_NAMES = frozenset(
    ("du", "dx", "dy", "dz", "dU", "dX", "dY", "dudt", "du_dt", "dxdt", "dx_dt", "dydt", "dy_dt", "dstate", "out", "udot", "xdot", "ydot")
)


def _warn_unwritten(f: Any, layout: Layout) -> None:
    """Warn when an in-place right-hand side leaves entries of ``du`` unassigned (user testing:
    a forgotten ``du[2] = ...`` made a state constant, silently).  ``f`` runs twice at a random
    point, with ``du`` starting at 0 and at another number: an entry that keeps its start
    both times was never written (an accumulated ``du[i] += x`` moves with its start)."""
    import warnings

    from pyzygote.pytree import unflatten

    rng = np.random.default_rng(20261128)
    u = rng.normal(size=layout.u_shape)
    p = unflatten(layout.p_tree, layout.with_statics([rng.normal(size=shape) for shape in layout.p_shapes]))
    start = 0.7390851332151607
    kept = []
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for fill in (0.0, start):
                du = np.full(layout.u_shape, fill)
                f(du, u.copy(), p, 0.5)
                kept.append(du == fill)
    except Exception:  # what tracing accepted may still fail on plain arrays: no verdict
        return
    unwritten = np.argwhere(kept[0] & kept[1])
    if unwritten.size:
        shown = ", ".join(f"du[{', '.join(map(str, i))}]" for i in unwritten[:5]) + (", ..." if len(unwritten) > 5 else "")
        warnings.warn(
            f"the in-place right-hand side {getattr(f, '__name__', f)!r} never assigns {shown}: pyzygote starts du at "
            "0, so those states stay constant (DifferentialEquations.jl leaves stale values there). Assign every "
            "entry, e.g. du[i] = 0.0 for a state meant to be constant",
            UserWarning,
            stacklevel=4,
        )


# Parameter names that say "time": a right-hand side whose first argument (solve_ivp, diffrax:
# f(t, y, ...)) or second (scipy.integrate.odeint: f(y, t, ...)) is so named would run with its
# arguments scrambled, silently wrong (user testing: odeint's deriv(y, t, p) gave exp(-1/2) for
# exp(-2), gradient 0).  "tau" may instead name a parameter, a time constant (f(x, tau, t)):
# a later parameter named t or time settles that it is one.
_TIME_NAMES = frozenset(("t", "time", "tt", "tau"))
_PLAIN_TIME_NAMES = frozenset(("t", "time"))


def _names_time(named: "Sequence[inspect.Parameter]", i: int) -> bool:
    """Whether positional parameter ``i`` is named as the time and no later one is named t or time."""
    return len(named) > i and named[i].name in _TIME_NAMES and not any(q.name in _PLAIN_TIME_NAMES for q in named[i + 1 :])


def _takes_du_u_p_t(f: Any) -> bool:
    """Whether ``f`` is an in-place right-hand side ``f(du, u, p, t)``; a right-hand side written
    for SciPy (``f(t, u)`` for solve_ivp, ``f(y, t, ...)`` for odeint), or any other call, gets told
    the order pyzygote calls it in."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):  # builtins and other callables without a signature
        return False
    name = getattr(f, "__name__", f)
    named = [q for q in sig.parameters.values() if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    first = named[0] if named else None
    if _names_time(named, 0):
        # f(t, y, k) written for solve_ivp(..., args=(k,)) or diffrax's f(t, y, args) would run, scrambled.
        raise TypeError(
            f"the right-hand side's first argument is named {first.name!r}, but pyzygote calls f(u, p, t), "  # type: ignore[union-attr]
            f"SciML's order ({name!r} has the signature {sig}). For a function written for "
            "SciPy's solve_ivp or diffrax, f(t, y, p), pass lambda u, p, t: f(t, u, p)."
        )
    derivative_first = first is not None and first.name in _DERIVATIVE_NAMES
    if _names_time(named, 1) and not derivative_first:
        # scipy.integrate.odeint's order, func(y, t, *args): deriv(y, t, p) would get p as t and t as p.
        rest = len(named) - 2
        call = name if isinstance(name, str) and name.isidentifier() else "f"  # not <lambda> or a partial's repr
        fix = {0: f"lambda u, p, t: {call}(u, t)", 1: f"lambda u, p, t: {call}(u, t, p)"}.get(rest, f"lambda u, p, t: {call}(u, t, *p)")
        raise TypeError(
            f"the right-hand side's second argument is named {named[1].name!r}, but pyzygote calls f(u, p, t), "
            f"SciML's order ({name!r} has the signature {sig}). For a function written for scipy.integrate.odeint, "
            f"func(y, t, ...), pass {fix}"
            + (" with p a tuple of those arguments." if rest > 1 else ".")
            + (
                f" If {named[1].name!r} is a parameter (a time constant), name the third argument t: "
                f"f(u, {named[1].name}, t)."
                if rest == 1 and named[1].name not in _PLAIN_TIME_NAMES
                else ""
            )
        )
    three, four = (_binds(sig, k) for k in (3, 4))
    in_place = four and (not three or derivative_first)
    if in_place and _names_time(named, 1):
        raise TypeError(
            f"the in-place right-hand side's second argument is named {named[1].name!r}, but pyzygote calls "
            f"f(du, u, p, t), SciML's order ({name!r} has the signature {sig}); pass "
            "lambda du, u, p, t: f(du, t, u, p)."
        )
    if three or four:
        return in_place
    raise TypeError(
        f"the right-hand side must take three arguments f(u, p, t), SciML's order (or four, f(du, u, p, t), "
        f"filling du in place), but {name!r} has the signature {sig}. For a function written "
        "for SciPy's solve_ivp, f(t, u), pass lambda u, p, t: f(t, u)."
    )


def _binds(sig: inspect.Signature, arity: int) -> bool:
    try:
        sig.bind(*[None] * arity)
        return True
    except TypeError:
        return False


def check_signature(f: Any) -> None:
    """A TypeError now, where ``f`` cannot be a right-hand side ``f(u, p, t)`` or ``f(du, u, p, t)``
    by its parameters (:func:`_takes_du_u_p_t`): an ODEProblem is told when it is made, not first
    when solved.  A Julia right-hand side has no Python parameters to read."""
    from pyzygote.julia.functions import is_julia_function

    if not is_julia_function(f):
        _takes_du_u_p_t(f)

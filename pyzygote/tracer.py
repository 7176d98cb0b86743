"""Tracer objects: stand-ins for arrays that record numpy calls into the IR.

A traced function receives :class:`Tracer` objects.  They speak numpy's
protocols (``__array_ufunc__``, ``__array_function__``, operators, indexing,
common methods), so ordinary numpy code runs on them unchanged and each call
becomes equations of a :class:`~pyzygote.ir.Program`.

>>> import numpy as np
>>> from pyzygote.tracer import Builder
>>> b = Builder()
>>> x = b.new_input((3,), np.float64)
>>> y = np.exp(x).sum()
>>> y.shape, y.dtype
((), dtype('float64'))
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import re
import itertools
import sys
import threading
import weakref
from typing import Any, Iterator, Sequence

import numpy as np

from pyzygote.errors import CapturedTracerError, TracerBoolError, UnsupportedOperationError
from pyzygote.ir import Aval, Eqn, Literal, Program, Var
from pyzygote.numpy_api import is_supported, lookup

__all__ = ["Tracer", "Builder", "as_operand", "composition", "SMOOTH", "CONTINUOUS"]

# What pyzygote's own compositions promise about the comparisons they record (see
# :func:`composition`): checks for switches on an ODE's state read it from ``Program.choices``.
SMOOTH = "smooth"
CONTINUOUS = "continuous"
_COMPOSITION: "contextvars.ContextVar[str | None]" = contextvars.ContextVar("pyzygote_composition", default=None)
# The numpy function the user called while pyzygote's handler of it runs, and whether the handler
# has called other numpy functions (a composite: np.trunc is np.where(x < 0, np.ceil(x),
# np.floor(x))).  The equations of a composite that stop a derivative record the user's function
# in ``Program.spelled``, so that pz.ZeroGradientWarning names np.trunc, not its parts.
_CALLED: "contextvars.ContextVar[tuple[Any, bool] | None]" = contextvars.ContextVar("pyzygote_called", default=None)


@contextlib.contextmanager
def composition(kind: str) -> Iterator[None]:
    """Mark the equations recorded inside as part of a composition that is ``SMOOTH`` (its
    comparisons only pick among exact formulas: ``np.logaddexp``'s stable form) or
    ``CONTINUOUS`` (kinks but no jumps: ``np.interp``, ``np.sort``).  The outermost one counts.

    >>> import numpy as np
    >>> from pyzygote.tracer import Builder, composition, SMOOTH
    >>> b = Builder()
    >>> x = b.new_input((), np.float64)
    >>> with composition(SMOOTH):
    ...     y = np.where(x > 0, x, 0.0)
    >>> sorted(set(b.build([x], [y]).choices.values()))
    ['smooth']
    """
    if _COMPOSITION.get() is not None:
        yield
        return
    token = _COMPOSITION.set(kind)
    try:
        yield
    finally:
        _COMPOSITION.reset(token)


def _calling(func: Any) -> Any:
    """Enter the handler of the numpy function ``func`` (see _CALLED): a token to reset, or None
    inside a composite already known as one."""
    called = _CALLED.get()
    if called is None:
        return _CALLED.set((func, False))
    return None if called[1] else _CALLED.set((called[0], True))


# The read-only copies of numpy constants that programs hold, by id, while they live.
_PRIVATE: "weakref.WeakValueDictionary[int, np.ndarray]" = weakref.WeakValueDictionary()
# Constants up to this size are compared by contents when met (see Builder.to_atom).
_INTERNED_BYTES = 1024


def _complex_error(name: str) -> UnsupportedOperationError:
    # Only parts of numpy's complex arithmetic would trace right (np.linalg drops imaginary
    # parts: user testing got a wrong frequency response and a zero gradient), so none does.
    return UnsupportedOperationError(
        f"pyzygote traces real numbers only, and a complex value appeared here (a 1j or a complex array "
        f"met a traced value; pyzygote's operation: {name}). Write the complex arithmetic in real and imaginary parts: "
        "(a + ib)(c + id) = (ac - bd) + i(ad + bc), |z|**2 = re**2 + im**2, and a complex linear system "
        "(A + iB) z = f as the real one np.block([[A, -B], [B, A]]) @ [re; im] = [f.real; f.imag]"
    )


class Builder:
    """Collects the equations of one program while a function is traced.

    A builder made while another trace runs is nested in it (its ``level`` is
    higher).  With ``lift=True`` it takes a traced value of an enclosing
    trace that the function reads from its closure (``pz.gradient(lambda y:
    f(y, w), x)`` inside a trace of ``w``) as an extra input of its program,
    recorded in ``lifted``; without, such a value is an error.
    """

    _levels = itertools.count()
    _active = threading.local()

    @staticmethod
    def tracing() -> bool:
        """A user function is being traced in this thread (so a transformation called now is nested)."""
        return bool(getattr(Builder._active, "stack", None))

    @staticmethod
    def is_active(builder: "Builder") -> bool:
        return any(b is builder for b in getattr(Builder._active, "stack", ()))

    @contextlib.contextmanager
    def active_trace(self) -> Iterator[None]:
        stack = Builder._active.__dict__.setdefault("stack", [])
        stack.append(self)
        try:
            yield
        finally:
            stack.pop()

    def __init__(self, lift: bool = False) -> None:
        self.eqns: list[Eqn] = []
        self._consts: dict[int, tuple[Var, Any]] = {}
        self._const_values: dict[Var, np.ndarray] = {}
        self._interned: dict[tuple[Any, ...], Var] = {}  # small constants by dtype, shape and bytes
        # Each numpy constant as first read: a careful trace reads some again after the function
        # changed them, but a call is like this trace only if they start as first read.
        self.first_reads: dict[int, tuple[Any, np.ndarray]] = {}
        # The input tracers are held weakly: a tracer holds its builder, and the cycle kept a
        # trace's equations (30,000 for a long loop's derivatives) for the garbage collector.
        self._inputs: dict[int, tuple["weakref.ref[Tracer]", Var]] = {}
        self.level = next(Builder._levels)
        self.lift = lift
        self.lifted: dict[int, tuple["Tracer", Var]] = {}
        # Whether each use of a numpy constant compares it with its copy (see ConstantChanged).
        self.careful = bool(getattr(Builder._active, "careful", False))
        # Set when the function's program is built: its traced values are then stale placeholders.
        self.ended = False
        self.choices: dict[int, str] = {}  # var uid -> the kind of composition that made it
        self.spelled: dict[int, Any] = {}  # var uid -> the numpy function the user called (see _CALLED)
        # How many of the inputs are the leaves of the function's first argument (set by tracing;
        # messages use it: a dict of parameters is many leaves).
        self.first_argument_inputs = 0

    def new_input(self, shape: Sequence[int], dtype: Any) -> "Tracer":
        if np.dtype(dtype).kind == "c":
            raise _complex_error("an input")
        t = Tracer(self, Var(Aval(tuple(shape), np.dtype(dtype))))
        self._inputs[id(t)] = (weakref.ref(t), t._var)
        return t

    def _input_var(self, t: "Tracer") -> Var:
        """An input's own variable, even if the traced code assigned into it (``x[0] = v``)."""
        hit = self._inputs.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else t._var

    def to_atom(self, x: Any) -> Var | Literal:
        if isinstance(x, Tracer):
            if x._builder is self:
                return x._var
            if not Builder.is_active(x._builder):
                raise trace_ended_error()
            if not self.lift:
                raise CapturedTracerError(
                    f"a traced value of an enclosing trace (a value being differentiated, shape {x.shape}, "
                    f"dtype {x.dtype}) was read here by a function that pyzygote traces on its own, which "
                    "must receive such values as arguments, not capture them from outside",
                    tuple(x.shape),
                    x.dtype,
                )
            hit = self.lifted.get(id(x))
            if hit is None:
                hit = self.lifted[id(x)] = (x, Var(x._var.aval))
            return hit[1]
        _refuse_masked(x)
        arr = np.asarray(x)
        if arr.dtype == object:
            _refuse_sparse(arr.item() if arr.ndim == 0 else x)
            raise TypeError(f"cannot use an object array as a constant: {arr!r}")
        if arr.ndim == 0:
            return Literal(arr, arr.dtype)
        hit = self._consts.get(id(x))
        if hit is not None and hit[1] is x and (not self.careful or _unchanged_since(self._const_values[hit[0]], arr)):
            return hit[0]
        # Small constants of equal contents and layout are one constant: a loop's np.zeros(1) made
        # at each of 1,000 steps was 2,000 constants, each checked against the results at every call.
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.nbytes <= _INTERNED_BYTES and arr.flags.c_contiguous else None
        var = self._interned.get(key) if key is not None else None
        if var is not None:
            self._consts[id(x)] = (var, x)
            self.first_reads.setdefault(id(x), (x, self._const_values[var]))
            return var
        # A read-only private copy: the program must not change if the caller
        # later mutates the array it closed over.  A program's own constant, met again when a
        # derivative program is built from it, is one already (a closed-over data set of 120 MB
        # was copied once per derivative program).
        if _PRIVATE.get(id(arr)) is arr:
            value = arr
        else:
            value = np.array(arr, copy=True)
            value.setflags(write=False)
            _PRIVATE[id(value)] = value
        var = Var(Aval(value.shape, value.dtype))
        if key is not None and value.flags.c_contiguous:
            self._interned[key] = var
        self._consts[id(x)] = (var, x)  # holding ``x`` keeps its id from being reused
        self._const_values[var] = value
        self.first_reads.setdefault(id(x), (x, value))
        return var

    def add_eqn(self, prim: Any, args: Sequence[Any], params: dict[str, Any]) -> Any:
        if self.ended:
            raise trace_ended_error()
        # This trace's own values, not views, are read directly: every equation of a trace and
        # of its derivatives comes through here.
        atoms = tuple([x._v if x.__class__ is Tracer and x._builder is self and x._root is None else self.to_atom(x) for x in args])
        out = prim.abstract_eval(*[a.aval for a in atoms], **params)
        # A traced operand's variable was checked when it was made (an equation's output, an
        # input, a value of an enclosing trace), so only constants and results are checked here.
        for x, a in zip(args, atoms):
            if x.__class__ is not Tracer and a.aval.dtype.kind == "c":
                raise _complex_error(prim.name)
        kind = _COMPOSITION.get()
        called = _CALLED.get()
        if not prim.multiple_results:
            if out.dtype.kind == "c":
                raise _complex_error(prim.name)
            var = Var(out)
            self.eqns.append(Eqn(prim, atoms, params, (var,)))
            if kind is not None:
                self.choices[var.uid] = kind
            if called is not None and called[1] and (prim.zero_derivative or prim.no_tangent_from or out.dtype.kind not in "fc"):
                self.spelled[var.uid] = called[0]  # where a derivative can stop (see _CALLED)
            return Tracer(self, var)
        outvars = tuple(Var(a) for a in out)
        if any(v.aval.dtype.kind == "c" for v in outvars):
            raise _complex_error(prim.name)
        self.eqns.append(Eqn(prim, atoms, params, outvars))
        if kind is not None:
            self.choices.update((v.uid, kind) for v in outvars)
        if called is not None and called[1]:
            self.spelled[outvars[0].uid] = called[0]
        return tuple(Tracer(self, v) for v in outvars)

    def build(self, inputs: Sequence["Tracer"], outputs: Sequence[Any]) -> Program:
        if not self.careful:
            changed = [
                (x, self._const_values[var])
                for var, x in self._consts.values()
                if isinstance(x, np.ndarray) and not _unchanged_since(self._const_values[var], x)
            ]
            if changed:
                raise ConstantChanged(changed)
        out_atoms = tuple(self.to_atom(as_operand(o)) for o in outputs)
        live = {a.uid for a in out_atoms if isinstance(a, Var)}
        kept: list[Eqn] = []
        for eqn in reversed(self.eqns):
            outs = eqn.outputs
            if outs[0].uid in live if len(outs) == 1 else any(v.uid in live for v in outs):
                kept.append(eqn)
                for a in eqn.inputs:
                    if a.__class__ is Var:
                        live.add(a.uid)
        kept.reverse()
        values = self._const_values
        constvars = tuple(v for v in values if v.uid in live)
        return Program(
            inputs=tuple(self._input_var(t) for t in inputs) + tuple(v for _, v in self.lifted.values()),
            constvars=constvars,
            consts=tuple(values[v] for v in constvars),
            eqns=kept,
            outputs=out_atoms,
            choices={uid: kind for uid, kind in self.choices.items() if uid in live},
            spelled={uid: f for uid, f in self.spelled.items() if uid in live},
        )


def as_operand(x: Any) -> Any:
    """A tracer, or a numpy array for a constant.

    Lists, tuples and object arrays holding tracers (``np.array([a*x, b*y])``
    on traced scalars builds an object array) become one stacked traced array.
    """
    if isinstance(x, Tracer):
        return x
    if isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.dtype == object):
        items = [as_operand(e) for e in (x.flat if isinstance(x, np.ndarray) else x)]
        if any(isinstance(e, Tracer) for e in items):
            shape = x.shape if isinstance(x, np.ndarray) else (len(items),)
            return np.reshape(np.stack(items), shape + np.shape(items[0]))
    _refuse_masked(x)
    arr = np.asarray(x)
    if arr.dtype == object and arr.ndim == 0:
        _refuse_sparse(arr.item())
    return arr


def _refuse_sparse(x: Any) -> None:
    from pyzygote.scipy_calls import sparse_error

    err = sparse_error(x)
    if err is not None:
        raise err


def _refuse_masked(x: Any) -> None:
    if isinstance(x, np.ma.MaskedArray):
        from pyzygote.tracing import masked_array_message

        raise TypeError(masked_array_message("an array the traced function uses"))


def _no_out(out: Any) -> dict[str, Any]:
    """No keywords for numpy when ``out`` is None; else numpy's ``out=`` reaches pyzygote's refusal."""
    return {} if out is None else {"out": out}


def trace_ended_error() -> UnsupportedOperationError:
    return UnsupportedOperationError(
        "a traced value was used after its trace ended: the traced function stored it (in a global, a "
        "list, a dict or an attribute: running statistics, a log of losses) or a closure kept it. "
        "Traced values are placeholders that exist only while their function is traced, and the "
        "function's Python side effects run only then, once, not at every call (as in jax.jit). "
        "Return such values as auxiliary outputs (pz.withgradient(f, x) with f returning (loss, aux), "
        "or pz.grad(f, has_aux=True)) and update the state outside the differentiated function."
    )


# What to call for a math function named otherwise in numpy (or found in scipy.special)
_INSTEAD_OF_MATH = {
    "fabs": "np.abs", "pow": "np.power", "atan": "np.arctan", "asin": "np.arcsin", "acos": "np.arccos",
    "atan2": "np.arctan2", "asinh": "np.arcsinh", "acosh": "np.arccosh", "atanh": "np.arctanh",
    "lgamma": "scipy.special.gammaln", "gamma": "scipy.special.gamma", "erf": "scipy.special.erf",
    "erfc": "scipy.special.erfc",
}  # fmt: skip


def _math_function_on_callers_line() -> str | None:
    """The ``math`` function named on the line whose C code called ``float()`` on a traced value
    (``math.exp(x)``), or None: C functions leave no frame of their own, so the line is read."""
    import linecache

    frame = sys._getframe(2)  # __float__'s caller: the line that called math.exp
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    calls = re.findall(r"\bmath\.(\w+)\s*\(", line)
    # only where the line says which call it was, and numpy has one to take its place (review:
    # math.sqrt(2.0) * float(x) blamed math.sqrt, math.fsum suggested np.fsum)
    if len(calls) != 1 or re.search(r"\bfloat\s*\(", line):
        return None
    return calls[0] if calls[0] in _INSTEAD_OF_MATH or callable(getattr(np, calls[0], None)) else None


# How to see a value computed inside a differentiated function (user testing: print(f"{s:.3f}")).
_SEE_VALUES = (
    "To log or print a value computed inside the function, return it as an auxiliary output, "
    "(loss, {\"loss\": loss, \"s\": s}), and use pz.value_and_grad(f, has_aux=True)(x), which returns "
    "((loss, aux), gradient), or print outside the differentiated function (pz.value_and_grad returns the loss)."
)


def _concretization_error(what: str, advice: str = "") -> TracerBoolError:
    return TracerBoolError(
        f"{what} of a traced value: tracing cannot branch on or read out a value "
        f"that depends on the function's inputs.{advice} Use np.where(cond, a, b) for "
        "data-dependent choices (or np.maximum, np.clip). To fill an array element by "
        "element, create it from a traced one (np.zeros_like(u)) or build it with np.array([...]) "
        "or np.stack: an array from np.zeros(n) cannot hold traced values. If numpy itself did this "
        "(np.maximum, np.clip, np.max or a comparison on an array that np.array([...]) or np.asarray(x) "
        "made of traced values), build that array with np.stack([...]) instead."
    )


def input_positions(err: BaseException) -> list[int] | None:
    """The positions, among the inputs of its trace, of those that the value ``err`` refused
    (:meth:`Tracer._refused`) depends on; None where that is not known."""
    ref = getattr(err, "value", None)
    value = ref() if isinstance(ref, weakref.ref) else None
    if not isinstance(value, Tracer):
        return None
    b = value._builder
    needed = {value._var}
    for e in reversed(b.eqns):
        if any(o in needed for o in e.outputs):
            needed.update(a for a in e.inputs if isinstance(a, Var))
    return [i for i, (_, v) in enumerate(b._inputs.values()) if v in needed]


def is_weak(x: Any) -> bool:
    """Whether numpy's type promotion sees ``x`` as a Python number (weak): a Python float or
    int (not a bool), or a traced one (:attr:`Tracer._weak`)."""
    if isinstance(x, Tracer):
        return x._weak
    return isinstance(x, (int, float)) and not isinstance(x, (bool, np.generic))


def _weak_if(x: Any, o: Any, out: Any) -> Any:
    """``out`` of Python arithmetic on ``x`` and ``o``: a Python number when both are (numpy's own
    functions, np.exp(x), give numpy scalars, which are not weak)."""
    if isinstance(out, Tracer) and is_weak(x) and is_weak(o) and out.dtype.kind == "f":
        out._weak = True
    return out


_DIRECT_DTYPES = frozenset(map(np.dtype, (np.float64, np.float32)))


class _Primitives(dict):  # type: ignore[type-arg]
    """Primitives by name, looked up on first use (their modules import this one)."""

    def __missing__(self, name: str) -> Any:
        from pyzygote.primitive import PRIMITIVES

        self[name] = PRIMITIVES[name]
        return self[name]


_ARITHMETIC = _Primitives()


def _direct_operand(x: Any, like: "Tracer") -> Any:
    """``x`` as an operand of ``like``'s equation when numpy's dispatch could only record that
    equation unchanged, else ``None``: a traced array of ``like``'s aval (not a view, at most one
    axis, so no layout to follow), or a Python number beside a float64 one."""
    if x.__class__ is Tracer:
        if x._root is None and x._builder is like._builder and x._v.aval == like._v.aval:
            return x
        return None
    if (x.__class__ is float or x.__class__ is int) and like._v.aval.dtype == np.float64:
        return np.asarray(x, np.float64)
    return None


def _arithmetic(ufunc: Any, name: str, x: Any, y: Any) -> Any:
    """``ufunc(x, y)`` for Python's operators.  Where numpy's dispatch would record one equation
    on the operands as they are (same shape and float dtype), it is recorded directly: a loop's
    scalar steps spent most of their tracing time, and of their derivatives', in that dispatch."""
    traced = x if x.__class__ is Tracer else y
    aval = traced._v.aval if traced._root is None else None
    if aval is not None and aval.dtype in _DIRECT_DTYPES and len(aval.shape) <= 1:
        a, b = _direct_operand(x, traced), _direct_operand(y, traced)
        if a is not None and b is not None:
            return _weak_if(x, y, traced._builder.add_eqn(_ARITHMETIC[name], (a, b), {}))
    return _weak_if(x, y, ufunc(x, y))


def _strong(x: Any) -> Any:
    """``x`` with its weak traced numbers (:func:`is_weak`) as plain float64 arrays."""
    if isinstance(x, Tracer):
        return x.copy() if x._weak else x
    if isinstance(x, (list, tuple)) and any(isinstance(e, Tracer) and e._weak for e in x):
        return type(x)(_strong(e) for e in x) if isinstance(x, list) else tuple(_strong(e) for e in x)
    return x


class Tracer:
    """A traced array: shape and dtype are known, the value is not."""

    __slots__ = ("_builder", "_v", "_root", "_positions", "_source", "_seen", "_version", "_dummy", "_array0d", "_weak", "__weakref__")
    __array_priority__ = 1000.0

    def __init__(self, builder: Builder, var: Var):
        self._builder = builder
        self._v = var
        # numpy view semantics (see _mark_view): a view shows elements of a root array,
        # at flat positions that are a numpy view of the root's _dummy, and re-reads
        # them when the root has changed in place since (its _version moved on).
        self._root: Tracer | None = None
        self._positions: np.ndarray | None = None
        # A view at a traced position (y[:, i], i = np.argmax(...)): which elements it shows is
        # data, so instead of positions it keeps (parent, index) and reads parent[index] again.
        self._source: tuple[Tracer, Any] | None = None
        self._seen = 0
        self._version = 0
        self._dummy: np.ndarray | None = None
        # A 0-d value is one of numpy's immutable scalars (x[i], np.sum(x)) unless it stands for
        # a 0-d array (np.zeros_like(x[i]), np.copy(s), a 0-d array argument), which is mutable.
        self._array0d = False
        # A Python float or int argument, or Python arithmetic on such values only: numpy's
        # promotion treats it as weak (a float32 array times it stays float32), as JAX does.
        self._weak = False

    @property
    def _var(self) -> Var:
        root = self._root
        if root is not None:
            if root._root is not None:  # a view of a view at a traced position: bring that one up to date
                root._var  # noqa: B018
            if self._seen != root._version:
                if self._source is not None:
                    parent, index = self._source
                    self._v = as_operand(lookup("getitem")(parent, index))._var
                    self._version += 1  # its own views read it again
                else:
                    from pyzygote.primitives.indexing import gather

                    self._v = as_operand(gather(root, np.array(self._positions)))._var
                self._seen = root._version
        return self._v

    # --- what is known statically -------------------------------------
    @property
    def aval(self) -> Aval:
        return self._var.aval

    @property
    def shape(self) -> tuple[int, ...]:
        return self._var.aval.shape

    @property
    def dtype(self) -> np.dtype:
        return self._var.aval.dtype

    @property
    def ndim(self) -> int:
        return len(self._var.aval.shape)

    @property
    def size(self) -> int:
        return self._var.aval.size

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tracer"]:
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"Tracer<{self.aval}>" + (" (from a trace that has ended)" if self._builder.ended else "")

    # --- control flow on values is impossible -------------------------
    def _setting_hint(self) -> str:
        """For a number the function was called with: settings passed positionally get traced."""
        b = self._builder
        scalars = {v for _, v in b._inputs.values() if not v.aval.shape}
        if self.ndim or not scalars:
            return ""
        if self._var not in scalars:  # tol > 0: the value compared or converted comes from one
            made = next((e for e in reversed(b.eqns) if self._var in e.outputs), None)
            if made is None or not any(isinstance(a, Var) and a in scalars for a in made.inputs):
                return ""
        return (
            " If this value is a setting (a tolerance, a count, a flag) passed positionally to pz.gradient "
            "or pz.grad, which differentiate every positional argument as Zygote does, pass it as a keyword "
            "argument instead (pz.gradient(f, x, tol=1e-6)) or through a closure."
        )

    def _data_hint(self) -> str:
        """For a value computed from later arguments only (``if np.isnan(Y[t]): continue`` with the
        data ``Y`` passed positionally, user testing): data need not be traced."""
        b = self._builder
        inputs = [v for _, v in b._inputs.values()]
        first = b.first_argument_inputs
        if not 0 < first < len(inputs):
            return ""
        needed = {self._var}
        for e in reversed(b.eqns):
            if any(o in needed for o in e.outputs):
                needed.update(a for a in e.inputs if isinstance(a, Var))
        if needed.intersection(inputs[:first]) or not needed.intersection(inputs[first:]):
            return ""
        return (
            " This value does not depend on the first argument, only on later ones: if they are data (observations, "
            "a mask), pass them as keyword arguments, pz.gradient(f, theta, Y=Y), or use pz.grad(f) or "
            "pz.value_and_grad(f), which differentiate the first argument only (JAX's argnums=0): pz.gradient "
            "traces every positional argument, as Zygote differentiates them, and Python's if can branch on data "
            "that is not traced."
        )

    def _refused(self, what: str, advice: str = "") -> TracerBoolError:
        """The error for ``what`` (bool()/if, use as an index or size, ...) of this value, which
        keeps ``what`` and (weakly) this value: a caller that traced a function of known arguments
        (an ODE's right-hand side) can say which argument it came from (:func:`input_positions`)."""
        err = _concretization_error(what, advice)
        err.what = what  # type: ignore[attr-defined]
        err.value = weakref.ref(self)  # type: ignore[attr-defined]
        return err

    def __bool__(self) -> bool:
        if self._builder.ended:
            raise trace_ended_error()
        loop = (
            " A loop that runs until it converges (while np.max(np.abs(step)) > tol) cannot be traced either: "
            "run a fixed number of iterations (for _ in range(30)) that is enough to converge. For a root of "
            "f(u, p) = 0 (a Newton iteration), pz.nlsolve(f, u0, p) solves until converged and differentiates the root."
            if not self.ndim
            else ""
        )
        setting = self._setting_hint()
        data = "" if setting else self._data_hint()
        raise self._refused("bool()/if", data or loop + setting)

    def __float__(self) -> float:
        if self._builder.ended:
            raise trace_ended_error()
        name = _math_function_on_callers_line()
        if name is not None:  # the usual cause, said first (user testing: it was lost mid-message)
            raise TracerBoolError(
                f"math.{name} of a traced value: the math module's functions take Python floats, which a traced value "
                f"cannot become. Use {_INSTEAD_OF_MATH.get(name, 'np.' + name)}, which pyzygote traces."
            )
        raise _concretization_error(
            "float()",
            " (The math module's functions take Python floats: use numpy's, np.sin for math.sin.) " + _SEE_VALUES + self._setting_hint(),
        )

    def __format__(self, spec: str) -> str:
        if not spec:  # f"{s}" and format(s): the repr, as print(s) shows
            return repr(self)
        if self._builder.ended:
            raise trace_ended_error()
        raise TracerBoolError(
            f"formatting a traced value (f\"{{s:{spec}}}\", format(s, {spec!r}), '{{:{spec}}}'.format(s)): while the function "
            "is traced its values are not numbers yet, only placeholders for them. " + _SEE_VALUES
        )

    def __round__(self, ndigits: int | None = None) -> Any:
        if self.ndim:  # as numpy: only scalars round() (to a float here, as it cannot be an int)
            raise TypeError("type numpy.ndarray doesn't define __round__ method; use np.round(x)")
        return np.round(self, ndigits or 0)

    def __int__(self) -> int:
        if self._builder.ended:
            raise trace_ended_error()
        position = (
            " To read a numpy array at a traced integer position (np.take(table, i), which numpy makes an int), use "
            "pz.take(table, i)."
            if np.dtype(self.dtype).kind in "iu"
            else ""
        )
        raise self._refused("int()", self._setting_hint() + position)

    def __index__(self) -> int:
        if self._builder.ended:
            raise trace_ended_error()
        raise self._refused(
            "use as an index or size",
            " Arguments of a differentiated function are traced, Python ints included: pass an index "
            "or size through a closure or functools.partial(f, n=...) instead. To read a numpy array at "
            "a traced integer position (table[i]), use pz.take(table, i); traced arrays take traced "
            "indices directly (x[i]).",
        )

    def __complex__(self) -> complex:
        raise _concretization_error("complex()")

    def item(self, *args: Any) -> Any:
        raise _concretization_error(".item()")

    def tolist(self) -> Any:
        raise _concretization_error(".tolist()")

    def __hash__(self) -> int:
        # A set or dict of traced values (set(labels), Counter(y)) would count equal values as
        # different; as JAX's tracers, traced values are not hashable.
        raise _concretization_error("hash() (a set or dict key)")

    def view(self, dtype: Any = None, type: Any = None) -> "Tracer":  # noqa: A002  (numpy's names)
        """A new array object on the same data, as ``ndarray.view()``: writes go through both ways."""
        if dtype is not None or type is not None:
            raise UnsupportedOperationError(".view(dtype) reinterprets bytes, which cannot be traced; use .astype")
        return _mark_view(self, Tracer(self._builder, self._var), lambda p: p.view())

    @property
    def flat(self) -> "_Flat":
        """numpy's ``x.flat``: reads and writes at flat (C-order) positions, constant or traced."""
        return _Flat(self)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define.  numpy applies a ufunc to an object
        # array (np.exp(np.array([x[0], 2 * x[1]]))) by calling each element's method of the
        # ufunc's name, so traced elements answer to those names.
        if not name.startswith("_"):
            ufunc = getattr(np, name, None)
            if isinstance(ufunc, np.ufunc) and is_supported(ufunc):
                return lambda *others: ufunc(self, *others)
            if hasattr(np.ndarray, name):
                also = f"; np.{name}(x) is supported" if is_supported(getattr(np, name, None)) else ""
                raise AttributeError(f"pyzygote has no rule for .{name} on traced arrays{also}")
        raise AttributeError(f"'Tracer' object has no attribute {name!r}")

    # --- numpy protocols ----------------------------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if any(getattr(type(x), "_is_selection", False) for x in inputs):
            return NotImplemented  # x * y[mask]: the selection (pyzygote.selection) combines them
        out = kwargs.pop("out", None)
        if out is not None:
            return _into(out, getattr(ufunc, method)(*inputs, **kwargs), ufunc)
        if method == "__call__":
            handler = lookup(ufunc)
        elif method in ("reduce", "accumulate"):
            handler = lookup(f"{ufunc.__name__}.{method}")
            # ufunc.reduce and .accumulate work along axis 0 unless told otherwise; the
            # functions their handlers share (np.sum, np.cumsum) default to all axes.
            kwargs.setdefault("axis", 0)
        elif method == "at":  # np.add.at(y, idx, v): unbuffered, in place, repeated positions add up
            return lookup(f"{ufunc.__name__}.at")(*inputs, **kwargs)
        else:
            raise UnsupportedOperationError(f"numpy.{ufunc.__name__}.{method} cannot be traced")
        token = _calling(ufunc if method == "__call__" else f"{ufunc.__name__}.{method}")
        try:
            result = _fresh(handler(*inputs, **kwargs), inputs)
        finally:
            if token is not None:
                _CALLED.reset(token)
        if (
            method == "__call__"
            and ufunc.signature is None  # not matmul and the other generalized ufuncs
            and ufunc.nin <= 2
            and isinstance(result, Tracer)
            and any(_not_c_order(x) for x in inputs)
        ):
            # numpy lays the result out like its inputs (order K): np.sin(x.T) is Fortran-ordered,
            # so result.reshape(-1) is a copy.
            given = [memory_layout(x) if isinstance(x, Tracer) else np.asarray(x) for x in inputs]
            _lay_out_like(result, np.positive(given[0]) if len(given) == 1 else np.add(given[0], given[1]))
        return result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if any(getattr(t, "_is_selection", False) for t in types):
            return NotImplemented  # the selection explains what it cannot do
        if (func is np.shape or func is np.ndim) and len(args) == 1 and not kwargs:
            # Asked on every broadcast while tracing: answered before numpy's argument handling.
            return self.shape if func is np.shape else self.ndim
        out, at = kwargs.get("out"), _out_position(func)
        if out is None and at is not None and len(args) > at and args[at] is not None:
            out, args = args[at], (*args[:at], None, *args[at + 1 :])  # np.dot(a, b, y)
        if out is not None:  # numpy writes the result into out (np.clip(u, 0, 1, out=u))
            kwargs = {k: v for k, v in kwargs.items() if k != "out"}
            return _into(out, self.__array_function__(func, types, args, kwargs), func)
        handler = lookup(func)
        args, kwargs = _leading_keywords_as_positional(func, handler, args, kwargs)
        if args and func is not np.where:
            # numpy's functions read their array argument with asarray: a Python number becomes a
            # float64 array, not weak (np.clip(c, lo32, hi32) is float64); their results are numpy
            # scalars, not weak either (np.mean(c), np.trapezoid([c, c]))
            args = (_strong(args[0]), *args[1:])
        token = _calling(func)
        try:
            result = handler(*args, **kwargs)
        finally:
            if token is not None:
                _CALLED.reset(token)
        if func is np.einsum and len(args) == 2 and isinstance(args[1], Tracer):  # "i->i", "ij->ji", "ii->i" are views
            return _mark_view(args[1], result, lambda p: np.einsum(args[0], p))
        if func in _VIEW_FUNCTIONS and args and isinstance(args[0], Tracer) and kwargs.get("copy") is not True:
            _numpys_layout(func, args, kwargs, result)  # for a copy (reshape in order F)
            return _mark_view(args[0], result, lambda p: func(p, *args[1:], **kwargs))
        result = _fresh(result, [*args, *kwargs.values()])
        _numpys_layout(func, args, kwargs, result)
        return result

    # --- operators (each goes through numpy's dispatch, or records its equation directly) ----
    def __add__(self, o: Any) -> Any:
        return _arithmetic(np.add, "add", self, o)

    def __radd__(self, o: Any) -> Any:
        return _arithmetic(np.add, "add", o, self)

    def __sub__(self, o: Any) -> Any:
        return _arithmetic(np.subtract, "sub", self, o)

    def __rsub__(self, o: Any) -> Any:
        return _arithmetic(np.subtract, "sub", o, self)

    def __mul__(self, o: Any) -> Any:
        return _arithmetic(np.multiply, "mul", self, o)

    def __rmul__(self, o: Any) -> Any:
        return _arithmetic(np.multiply, "mul", o, self)

    def __truediv__(self, o: Any) -> Any:
        return _arithmetic(np.true_divide, "div", self, o)

    def __rtruediv__(self, o: Any) -> Any:
        return _arithmetic(np.true_divide, "div", o, self)

    def __floordiv__(self, o: Any) -> Any:
        return _weak_if(self, o, np.floor_divide(self, o))

    def __divmod__(self, o: Any) -> Any:
        return np.floor_divide(self, o), np.remainder(self, o)

    def __rdivmod__(self, o: Any) -> Any:
        return np.floor_divide(o, self), np.remainder(o, self)

    def __rfloordiv__(self, o: Any) -> Any:
        return _weak_if(self, o, np.floor_divide(o, self))

    def __mod__(self, o: Any) -> Any:
        return _weak_if(self, o, np.remainder(self, o))

    def __rmod__(self, o: Any) -> Any:
        return _weak_if(self, o, np.remainder(o, self))

    def __pow__(self, o: Any) -> Any:
        return _weak_if(self, o, np.power(self, o))

    def __rpow__(self, o: Any) -> Any:
        return _weak_if(self, o, np.power(o, self))

    def __matmul__(self, o: Any) -> Any:
        _refuse_sparse(o)  # numpy would take a sparse matrix for a 0-d object array
        return np.matmul(self, o)

    def __rmatmul__(self, o: Any) -> Any:
        _refuse_sparse(o)
        return np.matmul(o, self)

    def __neg__(self) -> Any:
        return _weak_if(self, 0.0, np.negative(self))

    def __pos__(self) -> Any:
        return _weak_if(self, 0.0, np.positive(self))  # numpy's +x: a new array, laid out like x

    def __abs__(self) -> Any:
        return _weak_if(self, 0.0, np.absolute(self))

    def __lt__(self, o: Any) -> Any:
        return np.less(self, o)

    def __le__(self, o: Any) -> Any:
        return np.less_equal(self, o)

    def __gt__(self, o: Any) -> Any:
        return np.greater(self, o)

    def __ge__(self, o: Any) -> Any:
        return np.greater_equal(self, o)

    def __eq__(self, o: Any) -> Any:  # type: ignore[override]
        return np.equal(self, o)

    def __ne__(self, o: Any) -> Any:  # type: ignore[override]
        return np.not_equal(self, o)

    # On booleans, numpy's &, |, ^ and ~ are the logical operations; on integers they are bitwise,
    # which is not traced (it must not become the logical one).
    def __and__(self, o: Any) -> Any:
        return np.logical_and(*_booleans("&", self, o))

    def __rand__(self, o: Any) -> Any:
        return np.logical_and(*_booleans("&", o, self))

    def __or__(self, o: Any) -> Any:
        return np.logical_or(*_booleans("|", self, o))

    def __ror__(self, o: Any) -> Any:
        return np.logical_or(*_booleans("|", o, self))

    def __xor__(self, o: Any) -> Any:
        return np.logical_xor(*_booleans("^", self, o))

    def __rxor__(self, o: Any) -> Any:
        return np.logical_xor(*_booleans("^", o, self))

    def __invert__(self) -> Any:
        return np.logical_not(*_booleans("~", self))

    # --- indexing -------------------------------------------------------
    def __getitem__(self, index: Any) -> Any:
        result = lookup("getitem")(self, index)
        if isinstance(result, Tracer) and result.ndim > 0 and _basic_at_traced_positions(index):
            return _view_at_traced_positions(self, result, index)
        return _mark_view(self, result, lambda p: p[index])

    def fill(self, value: Any) -> None:
        """numpy's ``a.fill(v)`` (Julia's ``fill!(du, v)``): every entry set to ``v``, in place."""
        self[...] = value

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.ndim == 0 and self._root is None and not self._array0d:
            raise TypeError(f"'numpy.{self.dtype}' object does not support item assignment (a traced scalar, as numpy's are)")
        root = self._root
        if self._source is not None:  # a view at traced positions: write its new values there
            parent, at = self._source
            parent[at] = lookup("setitem")(self, index, value)
            return
        if root is not None:  # a view: numpy writes into the array it views
            if not self._positions.flags.writeable:
                raise ValueError("assignment destination is read-only")
            if any(isinstance(i, Tracer) for i in (index if isinstance(index, tuple) else (index,))):
                # which elements change is data: compute the view's new values, write them all
                root[np.unravel_index(self._positions, root.shape)] = lookup("setitem")(self, index, value)
                return
            target = np.asarray(self._positions[index])
            root[np.unravel_index(target, root.shape)] = value
            return
        if index is Ellipsis and isinstance(value, Tracer) and value._builder is self._builder:
            # y[...] = v (out=y, in-place operators): all of y is replaced, nothing to select or scatter
            from pyzygote.primitives.shape import assigned_to_shape, convert

            self._changed_to(as_operand(assigned_to_shape(convert(value, self.dtype), self.shape))._var)
            return
        updated = lookup("setitem")(self, index, value)
        if updated._builder is not self._builder:
            raise UnsupportedOperationError(
                "assigning a value traced by a nested transformation into an array of the enclosing "
                "trace cannot be traced (it would leak the inner trace's value); compute a new array "
                "inside the inner function instead"
            )
        self._changed_to(updated._var)

    def _changed_to(self, var: Var) -> None:
        """numpy code expects this array itself to change: rebind it, and tell its views."""
        self._v = var
        self._version += 1

    def _inplace(self, result: Any) -> "Tracer":
        """``self op= o`` with numpy's rules: same shape and dtype, views write through."""
        result = as_operand(result)
        if self.ndim == 0 and self._root is None and not self._array0d:
            # numpy's scalars (what x[i], np.sum(x) and floats give) are immutable: s += v rebinds s.
            return result
        if result.shape != self.shape:
            raise ValueError(
                f"non-broadcastable output operand with shape {self.shape} doesn't match the broadcast shape {result.shape}"
            )
        if result.dtype != self.dtype and not np.can_cast(result.dtype, self.dtype, "same_kind"):
            raise TypeError(f"Cannot cast ufunc output from {result.dtype} to {self.dtype} with casting rule 'same_kind'")
        self[...] = result
        return self

    def _inplace_operator(ufunc: Any) -> Any:  # type: ignore[misc]  (used in the class body only)
        def operator(self: "Tracer", o: Any) -> "Tracer":
            return self._inplace(ufunc(self, o))

        return operator

    __iadd__ = _inplace_operator(np.add)
    __isub__ = _inplace_operator(np.subtract)
    __imul__ = _inplace_operator(np.multiply)
    __itruediv__ = _inplace_operator(np.true_divide)
    __ifloordiv__ = _inplace_operator(np.floor_divide)
    __imod__ = _inplace_operator(np.remainder)
    __ipow__ = _inplace_operator(np.power)
    __imatmul__ = _inplace_operator(np.matmul)
    del _inplace_operator

    def __iand__(self, o: Any) -> "Tracer":
        return self._inplace(self.__and__(o))

    def __ior__(self, o: Any) -> "Tracer":
        return self._inplace(self.__or__(o))

    def __ixor__(self, o: Any) -> "Tracer":
        return self._inplace(self.__xor__(o))

    # --- methods --------------------------------------------------------
    @property
    def T(self) -> Any:
        return np.transpose(self)

    @property
    def mT(self) -> Any:
        return np.swapaxes(self, -1, -2)

    def reshape(self, *shape: Any, order: str = "C") -> Any:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        return np.reshape(self, shape, order=order)

    def transpose(self, *axes: Any) -> Any:
        if len(axes) == 1 and not isinstance(axes[0], int):
            axes = tuple(axes[0]) if axes[0] is not None else ()
        return np.transpose(self, axes or None)

    def ravel(self, order: str = "C") -> Any:
        return np.ravel(self, order=order)

    def flatten(self, order: str = "C") -> Any:
        return np.ravel(self, order=order).copy()  # always a copy, unlike ravel

    def squeeze(self, axis: Any = None) -> Any:
        return np.squeeze(self, axis=axis)

    def swapaxes(self, a: int, b: int) -> Any:
        return np.swapaxes(self, a, b)

    # ndarray's signatures, positional order included; ``out``, ``where`` and ``initial`` reach
    # numpy's functions, whose handlers refuse them.
    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.sum(self, axis=axis, dtype=dtype, keepdims=keepdims, **_no_out(out), **kw)

    def mean(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.mean(self, axis=axis, dtype=dtype, keepdims=keepdims, **_no_out(out), **kw)

    def prod(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.prod(self, axis=axis, dtype=dtype, keepdims=keepdims, **_no_out(out), **kw)

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.max(self, axis=axis, keepdims=keepdims, **_no_out(out), **kw)

    def min(self, axis: Any = None, out: Any = None, keepdims: bool = False, **kw: Any) -> Any:
        return np.min(self, axis=axis, keepdims=keepdims, **_no_out(out), **kw)

    def var(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0, keepdims: bool = False, **kw: Any) -> Any:
        return np.var(self, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, **_no_out(out), **kw)

    def std(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: int = 0, keepdims: bool = False, **kw: Any) -> Any:
        return np.std(self, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, **_no_out(out), **kw)

    def round(self, decimals: int = 0) -> Any:
        return np.round(self, decimals)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.diagonal(self, offset, axis1, axis2)

    def repeat(self, repeats: Any, axis: Any = None) -> Any:
        return np.repeat(self, repeats, axis=axis)

    def take(self, indices: Any, axis: Any = None) -> Any:
        return np.take(self, indices, axis=axis)

    def cumsum(self, axis: Any = None) -> Any:
        return np.cumsum(self, axis=axis)

    def dot(self, other: Any) -> Any:
        return np.dot(self, other)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return np.trace(self, offset, axis1, axis2)

    def cumprod(self, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
        return np.cumprod(self, axis=axis, dtype=dtype, out=out)

    def any(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        return np.any(self, axis=axis, out=out, keepdims=keepdims)

    def all(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        return np.all(self, axis=axis, out=out, keepdims=keepdims)

    def clip(self, min: Any = None, max: Any = None, out: Any = None, **kwargs: Any) -> Any:  # noqa: A002  (numpy's names)
        return np.clip(self, min, max, out=out, **kwargs)

    def astype(self, dtype: Any, order: str = "K", casting: str = "unsafe", subok: bool = True, copy: bool = True) -> Any:
        out = lookup("astype")(self, dtype)
        out = out.copy(order) if copy and out is self else out
        if out is not self and _not_c_order(self):
            _lay_out_like(out, np.array(memory_layout(self), order=order))
        return out

    def copy(self, order: str = "C") -> "Tracer":
        """A new array; ``order`` decides its memory layout, which decides whether a later
        ``reshape`` of it is a view, as in numpy."""
        if order not in ("C", "F", "A", "K"):
            raise ValueError(f"order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
        out = Tracer(self._builder, self._var)
        out._array0d = self._array0d
        if order != "C" and self.ndim > 1:
            _lay_out_like(out, np.array(memory_layout(self), order=order))
        return out

    # copy.copy and copy.deepcopy (dataclasses.asdict deep-copies its fields): a new array, as
    # numpy's ndarray.__copy__/__deepcopy__ (order 'K').  copy.copy used to copy the slots, so the
    # copy of a view still wrote through to its base (a wrong gradient), and deepcopy reached the
    # builder and failed with "used after its trace ended" (user testing).  A traced array cannot
    # be the tracer itself: traced arrays are written in place like numpy's.
    # A traced Python number stays one (a float's copy is that float): np.ones(2, np.float32) *
    # copy.copy(s) is float32 (review: the copy was a float64 array, and the product float64).
    def __copy__(self) -> "Tracer":
        out = self.copy("K")
        out._weak = self._weak
        return out

    def __deepcopy__(self, memo: Any) -> "Tracer":
        return self.__copy__()

    def conj(self) -> "Tracer":
        return self.copy()

    @property
    def real(self) -> "Tracer":
        return self


class ConstantChanged(Exception):
    """A numpy array the traced function read as a constant was changed in place while it was
    traced (e[:] = 0; e[k] = 1 in a loop).  Uses are then not all of one value, so the function
    is traced again, comparing the array with its copy at every use (a careful trace).

    ``changed`` pairs each such array with its value when the trace first read it."""

    def __init__(self, changed: list[tuple[np.ndarray, np.ndarray]]):
        super().__init__(f"{len(changed)} numpy array(s) changed in place during the trace")
        self.changed = changed

    def restore(self) -> None:
        """Put the arrays back as the trace first read them, so that the function runs again on
        what it saw the first time (it then changes them again, as one numpy call would)."""
        for x, first in self.changed:
            if x.flags.writeable:
                np.copyto(x, first)


@contextlib.contextmanager
def careful_constants() -> Iterator[None]:
    """Builders made meanwhile (in this thread) compare every use of a numpy constant with its copy."""
    before = getattr(Builder._active, "careful", False)
    Builder._active.careful = True
    try:
        yield
    finally:
        Builder._active.careful = before


# Large arrays are compared a megabyte of bytes at a time: numpy compares bytes fastest, in
# chunks that stay in cache (120 MB of data in 13 ms, where array_equal with equal_nan took 670 ms).
_CHUNK = 1 << 20


def same_contents(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bytes (so NaN equals NaN; -0.0 and 0.0 count as a
    change), of the same shape and dtype."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.nbytes <= 65536:  # the usual case, checked on every call: comparing bytes is several times faster
        return a.tobytes() == b.tobytes()
    if a.dtype.kind in "biufcmM" and a.flags.c_contiguous and b.flags.c_contiguous:
        x, y = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
        return all(np.array_equal(x[i : i + _CHUNK], y[i : i + _CHUNK]) for i in range(0, x.size, _CHUNK))
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _unchanged_since(copy: np.ndarray, arr: np.ndarray) -> bool:
    """Whether a numpy array still holds what it held when it became a constant."""
    if copy.shape == arr.shape and copy.dtype == arr.dtype and not arr.flags.writeable and arr.base is None:
        return True
    return same_contents(copy, arr)


_POSITIONAL_NAMES: dict[Any, list[str]] = {}
_KEYWORD_NAMES: dict[Any, frozenset[str]] = {}


def _positional_names(func: Any) -> list[str]:
    """The names of a numpy function's positional parameters, in order."""
    if func not in _POSITIONAL_NAMES:
        try:
            params = inspect.signature(func).parameters.values()
            names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            names = _documented_positional(func)
        _POSITIONAL_NAMES[func] = names
    return _POSITIONAL_NAMES[func]


def _out_position(func: Any) -> int | None:
    """Where a numpy function takes ``out`` positionally (``np.dot(a, b, out)``), if it does."""
    names = _positional_names(func)
    return names.index("out") if "out" in names else None


def _leading_keywords_as_positional(func: Any, handler: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``np.flip(m=x, axis=0)`` as ``np.flip(x, axis=0)``: a handler may take numpy's leading
    parameters by position under other names, so pass those it has no keyword for in order."""
    if handler not in _KEYWORD_NAMES:
        params = inspect.signature(handler).parameters.values()
        _KEYWORD_NAMES[handler] = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    own = _KEYWORD_NAMES[handler]
    names = _positional_names(func)
    args, kwargs = list(args), dict(kwargs)
    while len(args) < len(names) and names[len(args)] in kwargs and names[len(args)] not in own:
        args.append(kwargs.pop(names[len(args)]))
    return tuple(args), kwargs


def _documented_positional(func: Any) -> list[str]:
    """Positional parameter names from the ``name(a, b, out=None)`` line that opens a C function's
    docstring: numpy before 2.3 gives ``np.dot`` and others no introspectable signature."""
    name = getattr(func, "__name__", "")
    opening = " ".join((getattr(func, "__doc__", None) or "").splitlines()[:12])  # it may wrap
    m = re.match(rf"\s*{re.escape(name)}\(", opening)
    if not m:
        return []
    parts, depth, current = [], 0, ""
    for ch in opening[m.end() :]:  # split at top-level commas: "(a1, a2, ...)" and "[x, y]" are one each
        if depth == 0 and ch in ",)":
            parts.append(current.strip())
            current = ""
            if ch == ")":
                break
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        current += ch
    names = []
    for part in parts:
        part = part.split("=")[0].strip()
        if part.startswith("*"):
            break
        if part and part != "/":
            names.append(part)
    return names


def _booleans(op: str, *xs: Any) -> tuple[Any, ...]:
    """The operands of &, |, ^ or ~, if all are booleans (numpy's logical operations then)."""
    for x in xs:
        dtype = x.dtype if isinstance(getattr(x, "dtype", None), np.dtype) else np.result_type(x)
        if dtype.kind != "b":
            raise UnsupportedOperationError(
                f"the bitwise operator {op} of integers is not traced (on booleans it is the logical one, "
                "which is); compute integer bit patterns outside the traced function"
            )
    return xs


def _into(out: Any, result: Any, func: Any) -> Any:
    """``func(..., out=y)``: numpy writes the result into ``y`` (``y += x`` on numpy arrays comes here)."""
    target = out[0] if isinstance(out, tuple) and len(out) == 1 else out
    if isinstance(target, Tracer):
        # ufuncs (and np.clip, which calls one) broadcast into out; other functions need its shape
        if not isinstance(func, np.ufunc) and func is not np.clip and np.shape(result) != target.shape:
            raise ValueError(
                f"numpy.{func.__name__}(..., out=y): y has shape {target.shape}, the result has shape {np.shape(result)}"
            )
        target[...] = result
        return target
    raise TracerBoolError(
        f"numpy.{func.__name__}(..., out=y) writes into y, a numpy array, which cannot hold traced values "
        "(y += x and y *= x call numpy's ufuncs that way too). Create y from a traced array "
        "(y = np.zeros_like(u)) or compute a new array (y = y + x)."
    )


# numpy's view semantics live beside the class they serve; imported last, since they use Tracer.
from pyzygote.views import (  # noqa: E402
    _VIEW_FUNCTIONS,
    _basic_at_traced_positions,
    _Flat,
    _fresh,
    _lay_out_like,
    _mark_view,
    _not_c_order,
    _numpys_layout,
    _view_at_traced_positions,
    memory_layout,
)

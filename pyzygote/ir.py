"""The intermediate representation (IR) shared by every engine.

A :class:`Program` is a typed, static-shape, straight-line list of equations,
like a jaxpr: ``outputs = primitive[params](inputs)``.  numpy's implicit rules
(broadcasting, type promotion, negative axes, ``keepdims``) have already been
made explicit by the tracer, so an engine only maps each primitive to its own
operations.

>>> import numpy as np, pyzygote as pz
>>> print(pz.make_program(lambda x: np.sin(x) * 2.0, np.ones(3)))
{ lambda ; a:f64[3]. let
    b:f64[3] = sin a
    c:f64[3] = mul b 2.0:f64[]
  in (c,) }
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["Aval", "Var", "Literal", "Eqn", "Program", "Atom"]

_DTYPE_SHORT = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "int64": "i64",
    "int32": "i32",
    "int8": "i8",
    "bool": "bool",
}


_AVALS: dict[Any, Any] = {}


class Aval:
    """Abstract value: what the IR knows about an array (shape and dtype).

    Immutable and hashable.  One is made for every equation while tracing, so it is a small
    slotted class rather than a dataclass.
    """

    __slots__ = ("shape", "dtype")
    shape: tuple[int, ...]
    dtype: np.dtype

    def __new__(cls, shape: Sequence[int], dtype: Any) -> "Aval":
        # Equal avals are one object, made once: tracing asks for one per equation.
        try:
            return _AVALS[shape, dtype]
        except (KeyError, TypeError):  # TypeError: a list for a shape
            pass
        self = object.__new__(cls)
        canonical = tuple(int(d) for d in shape)
        object.__setattr__(self, "shape", canonical)
        object.__setattr__(self, "dtype", dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))
        if len(_AVALS) > 100_000:
            _AVALS.clear()
        if type(shape) is tuple:
            _AVALS[shape, dtype] = self
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Aval is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        return self is other or isinstance(other, Aval) and self.shape == other.shape and self.dtype == other.dtype

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))

    def __repr__(self) -> str:
        return f"Aval(shape={self.shape!r}, dtype={self.dtype!r})"

    def __reduce__(self) -> Any:
        return (Aval, (self.shape, self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    def __str__(self) -> str:
        dt = _DTYPE_SHORT.get(self.dtype.name, self.dtype.name)
        return f"{dt}[{','.join(map(str, self.shape))}]"

    @staticmethod
    def of(value: Any) -> "Aval":
        arr = np.asarray(value)
        return Aval(arr.shape, arr.dtype)


_var_ids = itertools.count()


class Var:
    """A value produced by an equation or passed in as an input."""

    __slots__ = ("aval", "uid")

    def __init__(self, aval: Aval):
        self.aval = aval
        self.uid = next(_var_ids)

    def __repr__(self) -> str:
        return f"Var({self.uid}:{self.aval})"


class Literal:
    """A scalar constant written inline in an equation."""

    __slots__ = ("value", "aval")

    def __init__(self, value: Any, dtype: np.dtype):
        self.value = np.asarray(value, dtype=dtype)
        self.aval = Aval((), self.value.dtype)

    def __repr__(self) -> str:
        return f"Literal({self.value!r})"

    def __str__(self) -> str:
        return f"{self.value.item()!r}:{self.aval}"


Atom = Var | Literal


class Eqn:
    """One equation: ``outputs = prim[params](*inputs)``."""

    __slots__ = ("prim", "inputs", "params", "outputs")

    def __init__(self, prim: Any, inputs: tuple[Atom, ...], params: dict[str, Any], outputs: tuple[Var, ...]):
        self.prim = prim  # pyzygote.primitive.Primitive (kept untyped to avoid a cycle)
        self.inputs = inputs
        self.params = params
        self.outputs = outputs

    def __repr__(self) -> str:
        return f"Eqn({self.prim.name}, {self.inputs}, {self.params}, {self.outputs})"


@dataclass
class Program:
    """A closed, straight-line program.

    ``consts`` are the values of ``constvars`` (closed-over arrays, constants
    built inside the traced function).  ``outputs`` may name inputs,
    constants or literals directly.
    """

    inputs: tuple[Var, ...]
    constvars: tuple[Var, ...]
    consts: tuple[np.ndarray, ...]
    eqns: list[Eqn]
    outputs: tuple[Atom, ...]
    _compiled: dict = field(default_factory=dict, repr=False, compare=False)
    # Var uid -> "smooth" or "continuous", for values made inside such a composition of
    # pyzygote's own (see pyzygote.tracer.composition); only traced programs record it.
    choices: dict = field(default_factory=dict, repr=False, compare=False)
    # Var uid -> the numpy function the user called, for values that a composite of pyzygote's
    # (np.trunc, np.heaviside) made where a derivative stops (see pyzygote.tracer._CALLED).
    spelled: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def in_avals(self) -> tuple[Aval, ...]:
        return tuple(v.aval for v in self.inputs)

    @property
    def out_avals(self) -> tuple[Aval, ...]:
        return tuple(v.aval for v in self.outputs)

    def __str__(self) -> str:
        return format_program(self)

    def __call__(self, *args: Any) -> tuple[np.ndarray, ...]:
        """Evaluate with the NumPy engine (compiled once, then cached)."""
        from pyzygote.transforms.evaluate import compile_program

        return compile_program(self)(*args)


def split_by_dependence(prog: Program, sources: set[int]) -> tuple[list[Eqn], list[Eqn], set[int]]:
    """The equations of ``prog`` that read nothing computed from the variables ``sources`` (ids),
    those that do, and the ids of every variable computed from them (``sources`` included)."""
    reached = set(sources)
    free, bound = [], []
    for eqn in prog.eqns:
        if any(isinstance(a, Var) and a.uid in reached for a in eqn.inputs):
            bound.append(eqn)
            reached.update(v.uid for v in eqn.outputs)
        else:
            free.append(eqn)
    return free, bound, reached


def _names() -> Any:
    for n in itertools.count(1):
        for combo in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=n):
            yield "".join(combo)


def format_program(prog: Program) -> str:
    names: dict[int, str] = {}
    gen = _names()

    def name(a: Atom) -> str:
        if isinstance(a, Literal):
            return str(a)
        if a.uid not in names:
            names[a.uid] = next(gen)
        return names[a.uid]

    def decl(vs: Sequence[Var]) -> str:
        return " ".join(f"{name(v)}:{v.aval}" for v in vs)

    head = f"{{ lambda {decl(prog.constvars)} ; {decl(prog.inputs)}. let"
    lines = [head]
    for eqn in prog.eqns:
        params = " ".join(f"{k}={_fmt_param(v)}" for k, v in eqn.params.items())
        params = f"[{params}]" if params else ""
        args = " ".join(name(a) for a in eqn.inputs)
        lines.append(f"    {decl(eqn.outputs)} = {eqn.prim.name}{params} {args}")
    outs = ", ".join(name(a) for a in prog.outputs)
    lines.append(f"  in ({outs},) }}")
    return "\n".join(lines)


def _fmt_param(v: Any) -> str:
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, Program):
        return "{ ... }"
    if isinstance(v, np.ndarray) and v.size > 8:
        return f"<{v.dtype.name}{list(v.shape)}>"
    return repr(v)

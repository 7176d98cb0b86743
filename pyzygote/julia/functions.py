"""Julia functions you write yourself, differentiated with Zygote.

``pz.julia_function(source)`` evaluates Julia source (a lambda, a function
name, or several definitions ending with the function to use) and returns a
callable usable with ``pz.gradient``, ``withgradient``, ``grad``,
``value_and_grad``, ``pullback``, ``jacobian``, ``hessian`` and ``jvp``:

    energy = pz.julia_function("(x, p) -> sum(abs2, x .- p) + sum(sin, x)")
    g_x, g_p = pz.gradient(energy, x, p)

``pz.julia_include("model.jl")`` evaluates a file into a fresh module and
exposes its functions as attributes: ``m = pz.julia_include("model.jl");
pz.gradient(m.energy, x)``.

Arguments are numbers, float numpy arrays, or tuples, lists and dicts of
them.  The Julia function receives Julia ``Array``s (same shape, same element
at the same index as numpy), Julia numbers for numbers and 0-d arrays, Julia
``Tuple``s for tuples and lists, and ``NamedTuple``s for dicts (keys must be
Julia identifiers).  It returns a number or an array (or a Tuple of them);
gradients come back in the structure of the arguments.

These objects run only on the Julia engine: with the NumPy engine selected
they raise ``TypeError``, and without Julia ``pz.JuliaNotAvailableError``.
The source is evaluated on first use, in a module of its own.

Called on traced values inside a numpy function, a Julia function becomes a
``julia_call`` equation of that function's program (see
:mod:`pyzygote.primitives.julia_call`), which the Julia engine runs and
Zygote differentiates with the rest.

>>> import pyzygote as pz
>>> f = pz.julia_function("x -> sum(abs2, x)")
>>> f
julia_function('x -> sum(abs2, x)')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from pyzygote.errors import JuliaError, NonFiniteGradientError
from pyzygote.ir import Aval
from pyzygote.julia import session
from pyzygote.julia.convert import from_julia, to_julia
from pyzygote.primitive import aval_of
from pyzygote.pytree import Static, difference, flatten, structure, unflatten
from pyzygote.tracer import Tracer
from pyzygote.tracing import cast_direction, to_input_array

__all__ = ["JuliaFunction", "JuliaModule", "julia_function", "julia_include", "is_julia_function"]

_JULIA_KEYWORDS = frozenset(
    "baremodule begin break catch const continue do else elseif end export false finally for function "
    "global if import let local macro module quote return struct true try using while abstract mutable "
    "primitive type where in isa outer public".split()
)


def is_julia_function(f: Any) -> bool:
    return isinstance(f, JuliaFunction)


def _julia_ident(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name in _JULIA_KEYWORDS:
        raise TypeError(
            f"dict keys passed to a Julia function become NamedTuple fields and must be Julia identifiers; got {name!r}"
        )
    return name


def _tree_expr(tree: Hashable, counter: list[int], leaves: Sequence[str] | None = None) -> str:
    """Julia expression rebuilding an argument from flat leaves (``l1, l2, ...`` or ``leaves``)."""
    if tree == "*":
        counter[0] += 1
        return f"l{counter[0]}" if leaves is None else leaves[counter[0] - 1]
    if tree == "s":
        raise TypeError(
            "arguments of Julia functions must be numbers, float numpy arrays, or tuples, lists and dicts of them"
        )
    kind = tree[0]  # type: ignore[index]
    if kind == "none":
        return "nothing"
    if kind == "dict":
        keys, children = tree[1], tree[-1]  # type: ignore[index]
        fields = [f"{_julia_ident(k)} = {_tree_expr(c, counter, leaves)}" for k, c in zip(keys, children)]
        return "(; " + ", ".join(fields) + ")" if fields else "NamedTuple()"
    if kind in ("namedtuple", "dataclass"):
        names = tree[1]._fields if kind == "namedtuple" else tree[2]  # type: ignore[index]
        fields = [f"{_julia_ident(k)} = {_tree_expr(c, counter, leaves)}" for k, c in zip(names, tree[-1])]  # type: ignore[index]
        return "(; " + ", ".join(fields) + ")" if fields else "NamedTuple()"
    children = tree[-1]  # type: ignore[index]
    parts = [_tree_expr(c, counter, leaves) for c in children]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def call_arguments(in_tree: Hashable, leaves: Sequence[str]) -> list[str]:
    """The Julia argument expressions of a call with structure ``in_tree``, from leaf expressions."""
    counter = [0]
    return [_tree_expr(c, counter, leaves) for c in in_tree[1]]  # type: ignore[index]


def wrapper_source(in_tree: Hashable) -> str:
    """``f -> (l1, ..., ln) -> outputs(f(args...))`` for an argument tuple structure."""
    counter = [0]
    args = [_tree_expr(c, counter) for c in in_tree[1]]  # type: ignore[index]
    leaves = ", ".join(f"l{i + 1}" for i in range(counter[0]))
    return f"f -> ({leaves}) -> outputs(f({', '.join(args)}))"


class JuliaFunction:
    """A Julia function usable with pyzygote's differentiation API (see :mod:`pyzygote.julia.functions`)."""

    def __init__(
        self,
        source: str | None = None,
        *,
        module: "JuliaModule | None" = None,
        name: str | None = None,
        result_shape: Any = None,
    ):
        if source is None and module is None:
            raise TypeError("julia_function needs Julia source text")
        if source is not None and not isinstance(source, str):
            raise TypeError(f"julia_function takes Julia source text (a str), got {type(source).__name__}")
        self._result_shapes = _result_shapes(result_shape)
        self._source = source
        self._module = module
        self._name = name
        self._fn: Any = None
        self._wrappers: dict[Hashable, Any] = {}

    def __del__(self, _release: Any = session.release_in_main_thread) -> None:
        _release(getattr(self, "_fn", None), getattr(self, "_wrappers", None))

    def __repr__(self) -> str:
        if self._source is not None:
            text = " ".join(self._source.split())
            return f"julia_function({text if len(text) <= 60 else text[:57] + '...'!r})"
        return f"<Julia function {self._name} from {self._module!r}>"

    # --- Julia objects -----------------------------------------------------------
    def _require(self, engine: str | None) -> None:
        from pyzygote.engines import _requested

        if _requested(engine) == "numpy":
            raise TypeError(
                f"{self!r} is Julia code and runs only on the Julia engine, but the numpy engine is selected. "
                "Pass engine='julia' (or 'auto'), or write the function with numpy to use the NumPy engine."
            )
        session.start()

    def _julia(self) -> Any:
        if self._fn is None:
            with session.LOCK:
                if self._fn is None:
                    if self._module is not None:
                        self._fn = self._module._get(self._name or "")
                    else:
                        mod = session.new_module("JuliaFunction")
                        self._fn = session.include_text(mod, self._source or "", "julia_function")
        return self._fn

    def _wrapped(self, in_tree: Hashable) -> Any:
        hit = self._wrappers.get(in_tree)
        if hit is None:
            with session.LOCK:
                make = session.include_text(session.runtime(), wrapper_source(in_tree), "pyzygote_wrapper", origin="start")
                hit = self._wrappers[in_tree] = session.call(make, self._julia())
        return hit

    # --- arguments ------------------------------------------------------------------
    def _flat(self, args: Sequence[Any]) -> tuple[Any, list[Any], list[np.ndarray], list[str]]:
        from pyzygote.tracing import _leaf_names

        leaves, tree = flatten(tuple(args))
        names = _leaf_names(tuple(args), leaves, tree, None)
        arrays = []
        for leaf, name in zip(leaves, names):
            if isinstance(leaf, Tracer):  # pz.gradient(f, ...) of a Julia function, inside traced code
                raise TypeError(
                    f"{name} of {self!r} is a traced value: a transformation nested in traced code cannot "
                    "differentiate a Julia function (pyzygote differentiates nested transformations itself and "
                    "cannot see into Julia code); call the function itself on traced values, or take that "
                    "derivative outside the traced code"
                )
            if isinstance(leaf, Static):
                raise TypeError(
                    f"{name} of a Julia function is {leaf.value!r}; arguments must be numbers, float numpy "
                    "arrays, or tuples, lists and dicts of them"
                )
            arrays.append(to_input_array(leaf, name))
        return tree, leaves, arrays, names

    @staticmethod
    def _rebuild(tree: Hashable, leaves: list[Any], values: Sequence[Any]) -> tuple[Any, ...]:
        out = []
        for leaf, v in zip(leaves, values):
            is_py = isinstance(leaf, (int, float)) and not isinstance(leaf, np.generic)
            out.append(float(v) if is_py and np.ndim(v) == 0 else np.asarray(v))
        return tuple(unflatten(tree, out))

    @staticmethod
    def _check_finite(names: list[str], what: str, values: Sequence[Any], value: Any = None) -> None:
        for name, v in zip(names, values):
            if not np.all(np.isfinite(v)):
                at = "" if value is None else f" (the value is {np.asarray(value)!r})"
                raise NonFiniteGradientError(f"the {what} with respect to {name} contains NaN or inf{at}.")

    @staticmethod
    def _result(outs: Sequence[Any]) -> Any:
        vals = [from_julia(o) for o in outs]
        return vals[0] if len(vals) == 1 else tuple(vals)

    def with_result_shape(self, result_shape: Any) -> "JuliaFunction":
        """The same Julia function with its result shapes fixed for calls inside traced numpy
        code (for functions from ``pz.julia_include``: ``m.energy.with_result_shape(())``)."""
        other = JuliaFunction(self._source, module=self._module, name=self._name, result_shape=result_shape)
        other._fn, other._wrappers = self._fn, self._wrappers
        return other

    # --- inside traced numpy code -----------------------------------------------------------
    def _traced_call(self, args: Sequence[Any]) -> Any:
        """Record the call as a ``julia_call`` equation; the Julia engine runs it."""
        from pyzygote.primitives.julia_call import julia_call
        from pyzygote.tracing import _leaf_names

        leaves, tree = flatten(tuple(args))
        names = _leaf_names(tuple(args), leaves, tree, None)
        operands = []
        for leaf, name in zip(leaves, names):
            if isinstance(leaf, Static):
                raise TypeError(f"{name} of a Julia function is {leaf.value!r}; arguments must be numbers or arrays")
            operands.append(leaf if isinstance(leaf, Tracer) else to_input_array(leaf, name))
        outs = julia_call(self, tree, self._result_avals(tree, operands), operands)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _result_avals(self, tree: Hashable, operands: Sequence[Any]) -> tuple[Aval, ...]:
        avals = [aval_of(o) for o in operands]
        if self._result_shapes is not None:
            floats = [a.dtype for a in avals if a.dtype.kind == "f"]
            dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
            return tuple(Aval(shape, dtype) for shape in self._result_shapes)
        # No shapes given: call the function once, on ones in place of the traced arguments
        # (constants as they are: they may set a result's size or the function's domain).
        session.start()
        probe = [np.ones(a.shape, a.dtype) if isinstance(o, Tracer) else o for a, o in zip(avals, operands)]
        try:
            with session.LOCK:
                outs = session.runtime_call("evaluate", self._wrapped(tree), *map(to_julia, probe))
                values = [np.asarray(from_julia(o)) for o in outs]
        except JuliaError as err:
            raise TypeError(
                f"to call {self!r} inside a traced numpy function pyzygote needs the shapes of its results, "
                f"and calling it on arrays of ones to find them failed ({err.args[0].splitlines()[0]}); "
                "pass them as pz.julia_function(source, result_shape=(...))"
            ) from err
        return tuple(Aval(v.shape, v.dtype) for v in values)

    # --- the API ------------------------------------------------------------------------
    @session.with_lock
    def __call__(self, *args: Any, engine: str | None = None) -> Any:
        if _any_traced(args):
            return self._traced_call(args)
        self._require(engine)
        tree, _, arrays, _ = self._flat(args)
        g = self._wrapped(tree)
        return self._result(session.runtime_call("evaluate", g, *map(to_julia, arrays)))

    @session.with_lock
    def _withgradient(self, args: Sequence[Any], engine: str | None, aux: str | None = None) -> tuple[Any, tuple[Any, ...]]:
        """See pyzygote.api._withgradient; with ``aux``, a Tuple the function returns leads with the loss."""
        self._require(engine)
        tree, leaves, arrays, names = self._flat(args)
        g = self._wrapped(tree)
        vals, grads = session.runtime_call("value_and_gradient", g, *map(to_julia, arrays))
        n = len(vals)
        if (aux is None and n != 1) or (aux == "jax" and n != 2):
            wanted = "a pair (loss, aux)" if aux == "jax" else "one scalar"
            hint = (
                "; to return auxiliary values with the loss use pz.withgradient, or has_aux=True with pz.grad or "
                "pz.value_and_grad"
                if aux is None
                else ""
            )
            raise ValueError(f"{'has_aux=True' if aux else 'gradient'} needs {wanted}, but {self!r} returned {n} values{hint}")
        value = self._result(vals)
        gs = [from_julia(d, a.dtype, a.shape, "gradient") for d, a in zip(grads, arrays)]
        self._check_finite(names, "gradient", gs, value if n == 1 else value[0])
        return value, self._rebuild(tree, leaves, gs)

    @session.with_lock
    def _pullback(self, args: Sequence[Any], engine: str | None) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:
        self._require(engine)
        tree, leaves, arrays, names = self._flat(args)
        g = self._wrapped(tree)
        ys, back = session.runtime_call("pullback", g, *map(to_julia, arrays))
        outs = [np.asarray(from_julia(y)) for y in ys]
        held = session.MainThreadValue(back)

        @session.with_lock
        def backward(dy: Any) -> tuple[Any, ...]:
            cts = list(dy) if len(outs) > 1 else [dy]
            if len(cts) != len(outs):
                raise ValueError(f"the cotangent must have one entry per output ({len(outs)})")
            fixed = []
            for ct, out in zip(cts, outs):
                c = cast_direction(ct, out.dtype, "the cotangent")
                if c.shape != out.shape:
                    raise ValueError(f"cotangent of shape {c.shape} given for an output of shape {out.shape}")
                fixed.append(to_julia(c))
            grads = session.call(held.value, *fixed)
            gs = [from_julia(d, a.dtype, a.shape, "cotangent") for d, a in zip(grads, arrays)]
            self._check_finite(names, "pullback", gs)
            return self._rebuild(tree, leaves, gs)

        value = outs[0] if len(outs) == 1 else tuple(outs)
        return value, backward

    @session.with_lock
    def _jvp(self, primals: Sequence[Any], tangents: Sequence[Any], engine: str | None) -> tuple[Any, Any]:
        if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
            raise TypeError("jvp takes primals and tangents as tuples, e.g. pz.jvp(f, (x,), (dx,))")
        self._require(engine)
        tree, _, arrays, names = self._flat(primals)
        t_leaves, t_tree = flatten(tuple(tangents))
        if structure(t_tree) != structure(tree):
            raise ValueError(f"tangents must have the same structure as primals: {difference(t_tree, tree, 'tangents')}")
        ts = []
        for t, a, name in zip(t_leaves, arrays, names):
            t = cast_direction(to_input_array(t, f"the tangent of {name}"), a.dtype, f"the tangent of {name}")
            if t.shape != a.shape:
                raise ValueError(f"the tangent of {name} has shape {t.shape}, expected {a.shape}")
            ts.append(t)
        g = self._wrapped(tree)
        args = [to_julia(a) for a in arrays] + [to_julia(t) for t in ts]
        ys, dys = session.runtime_call("jvp", g, len(arrays), *args)
        as_arrays = lambda vs: tuple(np.asarray(from_julia(v)) for v in vs)  # noqa: E731  (like pz.jvp)
        y, t = as_arrays(ys), as_arrays(dys)
        return (y[0], t[0]) if len(y) == 1 else (y, t)

    def _jacobian(self, args: Sequence[Any], engine: str | None) -> tuple[Any, ...]:
        self._require(engine)
        tree, leaves, arrays, names = self._flat(args)
        y, back = self._pullback(args, engine)
        if isinstance(y, tuple):
            raise ValueError("jacobian needs a function returning one array")
        out = np.asarray(y)
        rows = []
        for i in range(out.size):
            ct = np.zeros(out.size, out.dtype)
            ct[i] = 1.0
            flat, _ = flatten(back(ct.reshape(out.shape)))
            rows.append([np.asarray(r) for r in flat])
        blocks = []
        for k, a in enumerate(arrays):
            if rows:
                blocks.append(np.stack([r[k] for r in rows]).reshape(out.shape + a.shape))
            else:
                blocks.append(np.zeros(out.shape + a.shape, a.dtype))
        self._check_finite(names, "jacobian", blocks)
        return self._rebuild(tree, leaves, blocks)

    @session.with_lock
    def _hessian(self, x: Any, engine: str | None) -> Any:
        self._require(engine)
        tree, _, arrays, names = self._flat((x,))
        if len(arrays) != 1:
            raise TypeError("hessian takes one array argument x; use a flat parameter vector")
        g = self._wrapped(tree)
        a = arrays[0]
        h = session.runtime_call("hessian", g, 1, to_julia(a))
        out = np.asarray(from_julia(h, a.dtype, a.shape + a.shape, "Hessian"))
        self._check_finite(names, "hessian", [out])
        python_number = isinstance(x, (int, float)) and not isinstance(x, (bool, np.generic))
        return float(out) if python_number else out  # as pz.hessian of a traced function


class JuliaModule:
    """A Julia file evaluated into a fresh module; its functions are attributes."""

    def __init__(self, path: str | os.PathLike[str]):
        self._path = Path(path).expanduser().resolve()
        if not self._path.is_file():
            raise FileNotFoundError(f"no Julia file {self._path}")
        session.start()
        self._mod = session.new_module("Include")
        session.include_file(self._mod, self._path)
        self._functions: dict[str, JuliaFunction] = {}

    def __del__(self, _release: Any = session.release_in_main_thread) -> None:
        _release(self.__dict__.get("_mod"))

    def __repr__(self) -> str:
        return f"<Julia module from {str(self._path)!r}>"

    def _get(self, name: str) -> Any:
        return session.runtime_call("getname", self._mod, name)

    def __getattr__(self, name: str) -> JuliaFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        hit = self._functions.get(name)
        if hit is None:
            if not session.runtime_call("hasname", self._mod, name):
                defined = ", ".join(self.__dir__()) or "nothing"
                raise AttributeError(f"{self._path.name} defines no {name!r} (it defines: {defined})")
            hit = self._functions[name] = JuliaFunction(module=self, name=name)
        return hit

    def __dir__(self) -> list[str]:
        return sorted(str(n) for n in session.runtime_call("definednames", self._mod))


def julia_function(source: str, *, result_shape: Any = None) -> JuliaFunction:
    """A Julia function from source text, for pyzygote's differentiation API.

    Called on traced values inside a numpy function, it becomes part of that
    function's program (Julia engine only).  ``result_shape`` (a shape, or a
    list of shapes for a function returning a Tuple) fixes the shapes of its
    results there; without it pyzygote calls the function once on arrays of
    ones to find them.

    >>> import pyzygote as pz
    >>> pz.julia_function("(x, p) -> sum(abs2, x .- p) + sum(sin, x)")
    julia_function('(x, p) -> sum(abs2, x .- p) + sum(sin, x)')
    """
    return JuliaFunction(source, result_shape=result_shape)


def _any_traced(args: Sequence[Any]) -> bool:

    leaves, _ = flatten(tuple(args))
    return any(isinstance(leaf, Tracer) for leaf in leaves)


def _result_shapes(spec: Any) -> tuple[tuple[int, ...], ...] | None:
    """``result_shape`` as a tuple of shapes: ``(3,)`` is one result, ``[(3,), ()]`` two."""
    if spec is None:
        return None

    def shape(s: Any) -> tuple[int, ...]:
        if isinstance(s, (tuple, list)) and all(isinstance(d, (int, np.integer)) and d >= 0 for d in s):
            return tuple(int(d) for d in s)
        raise TypeError(f"result_shape must be a shape such as (3,) or (), or a list of shapes; got {spec!r}")

    if isinstance(spec, list):
        return tuple(shape(s) for s in spec)
    return (shape(spec),)


def julia_include(path: str | os.PathLike[str]) -> JuliaModule:
    """Evaluate a Julia file into a fresh module; its functions become attributes (starts Julia)."""
    return JuliaModule(path)

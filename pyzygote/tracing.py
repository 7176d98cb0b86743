"""Trace Python functions into programs, once per abstract signature.

:func:`make_program` shows what pyzygote captured from a function.  Traces
are cached per function and signature (tree structure, shapes, dtypes, static
values).  A cached trace is reused only while the arrays it captured are
unchanged and the function's closure cells and globals still hold the same
objects, so mutating or rebinding captured data re-traces instead of silently
using stale constants.  The check follows the helper functions ``f`` calls,
bound methods' ``self``, and the items and attributes of small containers and
objects it reads, five levels deep counting the helpers (``hp["model"]["reg"]["l2"]``
read in a helper is checked), up to a few thousand objects; data hidden deeper than
that is not checked (call :func:`clear_cache` after changing it).

>>> import numpy as np, pyzygote as pz
>>> print(pz.make_program(lambda x, y: x @ y, np.ones((2, 3)), np.ones(3)))
{ lambda ; a:f64[2,3] b:f64[3]. let
    c:f64[2] = einsum[spec='xy,y->x'] a b
  in (c,) }
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import inspect
import linecache
import sys
import re
import time
import types
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Hashable, Sequence

import numpy as np

from pyzygote import random_draws
from pyzygote.errors import RetraceWarning, TracerBoolError, UnsupportedOperationError
from pyzygote.gc_pause import gc_paused
from pyzygote.ir import Program
from pyzygote.pytree import KeywordArguments, Static, flatten, opaque_arrays, unflatten
from pyzygote.scipy_calls import scipy_error
from pyzygote.tracer import Builder, ConstantChanged, Tracer, as_operand, careful_constants, is_weak, same_contents
from pyzygote.views import positions_strided_like

__all__ = ["make_program", "Traced", "trace", "call_traced", "to_input_array", "cast_direction", "clear_cache"]

_ALLOWED_KINDS = "f"


@dataclass
class Traced:
    """A traced function: its program, and how to map pytrees to and from it."""

    program: Program
    in_tree: Hashable
    leaves: list[Any]  # example leaves: arrays, or Static markers
    array_slots: list[int]  # which leaves are program inputs
    out_tree: Hashable
    guards: tuple[Any, ...]
    # Values of enclosing traces the function read (see Builder(lift=True)): the program's
    # inputs after the arguments' arrays.
    lifted: tuple[Any, ...] = ()
    # Tracing advanced a random generator: reusing the trace would repeat its numbers.
    draws_random: bool = False
    leaf_names: tuple[str, ...] = ()  # for messages: "w (argument 0)['k']"

    def inputs_from(self, leaves: list[Any]) -> list[np.ndarray]:
        return [leaves[i] for i in self.array_slots]


def masked_array_message(what: str) -> str:
    # np.asarray drops the mask, which would silently bring the masked entries back.
    return (
        f"{what} is a numpy masked array, which pyzygote does not support (its mask would be lost): pass "
        "x.filled(fill_value) and the mask np.ma.getmaskarray(x), and use np.where(mask, ..., ...)"
    )


def _from_torch(x: Any, argname: str) -> Any:
    """A PyTorch tensor as numpy sees it: detached (pyzygote computes its own derivatives), on the CPU."""
    if type(x).__module__.split(".")[0] != "torch" or not hasattr(x, "detach"):
        return x
    if str(getattr(x, "dtype", "")) == "torch.bfloat16":
        raise TypeError(f"{argname} is a bfloat16 tensor, which numpy has no type for: pass it as x.float() (float32)")
    return x.detach().cpu().numpy()


def _is_foreign(leaf: Any) -> bool:
    """A PyTorch tensor or JAX array among the arguments: it becomes the numpy array it holds,
    whatever its dtype, so that integer labels (torch.long targets) are data as numpy's integer
    arrays are, and the function computes with numpy's semantics either way."""
    return hasattr(leaf, "__array__") and not isinstance(leaf, (np.ndarray, np.generic, Tracer, Static))


def numpy_arguments(args: tuple[Any, ...], f: Any = None) -> tuple[Any, ...]:
    """PyTorch tensors (detached, also those that require grad) and JAX arrays among the
    arguments as the numpy arrays they hold, so that every check of dtypes sees what the
    trace will see (a torch.long tensor is integer data, as np.int64 is).  ``f``'s parameter
    names name an argument numpy has no type for."""
    leaves, tree = flatten(args)
    if not any(_is_foreign(leaf) for leaf in leaves):
        return args
    at = _leaf_names(args, leaves, tree, None, _parameter_names(f) if f is not None else None)
    return unflatten(tree, [np.asarray(_from_torch(leaf, name)) if _is_foreign(leaf) else leaf for leaf, name in zip(leaves, at)])


def to_input_array(x: Any, argname: str) -> np.ndarray:
    """Python numbers and lists become float64; numpy arrays keep their dtype."""
    if isinstance(x, Tracer):
        raise UnsupportedOperationError(
            f"{argname} is a value traced by an enclosing transformation: pz.make_program takes "
            "arrays; inside traced code call pz.gradient, pz.jvp, ... on traced values, which nest"
        )
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(masked_array_message(argname))
    if isinstance(x, np.matrix):  # its * is a matrix product, an array's is elementwise (API fuzzer)
        raise TypeError(
            f"{argname} is a numpy matrix, whose * and ** are matrix products where an array's are "
            "elementwise; pyzygote traces arrays: pass np.asarray(m) and write @ for matrix products"
        )
    x = _from_torch(x, argname)
    if isinstance(x, np.integer):  # a number, as a Python int is (np.int64 from an integer pandas column)
        return np.asarray(x, dtype=np.float64)
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        arr = np.asarray(x)
    elif isinstance(x, complex) or (isinstance(x, list) and any(isinstance(v, complex) for v in x)):
        arr = np.asarray(x)  # refused below as complex, not by float()
    else:
        arr = np.asarray(x, dtype=np.float64) if not hasattr(x, "__array__") else np.asarray(x)
    if arr.dtype.kind not in _ALLOWED_KINDS:
        kind = {"i": "integer", "u": "integer", "b": "boolean", "c": "complex", "O": "object"}.get(
            arr.dtype.kind, arr.dtype.name
        )
        raise TypeError(
            f"cannot differentiate with respect to {argname}: it is an array of {kind} values "
            f"(dtype {arr.dtype}); pyzygote differentiates float32/float64 arrays. "
            f"Convert it with np.asarray(..., dtype=float), or close over it if it is data."
        )
    return arr


def cast_direction(given: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """A tangent or cotangent in the dtype of the value it belongs to, refusing overflow.

    A float64 direction for a float32 value is rounded, as Zygote and numpy do, but one beyond
    float32's range would become inf and be reported as the function's overflow.

    >>> cast_direction(np.array([1e39]), np.dtype(np.float32), "the cotangent")
    Traceback (most recent call last):
    ...
    ValueError: the cotangent holds values beyond the float32 range (largest 3.4e+38) of the value it belongs to; scale it down
    """
    with np.errstate(over="ignore"):
        cast = np.asarray(given).astype(dtype)
    if cast.dtype.kind == "f" and not np.all(np.isfinite(cast)) and np.all(np.isfinite(given)):
        raise ValueError(
            f"{what} holds values beyond the {dtype} range (largest {float(np.finfo(dtype).max):.2g}) of the "
            "value it belongs to; scale it down"
        )
    return cast


_CACHE: "weakref.WeakKeyDictionary[Any, dict[Hashable, Traced]]" = weakref.WeakKeyDictionary()


def clear_cache() -> None:
    """Forget every cached trace."""
    _CACHE.clear()
    _METHOD_CACHE.clear()


# How deep the guard looks into what a function reads (helpers it calls, their globals, nested
# dicts, lists and object attributes, such as HP["model"]["reg"]["l2"] read in a helper), and how
# many objects it notes at most, which bounds its cost on every call.
_GUARD_DEPTH = 5
_GUARD_BUDGET = 2000
_GUARD_BYTES = 16 << 20  # arrays it reaches are copied once and compared on every call


def _closure_guard(
    f: Any, arrays: list[np.ndarray] | None = None, unchecked: list[str] | None = None, extra: Sequence[Any] = ()
) -> dict[Any, Any]:
    """What ``f`` reads from its closure and globals: ``{where: object}``.

    The walk follows nested code (lambdas, comprehensions, generator
    expressions), the user's Python functions that ``f`` calls, bound methods'
    ``self``, partials, and the items of small containers and object
    attributes (``_GUARD_DEPTH`` levels in all, helpers included), so that rebinding
    ``W`` in a helper's globals or assigning ``hp["model"]["reg"] = ...`` is noticed.  Holding the objects (not their
    ids) keeps an id from being reused.  numpy arrays met on the way are
    appended to ``arrays``: their *contents* matter too (``w[0] * x`` bakes
    ``w[0]`` into the trace), and the caller snapshots them.  What the budget leaves
    unchecked is described in ``unchecked``.  ``extra`` holds further objects the trace
    depends on: arguments passed as they are (a model object, a right-hand side function).
    """
    # An object's own attributes are all followed: library code reads them by reflection
    # (dataclasses.asdict, vars, attrgetter).  Its class's methods are followed when the code
    # names them (``m.predict``) or numpy calls them implicitly (dunders such as __getitem__),
    # and a user module only into the attributes the code names (``config.scale``).  A name met
    # later than the class or module it belongs to makes the walk start again, knowing it.
    named: set[str] = {"__call__"}
    while True:
        excluded: set[str] = set()
        found = _walk(f, named, excluded, arrays, unchecked, extra)
        if not (excluded & named):
            return found
        if arrays is not None:
            arrays.clear()
        if unchecked is not None:
            unchecked.clear()


def _walk(
    f: Any,
    named: set[str],
    excluded: set[str],
    arrays: list[np.ndarray] | None,
    unchecked: list[str] | None,
    extra: Sequence[Any],
) -> dict[Any, Any]:
    found: dict[Any, Any] = {}
    seen: dict[int, int] = {}  # id -> the depth it was walked from (a shallower path walks it again)
    # A bound method's traces are cached per owner (_method_cache), so the owner reached again
    # (self.activation = self.relu) is noted by a marker: holding it would keep it alive.
    # pz.nlsolve's wrapper of the user's f (pyzygote.primitives.nonlinear._residual) and that of
    # an in-place right-hand side (pyzygote.ode.rhs.out_of_place) are kept in f's __dict__ and
    # keyed weakly: f and the wrapper reached again are noted by markers too.
    owner = f.__self__ if isinstance(f, types.MethodType) else getattr(f, "_pz_f", None) if isinstance(f, types.FunctionType) else None
    array_bytes = [0]
    truncated = [False]  # the walk left an object or container unopened (too deep, over budget)

    def over_budget(v: Any, n: int) -> bool:
        if len(found) + n <= _GUARD_BUDGET:
            return False
        truncated[0] = True
        if unchecked is not None:
            what = f"{type(v).__name__} of {n} items" if n > 1 else type(v).__name__
            unchecked.append(what)
        return True

    def chosen(attrs: dict[str, Any]) -> list[tuple[str, Any]]:
        excluded.update(k for k in attrs if k not in named)
        return [(k, x) for k, x in attrs.items() if k in named]

    def value(where: Any, v: Any, depth: int) -> None:
        if where != "f" and where[0] != "f":
            # f itself (a bound method's function and owner) is what the cache is keyed by,
            # weakly: holding it would keep it alive.
            found[where] = _standing_for_owner(v, owner, f) if owner is not None else v
        if type(v) in _PROXIES or seen.get(id(v), _GUARD_DEPTH + 1) <= depth:
            return  # (a weak proxy's referent may be gone: not even isinstance works on it)
        if depth >= _GUARD_DEPTH and type(v) not in _SCALARS and not isinstance(v, _NOT_OPENED):
            # objects and containers are opened above this depth only (functions up to it)
            if depth > _GUARD_DEPTH or not isinstance(v, types.FunctionType):
                truncated[0] = True
        if depth > _GUARD_DEPTH or over_budget(v, 0):
            return
        if isinstance(v, np.ndarray):
            if arrays is not None and v.dtype != object and id(v) not in seen:
                seen[id(v)] = depth
                if array_bytes[0] + v.nbytes > _GUARD_BYTES:
                    if unchecked is not None:
                        unchecked.append(f"{v.nbytes}-byte array beyond the {_GUARD_BYTES >> 20} MB of arrays it compares")
                    return
                array_bytes[0] += v.nbytes
                arrays.append(v)
        elif isinstance(v, types.FunctionType):
            # Calling a helper is not nesting data: a chain of helpers (loss -> predict -> model ->
            # ... -> force) reads its globals at the depth it was reached from.
            function(v, max(depth, 0))
        elif isinstance(v, types.MethodType):
            at = "f" if where == "f" else id(v)  # model.loss is a new object on every access
            value((at, "func"), v.__func__, depth)
            value((at, "self"), v.__self__, depth + 1)
        elif isinstance(v, functools.partial):
            seen[id(v)] = depth
            for name in ("func", "args", "keywords"):
                value((id(v), name), getattr(v, name), depth + 1)
        elif isinstance(v, property):
            seen[id(v)] = depth
            value((id(v), "fget"), v.fget, depth)
        elif isinstance(v, (list, tuple, dict, collections.deque)) and depth < _GUARD_DEPTH:
            seen[id(v)] = depth
            try:
                items = list(v.items()) if isinstance(v, dict) else list(enumerate(v))
            except RuntimeError:  # changed by another thread meanwhile: cannot be checked now
                found[(id(v), "changing")] = object()
                return
            if all(type(x) in _SCALARS for _, x in items):
                # Numbers and strings only (a table of constants): one snapshot, compared at C speed.
                found[(id(v), "scalars")] = tuple(items)
                return
            if over_budget(v, len(items)):
                return
            found[(id(v), "len")] = len(items)
            for k, item in items:
                value((id(v), k), item, depth + 1)
        elif isinstance(v, (set, frozenset)):
            found[(id(v), "set")] = frozenset(v)  # its members, compared by equality
        elif isinstance(v, types.ModuleType):
            # A module of the user's used as a namespace (config.scale, pkg.config.scale): the
            # attributes the code names, not the whole module.
            if depth < _GUARD_DEPTH and _user_module(v):
                seen[id(v)] = depth
                for k, item in [(k, x) for k, x in vars(v).items() if k in named]:
                    value((id(v), "." + k), item, depth + 1)
        elif isinstance(v, type):
            # A user's class, base classes included: its data attributes, its dunder methods
            # (which Python and numpy call implicitly) and the other methods the code names.
            if depth < _GUARD_DEPTH and _user_defined(v) and not issubclass(v, enum.Enum):
                seen[id(v)] = depth
                for cls in v.__mro__:
                    if cls is not v and not _user_defined(cls):
                        continue
                    always, named_methods = [], {}
                    for k, x in vars(cls).items():
                        dunder = k.startswith("__") and k.endswith("__")
                        if _is_code(x) and not dunder:
                            named_methods[k] = x
                        elif _is_code(x) or not dunder:  # class bookkeeping (__dict__, __doc__, ...) left out
                            always.append((k, x))
                    for k, item in always + chosen(named_methods):
                        value((id(cls), "." + k), item, depth + 1)
        elif depth < _GUARD_DEPTH and not isinstance(v, _OPAQUE):
            if _user_defined(type(v)):
                value((id(v), "class"), type(v), depth + 1)  # first: its methods name attributes
            attrs = _attributes(v)
            if attrs is not None:
                seen[id(v)] = depth
                if not over_budget(v, len(attrs)):
                    # An attribute set on the object that shadows its class's (cfg.l2 = 5.0) counts too.
                    found[(id(v), "names")] = tuple(attrs)
                    for k, item in attrs.items():
                        value((id(v), "." + k), item, depth + 1)

    def function(fn: Any, depth: int) -> None:
        package = str(getattr(fn, "__module__", "")).split(".")[0]
        if seen.get(id(fn), _GUARD_DEPTH + 1) <= depth or package == "numpy":
            return
        seen[id(fn)] = depth
        names = _code_names(fn.__code__)  # global names, attribute names and string constants
        named.update(names)
        # pyzygote's own wrappers (pz.grad(f)) are followed into what they close over (f), not
        # into their module's globals.
        for i, c in enumerate(fn.__closure__ or ()):
            if _cell_filled(c):
                value((id(fn), "cell", i), c.cell_contents, depth)
        if package == "pyzygote":
            return
        for k, d in vars(fn).items():  # attributes set on the function (loss.scale = 3.0)
            value((id(fn), "attr", k), d, depth)
        for i, d in enumerate(fn.__defaults__ or ()):  # def f(w, cfg=CONFIG): CONFIG["l2"] = ...
            value((id(fn), "default", i), d, depth)
        for k, d in (fn.__kwdefaults__ or {}).items():
            value((id(fn), "kwdefault", k), d, depth)
        g = fn.__globals__
        for n in names:
            if n in g:
                value((id(fn), "global", n), g[n], depth)

    value("f", f, -1)
    for i, obj in enumerate(extra):
        value(("argument", i), obj, 0)
    call = getattr(type(f), "__call__", None)
    if isinstance(call, types.FunctionType):  # a callable object: its class's __call__
        function(call, 0)
    if truncated[0]:
        found[_TRUNCATED] = True
    return found


# Marks a guard whose walk left data unchecked (guard_is_partial); values the walk never opens.
_TRUNCATED = ("truncated",)
_NOT_OPENED = (np.ndarray, np.generic, types.ModuleType, type, types.BuiltinFunctionType)


def guard_is_partial(traced: "Traced") -> bool:
    """Whether the check of what ``traced``'s function reads (:func:`_closure_guard`) stopped
    short, too deep or over its budget: data changed down there goes unnoticed by the cache."""
    return bool(traced.guards) and _TRUNCATED in traced.guards[0]


_NUMBER = (int, float, complex, str, bytes, np.generic)


def _attributes(v: Any) -> dict[str, Any] | None:
    """An object's attributes, its ``__dict__`` and its ``__slots__`` (dataclasses with slots=True),
    read without running its code (no ``__getattr__``, no properties)."""
    try:
        attrs = object.__getattribute__(v, "__dict__")
    except Exception:
        attrs = None
    items = dict(attrs) if isinstance(attrs, dict) else {}
    for cls in type(v).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            stored = f"_{cls.__name__.lstrip('_')}{name}" if name.startswith("__") and not name.endswith("__") else name
            slot = cls.__dict__.get(stored)
            if isinstance(slot, types.MemberDescriptorType):
                try:
                    items[stored] = slot.__get__(v, cls)  # code names it mangled, as stored
                except AttributeError:  # an unset slot
                    pass
    return items if isinstance(attrs, dict) or items else None


# Objects the walk does not open as objects: modules (handled above), C functions, weak proxies,
# and an enclosing trace's values, which a nested trace takes as inputs (their builder holds the
# whole enclosing program: user testing saw a PINN's pz.grad(pz.grad(lambda x: net(th, x)))
# warned about as reading more than the budget).
_OPAQUE = (types.ModuleType, types.BuiltinFunctionType, Tracer, *weakref.ProxyTypes)
_PROXIES = frozenset(weakref.ProxyTypes)
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _user_defined(cls: type) -> bool:
    """A class of the user's own code, not of the standard library or an installed package."""
    try:
        name = cls.__dict__.get("__module__") if isinstance(getattr(cls, "__dict__", None), types.MappingProxyType) else None
    except Exception:  # a metaclass that computes attributes
        return False
    module = sys.modules.get(name) if isinstance(name, str) else None
    return module is not None and _user_module(module)


def _user_module(module: types.ModuleType) -> bool:
    """A module of the user's own code, not of the standard library or an installed package."""
    name = getattr(module, "__name__", None)
    if not isinstance(name, str):
        return False
    top = name.split(".")[0]
    if top in sys.stdlib_module_names or top in ("builtins", "pyzygote"):
        return False
    path = str(getattr(module, "__file__", "") or "")
    return "site-packages" not in path and "dist-packages" not in path


def _unchanged(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is type(b) and type(a) in (tuple, frozenset):  # snapshots: scalars, names, set members
        return a == b
    return type(a) is type(b) and isinstance(a, _NUMBER) and bool(a == b)


def _code_names(code: Any) -> list[str]:
    """Global and attribute names read by ``code`` and the code objects nested in it, and its
    identifier-like string constants (``getattr(m, "w")``, ``for k in ("a", "b")``)."""
    names = list(code.co_names)

    def constants(values: Any) -> None:
        for const in values:
            if isinstance(const, types.CodeType):
                names.extend(_code_names(const))
            elif isinstance(const, str) and const.isidentifier():
                names.append(const)
            elif isinstance(const, (tuple, frozenset)):
                constants(const)

    constants(code.co_consts)
    return names


def _is_code(x: Any) -> bool:
    """A function-like class attribute (a method, a property, a static or class method)."""
    return isinstance(x, (types.FunctionType, property, staticmethod, classmethod))


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _parameter_names(f: Any) -> list[str] | None:
    """The names of ``f``'s positional parameters, for messages (``None`` past ``*args``)."""
    if type(f) is types.FunctionType and not hasattr(f, "__wrapped__") and not hasattr(f, "__signature__"):
        # What inspect.signature would say, read from the code object: asked on every call of a
        # transformation, where inspect's 6 us were a tenth of a small gradient's cost.
        code = f.__code__
        return list(code.co_varnames[: code.co_argcount])
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return None
    names = []
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    return names


def _leaf_count(t: Any) -> int:
    """How many leaves the pytree structure ``t`` (one of :func:`flatten`'s) holds."""
    if t in ("*", "s"):
        return 1
    children = t[3] if t[0] == "dataclass" else t[-1]
    return sum(_leaf_count(c) for c in children)


def _leaf_names(
    args: tuple[Any, ...], leaves: list[Any], tree: Hashable, argnames: list[str] | None, parameters: list[str] | None = None
) -> list[str]:
    """Human names for leaves: 'argument 2' or "argument 1['k']"."""
    names: list[str] = []

    def walk(t: Any, path: str) -> None:
        if t in ("*", "s"):
            names.append(path)
            return
        kind = t[0]
        if kind == "dict":
            for k, c in zip(t[1], t[-1]):
                walk(c, f"{path}[{k!r}]")
        elif kind == "dataclass":
            for k, c in zip(t[2], t[3]):
                walk(c, f"{path}.{k}")
        else:
            for i, c in enumerate(t[-1]):
                walk(c, f"{path}[{i}]")

    for i, c in enumerate(tree[1]):
        if isinstance(c, tuple) and c[0] == "namedtuple" and c[1] is KeywordArguments:
            for k, leaf_tree in zip(c[2][0][1], c[2][0][-1]):
                walk(leaf_tree, f"keyword argument {k}")
            continue
        if argnames and i < len(argnames):
            base = argnames[i]
        elif parameters and i < len(parameters):
            base = f"{parameters[i]} (argument {i})"  # f's own parameter name, and its position
        else:
            base = f"argument {i}"
        walk(c, base)
    return names


def trace(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    argnames: list[str] | None = None,
    output: Callable[[Any], Any] | None = None,
    nest: bool = False,
    const_args: Collection[int] = (),
    concrete_data: bool = False,
    int_arrays_constant: bool = False,
    int_arrays_traced: bool = False,
) -> tuple[Traced, list[Any]]:
    """Trace ``f(*args)`` (or reuse a valid cached trace); return it and the input arrays.

    In the arguments at the positions ``const_args`` (data that will not be
    differentiated, as JAX's ``argnums`` leaves them), only floating-point arrays
    are inputs; integers, booleans and other values reach ``f`` as they are
    (integer labels may index, ``range(n)`` works) and are constants of the trace,
    which is cached per their contents.  With ``concrete_data`` floating-point data
    are constants too, for functions that use them as plain numbers (``range(int(T / dt))``).
    With ``int_arrays_constant`` integer and boolean numpy arrays anywhere in the
    arguments are such constants (they get no gradient, as Zygote gives them ``nothing``);
    with ``int_arrays_traced`` as well, those of one or more dimensions are inputs instead
    (labels of a new minibatch reuse the trace), for functions that only compute with them.

    ``output``, if given, is applied to what ``f`` returns, inside the trace
    (an ODE right-hand side's list of scalars becomes one float64 vector).
    With ``nest``, ``f`` may be called inside another trace: arguments may be
    traced values (returned as they are among the input arrays) and values
    of the enclosing trace that ``f`` reads become ``Traced.lifted``.  Such a
    trace belongs to the enclosing one and is not cached.
    """
    if not callable(f):
        raise TypeError(f"expected a function of numpy arrays to differentiate, got {type(f).__name__} {f!r}")
    _refuse_opaque(args, const_args)
    leaves, tree = flatten(tuple(args))
    if any(_is_foreign(leaf) for leaf in leaves):
        at = _leaf_names(args, leaves, tree, argnames, None if argnames else _parameter_names(f))
        leaves = [np.asarray(_from_torch(leaf, name)) if _is_foreign(leaf) else leaf for leaf, name in zip(leaves, at)]
    if const_args or int_arrays_constant:
        owners = _top_level_owners(tree)
        leaves = [
            leaf
            if int_arrays_traced and _int_array(leaf) and not (concrete_data and owners[i] in const_args)
            else Static(leaf)
            if _held_constant(leaf, owners[i] in const_args, concrete_data)
            else leaf
            for i, leaf in enumerate(leaves)
        ]
    names = _leaf_names(args, leaves, tree, argnames, None if argnames else _parameter_names(f))
    arrays: list[Any] = []
    key_parts: list[Any] = [tree, output]
    for leaf, name in zip(leaves, names):
        if isinstance(leaf, Static):
            key_parts.append(leaf.key())
        else:
            traced = nest and (isinstance(leaf, Tracer) or _object_array_of_tracers(leaf))
            if traced:
                arr = _traced_input(as_operand(leaf), name)
            else:
                arr = leaf if int_arrays_traced and _int_array(leaf) else to_input_array(leaf, name)
            arrays.append(arr)
            key_parts.append((arr.shape, arr.dtype.str, _layout_key(arr), is_weak(leaf)))
    key = tuple(key_parts)
    if nest and Builder.tracing():
        return _trace_fresh(f, leaves, tree, arrays, output, nest=True), arrays
    per_fn = _function_cache(f)
    hit = per_fn.get(key) if per_fn is not None else None
    if hit is not None and _still_valid(hit, f):
        # This call's leaves: whether a result is a Python float or an array
        # follows this call's arguments (2.0 and 3 share a trace; np.float64(2.0), not weak, has its own).
        return dataclasses.replace(hit, leaves=leaves), arrays
    started = time.perf_counter()
    traced = dataclasses.replace(_trace_fresh(f, leaves, tree, arrays, output), leaf_names=tuple(names))
    if per_fn is not None and not per_fn and not traced.draws_random:  # the first trace of this function object
        _note_new_function(f, key, time.perf_counter() - started)
    if traced.draws_random:
        _warn_once(
            f,
            f"{getattr(f, '__qualname__', f)!r} draws random numbers while it is traced (np.random or a "
            "Generator). A trace records their values, so to give each call new numbers, as numpy does, "
            "pyzygote traces it again on every call, which is slower. Draw them outside and pass them in "
            "as an argument to trace once.",
            random_draws.RandomDrawWarning,
        )
        return traced, arrays
    if per_fn is not None:
        if len(per_fn) >= _MAX_TRACES_PER_FUNCTION:  # labels held constant would pile up
            try:
                per_fn.pop(next(iter(per_fn)), None)
            except (StopIteration, RuntimeError):  # another thread got there first
                pass
        per_fn[key] = traced
    return traced, arrays


_MAX_TRACES_PER_FUNCTION = 32

# How often, and for how many seconds in all, the same code is traced as new function objects
# for the same arguments before RetraceWarning says so (retracing a small function in a loop
# costs little); by (code object, hash of the signature).  The code objects themselves are the
# keys: an id could be reused by other code once one is freed.
_RETRACE_AFTER = 3
_RETRACE_SECONDS = 1.0
# ... or this many times whatever the tracing took: its derivatives are derived and compiled
# again each time too, which the seconds above do not count (user testing: an iLQR sweep's
# pz.jacobian of a lambda made in the loop, 200 times at 13.5 ms against 0.7 ms).
_RETRACE_ALWAYS_AFTER = 50
_NEW_FUNCTIONS: dict[tuple[Any, int], tuple[int, float]] = {}
_SAME_CLOSURE: dict[Any, int] = {}
_RETRACE_WARNED: set[Any] = set()


def _note_new_function(f: Any, key: Hashable, seconds: float) -> None:
    """Count a first trace of a function object; warn when its code keeps coming back as new ones.
    A wrapper pyzygote made around the user's function (pz.nlsolve's residual, an in-place
    right-hand side's out-of-place form: ``_pz_f``) is counted and named as that function: its
    own code is pyzygote's, the same for every function, and its closure is a new one each time."""
    inner = getattr(f, "_pz_f", None)
    f = inner if callable(inner) else f
    code = getattr(getattr(f, "__func__", f), "__code__", None)
    if code is None:
        return
    try:
        slot = (code, hash(key))
    except TypeError:
        return
    if len(_NEW_FUNCTIONS) > 1024:
        _NEW_FUNCTIONS.clear()
        _SAME_CLOSURE.clear()
    count, spent = _NEW_FUNCTIONS.get(slot, (0, 0.0))
    count, spent = _NEW_FUNCTIONS[slot] = (count + 1, spent + seconds)
    # The count alone only over functions that close over the same objects: one made per case
    # of a list (lambda x: case(x)) is another function each time.
    fn = getattr(f, "__func__", f)
    bound = [getattr(f, "__self__", None), *(getattr(fn, "__defaults__", None) or ()), *(getattr(fn, "__kwdefaults__", None) or {}).values()]
    cells = [c.cell_contents if _cell_filled(c) else None for c in getattr(fn, "__closure__", None) or ()]
    # (a method of another object, or a lambda with another default c=c, is another function)
    same = (slot, tuple(map(id, bound + cells)))
    if len(_SAME_CLOSURE) > 4096:
        _SAME_CLOSURE.clear()
    _SAME_CLOSURE[same] = repeats = _SAME_CLOSURE.get(same, 0) + 1
    if count < _RETRACE_AFTER or (spent < _RETRACE_SECONDS and repeats < _RETRACE_ALWAYS_AFTER) or code in _RETRACE_WARNED:
        return
    _RETRACE_WARNED.add(code)
    warnings.warn(
        f"{getattr(f, '__qualname__', f)!r} (line {code.co_firstlineno} of {code.co_filename}) has been traced "
        f"{count} times for the same argument shapes (the tracing alone took {spent:.1f} s in all, and each new trace's "
        "derivatives are derived and compiled again, which takes longer), because it is a new function object at each call, as a "
        "lambda or a function defined inside the objective or loop is: traces are cached per function object, "
        "and tracing a long model costs far more than running it. Define the function once, outside, and pass "
        "what changes as arguments (def loss(th, data): ...; pz.gradient(loss, th, data=data))",
        RetraceWarning,
        stacklevel=_user_stacklevel(),
    )


def _layout_key(arr: Any) -> str:
    """How an argument is laid out in memory, which decides what numpy makes a view of it."""
    if not isinstance(arr, np.ndarray) or arr.flags.c_contiguous or arr.size <= 1:
        return "C"
    if arr.flags.f_contiguous:
        return "F"
    # Which reshapes and ravels copy depends on the whole pattern of strides.
    return "strided" + repr(tuple(s // arr.itemsize if s % arr.itemsize == 0 else s for s in arr.strides))


_OWNER = object()  # stands for a bound method's owner among what its function reads


def _standing_for_owner(v: Any, owner: Any, root: Any = None) -> Any:
    """What is noted for ``v`` without holding ``owner``: ``v`` itself, or a marker for the
    owner and for its bound methods (self.activation = self.relu), and for the function
    ``root`` being walked when it is reached again (pz.nlsolve's wrapper in its f's __dict__)."""
    if v is owner:
        return _OWNER
    if isinstance(v, types.MethodType) and v.__self__ is owner:
        return ("<a method of the owner>", v.__func__)
    if root is not None and v is root:
        return "<the function walked>"
    return v


def _int_array(leaf: Any) -> bool:
    """An int64 or boolean numpy array of one or more dimensions (labels, masks, index arrays).
    Smaller integer types stay constants: traced index arithmetic in them (i + n) would wrap, and
    numpy compares them with out-of-range Python integers by value."""
    return isinstance(leaf, np.ndarray) and leaf.ndim > 0 and leaf.dtype in (np.dtype(np.int64), np.dtype(np.bool_))


def has_int_arrays(args: Any) -> bool:
    return any(_int_array(leaf) for leaf in flatten(tuple(args))[0])


def _held_constant(leaf: Any, is_data: bool, concrete_data: bool) -> bool:
    """Integer and boolean arrays (labels, masks) and, in data, anything not floating point
    (counts, flags) are constants of the trace."""
    if isinstance(leaf, (Static, Tracer)):
        return False
    if is_data and concrete_data:
        return True
    if isinstance(leaf, np.integer) and not is_data:
        return False  # a number, as a Python int is: np.int64(30) from an integer pandas column
    if isinstance(leaf, (np.ndarray, np.generic)):
        return leaf.dtype.kind in "iub"
    if not is_data:
        return False  # Python numbers become float64 inputs
    try:
        return np.asarray(leaf).dtype.kind != "f"
    except (TypeError, ValueError):
        return True


def _top_level_owners(tree: Hashable) -> list[int]:
    """For each leaf of an argument tuple's tree, the position of the argument it belongs to."""

    def count(t: Any) -> int:
        if t in ("*", "s"):
            return 1
        return sum(count(c) for c in t[-1])

    return [i for i, child in enumerate(tree[1]) for _ in range(count(child))]  # type: ignore[index]


def _function_cache(f: Any) -> dict[Hashable, Traced] | None:
    owner, func = getattr(f, "__self__", None), getattr(f, "__func__", None)
    if owner is not None and func is not None and not isinstance(owner, types.ModuleType):
        return _method_cache(owner, func)
    try:
        return _CACHE.setdefault(f, {})
    except TypeError:  # not weak-referenceable
        return None


def _method_cache(owner: Any, func: Any) -> dict[Hashable, Traced] | None:
    """The traces of ``owner.method``: ``pz.gradient(model.loss, w)`` makes a new bound method
    on every access, which a cache keyed by the method itself would forget at once.  They live
    as long as ``owner``, which need not be hashable (a dataclass)."""
    try:
        per_owner = _METHOD_CACHE[id(owner)]
    except KeyError:
        try:
            weakref.finalize(owner, _METHOD_CACHE.pop, id(owner), None)
        except TypeError:  # not weak-referenceable (__slots__ without __weakref__)
            return None
        per_owner = _METHOD_CACHE.setdefault(id(owner), weakref.WeakKeyDictionary())
    try:
        return per_owner.setdefault(func, {})
    except TypeError:
        return None


_METHOD_CACHE: dict[int, "weakref.WeakKeyDictionary[Any, dict[Hashable, Traced]]"] = {}


def _static_objects(leaves: Sequence[Any]) -> list[Any]:
    """Arguments passed as they are whose contents can change (objects, functions, containers
    of them): a trace keyed by their identity is only valid while they are unchanged."""
    return [leaf.value for leaf in leaves if isinstance(leaf, Static) and not isinstance(leaf.value, _IMMUTABLE)]


_IMMUTABLE = (bool, int, float, complex, str, bytes, type(None), np.generic, type, range, slice, type(Ellipsis))


def _still_valid(traced: Traced, f: Any) -> bool:
    reads, captured = traced.guards
    now = _closure_guard(f, extra=_static_objects(traced.leaves))
    if not all(_unchanged(now.get(where, _MISSING), v) for where, v in reads.items()):
        return False
    return all((orig := held()) is None or same_contents(orig, snap) for held, snap in captured)


def _held(a: np.ndarray) -> Callable[[], np.ndarray | None]:
    """How a trace holds an array it read, to compare it at later calls: weakly if the array owns
    its memory (gone, nothing can have changed it: the np.zeros(1) a loop makes at each step, 2,000
    arrays compared at every call), else strongly (a view of data that may change)."""
    if a.base is None:
        try:
            return weakref.ref(a)
        except TypeError:
            pass
    return lambda: a


_MISSING = object()


def _refuse_opaque(args: tuple[Any, ...], const_args: Collection[int]) -> None:
    """An object holding arrays in its attributes, passed where pyzygote differentiates, would be
    held constant and get no gradient: say so, as JAX does for a type it does not know."""

    def visit(x: Any, where: str) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                visit(v, f"{where}[{k!r}]")
        elif isinstance(x, (list, tuple)):
            if x and isinstance(x[0], (int, float, np.number)):
                return  # numbers (a list of them is one array), not objects: checked on every call
            for i, v in enumerate(x):
                visit(v, f"{where}[{i}]")
        elif (held := opaque_arrays(x)):
            raise TypeError(
                f"{where} is a {type(x).__name__} holding arrays ({', '.join(held[:4])}{', ...' if len(held) > 4 else ''}), "
                "which pyzygote cannot see into: it differentiates arrays and numbers in dicts, lists, tuples, "
                "namedtuples and dataclasses. Make it a dataclass or pass a dict of the arrays (the gradient "
                "has the same structure), or close over it to hold it constant"
            )

    for i, a in enumerate(args):
        if i not in const_args and not isinstance(a, KeywordArguments):
            visit(a, f"argument {i}")


@gc_paused
def _check_writes_into_arguments(given: list[Any], tracers: list[Any]) -> None:
    """numpy's rules for writes into the arguments that a trace, whose inputs are separate values,
    cannot follow (API fuzzer): a read-only array refuses them, and arguments sharing memory (tied
    weights {"enc": W, "dec": W}) see each other's."""
    written = [i for i, t in enumerate(tracers) if t._version > 0]
    if not written:
        return
    for i in written:
        a = given[i]
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            raise ValueError(
                "assignment destination is read-only: the function writes into an argument that numpy would "
                "refuse to change (its writeable flag is off); write into a copy, y = x.copy()"
            )
        for j, b in enumerate(given):
            if j != i and isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.shares_memory(a, b):
                raise UnsupportedOperationError(
                    "the function writes in place into an argument that shares memory with another (the same "
                    "array passed twice, or tied weights {'enc': W, 'dec': W}): numpy would see the write through "
                    "the other, and pyzygote traces them as separate values. Pass copies (np.copy), or write into "
                    "a copy inside the function"
                )


def _trace_fresh(
    f: Callable[..., Any],
    leaves: list[Any],
    tree: Hashable,
    arrays: list[np.ndarray],
    output: Callable[[Any], Any] | None,
    nest: bool = False,
) -> Traced:
    try:
        return _trace_once(f, leaves, tree, arrays, output, nest)
    except ConstantChanged as changed:
        # f changed a numpy array it reads in place while it ran; traced again, reading it
        # afresh at each use (rare, and slower: every use is compared).
        changed.restore()
        with careful_constants():
            return _trace_once(f, leaves, tree, arrays, output, nest)


def _trace_once(
    f: Callable[..., Any],
    leaves: list[Any],
    tree: Hashable,
    arrays: list[np.ndarray],
    output: Callable[[Any], Any] | None,
    nest: bool = False,
) -> Traced:
    b = Builder(lift=nest)
    tracers = [b.new_input(a.shape, a.dtype) for a in arrays]
    it = iter(tracers)
    slots = [i for i, leaf in enumerate(leaves) if not isinstance(leaf, Static)]
    b.first_argument_inputs = sum(1 for i in slots if i < _leaf_count(tree[1][0])) if tree[1] else 0
    for i, t, a in zip(slots, tracers, arrays):
        t._array0d = isinstance(leaves[i], np.ndarray) and leaves[i].ndim == 0  # a 0-d array argument is mutable
        t._weak = is_weak(leaves[i])  # a Python number: float32 arrays times it stay float32, as in numpy
        if isinstance(a, np.ndarray) and _layout_key(a) != "C":
            # Fortran-ordered or strided: its reshape(-1) or ravel() is a copy, as numpy decides
            t._dummy = positions_strided_like(a)
    traced_leaves = [leaf if isinstance(leaf, Static) else next(it) for leaf in leaves]
    statics = _static_objects(leaves)
    before = _closure_guard(f, extra=statics)
    generators = random_draws.states(before.values())
    with b.active_trace():
        out = call_traced(f, *unflatten(tree, traced_leaves))
        if output is not None:
            out = output(out)
    _check_writes_into_arguments([leaves[i] for i in slots], tracers)
    draws_random = random_draws.drew(generators, random_draws.states(before.values()))
    reached: list[np.ndarray] = []
    unchecked: list[str] = []
    after = _closure_guard(f, reached, unchecked, extra=statics)
    if unchecked:
        _warn_unchecked(f, unchecked)
    # What f itself changes while it runs (a call counter, a log list) is its
    # own state, not an input of the trace: leave it out of the guard.
    guard = {k: v for k, v in after.items() if k in before and _unchanged(before[k], v)}
    out_leaves, out_tree = flatten(out)
    for leaf in out_leaves:
        if isinstance(leaf, Static):
            raise TypeError(f"the traced function returned {leaf.value!r}, which is not an array")
    prog = b.build(tracers, out_leaves)
    b.ended = True
    lifted = tuple(t for t, _ in b.lifted.values())
    known = {id(orig) for orig, _ in b.first_reads.values()}
    captured = tuple((_held(orig), snap) for orig, snap in b.first_reads.values() if isinstance(orig, np.ndarray))
    captured += tuple((_held(a), np.array(a, copy=True)) for a in reached if id(a) not in known)
    return Traced(prog, tree, leaves, slots, out_tree, (guard, captured), lifted, draws_random)


_WARNED: "collections.defaultdict[type, weakref.WeakSet[Any]]" = collections.defaultdict(weakref.WeakSet)


def _warn_unchecked(f: Any, unchecked: list[str]) -> None:
    """Say once per function that changes to some of the data it reads would go unnoticed."""
    _warn_once(
        f,
        f"pyzygote checks what {getattr(f, '__qualname__', f)!r} reads from its globals and closure for "
        f"changes before reusing its trace, up to {_GUARD_BUDGET} objects; it reads more (the check stopped "
        f"at a {unchecked[0]}). If you change that data between calls, call pz.clear_cache(), or pass the "
        "data as an argument.",
        UncheckedDataWarning,
    )


def _warn_once(f: Any, message: str, category: type[Warning]) -> None:
    """Warn once per function and kind of warning, pointing at the user's line."""
    seen = _WARNED[category]
    f = getattr(f, "__func__", f)  # a bound method is a new object on each access
    try:
        if f in seen:
            return
        seen.add(f)
    except TypeError:  # not weak-referenceable
        pass
    warnings.warn(message, category, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside pyzygote."""
    package = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class UncheckedDataWarning(UserWarning):
    """A traced function reads more global or closed-over data than pyzygote checks for changes."""


def _object_array_of_tracers(x: Any) -> bool:
    """np.array([...]) of traced values: numpy makes an object array of them."""
    return isinstance(x, np.ndarray) and x.dtype == object and any(isinstance(v, Tracer) for v in x.flat)


def _traced_input(t: Tracer, argname: str) -> Tracer:
    """A traced argument of a transformation called inside a trace (see engines.inline)."""
    if not Builder.is_active(t._builder):
        raise UnsupportedOperationError(
            f"{argname} is a traced value whose trace has ended (kept from an earlier pz.gradient "
            "or similar call): traced values exist only while their function is traced"
        )
    if t.dtype.kind not in _ALLOWED_KINDS:
        raise TypeError(f"cannot differentiate with respect to {argname}: it is a traced {t.dtype} value")
    return t


# numpy's words when a traced value is written into one of its own arrays (np.zeros(n)[i] = v):
# numpy takes the tracer for a sequence, since it has __len__ and __getitem__.
_SEQUENCE_MESSAGE = "setting an array element with a sequence"


def call_traced(f: Callable[..., Any], *tracers: Any) -> Any:
    """``f(*tracers)``, with numpy's and SciPy's errors about traced values explained.

    A last argument of type :class:`~pyzygote.pytree.KeywordArguments` is passed as keywords."""
    kwargs: dict[str, Any] = {}
    if tracers and isinstance(tracers[-1], KeywordArguments):
        kwargs, tracers = tracers[-1].given, tracers[:-1]
    try:
        return _call_explained(f, *tracers, **kwargs)
    except Exception as exc:
        instead = scipy_error(exc)
        if instead is None:
            raise
        raise instead from exc


def _call_explained(f: Callable[..., Any], /, *tracers: Any, **kwargs: Any) -> Any:
    try:
        return f(*tracers, **kwargs)
    except ValueError as exc:
        if _SEQUENCE_MESSAGE in str(exc):
            if _handed_to_foreign_library(exc):  # jnp.asarray(x): JAX asked numpy for the numbers
                raise _at_user_line(TracerBoolError(_FOREIGN_NOTE[1:-1]), exc) from exc
            if _inside_numpy_function(exc, "piecewise"):
                raise _at_user_line(_piecewise_of_traced_values(), exc) from exc
            raise _at_user_line(_assigned_into_numpy_array(), exc, conversion=True) from exc
        raise
    except TracerBoolError as exc:
        if getattr(exc, "_pyzygote_located", False):
            raise
        located = _at_user_line(TracerBoolError(str(exc)), exc)
        if _handed_to_foreign_library(exc):  # jnp.asarray(x) asks numpy for the traced value's numbers
            located.add_note(_FOREIGN_NOTE)
        raise located from exc
    except (TypeError, AttributeError) as exc:
        if not isinstance(exc, TracerBoolError) and _from_object_array(str(exc)):
            raise _object_array(exc) from exc
        if (_FOREIGN_LIBRARY.search(str(exc)) or _handed_to_foreign_library(exc)) and hasattr(exc, "add_note"):
            exc.add_note(_FOREIGN_NOTE)
        raise
    except IndexError as exc:
        # Nested traces (an ODE's right-hand side inside a loss) pass the same error up: one note.
        if "only integers, slices" in str(exc) and hasattr(exc, "add_note") and not any("pz.take(table, i)" in n for n in getattr(exc, "__notes__", ())):
            exc.add_note(
                "(pyzygote: if the index is a traced value, such as an argument being differentiated or t in "
                "an ODE right-hand side, numpy's own arrays cannot be indexed with it: read them with "
                "pz.take(table, i), select with np.where, or interpolate with np.interp; to assign at a "
                "traced position, create the array from a traced one: y = np.zeros_like(x, shape=(n,)))"
            )
        raise


def _at_user_line(err: TracerBoolError, cause: BaseException, conversion: bool = False) -> TracerBoolError:
    """``err`` naming the line of the user's code where ``cause`` was raised, and what to write
    instead when that line converts a traced value with ``np.asarray``/``np.array``."""
    frame, line = None, ""
    tb = cause.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".")[0] not in ("numpy", "pyzygote", "scipy", "torch", "jax", "jaxlib"):
            frame = tb
        tb = tb.tb_next
    if frame is not None:
        code = frame.tb_frame.f_code
        line = linecache.getline(code.co_filename, frame.tb_lineno).strip()
        where = f"{Path(code.co_filename).name}, line {frame.tb_lineno}, in {code.co_name}: {line}"
        text = str(err)
        if conversion and _draws_with_traced_parameters(line, frame.tb_frame):
            text = (
                f"this line draws random numbers with traced parameters ({line}): numpy's generators take numbers, "
                "not traced values. Draw standard noise and transform it, mu + sigma * rng.standard_normal(n) (the "
                "reparameterization, differentiable in mu and sigma; np.exp of it for a log-normal, "
                "-np.log(rng.uniform(size=n)) / rate for an exponential). " + text
            )
        elif conversion and re.search(r"\b(asarray|array|asanyarray|ascontiguousarray)\(", line):
            text = (
                f"this line converts traced values with numpy ({line}): make an array of a list of traced values "
                "(results appended in a loop) with np.stack(values), and leave a traced value itself as it is, since "
                "it is already an array of its dtype (drop the conversion, or convert only inputs that are lists: "
                "x = x if hasattr(x, 'shape') else np.asarray(x, dtype=float)). " + text
            )
        err = TracerBoolError(f"{text}\n  ({where})")
    for kept in ("what", "value"):  # what was refused, of which value (pyzygote.tracer.input_positions)
        if hasattr(cause, kept) and not hasattr(err, kept):
            setattr(err, kept, getattr(cause, kept))
    err._pyzygote_located = True  # type: ignore[attr-defined]
    return err


# A draw from a numpy generator or np.random with parameters (where a traced one meets numpy)
_RANDOM_DRAW = re.compile(
    r"([\w.]+)\.(normal|uniform|lognormal|exponential|gamma|beta|laplace|logistic|gumbel|weibull|multivariate_normal|poisson|binomial)\("
)


def _draws_with_traced_parameters(line: str, frame: Any) -> bool:
    """Whether ``line`` (not an item assignment) draws from ``np.random`` or a numpy generator with
    arguments: the names are looked up in ``frame`` (review: scipy.special.gamma(1.5) is no draw)."""
    if re.match(r"[\w.]+\[[^\]]*\]\s*[-+*/]?=[^=]", line):
        return False  # y[i] = x[i] * rng.normal(): an assignment into a numpy array
    for found in _RANDOM_DRAW.finditer(line):
        head, *rest = found.group(1).split(".")
        owner = frame.f_locals.get(head, frame.f_globals.get(head))
        for name in rest:
            owner = getattr(owner, name, None)
        if isinstance(owner, (np.random.Generator, np.random.RandomState)) or owner is np.random:
            if not line[found.end():].lstrip().startswith(")"):
                return True
    return False


def _inside_numpy_function(exc: BaseException, name: str) -> bool:
    """Whether ``exc`` was raised inside numpy's function ``name`` (np.piecewise filling its own array)."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == name and str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] == "numpy":
            return True
        tb = tb.tb_next
    return False


def _piecewise_of_traced_values() -> TracerBoolError:
    from pyzygote.numpy_api import _INSTEAD

    return TracerBoolError(
        "np.piecewise on a numpy array (a constant grid) whose functions (or values) are traced: numpy fills an array of "
        "its own with the functions' results, and a numpy array holds only numbers, not traced values. Write it as "
        + _INSTEAD["piecewise"]
        + "."
    )


def _assigned_into_numpy_array() -> TracerBoolError:
    return TracerBoolError(
        "numpy could not store a traced value into one of its own arrays (\""
        + _SEQUENCE_MESSAGE
        + "\"): a numpy array holds only numbers. This happens when a traced value is written into "
        "an array from np.zeros(n) or np.empty(n), or a .copy() of a constant array (create it from a "
        "traced one instead: y = np.zeros_like(u), then y[i] = v; T = T0 + 0.0 * u[0] for a copy of the "
        "constant T0 that can take traced values; or build it with np.stack), or converted with "
        "np.asarray(x, dtype=float), np.array(x, dtype=...) or np.float64(x) (leave traced values as they are), "
        "or by a numpy function such as np.mean working on an array that np.array([...]) or np.asarray(x) "
        "made of traced values (build that array with np.stack([...]) instead)."
    )


# numpy's words when a ufunc meets an object array holding traced values (and, when the array
# mixes them with plain numbers, a number's missing method of the ufunc's name).
# np.linalg.eig checks finiteness first, and isfinite refuses object arrays outright.
_OBJECT_ARRAY_MESSAGES = re.compile(
    r"which has no callable \w+ method|from dtype\('O'\)|'(?:float|int)' object has no attribute '(\w+)'"
    r"|ufunc 'isfinite' not supported for the input types"
)


# What PyTorch and JAX say when given a traced value (user testing).
_FOREIGN_LIBRARY = re.compile(r"must be Tensor, not Tracer|Tracer.*is not a valid JAX type|not a valid JAX type.*Tracer")
_FOREIGN_NOTE = (
    "(pyzygote: the function handed a traced value to PyTorch or JAX. pyzygote traces numpy code: "
    "write the function with numpy (np.sin, np.tanh, x @ w), as the reference for pz.crosscheck is)"
)
_FOREIGN_NAMES = ("torch", "jnp", "jax")
_FOREIGN_MODULES = ("torch", "jax", "jaxlib")


def _names_in(line: str) -> tuple[dict[str, None], bool]:
    """The names a line of code reads, in order, and whether it calls into ``torch.``, ``jnp.`` or
    ``jax.`` by name; its comment and strings do not count."""
    import io
    import tokenize

    names: dict[str, None] = {}
    foreign, previous = False, None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.NAME:
                names[tok.string] = None
            elif tok.string == "." and previous is not None and previous.type == tokenize.NAME:
                foreign |= previous.string in _FOREIGN_NAMES
            previous = tok
    except (tokenize.TokenError, SyntaxError):  # a line of a longer statement: the names up to there
        pass
    return names, foreign


def _handed_to_foreign_library(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside PyTorch or JAX, or on a line of the user's calling one:
    torch.tensor(x) of a traced value fails in C with "len() of unsized object", which names
    neither (acceptance testing)."""
    tb, user = exc.__traceback__, None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0]
        if module in _FOREIGN_MODULES:
            return True
        if module not in ("numpy", "pyzygote", "scipy"):
            user = tb
        tb = tb.tb_next
    if user is None:
        return False
    frame = user.tb_frame
    names, calls_foreign = _names_in(linecache.getline(frame.f_code.co_filename, user.tb_lineno))
    if calls_foreign:
        return True
    # torch's conversions are C functions, absent from the traceback: look at what the names on
    # the failing line hold (``xp = torch``, ``convert = torch.tensor``); only there, as a function
    # holding torch for other uses (a dtype, a seed) may fail on a traced value in numpy terms.
    for name in names:
        held = frame.f_locals.get(name, frame.f_globals.get(name))
        owner = held.__name__ if isinstance(held, types.ModuleType) else getattr(held, "__module__", None)
        if isinstance(owner, str) and owner.split(".")[0] in _FOREIGN_MODULES:
            return True
    return False


def _from_object_array(message: str) -> bool:
    m = _OBJECT_ARRAY_MESSAGES.search(message)
    # A number's missing attribute counts only when it is named after a ufunc (not, say, .shape).
    return m is not None and (m.group(1) is None or isinstance(getattr(np, m.group(1), None), np.ufunc))


def _object_array(exc: Exception) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"numpy worked on an array of Python objects holding traced values ({exc}). Such arrays come "
        "from np.array([...]) or np.asarray(x) applied to traced values; numpy's elementwise arithmetic "
        "works on them, but this operation does not. Build traced arrays with np.stack([...]) "
        "instead, and call np.asarray only on data, not on the function's arguments."
    )


def make_program(f: Callable[..., Any], *args: Any) -> Program:
    """The IR program pyzygote traces from ``f(*args)``.

    >>> import numpy as np, pyzygote as pz
    >>> prog = pz.make_program(lambda x: np.sum(x ** 2), np.ones(3))
    >>> [e.prim.name for e in prog.eqns]
    ['pow', 'reduce_sum']
    """
    return trace(f, args)[0].program


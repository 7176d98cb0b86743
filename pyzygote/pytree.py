"""Nested containers of arrays (pytrees): flatten to leaves and rebuild.

Tuples, dicts (their leaves in sorted key order, like JAX; rebuilt in their own order, an
``OrderedDict`` as one), lists and dataclass instances (their fields, as
Zygote's structural gradients and JAX's registered dataclasses have them) are containers, except
that a list of plain numbers (possibly nested) is one array leaf, as numpy would read it.  Numbers and
numpy arrays are array leaves; anything else (strings, functions, ``None``,
and Python ``True``/``False``, which are flags rather than numbers) is a
static leaf that takes part in tracing as a Python value.

>>> from pyzygote.pytree import flatten, unflatten
>>> leaves, tree = flatten({"k": 1.0, "m": ([1.0, 2.0], "tag")})
>>> len(leaves)
3
>>> unflatten(tree, leaves)["m"][1]
'tag'
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import hashlib
from typing import Any, Hashable, NamedTuple

import numpy as np

__all__ = ["ravel", "flatten", "unflatten", "structure", "describe", "leaf_paths", "is_array_leaf", "opaque_arrays", "Static", "KeywordArguments"]


class KeywordArguments(NamedTuple):
    """The keyword arguments of a call, as the last of its arguments: a tree node of its own,
    so that they never look like a dict passed by position."""

    given: dict[str, Any]


class Static:
    """Marks a static leaf in a flattened list."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def key(self) -> Hashable:
        try:
            hash(self.value)
            return ("static", type(self.value), self.value)
        except TypeError:
            pass
        if is_array_leaf(self.value):  # data held constant (JAX's argnums): keyed by content
            arr = np.asarray(self.value)
            if arr.dtype != object:
                digest = hashlib.blake2b(np.ascontiguousarray(arr).view(np.uint8), digest_size=16).digest()
                return ("static-array", arr.shape, arr.dtype.str, digest)
        return ("static-id", id(self.value))


def _numeric_list(x: Any) -> bool:
    if isinstance(x, list):
        return len(x) > 0 and all(_numeric_list(e) for e in x)
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def is_array_leaf(x: Any) -> bool:
    if isinstance(x, bool):  # a flag: static, so ``if training:`` works
        return False
    return isinstance(x, (np.ndarray, np.generic, float, int, complex)) or _numeric_list(x) or (
        hasattr(x, "__array__") and not isinstance(x, (dict, tuple, list, str))
    )


def flatten(tree: Any) -> tuple[list[Any], Hashable]:
    leaves: list[Any] = []

    def walk(x: Any) -> Hashable:
        if isinstance(x, dict):
            # Sorted, as JAX does: the same dict built in another order has the same structure,
            # and two dicts' leaves line up by key when they are compared or combined.
            try:
                keys = tuple(sorted(x))
            except TypeError:  # keys that do not sort (mixed types) keep their order
                keys = tuple(x)
            # What is rebuilt keeps the dict's own order and an OrderedDict its type, so that
            # zip(params.values(), grads.values()) pairs each array with its own gradient.
            order = tuple(x)
            remake = None if type(x) is not collections.OrderedDict and order == keys else (
                collections.OrderedDict if type(x) is collections.OrderedDict else dict, order
            )
            return ("dict", keys, remake, tuple(walk(x[k]) for k in keys))
        if x is None:  # a node without leaves, as in JAX: a missing entry in outputs and gradients
            return ("none", ())
        if isinstance(x, tuple) and not hasattr(x, "_fields"):
            return ("tuple", tuple(walk(e) for e in x))
        if isinstance(x, tuple):  # namedtuple
            return ("namedtuple", type(x), tuple(walk(e) for e in x))
        if isinstance(x, list) and not _numeric_list(x):
            return ("list", tuple(walk(e) for e in x))
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            names = tuple(f.name for f in dataclasses.fields(x))
            return ("dataclass", type(x), names, tuple(walk(getattr(x, n)) for n in names))
        if is_array_leaf(x) or _is_tracer(x):
            leaves.append(x)
            return "*"
        leaves.append(Static(x))
        return "s"

    return leaves, walk(tree)


def structure(tree: Any) -> Any:
    """``tree`` without the order its dicts were built in: two trees that hold the same leaves
    under the same keys have the same structure."""
    if not isinstance(tree, tuple):
        return tree
    if tree[0] == "dict":
        return ("dict", tree[1], None, tuple(structure(c) for c in tree[3]))
    return (*tree[:-1], tuple(structure(c) for c in tree[-1]))


def describe(tree: Any) -> str:
    """A structure in words, for messages: ``(an array, None)``, ``{'w': an array}``."""
    if tree == "*":
        return "an array"
    if tree == "s":
        return "a non-array"
    kind, children = tree[0], tree[-1]
    if kind == "none":
        return "None"
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {describe(c)}" for k, c in zip(tree[1], children)) + "}"
    inner = ", ".join(describe(c) for c in children)
    if kind == "list":
        return f"[{inner}]"
    if kind in ("namedtuple", "dataclass"):
        return f"{tree[1].__name__}({inner})"
    return f"({inner}{',' if len(children) == 1 else ''})"


def leaf_paths(treedef: Any, prefix: str = "") -> list[str]:
    """Where each leaf sits, as indexing reads it: ``[0]['b']``."""
    if treedef in ("*", "s"):
        return [prefix or "(the value)"]
    kind = treedef[0]
    if kind == "dict":
        return [p for k, sub in zip(treedef[1], treedef[-1]) for p in leaf_paths(sub, f"{prefix}[{k!r}]")]
    if kind == "dataclass":
        return [p for k, sub in zip(treedef[2], treedef[3]) for p in leaf_paths(sub, f"{prefix}.{k}")]
    children = treedef[-1]
    return [p for i, sub in enumerate(children) for p in leaf_paths(sub, f"{prefix}[{i}]")]


def difference(given: Any, wanted: Any, path: str = "") -> str:
    """Where the structure ``given`` first differs from ``wanted`` (treedefs), as a phrase for
    messages: ``[0] lacks the key 'beta'`` (user testing: a tangent dict missing a key was told
    only "the same structure"); "" where they are the same."""
    given, wanted = structure(given), structure(wanted)
    if given == wanted:
        return ""
    at = path or "the whole"
    if isinstance(given, tuple) and isinstance(wanted, tuple) and given[0] == wanted[0] and given[:-1] == wanted[:-1]:
        children = zip(given[-1], wanted[-1])
        labels = [f"[{k!r}]" for k in wanted[1]] if wanted[0] == "dict" else [f".{k}" for k in wanted[2]] if wanted[0] == "dataclass" else None
        if len(given[-1]) == len(wanted[-1]):
            for i, (g, w) in enumerate(children):
                found = difference(g, w, path + (labels[i] if labels else f"[{i}]"))
                if found:
                    return found
    if isinstance(given, tuple) and isinstance(wanted, tuple) and given[0] == wanted[0] == "dict":
        missing = [k for k in wanted[1] if k not in given[1]]
        extra = [k for k in given[1] if k not in wanted[1]]
        said = [f"lacks the key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"] if missing else []
        said += [f"has the extra key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"] if extra else []
        return f"{at} {' and '.join(said)}"
    if isinstance(given, tuple) and isinstance(wanted, tuple) and given[0] == wanted[0] and given[0] in ("tuple", "list"):
        return f"{at} has {len(given[-1])} entries, where {len(wanted[-1])} are expected"
    return f"{at} is {describe(given)}, where {describe(wanted)} is expected"


def unflatten(tree: Hashable, leaves: list[Any]) -> Any:
    it = iter(leaves)

    def build(t: Any) -> Any:
        if t == "*":
            leaf = next(it)
            return leaf.value if isinstance(leaf, Static) else leaf  # an array held constant
        if t == "s":
            leaf = next(it)
            return leaf.value if isinstance(leaf, Static) else leaf
        kind = t[0]
        if kind == "none":
            return None
        if kind == "dict":
            built = {k: build(c) for k, c in zip(t[1], t[3])}
            if t[2] is None:
                return built
            cls, order = t[2]
            return cls((k, built[k]) for k in order)
        if kind == "tuple":
            return tuple(build(c) for c in t[1])
        if kind == "namedtuple":
            return t[1](*(build(c) for c in t[2]))
        if kind == "dataclass":
            return _new_dataclass(t[1], t[2], [build(c) for c in t[3]])
        return [build(c) for c in t[1]]

    return build(tree)


def _new_dataclass(cls: type, names: tuple[str, ...], values: list[Any]) -> Any:
    """An instance of ``cls`` with these field values, made without ``__init__`` (whose
    ``__post_init__`` may compute with the fields or check them as numbers) and frozen or not."""
    obj = cls.__new__(cls)
    for name, value in zip(names, values):
        object.__setattr__(obj, name, value)
    return obj


def opaque_arrays(x: Any) -> list[str]:
    """The attributes holding arrays of an object that is not a container pyzygote traces into
    (``types.SimpleNamespace(W=..., b=...)``, an instance of a plain class): its arrays would be
    held constant, with no gradient."""
    if isinstance(x, (dict, list, tuple, str, bytes, type)) or callable(x) or dataclasses.is_dataclass(x) or is_array_leaf(x):
        return []
    if isinstance(x, collections.abc.Mapping):  # not a dict (types.MappingProxyType, a user's Mapping)
        return [repr(k) for k, v in x.items() if _holds_numbers(v)]
    attributes = getattr(x, "__dict__", None)
    if not isinstance(attributes, dict):
        return []
    # also arrays one container down (SimpleNamespace(params={"w": w})), found in user testing
    return [k for k, v in attributes.items() if _holds_numbers(v)]


def _holds_numbers(v: Any, depth: int = 3) -> bool:
    """An array or a float, or a dict, list or tuple holding one (a few levels down)."""
    if isinstance(v, (np.ndarray, np.floating, float)) and not isinstance(v, bool):
        return True
    if depth and isinstance(v, (dict, list, tuple)):
        return any(_holds_numbers(w, depth - 1) for w in (v.values() if isinstance(v, dict) else v))
    return False


def _is_tracer(x: Any) -> bool:
    from pyzygote.tracer import Tracer

    return isinstance(x, Tracer)


def ravel(tree: Any) -> tuple[Any, Any]:
    """The floating-point entries of a tree of parameters as one flat vector, and the function
    that rebuilds the tree from such a vector (``jax.flatten_util.ravel_pytree``).

    Leaves come in pyzygote's order (a dict's keys sorted, as JAX orders them), each raveled in C
    order; the vector has the widest of their float types (all float32 stays float32).
    ``unravel(v)`` cuts a vector of that length into the leaves' shapes and float types, and
    works on traced vectors too, so a flat Hessian of a function of a dict, for the covariance of
    a Laplace approximation, is the Hessian of the function of the vector:

    >>> import numpy as np, pyzygote as pz
    >>> def nlp(q):
    ...     return 0.5 * q["mu"] ** 2 + np.sum(np.exp(q["log_s"]) ** 2) + q["mu"] * np.sum(q["log_s"])
    >>> flat, unravel = pz.ravel({"mu": 0.3, "log_s": np.array([0.1, -0.2])})
    >>> flat                          # "log_s" sorts before "mu"
    array([ 0.1, -0.2,  0.3])
    >>> H = pz.hessian(lambda v: nlp(unravel(v)), flat)
    >>> cov = np.linalg.inv(H)
    >>> H.round(3)
    array([[4.886, 0.   , 1.   ],
           [0.   , 2.681, 1.   ],
           [1.   , 1.   , 1.   ]])
    >>> unravel(flat)["log_s"], float(unravel(flat)["mu"])
    (array([ 0.1, -0.2]), 0.3)

    Python numbers are float64 leaves (a Python float comes back as a 0-d array); ``None``,
    strings and ``True``/``False`` are not numbers and come back as they were.  Integer, boolean
    and complex arrays are refused: leave data out of the tree.
    """
    leaves, treedef = flatten(tree)
    paths = leaf_paths(treedef)
    shapes: list[tuple[int, ...] | None] = []
    dtypes: list[np.dtype | None] = []
    pieces = []
    for path, leaf in zip(paths, leaves):
        if isinstance(leaf, Static):
            shapes.append(None)
            dtypes.append(None)
            continue
        if _is_tracer(leaf):
            a = leaf
        else:
            a = np.asarray(leaf, dtype=np.float64) if isinstance(leaf, (int, float, list)) else np.asarray(leaf)
        if a.dtype.kind != "f":
            raise TypeError(
                f"pz.ravel flattens floating-point parameters; the leaf {path} is {a.dtype} (integer, boolean or complex): "
                "leave data out of the tree, or convert it with np.asarray(x, dtype=float) if it is a parameter"
            )
        shapes.append(tuple(a.shape))
        dtypes.append(np.dtype(a.dtype))
        pieces.append(np.reshape(a, (-1,)))
    floats = [d for d in dtypes if d is not None]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    flat = np.concatenate([p.astype(dtype) if p.dtype != dtype else p for p in pieces]) if pieces else np.zeros(0, dtype)
    if not _is_tracer(flat):
        flat = np.array(flat, copy=True)  # never a view of the caller's array
    size = sum(int(np.prod(sh)) for sh in shapes if sh is not None)

    def unravel(v: Any) -> Any:
        vec = v if _is_tracer(v) else np.asarray(v)
        if vec.ndim != 1 or vec.shape[0] != size:
            raise ValueError(f"unravel takes a 1-D vector of length {size} (what pz.ravel made), got shape {tuple(vec.shape)}")
        if not _is_tracer(vec) and vec.dtype.kind != "f":
            raise TypeError(f"unravel takes a floating-point vector, got {vec.dtype}")
        out, at = [], 0
        for leaf, sh, dt in zip(leaves, shapes, dtypes):
            if sh is None:
                out.append(leaf)
                continue
            n = int(np.prod(sh))
            piece = np.reshape(vec[at : at + n], sh)
            out.append(piece.astype(dt))  # a copy: the leaves never share memory with v
            at += n
        return unflatten(treedef, out)

    return flat, unravel


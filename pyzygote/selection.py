"""Reading through a traced boolean mask: ``x[x > 0]`` as a :class:`Selection`.

numpy's ``x[mask]`` has as many entries as ``mask`` has True ones.  When the mask is
traced that count depends on the data, and a trace has static shapes.  So such a read
is kept whole: the values of ``x`` with the mask beside them.  Whatever gives the same
answer without knowing the count works on it, as on numpy's result:

- elementwise arithmetic and ufuncs, with scalars, with arrays of the shape of one
  selected entry, and with other selections through the same mask;
- ``sum``, ``mean``, ``prod``, ``var``, ``std``, ``any``, ``all``, ``count_nonzero``
  and ``np.linalg.norm``, of the whole selection or along its axes;
- assigning back through the same mask: ``v[x < 0] *= -1``, ``y[m] = np.sqrt(y[m])``.

What needs the count itself (its shape, ``len``, indexing it, ``max`` of a selection that
may be empty, ``np.dot``) raises an error that shows the ``np.where`` form instead.

Entries outside the mask are never read, but ufuncs still run on them; each result keeps
them at a harmless value (0.5), so that ``np.log(x[x > 0])`` has no NaN or infinity in
its derivative from the entries it leaves out.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(x[x > 0] ** 2), np.array([-1.0, 2.0, 3.0]))[0]
array([0., 4., 6.])
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Literal
from pyzygote.tracer import Tracer, _booleans, as_operand

__all__ = ["Selection", "select", "same_mask"]


def _count_error(what: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"{what} of x[mask] with a traced mask depends on how many entries are True, which tracing "
        "cannot know. Write it over the whole array with np.where: np.sum(np.where(mask, x, 0.0)), "
        "np.max(np.where(mask, x, -np.inf)), np.sum(mask) for the count; sum, mean, var, std, prod, "
        "norm, elementwise arithmetic and y[mask] = ... work on x[mask] directly"
    )


def select(x: Any, mask: Tracer) -> "Selection":
    """``x[mask]`` for a traced boolean ``mask`` over the leading axes of ``x``."""
    x = as_operand(x)
    if mask.ndim == 0 or mask.ndim > x.ndim or tuple(mask.shape) != tuple(x.shape[: mask.ndim]):
        raise IndexError(
            f"boolean index of shape {tuple(mask.shape)} does not match the indexed array of shape {tuple(x.shape)}"
        )
    mask = mask.copy()  # numpy's x[mask] is taken now: later changes to mask do not move it
    return Selection(mask, _kept(x, mask))


def _filler(dtype: np.dtype) -> Any:
    return np.asarray(False if dtype == bool else (1 if dtype.kind in "iu" else 0.5), dtype)


def _kept(values: Any, mask: Tracer, fill: float = 0.5) -> Any:
    """``values`` with the entries outside ``mask`` set to a value in the next ufunc's domain."""
    dtype = values.dtype if isinstance(values, Tracer) else np.asarray(values).dtype
    filler = _filler(dtype) if fill == 0.5 or dtype.kind != "f" else np.asarray(fill, dtype)
    return np.where(_spread(mask, np.ndim(values)), values, filler)


def _spread(mask: Tracer, ndim: int) -> Any:
    return np.reshape(mask, tuple(mask.shape) + (1,) * (ndim - mask.ndim))


def same_mask(a: Tracer, b: Tracer) -> bool:
    """Whether two traced masks are the same value: the same variable, or computed alike from the
    same variables (``y[y > 0] = np.sqrt(y[y > 0])`` evaluates ``y > 0`` twice)."""
    if a is b or a._var is b._var:
        return True
    if a._builder is not b._builder:
        return False
    builder = a._builder
    producers = {out: eqn for eqn in builder.eqns for out in eqn.outputs}
    return _same_value(builder, producers, a._var, b._var, 32, {})


def _same_value(builder: Any, producers: dict[Any, Any], a: Any, b: Any, depth: int, memo: dict[Any, bool]) -> bool:
    if a is b:
        return True
    key = (id(a), id(b))
    if key not in memo:  # values used twice (z * z) would otherwise be compared 2 ** depth times
        memo[key] = _same_value_uncached(builder, producers, a, b, depth, memo)
    return memo[key]


def _same_value_uncached(builder: Any, producers: dict[Any, Any], a: Any, b: Any, depth: int, memo: dict[Any, bool]) -> bool:
    if isinstance(a, Literal) or isinstance(b, Literal):
        return isinstance(a, Literal) and isinstance(b, Literal) and a.aval == b.aval and bool(a.value == b.value)
    if a.aval != b.aval or depth == 0:
        return False
    consts = builder._const_values
    if a in consts or b in consts:
        return a in consts and b in consts and np.array_equal(consts[a], consts[b])
    ea, eb = producers.get(a), producers.get(b)
    if ea is None or eb is None or ea.prim is not eb.prim or len(ea.inputs) != len(eb.inputs):
        return False
    if ea.outputs.index(a) != eb.outputs.index(b) or not _equal_params(ea.params, eb.params):
        return False
    return all(_same_value(builder, producers, x, y, depth - 1, memo) for x, y in zip(ea.inputs, eb.inputs))


def _equal_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    try:
        return all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else bool(a[k] == b[k]) for k in a)
    except Exception:  # parameters that do not compare: treat as different, which only refuses
        return False


class Selection:
    """``x[mask]`` for a traced ``mask``: ``x``'s values with the mask (see the module's notes)."""

    __array_priority__ = 2000.0
    __slots__ = ("_mask", "_values")
    _is_selection = True  # traced arrays leave numpy calls involving one to it

    def __init__(self, mask: Tracer, values: Any):
        self._mask = mask
        self._values = values

    # --- what is known --------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        return self._values.dtype

    @property
    def ndim(self) -> int:
        return 1 + self._values.ndim - self._mask.ndim

    @property
    def _tail(self) -> tuple[int, ...]:
        return tuple(self._values.shape[self._mask.ndim :])

    @property
    def shape(self) -> Any:
        raise _count_error("the shape")

    @property
    def size(self) -> Any:
        raise _count_error("the size")

    def __len__(self) -> int:
        raise _count_error("len()")

    def __getitem__(self, index: Any) -> Any:
        raise _count_error("indexing")

    def __iter__(self) -> Any:
        raise _count_error("iterating")

    def __bool__(self) -> bool:
        raise _count_error("the truth value")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise _count_error("converting to a numpy array")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define (.T, .reshape, .dot, ...).
        if hasattr(np.ndarray, name):
            raise _count_error(f".{name}")
        raise AttributeError(f"'Selection' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"Selection(x[mask] of a traced mask of shape {tuple(self._mask.shape)}, dtype {self.dtype})"

    # --- elementwise ----------------------------------------------------
    def _operand(self, x: Any) -> Any:
        if isinstance(x, Selection):
            if not same_mask(x._mask, self._mask):
                raise UnsupportedOperationError(
                    "x[m1] and y[m2] through two different traced masks cannot be combined: their entries "
                    "need not line up. Combine the whole arrays with np.where instead"
                )
            if x._tail != self._tail and x._tail and self._tail:
                # numpy broadcasts (count,) + tail against (count,) + other_tail: only equal or
                # size-1 trailing axes fit, whatever the count
                try:
                    np.broadcast_shapes(x._tail, self._tail)
                except ValueError:
                    raise ValueError(
                        f"operands could not be broadcast together: selected entries of shapes {x._tail} and {self._tail}"
                    ) from None
            if len(x._tail) != len(self._tail):
                raise UnsupportedOperationError(
                    f"selections x[mask] with entries of {len(x._tail)} and {len(self._tail)} dimensions would "
                    "broadcast the selected axis against an entry's axis, which depends on the count; "
                    "index both alike, or combine the whole arrays with np.where"
                )
            return x._values
        if isinstance(x, (int, float, complex, np.generic)):
            return x  # a Python number stays weak, as numpy treats it: float32 * 0.5 is float32
        x = as_operand(x)
        tail = len(self._tail)
        # An array with the selection's own dimensions broadcasts along the selected axis only
        # if that axis has size 1 (x.mean(keepdims=True)); with more, numpy would broadcast the
        # selected axis against one of x's (a (1, 1) array makes the result 2-D).
        if np.ndim(x) == self.ndim and np.shape(x)[0] == 1:
            x = np.reshape(x, np.shape(x)[1:])
        if np.ndim(x) > tail:
            raise UnsupportedOperationError(
                f"an array of shape {np.shape(x)} cannot be combined with x[mask] for a traced mask: only "
                f"scalars and arrays of the shape of one selected entry {self._tail} broadcast against a "
                "data-dependent number of entries. Use np.where(mask, ..., ...) over the whole array"
            )
        return x

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__" or kwargs.get("out") is not None or ufunc.nout != 1 or ufunc.signature:
            raise _count_error(f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}"))
        operands = [self._operand(x) for x in inputs]
        if ufunc is np.arccosh:  # its domain starts at 1: 0.5 would warn where numpy does not
            operands = [_kept(x, self._mask, 1.5) if isinstance(y, Selection) else x for x, y in zip(operands, inputs)]
        out = ufunc(*operands, **kwargs)
        return Selection(self._mask, _kept(out, self._mask))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func in _ELEMENTWISE_FUNCTIONS and kwargs.get("out") is None and args:
            return _elementwise(func, args[0], *args[1:], **{k: v for k, v in kwargs.items() if k != "out"})
        reduction = _FUNCTIONS.get(func)
        if reduction is None or not args or args[0] is not self:
            raise _count_error(f"numpy.{getattr(func, '__name__', func)}")
        return reduction(self, *args[1:], **kwargs)

    def _apply(self, ufunc: Any, *operands: Any) -> "Selection":
        return self.__array_ufunc__(ufunc, "__call__", *operands)

    def __matmul__(self, other: Any) -> Any:
        raise _count_error("@ (np.matmul)")

    __rmatmul__ = __matmul__

    __add__ = lambda s, o: s._apply(np.add, s, o)  # noqa: E731
    __radd__ = lambda s, o: s._apply(np.add, o, s)  # noqa: E731
    __sub__ = lambda s, o: s._apply(np.subtract, s, o)  # noqa: E731
    __rsub__ = lambda s, o: s._apply(np.subtract, o, s)  # noqa: E731
    __mul__ = lambda s, o: s._apply(np.multiply, s, o)  # noqa: E731
    __rmul__ = lambda s, o: s._apply(np.multiply, o, s)  # noqa: E731
    __truediv__ = lambda s, o: s._apply(np.true_divide, s, o)  # noqa: E731
    __rtruediv__ = lambda s, o: s._apply(np.true_divide, o, s)  # noqa: E731
    __pow__ = lambda s, o: s._apply(np.power, s, o)  # noqa: E731
    __rpow__ = lambda s, o: s._apply(np.power, o, s)  # noqa: E731
    __lt__ = lambda s, o: s._apply(np.less, s, o)  # noqa: E731
    __le__ = lambda s, o: s._apply(np.less_equal, s, o)  # noqa: E731
    __gt__ = lambda s, o: s._apply(np.greater, s, o)  # noqa: E731
    __ge__ = lambda s, o: s._apply(np.greater_equal, s, o)  # noqa: E731
    __eq__ = lambda s, o: s._apply(np.equal, s, o)  # type: ignore[assignment]  # noqa: E731
    __ne__ = lambda s, o: s._apply(np.not_equal, s, o)  # type: ignore[assignment]  # noqa: E731
    __hash__ = None  # type: ignore[assignment]
    # In place, as on numpy's copy: a new selection, which y[mask] = ... then writes back.
    __iadd__, __isub__, __imul__, __itruediv__, __ipow__ = __add__, __sub__, __mul__, __truediv__, __pow__
    __floordiv__ = lambda s, o: s._apply(np.floor_divide, s, o)  # noqa: E731
    __rfloordiv__ = lambda s, o: s._apply(np.floor_divide, o, s)  # noqa: E731
    __mod__ = lambda s, o: s._apply(np.remainder, s, o)  # noqa: E731
    __rmod__ = lambda s, o: s._apply(np.remainder, o, s)  # noqa: E731
    __divmod__ = lambda s, o: (s // o, s % o)  # noqa: E731
    __and__ = __rand__ = lambda s, o: s._apply(np.logical_and, *_booleans("&", s, o))  # noqa: E731
    __or__ = __ror__ = lambda s, o: s._apply(np.logical_or, *_booleans("|", s, o))  # noqa: E731
    __xor__ = __rxor__ = lambda s, o: s._apply(np.logical_xor, *_booleans("^", s, o))  # noqa: E731
    __invert__ = lambda s: s._apply(np.logical_not, *_booleans("~", s))  # noqa: E731
    __neg__ = lambda s: s._apply(np.negative, s)  # noqa: E731
    __abs__ = lambda s: s._apply(np.absolute, s)  # noqa: E731
    __pos__ = lambda s: s  # noqa: E731

    def clip(self, min: Any = None, max: Any = None) -> "Selection":  # noqa: A002  (numpy's names)
        return _elementwise(np.clip, self, min, max)

    def round(self, decimals: int = 0) -> "Selection":
        return _elementwise(np.round, self, decimals)

    def astype(self, dtype: Any, **kwargs: Any) -> "Selection":
        return Selection(self._mask, _kept(self._values.astype(dtype), self._mask))

    def copy(self) -> "Selection":
        return self

    # --- reductions -----------------------------------------------------
    def _masked(self, fill: Any) -> Any:
        return np.where(_spread(self._mask, self._values.ndim), self._values, np.asarray(fill, self._values.dtype))

    def _axes(self, axis: Any) -> tuple[bool, tuple[int, ...]]:
        """Whether ``axis`` takes in the selected axis, and the axes of the whole array it means."""
        if axis is None:
            return True, tuple(range(self._values.ndim))
        axes = axis if isinstance(axis, tuple) else (axis,)
        out: list[int] = []
        over_selected = False
        for a in axes:
            k = int(a) + self.ndim if int(a) < 0 else int(a)
            if not 0 <= k < self.ndim:
                raise np.exceptions.AxisError(f"axis {a} is out of bounds for array of dimension {self.ndim}")
            if k == 0:
                over_selected = True
                out.extend(range(self._mask.ndim))
            else:
                out.append(self._mask.ndim + k - 1)
        return over_selected, tuple(sorted(out))

    def _reduce(self, name: str, fill: Any, axis: Any, keepdims: bool, **kwargs: Any) -> Any:
        over_selected, axes = self._axes(axis)
        fn = getattr(np, name)
        if not over_selected:  # along an entry's own axes: still a selection
            return Selection(self._mask, _kept(fn(self._values, axis=axes, keepdims=keepdims, **kwargs), self._mask))
        out = fn(self._masked(fill), axis=axes, **kwargs)
        return self._kept_dims(out, axis) if keepdims else out

    def _kept_dims(self, out: Any, axis: Any) -> Any:
        if axis is None:
            return np.reshape(out, (1,) * self.ndim)
        axes = axis if isinstance(axis, tuple) else (axis,)
        return np.expand_dims(out, tuple(int(a) % self.ndim for a in axes))

    def _count(self, axis: Any) -> Any:
        """How many selected values each reduction over ``axis`` takes in."""
        over_selected, axes = self._axes(axis)
        per_entry = int(np.prod([self._values.shape[k] for k in axes if k >= self._mask.ndim], dtype=np.int64))
        return np.sum(self._mask) * per_entry if over_selected else per_entry

    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        _no_out(out, "sum")
        return self._reduce("sum", 0, axis, keepdims, **({} if dtype is None else {"dtype": dtype}))

    def prod(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        _no_out(out, "prod")
        return self._reduce("prod", 1, axis, keepdims, **({} if dtype is None else {"dtype": dtype}))

    def any(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        _no_out(out, "any")
        return self._reduce("any", False, axis, keepdims)

    def all(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        _no_out(out, "all")
        return self._reduce("all", True, axis, keepdims)

    def mean(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
        _no_out(out, "mean")
        over_selected, _ = self._axes(axis)
        if not over_selected:
            return self._reduce("mean", 0, axis, keepdims, **({} if dtype is None else {"dtype": dtype}))
        kind = np.dtype(dtype) if dtype is not None else (self.dtype if self.dtype.kind == "f" else np.dtype(np.float64))
        total = self._reduce("sum", 0, axis, keepdims, dtype=kind)
        return total / self._count(axis).astype(kind)  # an empty selection gives NaN, as numpy's mean does

    def var(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: float = 0, keepdims: bool = False) -> Any:
        _no_out(out, "var")
        over_selected, _ = self._axes(axis)
        if not over_selected:
            return self._reduce("var", 0, axis, keepdims, ddof=ddof)
        deviation = self - self.mean(axis=axis, dtype=dtype, keepdims=True)
        squares = (deviation * deviation).sum(axis=axis, keepdims=keepdims)
        dof = np.maximum(self._count(axis) - ddof, 0)  # numpy: inf or NaN when nothing is left
        return squares / dof.astype(squares.dtype)

    def std(self, axis: Any = None, dtype: Any = None, out: Any = None, ddof: float = 0, keepdims: bool = False) -> Any:
        variance = self.var(axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)
        return np.sqrt(variance)

    def max(self, *args: Any, **kwargs: Any) -> Any:
        raise _extreme_error("max", "-np.inf")

    def min(self, *args: Any, **kwargs: Any) -> Any:
        raise _extreme_error("min", "np.inf")


def _extreme_error(name: str, fill: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(
        f"np.{name}(x[mask]) with a traced mask is not supported: numpy raises when no entry is True, "
        f"which a trace cannot check. Write np.{name}(np.where(mask, x, {fill})) and decide what no "
        "entry means"
    )


def _elementwise(func: Any, x: Selection, *args: Any, **kwargs: Any) -> Selection:
    """A numpy function of one entry at a time (np.clip, np.round, np.where of selections)."""
    mask = next(a._mask for a in (x, *args) if isinstance(a, Selection))
    owner = x if isinstance(x, Selection) else next(a for a in args if isinstance(a, Selection))
    values = [owner._operand(a) if isinstance(a, (Selection, Tracer, np.ndarray, list)) else a for a in (x, *args)]
    return Selection(mask, _kept(func(*values, **kwargs), mask))


def _no_out(out: Any, name: str) -> None:
    if out is not None:
        raise UnsupportedOperationError(f"{name} of x[mask] with out= is not supported while tracing")


def _norm(x: Selection, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """numpy's 2-norm of a vector or of each vector along one axis, and the Frobenius norm."""
    one_axis = isinstance(axis, (int, np.integer)) or (axis is None and x.ndim == 1)
    if isinstance(ord, str) and one_axis:
        raise ValueError(f"Invalid norm order '{ord}' for vectors")  # numpy's
    if one_axis and ord in (None, 2):
        return np.sqrt((abs(x) ** 2).sum(axis=axis, keepdims=keepdims))
    if not one_axis and ord in (None, "fro") and (axis is None or len(tuple(axis)) == 2):
        return np.sqrt((abs(x) ** 2).sum(axis=axis, keepdims=keepdims))
    raise _count_error(f"numpy.linalg.norm with ord={ord!r} and axis={axis!r}")


def _count_nonzero(x: Selection, axis: Any = None, *, keepdims: bool = False) -> Any:
    return (x != 0).astype(np.int64).sum(axis=axis, keepdims=keepdims)


def _nansum(x: Selection, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    clean = Selection(x._mask, np.where(np.isnan(x._values), np.asarray(0, x.dtype), x._values))
    return clean.sum(axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def _method(name: str) -> Callable[..., Any]:
    return lambda x, *args, **kwargs: getattr(x, name)(*args, **kwargs)


_ELEMENTWISE_FUNCTIONS = frozenset({np.clip, np.round, np.around, np.where, np.nan_to_num, np.fix})

def _average(x: Selection, axis: Any = None, weights: Any = None, returned: bool = False, *, keepdims: bool = False) -> Any:
    if returned:
        raise _count_error("numpy.average(..., returned=True)")
    if weights is None:
        return x.mean(axis=axis, keepdims=keepdims)
    if not isinstance(weights, Selection):
        raise _count_error("numpy.average with weights that are not selected through the same mask")
    total = (x * weights).sum(axis=axis, keepdims=keepdims)
    return total / weights.sum(axis=axis, keepdims=keepdims)


def _nanmean(x: Selection, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    _no_out(out, "nanmean")
    present = Selection(x._mask, np.where(np.isnan(x._values), np.asarray(0, x.dtype), np.asarray(1, x.dtype)))
    return _nansum(x, axis=axis, dtype=dtype, keepdims=keepdims) / present.sum(axis=axis, keepdims=keepdims)


_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    **{getattr(np, name): _method(name) for name in ("sum", "prod", "mean", "var", "std", "any", "all", "max", "min")},
    np.linalg.norm: _norm,
    np.count_nonzero: _count_nonzero,
    np.nansum: _nansum,
    np.average: _average,
    np.nanmean: _nanmean,
}

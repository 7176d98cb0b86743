"""The differentiation API, named after Zygote.jl (plus JAX's ``grad``).

``gradient`` returns a tuple with one entry per argument, ``withgradient``
the value and that tuple, ``pullback`` the value and a backward function.
``jacobian`` gives one array per argument of shape ``out.shape + arg.shape``;
``hessian`` one array of shape ``x.shape + x.shape``; ``jvp`` pushes tangents
forward.  Arguments may be numbers, lists of numbers, numpy arrays, or dicts,
tuples and lists of them; derivatives come back in the same structure.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x, y: np.sum(x * y), np.array([1.0, 2.0]), 3.0)
(array([3., 3.]), 3.0)
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.engines import get_engine
from pyzygote.transforms.batch import basis_columns, per_column
from pyzygote.errors import NonFiniteGradientError, NonFiniteODEInputError, TracerBoolError, UnsupportedOperationError
from pyzygote.pytree import KeywordArguments, Static, describe, difference, flatten, leaf_paths, structure, unflatten
from pyzygote.tracer import Tracer
from pyzygote.tracing import has_int_arrays, Traced, _top_level_owners, cast_direction, numpy_arguments, to_input_array, trace

__all__ = ["gradient", "withgradient", "grad", "value_and_grad", "pullback", "jacobian", "hessian", "jvp"]


def _is_julia(f: Any) -> bool:
    """A pz.julia_function / julia_include function: no tracing, Julia's entry points directly."""
    from pyzygote.julia.functions import JuliaFunction

    return isinstance(f, JuliaFunction)


def _engine(traced: Traced, arrays: Sequence[Any], name: str | None) -> Any:
    """The engine for this call; inside a trace, one that records into it (see engines.inline)."""
    if traced.lifted or any(isinstance(a, Tracer) for a in arrays):
        from pyzygote.engines.inline import InlineEngine

        return InlineEngine(traced.lifted)
    return _NamingODEInputs(get_engine(name, traced.program), traced, arrays)


class _NamingODEInputs:
    """An engine whose calls, when an ODE's starting state or parameters come out NaN, say which
    operation of the function made them so (user testing: u0 = np.log(p) at a negative p gave
    only the NaN vector)."""

    def __init__(self, engine: Any, traced: Traced, arrays: Sequence[Any]):
        self._engine, self._traced, self._arrays = engine, traced, arrays

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except NonFiniteODEInputError as e:
                if e._where is None:
                    # the arguments as they are now: the diagnosis runs when the message is read
                    snapshot = [np.array(a, copy=True) for a in self._arrays]
                    e._where = lambda: self._where(snapshot)
                raise

        return call

    def _where(self, arrays: Sequence[Any]) -> str:
        from pyzygote.diagnose import first_nonfinite

        made = first_nonfinite(self._traced.program, arrays, None, derivatives=False)
        return f" Running the function again, the first operation that makes a non-finite value: {made}." if made else ""


def _result(v: Any) -> Any:
    """A numpy array, or a traced value when the call is recorded into an enclosing trace."""
    return v if isinstance(v, Tracer) else np.asarray(v)


def _rebuild(traced: Traced, values: Sequence[Any], *, none_for_static: bool = True) -> tuple[Any, ...]:
    """Per-argument results in the structure of the arguments."""
    it = iter(values)
    leaves = []
    for leaf in traced.leaves:
        if isinstance(leaf, Static):
            leaves.append(None)
        else:
            value = next(it)
            is_py = _is_python_number(leaf)
            if value is None:  # no derivative asked for (data)
                leaves.append(None)
            else:
                leaves.append(float(value) if is_py and np.ndim(value) == 0 and not isinstance(value, Tracer) else _result(value))
    return tuple(unflatten(traced.in_tree, leaves))


def _arg_names(traced: Traced) -> list[str]:
    from pyzygote.tracing import _leaf_names

    names = traced.leaf_names or _leaf_names((), traced.leaves, traced.in_tree, None)
    return [n for n, leaf in zip(names, traced.leaves) if not isinstance(leaf, Static)]


def _solves_an_ode(traced: Traced) -> bool:
    return any(e.prim.name == "odesolve" for e in traced.program.eqns)


def _check_finite(
    traced: Traced, what: str, values: Sequence[Any], value: Any = None, arrays: Sequence[Any] | None = None, wrt: Sequence[bool] | None = None
) -> None:
    if all(v is None or isinstance(v, Tracer) or np.all(np.isfinite(v)) for v in values):
        return
    # The arguments as they are now: the diagnosis runs when the message is read (see
    # NonFiniteGradientError), maybe after the caller has changed them in place.
    snapshot = None if arrays is None or any(isinstance(a, Tracer) for a in arrays) else [np.array(a, copy=True) for a in arrays]

    def where() -> str:
        if snapshot is None:
            return ""
        from pyzygote.diagnose import Finding, first_nonfinite

        found = first_nonfinite(traced.program, snapshot, wrt)
        return Finding(f"The first operation it meets, running the function again: {found}. ", found.kind, found.removable) if found else ""

    for name, v in zip(_arg_names(traced), values):
        _require_finite(v, f"the {what} with respect to {name}", value, lambda: _reads_nan(traced), _solves_an_ode(traced), where)


_DIAGNOSED_UP_TO = 10_000


def _warn_if_value_not_finite(value: Any, fname: str, traced: Traced | None = None, arrays: Sequence[Any] | None = None) -> None:
    """A gradient returned without its value, where the value is NaN: NaN in the data
    or the arguments passes through numpy's arithmetic without a warning (user testing), so say so,
    and where the NaN starts when an operation makes it (np.log of an ODE solution below zero)."""
    if value is None or isinstance(value, Tracer) or not np.any(np.isnan(value)):
        return  # an infinite value is a value (log_expit(-inf)); NaN is missing data or a bug
    from pyzygote.tracing import _user_stacklevel

    found = ""
    # A replay costs a few microseconds an operation, at every call that warns (an optimizer may
    # probe NaN regions often): long programs are warned about without it.
    if traced is not None and arrays is not None and len(traced.program.eqns) <= _DIAGNOSED_UP_TO and not any(isinstance(a, Tracer) for a in arrays):
        from pyzygote.diagnose import first_nonfinite

        # values only (one replay of the program): a NaN that an operation makes, not one read
        made = first_nonfinite(traced.program, arrays, None, derivatives=False)
        found = f" Running the function again, the first operation that makes a non-finite value: {made}." if made else ""
    warnings.warn(
        f"pz.{fname}: the function's value is {np.asarray(value)!r} at this point, and the finite {fname.replace('(f)', '')} "
        f"is returned without it.{found} NaN in the data (a missing observation) or in the arguments passes through numpy's "
        "arithmetic without a warning: mask it before the arithmetic, np.where(np.isnan(data), 0.0, pred - data). "
        "pz.withgradient returns the value with the gradient",
        RuntimeWarning,
        stacklevel=_user_stacklevel(),
    )


def _reads_nan(traced: Traced) -> str:
    """Where the arguments or the arrays the function read (its trace's constants) hold NaN: a
    phrase naming the first such one and entry (user testing: the message did not say which), or ""."""
    from pyzygote.tracing import _leaf_names

    names = traced.leaf_names or _leaf_names((), traced.leaves, traced.in_tree, None)
    named = [(n, leaf) for n, leaf in zip(names, traced.leaves) if isinstance(leaf, np.ndarray)]
    # the arrays of its closure and globals (the guard's first part; its second holds every array
    # that met a traced value, computed ones too)
    read = [v for v in traced.guards[0].values() if isinstance(v, np.ndarray)] if traced.guards else []

    # NaN made from constants only when none of the arrays the function reads holds one (a
    # slice or reshape of data that does is data: review)
    data_holds_nan = any(r.dtype.kind == "f" and np.isnan(r).any() for r in read)

    def what(c: Any) -> str:
        from_data = data_holds_nan or any(r is c or np.may_share_memory(r, c) for r in read)
        return f"an array of shape {np.shape(c)} that the function {'reads' if from_data else 'computes without its arguments'}"

    named += [(what(c), c) for c in traced.program.consts]
    for name, a in named:
        a = np.asarray(a)
        if a.dtype.kind == "f" and np.isnan(a).any():
            at = tuple(int(i) for i in np.argwhere(np.isnan(a))[0])
            return f"{name}{f', entry {list(at)}' if at else ''}"
    return ""


def _name_the_data(exc: NonFiniteGradientError, traced: Traced) -> None:
    """An adjoint ODE solve that cannot start from a NaN derivative of the loss (``data_at``, set by
    pyzygote.ode.sensitivity.vjp) names the argument or array that holds NaN, as the hessian's
    check does (user testing: only the times were named), when its message is read."""
    at = getattr(exc, "data_at", None)
    if at is None or exc._where is not None:
        return

    def where() -> str:
        holder = _reads_nan(traced)
        return f"The function reads arrays that hold NaN ({holder} holds NaN): most likely missing data. " if holder else ""

    exc._where, exc._where_at = where, at


def _require_finite(
    v: Any, what: str, value: Any = None, reads_nan: Callable[[], str] = lambda: "", solves: bool = False, where: Callable[[], str] = lambda: ""
) -> None:
    if v is None or isinstance(v, Tracer):
        return  # not computed (data), or checked when the enclosing transformation computes values
    if not np.all(np.isfinite(v)):
        at = "" if value is None else f" (where the function's value is {np.asarray(value)!r})"
        nan_value = value is not None and np.any(np.isnan(np.asarray(value, dtype=float)))
        holder = reads_nan()
        computed = "computes without" in holder
        data = (
            ("The value is NaN too" if nan_value else "The function reads arrays that hold NaN")
            + (f" ({holder} holds NaN)" if holder else "")
            + (
                ": numpy made it from constants before they met the arguments, or it was written in (np.nan in an "
                "array the function builds). Where numpy's arithmetic made it, its RuntimeWarning names the line: "
                "a 0 / 0 such as x / (1 - np.exp(-x)) at x = 0, where 1 / scipy.special.exprel(-x) is 1. "
                if computed
                else ": is there NaN in the data (a missing observation)? Mask it before the arithmetic, "
                "np.where(np.isnan(data), 0.0, pred - data); np.nansum alone comes too late, since the "
                "NaN reaches the derivative of what it sums. Where the data multiplies a function of the "
                "parameters (a Poisson term y * np.log(lam) - lam), replace it too, y0 = np.where(np.isnan(y), 0.0, y), "
                "and mask the terms, np.where(np.isnan(y), 0.0, y0 * np.log(lam) - lam): the derivative of the "
                "discarded branch is NaN times zero. "
            )
            if nan_value or holder
            else ""
        )
        ode = (
            "A solution of an ODE that dips below zero at loose tolerances (a concentration decayed to "
            "-1e-3) makes np.log or a fractional power NaN: tighten abstol, or solve for the logarithms. "
            if solves
            else ""
        )
        first = f"{what} contains NaN or inf{at}. "
        general = (
            "Check for log/sqrt/division at zero or overflow in the function (np.linalg.norm(d) at "
            "d = 0 has no derivative: a regularizer norm(theta - prior) ** 2 at its prior is "
            "np.sum((theta - prior) ** 2), which has). np.where does not "
            "shield the discarded branch's derivative: make its input safe too, as in "
            "np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), 0.0). Eigenvectors from np.linalg.eigh "
            "have infinite derivatives where eigenvalues repeat."
        )

        def diagnosed() -> str:
            # A NaN value that an operation made from finite operands (0 / 0 in x / (1 - np.exp(-x))
            # at 0) is no missing observation: advice about NaN in the data only misled (user
            # testing), and a removable 0 / 0 named with its rewriting needs no general checklist.
            try:
                found = where()
            except Exception:  # noqa: BLE001 - a diagnosis must not hide the error it explains
                found = ""
            made_here = getattr(found, "kind", "") in ("value", "overflow") and not holder
            removable = getattr(found, "removable", False) and not holder
            return (found + ("" if made_here else data) + ode + ("" if removable else general)).rstrip()

        raise NonFiniteGradientError(first, where=diagnosed, where_at=len(first))


def _container(tree: Any) -> str:
    return tree[0] if isinstance(tree, tuple) and isinstance(tree[0], str) else type(tree).__name__


def _require_finite_value(value: Any, fname: str) -> None:
    """Refuse derivatives at a point where the function's value is NaN or infinite: they are
    meaningless there (a log-likelihood at a negative rate has a finite gradient and a NaN value)."""
    if value is None or isinstance(value, Tracer) or np.all(np.isfinite(value)):
        return
    raise NonFiniteGradientError(
        f"the function's value is {np.asarray(value)!r} at this point, so its {fname.replace('(f)', '')} is meaningless "
        "(log or sqrt of a negative number, division by zero, overflow, or NaN in the data?). "
        "pz.withgradient and pz.value_and_grad return the value with the gradient, for optimizers that step back from it"
    )


def _returned_something(traced: Traced, fname: str, wanted: str) -> None:
    """Refuse a function that returned None: a forgotten ``return`` (user testing: it read
    "returned shape(s) []")."""
    if traced.out_tree == ("none", ()):
        raise ValueError(f"{fname} needs a function returning {wanted}, but it returned None (did you forget return?)")


def _scalar_output(traced: Traced, fname: str) -> None:
    _returned_something(traced, fname, "one scalar")
    prog = traced.program
    if len(prog.outputs) != 1 or prog.outputs[0].aval.shape != ():
        shapes = [a.aval.shape for a in prog.outputs]
        aux = (
            " To return auxiliary values with the loss, return a tuple (loss, aux) and use pz.withgradient, "
            "or has_aux=True with pz.grad or pz.value_and_grad."
            if len(prog.outputs) > 1 and fname == "gradient"
            else ""
        )
        raise ValueError(
            f"{fname} needs a function returning one scalar, but it returned shape(s) {shapes}. "
            "Use pz.jacobian for vector outputs, or pz.pullback to pull back a chosen cotangent." + aux
        )
    _float_loss(prog, fname)


def _float_loss(prog: Any, fname: str) -> None:
    if prog.outputs[0].aval.dtype.kind == "c":
        raise TypeError(
            f"{fname} needs a real-valued loss, got {prog.outputs[0].aval}: pyzygote differentiates real functions. "
            "Return a real number, such as np.sum(np.abs(z) ** 2) or z.real"
        )
    if not prog.outputs[0].aval.is_float:
        raise TypeError(
            f"{fname} needs a float output, got {prog.outputs[0].aval}. Integer and boolean arrays are "
            "data with no derivative, as in Zygote: to differentiate with respect to an argument, pass "
            "it as floats (np.arange(3.0), x.astype(float))"
        )


def _float_outputs(traced: Traced, fname: str) -> None:
    paths = leaf_paths(traced.out_tree, "output") if len(traced.program.outputs) > 1 else ["the output"]
    for out, path in zip(traced.program.outputs, paths):
        if not out.aval.is_float:
            raise TypeError(
                f"{fname} needs float outputs, got {out.aval} for {path}: integer and boolean values (floor(x).astype(int), "
                "x > 0) have no derivative. Return floats, or leave such values out of the differentiated function"
            )


def _loss_and_aux(traced: Traced, fname: str, pair: bool) -> None:
    """Check that ``f`` returned ``(loss, aux...)``: a tuple, list or namedtuple whose first element is a scalar.

    ``pair`` asks for exactly two elements, as JAX's ``has_aux`` does.
    """
    _returned_something(traced, fname, "a pair (loss, aux)" if pair else "a scalar loss, or a tuple (loss, aux...)")
    tree, prog = traced.out_tree, traced.program
    is_seq = isinstance(tree, tuple) and tree[0] in ("tuple", "list", "namedtuple")
    children = tree[-1] if is_seq else ()
    if not is_seq or (pair and len(children) != 2) or not children or children[0] != "*" or prog.outputs[0].aval.shape != ():
        wanted = "a pair (loss, aux)" if pair else "a scalar loss, or a tuple (loss, aux...) whose first element is the scalar loss"
        if is_seq and children and children[0] == "*":
            first = prog.outputs[0].aval.shape
            got = f"a {tree[0]} of {len(children)}" + ("" if first == () else f" whose first element has shape {first}")
        elif is_seq and not children:
            got = f"an empty {tree[0]}"
        elif is_seq:
            got = f"a {tree[0]} of {len(children)} whose first element is not an array"
        elif isinstance(tree, tuple):
            got = f"a {tree[0]}"
        else:
            got = f"an array of shape {prog.outputs[0].aval.shape}"
        raise ValueError(f"{fname} needs a function returning {wanted}; it returned {got}")
    _float_loss(prog, fname)


def _with_keywords(f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], set[int]]:
    """``args`` with the keyword arguments appended, and their position: they are data, held
    constant and not differentiated, as JAX's transformations treat keyword arguments."""
    if not kwargs:
        return args, set()
    if _is_julia(f):
        raise TypeError(f"{f!r} is a Julia function, which pyzygote calls with positional arguments only")
    return args + (KeywordArguments(dict(kwargs)),), {len(args)}


def _no_has_aux(name: str, f: Any, kwargs: dict[str, Any]) -> None:
    """JAX's ``jacobian(f, has_aux=True)`` and ``hessian(f, argnums=1)`` habits: pyzygote would hand
    ``has_aux`` or ``argnums`` to ``f`` as data (silently, to an ``f`` taking ``**kwargs``)."""
    given = [k for k in ("has_aux", "argnums") if k in kwargs]
    if not given:
        return
    import inspect

    try:
        params = inspect.signature(f).parameters
    except (TypeError, ValueError):
        return
    given = [k for k in given if k not in params or params[k].kind is inspect.Parameter.POSITIONAL_ONLY]
    if not given:
        return  # f takes it itself, by that name
    if "argnums" in given:
        raise TypeError(
            f"pz.{name} takes no argnums (keyword arguments are passed to the function, as data): "
            + (
                "it differentiates with respect to its first argument; put the one to differentiate first, "
                if name == "hessian"
                else "it differentiates every positional argument, as Zygote does; "
            )
            + "pass the others as keyword arguments or close over them (pz.grad takes argnums)"
        )
    raise TypeError(
        f"pz.{name} takes no has_aux (keyword arguments are passed to the function, as data): differentiate "
        "a function returning the array alone, and compute the auxiliary values separately, or use pz.pullback "
        "or pz.jvp, which take functions returning several outputs"
    )


def _positional_needed(name: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> None:
    """Derivatives are taken with respect to positional arguments; keyword arguments are data."""
    if not args:
        given = f" (keyword arguments {', '.join(sorted(kwargs))} are held constant, as data)" if kwargs else ""
        example = f"pz.{name[:-3]}(loss)(W, x=x)" if name.endswith("(f)") else f"pz.{name}(loss, W, x=x)"
        raise TypeError(
            f"pz.{name} differentiates with respect to positional arguments and got none{given}; "
            f"pass what to differentiate positionally, e.g. {example}"
        )


def _withgradient(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    engine: str | None,
    aux: str | None,
    argnums: Any = None,
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
) -> tuple[Any, tuple[Any, ...]]:
    """Value and gradient; ``aux`` is None (one scalar output), "zygote" (a tuple led by the loss) or "jax" (a pair).

    With ``argnums`` only those arguments are differentiated; the others are data (``None`` gradients),
    as keyword arguments always are.
    """
    _positional_needed(name or ("gradient" if aux is None else "withgradient"), args, kwargs)
    if name is None:
        _no_has_aux("gradient" if aux is None else "withgradient", f, kwargs or {})
    if _is_julia(f) and not kwargs:
        return f._withgradient(args, engine, aux=aux)
    n = len(args)
    args = numpy_arguments(args, f)  # a torch.long tensor is integer data, as np.int64 is, in every check below
    args, const_args = _with_keywords(f, args, kwargs or {})
    if argnums is not None:
        const_args |= set(range(n)) - set(_wanted(argnums, n))
    traced, arrays = _trace_with_data(f, args, const_args, int_inputs=True)
    wrt = None
    if const_args or any(a.dtype.kind != "f" for a in arrays):
        owners = _top_level_owners(traced.in_tree)
        # integer and boolean inputs (labels, masks) are data too: no gradient
        wrt = tuple(owners[i] not in const_args and a.dtype.kind == "f" for i, a in zip(traced.array_slots, arrays))
    fname = name or ("gradient" if aux is None else "withgradient")
    if wrt is not None and not any(wrt):
        _nothing_differentiable(fname, traced, arrays, const_args)
    if not arrays and any(isinstance(leaf, np.ndarray) and leaf.dtype.kind in "iub" for leaf in flatten(args)[0]):
        # Integer arrays the function needs as values (an ODE's p) become constants of the trace,
        # leaving nothing to differentiate: say so, as for integer arrays that stay inputs (user
        # testing: integer feedback gains through pz.odesolve got a None gradient, silently).
        leaves, _ = flatten(args)
        given = [np.asarray(leaf) for leaf in leaves if not isinstance(leaf, Static)]
        _nothing_differentiable(fname, traced, given, const_args, every_leaf=True)
    if aux == "jax" or (aux == "zygote" and traced.out_tree != "*"):
        _loss_and_aux(traced, "withgradient" if aux == "zygote" else "has_aux=True", pair=aux == "jax")
    else:
        _scalar_output(traced, "gradient" if aux is None else "withgradient")
        if traced.out_tree != "*":  # [loss] or {"loss": loss}: Zygote and JAX want the number itself
            raise ValueError(
                f"{fname} needs a function returning one scalar, but it returned a {_container(traced.out_tree)} "
                "holding one; return the scalar itself" + ("" if aux is None and name is None else ", or use has_aux=True for (loss, aux)")
            )
    _warn_if_cut(traced, wrt, fname, loss_only=True)
    try:
        ys, grads = _engine(traced, arrays, engine).value_and_grad(traced.program, arrays, wrt)
    except NonFiniteGradientError as exc:
        _name_the_data(exc, traced)
        raise
    _check_finite(traced, "gradient", grads, ys[0], arrays, wrt)
    if (aux is None and name is None) or name == "grad(f)":  # pz.gradient and pz.grad do not return the value
        _warn_if_value_not_finite(ys[0], name or "gradient", traced, arrays)
    value = ys[0] if len(ys) == 1 and traced.out_tree == "*" else unflatten(traced.out_tree, [ys[0], *map(_result, ys[1:])])
    return value, _rebuild(traced, grads)[:n]


def _warn_if_cut(traced: Traced, wrt: Sequence[bool] | None, fname: str, loss_only: bool = False) -> None:
    """A pz.ZeroGradientWarning where an output depends on an argument only through operations
    with no derivative (np.argmax of a comparison): found once per trace, at no later cost."""
    from pyzygote.zero_gradient import warn_if_cut

    many = len(traced.program.outputs) > 1 and not loss_only
    outputs = lambda: leaf_paths(traced.out_tree, "output") if many else None  # noqa: E731
    warn_if_cut(traced.program, wrt, lambda: _arg_names(traced), fname, outputs, loss_only)


def _nothing_differentiable(fname: str, traced: Traced, arrays: list[Any], const_args: Any, every_leaf: bool = False) -> None:
    """Every argument given to differentiate is integer or boolean: each would get ``None``,
    silently (user testing: Young's moduli given as np.full(ne, 210000)).  Labels and masks
    beside floating-point parameters stay data.  ``arrays`` are the trace's inputs, or with
    ``every_leaf`` the arguments' leaves (when the trace took them all as constants)."""
    owners = _top_level_owners(traced.in_tree)
    slots = range(len(arrays)) if every_leaf else traced.array_slots
    for i, a in zip(slots, arrays):
        if owners[i] not in const_args and a.dtype.kind in "iub":
            name = traced.leaf_names[i] if i < len(traced.leaf_names) else f"argument {owners[i]}"
            kind = "boolean" if a.dtype.kind == "b" else "integer"
            raise TypeError(
                f"pz.{fname}: nothing to differentiate: {name} is an array of {kind} values (dtype {a.dtype}), "
                "which pyzygote treats as data (labels, masks) with no gradient, and no argument holds floating-point "
                f"numbers. To differentiate it, pass it as floats: np.asarray(..., dtype=float)."
            )


# Functions that use floating-point data (arguments outside argnums) as plain numbers.
_CONCRETE_DATA: "weakref.WeakSet[Any]" = weakref.WeakSet()
# Functions that need the values of their integer or boolean arrays (np.unique(labels), table[labels]).
_CONCRETE_INTS: "weakref.WeakSet[Any]" = weakref.WeakSet()
_NEEDS_VALUES = (TracerBoolError, UnsupportedOperationError, IndexError, KeyError, TypeError, ValueError, AttributeError)


def _trace_with_data(
    f: Callable[..., Any], args: tuple[Any, ...], const_args: Any, int_inputs: bool = False
) -> tuple[Traced, list[Any]]:
    """Trace with floating-point data as inputs (a new minibatch reuses the trace); where ``f`` needs
    their values (``range(int(T / dt))``, ``if temp > 0``), as JAX gives them, trace with them constant.

    With ``int_inputs`` integer and boolean arrays (labels, masks) are inputs too, so that new labels
    reuse the trace, unless ``f`` needs their values, in which case they are constants of the trace
    (one trace per distinct content)."""
    if int_inputs and has_int_arrays(args):
        try:
            concrete_ints = getattr(f, "__func__", f) in _CONCRETE_INTS  # model.loss is new on each access
        except TypeError:
            concrete_ints = True
        if not concrete_ints:
            try:
                return _trace_with_data_as(f, args, const_args, int_arrays_traced=True)
            except _NEEDS_VALUES:
                # Traced again below with the integers as constants; an error of f's own shows there.
                try:
                    _CONCRETE_INTS.add(getattr(f, "__func__", f))
                except TypeError:
                    pass
    return _trace_with_data_as(f, args, const_args, int_arrays_traced=False)


def _trace_with_data_as(f: Callable[..., Any], args: tuple[Any, ...], const_args: Any, int_arrays_traced: bool) -> tuple[Traced, list[Any]]:
    if not const_args:
        return trace(f, args, nest=True, int_arrays_constant=True, int_arrays_traced=int_arrays_traced)
    try:
        concrete = f in _CONCRETE_DATA
    except TypeError:
        concrete = False
    if not concrete:
        try:
            return trace(f, args, nest=True, const_args=const_args, int_arrays_constant=True, int_arrays_traced=int_arrays_traced)
        except (TracerBoolError, UnsupportedOperationError, IndexError):
            pass
    result = trace(
        f, args, nest=True, const_args=const_args, concrete_data=True, int_arrays_constant=True, int_arrays_traced=int_arrays_traced
    )
    try:  # remembered only when constant data is what made tracing work, not for errors of f's own
        _CONCRETE_DATA.add(f)
    except TypeError:
        pass
    return result


def withgradient(f: Callable[..., Any], /, *args: Any, engine: str | None = None, **kwargs: Any) -> tuple[Any, tuple[Any, ...]]:
    """Value of ``f(*args, **kwargs)`` and its gradient with respect to every positional argument.

    Keyword arguments (other than ``engine``) are passed to ``f`` and held constant.

    As in Zygote, ``f`` may return a tuple (or list, or namedtuple) whose first
    element is the scalar loss and whose others are auxiliary values
    (predictions, residuals): the gradient is that of the first element, and
    the value is the whole tuple.

    >>> import numpy as np, pyzygote as pz
    >>> val, (g,) = pz.withgradient(lambda x: np.sum(x ** 2), np.array([1.0, 2.0]))
    >>> float(val), g
    (5.0, array([2., 4.]))
    >>> (loss, z), (g,) = pz.withgradient(lambda x: (np.sum(1 / x), 1 / x), np.array([1.0, 2.0, 4.0]))
    >>> z, g
    (array([1.  , 0.5 , 0.25]), array([-1.    , -0.25  , -0.0625]))
    """
    return _withgradient(f, args, engine, aux="zygote", kwargs=kwargs)


def gradient(f: Callable[..., Any], /, *args: Any, engine: str | None = None, **kwargs: Any) -> tuple[Any, ...]:
    """Gradient of scalar ``f`` with respect to each positional argument (a tuple, like Zygote).

    Keyword arguments (other than ``engine``) are passed to ``f`` and held constant.

    >>> import numpy as np, pyzygote as pz
    >>> def simulate_trajectory(v, gravity=9.8, time=1.0):
    ...     t = np.linspace(0.0, time, 100)
    ...     return v * t - 0.5 * gravity * t ** 2
    >>> pz.gradient(lambda v: simulate_trajectory(v)[-1], 10.0)
    (1.0,)
    """
    return _withgradient(f, args, engine, aux=None, kwargs=kwargs)[1]


def grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False, engine: str | None = None
) -> Callable[..., Any]:
    """JAX-style transform: a function returning the gradient w.r.t. ``argnums``.

    With ``has_aux=True``, ``f`` returns a pair ``(loss, aux)`` and the
    transformed function returns ``(gradient, aux)``, as in JAX.

    >>> import numpy as np, pyzygote as pz
    >>> pz.grad(lambda x: x ** 3)(2.0)
    12.0
    >>> pz.grad(lambda x: (x ** 3, {"x2": x ** 2}), has_aux=True)(2.0)
    (12.0, {'x2': array(4.)})
    """

    _check_transform(f, argnums, engine, "grad")

    def grad_f(*args: Any, **kwargs: Any) -> Any:
        args = numpy_arguments(args, f)
        _floats_at(args, argnums, "grad")
        (value, grads) = _withgradient(
            f, args, engine, aux="jax" if has_aux else None, argnums=argnums, kwargs=kwargs, name="grad(f)"
        )
        return (_pick(grads, argnums), value[1]) if has_aux else _pick(grads, argnums)

    return grad_f


def _check_transform(f: Any, argnums: Any, engine: str | None, name: str) -> None:
    """What JAX checks when the transformation is made, not when it is first called."""
    if not callable(f):
        raise TypeError(f"pz.{name} expected a function to differentiate, got {type(f).__name__} {f!r}")
    if not (_is_index(argnums) or (isinstance(argnums, (tuple, list)) and all(_is_index(i) for i in argnums))):
        raise TypeError(f"argnums must be an int or a tuple of ints, got {argnums!r}")
    if engine is not None:
        from pyzygote.engines import _check

        _check(engine)


def _floats_at(args: tuple[Any, ...], argnums: Any, name: str) -> None:
    """The arguments ``argnums`` asks to differentiate must be floats, as in JAX's grad."""
    for i in _wanted(argnums, len(args)) if args else ():
        leaves, _ = flatten(args[i])
        if leaves and all(isinstance(leaf, Static) for leaf in leaves):
            shown = repr(args[i]) if len(repr(args[i])) < 40 else type(args[i]).__name__
            raise TypeError(
                f"pz.{name} differentiates argument {i} (argnums={argnums!r}), which is {shown}: it holds no numbers "
                "to differentiate (as JAX, pyzygote refuses it rather than return None). Check the order of the "
                "arguments, or choose the numeric ones with argnums"
            )
        for leaf in leaves:
            if isinstance(leaf, (bool, np.bool_)) or (isinstance(leaf, np.ndarray) and leaf.dtype.kind in "biu"):
                dtype = "bool" if isinstance(leaf, bool) else np.asarray(leaf).dtype
                raise TypeError(
                    f"pz.{name} differentiates argument {i} (argnums), which holds {dtype} values: integers and "
                    "booleans have no derivative. Pass floats to differentiate (x.astype(float)), or leave the "
                    "argument out of argnums to use it as data (labels, masks)"
                )


def _is_index(i: Any) -> bool:
    return isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))


def _wanted(argnums: int | Sequence[int], n: int) -> tuple[int, ...]:
    """The argument positions ``argnums`` selects (JAX's convention, negative numbers allowed)."""
    if not (_is_index(argnums) or (isinstance(argnums, (tuple, list)) and all(_is_index(i) for i in argnums))):
        raise TypeError(f"argnums must be an int or a tuple of ints, got {argnums!r}")
    wanted = (argnums,) if _is_index(argnums) else tuple(argnums)
    if not wanted:
        raise ValueError("argnums=() selects no argument to differentiate; give at least one position")
    for i in wanted:
        if not -n <= i < n:
            raise ValueError(f"argnums={argnums!r} does not fit a call with {n} argument(s)")
    return tuple(int(i) % n for i in wanted)


def _pick(grads: tuple[Any, ...], argnums: int | Sequence[int]) -> Any:
    """The gradients ``argnums`` selects."""
    wanted = _wanted(argnums, len(grads))
    return grads[wanted[0]] if _is_index(argnums) else tuple(grads[i] for i in wanted)


def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, *, has_aux: bool = False, engine: str | None = None
) -> Callable[..., Any]:
    """JAX-style transform returning ``(value, gradient w.r.t. argnums)``.

    With ``has_aux=True``, ``f`` returns a pair ``(loss, aux)`` and the
    transformed function returns ``((loss, aux), gradient)``, as in JAX.

    >>> import pyzygote as pz
    >>> pz.value_and_grad(lambda x: x * x)(3.0)
    (np.float64(9.0), 6.0)
    """

    _check_transform(f, argnums, engine, "value_and_grad")

    def vg(*args: Any, **kwargs: Any) -> Any:
        args = numpy_arguments(args, f)
        _floats_at(args, argnums, "value_and_grad")
        val, grads = _withgradient(
            f, args, engine, aux="jax" if has_aux else None, argnums=argnums, kwargs=kwargs, name="value_and_grad(f)"
        )
        return val, _pick(grads, argnums)

    return vg


def _trace_args(
    f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], held: set[int] = frozenset()  # type: ignore[assignment]
) -> tuple[Traced, list[Any]]:
    """The trace of ``f(*args, **kwargs)``; keyword arguments and the positions ``held`` are data
    (integers among them constants, as in :func:`grad`'s ``argnums``)."""
    all_args, const_args = _with_keywords(f, args, kwargs)
    if not (const_args or held):
        return trace(f, args, nest=True)
    return _trace_with_data(f, all_args, const_args | set(held))


def _cotangents(traced: Traced, dy: Any) -> list[np.ndarray]:
    leaves, tree = flatten(dy)
    if dy is None and traced.out_tree != tree:
        raise TypeError("the cotangent must be an array (or arrays in the output's structure), got None")
    for leaf in leaves:
        if isinstance(leaf, Static):
            raise TypeError(f"the cotangent must be an array (or arrays in the output's structure), got {leaf.value!r}")
        if not isinstance(leaf, Tracer) and np.iscomplexobj(leaf):
            raise TypeError("the cotangent must hold real numbers: pyzygote differentiates real functions")
    # A bare array for an output that is one array inside a tuple is taken as meant; the other way
    # round ((ct,) or {"a": ct} for an array output) is a mistake JAX's vjp refuses too.
    one_in_one = len(traced.program.outputs) == 1 and len(leaves) == 1 and tree == "*"
    if structure(tree) != structure(traced.out_tree) and not one_in_one:
        raise ValueError(
            f"the cotangent must have the structure of the function's output ({describe(traced.out_tree)}), "
            f"got {describe(tree)}"
        )
    cts = []
    many = len(traced.program.outputs) > 1
    for k, (leaf, out) in enumerate(zip(leaves, traced.program.outputs)):
        which = f" (output {k})" if many else ""
        if not isinstance(leaf, Tracer):
            given = np.asarray(leaf)
            # bool or object cotangents are mistakes JAX refuses too (API fuzzer: True read as 1,
            # None as NaN, which the non-finite check then blamed on the function)
            if given.dtype.kind not in "fiu" and out.aval.dtype.kind == "f":
                raise TypeError(f"the cotangent{which} must hold numbers for a {out.aval.dtype} output, got an array of dtype {given.dtype}")
            if given.dtype.kind == "f" and not np.all(np.isfinite(given)):
                raise ValueError(f"the cotangent{which} holds NaN or inf: a pullback needs a finite cotangent")
        ct = leaf if isinstance(leaf, Tracer) else cast_direction(leaf, out.aval.dtype, f"the cotangent{which}")
        if ct.shape != out.aval.shape:
            raise ValueError(f"cotangent{which} of shape {ct.shape} given for an output of shape {out.aval.shape}")
        cts.append(ct)
    return cts


def pullback(
    f: Callable[..., Any], /, *args: Any, engine: str | None = None, **kwargs: Any
) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:
    """Value of ``f(*args)`` and a function mapping an output cotangent to argument cotangents.

    Keyword arguments (other than ``engine``) are passed to ``f`` and held constant.

    >>> import numpy as np, pyzygote as pz
    >>> y, back = pz.pullback(lambda x: 2.0 * x, np.array([1.0, 2.0]))
    >>> back(np.array([1.0, 10.0]))
    (array([ 2., 20.]),)
    """
    _positional_needed("pullback", args, kwargs)
    _no_has_aux("pullback", f, kwargs)
    if _is_julia(f) and not kwargs:
        return f._pullback(args, engine)
    n = len(args)
    traced, arrays = _trace_args(f, args, kwargs)
    _returned_something(traced, "pullback", "an array, or arrays in a tuple, list, dict or dataclass")
    owners = _top_level_owners(traced.in_tree)
    _warn_if_cut(traced, [owners[i] < n for i in traced.array_slots], "pullback")
    ys, back_flat = _engine(traced, arrays, engine).vjp(traced.program, arrays)
    value = unflatten(traced.out_tree, [_result(y) for y in ys])

    def back(dy: Any) -> tuple[Any, ...]:
        cts = _cotangents(traced, dy)
        if any(isinstance(ct, Tracer) for ct in cts):  # called inside a trace, on a traced cotangent
            grads = _engine(traced, [*arrays, *cts], None).vjp(traced.program, arrays)[1](*cts)
        else:
            grads = back_flat(*cts)
        _check_finite(traced, "pullback", grads, None, arrays)
        return _rebuild(traced, grads)[:n]

    return value, back


def jvp(
    f: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], /, *, engine: str | None = None, **kwargs: Any
) -> tuple[Any, Any]:
    """Forward mode: ``(f(*primals), J @ tangents)``.

    Keyword arguments (other than ``engine``) are passed to ``f`` and held constant.

    >>> import numpy as np, pyzygote as pz
    >>> pz.jvp(lambda x: np.sin(x), (0.0,), (2.0,))
    (array(0.), array(2.))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp takes primals and tangents as tuples, e.g. pz.jvp(f, (x,), (dx,))")
    if _is_julia(f) and not kwargs:
        return f._jvp(primals, tangents, engine)
    n = len(primals)
    traced, arrays = _trace_args(f, tuple(primals), kwargs)
    _returned_something(traced, "jvp", "an array, or arrays in a tuple, list, dict or dataclass")
    t_leaves, t_tree = flatten(tuple(tangents))
    wanted = traced.in_tree if not kwargs else ("tuple", traced.in_tree[1][:n])  # type: ignore[index]
    if structure(t_tree) != structure(wanted):
        raise ValueError(f"tangents must have the same structure as primals: {difference(t_tree, wanted, 'tangents')}")
    given = [t for t in t_leaves if not isinstance(t, Static)]
    # Keyword arguments come last and do not move: zero tangents.
    given += [np.zeros(a.shape, a.dtype) for a in arrays[len(given) :]]
    t_arrays = []
    for t, a, name in zip(given, arrays, _arg_names(traced)):
        if isinstance(t, (np.ndarray, np.generic)) and t.dtype.kind in "iu":
            t = t.astype(a.dtype)  # whole-number directions are directions too
        t = t if isinstance(t, Tracer) else cast_direction(to_input_array(t, f"the tangent of {name}"), a.dtype, f"the tangent of {name}")
        if t.shape != a.shape:
            raise ValueError(f"the tangent of {name} has shape {t.shape}, expected {a.shape}")
        t_arrays.append(t)
    # As pz.jacobian, whose columns these are: an output cut from an argument gets a tangent of
    # exactly 0 from it; an argument given a zero tangent is not one being differentiated.
    owners = _top_level_owners(traced.in_tree)
    moved = [owners[i] < n and (isinstance(t, Tracer) or bool(np.any(t))) for i, t in zip(traced.array_slots, t_arrays)]
    _warn_if_cut(traced, moved, "jvp")
    ys, ts = _engine(traced, [*arrays, *t_arrays], engine).jvp(traced.program, arrays, t_arrays)
    for k, t in enumerate(ts):
        _require_finite(t, "the tangent of the output" + (f" {k}" if len(ts) > 1 else ""), ys[k])
    as_tree = lambda vs: unflatten(traced.out_tree, [_result(v) for v in vs])  # noqa: E731
    return as_tree(ys), as_tree(ts)


def jacobian(f: Callable[..., Any], /, *args: Any, engine: str | None = None, **kwargs: Any) -> tuple[Any, ...]:
    """Jacobian with respect to each positional argument: arrays of shape ``out.shape + arg.shape``.

    Keyword arguments (other than ``engine``) are passed to ``f`` and held constant.

    >>> import numpy as np, pyzygote as pz
    >>> pz.jacobian(lambda x: x ** 2, np.array([1.0, 2.0]))[0]
    array([[2., 0.],
           [0., 4.]])
    """
    _positional_needed("jacobian", args, kwargs)
    _no_has_aux("jacobian", f, kwargs)
    if _is_julia(f) and not kwargs:
        return f._jacobian(args, engine)
    n = len(args)
    traced, arrays = _trace_args(f, args, kwargs)
    prog = traced.program
    _returned_something(traced, "jacobian", "an array, or arrays in a tuple, list, dict or dataclass")
    if not prog.outputs:
        raise ValueError("jacobian needs a function returning an array, or arrays in a tuple, list, dict or dataclass")
    _float_outputs(traced, "jacobian")
    # Several outputs (a tuple, a dict): the Jacobian of all of them raveled and joined, cut into
    # one block per output and argument, nested as JAX's jacfwd nests them.
    joined = traced.out_tree != "*"
    if joined:
        prog = _joined_outputs(prog)
    out = prog.outputs[0].aval
    eng = _engine(traced, arrays, engine)
    # Keyword arguments are data: no columns or rows of theirs are wanted.
    owners = _top_level_owners(traced.in_tree)
    wanted = [owners[i] < n for i in traced.array_slots]
    n_in = sum(a.size for a, w in zip(arrays, wanted) if w)
    _warn_if_data_positional(f, traced, arrays, [owners[i] if w else None for i, w in zip(traced.array_slots, wanted)], out.size)
    _warn_if_cut(traced, wanted, "jacobian")
    # Reverse mode (a pullback per row) only for fewer outputs than inputs: a square Jacobian is
    # often a gradient's (pz.jacobian(pz.grad(loss))), where forward over reverse is the cheap
    # order, as pz.hessian does it (3.5 times faster through a stiff solve in user testing).
    if out.size < n_in:
        from pyzygote.transforms.vjp import expected_pullbacks

        with expected_pullbacks(out.size):
            ys, back = eng.vjp(prog, arrays)
        value = ys[0]
        rows = []
        for i in range(out.size):
            ct = np.zeros(out.size, out.dtype)
            ct[i] = 1.0
            rows.append(back(ct.reshape(out.shape)))
        blocks = [
            None
            if not w
            else np.reshape(np.stack([_result(r[k]) for r in rows]), out.shape + a.shape)
            if rows
            else np.zeros(out.shape + a.shape, a.dtype)
            for k, (a, w) in enumerate(zip(arrays, wanted))
        ]
    else:
        blocks = []
        along = _tangent_columns(eng, prog, arrays, wanted)
        for k, (a, w) in enumerate(zip(arrays, wanted)):
            if not w:
                blocks.append(None)
            elif a.size == 0:
                blocks.append(np.zeros(out.shape + a.shape, a.dtype))
            elif hasattr(eng, "jacobian_forward") and a.dtype.kind == "f":
                blocks.append(eng.jacobian_forward(prog, arrays, k))
            else:
                cols = np.reshape(_result(basis_columns(a, along(k))), (a.size, out.size))
                blocks.append(np.reshape(np.transpose(cols), out.shape + a.shape))
        value = getattr(along, "values", [None])[0]  # the linearization's, when it ran
    _check_finite(traced, "jacobian", blocks, None, arrays, wanted)
    _warn_if_value_not_finite(value, "jacobian", traced, arrays)  # once the Jacobian itself is known to be finite
    if not joined:
        return _rebuild(traced, [None if b is None else b.astype(_jacobian_dtype(out, a, b), copy=False) for a, b in zip(arrays, blocks)])[:n]
    per_output = []
    start = 0
    for o in traced.program.out_avals:
        cut = [None if b is None else np.reshape(b[start : start + o.size], o.shape + a.shape).astype(_jacobian_dtype(o, a, b), copy=False) for a, b in zip(arrays, blocks)]
        per_output.append(_rebuild(traced, cut)[:n])
        start += o.size
    return tuple(unflatten(traced.out_tree, [p[k] for p in per_output]) for k in range(n))


# A Jacobian block larger than this, for a positional argument after the first, is warned about.
_LARGE_BLOCK = 1_000_000


def _warn_if_data_positional(f: Any, traced: Traced, arrays: Sequence[Any], owner: list[int | None], out_size: int) -> None:
    """Say once per function that a large positional argument after the first (data: the SciPy
    idiom jac=lambda p, x, y: pz.jacobian(res, p, x, y)[0]) gets a Jacobian block of its own
    (user testing: 2001 x 2001 blocks for x and y, some 500 times the cost of the block in p)."""
    sizes: dict[int, int] = {}
    for k, a in zip(owner, arrays):
        if k is not None and k > 0:
            sizes[k] = sizes.get(k, 0) + int(np.size(a))
    large = [k for k, size in sizes.items() if size * out_size > _LARGE_BLOCK]
    if not large:
        return
    from pyzygote.errors import PositionalDataWarning
    from pyzygote.tracing import _warn_once

    names = _arg_names(traced)
    first = {}
    for k, name in zip(owner, names):
        first.setdefault(k, name.split("[")[0].split(".")[0])
    which = "; ".join(f"{first[k]}, {sizes[k]:,} entries, a block of {out_size * sizes[k]:,}" for k in large)
    fname = getattr(f, "__name__", "f")
    fname = "f" if not fname.isidentifier() else fname  # a lambda's "<lambda>"
    # f's own parameter names ("x (argument 1)"), for the keyword form of the call
    params = [first[k].split(" (argument")[0] for k in large]
    if all(p.isidentifier() for p in params):
        keywords = ", ".join(f"{p}={p}" for p in params)
        instead = (
            f"pass them as keyword arguments, pz.jacobian({fname}, p, {keywords}), or bind them with "
            f"functools.partial({fname}, {keywords}) or a closure"
        )
    else:  # f(p, *data): its data have no names to pass them by
        instead = f"bind them with a closure, pz.jacobian(lambda p: {fname}(p, *data), p)"
    _warn_once(
        f,
        f"pz.jacobian({fname}, ...) computes a Jacobian block for every positional argument, and these are large: {which}. "
        f"If they are data, {instead}, and they get no block "
        "(for scipy.optimize.least_squares, jac=lambda p, x, y: pz.jacobian(res, p, x=x, y=y)[0]); if these "
        "blocks are wanted, warnings.filterwarnings('ignore', category=pz.PositionalDataWarning) silences this. "
        "This warning is given once per function.",
        PositionalDataWarning,
    )


def _jacobian_dtype(out: Any, a: np.ndarray, block: np.ndarray) -> np.dtype:
    """The wider of the output's and the argument's float types, whichever mode ran (reverse mode
    computes in the argument's type, forward mode in the output's, as JAX's jacrev and jacfwd do)."""
    if a.dtype.kind != "f" or out.dtype.kind != "f":
        return block.dtype
    return np.result_type(out.dtype, a.dtype)


def _joined_outputs(prog: Any) -> Any:
    """``prog`` with one output: its outputs raveled and concatenated; made once per program."""
    hit = prog._compiled.get("joined_outputs")
    if hit is None:
        from pyzygote.tracer import Builder, as_operand
        from pyzygote.transforms.evaluate import eval_program

        b = Builder()
        inputs = [b.new_input(a.shape, a.dtype) for a in prog.in_avals]
        outs = [as_operand(o) for o in eval_program(prog, *inputs)]
        joined = np.concatenate([np.reshape(o, (-1,)) for o in outs])
        hit = prog._compiled["joined_outputs"] = b.build(inputs, [joined])
    return hit


def _tangent_columns(eng: Any, prog: Any, arrays: list[Any], wanted: list[bool]) -> Callable[[int], Callable[[Any], Any]]:
    """``k -> (T -> `` the tangents of ``prog``'s output along each ``T[i]`` in input ``k``, the
    others held, stacked ``)``.

    Engines that linearize do it once, on first use, for every wanted input: the primal work
    (an ODE's sensitivities, say) is done once, not per argument or column."""
    floats = tuple(w and a.dtype.kind == "f" for a, w in zip(arrays, wanted))
    position = {k: j for j, k in enumerate(k for k, f in enumerate(floats) if f)}
    made: list[Any] = []

    def along(k: int) -> Callable[[Any], Any]:
        if hasattr(eng, "linearize") and k in position:
            if not made:
                ys, linear = eng.linearize(prog, arrays, floats)
                made.append(linear)
                along.values = ys  # type: ignore[attr-defined]
            return lambda T: made[0].columns(T, position[k])

        def one(t: Any) -> Any:
            ts = [np.zeros(b.shape, b.dtype) for b in arrays]
            ts[k] = t
            return _result(eng.jvp(prog, arrays, ts)[1][0])

        return per_column(one)

    return along


def _names_later_parameter(f: Callable[..., Any], name: str) -> bool:
    """Whether ``f`` has a parameter ``name`` other than its first."""
    try:
        names = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return False
    return name in names[1:]


def hessian(f: Callable[..., Any], /, *args: Any, engine: str | None = None, **kwargs: Any) -> Any:
    """Hessian of scalar ``f(x, *args, **kwargs)`` in ``x`` (forward-over-reverse), shape ``x.shape + x.shape``.

    Further arguments and keyword arguments (other than ``engine``) are passed to ``f`` and held
    constant, as JAX's ``hessian(f)(x, *args)`` holds them.

    For ``x`` a dict, tuple or list of arrays (the parameters of an ODE model, say)
    the result is nested as JAX nests it: ``H[a][b]`` has shape ``x[a].shape + x[b].shape``.

    >>> import numpy as np, pyzygote as pz
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> pz.hessian(lambda x: 0.5 * x @ A @ x, np.zeros(2))
    array([[2., 1.],
           [1., 3.]])
    >>> pz.hessian(lambda p: p["k"] ** 2 * np.sum(p["w"]), {"k": 3.0, "w": np.ones(2)})["k"]["w"]
    array([6., 6.])
    """
    # hessian(f, x=x), its own parameter's name, unless f has a parameter x after its first, whose
    # data the keyword is (API fuzzer: loss(w, x=...) got the Hessian at w = the data)
    if not args and set(kwargs) == {"x"} and not _names_later_parameter(f, "x"):
        args = (kwargs.pop("x"),)
    _positional_needed("hessian", args, kwargs)
    _no_has_aux("hessian", f, kwargs)
    x, args = args[0], args[1:]
    if _is_julia(f) and not (args or kwargs):
        return f._hessian(x, engine)
    leaves, tree = flatten(x)
    if tree != "*":
        return _structured_hessian(f, x, leaves, tree, engine, args, kwargs)
    if isinstance(leaves[0], Static):
        raise TypeError(f"hessian takes an array x, or arrays and numbers in a dict, tuple or list; got {x!r}")
    if args or kwargs:
        traced, arrays = _trace_args(f, (x, *args), kwargs, held=set(range(1, 1 + len(args))))
    else:
        traced, arrays = trace(f, (x,), nest=True)
    _scalar_output(traced, "hessian")
    _warn_if_cut(traced, [True] + [False] * (len(arrays) - 1), "hessian")
    eng = _engine(traced, arrays, engine)
    h = eng.hessian(traced.program, arrays, 0)
    _check_finite(traced, "hessian", [h], None, arrays, [True] + [False] * (len(arrays) - 1))
    if not isinstance(h, Tracer):
        # A NaN value (NaN in the data) can have a finite Hessian ((x - nan) ** 2 has 2): say so
        # instead of handing it back, as the other transformations do through their gradients.
        (value,) = eng.evaluate(traced.program, arrays)
        if np.any(np.isnan(value)):
            _require_finite_value(value, "hessian")
        if _is_python_number(x):  # as the gradient of a Python float is one (Zygote's Float64)
            return float(h)
    return h


def _structured_hessian(
    f: Callable[..., Any], x: Any, leaves: list[Any], tree: Any, engine: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The Hessian in a structured ``x``: that of ``f`` on one flat vector, cut into blocks."""
    if all(isinstance(leaf, Static) for leaf in leaves):
        raise TypeError(f"hessian takes an array, or arrays and numbers in a dict, tuple, list or dataclass; got {x!r}")
    # Other leaves (a dataclass's name, a flag) are held as they are, with None for their blocks.
    names = leaf_paths(tree, "x")
    arrays = [leaf if isinstance(leaf, Tracer) else to_input_array(leaf, name) for leaf, name in zip(leaves, names) if not isinstance(leaf, Static)]
    shapes = tuple(tuple(a.shape) for a in arrays)
    flat = np.concatenate([np.reshape(a, (-1,)) for a in arrays]) if arrays else np.zeros(0)
    bounds = np.cumsum([0, *(int(np.prod(s, dtype=np.int64)) for s in shapes)])
    h = None
    if not any(isinstance(a, Tracer) for a in arrays) and not _is_julia(f):
        h = _hessian_on_flat(f, tree, leaves, flat, shapes, bounds, args, kwargs, engine)
    if h is None:
        h = hessian(_flat_version(f, tree, leaves, shapes), flat, *args, engine=engine, **kwargs)

    slot = _array_positions(leaves)
    python_numbers = [_is_python_number(leaf) for leaf, k in zip(leaves, slot) if k is not None]

    def block(i: int, j: int) -> Any:
        b = h[bounds[i] : bounds[i + 1], bounds[j] : bounds[j + 1]]
        if python_numbers[i] and python_numbers[j] and not isinstance(b, Tracer):
            return float(b[0, 0])
        return np.reshape(b, shapes[i] + shapes[j])

    row = lambda i: unflatten(tree, [None if k is None else block(i, k) for k in slot])  # noqa: E731
    return unflatten(tree, [None if i is None else row(i) for i in slot])


def _is_python_number(leaf: Any) -> bool:
    return isinstance(leaf, (int, float)) and not isinstance(leaf, (bool, np.generic))


def _array_positions(leaves: list[Any]) -> list[int | None]:
    """For each leaf, its position among the array leaves (``None`` for a static one)."""
    count = iter(range(len(leaves)))
    return [None if isinstance(leaf, Static) else next(count) for leaf in leaves]


def _with_statics(template: list[Any], arrays: list[Any]) -> list[Any]:
    """``template``'s leaves with its array leaves replaced, in order, by ``arrays``."""
    it = iter(arrays)
    return [leaf if isinstance(leaf, Static) else next(it) for leaf in template]


def _hessian_on_flat(
    f: Callable[..., Any], tree: Any, template: list[Any], flat: np.ndarray, shapes: tuple[tuple[int, ...], ...], bounds: Any,
    args: tuple[Any, ...], kwargs: dict[str, Any], engine: str | None,
) -> Any:
    """The Hessian of ``f`` in the flat vector of ``x``'s leaves, from ``f``'s own cached trace
    (a Newton loop over a dict of parameters reuses it, and every derivative program of it):
    a program that cuts the vector into the leaves and runs ``f``'s program on them.  ``None``
    inside an enclosing trace, where :func:`_flat_version` is used."""
    leaves = _with_statics(template, [np.reshape(flat[bounds[i] : bounds[i + 1]], shape) for i, shape in enumerate(shapes)])
    traced, arrays = _trace_args(f, (unflatten(tree, leaves), *args), kwargs, held=set(range(1, 1 + len(args))))
    owners = _top_level_owners(traced.in_tree)
    nx = sum(1 for i in traced.array_slots if owners[i] == 0)
    if traced.lifted or nx != len(shapes):
        return None
    _scalar_output(traced, "hessian")
    _warn_if_cut(traced, [True] * nx + [False] * (len(arrays) - nx), "hessian")
    prog = _cut_into_leaves(traced.program, shapes, flat.dtype)
    inputs = [flat, *arrays[nx:]]
    eng = _engine(traced, arrays, engine)
    h = eng.hessian(prog, inputs, 0)
    _require_finite(h, "the hessian with respect to x")
    (value,) = eng.evaluate(prog, inputs)
    if np.any(np.isnan(value)):
        _require_finite_value(value, "hessian")  # as for an array x
    return h


def _cut_into_leaves(prog: Any, shapes: tuple[tuple[int, ...], ...], dtype: Any) -> Any:
    """``(v, *rest) -> prog(leaves of v, *rest)``, ``v`` the leaves of ``prog``'s first inputs
    raveled and concatenated; made once per program."""
    key = ("cut_into_leaves", shapes, np.dtype(dtype))
    hit = prog._compiled.get(key)
    if hit is None:
        from pyzygote.tracer import Builder
        from pyzygote.transforms.evaluate import eval_program

        b = Builder()
        sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
        v = b.new_input((sum(sizes),), dtype)
        rest = [b.new_input(a.shape, a.dtype) for a in prog.in_avals[len(shapes) :]]
        parts, start = [], 0
        for shape, size in zip(shapes, sizes):
            parts.append(np.reshape(v[start : start + size], shape))
            start += size
        hit = prog._compiled[key] = b.build([v, *rest], eval_program(prog, *parts, *rest))
    return hit


def _flat_version(f: Callable[..., Any], tree: Any, template: list[Any], shapes: tuple[tuple[int, ...], ...]) -> Callable[[Any], Any]:
    """``v -> f(x)`` with ``x`` rebuilt from the flat vector ``v``.

    A new function each call, traced each call: a cached one would hold ``f`` and keep it
    (with everything it reads) alive for good.
    """

    def on_flat(v: Any, *args: Any, **kwargs: Any) -> Any:
        parts, start = [], 0
        for shape in shapes:
            n = int(np.prod(shape, dtype=np.int64))
            parts.append(np.reshape(v[start : start + n], shape))
            start += n
        return f(unflatten(tree, _with_statics(template, parts)), *args, **kwargs)

    return on_flat

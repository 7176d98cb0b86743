"""A linear program run on a batch of tangents at once.

Jacobian and Hessian columns are one linear program (see
:mod:`pyzygote.transforms.linearize`) applied to each basis tangent.  Most
primitives gain nothing from seeing them together, and are applied column by
column; a primitive with a ``batch`` rule takes the whole batch in one call.
An ODE's tangent solve has one: the k directions are solved as one system of
``n (1 + k)`` equations, as forward sensitivities are, instead of k solves.
:func:`basis_columns` feeds the basis tangents of an input in batches.

>>> import numpy as np, pyzygote as pz
>>> from pyzygote.transforms.linearize import linearize_programs
>>> primal, linear = linearize_programs(pz.make_program(lambda x: 3.0 * x, np.zeros(2)))
>>> y, *res = primal(np.zeros(2))
>>> eval_batched(linear, [*res, np.eye(2)], [False] * len(res) + [True], 2)[0]
array([[3., 0.],
       [0., 3.]])
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.ir import Literal, Program, Var

__all__ = [
    "eval_batched",
    "has_batch_rules",
    "elementwise_batch",
    "leading_axis_batch",
    "along_one_input",
    "basis_columns",
    "hessian_by_columns",
    "per_column",
]


def has_batch_rules(prog: Program) -> bool:
    """Whether running ``prog`` on a batch pays: some equation's batch rule does work that the
    columns one at a time would repeat (an ODE's tangent solve; a product with a large matrix,
    read once for all columns instead of once per column).  Elementwise rules alone do not
    count: the columns of a compiled program are as fast."""
    return any(eqn.prim.batch is not None and getattr(eqn.prim.batch, "pays", _always)(eqn) for eqn in prog.eqns)


def _always(eqn: Any) -> bool:
    return True


def elementwise_batch(impl: Callable[..., Any]) -> Callable[..., Any]:
    """The batch rule of an elementwise primitive: its operands are of one shape or 0-d (the IR
    makes broadcasting explicit), so numpy broadcasts a leading batch axis itself."""

    def rule(args: Sequence[Any], batched: Sequence[bool], **params: Any) -> Any:
        # A batched 0-d operand beside an array needs its batch axis in front of that array's axes.
        ndim = max(np.ndim(x) - b for x, b in zip(args, batched))
        lifted = [
            np.reshape(x, (np.shape(x)[0],) + (1,) * (ndim + 1 - np.ndim(x)) + np.shape(x)[1:]) if b else x
            for x, b in zip(args, batched)
        ]
        return impl(*lifted, **params)

    rule.pays = lambda eqn: False  # type: ignore[attr-defined]
    return rule


def leading_axis_batch(rule: Callable[..., Any]) -> Callable[..., Any]:
    """The batch rule of a one-operand primitive that moves or sums elements: ``rule(x, k,
    **params)`` applies it to ``x`` whose leading axis holds the ``k`` columns, by shifting
    the primitive's axes past that one.  Such rules let a program of them be run, or traced,
    on all columns at once (forward sensitivities: :mod:`pyzygote.ode.rhs`); they do no work
    the columns one at a time would repeat, so they do not make batching pay by themselves."""

    def batch(args: Sequence[Any], batched: Sequence[bool], **params: Any) -> Any:
        (x,) = args
        return rule(x, _shape(x)[0], **params)

    batch.pays = lambda eqn: False  # type: ignore[attr-defined]
    return batch


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def eval_batched(prog: Program, args: Sequence[Any], batched: Sequence[bool], size: int) -> list[np.ndarray]:
    """``prog``'s outputs, each with a leading axis of ``size``, where the arguments that
    ``batched`` marks carry that leading axis (the others are shared by every column).

    A ``batch`` rule is called as ``rule(args, batched, **params)`` and returns the outputs
    with the leading axis, or ``None`` to be applied column by column.  The arguments may be
    traced: the batched program is then recorded into the trace."""
    env: dict[int, tuple[Any, bool]] = {v.uid: (x, b) for v, x, b in zip(prog.inputs, args, batched)}
    env.update((v.uid, (c, False)) for v, c in zip(prog.constvars, prog.consts))

    def read(a: Var | Literal) -> tuple[Any, bool]:
        return (a.value, False) if isinstance(a, Literal) else env[a.uid]

    for eqn in prog.eqns:
        ins = [read(a) for a in eqn.inputs]
        xs, flags = [x for x, _ in ins], [b for _, b in ins]
        if not any(flags):
            out, out_batched = eqn.prim.bind(*xs, **eqn.params), False
        else:
            rule = eqn.prim.batch
            out = None if rule is None else rule(xs, flags, **eqn.params)
            if out is None:
                out = _column_by_column(eqn, xs, flags, size)
            out_batched = True
        outs = out if eqn.prim.multiple_results else (out,)
        env.update((v.uid, (o, out_batched)) for v, o in zip(eqn.outputs, outs))
    results = []
    for a in prog.outputs:
        x, b = read(a)
        if not hasattr(x, "_builder"):  # a traced value stays traced
            x = np.asarray(x)
        results.append(x if b else np.broadcast_to(x[None], (size,) + _shape(x)))
    return results


def _column_by_column(eqn: Any, xs: list[Any], flags: list[bool], size: int) -> Any:
    columns = [eqn.prim.bind(*(x[i] if b else x for x, b in zip(xs, flags)), **eqn.params) for i in range(size)]
    if eqn.prim.multiple_results:
        return tuple(np.stack(parts) for parts in zip(*columns))
    return np.stack(columns)


def along_one_input(run: Callable[..., Any], avals: Sequence[Any], position: int) -> Callable[[Any], Any]:
    """``t -> run(0, ..., t, ..., 0)[0]``: ``t`` the tangent at ``position``, zeros for the
    other tangent inputs (of abstract values ``avals``)."""

    def along(t: Any) -> Any:
        ts = [np.zeros(a.shape, a.dtype) for a in avals]
        ts[position] = t
        return run(*ts)[0]

    return along


def per_column(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``T -> stack(run(t) for t in T)``: columns one at a time."""
    return lambda T: np.stack([run(t) for t in T])


# Basis tangents per batch: an ODE's batched tangent system has n (1 + COLUMN_BATCH) equations.
COLUMN_BATCH = 32


def basis_columns(x: Any, run_columns: Callable[[Any], Any]) -> Any:
    """``run_columns`` applied to the basis tangents of ``x`` in batches: shape (x.size, ...)."""
    n, outs = x.size, []
    for start in range(0, n, COLUMN_BATCH):
        k = min(COLUMN_BATCH, n - start)
        E = np.zeros((k, n), dtype=x.dtype)
        E[np.arange(k), start + np.arange(k)] = 1.0
        outs.append(run_columns(np.reshape(E, (k, *x.shape))))
    return outs[0] if len(outs) == 1 else np.concatenate(outs)


def hessian_by_columns(run_columns: Callable[[Any], Any], x: Any) -> Any:
    """The Hessian in ``x`` from ``run_columns(T)``: the derivatives of the gradient in ``x``
    along each ``T[i]``, stacked."""
    if x.size == 0:
        return np.zeros(x.shape + x.shape, x.dtype)
    cols = np.reshape(basis_columns(x, run_columns), (x.size, x.size))
    # Row i holds d(grad)/dx_i; the Hessian is symmetric, rows follow numpy order.
    return np.reshape(np.transpose(cols), x.shape + x.shape)

"""Where ``df/du`` can be nonzero, read from the traced right-hand side, and its columns grouped so
that a few Jacobian-vector products give all its entries.

The pattern is structural: an output entry is marked as depending on a state when some path
through the program's equations leads from one to the other, whatever the values (both
branches of an ``np.where``; every entry a product with a computed matrix can reach).  So it
holds at every point of a solve.  Equations without a rule here make each of their outputs
depend on everything their inputs do, which is never too few.

Columns that share no row are given one colour (greedy, as Curtis, Powell and Reid's grouping);
the sum of the unit directions of a colour gives those columns' entries in one product
(:meth:`pyzygote.ode.rhs.RHS.jacobian_u`).  A 5-point stencil on a 40 x 40 grid needs 5 to 9
products where the dense Jacobian needed 1,600.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.sparse import csc_matrix  # imported with this module, only for systems of more than 64 states

from pyzygote.ir import Literal, Program
from pyzygote.primitives.elementwise import ELEMENTWISE

__all__ = ["state_pattern", "column_colours", "StructuralJacobian"]

# A conservative rule making a (size x n) block denser than this gives up: the Jacobian is then
# dense anyway, and the block would cost memory for nothing.
_MOST_ENTRIES = 20_000_000


class _TooDense(Exception):
    pass


class StructuralJacobian(csc_matrix):
    """A Jacobian holding an entry at each place of a structural pattern, zero or not: the same
    places at every point, which LSODA's band needs (a pattern read off values is not)."""


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> Any:
    from scipy.sparse import csr_matrix

    out = csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=shape)
    out.data[:] = 1  # repeated (row, col) pairs were summed
    return out


def _ones(M: Any) -> Any:
    M = M.tocsr()
    M.data[:] = 1
    return M


def _positions(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(math.prod(shape), dtype=np.int64).reshape(shape)


def _take(M: Any, rows: np.ndarray) -> Any:
    """Output entry i depends on what input entry ``rows[i]`` does."""
    return M[np.ravel(rows)]


def _summed(M: Any, into: np.ndarray, size: int) -> Any:
    """Input entry j is added into output entry ``into[j]``."""
    into = np.ravel(into)
    return _ones(_csr(into, np.arange(into.size), (size, into.size)) @ M)


def _everything(Ms: list[Any], size: int, n: int) -> Any:
    """Each of ``size`` outputs depends on all that any input does."""
    cols = np.unique(np.concatenate([M.indices for M in Ms])) if Ms else np.zeros(0, np.int64)
    if size * cols.size > _MOST_ENTRIES:
        raise _TooDense
    return _csr(np.repeat(np.arange(size), cols.size), np.tile(cols, size), (size, n))


def _union(Ms: list[Any], size: int, n: int) -> Any:
    if not Ms:
        return None
    return Ms[0] if len(Ms) == 1 else _ones(sum(Ms[1:], Ms[0]))


def _elementwise(ins: list[Any], avals: list[Any], shape: tuple[int, ...], n: int) -> Any:
    size = math.prod(shape)
    parts = []
    for M, aval in zip(ins, avals):
        if M is None:
            continue
        if tuple(aval.shape) == tuple(shape):
            parts.append(M)
        elif math.prod(aval.shape) == 1:
            parts.append(_take(M, np.zeros(size, np.int64)))
        else:
            return _everything([m for m in ins if m is not None], size, n)
    return _union(parts, size, n)


def _einsum(ins: list[Any], eqn: Any, values: list[Any], n: int) -> Any:
    """An output entry depends on the entries of one operand that meet an entry of the other
    that can be nonzero (a constant's zeros stay zero: ``L @ u`` with a constant stencil ``L``)."""
    a, b = eqn.params["spec"].split("->")[0].split(",")
    out_letters = eqn.params["spec"].split("->")[1]
    size = math.prod(eqn.outputs[0].aval.shape)
    free = next(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in a + b + out_letters)
    parts = []
    for i, (mine, other) in enumerate(((a, b), (b, a))):
        M = ins[i]
        if M is None:
            continue
        aval, other_aval = eqn.inputs[i].aval, eqn.inputs[1 - i].aval
        mine_size = math.prod(aval.shape)
        if max(size, mine_size) * mine_size > _MOST_ENTRIES:  # the reach below, and the unit basis
            raise _TooDense
        v = values[1 - i]
        nonzero = np.ones(other_aval.shape) if v is None else (np.asarray(v) != 0).astype(float)
        basis = np.eye(mine_size).reshape(tuple(aval.shape) + (-1,))
        reach = np.einsum(f"{mine}{free},{other}->{out_letters}{free}", basis, nonzero, optimize=True).reshape(size, -1)
        rows, cols = np.nonzero(reach)
        parts.append(_ones(_csr(rows, cols, reach.shape) @ M))
    return _union(parts, size, n)


def _rule(eqn: Any, ins: list[Any], values: list[Any], n: int) -> Any:
    name, params = eqn.prim.name, eqn.params
    out = eqn.outputs[0].aval
    shape, size = tuple(out.shape), math.prod(out.shape)
    in_shape = tuple(eqn.inputs[0].aval.shape)
    if name in ("reshape", "convert_element_type", "copy"):
        return ins[0]
    if name == "transpose":
        return _take(ins[0], np.transpose(_positions(in_shape), params["perm"]))
    if name == "broadcast_in_dim":
        expanded = [1] * len(shape)
        for i, d in enumerate(params["dims"]):
            expanded[d] = in_shape[i]
        return _take(ins[0], np.broadcast_to(np.reshape(_positions(in_shape), expanded), shape))
    if name == "gather":
        return _take(ins[0], params["positions"])
    if name == "scatter_add":
        return _summed(ins[0], params["positions"], size)
    if name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        axes = params["axes"]
        kept = tuple(1 if i in axes else s for i, s in enumerate(in_shape))
        return _summed(ins[0], np.broadcast_to(np.reshape(_positions(shape), kept), in_shape), size)
    if name == "concatenate":
        from scipy.sparse import csr_matrix, vstack

        blocks, offsets, offset = [], [], 0
        for M, atom in zip(ins, eqn.inputs):
            k = math.prod(atom.aval.shape)
            blocks.append(csr_matrix((k, n), dtype=np.int8) if M is None else M)
            offsets.append(_positions(tuple(atom.aval.shape)) + offset)
            offset += k
        return _take(vstack(blocks, format="csr"), np.concatenate(offsets, axis=params["axis"]))
    if name == "einsum" and len(ins) == 2:
        return _einsum(ins, eqn, values, n)
    if name in ELEMENTWISE or name in ("select", "add_any"):
        keep = [None if i in eqn.prim.no_tangent_from else M for i, M in enumerate(ins)]
        return _elementwise(keep, [a.aval for a in eqn.inputs], shape, n)
    return _everything([M for M in ins if M is not None], size, n)


def state_pattern(prog: Program, n: int) -> Any:
    """The (n x n) scipy.sparse pattern of ``d out / d u`` for a program ``(u, p, t) -> (out,)``
    with u of shape (n,), or None when some equation makes it dense."""
    deps: dict[Any, Any] = {prog.inputs[0]: _csr(np.arange(n), np.arange(n), (n, n))}
    known = dict(zip(prog.constvars, prog.consts))  # constants, whose zeros a product keeps

    def value(atom: Any) -> Any:
        return atom.value if isinstance(atom, Literal) else known.get(atom)

    try:
        for eqn in prog.eqns:
            ins = [None if isinstance(a, Literal) else deps.get(a) for a in eqn.inputs]
            if all(M is None for M in ins) or eqn.prim.zero_derivative:
                continue
            if eqn.prim.multiple_results:
                for v in eqn.outputs:
                    deps[v] = _everything([M for M in ins if M is not None], math.prod(v.aval.shape), n)
                continue
            out = eqn.outputs[0]
            if np.dtype(out.aval.dtype).kind not in "fc":
                continue  # integers and booleans carry no derivative
            M = _rule(eqn, ins, [value(a) for a in eqn.inputs], n)
            if M is not None:
                deps[out] = M
    except _TooDense:
        return None
    result = prog.outputs[0]
    M = None if isinstance(result, Literal) else deps.get(result)
    if M is None:
        from scipy.sparse import csr_matrix

        return csr_matrix((n, n), dtype=np.int8)
    return M.tocsc()


def column_colours(pattern: Any) -> np.ndarray:
    """A colour per column, no two columns of one colour sharing a row (greedy, largest first)."""
    csc, csr = pattern.tocsc(), pattern.tocsr()
    n = csc.shape[1]
    colour = np.full(n, -1, dtype=np.int64)
    order = np.argsort(-np.diff(csc.indptr), kind="stable")
    for j in order:
        rows = csc.indices[csc.indptr[j] : csc.indptr[j + 1]]
        neighbours = np.concatenate([csr.indices[csr.indptr[r] : csr.indptr[r + 1]] for r in rows]) if rows.size else np.zeros(0, np.int64)
        taken = np.unique(colour[neighbours])
        taken = taken[taken >= 0]  # sorted: the first gap is the smallest free colour
        gaps = np.nonzero(taken != np.arange(taken.size))[0]
        colour[j] = gaps[0] if gaps.size else taken.size
    return colour

"""Linear algebra: two-operand ``einsum`` (every product), ``solve``, ``inv``, ``det``,
``cholesky``, ``slogdet`` and ``eigh``.

Every numpy product (``@``, ``dot``, ``inner``, ``outer``, ``tensordot``,
``einsum``) becomes one ``einsum`` equation with an explicit spec in which
each index of an operand appears in the other operand or in the output.  That
keeps the transpose rule one line: the cotangent of an operand is the einsum
of the output cotangent with the other operand.

>>> import numpy as np, pyzygote as pz
>>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
>>> pz.gradient(lambda b: np.sum(np.linalg.solve(A, b)), np.ones(2))[0]
array([0.4, 0.2])
"""

from __future__ import annotations

import re
import functools
import math
import string
from typing import Any, Callable

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, Undefined, defjvp
from pyzygote.tracer import as_operand
from pyzygote.julia import codegen as jl

__all__ = ["einsum", "einsum_p", "solve_p", "inv_p", "det_p", "cholesky_p", "logabsdet_p", "detsign_p", "eigh_p"]

_LETTERS = string.ascii_lowercase + string.ascii_uppercase


def parse_spec(spec: str) -> tuple[str, str, str]:
    ins, out = spec.split("->")
    a, b = ins.split(",")
    return a, b, out


# --- einsum -----------------------------------------------------------------------
einsum_p = Primitive("einsum")


@einsum_p.def_abstract_eval
def _einsum_aval(x: Aval, y: Aval, *, spec: str) -> Aval:
    a, b, out = parse_spec(spec)
    sizes: dict[str, int] = {}
    for letters, aval in ((a, x), (b, y)):
        if len(letters) != aval.ndim:
            raise ValueError(f"einsum spec {spec!r} does not fit operand {aval}")
        for c, n in zip(letters, aval.shape):
            if sizes.setdefault(c, n) != n:
                raise ValueError(
                    f"einsum: size of index {c!r} is {sizes[c]} in one operand and {n} in the other"
                )
    if x.dtype != y.dtype:
        raise TypeError(f"einsum operands must share a dtype, got {x} and {y}")
    return Aval(tuple(sizes[c] for c in out), x.dtype)


try:
    from numpy._core.multiarray import c_einsum as _c_einsum
except ImportError:  # a numpy that moved it: the public function, which calls it
    _c_einsum = np.einsum


@einsum_p.def_impl
def _einsum_impl(x: Any, y: Any, *, spec: str) -> Any:
    # BLAS pays off only beyond tiny operands; small ones skip the path search.
    if (x.size if isinstance(x, np.ndarray) else np.size(x)) > 64 and (y.size if isinstance(y, np.ndarray) else np.size(y)) > 64:
        x, y = np.asarray(x), np.asarray(y)
        product = _matmul_plan(spec, x.shape, y.shape, x.dtype == y.dtype and x.dtype.kind == "f")
        return product(x, y) if product is not None else np.einsum(spec, x, y, optimize=True)
    # np.einsum without optimize is c_einsum behind a dispatcher and a Python wrapper (a third of
    # the call for a 30-unit network's matrix-vector products, thousands a gradient).
    return _c_einsum(spec, x, y)


@functools.lru_cache(maxsize=1024)
def dot_order(spec: str) -> int | None:
    """1 when ``einsum(spec, x, y)`` of 1-D and 2-D operands is ``x.dot(y)``, -1 when it is
    ``y.dot(x)``, None otherwise: the contracted letter is the last of the first factor and the
    first of the second, and the output is their other letters in order."""
    a, b, out = parse_spec(spec)
    for first, second, order in ((a, b, 1), (b, a, -1)):
        if not (1 <= len(first) <= 2 and 1 <= len(second) <= 2) or len(set(first + second)) != len(first) + len(second) - 1:
            continue
        if first[-1] == second[0] and out == first[:-1] + second[1:]:
            return order
    return None


def _einsum_specialize(eqn: Any) -> Callable[[Any, Any], Any] | None:
    """Small matrix-vector, vector-matrix and dot products as ``ndarray.dot``: 0.5 us where
    ``c_einsum`` takes 2.5 us, and a loop's gradient has thousands (an MPC rollout's: 2,000,
    half its time).  ``dot`` is what numpy's own ``@`` computes with (BLAS), equal to
    ``einsum``'s loop up to rounding.  Operands past the size where ``_einsum_impl`` plans a
    BLAS product keep that path."""
    x, y = (a.aval for a in eqn.inputs)
    order = dot_order(eqn.params["spec"])
    if order is None or x.dtype.kind != "f" or (x.size > 64 and y.size > 64):
        return None
    # Values of rank-1 and rank-2 equations are arrays: ndarray.dot takes them without checks.
    return np.ndarray.dot if order == 1 else _dot_swapped


def _dot_swapped(x: Any, y: Any) -> Any:
    return y.dot(x)


einsum_p.specialize = _einsum_specialize


@functools.lru_cache(maxsize=4096)
def _matmul_plan(spec: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...], floats: bool) -> Callable[[Any, Any], Any] | None:
    """``einsum(spec, x, y)`` as one (stacked) matrix product, planned once per spec and shapes;
    ``None`` for specs that are not one (a letter twice in an operand, or summed in one only).

    numpy's optimized einsum searches for a contraction path on every call, which for two
    operands has one answer: a Hessian through a neural ODE spent a fifth of its time there.
    """
    a, b, out = parse_spec(spec)
    if not floats or len(set(a)) < len(a) or len(set(b)) < len(b) or any(c not in out for c in a + b if (c in a) != (c in b)):
        return None
    batch = [c for c in out if c in a and c in b]
    summed = [c for c in a if c in b and c not in out]
    only_x = [c for c in out if c in a and c not in b]
    only_y = [c for c in out if c in b and c not in a]
    size = dict(zip(a, x_shape)) | dict(zip(b, y_shape))
    count = lambda letters: math.prod(size[c] for c in letters)  # noqa: E731
    # The product in the output's own order where one exists (y^T x^T rather than (x y)^T).
    swap = list(out) == batch + only_y + only_x and list(out) != batch + only_x + only_y
    (l1, free1), (l2, free2) = ((b, only_y), (a, only_x)) if swap else ((a, only_x), (b, only_y))
    perm1, perm2 = [l1.index(c) for c in batch + free1 + summed], [l2.index(c) for c in batch + summed + free2]
    mat1, mat2 = (count(batch), count(free1), count(summed)), (count(batch), count(summed), count(free2))
    order = batch + free1 + free2
    shape, perm = [size[c] for c in order], [order.index(c) for c in out]

    # Each numpy call costs about a microsecond: a right-hand side's small products (a 10-mass
    # chain's K @ x, thousands of times per solve) skip the transposes that change nothing.
    keep1, keep2, keep_out = perm1 == sorted(perm1), perm2 == sorted(perm2), perm == sorted(perm)
    if not batch:
        mat1, mat2 = mat1[1:], mat2[1:]

    def product(x: Any, y: Any) -> Any:
        u, v = (y, x) if swap else (x, y)
        u = (u if keep1 else np.transpose(u, perm1)).reshape(mat1)
        v = (v if keep2 else np.transpose(v, perm2)).reshape(mat2)
        z = np.matmul(u, v).reshape(shape)
        # In numpy's order: elementwise operations on a permuted result are several times slower.
        return z if keep_out else np.ascontiguousarray(np.transpose(z, perm))

    return product


def _product(x: Any, y: Any, spec: str) -> Any:
    """``einsum_p``, or ``mul`` where ``spec`` only scales one operand by a rank-0 one (a dot's
    transpose, ``ct * y``): the same products, at a fifth of ``np.einsum``'s call cost, which
    loops over small vectors pay at every step."""
    a, b, out = parse_spec(spec)
    if (not a and b == out) or (not b and a == out):
        return ELEMENTWISE["mul"].bind(x, y)
    return einsum_p.bind(x, y, spec=spec)


def _einsum_jvp_x(g: Any, ans: Any, x: Any, y: Any, *, spec: str) -> Any:
    return _product(g, y, spec)


def _einsum_jvp_y(g: Any, ans: Any, x: Any, y: Any, *, spec: str) -> Any:
    return _product(x, g, spec)


defjvp(einsum_p, _einsum_jvp_x, _einsum_jvp_y)
einsum_p.def_julia(lambda e, x, y, *, spec: jl.einsum(e, x, y, spec))


@einsum_p.def_transpose
def _einsum_transpose(ct: Any, x: Any, y: Any, *, spec: str) -> tuple[Any, Any]:
    a, b, out = parse_spec(spec)
    if isinstance(x, Undefined):
        return _product(ct, y, f"{out},{b}->{a}"), None
    return None, _product(x, ct, f"{a},{out}->{b}")


def _einsum_batch(args: Any, batched: Any, *, spec: str) -> Any:
    """Columns in a leading axis: one product for all of them, which reads the other operand (a
    data matrix, say) once instead of once per column."""
    (x, y), (bx, by) = args, batched
    ins, out = spec.split("->")
    a, b = ins.split(",")
    z = next(c for c in _LETTERS if c not in spec)
    return einsum_p.bind(x, y, spec=f"{z + a if bx else a},{z + b if by else b}->{z + out}")


# Batching pays where the operand every column shares is large; for small ones, a compiled
# program run column by column is as fast.
_einsum_batch.pays = lambda eqn: any(getattr(a.aval, "size", 0) >= 1 << 22 for a in eqn.inputs)  # type: ignore[attr-defined]
einsum_p.batch = _einsum_batch


def einsum(spec: str, x: Any, y: Any) -> Any:
    """Two-operand einsum on traced or constant arrays, normalized for the IR."""
    a, b, out = parse_spec(spec)
    x, y = as_operand(x), as_operand(y)
    dtype = np.result_type(x.dtype, y.dtype)
    x, y = convert(x, dtype), convert(y, dtype)
    x, a = _normalize_operand(x, a, b + out)
    y, b = _normalize_operand(y, b, a + out)
    return einsum_p.bind(x, y, spec=f"{a},{b}->{out}")


def _normalize_operand(x: Any, letters: str, elsewhere: str) -> tuple[Any, str]:
    """Take diagonals of repeated indices and sum indices used nowhere else."""
    unique = "".join(dict.fromkeys(letters))
    if unique != letters:
        positions = np.einsum(f"{letters}->{unique}", element_positions(np.shape(x)))
        x, letters = gather(x, np.ascontiguousarray(positions)), unique
    lonely = tuple(i for i, c in enumerate(letters) if c not in elsewhere)
    if lonely:
        x = reduce_sum(x, lonely)
        letters = "".join(c for i, c in enumerate(letters) if i not in lonely)
    return x, letters


# --- numpy products -----------------------------------------------------------------
@implements(np.matmul)
def _np_matmul(a: Any, b: Any, **kwargs: Any) -> Any:
    if kwargs:
        raise UnsupportedOperationError(f"matmul keywords {sorted(kwargs)} are not supported while tracing")
    a, b = as_operand(a), as_operand(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions (scalars are not allowed, use '*')")
    n_a = a.shape[-1]
    n_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if n_a != n_b:
        raise ValueError(
            f"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc signature "
            f"(n?,k),(k,m?)->(n?,m?) (size {n_b} is different from {n_a})"
        )
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    L = _LETTERS[: len(batch)]
    if a.ndim > 2:
        a = broadcast_to_shape(a, batch + a.shape[-2:])
    if b.ndim > 2:
        b = broadcast_to_shape(b, batch + b.shape[-2:])
    sa = (L if a.ndim > 2 else "") + ("xy" if a.ndim >= 2 else "y")
    sb = (L if b.ndim > 2 else "") + ("yz" if b.ndim >= 2 else "y")
    out = L + ("x" if a.ndim >= 2 else "") + ("z" if b.ndim >= 2 else "")
    return einsum(f"{sa},{sb}->{out}", a, b)


def _scalar_product(a: Any, b: Any) -> Any:
    """``np.dot`` with a number: a product, in the type numpy's dot gives, which reads a Python
    float as a float64 array (not weak, as in ``a * b``)."""
    return np.multiply(a, b, dtype=np.result_type(a.dtype, b.dtype))


@implements(np.dot)
def _np_dot(a: Any, b: Any, out: Any = None) -> Any:
    a, b = as_operand(a), as_operand(b)
    if a.ndim == 0 or b.ndim == 0:
        return _scalar_product(a, b)
    if b.ndim == 1:
        la = _LETTERS[: a.ndim - 1]
        return einsum(f"{la}z,z->{la}", a, b)
    la, lb = _LETTERS[: a.ndim - 1], _LETTERS[13 : 13 + b.ndim - 2]
    return einsum(f"{la}z,{lb}zy->{la}{lb}y", a, b)


@implements(np.inner)
def _np_inner(a: Any, b: Any) -> Any:
    a, b = as_operand(a), as_operand(b)
    if a.ndim == 0 or b.ndim == 0:
        return _scalar_product(a, b)
    la, lb = _LETTERS[: a.ndim - 1], _LETTERS[13 : 13 + b.ndim - 1]
    return einsum(f"{la}z,{lb}z->{la}{lb}", a, b)


@implements(np.outer)
def _np_outer(a: Any, b: Any, out: Any = None) -> Any:
    a, b = np.ravel(as_operand(a)), np.ravel(as_operand(b))
    return einsum("i,j->ij", a, b)


@implements(np.vdot)
def _np_vdot(a: Any, b: Any) -> Any:
    return einsum("i,i->", np.ravel(as_operand(a)), np.ravel(as_operand(b)))


@implements(np.tensordot)
def _np_tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    a, b = as_operand(a), as_operand(b)
    if isinstance(axes, (int, np.integer)):
        ax_a, ax_b = list(range(a.ndim - axes, a.ndim)), list(range(axes))
    else:
        ax_a, ax_b = [np.atleast_1d(x).tolist() for x in axes]
    ax_a = [normalize_axis(i, a.ndim) for i in ax_a]
    ax_b = [normalize_axis(i, b.ndim) for i in ax_b]
    la = list(_LETTERS[: a.ndim])
    lb = list(_LETTERS[26 : 26 + b.ndim])
    for i, j in zip(ax_a, ax_b):
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in ax_a] + [c for j, c in enumerate(lb) if j not in ax_b]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", a, b)


@implements(np.einsum)
def _np_einsum(subscripts: Any, *operands: Any, out: Any = None, optimize: Any = False, **kw: Any) -> Any:
    if not isinstance(subscripts, str) or not operands or kw:
        raise UnsupportedOperationError(
            "traced np.einsum takes a subscripts string and operands, e.g. np.einsum('ij,jk->ik', a, b) "
            "(not the interleaved operand, sublist form, nor dtype=, casting=, order=)"
        )
    spec = _without_ellipsis(subscripts.replace(" ", ""), [np.ndim(x) for x in operands])
    if "->" not in spec:
        letters = spec.replace(",", "")
        spec += "->" + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    ins, result = spec.split("->")
    terms = ins.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum spec {subscripts!r} names {len(terms)} operands, got {len(operands)}")
    operands = _size_one_broadcast(terms, [as_operand(x) for x in operands])
    if len(operands) == 1:  # a trace, a diagonal, a transposition or a sum: contract with the number 1
        x = as_operand(operands[0])
        return einsum(f"{terms[0]},->{result}", x, np.ones((), x.dtype))
    # More than two operands: contract left to right, keeping the indices still needed.
    acc, acc_letters = operands[0], terms[0]
    for k in range(1, len(terms) - 1):
        later = "".join(terms[k + 1 :]) + result
        keep = "".join(dict.fromkeys(c for c in acc_letters + terms[k] if c in later))
        acc, acc_letters = einsum(f"{acc_letters},{terms[k]}->{keep}", acc, operands[k]), keep
    return einsum(f"{acc_letters},{terms[-1]}->{result}", acc, operands[-1])


def _size_one_broadcast(terms: list[str], operands: list[Any]) -> list[Any]:
    """numpy's einsum broadcasts an index of size 1 against the same index of another size
    (``'ij,ij->i'`` with shapes (3, 3) and (1, 3))."""
    size: dict[str, int] = {}
    for term, x in zip(terms, operands):
        for c, n in zip(term, np.shape(x)):
            size[c] = n if size.get(c, 1) == 1 else size[c]
    out = []
    for term, x in zip(terms, operands):
        want = tuple(size[c] if n == 1 else n for c, n in zip(term, np.shape(x)))
        out.append(np.broadcast_to(x, want) if want != np.shape(x) and len(term) == np.ndim(x) else x)
    return out


def _without_ellipsis(spec: str, ndims: list[int]) -> str:
    """``'...ij,...jk->...ik'`` with the ellipses spelled as letters, aligned from the right as
    numpy aligns the dimensions they stand for; without ``->`` they lead the output."""
    if "." not in spec:
        return spec
    ins, arrow, result = spec.partition("->")
    if "..." in result and "..." not in ins:
        raise ValueError("output has more dimensions than subscripts given in einstein sum, but no '...' ellipsis provided to broadcast the extra dimensions.")
    terms = ins.split(",")
    if len(terms) != len(ndims) or any(t.count("...") > 1 or t.replace("...", "").count(".") for t in terms):
        raise ValueError(f"einsum subscripts {spec!r} do not fit {len(ndims)} operands")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in spec]
    widths = [n - len(t.replace("...", "")) if "..." in t else 0 for t, n in zip(terms, ndims)]
    if min(widths) < 0:
        raise ValueError(f"einsum subscripts {spec!r} name more dimensions than an operand has")
    letters = "".join(spare[: max(widths)])
    terms = [t.replace("...", letters[len(letters) - w :] if w else "") for t, w in zip(terms, widths)]
    if arrow:
        return ",".join(terms) + "->" + result.replace("...", letters)
    singles = sorted(c for c in set("".join(terms)) if "".join(terms).count(c) == 1 and c not in letters)
    return ",".join(terms) + "->" + letters + "".join(singles)


# --- solve, inv, det ------------------------------------------------------------------
def _square(a: Aval, what: str) -> None:
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        batch = (
            f"; for a batch of matrices, loop and stack: np.stack([np.linalg.{what}(a[i]) for i in range({a.shape[0]})]) "
            "(other arguments indexed alike)"
            if a.ndim > 2
            else ""
        )
        raise np.linalg.LinAlgError(f"{what}: the traced version needs one square matrix, got shape {a.shape}{batch}")


solve_p = Primitive("solve")


@solve_p.def_abstract_eval
def _solve_aval(a: Aval, b: Aval) -> Aval:
    _square(a, "solve")
    if b.ndim not in (1, 2) or b.shape[0] != a.shape[0]:
        raise ValueError(f"solve: b of shape {b.shape} does not fit a matrix of shape {a.shape}")
    return Aval(b.shape, np.result_type(a.dtype, b.dtype))


# From this size on, solves go through SciPy, which estimates the condition number from the LU
# factors (O(n^2) beside the O(n^3) factorization: the same time at 200 unknowns) and warns
# (scipy.linalg.LinAlgWarning) when the matrix is singular to working precision, where numpy
# returns huge numbers silently: a stiffness matrix without its boundary conditions gave a
# loss of 2e31 and a finite gradient of 1e30 in user testing.  Smaller solves (in ODE
# right-hand sides, called thousands of times) keep numpy's lower overhead.
CONDITION_CHECKED_FROM = 64


@solve_p.def_impl
def _solve_impl(a: Any, b: Any) -> Any:
    if np.shape(a)[0] < CONDITION_CHECKED_FROM or np.result_type(a, b).kind != "f":
        return np.linalg.solve(a, b)
    import scipy.linalg

    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        try:
            out = scipy.linalg.solve(a, b, check_finite=False)
        except np.linalg.LinAlgError:
            raise np.linalg.LinAlgError("Singular matrix") from None  # numpy's error, for the same matrices
    for w in seen:
        rcond = re.search(r"rcond\s*=\s*([0-9][0-9.]*(?:[eE][+-]?[0-9]+)?)", str(w.message))
        warnings.warn(
            f"np.linalg.solve: the {np.shape(a)[0]} x {np.shape(a)[0]} matrix is singular to working precision"
            f"{f' (reciprocal condition number {float(rcond.group(1)):.2g})' if rcond else ''}, so the solution and its "
            "derivatives are mostly rounding. A stiffness or system matrix missing its boundary conditions?",
            scipy.linalg.LinAlgWarning,
            stacklevel=2,
        )
    return out.astype(np.result_type(a, b), copy=False)
defjvp(
    solve_p,
    lambda g, ans, a, b: -solve_p.bind(a, np.matmul(g, ans)),
    lambda g, ans, a, b: solve_p.bind(a, g),
)


@solve_p.def_transpose
def _solve_transpose(ct: Any, a: Any, b: Any) -> tuple[None, Any]:
    if isinstance(a, Undefined):
        raise TypeError("solve is linear only in its right-hand side")
    return None, solve_p.bind(transpose(a, (1, 0)), ct)


solve_p.def_julia(lambda e, a, b: f"{a} \\ {b}")


inv_p = Primitive("inv")
inv_p.def_abstract_eval(lambda a: (_square(a, "inv"), a)[1])
inv_p.def_impl(np.linalg.inv)
defjvp(inv_p, lambda g, ans, a: -np.matmul(ans, np.matmul(g, ans)))
inv_p.def_julia(lambda e, a: f"inv({a})")

det_p = Primitive("det")
det_p.def_abstract_eval(lambda a: (_square(a, "det"), Aval((), a.dtype))[1])
det_p.def_impl(np.linalg.det)
defjvp(det_p, lambda g, ans, a: ans * np.trace(solve_p.bind(a, g)))
det_p.def_julia(lambda e, a: f"PyZygote.det({a})")


# --- cholesky, slogdet ------------------------------------------------------------------
# numpy's cholesky reads only the lower triangle, so its derivative in an upper entry is
# zero and a diagonal entry counts once: the tangent the factor sees is the symmetric
# matrix built from the lower triangle of the input's tangent.
def _lower_symmetric(g: Any) -> Any:
    """The symmetric matrix whose lower triangle is that of ``g``: the tangent of what a
    function reading only the lower triangle (LAPACK's ``'L'``) sees."""
    n = g.shape[0]
    below = np.tri(n, k=-1, dtype=bool)
    strict = np.where(below, g, 0.0)
    return strict + strict.T + np.where(np.eye(n, dtype=bool), g, 0.0)


cholesky_p = Primitive("cholesky")
cholesky_p.def_abstract_eval(lambda a: (_square(a, "cholesky"), a)[1])
cholesky_p.def_impl(np.linalg.cholesky)


def _cholesky_jvp(g: Any, ans: Any, a: Any) -> Any:
    # dL = L Phi(L^-1 dA L^-T), Phi keeping the strict lower triangle and half the diagonal.
    n = a.shape[0]
    dA = _lower_symmetric(g)
    half_lower = np.tri(n, k=-1) + 0.5 * np.eye(n)
    x = solve_p.bind(ans, transpose(solve_p.bind(ans, dA), (1, 0)))
    return np.matmul(ans, x * half_lower.astype(ans.dtype))


defjvp(cholesky_p, _cholesky_jvp)
cholesky_p.def_julia(lambda e, a: f"PyZygote.cholesky_lower({a})")

# slogdet is two primitives: the log of |det| (differentiable, no overflow) and the sign
# (piecewise constant).
logabsdet_p = Primitive("logabsdet")
logabsdet_p.def_abstract_eval(lambda a: (_square(a, "slogdet"), Aval((), a.dtype))[1])
logabsdet_p.def_impl(lambda a: np.asarray(np.linalg.slogdet(a)[1], a.dtype)[()])
defjvp(logabsdet_p, lambda g, ans, a: np.trace(solve_p.bind(a, g)))
logabsdet_p.def_julia(lambda e, a: f"PyZygote.logabsdet({a})")

detsign_p = Primitive("detsign")
detsign_p.def_abstract_eval(lambda a: (_square(a, "slogdet"), Aval((), a.dtype))[1])
detsign_p.def_impl(lambda a: np.asarray(np.linalg.slogdet(a)[0], a.dtype)[()])
defjvp(detsign_p, lambda g, ans, a: None)
detsign_p.zero_derivative = True  # a sign: piecewise constant
detsign_p.def_julia(lambda e, a: f"PyZygote.detsign({a})")


# --- eigh ------------------------------------------------------------------------------
# numpy's eigh reads the lower triangle (UPLO="L"), as cholesky does.  LAPACK leaves each
# eigenvector's sign to its driver (numpy and Julia use different ones), so the IR fixes it:
# the first entry of largest magnitude (to within sqrt(eps)) is positive, on both engines.
eigh_p = Primitive("eigh", multiple_results=True)


@eigh_p.def_abstract_eval
def _eigh_aval(a: Aval) -> tuple[Aval, Aval]:
    _square(a, "eigh")
    return Aval(a.shape[:1], a.dtype), a


def column_signs(v: np.ndarray) -> np.ndarray:
    """``1`` or ``-1`` per column of ``v``: the sign of its first entry of largest magnitude (to
    within ``sqrt(eps)``), which pyzygote makes positive in eigen- and singular vectors."""
    if v.size == 0:
        return np.ones(v.shape[1], v.dtype)
    mag = np.abs(v)
    near_max = mag >= mag.max(axis=0, initial=0.0) * (1.0 - np.sqrt(np.finfo(v.dtype).eps))
    lead = v[np.argmax(near_max, axis=0), np.arange(v.shape[1])]
    return np.where(lead < 0, -1.0, 1.0).astype(v.dtype)


def _warn_if_not_symmetric(a: np.ndarray) -> None:
    """eigh and eigvalsh read one triangle: a matrix that is not symmetric gets the eigenvalues of
    another, silently in numpy (user testing: a next-generation matrix's R0, 2.456 for 2.290).  A
    matrix with zeros above the diagonal is the triangle-only input LAPACK's convention allows."""
    upper = np.triu(a, 1)
    if not np.any(upper):
        return
    gap = float(np.max(np.abs(upper - np.tril(a, -1).T)))
    # Rounding leaves products such as x.T @ w @ x off symmetry by a few ulps, and central
    # differences (pz.testing.check_grads, pz.crosscheck) by their step; the eigenvalues move by
    # about the gap, so only a gap that matters is named.
    if gap > 1e-4 * float(np.max(np.abs(a))):
        import warnings

        warnings.warn(
            f"np.linalg.eigh / eigvalsh of a matrix that is not symmetric (largest |a - a.T| = {gap:.3g}): they read only "
            "one triangle (the lower one unless UPLO='U'), so the eigenvalues are those of another matrix. A general matrix's "
            "eigenvalues are not traced; for the spectral radius of a non-negative matrix (R0 of a next-generation "
            "matrix), iterate v = a @ v / np.linalg.norm(a @ v) a fixed number of times, or use a symmetric matrix "
            "similar to it (diag(N) C diag(1/N) has the eigenvalues of C)",
            RuntimeWarning,
            stacklevel=2,
        )


def signed_eigenvectors(v: np.ndarray) -> np.ndarray:
    """``v`` with each column's sign fixed: its first entry of largest magnitude is positive."""
    return v * column_signs(v)


@eigh_p.def_impl
def _eigh_impl(a: Any) -> tuple[np.ndarray, np.ndarray]:
    _warn_if_not_symmetric(np.asarray(a))
    w, v = np.linalg.eigh(a)
    return w, signed_eigenvectors(v)


def _eigh_jvp(primals: Any, tangents: Any) -> Any:
    # C = V^T dS V: dw = diag(C), dV = V (F o C) with F[i, j] = 1 / (w[j] - w[i]) off the
    # diagonal.  Repeated eigenvalues make F infinite: their eigenvectors are not unique.
    (a,), (g,) = primals, tangents
    w, v = eigh_p.bind(a)
    n = a.shape[0]
    dA = _lower_symmetric(g)
    c = np.matmul(np.matmul(v.T, dA), v)
    off = np.logical_not(np.eye(n, dtype=bool))
    gap = w[None, :] - w[:, None]
    f = np.where(off, 1.0 / np.where(off, gap, 1.0), 0.0)
    return (w, v), (np.diagonal(c), np.matmul(v, c * f))


eigh_p.jvp = _eigh_jvp
eigh_p.def_julia(lambda e, a: f"PyZygote.eigh_lower({a})")


def _checked(prim: Primitive) -> Any:
    def handler(*args: Any) -> Any:
        ops = [as_operand(x) for x in args]
        dtype = np.result_type(*(x.dtype for x in ops))
        dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
        return prim.bind(*(convert(x, dtype) for x in ops))

    return handler


implements(np.linalg.solve)(_checked(solve_p))
implements(np.linalg.inv)(_checked(inv_p))
implements(np.linalg.det)(_checked(det_p))


@implements(np.linalg.cholesky)
def _np_cholesky(a: Any, /, *, upper: bool = False) -> Any:
    a = as_operand(a)
    _square(a, "cholesky")
    if not upper:
        return _checked(cholesky_p)(a)
    # numpy then reads the upper triangle: the factor of the transpose, transposed.
    return transpose(_checked(cholesky_p)(transpose(a, (1, 0))), (1, 0))


_EIGH_RESULT = type(np.linalg.eigh(np.eye(1)))  # numpy's named tuple (eigenvalues, eigenvectors)


def _lower_read(a: Any, uplo: str, name: str) -> Any:
    """The matrix whose lower triangle holds the triangle numpy reads (``UPLO``)."""
    a = as_operand(a)
    _square(a, name)
    if not isinstance(uplo, str):  # eigh(K, M), SciPy's generalized problem (user testing)
        raise TypeError(
            f"np.linalg.{name}'s second argument is UPLO, 'L' or 'U', not a matrix: numpy has no generalized "
            f"problem {name}(K, M). For K v = w M v: L = np.linalg.cholesky(M); Li = np.linalg.inv(L); "
            f"w, v = np.linalg.eigh(Li @ K @ Li.T); v = Li.T @ v"
        )
    if uplo not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return a if uplo == "L" else transpose(a, (1, 0))


@implements(np.linalg.eigh)
def _np_eigh(a: Any, UPLO: str = "L") -> Any:
    w, v = _checked(eigh_p)(_lower_read(a, UPLO, "eigh"))
    return _EIGH_RESULT(w, v)


@implements(np.linalg.eigvalsh)
def _np_eigvalsh(a: Any, UPLO: str = "L") -> Any:
    return _checked(eigh_p)(_lower_read(a, UPLO, "eigvalsh"))[0]


_SLOGDET_RESULT = type(np.linalg.slogdet(np.eye(1)))  # numpy's named tuple (sign, logabsdet)


@implements(np.linalg.slogdet)
def _np_slogdet(a: Any) -> Any:
    return _SLOGDET_RESULT(_checked(detsign_p)(a), _checked(logabsdet_p)(a))


@implements(np.linalg.norm)
def _np_norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    x = as_operand(x)
    if x.dtype.kind not in "fc":  # numpy's norm makes integers and booleans float64 first
        x = convert(x, np.float64)  # (review: x * x wrapped for int32 and uint8; ord=1 was int64)
    if axis is None and x.ndim > 2:
        if ord is not None:
            raise ValueError("Improper number of dimensions to norm.")  # numpy's
        whole = np.sqrt(np.sum(x * x))
        return np.reshape(whole, (1,) * x.ndim) if keepdims else whole  # numpy keeps every axis
    nd_axes = x.ndim if axis is None else (1 if isinstance(axis, (int, np.integer)) else len(axis))
    if nd_axes == 1 and isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")  # numpy's
    if nd_axes == 2 and ord not in (None, "fro", 1, -1, np.inf, -np.inf, 2, -2, "nuc"):
        raise ValueError("Invalid norm order for matrices.")  # numpy's
    if nd_axes == 2 and ord in (2, -2, "nuc"):
        return _singular_value_norm(x, ord, axis, keepdims)
    if nd_axes == 2 and ord in (1, -1, np.inf, -np.inf):
        axes = normalize_axes(axis if axis is not None else (0, 1), x.ndim)
        inner_axis, outer_axis = (axes[0], axes[1]) if ord in (1, -1) else (axes[1], axes[0])
        sums = np.sum(np.abs(x), axis=inner_axis, keepdims=True)
        pick = np.max if ord in (1, np.inf) else np.min
        return pick(sums, axis=(inner_axis, outer_axis), keepdims=keepdims)
    if ord in (None, 2, "fro") and not (nd_axes == 2 and ord == 2):
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    if ord == 1:
        return np.sum(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == np.inf:
        return np.max(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(np.abs(x), axis=axis, keepdims=keepdims)
    if isinstance(ord, (int, float)) and ord > 0 and nd_axes == 1:
        return np.sum(np.abs(x) ** ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)
    raise UnsupportedOperationError(f"traced np.linalg.norm does not support ord={ord!r} here")


def _singular_value_norm(x: Any, ord: Any, axis: Any, keepdims: bool) -> Any:
    """The largest (``ord=2``) or smallest (``-2``) singular value, or their sum (``'nuc'``), of
    the matrix ``x`` spans along ``axis`` (one matrix: pyzygote's ``svd`` takes no batches)."""
    from pyzygote.primitives.svd import singular_values

    if x.ndim != 2:
        raise UnsupportedOperationError(f"traced np.linalg.norm with ord={ord!r} takes one matrix, got shape {x.shape}")
    s = singular_values(x)  # those of x.T too, for axis=(1, 0)
    value = np.sum(s) if ord == "nuc" else s[0] if ord == 2 else s[-1]
    return np.reshape(value, (1, 1)) if keepdims else value


@implements(np.linalg.multi_dot)
def _np_multi_dot(arrays: Any, *, out: Any = None) -> Any:
    if out is not None:
        raise UnsupportedOperationError("numpy.linalg.multi_dot's out= is not supported while tracing")
    arrays = [as_operand(a) for a in arrays]
    if len(arrays) < 2:
        raise ValueError("Expecting at least two arrays.")
    if any(a.ndim not in (1, 2) for a in arrays) or any(a.ndim != 2 for a in arrays[1:-1]):
        raise ValueError("multi_dot takes 1-D or 2-D first and last arrays and 2-D arrays between them")
    acc = arrays[0]
    for a in arrays[1:]:
        acc = np.matmul(acc, a)
    return acc


@implements(np.linalg.matrix_power)
def _np_matrix_power(a: Any, n: Any) -> Any:
    a = as_operand(a)
    if not isinstance(n, (int, np.integer)):
        raise TypeError("exponent must be an integer")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise np.linalg.LinAlgError(f"matrix_power: the traced version needs one square matrix, got shape {a.shape}")
    if n == 0:
        return np.eye(a.shape[0], dtype=a.dtype)
    base = np.linalg.inv(a) if n < 0 else a
    n, result = abs(int(n)), None
    while n:  # binary powering, as numpy does
        if n & 1:
            result = base if result is None else np.matmul(result, base)
        n >>= 1
        if n:
            base = np.matmul(base, base)
    return result if result is not a else np.copy(a)


from pyzygote.primitives.elementwise import ELEMENTWISE  # noqa: E402
from pyzygote.primitives.indexing import element_positions, gather  # noqa: E402
from pyzygote.primitives.reduction import reduce_sum  # noqa: E402
from pyzygote.primitives.shape import (  # noqa: E402
    broadcast_to_shape,
    convert,
    normalize_axes,
    normalize_axis,
    transpose,
)


# --- scalar rules (pyzygote.transforms.scalarize); solve/inv/det have none -------------
def _einsum_scalar(s: Any, x: list[str], y: list[str], *, spec: str) -> list[str]:
    import itertools

    from pyzygote.primitives.indexing import element_positions
    from pyzygote.transforms.scalarize import sum_of

    a, b, out = parse_spec(spec)
    sizes = dict(zip(a, s.in_avals[0].shape)) | dict(zip(b, s.in_avals[1].shape))
    summed = [c for c in sizes if c not in out]
    px, py = element_positions(s.in_avals[0].shape), element_positions(s.in_avals[1].shape)
    result = []
    for out_idx in itertools.product(*(range(sizes[c]) for c in out)):
        terms = []
        for sum_idx in itertools.product(*(range(sizes[c]) for c in summed)):
            at = dict(zip(out, out_idx)) | dict(zip(summed, sum_idx))
            i = px[tuple(at[c] for c in a)] if a else px[()]
            j = py[tuple(at[c] for c in b)] if b else py[()]
            terms.append(f"{x[int(i)]} * {y[int(j)]}")
        result.append(sum_of(terms))
    return result


def _einsum_work(eqn: Any) -> int:
    """Float operations of the unrolled einsum: a multiply and an add per term of each sum, far
    more than its operands' or result's elements (a batch of 4 through a 16 x 16 layer: 2048
    operations where the largest operand has 256 elements)."""
    a, b, out = parse_spec(eqn.params["spec"])
    sizes = dict(zip(a, eqn.inputs[0].aval.shape)) | dict(zip(b, eqn.inputs[1].aval.shape))
    summed = int(np.prod([sizes[c] for c in sizes if c not in out], dtype=np.int64))
    return 2 * eqn.outputs[0].aval.size * summed


_einsum_scalar.work = _einsum_work  # type: ignore[attr-defined]
einsum_p.scalar = _einsum_scalar

"""The QR decomposition: ``np.linalg.qr``.

One primitive, the thin (numpy's "reduced") factorization ``A = Q R`` of one real ``m x n``
matrix: ``Q`` is ``m x k`` with orthonormal columns and ``R`` is ``k x n`` upper triangular
(trapezoidal when ``m < n``), ``k = min(m, n)``.  Its values are numpy's, bit for bit, signs
included: LAPACK's Householder QR (``geqrf``, each reflector from ``dlarfg``) makes
``R[j, j] = -sign(alpha) * norm``, ``alpha`` the entry ``[j, j]`` of the matrix reduced so far,
which is deterministic, and the derivative formulas below hold for any fixed signs.

The derivatives divide by the diagonal of ``R`` (they solve with it).  Where an entry of it is
zero to working precision, relative to the norm of its column, ``A`` is rank deficient (for ``m < n``: its first ``m`` columns are),
the factors beyond that column are any orthonormal completion, and ``qr_rank_check`` makes every
derivative raise ``LinAlgError`` saying so; the values stay numpy's.

>>> import numpy as np, pyzygote as pz
>>> A = np.array([[3.0, 1.0], [4.0, 2.0]])
>>> float(np.linalg.qr(A).R[0, 0])  # minus the norm of column 0: LAPACK's sign, kept
-5.0
>>> pz.gradient(lambda a: np.linalg.qr(a).R[0, 0], A)[0]
array([[-0.6,  0. ],
       [-0.8,  0. ]])
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive
from pyzygote.primitives.linalg import solve_p
from pyzygote.tracer import as_operand

__all__ = ["qr_p", "qr_rank_check_p", "rank_deficient_column"]

qr_p = Primitive("qr", multiple_results=True)
# The identity on R, raising where R's diagonal is zero to working precision: the JVP passes R
# through it before solving with R, so that derivatives refuse a rank-deficient A while values
# (which never run it) stay numpy's.
qr_rank_check_p = Primitive("qr_rank_check")


@qr_p.def_abstract_eval
def _qr_aval(a: Aval) -> tuple[Aval, Aval]:
    if a.ndim != 2:
        raise np.linalg.LinAlgError(f"qr: the primitive takes one matrix, got shape {a.shape} (np.linalg.qr loops over stacks)")
    m, n = a.shape
    k = min(m, n)
    return Aval((m, k), a.dtype), Aval((k, n), a.dtype)


@qr_p.def_impl
def _qr_impl(a: Any) -> tuple[np.ndarray, np.ndarray]:
    q, r = np.linalg.qr(a)
    return q, r


def rank_deficient_column(r: np.ndarray) -> tuple[int, float] | None:
    """The first ``j`` with ``|R[j, j]| <= max(m, n) * max(eps * |R[:, j]|, tiny)`` for the ``m x n``
    (tall or square) ``r``, ``|R[:, j]|`` the 2-norm of column ``j`` (that of column ``j`` of
    ``A``), ``tiny`` the smallest normal number, and
    that bound; ``None`` where there is none (NaN compares false: it is reported as NaN by the
    gradient's own check).

    ``R[j, j]`` is the distance of column ``j`` of ``A`` from the span of the columns before it,
    and Householder QR is columnwise backward stable: it is computed to about ``eps`` times that
    column's norm, so below the bound it is rounding noise, not a distance (the user-tested
    ``A[:, 1] = 2 * A[:, 0]`` gave ``R[1, 1] = 2.8e-16`` and a gradient of noise, one exact zero
    a bare ``LinAlgError: Singular matrix``).  The scale is the column's own, not ``max|R|`` as
    in ``np.linalg.matrix_rank``: ``A D`` for a diagonal ``D > 0`` has the factors ``Q`` and
    ``R D``, so columns of very different norms (``diag(1e16, 1)``, full rank, which
    matrix_rank calls rank 1) have derivatives as accurate as the scaled matrix's (found in
    review: ``max|R|`` refused them)."""
    r = np.asarray(r)
    d = np.abs(np.diagonal(r))
    if d.size == 0:
        return None
    k = d.size
    columns = np.abs(r[:, :k])
    big = np.max(columns, axis=0)
    with np.errstate(invalid="ignore"):  # scaled by the largest entry: no underflow of tiny columns
        norms = big * np.sqrt(np.sum((columns / np.where(big > 0, big, 1)) ** 2, axis=0))
    # at least the smallest normal number: a subnormal R[j, j] has lost precision, and 1 / R[j, j]
    # overflows (the review's [[1e-310, 0.5], [0, 1]])
    info = np.finfo(r.dtype)
    tol = max(r.shape) * np.maximum(info.eps * norms, info.tiny)
    low = np.flatnonzero(d <= tol)
    return (int(low[0]), float(tol[low[0]])) if low.size else None


def rank_deficiency_message(j: int, value: float, tol: float) -> str:
    return (
        f"np.linalg.qr has no derivative here: R[{j}, {j}] = {value:.3g} is zero to working precision (at most "
        f"{tol:.3g} = max(m, n) * eps * the norm of column {j} of A, or max(m, n) * the smallest normal number), so column {j} of A is a combination of the "
        f"columns before it and A is rank deficient. Q's columns and R's rows from {j} on are then any orthonormal "
        "completion, with no derivative. "
        "A loss that does not depend on that choice is smooth without qr: np.sum(R ** 2) is np.sum(A ** 2), "
        "R.T @ R is A.T @ A; one that needs only Q's first columns can take np.linalg.qr(A[:, :k])."
    )


@qr_rank_check_p.def_abstract_eval
def _qr_rank_check_aval(r: Aval) -> Aval:
    return r


@qr_rank_check_p.def_impl
def _qr_rank_check_impl(r: Any) -> Any:
    found = rank_deficient_column(r)
    if found is not None:
        j, tol = found
        raise np.linalg.LinAlgError(rank_deficiency_message(j, float(np.asarray(r)[j, j]), tol))
    return r


# The identity's derivative: the check runs on the primal R only, never on a tangent.
qr_rank_check_p.jvp = lambda primals, tangents: (qr_rank_check_p.bind(primals[0]), tangents[0])
qr_rank_check_p.def_julia(lambda e, r: f"PyZygote.qr_rank_checked({r})")


def _tangent(q: Any, r: Any, g: Any) -> tuple[Any, Any]:
    """``(dQ, dR)`` along ``g`` for ``m >= n``.  With ``M = Q^T g R^-1``: ``Q^T dQ`` is
    antisymmetric and ``dR R^-1`` upper triangular, so ``Q^T dQ`` is ``Omega``, the strict
    lower triangle of ``M`` minus its transpose, and ``dR = (M - Omega) R``; a tall ``A`` adds
    the part of ``g R^-1`` outside the span of ``Q`` to ``dQ``."""
    m, n = g.shape
    z = solve_p.bind(qr_rank_check_p.bind(r).T, g.T).T  # g R^-1: R^T z^T = g^T
    mm = np.matmul(q.T, z)
    low = np.tril(mm, -1)
    omega = low - low.T
    dr = np.matmul(mm - omega, r)
    dq = np.matmul(q, omega)
    if m > n:
        dq = dq + (z - np.matmul(q, mm))
    return dq, dr


def _qr_jvp(primals: Any, tangents: Any) -> Any:
    (a,), (g,) = primals, tangents
    q, r = qr_p.bind(a)
    m, n = a.shape
    k = min(m, n)
    if k == 0:  # empty factors: any tangent of their (empty) shapes
        return (q, r), (g[:, :k], g[:k, :])
    if m >= n:
        return (q, r), _tangent(q, r, g)
    # A = [X Y] with X square: X = Q U is the square case, and R = [U, Q^T Y].
    dq, du = _tangent(q, r[:, :m], g[:, :m])
    dv = np.matmul(dq.T, a[:, m:]) + np.matmul(q.T, g[:, m:])
    return (q, r), (dq, np.concatenate([du, dv], axis=1))


qr_p.jvp = _qr_jvp
qr_p.def_julia(lambda e, a: f"PyZygote.qr_thin({a})")

_QR_RESULT = type(np.linalg.qr(np.eye(1)))  # numpy's named tuple (Q, R)


def _factors(a: Any) -> tuple[Any, Any]:
    """``qr_p`` of ``a`` or of each matrix of the stack ``a``, stacked."""
    if a.ndim == 2:
        return qr_p.bind(a)
    lead, (m, n) = a.shape[:-2], a.shape[-2:]
    k = min(m, n)
    count = int(np.prod(lead))
    if count == 0:  # no matrix: empty results of numpy's shapes
        return a[..., :, :k] * 0, a[..., :k, :] * 0
    flat = np.reshape(a, (count, m, n))
    pairs = [qr_p.bind(flat[i]) for i in range(count)]
    return (np.reshape(np.stack([p[0] for p in pairs]), lead + (m, k)), np.reshape(np.stack([p[1] for p in pairs]), lead + (k, n)))


@implements(np.linalg.qr)
def _np_qr(a: Any, mode: str = "reduced") -> Any:
    """numpy's ``qr`` in modes ``'reduced'`` (the thin factors), ``'r'`` (``R`` alone) and
    ``'complete'`` where it equals ``'reduced'`` (``m <= n``), of a matrix or a stack."""
    a = as_operand(a)
    if mode in ("f", "full"):  # numpy's deprecated spelling of 'reduced', with its warning
        warnings.warn("The 'full' option is deprecated in favor of 'reduced'.\nFor backward compatibility let mode default.", DeprecationWarning, stacklevel=3)
        mode = "reduced"
    if mode in ("raw", "e", "economic"):
        raise UnsupportedOperationError(
            f"traced np.linalg.qr does not take mode={mode!r} (LAPACK's Householder reflectors); "
            "use mode='reduced' (the default) for Q and R, or mode='r' for R alone"
        )
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"Unrecognized mode '{mode}'")  # numpy's
    if a.ndim < 2:
        raise np.linalg.LinAlgError(f"{a.ndim}-dimensional array given. Array must be at least two-dimensional")  # numpy's
    if a.dtype == np.float16:
        raise TypeError("array type float16 is unsupported in linalg")  # numpy's
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    m, n = a.shape[-2:]
    if mode == "complete" and m > n:
        raise UnsupportedOperationError(
            f"traced np.linalg.qr of a {m} x {n} matrix needs mode='reduced' (the default): the {m - n} extra columns "
            "of Q that mode='complete' adds are any orthonormal completion, which has no derivative. Q @ R is the "
            "same with the thin factors"
        )
    q, r = _factors(a)
    return r if mode == "r" else _QR_RESULT(q, r)

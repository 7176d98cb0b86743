"""The singular value decomposition, and what numpy computes with it: ``np.linalg.svd``,
``svdvals``, ``norm`` of a matrix with ``ord`` 2, -2 or ``'nuc'``, ``pinv``, ``cond`` and
``matrix_rank``.

One primitive, the thin decomposition ``A = U diag(s) Vt`` of one matrix.  LAPACK's drivers
leave the sign of each pair of singular vectors open, so the IR fixes it, as for ``eigh``: the
first entry of largest magnitude of each column of ``U`` is positive (on both engines).  The
derivatives of ``U`` and ``Vt`` divide by the gaps ``s_j**2 - s_i**2`` and by ``s``: where
singular values repeat or are zero, singular vectors are not unique and have no derivative,
while ``s`` itself is differentiable wherever it is distinct (its gradient is
``U[:, i] Vt[i, :]``).  ``pinv`` is a primitive of its own, whose derivative needs only the
pseudo-inverse, so it is smooth where singular values repeat.

>>> import numpy as np, pyzygote as pz
>>> A = np.array([[3.0, 0.0], [0.0, 1.0]])
>>> pz.gradient(lambda a: np.linalg.norm(a, 2), A)[0]
array([[1., 0.],
       [0., 0.]])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive
from pyzygote.primitives.linalg import column_signs
from pyzygote.tracer import Tracer, as_operand

__all__ = ["svd_p", "pinv_p", "singular_values"]

svd_p = Primitive("svd", multiple_results=True)


@svd_p.def_abstract_eval
def _svd_aval(a: Aval) -> tuple[Aval, Aval, Aval]:
    if a.ndim != 2:
        batch = f"; for a batch of matrices, loop and stack: [np.linalg.svd(a[i]) for i in range({a.shape[0]})]" if a.ndim > 2 else ""
        raise np.linalg.LinAlgError(f"svd: the traced version needs one matrix, got shape {a.shape}{batch}")
    m, n = a.shape
    k = min(m, n)
    return Aval((m, k), a.dtype), Aval((k,), a.dtype), Aval((k, n), a.dtype)


@svd_p.def_impl
def _svd_impl(a: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    signs = column_signs(u)
    return u * signs, s, vt * signs[:, None]


def _svd_jvp(primals: Any, tangents: Any) -> Any:
    # With dP = U^T dA V: ds = diag(dP), and the rotations of U and V are F o (dP S + S dP^T)
    # and F o (S dP + dP^T S), F[i, j] = 1 / (s[j]**2 - s[i]**2) off the diagonal; a
    # rectangular A adds the parts of dA outside the span of U (of V), scaled by 1 / s.
    (a,), (g,) = primals, tangents
    u, s, vt = svd_p.bind(a)
    m, n = a.shape
    k = min(m, n)
    v = vt.T
    dp = np.matmul(np.matmul(u.T, g), v)
    off = np.logical_not(np.eye(k, dtype=bool))
    s2 = s * s
    gap = s2[None, :] - s2[:, None]
    f = np.where(off, 1.0 / np.where(off, gap, 1.0), 0.0)
    du = np.matmul(u, f * (dp * s[None, :] + s[:, None] * dp.T))
    dv = np.matmul(v, f * (s[:, None] * dp + dp.T * s[None, :]))
    if m > k:
        gv = np.matmul(g, v)
        du = du + (gv - np.matmul(u, np.matmul(u.T, gv))) / s
    if n > k:
        gu = np.matmul(g.T, u)
        dv = dv + (gu - np.matmul(v, np.matmul(v.T, gu))) / s
    return (u, s, vt), (du, np.diagonal(dp), dv.T)


svd_p.jvp = _svd_jvp
svd_p.def_julia(lambda e, a: f"PyZygote.svd_thin({a})")


def _floating_matrix(a: Any) -> Any:
    a = as_operand(a)
    if a.ndim != 2:
        _svd_aval(Aval(a.shape, np.dtype(np.float64)))  # numpy's batches: the message says how
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def singular_values(a: Any) -> Any:
    """The singular values of the matrix ``a``, descending."""
    return svd_p.bind(_floating_matrix(a))[1]


_SVD_RESULT = type(np.linalg.svd(np.eye(1)))  # numpy's named tuple (U, S, Vh)


@implements(np.linalg.svd)
def _np_svd(a: Any, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False) -> Any:
    a = _floating_matrix(a)
    if not compute_uv:
        return svd_p.bind(a)[1]
    if hermitian:
        raise UnsupportedOperationError("traced np.linalg.svd does not take hermitian=True; use the default (the result is the same)")
    m, n = a.shape
    if full_matrices and m != n:
        raise UnsupportedOperationError(
            f"traced np.linalg.svd of a {m} x {n} matrix needs full_matrices=False: the {max(m, n) - min(m, n)} extra "
            "singular vectors that full_matrices=True adds are any orthonormal completion, which has no derivative. "
            "For the singular values alone, np.linalg.svd(a, compute_uv=False) (JAX accepts svd(a)[1] with the "
            "default: it differentiates what the function uses)"
        )
    u, s, vt = svd_p.bind(a)
    return _SVD_RESULT(u, s, vt)


if hasattr(np.linalg, "svdvals"):  # numpy >= 2.0
    implements(np.linalg.svdvals)(singular_values)


pinv_p = Primitive("pinv")


@pinv_p.def_abstract_eval
def _pinv_aval(a: Aval, *, rcond: float) -> Aval:
    _svd_aval(a)
    return Aval(a.shape[::-1], a.dtype)


pinv_p.def_impl(lambda a, *, rcond: np.linalg.pinv(a, rcond=rcond))


def _pinv_jvp(primals: Any, tangents: Any, *, rcond: float) -> Any:
    # For a matrix of constant rank the derivative needs only P = pinv(A) (Golub and Pereyra):
    # dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P.  Through the singular vectors
    # it would divide by the gaps between singular values, which repeat for an orthogonal or
    # identity A, where P is smooth (user testing: NaN there, and 13% off where they were equal
    # to rounding).
    (a,), (g,) = primals, tangents
    p = pinv_p.bind(a, rcond=rcond)
    m, n = a.shape
    gt = g.T
    left = np.eye(m, dtype=a.dtype) - np.matmul(a, p)
    right = np.eye(n, dtype=a.dtype) - np.matmul(p, a)
    dp = -np.matmul(np.matmul(p, g), p) + np.matmul(np.matmul(np.matmul(p, p.T), gt), left) + np.matmul(np.matmul(right, gt), np.matmul(p.T, p))
    return p, dp


pinv_p.jvp = _pinv_jvp
pinv_p.def_julia(lambda e, a, *, rcond: f"PyZygote.pinv_of({a}, {e.literal(rcond, np.float64)})")

_NO_VALUE = object()


@implements(np.linalg.pinv)
def _np_pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = _NO_VALUE) -> Any:
    """numpy's pseudo-inverse: singular values at most ``rcond * max(s)`` count as zero."""
    a = _floating_matrix(a)
    if hermitian:
        raise UnsupportedOperationError("traced np.linalg.pinv does not take hermitian=True; use the default (the result is the same)")
    if rcond is None:  # numpy's defaults
        rcond = 1e-15 if rtol is _NO_VALUE else max(a.shape) * float(np.finfo(a.dtype).eps) if rtol is None else rtol
    elif rtol is not _NO_VALUE:
        raise ValueError("`rtol` and `rcond` can't be both set.")  # numpy's
    if np.ndim(rcond) != 0 or isinstance(rcond, Tracer):
        raise UnsupportedOperationError("traced np.linalg.pinv takes one constant number as rcond")
    return pinv_p.bind(a, rcond=float(rcond))


@implements(np.linalg.lstsq)
def _np_lstsq(a: Any, b: Any, rcond: Any = None) -> tuple[Any, Any, Any, Any]:
    """numpy's ``(x, residuals, rank, s)``, with ``x = pinv(a, rcond) @ b``: the minimum-norm
    least-squares solution that LAPACK's ``gelsd`` gives, from the same SVD cut-off.

    ``residuals`` (the squared norms of the columns of ``b - a @ x``) are returned whenever
    ``a`` has more rows than columns: numpy returns an empty array when ``a`` turns out rank
    deficient, a shape that depends on values, which a traced program cannot have.
    """
    a, b = as_operand(a), as_operand(b)
    result = np.result_type(a.dtype, b.dtype, np.float32 if a.dtype.kind == b.dtype.kind == "f" else np.float64)
    # numpy solves in float64 for float32 too (its cut-off is float64's), and returns float32.
    dtype = np.dtype(np.float64)
    a, b = _floating_matrix(a).astype(dtype), b.astype(dtype)
    m, n = a.shape
    if b.ndim not in (1, 2) or b.shape[0] != m:
        raise np.linalg.LinAlgError(f"Incompatible dimensions: lstsq takes b of shape ({m},) or ({m}, k) for a of shape {a.shape}, got {b.shape}")
    if rcond is None:  # numpy 2's default
        rcond = float(np.finfo(dtype).eps) * max(m, n)
    if np.ndim(rcond) != 0 or isinstance(rcond, Tracer):
        raise UnsupportedOperationError("traced np.linalg.lstsq takes one constant number as rcond")
    if not 0 < rcond < 1:  # LAPACK's xLALSD (gelsd) then cuts at DLAMCH('E'), half of finfo's eps
        rcond = float(np.finfo(dtype).eps) / 2
    x = np.matmul(pinv_p.bind(a, rcond=float(rcond)), b)
    s = singular_values(a)
    if s.shape[0] == 0:
        rank = np.zeros((), np.int32)
    else:
        rank = np.sum(np.greater(s, float(rcond) * np.max(s)).astype(np.int32)).astype(np.int32)  # LAPACK's integer, as numpy's
    if m > n:
        r = b - np.matmul(a, x)
        residuals = np.sum(r * r, axis=0)
        residuals = np.reshape(residuals, (1,)) if b.ndim == 1 else residuals
    else:
        residuals = np.zeros((0,), dtype=dtype)
    return x.astype(result), residuals.astype(result), rank, s.astype(result)


@implements(np.linalg.cond)
def _np_cond(x: Any, p: Any = None) -> Any:
    if p not in (None, 2, -2):
        raise UnsupportedOperationError(f"traced np.linalg.cond supports p=None, 2 and -2; got p={p!r}")
    x = _floating_matrix(x)
    if x.size == 0:
        raise np.linalg.LinAlgError("cond is not defined on empty arrays")  # numpy's
    s = singular_values(x)
    r = s[-1] / s[0] if p == -2 else s[0] / s[-1]
    # numpy's cond of the zero matrix (0 / 0) is inf, unless the matrix holds NaN
    return np.where(np.logical_and(np.isnan(r), np.logical_not(np.any(np.isnan(x)))), np.inf, r)


@implements(np.linalg.matrix_rank)
def _np_matrix_rank(A: Any, tol: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """numpy's rank: the number of singular values above ``tol`` (an integer, no derivative)."""
    A = as_operand(A)
    if A.ndim < 2:
        return np.any(np.not_equal(A, 0)).astype(np.int64)  # numpy's rank of a vector
    s = singular_values(A)
    if tol is None:
        factor = max(A.shape) * float(np.finfo(s.dtype).eps) if rtol is None else rtol
        tol = np.max(s, initial=0.0) * factor
    return np.sum(np.greater(s, tol).astype(np.int64))

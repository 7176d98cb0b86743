"""The matrix exponential, ``pz.expm`` (``scipy.linalg.expm`` made traceable), and its Fréchet
derivative.

Two primitives: ``expm(A)`` and ``expm_frechet(A, E)``, the Fréchet derivative
``L(A, E) = d/dh expm(A + h E)`` at ``h = 0``, linear in ``E``.  Both take a stack of square
matrices ``(..., n, n)``, as ``scipy.linalg.expm`` does.

Why a second primitive rather than writing the JVP of ``expm`` as the top-right block of
``expm([[A, E], [0, A]])``: reverse mode here is linearize-then-transpose, so every
derivative rule must be linear in its tangent through primitives that have a transpose, and
``expm`` of a matrix holding the tangent is not one of them.  ``expm_frechet`` is linear in
``E`` and its transpose is ``expm_frechet(A^T, G)`` (the adjoint of ``L(A, .)`` in the
Frobenius inner product is ``L(A^T, .)``, for real ``A``).  Its own derivative in ``A`` is
again a Fréchet derivative, of the doubled matrix ``M = [[A, E], [0, A]]``, since ``L(A, E)``
is the top-right block of ``expm(M)``: ``dL = L(A, dE) + (top right of L(M, [[dA, 0], [0,
dA]]))``.  So gradients, Hessians, ``jvp`` of ``grad`` and every higher order come from the
two primitives, each order doubling the size of the matrices it exponentiates.

``expm_frechet`` is computed by the same identity, ``L(A, E) = expm(M)[:n, n:]`` (Higham,
Functions of Matrices, 2008, eq. 3.16; scipy's ``expm_frechet(..., method='blockEnlarge')``),
with ``E`` first scaled by a power of two to the 1-norm of ``A`` (at least 1): ``L`` is linear
in ``E``, and a large ``E`` would make scaling and squaring halve ``M`` more often than ``A``
needs (1e-13 relative error instead of 1e-15 for ``|E| = 1e8 |A|``).  It takes batches, which scipy's ``expm`` does and
its ``expm_frechet`` does not.

>>> import numpy as np, pyzygote as pz
>>> A = np.array([[-0.5, 0.0], [0.5, -0.2]])  # a two-compartment chain
>>> g = pz.gradient(lambda A: pz.expm(A)[1, 0], A)[0]  # d expm(A)[1, 0] / dA
>>> import scipy.linalg
>>> G = np.zeros((2, 2)); G[1, 0] = 1.0  # the gradient is L(A^T, G), G the cotangent
>>> bool(np.allclose(g, scipy.linalg.expm_frechet(A.T, G, compute_expm=False), rtol=1e-13))
True
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pyzygote.ir import Aval
from pyzygote.primitive import Primitive, Undefined
from pyzygote.tracer import Tracer, as_operand

__all__ = ["expm", "expm_p", "expm_frechet_p"]


def _check_matrices(a: Aval, what: str, name: str = "A") -> None:
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise np.linalg.LinAlgError(
            f"{what}: {name} must be a square matrix (n, n) or a stack of them (..., n, n), got shape {a.shape}"
            + (" (a vector: for exp of each entry, np.exp)" if a.ndim == 1 else "")
        )
    if a.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{what}: {name} must be float32 or float64, got {a.dtype}")


# --- expm ---------------------------------------------------------------------------------
expm_p = Primitive("expm")


@expm_p.def_abstract_eval
def _expm_aval(a: Aval) -> Aval:
    _check_matrices(a, "expm")
    return a


@expm_p.def_impl
def _expm_impl(a: Any) -> Any:
    import scipy.linalg

    return scipy.linalg.expm(a).astype(np.asarray(a).dtype, copy=False)


def _expm_jvp(primals: Any, tangents: Any) -> Any:
    (a,), (g,) = primals, tangents
    return expm_p.bind(a), expm_frechet_p.bind(a, g)


expm_p.jvp = _expm_jvp
expm_p.def_julia(lambda e, a: f"PyZygote.expm({a})")


# --- expm_frechet --------------------------------------------------------------------------
expm_frechet_p = Primitive("expm_frechet")


@expm_frechet_p.def_abstract_eval
def _expm_frechet_aval(a: Aval, e: Aval) -> Aval:
    _check_matrices(a, "expm_frechet")
    if e != a:
        raise ValueError(f"expm_frechet: the direction E must have the shape and dtype of A, got {e} for A {a}")
    return a


def _one_norms(x: np.ndarray) -> np.ndarray:
    """The 1-norm (largest column sum of magnitudes) of each matrix of a stack."""
    return np.abs(x).sum(axis=-2).max(axis=-1, initial=0.0)


def _direction_scales(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """For each matrix, the power of two that brings the 1-norm of ``E`` near ``max(|A|, 1)``
    (1 where ``E`` is zero or a norm is not finite): multiplying and dividing by it is exact,
    and its exponent is kept inside the normal range of the dtype, so that neither the scale
    nor ``E`` times it underflows to zero or overflows (``|A| = 1e-30``, ``|E| = 1e20`` in
    float32 gave NaN when the scale was ``|A| / |E|``)."""
    norm_a, norm_e = _one_norms(a), _one_norms(e)
    ok = (norm_e > 0) & np.isfinite(norm_a) & np.isfinite(norm_e)
    info = np.finfo(a.dtype)
    k = np.frexp(np.maximum(np.where(ok, norm_a, 1.0), 1.0))[1] - np.frexp(np.where(ok, norm_e, 1.0))[1]
    k = np.clip(k, info.minexp + 2, info.maxexp - 3)  # exponents -1020..1021 (float32: -124..125)
    return np.ldexp(np.ones((), a.dtype), np.where(ok, k, 0)).astype(a.dtype, copy=False)


@expm_frechet_p.def_impl
def _expm_frechet_impl(a: Any, e: Any) -> Any:
    import scipy.linalg

    a, e = np.asarray(a), np.asarray(e)
    n = a.shape[-1]
    scale = _direction_scales(a, e)[..., None, None]
    m = np.zeros(a.shape[:-2] + (2 * n, 2 * n), a.dtype)
    m[..., :n, :n] = a
    m[..., n:, n:] = a
    m[..., :n, n:] = e * scale
    return (scipy.linalg.expm(m)[..., :n, n:] / scale).astype(a.dtype, copy=False)


def _swap_last(x: Any) -> Any:
    return np.swapaxes(x, -1, -2)


def _block(a: Any, b: Any, c: Any, d: Any) -> Any:
    """The stack of block matrices ``[[a, b], [c, d]]``."""
    return np.concatenate([np.concatenate([a, b], axis=-1), np.concatenate([c, d], axis=-1)], axis=-2)


def _expm_frechet_jvp(primals: Any, tangents: Any) -> Any:
    a, e = primals
    da, de = tangents
    out = expm_frechet_p.bind(a, e)
    tangent = None if de is None else expm_frechet_p.bind(a, de)
    if da is not None:
        # L(A, E) is the top-right block of expm(M), M = [[A, E], [0, A]]; its derivative in A
        # along dA is the top-right block of L(M, [[dA, 0], [0, dA]]), linear in dA.
        n = np.shape(a)[-1]
        zero = np.zeros(np.shape(a), out.dtype)
        m = _block(a, e, zero, a)
        dm = _block(da, zero, zero, da)
        part = expm_frechet_p.bind(m, dm)[..., :n, n:]
        tangent = part if tangent is None else tangent + part
    return out, tangent


expm_frechet_p.jvp = _expm_frechet_jvp


@expm_frechet_p.def_transpose
def _expm_frechet_transpose(ct: Any, a: Any, e: Any) -> tuple[None, Any]:
    if isinstance(a, Undefined):
        raise TypeError("expm_frechet is linear only in its direction E")
    return None, expm_frechet_p.bind(_swap_last(a), ct)


expm_frechet_p.def_julia(lambda e, a, d: f"PyZygote.expm_frechet({a}, {d})")


# --- the public function -------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _result_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype ``scipy.linalg.expm`` returns for matrices of ``dtype`` (float32 for float16,
    float64 for integers and bools)."""
    import scipy.linalg

    return scipy.linalg.expm(np.zeros((2, 2), dtype)).dtype  # 2 x 2: scipy returns a 1 x 1 float16 as float16


def expm(A: Any) -> Any:
    """The matrix exponential ``e^A = I + A + A @ A / 2 + ...`` of a real square matrix, or of each
    matrix of a stack ``(..., n, n)``: ``scipy.linalg.expm`` on a numpy array, a traced operation
    (differentiable to any order) on a traced one.

    ``scipy.linalg.expm`` itself turns its argument into a numpy array, which a traced value
    cannot become; this is the same function for traced code, as ``jax.scipy.linalg.expm`` is for
    JAX.  Its derivative is the Fréchet derivative ``L(A, E)`` (``scipy.linalg.expm_frechet``),
    computed by Padé approximation and scaling and squaring of a doubled matrix, so it is as
    accurate as the exponential itself, at about eight times its cost.  The result has
    ``scipy.linalg.expm``'s dtype: float32 for float32 (and float16), float64 otherwise.  On the
    Julia engine it is ``LinearAlgebra.exp`` of each matrix (see README, the Julia engine).

    Linear compartment models, continuous-time Markov chains and the discretization of linear
    systems are its uses: ``x(t) = expm(A * t) @ x0`` solves ``x' = A x``, and
    ``P(t) = expm(Q * t)`` holds the transition probabilities of the rate matrix ``Q``.

    >>> import numpy as np, pyzygote as pz
    >>> pz.expm(np.array([[0.0, -np.pi / 2], [np.pi / 2, 0.0]])).round(12) + 0.0  # a quarter turn
    array([[ 0., -1.],
           [ 1.,  0.]])
    >>> Q = lambda r: np.array([[-r, r], [1.0, -1.0]])  # a two-state chain, leaving state 0 at rate r
    >>> pz.grad(lambda r: pz.expm(Q(r) * 0.5)[0, 1])(2.0)  # d P(0 -> 1 at t = 0.5) / dr
    0.1606955911

    (``P(0 -> 1) = r / (r + 1) * (1 - exp(-(r + 1) t))``, whose derivative is the same.)
    """
    x = as_operand(A)
    if x.dtype.kind == "c":
        raise TypeError(
            f"pz.expm: A must be a real matrix, got {x.dtype}; pyzygote differentiates real numbers only "
            "(for a complex matrix that is a constant of your function, scipy.linalg.expm(A))"
        )
    if x.dtype.kind not in "fiub":
        raise TypeError(f"pz.expm: A must be a real matrix of numbers, got an array of {x.dtype}")
    _check_matrices(Aval(np.shape(x), np.dtype(np.float64)), "pz.expm")
    dtype = _result_dtype(x.dtype)
    if not isinstance(x, Tracer):
        import scipy.linalg

        return scipy.linalg.expm(x)
    from pyzygote.primitives.shape import convert

    return expm_p.bind(convert(x, dtype))

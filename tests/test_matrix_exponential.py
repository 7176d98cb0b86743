"""pz.expm, the traced matrix exponential, and its derivatives (the Fréchet derivative).

Values against scipy.linalg.expm, derivatives against central differences, against
scipy.linalg.expm_frechet and against closed forms (diagonal, rotation and nilpotent
generators), Hessians against differences of the gradient, and a compartment model's gradient
against pz.odesolve of the same linear ODE.  The primitive battery (tests/cases.py) covers the
rest: float32 values, dot-product tests of the transpose, second order, Julia emission.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.linalg

import pyzygote as pz
from pyzygote.primitives.matrix_exponential import expm_frechet_p
from pyzygote.testing import numerical_gradient

RNG = np.random.default_rng(20261129)
A3 = 0.6 * RNG.standard_normal((3, 3))
W3 = RNG.standard_normal((3, 3))


def weighted(a: Any) -> Any:
    return np.sum(W3 * pz.expm(a))


def central(f: Any, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    return numerical_gradient(f, x, eps=eps)[0]


# --- values ----------------------------------------------------------------------------------
def test_values_are_scipys_on_plain_and_traced_matrices() -> None:
    stack = 0.8 * RNG.standard_normal((2, 3, 4, 4))
    for a in (A3, stack, np.zeros((0, 0)), np.zeros((2, 0, 0))):
        want = scipy.linalg.expm(a)
        np.testing.assert_array_equal(pz.expm(a), want)  # a plain array: scipy's own result
        (got,) = pz.make_program(pz.expm, a)(a)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)


def test_a_nested_list_of_traced_numbers_is_a_matrix() -> None:
    k = np.array([0.5, 0.2])
    as_list = lambda k: np.sum(pz.expm([[-k[0], 0.0], [k[0], -k[1]]]) ** 2)  # noqa: E731
    as_array = lambda k: np.sum(pz.expm(np.array([[-k[0], 0.0], [k[0], -k[1]]])) ** 2)  # noqa: E731
    np.testing.assert_array_equal(pz.gradient(as_list, k)[0], pz.gradient(as_array, k)[0])
    np.testing.assert_allclose(pz.gradient(as_list, k)[0], central(as_array, k), rtol=1e-8)


@pytest.mark.parametrize(("dtype", "result"), [(np.float32, np.float32), (np.float16, np.float32), (np.int64, np.float64), (np.bool_, np.float64)])
def test_dtypes_are_scipys(dtype: Any, result: Any) -> None:
    a = np.array([[1, 0], [1, 1]], dtype=dtype)
    assert scipy.linalg.expm(a).dtype == result  # what this test holds pyzygote to
    # Integer and boolean matrices are data, not arguments to differentiate: made from a float one.
    make = (lambda x: x) if np.dtype(dtype).kind == "f" else lambda x: (x > 0.5).astype(dtype)
    x = a.astype(dtype if np.dtype(dtype).kind == "f" else np.float64)
    (got,) = pz.make_program(lambda x: pz.expm(make(x)), x)(x)
    assert got.dtype == result
    np.testing.assert_allclose(got, [[np.e, 0.0], [np.e, np.e]], rtol=1e-6)


def test_float32_gradient_is_float32_and_close() -> None:
    a = A3.astype(np.float32)
    (g,) = pz.gradient(lambda x: np.sum(W3.astype(np.float32) * pz.expm(x)), a)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, scipy.linalg.expm_frechet(A3.T, W3, compute_expm=False), rtol=2e-5, atol=2e-5)


# --- derivatives ---------------------------------------------------------------------------------
def test_gradient_is_the_adjoint_frechet_derivative_and_matches_differences() -> None:
    (g,) = pz.gradient(weighted, A3)
    # <W, L(A, E)> = <L(A^T, W), E>: the gradient is scipy's Fréchet derivative at A^T along W.
    np.testing.assert_allclose(g, scipy.linalg.expm_frechet(A3.T, W3, compute_expm=False), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(g, central(lambda a: np.sum(W3 * scipy.linalg.expm(a)), A3), rtol=1e-8, atol=1e-9)


def test_jvp_is_the_frechet_derivative() -> None:
    e = RNG.standard_normal((3, 3))
    value, tangent = pz.jvp(pz.expm, (A3,), (e,))
    want_value, want_tangent = scipy.linalg.expm_frechet(A3, e)
    np.testing.assert_allclose(value, want_value, rtol=1e-14)
    np.testing.assert_allclose(tangent, want_tangent, rtol=1e-13, atol=1e-14)


def test_a_stack_differentiates_matrix_by_matrix() -> None:
    stack = 0.7 * RNG.standard_normal((2, 2, 3, 3))
    w = RNG.standard_normal(stack.shape)
    (g,) = pz.gradient(lambda s: np.sum(w * pz.expm(s)), stack)
    for i in np.ndindex(2, 2):
        np.testing.assert_allclose(g[i], scipy.linalg.expm_frechet(stack[i].T, w[i], compute_expm=False), rtol=1e-13, atol=1e-14)


def test_diagonal_generator() -> None:
    d = np.array([0.3, -1.2, 2.0])
    weights = np.array([1.0, -2.0, 0.5])
    f = lambda x: np.sum(weights * np.diagonal(pz.expm(np.diag(x))))  # noqa: E731
    (g,) = pz.gradient(f, d)
    np.testing.assert_allclose(g, weights * np.exp(d), rtol=1e-13)
    np.testing.assert_allclose(pz.hessian(f, d), np.diag(weights * np.exp(d)), rtol=1e-13, atol=1e-14)
    # off the diagonal: d expm(A)[i, j] / dA[i, j] = (e^di - e^dj) / (di - dj)
    (g_full,) = pz.gradient(lambda a: pz.expm(a)[0, 2], np.diag(d))
    want = np.zeros((3, 3))
    want[0, 2] = (np.exp(d[0]) - np.exp(d[2])) / (d[0] - d[2])
    np.testing.assert_allclose(g_full, want, rtol=1e-14, atol=1e-15)


def test_rotation_generator() -> None:
    """expm([[0, -t], [t, 0]]) is the rotation by t, whose derivatives in t are rotations too."""

    def rotation(t: Any) -> Any:
        return pz.expm(np.array([[0.0, -1.0], [1.0, 0.0]]) * t)

    for t in (0.0, 0.7, 2.5, 10.0):
        c, s = np.cos(t), np.sin(t)
        np.testing.assert_allclose(pz.make_program(rotation, t)(t)[0], [[c, -s], [s, c]], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(pz.jacobian(rotation, t)[0], [[-s, -c], [c, -s]], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(pz.hessian(lambda u: rotation(u)[1, 0], t), -s, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(pz.grad(lambda u: pz.grad(lambda v: rotation(v)[0, 0])(u))(t), -c, rtol=1e-12, atol=1e-13)


def test_nilpotent_generator() -> None:
    """A strictly upper triangular 3 x 3 matrix: expm(A) = I + A + A @ A / 2 exactly."""

    def corner(x: Any) -> Any:
        a, b, c = x[0], x[1], x[2]
        z = a * 0.0
        return pz.expm(np.array([[z, a, b], [z, z, c], [z, z, z]]))[0, 2]  # b + a c / 2

    x = np.array([0.4, -1.3, 2.2])
    assert float(pz.make_program(corner, x)(x)[0]) == pytest.approx(x[1] + x[0] * x[2] / 2, rel=1e-15)
    np.testing.assert_allclose(pz.gradient(corner, x)[0], [x[2] / 2, 1.0, x[0] / 2], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(pz.hessian(corner, x), [[0, 0, 0.5], [0, 0, 0], [0.5, 0, 0]], atol=1e-14)


def test_hessian_matches_differences_of_the_gradient() -> None:
    h = pz.hessian(weighted, A3)
    assert h.shape == (3, 3, 3, 3)
    eps = 1e-5
    for i, j in [(0, 0), (1, 2), (2, 0)]:
        step = np.zeros((3, 3))
        step[i, j] = eps
        fd = (pz.gradient(weighted, A3 + step)[0] - pz.gradient(weighted, A3 - step)[0]) / (2 * eps)
        np.testing.assert_allclose(h[..., i, j], fd, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(h.reshape(9, 9), h.reshape(9, 9).T, rtol=1e-12, atol=1e-13)


def test_third_order() -> None:
    """jvp of a gradient of a gradient: each order exponentiates a matrix twice as large."""
    inner = lambda a: pz.grad(lambda b: pz.grad(weighted)(b)[0, 1])(a)[2, 1]  # noqa: E731
    e = RNG.standard_normal((3, 3))
    _, got = pz.jvp(inner, (A3,), (e,))
    eps = 1e-4
    fd = (inner(A3 + eps * e) - inner(A3 - eps * e)) / (2 * eps)
    assert float(got) == pytest.approx(float(fd), rel=1e-7, abs=1e-9)


def test_frechet_of_a_direction_far_larger_than_the_matrix() -> None:
    """The direction is scaled to the matrix's norm before the doubled matrix is exponentiated."""
    a = 0.5 * RNG.standard_normal((6, 6))
    e = 1e9 * RNG.standard_normal((6, 6))
    want = scipy.linalg.expm_frechet(a, e, compute_expm=False)
    got = expm_frechet_p.impl(a, e)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.max(np.abs(want)))
    np.testing.assert_array_equal(expm_frechet_p.impl(a, np.zeros_like(a)), np.zeros_like(a))


def _near_zero_frechet(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """L(A, E) = E + (A E + E A) / 2 + O(|A|^2 |E|), exact to rounding for |A| below 1e-15."""
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    return e64 + (a64 @ e64 + e64 @ a64) / 2


@pytest.mark.parametrize(
    ("dtype", "size_a", "size_e"),
    [(np.float32, 1e-30, 1e20), (np.float32, 1e-20, 1e19), (np.float64, 1e-200, 1e200), (np.float64, 1e-300, 1e10)],
)
def test_frechet_of_a_tiny_matrix_along_a_huge_direction(dtype: Any, size_a: float, size_e: float) -> None:
    """|A| / |E| as the scale underflowed to 0 (1e-30 / 1e20 in float32, 1e-200 / 1e200 in
    float64: NaN); the other two cases passed before and are kept as controls."""
    a = (size_a * np.array([[1.0, 2.0], [0.0, 1.0]])).astype(dtype)
    e = (size_e * np.array([[1.0, 0.0], [3.0, 1.0]])).astype(dtype)
    got = expm_frechet_p.impl(a, e)
    assert got.dtype == dtype
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(got, _near_zero_frechet(a, e), rtol=rtol, atol=rtol * size_e * 1e-9)
    # the gradient of a loss that weighs the exponential heavily, at a nearly zero matrix: ~ the weights
    w = (size_e * np.array([[1.0, -2.0], [0.5, 1.0]])).astype(dtype)
    (g,) = pz.gradient(lambda x: np.sum(w * pz.expm(x)), a)
    np.testing.assert_allclose(g, _near_zero_frechet(a.T, w), rtol=rtol, atol=rtol * size_e * 1e-9)


def test_frechet_along_a_subnormal_direction_is_not_nan() -> None:
    """|A| / |E| overflowed float32 (to inf: NaN) for a direction of subnormal numbers."""
    a = A3.astype(np.float32)
    e = np.full((3, 3), 1e-44, np.float32)
    got = expm_frechet_p.impl(a, e)
    want = scipy.linalg.expm_frechet(A3, np.full((3, 3), 1.0), compute_expm=False) * 1e-44
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0.2, atol=3e-45)  # subnormal numbers: a few significant bits


# --- a compartment model, against the ODE it solves ------------------------------------------------
TIMES = np.array([0.25, 1.0, 2.5, 4.0])
DOSE = np.array([1.0, 0.0, 0.0])
OBSERVED = np.array([[0.7, 0.25, 0.02], [0.3, 0.45, 0.2], [0.07, 0.3, 0.5], [0.02, 0.15, 0.6]])


def rate_matrix(k: Any) -> Any:
    """Gut -> blood -> tissue with a return flow tissue -> blood and elimination from the blood."""
    z = k[0] * 0.0
    return np.array([
        [-k[0], z, z],
        [k[0], -(k[1] + k[3]), k[2]],
        [z, k[1], -k[2]],
    ])


def loss_by_expm(k: Any) -> Any:
    a = rate_matrix(k)
    amounts = np.stack([pz.expm(a * t) @ DOSE for t in TIMES])
    return np.sum((amounts - OBSERVED) ** 2)


def loss_by_odesolve(k: Any) -> Any:
    u = pz.odesolve(lambda u, p, t: rate_matrix(p) @ u, DOSE, np.concatenate([[0.0], TIMES]), k, reltol=1e-12, abstol=1e-12)
    return np.sum((u[1:] - OBSERVED) ** 2)


def test_compartment_model_gradient_matches_the_ode_solution() -> None:
    k = np.array([1.4, 0.6, 0.3, 0.25])
    value, (g,) = pz.withgradient(loss_by_expm, k)
    value_ode, (g_ode,) = pz.withgradient(loss_by_odesolve, k)
    assert value == pytest.approx(value_ode, rel=1e-9)
    np.testing.assert_allclose(g, g_ode, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(g, central(loss_by_expm, k), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(pz.hessian(loss_by_expm, k), pz.hessian(loss_by_odesolve, k), rtol=1e-6, atol=1e-9)


def test_markov_chain_transition_probabilities() -> None:
    """P(t) = expm(Q t) of a rate matrix: rows sum to 1, so the gradient of a row sum is 0."""

    def generator(r: Any) -> Any:
        q = np.reshape(r, (3, 3)) ** 2
        return q - np.diag(np.sum(q, axis=1))

    r = RNG.uniform(0.3, 1.0, 9)
    rows = lambda x: np.sum(pz.expm(generator(x) * 1.7), axis=1)  # noqa: E731
    np.testing.assert_allclose(pz.make_program(rows, r)(r)[0], np.ones(3), rtol=1e-14)
    np.testing.assert_allclose(pz.jacobian(rows, r)[0], np.zeros((3, 9)), atol=1e-14)


# --- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "error", "match"),
    [
        (np.ones(3), np.linalg.LinAlgError, r"A must be a square matrix .* got shape \(3,\) \(a vector: for exp of each entry, np.exp\)"),
        (np.ones((2, 3)), np.linalg.LinAlgError, r"A must be a square matrix \(n, n\) or a stack of them \(..., n, n\), got shape \(2, 3\)"),
        (np.ones((4, 2, 3)), np.linalg.LinAlgError, r"got shape \(4, 2, 3\)"),
        (np.float64(2.0), np.linalg.LinAlgError, r"got shape \(\)"),
        (np.eye(2) * 1j, TypeError, r"A must be a real matrix, got complex128"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, r"A must be a real matrix of numbers"),
    ],
)
def test_bad_matrices_are_refused_naming_the_argument(a: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pz.expm(a)  # plain
    if a.dtype.kind == "f":
        with pytest.raises(error, match=match):
            pz.gradient(lambda x: np.sum(pz.expm(x)), a)  # traced


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_overflow_is_named() -> None:
    """e^800 overflows float64, as in scipy; the gradient's error names pz.expm."""
    a = np.array([[800.0, 1.0], [0.0, 1.0]])
    with pytest.raises(pz.NonFiniteGradientError, match=r"pz.expm gives inf"):
        pz.gradient(lambda x: np.sum(pz.expm(x)), a)


def test_scipy_expm_on_a_traced_value_points_to_pz_expm() -> None:
    with pytest.raises(pz.UnsupportedOperationError, match=r"scipy.linalg.expm was called on a traced value.*Use pz.expm\(A\)"):
        pz.gradient(lambda a: np.sum(scipy.linalg.expm(a)), A3)
    with pytest.raises(pz.UnsupportedOperationError, match=r"scipy.linalg.expm_frechet was called.*Use pz.jvp\(pz.expm, \(A,\), \(E,\)\)\[1\]"):
        pz.gradient(lambda a: np.sum(scipy.linalg.expm_frechet(a, W3)[1]), A3)


def test_the_suggested_frechet_derivative_traces() -> None:
    """What the expm_frechet message suggests works inside a traced function."""
    (g,) = pz.gradient(lambda a: np.sum(pz.jvp(pz.expm, (a,), (W3,))[1] ** 2), A3)
    fd = central(lambda a: np.sum(scipy.linalg.expm_frechet(a, W3, compute_expm=False) ** 2), A3)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-8)


# --- the Julia engine -------------------------------------------------------------------------------
@pytest.mark.julia
def test_julia_engine_agrees_on_the_compartment_model() -> None:
    k = np.array([1.4, 0.6, 0.3, 0.25])
    for what in ("gradient", "hessian"):
        got = getattr(pz, what)(loss_by_expm, k, engine="julia")
        want = getattr(pz, what)(loss_by_expm, k, engine="numpy")
        np.testing.assert_allclose(np.asarray(got[0] if what == "gradient" else got), np.asarray(want[0] if what == "gradient" else want), rtol=1e-10, atol=1e-12)


@pytest.mark.julia
def test_julia_engine_differentiates_a_tiny_matrix_along_a_huge_cotangent() -> None:
    for dtype, size_a, size_w in ((np.float32, 1e-30, 1e20), (np.float64, 1e-200, 1e200)):
        a = (size_a * np.array([[1.0, 2.0], [0.0, 1.0]])).astype(dtype)
        w = (size_w * np.array([[1.0, -2.0], [0.5, 1.0]])).astype(dtype)
        (g,) = pz.gradient(lambda x: np.sum(w * pz.expm(x)), a, engine="julia")
        rtol = 4 * np.finfo(dtype).eps
        np.testing.assert_allclose(g, _near_zero_frechet(a.T, w), rtol=rtol, atol=rtol * size_w * 1e-9)


@pytest.mark.julia
def test_julia_engine_agrees_on_a_stack_in_float32_and_float64() -> None:
    stack = 0.7 * RNG.standard_normal((2, 3, 3))
    w = RNG.standard_normal(stack.shape)
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 2e-5)):
        s, ww = stack.astype(dtype), w.astype(dtype)
        f = lambda x: np.sum(ww * pz.expm(x))  # noqa: E731
        got, want = pz.gradient(f, s, engine="julia")[0], pz.gradient(f, s, engine="numpy")[0]
        assert got.dtype == want.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
        _, t_got = pz.jvp(f, (s,), (ww,), engine="julia")
        _, t_want = pz.jvp(f, (s,), (ww,), engine="numpy")
        np.testing.assert_allclose(t_got, t_want, rtol=rtol, atol=rtol)

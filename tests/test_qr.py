"""np.linalg.qr traced: numpy's thin factors (LAPACK's signs kept), their derivatives against closed forms and
finite differences, numpy's modes and stacks, and the formulas julia_src's qr_thin uses.

The NumPy engine's derivatives are the JVP written in traced primitives (reverse mode is its
transpose); julia_src/src/PyZygote.jl writes the same JVP for dual numbers and its transpose
as an rrule.  Julia cannot run here, so those two are transcribed below into numpy, line by
line, and checked against the NumPy engine; tests/test_julia_engine.py compares the engines
themselves on a real Julia (the cases of tests/cases.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.testing import check_grads, numerical_jvp

SHAPES = [(4, 3), (3, 3), (2, 4), (1, 3), (3, 1), (5, 2)]


def well_conditioned(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random entries with the leading square block of each matrix pushed away from singular,
    its diagonal of both signs (LAPACK's R then has diagonal entries of both signs)."""
    rng = np.random.default_rng(seed)
    m, n = shape[-2:]
    k = min(m, n)
    a = rng.uniform(-1.0, 1.0, shape)
    a[..., :k, :k] += 2.0 * np.eye(k) * rng.choice([-1.0, 1.0], shape[:-2] + (1, k))
    return a


def traced_qr(a: np.ndarray, mode: str = "reduced") -> Any:
    out = pz.make_program(lambda x: np.linalg.qr(x, mode=mode), a)(a)
    return out[0] if mode == "r" else QR_RESULT(*out)


QR_RESULT = type(np.linalg.qr(np.eye(2)))


def loss(a: Any) -> Any:
    """Weighs every entry of Q and R, nonlinearly (a Hessian then has second derivatives of both).
    check_grads differences it as plain numpy, with numpy's own signs."""
    q, r = np.linalg.qr(a)
    wq = np.linspace(-1.0, 1.5, q.shape[-2] * q.shape[-1]).reshape(q.shape[-2:])
    wr = np.linspace(0.5, -2.0, r.shape[-2] * r.shape[-1]).reshape(r.shape[-2:])
    return np.sum(np.sin(q) * wq) + np.sum(np.sin(r) * wr)


# --- values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_factors_are_numpys_bit_for_bit_signs_included(shape: tuple[int, int]) -> None:
    """User testing: with R's diagonal made non-negative, sum(Q[:, 0]) was 1.528 traced and
    -1.528 in plain numpy, and crosscheck's finite differences (plain numpy) disagreed."""
    a = well_conditioned(shape)
    q, r = traced_qr(a)
    qn, rn = np.linalg.qr(a)
    d = np.diagonal(rn)
    assert np.any(d < 0) or min(shape) == 1  # where R was flipped before
    np.testing.assert_array_equal(q, qn)
    np.testing.assert_array_equal(r, rn)
    assert np.array_equal(r, np.triu(r))
    np.testing.assert_allclose(q @ r, a, rtol=0, atol=1e-14)
    np.testing.assert_allclose(q.T @ q, np.eye(min(shape)), rtol=0, atol=1e-15)


def test_results_are_numpys_named_tuple_dtypes_and_stacks() -> None:
    a = well_conditioned((2, 3, 4, 3), seed=1)

    def named(x: Any) -> Any:
        out = np.linalg.qr(x)
        assert type(out) is QR_RESULT
        return out.Q, out.R

    out = QR_RESULT(*pz.make_program(named, a)(a))
    assert out.Q.shape == (2, 3, 4, 3) and out.R.shape == (2, 3, 3, 3)
    for i in np.ndindex(2, 3):
        q, r = traced_qr(a[i])
        np.testing.assert_array_equal(out.Q[i], q)
        np.testing.assert_array_equal(out.R[i], r)
    f32 = traced_qr(a[0, 0].astype(np.float32))
    assert f32.Q.dtype == f32.R.dtype == np.float32
    np.testing.assert_allclose(f32.R, traced_qr(a[0, 0]).R, rtol=1e-5, atol=1e-6)
    # traced integers and booleans (inputs are floats) are factored as float64, as numpy does
    x = np.array([[2.2, 1.0], [0.9, 3.4], [-0.2, 1.1]])
    ints, bools = pz.make_program(lambda v: (np.linalg.qr(np.round(v).astype(np.int64)).R, np.linalg.qr(v > 1.0).Q), x)(x)
    assert ints.dtype == bools.dtype == np.float64
    np.testing.assert_array_equal(ints, traced_qr(np.round(x)).R)
    np.testing.assert_array_equal(bools, traced_qr((x > 1.0).astype(float)).Q)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (2, 0, 3), (0, 2, 2)])
def test_empty_matrices_have_numpys_shapes_and_empty_derivatives(shape: tuple[int, ...]) -> None:
    a = np.zeros(shape)
    assert [x.shape for x in traced_qr(a)] == [x.shape for x in np.linalg.qr(a)]
    (g,) = pz.gradient(lambda x: np.sum(np.linalg.qr(x).Q) + np.sum(np.linalg.qr(x).R) + np.sum(x * 2.0), a)
    np.testing.assert_array_equal(g, np.full(shape, 2.0))


# --- derivatives ------------------------------------------------------------------------------
def test_a_column_and_a_row_have_closed_form_derivatives() -> None:
    """A column a: LAPACK's reflector gives R = s |a| and Q = s a / |a| with s = -sign(a0), so
    dR/da = q^T and dQ/da = s (I - q q^T) / |a|.  A row (1 x n): no reflector (Q = 1, R = a),
    so dR/da = I and dQ/da = 0."""
    a = np.array([[3.0], [-4.0], [12.0]])
    q = -a[:, 0] / 13.0
    np.testing.assert_allclose(np.linalg.qr(a).Q[:, 0], q, rtol=1e-15)
    jq, = pz.jacobian(lambda x: np.linalg.qr(x).Q, a)
    jr, = pz.jacobian(lambda x: np.linalg.qr(x).R, a)
    np.testing.assert_allclose(jr.reshape(3), q, rtol=1e-15)
    np.testing.assert_allclose(jq.reshape(3, 3), -(np.eye(3) - np.outer(q, q)) / 13.0, rtol=1e-14, atol=1e-17)
    row = np.array([[-2.0, 1.0, 5.0]])
    jr, = pz.jacobian(lambda x: np.linalg.qr(x).R, row)
    jq, = pz.jacobian(lambda x: np.linalg.qr(x).Q, row)
    np.testing.assert_array_equal(jr.reshape(3, 3), np.eye(3))
    np.testing.assert_array_equal(jq, np.zeros((1, 1, 1, 3)))


@pytest.mark.parametrize("shape", SHAPES)
def test_jacobians_match_central_differences_of_plain_numpy(shape: tuple[int, int]) -> None:
    a = well_conditioned(shape, seed=2)
    for k, name in enumerate("QR"):
        (jac,) = pz.jacobian(lambda x, k=k: np.linalg.qr(x)[k], a)
        for idx in np.ndindex(*shape):
            t = np.zeros(shape)
            t[idx] = 1.0
            (fd,) = numerical_jvp(lambda x, k=k: np.linalg.qr(x)[k], (a,), (t,))
            np.testing.assert_allclose(jac[(...,) + idx], fd, rtol=1e-7, atol=1e-8, err_msg=f"d{name}/da{idx}")


@pytest.mark.parametrize("shape", SHAPES + [(2, 2, 3)])
def test_gradients_and_hessians_match_finite_differences(shape: tuple[int, ...]) -> None:
    a = well_conditioned(shape, seed=3)
    check_grads(loss, (a,), order=2, engine="numpy")
    if len(shape) == 2:  # the whole Hessian against differences of the gradient
        h = pz.hessian(loss, a)
        eps = 1e-5
        for idx in np.ndindex(*shape):
            t = np.zeros(shape)
            t[idx] = eps
            fd = (pz.gradient(loss, a + t)[0] - pz.gradient(loss, a - t)[0]) / (2 * eps)
            np.testing.assert_allclose(h[(...,) + idx], fd, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(h[(...,) + idx], h[idx], rtol=1e-12, atol=1e-14)  # symmetric


def test_a_stacks_gradient_is_each_matrixs() -> None:
    a = well_conditioned((3, 4, 2), seed=4)
    (g,) = pz.gradient(loss, a)
    for i in range(3):
        np.testing.assert_allclose(g[i], pz.gradient(loss, a[i])[0], rtol=1e-14, atol=1e-15)


def test_float32_derivatives_are_float32_and_close_to_float64s() -> None:
    for shape in ((4, 3), (3, 3), (2, 4)):
        a = well_conditioned(shape, seed=5)
        (g32,) = pz.gradient(loss, a.astype(np.float32))
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, pz.gradient(loss, a)[0], rtol=1e-4, atol=1e-5)
        h32 = pz.hessian(loss, a.astype(np.float32))
        assert h32.dtype == np.float32
        np.testing.assert_allclose(h32, pz.hessian(loss, a), rtol=1e-3, atol=1e-4)


def test_a_least_squares_fit_through_qr_has_lstsqs_gradient() -> None:
    """x = R^-1 Q^T b, the way a QR least-squares solve is written, against lstsq's."""
    a, b = well_conditioned((6, 3), seed=6), np.linspace(-1.0, 2.0, 6)

    def by_qr(m: Any) -> Any:
        q, r = np.linalg.qr(m)
        return np.sum(np.linalg.solve(r, q.T @ b) ** 2)

    def by_lstsq(m: Any) -> Any:
        return np.sum(np.linalg.lstsq(m, b)[0] ** 2)

    np.testing.assert_allclose(pz.gradient(by_qr, a)[0], pz.gradient(by_lstsq, a)[0], rtol=1e-10)


# --- the Julia engine's formulas, transcribed ------------------------------------------------------
def _times_inv(b: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.linalg.solve(r.T, b.T).T  # permutedims(UpperTriangular(R)' \ permutedims(B))


def _times_inv_transpose(b: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.linalg.solve(r, b.T).T  # permutedims(UpperTriangular(R) \ permutedims(B))


def qr_rank_checked(r: np.ndarray) -> np.ndarray:
    """PyZygote.qr_rank_checked: the NumPy engine's check (test_julias_message_is_the_numpy_engines)."""
    from pyzygote.primitives.qr import qr_rank_check_p

    return qr_rank_check_p.impl(r)


def julia_tangent(a: np.ndarray, q: np.ndarray, r: np.ndarray, da: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyZygote._qr_tangent."""
    m, n = a.shape
    if min(m, n) == 0:
        return np.zeros_like(q), np.zeros_like(r)
    if m < n:
        dq, du = julia_tangent(a[:, :m], q, r[:, :m], da[:, :m])
        dv = dq.T @ a[:, m:] + q.T @ da[:, m:]
        return dq, np.hstack([du, dv])
    z = _times_inv(da, qr_rank_checked(r))
    mm = q.T @ z
    low = np.tril(mm, -1)
    omega = low - low.T
    dr = (mm - omega) @ r
    dq = q @ omega + (z - q @ mm) if m > n else q @ omega
    return dq, dr


def julia_cotangent(a: np.ndarray, q: np.ndarray, r: np.ndarray, gq: np.ndarray, gr: np.ndarray) -> np.ndarray:
    """PyZygote._qr_cotangent."""
    m, n = a.shape
    if min(m, n) == 0:
        return np.zeros_like(a)
    if m < n:
        y, gv = a[:, m:], gr[:, m:]
        gx = julia_cotangent(a[:, :m], q, r[:, :m], gq + y @ gv.T, gr[:, :m])
        return np.hstack([gx, q @ gv])
    qr_rank_checked(r)
    mm = r @ gr.T - gq.T @ q
    c = np.tril(mm) + np.tril(mm, -1).T
    return _times_inv_transpose(gq + q @ c, r)


@pytest.mark.parametrize("shape", SHAPES + [(0, 2), (2, 0)])
def test_julias_tangent_and_its_transpose_are_the_numpy_engines(shape: tuple[int, int]) -> None:
    """The rrule's pullback must be the transpose of the dual numbers' tangent: both against
    the NumPy engine's JVP and reverse mode (the cotangent of R's lower triangle, which R does
    not depend on, included: the pullback must ignore it as reverse mode does)."""
    rng = np.random.default_rng(7)
    a = well_conditioned(shape, seed=8)
    da = rng.standard_normal(shape)
    (q, r), (dq, dr) = pz.jvp(lambda x: tuple(np.linalg.qr(x)), (a,), (da,), engine="numpy")
    jq, jr = julia_tangent(a, q, r, da)
    np.testing.assert_allclose(jq, dq, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(jr, dr, rtol=1e-12, atol=1e-13)
    gq, gr = rng.standard_normal(q.shape), rng.standard_normal(r.shape)
    _, back = pz.pullback(lambda x: tuple(np.linalg.qr(x)), a, engine="numpy")
    (want,) = back((gq, gr))
    np.testing.assert_allclose(julia_cotangent(a, q, r, gq, gr), want, rtol=1e-12, atol=1e-13)
    # and the transpose identity itself: <G, J dA> = <J^T G, dA>
    lhs = np.sum(gq * jq) + np.sum(gr * jr)
    assert lhs == pytest.approx(np.sum(julia_cotangent(a, q, r, gq, gr) * da), rel=1e-12, abs=1e-13)


# --- modes and errors -------------------------------------------------------------------------------
def test_modes_r_and_complete_and_numpys_deprecated_full() -> None:
    for shape in ((4, 3), (2, 4), (3, 3)):
        a = well_conditioned(shape, seed=9)
        np.testing.assert_array_equal(traced_qr(a, "r"), traced_qr(a).R)
        np.testing.assert_array_equal(traced_qr(a, "r"), np.linalg.qr(a, mode="r"))
        with pytest.warns(DeprecationWarning, match="'full' option is deprecated"):
            full = traced_qr(a, "full")
        np.testing.assert_array_equal(full.Q, traced_qr(a).Q)
    wide = well_conditioned((2, 4), seed=10)
    complete = traced_qr(wide, "complete")
    assert [x.shape for x in complete] == [x.shape for x in np.linalg.qr(wide, mode="complete")]
    np.testing.assert_array_equal(complete.Q, traced_qr(wide).Q)
    (g,) = pz.gradient(lambda x: np.sum(np.linalg.qr(x, mode="r") ** 2), wide)
    np.testing.assert_allclose(g, pz.gradient(lambda x: np.sum(np.linalg.qr(x).R ** 2), wide)[0], rtol=1e-15)


def test_what_has_no_derivative_or_no_numpy_meaning_is_refused() -> None:
    tall = well_conditioned((4, 2))
    with pytest.raises(pz.UnsupportedOperationError, match="4 x 2 matrix needs mode='reduced'.*2 extra columns of Q.*no derivative"):
        pz.gradient(lambda x: np.sum(np.linalg.qr(x, mode="complete")[0]), tall)
    for mode in ("raw", "economic", "e"):
        with pytest.raises(pz.UnsupportedOperationError, match=f"mode='{mode}'.*mode='reduced'"):
            pz.gradient(lambda x, mode=mode: np.sum(np.linalg.qr(x, mode=mode)[0]), tall)
    with pytest.raises(ValueError, match="Unrecognized mode 'thin'"):
        pz.gradient(lambda x: np.sum(np.linalg.qr(x, mode="thin")[0]), tall)
    with pytest.raises(np.linalg.LinAlgError, match="1-dimensional array given"):
        pz.gradient(lambda x: np.sum(np.linalg.qr(x)[0]), tall[:, 0])
    with pytest.raises(TypeError, match="float16 is unsupported in linalg"):
        pz.make_program(lambda x: np.linalg.qr(x), tall.astype(np.float16))
    assert "numpy.linalg.qr" in pz.numpy_api.supported_names()
    import scipy.linalg

    with pytest.raises(pz.UnsupportedOperationError, match=r"scipy.linalg.qr was called on a traced value.*np.linalg.qr\(A\), the thin factors"):
        pz.gradient(lambda x: np.sum(scipy.linalg.qr(x)[0]), tall)


def test_rank_deficient_matrices_factor_but_every_derivative_refuses() -> None:
    """User testing: A[:, 1] = 2 A[:, 0] gave R[1, 1] = 2.8e-16 from rounding and a gradient of
    np.sum(R ** 2) (= |A|^2) of noise, [-0.341, 0.799, 1.281] for 2 A[0] = [0.2515, 0.5029, 1.2808],
    with Q in the loss gradients of 1e15, and an exactly zero column numpy's bare "Singular
    matrix" from the solve with R.  The values stay numpy's; the derivatives name qr and the column."""
    rng = np.random.default_rng(0)
    dependent = rng.standard_normal((3, 3))
    dependent[:, 1] = 2.0 * dependent[:, 0]
    cases = [
        (dependent, 1),
        (np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]), 1),
        (np.array([[0.0, 1.0], [0.0, 1.0]]), 0),
        (np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 1.0]]), 0),  # wide: its first 2 columns are rank 1
        (np.array([[1e-310, 0.5], [0.0, 1.0]]), 0),  # 1 / R[0, 0] overflowed to inf before
    ]
    for a, column in cases:
        q, r = traced_qr(a)
        np.testing.assert_array_equal(q, np.linalg.qr(a).Q)
        np.testing.assert_array_equal(r, np.linalg.qr(a).R)
        sum_r2 = lambda x: np.sum(np.linalg.qr(x).R ** 2)  # noqa: E731
        for derivative in (
            lambda: pz.gradient(loss, a),
            lambda: pz.gradient(sum_r2, a),
            lambda: pz.jvp(loss, (a,), (np.ones_like(a),)),
            lambda: pz.hessian(loss, a),
            lambda: pz.jacobian(lambda x: np.linalg.qr(x).Q, a),
        ):
            with pytest.raises(np.linalg.LinAlgError, match=rf"np.linalg.qr has no derivative here: R\[{column}, {column}\] = .* zero to working precision.*column {column} of A is a combination of the columns before it and A is rank deficient.*np.sum\(R \*\* 2\) is np.sum\(A \*\* 2\)"):
                derivative()
    # a matrix 1e-12 away from that one has a derivative, accurate to rounding / R[1, 1]
    near = dependent.copy()
    near[0, 1] += 1e-12
    assert abs(np.linalg.qr(near).R[1, 1]) > 5e-13
    np.testing.assert_allclose(pz.gradient(lambda x: np.sum(np.linalg.qr(x).R ** 2), near)[0], 2.0 * near, rtol=0, atol=1e-3)
    near[0, 1] += 1e-8
    np.testing.assert_allclose(pz.gradient(lambda x: np.sum(np.linalg.qr(x).R ** 2), near)[0], 2.0 * near, rtol=0, atol=1e-7)
    # NaN in the data reaches qr: the message names it, and the entry
    nan = np.array([[0.0, np.nan], [0.0, 0.0], [0.0, 0.0]])
    with pytest.raises(pz.NonFiniteGradientError, match=r"np.linalg.qr meets NaN in its input, entry \[0, 1\]"):
        pz.gradient(lambda x: np.linalg.qr(x + nan).R[0, 0], np.eye(3, 2))


def test_the_rank_threshold_is_relative_to_the_columns_norm() -> None:
    """Refused exactly where |R[j, j]| <= max(m, n) eps |R[:, j]| (the norm of column j of A);
    float32 with float32's eps."""
    from pyzygote.primitives.qr import rank_deficient_column

    for dtype in (np.float64, np.float32):
        eps = np.finfo(dtype).eps
        for scale in (1.0, 1e-200 if dtype == np.float64 else 1e-20):
            r = np.array([[2.0, 1.0, 0.5], [0.0, 1.0, 0.25], [0.0, 0.0, 0.0]], dtype) * dtype(scale)
            tol = 3 * eps * np.hypot(0.5, 0.25) * dtype(scale)
            for value, refused in ((tol * 0.99, True), (tol * 1.5, False), (-tol * 0.99, True), (0.0, True)):
                r[2, 2] = value
                found = rank_deficient_column(r)
                assert (found is not None and found[0] == 2) == refused, (dtype, scale, value)


def test_columns_of_very_different_norms_are_not_rank_deficient() -> None:
    """A D, D a positive diagonal, has the factors Q and R D: its derivatives are those of A's,
    scaled, however different D's entries (found in review: diag(1e16, 1), full rank, was refused
    by a bound relative to max|R|, as np.linalg.matrix_rank calls it rank 1)."""
    rng = np.random.default_rng(3)
    q_loss_weights = {}
    for shape, d in (((3, 3), [1e16, 1.0, 1e-9]), ((4, 3), [1.0, 1e-12, 1e8]), ((2, 4), [1e16, 1.0, 1e-9, 1e5])):
        b = rng.standard_normal(shape)
        w = q_loss_weights.setdefault(shape, rng.standard_normal((shape[0], min(shape))))
        d = np.array(d)
        loss = lambda x, w=w: np.sum(w * np.linalg.qr(x).Q)  # noqa: E731
        g_b = pz.gradient(loss, b)[0]
        g_a = pz.gradient(loss, b * d)[0]
        np.testing.assert_allclose(g_a * d, g_b, rtol=0, atol=1e-13 * np.max(np.abs(g_b)))
    a = np.diag([1e16, 1.0])
    np.testing.assert_array_equal(pz.gradient(lambda x: np.linalg.qr(x).R[1, 1], a)[0], [[0.0, 0.0], [0.0, 1.0]])
    # a column within rounding of its predecessor's span, relative to its own norm, is refused
    with pytest.raises(np.linalg.LinAlgError, match=r"R\[1, 1\] = .* the norm of column 1 of A"):
        pz.gradient(lambda x: np.linalg.qr(x).R[1, 1], np.array([[1e16, 2e16], [1.0, 3.0]]))


def test_julias_rank_check_and_message_are_the_numpy_engines() -> None:
    """PyZygote.qr_rank_checked builds the NumPy engine's message from string literals (Julia
    cannot run here): its text, with the numbers put in, must be the NumPy engine's, and its
    bound the same expression."""
    import re
    from pathlib import Path

    from pyzygote.primitives.qr import rank_deficiency_message

    source = (Path(__file__).resolve().parents[1] / "julia_src" / "src" / "PyZygote.jl").read_text()
    body = source[source.index("function _qr_rank_message(j, value, tol)") :]
    body = body[: body.index("\nend\n")]
    template = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body))
    assert template.replace("$j", "1").replace("$v", "2.8e-16").replace("$t", "6.66e-16") == rank_deficiency_message(1, 2.8e-16, 6.66e-16)
    check = source[source.index("function qr_rank_checked(R::AbstractMatrix)") :]
    assert "tol = maximum(size(V)) * max(eps(T) * LinearAlgebra.norm(view(V, :, j)), floatmin(T))" in " ".join(check.split()) and "if abs(V[j, j]) <= tol" in check
    assert "_qr_rank_message(j - 1, V[j, j], tol)" in check  # 0-based, as numpy counts

"""x[mask] with a traced mask (pyzygote/selection.py): values, derivatives and refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.testing import check_grads, numerical_gradient

X = np.array([-1.0, 2.0, 3.0, -0.5, 0.2, 1.5])
M = np.array([[0.3, -1.2, 0.8], [-0.7, 0.4, 1.1], [1.3, 0.9, -0.2], [-0.4, -1.5, 0.6]])


def _scaled_in_place(x):
    v = x * 1.0
    v[x < 0] *= -2.0  # a reflecting boundary: v[pos < 0] *= -1
    v[v > 2.5] += 1.0
    return np.sum(v**3)


def _assigned_back(x):
    y = x * 1.0
    y[y > 0] = np.sqrt(y[y > 0]) * x[0]  # the mask is computed twice, alike
    return np.sum(y * np.arange(x.size))


def _rows(m):
    keep = m[:, 0] > 0
    return np.sum(m[keep] ** 2, axis=0) @ np.array([1.0, 2.0, 3.0]) + np.mean(m[keep], axis=0).sum() + m[keep].sum(axis=1).sum()


def _rows_in_place(m):
    y = m * 1.0
    keep = m[:, 1] > 0
    y[keep] *= np.array([1.0, 2.0, 3.0])  # an array of one selected entry's shape
    y[keep] = y[keep] - m[keep] * 0.5
    return np.sum(y**2)


CASES = {
    "sum-of-squares": (lambda x: np.sum(x[x > 0] ** 2), X),
    "mean": (lambda x: np.mean(x[x > 0]), X),
    "log": (lambda x: np.sum(np.log(x[x > 0])), X),
    "methods": (lambda x: x[x < 0].sum() * 3 + x[x > 0].mean() + x[x > 0].prod(), X),
    "var-std": (lambda x: np.var(x[x > 0]) + x[x > -2].std(ddof=1), X),
    "norm": (lambda x: np.linalg.norm(x[x > 0.1]), X),
    "nansum": (lambda x: np.nansum(np.sqrt(x[x > -0.6] + 0.7)), X),
    "in-place": (_scaled_in_place, X),
    "assigned-back": (_assigned_back, X),
    "rows": (_rows, M),
    "rows-in-place": (_rows_in_place, M),
    "two-selections-one-mask": (lambda x: np.sum(x[x > 0] * np.exp(x)[x > 0]), X),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_selection_values_and_gradients_match_numpy_and_finite_differences(name: str) -> None:
    f, x = CASES[name]
    value, (g,) = pz.withgradient(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-13)
    np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-6, atol=1e-8)
    check_grads(f, (x,), engine="numpy")


def test_the_trace_holds_for_any_mask_the_data_give() -> None:
    f = lambda x: np.sum(np.log(x[x > 0])) + np.mean(x[x > 0] ** 2)  # noqa: E731
    for x in (X, -X, np.abs(X), np.array([3.0, -1.0, -2.0, 0.5, 4.0, -0.1])):
        value, (g,) = pz.withgradient(f, x)
        np.testing.assert_allclose(value, f(x), rtol=1e-13)
        np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-6, atol=1e-8)


def test_entries_left_out_put_no_nan_into_derivatives() -> None:
    x = np.array([0.0, -1.0, 4.0, 0.0])  # log and sqrt are infinite or NaN outside the selection
    f = lambda x: np.sum(np.log(x[x > 0])) + np.sum(np.sqrt(x[x > 0]) / x[x > 0])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        (g,) = pz.gradient(f, x)
    np.testing.assert_allclose(g, [0.0, 0.0, 0.25 - 0.5 * 4.0**-1.5, 0.0], rtol=1e-14)


def test_an_empty_selection_sums_to_zero_and_has_a_nan_mean_as_in_numpy() -> None:
    x = -np.abs(X)
    np.testing.assert_array_equal(pz.make_program(lambda x: np.sum(x[x > 0] ** 2), x)(x)[0], 0.0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(np.mean(x[x > 0]))
        assert np.isnan(pz.make_program(lambda x: np.mean(x[x > 0]), x)(x)[0])


def test_forward_mode_and_hessians_go_through_selections() -> None:
    f = lambda x: np.sum(x[x > 0] ** 3)  # noqa: E731
    h = pz.hessian(f, X)
    np.testing.assert_allclose(h, np.diag(np.where(X > 0, 6 * X, 0.0)), rtol=1e-14)
    t = np.arange(X.size, dtype=float)
    _, tangent = pz.jvp(f, (X,), (t,))
    np.testing.assert_allclose(tangent, np.sum(np.where(X > 0, 3 * X**2 * t, 0.0)), rtol=1e-14)


def test_float32_stays_float32() -> None:
    x = X.astype(np.float32)
    for f in (lambda x: np.sum(x[x > 0] * 0.5), lambda x: np.mean(x[x > 0]), _scaled_in_place):
        (got,) = pz.make_program(f, x)(x)
        assert np.asarray(got).dtype == np.asarray(f(x)).dtype == np.float32
        np.testing.assert_allclose(got, f(x), rtol=1e-6)


@pytest.mark.parametrize(
    ("f", "match"),
    [
        (lambda x: np.max(x[x > 0]), r"np.max\(np.where\(mask, x, -np.inf\)\)"),
        (lambda x: x[x > 0].min(), "numpy raises when no entry is True"),
        (lambda x: x[x > 0].shape[0] * 1.0, "the shape of x\\[mask\\]"),
        (lambda x: len(x[x > 0]) * 1.0, "len()"),
        (lambda x: x[x > 0][0], "indexing"),
        (lambda x: np.dot(x[x > 0], x[x > 0]), "numpy.dot"),
        (lambda x: x @ x[x > 0], "numpy.matmul"),
        (lambda x: np.sum(x[x > 0] * x[x < 1]), "two different traced masks"),
        (lambda x: np.sum(x[x > 0] * np.ones(6)), r"an array of shape \(6,\) cannot be combined"),
        (lambda x: np.sum(np.cumsum(x[x > 0])), "numpy.cumsum"),
    ],
)
def test_what_needs_the_count_is_refused_with_the_np_where_form(f, match) -> None:
    with pytest.raises(pz.UnsupportedOperationError, match=match):
        pz.gradient(f, X)


def test_assigning_a_selection_through_another_mask_is_refused() -> None:
    def f(x):
        y = x * 1.0
        y[x > 0] = x[x < 1] * 2.0
        return np.sum(y)

    with pytest.raises(pz.UnsupportedOperationError, match="selected entries need not line up"):
        pz.gradient(f, X)


def test_a_mask_that_does_not_fit_the_array_raises_index_error() -> None:
    with pytest.raises(IndexError, match="does not match the indexed array"):
        pz.gradient(lambda m: np.sum(m[m[0] > 0]), M)


def test_keepdims_along_an_entrys_axes_and_per_row_norms() -> None:
    """Found by the adversarial round: keepdims was dropped there, so a 3 x 3 selection
    broadcast along the wrong axis with no error."""
    X = np.arange(1.0, 10.0).reshape(3, 3) * np.array([[1.0], [-1.0], [1.0]])

    def normalize(x):
        s = x[x[:, 0] > 0]
        y = x * 1.0
        y[x[:, 0] > 0] = s / s.sum(axis=1, keepdims=True) - s.mean(axis=1, keepdims=True) + s.var(axis=1, keepdims=True)
        return np.sum(y**2) + np.sum(np.linalg.norm(x[x[:, 0] > 0], axis=-1))

    value, (g,) = pz.withgradient(normalize, X)
    np.testing.assert_allclose(value, normalize(X), rtol=1e-13)
    np.testing.assert_allclose(g, numerical_gradient(normalize, X)[0], rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="selected entries of shapes"):
        pz.gradient(lambda x: np.sum(x[x[:, 0] > 0] * x[:, :2][x[:, 0] > 0]), X)
    with pytest.raises(pz.UnsupportedOperationError, match="would broadcast the selected axis"):
        pz.gradient(lambda x: np.sum(x[x[:, 0] > 0] * x[:, 0][x[:, 0] > 0]), X)


def test_norm_orders_of_selections_follow_numpy_or_are_refused() -> None:
    X = np.arange(1.0, 10.0).reshape(3, 3)
    with pytest.raises(pz.UnsupportedOperationError, match="ord=2"):
        pz.gradient(lambda x: np.linalg.norm(x[x[:, 0] > 0], 2), X)  # the spectral norm
    with pytest.raises(ValueError, match="Invalid norm order 'fro' for vectors"):
        pz.gradient(lambda x: np.linalg.norm(x[x > 0], "fro"), X[0])
    f = lambda x: np.linalg.norm(x[x[:, 0] > 1], "fro")  # noqa: E731
    np.testing.assert_allclose(pz.withgradient(f, X)[0], f(X), rtol=1e-14)


def test_a_selection_is_taken_when_it_is_made() -> None:
    """Found by the adversarial round: changing the mask in place afterwards moved the selection."""

    def f(x):
        m = x > 1.5
        s = x[m]
        m &= x < 4  # numpy's s is already a copy
        t = x[m]
        m[:] = True
        return np.sum(s**2) + 10.0 * np.sum(t) + np.sum(x[m])

    x = np.array([1.0, 2.0, 3.0, 4.5, 5.0])
    value, (g,) = pz.withgradient(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-14)
    np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-7)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.sum(((x[x > 0] > 2) & (x[x > 0] < 4)) * x[x > 0]),
        lambda x: np.sum(~(x[x > 0] > 2) * x[x > 0]),
        lambda x: np.sum(x[x > 0] // 2 + x[x > 0] % 2),
        lambda x: np.sum(np.stack(divmod(x[x > 0] + 0.05, 1.5)) if False else divmod(x[x > 0] + 0.05, 1.5)[1]),
        lambda x: np.sum(np.clip(x[x > 0], 1.5, 3.5) + x[x > 0].clip(0.0, 2.0)),
        lambda x: np.sum(np.round(x[x > 0] ** 2, 1) * x[x > 0]),
        lambda x: np.sum(np.where(x[x > 0] > 2, x[x > 0], 0.0)),
    ],
)
def test_elementwise_functions_and_operators_of_selections(f) -> None:
    """Found by the adversarial round: these raised or were refused as needing the count."""
    x = np.array([-1.0, 1.2, 2.6, 3.1, -0.4, 4.7])
    value, (g,) = pz.withgradient(f, x)
    np.testing.assert_allclose(value, f(x), rtol=1e-14)
    np.testing.assert_allclose(g, numerical_gradient(f, x)[0], rtol=1e-6, atol=1e-9)


def test_assigning_through_a_mask_takes_extra_leading_size_one_dimensions() -> None:
    def f(m):
        y = m * 1.0
        y[m[:, 0] > 0] = np.ones((1, 1, 3)) * m[0, 0]
        return y

    np.testing.assert_array_equal(pz.make_program(f, M)(M)[0], f(M.copy()))


def test_masks_computed_alike_through_reused_values_compare_quickly() -> None:
    """Found in review: comparing two masks computed alike visited 2 ** depth paths when a value
    was used twice (z * z)."""

    def mask_of(y):
        z = y
        for _ in range(15):  # 30 equations deep, each value used twice
            z = z * z - z
        return z > 0.01

    def f(x):
        y = x * 1.0
        y[mask_of(y)] = np.sqrt(np.abs(y[mask_of(y)]))
        return np.sum(y)

    x = np.array([0.3, -0.2, 0.5, 0.1])
    np.testing.assert_allclose(pz.make_program(f, x)(x)[0], f(x.copy()), rtol=1e-14)


def test_arrays_with_more_dimensions_than_an_entry_are_refused_and_arccosh_does_not_warn() -> None:
    """Found in review: a (1, 1) array made numpy's result 2-D, which the selection did not."""
    import warnings

    with pytest.raises(pz.UnsupportedOperationError, match=r"an array of shape \(1, 1\) cannot be combined"):
        pz.gradient(lambda x: np.sum(np.mean(x[x > 0] - x.mean(keepdims=True)[None], axis=0)), X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = pz.gradient(lambda x: np.sum(np.arccosh(x[x > 1])), X)
    np.testing.assert_allclose(g, np.where(X > 1, 1 / np.sqrt(np.maximum(X**2 - 1, 1e-300)), 0.0), rtol=1e-12)
    with pytest.raises(pz.UnsupportedOperationError, match=r"\.T of x\[mask\]"):
        pz.gradient(lambda x: np.sum(x[x > 0].T), X)


def test_a_mask_over_every_axis_takes_at_most_a_one_dimensional_value_as_in_numpy() -> None:
    def f(m, value):
        y = m * 1.0
        y[m > 0] = value
        return y

    with pytest.raises(TypeError, match="requires a 0 or 1-dimensional input"):
        f(M.copy(), np.ones((1, 1, 1)))
    with pytest.raises(TypeError, match="requires a 0 or 1-dimensional input"):
        pz.make_program(lambda m: f(m, np.ones((1, 1, 1)) * m[0, 0]), M)


def test_average_nanmean_and_matmul_of_a_selection() -> None:
    """Found by the fuzzer: np.average and np.nanmean of x[mask] were refused although mean and
    nansum work, and s @ s gave a bare TypeError."""
    x = np.array([0.3, -0.2, 0.9, np.nan, 0.5])
    w = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    cases = [
        lambda x: np.average(x[x > 0]),
        lambda x: np.average(x[x > 0], weights=(x * 0 + w)[x > 0]),
        lambda x: np.nanmean(x[~(x < 0)]),
    ]
    for f in cases:
        with np.errstate(invalid="ignore"):
            value, (g,) = pz.withgradient(f, x)
            want = f(x)
            fd = numerical_gradient(lambda v: f(np.where(np.isnan(x), np.nan, v)), np.nan_to_num(x))[0]
        assert value == pytest.approx(want, rel=1e-15)
        np.testing.assert_allclose(g, np.where(np.isnan(x), 0.0, fd), rtol=1e-7, atol=1e-9)
    with pytest.raises(pz.UnsupportedOperationError, match="@ \\(np.matmul\\) of x\\[mask\\]"):
        pz.gradient(lambda x: x[x > 0] @ x[x > 0], np.ones(3))

"""numpy functions traced as compositions of primitives: values and derivatives."""

from __future__ import annotations

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.testing import check_grads

X = np.array([[0.3, -1.2, 2.0], [1.1, 0.4, -0.7]])


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_var_and_std_match_numpy_and_finite_differences(axis, ddof):
    for fn in (np.var, np.std):
        f = lambda x, fn=fn: fn(x, axis=axis, ddof=ddof)  # noqa: E731
        np.testing.assert_allclose(pz.make_program(f, X)(X)[0], fn(X, axis=axis, ddof=ddof), rtol=1e-14)
        check_grads(f, (X,), engine="numpy")
        check_grads(lambda x: np.sum(f(x) ** 2), (X,), order=2, engine="numpy")


def test_linspace_with_traced_endpoints():
    f = lambda a, b: np.linspace(a, b, 7)  # noqa: E731
    np.testing.assert_allclose(pz.make_program(f, 0.5, 2.0)(np.float64(0.5), np.float64(2.0))[0], np.linspace(0.5, 2.0, 7), rtol=1e-15)
    da, db = pz.jacobian(f, 0.5, 2.0, engine="numpy")
    frac = np.linspace(0.0, 1.0, 7)
    np.testing.assert_allclose(da, 1.0 - frac, atol=1e-15)
    np.testing.assert_allclose(db, frac, atol=1e-15)
    with pytest.raises(NotImplementedError, match="scalar start and stop"):
        pz.make_program(lambda a: np.linspace(a, a + 1.0, 3), np.ones(2))


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(n=2), dict(axis=0), dict(n=2, axis=-1, prepend=0.5), dict(axis=0, append=np.array([[1.0, 2.0, 3.0]]))],
    ids=["first", "second", "axis0", "prepend", "append"],
)
def test_diff_matches_numpy_and_finite_differences(kwargs):
    f = lambda x: np.diff(x, **kwargs)  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(f, X)(X)[0], f(X))
    check_grads(f, (X,), engine="numpy")

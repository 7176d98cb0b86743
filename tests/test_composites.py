"""numpy functions traced as compositions of primitives: values and derivatives."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.special as sc

import pyzygote as pz
from pyzygote.tracer import Tracer
from pyzygote.testing import check_grads, numerical_gradient

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


# --- numpy functions written over other functions (pyzygote/primitives/composites.py) ----------
R = np.random.default_rng(3)
V = np.array([0.3, 1.2, -0.7, 2.0, -1.4])  # no ties, no zeros, no integers
M = R.uniform(0.5, 1.5, (3, 4))
XP = np.array([0.0, 0.5, 1.5, 2.0, 3.5])  # uneven grid

COMPOSITE_CASES = {
    "trapezoid-dx": (lambda y: np.trapezoid(y**2, dx=0.5), (V,)),
    "trapezoid-x": (lambda y: np.trapezoid(np.sin(y), XP), (V,)),
    "trapezoid-traced-x-axis0": (lambda x, y: np.trapezoid(y, x, axis=0), (XP, R.uniform(-1, 1, (5, 3)))),
    "average": (lambda a: np.average(a, axis=1, weights=np.arange(1.0, 5.0)), (M,)),
    "average-traced-weights": (lambda a, w: np.average(a, weights=w), (M, M**2)),
    "average-returned": (lambda a: np.average(a, axis=0, returned=True)[0], (M,)),
    "logaddexp": (lambda x, y: np.logaddexp(x, y), (V, V[::-1] * 0.9)),
    "logaddexp2": (lambda x: np.logaddexp2(x, 0.25), (V,)),
    "logaddexp-number": (lambda x: np.logaddexp(x, 0.5), (V,)),
    "ediff1d-ends": (lambda x: np.ediff1d(x, to_end=1.0, to_begin=[2.0, 3.0]), (V,)),
    "linspace-traced": (lambda x: np.linspace(x[0], x[1], 5), (V,)),
    "deg2rad-rad2deg": (lambda x: np.sin(np.deg2rad(x * 40.0)) + np.radians(x) + np.rad2deg(x) + np.degrees(x), (V,)),
    "heaviside": (lambda x: np.heaviside(x, 0.5) * x, (V,)),
    "sinc": (lambda x: np.sinc(x) + np.sinc(x * 0.02), (V,)),
    "nan_to_num": (lambda x: np.nan_to_num(np.log(x)), (np.abs(V),)),
    "select": (lambda x: np.select([x < 0, x > 1.5], [x**2, np.sin(x)], default=x), (V,)),
    "isclose": (lambda x: np.where(np.isclose(x, 1.2), 0.0, x**2), (V,)),
    "any-all": (lambda x: np.where(np.any(x > 1.1, axis=1, keepdims=True), x, -x) + np.where((x < 1.4).all(axis=0), x**2, 0.0) + np.where(np.all(x > 0), 1.0, 2.0), (M,)),
    "round-builtin": (lambda x: round(x[0] * 3.3) * x + round(x[1], 1), (V,)),
    "cumprod": (lambda x: np.cumprod(x), (V,)),
    "cumprod-axis": (lambda x: np.cumprod(x, axis=0), (M,)),
    "maximum-accumulate": (lambda x: np.maximum.accumulate(x), (V,)),
    "minimum-accumulate-axis1": (lambda x: np.minimum.accumulate(x, axis=1), (M,)),
    "multiply-accumulate": (lambda x: np.multiply.accumulate(x), (M,)),
    "cumulative_sum-prod": (lambda x: np.cumulative_sum(x, axis=1, include_initial=True)[:, 1:] * np.cumulative_prod(x, axis=0) + np.cumulative_sum(x[0]), (M,)),
    "cumulative-initial": (lambda x: np.cumulative_prod(x, include_initial=True) + np.cumulative_sum(x, axis=-1, include_initial=True), (V,)),
    "nancumsum-nancumprod": (lambda x: np.nancumsum(x, axis=1) * np.nancumprod(x, axis=0) + np.nancumsum(x[0]), (M,)),
    "polyval": (lambda p, x: np.polyval(p, x), (V, M)),
    "gradient-even": (lambda f: np.gradient(f**2, 0.5), (V,)),
    "gradient-uneven-edge2": (lambda f: np.gradient(f**2, XP, edge_order=2), (V,)),
    "gradient-2d": (lambda f: np.stack(np.gradient(np.sin(f), 0.3, 2.0)), (M,)),
    "gradient-axis": (lambda f: np.gradient(f, axis=-1, edge_order=2), (M,)),
    "ediff1d": (lambda x: np.ediff1d(x, to_begin=x[0], to_end=[1.0, 2.0]), (M,)),
    "interp-constant-positions": (lambda fp: np.interp(np.array([-1.0, 0.0, 0.2, 1.5, 1.7, 3.5, 4.0]), XP, fp), (V,)),
    "interp-traced-positions": (lambda x: np.interp(x, XP, np.cos(XP)), (np.array([-0.3, 0.25, 1.0, 1.9, 2.7, 3.9]),)),
    "interp-traced-everything": (lambda x, fp: np.interp(x, XP, fp), (np.array([0.25, 1.0, 2.7]), V)),
    "interp-left-right": (lambda fp: np.interp(np.array([-1.0, 0.0, 3.5, 4.0]), XP, fp, left=-7.0, right=9.0) + np.interp(np.array([3.5, 4.0]), XP, fp, right=9.0).sum(), (V,)),
    "atleast_2d-3d": (lambda x: np.atleast_2d(x) * np.atleast_3d(x)[0].T, (V,)),
    "column_stack-dstack": (lambda x: np.column_stack([x, x**2]) * np.dstack([x, x])[0], (V,)),
    "append": (lambda x, y: np.append(x, y**2) + np.append(x, y, axis=None).sum(), (V, M)),
    "append-axis": (lambda x: np.append(x, x[:1] * 2.0, axis=0), (M,)),
    "delete": (lambda x: np.delete(x, [0, 2], axis=1) ** 2, (M,)),
    "meshgrid": (lambda x, y: sum(np.meshgrid(x, y**2)), (V, M[0])),
    "meshgrid-ij-sparse": (lambda x, y: np.sum(np.meshgrid(x, y, indexing="ij", sparse=True)[1]), (V, M[0])),
    "split": (lambda x: np.split(x, 2, axis=1)[1] * np.array_split(x, 3, axis=1)[0][:, :1], (M,)),
    "hsplit-vsplit": (lambda x: np.hsplit(x, [1, 3])[1] * np.vsplit(x, [2])[1][:, :2], (M,)),
    "pad-constant": (lambda x: np.pad(x, ((1, 0), (2, 1)), constant_values=0.5), (M,)),
    "pad-modes": (lambda x: np.concatenate([np.pad(x, 2, mode=m) for m in ("edge", "wrap", "reflect", "symmetric")]), (M,)),
    "kron": (lambda a, b: np.kron(a, b), (M[:2, :2], M[:, 1:])),
    "kron-vectors": (lambda a: np.kron(a, np.array([1.0, -2.0])), (V,)),
    "cross-3": (lambda a, b: np.cross(a, b), (R.uniform(-1, 1, (4, 3)), np.array([0.3, -1.0, 2.0]))),
    "cross-2": (lambda a, b: np.cross(a, b), (R.uniform(-1, 1, (4, 2)), R.uniform(-1, 1, (4, 2)))),
    "cross-axis": (lambda a: np.cross(a, a**2, axis=0), (M[:, :3],)),
    "einsum-one-operand": (lambda a: np.einsum("ii->i", a[:, :3]) + np.einsum("ij->", a) + np.einsum("ii", a[:, 1:]), (M,)),
    "einsum-ellipsis": (lambda a, b: np.einsum("...ij,...jk->...ik", a, b) + np.einsum("...j,j", a, b[0, :, 0])[..., None], (R.uniform(-1, 1, (2, 3, 4)), R.uniform(-1, 1, (2, 4, 3)))),
    "einsum-three": (lambda a, b, c: np.einsum("ij,jk,k->i", a, b, c), (M, M.T, V[:3])),
    "einsum-four-implicit": (lambda a, b: np.einsum("i,ij,jk,k", a, b, b.T, a), (V[:3], M)),
    "arc-hyperbolic": (lambda x: np.arcsinh(x) + np.arctanh(x / 3.0) + np.arccosh(x**2 + 1.5), (V,)),
    "multi_dot": (lambda a, v: np.linalg.multi_dot([v[:3], a, a.T, a]), (M, V)),
    "matrix_power": (lambda a: sum(np.linalg.matrix_power(a[:, :3], n) for n in (0, 1, 2, 5, -1, -3)), (M + 2.0 * np.eye(3, 4),)),
    "convolve-modes": (lambda a, v: np.concatenate([np.convolve(a, v[:3], m) for m in ("full", "same", "valid")] + [np.convolve(v[:2], a, "same")]), (V, M[0])),
    "convolve-long-kernel": (lambda a, v: np.concatenate([np.convolve(a, v, m) for m in ("full", "same", "valid")]), (R.uniform(-1, 1, 23), R.uniform(-1, 1, 12))),
    "correlate-modes": (lambda a, v: np.concatenate([np.correlate(a, v, m) for m in ("full", "same", "valid")] + [np.correlate(v[:2], a, m) for m in ("full", "same")]), (V, M[0, :2])),
    "correlate-constant-kernel": (lambda a: np.correlate(a, np.hanning(11), "same") + np.correlate(np.arange(2.0), a, "full")[:14], (R.uniform(-1, 1, 14),)),
    "cov": (lambda x: np.cov(x) + np.cov(x, bias=True) + np.cov(x, ddof=2), (M,)),
    "cov-columns-and-y": (lambda x, y: np.cov(x, y, rowvar=False), (M.T, R.uniform(-1, 1, (4, 2)))),
    "cov-one-row-by-columns": (lambda x: np.cov(x[:1], rowvar=False, bias=True)[0] + np.cov(x[0], x[1], rowvar=False).sum(), (M,)),
    "cov-whole-float-fweights": (lambda x: np.cov(x, fweights=np.array([1.0, 3.0, 2.0, 1.0])), (M,)),
    "cov-weights": (lambda x: np.cov(x, fweights=np.array([1, 3, 2, 1]), aweights=np.array([0.5, 1.0, 2.0, 0.7])) + np.cov(x, aweights=x[0] ** 2), (M,)),
    "cov-1d": (lambda x: np.cov(x) + np.cov(x, x**2)[0, 1], (V,)),
    "corrcoef": (lambda x: np.corrcoef(x), (M,)),
    "corrcoef-pair": (lambda q, o: np.corrcoef(q, o)[0, 1], (V, np.array([0.1, 1.7, -0.2, 1.5, -0.3]))),
    # order statistics and traced positions (pyzygote/primitives/traced_indexing.py)
    "sort": (lambda x: np.sort(x, axis=0) * np.sort(x, axis=None)[:4], (M,)),
    "median": (lambda x: np.median(x) + np.median(x, axis=1, keepdims=True), (M,)),
    "median-even": (lambda x: np.median(x[:4]), (V,)),
    "quantile-percentile": (lambda x: np.quantile(x, [0.0, 0.3, 1.0], axis=1) + np.percentile(x, 65.0, axis=1), (M,)),
    "argmax-index": (lambda x: x[np.argmax(x)] * x + x[np.argmin(x)], (V,)),
    "take-along-axis": (lambda x: np.take_along_axis(x, np.argsort(-x, axis=1)[:, :2], axis=1), (M,)),
    "take-traced": (lambda x: np.take(x, np.argsort(x[0]), axis=1), (M,)),
    "index-from-floor": (lambda x, t: x[np.floor(t * 2.0).astype(int)] * t, (V, np.float64(1.3))),
    # scipy.special's ufuncs (pyzygote/primitives/scipy_special.py)
    "gamma": (lambda x: sc.gamma(x) + sc.gamma(1.0 + 1.0 / (x**2 + 0.5)), (V,)),
    "expit": (lambda x: sc.expit(x * 3.0), (V,)),
    "log_expit": (lambda x: sc.log_expit(x * 3.0), (V,)),
    "logit": (lambda p: sc.logit(p), (M / 2.0,)),
    "xlogy": (lambda x, y: sc.xlogy(x, y), (V, M[0, :1] * V**2)),
    "xlog1py": (lambda x, y: sc.xlog1py(x, y), (V, np.abs(V))),
}


@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors are deprecated")
@pytest.mark.parametrize("name", sorted(COMPOSITE_CASES))
def test_composite_matches_numpy_and_finite_differences(name: str) -> None:
    f, args = COMPOSITE_CASES[name]
    got = pz.make_program(f, *args)(*args)
    want = f(*args)
    assert len(got) == 1
    np.testing.assert_allclose(got[0], want, rtol=1e-13, atol=1e-15)
    assert got[0].dtype == np.asarray(want).dtype
    check_grads(f, args, engine="numpy")
    check_grads(lambda *a: np.sum(np.sin(f(*a))), args, order=2, engine="numpy")


@pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors are deprecated")
@pytest.mark.parametrize("name", sorted(COMPOSITE_CASES))
def test_composite_keeps_float32_as_numpy_does(name: str) -> None:
    """Found by the differential fuzzer: a Python float or a float64 constant inside some
    compositions (heaviside, logaddexp, ediff1d, linspace, gradient) made float32 values float64."""
    f, args = COMPOSITE_CASES[name]
    args = tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in args)
    with np.errstate(all="ignore"):
        want = np.asarray(f(*args))
    (got,) = pz.make_program(f, *args)(*args)
    assert np.asarray(got).dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_logaddexp_is_exact_at_ties_and_infinities() -> None:
    # Hessian of softplus at 0 is 1/4; an average of the two branches at the tie would give 0.
    h = pz.hessian(lambda x: np.sum(np.logaddexp(x, 0.0)), np.zeros(2))
    np.testing.assert_allclose(h, np.diag([0.25, 0.25]), rtol=1e-15)
    (g,) = pz.gradient(lambda x: np.sum(np.logaddexp(x, x)), np.array([1.0, -3.0]))
    np.testing.assert_allclose(g, [1.0, 1.0], rtol=1e-15)
    x = np.array([-np.inf, np.inf, -40.0, 0.0])
    y = np.array([-np.inf, np.inf, 0.0, -40.0])
    np.testing.assert_array_equal(pz.make_program(np.logaddexp, x, y)(x, y)[0], np.logaddexp(x, y))
    tiny = np.array([-40.0])  # softplus(-40) = 4.2e-18: kept, not rounded to 0
    np.testing.assert_allclose(pz.make_program(lambda t: np.logaddexp(t, 0.0), tiny)(tiny)[0], np.logaddexp(tiny, 0.0), rtol=1e-15)


def test_interp_at_the_ends_of_the_grid_is_fp_there() -> None:
    # Found in user testing: with right= given, x == xp[-1] gave right instead of fp[-1].
    f = lambda x: np.interp(x, XP, np.cos(XP), left=-7.0, right=9.0)  # noqa: E731
    x = np.array([XP[0], XP[-1], XP[-1] + 1.0, XP[0] - 1.0])
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x))
    g = lambda fp: np.interp(x, XP, fp, left=-7.0, right=9.0)  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(g, V)(V)[0], g(V))
    nan = np.array([np.nan, 1.0])  # NaN positions give NaN, traced or not
    np.testing.assert_array_equal(pz.make_program(f, nan)(nan)[0], f(nan))


def _scalar_program(f: Any, *args: Any) -> Any:
    from pyzygote.transforms.scalarize import compile_scalar, scalarizable

    prog = pz.make_program(f, *args)
    assert scalarizable(prog), prog
    return compile_scalar(prog)


_KNOTS = np.array([-1.0, -0.25, 0.0, 0.0, 0.5, 0.5, 0.5, 2.0])  # repeated knots, as numpy allows
_AT = [-3.0, -1.0, -0.5, -0.25, -0.0, 0.0, 0.25, 0.5, 0.75, 2.0, 2.5, np.nan, np.inf, -np.inf, 1e-300]


def test_interp_at_traced_positions_searches_its_segment_as_numpy_does() -> None:
    """np.interp at a traced position reads its segment from a binary search (it was every segment,
    masked: len(xp) work per call); compiled to Python floats for ODE right-hand sides."""
    fp = np.cos(np.arange(_KNOTS.size))
    for left, right in ((None, None), (-7.0, 9.0)):
        f = lambda x: np.interp(x, _KNOTS, fp, left=left, right=right)  # noqa: E731
        run, scalar = pz.make_program(f, 0.3), _scalar_program(f, 0.3)
        for x in _AT:
            want = np.interp(x, _KNOTS, fp, left=left, right=right)
            np.testing.assert_array_equal(run(np.float64(x))[0], want, err_msg=f"x={x}")
            np.testing.assert_array_equal(scalar(np.float64(x))[0], want, err_msg=f"scalar, x={x}")
    for left, right in ((None, None), (-7.0, 9.0)):  # a one-point table (found by a fuzzer: NaN gives fp[0])
        one = lambda x: np.interp(x, [0.5], [2.0], left=left, right=right)  # noqa: E731
        for x in (np.nan, 0.5, 0.0, 1.0, np.inf):
            np.testing.assert_array_equal(pz.make_program(one, 0.3)(np.float64(x))[0], one(x), err_msg=f"x={x}")
            np.testing.assert_array_equal(_scalar_program(one, 0.3)(np.float64(x))[0], one(x), err_msg=f"scalar, x={x}")
    big = np.linspace(0.0, 1.0, 1001)
    prog = pz.make_program(lambda x: np.interp(x, big, big**2), 0.3)
    assert max(v.aval.size for e in prog.eqns for v in e.outputs) == 1, prog  # nothing of the table's size
    # float32 positions and knots: numpy interpolates in float64 (found by the Julia audit)
    xp32, x32 = np.linspace(0.0, 1000.0, 11, dtype=np.float32), np.linspace(3.3, 997.7, 200).astype(np.float32)
    fp11 = np.sin(np.arange(11.0))
    h = lambda x, xp: np.interp(x, xp, fp11)  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(h, x32, xp32)(x32, xp32)[0], h(x32, xp32))
    np.testing.assert_array_equal(pz.make_program(lambda x: h(x, xp32), x32)(x32)[0], h(x32, xp32))
    xs = np.array(_AT)  # a whole array of positions, and the table traced too
    g = lambda x, fp: np.interp(x, _KNOTS, fp)  # noqa: E731
    np.testing.assert_array_equal(_scalar_program(g, xs, fp)(xs, fp)[0], np.interp(xs, _KNOTS, fp))
    (dfp,) = pz.gradient(lambda fp: np.interp(0.75, _KNOTS, fp), fp)
    np.testing.assert_array_equal(dfp, [0, 0, 0, 0, 0, 0, 5 / 6, 1 / 6])


def test_searchsorted_compiled_to_floats_orders_nan_last_as_numpy_does() -> None:
    table = np.array([-1.0, 0.0, 0.0, 2.0, np.nan, np.nan])  # numpy sorts NaN last
    for side in ("left", "right"):
        f = lambda a, v: np.searchsorted(a, v, side=side) * 1.0  # noqa: E731
        scalar = _scalar_program(f, table, 0.0)
        for v in (-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, 3.0, np.nan, np.inf):
            want = np.searchsorted(table, v, side=side)
            assert scalar(table, np.float64(v))[0] == want, (side, v)
            assert scalar(table[:4], np.float64(v))[0] == np.searchsorted(table[:4], v, side=side), (side, v)


def test_searchsorted_searches_in_the_common_type_as_numpy_does() -> None:
    """Julia audit: numpy reads an int64 table as float64 for float positions (above 2**53 that
    rounds its entries); Julia's isless and Python's < compare int and float exactly.  The
    program now converts both, so every engine searches what numpy searches."""
    table = np.array([2**53 + 1])
    f = lambda v: np.searchsorted(table, v, side="right") * 1.0  # noqa: E731
    prog = pz.make_program(f, 2.0**53)
    (search,) = [e for e in prog.eqns if e.prim.name == "searchsorted"]
    assert [a.aval.dtype for a in search.inputs] == [np.float64, np.float64]
    want = np.searchsorted(table, 2.0**53, side="right")  # 1: 2**53 + 1 rounds to 2**53
    assert prog(np.float64(2.0**53))[0] == want == _scalar_program(f, 2.0**53)(np.float64(2.0**53))[0]
    t32 = np.array([1.0, 2.0], np.float32)  # a Python float is weak: searched in float32, as numpy does
    assert pz.make_program(lambda x: np.searchsorted(t32, 1.0000001) * x, 1.0)(1.0)[0] == np.searchsorted(t32, 1.0000001)


def test_integers_from_data_are_not_compiled_to_python_ints() -> None:
    """Python's ints do not wrap as numpy's int64 do: integers are unrolled only as positions."""
    from pyzygote.transforms.scalarize import scalarizable

    assert not scalarizable(pz.make_program(lambda x: (x.astype(np.int64) * 4).astype(np.float64), 1.0))
    assert not scalarizable(pz.make_program(lambda x: x * (np.searchsorted(_KNOTS, x) + 2**40).astype(np.float64), 1.0))


def test_running_maximum_and_minimum() -> None:
    """User testing (a drawdown, an envelope): np.maximum.accumulate was refused. It is traced as
    passes of np.maximum by doubling strides: values as numpy's (NaN propagates, integers and
    booleans keep their type), and at ties a subgradient, as np.maximum's: the derivative of each
    running maximum is split among the tied entries and sums to one."""
    x = np.array([0.3, 1.2, -0.7, 2.0, -1.4, 2.5, 0.0])
    (J,) = pz.jacobian(np.maximum.accumulate, x)
    record = np.maximum.accumulate(x)
    expected = np.array([[1.0 if x[j] == record[i] and j <= i else 0.0 for j in range(7)] for i in range(7)])
    np.testing.assert_array_equal(J, expected)  # each output's derivative is that of the entry holding it
    (Jmin,) = pz.jacobian(lambda v: np.minimum.accumulate(v), x)
    low = np.minimum.accumulate(x)
    np.testing.assert_array_equal(Jmin, [[1.0 if x[j] == low[i] and j <= i else 0.0 for j in range(7)] for i in range(7)])
    # ties: a subgradient, the tied entries sharing each output's derivative
    ties = np.array([1.0, 1.0, 1.0, 0.5, 2.0])
    (Jt,) = pz.jacobian(np.maximum.accumulate, ties)
    np.testing.assert_allclose(Jt.sum(axis=1), 1.0, rtol=1e-15)
    assert np.all(Jt[:3, 3:] == 0.0) and np.all(Jt[:3, :3] >= 0.0) and Jt[4, 4] == 1.0 and np.all(Jt[4, :4] == 0.0)
    np.testing.assert_array_equal(Jt[0], [1.0, 0.0, 0.0, 0.0, 0.0])
    # values as numpy's: NaN, infinities, integers, booleans, float32, an axis of length 1 and 0
    for a, cast, kw in (
        (np.array([1.0, np.nan, 3.0, 0.5]), None, {}),
        (np.array([-np.inf, -np.inf, 2.0]), None, {}),
        (np.array([[3.0, 1.0, 4.0], [1.0, 5.0, 9.0]]), np.int32, {"axis": 1}),  # traced integers
        (np.array([0.0, 1.0, 0.0]), np.bool_, {}),
        (np.ones((2, 1, 3), np.float32), None, {"axis": 1}),
        (np.ones((0, 3)), None, {}),
    ):
        for uf in (np.maximum, np.minimum):
            (got,) = pz.make_program(lambda v: uf.accumulate(v if cast is None else v.astype(cast), **kw), a)(a)
            want = uf.accumulate(a if cast is None else a.astype(cast), **kw)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="cannot maximum.accumulate on a scalar"):
        pz.gradient(lambda v: np.maximum.accumulate(v), 1.5)
    # a drawdown's gradient against central differences
    prices = np.array([1.0, 1.3, 1.1, 1.6, 1.2, 1.4, 0.9])
    drawdown = lambda p: np.sum((np.maximum.accumulate(p) - p) ** 2)  # noqa: E731
    check_grads(drawdown, (prices,), engine="numpy")


def test_nancumsum_and_nancumprod_skip_missing_entries_with_a_zero_derivative() -> None:
    x = np.array([[1.5, np.nan, 2.0], [np.nan, 0.5, -1.0]])
    filled_sum, filled_prod = np.where(np.isnan(x), 0.0, x), np.where(np.isnan(x), 1.0, x)

    def f(x):
        return np.sum(np.nancumsum(x, axis=1) ** 2) + np.sum(np.nancumprod(x) ** 2)

    def g(s, p):
        return np.sum(np.cumsum(s, axis=1) ** 2) + np.sum(np.cumprod(p) ** 2)

    (grad,) = pz.gradient(f, x, engine="numpy")
    ds, dp = pz.gradient(g, filled_sum, filled_prod, engine="numpy")
    np.testing.assert_allclose(grad, np.where(np.isnan(x), 0.0, ds + dp), rtol=1e-14)
    assert grad[np.isnan(x)].tolist() == [0.0, 0.0]


def test_cumprod_through_zeros() -> None:
    x = np.array([2.0, 0.0, 3.0, 0.5])
    (jac,) = pz.jacobian(np.cumprod, x)
    want = np.array([[1, 0, 0, 0], [0, 2, 0, 0], [0, 6, 0, 0], [0, 3, 0, 0]], dtype=float)
    np.testing.assert_array_equal(jac, want)


def test_ufunc_reduce_and_accumulate_default_to_axis_0() -> None:
    x = np.arange(1.0, 7.0).reshape(2, 3)
    for f in (np.add.reduce, np.multiply.reduce, np.maximum.reduce, np.minimum.reduce, np.add.accumulate, np.multiply.accumulate):
        np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x), err_msg=str(f))
    np.testing.assert_array_equal(pz.make_program(lambda x: np.add.reduce(x, axis=None), x)(x)[0], 21.0)


@pytest.mark.parametrize(
    ("f", "error", "message"),
    [
        (lambda x: np.split(x, 3, axis=1), ValueError, "equal division"),
        (lambda x: np.pad(x, 1, mode="linear_ramp"), pz.UnsupportedOperationError, "linear_ramp"),
        (lambda x: np.pad(x, 5, mode="reflect"), pz.UnsupportedOperationError, "at most 2 along axis 0"),
        (lambda x: np.interp(x[0], x[0], x[0], period=1.0), pz.UnsupportedOperationError, "period"),
        (lambda x: np.gradient(x, x[0], axis=1), pz.UnsupportedOperationError, "constant spacings"),
        (lambda x: np.cross(x[:, :2], x[:, :3]), pz.UnsupportedOperationError, "two 2-vectors or two 3-vectors"),
        (lambda x: np.average(x, weights=np.ones(4)), TypeError, "Axis must be specified"),
        (lambda x: np.cumulative_sum(x), ValueError, "``axis`` argument is required"),
        (lambda x: np.cov(x, fweights=np.full(4, 1.5)), TypeError, "fweights must be integer"),
        (lambda x: np.cov(x, aweights=np.ones(3)), RuntimeError, "incompatible numbers of samples and aweights"),
        (lambda x: np.cov(x, fweights=np.ones((4, 1), int)), RuntimeError, "multidimensional fweights"),
        (lambda x: np.cov(x, aweights=-np.ones(4)), ValueError, "aweights cannot be negative"),
        (lambda x: np.corrcoef(x[None]), ValueError, "m has more than 2 dimensions"),
    ],
)
def test_composite_errors(f, error, message) -> None:
    with pytest.raises(error, match=message):
        pz.gradient(lambda x: np.sum(f(x)), M)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weights", [None, "fweights", "aweights32", "aweights64"])
@pytest.mark.parametrize("kw", [{}, {"dtype": np.float32}, {"dtype": np.float64}, {"bias": True}])
def test_cov_and_corrcoef_have_numpys_dtypes(dtype, weights, kw) -> None:
    x = R.standard_normal((3, 6)).astype(dtype)
    extra = {
        None: {},
        "fweights": {"fweights": np.array([1, 2, 1, 3, 1, 1])},
        "aweights32": {"aweights": np.linspace(0.5, 2.0, 6, dtype=np.float32)},
        "aweights64": {"aweights": np.linspace(0.5, 2.0, 6)},
    }[weights]
    for f in (lambda x: np.cov(x, **kw, **extra), lambda x: np.corrcoef(x, **{k: v for k, v in kw.items() if k == "dtype"})):
        want = f(x)
        (got,) = pz.make_program(f, x)(x)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6 if want.dtype == np.float32 else 1e-13, atol=1e-7)


def test_cov_of_one_observation_warns_as_numpy_does() -> None:
    with pytest.warns(RuntimeWarning, match="Degrees of freedom <= 0"):
        with np.errstate(all="ignore"):
            (got,) = pz.make_program(lambda x: np.cov(x[:, :1]), M)(M)
    with pytest.warns(RuntimeWarning, match="Degrees of freedom <= 0"), np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, np.cov(M[:, :1]))


def test_corrcoef_diagonal_is_one_and_perfect_correlations_stay_within_one() -> None:
    x = np.array([0.3, 1.7, -0.4, 2.2, 0.9, 1.1])
    m = np.stack([x, 3.0 * x - 1.0, -0.5 * x, np.sin(x), np.full(6, 2.0)])  # the last is constant
    with np.errstate(all="ignore"):
        want = np.corrcoef(m)
        (got,) = pz.make_program(np.corrcoef, m)(m)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(np.diag(got)[:4], 1.0)
    assert np.isnan(got[4]).all() and np.isnan(want[4]).all()
    assert np.all(np.abs(got[:4, :4]) <= 1.0)
    # the correlation of the first four with each other: its derivative is 0 along the diagonal
    jac = pz.jacobian(lambda a: np.corrcoef(a)[np.diag_indices(4)], m[:4])[0]
    np.testing.assert_allclose(jac, 0.0, atol=1e-13)


def test_loggamma_of_real_numbers_is_scipys() -> None:
    x = np.array([-0.5, 0.0, -0.0, -1.0, 2.5, 40.0, np.inf, -np.inf, np.nan])
    (got,) = pz.make_program(sc.loggamma, x)(x)
    np.testing.assert_array_equal(got, sc.loggamma(x))
    np.testing.assert_allclose(pz.grad(lambda t: sc.loggamma(t))(2.5), sc.digamma(2.5), rtol=1e-15)
    x32 = np.array([0.5, 3.0], np.float32)
    assert pz.make_program(sc.loggamma, x32)(x32)[0].dtype == sc.loggamma(x32).dtype


def test_gamma_at_poles_signs_and_overflow_is_scipys_without_warnings() -> None:
    x = np.array([-2.0, -1.0, -0.5, -1.5, -2.5, 0.0, -0.0, 0.5, 3.0, 100.0, 171.5, 172.0, np.inf, -np.inf, np.nan, 1e-300, -200.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (got,) = pz.make_program(sc.gamma, x)(x)
    want = sc.gamma(x)
    np.testing.assert_allclose(got, want, rtol=2e-13)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    with pytest.raises(pz.NonFiniteGradientError):  # past overflow the value is inf: no silent zero
        pz.gradient(lambda x: sc.gamma(x), 172.0)
    k = np.array([0.8, 1.7, 3.5])  # a Weibull mean's derivative in its shape: digamma times gamma
    (dk,) = pz.gradient(lambda k: np.sum(sc.gamma(1.0 + 1.0 / k)), k)
    np.testing.assert_allclose(dk, -sc.gamma(1.0 + 1.0 / k) * sc.digamma(1.0 + 1.0 / k) / k**2, rtol=1e-13)


@pytest.mark.parametrize("name", ["jv", "yv", "iv", "kv"])
def test_bessel_functions_are_scipys_everywhere_and_their_derivatives_the_recurrences(name) -> None:
    f = getattr(sc, name)
    x = np.array([-3.0, -0.5, -0.0, 0.0, 0.3, 1.0, 2.5, 12.0, 80.0, np.inf, -np.inf, np.nan])
    for v in (0, 1, 0.5, 2.5, -1.5, 3):
        with np.errstate(all="ignore"):
            want = f(v, x)
            (got,) = pz.make_program(lambda x: f(v, x), x)(x)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, err_msg=f"{name}({v}, x)")
    x32 = np.array([0.5, 1.5, 4.0], np.float32)
    assert pz.make_program(lambda x: f(1.5, x), x32)(x32)[0].dtype == f(1.5, x32).dtype == np.float32
    # d/dx J_v = (J_(v-1) - J_(v+1)) / 2, and so on: checked against the closed forms of order 1/2
    x = np.array([0.4, 1.3, 2.7])
    (d,) = pz.gradient(lambda x: np.sum(f(0.5, x)), x)
    closed = {
        "jv": lambda x: np.sqrt(2 / (np.pi * x)) * (np.cos(x) - np.sin(x) / (2 * x)),
        "yv": lambda x: np.sqrt(2 / (np.pi * x)) * (np.sin(x) + np.cos(x) / (2 * x)),
        "iv": lambda x: np.sqrt(2 / (np.pi * x)) * (np.cosh(x) - np.sinh(x) / (2 * x)),
        "kv": lambda x: -np.sqrt(np.pi / (2 * x)) * np.exp(-x) * (1 + 1 / (2 * x)),
    }[name]
    np.testing.assert_allclose(d, closed(x), rtol=1e-13)


def test_bessel_functions_in_scalarized_right_hand_sides_are_impls_values() -> None:
    f = lambda u: np.stack([sc.j0(u[0]) * u[1], sc.kv(1.5, u[0]) - sc.yv(0.5, u[1]), sc.iv(2.0, u[1])])  # noqa: E731
    scalar, run = _scalar_program(f, np.ones(2)), pz.make_program(f, np.ones(2))
    for u in ([0.3, 1.7], [-0.5, 2.0], [0.0, np.nan], [np.inf, 40.0]):
        u = np.array(u)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(scalar(u)[0], run(u)[0])


def test_bessel_orders_are_constants() -> None:
    with pytest.raises(pz.UnsupportedOperationError, match="order is differentiated by neither"):
        pz.gradient(lambda v: sc.jv(v, 1.5), 0.5)
    with pytest.raises(pz.UnsupportedOperationError, match="one real order at a time"):
        pz.gradient(lambda x: np.sum(sc.iv(np.array([0.0, 1.0]), x)), np.ones(2))


def test_scipy_special_at_extremes_and_zeros() -> None:
    """expit and log_expit never overflow, nor put inf * 0 into a derivative; xlogy is 0 at x == 0."""
    x = np.array([-np.inf, -800.0, -40.0, -20.0, -1.0, 0.0, 1e-300, 1.0, 23.0, 40.0, 800.0, np.inf])
    s, r = sc.expit(x), sc.expit(-x)
    for fn in (sc.expit, sc.log_expit):
        got = pz.make_program(fn, x)(x)[0]
        np.testing.assert_allclose(got, fn(x), rtol=5e-16, atol=0)
        (g,) = pz.gradient(lambda v, fn=fn: np.sum(fn(v)), x)
        np.testing.assert_allclose(g, s * r if fn is sc.expit else r, rtol=1e-15, atol=1e-300)
        # tiny second derivatives keep their relative precision on both sides
        h = np.diag(pz.hessian(lambda v, fn=fn: np.sum(fn(v)), x[1:-1]))
        np.testing.assert_allclose(h, (s * r * (r - s) if fn is sc.expit else -s * r)[1:-1], rtol=1e-14, atol=1e-300)
    # Second derivative of expit at its symmetric point is exactly 0, of log_expit -1/4.
    np.testing.assert_allclose(pz.hessian(lambda v: np.sum(sc.expit(v)), np.zeros(2)), np.zeros((2, 2)), atol=1e-16)
    np.testing.assert_allclose(pz.hessian(lambda v: np.sum(sc.log_expit(v)), np.zeros(2)), -0.25 * np.eye(2), rtol=1e-15)
    counts = np.array([0.0, 0.0, 3.0])
    probs = np.array([0.0, 0.5, 0.25])
    value, (dx, dy) = pz.withgradient(lambda c, p: np.sum(sc.xlogy(c, p)), counts, probs)
    assert value == sc.xlogy(counts, probs).sum()
    np.testing.assert_allclose(dy, [0.0, 0.0, 12.0], rtol=1e-15)
    np.testing.assert_allclose(dx[1:], np.log(probs[1:]), rtol=1e-15)  # d/dx at x == 0 is log(y)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x: __import__("scipy.special").special.logsumexp(x), "scipy.special.logsumexp"),
        (lambda x: __import__("scipy.linalg").linalg.cho_solve((np.eye(2), True), x).sum(), "scipy.linalg.cho_solve"),
        (lambda x: __import__("scipy.linalg").linalg.solve_triangular(np.eye(2), x).sum(), "scipy.linalg.solve_triangular"),
        (lambda x: __import__("scipy.linalg").linalg.eigh(np.diag(x), np.eye(2))[0].sum(), "scipy.linalg.eigh.*np.linalg.cholesky\\(M\\)"),
        (lambda x: __import__("scipy.linalg").linalg.lu_factor(np.diag(x))[0].sum(), "scipy.linalg.lu_factor"),
        # user testing: finite-element assembly with scipy.sparse was refused with no way forward
        (lambda x: __import__("scipy.sparse").sparse.coo_matrix((x, ([0, 1], [0, 1])), shape=(2, 2)).toarray().sum(), "scipy.sparse.*np.add.at"),
        (lambda x: __import__("scipy.sparse.linalg").sparse.linalg.spsolve(__import__("scipy.sparse").sparse.eye(2).tocsr(), x).sum(), "spsolve.*np.linalg.solve"),
        (lambda x: __import__("scipy.stats").stats.norm.pdf(x, 0.0, 1.0).sum(), "pdf was called.*np.sqrt\\(2 \\* np.pi\\)"),
        (lambda x: __import__("scipy.interpolate").interpolate.CubicSpline(np.arange(2.0), x)(0.5), "CubicSpline.*np.interp\\(x, xp, fp\\)"),
        (lambda x: __import__("scipy.interpolate").interpolate.CubicSpline(np.arange(3.0), np.arange(3.0))(x).sum(), "__call__.*np.interp\\(x, xp, fp\\)"),
        (lambda x: float(__import__("scipy.interpolate").interpolate.interp1d(np.arange(2.0), x)(0.5)), "interp1d.*np.interp\\(x, xp, fp\\)"),
        (lambda x: __import__("scipy.integrate").integrate.quad(lambda v: x[0] * v, 0.0, 1.0)[0], "quad.*np.trapezoid"),
    ],
)
def test_scipy_functions_are_named_with_what_to_write_instead(call, name) -> None:
    with pytest.raises(pz.UnsupportedOperationError, match="was called on a traced value.*Write it with numpy: ") as info:
        pz.gradient(call, np.ones(2))
    assert re.search(name, str(info.value)), str(info.value)


@pytest.mark.parametrize(
    ("call", "called", "traced", "instead"),
    [
        # user testing: interp1d of a forcing table in a right-hand side, and solve_banded in an implicit
        # step, were refused with the generic "Write this step with numpy functions"
        (lambda x, si, sla: si.interp1d(np.arange(3.0), np.arange(3.0) ** 2)(x).sum(), "scipy.interpolate.interp1d.__call__", "`x`", r"np.interp\(x, xp, fp\), linear"),
        (lambda x, si, sla: si.interp1d(np.arange(3.0), np.arange(3.0) * x[0])(0.5), "scipy.interpolate.interp1d.__init__", "`y`", r"np.interp\(x, xp, fp\), linear"),
        (lambda x, si, sla: si.make_interp_spline(np.arange(5.0), np.arange(5.0) ** 2)(x).sum(), "scipy.interpolate.BSpline.__call__", "`x`", r"np.interp\(x, xp, fp\), piecewise linear.*Hermite"),
        (lambda x, si, sla: si.make_interp_spline(np.arange(5.0), np.arange(5.0) * x[0])(0.5), "scipy.interpolate.make_interp_spline", "`y`", r"np.interp\(x, xp, fp\), piecewise linear.*Hermite"),
        (lambda x, si, sla: si.PchipInterpolator(np.arange(3.0), np.arange(3.0) ** 2)(x).sum(), "scipy.interpolate.PchipInterpolator.__call__", "`x`", r"np.interp\(x, xp, fp\), piecewise linear.*Hermite"),
        (lambda x, si, sla: si.PchipInterpolator(np.arange(3.0), np.arange(3.0) * x[0])(0.5), "scipy.interpolate.PchipInterpolator.__init__", "`y`", r"np.interp\(x, xp, fp\), piecewise linear.*Hermite"),
        (lambda x, si, sla: sla.solve_banded((1, 1), np.stack([-x, 1 + 2 * x, -x]), np.ones(2)).sum(), "scipy.linalg.solve_banded", "`ab`", r"np.linalg.solve\(A, b\).*np.diag\(d\) \+ np.diag\(e, 1\) \+ np.diag\(e, -1\)"),
        (lambda x, si, sla: sla.solve_banded((1, 1), np.ones((3, 2)), x).sum(), "scipy.linalg.solve_banded", "`b`", r"np.linalg.solve\(A, b\)"),
    ],
)
def test_scipy_interpolants_and_banded_solves_name_what_is_traced_and_the_numpy_instead(call, called, traced, instead) -> None:
    import scipy.interpolate as si
    import scipy.linalg as sla

    with pytest.raises(pz.UnsupportedOperationError) as info:
        pz.gradient(lambda x: call(x, si, sla), np.full(2, 0.25))
    message = str(info.value)
    assert re.match(rf"{re.escape(called)} was called on a traced value: its argument {traced} is traced\. ", message), message
    assert re.search(rf"Write it with numpy: {instead}", message), message


def test_the_dense_form_the_solve_banded_message_gives_is_solve_banded() -> None:
    """The message's A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[2, :-1], -1) is the
    matrix scipy's banded storage stands for, and the solveh_banded one likewise."""
    import scipy.linalg as sla

    from pyzygote.scipy_calls import _INSTEAD

    rng = np.random.default_rng(3)
    ab, b = rng.normal(size=(3, 6)) + np.array([[0.0], [5.0], [0.0]]), rng.normal(size=6)
    assert "A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[2, :-1], -1)" in _INSTEAD["solve_banded"]
    A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[2, :-1], -1)
    np.testing.assert_allclose(np.linalg.solve(A, b), sla.solve_banded((1, 1), ab, b), rtol=1e-13)
    assert "A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[0, 1:], -1)" in _INSTEAD["solveh_banded"]
    A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[0, 1:], -1)
    np.testing.assert_allclose(np.linalg.solve(A, b), sla.solveh_banded(ab[:2], b), rtol=1e-13)
    # and pyzygote differentiates the dense form: d/dc of sum(solve(A + c I, b)) = -sum(A^-2 b)
    g = pz.grad(lambda c: np.sum(np.linalg.solve(A + c * np.eye(6), b)))(0.0)
    np.testing.assert_allclose(g, -np.sum(np.linalg.solve(A, np.linalg.solve(A, b))), rtol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        # user testing: an implicit heat step, spsolve(sp.eye(N) - np.exp(logD) * Lap, b), failed with
        # "cannot use an object array as a constant: array(<DIAgonal sparse matrix ...>)"
        lambda x, sp, spla: spla.spsolve((sp.eye(2) - np.exp(x[0]) * sp.diags([1.0, -2.0], [0, 1], shape=(2, 2))).tocsc(), x).sum(),
        lambda x, sp, spla: ((sp.eye_array(2) * x[0]) @ x).sum(),
        lambda x, sp, spla: (x + sp.eye(2)).sum(),
        lambda x, sp, spla: np.multiply(x, sp.csr_array(np.eye(2))).sum(),
        lambda x, sp, spla: (x @ sp.eye(2)).sum(),
    ],
)
def test_a_sparse_matrix_meeting_a_traced_value_is_refused_with_the_dense_alternative(call) -> None:
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    with pytest.raises(pz.UnsupportedOperationError, match=r"a scipy.sparse matrix \((dia|csr|csc)_(matrix|array), shape 2x2\) met a traced value") as info:
        pz.gradient(lambda x: call(x, sp, spla), np.ones(2))
    message = str(info.value)
    assert "np.add.at(K, (rows, cols), values)" in message and "np.linalg.solve(K, f) replaces spsolve" in message, message
    assert ".toarray()" in message, message


@pytest.mark.parametrize(
    ("call", "name"),
    [
        # user testing: Kepler's equation by brentq was refused under a SciPy internal's name
        (lambda x: __import__("scipy.optimize").optimize.brentq(lambda E: E - x[0] * np.sin(E) - 1.0, 0.0, 4.0), "scipy.optimize.brentq.*pz.nlsolve\\(f, u0, p\\).*Kepler"),
        (lambda x: __import__("scipy.optimize").optimize.newton(lambda E: E - x[0] * np.sin(E) - 1.0, 1.0), "scipy.optimize.newton.*pz.nlsolve"),
        (lambda x: __import__("scipy.optimize").optimize.fsolve(lambda v: v - x * np.sin(v) - 1.0, np.ones(2)).sum(), "scipy.optimize.fsolve.*pz.nlsolve\\(F, x0, p\\)"),
    ],
)
def test_scipy_root_finders_point_to_nlsolve(call, name) -> None:
    with pytest.raises(pz.UnsupportedOperationError, match="was called on a traced value.*Use pz.nlsolve") as info:
        pz.gradient(call, np.ones(2))
    assert re.search(name, str(info.value)), str(info.value)


def test_scipy_minpack_on_a_traced_value_is_named() -> None:
    """scipy.optimize.fsolve and leastsq call back from C: their callback's error about the traced
    value is printed by MINPACK (PyErr_Print, which pyzygote leaves alone: silencing it took a
    process-wide hook), and the error raised names the SciPy call."""
    import scipy.optimize as so

    for call, name in (
        (lambda a: so.fsolve(lambda t: t**3 - a, 1.0)[0], "fsolve"),
        (lambda a: so.leastsq(lambda t: t**3 - a, np.ones(1))[0][0], "leastsq"),
    ):
        with pytest.raises(pz.UnsupportedOperationError, match=rf"scipy\.optimize\.{name} was called on a traced value"):
            pz.grad(call)(1.0)


def test_scipy_functions_are_named_as_users_call_them() -> None:
    """User testing: "scipy.optimize.least_squares.least_squares was called" (the function lives in
    scipy.optimize._lsq.least_squares): the shortest public module that exposes it names it."""
    import scipy.interpolate
    import scipy.optimize as so

    for call, called in (
        (lambda a: so.least_squares(lambda t: t - a, np.ones(1)).x[0], "scipy.optimize.least_squares"),
        (lambda a: so.minimize(lambda t: np.sum((t - a) ** 2), np.ones(1)).x[0], "scipy.optimize.minimize"),
        (lambda a: scipy.interpolate.interp1d(np.arange(3.0), np.arange(3.0) * a)(1.5), "scipy.interpolate.interp1d.__init__"),
    ):
        with pytest.raises(pz.UnsupportedOperationError, match=rf"^{re.escape(called)} was called on a traced value"):
            pz.grad(call)(1.0)


def test_scipy_special_python_functions_point_to_traced_ones() -> None:
    for call, hint in ((lambda x: sc.polygamma(1, x), "digamma"), (lambda x: sc.factorial(x), "gamma(n + 1.0)")):
        with pytest.raises(pz.UnsupportedOperationError, match="was called on a traced value") as info:
            pz.gradient(call, 2.5)
        assert hint in str(info.value), str(info.value)


def test_sinc_has_exact_derivatives_at_and_near_zero() -> None:
    x = np.array([0.0, 1e-9, 0.031, 0.0319, 0.032, 0.5, 1.0, 3.0])  # the series is used below |x| = 0.0318...
    np.testing.assert_allclose(pz.make_program(np.sinc, x)(x)[0], np.sinc(x), rtol=1e-15)
    y = np.pi * x[2:]
    d1 = np.cos(y) / x[2:] - np.sin(y) / (np.pi * x[2:] ** 2)
    g = pz.gradient(lambda v: np.sum(np.sinc(v)), x)[0]
    assert g[0] == 0.0
    np.testing.assert_allclose(g[1], -(np.pi**2) * x[1] / 3, rtol=1e-15)
    np.testing.assert_allclose(g[2:], d1, rtol=1e-11)
    h = np.diag(pz.hessian(lambda v: np.sum(np.sinc(v)), x))
    np.testing.assert_allclose(h[0], -np.pi**2 / 3, rtol=1e-15)
    d2 = lambda v: (-(np.pi**2) * v**2 * np.sin(np.pi * v) - 2 * np.pi * v * np.cos(np.pi * v) + 2 * np.sin(np.pi * v)) / (np.pi * v**3)  # noqa: E731
    np.testing.assert_allclose(h[3:], d2(x[3:]), rtol=1e-9)
    d4 = pz.hessian(lambda v: np.sum(pz.hessian(lambda w: np.sum(np.sinc(w)), v)), x[:1])
    np.testing.assert_allclose(d4, [[np.pi**4 / 5]], rtol=1e-14)
    # float32 takes the series further out: the quotient's derivative cancelled to 2e-5 (fuzzer)
    x32 = np.array([0.035, 0.06, 0.12], dtype=np.float32)
    d1 = lambda v: np.cos(np.pi * v) / v - np.sin(np.pi * v) / (np.pi * v**2)  # noqa: E731
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(np.sinc(v)), x32)[0], d1(x32.astype(np.float64)), rtol=1e-6)


def test_convolution_of_long_signals_sums_shifted_slices(monkeypatch: Any) -> None:
    """Above a size, the matrix of shifted copies would take more memory than the slices."""
    import pyzygote.primitives.composites as composites

    a, v = R.uniform(-1, 1, 30), R.uniform(-1, 1, 11)
    f = lambda x, k: np.sum(np.sin(np.convolve(x, k, "same"))) + np.sum(np.correlate(x, k) ** 2)  # noqa: E731
    monkeypatch.setattr(composites, "_SHIFTED_COPIES_AT_MOST", 10)
    prog = pz.make_program(f, a, v)
    assert not any(e.prim.name == "einsum" for e in prog.eqns)  # no product with a matrix of copies
    np.testing.assert_allclose(prog(a, v)[0], f(a, v), rtol=1e-13)
    check_grads(f, (a, v), engine="numpy")
    # numpy's integer codes for the modes
    np.testing.assert_allclose(pz.make_program(lambda x: np.convolve(x, v, mode=0) + np.correlate(x, v, 0), a)(a)[0], np.convolve(a, v, 0) + np.correlate(a, v, 0), rtol=1e-13)


def test_convolution_refuses_what_numpy_refuses() -> None:
    x = np.ones(3)
    for call, message in [
        (lambda a: np.convolve(a, np.ones(0)), "v cannot be empty"),
        (lambda a: np.convolve(np.outer(a, a), a), "a must be 1-D, got shape \\(3, 3\\)"),
        (lambda a: np.correlate(a, a, mode="circular"), "mode must be 'full', 'same' or 'valid'"),
    ]:
        with pytest.raises(ValueError, match=message):
            pz.gradient(lambda a: np.sum(call(a)), x)
    # a number is a signal of length 1, as in numpy
    np.testing.assert_allclose(pz.gradient(lambda a: np.sum(np.convolve(a[0], a)), x)[0], [4.0, 1.0, 1.0])


def test_scipy_stats_normal_distribution_points_to_the_traced_special_functions() -> None:
    import scipy.stats

    with pytest.raises(pz.UnsupportedOperationError, match=r"scipy.stats.norm.logcdf was called on a traced value.*Use scipy.special.log_ndtr\(z\)"):
        pz.gradient(lambda x: np.sum(scipy.stats.norm.logcdf(x, 0.0, 2.0)), np.ones(2))
    with pytest.raises(pz.UnsupportedOperationError, match=r"Use loc \+ s \* scipy.special.ndtri\(q\).*ndtr, ndtri"):
        pz.gradient(lambda q: np.sum(scipy.stats.norm.ppf(q)), np.full(2, 0.3))


def test_scipy_stats_distributions_are_refused_with_their_own_formula() -> None:
    """User testing: gamma.logsf was told to use log_ndtr, the normal distribution's."""
    import scipy.stats as st

    from pyzygote.distributions import written_out

    x, k, theta = np.array([1.5e-9, 0.5, 2.0, 7.0]), 2.5, 1.5
    for call, hint in (
        (lambda s: st.gamma.logsf(x, k, scale=s), r"scipy.stats.gamma.logsf was called.*np.log\(scipy.special.gammaincc\(a, z\)\)"),
        (lambda s: st.gamma(k, scale=s).logpdf(x), r"scipy.stats.gamma.logpdf was called.*scipy.special.gammaln\(a\)"),
        (lambda s: st.weibull_min.logsf(x, 1.5, scale=s), r"weibull_min.logsf.*-z \*\* c, with z = \(x - loc\) / s"),
        (lambda s: st.poisson.logpmf(np.array([0, 3]), s), r"poisson.logpmf.*xlogy\(k, mu\) - mu - scipy.special.gammaln\(k \+ 1\)"),
        (lambda s: st.invgamma.logsf(x, 2.0, scale=s), r"invgamma.logsf.*the distribution's formula.*scipy.stats.norm.logsf is scipy.special.log_ndtr\(-z\)"),
    ):
        with pytest.raises(pz.UnsupportedOperationError, match=hint):
            pz.gradient(lambda s: np.sum(call(s)), theta)
    # the formulas are scipy's: evaluated with numpy where they hold z = x / s
    z, s, a, c = x / theta, theta, k, 1.5
    for name, method, expected in (
        ("gamma", "logsf", st.gamma.logsf(x, a, scale=s)),
        ("gamma", "logpdf", st.gamma.logpdf(x, a, scale=s)),
        ("weibull_min", "logpdf", st.weibull_min.logpdf(x, c, scale=s)),
        ("weibull_min", "logcdf", st.weibull_min.logcdf(x, c, scale=s)),
        ("norm", "logpdf", st.norm.logpdf(x, 0.0, s)),
        ("expon", "logcdf", st.expon.logcdf(x, scale=s)),
        ("logistic", "logpdf", st.logistic.logpdf(x, scale=s)),
        ("t", "logpdf", st.t.logpdf(x, 4.0, scale=s)),
        ("cauchy", "cdf", st.cauchy.cdf(x, scale=s)),
        ("laplace", "logpdf", st.laplace.logpdf(x, scale=s)),
        ("expon", "logsf", st.expon.logsf(x, scale=s)),
        ("beta", "logpdf", st.beta.logpdf(x / 10, 2.0, 3.0)),
        ("beta", "cdf", st.beta.cdf(x / 10, 2.0, 3.0)),
        ("beta", "sf", st.beta.sf(x / 10, 2.0, 3.0)),
        ("t", "cdf", st.t.cdf(np.array([-2.0, -0.5, 0.7, 3.0]), 4.0)),
        ("binom", "cdf", st.binom.cdf(np.array([0, 3, 9]), 10, 0.3)),
        ("binom", "sf", st.binom.sf(np.array([0, 3, 9]), 10, 0.3)),
        ("lognorm", "logpdf", st.lognorm.logpdf(x, 0.8, scale=s)),
        ("poisson", "logpmf", st.poisson.logpmf(np.array([0, 3, 9]), 2.5)),
        ("binom", "logpmf", st.binom.logpmf(np.array([0, 3, 9]), 10, 0.3)),
        ("nbinom", "logpmf", st.nbinom.logpmf(np.array([0, 3, 9]), 4.0, 0.3)),
    ):
        formula = re.split(r", with z| \((?:precise|sigma|differentiable)", written_out(name, method))[0]
        formula, _, tail = formula.partition(" with tail = ")
        names = {"np": np, "scipy": __import__("scipy"), "z": z, "s": s, "a": a, "c": c, "df": 4.0, "sigma": 0.8,
                 "k": np.array([0, 3, 9]), "mu": 2.5, "n": 10 if name == "binom" else 4.0, "p": 0.3}  # fmt: skip
        if name == "beta":
            names.update(z=x / 10, s=1.0, a=2.0, b=3.0)
        if tail:
            names.update(z=np.array([-2.0, -0.5, 0.7, 3.0]))
            names["tail"] = eval(tail, names)
        np.testing.assert_allclose(eval(formula, names), expected, rtol=1e-13, atol=1e-15, err_msg=f"{name}.{method}")


def test_scipy_errors_about_plain_arrays_pass_through() -> None:
    """A SciPy error that no traced value caused is the user's own, reported unchanged."""
    import scipy.linalg

    with pytest.raises(ValueError, match="(?i)expected square matrix"):
        pz.gradient(lambda x: np.sum(x) * scipy.linalg.inv(np.ones((2, 3)))[0, 0], np.ones(2))


def test_sort_gradient_follows_the_order() -> None:
    """The derivative of a sorted array moves each element's derivative to its rank."""
    x = np.array([0.3, -2.0, 1.5, 0.1])
    (jac,) = pz.jacobian(np.sort, x)
    np.testing.assert_array_equal(jac, np.eye(4)[np.argsort(x)])
    (g,) = pz.gradient(lambda v: np.median(v), x)  # even length: the mean of the middle two
    np.testing.assert_array_equal(g, [0.5, 0.0, 0.0, 0.5])
    ties = np.array([1.0, 1.0, 0.0])  # stable: the first of equal values sorts first
    np.testing.assert_array_equal(pz.make_program(np.argsort, ties)(ties)[0], [2, 0, 1])


@pytest.mark.parametrize(
    ("f", "error", "message"),
    [
        (lambda x: x[x[:, 0] > 0, 1], pz.UnsupportedOperationError, "boolean mask mixed with other indices"),
        (lambda x: x[np.argmax(x), None], pz.UnsupportedOperationError, "mixes traced integers with None"),
        (lambda x: x[np.argmax(x[0]), ..., ...], IndexError, "single ellipsis"),
        (lambda x: x[np.argmax(x[0]), 1:, 0], IndexError, "too many indices"),
        (lambda x: x[x[0, 0]], IndexError, "must be of integer type"),
        (lambda x: np.quantile(x, x[0, 0]), pz.UnsupportedOperationError, "constant quantiles"),
        (lambda x: np.quantile(x, 0.5, method="nearest"), pz.UnsupportedOperationError, "method='linear'"),
        (lambda x: np.percentile(x, 120.0), ValueError, r"range \[0, 100\]"),
    ],
)
def test_traced_indexing_errors(f, error, message) -> None:
    with pytest.raises(error, match=message):
        pz.gradient(lambda x: np.sum(f(x)), M)


def _assign_at_argmax(x):
    y = np.zeros_like(x)
    y[np.argmax(x)] = x[0] * 3.0
    return np.sum(y * x)


def _assign_repeated(x):
    y = x * 1.0
    i = np.argmax(x)
    y[np.stack([i, i, i - 1])] = x[:3] * np.array([1.0, 2.0, 3.0])  # y[i] gets the second value
    return np.sum(y * np.arange(1.0, 1.0 + x.size))


def _assign_rows_and_views(m):
    y = m * 1.0
    i, j = np.argmax(m[:, 0]), np.argmin(m[0])
    y[i, j] = -m[0, 1] ** 2
    y[i] = y[i] * 2.0  # a whole row
    y[j, i] += 1.0  # read, add, write back at the same traced position
    v = y[1:]  # a view: writes at traced positions reach y
    v[np.argmax(m[1:, 1])] = 7.0 * m[2, 2]
    return y


def _assign_masked(m):
    z = m.copy()
    z[z > 0.3] = -m[0, 0]
    z[m[:, 0] < 0.0] = np.tanh(m[1])
    return z


ASSIGNMENTS = {"argmax": (_assign_at_argmax, V), "repeated": (_assign_repeated, V), "rows": (_assign_rows_and_views, M)}
ASSIGNMENTS["masked"] = (_assign_masked, R.uniform(-1.0, 1.0, (3, 4)))


@pytest.mark.parametrize("name", sorted(ASSIGNMENTS))
def test_assignment_at_traced_positions_matches_numpy_and_finite_differences(name: str) -> None:
    f, x = ASSIGNMENTS[name]
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x))
    check_grads(f, (x,), engine="numpy")


def test_assignment_at_traced_positions_derivatives_by_hand() -> None:
    x = np.array([1.0, 5.0, 2.0, 4.0])  # argmax 1: y = [6 x2, 2 x1, x2, x3] . [1, 2, 3, 4]
    np.testing.assert_array_equal(pz.gradient(_assign_repeated, x)[0], [0.0, 4.0, 6.0, 4.0])
    np.testing.assert_array_equal(pz.gradient(_assign_at_argmax, x)[0], [15.0, 3.0, 0.0, 0.0])
    m = np.array([[0.5, -0.2, 0.1, 0.9], [-0.3, 0.4, -0.8, 0.2], [0.7, 0.25, -0.1, 0.35]])
    y, back = pz.pullback(_assign_masked, m)
    (dm,) = back(np.ones_like(y))
    rows_kept = m[:, :1] >= 0.0  # the masked row assignment overwrites row 1 with tanh(m[1])
    want = ((m <= 0.3) & rows_kept) * 1.0
    want[0, 0] -= np.sum((m > 0.3) & rows_kept)  # z = -m[0, 0] where z > 0.3
    want[1] += 1.0 / np.cosh(m[1]) ** 2
    np.testing.assert_allclose(dm, want, rtol=1e-14)
    np.testing.assert_array_equal(y, _assign_masked(m))


def test_assignment_at_traced_positions_keeps_dtypes() -> None:
    def f(x):
        flags = x > 0.0
        flags[np.argmax(x)] = False
        counts = np.zeros_like(x, dtype=np.int64, shape=(2, x.size))
        counts[1, np.argmax(x)] = -2
        counts[0, np.argmin(x)] = 7.9  # numpy truncates into an integer array
        return np.where(flags, x, 0.0) + counts

    got = pz.make_program(f, V)(V)[0]
    np.testing.assert_array_equal(got, f(V))
    assert got.dtype == f(V).dtype


@pytest.mark.parametrize(
    ("f", "error", "message"),
    [
        (lambda y: y.__setitem__(np.argmax(y) + 10, 1.0), IndexError, "out of bounds"),
        (lambda y: y.__setitem__((0, np.argmax(y) + 4), 1.0), IndexError, "out of bounds"),
        (lambda y: y.__setitem__(y[:, 0] > 0, np.ones((2, 4))), pz.UnsupportedOperationError, "how many entries are True"),
        (lambda y: y.__setitem__(y[0] > 0, 1.0), IndexError, "does not match"),
        (lambda y: y.__setitem__((slice(None), np.argmax(y[0]) + 4), 1.0), IndexError, "out of bounds"),
        (lambda y: y.__setitem__((np.argmax(y), None), 1.0), pz.UnsupportedOperationError, "mixes traced integers with None"),
        (lambda y: np.broadcast_to(y[0], (3, 4)).__setitem__(np.argmax(y[0]), 1.0), ValueError, "read-only"),
    ],
)
def test_assignment_at_traced_positions_errors(f, error, message) -> None:
    def g(x):
        y = x * 1.0
        f(y)
        return np.sum(y)

    with pytest.raises(error, match=message):
        pz.make_program(g, M)(M)


_MIXED = {
    "row-tail": lambda i, j: (i, slice(1, None)),
    "column": lambda i, j: (slice(None), i),
    "ellipsis": lambda i, j: (Ellipsis, j),
    "around-a-reversed-slice": lambda i, j: (i, slice(None, None, -2), j),  # not adjacent: broadcast dims first
    "slice-then-two": lambda i, j: (slice(0, 2), i, j),
    "constant-int-and-slice": lambda i, j: (1, slice(None), j),
    "int-array-and-slice": lambda i, j: (i, slice(None), np.array([0, 4, -1])),
    "repeated-in-an-array": lambda i, j: (slice(None), np.stack([i, i]) if isinstance(i, Tracer) else np.array([i, i]), slice(None)),
}


@pytest.mark.parametrize("form", sorted(_MIXED))
def test_traced_integers_mixed_with_slices_read_and_assign_as_numpy(form: str) -> None:
    def positions(x, traced):
        i, j = np.argmax(x[0, 0, :3]), np.argmin(x[0, 1])
        return _MIXED[form](i, j) if traced else _MIXED[form](int(i), int(j))

    def read(x, traced=True):
        return x[positions(x, traced)]

    def assign(x, traced=True):
        y = x * 1.0
        where = positions(x, traced)
        y[where] = 2.0 * y[where] + 1.0
        y[where] += x[0, 0, 0]
        return y

    x = R.normal(size=(3, 4, 5))
    for f in (read, assign):
        got = pz.make_program(f, x)(x)[0]
        want = f(x, traced=False)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        check_grads(f, (x,), engine="numpy")


def test_assignment_at_too_many_traced_positions_is_refused() -> None:
    def f(x):
        y = x * 1.0
        y[np.argsort(x)] = x
        return y

    with pytest.raises(pz.UnsupportedOperationError, match="at most 4096"):
        pz.make_program(f, np.ones(5000))


def test_out_of_bounds_traced_index_raises() -> None:
    f = lambda x: x[np.argmax(x) + 10]  # noqa: E731
    with pytest.raises(IndexError, match="out of bounds"):
        pz.make_program(f, V)(V)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: x[0, np.argmax(x[0]) + 2],  # past the end of axis 1, inside the array
        lambda x: x[1, np.argmax(x[0]) - 9],  # below -n on axis 1
        lambda x: np.take_along_axis(x, np.argmax(x, axis=1, keepdims=True) + 2, axis=1),
        lambda x: np.take(x, np.argmax(x[0]) + 2, axis=1),
    ],
)
def test_an_index_past_its_axis_raises_like_numpy(f) -> None:
    """Found in user testing and review: only the flat position was checked, so x[0, 5] of a
    3x4 array read x[1, 1]."""
    x = np.arange(12.0).reshape(3, 4)
    with pytest.raises(IndexError):
        f(x)
    with pytest.raises(IndexError, match="out of bounds for its axis"):
        pz.make_program(f, x)(x)


def test_median_and_quantile_of_slices_holding_nan_are_nan() -> None:
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    for f in (np.median, lambda v: np.median(v, axis=1), lambda v: np.quantile(v, [0.2, 0.8], axis=1), lambda v: np.percentile(v, 30, axis=0)):
        np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x))


def test_pz_take_reads_a_constant_table_at_a_traced_position() -> None:
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    x = np.array([0.5, 2.5, 1.0])
    f = lambda v: pz.take(table, np.argmax(v), axis=0) * v[1]  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], table[1] * 2.5)
    np.testing.assert_array_equal(pz.jacobian(f, x)[0], [[0.0, 3.0, 0.0], [0.0, 4.0, 0.0]])
    np.testing.assert_array_equal(pz.take(table, [2, 0], axis=0), table[[2, 0]])  # plain numpy too


def test_like_functions_take_shape_and_dtype_and_are_writable() -> None:
    def f(x):
        y = np.full_like(x, 2.0)
        y[1] = x[0]  # a constant fill is still an array that can be assigned into
        z = np.zeros_like(x, shape=(2, 3))
        z[1, np.argmax(x) % 3] = x[1]
        w = np.full_like(x, x[2], shape=3)
        w[0] = 1.0
        return y, z, w, np.ones_like(x, np.float32, shape=(2,)), np.full_like(x, 2.5, dtype=int, shape=2)

    x = np.array([0.5, -1.0, 3.0, 2.0])
    got, want = pz.make_program(f, x)(x), f(x)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        assert g.dtype == w.dtype
    (dx,) = pz.gradient(lambda x: sum(np.sum(o * (k + 1.0)) for k, o in enumerate(f(x)[:3])), x)
    np.testing.assert_array_equal(dx, [1.0, 2.0, 6.0, 0.0])


W = np.array([[True, False, True, True], [True, True, False, False], [False, True, True, True]])
REDUCTION_KEYWORDS = {
    "sum-initial": lambda x: np.sum(x, initial=10.0),
    "sum-where": lambda x: np.sum(x, where=W, axis=1),
    "sum-where-traced": lambda x: np.sum(x, where=x > 1.0, axis=0, keepdims=True),
    "prod-initial-where": lambda x: np.prod(x, initial=2.0, where=W[0], axis=1),
    "max-where": lambda x: np.max(x, where=W, initial=-5.0, axis=0),
    "min-where-traced": lambda x: np.min(x, where=x > 0.8, initial=100.0, axis=1),
    "mean-where": lambda x: np.mean(x, where=W),
    "mean-where-row": lambda x: np.mean(x, where=W[0], axis=1, keepdims=True),
    "mean-where-traced": lambda x: np.mean(x, where=x > 0.8, axis=0),
    "var-mean": lambda x: np.var(x, mean=np.ones((1, 1))),
    "var-mean-axis": lambda x: np.var(x, axis=1, mean=np.mean(x, axis=1, keepdims=True) + 0.5),
    "var-correction": lambda x: np.var(x, correction=1),
    "std-where": lambda x: np.std(x, where=W, axis=1, ddof=1),
    "std-where-traced": lambda x: np.std(x, where=x > 0.9, axis=0, mean=np.full((1, 4), 1.0)),
}


@pytest.mark.parametrize("name", sorted(REDUCTION_KEYWORDS))
def test_reduction_keywords_match_numpy_and_finite_differences(name: str) -> None:
    f = REDUCTION_KEYWORDS[name]
    got, want = pz.make_program(f, M)(M)[0], f(M)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == want.dtype
    check_grads(f, (M,), engine="numpy")


@pytest.mark.parametrize(
    ("f", "error", "message"),
    [
        (lambda x: np.max(x, where=W), ValueError, "has to specify 'initial'"),
        (lambda x: np.var(x, ddof=1, correction=1), ValueError, "simultaneously"),
        (lambda x: np.sum(x, where=x), TypeError, "boolean"),
        (lambda x: np.sum(x, out=x), ValueError, r"shape \(3, 4\), the result has shape \(\)"),
    ],
)
def test_reduction_keyword_errors(f, error, message) -> None:
    with pytest.raises(error, match=message):
        pz.make_program(f, M)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.concatenate([x, x], dtype=np.float32),
        lambda x: np.stack([x, x], axis=1, dtype=np.float32),
        lambda x: np.hstack([x, x], dtype=np.float32),
        lambda x: np.vstack([x, x], dtype=np.float32),
    ],
    ids=["concatenate", "stack", "hstack", "vstack"],
)
def test_joining_functions_take_dtype(f) -> None:
    got, want = pz.make_program(f, M)(M)[0], f(M)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype == np.float32
    with pytest.raises(TypeError, match="according to the rule 'same_kind'"):
        pz.make_program(lambda x: np.concatenate([x, x], dtype=np.int64), M)


def test_reshape_with_copy_is_not_a_view() -> None:
    def f(x):
        y = x * 1.0
        np.reshape(y, (4, 3), copy=True)[0, 0] = 9.0  # a copy: y keeps its value
        np.reshape(y, (4, 3))[0, 1] = 7.0  # a view: y changes
        return y

    np.testing.assert_array_equal(pz.make_program(f, M)(M)[0], f(M))


NAN_DATA = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [0.5, -2.0, 4.0]])
NAN_REDUCTIONS = {
    "nansum": lambda x: np.nansum(x, axis=1),
    "nanprod": lambda x: np.nanprod(x, axis=0, keepdims=True),
    "nanmean": lambda x: np.nanmean(x, axis=1),  # an all-NaN row is NaN, as in numpy
    "nanmax": lambda x: np.nanmax(x, axis=1),
    "nanmin": lambda x: np.nanmin(x, axis=0),
    "nanvar": lambda x: np.nanvar(x, axis=1, ddof=1),
    "nanstd": lambda x: np.nanstd(x),
    "ptp": lambda x: np.ptp(np.nan_to_num(x), axis=0),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", sorted(NAN_REDUCTIONS))
def test_nan_reductions_match_numpy_and_ignore_nans_in_derivatives(name: str) -> None:
    f = NAN_REDUCTIONS[name]
    got, want = pz.make_program(f, NAN_DATA)(NAN_DATA)[0], f(NAN_DATA)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert np.shape(got) == np.shape(want)
    x = NAN_DATA.copy()
    x[1] = [0.3, np.nan, -0.4]  # every reduced slice keeps a number, so the loss is finite
    seen = ~np.isnan(x)
    loss = lambda z: np.sum(f(z))  # noqa: E731
    (g,) = pz.gradient(loss, x)
    assert np.all(g[~seen] == 0.0)
    fd = numerical_gradient(lambda z: loss(np.where(seen, z, np.nan)), np.where(seen, x, 0.5))[0]
    np.testing.assert_allclose(g[seen], fd[seen], rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_variance_with_more_degrees_of_freedom_than_entries_is_inf_as_in_numpy() -> None:
    x = np.array([1.0, 2.0, 4.0])
    for ddof in (3, 5):
        assert pz.make_program(lambda v: np.var(v, ddof=ddof), x)(x)[0] == np.var(x, ddof=ddof) == np.inf


@pytest.mark.parametrize(
    "f",
    [np.trunc, np.fix, np.signbit, lambda x: np.copysign(x, x[::-1]), lambda x: np.copysign(x[::-1], -1.0)],
    ids=["trunc", "fix", "signbit", "copysign", "copysign-constant"],
)
def test_rounding_toward_zero_and_signs_match_numpy_at_signed_zeros(f) -> None:
    x = np.array([-2.5, -0.5, -0.0, 0.0, 0.7, 3.0, -np.inf])
    got, want = pz.make_program(f, x)(x)[0], f(x)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.var(x[0]),
        lambda x: np.std(x[0], ddof=1),
        lambda x: np.mean(x, where=np.array([True, False, True])),
        lambda x: np.mean(x, where=x > 0, axis=0),
        lambda x: np.nanmean(x, axis=1),
        lambda x: np.nanvar(x),
        lambda x: np.copysign(x, -1.0),
        lambda x: np.copysign(x, np.float64(-1.0)),
        lambda x: np.copysign(2.0, x),
    ],
)
def test_float32_stays_float32_where_numpy_keeps_it(f) -> None:
    x = np.array([[1.0, -2.0, 3.0], [0.5, np.nan, -1.0]], np.float32)
    got, want = pz.make_program(f, x)(x)[0], f(x)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_assigning_whole_rows_at_traced_positions_counts_rows_not_elements() -> None:
    wide = np.random.default_rng(4).normal(size=(3, 5000))  # more elements than the pairwise limit

    def f(b):
        c = b * 1.0
        c[np.argmax(b[:, 0])] = 0.0
        c[np.argmin(b[:, 1]), :] = c[0] * 2.0  # a trailing full slice is the same row
        c[np.argsort(b[:, 2])[:2]] = b[:1, :] * 3.0  # a value with a leading dimension of 1
        return c + b[np.argmax(b[:, 3]), ...]

    np.testing.assert_array_equal(pz.make_program(f, wide)(wide)[0], f(wide))
    check_grads(lambda b: np.sum(f(b) ** 2), (wide[:, :6],), engine="numpy")


def test_lists_holding_traced_integers_index_like_arrays() -> None:
    def f(x):
        y = x * 1.0
        y[[np.argmax(x), 0]] = 5.0 * x[4]
        return y * np.sum(x[[np.argmin(x), 1]])

    np.testing.assert_array_equal(pz.make_program(f, V)(V)[0], f(V))
    check_grads(lambda x: np.sum(f(x) ** 2), (V,), engine="numpy")


def test_assigned_values_may_have_extra_leading_dimensions_of_size_one() -> None:
    """Found by the differential fuzzer: numpy accepts these, tracing raised."""

    def f(x):
        y = x * 1.0
        y[...] = x[None] * 2.0  # (1, 6) into (6,)
        y[1:4] = np.ones((1, 1, 3)) * x[5]
        y[np.argmax(x[:2]), ...] = x[None, 0]
        return y

    x = np.arange(1.0, 7.0)
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))
    check_grads(lambda x: np.sum(f(x) ** 2), (x,), engine="numpy")


@pytest.mark.parametrize(
    "f",
    [
        lambda y: np.ravel(y, order="F"),
        lambda y: y.reshape(2, 6, order="F"),
        lambda y: y.T.reshape(-1, order="A"),  # Fortran-ordered in memory: read so
        lambda y: np.ravel(y.T, order="K"),
        lambda y: np.ravel(y[:, ::2].T, order="K"),
        lambda y: np.pad(y, {1: (1, 2)}),  # numpy 2's per-axis dict
        lambda y: np.stack(divmod(y + 0.05, 0.7)),  # away from the jumps
        lambda y: np.stack(divmod(10.0, y + 1.05)),
    ],
)
def test_orders_dict_pad_widths_and_divmod_match_numpy(f) -> None:
    """Found by the differential fuzzer: these raised while tracing."""
    x = np.arange(1.0, 13.0).reshape(3, 4)
    try:
        want = f(x)
    except TypeError as exc:  # dict pad widths are numpy >= 2.3's
        pytest.skip(f"this numpy does not take it either: {exc}")
    np.testing.assert_allclose(pz.make_program(f, x)(x)[0], want, rtol=1e-15)
    check_grads(lambda x: np.sum(np.sin(f(x))), (x,), engine="numpy")


def test_reshape_in_fortran_order_is_a_view_where_numpy_makes_one() -> None:
    def f(x):
        y = x * 1.0
        r = y.T.reshape(-1, order="A")  # y.T is Fortran-contiguous: a view
        r[0] = 100.0
        c = np.ravel(y, order="F")  # a copy
        c[1] = -7.0
        return y

    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))


def test_string_norm_orders_of_vectors_raise_as_in_numpy() -> None:
    with pytest.raises(ValueError, match="Invalid norm order 'fro' for vectors"):
        pz.gradient(lambda v: np.linalg.norm(v, "fro"), np.ones(3))


def _assemble(x):
    """Finite-element style assembly: element matrices summed into a global one."""
    K = np.zeros((4, 4)) + 0.0 * x[0]
    elements = np.array([[0, 1], [1, 2], [2, 3]])
    for e, (i, j) in enumerate(elements):
        ke = x[e] * np.array([[1.0, -1.0], [-1.0, 1.0]])
        np.add.at(K, (np.array([[i], [j]]), np.array([[i, j]])), ke)
    v = np.zeros(3) + 0.0 * x[0]
    np.add.at(v, np.array([0, 1, 1, 2]), x)  # repeated positions add up
    np.subtract.at(v, np.argmax(x), 10.0 * x[3])  # a traced position
    return K.sum(axis=0) * 0.0 + K[1] + np.sum(v**2) + np.bincount(np.array([2, 0, 2]), weights=x[:3] ** 2, minlength=4)


def test_add_at_subtract_at_and_bincount_sum_at_repeated_positions() -> None:
    """Found in user testing: np.add.at, common in FEM assembly, could not be traced."""
    x = np.array([1.5, 0.5, 2.5, 1.0])
    np.testing.assert_allclose(pz.make_program(_assemble, x)(x)[0], _assemble(x), rtol=1e-15)
    check_grads(lambda x: np.sum(np.sin(_assemble(x))), (x,), engine="numpy")
    with pytest.raises(pz.UnsupportedOperationError, match="a numpy array, which cannot hold"):
        pz.gradient(lambda x: np.add.at(np.zeros(3), [0, 1], x[:2]) or 0.0, x)


def test_empty_assignments_at_traced_positions_and_constant_masks_with_traced_ones() -> None:
    """Found by the adversarial round: y[idx, 2:2] = v raised, and np.array([...]) | (x > 0) had no rule."""

    def f(x):
        y = x * 1.0
        y[np.argmax(x[:, :3], axis=1), 2:2] = 5.0  # nothing is assigned
        keep = np.array([[True, False, False, True]] * 3) | (x > 0.5)
        return np.where(keep, y, 0.0)

    x = np.arange(12.0).reshape(3, 4) / 10.0
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x.copy()))
    with pytest.raises(pz.UnsupportedOperationError, match="bitwise operator | of integers"):
        pz.make_program(lambda x: np.array([1, 2]) | np.argmax(x), x)


def test_assignments_whose_positions_cannot_repeat_skip_the_pairwise_check() -> None:
    """Found in review: a one-hot target Y[np.arange(n), labels] = 1 with traced labels compared
    all n * n pairs (refused above 4096), and y[:, j] = v compared every element, not every j."""

    def one_hot_loss(W, X, labels):
        logits = X @ W
        Y = np.zeros_like(logits)
        Y[np.arange(labels.size), labels] = 1.0
        return np.sum((logits - Y) ** 2)

    rng = np.random.default_rng(1)
    W, X, labels = rng.normal(size=(3, 4)), rng.normal(size=(5000, 3)), rng.integers(0, 4, 5000)
    g = (pz.grad(one_hot_loss)(W, X, labels),)
    np.testing.assert_allclose(g[0], 2 * X.T @ (X @ W - np.eye(4)[labels]), rtol=1e-10)

    def columns(x):
        y = x * 1.0
        j = np.argsort(x[0])[np.array([0, 1, 0])]  # traced, with a repeat: the last wins
        y[:, j] = np.array([1.0, 2.0, 3.0]) * x[:, :3]
        return y

    x = rng.normal(size=(2000, 4))
    np.testing.assert_array_equal(pz.make_program(columns, x)(x)[0], columns(x.copy()))


def test_negative_binomial_likelihood_through_gammaln_and_digamma() -> None:
    """User testing: a negative-binomial log-likelihood needs gammaln of the fitted dispersion,
    which was refused.  gammaln's derivative is digamma, digamma's is polygamma(1, .)."""
    y = np.array([0.0, 3.0, 7.0, 12.0, 1.0])

    def nll(theta: Any) -> Any:
        mu, phi = np.exp(theta[0]), np.exp(theta[1])
        ll = sc.gammaln(y + phi) - sc.gammaln(phi) - sc.gammaln(y + 1.0) + phi * np.log(phi / (phi + mu)) + y * np.log(mu / (phi + mu))
        return -np.sum(ll)

    theta = np.array([1.2, 0.3])
    (g,) = pz.gradient(nll, theta)
    np.testing.assert_allclose(g, numerical_gradient(nll, theta)[0], rtol=1e-8)
    H = pz.hessian(nll, theta)
    grad = lambda t: pz.gradient(nll, t)[0]  # noqa: E731
    np.testing.assert_allclose(H, np.stack([(grad(theta + h) - grad(theta - h)) / 2e-6 for h in 1e-6 * np.eye(2)], axis=1), rtol=1e-7)
    # log|Gamma| at negative non-integers (Gamma(-2.5) < 0), third derivatives through polygamma
    x = np.array([-2.5, 0.5, 3.0])
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.gammaln(v)), x)[0], sc.digamma(x), rtol=1e-13)
    d3 = pz.gradient(lambda v: np.sum(pz.hessian(lambda w: np.sum(sc.gammaln(w)), v)), x)[0]
    np.testing.assert_allclose(d3, sc.polygamma(2, x), rtol=1e-12)
    np.testing.assert_allclose(pz.gradient(lambda v: sc.betaln(v[0], v[1]), x[1:])[0], sc.digamma(x[1:]) - sc.digamma(np.sum(x[1:])), rtol=1e-13)


def test_censored_normal_likelihood_through_log_ndtr_keeps_its_tails() -> None:
    """A Tobit (left-censored normal) likelihood needs log_ndtr of the fitted mean, far into the
    lower tail where ndtr underflows; its derivative there is pdf / cdf, about -x."""
    y = np.array([0.0, 0.0, 1.3, 2.2, 0.0, 0.4])
    censored = y == 0.0

    def nll(theta: Any) -> Any:
        mu, sigma = theta[0], np.exp(theta[1])
        z = (y - mu) / sigma
        return -np.sum(np.where(censored, sc.log_ndtr(z), -0.5 * z**2 - np.log(sigma)))

    theta = np.array([0.7, -0.2])
    (g,) = pz.gradient(nll, theta)
    np.testing.assert_allclose(g, numerical_gradient(nll, theta)[0], rtol=1e-8)
    grad = lambda t: pz.gradient(nll, t)[0]  # noqa: E731
    H = pz.hessian(nll, theta)
    np.testing.assert_allclose(H, np.stack([(grad(theta + h) - grad(theta - h)) / 2e-6 for h in 1e-6 * np.eye(2)], axis=1), rtol=1e-7)
    # Deep in the lower tail: d/dx log ndtr(x) = x * (1/x**2 - 1 + O(1/x**4)) ... about -x, and
    # its derivative tends to -1, where ndtr(x) itself is 0.
    x = np.array([-1e3, -40.0, -8.0, 0.0, 8.0, 40.0])
    d1 = pz.gradient(lambda v: np.sum(sc.log_ndtr(v)), x)[0]
    pdf = np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(d1[2:], pdf[2:] / sc.ndtr(x[2:]), rtol=1e-13)
    # the asymptotic series ndtr(x) = pdf(x) / -x * S(x) and its derivative
    S = lambda v: 1 - 1 / v**2 + 3 / v**4 - 15 / v**6 + 105 / v**8  # noqa: E731
    dS = lambda v: 2 / v**3 - 12 / v**5 + 90 / v**7 - 840 / v**9  # noqa: E731
    np.testing.assert_allclose(d1[:2], -x[:2] / S(x[:2]), rtol=1e-12)
    d2 = np.diag(pz.hessian(lambda v: np.sum(sc.log_ndtr(v)), x))
    np.testing.assert_allclose(d2[:2], -1 / S(x[:2]) + x[:2] * dS(x[:2]) / S(x[:2]) ** 2, rtol=1e-9)
    assert np.all(np.isfinite(d2)) and abs(d2[-1]) < 1e-300  # the upper tail: r(x) underflows, r'(x) too
    np.testing.assert_allclose(d2[3], -2 / np.pi, rtol=1e-14)
    # ndtr, ndtri, erf, erfc, erfcx, erfinv, erfcinv: derivatives in closed form
    q = np.array([1e-12, 0.2, 0.5, 0.97])
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.ndtri(v)), q)[0], np.sqrt(2 * np.pi) * np.exp(sc.ndtri(q) ** 2 / 2), rtol=1e-12)
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.ndtr(v)), x[1:])[0], pdf[1:], rtol=1e-14, atol=1e-300)
    u = np.array([-3.0, -0.5, 0.0, 0.7, 30.0])
    two = 2 / np.sqrt(np.pi)
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.erf(v)), u)[0], two * np.exp(-(u**2)), rtol=1e-14)
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.erfc(v)), u)[0], -two * np.exp(-(u**2)), rtol=1e-14)
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.erfcx(v)), u)[0], 2 * u * sc.erfcx(u) - two, rtol=1e-12)
    w = np.array([-0.999, 0.0, 0.5])
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.erfinv(v)), w)[0], np.exp(sc.erfinv(w) ** 2) / two, rtol=1e-13)
    np.testing.assert_allclose(pz.gradient(lambda v: np.sum(sc.erfcinv(v)), 1 - w)[0], -np.exp(sc.erfcinv(1 - w) ** 2) / two, rtol=1e-13)


def test_singular_value_functions_have_their_closed_form_derivatives() -> None:
    """norm(A, 2) = s[0] has gradient u0 v0^T, the nuclear norm U V^T, and pinv, cond and
    matrix_rank follow numpy, for square, tall and wide matrices."""
    rng = np.random.default_rng(11)
    for shape in [(3, 3), (5, 3), (2, 4)]:
        A = rng.standard_normal(shape)
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        for ord_, want in [(2, np.outer(U[:, 0], Vt[0])), (-2, np.outer(U[:, -1], Vt[-1])), ("nuc", U @ Vt)]:
            value, (g,) = pz.withgradient(lambda a: np.linalg.norm(a, ord_), A)
            assert value == pytest.approx(np.linalg.norm(A, ord_), rel=1e-14)
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14)
            check_grads(lambda a: np.linalg.norm(a, ord_), (A,), order=2, engine="numpy")
        np.testing.assert_allclose(pz.make_program(lambda a: np.linalg.norm(a, 2, axis=(1, 0), keepdims=True), A)(A)[0], np.linalg.norm(A, 2, axis=(1, 0), keepdims=True), rtol=1e-14)
        np.testing.assert_allclose(pz.gradient(lambda a: np.sum(np.linalg.svdvals(a)), A)[0], U @ Vt, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(pz.make_program(np.linalg.pinv, A)(A)[0], np.linalg.pinv(A), rtol=1e-12, atol=1e-14)
        check_grads(lambda a: np.linalg.pinv(a), (A,), engine="numpy")
        # least squares through the pseudo-inverse, as a fitted design matrix would use it
        b = rng.standard_normal(shape[0])
        check_grads(lambda a, y: np.sum(np.sin(np.linalg.pinv(a) @ y)), (A, b), order=2, engine="numpy")
        assert pz.make_program(np.linalg.cond, A)(A)[0] == pytest.approx(np.linalg.cond(A), rel=1e-13)
        check_grads(lambda a: np.linalg.cond(a), (A,), engine="numpy")
    # pinv drops singular values below rcond * max(s), as numpy does, and is then smooth
    R = np.outer([1.0, 2.0, 3.0], [1.0, -1.0]) + 1e-17 * rng.standard_normal((3, 2))
    np.testing.assert_allclose(pz.make_program(lambda a: np.linalg.pinv(a, rcond=1e-10), R)(R)[0], np.linalg.pinv(R, rcond=1e-10), rtol=1e-12)
    assert pz.make_program(np.linalg.matrix_rank, R)(R)[0] == np.linalg.matrix_rank(R) == 1
    assert pz.make_program(lambda a: np.linalg.matrix_rank(a, tol=1e-20), R)(R)[0] == np.linalg.matrix_rank(R, tol=1e-20)
    # numpy's cond of a singular matrix is inf, also of the zero matrix (0 / 0), and refuses empty ones (fuzzer)
    with np.errstate(all="ignore"):
        for S in (np.zeros((2, 2)), np.diag([1.0, 0.0])):
            assert pz.make_program(np.linalg.cond, S)(S)[0] == np.linalg.cond(S) == np.inf
    with pytest.raises(np.linalg.LinAlgError, match="cond is not defined on empty arrays"):
        pz.make_program(np.linalg.cond, np.zeros((0, 2)))


def test_svd_refuses_what_has_no_derivative_or_no_trace() -> None:
    A = np.arange(6.0).reshape(3, 2) + np.eye(3, 2)
    with pytest.raises(pz.UnsupportedOperationError, match="full_matrices=False: the 1 extra singular vectors"):
        pz.gradient(lambda a: np.sum(np.linalg.svd(a)[0]), A)
    with pytest.raises(np.linalg.LinAlgError, match="one matrix, got shape \\(2, 3, 2\\)"):
        pz.gradient(lambda a: np.sum(np.linalg.svd(np.stack([a, a]), compute_uv=False)), A)
    with pytest.raises(ValueError, match="Invalid norm order for matrices"):
        pz.gradient(lambda a: np.linalg.norm(a, 3), A)
    # a square matrix's full and thin decompositions are the same: allowed
    B = A[:2]
    (g,) = pz.gradient(lambda a: np.sum(np.linalg.svd(a).S), B)
    U, s, Vt = np.linalg.svd(B)
    np.testing.assert_allclose(g, U @ Vt, rtol=1e-12)


def test_lstsq_returns_numpys_four_results_and_their_derivatives() -> None:
    rng = np.random.default_rng(3)
    tall, b = rng.standard_normal((6, 3)), rng.standard_normal(6)
    for a, rhs in [(tall, b), (tall, rng.standard_normal((6, 2))), (tall.T, b[:3]), (tall[:3], b[:3]), (tall.astype(np.float32), b.astype(np.float32))]:
        got = pz.make_program(np.linalg.lstsq, a, rhs)(a, rhs)
        ref = np.linalg.lstsq(a, rhs)
        for g, r in zip(got, ref):
            assert np.shape(g) == np.shape(r) and np.asarray(g).dtype == np.asarray(r).dtype
            np.testing.assert_allclose(g, r, rtol=1e-5 if a.dtype == np.float32 else 1e-12, atol=1e-6 if a.dtype == np.float32 else 1e-13)
    # x = (A^T A)^-1 A^T b for a full-rank tall A: d sum(x) / db = A (A^T A)^-1 1
    (gb,) = pz.gradient(lambda y: np.sum(np.linalg.lstsq(tall, y)[0]), b)
    np.testing.assert_allclose(gb, tall @ np.linalg.solve(tall.T @ tall, np.ones(3)), rtol=1e-12)
    check_grads(lambda a, y: np.sum(np.sin(np.linalg.lstsq(a, y)[0])), (tall, b), order=2, engine="numpy")
    # residuals ||b - A x||^2: d/db = 2 (b - A x) (the gradient in x vanishes at the optimum)
    (gr,) = pz.gradient(lambda y: np.linalg.lstsq(tall, y)[1][0], b)
    np.testing.assert_allclose(gr, 2 * (b - tall @ np.linalg.lstsq(tall, b)[0]), rtol=1e-10)
    # a rank-deficient A: the rank and the minimum-norm x are numpy's
    deficient = np.hstack([tall, tall[:, :1]])
    x, _, rank, _ = pz.make_program(np.linalg.lstsq, deficient, b)(deficient, b)
    assert rank == 3
    np.testing.assert_allclose(x, np.linalg.lstsq(deficient, b)[0], rtol=1e-10)
    with pytest.raises(np.linalg.LinAlgError, match=r"Incompatible dimensions.*\(6,\) or \(6, k\).*got \(5,\)"):
        pz.gradient(lambda a: np.sum(np.linalg.lstsq(a, np.ones(5))[0]), tall)
    with pytest.raises(pz.UnsupportedOperationError, match="rcond"):
        pz.gradient(lambda a: np.sum(np.linalg.lstsq(a, b, rcond=a[0, 0])[0]), tall)


def test_lstsq_edge_cases_as_numpy() -> None:
    """The Julia audit: rcond=-1 (numpy 1's default, still common) was passed on as a cut-off of
    0, so a rank-1 matrix gave x of size 1e14 and rank 2, where numpy cuts at machine precision;
    an empty matrix failed in its rank's np.max."""
    import warnings

    rank_one, b = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]), np.array([1.0, 2.0, 2.9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's FutureWarning about rcond's default, if any
        want = np.linalg.lstsq(rank_one, b, rcond=-1)
    got = pz.make_program(lambda a, y: np.linalg.lstsq(a, y, rcond=-1), rank_one, b)(rank_one, b)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    assert int(got[2]) == int(want[2]) == 1
    for shape in ((3, 0), (0, 3)):
        a, y = np.zeros(shape), np.ones(shape[0])
        got, want = pz.make_program(np.linalg.lstsq, a, y)(a, y), np.linalg.lstsq(a, y)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    # Fuzzer: numpy solves float32 in float64, with float64's cut-off, and returns float32.
    a, y = np.diag([1.0, 1e-8]).astype(np.float32), np.ones(2, np.float32)
    for rcond in (None, -1):
        got, want = pz.make_program(lambda a, y: np.linalg.lstsq(a, y, rcond=rcond), a, y)(a, y), np.linalg.lstsq(a, y, rcond=rcond)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
        assert [np.asarray(g).dtype for g in got] == [np.asarray(w).dtype for w in want] and int(got[2]) == 2


def test_block_of_booleans_and_put_at_traced_positions_as_numpy() -> None:
    """The Julia audit: np.block of one boolean array gave int64 (a copy made with * 1), and
    np.put at traced positions did not repeat a shorter v as numpy does."""
    x = np.array([0.5, -1.0, 2.0])
    (got,) = pz.make_program(lambda v: np.block(v > 0), x)(x)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, x > 0)

    def spread(a: Any, w: Any) -> Any:
        a = a.copy()
        np.put(a, np.argsort(w), a[:2] + np.array([10.0, 20.0]))
        return a

    a, w = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.3, 0.1, 0.4, 0.2])
    np.testing.assert_allclose(pz.make_program(spread, a, w)(a, w)[0], spread(a, w))
    (g,) = pz.gradient(lambda v: np.sum(spread(v, w) * np.arange(1.0, 5.0)), a)
    np.testing.assert_allclose(g, numerical_gradient(lambda v: np.sum(spread(v, w) * np.arange(1.0, 5.0)), a)[0], rtol=1e-8)


def test_insert_put_and_positions_as_numpy_takes_them() -> None:
    """Fuzzer: np.insert of values that numpy broadcasts into the slot failed; np.put(y, [], v)
    raised; positions built as np.array([i, j]) of traced integers (an object array) gave
    numpy's bare IndexError; a position passed positionally (so differentiated) got no hint."""
    M = np.arange(12.0).reshape(3, 4) + 1
    for f in (
        lambda M, v: np.insert(M, 1, np.reshape(v, (1, 1)), axis=0),
        lambda M, v: np.insert(M, 1, np.ones((2, 1)) * v, axis=1),
        lambda M, v: np.insert(M, -1, M[:, 0] * v, axis=1),
        lambda M, v: np.insert(M * v, 1, [7.0, 8.0]),  # flat: both values
    ):
        np.testing.assert_array_equal(pz.make_program(f, M, 0.5)(M, 0.5)[0], f(M, 0.5))
        (gv,) = pz.gradient(lambda v: np.sum(f(M, v) ** 2), 0.5)
        np.testing.assert_allclose(gv, numerical_gradient(lambda v: np.sum(f(M, v) ** 2), 0.5)[0], rtol=1e-7)

    x = np.array([0.5, -0.7, 1.3, 2.2, -0.1])

    def scatter(x: Any, how: str) -> Any:
        y = x * 1.0
        at = np.array([np.argmax(x), np.argmin(x)])  # an object array of traced integers
        if how == "setitem":
            y[at] += x[:2]
        elif how == "add.at":
            np.add.at(y, at, x[:2])
        else:
            np.put(y, at, x[:2])
            np.put(y, [], x[0])  # nothing written, as numpy
        return np.sum(y**2)

    for how in ("setitem", "add.at", "put"):
        (g,) = pz.gradient(lambda v: scatter(v, how), x)
        np.testing.assert_allclose(g, numerical_gradient(lambda v: scatter(v.copy(), how), x)[0], rtol=1e-7, err_msg=how)
    for f in (lambda x, p: np.sum(np.insert(x, p, 1.0)), lambda x, p: (lambda y: (np.put(y, p, 1.0), np.sum(y))[1])(x * 1.0)):
        with pytest.raises((TypeError, pz.UnsupportedOperationError), match="an argument pyzygote differentiates"):
            pz.gradient(f, x, 2)


def test_pinv_is_smooth_where_singular_values_repeat() -> None:
    """Fuzzer: pinv's derivative through the singular vectors divided by the gaps between
    singular values: NaN at the identity or an orthogonal matrix, and 13% off (silently) for a
    QR factor whose singular values were equal to rounding.  It needs only pinv itself."""
    rng = np.random.default_rng(2)
    Q = np.linalg.qr(rng.standard_normal((4, 2)))[0]  # orthonormal columns: singular values 1, 1
    f = lambda a: np.sum(np.sin(np.linalg.pinv(a)))  # noqa: E731
    for A in (np.eye(3), np.diag([3.0, 1.0, 1.0]), Q, Q.T, np.eye(3) + 1e-13 * rng.standard_normal((3, 3))):
        (g,) = pz.gradient(f, A)
        np.testing.assert_allclose(g, numerical_gradient(f, A)[0], rtol=1e-7, atol=1e-9)
        if A.shape[0] == A.shape[1]:  # pinv = inv: d sum(sin(inv(A))) = -inv(A)^T cos(inv(A)) inv(A)^T
            P = np.linalg.inv(A)
            np.testing.assert_allclose(g, -P.T @ np.cos(P) @ P.T, rtol=1e-12, atol=1e-14)
    check_grads(f, (Q,), order=2, engine="numpy")


def test_block_refuses_what_numpy_refuses() -> None:
    x = np.ones((2, 2))
    with pytest.raises(TypeError, match="tuple"):
        pz.gradient(lambda a: np.sum(np.block((a, a))), x)
    with pytest.raises(ValueError, match="depths are mismatched"):
        pz.gradient(lambda a: np.sum(np.block([[a, a], a])), x)
    with pytest.raises(ValueError, match="cannot be empty"):
        pz.gradient(lambda a: np.sum(np.block([a, []])), x)


def test_a_solve_singular_to_working_precision_warns() -> None:
    """User testing: a stiffness matrix without boundary conditions (condition 8.5e17) gave a
    loss of 2e31 and a finite gradient, silently, as numpy does.  From 64 unknowns solves go
    through SciPy, which estimates the condition from its LU factors and warns."""
    import scipy.linalg

    n = 80
    i = np.arange(n - 1)
    rows, cols = np.concatenate([i, i, i + 1, i + 1]), np.concatenate([i, i + 1, i, i + 1])

    def loss(E: Any, spring: float) -> Any:
        K = np.zeros_like(E, shape=(n, n))
        np.add.at(K, (rows, cols), np.concatenate([E, -E, -E, E]))
        return np.sum(np.linalg.solve(K + spring * np.eye(n)[0][:, None] * np.eye(n)[0], np.linspace(-1.0, 1.0, n)) ** 2)

    E = np.linspace(1.0, 2.0, n - 1)
    with pytest.warns(scipy.linalg.LinAlgWarning, match=r"np.linalg.solve: the 80 x 80 matrix is singular to working precision \(reciprocal condition number 1.\de-18\).*boundary conditions"):
        pz.gradient(lambda e: loss(e, 1e-15), E)  # one end held by a spring of rounding size
    with pytest.raises(np.linalg.LinAlgError, match="^Singular matrix$"):
        pz.gradient(lambda e: loss(e, 0.0), E)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = pz.gradient(lambda e: loss(e, 1.0), E)  # well conditioned: no warning, the gradient numpy's rules give
    # the adjoint's closed form: dL/dE_e = -(lam_e - lam_e+1)(u_e - u_e+1), K lam = 2 u, K u = f
    K = np.zeros((n, n))
    np.add.at(K, (rows, cols), np.concatenate([E, -E, -E, E]))
    K[0, 0] += 1.0
    u = np.linalg.solve(K, np.linspace(-1.0, 1.0, n))
    lam = np.linalg.solve(K.T, 2 * u)
    np.testing.assert_allclose(g, -np.diff(lam) * np.diff(u), rtol=1e-8)


def test_writes_into_numpy_arrays_and_general_eigenvalues_are_refused_with_a_way_forward() -> None:
    x = np.arange(1.0, 4.0)
    with pytest.raises(pz.TracerBoolError, match="could not store a traced value into one of its own arrays.*np.zeros_like"):
        pz.gradient(lambda v: np.sum(np.fill_diagonal(np.zeros((3, 3)), v) or 0.0), x)
    with pytest.raises(pz.UnsupportedOperationError, match="put writes into a numpy array.*np.zeros_like"):
        pz.gradient(lambda v: np.sum(np.put(np.zeros(3), [0, 1], v) or 0.0), x)
    with pytest.raises(pz.UnsupportedOperationError, match="Write it as np.linalg.eigvalsh"):
        pz.gradient(lambda v: np.sum(np.linalg.eigvals(np.diag(v))), x)
    # user testing: a Leslie matrix's growth rate through eig got only the symmetric advice
    with pytest.raises(pz.UnsupportedOperationError, match=r"eigh\(a\) if a is symmetric.*Leslie.*v = a @ v / np.linalg.norm\(a @ v\)"):
        pz.gradient(lambda v: np.sum(np.linalg.eig(np.diag(v))[0].real), x)
    with pytest.raises(pz.UnsupportedOperationError, match=r"numpy.choose.*z\[np.arange\(n\), idx\] for np.choose\(idx, z.T\)"):
        pz.gradient(lambda v: np.sum(np.choose(np.array([0, 1, 1]), np.stack([v, 2 * v]))), x)
    with pytest.raises(pz.UnsupportedOperationError, match=r"numpy.argpartition.*np.argsort\(x\)\[-k:\] for their positions"):
        pz.gradient(lambda v: np.sum(v[np.argpartition(v, 1)[-2:]]), x)
    with pytest.raises(pz.UnsupportedOperationError, match=r"full_matrices=False.*np.linalg.svd\(a, compute_uv=False\)"):
        pz.gradient(lambda v: np.sum(np.linalg.svd(np.outer(v, v[:2]))[1]), x)
    with pytest.raises(pz.UnsupportedOperationError, match="one constant integer position"):
        pz.gradient(lambda v: np.sum(np.insert(v, [0, 1], 2.0)), x)
    with pytest.raises(pz.UnsupportedOperationError, match=r"Write it as np.select\(\[cond1, cond2\]"):
        pz.gradient(lambda v: np.sum(np.piecewise(v, [v < 2, v >= 2], [lambda w: -w, lambda w: w])), x)


def test_piecewise_over_a_constant_grid_gets_the_select_advice() -> None:
    """User testing: np.piecewise over a constant grid r with functions of traced parameters got
    the generic "numpy could not store a traced value" message; the np.select advice came only
    when r itself was traced. It comes now too, and the np.select it suggests gives the gradient."""
    r = np.linspace(0.0, 1.5, 31)
    p = np.array([0.3, 0.2])
    with pytest.raises(pz.TracerBoolError, match=r"^np.piecewise on a numpy array \(a constant grid\).*Write it as np.select\(\[cond1, cond2\]") as info:
        pz.grad(lambda p: np.sum(np.piecewise(r, [r < 0.5, r >= 0.5], [lambda r: p[0] * r**2, lambda r: p[1] * r]) ** 2))(p)
    assert "in <lambda>: pz.grad(lambda p: np.sum(np.piecewise(" in str(info.value)  # the user's line
    with pytest.raises(pz.TracerBoolError, match=r"^np.piecewise on a numpy array"):  # traced values rather than functions
        pz.grad(lambda p: np.sum(np.piecewise(r, [r < 0.5, r >= 0.5], [p[0], p[1]])))(p)
    # what it suggests: the same function, differentiated (closed form: sum of 2 * f * df/dp)
    g = pz.grad(lambda p: np.sum(np.select([r < 0.5, r >= 0.5], [p[0] * r**2, p[1] * r]) ** 2))(p)
    lo, hi = r < 0.5, r >= 0.5
    np.testing.assert_allclose(g, [np.sum(2 * p[0] * r[lo] ** 4), np.sum(2 * p[1] * r[hi] ** 2)], rtol=1e-14)


def test_unwrap_angle_histogram_and_windows_are_refused_with_what_to_write() -> None:
    """User testing: np.unwrap (an optical phase), np.angle, np.histogram and
    sliding_window_view were refused with no hint. The hints' forms give numpy's values and trace."""
    x = np.linspace(0.0, 1.0, 16)
    for call, hint in (
        (lambda a: np.sum(np.unwrap(a * x * 10)), r"numpy.unwrap.*Write it as p \+ np.concatenate\(\[\[0.0\], np.cumsum\(-2 \* np.pi"),
        (lambda a: np.sum(np.angle(a * x)), r"numpy.angle.*np.arctan2\(y, x\) for z = x \+ 1j \* y"),
        (lambda a: np.sum(np.histogram(a * x, bins=4)[0] * 1.0), r"numpy.histogram.*a kernel density.*piecewise constant"),
        (lambda a: np.sum(np.lib.stride_tricks.sliding_window_view(a * x, 3) ** 2), r"sliding_window_view.*x\[np.arange\(x.size - w \+ 1\)\[:, None\] \+ np.arange\(w\)\]"),
    ):
        with pytest.raises(pz.UnsupportedOperationError, match=hint):
            pz.grad(call)(1.0)
    # the unwrap written out is numpy's, with the derivative of the phase itself
    p = np.cumsum(np.full(40, 0.9))  # a phase wrapped into (-pi, pi] below
    wrapped = np.angle(np.exp(1j * p))
    unwrap = lambda q: q + np.concatenate([[0.0], np.cumsum(-2 * np.pi * np.round(np.diff(q) / (2 * np.pi)))])  # noqa: E731
    np.testing.assert_allclose(unwrap(wrapped), np.unwrap(wrapped), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pz.make_program(unwrap, wrapped)(wrapped)[0], np.unwrap(wrapped), rtol=0, atol=1e-12)
    (J,) = pz.jacobian(unwrap, wrapped)
    np.testing.assert_array_equal(J, np.eye(40))
    # the windows written out are sliding_window_view's
    w = 3
    windows = lambda v: v[np.arange(v.size - w + 1)[:, None] + np.arange(w)]  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(windows, x)(x)[0], np.lib.stride_tricks.sliding_window_view(x, w))
    check_grads(lambda v: np.sum(windows(v) ** 2 * np.arange(w)), (x,), engine="numpy")


def test_the_advice_for_eigvals_of_a_next_generation_matrix_holds() -> None:
    """User testing: the advice's similarity was cryptic for K = diag(s) @ C.  Its new form, the
    eigvalsh of diag(sqrt(s)) @ C @ diag(sqrt(s)), gives R0 and its gradient in s."""
    C = np.array([[2.0, 1.0, 0.5], [1.0, 3.0, 1.0], [0.5, 1.0, 2.0]])
    s = np.array([0.5, 1.0, 2.0])
    r0 = lambda s: np.max(np.linalg.eigvalsh(np.diag(np.sqrt(s)) @ C @ np.diag(np.sqrt(s))))  # noqa: E731
    np.testing.assert_allclose(r0(s), np.max(np.linalg.eigvals(np.diag(s) @ C).real), rtol=1e-13)
    (g,) = pz.gradient(r0, s)
    fd = [(np.max(np.linalg.eigvals(np.diag(s + h) @ C).real) - np.max(np.linalg.eigvals(np.diag(s - h) @ C).real)) / 2e-6 for h in 1e-6 * np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-7)


def test_eigvalsh_of_a_matrix_that_is_not_symmetric_warns() -> None:
    """User testing: the advice for np.linalg.eigvals (eigvalsh, for symmetric matrices) applied
    to a next-generation matrix gave R0 = 2.456 for 2.290, silently (numpy's eigvalsh reads one
    triangle).  It warns, and the advice names power iteration and a similar symmetric matrix."""
    import warnings

    N = np.array([2.0e6, 3.0e6, 2.5e6])
    C = np.array([[7.0, 3.0, 2.0], [3.0, 9.0, 3.0], [2.0, 3.0, 5.0]])
    K = lambda b: b * C * N[:, None] / N[None, :]  # noqa: E731  (diag(N) C diag(1/N): C's eigenvalues)
    with pytest.warns(RuntimeWarning, match="not symmetric.*spectral radius"):
        pz.gradient(lambda b: np.max(np.linalg.eigvalsh(K(b))), 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = pz.gradient(lambda b: np.max(np.linalg.eigvalsh(b * C)), 0.2)  # the similar symmetric matrix
        np.testing.assert_allclose(g, np.max(np.abs(np.linalg.eigvals(K(1.0)))), rtol=1e-12)
        pz.gradient(lambda b: np.max(np.linalg.eigvalsh(np.tril(b * C))), 0.2)  # the lower triangle only: LAPACK's convention
    with pytest.raises(pz.UnsupportedOperationError, match="power iteration|iterate v = a @ v"):
        pz.gradient(lambda b: np.max(np.abs(np.linalg.eigvals(K(b)))), 0.2)


def test_erfcx_derivatives_keep_their_precision_for_large_x() -> None:
    """erfcx's derivatives from its closed forms (2 x erfcx(x) - 2 / sqrt(pi), and each order
    from the one below) cancel for large x: a Hessian at x = 1e4 came out 2.4 times too large.
    The reference is erfcx's integral, 2 / sqrt(pi) * int (-2t)^n exp(-t^2 - 2 x t) dt, which
    has no cancellation (quadrature in s = 2 x t)."""
    import scipy.integrate
    import scipy.special as sc

    def reference(x: float, n: int) -> float:
        f = lambda s: (-s / x) ** n * np.exp(-s - s * s / (4 * x * x))  # noqa: E731
        return 2 / np.sqrt(np.pi) / (2 * x) * scipy.integrate.quad(f, 0, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]

    erfcx = lambda v: np.sum(sc.erfcx(v))  # noqa: E731
    x = np.array([3.0, 7.9, 8.0, 12.0, 1e2, 1e4, 1e6])
    d1 = pz.gradient(erfcx, x)[0]
    d2 = np.diag(pz.hessian(erfcx, x))
    d3 = [pz.hessian(pz.grad(lambda u: sc.erfcx(u)), v) for v in x]
    for i, v in enumerate(x):
        np.testing.assert_allclose(d1[i], reference(v, 1), rtol=1e-13)
        np.testing.assert_allclose(d2[i], reference(v, 2), rtol=1e-12)
        np.testing.assert_allclose(d3[i], reference(v, 3), rtol=1e-10)


def test_erfcx_derivatives_stay_finite_up_to_the_largest_float() -> None:
    """The Julia audit: the downward recurrence formed 2 x e^(m), which overflows to inf for
    x > floatmax / 2 and made every order NaN there (a gradient of erfcx at 1e308, or of
    log_ndtr below -1.3e308, was refused as not finite); the derivatives are -0.0 and 0.0."""
    import scipy.special as sc

    from pyzygote.primitives.error_function import erfcx_derivative_p

    big = np.array([9e307, 1.7e308, np.finfo(np.float64).max])
    for order in (1, 2, 3):
        d = erfcx_derivative_p.impl(big, order=order)
        assert np.all(d == 0.0), (order, d)
    assert np.all(erfcx_derivative_p.impl(np.array([1.8e38, 3e38], dtype=np.float32), order=2) == 0.0)
    (g,) = pz.gradient(lambda v: np.sum(sc.erfcx(v)), big)
    np.testing.assert_array_equal(g, 0.0)


def test_log_ndtr_derivatives_keep_their_precision_far_in_the_lower_tail() -> None:
    """log_ndtr(x) ~ -x**2 / 2 - log(-x sqrt(2 pi)) - 1 / x**2 as x -> -inf.  Its second and
    third derivatives were built from the Mills ratio's rule -r (x + r), which cancels there
    (a third derivative at x = -1000 came out 177 times too large); they are now erfcx's."""
    import scipy.special as sc

    x = np.array([-1e3, -1e4, -1e6])
    d2 = np.diag(pz.hessian(lambda v: np.sum(sc.log_ndtr(v)), x))
    d3 = np.array([pz.hessian(pz.grad(lambda u: sc.log_ndtr(u)), v) for v in x])
    # from the asymptotic series of log_ndtr: -x^2/2 - log(-x) - 1/x^2 + 5/(2 x^4) - 37/(3 x^6)
    np.testing.assert_allclose(d2, -1 + 1 / x**2 - 6 / x**4 + 50 / x**6, rtol=1e-14)
    np.testing.assert_allclose(d3, -2 / x**3 + 24 / x**5 - 300 / x**7, rtol=1e-12)


def test_lstsq_cuts_where_lapack_does_for_every_rcond() -> None:
    """Found by the Julia audit: LAPACK's gelsd replaces an rcond <= 0 or >= 1 by half of
    finfo's eps (DLAMCH('E')); rcond=0 gave x of size 4e16 for a rank-deficient matrix, rcond=1
    gave x = 0, and rcond=-1 cut at twice numpy's threshold."""
    rng = np.random.default_rng(3)
    q1, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    q2, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    b = rng.normal(size=5)
    for small in (4.2e-17, 1.47e-16, 1e-10):
        a = q1[:, :3] @ np.diag([1.0, 0.5, small]) @ q2.T
        for rcond in (0.0, -1.0, 1.0, 2.0, 1e-12):
            x, _, rank, s = np.linalg.lstsq(a, b, rcond=rcond)
            got, traced_rank = pz.make_program(lambda a, b: np.linalg.lstsq(a, b, rcond=rcond)[::2], a, b)(a, b)
            assert int(traced_rank) == rank, (small, rcond)
            np.testing.assert_allclose(got, x, rtol=1e-6, err_msg=f"{small} {rcond}")


def test_integer_and_boolean_reductions_keep_the_dtype_numpy_computes_in() -> None:
    """Found by the Julia audit: the NumPy engine's sum, prod and cumsum widened narrow integers
    (np.sum(x, dtype=np.int8) wraps in numpy), summed booleans as counts (numpy's dtype=bool sum
    is a logical or), and np.mean(x, dtype=int) returned floats."""
    a8 = np.array([[100, 100, 3], [50, 60, 70]], dtype=np.int8)
    u16 = np.array([[60000, 1], [60000, 2]], dtype=np.uint16)
    mask = np.array([[True, False, False], [True, True, False]])
    cases = [
        (lambda a: np.sum(a, axis=0, dtype=np.int8).astype(float), a8),
        (lambda a: np.trace(a, dtype=np.int8), a8),
        (lambda a: a.astype(np.uint8).sum(dtype=np.uint8), a8),
        (lambda a: np.prod(a, axis=0, dtype=np.int8).astype(float), a8),
        (lambda a: np.cumsum(a, axis=0, dtype=np.uint16), u16),
        (lambda a: np.mean(a, axis=0, dtype=np.int8), a8),
        (lambda m: np.sum(m, axis=0, dtype=bool).astype(np.int64) + 1, mask),
        (lambda m: np.cumsum(m, axis=1, dtype=bool).astype(np.int64), mask),
    ]
    for fn, x in cases:
        want = np.asarray(fn(x))
        # x is traced as data computed from a traced float argument, as a model's labels would be
        traced = (lambda w: (w == 0) & x) if x.dtype == bool else (lambda w: (w * 0).astype(x.dtype) + x)
        (got,) = pz.make_program(lambda w: fn(traced(w)), np.zeros(x.shape))(np.zeros(x.shape))
        assert got.dtype == want.dtype and np.array_equal(got, want), (got, want)


def test_put_at_traced_positions_reads_them_as_numpy_does() -> None:
    """Found by the Julia audit: numpy reads np.put's positions flat and casts booleans to
    integers (True is 1); traced positions of 2-D shape or of booleans raised."""

    def put(v: Any, ind: Any) -> Any:
        a = np.zeros_like(v, shape=(6,))
        np.put(a, ind, v)
        return a

    v = np.array([1.5, 2.5, 3.5, 4.5])
    ind2 = np.array([[0, 3], [4, 5]])
    mask = np.array([True, False, True])
    # positions computed from v, as traced values: numpy's reading of them is checked
    at = lambda v, ind: put(v, (v[0] * 0).astype(ind.dtype) + ind if ind.dtype != bool else (v[0] == v[0]) & ind)  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(lambda v: at(v, ind2), v)(v)[0], put(v, ind2))
    np.testing.assert_array_equal(pz.make_program(lambda v: at(v, mask), v[:2])(v[:2])[0], put(v[:2], mask))
    (g,) = pz.gradient(lambda v: np.sum(at(v, ind2) * np.arange(6.0)), v)
    np.testing.assert_array_equal(g, [0.0, 3.0, 4.0, 5.0])


def test_eigh_of_two_matrices_is_told_numpy_has_no_generalized_problem() -> None:
    """Found in user testing: np.linalg.eigh(K, M), SciPy's habit, passed M as UPLO and raised
    numpy's "truth value of an array is ambiguous"."""
    K, M = np.array([[2.0, -1.0], [-1.0, 2.0]]), np.diag([1.0, 2.0])
    with pytest.raises(TypeError, match=r"second argument is UPLO.*cholesky\(M\)"):
        pz.gradient(lambda k: np.sum(np.linalg.eigh(k * K, M)[0]), 1.0)
    # the recipe it gives: SciPy's generalized eigenvalues
    import scipy.linalg

    def generalized(k: Any) -> Any:
        Li = np.linalg.inv(np.linalg.cholesky(M))
        return np.linalg.eigh(Li @ (k * K) @ Li.T)[0]

    np.testing.assert_allclose(pz.make_program(generalized, 1.5)(1.5)[0], scipy.linalg.eigh(1.5 * K, M)[0], rtol=1e-13)


def test_interp_refuses_a_table_in_decreasing_order() -> None:
    """User testing: a forcing table stored newest first gave nonsense temperatures, as numpy
    does, silently; the table is a constant of the trace, so checking it costs nothing."""
    xp = np.array([2000.0, 1990.0, 1980.0])
    with pytest.raises(ValueError, match=r"increasing xp.*xp\[::-1\] and fp\[::-1\]"):
        pz.gradient(lambda x: np.interp(x, xp, np.array([1.0, 0.5, 0.0])), 1985.0)
    (g,) = pz.gradient(lambda x: np.interp(x, xp[::-1], np.array([0.0, 0.5, 1.0])), 1985.0)
    assert g == pytest.approx(0.05)


def _exprel_reference(x: float, k: int) -> float:
    """E_k(x), the k-th derivative of exprel: the integral of s**k exp(x s) over [0, 1]."""
    from scipy.integrate import quad

    shift = max(x, 0.0)  # integrate exp(x s - shift), so that nothing overflows
    return quad(lambda s: s**k * np.exp(x * s - shift), 0.0, 1.0, epsabs=0.0, epsrel=1e-13, limit=200)[0] * np.exp(shift)


def test_exprel_and_its_derivatives_keep_their_precision_at_zero() -> None:
    """1 / exprel(-x) is x / (1 - exp(-x)) (Hodgkin-Huxley's rates) without its 0 / 0, and its
    derivatives of every order are exact near x = 0, where those of the formula cancel."""
    from pyzygote.primitives.exprel import exprel_derivative, exprel_derivative_p

    xs = np.array([-50.0, -7.5, -3.0, -1.0, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.5, 1.0, 2.5, 3.0, 7.0, 50.0])
    for k in range(5):
        want = [_exprel_reference(x, k) for x in xs]
        np.testing.assert_allclose(exprel_derivative_p.bind(xs, order=k), want, rtol=5e-14, err_msg=f"order {k}")
        np.testing.assert_allclose([exprel_derivative(x, k) for x in xs], want, rtol=5e-14, err_msg=f"scalar, order {k}")
    np.testing.assert_allclose(pz.make_program(sc.exprel, xs)(xs)[0], sc.exprel(xs), rtol=1e-15)
    f = lambda x: sc.exprel(x)  # noqa: E731
    for x in (-1e-6, 0.0, 1e-6, 4.0):
        assert pz.grad(f)(x) == pytest.approx(_exprel_reference(x, 1), rel=1e-13)
        assert pz.hessian(f, x) == pytest.approx(_exprel_reference(x, 2), rel=1e-13)
        assert pz.hessian(pz.grad(f), x) == pytest.approx(_exprel_reference(x, 3), rel=1e-13)
    # the formula's own second derivative at 1e-6 keeps 3 or 4 of its 16 digits
    naive = pz.hessian(lambda x: np.expm1(x) / x, 1e-6)
    assert abs(naive / _exprel_reference(1e-6, 2) - 1) > 1e-5
    assert sc.exprel(np.inf) == pz.make_program(sc.exprel, 1.0)(np.inf)[0] == np.inf
    assert pz.make_program(sc.exprel, np.float32(1.0))(np.float32(1e-3))[0].dtype == np.float32
    import warnings

    with warnings.catch_warnings():  # float32 overflows to inf silently, as scipy's does (Julia audit)
        warnings.simplefilter("error")
        assert pz.make_program(sc.exprel, np.float32(1.0))(np.float32(100.0))[0] == sc.exprel(np.float32(100.0)) == np.inf


def test_dawson_exponential_and_elliptic_integrals_have_their_closed_form_derivatives() -> None:
    """User testing: scipy.special.dawsn, exp1 and ellipk were refused (transit light curves,
    well functions)."""
    x = np.array([-3.0, -0.4, 0.0, 0.7, 2.5, 8.0])
    (g,) = pz.gradient(lambda v: np.sum(sc.dawsn(v)), x)
    np.testing.assert_allclose(g, 1.0 - 2.0 * x * sc.dawsn(x), rtol=1e-14, atol=1e-16)
    # far out, 1 - 2 x D(x) cancels: the asymptotic series, D' = -t (1 + 3t + ...), D'' = (1 + 6t + ...) / x**3
    # with t = 1 / (2 x**2) (review: the second derivative had the wrong sign at x = 1e4)
    far = np.array([-1e8, -1e4, 1e3, 1e4, 1e8])
    t = 1.0 / (2.0 * far**2)
    (g,) = pz.gradient(lambda v: np.sum(sc.dawsn(v)), far)
    np.testing.assert_allclose(g, -t * (1 + 3 * t + 15 * t**2 + 105 * t**3 + 945 * t**4 + 10395 * t**5), rtol=1e-14)
    h = np.diag(pz.hessian(lambda v: np.sum(sc.dawsn(v)), far))
    np.testing.assert_allclose(h, (1 + 6 * t + 45 * t**2 + 420 * t**3 + 4725 * t**4) / far**3, rtol=1e-12)
    x = np.array([1e-3, 0.5, 2.0, 40.0])
    (g,) = pz.gradient(lambda v: np.sum(sc.exp1(v)), x)
    np.testing.assert_allclose(g, -np.exp(-x) / x, rtol=1e-14)
    np.testing.assert_allclose(np.diag(pz.hessian(lambda v: np.sum(sc.exp1(v)), x)), np.exp(-x) * (1.0 / x + 1.0 / x**2), rtol=1e-13)
    m = np.array([-4.0, -0.3, -1e-3, -2e-4, 0.0, 3e-4, 1e-3, 0.2, 0.9, 0.999])
    K, E = sc.ellipk(m), sc.ellipe(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        dK = np.where(m == 0, np.pi / 8, (E / (1 - m) - K) / (2 * m))
        dE = np.where(m == 0, -np.pi / 8, (E - K) / (2 * m))
    (gK,) = pz.gradient(lambda v: np.sum(sc.ellipk(v)), m)
    (gE,) = pz.gradient(lambda v: np.sum(sc.ellipe(v)), m)
    far = np.abs(m) > 1e-3  # where the closed form itself keeps its digits
    np.testing.assert_allclose(gK[far], dK[far], rtol=1e-13)
    np.testing.assert_allclose(gE[far], dE[far], rtol=1e-13)
    # at and near m = 0 the Maclaurin series: K'(0) = pi/8, K''(0) = 9 pi/64, E'(0) = -pi/8, E''(0) = -3 pi/64
    np.testing.assert_allclose([gK[4], gE[4]], [np.pi / 8, -np.pi / 8], rtol=1e-15)
    hK = np.diag(pz.hessian(lambda v: np.sum(sc.ellipk(v)), m))
    hE = np.diag(pz.hessian(lambda v: np.sum(sc.ellipe(v)), m))
    np.testing.assert_allclose([hK[4], hE[4]], [9 * np.pi / 64, -3 * np.pi / 64], rtol=1e-12)
    # third derivatives where the series and the closed form meet (|m| = 0.05; review: 6e-6 off
    # with the switch at 1e-3): against differences of the Hessian's diagonal
    for f in (sc.ellipk, sc.ellipe):
        near = np.array([-0.0500001, -0.0499999, -1e-3, 1e-3, 0.0499999, 0.0500001])
        third = np.array([pz.grad(pz.grad(pz.grad(lambda v, f=f: f(v))))(float(v)) for v in near])
        step = 1e-5
        fd3 = (np.diag(pz.hessian(lambda v, f=f: np.sum(f(v)), near + step)) - np.diag(pz.hessian(lambda v, f=f: np.sum(f(v)), near - step))) / (2 * step)
        np.testing.assert_allclose(third, fd3, rtol=1e-7)
    # the series and the closed form meet: derivatives agree with differences across it
    for f, g, h in ((sc.ellipk, gK, hK), (sc.ellipe, gE, hE)):
        step = 1e-6
        fd = (f(m + step) - f(m - step)) / (2 * step)
        np.testing.assert_allclose(g[:-1], fd[:-1], rtol=1e-8)
        fd2 = (pz.gradient(lambda v, f=f: np.sum(f(v)), m + step)[0] - pz.gradient(lambda v, f=f: np.sum(f(v)), m - step)[0]) / (2 * step)
        np.testing.assert_allclose(h[:-1], fd2[:-1], rtol=1e-6)
    # scipy's domains: NaN past them, as scipy gives
    values = pz.make_program(lambda v: (sc.exp1(v), sc.ellipk(v + 3.0), sc.ellipe(v + 3.0)), np.array([-1.0]))(np.array([-1.0]))
    assert all(np.isnan(v).all() for v in values)


def test_special_integrals_in_scalarized_right_hand_sides_are_impls_values() -> None:
    f = lambda u: np.stack([sc.dawsn(u[0]) * u[1], sc.exp1(u[1]) - sc.ellipk(u[0]), sc.ellipe(u[0] * u[1])])  # noqa: E731
    scalar, run = _scalar_program(f, np.ones(2)), pz.make_program(f, np.ones(2))
    for u in ([0.3, 1.7], [-0.5, 2.0], [0.0, np.nan], [1.5, -1.0], [np.inf, 40.0]):
        u = np.array(u)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(scalar(u)[0], run(u)[0])
    # a pendulum's period through an ODE whose rate reads ellipk: the gradient through the solve
    t = np.linspace(0.0, 1.0, 5)
    loss = lambda m: pz.odesolve(lambda u, p, t: -u * sc.ellipk(p[0]), np.array([1.0]), t, m, reltol=1e-11, abstol=1e-12)[-1, 0]  # noqa: E731
    m = np.array([0.4])
    (g,) = pz.gradient(loss, m)
    dK = (sc.ellipe(0.4) / 0.6 - sc.ellipk(0.4)) / 0.8
    np.testing.assert_allclose(g, -np.exp(-sc.ellipk(0.4)) * dK, rtol=1e-8)


def test_a_voigt_profile_is_refused_with_the_pseudo_voigt_to_write() -> None:
    """User testing: a spectroscopist's voigt_profile got no way forward (the Faddeeva function is complex)."""
    x = np.linspace(-5.0, 5.0, 11)
    with pytest.raises(pz.UnsupportedOperationError, match="voigt_profile.*pseudo-Voigt .*np.convolve"):
        pz.gradient(lambda s: np.sum(sc.voigt_profile(x, s, 0.5)), 0.3)


def test_fft_is_refused_with_what_to_write() -> None:
    with pytest.raises(pz.UnsupportedOperationError, match="no rule is registered") as info:
        pz.gradient(lambda x: np.fft.rfft(x).real.sum(), np.ones(2))
    assert "the real part is C @ x" in str(info.value), str(info.value)


def test_incomplete_beta_function_has_the_beta_density_as_derivative() -> None:
    """User testing: scipy.special.betainc was refused (Student-t, F and binomial CDFs)."""
    x = np.array([0.0, 1e-300, 0.05, 0.3, 0.5, 0.7, 0.95, 1.0])
    for a, b in ((2.0, 3.0), (1.0, 1.0), (1.0, 2.5), (3.5, 1.0), (7.25, 4.5), (500.0, 400.0)):
        assert np.array_equal(pz.make_program(lambda v, a=a, b=b: sc.betainc(a, b, v), x)(x)[0], sc.betainc(a, b, x))
        with np.errstate(divide="ignore"):
            density = np.exp(sc.xlogy(a - 1, x) + sc.xlog1py(b - 1, -x) - sc.betaln(a, b))
        (g,) = pz.gradient(lambda v, a=a, b=b: np.sum(sc.betainc(a, b, v)), x)
        np.testing.assert_allclose(g, density, rtol=2e-13, atol=0, err_msg=f"a={a}, b={b}")
    # second derivatives, at the ends too: d/dx of 12 x (1 - x)**2
    h = np.diag(pz.hessian(lambda v: np.sum(sc.betainc(2.0, 3.0, v)), x))
    np.testing.assert_allclose(h, 12 * (1 - x) ** 2 - 24 * x * (1 - x), rtol=1e-13, atol=1e-13)
    # Student's t CDF in t and the binomial CDF in p against their densities and scipy's pmf
    df, t = 5.0, np.array([0.3, 1.2, 4.0])
    (g,) = pz.gradient(lambda v: np.sum(1 - 0.5 * sc.betainc(df / 2, 0.5, df / (df + v**2))), t)
    np.testing.assert_allclose(g, __import__("scipy.stats").stats.t.pdf(t, df), rtol=1e-13)
    n, k, p = 12.0, 4.0, np.array([0.2, 0.45])
    (g,) = pz.gradient(lambda q: np.sum(sc.betainc(n - k, k + 1, 1 - q)), p)
    np.testing.assert_allclose(g, -n * __import__("scipy.stats").stats.binom.pmf(k, n - 1, p), rtol=1e-12)  # dF/dp
    assert pz.make_program(lambda v: sc.betainc(2.0, 3.0, v), np.float32(0.5))(np.float32(0.5))[0].dtype == np.float32
    with pytest.raises(pz.NonFiniteGradientError, match="betainc"):  # an infinite density at 0 for a < 1
        pz.gradient(lambda v: np.sum(sc.betainc(0.5, 0.5, v)), x)
    with pytest.raises(pz.UnsupportedOperationError, match="its b is traced here.*keyword argument"):
        pz.gradient(lambda b: sc.betainc(2.0, b, 0.3), 1.5)


def test_incomplete_gamma_functions_have_the_gamma_density_as_derivative() -> None:
    """User testing: scipy.special.gammainc was refused (chi-square and Poisson probabilities)."""
    x = np.array([0.0, 1e-300, 0.3, 1.0, 2.0, 50.0, 800.0])
    for a in (0.5, 1.0, 2.0, 4.5, 60.0):
        with np.errstate(divide="ignore"):
            density = np.where(x > 0, np.exp(sc.xlogy(a - 1, x) - x - sc.gammaln(a)), 1.0 if a == 1 else (0.0 if a > 1 else np.inf))
        for f, sign in ((sc.gammainc, 1.0), (sc.gammaincc, -1.0)):
            assert np.array_equal(pz.make_program(lambda v, f=f, a=a: f(a, v), x)(x)[0], f(a, x))
            if a < 1:
                continue  # an infinite derivative at 0
            (g,) = pz.gradient(lambda v, f=f, a=a: np.sum(f(a, v)), x)
            np.testing.assert_allclose(g, sign * density, rtol=1e-13, atol=0)
    # P(1, x) = 1 - exp(-x): its second derivative, also at x = 0, and a chi-square CDF's derivative
    h = np.diag(pz.hessian(lambda v: np.sum(sc.gammainc(1.0, v)), x[:5]))
    np.testing.assert_allclose(h, -np.exp(-x[:5]), rtol=1e-14)
    k, q = 3.0, np.array([0.5, 2.0, 7.0])
    (g,) = pz.gradient(lambda v: np.sum(sc.gammainc(k / 2, v / 2)), q)  # chi2(3).cdf
    np.testing.assert_allclose(g, q ** (k / 2 - 1) * np.exp(-q / 2) / (2 ** (k / 2) * sc.gamma(k / 2)), rtol=1e-13)
    assert pz.make_program(lambda v: sc.gammainc(2.0, v), np.float32(1.0))(np.float32(1.0))[0].dtype == sc.gammainc(2.0, np.ones(1, np.float32)).dtype
    # an array of a (a constant operand of gammainc_da) is differentiated in x as a number is
    (g,) = pz.gradient(lambda v: np.sum(sc.gammainc(np.array([1.0, 2.0]), v)), np.array([0.5, 3.0]))
    np.testing.assert_allclose(g, [np.exp(-0.5), 3.0 * np.exp(-3.0)], rtol=1e-15)
    with pytest.raises(pz.UnsupportedOperationError, match="traced for real a"):
        pz.gradient(lambda v: np.sum(sc.gammainc(np.array([1.0 + 1j]), v)), np.ones(2))


# (a, x, dP/da, dP/dx, d2P/da2, d2P/dadx, d2P/dx2, d3P/da3), by mpmath at 50 digits (mpmath.diff of
# gammainc(a, 0, x, regularized=True), or of -gammainc(a, x, inf) where x > a): across P's series
# (x < a + 1) and Q's continued fraction, from a = 0.01 to a = x = 300 and Q of 1e-44
_GAMMAINC_IN_A = [
    (0.01, 0.1, -1.8040788041768872, 0.08892867491664846, 1.9024075443972608, 8.737980451010337, -0.9693225565914683, 3.4820552041657113),
    (1.0, 2.0, -0.2208254262118595, 0.1353352832366127, -0.14856186245701777, 0.17192491550379838, -0.1353352832366127, 0.12016821197060272),
    (2.5, 3.0, -0.22754855127826082, 0.19460869331856584, -0.03980498725025574, 0.07695910692717675, -0.09730434665928292, 0.08529270238289406),
    (10.0, 40.0, -5.762920959917889e-09, 3.069005119872019e-09, -8.050044197170817e-09, 4.4105497067355276e-09, -2.378478967900815e-09, -1.065835258916805e-08),
    (60.0, 20.0, -4.718782472589094e-13, 8.567547227548158e-13, 5.191287153494696e-13, -9.340818123688315e-13, 1.6706717093718909e-12, -5.632477278188773e-13),
    (300.0, 300.0, -0.023039342930868643, 0.023026546149187352, 2.1344514467101743e-08, 3.839889776768658e-05, -7.67551538306245e-05, 7.681900957861199e-05),
    (500.0, 550.0, -0.0016302536499218168, 0.0015544561664591566, -0.00015540512482302155, 0.00014971047104147113, -0.00014414048088984909, -1.1553007230874442e-05),
    (0.5, 100.0, -1.3739187207497376e-44, 2.0988281156772084e-45, -8.007764012475144e-44, 1.3786530711858095e-44, -2.1093222562555943e-45, -4.2634251378536205e-43),
]


def test_incomplete_gamma_functions_are_differentiable_in_a() -> None:
    """User request: a censored survival likelihood log(gammaincc(k, t / theta)) of a fitted gamma
    shape k (a traced a was refused)."""
    from pyzygote.primitives.incomplete_gamma import gammainc_da_p

    ref = np.array(_GAMMAINC_IN_A)
    for row in ref:
        a, x, pa, px, paa, pax, pxx, paaa = row
        for f, sign in ((sc.gammainc, 1.0), (sc.gammaincc, -1.0)):
            g = pz.gradient(lambda s, y, f=f: f(s, y), a, x)
            np.testing.assert_allclose(g, [sign * pa, sign * px], rtol=1e-12, atol=0)
            h = pz.hessian(lambda v, f=f: f(v[0], v[1]), np.array([a, x]))
            np.testing.assert_allclose(h[0, 1], h[1, 0], rtol=1e-14)
            np.testing.assert_allclose(h[:, 1], [sign * pax, sign * pxx], rtol=1e-12, atol=0)
            # d2P/da2 passes through zero near a = x = 300 (2e-8 of its neighbours' 1e-4): as close absolutely
            np.testing.assert_allclose(h[0, 0], sign * paa, rtol=1e-12, atol=1e-12 * abs(pax))
        np.testing.assert_allclose(gammainc_da_p.impl(a, x, order=3, upper=False), paaa, rtol=1e-11)
    # an independent route in this environment: central differences of scipy's own values in a
    a, x = np.array([0.3, 1.0, 2.5, 7.0, 30.0, 30.0, 120.0]), np.array([0.2, 5.0, 2.0, 7.5, 25.0, 40.0, 118.0])
    (ga,) = pz.gradient(lambda s: np.sum(sc.gammaincc(s, x)), a)
    step = 1e-5 * a
    np.testing.assert_allclose(ga, (sc.gammaincc(a + step, x) - sc.gammaincc(a - step, x)) / (2 * step), rtol=1e-7)
    # and a closed form: P(1, x) = 1 - exp(-x), whose derivative in a there is -exp(-x) (log x + euler_gamma) - E1(x)
    x = np.array([1e-3, 0.5, 1.0, 2.0, 10.0, 50.0])
    (ga,) = pz.gradient(lambda s: np.sum(sc.gammainc(s, x)), 1.0)
    assert np.isclose(ga, np.sum(-np.exp(-x) * (np.log(x) + np.euler_gamma) - sc.exp1(x)), rtol=1e-14)
    (ga,) = pz.gradient(lambda s: np.sum(sc.gammainc(s, x)), np.ones(6))
    np.testing.assert_allclose(ga, -np.exp(-x) * (np.log(x) + np.euler_gamma) - sc.exp1(x), rtol=1e-13)
    # values are scipy's, at its edges too (x = 0 and inf, a = 0, below the domain, NaN), and the
    # derivatives in a there: 0 where P is constant (x = 0, x = inf), NaN where scipy's value is
    a = np.array([2.0, 2.0, 0.5, 0.0, 0.0, -1.0, 2.0, np.nan, 2.0, np.inf, 1e-300, 3.0])
    x = np.array([0.0, np.inf, 0.0, 1.0, 0.0, 1.0, -1.0, 1.0, np.nan, 1.0, 1.0, 2.0])
    for f, upper in ((sc.gammainc, False), (sc.gammaincc, True)):
        with np.errstate(all="ignore"):
            assert np.array_equal(pz.make_program(lambda s, y, f=f: f(s, y), a, x)(a, x)[0], f(a, x), equal_nan=True)
            assert pz.make_program(lambda s, y, f=f: f(s, y), a, x)(a, x)[0].dtype == np.float64
        for order in (1, 2):
            ga = gammainc_da_p.impl(a, x, order=order, upper=upper)  # pz.gradient refuses NaN
            np.testing.assert_array_equal(np.isnan(ga), np.isnan(f(a, x)) | (a == 0))
            assert np.all(ga[[0, 1, 2, 9]] == 0)
    assert pz.make_program(lambda s, y: sc.gammainc(s, y), np.float32(2.0), np.float32(1.0))(np.float32(2.0), np.float32(1.0))[0].dtype == np.float32


def test_censored_gamma_likelihood_has_its_gradient_and_hessian_in_shape_and_scale() -> None:
    """Weibull's companion: gamma-distributed lifetimes t, some right-censored at c, of a fitted
    shape k and scale s; log-likelihood sum log f(t) + sum log Q(k, c / s)."""
    t = np.array([0.7, 1.9, 3.2, 5.5, 2.4])
    c = np.array([4.0, 6.0, 2.5])

    def loglik(k: Any, s: Any) -> Any:
        density = (k - 1) * np.log(t) - t / s - sc.gammaln(k) - k * np.log(s)
        return np.sum(density) + np.sum(np.log(sc.gammaincc(k, c / s)))

    theta = np.array([1.7, 1.3])
    g = pz.gradient(lambda v: loglik(v[0], v[1]), theta)[0]
    h = pz.hessian(lambda v: loglik(v[0], v[1]), theta)
    step = 1e-5
    fd = [(loglik(*(theta + step * e)) - loglik(*(theta - step * e))) / (2 * step) for e in np.eye(2)]
    np.testing.assert_allclose(g, fd, rtol=1e-8)
    step = 1e-4
    fd2 = np.array([[(loglik(*(theta + step * (ei + ej))) - loglik(*(theta + step * (ei - ej))) - loglik(*(theta - step * (ei - ej))) + loglik(*(theta - step * (ei + ej)))) / (4 * step**2) for ej in np.eye(2)] for ei in np.eye(2)])
    np.testing.assert_allclose(h, fd2, rtol=1e-6)
    np.testing.assert_allclose(h, h.T, rtol=1e-14)


def test_logaddexp_reduce_is_a_shifted_log_sum_exp() -> None:
    """User testing: np.logaddexp.reduce(z, axis=1), a mixture's log-likelihood, was refused."""
    z = np.random.default_rng(0).standard_normal((3, 4))
    for axis in (0, 1, -1, None, (0, 1)):
        np.testing.assert_allclose(pz.make_program(lambda v: np.logaddexp.reduce(v, axis=axis), z)(z)[0], np.logaddexp.reduce(z, axis=axis), rtol=1e-15)
    (g,) = pz.gradient(lambda v: np.sum(np.logaddexp.reduce(v, axis=1)), z)
    np.testing.assert_allclose(g, np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True)), rtol=1e-14)
    edge = np.array([[-np.inf, -np.inf], [0.0, 1.0], [np.inf, 0.0], [np.nan, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pz.make_program(lambda v: np.logaddexp.reduce(v, axis=1, keepdims=True), edge)(edge)[0]
    with np.errstate(invalid="ignore"):  # numpy's own, at inf - inf
        np.testing.assert_array_equal(got, np.logaddexp.reduce(edge, axis=1, keepdims=True))
    assert pz.make_program(lambda v: np.logaddexp.reduce(v), z.astype(np.float32))(z.astype(np.float32))[0].dtype == np.float32
    empty = np.zeros((2, 0))  # numpy's identity, -inf, for each empty slice
    np.testing.assert_array_equal(pz.make_program(lambda v: np.logaddexp.reduce(v, axis=1), empty)(empty)[0], np.logaddexp.reduce(empty, axis=1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_modf_and_divmod_are_numpys_and_differentiate_through_the_fraction_and_remainder(dtype) -> None:
    """Found in user testing: np.modf and np.divmod were refused.  Their values (signed zeros and
    infinities too) are numpy's; the fractional part and the remainder carry the derivative."""
    x = np.array([-2.75, -0.5, 0.25, 1.5, 3.3, np.inf, -np.inf, -0.0, np.nan], dtype=dtype)
    for f in (np.modf, lambda x: np.divmod(x, dtype(0.7)), lambda x: np.divmod(x, -x[::-1] - 1)):
        with np.errstate(invalid="ignore"):
            want = f(x)
            got = pz.make_program(f, x)(x)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
    y = np.array([-2.75, -0.4, 0.35, 1.3, 3.3])  # away from the jumps
    check_grads(lambda x: np.modf(x)[0] ** 2 + np.divmod(x, 0.7)[1] * np.divmod(3.0, x)[1], (y,), engine="numpy")


def test_modf_of_whole_numbers_and_integers_is_numpys() -> None:
    """Found in review: np.modf(-3.0)[0] is -0.0 in numpy (the fraction has x's sign) and was
    +0.0 traced (x - trunc(x)); np.modf of integers is float64 in numpy and was int64 traced.
    The fraction's derivative stays 1 at whole numbers, as between them."""
    x = np.array([-3.0, -1.0, 2.0, 5.0, -2.5])
    for dtype in (np.float64, np.float32):
        got, want = pz.make_program(np.modf, x.astype(dtype))(x.astype(dtype)), np.modf(x.astype(dtype))
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
    ints = np.array([7, -7, 0, 3])
    for dtype in (np.int64, np.int32):  # traced integers: made from a float argument
        made = lambda w, dtype=dtype: np.modf((w + ints).astype(dtype))  # noqa: E731
        got, want = pz.make_program(made, np.zeros(4))(np.zeros(4)), np.modf(ints.astype(dtype))
        for g, w in zip(got, want):
            assert g.dtype == w.dtype == np.float64
            np.testing.assert_array_equal(g, w)
            np.testing.assert_array_equal(np.signbit(g), np.signbit(w))
    _, tangent = pz.jvp(lambda v: np.modf(v)[0], (x,), (np.ones_like(x),))
    np.testing.assert_array_equal(tangent, np.ones_like(x))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fmod_is_numpys_with_the_sign_of_x_and_its_derivatives(dtype) -> None:
    """np.fmod was refused with a rewrite, x - y * np.trunc(x / y), that is not exact.  The traced
    fmod is numpy's everywhere (signed zeros, infinities, NaN, huge quotients)."""
    xs = np.array([-5.5, -2.0, -0.0, 0.0, 0.3, 5.5, 7.25, np.inf, -np.inf, np.nan, 1e30, -3e-30])
    ys = np.array([2.0, -2.0, 0.7, -0.3, np.inf, -np.inf, 0.0, -0.0, np.nan, 1e-30])
    x, y = (a.astype(dtype) for a in np.meshgrid(xs, ys))
    with np.errstate(all="ignore"):
        want = np.fmod(x, y)
        (got,) = pz.make_program(np.fmod, x, y)(x, y)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got[~np.isnan(want)]), np.signbit(want[~np.isnan(want)]))  # a NaN's sign aside
    ints = np.array([-7, -5, 0, 5, 7, 9]), np.array([2, -3, 4, -2, 3, 5])
    (got,) = pz.make_program(lambda z: np.fmod(ints[0] + z.astype(np.int64), ints[1]), np.zeros(6))(np.zeros(6))
    assert got.dtype == np.int64 and got.tolist() == np.fmod(*ints).tolist()
    a, b = np.array([-5.5, 7.25, 0.3]), np.array([2.0, -2.0, 0.7])
    np.testing.assert_array_equal(pz.gradient(lambda a, b: np.sum(np.fmod(a, b)), a, b), (np.ones(3), -np.trunc(a / b)))
    check_grads(lambda a, b: np.fmod(a, b) ** 2, (a, b), engine="numpy")


def test_fmod_has_derivative_one_at_zero_and_keeps_the_dtype_of_python_numbers() -> None:
    """Found in review: np.fmod(x, y) was remainder(|x|, |y|) signed like x, whose derivative in x
    went through |x|, 0 at x = 0 (fmod(x, y) = x for |x| < |y|, slope 1); and np.absolute of a
    Python number is a strong numpy scalar, so np.fmod(float32, 2.0) was float64 and
    np.fmod(int32, 3) int64 (numpy: float32, int32)."""
    for y in (2.0, -2.0, 0.7):
        for x in (0.0, -0.0, 1e-300, -1e-300):
            (dx,) = pz.gradient(lambda x: np.fmod(x, y), x, engine="numpy")
            assert dx == 1.0
    x = np.array([0.0, -0.0, 0.5, -0.5, -4.0, 4.0])
    (dx,) = pz.gradient(lambda x: np.sum(np.fmod(x, 2.0)), x, engine="numpy")
    np.testing.assert_array_equal(dx, np.ones(6))
    (dy,) = pz.gradient(lambda y: np.sum(np.fmod(x, y)), np.full(6, -2.0), engine="numpy")
    np.testing.assert_array_equal(dy, -np.trunc(x / -2.0))
    v = np.array([1.5, -2.5, -0.0, 7.0], np.float32)
    cases = [
        lambda v: np.fmod(v, 2.0),
        lambda v: np.fmod(2.0, v + 3.0),
        lambda v: np.fmod(v.astype(np.int32), 3),
        lambda v: np.fmod(7, v.astype(np.int32) + 5),
        lambda v: np.fmod(v.astype(np.int16), -3),
    ]
    for f in cases:
        (got,) = pz.make_program(f, v)(v)
        want = f(v)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_running_products_and_nan_running_operations_of_integers_have_numpys_dtype() -> None:
    """Found in review: np.nancumsum and np.nancumprod of integers or booleans were float64 (numpy:
    int64, the plain running operation), and np.cumprod of int32, uint8 or booleans kept that
    dtype (numpy multiplies them in 64 bits, as it sums them: int32 products wrapped)."""
    x = np.array([1.5, -2.5, 3.0, 100.0, 1e4])
    cases = [
        lambda x: np.nancumsum((x > 0).astype(np.int64)),
        lambda x: np.nancumsum(x > 0),
        lambda x: np.nancumprod(x.astype(np.int32)),
        lambda x: np.nancumsum(x.astype(np.int8)[None], axis=1),
        lambda x: np.nancumsum(x.astype(np.uint8), dtype=np.int16),
        lambda x: np.cumprod(x.astype(np.int32)),
        lambda x: np.cumprod(x > 0),
        lambda x: np.cumprod(x.astype(np.uint8)),
        lambda x: np.multiply.accumulate(x.astype(np.int16)),
    ]
    for f in cases:
        with np.errstate(over="ignore"):
            want = f(x)
        (got,) = pz.make_program(f, x)(x)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def test_norm_and_gradient_of_integers_are_computed_in_float64_as_numpys() -> None:
    """Found in review: np.linalg.norm squared integers in their own dtype (int32 overflowed, uint8
    wrapped) and its ord=1 norm of integers was int64, and np.gradient took differences of uint8
    data that wrapped; numpy makes integers and booleans float64 first in both."""
    x = np.array([0.3, -1.5, 2.0, 7.9, 300.0])
    cases = [
        lambda x: np.linalg.norm(x.astype(np.uint8)),
        lambda x: np.linalg.norm(x.astype(np.int32) * 40000),
        lambda x: np.linalg.norm(x.astype(np.int64), 1),
        lambda x: np.linalg.norm(x > 0),
        lambda x: np.linalg.norm(np.outer(x, x).astype(np.int8), "fro"),
        lambda x: np.linalg.norm(np.outer(x, x).astype(np.int16), np.inf, axis=(0, 1)),
        lambda x: np.gradient(x.astype(np.uint8)),
        lambda x: np.gradient(x.astype(np.int16), 0.5),
    ]
    for f in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's own cast of -1.5 and 300 to uint8
            want = f(x)
            (got,) = pz.make_program(f, x)(x)
        assert got.dtype == np.asarray(want).dtype
        np.testing.assert_allclose(got, want, rtol=1e-14)


def test_max_and_min_of_booleans_are_booleans() -> None:
    """Found in review: np.max, np.min, np.nanmax and np.minimum.reduce of booleans were int64 (numpy:
    bool, any and all)."""
    x = np.array([[0.3, -1.5], [2.0, 7.9]])
    cases = [
        lambda x: np.max(x > 0),
        lambda x: np.min(x > 0, axis=1),
        lambda x: np.max(x > 0, axis=0, keepdims=True),
        lambda x: np.minimum.reduce(x > 0),
        lambda x: np.nanmax(x > 0),
        lambda x: np.max(x > 0, initial=False, where=x < 1),
    ]
    for f in cases:
        (got,) = pz.make_program(f, x)(x)
        want = f(x)
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, want)


def test_round_of_integers_keeps_their_dtype() -> None:
    """Found in review: np.round of integers was float64; numpy returns them as they are, and for
    negative decimals rounds to multiples of 10 (in floats) and casts back to their dtype."""
    x = np.array([0.3, -15.5, 25.0, 79.9, 35.0, 1234.0])
    for dtype in (np.int64, np.int32, np.int16):
        for decimals in (0, 2, -1, -2):
            f = lambda v, dtype=dtype, decimals=decimals: np.round(v.astype(dtype), decimals)  # noqa: E731
            (got,) = pz.make_program(f, x)(x)
            want = f(x)
            assert got.dtype == want.dtype == dtype
            np.testing.assert_array_equal(got, want)


def test_python_integers_beyond_an_integer_dtype_raise_or_compare_by_value_as_in_numpy() -> None:
    """Found in review: a Python integer that an integer operand's dtype cannot hold was converted
    to it and wrapped, silently (uint8_array + 300 added 44, uint8_array > -1 was False).  numpy
    raises its OverflowError, except in comparisons (values compared) and in np.clip, where a
    bound beyond the dtype clips nothing."""
    x = np.array([0.0, 254.0, 2.0, 7.0])
    for f in (lambda k: k + 300, lambda k: np.maximum(k, -1), lambda k: k * -1, lambda k: np.clip(k, 300, 400), lambda k: k.astype(np.int8) - 200):
        with pytest.raises(OverflowError, match="out of bounds for u?int8"):
            f(x.astype(np.uint8))
        with pytest.raises(OverflowError, match="out of bounds for u?int8"):
            pz.make_program(lambda v: f(v.astype(np.uint8)), x)
    cases = [
        lambda k: k > -1,
        lambda k: -1 < k,
        lambda k: k == 300,
        lambda k: np.less_equal(k.astype(np.int8), 200),
        lambda k: k.astype(np.uint64) > -1,
        lambda k: k.astype(np.int64) < 2**70,
        lambda k: np.clip(k, -1, 1),
        lambda k: np.clip(k, -5, 300),
        lambda k: k + 255,
    ]
    for f in cases:
        want = f(x.astype(np.uint8))
        (got,) = pz.make_program(lambda v: f(v.astype(np.uint8)), x)(x)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_fmod_of_the_lowest_integer_is_cs() -> None:
    """Found in review: np.fmod of integers negated x, which wraps at the lowest integer
    (fmod(-2**63, 3) was -1, C's and numpy's -2); integers take C's remainder from
    remainder(x, |y|) itself."""
    for dtype in (np.int64, np.int32, np.int8):
        info = np.iinfo(dtype)
        a = np.array([info.min, info.min + 1, -7, -6, 0, 5, info.max], dtype)
        for y in (3, -3, 7, 0):
            f = lambda z, a=a, y=y: np.fmod(a + z.astype(dtype), y)  # noqa: E731
            with np.errstate(divide="ignore"):
                (got,) = pz.make_program(f, np.zeros(7))(np.zeros(7))
                want = np.fmod(a, y)
            assert got.dtype == want.dtype == dtype
            np.testing.assert_array_equal(got, want)


def test_fmod_by_a_python_integer_at_the_edges_of_the_dtype_is_numpys() -> None:
    """Found in integration review: np.fmod took |y| of a Python integer divisor before numpy's
    conversion of it to x's dtype, so np.fmod(int8_array, -128) and np.fmod(int64_array, -2**63)
    raised OverflowError for 128 and 2**63 (numpy: x, and 0 where x is that lowest integer), and
    np.fmod(uint8_array, -1) gave zeros where numpy raises OverflowError."""
    x = np.array([0.0, 1.0, -5.0, 100.0, -128.0, 127.0])
    cases = ((np.int8, -128), (np.int16, -(2**15)), (np.int32, -(2**31)), (np.int64, -(2**63)), (np.int8, 127), (np.int8, -127), (np.uint8, 0))
    for dtype, y in cases:
        f = lambda v, dtype=dtype, y=y: np.fmod(v.astype(dtype), y)  # noqa: E731
        with np.errstate(divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's casts of negatives to uint8, its division by 0
            (got,) = pz.make_program(f, x)(x)
            want = f(x)
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)
    for dtype, y in ((np.uint8, -1), (np.uint16, -129), (np.int8, 128), (np.uint64, -(2**63))):
        f = lambda v, dtype=dtype, y=y: np.fmod(np.abs(v).astype(dtype), y)  # noqa: E731
        with pytest.raises(OverflowError, match=f"Python integer {y} out of bounds"):
            f(x)
        with pytest.raises(OverflowError, match=f"Python integer {y} out of bounds"):
            pz.make_program(f, x)


def test_comparisons_with_a_python_integer_beyond_64_bits_are_exact() -> None:
    """Found in integration review: a comparison with a Python integer beyond an int64 or uint64
    operand's dtype was made in float64, where 2**63 - 1 rounds to 2**63: int64_array == 2**63 was
    True and int64_array < 2**63 False at the largest int64s (numpy compares the values exactly:
    every entry is below 2**63)."""
    z = np.zeros(3)
    big = np.array([2**63 - 1, 2**63 - 2, -(2**63)], np.int64)
    ubig = np.array([2**64 - 1, 2**63, 0], np.uint64)
    cases = [
        lambda v: big + v.astype(np.int64) == 2**63,
        lambda v: big + v.astype(np.int64) < 2**63,
        lambda v: 2**63 <= big + v.astype(np.int64),
        lambda v: big + v.astype(np.int64) != -(2**63) - 1,
        lambda v: big + v.astype(np.int64) > -(2**63) - 1,
        lambda v: np.greater_equal(ubig + v.astype(np.uint64), 2**64),
        lambda v: np.less(ubig + v.astype(np.uint64), 2**64),
        lambda v: -1 == ubig + v.astype(np.uint64),
    ]
    for f in cases:
        (got,) = pz.make_program(f, z)(z)
        want = f(z)
        assert got.dtype == want.dtype == np.bool_
        np.testing.assert_array_equal(got, want)

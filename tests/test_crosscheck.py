"""pz.crosscheck: an external gradient against pyzygote's engines and finite differences."""

from __future__ import annotations

import re
from typing import Any

import autograd
import autograd.numpy as anp

import numpy as np
import pytest

import pyzygote as pz


def loss(W, b, x):
    return np.sum(np.tanh(x @ W + b) ** 2)


def autograd_loss(W, b, x):
    return anp.sum(anp.tanh(anp.dot(x, W) + b) ** 2)


@pytest.fixture
def point():
    rng = np.random.default_rng(3)
    return rng.normal(size=(3, 2)), rng.normal(size=2), rng.normal(size=(4, 3))


def test_an_independent_ad_gradient_passes(point):
    external = tuple(autograd.grad(autograd_loss, i)(*point) for i in range(3))
    report = pz.crosscheck(loss, point, external)
    assert report.passed
    names = [row[0] for row in report.rows]
    assert names[0] == "pyzygote numpy engine" and names[-1].startswith("central finite differences")
    assert all(diff is None or diff < 1e-9 for _, diff, _, _ in report.rows[:-1])
    assert "agrees" in str(report)


@pytest.mark.parametrize("bug", ["twice", "sign", "one entry"])
def test_wrong_gradients_are_caught(point, bug):
    good = list(pz.gradient(loss, *point, engine="numpy"))
    if bug == "twice":  # the shape of SciMLSensitivity #1181
        good[0] = 2 * good[0]
    elif bug == "sign":
        good[1] = -good[1]
    else:
        good[2] = good[2].copy()
        good[2][1, 2] += 1e-3 * np.max(np.abs(good[2]))
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(loss, point, good)
    report = pz.crosscheck(loss, point, good, raise_on_failure=False)
    assert not report.passed


def test_julia_row_is_skipped_with_the_reason_when_julia_is_absent(point, monkeypatch):
    import pyzygote.julia.setup as setup

    monkeypatch.setattr(setup, "julia_is_set_up", lambda: False)
    report = pz.crosscheck(loss, point, pz.gradient(loss, *point, engine="numpy"))
    julia_row = next(row for row in report.rows if "julia" in row[0])
    assert julia_row[1] is None and "not set up" in julia_row[3]


def test_structure_mismatch_is_an_error(point):
    with pytest.raises(ValueError, match="structure and shapes"):
        pz.crosscheck(loss, point, (np.zeros(2), np.zeros(2), np.zeros((4, 3))))


def test_a_structure_mismatch_says_where_and_which_keys():
    """User testing: a dict gradient missing a key was refused with both structures printed in
    full and no word of the key."""

    def g(d, w):
        return 2.0 * d["a"] + 3.0 * d["b"] + np.sum(d["c"] * w)

    args = ({"a": 1.0, "b": 1.0, "c": np.ones(2)}, np.ones(2))
    full = {"a": 2.0, "b": 3.0, "c": np.ones(2)}
    with pytest.raises(ValueError, match=r"arguments: grads\[0\] lacks the key 'b'; got "):
        pz.crosscheck(g, args, ({"a": 2.0, "c": np.ones(2)}, np.ones(2)))
    with pytest.raises(ValueError, match=r"arguments: grads\[0\] lacks the keys 'a', 'b'; has the key 'x', which the argument has not; got "):
        pz.crosscheck(g, args, ({"c": np.ones(2), "x": 1.0}, np.ones(2)))
    with pytest.raises(ValueError, match=r"arguments: grads\[0\]\['c'\] has shape \(3,\) where the argument has \(2,\); got "):
        pz.crosscheck(g, args, ({**full, "c": np.ones(3)}, np.ones(2)))
    with pytest.raises(ValueError, match=r"arguments: grads has 1 entry where the arguments have 2; got "):
        pz.crosscheck(g, args, (full,))


def test_dicts_line_up_by_key_not_by_insertion_order():
    def g(d):
        return 2.0 * d["a"] + 3.0 * d["b"]

    report = pz.crosscheck(g, ({"a": 1.0, "b": 1.0},), ({"b": 3.0, "a": 2.0},))
    assert "DISAGREES" not in str(report)
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(g, ({"a": 1.0, "b": 1.0},), ({"b": 2.0, "a": 3.0},))
    (grads,) = pz.gradient(g, {"b": 1.0, "a": 1.0})
    assert grads == {"a": 2.0, "b": 3.0}
    _, tangent = pz.jvp(g, ({"b": 1.0, "a": 1.0},), ({"a": 1.0, "b": 0.0},))
    assert float(tangent) == 2.0


def test_crosscheck_checks_its_arguments():
    f = lambda x: np.sum(x**2)  # noqa: E731
    x = np.array([1.0, 2.0])
    with pytest.raises(TypeError, match="engines must be a tuple"):
        pz.crosscheck(f, (x,), (2 * x,), engines="numpy")
    with pytest.raises(TypeError, match="grads must be a tuple"):
        pz.crosscheck(f, (x,), None)
    with pytest.raises(TypeError, match="real numbers"):
        pz.crosscheck(f, (x,), (2 * x + 1j,))


def test_float32_gradients_are_checked_at_float32_tolerance():
    x = np.array([0.3, -1.2, 0.7])
    f = lambda v: np.sum(np.tanh(v) ** 2)  # noqa: E731
    exact = 2 * np.tanh(x) / np.cosh(x) ** 2
    report = pz.crosscheck(f, (x,), (exact.astype(np.float32),), engines=("numpy",))
    assert report.rows[0][2] == 1e-4
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(f, (x,), ((exact * 1.001).astype(np.float32),), engines=("numpy",))
    assert pz.crosscheck(f, (x,), (exact,), engines=("numpy",)).rows[0][2] == 1e-7


def test_gradient_structure_must_match_the_arguments():
    f = lambda p: p["zeta"] * np.sum(p["alpha"] ** 2) + np.sum(p["mid"] * p["alpha"])  # noqa: E731
    p = {"zeta": 2.0, "alpha": np.array([1.0, -1.0]), "mid": np.array([0.5, 3.0])}
    (g,) = pz.gradient(f, p)
    assert pz.crosscheck(f, (p,), (dict(g),), engines=("numpy",)).passed
    for wrong in ({"zeta": g["zeta"], "alpha": g["alpha"], "mie": g["mid"]}, [g["alpha"], g["mid"], g["zeta"]]):
        with pytest.raises(ValueError, match="structure"):
            pz.crosscheck(f, (p,), (wrong,), engines=("numpy",))
    # lists and tuples are alike: JAX and PyTorch return either
    h = lambda a, b: np.sum(a[0] * a[1]) * b  # noqa: E731
    args = ((np.ones(2), np.full(2, 2.0)), 3.0)
    assert pz.crosscheck(h, args, ([np.full(2, 6.0), np.full(2, 3.0)], 4.0), engines=("numpy",)).passed


def test_lists_of_numbers_and_mixed_precision():
    f = lambda q: q[0] * q[1] ** 2  # noqa: E731
    # JAX returns a list of scalars for a list argument; pyzygote reads a list of numbers as one array
    assert pz.crosscheck(f, ([1.0, 2.0],), ([np.float64(4.0), np.float64(4.0)],), engines=("numpy",)).passed
    assert pz.crosscheck(f, ((1.0, 2.0),), ([4.0, 4.0],), engines=("numpy",)).passed
    # one float32 leaf does not loosen the float64 one
    g = lambda a, b: np.sum(a**2) + np.sum(b**2)  # noqa: E731
    a, b = np.array([1.0, 2.0]), np.array([3.0])
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(g, (a, b), ((2 * a).astype(np.float32), 2 * b * (1 + 5e-5)), engines=("numpy",), finite_differences=False)
    with pytest.raises(ValueError, match=r"got \(\{'a': array\(\), 'c': array\(\)\}\), expected \(\{'a': array\(\), 'b': array\(\)\}\)"):
        pz.crosscheck(lambda d: d["a"] * d["b"], ({"a": 1.0, "b": 2.0},), ({"a": 2.0, "c": 1.0},), engines=("numpy",))


def test_low_precision_gradients_and_arguments_that_check_nothing():
    x = np.array([0.3, -1.2, 0.7])
    f = lambda v, label: np.sum(np.tanh(v) ** 2)  # noqa: E731
    exact = 2 * np.tanh(x) / np.cosh(x) ** 2
    report = pz.crosscheck(f, (x, "a label"), (exact.astype(np.float16), None), engines=("numpy",))
    assert [row[2] for row in report.rows] == [1e-2, 1e-2]
    with pytest.raises(ValueError, match="nothing to compare with"):
        pz.crosscheck(f, (x, "a label"), (exact, None), engines=(), finite_differences=False)
    with pytest.raises(ValueError, match="rtol must be a positive number"):
        pz.crosscheck(f, (x, "a label"), (exact, None), rtol=-1.0)


def test_at_an_optimum_rounding_noise_agrees_and_a_real_error_does_not() -> None:
    """Found in user testing: at a fitted optimum every gradient entry is noise, and the relative
    comparison alone reported finite differences as disagreeing."""
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((20, 3)), rng.standard_normal(20)
    w = np.linalg.lstsq(A, b, rcond=None)[0]

    def f(w):
        return np.sum((A @ w - b) ** 2)

    exact = 2 * A.T @ (A @ w - b)  # about 1e-14: rounding noise around zero
    assert np.max(np.abs(exact)) < 1e-12
    report = pz.crosscheck(f, (w,), (exact,), engines=("numpy",))
    assert report.passed and "inconclusive" in str(report)  # differences cannot see below their noise
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(f, (w,), (exact + 1e-4,), engines=("numpy",))


def test_finite_differences_below_their_noise_are_inconclusive_not_a_pass() -> None:
    """Found in review: where the differences' rounding noise exceeds the gradient, a wrong
    (zero) gradient was reported as agreeing."""
    f = lambda x: np.sum(x**2) + 1e8  # noqa: E731
    x = np.array([1e-3, 2e-3])
    with pytest.raises(AssertionError, match="no reference could check"):
        pz.crosscheck(f, (x,), (np.zeros(2),), engines=())
    report = pz.crosscheck(f, (x,), (np.zeros(2),), engines=(), raise_on_failure=False)
    assert "inconclusive" in str(report)


def test_a_wrong_entry_far_smaller_than_the_largest_is_caught():
    # Robertson-like scales: the gradient's entries span ten orders of magnitude
    f = lambda k: np.log1p(k[0]) + 1e-3 * np.tanh(1e-7 * k[1]) + np.sin(k[2] * 1e-4)  # noqa: E731
    k = np.array([0.04, 3e7, 1e4])
    (g,) = pz.gradient(f, k)
    assert pz.crosscheck(f, (k,), (g,), engines=("numpy",)).passed
    flipped = g * np.array([1.0, -1.0, 1.0])
    assert abs(g[1]) < 1e-9 * abs(g[0])  # far below the global tolerance
    with pytest.raises(AssertionError, match=r"DISAGREES: entry \[1\] of argument 0 is -"):
        pz.crosscheck(f, (k,), (flipped,), engines=("numpy",), finite_differences=False)
    report = pz.crosscheck(f, (k,), (flipped,), engines=("numpy",), finite_differences=False, element_rtol=3.0, raise_on_failure=False)
    assert report.passed  # the entry check can be loosened


def test_integer_and_boolean_arguments_are_data():
    f = lambda W, labels, mask: np.sum(np.where(mask, W[np.arange(3), labels] ** 2, 0.0))  # noqa: E731
    W, labels, mask = np.arange(6.0).reshape(3, 2), np.array([0, 1, 1]), np.array([True, False, True])
    gW = pz.gradient(f, W, labels, mask)[0]
    float0 = np.zeros(3, dtype=np.dtype([("float0", np.void, 0)]))  # what jax.grad(allow_int=True) gives
    for data_grads in ((None, None), (float0, None), (np.zeros(3), np.zeros(3))):
        assert pz.crosscheck(f, (W, labels, mask), (gW, *data_grads), engines=("numpy",)).passed
    with pytest.raises(ValueError, match=r"give None for the others \(data, as JAX's argnums leaves them out\): crosscheck\(f, \(w, x\), \(grad_w, None\)\)"):
        pz.crosscheck(f, (W, labels, mask), (gW,), engines=("numpy",))


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_a_reference_that_is_not_finite_says_so_and_the_others_still_judge():
    f = lambda x: np.sum(np.sqrt(x))  # noqa: E731  (infinite derivative at 0)
    x = np.array([0.0, 4.0])
    report = pz.crosscheck(f, (x,), (np.array([np.inf, 0.25]),), engines=("numpy",), finite_differences=False, raise_on_failure=False)
    assert report.rows[0][1] is None and "not finite here" in report.rows[0][3]
    with pytest.raises(AssertionError, match="no reference could check"):
        pz.crosscheck(f, (x,), (np.array([np.inf, 0.25]),), engines=("numpy",), finite_differences=False)


def test_the_symmetric_gradient_convention_is_explained():
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    f = lambda a: np.sum(np.linalg.cholesky(a) ** 3)  # noqa: E731
    (g,) = pz.gradient(f, A)
    symmetric = (g + g.T) / 2.0  # what JAX and PyTorch give
    with pytest.raises(AssertionError, match="agree once symmetrized"):
        pz.crosscheck(f, (A,), (symmetric,), engines=("numpy",))


def test_testing_helpers_validate_their_inputs_and_name_what_differs() -> None:
    """Found by the bad-input audit: a NaN gradient matched a NaN reference, complex values passed,
    eps=0 divided by zero, and structure mismatches printed internal tree encodings."""
    from pyzygote.testing import assert_allclose_gradients, check_grads, numerical_gradient, numerical_jvp

    with pytest.raises(AssertionError, match="gradient\\[0\\]"):
        assert_allclose_gradients((np.array([np.nan]),), (np.array([np.nan]),))
    with pytest.raises(AssertionError, match="gradient\\[0\\] is complex"):
        assert_allclose_gradients((np.array([1.0 + 1j]),), (np.array([1.0]),))
    with pytest.raises(ValueError, match="rtol must be a non-negative finite number, got -1"):
        assert_allclose_gradients((1.0,), (1.0,), rtol=-1)
    with pytest.raises(AssertionError, match="ACTUAL: \\(None,\\)\\n DESIRED: \\(an array,\\)"):
        assert_allclose_gradients((None,), (np.ones(2),))
    with pytest.raises(AssertionError, match="gradient\\[0\\]\\['b'\\]"):
        assert_allclose_gradients(({"a": np.ones(2), "b": np.ones(2)},), ({"a": np.ones(2), "b": np.zeros(2)},))
    for bad in (0.0, np.nan, -1e-6, "1e-6"):
        with pytest.raises(ValueError, match="eps \\(the finite-difference step\\) must be a positive finite number"):
            numerical_gradient(np.sum, np.ones(2), eps=bad)
        with pytest.raises(ValueError, match="eps \\(the finite-difference step\\)"):
            numerical_jvp(np.sum, (np.ones(2),), (np.ones(2),), eps=bad)
        with pytest.raises(ValueError, match="eps \\(the finite-difference step\\)"):
            pz.crosscheck(np.sum, (np.ones(2),), (np.ones(2),), eps=bad, engines=("numpy",))
    with pytest.raises(TypeError, match="the arguments must be real"):
        numerical_gradient(lambda x: np.sum(x * x), np.array([1j]))
    with pytest.raises(ValueError, match="numerical_gradient needs a function returning one scalar, got 2 arrays"):
        numerical_gradient(lambda x: (np.sum(x), np.sum(x)), np.ones(2))
    with pytest.raises(ValueError, match="the tangent of args\\[0\\] has shape \\(2,\\), expected \\(3,\\)"):
        numerical_jvp(np.sin, (np.ones(3),), (np.ones(2),))
    with pytest.raises(TypeError, match="check_grads expected a function to check, got NoneType"):
        check_grads(None, (np.ones(2),))
    with pytest.raises(ValueError, match="f is NaN or infinite at args"):
        with np.errstate(invalid="ignore"):
            check_grads(lambda x: np.sum(np.log(x)), (np.array([-1.0, 2.0]),))


def test_ode_losses_are_held_to_their_solver_tolerance() -> None:
    """Found in user testing: a correct torchdiffeq gradient of an ODE loss solved at rtol=1e-6 was
    reported DISAGREES (2.4e-5 against the default 1e-7), and raised."""
    t = np.linspace(0.0, 5.0, 21)
    decay = lambda u, p, t: -p * u  # noqa: E731
    loss = lambda p, tol: np.sum(pz.odesolve(decay, np.ones(2), t, p, alg="Tsit5", reltol=tol, abstol=tol * 1e-2) ** 2)  # noqa: E731
    p = np.array([0.3, 0.7])
    exact = np.sum(-2 * t[:, None] * np.exp(-2 * p * t[:, None]), axis=0)  # what another AD system's solve approximates
    report = pz.crosscheck(lambda p: loss(p, 1e-6), (p,), (exact * (1 + 2e-5),), engines=("numpy",))
    assert report.passed and "reltol=1e-06" in str(report)
    # 30 x reltol: the gradient here is within 1.5e-8 of one solved 100 times tighter, but another
    # tool's solver at the same reltol errs more (torchdiffeq by 2.4e-5)
    assert all(tol == pytest.approx(3e-5) for _, diff, tol, _ in report.rows if diff is not None)
    with pytest.raises(AssertionError, match="DISAGREES"):  # a real error still shows
        pz.crosscheck(lambda p: loss(p, 1e-6), (p,), (exact * np.array([1.0, 1.01]),), engines=("numpy",))
    tight = pz.crosscheck(lambda p: loss(p, 1e-12), (p,), (exact,), engines=("numpy",), raise_on_failure=False)
    assert tight.rows[0][2] == 1e-7 and not tight.notes  # 100 * 1e-12 is below the default
    with pytest.raises(AssertionError):  # an explicit rtol is kept
        pz.crosscheck(lambda p: loss(p, 1e-6), (p,), (exact * (1 + 2e-5),), engines=("numpy",), rtol=1e-7, finite_differences=False)


def test_the_symmetric_hint_needs_a_disagreement_that_symmetrizing_removes() -> None:
    """Found in user testing: 1e-6 noise in a square weight matrix drew the 'agree once
    symmetrized' hint while the real error was the sign of a bias."""
    rng = np.random.default_rng(0)
    p = {"W2": rng.normal(size=(4, 4)) / 3, "b": np.zeros(2), "W3": rng.normal(size=(4, 2))}
    x = rng.normal(size=(10, 4))

    def loss(p: Any) -> Any:
        return np.mean((np.tanh(x @ p["W2"]) @ p["W3"] + p["b"] - 1.0) ** 2)

    (g,) = pz.gradient(loss, p)
    wrong = dict(g, W2=g["W2"] * (1 + 1e-6 * rng.normal(size=(4, 4))), b=-g["b"])
    with pytest.raises(AssertionError) as info:
        pz.crosscheck(loss, (p,), (wrong,), finite_differences=False)
    assert "argument 0['b']" in str(info.value) and "symmetrized" not in str(info.value)


def test_check_grads_holds_ode_losses_to_their_solver_tolerance() -> None:
    """Found in user testing: check_grads at a fitted optimum of an ODE likelihood failed at 3e-6
    absolute, although the gradient was right: the solve is accurate to its reltol only."""
    from pyzygote.testing import check_grads

    t = np.linspace(0.0, 3.0, 13)
    data = np.exp(-0.4 * t)
    loss = lambda k, tol: np.sum((pz.odesolve(lambda u, p, t: -p * u, [1.0], t, k, reltol=tol, abstol=tol * 1e-2)[:, 0] - data) ** 2)  # noqa: E731
    at_optimum = np.array([0.4])
    check_grads(lambda k: loss(k, 1e-9), (at_optimum,), order=2)
    check_grads(lambda k: loss(k, 1e-9), (np.array([0.7]),), order=2)
    with pytest.raises(AssertionError):  # what AD cannot see still shows: a staircase of tiny jumps
        check_grads(lambda k: loss(k, 1e-9) + 1e-3 * np.floor(k[0] * 1e7), (np.array([0.7]),))
    with pytest.warns(UserWarning, match="reltol=0.001: its finite differences are noise"):
        check_grads(lambda k: loss(k, 1e-3), (np.array([0.7]),))


def _gp_nll(theta: Any, X: Any, y: Any, jitter: float = 1e-9) -> Any:
    """A Gaussian-process negative log likelihood: a Cholesky factor of an ill-conditioned kernel."""
    K = np.exp(2 * theta[1]) * np.exp(-0.5 * (X[:, None] - X[None, :]) ** 2 / np.exp(2 * theta[0])) + jitter * np.eye(X.size, dtype=X.dtype)
    L = np.linalg.cholesky(K)
    a = np.linalg.solve(L.T, np.linalg.solve(L, y))
    return 0.5 * y @ a + np.sum(np.log(np.diag(L)))


def test_finite_differences_noisier_than_estimated_are_inconclusive_not_a_disagreement():
    """User testing: near an ill-conditioned Cholesky, central differences erred by 2.5e-5 of the
    gradient and the cross-check raised on a right gradient; their error shows in how they change
    with twice the step."""
    X = np.sort(np.random.default_rng(0).uniform(-3, 3, 30))
    theta = np.array([0.8, 0.2])
    f = lambda th: _gp_nll(th, X, np.sin(X))  # noqa: E731
    right = pz.gradient(f, theta)[0]
    report = pz.crosscheck(f, (theta,), (right,), engines=("numpy",))
    (fd_row,) = [row for row in report.rows if row[0].startswith("central")]
    assert fd_row[1] is None and "within their own error" in fd_row[3]
    with pytest.raises(AssertionError, match="numpy engine .*DISAGREES"):
        pz.crosscheck(f, (theta,), (right * (1 + 1e-4),), engines=("numpy",))


def test_float32_gradients_are_judged_against_float64_with_their_own_rounding():
    """User testing: a float32 GP likelihood near its optimum, whose float32 gradient (JAX's) was
    as accurate as float32 allows, 'disagreed' with both references at 1e-3 > 1e-4."""
    X = np.sort(np.random.default_rng(1).uniform(-3, 3, 20)).astype(np.float32)
    y = np.sin(X).astype(np.float32)
    theta = (np.array([0.75732014, 0.26818643]) + 0.003).astype(np.float32)  # 0.003 from the optimum
    f = lambda th: _gp_nll(th, X, y, 1e-3)  # noqa: E731
    truth = pz.gradient(f, theta.astype(np.float64))[0]
    own32 = pz.gradient(f, theta)[0]
    noise = np.max(np.abs(own32 - truth))
    assert noise > 1e-3 * np.max(np.abs(truth))  # float32 rounding far above 1e-4 of the gradient here
    # another float32 computation, off by as much in another direction, is as good
    other = (truth - (own32 - truth)[::-1]).astype(np.float32)
    report = pz.crosscheck(f, (theta,), (other,), engines=("numpy",))
    assert report.passed and "computed in float64" in str(report)
    wrong = (truth * np.array([1.0, 1.5])).astype(np.float32)
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(f, (theta,), (wrong,), engines=("numpy",))


def test_finite_differences_of_a_loss_with_an_inner_transformation_do_not_warn_about_retracing(monkeypatch: Any) -> None:
    """User testing: a PINN residual takes pz.grad of a new lambda at each call; crosscheck's
    differences call it hundreds of times, and a RetraceWarning blamed the user's code."""
    import warnings

    import pyzygote.tracing as tracing

    monkeypatch.setattr(tracing, "_RETRACE_SECONDS", 0.0)
    x = np.linspace(0.0, 1.0, 5)

    def loss(w: Any) -> Any:
        du = pz.grad(lambda z: np.sum(np.tanh(w[0] * z + w[1])))(x)
        return np.sum((du - 1.0) ** 2)

    w = np.array([0.7, -0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", pz.RetraceWarning)
        assert pz.crosscheck(loss, (w,), pz.gradient(loss, w), engines=("numpy",)).passed


def test_an_ode_loss_at_loose_tolerances_is_held_to_its_measured_solver_error() -> None:
    """Found in user testing: with the default reltol=1e-3 the allowance was 100 x reltol, 10%,
    and a diffrax gradient 9% too large agreed.  The engines' references now solve 100 times
    tighter, and the allowance follows the measured error (and 30 x reltol for the other tool)."""
    t = np.linspace(0.0, 10.0, 101)

    def lotka(u: Any, p: Any, t: Any) -> Any:
        return np.array([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])

    u0, p0 = np.array([1.0, 1.0]), np.array([1.5, 1.0, 3.0, 1.0])
    data = pz.odesolve(lotka, u0, t, np.array([1.3, 0.9, 3.2, 1.1]), alg="Tsit5", reltol=1e-10, abstol=1e-10)
    loss = lambda p: np.sum((pz.odesolve(lotka, u0, t, p) - data) ** 2)  # noqa: E731  (default tolerances)
    truth = pz.gradient(lambda p: np.sum((pz.odesolve(lotka, u0, t, p, reltol=1e-11, abstol=1e-11) - data) ** 2), p0)[0]
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(loss, (p0,), (1.05 * truth,), engines=("numpy",), finite_differences=False)
    report = pz.crosscheck(loss, (p0,), (truth,), engines=("numpy",), finite_differences=False)
    assert report.passed and "100 times tighter" in str(report)
    assert 0.01 < report.rows[0][2] < 0.04  # not 100 x reltol
    assert report.rows[0][1] < 1e-4  # the reference was solved tighter: it is close to the truth


def test_finite_differences_of_an_ode_loss_solve_as_tightly_as_the_engines_references() -> None:
    """Found in user testing: an exact Hodgkin-Huxley gradient judged DISAGREES by central
    differences of the loss at its own reltol=1e-7, whose solver noise put them 1.1e-5 off.
    Here, at reltol=1e-6, differences at f's tolerance were 3.9e-5 off the exact gradient."""
    t = np.linspace(0.0, 10.0, 101)

    def lotka(u: Any, p: Any, t: Any) -> Any:
        return np.array([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])

    u0, p0 = np.array([1.0, 1.0]), np.array([1.5, 1.0, 3.0, 1.0])
    data = pz.odesolve(lotka, u0, t, np.array([1.3, 0.9, 3.2, 1.1]), alg="Tsit5", reltol=1e-10, abstol=1e-10)
    loss = lambda p: np.sum((pz.odesolve(lotka, u0, t, p, reltol=1e-6, abstol=1e-6) - data) ** 2)  # noqa: E731
    truth = pz.gradient(lambda p: np.sum((pz.odesolve(lotka, u0, t, p, reltol=1e-11, abstol=1e-11) - data) ** 2), p0)[0]
    report = pz.crosscheck(loss, (p0,), (truth,), engines=())
    assert report.rows[0][1] < 1e-5 and "finite differences) solve it 100 times tighter" in str(report)
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(loss, (p0,), (truth * (1 + 1e-3),), engines=())


def test_arguments_from_other_array_libraries_are_read_as_numpy_arrays() -> None:
    """Found in user testing: a PyTorch tensor that requires grad, accepted by pz.gradient,
    crashed crosscheck inside torch.  Arguments holding an array (tensors, JAX arrays) are read
    as the numpy arrays they hold, as pz.gradient reads them."""

    class Foreign:  # any array library's array: numpy reads it through __array__
        def __init__(self, a: np.ndarray) -> None:
            self.a = a

        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            return self.a if dtype is None else self.a.astype(dtype)

    w = np.array([[0.5, -1.0], [2.0, 0.25]])
    f = lambda w: np.sum(np.sin(w) ** 2)  # noqa: E731
    report = pz.crosscheck(f, (Foreign(w),), (np.sin(2 * w),))
    assert report.passed


def test_a_pytorch_tensor_that_requires_grad_is_an_argument_as_any_other() -> None:
    """User testing: crosscheck crashed in torch ("Can't call numpy() on Tensor that requires
    grad") where pz.gradient takes such tensors.  PyTorch is not a test dependency: the stand-in
    has the part of a tensor pyzygote relies on, and refuses numpy() as torch does."""
    from tests.test_api import _TensorLike

    w = np.array([[0.5, -1.0], [2.0, 0.25]])
    t = _TensorLike(w, requires_grad=True)
    assert pz.crosscheck(lambda w: np.sum(np.sin(w) ** 2), (t,), (np.sin(2 * w),)).passed


def test_a_disagreement_without_a_wrong_entry_names_where_it_is_largest() -> None:
    """Found in user testing: a 5% error in one row of a gradient was a bare DISAGREES (no entry
    is 10% off), leaving the user to find the row."""
    x = np.linspace(0.5, 2.0, 12).reshape(4, 3)
    f = lambda x: np.sum(x**3)  # noqa: E731
    wrong = 3 * x**2
    wrong[3] *= 1.05
    with pytest.raises(AssertionError, match=r"largest difference at entry \[3, 2\] of argument 0: 12.6, the reference 12"):
        pz.crosscheck(f, (x,), (wrong,), finite_differences=False)
    with pytest.raises(AssertionError, match=r"entry of argument 1 \(a scalar\) is -15, the reference 15"):  # a number: no index
        pz.crosscheck(lambda x, y: np.sum(x) * y, (x, 1.0), (np.ones_like(x), -np.sum(x)), finite_differences=False)


def test_differences_that_step_out_of_fs_domain_are_retaken_or_reported_as_no_reference() -> None:
    """Found in user testing: a diffusivity of 2e-9 under a log prior, with the absolute step of
    1e-6, put a NaN in the differences and made a correct gradient DISAGREE.  Steps relative to
    each entry stay in the domain; where even they leave it, the row says there is no reference."""
    D = np.array([2e-9, 5e-9])
    loss = lambda D: np.sum((np.log(D) - np.log(3e-9)) ** 2 / 0.5 + D * 1e9)  # noqa: E731
    exact = 4 * (np.log(D) - np.log(3e-9)) / D + 1e9
    report = pz.crosscheck(loss, (D,), (exact,))
    assert report.passed and report.rows[-1][1] is not None and report.rows[-1][1] < 1e-6
    with pytest.raises(AssertionError, match="DISAGREES"):  # a wrong one still fails against them
        pz.crosscheck(loss, (D,), (exact * [1.0, 1.01],), engines=())
    edge = lambda x: np.sqrt(x - 0.9999999999)  # noqa: E731  (x - 1e-6 is outside)
    report = pz.crosscheck(edge, (1.0,), (0.5 / np.sqrt(1e-10),), raise_on_failure=False)
    assert report.passed and report.rows[-1][1] is None and "not finite within the step" in report.rows[-1][3]


def test_gradients_at_kinks_and_ties_may_take_any_value_between_the_one_sided_derivatives() -> None:
    """Found in user testing: PyTorch's correct gradients were DISAGREES at a ReLU at 0 (torch
    takes 0, numpy's and JAX's maximum 1/2) and at a max over equal entries (torch gives the tie
    to one entry, pyzygote splits it)."""
    theta, x = np.zeros(3), np.array([1.0, 2.0, 3.0])
    relu = lambda th: np.sum(((np.maximum(th, 0.0) + 1.0) * x) ** 2)  # noqa: E731
    report = pz.crosscheck(relu, (theta,), (np.zeros(3),))
    assert report.passed and "kinks or ties" in str(report)
    H = np.array([[1.0, 2.0, 2.0, 0.5], [3.0, 3.0, 1.0, 0.0]])
    pool = lambda H: np.sum(np.max(H, axis=1))  # noqa: E731
    torch_like = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert pz.crosscheck(pool, (H,), (torch_like,)).passed
    # each entry in its interval but not together: both tied entries given 1 double counts
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(pool, (H,), (np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),))
    # away from a kink nothing is excused
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(relu, (theta + 0.5,), (np.zeros(3),))


def test_a_float64_gradient_computed_in_float32_is_named() -> None:
    """Found in user testing: a custom backward that cast to float32 gave float64 arrays 6e-8 off,
    which the default rtol of 1e-7 let pass.  Every entry being a float32 number gives it away."""
    X = np.random.default_rng(1).standard_normal((4, 6))
    lse = lambda x: np.sum(np.log(np.sum(np.exp(x), axis=-1)))  # noqa: E731
    exact = np.exp(X) / np.sum(np.exp(X), axis=-1, keepdims=True)
    assert pz.crosscheck(lse, (X,), (exact,)).passed
    with pytest.raises(AssertionError, match="every entry of this float64 gradient is a float32 number"):
        pz.crosscheck(lse, (X,), (exact.astype(np.float32).astype(np.float64),))
    # a float32 gradient is held to float32's tolerance, not refused
    assert pz.crosscheck(lse, (X,), (exact.astype(np.float32),)).passed


def test_small_disagreements_a_correct_gradient_can_have_are_explained_in_the_report() -> None:
    """Found in user testing: a correct diffrax gradient at rtol=1e-6 checked against a reference
    solved at 1e-10 was DISAGREES with no word on why; and a function returning (loss, aux) was
    told to use has_aux, which crosscheck does not take."""
    t = np.linspace(0.0, 5.0, 21)
    decay = lambda u, p, t: -p * u  # noqa: E731
    loss = lambda p, tol: np.sum(pz.odesolve(decay, np.ones(2), t, p, alg="Tsit5", reltol=tol, abstol=tol) ** 2)  # noqa: E731
    p = np.array([0.3, 0.7])
    loose = pz.gradient(lambda p: loss(p, 1e-5), p)[0]
    report = pz.crosscheck(lambda p: loss(p, 1e-11), (p,), (loose,), engines=("numpy",), finite_differences=False, raise_on_failure=False)
    assert not report.passed and any("looser tolerances than f's" in n for n in report.notes)
    with pytest.raises(ValueError, match=r"return the loss alone.*lambda \*a: f\(\*a\)\[0\]"):
        pz.crosscheck(lambda p: (np.sum(p**2), p), (p,), (2 * p,))


def test_a_small_disagreement_prints_the_digits_that_tell_the_numbers_apart() -> None:
    """User testing: a 1e-6 relative error printed as '31.3067, the reference 31.3067'."""

    def f(x: Any) -> Any:
        return np.sum(x ** 3)

    x = np.array([1.0, 3.2304])
    (g,) = pz.gradient(f, x)
    bad = g * np.array([1.0, 1.0 + 1e-6])
    with pytest.raises(AssertionError) as info:
        pz.crosscheck(f, (x,), (bad,))
    said = re.search(r"entry \[1\] of argument 0(?: is|:) ([-\d.e+]+), the reference ([-\d.e+]+)", str(info.value))
    assert said is not None, str(info.value)
    assert said.group(1) != said.group(2)
    np.testing.assert_allclose([float(said.group(1)), float(said.group(2))], [bad[1], g[1]], rtol=3e-7)


def test_none_marks_an_argument_as_data_as_jax_argnums_does(point) -> None:
    """User testing: crosscheck(loss, (params, X, y), (g, None, None)) was refused: the gradient
    had to match every argument, and data had to be closed over."""
    W, b, x = point
    gW, gb, gx = pz.gradient(loss, W, b, x)
    report = pz.crosscheck(loss, (W, b, x), (gW, None, None))
    assert report.passed
    bad = gx.copy()
    bad[2, 1] *= 1.5
    with pytest.raises(AssertionError, match=r"entry \[2, 1\] of argument 2"):  # numbered as the caller's
        pz.crosscheck(loss, (W, b, x), (None, None, bad))
    with pytest.raises(ValueError, match="None for every argument"):
        pz.crosscheck(loss, (W, b, x), (None, None, None))
    with pytest.raises(ValueError, match="one entry per argument"):
        pz.crosscheck(loss, (W, b, x), (gW, None))


def test_every_reference_names_the_same_entry_of_a_gradient_off_by_a_factor():
    """User testing: for a doubled gradient the engine's row named entry [0], the finite
    differences' row entry [2]: every entry is off by the same factor, and rounding chose. Near
    ties go to the largest absolute difference, in every row."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 3))
    y = (rng.random(100) < 0.5).astype(float)
    nll = lambda w, X, y: -np.sum(y * (X @ w) - np.logaddexp(0.0, X @ w))  # noqa: E731
    w = np.array([0.1, -0.2, 0.3])
    (g,) = pz.gradient(nll, w, X=X, y=y)
    largest = int(np.argmax(np.abs(g)))
    report = pz.crosscheck(nll, (w, X, y), (2 * g, None, None), engines=("numpy",), raise_on_failure=False)
    notes = [row[3] for row in report.rows]
    assert len(notes) == 2 and all(n.startswith(f"entry [{largest}] of argument 0 is ") for n in notes), notes
    # a single wrong entry is still the one named, however small against the others
    bad = g.copy()
    small = int(np.argmin(np.abs(g)))
    bad[small] *= 1.5
    report = pz.crosscheck(nll, (w, X, y), (bad, None, None), engines=("numpy",), raise_on_failure=False)
    assert [row[3].split(" is ")[0] for row in report.rows] == [f"entry [{small}] of argument 0"] * 2, report.rows


def test_ode_solves_inside_an_nlsolve_residual_set_the_solver_tolerance() -> None:
    """A shooting problem, pz.nlsolve of a residual that solves an ODE, is as accurate as that solve:
    crosscheck looked for solves only in the loss's own program and held it to 1e-7 (integration
    review: finite differences of the reltol=1e-3 shooting loss 'DISAGREED' by 4e-3)."""
    decay = lambda x, q, t: -q[0] * x  # noqa: E731

    def start(p: np.ndarray, tol: float) -> Any:  # x(0) with x(1) = 0.5: 0.5 exp(p)
        hit = lambda x0, q: pz.odesolve(decay, x0, (0.0, 1.0), q, alg="Tsit5", reltol=tol, abstol=tol * 1e-2)[-1] - 0.5  # noqa: E731
        return pz.nlsolve(hit, np.array([1.0]), p, abstol=1e-9)[0]

    p = np.array([0.4])
    exact = 0.5 * np.exp(p)
    report = pz.crosscheck(lambda p: start(p, 1e-6), (p,), (exact * (1 + 2e-5),), engines=("numpy",))
    assert report.passed and "reltol=1e-06" in str(report)
    assert all(tol == pytest.approx(3e-5) for _, diff, tol, _ in report.rows if diff is not None)
    with pytest.raises(AssertionError, match="DISAGREES"):  # a real error still shows
        pz.crosscheck(lambda p: start(p, 1e-6), (p,), (exact * 1.01,), engines=("numpy",))


class _JaxLike:
    """The part of a JAX float32 array that matters here (JAX is not a test dependency): numpy reads
    its values through __array__, and arithmetic with it computes in float32, as jnp does without x64."""

    __array_priority__ = 100  # numpy defers `ndarray @ this` to __rmatmul__, as it does for JAX arrays

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values, dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype)

    def __matmul__(self, other: Any) -> Any:
        if not isinstance(other, np.ndarray):
            return NotImplemented  # a traced value takes it from here, as from a JAX array
        return self.values @ other.astype(np.float32)

    def __rmatmul__(self, other: Any) -> Any:
        if not isinstance(other, np.ndarray):
            return NotImplemented
        return other.astype(np.float32) @ self.values


def test_data_arguments_from_other_array_libraries_are_read_as_numpy_arrays() -> None:
    """User testing: a data argument (its gradient None) that was a JAX float32 array was closed over
    as it was, so the differences ran f in float32 and their rounding passed an entry off by a
    factor of 2 (as a 'kink' of a smooth tanh); a PyTorch tensor as data crashed in np.mean."""
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((5, 3)), rng.standard_normal((40, 5))
    f = lambda W, X: np.mean(np.tanh(X @ W) ** 2)  # noqa: E731
    X32 = X.astype(np.float32)
    (g,) = pz.gradient(f, W, X=X32)  # what the data reads as in numpy
    assert pz.crosscheck(f, (W, _JaxLike(X)), (g, None)).passed
    for factor in (2.0, 1.05, 0.0):
        bad = g.copy()
        bad[0, 0] *= factor
        report = pz.crosscheck(f, (W, _JaxLike(X)), (bad, None), raise_on_failure=False)
        assert not report.passed and "kinks" not in str(report), str(report)
        assert all(diff is not None for name, diff, _, _ in report.rows if "julia" not in name), str(report)

    from tests.test_api import _TensorLike

    class Tensor(_TensorLike):
        __module__ = "torch"

        def sum(self, dim: Any = None) -> "Tensor":  # torch's takes dim=, not numpy's axis=
            return Tensor(np.sum(self.values, axis=dim))

    w, x = np.array([0.5, -1.0, 2.0]), np.arange(6.0).reshape(2, 3)
    h = lambda w, x: np.sum(x) * np.sum(np.sin(w))  # noqa: E731
    assert pz.crosscheck(h, (w, Tensor(x, requires_grad=True)), (np.sum(x) * np.cos(w), None)).passed


def test_a_float64_gradient_at_a_float32_point_is_judged_in_float64_and_not_excused_as_a_kink() -> None:
    """User testing: with float32 arguments (JAX's default) and a float64 gradient, the references
    were float32 and the one-sided differences mixed float32 and float64 evaluations of f, so a
    smooth tanh had 'kinks' and an entry off by a factor of 2, 1.05 or 0 passed."""
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((40, 5)).astype(np.float32)
    f = lambda W, X: np.mean(np.tanh(X @ W) ** 2)  # noqa: E731
    (g,) = pz.gradient(f, W.astype(np.float64), X=X.astype(np.float64))  # at the same point, in float64
    report = pz.crosscheck(f, (W, X), (g, None))
    assert report.passed and report.rows[0][1] < 1e-12 and "kinks" not in str(report), str(report)
    for factor in (2.0, 1.05, 0.0):
        bad = g.copy()
        bad[0, 0] *= factor
        report = pz.crosscheck(f, (W, X), (bad, None), raise_on_failure=False)
        assert not report.passed and "kinks" not in str(report), str(report)


def test_kinks_are_looked_for_only_in_programs_that_can_have_them() -> None:
    """A smooth f evaluated in float32 parts its one-sided differences by rounding, as much with
    half the step: that is no kink, and the traced program, which has no maximum, minimum,
    absolute value or comparison of the arguments, says so."""
    from pyzygote.subgradients import Kinks, may_kink

    w = np.random.default_rng(0).standard_normal(6)
    noisy = lambda w: np.sum(np.tanh(w.astype(np.float32)) ** 2)  # noqa: E731
    assert np.all(np.isnan(Kinks(noisy, (w,)).bounds()[0]))
    smooth = [noisy, lambda w: np.sum(np.logaddexp(w, 0.0)), lambda w: np.sum(np.where(np.arange(6) > 2, w, 2 * w))]
    assert not any(may_kink(h, (w,)) for h in smooth)
    kinked = [
        lambda w: np.sum(np.maximum(w, 0.0)), lambda w: np.max(w), lambda w: np.sum(np.abs(w)),
        lambda w: np.sum(np.sort(w)[:3]), lambda w: np.sum(np.clip(w, -1.0, 1.0)), lambda w: np.sum(np.where(w > 0, w, 0.0)),
        lambda w: np.linalg.eigvalsh(np.diag(w))[-1],  # the largest eigenvalue, kinked where two cross
    ]  # fmt: skip
    assert all(may_kink(h, (w,)) for h in kinked)
    # and only at points where a step moves a value across its kink: a ReLU of entries that are
    # not 0 has none, whatever rounding does to the differences
    noisy_relu = lambda w: noisy(w) + np.sum(np.maximum(w, 0.0))  # noqa: E731
    assert np.all(np.isnan(Kinks(noisy_relu, (w,)).bounds()[0]))
    at_zero = w.copy()
    at_zero[1] = 0.0
    low, high = Kinks(noisy_relu, (at_zero,)).bounds()[0]
    assert np.flatnonzero(np.isfinite(low)).tolist() == [1] and high[1] - low[1] == pytest.approx(1.0, abs=1e-3)


def test_a_transposed_gradient_is_named_and_the_triangle_hint_needs_a_triangle_read() -> None:
    """User testing: a transposed gradient of a square weight (W of x @ W) was explained as the
    convention of functions that read one triangle of a symmetric matrix (cholesky, eigh), which
    f did not call."""
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((5, 5)), rng.standard_normal((32, 5))
    f = lambda W, X: np.sum(np.tanh(X @ W) ** 2)  # noqa: E731
    (g,) = pz.gradient(f, W, X=X)
    with pytest.raises(AssertionError) as info:
        pz.crosscheck(f, (W, X), (g.T, None))
    assert "argument 0 agrees once transposed" in str(info.value) and "symmetrized" not in str(info.value)
    # in a dict: the hint for the entry cholesky reads, and only for it
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
    h = lambda p, X: np.sum(np.linalg.cholesky(p["A"]) ** 3) + np.sum(np.tanh(X @ p["W"]) ** 2)  # noqa: E731
    (gp,) = pz.gradient(h, {"A": A, "W": W}, X=X)
    symmetric = dict(gp, A=(gp["A"] + gp["A"].T) / 2.0)  # what JAX and PyTorch give
    with pytest.raises(AssertionError, match=r"argument 0\['A'\] agree once symmetrized: f reads one triangle"):
        pz.crosscheck(h, ({"A": A, "W": W}, X), (symmetric, None), engines=("numpy",))
    with pytest.raises(AssertionError) as info:
        pz.crosscheck(h, ({"A": A, "W": W}, X), (dict(gp, W=gp["W"].T), None), engines=("numpy",))
    assert "argument 0['W'] agrees once transposed" in str(info.value) and "symmetrized" not in str(info.value)
    # symmetrizing a gradient of a matrix that no triangle-reader sees explains nothing
    with pytest.raises(AssertionError) as info:
        pz.crosscheck(h, ({"A": A, "W": W}, X), (dict(gp, W=(gp["W"] + gp["W"].T) / 2.0), None), engines=("numpy",))
    assert "symmetrized" not in str(info.value) and "transposed" not in str(info.value)


def test_a_float64_gradient_computed_in_float32_is_named_also_where_it_disagrees() -> None:
    """User testing: a correct gradient computed in float32 and cast to float64 was DISAGREES
    (2.2e-7 > 1e-7) with no word of why; the README promises it is named."""
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((5, 3)), rng.standard_normal((40, 5))
    f = lambda W, X: np.mean(np.tanh(X @ W) ** 2)  # noqa: E731
    (g32,) = pz.gradient(f, W.astype(np.float32), X=X.astype(np.float32))
    report = pz.crosscheck(f, (W, X), (g32.astype(np.float64), None), raise_on_failure=False)
    assert not report.passed and 1e-7 < report.rows[0][1] < 1e-5, str(report)
    assert any("every entry of this float64 gradient is a float32 number" in n for n in report.notes), str(report)
    assert pz.crosscheck(f, (W, X), (g32, None)).passed  # as float32, held to float32's tolerance
    # a float64 gradient as far off, not made of float32 numbers, gets no such note
    (g,) = pz.gradient(f, W, X=X)
    report = pz.crosscheck(f, (W, X), (g * (1 + 3e-7), None), raise_on_failure=False)
    assert not report.passed and not any("float32" in n for n in report.notes), str(report)


def test_differences_of_a_function_of_signed_factors_name_the_signs() -> None:
    """Found in review: crosscheck of a loss of np.linalg.qr's Q, with pyzygote's exact gradient,
    said DISAGREES (1.5 off) with no word of why: the differences run f as plain numpy, whose Q
    had LAPACK's column signs where pyzygote fixed them.  qr now keeps numpy's signs, so that
    loss agrees; svd's U is still signed by pyzygote, and such a loss is named."""
    rng = np.random.default_rng(3)
    A, W = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    f = lambda a: np.sum(np.linalg.qr(a)[0] * W)  # noqa: E731
    report = pz.crosscheck(f, (A,), pz.gradient(f, A), engines=("numpy",))
    assert report.passed and not any("signs" in note for note in report.notes)
    report = pz.crosscheck(f, (A,), (2.0 * pz.gradient(f, A)[0],), engines=("numpy",), raise_on_failure=False)
    assert not report.passed and not any("signs" in note for note in report.notes)  # a wrong gradient of qr is just wrong
    u = lambda a: np.sum(np.linalg.svd(a, full_matrices=False)[0] * W)  # noqa: E731
    assert u(A) != pytest.approx(pz.withgradient(u, A)[0])  # numpy's U has a column pyzygote flips
    report = pz.crosscheck(u, (A,), pz.gradient(u, A), engines=("numpy",), raise_on_failure=False)
    assert not report.passed and any("np.linalg.svd, whose signs pyzygote fixes" in note for note in report.notes)

    def signed(a):  # the advice: the signs fixed in f, as pyzygote fixes them; then both agree
        v = np.linalg.svd(a, full_matrices=False)[0]
        lead = np.take_along_axis(v, np.argmax(np.abs(v), axis=0)[None, :], axis=0)[0]
        return np.sum(v * np.where(lead < 0, -1.0, 1.0) * W)

    assert pz.crosscheck(signed, (A,), pz.gradient(signed, A), engines=("numpy",)).passed
    # singular values do not depend on the signs: a wrong gradient of them gets no such note
    s = lambda a: np.sum(np.linalg.svd(a, compute_uv=False) ** 3)  # noqa: E731
    report = pz.crosscheck(s, (A,), (2.0 * pz.gradient(s, A)[0],), engines=("numpy",), raise_on_failure=False)
    assert not report.passed and not any("signs" in note for note in report.notes)


def test_a_float32_gradient_far_beyond_pyzygotes_own_float32_rounding_is_not_excused() -> None:
    """User testing: a float32 gradient with one entry 1% off was told 'a float32 gradient can be
    this far off where its computation cancels', where pyzygote's own float32 gradient was 30
    times closer to the float64 one."""
    rng = np.random.default_rng(0)
    W, X = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    f = lambda W, X: np.mean(np.tanh(X @ W) ** 2)  # noqa: E731
    (g,) = pz.gradient(f, W, X=X)
    g[0, 0] *= 1.003
    report = pz.crosscheck(f, (W, X), (g, None), raise_on_failure=False)
    assert not report.passed
    assert "float32 rounding in f does not explain the difference" in str(report)
    assert "can be this far off where its computation cancels" not in str(report)


def _lotka(u: Any, p: Any, t: Any) -> Any:
    return np.array([p[0] * u[0] - p[1] * u[0] * u[1], -p[2] * u[1] + p[3] * u[0] * u[1]])


def test_an_ode_gradient_dominated_by_its_own_solve_error_is_said_to_be_so() -> None:
    """User testing: at an optimum of a loss solved at reltol=1e-6, pyzygote's own gradient (3e-6)
    was DISAGREES, 1.0 off the 100 times tighter reference (-0.015): right, but told with a hint
    about a gradient from solves looser than f's, where both used f's.  The verdict stays."""
    import scipy.optimize

    t = np.linspace(0.0, 10.0, 101)
    u0, ptrue = np.array([1.0, 1.0]), np.array([1.5, 1.0, 3.0, 1.0])
    data = pz.odesolve(_lotka, u0, t, ptrue, alg="Tsit5", reltol=1e-12, abstol=1e-12)
    data = data + 0.01 * np.random.default_rng(0).standard_normal(data.shape)

    def loss(p: Any) -> Any:
        return np.sum((pz.odesolve(_lotka, u0, t, p, alg="Tsit5", reltol=1e-6, abstol=1e-6) - data) ** 2)

    p = scipy.optimize.minimize(pz.value_and_grad(loss), ptrue, jac=True, method="BFGS", options={"gtol": 1e-3}).x
    own = pz.gradient(loss, p)
    with pytest.raises(AssertionError, match="DISAGREES") as info:
        pz.crosscheck(loss, (p,), own, engines=("numpy",))
    said = str(info.value)
    assert "pyzygote's own gradient of f at f's tolerances" in said and "error of f's ODE solves at reltol=1e-06" in said
    assert "near an optimum" in said and "reltol=1e-08" in said and "looser tolerances" not in said
    # a gradient that is not f's own is not told so (a wrong one still DISAGREES); one off by about
    # as much as f's own is told that f's own errs as much, and one far beyond it nothing
    with pytest.raises(AssertionError, match="DISAGREES") as info:
        pz.crosscheck(loss, (p,), (own[0] + 0.01,), engines=("numpy",))
    assert "own gradient of f at f's tolerances, which" not in str(info.value)
    assert re.search(r"own gradient of f at f's tolerances differs from the references by \S+ too", str(info.value))
    with pytest.raises(AssertionError, match="DISAGREES") as info:
        pz.crosscheck(loss, (p,), (own[0] + 1.0,), engines=("numpy",))
    assert "own gradient of f at f's tolerances" not in str(info.value)


def test_a_float32_ode_gradient_is_told_the_solve_s_error_not_float32_rounding() -> None:
    """User testing: float32 arguments and an ODE loss at reltol=1e-6: the report had no ODE note and
    gave float32 rounding as an absolute 1.2e-4 beside relative differences of 5e-6, where pyzygote's
    own float32 gradient was 3e-8 of the scale from its float64 one; the 5e-6 is the solve's."""
    t = np.linspace(0.0, 10.0, 101)

    def loss(p: Any, tol: float = 1e-6) -> Any:
        return np.sum(pz.odesolve(_lotka, np.array([1.0, 1.0]), t, p, alg="Tsit5", reltol=tol, abstol=tol) ** 2)

    p32 = np.array([1.5, 1.0, 3.0, 1.0], dtype=np.float32)
    g32, g64 = pz.gradient(loss, p32)[0], pz.gradient(loss, p32.astype(np.float64))[0]
    rounding = np.max(np.abs(g32 - g64)) / np.max(np.abs(g64))
    assert rounding < 1e-7
    report = str(pz.crosscheck(loss, (p32,), (g32,), finite_differences=False, engines=("numpy",)))
    assert "f solves an ODE at reltol=1e-06" in report
    said = re.search(r"differs from its float64 gradient by up to (\S+) of that gradient's largest entry \((\S+)\)", report)
    assert said and float(said.group(1)) == pytest.approx(rounding, rel=0.05), report
    assert float(said.group(2)) == pytest.approx(np.max(np.abs(g64)), rel=0.06)  # printed to two digits
    # a gradient from a 100 times looser solve: DISAGREES, with the solve named beside float32's rounding
    looser = pz.gradient(lambda p: loss(p, 1e-4), p32)
    with pytest.raises(AssertionError, match="DISAGREES") as info:
        pz.crosscheck(loss, (p32,), looser, finite_differences=False, engines=("numpy",))
    said = str(info.value)
    assert "f solves an ODE at reltol=1e-06" in said and "float32 rounding in f does not explain" in said
    assert "if the gradient comes from a solve at looser tolerances than f's" in said

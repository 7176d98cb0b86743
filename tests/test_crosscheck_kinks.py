"""pz.crosscheck at kinks and ties: one-sided derivatives read off the traced program exactly,
and no evaluations of f spent looking for kinks where the program cannot have one here."""

from __future__ import annotations

import numpy as np
import pytest

import pyzygote as pz


def _sides(f, x, i):
    """The derivatives of f at x along entry i from the right and from the left."""
    from pyzygote.directional import directional_derivative

    prog = pz.make_program(f, x)
    e = np.zeros_like(x)
    e[i] = 1.0
    return directional_derivative(prog, [x], [e]).derivative, -directional_derivative(prog, [x], [-e]).derivative


def test_one_sided_derivatives_at_kinks_are_exact() -> None:
    """Closed forms, to the last bit: no step, no truncation error (a step of 5e-7 gave 1.9999995
    for d/dx clip(x)**2 = 2 at the bound, outside the engines' tolerance of 1e-7)."""
    assert _sides(lambda x: np.sum(np.clip(x, -1.0, 1.0) ** 2), np.array([1.0, 0.5]), 0) == (0.0, 2.0)
    assert _sides(lambda x: np.sum(np.clip(x, -1.0, 1.0) ** 2), np.array([-1.0, 0.5]), 0) == (-2.0, 0.0)
    assert _sides(lambda x: np.sum(np.exp(np.clip(x, -1.0, 1.0))), np.array([1.0, 0.0]), 0) == (0.0, np.e)
    assert _sides(lambda x: np.sum(np.maximum(x, 0.0) + x**3), np.array([0.0, 0.5]), 0) == (1.0, 0.0)
    assert _sides(lambda x: np.sum(np.abs(x - 0.25) * 3.0), np.array([0.25, 0.5]), 0) == (3.0, -3.0)
    assert _sides(lambda x: np.sum(np.where(x > 0, x, 0.0)), np.array([0.0]), 0) == (1.0, 0.0)
    assert _sides(lambda x: 2.0 * np.max(x), np.array([1.0, 3.0, 3.0]), 1) == (2.0, 0.0)
    # a sort of tied values: the one moved up goes last among them
    assert _sides(lambda x: np.sum(np.sort(x) * np.arange(3.0)), np.array([1.0, 1.0, 2.0]), 0) == (1.0, 0.0)
    # away from the kink, both sides are the derivative
    assert _sides(lambda x: np.sum(np.clip(x, -1.0, 1.0) ** 2), np.array([1.0 - 1e-9, 0.5]), 0) == (2 * (1 - 1e-9),) * 2


def _clip_square(x):
    return np.sum(np.clip(x, -1.0, 1.0) ** 2)


@pytest.mark.parametrize("finite_differences", [True, False])
def test_either_one_sided_derivative_at_a_bound_agrees_and_nothing_outside(finite_differences: bool) -> None:
    x = np.array([1.0, 0.5, -1.0])
    (own,) = pz.gradient(_clip_square, x)
    for g0, g2 in ((2.0, -2.0), (0.0, 0.0), (1.0, -1.0), (2.0, 0.0)):  # torch.clamp's, one side, halves, mixed
        g = np.array([g0, 1.0, g2])
        report = pz.crosscheck(_clip_square, (x,), (g,), finite_differences=finite_differences)
        assert report.passed and ("kinks" in str(report) or np.array_equal(g, own)), str(report)
    for g0 in (2.0 * (1 + 1e-4), -2e-4, 3.0):  # outside [0, 2] by 1e-4 of the scale and more
        report = pz.crosscheck(_clip_square, (x,), (np.array([g0, 1.0, -2.0]),), finite_differences=finite_differences, raise_on_failure=False)
        assert not report.passed and "DISAGREES" in str(report), str(report)
    # a point 1e-9 from the bound is no kink: the other side's derivative there is wrong
    near = np.array([1.0 - 1e-9, 0.5, -1.0])
    report = pz.crosscheck(_clip_square, (near,), (np.array([0.0, 1.0, -2.0]),), finite_differences=finite_differences, raise_on_failure=False)
    assert not report.passed and "kinks" not in str(report), str(report)
    # nor is an entry that is right beside one that sits at a kink: a wrong entry stays wrong
    report = pz.crosscheck(_clip_square, (x,), (np.array([2.0, 1.0 + 1e-4, -2.0]),), finite_differences=finite_differences, raise_on_failure=False)
    assert not report.passed, str(report)


def test_relu_network_at_a_kink_takes_pytorchs_convention_and_refuses_a_wrong_entry() -> None:
    rng = np.random.default_rng(3)
    W1, W2, X = rng.normal(size=(4, 3)), rng.normal(size=(1, 4)), rng.normal(size=(6, 3))
    X[0] = 0.0  # every pre-activation of the first row is 0, at ReLU's kink

    def loss(W1, b1, W2):
        return np.mean((np.maximum(X @ W1.T + b1, 0.0) @ W2.T) ** 2)

    b1 = np.zeros(4)
    z = X @ W1.T + b1
    r = 2.0 * (np.maximum(z, 0.0) @ W2.T) / 6
    dz = (r @ W2) * (z > 0)  # ReLU'(0) = 0, as PyTorch
    grads = (dz.T @ X, dz.sum(0), r.T @ np.maximum(z, 0.0))
    assert pz.crosscheck(loss, (W1, b1, W2), grads, finite_differences=False).passed
    left = (dz + (r @ W2) * (z == 0)).sum(0)  # ReLU'(0) = 1: the other side, also valid
    assert pz.crosscheck(loss, (W1, b1, W2), (grads[0], left, grads[2]), finite_differences=False).passed
    for k in range(4):  # each bias entry a little beyond its interval
        wrong = grads[1].copy()
        low, high = sorted((grads[1][k], left[k]))
        wrong[k] = high + 1e-4 * np.max(np.abs(grads[1])) if k % 2 else low - 1e-4 * np.max(np.abs(grads[1]))
        report = pz.crosscheck(loss, (W1, b1, W2), (grads[0], wrong, grads[2]), finite_differences=False, raise_on_failure=False)
        assert not report.passed, str(report)


def _counting(f):
    calls = {"plain": 0}

    def counted(*args):
        if all(isinstance(a, np.ndarray) for a in args):  # an evaluation outside tracing
            calls["plain"] += 1
        return f(*args)

    return counted, calls


@pytest.mark.parametrize(
    "f, at",
    [
        (lambda w: np.sum(np.tanh(w) ** 2), 0.3),  # smooth: no kink anywhere
        (lambda w: np.sum(np.maximum(w, 0.0) ** 2 + np.tanh(w)), 0.3),  # kinked, but at no kink here
        (lambda w: np.sum(np.maximum(w, 0.0) ** 2 + np.tanh(w)), 0.0),  # at kinks: read off the program
    ],
)
def test_a_wrong_gradient_costs_no_evaluations_of_f_without_finite_differences(f, at) -> None:
    w = np.linspace(-1.0, 1.0, 50) + at
    (g,) = pz.gradient(f, w)
    counted, calls = _counting(f)
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(counted, (w,), (g * 1.01,), finite_differences=False)
    assert calls["plain"] <= 1, calls  # f's value for the noise floors
    calls["plain"] = 0
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(counted, (w,), (g * 1.01,))
    # the central differences (with the step and twice it), and nothing per entry for kinks
    assert calls["plain"] <= 4 * w.size + 1, calls


def test_a_program_whose_kinks_cannot_be_read_is_not_probed_when_differences_are_off() -> None:
    """An eigenvalue's kinks (where two cross) are found by one-sided differences only: with
    finite_differences=False they are not looked for, and the row says so."""
    f = lambda w: np.linalg.eigvalsh(np.diag(w))[-1] + np.sum(w**2)  # noqa: E731
    w = np.array([1.0, 2.0, 0.5])
    counted, calls = _counting(f)
    report = pz.crosscheck(counted, (w,), (np.array([2.0, 5.0 * 1.01, 1.0]),), finite_differences=False, raise_on_failure=False)
    assert not report.passed and calls["plain"] <= 1, (calls, str(report))
    assert "finite_differences=False" in str(report), str(report)


def test_a_jump_is_no_kink() -> None:
    """At floor's switch f jumps: the one-sided differences were 2 and 2e6, and any value between
    them (5, where the derivative of each side is 2) was accepted as a subgradient."""
    f = lambda x: np.sum(np.floor(x) + x**2)  # noqa: E731
    x = np.array([1.0, 0.5])
    assert pz.crosscheck(f, (x,), (np.array([2.0, 1.0]),)).passed
    report = pz.crosscheck(f, (x,), (np.array([5.0, 1.0]),), raise_on_failure=False)
    assert not report.passed and "kinks" not in str(report), str(report)


def test_a_tie_of_three_at_the_median_accepts_convex_combinations_of_its_pieces_only() -> None:
    """np.median(x) * 2 at [1, 3, 3, 3, 5]: near x the median is one of the three tied entries,
    so the gradients nearby are 2 e_1, 2 e_2, 2 e_3, and any convex combination of them is a
    (Clarke) subgradient: torch's 2/3 each, JAX's 2 on one.  Each one-sided partial is 0 (moving
    one tied entry leaves another in the middle), so intervals alone cannot tell."""
    f = lambda x: np.median(x) * 2.0  # noqa: E731
    x = np.array([1.0, 3.0, 3.0, 3.0, 5.0])
    for g in ([0, 2 / 3, 2 / 3, 2 / 3, 0], [0, 2, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0.5, 1.2, 0.3, 0]):
        report = pz.crosscheck(f, (x,), (np.array(g),))
        assert report.passed, str(report)
        assert "tie" in str(report) or g == [0, 0, 2, 0, 0], str(report)
    wrong = (
        [0, 3, -1, 0, 0],  # sums to 2, but a negative weight
        [0, 1, 1, 1, 0],  # sums to 3
        [0, 2 / 3, 2 / 3, 2 / 3 + 1e-6, 0],  # 1e-6 too much
        [0.1, 2 / 3, 2 / 3, 2 / 3 - 0.1, 0],  # an entry that is no part of the tie
        [0, 0, 0, 0, 2],  # the largest entry
    )
    for g in wrong:
        report = pz.crosscheck(f, (x,), (np.array(g),), raise_on_failure=False)
        assert not report.passed and "DISAGREES" in str(report), (g, str(report))


def test_a_tie_in_a_sort_with_a_smooth_part() -> None:
    """f = 3 * sort(x)[1] + sum(x**2) at a two-way tie of the two smallest: the pieces' gradients
    are 3 e_i + 2 x for i of the tie; halves agree, an extra 1e-4 does not."""
    f = lambda x: 3.0 * np.sort(x)[1] + np.sum(x**2)  # noqa: E731
    x = np.array([0.5, 0.5, 2.0])
    base = 2.0 * x
    for split in ((3.0, 0.0), (1.5, 1.5), (0.0, 3.0)):
        assert pz.crosscheck(f, (x,), (base + np.array([*split, 0.0]),)).passed
    for split in ((1.5, 1.5 + 1e-4), (3.0, 3.0), (-1.0, 4.0)):
        report = pz.crosscheck(f, (x,), (base + np.array([*split, 0.0]),), raise_on_failure=False)
        assert not report.passed, (split, str(report))


def test_entries_sharing_a_kink_must_take_the_same_side() -> None:
    """A ReLU of w0 + w1 at 0 (acceptance testing): each entry between its one-sided derivatives
    is not enough, both take the same side (7 + 2s and 5 + 2s for one s in [0, 1]); 7.5 beside 5
    passed as 'between 7 and 9' and 'between 5 and 7'."""
    f = lambda w, X: np.sum(np.maximum(X @ w, 0.0) * 2.0) + np.sum(w**3)  # noqa: E731
    w, X = np.array([1.0, -1.0, 0.5]), np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    for s in (0.0, 0.25, 1.0):
        assert pz.crosscheck(f, (w, X), (np.array([7.0 + 2 * s, 5.0 + 2 * s, 0.75]), None)).passed
    for g in ([7.5, 5.0, 0.75], [9.0, 5.0, 0.75], [7.0, 7.0, 0.75], [7.0 + 2e-4, 5.0, 0.75]):
        report = pz.crosscheck(f, (w, X), (np.array(g), None), raise_on_failure=False)
        assert not report.passed, (g, str(report))


def test_a_relu_at_zero_of_a_nonzero_input_row_accepts_either_side_and_no_mixture() -> None:
    """A bias chosen so that one pre-activation of a nonzero input row is 0: the weights' row and
    the bias share that kink, so PyTorch's gradient (off) and the other side (on) agree, a
    gradient taking one side for the weights and the other for the bias does not.  The kink is
    0.0 as x @ W.T computes it; the traced einsum's own loop gave -5.6e-17."""
    rng = np.random.default_rng(0)
    W1, W2, X = rng.normal(size=(4, 3)), rng.normal(size=(1, 4)), rng.normal(size=(6, 3))
    b1 = rng.normal(size=4)
    b1[0] = -X[0] @ W1[0]

    def loss(W1, b1, W2):
        return np.mean((np.maximum(X @ W1.T + b1, 0.0) @ W2.T) ** 2)

    z = X @ W1.T + b1
    assert z[0, 0] == 0.0
    r = 2.0 * (np.maximum(z, 0.0) @ W2.T) / len(X)
    grads = {}
    for side, on in (("off", z > 0), ("on", z >= 0)):
        dz = (r @ W2) * on
        grads[side] = (dz.T @ X, dz.sum(0), r.T @ np.maximum(z, 0.0))
        assert pz.crosscheck(loss, (W1, b1, W2), grads[side], finite_differences=False).passed
    mixed = (grads["off"][0], grads["on"][1], grads["off"][2])
    assert not pz.crosscheck(loss, (W1, b1, W2), mixed, finite_differences=False, raise_on_failure=False).passed
    wrong = (grads["off"][0].copy(), *grads["off"][1:])
    wrong[0][0, 1] += 1e-4 * np.max(np.abs(wrong[0]))
    assert not pz.crosscheck(loss, (W1, b1, W2), wrong, finite_differences=False, raise_on_failure=False).passed

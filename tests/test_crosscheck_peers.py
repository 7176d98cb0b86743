"""pz.crosscheck judging gradients that PyTorch and JAX give, found in acceptance testing:
valid one-sided derivatives at kinks and ties accepted, wrong ones refused, at little cost."""

from __future__ import annotations

import numpy as np
import pytest

import pyzygote as pz


def _one_sided(f, x, i, h):
    up, down = x.copy(), x.copy()
    up[i] += h
    down[i] -= h
    return (f(up) - f(x)) / h, (f(x) - f(down)) / h


def test_clip_then_square_at_the_bound_accepts_the_left_derivative() -> None:
    """torch.clamp passes the gradient at its bound (d/dx clamp(x)**2 = 2 at x = 1); numpy's
    one-sided derivatives there are 2 (left) and 0 (right), so 2 is a valid subgradient.  The
    finite-difference row already says 'agrees at kinks'; the engine row says DISAGREES."""
    f = lambda x: np.sum(np.clip(x, -1.0, 1.0) ** 2)  # noqa: E731
    x = np.array([1.0, 0.5])
    right, left = _one_sided(f, x, 0, 1e-9)
    assert abs(left - 2.0) < 1e-6 and abs(right) < 1e-6  # independent: 2 is the left derivative
    assert pz.crosscheck(f, (x,), (np.array([2.0, 1.0]),), finite_differences=False).passed


def test_exp_of_clip_at_the_bound_accepts_the_left_derivative() -> None:
    f = lambda x: np.sum(np.exp(np.clip(x, -1.0, 1.0)))  # noqa: E731
    x = np.array([1.0, 0.0])
    right, left = _one_sided(f, x, 0, 1e-9)
    assert abs(left - np.e) < 1e-5 and abs(right) < 1e-6
    assert pz.crosscheck(f, (x,), (np.array([np.e, 1.0]),), finite_differences=False).passed


def test_a_wrong_gradient_of_a_smooth_program_costs_no_finite_differences_when_they_are_off() -> None:
    """User testing: a 12k-parameter attention block, finite_differences=False: 0.02 s when the
    gradient agrees, 26-32 s when it disagrees (49,668 evaluations of f).  Counted, not timed."""
    calls = {"plain": 0}

    def f(w):
        if isinstance(w, np.ndarray):  # an evaluation outside tracing
            calls["plain"] += 1
        return np.sum(np.tanh(w) ** 2)

    w = np.linspace(-1.0, 1.0, 200)
    wrong = 2.0 * np.tanh(w) / np.cosh(w) ** 2 * 1.01
    with pytest.raises(AssertionError, match="DISAGREES"):
        pz.crosscheck(f, (w,), (wrong,), finite_differences=False)
    assert calls["plain"] < 50, calls


def test_median_three_way_tie_accepts_an_even_split() -> None:
    """torch.median(x) * 2 at [1, 3, 3, 3, 5] gives 2/3 to each tied entry; JAX (and pyzygote)
    give 2 to one of them.  Both are limits of gradients at nearby points (Clarke subgradients):
    along (0, 1, 1, 1, 0) the derivative is 2, which both sum to."""
    f = lambda x: np.median(x) * 2.0  # noqa: E731
    x = np.array([1.0, 3.0, 3.0, 3.0, 5.0])
    d = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    assert abs((f(x + 1e-7 * d) - f(x)) / 1e-7 - 2.0) < 1e-6
    torch_like = np.array([0.0, 2.0, 2.0, 2.0, 0.0]) / 3.0
    assert pz.crosscheck(f, (x,), (torch_like,)).passed


def _relu_mlp(p, X, y):
    h = np.maximum(X @ p["W1"].T + p["b1"], 0.0)
    return np.mean((h @ p["W2"].T + p["b2"] - y) ** 2)


def _torch_like_gradient(p, X, y):
    """The gradient PyTorch gives (ReLU'(0) = 0), written out."""
    z = X @ p["W1"].T + p["b1"]
    h = np.maximum(z, 0.0)
    r = 2.0 * (h @ p["W2"].T + p["b2"] - y) / len(y)  # (n, 1)
    dz = (r @ p["W2"]) * (z > 0)
    return {"W1": dz.T @ X, "b1": dz.sum(0), "W2": r.T @ h, "b2": r.sum(0)}


def test_relu_mlp_with_a_zero_input_row_accepts_pytorchs_gradient() -> None:
    """In acceptance testing 26 of 40 torch.manual_seed's of nn.Linear(3, 4) -> ReLU -> nn.Linear(4, 1)
    with zero biases and X[0] = 0 were DISAGREES on the engine row, though the finite-difference
    row said 'agrees at kinks' and each entry equals numpy's left or right derivative to 1e-8."""
    failed = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        p = {"W1": rng.normal(size=(4, 3)) / np.sqrt(3), "b1": np.zeros(4), "W2": rng.normal(size=(1, 4)) / 2, "b2": rng.normal(size=1)}
        X = rng.normal(size=(6, 3))
        X[0] = 0.0
        y = rng.normal(size=(6, 1))
        g = _torch_like_gradient(p, X, y)
        h = 1e-8
        for j in range(4):  # independent: each b1 entry is a one-sided derivative
            e = np.eye(4)[j] * h
            right = (_relu_mlp({**p, "b1": p["b1"] + e}, X, y) - _relu_mlp(p, X, y)) / h
            left = (_relu_mlp(p, X, y) - _relu_mlp({**p, "b1": p["b1"] - e}, X, y)) / h
            assert min(left, right) - 1e-6 <= g["b1"][j] <= max(left, right) + 1e-6
        report = pz.crosscheck(_relu_mlp, (p, X, y), (g, None, None), raise_on_failure=False)
        if not report.passed:
            failed.append(seed)
    assert not failed, failed


@pytest.mark.parametrize("library", ["torch", "jax.numpy"])
def test_a_foreign_integer_array_alone_is_refused_as_numpys_is(library: str) -> None:
    """README: 'where every argument is such an array there is nothing to differentiate: a
    TypeError names it', and grad refuses integers in argnums, as JAX does.  np.arange(4) is
    refused; torch.arange(4) and jnp.arange(4) (integer by default) give (None,)."""
    xp = pytest.importorskip(library)
    f = lambda x: np.sum(np.sin(x) ** 2)  # noqa: E731
    with pytest.raises(TypeError):
        pz.gradient(f, np.arange(4))
    for call in (lambda x: pz.gradient(f, x), lambda x: pz.grad(f)(x), lambda x: pz.withgradient(f, x)):
        with pytest.raises(TypeError):
            call(xp.arange(4))

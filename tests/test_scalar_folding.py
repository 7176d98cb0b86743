"""Unrolled scalar code folds the zeros and ones of unit directions (pyzygote.transforms.scalarize.folded):
derived programs give the same numbers as the numpy-compiled program."""

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.ode.rhs import RHS
from pyzygote.transforms.evaluate import compile_program
from pyzygote.transforms.scalarize import compile_scalar, folded, sum_of


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("(s1 * 0.0)", "0.0"), ("(0.0 * s1)", "0.0"), ("(1.0 * s1)", "s1"), ("(s1 * 1.0)", "s1"),
        ("(s1 / 1.0)", "s1"), ("(s1 + 0.0)", "s1"), ("(0.0 + s1)", "s1"), ("(s1 - 0.0)", "s1"),
        ("(0.0 - s1)", "(0.0 - s1)"), ("(s1 / 0.0)", "(s1 / 0.0)"), ("(-0.0 * s1)", "(-0.0 * s1)"), ("(s1 * s2)", "(s1 * s2)"),
    ],
)  # fmt: skip
def test_folded(expr, expected):
    assert folded(expr) == expected


def test_sum_of_drops_zero_products_in_derived_programs_only():
    from pyzygote.transforms.scalarize import _FOLDING

    token = _FOLDING.set(True)
    try:
        assert sum_of(["a * 0.0", "1.0 * b", "c * d"]) == "(b + c * d)"
        assert sum_of(["0.0 * a", "b * 1.0"]) == "b"
        assert sum_of(["0.0 * a"]) == "0.0"
        assert sum_of(["a * b"]) == "(a * b)"
    finally:
        _FOLDING.reset(token)
    assert sum_of(["a * 0.0", "1.0 * b"]) == "(a * 0.0 + 1.0 * b)"


def test_the_right_hand_side_itself_keeps_numpys_zero_times_inf() -> None:
    """Review: a zero the user wrote was folded like a direction's, so 0 * log(0) gave 0 where numpy
    gives NaN (and where a right-hand side too large to unroll failed), silently."""
    def f(u, p, t):
        return np.array([0.0 * np.log(u[0]) - u[0], -p[0] * u[1]])

    rhs = RHS.trace(f, 2, 1)
    with np.errstate(all="ignore"):
        got = rhs(np.array([0.0, 1.0]), np.array([2.0]), 0.0)
    assert np.isnan(got[0]) and got[1] == -2.0
    with pytest.raises(pz.SolverError, match="NaN or inf"), np.errstate(all="ignore"):
        pz.odesolve(f, np.array([0.0, 1.0]), np.linspace(0.0, 1.0, 3), np.array([2.0]))


def _seir(u, p, t):
    S, E, I = u[0:3], u[3:6], u[6:9]
    C = np.array([[2.0, 0.5, 0.1], [0.5, 1.5, 0.3], [0.1, 0.3, 1.0]])
    force = p[0] * (1.0 + p[4] * np.cos(t)) * p[1:4] * (C @ I)
    return np.concatenate([-force * S, force * S - p[5] * E, p[5] * E - p[6] * I])


@pytest.mark.parametrize("which", ["jacobian", "sensitivities", "adjoint"])
def test_folded_derived_programs_match_numpy(which):
    rhs = RHS.trace(_seir, 9, 7)
    rng = np.random.default_rng(3)
    u, p, t = rng.uniform(0.1, 1.0, 9), rng.uniform(0.1, 1.0, 7), 0.7
    if which == "jacobian":
        rhs.jacobian_u(u, p, t)
        prog, args = rhs._derived[("program", "jac")], (u, p, t)
    elif which == "sensitivities":
        cols = tuple(range(9, 16))
        rhs.sensitivity_rhs(cols)
        prog = rhs._derived[("program", ("sens", cols))]
        args = (np.concatenate([u, rng.standard_normal(9 * 7)]), p, t)
    else:
        rhs.adjoint_rhs()
        prog, args = rhs._derived[("program", "adj")], (u, rng.standard_normal(9), p, t)
    fast = compile_scalar(prog, fold=True)
    assert fast.__doc__.startswith("def scalar_program")
    assert "0.0 *" not in fast.__doc__ and "* 0.0" not in fast.__doc__ and "1.0 *" not in fast.__doc__
    for got, want in zip(fast(*args), compile_program(prog)(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_gradient_through_folded_sensitivities_matches_finite_differences():
    u0 = np.array([0.9, 0.8, 0.7, 0.05, 0.0, 0.0, 0.05, 0.02, 0.0])
    t = np.linspace(0.0, 5.0, 6)

    def loss(p):
        return np.sum(pz.odesolve(_seir, u0, t, p, alg="Tsit5", sensealg="forward", reltol=1e-10, abstol=1e-10) ** 2)

    p = np.array([0.8, 1.0, 0.9, 1.1, 0.2, 0.5, 0.3])
    (g,) = pz.gradient(loss, p, engine="numpy")
    eps = 1e-6
    fd = [(loss(p + eps * e) - loss(p - eps * e)) / (2 * eps) for e in np.eye(p.size)]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("n", [9, 40])  # unrolled, and compiled to numpy
def test_joined_adjoint_rhs_is_the_concatenated_adjoint(n):
    def f(u, p, t):
        return -p[0] * u + np.tanh(p[1] * np.roll(u, 1) + p[2] * np.cos(t))

    rhs = RHS.trace(f, n, 3)
    rng = np.random.default_rng(5)
    u, lam, p = rng.standard_normal(n), rng.standard_normal(n), rng.uniform(0.5, 1.5, 3)
    (joined,) = rhs.adjoint_rhs_joined()(u, lam, p, 0.3)
    assert np.array_equal(joined, np.concatenate(rhs.adjoint_rhs()(u, lam, p, 0.3)))


def test_unrolled_code_takes_names_again_once_their_values_are_dead():
    import re

    rhs = RHS.trace(_seir, 9, 7)
    cols = tuple(range(9, 16))
    rhs.sensitivity_rhs(cols)
    prog = rhs._derived[("program", ("sens", cols))]
    fast = compile_scalar(prog, fold=True)
    assigned = re.findall(r"^\s+(r\d+) = ", fast.__doc__, flags=re.M)
    assert len(set(assigned)) < len(assigned) / 2
    assert not re.search(r"\bs\d+\b", fast.__doc__)
    rng = np.random.default_rng(8)
    args = (rng.standard_normal(9 * 8), rng.uniform(0.1, 1.0, 7), 0.4)
    np.testing.assert_allclose(fast(*args)[0], compile_program(prog)(*args)[0], rtol=1e-13, atol=1e-15)


def test_unrolled_code_does_not_unpack_an_input_it_never_reads():
    """Review of user testing: a neural right-hand side's hoisted step program takes p, whose uses
    were all computed once per p, and unpacked its 357 entries into names at every call."""
    from pyzygote.transforms.hoist import compile_hoisted, split_invariant

    prog = pz.make_program(lambda u, p: np.tanh(u * 2.0) + 1.0, np.ones(3), np.ones(300))
    fast = compile_scalar(prog)
    assert "= x1.ravel()" not in fast.__doc__ and "= x0.ravel()" in fast.__doc__
    np.testing.assert_allclose(fast(np.arange(3.0), None)[0], np.tanh(np.arange(3.0) * 2.0) + 1.0, rtol=1e-15)
    # a step reading only what was hoisted from p (W @ p's tanh), not p itself
    W = np.random.default_rng(0).standard_normal((3, 100))
    hoisted = pz.make_program(lambda u, p: u * (W @ np.tanh(p)), np.ones(3), np.ones(100))
    run = compile_hoisted(hoisted, 1, compile_scalar)
    p = np.linspace(-1.0, 1.0, 100)
    np.testing.assert_allclose(run(np.arange(3.0), p)[0], np.arange(3.0) * (W @ np.tanh(p)), rtol=1e-13)
    _, step = split_invariant(hoisted, 1)
    assert "= x1.ravel()" not in compile_scalar(step).__doc__ and "= x2.ravel()" in compile_scalar(step).__doc__


def _zero_times_overflow(u, p, t):
    return -p[0] * u + np.exp(800.0 * u) * 0.0 - 0.0 * np.roll(u, 1)


@pytest.mark.parametrize("n", [1, 12, 40])  # one column at a time, batched, and compiled to numpy
def test_the_value_a_derived_system_carries_is_the_right_hand_sides_bit_for_bit(n):
    """User report: with sensealg='forward', ``np.exp(800 * u) * 0.0`` was 0 in the sensitivity
    system's copy of the right-hand side (folded as a unit direction's zero), so the gradient
    solved an ODE whose value solve failed on NaN (numpy's 0.0 * inf).  The value entries keep
    numpy's arithmetic, NaN and signed zeros included; only derivative terms are folded."""
    rhs = RHS.trace(_zero_times_overflow, n, 2)
    p = np.array([1.3, 0.2])
    for u in (np.linspace(-0.5, 0.5, n), np.linspace(0.5, 1.5, n), np.full(n, -0.0)):
        with np.errstate(all="ignore"):
            want = rhs(u, p, 0.0)
            for cols in (None, (n, n + 1)):
                cols = rhs.columns(cols)
                z = np.concatenate([u, rhs.initial_sensitivities(cols)])
                got = rhs.sensitivity_rhs(cols)(z, p, 0.0)[0][:n]
                assert np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want)), (u, cols)
            got = rhs.backsolve_rhs()(np.concatenate([u, np.ones(n), np.zeros(2)]), p, 0.0)[0][:n]
            assert np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want)), u
    # the derivative terms are still folded: no product with the direction's zeros is left
    cols = rhs.columns((n, n + 1))
    rhs.sensitivity_rhs(cols)
    prog = rhs._derived[("program", ("sens", cols))]
    code = compile_scalar(prog, fold=True, exact=n).__doc__ or ""
    if code.startswith("def scalar_program"):
        assert code.count("* 0.0") + code.count("0.0 *") < compile_scalar(prog).__doc__.count("* 0.0") + compile_scalar(prog).__doc__.count("0.0 *")


def test_a_gradient_fails_where_the_value_solve_fails_on_zero_times_inf():
    t, u0, p = np.array([0.0, 1.0]), np.array([1.0]), np.array([1.0])
    loss = lambda q, s: np.sum(pz.odesolve(_zero_times_overflow, u0, t, q, alg="Tsit5", sensealg=s))  # noqa: E731
    with np.errstate(all="ignore"):
        with pytest.raises(pz.SolverError, match="NaN or inf"):
            loss(p, "forward")
        for s in ("forward", "adjoint"):
            with pytest.raises(pz.SolverError, match="NaN or inf"):
                pz.gradient(lambda q: loss(q, s), p)

"""Loop-invariant code motion (pyzygote.transforms.hoist): what p alone decides, once per p."""

from __future__ import annotations

from typing import Any

import numpy as np

import pyzygote as pz
from pyzygote.transforms.hoist import HOIST_FROM_ELEMENTS, compile_hoisted, split_invariant


def chain(u: Any, p: Any, t: Any) -> Any:
    """A mass-spring chain whose stiffness matrix is assembled from p at every call."""
    n = u.shape[0] // 2
    k = p[:n]
    K = np.diag(k + np.concatenate([k[1:], np.zeros(1)])) - np.diag(k[1:], 1) - np.diag(k[1:], -1)
    C = p[n] * np.eye(n) + p[n + 1] * K
    x, v = u[:n], u[n:]
    return np.concatenate([v, -K @ x - C @ v + np.sin(t) * (np.arange(n) == n - 1)])


def test_the_part_that_reads_p_alone_runs_once_per_p_and_agrees_with_the_whole(monkeypatch: Any) -> None:
    from pyzygote.transforms import evaluate, hoist

    n = 6
    rng = np.random.default_rng(0)
    u, p = rng.normal(size=2 * n), np.concatenate([rng.uniform(1, 2, n), [0.1, 0.01]])
    prog = pz.make_program(chain, u, p, 0.3)
    pre, step = split_invariant(prog, 1)
    assert "scatter_add" in {e.prim.name for e in pre.eqns}  # K's assembly moved out
    assert len(pre.eqns) + len(step.eqns) == len(prog.eqns)
    runs = []
    original = evaluate.compile_program

    def counting(program: Any) -> Any:  # counts the runs of the part that reads p alone
        run = original(program)
        return (lambda *a: (runs.append(1), run(*a))[1]) if program is pre else run

    monkeypatch.setattr(hoist, "split_invariant", lambda prog, i: (pre, step))
    monkeypatch.setattr(evaluate, "compile_program", counting)
    run = compile_hoisted(prog, 1)
    for t in (0.0, 0.7, 1.9):
        np.testing.assert_array_equal(run(u, p, t)[0], prog(u, p, t)[0])
    assert len(runs) == 1  # three steps, one p
    p[0] = 5.0  # changed in place: the cache compares values, not identity
    np.testing.assert_array_equal(run(u, p, 0.7)[0], prog(u, p, 0.7)[0])
    assert len(runs) == 2


def test_too_little_work_in_p_alone_is_not_hoisted() -> None:
    """Gathering p[0] and p[1] costs less than comparing p at every call (the Lotka-Volterra
    benchmark's steps take a few microseconds)."""
    prog = pz.make_program(lambda u, p, t: np.array([p[0] * u[0] - p[1] * u[0] * u[1], -u[1]]), np.ones(2), np.ones(2), 0.0)
    assert split_invariant(prog, 1) is None
    big = pz.make_program(lambda u, p, t: np.outer(p, p) @ u, np.ones(HOIST_FROM_ELEMENTS), np.ones(HOIST_FROM_ELEMENTS), 0.0)
    assert split_invariant(big, 1) is not None


def test_solutions_and_gradients_of_a_hoisted_right_hand_side_are_unchanged() -> None:
    """Against the same model with K built from u's dtype trick that keeps it per step (no
    part reads p alone): identical solutions and forward, adjoint and Hessian derivatives."""
    n = 5
    rng = np.random.default_rng(1)
    p0 = np.concatenate([rng.uniform(1, 2, n), [0.2, 0.05]])
    u0 = np.concatenate([rng.normal(size=n), np.zeros(n)])
    t = np.linspace(0.0, 3.0, 7)

    def per_step(u: Any, p: Any, t: Any) -> Any:
        return chain(u, p + 0.0 * u[0], t)  # reads u: nothing is hoisted

    def loss(rhs: Any, sensealg: str) -> Any:
        return lambda p: np.sum(pz.odesolve(rhs, u0, t, p, alg="Tsit5", sensealg=sensealg, reltol=1e-10, abstol=1e-10) ** 2)

    for sensealg in ("forward", "adjoint"):
        v1, (g1,) = pz.withgradient(loss(chain, sensealg), p0)
        v2, (g2,) = pz.withgradient(loss(per_step, sensealg), p0)
        np.testing.assert_allclose(v1, v2, rtol=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-9)
    np.testing.assert_allclose(pz.hessian(loss(chain, "forward"), p0), pz.hessian(loss(per_step, "forward"), p0), rtol=1e-7, atol=1e-10)

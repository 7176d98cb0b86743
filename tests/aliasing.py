"""The promise of pyzygote.engines.results, checked on one engine.

Shared by tests/test_api.py (NumPy engine) and tests/test_julia_engine.py
(Julia engine): every returned array is the caller's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import pyzygote as pz
from pyzygote.engines import get_engine


def _assert_disjoint(arrays: list[Any], others: list[Any], what: str) -> None:
    arrays = [a for a in arrays if isinstance(a, np.ndarray)]
    for k, a in enumerate(arrays):
        for b in arrays[k + 1 :] + [o for o in others if isinstance(o, np.ndarray)]:
            assert not np.shares_memory(a, b), what


def assert_results_are_own(engine: str) -> None:
    eng = get_engine(engine)
    c = np.arange(6.0).reshape(2, 3)
    x = np.ones((2, 3))
    prog = pz.make_program(lambda a: (a * 2.0, c, c.reshape(3, 2), a, a), x)
    first = list(eng.evaluate(prog, [x]))
    _assert_disjoint(first, [x, c, *prog.consts], "evaluate")
    for out in first:
        out[...] = -1.0
    again = eng.evaluate(prog, [x])
    np.testing.assert_array_equal(again[1], c)
    np.testing.assert_array_equal(again[2], c.reshape(3, 2))
    np.testing.assert_array_equal(again[3], x)
    np.testing.assert_array_equal(x, np.ones((2, 3)))

    y = x.copy()
    gx, gy = pz.gradient(lambda a, b: np.sum(a + b), x, y, engine=engine)
    _assert_disjoint([gx, gy], [x, y], "gradient")
    gx[0, 0] = 7.0
    np.testing.assert_array_equal(gy, np.ones((2, 3)))

    (_, (ax, kc)), (g,) = pz.withgradient(lambda a: (np.sum(a * c), (a, c)), x, engine=engine)
    _assert_disjoint([g, ax, kc], [x, c], "withgradient with auxiliary outputs")
    np.testing.assert_array_equal(g, c)

    t = np.full((2, 3), 3.0)
    ys, ts = pz.jvp(lambda a: (a, a), (x,), (t,), engine=engine)
    _assert_disjoint([*ys, *ts], [x, t], "jvp")

    (e, k), back = pz.pullback(lambda a: (np.exp(a), c), x, engine=engine)
    _assert_disjoint([e, k], [x, c], "pullback values")
    e[...] = 0.0  # the backward pass must not read the returned value
    ct = (np.ones((2, 3)), np.ones((2, 3)))
    (g,) = back(ct)
    np.testing.assert_allclose(g, np.exp(x), rtol=1e-12)
    (g2,) = back(ct)
    _assert_disjoint([g, g2], [x, *ct], "pullback gradients")


def assert_pullbacks_keep_their_point(engine: str) -> None:
    """A pullback's gradient is the one at the point it was taken, even after the caller writes
    into an argument (a buffer reused between optimizer steps)."""
    x, s = np.array([1.0, 2.0, 3.0]), np.array(2.0)
    x0, s0 = x.copy(), s.copy()

    def f(a, b):  # residuals that are the arguments themselves, a slice of one (a view), a select
        return np.sum(a * a) * b + np.sum(a[:2] ** 3) + np.where(b > 0, b, 0.0) ** 2

    y, back = pz.pullback(f, x, s, engine=engine)
    x[...] = -5.0
    s[...] = 7.0
    ga, gb = back(1.0)
    np.testing.assert_allclose(y, f(x0, s0), rtol=1e-14)
    np.testing.assert_allclose(ga, 2 * x0 * s0 + np.r_[3 * x0[:2] ** 2, 0.0], rtol=1e-14)
    np.testing.assert_allclose(gb, np.sum(x0 * x0) + 2 * s0, rtol=1e-14)

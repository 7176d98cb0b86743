"""Gradient programs of hand-written loops: the passes that shorten them (common subexpressions,
folded negations) and the cheaper calls their small equations run as, each checked to change
no value (bit for bit where the arithmetic is the same, to rounding where BLAS computes)."""

from __future__ import annotations

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.primitives.indexing import scatter_add, scatter_add_p
from pyzygote.primitives.linalg import _c_einsum, dot_order
from pyzygote.transforms.evaluate import _compiled, _Interpreted, eval_program


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    "spec, order",
    [("ij,j->i", 1), ("j,jk->k", 1), ("j,j->", 1), ("ij,jk->ik", 1), ("jk,ij->ik", -1), ("k,jk->j", -1),
     ("ij,i->j", -1), ("ij,jk->ki", None), ("ii,i->i", None), ("i,j->ij", None), ("bij,bjk->bik", None), ("ij,ij->", None)],
)  # fmt: skip
def test_dot_shaped_einsums_are_recognised(spec, order):
    assert dot_order(spec) == order


@pytest.mark.parametrize("spec", ["ij,j->i", "j,jk->k", "j,j->", "ij,jk->ik", "jk,ij->ik", "k,jk->j", "ij,i->j", "ij,jk->ki"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_products_in_programs_equal_einsum(spec, dtype):
    a, b, out = spec.replace("->", ",").split(",")
    sizes = {"i": 3, "j": 4, "k": 2}
    rng = np.random.default_rng(len(spec))
    x = rng.standard_normal([sizes[c] for c in a]).astype(dtype)
    y = rng.standard_normal([sizes[c] for c in b]).astype(dtype)
    prog = pz.make_program(lambda x, y: np.einsum(spec, x, y), x, y)
    expected = _c_einsum(spec, x, y)
    for run in (_compiled(prog), _Interpreted(prog)):
        (got,) = run(x, y)
        assert type(got) is type(expected) and np.shape(got) == np.shape(expected) and np.asarray(got).dtype == dtype
        # rounding of a sum of 4 products, relative to the sum of their magnitudes
        bound = 4 * np.finfo(dtype).eps * _c_einsum(spec, np.abs(x), np.abs(y))
        assert np.all(np.abs(got - expected) <= bound)


def test_small_slices_and_their_transposes_run_as_before():
    x = np.array([1.0, -0.0, np.inf, 2.5, -3.0])
    prog = pz.make_program(lambda x: (x[1:] - x[:-1], x[::2], x[3]), x)
    for run in (_compiled(prog), _Interpreted(prog)):
        assert all(_same_bits(a, b) for a, b in zip(run(x), eval_program(prog, x)))
    positions = np.array([[0, 1, 2], [1, 2, 2]])
    for v in (np.array([[1e16, 1.0, -1e16], [-0.0, 3.0, np.inf]]), np.array([[-0.0, -0.0, 1.0], [-0.0, 2.0, -1.0]]), np.ones((2, 3), np.float32)):
        eqn_prog = pz.make_program(lambda v: scatter_add(v, positions, (4,)), v)
        assert eqn_prog.eqns[0].prim is scatter_add_p and not eqn_prog.eqns[0].params["unique"]
        want = np.zeros(4, v.dtype)
        np.add.at(want, positions.ravel(), v.ravel())
        for run in (_compiled(eqn_prog), _Interpreted(eqn_prog)):
            assert _same_bits(run(v)[0], want)

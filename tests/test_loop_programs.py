"""Gradient programs of hand-written loops: the passes that shorten them (common subexpressions,
folded negations) and the cheaper calls their small equations run as, each checked to change
no value (bit for bit where the arithmetic is the same, to rounding where BLAS computes)."""

from __future__ import annotations

import numpy as np
import pytest

import pyzygote as pz
import pyzygote.engines.numpy_engine as numpy_engine
from pyzygote.engines.numpy_engine import grad_program
from pyzygote.ir import Literal, Program, Var
from pyzygote.primitives.indexing import scatter_add, scatter_add_p
from pyzygote.primitives.linalg import _c_einsum, dot_order
from pyzygote.transforms.evaluate import _compiled, _Interpreted, _specialize, eval_program
from pyzygote.transforms.simplify import fold_negations


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _uncached(prog: Program) -> Program:
    """The same program without the derivative programs cached on it."""
    return Program(prog.inputs, prog.constvars, prog.consts, prog.eqns, prog.outputs)


def _random_loop(seed: int, n: int = 5, steps: int = 30):
    """A random straight-line function of two vectors, built of sums, differences, negations,
    scalings by constants, reversals and slices (gathers) and products."""
    rng = np.random.default_rng(seed)
    ops = [rng.integers(0, 8) for _ in range(steps)]
    picks = [tuple(rng.integers(0, 1000, size=2)) for _ in range(steps)]
    consts = rng.choice([0.5, -2.0, 0.0, 3.0], size=steps)

    def f(x, y):
        vals = [x, y]
        for op, (i, j), c in zip(ops, picks, consts):
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            vals.append(
                [
                    lambda: a + b,
                    lambda: a - b,
                    lambda: -a,
                    lambda: c * a,
                    lambda: a[::-1],
                    lambda: np.concatenate([a[1:], -b[:1]]),
                    lambda: a * np.tanh(b),
                    lambda: -(c * -a) + -b,
                ][op]()
            )
        return np.sum(vals[-1] ** 2) + np.sum(vals[-3] * vals[-2])

    return f, rng.standard_normal(n), rng.standard_normal(n)


@pytest.mark.parametrize("seed", range(12))
def test_folding_negations_keeps_every_bit_of_values_and_gradients(seed, monkeypatch):
    f, x, y = _random_loop(seed)
    prog = pz.make_program(f, x, y)
    folded = fold_negations(prog)
    assert len(folded.eqns) <= len(prog.eqns)
    for a, b in zip(eval_program(prog, x, y), eval_program(folded, x, y)):
        assert _same_bits(a, b)
    simplified = [np.asarray(v) for v in _compiled(grad_program(prog))(x, y)]
    # The same gradient program without the passes: every output bit for bit.
    monkeypatch.setattr(numpy_engine, "fold_negations", lambda p: p)
    monkeypatch.setattr(numpy_engine, "cse", lambda p: p)
    plain = [np.asarray(v) for v in _compiled(grad_program(_uncached(prog)))(x, y)]
    assert all(_same_bits(a, b) for a, b in zip(simplified, plain))
    # and right: against central differences of f
    h, (gx, gy) = 1e-6, simplified[1:3]
    for g, k in ((gx, 0), (gy, 1)):
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = h
            args_plus, args_minus = [x, y], [x, y]
            args_plus[k], args_minus[k] = args_plus[k] + e, args_minus[k] - e
            fd = (f(*args_plus) - f(*args_minus)) / (2 * h)
            assert abs(g[i] - fd) <= 1e-5 * max(1.0, abs(fd))


def test_folding_removes_the_negations_it_should():
    def names(fn, *args):
        return [e.prim.name for e in fold_negations(pz.make_program(fn, *args)).eqns]

    x, y = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0])
    assert names(lambda x, y: x + -y, x, y) == ["sub"]
    assert names(lambda x, y: -y + x, x, y) == ["sub"]
    assert names(lambda x, y: x - -y, x, y) == ["add"]
    assert names(lambda x, y: 2.0 * -x, x, y) == ["mul"]
    assert names(lambda x, y: -(-x) * y, x, y) == ["mul"]
    assert names(lambda x, y: x[1:] + (-y)[:2], x, y) == ["gather", "gather", "sub"]
    # a negation read elsewhere too stays, and no equation is added for the gather
    assert names(lambda x, y: x[1:] + (-y)[:2] + np.sum(-y), x, y).count("neg") == 1
    # and the values stay
    prog = pz.make_program(lambda x, y: (x + -y, -(-x), 0.0 * -x), x, y)
    a, b, c = eval_program(fold_negations(prog), x, y)
    assert _same_bits(a, x - y) and _same_bits(b, x) and _same_bits(c, 0.0 * -x)  # -0.0 where x > 0


def test_a_loop_gradient_program_loses_its_repeats_and_negations(monkeypatch):
    def chain(k):
        x, v = np.arange(4.0), np.zeros(4)
        for _ in range(20):
            a = np.concatenate([k * np.diff(x), np.zeros(1)]) - 0.1 * x
            v = v + 0.5 * 0.01 * a
            x = x + 0.01 * v
            v = v + 0.5 * 0.01 * a
        return np.sum(x**2)

    k = np.array([1.0, 1.5, 2.0])
    prog = pz.make_program(chain, k)
    gp = grad_program(prog)
    # what is left negated is joined to the values it is subtracted from (np.diff's transpose)
    negs = {e.outputs[0].uid for e in gp.eqns if e.prim.name == "neg"}
    readers = [e.prim.name for e in gp.eqns for a in e.inputs if isinstance(a, Var) and a.uid in negs]
    assert set(readers) == {"concatenate"}
    # 0.5 * 0.01 * a once per step in the forward pass, and its cotangent's scaling once
    scalings = [e for e in gp.eqns if e.prim.name == "mul" and any(isinstance(a, Literal) and a.value == 0.005 for a in e.inputs)]
    assert len(scalings) == 2 * 20
    monkeypatch.setattr(numpy_engine, "fold_negations", lambda p: p)
    monkeypatch.setattr(numpy_engine, "cse", lambda p: p)
    plain = grad_program(_uncached(prog))
    assert len(gp.eqns) <= len(plain.eqns) - 2 * 20  # 566 -> 509 when written
    assert all(_same_bits(a, b) for a, b in zip(gp(k), plain(k)))
    g = pz.gradient(chain, k)[0]
    fd = [(chain(k + e) - chain(k - e)) / 2e-6 for e in np.eye(3) * 1e-6]
    np.testing.assert_allclose(g, fd, rtol=1e-6)


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


def test_gradient_programs_of_scalar_loops_are_left_as_derived(monkeypatch):
    """Operators on single numbers cost less than finding their repeats would save."""

    def scalar_loop(p):
        s = p[0]
        for _ in range(30):
            s = s + 0.5 * 0.01 * s - (0.5 * 0.01 * s) ** 2
        return s

    p = np.array([0.3])
    prog = pz.make_program(scalar_loop, p)
    gp = grad_program(prog)
    monkeypatch.setattr(numpy_engine, "fold_negations", lambda p: p)
    monkeypatch.setattr(numpy_engine, "cse", lambda p: p)
    assert len(grad_program(_uncached(prog)).eqns) == len(gp.eqns)


def test_a_scatter_of_no_values_keeps_its_dtype():
    """np.bincount of no positions counts (int64 zeros) whatever its weights: a sum of nothing at
    repeated positions (the running scatter of an assembly with nothing added) must stay float."""
    empty = np.zeros(0, np.int64)
    empty.setflags(write=False)
    v = np.zeros(0)
    prog = pz.make_program(lambda v: scatter_add_p.bind(v, positions=empty, shape=(3,), unique=False), v)
    for run in (_compiled(prog), _Interpreted(prog)):
        assert _same_bits(run(v)[0], np.zeros(3))



def test_interpreted_programs_give_dead_values_slots_to_later_results():
    """A long program run equation by equation holds a few slots, not one per result and per
    literal (copying those at each call was most of a scalar loop's interpreting), and frees each
    array at its last use; an unused result of an equation with several (eigh's vectors) too."""
    import tracemalloc

    def f(x, a):
        for _ in range(300):
            x = np.sin(x) * 0.5 + 0.25
        w, v = np.linalg.eigh(a)  # the eigenvalues alone are read
        return x, np.sum(x) * w[0]

    x, a = np.linspace(0.0, 1.0, 100_000), np.array([[2.0, 1.0], [1.0, 3.0]])
    prog = pz.make_program(f, x, a)
    assert len(prog.eqns) > 900
    run = _Interpreted(prog)
    assert len(run.template) < 20, len(run.template)  # 2 inputs, 2 literals, a few results
    tracemalloc.start()
    try:
        got = run(x, a)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * x.nbytes, peak  # not 900 arrays of 0.8 MB
    assert all(_same_bits(g, e) for g, e in zip(got, eval_program(prog, x, a)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numbers_packed_into_and_out_of_one_entry_arrays_stay_numpy_scalars(dtype):
    """A loop's np.stack of its daily numbers, and its gradient's unpacking of their cotangents:
    the reshapes give numpy scalars (which the scalar steps after them compute on as operators)
    and fresh one-entry arrays, with the values and dtypes numpy's reshape gives."""

    def f(x):
        out = []
        s = x[0]
        for _ in range(4):
            s = s * x[1] - 0.5
            out.append(s)
        y = np.stack(out)
        return np.sum(y * y), y[2].reshape(()) * 2.0, np.reshape(x[:1], ()), (y[:1].reshape(()) > 0.0).reshape(1)

    x = np.array([0.7, -1.3], dtype)
    prog = pz.make_program(f, x)
    reshapes = [e for e in prog.eqns if e.prim.name == "reshape"]
    assert len(reshapes) >= 6
    for run in (_compiled(prog), _Interpreted(prog)):
        got, want = run(x), eval_program(prog, x)
        assert all(_same_bits(g, w) and np.asarray(g).dtype == np.asarray(w).dtype for g, w in zip(got, want))
    for e in reshapes:  # each on its own, against numpy's reshape
        fn = _specialize(e)
        value = np.full(e.inputs[0].aval.shape, 0.25, e.inputs[0].aval.dtype)
        if e.outputs[0].aval.shape == ():
            assert type(fn(value)) is e.outputs[0].aval.dtype.type
        assert _same_bits(fn(value), value.reshape(e.outputs[0].aval.shape))

"""Every registered primitive, checked through a numpy-level function that uses it.

For each case of ``tests/cases.py``: values and dtypes equal numpy's (float64
and float32), forward and reverse derivatives equal central differences, and
the two modes agree exactly (dot-product test ``<ct, J t> == <J^T ct, t>``).
A primitive registered without a case fails ``test_every_primitive_has_a_case``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.primitive import PRIMITIVES
from pyzygote.testing import check_grads, numerical_gradient, numerical_jvp
from pyzygote.transforms.jvp import jvp_eval, jvp_program
from pyzygote.transforms.vjp import vjp_programs
from tests.cases import ALL_CASES, CASES, Case, rng_for

SMOOTH = [c for c in ALL_CASES if c.kind == "smooth"]
ZERO = [c for c in ALL_CASES if c.kind == "zero"]
BOOL = [c for c in ALL_CASES if c.kind == "bool"]


def ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def args_of(case: Case, dtype: Any = np.float64) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, dtype=dtype) for a in case.make(rng_for(case)))


def random_like(rng: np.random.Generator, arrays: Any) -> tuple[np.ndarray, ...]:
    return tuple(rng.standard_normal(np.shape(a)).astype(np.asarray(a).dtype) for a in arrays)


def f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def dot(xs: Any, ys: Any) -> float:
    return float(sum(np.vdot(f64(x), f64(y)) for x, y in zip(xs, ys)))


def prim_names(prog: pz.Program) -> set[str]:
    return {e.prim.name for e in prog.eqns}


# --- the table covers the registry ------------------------------------------------
# julia_call runs a user's Julia function: only the Julia engine can run it (tests/test_julia_engine.py).
JULIA_ONLY = {"julia_call"}


@pytest.mark.parametrize("name", sorted(set(PRIMITIVES) - JULIA_ONLY))
def test_every_primitive_has_a_case(name: str) -> None:
    assert CASES.get(name), f"primitive {name!r} is registered but tests/cases.py has no case for it"
    prim = PRIMITIVES[name]
    assert prim.abstract_eval is not None and prim.impl is not None
    if any(c.kind != "bool" for c in CASES[name]):
        assert prim.jvp is not None, f"{name} has differentiable cases but no JVP rule"


def test_cases_name_registered_primitives() -> None:
    assert set(CASES) <= set(PRIMITIVES), set(CASES) - set(PRIMITIVES)


@pytest.mark.parametrize("case", ALL_CASES, ids=ids(ALL_CASES))
def test_case_exercises_its_primitive(case: Case) -> None:
    args = args_of(case)
    prog = pz.make_program(case.fn, *args)
    seen = prim_names(prog)
    if case.kind != "bool":
        seen |= prim_names(jvp_program(prog))
        fwd, bwd = vjp_programs(prog)
        seen |= prim_names(fwd) | prim_names(bwd)
    assert case.prim in seen, f"{case.id} traced to {sorted(seen)}"


# --- values and dtypes equal numpy's ---------------------------------------------------
@pytest.mark.parametrize("case", ALL_CASES, ids=ids(ALL_CASES))
def test_values_match_numpy(case: Case) -> None:
    args = args_of(case)
    expected = np.asarray(case.reference(*args))
    (got,) = pz.make_program(case.fn, *args)(*args)
    got = np.asarray(got)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if expected.dtype == np.bool_:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=case.value_rtol, atol=case.value_rtol * 1e-2)


@pytest.mark.filterwarnings("ignore::pyzygote.ZeroGradientWarning")  # piecewise-constant cases: see below
@pytest.mark.parametrize("case", ALL_CASES, ids=ids(ALL_CASES))
def test_float32_values_and_dtypes(case: Case) -> None:
    args = args_of(case, np.float32)
    with np.errstate(all="ignore"):
        expected = np.asarray(case.reference(*args))
    (got,) = pz.make_program(case.fn, *args)(*args)
    got = np.asarray(got)
    assert got.dtype == expected.dtype, f"numpy gives {expected.dtype}, pyzygote {got.dtype}"
    assert got.shape == expected.shape
    if expected.dtype == np.bool_:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=case.f32_rtol, atol=case.f32_rtol)
    if case.kind == "bool":
        return
    y, back = pz.pullback(case.fn, *args)
    grads = back(np.ones(np.shape(y), np.asarray(y).dtype))
    assert [np.asarray(g).dtype for g in grads] == [np.dtype(np.float32)] * len(args)
    _, t_out = pz.jvp(case.fn, args, random_like(np.random.default_rng(0), args))
    assert np.asarray(t_out).dtype == expected.dtype


# --- derivatives of differentiable primitives -----------------------------------------
@pytest.mark.filterwarnings("ignore::pyzygote.ZeroGradientWarning")  # pz.nlsolve's root does not depend on u0
@pytest.mark.parametrize("case", SMOOTH, ids=ids(SMOOTH))
def test_jvp_matches_central_differences(case: Case) -> None:
    args = args_of(case)
    rng = rng_for(case, "jvp")
    for _ in range(2):
        t = random_like(rng, args)
        y, t_out = pz.jvp(case.fn, args, t)
        (fd,) = numerical_jvp(case.reference, args, t, eps=case.eps)
        assert np.shape(t_out) == np.shape(y) == np.shape(fd)
        np.testing.assert_allclose(f64(t_out), fd, rtol=case.rtol, atol=case.rtol * max(1.0, np.max(np.abs(fd), initial=0)))


@pytest.mark.parametrize("case", SMOOTH, ids=ids(SMOOTH))
def test_vjp_matches_central_differences(case: Case) -> None:
    args = args_of(case)
    rng = rng_for(case, "vjp")
    y, back = pz.pullback(case.fn, *args)
    ct = rng.standard_normal(np.shape(y))
    grads = back(ct)
    expected = numerical_gradient(lambda *a: np.vdot(ct, f64(case.reference(*a))), *args, eps=case.eps)
    assert len(grads) == len(args)
    for g, e, a in zip(grads, expected, args):
        assert np.shape(g) == np.shape(a)
        np.testing.assert_allclose(f64(g), e, rtol=case.rtol, atol=case.rtol * max(1.0, np.max(np.abs(e), initial=0)))


@pytest.mark.parametrize("case", SMOOTH, ids=ids(SMOOTH))
def test_dot_product_jvp_vs_vjp(case: Case) -> None:
    args = args_of(case)
    rng = rng_for(case, "dot")
    t = random_like(rng, args)
    y, jt = pz.jvp(case.fn, args, t)
    ct = rng.standard_normal(np.shape(y))
    jtct = pz.pullback(case.fn, *args)[1](ct)
    lhs, rhs = dot([ct], [jt]), dot(jtct, t)
    scale = np.linalg.norm(ct) * np.linalg.norm(f64(jt)) + sum(np.linalg.norm(f64(g)) * np.linalg.norm(s) for g, s in zip(jtct, t))
    assert abs(lhs - rhs) <= case.dot_rtol * max(scale, 1e-300), (lhs, rhs)


@pytest.mark.parametrize("case", SMOOTH, ids=ids(SMOOTH))
def test_second_order(case: Case) -> None:
    """Hessians (forward over reverse through every rule) vs differences of the gradient."""
    args = args_of(case)
    w = rng_for(case, "w").standard_normal(np.shape(case.reference(*args)))
    loss = lambda *a: np.sum(w * case.fn(*a))  # noqa: E731
    # atol: where the Hessian is exactly 0 (a product of several zeros) differences leave O(eps^2)
    check_grads(loss, args, order=2, modes=(), rtol=1e-5, atol=1e-9, eps=1e-3 if case.eps == 1.0 else 1e-6, n_directions=2)


# --- piecewise constant and boolean primitives -------------------------------------------
@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.kind != "bool"], ids=ids([c for c in ALL_CASES if c.kind != "bool"]))
def test_a_dependence_found_cut_carries_no_tangent_in_forward_mode(case: Case) -> None:
    """pz.ZeroGradientWarning's structural check (pyzygote.zero_gradient) against the JVP
    transform itself: where it finds an output cut from an argument, the forward derivative
    along that argument is a symbolic zero, for every primitive's case (it never warns about a
    derivative that flows)."""
    from pyzygote.zero_gradient import cut_dependences

    args = args_of(case)
    prog = pz.make_program(case.fn, *args)
    rng = rng_for(case, "cut")
    for k, a in enumerate(args):
        if a.dtype.kind != "f":
            continue
        cut = {o for kk, o, _ in cut_dependences(prog, [j == k for j in range(len(args))])}
        tangents = [rng.standard_normal(np.shape(a)) if j == k else None for j in range(len(args))]
        _, touts = jvp_eval(prog, list(args), tangents)
        for o in cut:
            assert touts[o] is None, f"output {o} is found cut from argument {k}, but its tangent flows"
    if case.kind == "smooth":  # and a smooth primitive's case is cut nowhere (but pz.nlsolve's root from its start)
        found = cut_dependences(prog, [a.dtype.kind == "f" for a in args])
        assert [c for c in found if not (case.prim == "nlsolve" and c[0] == 0 and "starting guess" in c[2][0])] == []


@pytest.mark.filterwarnings("ignore::pyzygote.ZeroGradientWarning")  # found below, without the warn-once cache
@pytest.mark.parametrize("case", ZERO, ids=ids(ZERO))
def test_piecewise_constant_has_zero_derivative(case: Case) -> None:
    from pyzygote.zero_gradient import cut_dependences

    args = args_of(case)
    rng = rng_for(case, "zero")
    # every output depends on every argument through this primitive only: the structural check
    # behind pz.ZeroGradientWarning finds each dependence cut
    prog = pz.make_program(case.fn, *args)
    cut = cut_dependences(prog, [True] * len(args))
    assert {(k, o) for k, o, _ in cut} == {(k, o) for k in range(len(args)) for o in range(len(prog.outputs))}
    t = random_like(rng, args)
    y, t_out = pz.jvp(case.fn, args, t)
    np.testing.assert_array_equal(t_out, np.zeros(np.shape(y)))
    grads = pz.pullback(case.fn, *args)[1](rng.standard_normal(np.shape(y)))
    for g, a in zip(grads, args):
        np.testing.assert_array_equal(g, np.zeros(np.shape(a)))
    # away from the jumps, finite differences agree
    np.testing.assert_allclose(numerical_jvp(case.fn, args, t)[0], 0.0, atol=1e-9)
    # the primitive's own rule returns a symbolic zero tangent
    prim = PRIMITIVES[case.prim]
    eqn = next(e for e in pz.make_program(case.fn, *args).eqns if e.prim is prim)
    primals = [np.ones(v.aval.shape, v.aval.dtype) * 0.25 for v in eqn.inputs]
    tangents = [np.ones(v.aval.shape, v.aval.dtype) for v in eqn.inputs]
    out, tout = prim.jvp(primals, tangents, **eqn.params)
    assert tout is None
    np.testing.assert_array_equal(out, prim.impl(*primals, **eqn.params))


@pytest.mark.parametrize("case", BOOL, ids=ids(BOOL))
def test_boolean_outputs_have_no_tangent(case: Case) -> None:
    args = args_of(case)
    prog = pz.make_program(case.fn, *args)
    assert prog.outputs[0].aval.dtype == np.bool_
    t = random_like(rng_for(case, "bool"), args)
    ys, ts = jvp_eval(prog, list(args), list(t))
    assert ts == [None]
    np.testing.assert_array_equal(ys[0], case.reference(*args))
    prim = PRIMITIVES[case.prim]
    eqn = next(e for e in prog.eqns if e.prim is prim)
    primals = [np.zeros(v.aval.shape, v.aval.dtype) for v in eqn.inputs]
    assert prim.jvp(primals, [None if v.aval.dtype == np.bool_ else np.ones(v.aval.shape) for v in eqn.inputs])[1] is None
    # gradients through a boolean output are zero, not an error
    y, back = pz.pullback(case.fn, *args)
    for g, a in zip(back(np.ones(np.shape(y), bool)), args):
        np.testing.assert_array_equal(g, np.zeros(np.shape(a)))


# --- linear primitives: their transpose is their adjoint -----------------------------------
LINEAR = [n for n, p in sorted(PRIMITIVES.items()) if p.transpose is not None]
LINEAR_IN = {"solve": (1,), "div": (0,), "expm_frechet": (1,), "odesolve_tangent": (2, 3), "odesolve_hvp": (3, 4, 5)}  # inputs a transpose rule accepts as unknown


def test_linear_primitives_are_the_expected_ones() -> None:
    assert {"add_any", "add", "sub", "neg", "mul", "div", "reshape", "transpose", "broadcast_in_dim",
            "concatenate", "reduce_sum", "cumsum", "gather", "scatter_add", "select", "einsum",
            "convert_element_type", "solve"} <= set(LINEAR)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_primitive_transpose_by_dot_product(name: str) -> None:
    """Transpose rules checked directly on each linear primitive's equations of the cases."""
    prim = PRIMITIVES[name]
    from pyzygote.primitive import Undefined

    if not CASES.get(name):
        pytest.skip(f"{name} has no case (test_every_primitive_has_a_case fails for it)")
    checked = 0
    for case in CASES[name]:
        if case.kind == "bool":
            continue
        args = args_of(case)
        prog = pz.make_program(case.fn, *args)
        progs = [prog, jvp_program(prog), *vjp_programs(prog)]
        eqns = [e for p in progs for e in p.eqns if e.prim is prim]
        rng = rng_for(case, "transpose")
        for eqn in eqns[:2]:
            for k, v in enumerate(eqn.inputs):
                if not v.aval.is_float or not hasattr(v, "uid"):
                    continue
                # Integer operands are positions (take, put_add) into the array the equation reads or makes.
                size = int(np.prod(eqn.params.get("shape", eqn.inputs[0].aval.shape)))
                vals = [np.asarray(rng.standard_normal(a.aval.shape)).astype(a.aval.dtype) if a.aval.is_float
                        else (rng.random(a.aval.shape) < 0.5) if a.aval.dtype == np.bool_
                        else rng.integers(0, size, a.aval.shape) if hasattr(a, "uid")
                        else a.value for a in eqn.inputs]
                if k not in LINEAR_IN.get(name, (k,)):
                    continue  # e.g. solve is linear in b only, div in its numerator only
                t = vals[k]
                base = prim.impl(*[np.zeros_like(t) if i == k else x for i, x in enumerate(vals)], **eqn.params)
                jt = np.asarray(prim.impl(*vals, **eqn.params)) - base  # the linear part (add is affine)
                ct = rng.standard_normal(np.shape(jt)).astype(jt.dtype)
                primals = [Undefined(a.aval) if i == k else vals[i] for i, a in enumerate(eqn.inputs)]
                cts = prim.transpose(ct, *primals, **eqn.params)
                assert np.shape(cts[k]) == np.shape(t)
                lhs, rhs = dot([ct], [jt]), dot([cts[k]], [t])
                tol = max(case.dot_rtol, 1e-10 if all(a.aval.dtype != np.float32 for a in (*eqn.inputs, *eqn.outputs)) else 1e-6)
                norms = np.linalg.norm(ct) * np.linalg.norm(f64(jt)) + np.linalg.norm(f64(cts[k])) * np.linalg.norm(f64(t))
                assert abs(lhs - rhs) <= tol * norms, (eqn, lhs, rhs)
                checked += 1
    assert checked > 0


@pytest.mark.parametrize("case", [c for c in SMOOTH if "odesolve" not in c.prim], ids=lambda c: c.id)
def test_batched_columns_equal_columns_one_at_a_time(case: Case) -> None:
    """Batch rules (pyzygote/transforms/batch.py) run a linear program on many tangents at once,
    with the batch in a leading axis; they must give each column exactly as the program would."""
    from pyzygote.tracer import Builder
    from pyzygote.transforms.batch import eval_batched
    from pyzygote.transforms.evaluate import compile_program
    from pyzygote.transforms.linearize import linearize_programs

    args = args_of(case)
    prog = pz.make_program(case.fn, *args)
    wrt = tuple(np.asarray(a).dtype.kind == "f" for a in args)
    if not any(wrt) or not any(v.aval.dtype.kind == "f" for v in prog.outputs):
        pytest.skip("nothing to differentiate")
    primal, linear = linearize_programs(prog, wrt)
    res = primal(*args)[len(prog.outputs) :]
    avals = [v.aval for v in linear.inputs[len(res) :]]
    rng = rng_for(case, "batch")
    k = 3
    for position in range(len(avals)):
        T = rng.standard_normal((k, *avals[position].shape)).astype(avals[position].dtype)
        ts = [np.zeros(a.shape, a.dtype) for a in avals]
        ts[position] = T
        flags = [False] * len(res) + [i == position for i in range(len(avals))]
        batched = eval_batched(linear, [*res, *ts], flags, k)
        # Traced, the same rules record the batched program (forward sensitivities are built so).
        builder = Builder()
        xs = [builder.new_input(np.shape(x), np.asarray(x).dtype) for x in (*res, *ts)]
        recorded = builder.build(xs, eval_batched(linear, xs, flags, k))
        for got, b in zip(recorded(*res, *ts), batched):
            np.testing.assert_allclose(got, b, rtol=1e-13, atol=1e-13, err_msg=f"{case.id} input {position}, traced")
        run = compile_program(linear)
        for i in range(k):
            one = [np.zeros(a.shape, a.dtype) for a in avals]
            one[position] = T[i]
            for out, b in zip(run(*res, *one), batched):
                np.testing.assert_allclose(b[i], out, rtol=1e-13, atol=1e-13, err_msg=f"{case.id} input {position} column {i}")


def test_hessians_of_losses_over_large_data_take_all_columns_in_one_product(monkeypatch: Any) -> None:
    """User testing: pz.hessian of a least-squares loss over 100k x 150 data took 3.4 s (one
    matrix-vector product per column, each reading the data again; JAX's vmap: 0.4 s). Products
    with a large operand now take the columns together, and the rest of the linear program runs
    on them batched."""
    from pyzygote.primitives.linalg import einsum_p

    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((200, 6)), rng.standard_normal(200)

    def loss(w: Any) -> Any:
        z = X @ w
        return np.mean((np.tanh(z) - y) ** 2) + np.sum(np.logaddexp(0.0, z)) / 200

    w = rng.standard_normal(6) * 0.3
    by_column = pz.hessian(loss, w)
    monkeypatch.setattr(einsum_p.batch, "pays", lambda eqn: True)  # as for a large X
    pz.clear_cache()
    batched = pz.hessian(loss, w)
    np.testing.assert_allclose(batched, by_column, rtol=1e-13, atol=1e-15)
    grad = lambda v: pz.gradient(loss, v)[0]  # noqa: E731
    fd = np.stack([(grad(w + h) - grad(w - h)) / 2e-6 for h in 1e-6 * np.eye(6)], axis=1)
    np.testing.assert_allclose(batched, fd, rtol=1e-6, atol=1e-9)


def test_repeated_positions_are_found_as_np_unique_finds_them() -> None:
    from pyzygote.primitives.indexing import has_repeats

    rng = np.random.default_rng(5)
    for size in (0, 1, 2, 7, 1000):
        for p in (rng.permutation(size), rng.integers(0, max(size, 1), size), rng.integers(0, 3, (size, 2))):
            assert has_repeats(p) == (np.unique(p).size != p.size), p


@pytest.mark.parametrize(
    "spec, x_shape, y_shape",
    [("ij,jk->ik", (9, 12), (12, 8)), ("ij,kj->ki", (9, 12), (8, 12)), ("bay,yz->baz", (3, 9, 12), (12, 4)),
     ("by,ayz->baz", (3, 12), (9, 12, 4)), ("ay,byz->baz", (9, 12), (3, 12, 4)), ("bij,bjk->bik", (3, 9, 12), (3, 12, 5)),
     ("bij,bjk->kib", (3, 9, 12), (3, 12, 5)), ("ij,j->i", (9, 12), (12,)), ("i,ij->j", (12,), (12, 9)), ("ij,kl->ijkl", (9, 8), (8, 9)),
     ("xy,ay->ax", (90, 15), (8, 15)), ("xy,ax->ay", (90, 15), (8, 90))],
)
def test_einsum_as_a_planned_matrix_product_matches_numpy(spec: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> None:
    """Two-operand einsums of more than 64 entries each run as one planned (stacked) matrix product."""
    from pyzygote.primitives.linalg import _matmul_plan, einsum_p

    rng = np.random.default_rng(len(spec))
    x, y = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    plan = _matmul_plan(spec, x.shape, y.shape, True)
    assert plan is not None
    for got in (plan(x, y), einsum_p.impl(x, y, spec=spec)):
        np.testing.assert_allclose(got, np.einsum(spec, x, y), rtol=1e-13, atol=1e-13)
        assert got.flags.c_contiguous
    assert plan(x.astype(np.float32), y.astype(np.float32)).dtype == np.float32
    assert _matmul_plan("ii,ij->j", (9, 9), (9, 4), True) is None and _matmul_plan("ij,jk->k", (9, 12), (12, 8), True) is None

"""Tracing: readable programs, the trace cache and its invalidation, derivative
programs that print and compose."""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.engines.numpy_engine import grad_program
from pyzygote.testing import numerical_jvp
from pyzygote.transforms.evaluate import compile_program, eval_program
from pyzygote.transforms.jvp import jvp_program
from pyzygote.transforms.vjp import vjp_programs


# --- printing ------------------------------------------------------------------------------
def test_program_prints_like_a_jaxpr() -> None:
    w = np.array([1.0, -1.0, 0.5])
    prog = pz.make_program(lambda x, b: np.sum(np.tanh(x @ w + b) * 2.0), np.ones((2, 3)), 0.5)
    assert str(prog) == (
        "{ lambda a:f64[3] ; b:f64[2,3] c:f64[]. let\n"
        "    d:f64[2] = einsum[spec='xy,y->x'] b a\n"
        "    e:f64[2] = add d c\n"
        "    f:f64[2] = tanh e\n"
        "    g:f64[2] = mul f 2.0:f64[]\n"
        "    h:f64[] = reduce_sum[axes=(0,)] g\n"
        "  in (h,) }"
    )
    np.testing.assert_array_equal(prog.consts[0], w)  # the closed-over array is the constant a


def test_program_printing_shows_dtypes_params_and_constants(capsys: Any) -> None:
    x32 = np.ones((2, 2), np.float32)
    print(pz.make_program(lambda x: np.max(x[::-1], axis=-1, keepdims=True).astype(np.float64), x32))
    out = capsys.readouterr().out
    assert out.startswith("{ lambda  ; a:f32[2,2]. let")
    assert "gather[positions=array([[2, 3],\n       [0, 1]])" in out
    assert "reduce_max[axes=(1,)]" in out and "reshape[shape=(2, 1)]" in out
    assert "convert_element_type[dtype=float64]" in out and out.rstrip().endswith(",) }")
    big = pz.make_program(lambda x: x[np.arange(20) % 3], np.ones(3))
    assert "positions=<int64[20]>" in str(big)  # large parameters are summarized


def test_programs_are_pruned_to_what_the_outputs_need() -> None:
    def f(x: Any) -> Any:
        unused = np.exp(x) * 3.0  # noqa: F841
        return x * 2.0

    prog = pz.make_program(f, np.ones(2))
    assert [e.prim.name for e in prog.eqns] == ["mul"]


# --- the cache --------------------------------------------------------------------------------
def test_function_is_traced_once_per_signature() -> None:
    calls = []

    def f(x: Any) -> Any:
        calls.append(1)
        return np.sum(np.sin(x) ** 2)

    for k in range(10):
        (g,) = pz.gradient(f, np.full(3, 0.1 * k))
        np.testing.assert_allclose(g, np.sin(0.2 * k) * np.ones(3), rtol=1e-14, atol=1e-15)
    assert len(calls) == 1
    pz.withgradient(f, np.ones(3))
    pz.pullback(f, np.ones(3))
    pz.jvp(f, (np.ones(3),), (np.ones(3),))
    pz.hessian(f, np.ones(3))
    assert len(calls) == 1  # every transform shares the trace
    pz.gradient(f, np.ones(4))  # new shape
    pz.gradient(f, np.ones(4, np.float32))  # new dtype
    pz.gradient(f, np.ones(4))
    assert len(calls) == 3
    pz.clear_cache()
    pz.gradient(f, np.ones(4))
    assert len(calls) == 4


def test_result_types_follow_each_call_not_the_cached_trace() -> None:
    calls = []

    def f(x: Any) -> Any:
        calls.append(1)
        return x * x

    assert repr(pz.gradient(f, np.array(2.0))) == "(array(4.),)"
    assert repr(pz.gradient(f, np.float64(3.0))) == "(array(6.),)"  # same trace
    assert len(calls) == 1
    # A Python number is weak in numpy's promotion (a trace of its own), and comes back a float
    assert repr(pz.gradient(f, 2.0)) == "(4.0,)"
    assert repr(pz.gradient(f, 3)) == "(6.0,)"
    assert len(calls) == 2


def test_static_arguments_are_part_of_the_signature() -> None:
    calls = []

    def f(x: Any, mode: str) -> Any:
        calls.append(mode)
        return np.sum(x**2) if mode == "sq" else np.sum(x**3)

    assert pz.gradient(f, 2.0, "sq")[0] == 4.0
    assert pz.gradient(f, 2.0, "cube")[0] == 12.0
    assert pz.gradient(f, 3.0, "sq")[0] == 6.0
    assert calls == ["sq", "cube"]


W_GLOBAL = np.array([1.0, 2.0, 3.0])
SCALE_GLOBAL = 2.0


def _uses_global_array(x: Any) -> Any:
    return np.sum(W_GLOBAL * x)


def _uses_global_scalar(x: Any) -> Any:
    return SCALE_GLOBAL * x


def _helper(x: Any) -> Any:
    return np.sum(W_GLOBAL * x)


def _calls_helper(x: Any) -> Any:
    return _helper(x) ** 2


def test_cache_sees_mutation_of_a_closed_over_array() -> None:
    w = np.array([1.0, 2.0, 3.0])
    f = lambda x: np.sum(w * x)  # noqa: E731
    np.testing.assert_array_equal(pz.gradient(f, np.ones(3))[0], [1.0, 2.0, 3.0])
    w[0] = 10.0
    np.testing.assert_array_equal(pz.gradient(f, np.ones(3))[0], [10.0, 2.0, 3.0])
    w *= 2.0
    np.testing.assert_array_equal(pz.gradient(f, np.ones(3))[0], [20.0, 4.0, 6.0])


def test_cache_sees_mutation_of_arrays_read_eagerly() -> None:
    """``w[0]`` and ``np.sum(w)`` are computed while tracing and baked in as constants."""
    w = np.array([1.0, 2.0, 3.0])
    f = lambda x: w[0] * x + np.sum(w) * x**2  # noqa: E731
    assert pz.gradient(f, 1.0) == (13.0,)
    w[0] = 5.0
    assert pz.gradient(f, 1.0) == (25.0,)


def test_small_constants_made_in_a_loop_are_one_constant_and_not_kept_by_the_trace() -> None:
    """A loop's np.zeros(1) made at each step is one constant of the program (equal contents,
    dtype and layout: -0.0 and a Fortran-ordered matrix stay apart), and the trace does not keep
    those arrays to compare them at later calls (nothing can change an array that is gone);
    a view of a closed-over array is kept and compared, so writing into its base re-traces."""
    import gc
    import weakref

    made: list[Any] = []
    data = np.array([1.0, 2.0, 3.0, 4.0])
    m = np.array([[1.0, 2.0], [3.0, 4.0]])

    def f(x):
        total = 0.0
        for _ in range(50):
            zero = np.zeros(1)
            made.append(weakref.ref(zero))
            total = total + np.sum(np.concatenate([x, zero]) * np.concatenate([zero, x]))
        view = data[1:3]  # a new view at each call
        return total + np.sum(x * view) + np.sum(x * np.array([-0.0, 0.0])) + np.sum(m @ x) + np.sum(np.asfortranarray(m) @ x)

    x = np.array([0.5, 2.0])
    prog = pz.make_program(f, x)
    consts = [c for c in prog.consts if c.shape == (1,)]
    assert len(consts) == 1
    assert sum(c.shape == (2, 2) for c in prog.consts) == 2  # C- and Fortran-ordered
    assert sum(c.shape == (2,) for c in prog.consts) == 2  # [-0.0, 0.0] and the view's copy
    g = pz.grad(f)
    want = 50 * np.array([x[1], x[0]]) + data[1:3] + m.sum(axis=0) * 2
    np.testing.assert_array_equal(g(x), want)
    gc.collect()
    assert made and all(r() is None for r in made)
    data[1] = 10.0  # through the view the trace read
    np.testing.assert_array_equal(g(x), want + [8.0, 0.0])


def test_equal_small_constants_stay_separate_arrays_for_the_caller() -> None:
    """Two closed-over arrays of equal contents are one constant of the trace, but each is still
    compared at later calls: writing into either (or into one inside the function, between its
    uses) is seen; equal bytes of another dtype or shape are other constants (review)."""
    a, b = np.zeros(2), np.zeros(2)
    c32, c16, c2d = np.zeros(1, np.float32), np.zeros(2, np.float16), np.zeros((1, 2), np.float16)

    def f(x):
        return np.sum(x * a) + 2 * np.sum(x * b) + np.sum(x * c16) + np.sum(x * c2d) + np.sum(x[:1] * c32)

    x = np.array([1.0, 2.0])
    g = pz.grad(f)
    np.testing.assert_array_equal(g(x), [0.0, 0.0])
    a[0] = 1.0
    np.testing.assert_array_equal(g(x), [1.0, 0.0])
    b[1] = 5.0
    np.testing.assert_array_equal(g(x), [1.0, 10.0])
    c16[:] = 1.0
    np.testing.assert_array_equal(g(x), [2.0, 11.0])
    assert float(pz.withgradient(f, x)[0]) == f(x)

    e, d = np.zeros(2), np.zeros(2)

    def h(x):  # e changes between its uses; d, equal to e's first contents, does not
        s = np.sum(x * e) + np.sum(x * d)
        e[:] = [1.0, 0.0]
        return s + np.sum(x * e) + 3 * np.sum(x * d)

    np.testing.assert_array_equal(pz.grad(h)(x), [1.0, 0.0])


def test_cache_sees_rebinding_of_globals() -> None:
    global W_GLOBAL, SCALE_GLOBAL
    old_w, old_s = W_GLOBAL, SCALE_GLOBAL
    try:
        np.testing.assert_array_equal(pz.gradient(_uses_global_array, np.ones(3))[0], [1.0, 2.0, 3.0])
        assert pz.gradient(_uses_global_scalar, 1.0) == (2.0,)
        np.testing.assert_array_equal(pz.gradient(_calls_helper, np.ones(3))[0], 12.0 * np.array([1.0, 2.0, 3.0]))
        W_GLOBAL = np.array([4.0, 5.0, 6.0])
        SCALE_GLOBAL = 3.0
        np.testing.assert_array_equal(pz.gradient(_uses_global_array, np.ones(3))[0], [4.0, 5.0, 6.0])
        assert pz.gradient(_uses_global_scalar, 1.0) == (3.0,)
        # rebinding a global read by a helper function that f calls
        np.testing.assert_array_equal(pz.gradient(_calls_helper, np.ones(3))[0], 30.0 * np.array([4.0, 5.0, 6.0]))
    finally:
        W_GLOBAL, SCALE_GLOBAL = old_w, old_s


def test_cache_sees_rebinding_of_closure_cells_and_containers() -> None:
    scale = 2.0
    params = {"a": 1.0}

    def f(x: Any) -> Any:
        return scale * x + params["a"] * sum(x * k for k in (1.0,))

    assert pz.gradient(f, 1.0) == (3.0,)
    scale = 5.0
    assert pz.gradient(f, 1.0) == (6.0,)
    params["a"] = 4.0
    assert pz.gradient(f, 1.0) == (9.0,)


HYPER = {"model": {"reg": {"l2": 1.0}}}


def _regularizer(x: Any) -> Any:
    return HYPER["model"]["reg"]["l2"] * np.sum(x**2)


def _through_two_helpers(x: Any) -> Any:
    return _regularizer(x)


def test_cache_sees_nested_configuration_read_in_a_helper() -> None:
    # Found in user testing: three levels down, in a helper's global, the change went unseen.
    def total(x: Any) -> Any:
        return _through_two_helpers(x) + np.sum(x)

    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(pz.gradient(total, x)[0], 2 * x + 1)
    HYPER["model"]["reg"]["l2"] = 10.0
    try:
        np.testing.assert_array_equal(pz.gradient(total, x)[0], 20 * x + 1)
    finally:
        HYPER["model"]["reg"]["l2"] = 1.0

    class Box:
        pass

    cfg = Box()
    cfg.inner = Box()
    cfg.inner.k = Box()
    cfg.inner.k.v = 1.0
    f = lambda x: cfg.inner.k.v * x  # noqa: E731
    assert pz.gradient(f, 1.0) == (1.0,)
    cfg.inner.k.v = 7.0
    assert pz.gradient(f, 1.0) == (7.0,)


def test_cache_sees_object_attributes_and_partials() -> None:
    class Model:
        def __init__(self) -> None:
            self.w = 2.0

        def __call__(self, x: Any) -> Any:
            return self.w * x

        def loss(self, x: Any) -> Any:
            return self.w * x**2

    m = Model()
    assert pz.gradient(m, 1.0) == (2.0,)
    assert pz.gradient(m.loss, 1.0) == (4.0,)
    m.w = 3.0
    assert pz.gradient(m, 1.0) == (3.0,)
    assert pz.gradient(m.loss, 1.0) == (6.0,)
    p = functools.partial(lambda x, c: c * x, c=np.array(2.0))
    assert pz.gradient(p, 1.0) == (2.0,)
    p.keywords["c"][()] = 7.0
    assert pz.gradient(p, 1.0) == (7.0,)


def test_a_counter_bumped_by_the_function_does_not_defeat_the_cache() -> None:
    count = 0

    def f(x: Any) -> Any:
        nonlocal count
        count += 1
        return x * 3.0

    for _ in range(5):
        assert pz.gradient(f, 1.0) == (3.0,)
    assert count == 1


def test_captured_constants_are_private_copies() -> None:
    w = np.array([1.0, 2.0])
    prog = pz.make_program(lambda x: x * w, np.ones(2))
    w[0] = 100.0
    np.testing.assert_array_equal(prog(np.ones(2))[0], [1.0, 2.0])
    assert not prog.consts[0].flags.writeable


# --- derivative programs ---------------------------------------------------------------------------
def f_example(x: Any) -> Any:
    return np.sum(np.tanh(x) ** 2 * x[::-1]) + np.prod(np.cos(x))


def test_derivative_programs_print_and_evaluate() -> None:
    x = np.array([0.3, -0.4, 0.8])
    prog = pz.make_program(f_example, x)
    jp = jvp_program(prog)
    text = str(jp)
    assert text.startswith("{ lambda") and "a:f64[3] b:f64[3]. let" in text and "add_any" in text
    fwd, bwd = vjp_programs(prog)
    assert "tanh" in str(fwd) and "tanh" not in str(bwd)  # residuals carry nonlinear values
    assert [v.aval for v in bwd.outputs] == [v.aval for v in prog.inputs]
    t = np.array([1.0, 2.0, -1.0])
    y, ty = compile_program(jp)(x, t)
    np.testing.assert_allclose(y, f_example(x), rtol=1e-15)
    np.testing.assert_allclose(ty, numerical_jvp(f_example, (x,), (t,))[0], rtol=1e-8)
    y2, *res = compile_program(fwd)(x)
    (g,) = compile_program(bwd)(*res, np.float64(1.0))
    assert float(np.dot(g, t)) == pytest.approx(float(ty), rel=1e-13)
    # the interpreter and the compiled function agree
    assert eval_program(jp, x, t)[1] == pytest.approx(float(ty), rel=1e-15)


def test_a_new_lambda_at_every_call_is_warned_about_once_tracing_adds_up(monkeypatch: Any) -> None:
    """User testing: pz.withgradient(lambda th: loss(th), th) inside a scipy objective traced a
    365-day loop again at every call (2.2 s against 0.08 s), silently."""
    import pyzygote.tracing as tracing

    monkeypatch.setattr(tracing, "_RETRACE_SECONDS", 0.0)
    x = np.linspace(0.0, 1.0, 4)

    def loss(th: Any) -> Any:
        return np.sum(np.sin(th * x))

    def objective(th: Any) -> Any:
        return pz.withgradient(lambda th: loss(th) + 1.0, th)

    with warnings.catch_warnings():
        warnings.simplefilter("error", pz.RetraceWarning)
        for k in range(5):
            pz.withgradient(loss, 0.1 * k)  # defined once: traced once
        for k in range(2):
            objective(0.1 * k)
    with pytest.warns(pz.RetraceWarning, match=r"traced 3 times .*new function object at each call"):
        value, (g,) = objective(0.5)
    assert g == pytest.approx(np.sum(x * np.cos(0.5 * x)), rel=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pz.RetraceWarning)
        objective(0.6)  # once per code
        for k in range(4):  # drawing random numbers retraces by design, with its own warning
            with pytest.warns(pz.RandomDrawWarning):
                pz.gradient(lambda th: th * np.random.normal(), 1.0)


def test_many_cheap_retraces_are_warned_about_too() -> None:
    """User testing: an iLQR sweep's pz.jacobian of a lambda made inside the loop took 20 times
    as long as the function defined once, and the warning, which counted only the seconds spent
    tracing, stayed silent."""
    x = np.array([0.3, 0.7])
    with pytest.warns(pz.RetraceWarning, match=r"traced 50 times .*new function object at each call"):
        for k in range(60):
            (J,) = pz.jacobian(lambda v: np.sin(v) * v[::-1], x)
    np.testing.assert_allclose(J, [[np.cos(x[0]) * x[1], np.sin(x[0])], [np.sin(x[1]), np.cos(x[1]) * x[0]]], rtol=1e-14)


def test_long_programs_are_interpreted_until_compiling_pays(monkeypatch: Any) -> None:
    import pyzygote.transforms.evaluate as evaluate

    def f(x, y):  # several results per equation (eigh), literals, an input returned as it is
        z = x
        for i in range(12):
            z = np.sin(z) * y + np.maximum(z, 0.1) ** 2 / (1 + i)
            a, b = np.split(z, 2)
            z = np.concatenate([b, a])
        w, v = np.linalg.eigh(np.outer(z, z) + np.eye(z.size))
        return np.sum(z**2) + w[-1], z, x, 2.5

    x, y = np.linspace(0, 1, 6), np.float64(0.7)
    prog = pz.make_program(f, x, y)
    assert any(e.prim.multiple_results for e in prog.eqns)
    expected = f(x, y)
    monkeypatch.setattr(evaluate, "INTERPRET_ABOVE", 10)
    run = compile_program(prog)
    assert type(run).__name__ == "_Interpreted"
    for call in range(1, evaluate.INTERPRETED_CALLS + 3):
        got = run(x, y)
        assert (run.compiled is not None) == (call > evaluate.INTERPRETED_CALLS)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
        assert got[2] is x
    with pytest.raises(TypeError, match="2 positional arguments"):
        run(x)
    # the longest programs are never compiled (compiling them takes memory in proportion)
    monkeypatch.setattr(evaluate, "COMPILE_AT_MOST", 20)
    longest = compile_program(pz.make_program(lambda x, y: f(x, y)[:2], x, y))
    for _ in range(evaluate.INTERPRETED_CALLS + 2):
        np.testing.assert_array_equal(longest(x, y)[1], expected[1])
    assert longest.compiled is None


_SPECIALS = [0.0, -0.0, 1.5, -2.0, 3.0, np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324, 3.4e38]


def _operands(prim: Any, dtype: Any) -> list[tuple[Any, ...]]:
    """Rank-0 operands of every combination of special values, as the IR gives them to ``prim``."""
    import itertools

    with np.errstate(over="ignore"):  # 1e308 is inf in float32
        floats = [np.asarray(v, dtype)[()] for v in _SPECIALS] if dtype != np.bool_ else [np.True_, np.False_]
    if prim.name == "select":
        return [(c, a, b) for c in (np.True_, np.False_) for a, b in itertools.product(floats[:8], repeat=2)]
    return list(itertools.product(floats, repeat=1 if prim.name in ("neg", "convert_element_type") else 2))


def _outcome(fn: Any, args: tuple[Any, ...]) -> Any:
    with np.errstate(all="raise"):  # which warning numpy would give, as an exception
        try:
            return np.asarray(fn(*args))
        except FloatingPointError as e:  # "invalid value encountered in (scalar) add"
            return str(e).split(" encountered")[0]
        except TypeError:  # numpy refuses booleans' subtraction and negation
            return "TypeError"


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.bool_])
def test_numpy_scalar_forms_compute_as_the_ufuncs(dtype: Any) -> None:
    """Each primitive's ``numpy_scalar`` expression gives its impl's value, dtype and warning."""
    from pyzygote.primitive import PRIMITIVES
    from pyzygote.transforms.evaluate import _scalar_function

    checked = 0
    for prim in PRIMITIVES.values():
        if prim.numpy_scalar is None:
            continue
        params_list = [{"dtype": np.dtype(t)} for t in (np.float64, np.float32, np.bool_)] if callable(prim.numpy_scalar) else [{}]
        for params in params_list:
            template = prim.numpy_scalar(**params) if callable(prim.numpy_scalar) else prim.numpy_scalar
            for args in _operands(prim, dtype):
                want = _outcome(functools.partial(prim.impl, **params), args)
                got = _outcome(_scalar_function(template, len(args)), args)
                assert type(got) is type(want), (prim.name, params, args, got, want)
                if isinstance(want, str):
                    assert got == want, (prim.name, params, args)
                    continue
                assert got.dtype == want.dtype, (prim.name, params, args)
                np.testing.assert_array_equal(got, want, err_msg=f"{prim.name} {params} {args}")
                assert np.signbit(got) == np.signbit(want) or got.dtype == np.bool_, (prim.name, args)
                checked += 1
    assert checked > (30 if dtype == np.bool_ else 1000)


def test_loop_programs_run_on_numpy_scalars_with_numpys_results_and_warnings(monkeypatch: Any) -> None:
    import pyzygote.transforms.evaluate as evaluate

    def f(x, a):
        s = x[0]
        for i in range(6):  # an overflow, a 0/0 and a division by zero on the way, as numpy gives them
            s = np.where(s > a, s * 1e200, -s / (a - 1.5) + 1.0)
        return s, s > 0.0, (s * 0.0).astype(np.float32)

    x, a = np.array([2.0, 1.0]), np.float64(1.5)
    prog = pz.make_program(f, x, a)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        expected = f(x, a)
    kinds = {str(w.message).split(" encountered")[0] for w in record}
    assert kinds == {"overflow", "divide by zero", "invalid value"}
    compiled = compile_program(prog)
    assert compiled.__doc__.count(" = f") == 1  # x[0]; every scalar step is an operator
    monkeypatch.setattr(evaluate, "INTERPRET_ABOVE", 1)
    prog = pz.make_program(lambda x, a: f(x, a), x, a)  # a fresh program, interpreted
    interpreted = compile_program(prog)
    assert type(interpreted).__name__ == "_Interpreted"
    for run in (compiled, interpreted):
        for args in ((x, a), (x, 1.5)):
            with pytest.warns(RuntimeWarning) as record:
                got = run(*args)
            assert {str(w.message).split(" encountered")[0] for w in record} == kinds
            assert [np.asarray(g).dtype for g in got] == [np.float64, np.bool_, np.float32]
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)
    # Python floats given as inputs (an ODE solver's t) compute as numpy's scalars do: inf and a
    # warning for a division by zero or an overflow, numpy's types (review)
    for threshold in (10**6, 1):
        monkeypatch.setattr(evaluate, "INTERPRET_ABOVE", threshold)
        run = compile_program(pz.make_program(lambda u, v: (u / v - v, u * v, u > v), 1.0, 0.0))
        with pytest.warns(RuntimeWarning, match="divide by zero"):
            assert run(1.0, 0.0)[0] == np.inf
        with pytest.warns(RuntimeWarning, match="overflow"):
            quotient, product, larger = run(1e308, 10.0)
        assert product == np.inf and type(product) is np.float64 and type(larger) is np.bool_


def test_scalar_minimum_and_maximum_run_as_comparisons_giving_the_ufuncs_bits() -> None:
    """np.minimum / np.maximum of single numbers (a bucket model's clamps) compile to comparisons:
    ties give the second operand (-0.0 against 0.0), NaN propagates, as the ufuncs; an equation
    whose operands have another dtype than its result keeps the ufunc, which converts them."""
    from pyzygote.ir import Aval, Eqn, Var
    from pyzygote.primitives.elementwise import ELEMENTWISE
    from pyzygote.transforms.evaluate import numpy_scalar_template

    f64, f32 = Aval((), np.float64), Aval((), np.float32)
    for name in ("min", "max"):
        assert numpy_scalar_template(Eqn(ELEMENTWISE[name], (Var(f64), Var(f64)), {}, (Var(f64),))) is not None
        assert numpy_scalar_template(Eqn(ELEMENTWISE[name], (Var(f32), Var(f64)), {}, (Var(f64),))) is None

    def f(x, y, h):
        lo, hi = np.minimum(x, y), np.maximum(x, y)
        return lo, hi, np.minimum(h, x), np.maximum(np.minimum(lo * 2.0, 1.0), 0.0)

    values = [0.0, -0.0, 1.5, -2.0, np.nan, np.inf]
    prog = pz.make_program(f, 0.5, 0.25, np.float32(1.0))
    source = compile_program(prog).__doc__
    assert source.count(" = f") == 0 and source.count(" if ") == 5, source
    for x in values:
        for y in values:
            got = compile_program(prog)(x, y, np.float32(y))
            want = f(x, y, np.float32(y))  # as traced: x and y Python floats (weak against float32)
            for g, w in zip(got, want):
                assert type(g) is type(w) and np.asarray(g).tobytes() == np.asarray(w).tobytes(), (x, y, g, w)


@pytest.mark.parametrize(
    "args",
    [
        (np.float64(0.7), np.float64(-1.3)),
        (np.array([0.5, 2.0, -1.0]), np.array([1.5, -0.5, 3.0])),
        (np.array([0.5, 2.0], np.float32), np.array([1.5, -0.5], np.float32)),
        (np.array([[0.5, 2.0], [1.0, 3.0]]), np.array([1.5, -0.5])),  # two axes, broadcast
        (0.7, np.array([1.5, -0.5], np.float32)),  # a traced Python float (weak) and float32
        (0.7, -1.3),  # two weak values
        (0.7, np.float64(-1.3)),  # a weak value and a strong one of its dtype
        (np.float64(0.7), np.array([1.0, 2.0])),  # a scalar beside a vector
    ],
    ids=["scalars", "vectors", "float32", "matrix-vector", "weak-float32", "weak-weak", "weak-strong", "scalar-vector"],
)
def test_operators_record_what_numpys_dispatch_records(args: tuple[Any, ...], monkeypatch: Any) -> None:
    """Python's operators on traced values record their equation directly where they can; the
    program must be the one numpy's dispatch records, dtypes and weak numbers included."""
    import pyzygote.tracer as tracer

    def f(x, y):
        v = x[::-1] if np.ndim(x) else x  # a view as an operand
        a = (x * y + 2.0 - y / 3 - 1.5 * x) / (2 - x) + v * 2.0
        return a, a * np.float32(2.0), 10**20 * y, y - 0.5, x * 1.0 + 0.5 * y

    direct = pz.make_program(f, *args)
    monkeypatch.setattr(tracer, "_DIRECT_DTYPES", frozenset())  # every operator through numpy
    dispatched = pz.make_program(lambda x, y: f(x, y), *args)
    assert str(direct) == str(dispatched)
    with np.errstate(all="ignore"):
        for got, want in zip(direct(*args), f(*args)):
            np.testing.assert_array_equal(got, want)
            assert np.asarray(got).dtype == np.asarray(want).dtype


def test_hessian_is_forward_over_reverse() -> None:
    x = np.array([0.3, -0.4, 0.8])
    prog = pz.make_program(f_example, x)
    gp = grad_program(prog)
    hp = jvp_program(gp)  # a program transformed twice is still an ordinary program
    assert "{ lambda" in str(hp)
    h = pz.hessian(f_example, x)
    grad = lambda x: pz.gradient(f_example, x)[0]  # noqa: E731
    eps = 1e-5
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1.0
        fd = (grad(x + eps * e) - grad(x - eps * e)) / (2 * eps)
        np.testing.assert_allclose(h[:, i], fd, rtol=1e-8, atol=1e-10)
        outs = compile_program(hp)(x, e)
        np.testing.assert_allclose(outs[len(gp.outputs) + 1], h[:, i], rtol=1e-14)
    np.testing.assert_allclose(h, h.T, rtol=1e-13, atol=1e-15)


def test_third_order_by_composing_jvp_programs() -> None:
    prog = pz.make_program(lambda x: np.sin(x) * x, 0.7)
    p3 = jvp_program(jvp_program(jvp_program(prog)))
    one, zero, x = np.float64(1.0), np.float64(0.0), np.float64(0.7)
    outs = compile_program(p3)(x, one, one, zero, one, zero, zero, zero)
    # d^3/dx^3 (x sin x) = -3 sin x - x cos x
    assert outs[-1] == pytest.approx(-3 * np.sin(0.7) - 0.7 * np.cos(0.7), rel=1e-14)


# --- ndarray methods ---------------------------------------------------------------------------
METHODS = [
    (lambda x: x.var(), lambda x: np.var(x)),
    (lambda x: x.std(axis=0, ddof=1, keepdims=True), lambda x: np.std(x, axis=0, ddof=1, keepdims=True)),
    (lambda x: x.var(axis=1, ddof=1), lambda x: np.var(x, axis=1, ddof=1)),
    (lambda x: x.round(1), lambda x: np.round(x, 1)),
    (lambda x: x.diagonal(1), lambda x: np.diagonal(x, 1)),
    (lambda x: x.repeat(2, axis=1), lambda x: np.repeat(x, 2, axis=1)),
    (lambda x: x.take([2, 0], axis=1), lambda x: np.take(x, [2, 0], axis=1)),
    (lambda x: x.cumsum(axis=0), lambda x: np.cumsum(x, axis=0)),
]


@pytest.mark.parametrize("method, function", METHODS, ids=["var", "std", "var-ddof", "round", "diagonal", "repeat", "take", "cumsum"])
def test_ndarray_methods_trace_like_their_numpy_functions(method: Any, function: Any) -> None:
    x = np.array([[1.0, 2.5, -0.3], [0.7, 0.2, 1.9]])
    assert str(pz.make_program(method, x)) == str(pz.make_program(function, x))
    np.testing.assert_allclose(pz.make_program(method, x)(x)[0], function(x), rtol=1e-14)


# --- object arrays of traced values (np.array([...]) of traced scalars, np.asarray(x)) -----------
def test_ufuncs_on_object_arrays_of_traced_values():
    x = np.array([0.3, 0.7])

    def built(x: Any) -> Any:
        return np.sum(np.exp(np.array([x[0], 2.0 * x[1]])) + np.arctan2(np.array([x[0], x[1]]), 1.0))

    def defensive(x: Any) -> Any:
        x = np.asarray(x)  # a common first line; on a traced x numpy builds an object array
        return np.sum(np.sin(x) * np.exp(x))

    (g,) = pz.gradient(built, x)
    np.testing.assert_allclose(g, [np.exp(0.3), 2.0 * np.exp(1.4)] + 1.0 / (1.0 + x**2), rtol=1e-14)
    (g,) = pz.gradient(defensive, x)
    np.testing.assert_allclose(g, (np.cos(x) + np.sin(x)) * np.exp(x), rtol=1e-14)


def test_what_object_arrays_cannot_do_is_explained():
    x = np.array([0.3, 0.7])
    with pytest.raises(pz.UnsupportedOperationError, match=r"array of Python objects.*np\.stack"):
        pz.gradient(lambda x: np.linalg.det(np.array([[x[0], 0.0], [0.0, x[1]]])), x)
    with pytest.raises(pz.UnsupportedOperationError, match=r"array of Python objects.*np\.stack"):  # user testing
        pz.gradient(lambda x: np.sum(np.linalg.eig(np.array([[x[0], 1.0], [0.5, 2.0]]))[0]), x)
    with pytest.raises(pz.TracerBoolError, match=r"np\.asarray\(x, dtype=float\)"):
        pz.gradient(lambda x: np.sum(np.asarray(x, dtype=float)), x)
    with pytest.raises(AttributeError, match=r"no rule for \.sort on traced arrays"):
        pz.gradient(lambda x: (x.sort(), np.sum(x))[1], x)
    with pytest.raises(AttributeError, match=r"no rule for \.argmax"):
        pz.gradient(lambda x: x.argmax(), x)
    # An object array mixing traced values and numbers, and numpy functions that convert elements
    for mixed in (lambda x: np.sum(np.sin(np.array([x[0], 1.0]))), lambda x: np.sum(np.arctan2(np.array([x[0], 1.0]), 2.0))):
        with pytest.raises(pz.UnsupportedOperationError, match="array of Python objects"):
            pz.gradient(mixed, x)
    with pytest.raises(pz.TracerBoolError, match=r"np\.mean.*np\.stack"):
        pz.gradient(lambda x: np.mean(np.asarray(x)), x)
    with pytest.raises(pz.TracerBoolError, match=r"np\.maximum, np\.clip, np\.max or a comparison.*np\.stack"):
        pz.gradient(lambda x: np.sum(np.maximum(np.asarray(x), 0.1)), x)
    with pytest.raises(AttributeError, match="'float' object has no attribute 'shape'"):
        pz.gradient(lambda x: x[0] * (1.0).shape, x)  # the user's own mistake stays as it is


def test_reduction_methods_take_ndarray_positional_arguments():
    x = np.array([[1.0, 2.5, -0.3], [0.7, 0.2, 1.9]])
    for method, function in (
        (lambda z: z.std(1, None, None, 1), lambda z: np.std(z, 1, ddof=1)),
        (lambda z: z.var(0, None, None, 0, True), lambda z: np.var(z, 0, keepdims=True)),
        (lambda z: z.sum(0, None, None, True), lambda z: np.sum(z, 0, keepdims=True)),
        (lambda z: z.max(0, None, True), lambda z: np.max(z, 0, keepdims=True)),
        (lambda z: z.mean(1, None, None, True), lambda z: np.mean(z, 1, keepdims=True)),
    ):
        assert str(pz.make_program(method, x)) == str(pz.make_program(function, x))
    with pytest.raises(pz.TracerBoolError, match="out=y"):  # a numpy array cannot hold the traced sum
        pz.gradient(lambda z: z.sum(out=np.empty(())), x)
    (g,) = pz.gradient(lambda z: z.mean(where=z > 0), x)  # the mean of the positive entries
    np.testing.assert_allclose(g, (x > 0) / np.sum(x > 0), rtol=1e-15)


def test_caches_do_not_keep_functions_alive():
    """Nor the data their closures hold.  (A right-hand side over numbers alone is kept, one of
    the last pyzygote.same_function.KEPT, for a lambda written afresh in each call.)"""
    import gc
    import weakref

    def make() -> tuple[Any, Any]:
        scale = np.ones(1000)
        rhs = lambda u, p, t: -p[0] * u * scale[0]  # noqa: E731
        loss = lambda p: pz.odesolve(rhs, [1.0], [0.0, 1.0], p)[-1, 0]  # noqa: E731
        pz.gradient(loss, np.ones(1))
        return weakref.ref(rhs), weakref.ref(loss)

    refs = make()
    gc.collect()
    assert [r() for r in refs] == [None, None]


SUBJECTS = [{"dose": 100.0, "y": np.ones(3)} for _ in range(100)]


def test_changes_inside_a_long_global_list_are_noticed() -> None:
    """Found in user testing: containers of more than 64 items were not checked at all."""

    def nll(th):
        s = SUBJECTS[63 + 10]
        return np.sum((s["dose"] * np.exp(-th) - s["y"]) ** 2)

    th = np.array([0.1, 0.2, 0.3])
    before = pz.gradient(nll, th)[0]
    SUBJECTS[73]["dose"] = 200.0
    try:
        after = pz.gradient(nll, th)[0]
        np.testing.assert_allclose(after, pz.gradient(lambda t: nll(t), th)[0], rtol=1e-15)
        assert not np.allclose(after, before)
        SUBJECTS[73] = {"dose": 50.0, "y": np.zeros(3)}
        np.testing.assert_allclose(pz.gradient(nll, th)[0], 2 * (50.0 * np.exp(-th)) * -50.0 * np.exp(-th), rtol=1e-14)
    finally:
        SUBJECTS[73] = {"dose": 100.0, "y": np.ones(3)}


def test_data_beyond_the_guard_budget_is_announced() -> None:
    from pyzygote.tracing import UncheckedDataWarning

    many = [np.full(2, float(i)) for i in range(3000)]

    def f(w):
        return np.sum(w * many[2999])

    with pytest.warns(UncheckedDataWarning, match="call pz.clear_cache"):
        pz.gradient(f, np.ones(2))


class _Config:
    l2 = 1.0


SCALE = 2.0


class _Model:
    __slots__ = ("w",)

    def __init__(self, w):
        self.w = w

    def predict(self, x):
        return SCALE * self.w * x


_DEFAULTS = {"l2": 1.0}


@pytest.mark.parametrize(
    "case",
    ["class attribute", "slots", "method reads a global", "default argument", "object argument"],
)
def test_what_a_function_reads_through_classes_defaults_and_arguments_is_checked(case) -> None:
    """Found in user testing: these changes gave the old trace's result."""
    global SCALE
    x = np.array([1.0, 2.0])
    m = _Model(np.array([1.0, 1.0]))
    fs = {
        "class attribute": lambda v: np.sum(_Config.l2 * v**2),
        "slots": lambda v: np.sum(m.w * v**2),
        "method reads a global": lambda v: np.sum(m.predict(v)),
        "default argument": lambda v, cfg=_DEFAULTS: np.sum(cfg["l2"] * v**2),
        "object argument": lambda v, model: np.sum(model.predict(v)),
    }
    f = fs[case]
    args = (x, m) if case == "object argument" else (x,)
    first = pz.gradient(f, *args)[0]
    saved = (_Config.l2, SCALE, _DEFAULTS["l2"], m.w)
    try:
        _Config.l2, SCALE, _DEFAULTS["l2"], m.w = 3.0, 5.0, 4.0, np.array([2.0, 2.0])
        again = pz.gradient(f, *args)[0]
        pz.clear_cache()
        np.testing.assert_array_equal(again, pz.gradient(f, *args)[0])
        assert not np.array_equal(again, first)
    finally:
        _Config.l2, SCALE, _DEFAULTS["l2"], m.w = saved


class _Trainer:
    def __init__(self):
        self.w = np.array([1.0, 2.0])
        self.history: list[float] = []

    def loss(self, x):
        return np.sum(self.w * x**2)


def test_a_trainer_object_stays_correct_across_steps() -> None:
    t = _Trainer()
    x = np.array([1.0, 1.0])
    for k in range(20):
        t.history.append(float(k))  # changes on every step: a re-trace, never a stale result
        np.testing.assert_array_equal(pz.gradient(t.loss, x)[0], 2 * t.w * x)
    t.w = np.array([3.0, 3.0])
    np.testing.assert_array_equal(pz.gradient(t.loss, x)[0], [6.0, 6.0])


def test_a_fresh_bound_method_reuses_its_instance_trace_and_does_not_keep_it_alive() -> None:
    """Found by the regression sweep: pz.gradient(model.loss, w) traced again on every call."""
    import gc
    import weakref

    a, b = _Trainer(), _Trainer()
    b.w = np.array([5.0, 7.0])
    x = np.array([1.0, 3.0])
    first = pz.make_program(a.loss, x)
    assert pz.make_program(a.loss, x) is first  # a new bound method object, the same trace
    assert pz.make_program(b.loss, x) is not first  # another instance, its own trace
    np.testing.assert_array_equal(pz.gradient(b.loss, x)[0], 2 * b.w * x)
    a.w = np.array([2.0, 2.0])
    np.testing.assert_array_equal(pz.gradient(a.loss, x)[0], 2 * a.w * x)
    gone = weakref.ref(a)
    del a, first
    gc.collect()
    assert gone() is None


def test_attributes_read_by_reflection_or_dunders_are_checked() -> None:
    """Found in the regression sweep: following only attributes the code names missed these."""
    import dataclasses

    @dataclasses.dataclass
    class HP:
        a: float = 1.0
        b: float = 2.0

    class Bag:
        def __init__(self):
            self._d = {"w": 1.0}

        def __getitem__(self, k):
            return self._d[k]

    hp, bag, fixed = HP(), Bag(), {0}
    f = lambda x: np.sum(x * sum(dataclasses.astuple(hp))) * bag["w"] + (1.0 if 0 in fixed else 0.0) * x[0]  # noqa: E731
    x = np.array([1.0, 2.0])
    pz.gradient(f, x)
    hp.b, bag._d["w"] = 5.0, 2.0
    fixed.discard(0)
    np.testing.assert_array_equal(pz.gradient(f, x)[0], [12.0, 12.0])


def test_the_guard_never_runs_user_code_or_trips_on_dead_proxies() -> None:
    import weakref

    class Sneaky:
        __slots__ = ("a",)

        def __getattr__(self, name):
            raise AssertionError(f"the guard read {name}")

    class Target:
        v = 2.0

    target = Target()
    proxy = weakref.proxy(target)
    s = Sneaky()
    f = lambda x: np.sum(x) * (1.0 if s is not None and proxy is not None else 0.0)  # noqa: E731
    np.testing.assert_array_equal(pz.gradient(f, np.ones(2))[0], [1.0, 1.0])
    del target
    np.testing.assert_array_equal(pz.gradient(f, np.ones(2))[0], [1.0, 1.0])


@pytest.mark.parametrize(
    "f",
    [
        lambda x: np.flip(m=x, axis=0),
        lambda x: np.tile(A=x, reps=2),
        lambda x: np.roll(a=x, shift=1, axis=1),
        lambda x: np.linalg.solve(a=x[:, :2] + 3.0 * np.eye(2), b=x[:, 2]),
        lambda x: np.empty_like(prototype=x, shape=(2,)) * 0.0 + x[0, :2],
        lambda x: np.clip(a=x, a_min=0.0, a_max=1.0),
        lambda x: np.dot(a=x, b=x.T),
        lambda x: np.take(a=x, indices=[0, 2], axis=1),
        lambda x: np.mean(a=x, axis=0),
    ],
    ids=["flip", "tile", "roll", "solve", "empty_like", "clip", "dot", "take", "mean"],
)
def test_numpy_parameters_given_by_keyword(f):
    x = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    np.testing.assert_allclose(pz.make_program(f, x)(x)[0], f(x), rtol=1e-15)


class _Dropout:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def loss(self, w):
        keep = self.rng.random(w.shape) > 0.5
        return np.sum(np.where(keep, w, 0.0) ** 2)


@pytest.mark.parametrize("where", ["closure", "attribute", "global-legacy", "python-random"])
def test_random_draws_inside_a_traced_function_are_new_on_each_call(where):
    from pyzygote.random_draws import RandomDrawWarning

    w = np.arange(1.0, 7.0)
    if where == "closure":
        rng = np.random.default_rng(1)
        make = lambda: (lambda w: np.sum((w + rng.normal(size=w.shape)) ** 2))  # noqa: E731
        reset = lambda: rng.bit_generator.__setstate__(np.random.default_rng(1).bit_generator.state)  # noqa: E731
    elif where == "attribute":
        model = _Dropout(2)
        make = lambda: model.loss  # noqa: E731
        reset = lambda: setattr(model, "rng", np.random.default_rng(2))  # noqa: E731
    elif where == "global-legacy":
        make = lambda: (lambda w: np.sum(w * np.random.rand(*w.shape)))  # noqa: E731
        reset = lambda: np.random.seed(3)  # noqa: E731
    else:
        import random

        make = lambda: (lambda w: np.sum(w) * random.gauss(0.0, 1.0))  # noqa: E731
        reset = lambda: random.seed(5)  # noqa: E731
    f = make()
    reset()
    eager = [f(w) for _ in range(3)]
    reset()
    with pytest.warns(RandomDrawWarning, match="draws random numbers while it is traced") as record:
        traced = [pz.withgradient(make() if where == "attribute" else f, w)[0] for _ in range(3)]  # a new bound method each time
    assert len(record) == 1  # once per function
    np.testing.assert_allclose(traced, eager, rtol=1e-14)
    assert len(set(np.round(traced, 12))) == 3


def test_functions_that_draw_nothing_keep_their_trace():
    import warnings

    f = lambda w: np.sum(w**2)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pz.gradient(f, np.ones(3))
        prog = pz.make_program(f, np.ones(3))
    assert pz.make_program(f, np.ones(3)) is prog


def test_clip_method_takes_numpy_keywords():
    x = np.array([-1.0, 0.5, 2.0])
    f = lambda x: (x.clip(min=0.0), x.clip(0.0, 1.0), x.clip(max=1.0), x.clip(-0.5))  # noqa: E731
    for got, want in zip(pz.make_program(f, x)(x), f(x)):
        np.testing.assert_array_equal(got, want)


def test_attributes_set_on_functions_are_checked_before_a_trace_is_reused():
    def prior() -> None:
        pass

    def loss(x):
        return loss.scale * np.sum(x**2) / prior.sigma**2

    x = np.array([1.0, 2.0])
    loss.scale, prior.sigma = 1.0, 1.0
    np.testing.assert_array_equal(pz.grad(loss)(x), 2 * x)
    loss.scale = 3.0
    np.testing.assert_array_equal(pz.grad(loss)(x), 6 * x)
    prior.sigma = 0.5
    np.testing.assert_array_equal(pz.grad(loss)(x), 24 * x)


DEEP_CONFIG = {"stiffness": 1.0}


def _force(x):
    return DEEP_CONFIG["stiffness"] * x


def _element(x):
    return _force(x)


def _assemble(x):
    return _element(x)


def _model(x):
    return _assemble(x)


def _predict(x):
    return _model(x)


def _deep_loss(x):
    return np.sum(_predict(x) ** 2)


def test_globals_read_at_the_end_of_a_long_chain_of_helpers_are_checked():
    x = np.array([1.0, 2.0])
    try:
        np.testing.assert_array_equal(pz.grad(_deep_loss)(x), 2 * x)
        DEEP_CONFIG["stiffness"] = 3.0  # read six calls deep
        np.testing.assert_array_equal(pz.grad(_deep_loss)(x), 18 * x)
    finally:
        DEEP_CONFIG["stiffness"] = 1.0


def test_scipy_integrators_in_a_loss_point_to_odesolve():
    from scipy.integrate import odeint, solve_ivp

    def with_args(p):
        return np.sum(solve_ivp(lambda t, u, k: -k * u, (0.0, 1.0), [1.0], t_eval=[1.0], args=(p[0],)).y)

    def with_closure(p):
        return np.sum(odeint(lambda u, t: -p[0] * u, [1.0], [0.0, 1.0]))

    for loss, name in ((with_args, "solve_ivp"), (with_closure, "odeint")):
        with pytest.raises(pz.UnsupportedOperationError, match=rf"{name} was called on a traced value.*Use pz.odesolve"):
            pz.grad(loss)(np.array([0.5]))


def test_errors_about_traced_values_name_the_users_line():
    def loglik(theta):
        theta = np.asarray(theta, dtype=float)  # a common first line, which cannot take a traced value
        return -0.5 * np.sum(theta**2)

    with pytest.raises(pz.TracerBoolError, match=r"(?s)this line converts traced values.*line \d+, in loglik: theta = np.asarray"):
        pz.grad(loglik)(np.array([0.3, -1.2]))

    def collected(p):  # user testing: results appended in a loop, then np.array of the list
        out = [p[0] * k for k in range(3)]
        return np.mean((np.array(out) - 1.0) ** 2)

    with pytest.raises(pz.TracerBoolError, match=r"^this line converts traced values .*: make an array of a list of traced values .* with np.stack\(values\)"):
        pz.grad(collected)(np.ones(1))

    def branches(x):
        if np.sum(x) > 0:
            return np.sum(x)
        return -np.sum(x)

    with pytest.raises(pz.TracerBoolError, match=r"(?s)bool\(\)/if of a traced value.*in branches: if np.sum\(x\) > 0:"):
        pz.grad(branches)(np.array([0.3, -1.2]))


def test_positional_parameters_read_from_numpy_docstrings():
    """numpy before 2.3 gives C functions no signature: their docstring's first lines name them."""
    from pyzygote.tracer import _documented_positional

    class Fake:
        __name__ = "empty_like"
        __doc__ = "\n    empty_like(prototype, dtype=None, order='K', subok=True, shape=None, *,\n               device=None)\n"

    class Joined:
        __name__ = "concatenate"
        __doc__ = 'concatenate((a1, a2, ...), axis=0, out=None, dtype=None, casting="same_kind")'

    assert _documented_positional(Fake()) == ["prototype", "dtype", "order", "subok", "shape"]
    assert _documented_positional(Joined()).index("out") == 2


@pytest.mark.parametrize(
    "op",
    [lambda i: i & 3, lambda i: 3 | i, lambda i: i ^ 1, lambda i: ~i, lambda i: i.__iand__(3)],
    ids=["and", "ror", "xor", "invert", "iand"],
)
def test_bitwise_operators_on_integers_are_refused_not_made_logical(op):
    x = np.arange(6.0)
    with pytest.raises(pz.UnsupportedOperationError, match="bitwise operator"):
        pz.make_program(lambda x: op((x * 1).astype(np.int64)).astype(float), x)


def test_logical_operators_on_booleans_still_work():
    x = np.array([-1.0, 0.5, 2.0, 3.0])
    f = lambda x: ((x > 0) & (x < 2.5)) | ~(x > -0.5) ^ (x > 2.9)  # noqa: E731
    np.testing.assert_array_equal(pz.make_program(f, x)(x)[0], f(x))

    def g(x):
        m = x > 0
        m &= x < 2.5
        m |= x < -0.5
        return np.where(m, x, 0.0)

    np.testing.assert_array_equal(pz.make_program(g, x)(x)[0], g(x))


def test_a_branch_next_to_np_array_is_not_called_a_conversion():
    def f(x):
        if x[0] > np.array(0.0):
            return np.sum(x)
        return -np.sum(x)

    with pytest.raises(pz.TracerBoolError) as info:
        pz.grad(f)(np.ones(2))
    assert str(info.value).startswith("bool()/if of a traced value")


def test_one_operand_einsum_is_a_view_where_numpy_makes_one():
    def f(x):
        y = np.concatenate([x, x])
        z = np.einsum("i->i", y)  # a view of y in numpy
        z[0] = 100.0
        d = np.einsum("ii->i", np.outer(x, x))  # a view of a temporary
        s = np.einsum("i->", y)  # a sum: a new value
        return y, d, s

    x = np.array([1.0, 2.0, 3.0])
    for got, want in zip(pz.make_program(f, x)(x), f(x)):
        np.testing.assert_array_equal(got, want)


class _SelfReferencing:
    def __init__(self) -> None:
        self.w = np.ones(3)
        self.activation = self.relu  # a bound method of itself: a cycle through the instance

    def relu(self, z):
        return np.maximum(z, 0.0)

    def loss(self, x):
        return np.sum(self.activation(self.w * x))


def test_the_method_cache_does_not_keep_an_instance_that_refers_to_itself_alive() -> None:
    """Found in review: the cached trace's record of what it read held the instance."""
    import gc
    import weakref

    refs = []
    for _ in range(3):
        m = _SelfReferencing()
        refs.append(weakref.ref(m))
        np.testing.assert_array_equal(pz.gradient(m.loss, np.array([1.0, -1.0, 2.0]))[0], [1.0, 0.0, 1.0])
        m.w = np.full(3, 2.0)  # still checked: a changed attribute re-traces
        np.testing.assert_array_equal(pz.gradient(m.loss, np.array([1.0, -1.0, 2.0]))[0], [2.0, 0.0, 2.0])
        del m
    gc.collect()
    assert all(r() is None for r in refs)


def test_derivative_programs_share_the_traces_copy_of_closed_over_data() -> None:
    """User testing: a closed-over data set of 120 MB was copied once more by each derivative
    program (+350 MB resident); a change to it is still noticed."""
    X = np.random.default_rng(0).normal(size=(300, 40))
    w = np.zeros(40)

    def loss(w: Any) -> Any:
        return np.mean((X @ w - 1.0) ** 2)

    import pyzygote.tracing as tracing

    pz.clear_cache()
    g0 = pz.grad(loss)(w)
    pz.hessian(loss, w)
    held = set()
    for traced in tracing._CACHE[loss].values():
        stack = [traced.program]
        while stack:
            prog = stack.pop()
            held.update(c.ctypes.data for c in prog.consts if c.size == X.size)
            for v in prog._compiled.values():
                stack.extend(q for q in (v if isinstance(v, tuple) else (v,)) if isinstance(q, pz.Program))
    assert len(held) == 1  # one private copy for the trace and all its derivative programs
    X[0, 0] += 1.0
    assert not np.allclose(pz.grad(loss)(w), g0)


def test_reads_of_single_entries_send_their_cotangents_back_in_one_scatter() -> None:
    """User testing: a right-hand side reading 73 parameters by index made 73 scatters into the
    parameter vector, and 72 sums of them, in its derivative program."""
    from collections import Counter

    from pyzygote.transforms.vjp import vjp_programs

    def f(p: Any) -> Any:
        return p[0] * p[3] + np.sin(p[1]) - p[2] ** 2 + p[3] * p[5] + p[1:3].sum() + p[-1]

    p = np.linspace(0.1, 1.0, 8)
    _, bwd = vjp_programs(pz.make_program(f, p))
    counts = Counter(e.prim.name for e in bwd.eqns)
    assert counts["scatter_add"] == 1 and counts["add_any"] == 0, counts
    (g,) = pz.gradient(f, p)
    want = np.zeros(8)
    want[0], want[3], want[1], want[2], want[5], want[7] = p[3], p[0] + p[5], np.cos(p[1]) + 1, -2 * p[2] + 1, p[3], 1.0
    np.testing.assert_allclose(g, want, rtol=1e-15)


def test_gradient_programs_hold_no_equation_that_changes_nothing() -> None:
    """User testing: a cart-pole rollout's gradient spent a sixth of its equations on x ** 1.0,
    np.where(False, 0, ...) and 1.0 * ct, and called np.einsum only to scale a vector."""
    from collections import Counter

    from pyzygote.engines.numpy_engine import grad_program
    from pyzygote.ir import Literal

    def rollout(k: Any) -> Any:
        s, cost = np.array([0.1, 0.2, -0.3, 0.4]), 0.0
        for _ in range(3):
            force = -np.dot(k, s)
            cost = cost + s[0] ** 2 + 0.5 * force**2 + s[1] ** 3
            s = s + 0.1 * np.array([s[2], s[3], force * np.cos(s[1]), -force])
        return cost

    k = np.array([-1.0, -25.0, -2.0, -5.0])
    prog = grad_program(pz.make_program(rollout, k))
    counts = Counter(e.prim.name for e in prog.eqns)
    assert counts["select"] == 0, counts
    ones = [e for e in prog.eqns if any(isinstance(a, Literal) and np.all(a.value == 1.0) for a in e.inputs)]
    assert not [e for e in ones if e.prim.name in ("mul", "pow")], ones
    scalings = [e for e in prog.eqns if e.prim.name == "einsum" and "" in e.params["spec"].split("->")[0].split(",")]
    assert not scalings, scalings
    (g,) = pz.gradient(rollout, k)
    np.testing.assert_allclose(g, pz.testing.numerical_gradient(rollout, k)[0], rtol=1e-7)
    # a constant exponent's derivative y * x ** (y - 1), bit for bit, at zeros of both signs too
    x = np.array([0.0, -0.0, -3.0, 1.5])
    for y, want in ((2.0, 2.0 * x), (3.0, 3.0 * x**2.0)):
        _, tangent = pz.jvp(lambda v, y=y: v**y, (x,), (np.ones(4),))
        np.testing.assert_array_equal(tangent, want)
        assert np.array_equal(np.signbit(tangent), np.signbit(want))
    # an exponent of 0 keeps its guard: x ** 0 is constant, also at x = 0
    _, tangent = pz.jvp(lambda v: v ** np.array([0.0, 2.0, 0.0, 1.0]), (x,), (np.ones(4),))
    np.testing.assert_array_equal(tangent, [0.0, -0.0, 0.0, 1.0])


def test_increments_at_fancy_positions_keep_no_mask_per_assignment() -> None:
    """User testing: a finite-element loop of K[np.ix_(d, d)] += ke kept, per element, a mask
    of K's size (984 MB at 992 dofs) and made a new K per element (13 s a gradient at 1,722
    dofs).  y[idx] += k is now y + scatter_add(k), and a run of them one scatter."""
    n = 6
    unit = np.array([[1.0, -1.0], [-1.0, 1.0]])

    def assemble(E: Any) -> Any:
        K = np.zeros_like(E, shape=(n, n))
        for e in range(n - 1):
            d = np.array([e, e + 1])
            K[np.ix_(d, d)] += E[e] * unit
        K[0, 0] += 1.0  # a spring at one end; a scalar increment
        return K

    E = np.linspace(1.0, 2.0, n - 1)
    prog = pz.make_program(assemble, E)
    assert not any(e.prim.name == "select" for e in prog.eqns)
    # the loop's increments are one scatter of all of them, as np.add.at would make
    assert sum(e.prim.name == "scatter_add" for e in prog.eqns) == 1
    assert not any(np.asarray(c).dtype == bool for c in prog.consts)
    np.testing.assert_array_equal(prog(E)[0], assemble(E))
    f = np.linspace(-1.0, 1.0, n)
    (g,) = pz.gradient(lambda e: np.sum(np.linalg.solve(assemble(e), f) ** 2), E)
    K = assemble(E)
    u = np.linalg.solve(K, f)
    lam = np.linalg.solve(K.T, 2 * u)
    np.testing.assert_allclose(g, -np.diff(lam) * np.diff(u), rtol=1e-12)

    def not_an_increment(E: Any) -> Any:  # reads another array, or y changed in between: assignment as before
        y = np.zeros_like(E, shape=(n,))
        z = E[0] * np.ones(n)
        y[1:3] = z[1:3] + 1.0
        t = y[2:4] * 1.0
        y[0] = E[1]
        y[2:4] = t + E[2]
        return y

    np.testing.assert_array_equal(pz.make_program(not_an_increment, E)(E)[0], not_an_increment(E))


def test_a_function_written_for_pytorch_or_jax_is_told_to_use_numpy():
    """Found in user testing: the torch version of a model given to pz.gradient failed in torch
    ("must be Tensor, not Tracer") without saying that pyzygote traces numpy code."""

    def torch_style(x):  # what torch.sin says when handed a traced value
        raise TypeError("sin(): argument 'input' (position 1) must be Tensor, not Tracer")

    with pytest.raises(TypeError) as info:
        pz.gradient(torch_style, np.ones(3))
    assert any("write the function with numpy" in note for note in getattr(info.value, "__notes__", []))


def test_a_tensor_made_of_a_traced_value_is_told_to_use_numpy():
    """Acceptance testing: torch.tensor(x) of a traced value fails inside torch's C code with
    "len() of unsized object", and jnp.asarray(x) with a long message about numpy's np.asarray;
    neither said that pyzygote traces numpy code.  A module named like torch's stands in for its
    conversion (the real libraries are checked below when installed)."""
    import types

    torch_like = types.ModuleType("torch._tensor_like")
    exec(
        "def tensor(x):\n    raise TypeError('len() of unsized object')\n"
        "def asarray(x):\n    import numpy\n    return numpy.asarray(x, dtype=float)\n",
        torch_like.__dict__,
    )
    for convert in (torch_like.tensor, torch_like.asarray):
        with pytest.raises((TypeError, pz.TracerBoolError)) as info:
            pz.gradient(lambda x, convert=convert: np.sum(convert(x) ** 2), np.ones(3))
        shown = str(info.value) + "".join(getattr(info.value, "__notes__", []))
        assert "pyzygote traces numpy code" in shown, shown

    def plain(x):
        raise TypeError("len() of unsized object")  # the same words, from the user's own code

    with pytest.raises(TypeError) as info:
        pz.gradient(plain, np.ones(3))
    assert not getattr(info.value, "__notes__", [])


def test_an_unrelated_error_in_a_function_that_names_torch_gets_no_torch_note():
    """The note is for the failing line: a function that holds torch (its dtype, a seed, a branch
    not taken) and fails elsewhere on a traced value, in numpy terms, was told it had handed the
    value to PyTorch or JAX (review: len() of a traced number names neither)."""
    import functools
    import types

    torch_like = types.ModuleType("torch._names_only")
    torch_like.float32 = object()

    def f(x):
        dtype = torch_like.float32  # noqa: F841 (held, never given a traced value)
        return len(x[0])  # a numpy mistake, not torch_like's, nor torch.tensor's

    with pytest.raises(TypeError) as info:
        pz.gradient(f, np.ones(3))
    assert not getattr(info.value, "__notes__", []), info.value.__notes__

    torch_like.tensor = functools.partial(len)  # C code, as torch.tensor: no frame of its own
    torch_like.tensor.__module__ = torch_like.__name__

    def g(x):
        convert = torch_like.tensor  # the conversion under another name, on the failing line
        return np.sum(convert(x[0]))

    with pytest.raises(TypeError) as info:
        pz.gradient(g, np.ones(3))
    assert any("pyzygote traces numpy code" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("library", ["torch", "jax.numpy"])
def test_torch_and_jax_conversions_of_a_traced_value_are_explained(library):
    xp = pytest.importorskip(library)
    converts = (xp.as_tensor, xp.tensor, xp.from_numpy) if library == "torch" else (xp.asarray, xp.array)
    for convert in converts:
        with pytest.raises(Exception) as info:
            pz.gradient(lambda x, convert=convert: xp.sum(convert(x) ** 2), np.linspace(0.1, 1.0, 5))
        shown = str(info.value) + "".join(getattr(info.value, "__notes__", []))
        assert "pyzygote traces numpy code" in shown, shown


def test_writes_into_arguments_follow_numpys_rules_or_are_refused():
    """Found by the API fuzzer: a write into a read-only argument was accepted, and a write into
    an argument sharing memory with another (tied weights) was not seen through the other."""

    def normalise_in_place(p):
        p["enc"] /= np.sqrt(np.sum(p["enc"] ** 2))
        return np.sum(p["dec"] * np.array([1.0, 0.0, 0.0]))

    W = np.array([3.0, 0.0, 4.0])
    with pytest.raises(pz.UnsupportedOperationError, match="shares memory with another"):
        pz.withgradient(normalise_in_place, {"enc": W, "dec": W})
    value, _ = pz.withgradient(normalise_in_place, {"enc": W, "dec": W.copy()})  # separate arrays: fine
    assert value == 3.0
    frozen = np.array([1.0, 2.0])
    frozen.flags.writeable = False

    def doubles_first(x):
        x[0] = 2.0 * x[0]
        return np.sum(x)

    with pytest.raises(ValueError, match="assignment destination is read-only"):
        pz.gradient(doubles_first, frozen)
    assert pz.gradient(lambda x: np.sum(x**2), frozen)[0].tolist() == [2.0, 4.0]  # reading it is fine


def test_tracing_and_deriving_leave_no_reference_cycle_per_operation() -> None:
    """A long loop's first gradient spent 0.3 s in one garbage collection: each traced numpy call
    left a cycle (a closure calling itself), and each trace's builder and input tracers held
    each other, with every equation of the trace."""
    import gc

    def cyclic_garbage(steps: int) -> int:
        def f(th: Any) -> Any:
            s = 1.0
            for _ in range(steps):
                s = s + np.sin(th[0] * s) * th[1] - np.maximum(s, 0.5) * 0.01
            return s

        gc.collect()
        gc.disable()
        try:
            pz.gradient(f, np.array([0.3, 0.2]), engine="numpy")
            return gc.collect()
        finally:
            gc.enable()

    cyclic_garbage(5)  # first calls set up caches
    assert cyclic_garbage(200) - cyclic_garbage(10) < 50


@pytest.mark.parametrize(
    "join",
    [
        lambda x: np.concatenate([np.ones((2, 3)), x.reshape(2, 2)]),
        lambda x: np.concatenate([x, np.ones((2, 2))]),
        lambda x: np.concatenate([x, 1.0]),
        lambda x: np.concatenate([x[0], x[1]]),
        lambda x: np.concatenate([x.reshape(2, 2), np.ones((3, 3))], axis=1),
        lambda x: np.concatenate([x, np.ones((2, 2))], axis=5),
    ],
)
def test_joining_errors_are_numpys_whole_message(join) -> None:
    """numpy's message names both arrays and the dimension; pyzygote's had dropped the second half."""
    with pytest.raises(ValueError) as expected:
        join(np.ones(4))
    with pytest.raises(type(expected.value), match=f"^{re.escape(str(expected.value))}$"):
        pz.jacobian(join, np.ones(4))


def test_a_math_function_on_a_traced_value_is_named_first_with_its_numpy_equivalent() -> None:
    """User testing: the hint about the math module came in the middle of a long message."""
    import math

    import scipy.special  # noqa: F401

    for f, name, instead in (
        (lambda x: math.exp(x[0]) + x[1], "math.exp", "np.exp"),
        (lambda x: math.atan(x[0]) * x[1], "math.atan", "np.arctan"),
        (lambda x: math.lgamma(x[0]) * x[1], "math.lgamma", "scipy.special.gammaln"),
    ):
        with pytest.raises(pz.TracerBoolError, match=rf"^{re.escape(name)} of a traced value: .* Use {re.escape(instead)}, which pyzygote traces"):
            pz.gradient(f, np.ones(2))
    with pytest.raises(pz.TracerBoolError, match=r"^float\(\) of a traced value"):
        pz.gradient(lambda x: float(x[0]), np.ones(2))
    # review: a line with another math call, or float(), or a math function numpy lacks, is not guessed at
    for f in (lambda x: math.sqrt(2.0) * float(x[0]), lambda x: math.factorial(3) + math.log(x[0]), lambda x: math.fsum([x[0], x[1]])):
        with pytest.raises(pz.TracerBoolError, match=r"^float\(\) of a traced value.*The math module's functions take Python floats"):
            pz.gradient(f, np.ones(2))


def test_formatting_or_converting_a_traced_value_says_how_to_see_values() -> None:
    """User testing: print(f"loss {s:.3f}") inside a differentiated function raised a bare
    TypeError ("unsupported format string passed to Tracer.__format__"), and float(s) did not say
    how to log a value. Both now say that a traced value has no number yet and how to see it:
    as an auxiliary output with has_aux=True, or printed outside; the aux way works as said."""
    def formatted(spec: str) -> Any:
        def f(x: Any) -> Any:
            s = np.sum(x**2)
            print(format(s, spec))
            return s

        return f

    for spec in (".3f", ">8", "e"):
        with pytest.raises(pz.TracerBoolError, match=rf"^formatting a traced value \(f\"{{s:{re.escape(spec)}}}\".*has_aux=True") as info:
            pz.grad(formatted(spec))(np.ones(3))
        assert "in f: print(format(s, spec))" in str(info.value)  # the user's line

    def fstring(x: Any) -> Any:
        s = np.sum(x**2)
        print(f"loss {s:.3f}")
        return s

    with pytest.raises(pz.TracerBoolError, match=r"values are not numbers yet.*pz.value_and_grad\(f, has_aux=True\)"):
        pz.gradient(fstring, np.ones(3))
    with pytest.raises(pz.TracerBoolError, match=r"^float\(\) of a traced value.*return it as an auxiliary output.*has_aux=True"):
        pz.grad(lambda x: float(np.sum(x)) + np.sum(x))(np.ones(3))
    # no format spec: the repr, as print(s) shows, not an error
    shown = []
    pz.grad(lambda x: shown.append(f"{np.sum(x)}|{format(np.sum(x))}") or np.sum(x))(np.ones(2))
    assert shown == ["Tracer<f64[]>|Tracer<f64[]>"]
    # what the message suggests gives the values
    (loss, aux), g = pz.value_and_grad(lambda x: (np.sum(x**2), {"loss": np.sum(x**2), "s": np.sum(x)}), has_aux=True)(np.ones(3))
    assert f"{aux['loss']:.3f} {aux['s']:.1f}" == "3.000 3.0"
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])


def test_a_nested_transformation_reading_the_enclosing_traces_values_is_not_called_unchecked() -> None:
    """User testing: a PINN's per-point second derivative, pz.grad(pz.grad(lambda x: net(th, x))),
    inside a differentiated loss was warned about as reading more than 2000 objects: the walk
    went into the enclosing trace through its traced parameters."""
    from pyzygote.tracing import UncheckedDataWarning

    rng = np.random.default_rng(0)
    theta = {"W1": rng.standard_normal((1, 16)), "b1": rng.standard_normal(16), "W2": rng.standard_normal((16, 16)) / 4,
             "b2": np.zeros(16), "w2": rng.standard_normal(16) / 4}  # fmt: skip

    def net(th: Any, x: Any) -> Any:
        h = np.tanh(np.reshape(x, (1, 1)) @ th["W1"] + th["b1"])
        return np.tanh(h @ th["W2"] + th["b2"])[0] @ th["w2"]

    def loss(th: Any) -> Any:
        u_xx = pz.grad(pz.grad(lambda x: net(th, x)))
        return np.mean(np.stack([u_xx(x) for x in np.linspace(0.0, 1.0, 20)]) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UncheckedDataWarning)
        g = pz.grad(loss)(theta)
    h = 1e-6
    bumped = {**theta, "w2": theta["w2"] + h * np.eye(16)[3]}
    lowered = {**theta, "w2": theta["w2"] - h * np.eye(16)[3]}
    np.testing.assert_allclose(g["w2"][3], (loss(bumped) - loss(lowered)) / (2 * h), rtol=1e-6)


def test_a_range_indexes_as_the_integer_array_it_spells() -> None:
    """User testing: P[range(N), y], which numpy accepts, was refused as an unsupported index."""
    z = np.arange(6.0).reshape(3, 2)
    y = np.array([0, 1, 1])
    for index in ((range(3), y), range(1, 3), (range(2), 0), (range(0),)):
        (g,) = pz.gradient(lambda v: np.sum(v[index] ** 2), z)
        expected = np.zeros_like(z)
        np.add.at(expected, index, 2 * z[index])
        np.testing.assert_array_equal(g, expected)

    def assign(v: Any) -> Any:
        w = np.zeros_like(v)
        w[range(2), 0] = v[range(2), 1]
        return np.sum(3 * w)

    np.testing.assert_array_equal(pz.gradient(assign, z)[0], [[0, 3], [0, 3], [0, 0]])


def test_an_if_on_data_passed_positionally_says_data_need_not_be_traced() -> None:
    """User testing: a Kalman filter skipping missing observations with `if np.isnan(Y[t])`, Y
    passed positionally to pz.gradient, got only the np.where advice."""
    Y = np.array([1.0, np.nan, 2.0])

    def nll(theta: Any, Y: Any) -> Any:
        total = 0.0
        for t in range(len(Y)):
            if np.isnan(Y[t]):
                continue
            total = total + (Y[t] - theta[0]) ** 2
        return total

    with pytest.raises(pz.TracerBoolError, match=r"does not depend on the first argument.*keyword arguments, pz.gradient\(f, theta, Y=Y\)"):
        pz.gradient(nll, np.ones(1), Y)
    expected = [-2 * ((1.0 - 1.0) + (2.0 - 1.0))]
    np.testing.assert_allclose(pz.gradient(nll, np.ones(1), Y=Y)[0], expected)
    np.testing.assert_allclose(pz.grad(nll)(np.ones(1), Y), expected)
    with pytest.raises(pz.TracerBoolError) as info:  # a branch on the parameters: no such hint
        pz.gradient(lambda th, Y: th[0] if th[0] > 0 else 0.0, np.ones(1), Y)
    assert "does not depend on the first argument" not in str(info.value)


def test_a_random_draw_with_traced_parameters_gets_the_reparameterization() -> None:
    """User testing: np.random.normal(scale=x) with a traced x was told about np.zeros and
    np.asarray, which the line does not use."""
    x = np.linspace(0.1, 1.0, 5)
    rng = np.random.default_rng(0)
    for f in (lambda v: np.sum(v * np.random.normal(size=5, scale=v)), lambda v: np.sum(rng.normal(v, 1.0))):
        with pytest.raises(pz.TracerBoolError, match=r"^this line draws random numbers with traced parameters.*mu \+ sigma \* rng.standard_normal\(n\)"):
            pz.grad(f)(x)
    noise = np.random.default_rng(1).standard_normal(5)
    np.testing.assert_allclose(pz.grad(lambda v: np.sum(v * (0.0 + v * noise)))(x), 2 * x * noise, rtol=1e-14)


def test_messages_do_not_guess_beyond_what_they_know() -> None:
    """Review of the messages above: a method of each of many objects is no retrace; a branch on a
    dict argument's second entry is no branch on data; a draw without traced parameters beside
    an item assignment is no draw with traced parameters."""
    class Model:
        def __init__(self, k: float) -> None:
            self.k = k

        def loss(self, th: Any) -> Any:
            return self.k * np.sum(th**2)

    models = [Model(float(k)) for k in range(60)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", pz.RetraceWarning)
        for m in models:
            pz.gradient(m.loss, np.ones(2))
        for c in range(60):
            pz.gradient(lambda th, c=c: c * np.sum(th), np.ones(2))

    def branchy(params: Any) -> Any:
        return params["a"] if params["b"].sum() > 0 else 0.0

    with pytest.raises(pz.TracerBoolError) as info:
        pz.gradient(branchy, {"a": 1.0, "b": np.ones(2)})
    assert "does not depend on the first argument" not in str(info.value)

    rng = np.random.default_rng(0)

    def stores(x: Any) -> Any:
        a = np.zeros(2)
        for i in range(2):
            a[i] = x[i] * rng.normal()
        return np.sum(a)

    with pytest.raises(pz.TracerBoolError) as info:
        pz.grad(stores)(np.ones(2))
    assert "draws random numbers" not in str(info.value) and "np.zeros_like" in str(info.value)


def test_parameter_names_read_from_the_code_are_inspects() -> None:
    """The fast path for plain functions gives what inspect.signature gives (messages name arguments by them)."""
    import functools
    import inspect

    from pyzygote.tracing import _parameter_names

    def plain(a, b, c=1.0, *rest, d, **kw):  # type: ignore[no-untyped-def]
        return a

    def only(a, /, b):  # type: ignore[no-untyped-def]
        return a

    def closure_maker(k):  # type: ignore[no-untyped-def]
        def inner(x, y):  # type: ignore[no-untyped-def]
            z = x * k
            return z + y

        return inner

    @functools.wraps(only)
    def wrapper(*args):  # type: ignore[no-untyped-def]
        return only(*args)

    def by_inspect(f):  # type: ignore[no-untyped-def]
        names = []
        for p in inspect.signature(f).parameters.values():
            if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                break
            names.append(p.name)
        return names

    for f in (plain, only, closure_maker(2.0), wrapper, lambda u, p, t: u, lambda *a: a, np.sum):
        assert _parameter_names(f) == by_inspect(f), f
    assert by_inspect(wrapper) == ["a", "b"]  # functools.wraps: the wrapped function's names


def test_copy_and_deepcopy_of_a_traced_array_are_new_arrays_as_numpy_s() -> None:
    """User testing: copy.deepcopy of a traced array, and dataclasses.asdict of a dataclass holding
    traced arrays (it deep-copies them), raised "used after its trace ended"; copy.copy of a traced
    view wrote through to its base, a wrong gradient.  Gradients against closed forms."""
    import copy
    import dataclasses

    x = np.array([1.0, 2.0, 3.0])
    for cp in (copy.copy, copy.deepcopy):
        np.testing.assert_allclose(pz.gradient(lambda v: np.sum(cp(v) ** 3), x)[0], 3 * x**2, rtol=1e-15)

        def written(v: Any) -> Any:
            c = cp(v[1:])  # a copy of a view: writing it leaves v as it was (numpy's too)
            c[0] = 5.0
            return np.sum(v**2) + np.sum(c * v[1:])

        # d/dv of sum(v**2) + 5 v[1] + v[2] * v[2]
        np.testing.assert_allclose(pz.gradient(written, x)[0], [2.0, 4.0 + 5.0, 6.0 + 6.0], rtol=1e-15)
        assert written(x) == np.sum(x**2) + 5.0 * 2.0 + 9.0

    @dataclasses.dataclass
    class P:
        a: np.ndarray
        b: float

    def f(p: P) -> Any:
        d = dataclasses.asdict(p)
        return np.sum(d["a"] ** 2) * d["b"]

    g = pz.gradient(f, P(x, 2.0))[0]
    np.testing.assert_allclose(g.a, 2 * x * 2.0, rtol=1e-15)
    assert g.b == pytest.approx(np.sum(x**2), rel=1e-15)

    # in an ODE's right-hand side: u' = -a u, so d/da_i of sum_t u_i(t) = -sum_t t exp(-a_i t)
    t = np.linspace(0.0, 1.0, 3)
    a = np.array([0.5, 1.0])

    def loss(p: P) -> Any:
        return np.sum(pz.odesolve(lambda u, q, s: -dataclasses.asdict(q)["a"] * u, np.ones(2), t, p, reltol=1e-10, abstol=1e-10))

    np.testing.assert_allclose(pz.gradient(loss, P(a, 2.0))[0].a, -np.sum(t[:, None] * np.exp(-a * t[:, None]), axis=0), rtol=1e-7)


def test_a_copy_of_a_traced_python_number_is_still_a_python_number() -> None:
    """Found in integration review: copy.copy and copy.deepcopy of a traced Python float (a
    dataclass field b: float that dataclasses.asdict deep-copies) gave a float64 array, so its
    product with a float32 array was float64 (numpy: a float's copy is that float, float32)."""
    import copy
    import dataclasses

    x32 = np.array([1.5, -2.0], np.float32)

    @dataclasses.dataclass
    class P:
        b: float

    for f in (lambda s: copy.copy(s) * x32, lambda s: copy.deepcopy(s) * x32, lambda s: x32 / copy.copy(s * 2.0),
              lambda s: dataclasses.asdict(P(s))["b"] * x32):  # fmt: skip
        want = f(3.0)
        (got,) = pz.make_program(f, 3.0)(3.0)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    (g,) = pz.gradient(lambda s: np.sum(copy.copy(s) * x32), 3.0)
    assert g == pytest.approx(-0.5, rel=1e-7)

"""Right-hand sides that read values being differentiated from their closure (NumPy engine).

``lambda u, p, t: np.array([u[1], -w**2 * u[0]])`` inside a loss of ``w``: the captured values are
lifted into the right-hand side's program as parameters after p's entries
(:meth:`pyzygote.ode.rhs.RHS.trace_lifting`), so every derivative path treats them as p.  Checked
against closed forms (the harmonic oscillator u = cos(w t)), against the same values passed
through p, and against finite differences.
"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.ode import rhs as rhs_module

SENSEALGS = ["forward", "adjoint", "backsolve", "auto"]
TIGHT = dict(reltol=1e-10, abstol=1e-10)
T = np.linspace(0.0, 1.5, 7)
U0 = np.array([1.0, 0.0])


@pytest.fixture(autouse=True)
def _numpy_engine():
    with pz.engine("numpy"):
        yield


# --- the harmonic oscillator u'' = -w^2 u, u(0) = 1, u'(0) = 0: u = cos(w t) --------------------
def oscillator_loss(sensealg: str, alg: str = "Tsit5"):
    def loss(w):
        rhs = lambda u, p, t: np.array([u[1], -w**2 * u[0]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, U0, T, None, alg=alg, sensealg=sensealg, **TIGHT)[:, 0] ** 2)

    return loss


def closed_value(w: float) -> float:
    return float(np.sum(np.cos(w * T) ** 2))


def closed_gradient(w: float) -> float:  # d/dw sum cos^2(w t) = -sum t sin(2 w t)
    return float(-np.sum(T * np.sin(2 * w * T)))


def closed_second(w: float) -> float:
    return float(-np.sum(2 * T**2 * np.cos(2 * w * T)))


@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_the_brief_example_matches_the_closed_form(sensealg):
    loss = oscillator_loss(sensealg)
    value, (g,) = pz.withgradient(loss, 2.0)
    assert value == pytest.approx(closed_value(2.0), rel=1e-9)
    assert g == pytest.approx(closed_gradient(2.0), rel=1e-7)
    assert pz.hessian(lambda v: loss(v[0]), np.array([2.0]))[0, 0] == pytest.approx(closed_second(2.0), rel=1e-6)
    # a stiff solver's path (the Jacobian program of the lifted right-hand side) too
    assert pz.gradient(oscillator_loss(sensealg, "Rodas5P"), 2.0)[0] == pytest.approx(closed_gradient(2.0), rel=1e-5)


@pytest.mark.parametrize("sensealg", SENSEALGS)
def test_captured_values_give_the_derivatives_of_the_same_values_passed_through_p(sensealg):
    """The same program either way (w lifted as itself: ``w * u[0]`` mixes it with u inside the
    right-hand side), so the same steps and the same derivatives, to rounding."""

    def captured(w, k):
        rhs = lambda u, p, t: np.array([u[1], -(w * u[0]) * w - p["k"] * u[1]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, U0, T, {"k": k}, alg="Tsit5", sensealg=sensealg, **TIGHT) ** 2)

    def through_p(w, k):
        rhs = lambda u, p, t: np.array([u[1], -(p["w"] * u[0]) * p["w"] - p["k"] * u[1]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, U0, T, {"k": k, "w": w}, alg="Tsit5", sensealg=sensealg, **TIGHT) ** 2)

    args = (2.0, 0.3)
    g_c, g_p = pz.gradient(captured, *args), pz.gradient(through_p, *args)
    np.testing.assert_allclose(g_c, g_p, rtol=1e-10)
    fd = [(captured(2.0 + 1e-6, 0.3) - captured(2.0 - 1e-6, 0.3)) / 2e-6, (captured(2.0, 0.3 + 1e-6) - captured(2.0, 0.3 - 1e-6)) / 2e-6]
    np.testing.assert_allclose(g_c, fd, rtol=1e-6)
    x = np.array(args)
    np.testing.assert_allclose(pz.hessian(lambda v: captured(v[0], v[1]), x), pz.hessian(lambda v: through_p(v[0], v[1]), x), rtol=1e-8)
    # forward mode: a jvp, and a jvp of the gradient (Hessian-vector product)
    _, t_c = pz.jvp(lambda v: captured(v[0], v[1]), (x,), (np.array([1.0, -2.0]),))
    _, t_p = pz.jvp(lambda v: through_p(v[0], v[1]), (x,), (np.array([1.0, -2.0]),))
    assert t_c == pytest.approx(t_p, rel=1e-10)
    hv_c = pz.jvp(lambda v: pz.gradient(lambda y: captured(y[0], y[1]), v)[0], (x,), (np.array([0.5, 1.0]),))[1]
    hv_p = pz.jvp(lambda v: pz.gradient(lambda y: through_p(y[0], y[1]), v)[0], (x,), (np.array([0.5, 1.0]),))[1]
    np.testing.assert_allclose(hv_c, hv_p, rtol=1e-8)


@pytest.mark.parametrize("p_kind", ["none", "array", "dict", "tuple"])
@pytest.mark.parametrize("sensealg", ["forward", "adjoint"])
def test_every_kind_of_p_with_a_computed_u0(p_kind, sensealg):
    """u0 computed from the captured value, p in each form (constant, or differentiated with it)."""
    gamma0 = 0.25

    def make(p_kind):
        def loss(w, gamma):
            damping = {
                "none": lambda p: gamma0,
                "array": lambda p: p[0],
                "dict": lambda p: p["gamma"],
                "tuple": lambda p: p[1],
            }[p_kind]
            p = {"none": None, "array": np.array([gamma]) if np.ndim(gamma) else [gamma], "dict": {"gamma": gamma}, "tuple": (np.ones(2), gamma)}[p_kind]
            rhs = lambda u, p, t: np.stack([u[1], -(w * u[0]) * w - 2.0 * damping(p) * u[1]])  # noqa: E731
            u0 = np.stack([w, 0.0 * w])  # starts at u = w
            return np.sum(pz.odesolve(rhs, u0, T, p, alg="Tsit5", sensealg=sensealg, **TIGHT)[:, 0] ** 2)

        return loss

    loss = make(p_kind)
    w, gamma = 2.0, gamma0
    gw, gg = pz.gradient(loss, w, gamma)
    h = 1e-6
    assert gw == pytest.approx((loss(w + h, gamma) - loss(w - h, gamma)) / (2 * h), rel=1e-6)
    if p_kind == "none":
        assert gg == 0.0
    else:
        assert gg == pytest.approx((loss(w, gamma + h) - loss(w, gamma - h)) / (2 * h), rel=1e-6)
    # the under-damped oscillator's closed form for u(0) = w, u'(0) = 0
    wd = np.sqrt(w**2 - gamma**2)
    exact = lambda w_: np.sum((w_ * np.exp(-gamma * T) * (np.cos(np.sqrt(w_**2 - gamma**2) * T) + gamma / np.sqrt(w_**2 - gamma**2) * np.sin(np.sqrt(w_**2 - gamma**2) * T))) ** 2)  # noqa: E731
    assert wd > 0 and loss(w, gamma) == pytest.approx(exact(w), rel=1e-8)
    assert gw == pytest.approx((exact(w + h) - exact(w - h)) / (2 * h), rel=1e-6)


def test_a_captured_vector_counts_among_the_parameters(monkeypatch):
    """sensealg="auto" and the sensitivity columns see the lifted entries as parameters: a captured
    vector of 40 rates makes m = 40 + p's, and 41 directions of 40 states take the adjoint, where
    the same rates as constants (not differentiated) leave 1 direction, solved forward."""
    from pyzygote.ode import sensitivity

    rates = np.linspace(0.1, 2.0, 40)
    chosen = []
    resolve = sensitivity.resolve_sensealg

    def spy(*args, **kwargs):
        mode = resolve(*args, **kwargs)
        if args[1]:  # a solve's choice (odesolve first checks the name with n = 0)
            chosen.append((args[2], args[3], mode))
        return mode

    monkeypatch.setattr(sensitivity, "resolve_sensealg", spy)
    pz.gradient(lambda k: pz.odesolve(lambda u, p, t: -(rates * u) - p[0] * u, np.ones(40), T, k, alg="Tsit5")[-1, 0], np.array([0.5]))
    assert chosen and all(c == (1, 1, "forward") for c in chosen)
    chosen.clear()

    def loss(r, k):
        rhs = lambda u, p, t: -(r * u) - p[0] * u  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.ones(40), T, k, alg="Tsit5", **TIGHT)[-1])

    prog = pz.make_program(loss, rates, np.array([0.5]))
    (eqn,) = [e for e in prog.eqns if e.prim.name == "odesolve"]
    assert eqn.params["rhs"].m == 41 and eqn.inputs[1].aval.shape == (41,)
    gr, gk = pz.gradient(loss, rates, np.array([0.5]))
    assert chosen and all(c == (41, 41, "adjoint") for c in chosen)
    np.testing.assert_allclose(gr, -T[-1] * np.exp(-(rates + 0.5) * T[-1]), rtol=1e-8)
    np.testing.assert_allclose(gk, [np.sum(-T[-1] * np.exp(-(rates + 0.5) * T[-1]))], rtol=1e-8)


def test_values_read_from_deeper_down_a_helper_an_in_place_rhs_and_a_boolean():
    """Captured values need not sit in a closure cell: a dict the closure holds, a helper that
    reads it, an in-place right-hand side; a boolean computed from w is data among the lifted values."""

    def model(u, params):
        return np.array([u[1], -params["w"] ** 2 * u[0]])

    def via_dict(w):
        params = {"w": w}
        return np.sum(pz.odesolve(lambda u, p, t: model(u, params), U0, T, **TIGHT)[:, 0] ** 2)

    def in_place(w):
        def f(du, u, p, t):
            du[0] = u[1]
            du[1] = -w * w * u[0]

        return np.sum(pz.odesolve(f, U0, T, alg="Tsit5", **TIGHT)[:, 0] ** 2)

    def with_mask(w):
        fast = w > 1.0  # a traced boolean: lifted as data, with no derivative
        rhs = lambda u, p, t: np.array([u[1], np.where(fast, -(w * u[0]) * w, -u[0])])  # noqa: E731
        return np.sum(pz.odesolve(rhs, U0, T, alg="Tsit5", **TIGHT)[:, 0] ** 2)

    for loss in (via_dict, in_place, with_mask):
        value, (g,) = pz.withgradient(loss, 2.0)
        assert value == pytest.approx(closed_value(2.0), rel=1e-8), loss.__name__
        assert g == pytest.approx(closed_gradient(2.0), rel=1e-7), loss.__name__
    # below the switch, the mask selects -u: u = cos(t), whatever w
    value, (g,) = pz.withgradient(with_mask, 0.5)
    assert value == pytest.approx(closed_value(1.0), rel=1e-8) and g == 0.0


def test_values_captured_from_two_enclosing_traces():
    """A gradient inside a gradient: the right-hand side reads w (inner) and a (outer).
    L = sum cos^2(w a t); dL/dw = -sum a t sin(2 w a t), and its derivative in a."""

    def L(w, a):
        rhs = lambda u, p, t: np.array([u[1], -(w * a) ** 2 * u[0]])  # noqa: E731
        return np.sum(pz.odesolve(rhs, U0, T, alg="Tsit5", **TIGHT)[:, 0] ** 2)

    w, a = 1.5, 1.2
    inner = lambda a: pz.gradient(lambda w: L(w, a), w)[0]  # noqa: E731
    assert inner(a) == pytest.approx(-np.sum(a * T * np.sin(2 * w * a * T)), rel=1e-7)
    want = -np.sum(T * np.sin(2 * w * a * T) + 2 * w * a * T**2 * np.cos(2 * w * a * T))
    assert pz.gradient(inner, a)[0] == pytest.approx(want, rel=1e-6)


def test_a_fresh_closure_per_call_is_traced_and_derived_once_and_never_stale(monkeypatch):
    """The loss makes a new lambda at each call.  pz.gradient keeps the loss's trace, whose solve
    holds the lifted right-hand side: later calls neither trace nor derive again, and each gets its
    own w (an input of the program, not a constant).  A new trace of the loss (a new outer
    function) finds the same program and shares its derived programs."""
    built = []
    original = rhs_module.RHS.__init__

    def counting(self, *args, **kwargs):
        built.append(args[0])
        original(self, *args, **kwargs)

    monkeypatch.setattr(rhs_module.RHS, "__init__", counting)
    monkeypatch.setattr(rhs_module, "_LIFTED", collections.OrderedDict())  # nothing kept by other tests
    loss = oscillator_loss("forward")
    for w in (2.0, 2.5, 3.0):
        assert pz.gradient(loss, w)[0] == pytest.approx(closed_gradient(w), rel=1e-7)
    first = [b for b in built if not isinstance(b, str)]  # the right-hand side's RHS, not its derived systems
    assert len(first) == 1
    for w in (2.0, 2.5):  # a new function object each time: the loss is traced again
        assert pz.gradient(lambda v: loss(v), w)[0] == pytest.approx(closed_gradient(w), rel=1e-7)
    assert len([b for b in built if not isinstance(b, str)]) == 1
    programs = [pz.make_program(lambda v: loss(v), 2.0) for _ in range(2)]
    solves = [next(e for e in prog.eqns if e.prim.name == "odesolve") for prog in programs]
    assert solves[0].params["rhs"] is solves[1].params["rhs"]


def test_closures_over_different_constants_do_not_share_a_program():
    """The kept RHSs are matched by their program's exact constants: a closure over other data
    (or another literal) is another right-hand side."""

    def loss(w, c, scale):
        rhs = lambda u, p, t: -(w * u) * c * scale  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.ones(2), T, alg="Tsit5", **TIGHT)[-1])

    def solve_of(c, scale):
        prog = pz.make_program(lambda w: loss(w, c, scale), 1.0)
        return next(e for e in prog.eqns if e.prim.name == "odesolve").params["rhs"]

    a, b, c = solve_of(np.array([1.0, 2.0]), 1.0), solve_of(np.array([1.0, 3.0]), 1.0), solve_of(np.array([1.0, 2.0]), -1.0)
    assert len({id(a), id(b), id(c)}) == 3
    assert solve_of(np.array([1.0, 2.0]), 1.0) is a
    for cv in ([1.0, 2.0], [1.0, 3.0]):
        cv = np.array(cv)
        g = pz.gradient(lambda w: loss(w, cv, 1.0), 0.7)[0]
        assert g == pytest.approx(np.sum(-cv * T[-1] * np.exp(-0.7 * cv * T[-1])), rel=1e-8)


def test_kept_right_hand_sides_are_bounded_by_the_bytes_of_their_constants(monkeypatch):
    """Review: each kept RHS holds its program's constants, so closures over a data table per data
    set kept up to 32 tables.  The kept ones hold at most _LIFTED_BYTES of constants (the newest always)."""
    monkeypatch.setattr(rhs_module, "_LIFTED", collections.OrderedDict())
    monkeypatch.setattr(rhs_module, "_LIFTED_BYTES", 3 * 8 * 1000)

    def loss(w, table):
        rhs = lambda u, p, t: -(w * u) * np.mean(table * u[0])  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.ones(1), T, alg="Tsit5", **TIGHT))

    for k in range(5):
        table = np.full(1000, 1.0 + k)
        g = pz.gradient(lambda w: loss(w, table), 0.3)[0]  # u' = -0.3 c u^2, u = 1 / (1 + 0.3 c t)
        c = 1.0 + k
        assert g == pytest.approx(np.sum(-c * T / (1.0 + 0.3 * c * T) ** 2), rel=1e-7)
    assert len(rhs_module._LIFTED) == 3
    monkeypatch.setattr(rhs_module, "_LIFTED_BYTES", 100)  # less than one table: the newest is kept
    pz.gradient(lambda w: loss(w, np.full(1000, 9.0)), 0.3)
    assert len(rhs_module._LIFTED) == 1


def test_a_switching_time_read_from_the_closure_warns_as_one_in_p():
    def loss(t_on):
        rhs = lambda u, p, t: np.where(t >= t_on, -u, 0.0 * u)  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.ones(1), T, alg="Tsit5", tstops=[0.5], **TIGHT))

    with pytest.warns(pz.SwitchingTimeWarning):
        pz.gradient(loss, 0.5)


def test_a_switching_time_set_by_a_captured_integer_is_data_and_not_warned_about():
    """Review: an integer computed from w (np.argmax) reaches the right-hand side converted to a
    float by the loss's trace; it is data, as an integer leaf of p is: comparing t with it is a
    switch with no derivative to miss, not a SwitchingTimeWarning, and gets no sensitivities."""

    def loss(w):
        day = np.argmax(w)
        rhs = lambda u, p, t: np.where(t >= day, -w[0] * u, 0.0 * u)  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.ones(1), T, alg="Tsit5", tstops=[0.0, 1.0], **TIGHT))

    w = np.array([0.5, 0.9, 0.1])  # day 1: u = exp(-w0 (t - 1)) from t = 1 on
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = pz.gradient(loss, w)
    late = T >= 1.0
    np.testing.assert_allclose(g, [np.sum(-(T[late] - 1.0) * np.exp(-0.5 * (T[late] - 1.0))), 0.0, 0.0], rtol=1e-8)
    (solve,) = [e for e in pz.make_program(loss, w).eqns if e.prim.name == "odesolve"]
    assert solve.params["rhs"].m == 2  # p is absent: the day, then -w[0]
    assert solve.params["fixed"] == (0,)  # the day: no sensitivity solved for it
    with pytest.warns(pz.SwitchingTimeWarning):  # a switching time computed from w itself still warns
        pz.gradient(lambda w: np.sum(pz.odesolve(lambda u, p, t: np.where(t >= 2.0 * w[1], -u, 0.0 * u), np.ones(1), T, tstops=[1.8])), w)


class _Node:
    pass


def _deep_rate(u):
    return -_DEEP.a.b.c.d.e.k * u


_DEEP = _Node()


def test_a_value_stored_deeper_than_the_trace_cache_checks_is_not_read_stale():
    """Review: a right-hand side solved once with a constant rate, then inside a loss that stores w
    six attributes down (past the five levels the trace cache checks), reused the cached trace: w
    was read as the old 0.5 and its gradient was 0, silently.  A cached trace whose check stopped
    short is now compared with a trace made inside the loss, which lifts w."""
    node = _DEEP
    for name in "abcde":
        setattr(node, name, _Node())
        node = getattr(node, name)
    node.k = 0.5
    rhs = lambda u, p, t: _deep_rate(u)  # noqa: E731
    assert pz.odesolve(rhs, np.ones(1), T, **TIGHT)[-1, 0] == pytest.approx(np.exp(-0.5 * T[-1]), rel=1e-8)

    def loss(w):
        node.k = w
        return np.sum(pz.odesolve(rhs, np.ones(1), T, **TIGHT))

    value, (g,) = pz.withgradient(loss, 0.7)
    node.k = 0.5
    assert value == pytest.approx(np.sum(np.exp(-0.7 * T)), rel=1e-8)
    assert g == pytest.approx(np.sum(-T * np.exp(-0.7 * T)), rel=1e-7)


def test_pz_solve_of_a_problem_that_captures_a_differentiated_value_is_refused_clearly():
    def loss(w):
        rhs = lambda u, p, t: np.array([u[1], -w**2 * u[0]])  # noqa: E731
        return np.sum(pz.solve(pz.ODEProblem(rhs, U0, (0.0, 1.5)), saveat=T).u)

    with pytest.raises(pz.UnsupportedOperationError, match=r"reads a value being differentiated from its closure \(w \(a float64 scalar\)\).*pz.odesolve"):
        pz.gradient(loss, 2.0)

    def deeper(w):
        params = {"w": w}
        return np.sum(pz.solve(pz.ODEProblem(lambda u, p, t: -params["w"] * u, np.ones(3), (0.0, 1.5)), saveat=T).u)

    with pytest.raises(pz.UnsupportedOperationError, match=r"\(a float64 value of shape \(\)\).*not differentiable"):
        pz.gradient(deeper, 2.0)


def test_an_unused_captured_value_and_plain_calls_take_the_cached_path():
    """A closure cell holding a traced value that f does not read, and a plain call (no trace),
    give ordinary RHSs, kept per function as before."""

    def loss(w):
        unused = w * 2.0
        rhs = lambda u, p, t: -p[0] * u if unused is not None else u  # noqa: E731
        return np.sum(pz.odesolve(rhs, np.ones(1), T, [w], alg="Tsit5", **TIGHT))

    assert pz.gradient(loss, 0.7)[0] == pytest.approx(np.sum(-T * np.exp(-0.7 * T)), rel=1e-8)
    solve = next(e for e in pz.make_program(loss, 0.7).eqns if e.prim.name == "odesolve")
    assert solve.params["rhs"].m == 1  # p's one entry: nothing lifted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert oscillator_loss("auto")(2.0) == pytest.approx(closed_value(2.0), rel=1e-8)


def test_a_right_hand_side_that_is_a_gradient_of_an_energy_with_a_captured_stiffness():
    """Hamilton's equations from an energy whose stiffness k the right-hand side captures: the inner
    gradient reads k from two traces out, and the solve differentiates it as a parameter."""
    from tests.test_nested import T_PENDULUM, pendulum, swing

    def captured(k):
        def rhs(u, _, t):
            dq, dp = pz.gradient(lambda q, p: 0.5 * p**2 + k[0] * (1.0 - np.cos(q)), u[0], u[1])
            return np.stack([dp, -dq])

        return np.sum(pz.odesolve(rhs, np.array([1.0, 0.0]), T_PENDULUM, None, reltol=1e-10, abstol=1e-10)[:, 0] ** 2)

    k = np.array([2.0])
    np.testing.assert_allclose(pz.gradient(captured, k)[0], pz.gradient(swing, pendulum, k)[1], rtol=1e-12)
    np.testing.assert_allclose(pz.hessian(captured, k), pz.hessian(lambda k: swing(pendulum, k), k), rtol=1e-10)


def test_a_wrapped_right_hand_side_that_captures_runs_once_per_trace():
    """pz.nlsolve's f, wrapped as a right-hand side, holds the captured value one closure further
    down: it is found there, and f is traced once, lifting, not first traced in vain (f ran twice);
    an in-place right-hand side too."""
    runs = []

    def loss(w):
        def f(du, u, p, t):
            runs.append("ode")
            du[0] = u[1]
            du[1] = -w * w * u[0]

        def g(u, _):
            runs.append("nl")
            return u - 0.5 * np.sin(u) - w

        return np.sum(pz.odesolve(f, U0, T, alg="Tsit5", **TIGHT)[:, 0] ** 2) + np.sum(pz.nlsolve(g, np.array([1.0])))

    runs.clear()
    pz.gradient(loss, 2.0)
    assert runs == ["ode", "nl"]


def test_an_in_place_right_hand_side_made_afresh_per_call_is_not_kept_alive() -> None:
    """out_of_place kept its wrapper of f(du, u, p, t) in a global WeakKeyDictionary whose value
    called f: an in-place right-hand side made per call of a loss (and the data it captured) was
    never freed (integration review); the out-of-place one was.  The wrapper is still reused for
    the same f, and traced again when f's closure changes."""
    import gc
    import weakref

    made = []

    def loss(k, scale):
        data = np.full(1000, scale)

        def decay(du, u, p, t):
            du[0] = -p[0] * data[0] * u[0]

        made.append(weakref.ref(decay))
        return pz.odesolve(decay, np.array([1.0]), (0.0, 1.0), k, alg="Tsit5", reltol=1e-10, abstol=1e-12)[-1, 0]

    for k in (1.0, 2.0):
        assert loss(np.array([k]), 0.5) == pytest.approx(np.exp(-0.5 * k), rel=1e-8)
    gc.collect()
    assert [r() for r in made] == [None, None]

    calls, c = [0], 1.0

    def kept(du, u, p, t):
        calls[0] += 1
        du[0] = -c * p[0] * u[0]

    solve = lambda: pz.odesolve(kept, np.array([1.0]), (0.0, 1.0), np.array([1.0]), alg="Tsit5", reltol=1e-10, abstol=1e-12)[-1, 0]  # noqa: E731
    assert solve() == pytest.approx(np.exp(-1.0), rel=1e-8) and solve() == pytest.approx(np.exp(-1.0), rel=1e-8)
    traced = calls[0]
    c = 2.0
    assert solve() == pytest.approx(np.exp(-2.0), rel=1e-8) and calls[0] > traced


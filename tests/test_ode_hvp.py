"""Second derivatives through an adjoint sensealg by the adjoint of the tangent system
(``odesolve_hvp``), against forward over forward (second-order sensitivities) and finite
differences, in every way a second derivative is taken: Hessians (batched directions), one
Hessian-vector product, reverse over reverse (its transpose) and third order (its JVP)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import pyzygote as pz
from pyzygote.ode.solvers import dense_matrix
from pyzygote.primitives import ode as ode_prims

TIMES = np.linspace(0.0, 2.0, 9)
TOL = dict(alg="Tsit5", reltol=1e-11, abstol=1e-11)


@pytest.fixture(autouse=True)
def _numpy_engine():
    with pz.engine("numpy"):
        yield


def _tiny_network(u: Any, p: Any, t: Any) -> Any:
    """Two states driven by a small tanh layer, with a constant leaf in p."""
    h = np.tanh(p["W"] @ u + p["b"])
    return np.stack([p["ab"][0] * u[0], -p["ab"][1] * u[1]]) + p["V"] @ h * p["scale"]


def _params() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {"W": 0.5 * rng.normal(size=(3, 2)), "b": 0.1 * rng.normal(size=3), "V": 0.3 * rng.normal(size=(2, 3)),
            "ab": np.array([0.4, 0.7]), "scale": 1.0}


DATA = np.cos(TIMES)[:, None] * np.array([1.0, 0.5])


def _loss(sensealg: str, alg: str = "Tsit5") -> Any:
    scale = 1.0  # a constant leaf of p: it gets no derivative columns

    def loss(q: Any, u0: Any) -> Any:
        u = pz.odesolve(_tiny_network, u0, TIMES, {**q, "scale": scale}, sensealg=sensealg, **{**TOL, "alg": alg})
        return np.sum((u - DATA) ** 2) + 0.1 * np.sum(u[-1] ** 3)

    return loss


Q0 = {k: v for k, v in _params().items() if k != "scale"}
U0 = np.array([0.8, -0.3])


@pytest.fixture(params=[True, False], ids=["by adjoint", "forward over forward"])
def by_adjoint(request: Any, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(ode_prims, "_second_order_by_adjoint", lambda *_: bool(request.param))
    return bool(request.param)


def _hessian_fd(f: Any, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    g = lambda y: pz.gradient(f, y)[0]  # noqa: E731
    return np.stack([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(x.size)], axis=1)


@pytest.mark.parametrize("sensealg, alg", [("adjoint", "Tsit5"), ("backsolve", "Tsit5"), ("adjoint", "Rodas5P"), ("adjoint", "FBDF"), ("adjoint", "auto")])
def test_hessian_through_an_adjoint_matches_forward_over_forward_and_differences(sensealg: str, alg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Implicit solvers too: the copies of the tangent system take a block-diagonal Jacobian."""
    loss = _loss(sensealg, alg)
    flat0 = np.concatenate([Q0[k].ravel() for k in sorted(Q0)])

    def unflat(v: Any) -> dict[str, Any]:
        out, i = {}, 0
        for k in sorted(Q0):
            out[k] = np.reshape(v[i : i + Q0[k].size], Q0[k].shape)
            i += Q0[k].size
        return out

    f = lambda v: loss(unflat(v), U0)  # noqa: E731
    hessians = []
    for route in (True, False):  # by the adjoint of the tangent system, then forward over forward
        monkeypatch.setattr(ode_prims, "_second_order_by_adjoint", lambda *_, route=route: route)
        hessians.append(pz.hessian(f, flat0))
    by_adjoint, fof = hessians
    np.testing.assert_allclose(by_adjoint, fof, rtol=1e-7, atol=1e-7 * np.abs(fof).max())
    np.testing.assert_allclose(by_adjoint, by_adjoint.T, atol=1e-7 * np.abs(fof).max())
    np.testing.assert_allclose(by_adjoint, _hessian_fd(f, flat0), rtol=1e-5, atol=1e-5 * np.abs(fof).max())


def test_hessian_in_u0_and_in_a_dict_of_parameters(by_adjoint: bool) -> None:
    loss = _loss("adjoint")
    H = pz.hessian(lambda u0: loss(Q0, u0), U0)
    np.testing.assert_allclose(H, _hessian_fd(lambda u0: loss(Q0, u0), U0), rtol=1e-5, atol=1e-6)
    Hd = pz.hessian(lambda q: loss(q, U0), Q0)
    g = lambda w: pz.gradient(lambda q: loss({**Q0, "W": q}, U0), w)[0].ravel()  # noqa: E731
    h = 1e-5
    fd = np.stack([(g(Q0["W"] + h * e.reshape(3, 2)) - g(Q0["W"] - h * e.reshape(3, 2))) / (2 * h) for e in np.eye(6)], axis=1)
    np.testing.assert_allclose(np.reshape(Hd["W"]["W"], (6, 6)), fd, rtol=1e-5, atol=1e-6)


def test_one_hessian_vector_product_and_reverse_over_reverse(by_adjoint: bool) -> None:
    loss = _loss("adjoint")
    W = Q0["W"]
    f = lambda w: loss({**Q0, "W": w}, U0)  # noqa: E731
    v = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
    _, hv = pz.jvp(pz.grad(f), (W,), (v,))
    H = _hessian_fd(lambda w: f(np.reshape(w, (3, 2))), W.ravel())
    np.testing.assert_allclose(np.ravel(hv), H @ v.ravel(), rtol=1e-5, atol=1e-6)
    # The gradient of |grad f|^2 / 2 is H grad f: reverse over reverse transposes odesolve_hvp.
    (r,) = pz.gradient(lambda w: 0.5 * np.sum(pz.grad(f)(w) ** 2), W)
    np.testing.assert_allclose(np.ravel(r), H @ np.ravel(pz.gradient(f, W)[0]), rtol=1e-5, atol=1e-6)


def test_third_derivative_along_one_direction(by_adjoint: bool) -> None:
    loss = _loss("adjoint")
    f = lambda s: loss({**Q0, "ab": Q0["ab"] + s * np.array([1.0, -0.5])}, U0)  # noqa: E731
    d1 = lambda s: pz.jvp(f, (s,), (1.0,))[1]  # noqa: E731
    d2 = lambda s: pz.jvp(d1, (s,), (1.0,))[1]  # noqa: E731
    _, d3 = pz.jvp(lambda s: pz.jvp(pz.grad(f), (s,), (1.0,))[1], (0.0,), (1.0,))
    h = 1e-4
    np.testing.assert_allclose(d3, (d2(h) - d2(-h)) / (2 * h), rtol=1e-5)


def test_copies_of_a_system_take_its_jacobian_block_by_block() -> None:
    """Implicit solvers of the copies (batched Hessian directions) use a block-diagonal
    Jacobian, one block per copy, or one repeated block where the copies share their point."""
    from pyzygote.ode.rhs import RHS

    base = RHS.trace(lambda u, p, t: np.array([-p[0] * u[0] * u[1], p[1] * u[0] - np.sin(u[1]) * t]), 2, 2)
    copies = base.copies(3)
    rng = np.random.default_rng(0)
    for shared in (False, True):
        Z, Q = rng.standard_normal((3, 2)), rng.uniform(0.5, 1.5, (3, 2))
        if shared:
            Z[:], Q[:] = Z[0], Q[0]
        z, q = Z.ravel(), Q.ravel()
        J = dense_matrix(copies.jacobian_u(z, q, 0.3))
        fd = np.stack([(copies(z + 1e-6 * e, q, 0.3) - copies(z - 1e-6 * e, q, 0.3)) / 2e-6 for e in np.eye(6)], axis=1)
        np.testing.assert_allclose(J, fd, atol=1e-8)


def test_the_route_follows_the_size_and_the_solver() -> None:
    """The adjoint route where forward over forward would follow many second-order
    sensitivities: from about 200 per direction with pyzygote's RK stepper, 400 with SciPy's
    solvers (fuzzer: Vern7 with 62-122 weights was 3-6 times faster forward over forward);
    alg="auto" by Rodas5P, not LSODA's dense Jacobians (a 100-cell heat equation's Hessian in 102
    parameters: 83 s forward over forward through LSODA, 18 s)."""
    from pyzygote.ode.sensitivity import Options

    route = ode_prims._second_order_by_adjoint
    assert route(2, 122, Options("Tsit5", 1e-8, 1e-8), "adjoint") and route(2, 354, Options("Vern7", 1e-8, 1e-8), "backsolve")
    assert not route(2, 122, Options("Vern7", 1e-8, 1e-8), "adjoint") and not route(2, 42, Options("Tsit5", 1e-8, 1e-8), "adjoint")
    assert route(20, 40, Options("Rodas5P", 1e-8, 1e-8), "adjoint") and route(20, 40, Options("auto", 1e-8, 1e-8), "adjoint")
    assert ode_prims._hvp_options(Options("auto", 1e-8, 1e-8)).alg == "Rodas5P"
    assert not route(12, 36, Options("auto", 1e-8, 1e-8), "adjoint")  # review: LSODA forward over forward is quicker there
    assert not route(20, 12, Options("Rodas5P", 1e-8, 1e-8), "adjoint") and not route(20, 40, Options("Tsit5", 1e-8, 1e-8), "forward")

"""Lotka-Volterra loss gradient: pyzygote against its peers, in one run.

Problem (from the ODE issue): u0 = [1, 1], p = [1.5, 1, 3, 1], t = 0:0.1:10,
data generated with p = [1.3, 0.9, 3.2, 1.1], rtol = atol = 1e-8, loss =
sum of squared residuals; gradient with respect to p.  Prints the median
milliseconds per gradient and the ratio to SciPy DOP853 + central finite
differences measured in the same run.  Peers that are not installed
(JAX + diffrax, torchdiffeq, a Julia set up for pyzygote) are reported as
skipped.

Run:  python bench/lv_gradient.py [--repeats 15]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.integrate import solve_ivp
from timing import compare, repeats_from_command_line

import pyzygote as pz

U0 = np.array([1.0, 1.0])
P0 = np.array([1.5, 1.0, 3.0, 1.0])
P_TRUE = np.array([1.3, 0.9, 3.2, 1.1])
T = np.linspace(0.0, 10.0, 101)
TOL = 1e-8


def lotka(u, p, t):
    x, y = u
    a, b, d, g = p
    return np.array([a * x - b * x * y, -d * y + g * x * y])


def scipy_solution(p: np.ndarray) -> np.ndarray:
    sol = solve_ivp(lambda t, u: lotka(u, p, t), (0.0, 10.0), U0, method="DOP853", t_eval=T, rtol=TOL, atol=TOL)
    return sol.y.T


DATA = scipy_solution(P_TRUE)


def scipy_fd_gradient(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    loss = lambda q: np.sum((scipy_solution(q) - DATA) ** 2)  # noqa: E731
    g = np.empty_like(p)
    for i in range(p.size):
        e = np.zeros_like(p)
        e[i] = eps
        g[i] = (loss(p + e) - loss(p - e)) / (2 * eps)
    return g


def pyzygote_gradient(engine: str, sensealg: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    def loss(p):
        u = pz.odesolve(lotka, U0, T, p, alg="Tsit5", sensealg=sensealg, reltol=TOL, abstol=TOL)
        return np.sum((u - DATA) ** 2)

    return lambda p: pz.gradient(loss, p, engine=engine)[0]


def jax_gradient() -> Callable[[np.ndarray], Any] | None:
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def vf(t, u, p):
        x, y = u
        a, b, d, g = p
        return jnp.array([a * x - b * x * y, -d * y + g * x * y])

    data = jnp.asarray(DATA)

    def loss(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf), diffrax.Tsit5(), 0.0, 10.0, 0.01, jnp.asarray(U0), args=p,
            saveat=diffrax.SaveAt(ts=jnp.asarray(T)),
            stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL), max_steps=100_000,
        )
        return jnp.sum((sol.ys - data) ** 2)

    g = jax.jit(jax.grad(loss))
    return lambda p: g(jnp.asarray(p)).block_until_ready()


def torchdiffeq_gradient() -> Callable[[np.ndarray], Any] | None:
    try:
        import torch
        from torchdiffeq import odeint
    except ImportError:
        return None
    torch.set_default_dtype(torch.float64)
    t = torch.tensor(T)
    data = torch.tensor(DATA)

    def run(p_np):
        p = torch.tensor(p_np, requires_grad=True)

        def f(tt, u):
            x, y = u[0], u[1]
            return torch.stack([p[0] * x - p[1] * x * y, -p[2] * y + p[3] * x * y])

        u = odeint(f, torch.tensor(U0), t, rtol=TOL, atol=TOL, method="dopri5")
        ((u - data) ** 2).sum().backward()
        return p.grad

    return run


def main() -> None:
    repeats = repeats_from_command_line(__doc__, default=15)
    reference = scipy_fd_gradient(P0)
    candidates: list[tuple[str, Callable[[np.ndarray], Any] | None]] = [
        ("SciPy solve_ivp DOP853 + central FD", scipy_fd_gradient),
        ("pyzygote NumPy engine, Tsit5, sensealg=forward (auto)", pyzygote_gradient("numpy")),
        ("pyzygote NumPy engine, Tsit5, sensealg=adjoint", pyzygote_gradient("numpy", "adjoint")),
        ("pyzygote NumPy engine, Tsit5, sensealg=backsolve", pyzygote_gradient("numpy", "backsolve")),
    ]
    from pyzygote.julia.setup import julia_is_set_up

    candidates.append(("pyzygote Julia engine, Tsit5 (SciMLSensitivity auto)", pyzygote_gradient("julia") if julia_is_set_up() else None))
    candidates.append(("JAX + diffrax Tsit5 (jit, RecursiveCheckpointAdjoint)", jax_gradient()))
    candidates.append(("torchdiffeq dopri5, backprop through solver", torchdiffeq_gradient()))

    compare(candidates, P0, reference, repeats, "SciPy+FD")


if __name__ == "__main__":
    main()

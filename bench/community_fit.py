"""A generalized Lotka-Volterra community: gradient of a fit's loss in 72 parameters.

Problem: 8 species with abundances u follow u' = u * (r + A @ u).  The loss compares the
log-abundances at 41 save times over t = 0..20 with "observations" made with other
parameters; the gradient is in all of A (8 x 8) and r (8).  The right-hand side is
vectorized, so it carries all 72 directions of forward sensitivities in a few numpy
operations: sensealg='auto' picks forward here (it weighs what an evaluation of each
system costs), where it picked the adjoint before.  Prints the median milliseconds per
gradient and the ratio to SciPy + central finite differences, measured in the same run;
JAX + diffrax is reported as skipped when not installed.

Run:  python bench/community_fit.py [--repeats 9]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.integrate import solve_ivp
from timing import compare, repeats_from_command_line

import pyzygote as pz

S = 8
_rng = np.random.default_rng(7)
A_TRUE = -np.eye(S) * _rng.uniform(0.8, 1.2, S) + 0.15 * _rng.standard_normal((S, S)) * (1 - np.eye(S))
R_TRUE = -A_TRUE @ _rng.uniform(0.5, 1.5, S)
U0 = _rng.uniform(0.1, 0.5, S)
SAVE = np.linspace(0.0, 20.0, 41)
THETA0 = np.concatenate([(A_TRUE * 1.05).ravel(), R_TRUE * 0.95])
TOL = 1e-8


def community(u, p, t):
    return u * (p[S * S :] + np.reshape(p[: S * S], (S, S)) @ u)


def scipy_solution(p: np.ndarray) -> np.ndarray:
    return solve_ivp(lambda t, u: community(u, p, t), (0.0, 20.0), U0, method="DOP853", t_eval=SAVE, rtol=TOL, atol=TOL).y.T


DATA = np.log(scipy_solution(np.concatenate([A_TRUE.ravel(), R_TRUE])))


def scipy_fd_gradient(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    loss = lambda q: np.sum((np.log(scipy_solution(q)) - DATA) ** 2)  # noqa: E731
    return np.array([(loss(p + eps * e) - loss(p - eps * e)) / (2 * eps) for e in np.eye(p.size)])


def pyzygote_gradient(sensealg: str) -> Callable[[np.ndarray], np.ndarray]:
    def loss(p):
        u = pz.odesolve(community, U0, SAVE, p, alg="Tsit5", sensealg=sensealg, reltol=TOL, abstol=TOL)
        return np.sum((np.log(u) - DATA) ** 2)

    return lambda p: pz.gradient(loss, p, engine="numpy")[0]


def jax_gradient() -> Callable[[np.ndarray], Any] | None:
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    data, u0 = jnp.asarray(DATA), jnp.asarray(U0)

    def vf(t, u, p):
        return u * (p[S * S :] + jnp.reshape(p[: S * S], (S, S)) @ u)

    def loss(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf), diffrax.Tsit5(), 0.0, 20.0, 0.01, u0, args=p,
            saveat=diffrax.SaveAt(ts=jnp.asarray(SAVE)),
            stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL), max_steps=100_000,
        )
        return jnp.sum((jnp.log(sol.ys) - data) ** 2)

    g = jax.jit(jax.grad(loss))
    return lambda p: g(jnp.asarray(p)).block_until_ready()


def main() -> None:
    repeats = repeats_from_command_line(__doc__, default=9)
    reference = scipy_fd_gradient(THETA0)
    peers: list[tuple[str, Callable[[np.ndarray], Any] | None]] = [
        ("SciPy solve_ivp DOP853 + central FD", scipy_fd_gradient),
        ("pyzygote NumPy engine, Tsit5, sensealg=auto (forward)", pyzygote_gradient("auto")),
        ("pyzygote NumPy engine, Tsit5, sensealg=forward", pyzygote_gradient("forward")),
        ("pyzygote NumPy engine, Tsit5, sensealg=adjoint", pyzygote_gradient("adjoint")),
        ("JAX + diffrax Tsit5 (jit)", jax_gradient()),
    ]
    compare(peers, THETA0, reference, repeats, "SciPy+FD")


if __name__ == "__main__":
    main()

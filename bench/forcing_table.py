"""A two-box energy-balance climate model driven by a forcing table: gradient of a fit's loss.

Problem: the upper box's temperature T and the deep ocean's D follow

    C  T' = F(t) - lam * T - gam * (T - D)
    CD D' = gam * (T - D)

with F(t) read by linear interpolation (np.interp) from a yearly table of 251 values,
1850-2100.  The loss is the sum of squared differences to 26 decadal "observations" made
with other parameters; the gradient is in (lam, gam, C, CD).  The solvers step to every
knot of the table (tstops, diffrax's step_ts; SciPy restarts at each), where F has kinks.
Prints the median milliseconds per gradient and the ratio to SciPy + central finite
differences, measured in the same run; JAX + diffrax is reported as skipped when not
installed.

Run:  python bench/forcing_table.py [--repeats 9]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.integrate import solve_ivp
from timing import compare, repeats_from_command_line

import pyzygote as pz

YEARS = np.arange(1850.0, 2101.0)
FORCING = 0.02 * (YEARS - 1850.0) + 0.3 * np.sin(YEARS / 7.0) - 2.0 * np.exp(-0.5 * ((YEARS - 1991.0) / 1.5) ** 2)
SAVE = np.linspace(1850.0, 2100.0, 26)
P0 = np.array([1.5, 0.5, 9.0, 80.0])
P_TRUE = np.array([1.1, 0.8, 7.5, 110.0])
TOL = 1e-8


def two_box(u, p, t):
    lam, gam, c, cd = p
    exchange = gam * (u[0] - u[1])
    return np.array([(np.interp(t, YEARS, FORCING) - lam * u[0] - exchange) / c, exchange / cd])


def scipy_solution(p: np.ndarray) -> np.ndarray:
    """Year by year, restarting at each knot: a step across a kink of F would cost accuracy."""
    u, out = np.zeros(2), []
    for a, b in zip(YEARS[:-1], YEARS[1:]):
        if a in SAVE:
            out.append(u)
        u = solve_ivp(lambda t, v: two_box(v, p, t), (a, b), u, method="DOP853", rtol=TOL, atol=TOL).y[:, -1]
    return np.array([*out, u])


DATA = scipy_solution(P_TRUE)


def scipy_fd_gradient(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    loss = lambda q: np.sum((scipy_solution(q) - DATA) ** 2)  # noqa: E731
    return np.array([(loss(p + eps * e) - loss(p - eps * e)) / (2 * eps) for e in np.eye(p.size)])


def pyzygote_gradient(sensealg: str) -> Callable[[np.ndarray], np.ndarray]:
    def loss(p):
        u = pz.odesolve(two_box, np.zeros(2), SAVE, p, alg="Tsit5", sensealg=sensealg, reltol=TOL, abstol=TOL, tstops=YEARS)
        return np.sum((u - DATA) ** 2)

    return lambda p: pz.gradient(loss, p, engine="numpy")[0]


def jax_gradient() -> Callable[[np.ndarray], Any] | None:
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    years, forcing, data = jnp.asarray(YEARS), jnp.asarray(FORCING), jnp.asarray(DATA)

    def vf(t, u, p):
        lam, gam, c, cd = p
        exchange = gam * (u[0] - u[1])
        return jnp.array([(jnp.interp(t, years, forcing) - lam * u[0] - exchange) / c, exchange / cd])

    def loss(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf), diffrax.Tsit5(), 1850.0, 2100.0, 0.1, jnp.zeros(2), args=p,
            saveat=diffrax.SaveAt(ts=jnp.asarray(SAVE)),
            stepsize_controller=diffrax.ClipStepSizeController(diffrax.PIDController(rtol=TOL, atol=TOL), step_ts=years),
            max_steps=100_000,
        )
        return jnp.sum((sol.ys - data) ** 2)

    g = jax.jit(jax.grad(loss))
    return lambda p: g(jnp.asarray(p)).block_until_ready()


def main() -> None:
    repeats = repeats_from_command_line(__doc__, default=9)
    reference = scipy_fd_gradient(P0)
    peers: list[tuple[str, Callable[[np.ndarray], Any] | None]] = [
        ("SciPy solve_ivp DOP853 year by year + central FD", scipy_fd_gradient),
        ("pyzygote NumPy engine, Tsit5, sensealg=forward", pyzygote_gradient("forward")),
        ("pyzygote NumPy engine, Tsit5, sensealg=adjoint", pyzygote_gradient("adjoint")),
        ("JAX + diffrax Tsit5 (jit, step_ts at the knots)", jax_gradient()),
    ]
    compare(peers, P0, reference, repeats, "SciPy+FD")


if __name__ == "__main__":
    main()

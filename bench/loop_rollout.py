"""Hand-written loops over small arrays: gradients of an MPC rollout and of a Verlet spring chain.

Problems (a plain Python loop each, the loss a number):
  mpc:    a model-predictive-control rollout of 200 steps, 4 states (two damped carts on
          springs), 2 inputs, x <- A x + B u_t + 0.01 tanh(x), quadratic cost in x and u;
          gradient in the 400 inputs.
  verlet: velocity-Verlet integration of a chain of 8 masses on springs, 1000 steps; the loss
          weighs the final positions and velocities; gradient in the 7 spring constants.
Each op of these loops is a numpy call on a vector of a few entries (matrix-vector products,
slices, concatenations), so per-call costs, not arithmetic, decide the time.  Prints, per
peer, the first gradient and the median milliseconds per later gradient, with the ratio to
central finite differences of the numpy loss measured in the same run.  JAX (jit of grad, x64)
is given the loop as `lax.scan`, the form JAX needs (its jit of the MPC rollout unrolled
compiled for 6 minutes on this machine).  Peers that are not installed are skipped.

Run:  python bench/loop_rollout.py [--repeats 15] [--problems mpc,verlet]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np
from timing import compare

import pyzygote as pz

# --- mpc -------------------------------------------------------------------------------
STEPS_MPC, DT = 200, 0.1
# two carts on springs with damping (positions, velocities), stepped by explicit Euler
A = np.eye(4) + DT * np.array([[0.0, 1.0, 0.0, 0.0], [-2.0, -0.4, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, -1.0, -0.4]])
B = DT * np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
Q, R = np.diag([1.0, 0.1, 0.1, 0.01]), 0.01 * np.eye(2)
X0, TARGET = np.array([1.0, 0.0, -0.5, 0.2]), np.array([0.0, 0.0, 0.0, 0.0])


def mpc_cost(U, np=np):
    x, J = X0, 0.0
    for t in range(STEPS_MPC):
        u = U[t]
        x = A @ x + B @ u + 0.01 * np.tanh(x)
        e = x - TARGET
        J = J + e @ Q @ e + u @ R @ u
    return J


# --- verlet ----------------------------------------------------------------------------
MASSES, STEPS_VERLET, H = 8, 1000, 0.01
REST = np.ones(MASSES - 1)
P0 = np.cumsum(np.ones(MASSES)) + 0.1 * np.sin(np.arange(MASSES))


def accel(x, k, np=np):
    f = k * (np.diff(x) - REST)  # spring tensions
    return np.concatenate([f, np.zeros(1)]) - np.concatenate([np.zeros(1), f]) - 0.1 * x


def verlet_loss(k, np=np):
    x, v = P0, np.zeros(MASSES)
    a = accel(x, k, np)
    for _ in range(STEPS_VERLET):
        v = v + 0.5 * H * a
        x = x + H * v
        a = accel(x, k, np)
        v = v + 0.5 * H * a
    return np.sum((x - P0 - 0.05) ** 2) + 0.5 * np.sum(v**2)


def jax_gradient(problem: str) -> Callable[[np.ndarray], Any] | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    if problem == "mpc":
        def cost(U):
            def step(carry, u):
                x, J = carry
                x = A @ x + B @ u + 0.01 * jnp.tanh(x)
                e = x - TARGET
                return (x, J + e @ Q @ e + u @ R @ u), None

            return jax.lax.scan(step, (jnp.asarray(X0), 0.0), U)[0][1]

        g = jax.jit(jax.grad(cost))
    else:

        def loss(k):
            def step(state, _):
                x, v, a = state
                v = v + 0.5 * H * a
                x = x + H * v
                a = accel(x, k, jnp)
                return (x, v + 0.5 * H * a, a), None

            x0 = jnp.asarray(P0)
            (x, v, _), _ = jax.lax.scan(step, (x0, jnp.zeros(MASSES), accel(x0, k, jnp)), None, length=STEPS_VERLET)
            return jnp.sum((x - P0 - 0.05) ** 2) + 0.5 * jnp.sum(v**2)

        g = jax.jit(jax.grad(loss))
    return lambda point: g(jnp.asarray(point)).block_until_ready()


PROBLEMS = {
    "mpc": (mpc_cost, 0.1 * np.random.default_rng(0).standard_normal((STEPS_MPC, 2)), "loop as lax.scan"),
    "verlet": (verlet_loss, 1.0 + 0.2 * np.random.default_rng(1).random(MASSES - 1), "loop as lax.scan"),
}


def central_differences(loss: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], np.ndarray]:
    def gradient(point: np.ndarray) -> np.ndarray:
        g = np.empty(point.size)
        for i in range(point.size):
            e = np.zeros(point.size)
            e[i] = 1e-6 * max(1.0, abs(point.flat[i]))
            step = e.reshape(point.shape)
            g[i] = (loss(point + step) - loss(point - step)) / (2 * e[i])
        return g.reshape(point.shape)

    return gradient


def first_call_seconds(fn: Callable[[np.ndarray], Any] | None, point: np.ndarray) -> str:
    if fn is None:
        return "skipped"
    start = time.perf_counter()
    fn(point)
    return f"{time.perf_counter() - start:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per peer; the median is printed")
    parser.add_argument("--problems", default="mpc,verlet")
    args = parser.parse_args()
    for problem in args.problems.split(","):
        loss, point, jax_form = PROBLEMS[problem]
        n_ops = len(pz.make_program(loss, point).eqns)
        print(f"== {problem}: {n_ops} operations traced, gradient in {point.size} entries ==")
        fd = central_differences(loss)
        peers = [
            (f"numpy loop + central FD ({2 * point.size} evaluations)", fd),
            ("pyzygote NumPy engine, the same loop", pz.grad(loss)),
            (f"JAX jit(grad), {jax_form}", jax_gradient(problem)),
        ]
        print("first gradient: " + ", ".join(f"{name.split(',')[0]} {first_call_seconds(fn, point)}" for name, fn in peers[1:]))
        compare(peers, point, fd(point), args.repeats, "FD")


if __name__ == "__main__":
    main()

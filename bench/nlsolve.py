"""A nonlinear solve of 300 unknowns and its gradient in 300 parameters: pyzygote against its peers, in one run.

The problem: the Bratu (solid fuel ignition) boundary-value problem with a source strength
varying in space, ``u''(x) + lam(x) exp(u(x)) = 0`` on (0, 1), ``u(0) = u(1) = 0``,
discretized by central differences on n = 300 interior points,
``f_i(u, lam) = u_{i-1} - 2 u_i + u_{i+1} + h^2 lam_i exp(u_i)``: a tridiagonal Jacobian of
condition number about 7e4, held dense by all solvers.  ``lam = 2 + sin(pi x)`` (below the
fold at 3.51 of a constant lam), Newton from ``u = 0`` (5 Jacobians and LUs).  The loss fits the
solution to one at another ``lam``, ``h * sum((u(lam) - u_target)^2)``, and its gradient is
taken in all 300 entries of ``lam``.

Timed, the median wall-clock and CPU time (the process's, all threads) of ``--repeats`` calls
after a first one (tracing for pyzygote, compilation for JAX, whose first-call times are
printed); on a machine that other jobs load, the process waits for a core part of the wall-clock
time, and CPU time is what it spent:

- pyzygote's ``pz.nlsolve`` (abstol 1e-12, reltol 1e-10) and ``pz.gradient`` of the loss
  (the implicit function theorem at the root);
- Optimistix's ``Newton`` (rtol 1e-10, atol 1e-12, max-norm; no line search) under
  ``jax.jit``, and ``jax.grad`` of the loss through it (``ImplicitAdjoint``), jitted, with
  ``jax_enable_x64``: when jax and optimistix import (skipped otherwise);
- SciPy's ``scipy.optimize.root`` (``hybr``, MINPACK's Powell hybrid method, given the exact
  Jacobian, ``tol=1e-10``) and the gradient by central finite differences (2 n + 1 solves, each from the
  root), always.  Its gradient is timed once.

Prints ms per call, the ratios of the CPU times to pyzygote's (solve, gradient) and the largest
difference of each root and gradient to pyzygote's, relative to its largest entry.

Run:  OPENBLAS_NUM_THREADS=1 JAX_ENABLE_X64=1 python bench/nlsolve.py [--repeats 7] [--n 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np
import scipy.optimize

import pyzygote as pz


def problem(n: int) -> dict[str, Any]:
    h = 1.0 / (n + 1)
    x = np.linspace(h, 1.0 - h, n)
    return {"n": n, "h": h, "lam": 2.0 + np.sin(np.pi * x), "lam_target": 2.5 + 0.5 * np.cos(np.pi * x)}


def residual(u: Any, lam: Any, h: float, xp: Any = np) -> Any:
    padded = xp.concatenate([xp.zeros(1), u, xp.zeros(1)])
    return padded[:-2] - 2.0 * u + padded[2:] + h**2 * lam * xp.exp(u)


def jacobian(u: np.ndarray, lam: np.ndarray, h: float) -> np.ndarray:
    n = u.size
    return np.eye(n, k=1) + np.eye(n, k=-1) + np.diag(-2.0 + h**2 * lam * np.exp(u))


def pyzygote_calls(m: dict[str, Any], target: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]:
    h, u0 = m["h"], np.zeros(m["n"])

    def f(u: Any, lam: Any) -> Any:
        return residual(u, lam, h)

    def loss(lam: Any) -> Any:
        return h * np.sum((pz.nlsolve(f, u0, lam) - target) ** 2)

    return (lambda lam: pz.nlsolve(f, u0, lam)), (lambda lam: pz.gradient(loss, lam, engine="numpy")[0])


def scipy_calls(m: dict[str, Any], target: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]:
    h, u0 = m["h"], np.zeros(m["n"])

    def solve(lam: np.ndarray, start: np.ndarray = u0) -> np.ndarray:
        sol = scipy.optimize.root(residual, start, args=(lam, h), jac=jacobian, method="hybr", tol=1e-10)
        # From the root itself (finite differences start there) hybr may report no progress.
        if not (sol.success or np.max(np.abs(sol.fun)) <= 1e-12):
            raise RuntimeError(f"scipy.optimize.root failed: {sol.message}")
        return sol.x

    def gradient(lam: np.ndarray) -> np.ndarray:
        root = solve(lam)
        g = np.empty_like(lam)
        for i in range(lam.size):
            d = 1e-6 * max(1.0, abs(lam[i]))
            up, down = lam.copy(), lam.copy()
            up[i] += d
            down[i] -= d
            g[i] = h * (np.sum((solve(up, root) - target) ** 2) - np.sum((solve(down, root) - target) ** 2)) / (2 * d)
        return g

    return solve, gradient


def jax_calls(m: dict[str, Any], target: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]] | None:
    try:
        import jax
        import jax.numpy as jnp
        import optimistix as optx
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    h, u0, tgt = m["h"], jnp.zeros(m["n"]), jnp.asarray(target)
    solver = optx.Newton(rtol=1e-10, atol=1e-12)

    def root(lam: Any) -> Any:
        return optx.root_find(lambda u, q: residual(u, q, h, jnp), solver, u0, args=lam, max_steps=100).value

    solve = jax.jit(root)
    grad = jax.jit(jax.grad(lambda lam: h * jnp.sum((root(lam) - tgt) ** 2)))
    return (lambda lam: np.asarray(solve(jnp.asarray(lam)).block_until_ready())), (lambda lam: np.asarray(grad(jnp.asarray(lam)).block_until_ready()))


def timed(fn: Callable[[np.ndarray], Any], point: np.ndarray, repeats: int) -> tuple[float, float, float, np.ndarray]:
    """(first call ms, median wall-clock and median CPU ms of ``repeats`` further calls (the
    first's with none), the result).  CPU time is the process's, all its threads."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = np.asarray(fn(point), dtype=float)
    first, first_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(point)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    wall, cpu = wall or [first], cpu or [first_cpu]
    return 1e3 * first, 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per peer; the median is printed")
    parser.add_argument("--n", type=int, default=300, help="unknowns (and parameters)")
    args = parser.parse_args()
    m = problem(args.n)
    target = scipy_calls(m, np.zeros(m["n"]))[0](m["lam_target"])
    peers = [("pyzygote NumPy, pz.nlsolve", pyzygote_calls(m, target)), ("Optimistix Newton (jit)", jax_calls(m, target)), ("SciPy root hybr (+ central FD)", scipy_calls(m, target))]
    print(f"Bratu problem, n = {m['n']} unknowns, gradient in {m['n']} parameters; median of {args.repeats} calls, wall-clock and CPU")
    print(f"{'peer':32s} {'solve ms':>9s} {'CPU ms':>8s} {'grad ms':>9s} {'CPU ms':>8s} {'CPU vs pz':>12s} {'1st solve/grad ms':>18s}  max rel. diff root, grad")
    ref: tuple[Any, ...] | None = None
    for label, calls in peers:
        if calls is None:
            print(f"{label:32s} skipped (not installed)")
            continue
        solve, grad = calls
        first_s, ms_s, cpu_s, root = timed(solve, m["lam"], args.repeats)
        first_g, ms_g, cpu_g, g = timed(grad, m["lam"], 0 if label.startswith("SciPy") else args.repeats)  # SciPy's: 2 n + 1 solves, once
        if ref is None:
            ref = (cpu_s, cpu_g, root, g)
        d_root = float(np.max(np.abs(root - ref[2])) / np.max(np.abs(ref[2])))
        d_grad = float(np.max(np.abs(g - ref[3])) / np.max(np.abs(ref[3])))
        firsts = f"{first_s:.0f} / {first_g:.0f}"
        ratios = f"{cpu_s / ref[0]:.3g}, {cpu_g / ref[1]:.3g}"
        print(f"{label:32s} {ms_s:9.2f} {cpu_s:8.2f} {ms_g:9.2f} {cpu_g:8.2f} {ratios:>12s} {firsts:>18s}  {d_root:.1e}, {d_grad:.1e}")


if __name__ == "__main__":
    main()

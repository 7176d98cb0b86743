"""Hessians through large implicit ODE solves on the NumPy engine, against central differences of the gradient.

Reaction-diffusion models whose state Jacobian is sparse (more than 150 states), a least-squares
loss on the solution, ``pz.hessian`` in the parameters, through ``Rodas5P`` (SciPy's Radau here)
and ``FBDF`` (SciPy's BDF), ``reltol=1e-8``, ``abstol=1e-10``:

- ``rd1``: a 1-D reaction-diffusion line of 300 cells, 6 parameters, 11 save times;
- ``rd2``: a 14 x 14 grid (196 cells), a diffusivity, a growth rate and 10 sources, 7 save times;
- ``rd2big``: a 20 x 20 grid (400 cells), 6 parameters, 7 save times.

Prints, per model and solver, the CPU milliseconds of a Hessian and of central differences of
the gradient (2 k gradients, step 1e-5), both warm and the least of ``--repeats``, their ratio,
and the largest difference between the two relative to the largest entry.  ``--fof`` forces the
second derivatives forward over forward (sensitivities and their tangent) instead of the
adjoint of the tangent system.  Run with ``OPENBLAS_NUM_THREADS=1``:

    python bench/stiff_hessian.py [--models rd1,rd2,rd2big] [--algs Rodas5P,FBDF] [--repeats 2] [--fof]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np

import pyzygote as pz


def reaction_diffusion_line(n: int) -> tuple[Callable[..., Any], np.ndarray, np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 1.0, n)
    source = np.exp(-((x - 0.7) ** 2) / 0.02)

    def f(u: Any, p: Any, t: Any) -> Any:
        up = np.concatenate([u[:1], u, u[-1:]])  # insulated ends
        lap = (up[2:] - 2 * u + up[:-2]) * (n - 1) ** 2
        return p[0] * lap + p[1] * u * (1 - u) - p[2] * u**3 + p[3] * source - p[4] * u + p[5] * np.sin(3 * t) * x

    return f, np.exp(-((x - 0.4) ** 2) / 0.01), np.linspace(0.0, 0.5, 11), np.array([0.01, 1.0, 0.3, 0.5, 0.1, 0.2])


def reaction_diffusion_grid(m: int, k: int) -> tuple[Callable[..., Any], np.ndarray, np.ndarray, np.ndarray]:
    X, Y = np.meshgrid(np.linspace(0, 1, m), np.linspace(0, 1, m), indexing="ij")
    bumps = np.stack([np.exp(-((X - 0.2 - 0.2 * (j % 4)) ** 2 + (Y - 0.2 - 0.3 * (j // 4)) ** 2) / 0.03) for j in range(k - 2)])

    def f(u: Any, p: Any, t: Any) -> Any:
        up = np.pad(u, 1, mode="edge")  # insulated edges
        lap = (up[2:, 1:-1] + up[:-2, 1:-1] + up[1:-1, 2:] + up[1:-1, :-2] - 4 * u) * (m - 1) ** 2
        return p[0] * lap + p[1] * u * (1 - u) + np.einsum("k,kij->ij", p[2:], bumps)

    u0 = np.exp(-((X - 0.4) ** 2 + (Y - 0.5) ** 2) / 0.02)
    return f, u0, np.linspace(0.0, 0.3, 7), np.concatenate([[0.02, 1.0], 0.3 * np.ones(k - 2)])


MODELS = {
    "rd1": lambda: reaction_diffusion_line(300),
    "rd2": lambda: reaction_diffusion_grid(14, 12),
    "rd2big": lambda: reaction_diffusion_grid(20, 6),
}


def cpu(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="rd1,rd2,rd2big")
    parser.add_argument("--algs", default="Rodas5P,FBDF")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fof", action="store_true", help="second derivatives forward over forward")
    args = parser.parse_args()
    if args.fof:
        from pyzygote.primitives import ode

        ode._second_order_by_adjoint = lambda *_: False
    for name in args.models.split(","):
        f, u0, times, p0 = MODELS[name]()
        print(f"== {name}: {u0.size} states, {p0.size} parameters, {len(times)} save times", flush=True)
        for alg in args.algs.split(","):

            def loss(p: Any, alg: str = alg) -> Any:
                U = pz.odesolve(f, u0, times, p, alg=alg, reltol=1e-8, abstol=1e-10)
                return np.sum((U - 0.3) ** 2)

            grad = lambda p: pz.gradient(loss, p)[0]  # noqa: E731
            h = 1e-5
            fd = lambda: np.stack([(grad(p0 + h * e) - grad(p0 - h * e)) / (2 * h) for e in np.eye(p0.size)], axis=1)  # noqa: E731
            pz.hessian(loss, p0)  # traced and derived here
            t_fd, H_fd = cpu(fd, args.repeats)
            t_h, H = cpu(lambda: pz.hessian(loss, p0), args.repeats)  # noqa: B023
            rel = float(np.max(np.abs(H - H_fd)) / np.max(np.abs(H_fd)))
            print(f"  {alg:8s} Hessian {1e3 * t_h:7.0f} ms   central differences of the gradient {1e3 * t_fd:7.0f} ms   "
                  f"ratio {t_h / t_fd:5.2f}   max rel. diff {rel:.1e}", flush=True)


if __name__ == "__main__":
    main()

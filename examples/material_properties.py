"""Material properties: the thermal conductivity along a rod, from a few thermometers.

A rod of 24 cells, heated at its left end, cools through its right end.  Its
conductivity varies along the rod and is unknown; six thermometers record the
temperature 20 times.  The model is the heat equation, written as plain numpy
code on the grid of cells, with the parameters in a dict (one log-conductivity
per cell, and the heating power).  pyzygote differentiates the misfit through
the stiff solve with the continuous adjoint, and L-BFGS-B fits all 25 numbers
at once; a smoothness penalty makes the 24 conductivities identifiable from 6
thermometers.  The gradient is cross-checked once against finite differences.

Run:  python examples/material_properties.py  [--engine numpy|julia|auto]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

import pyzygote as pz

CELLS = 24
DX = 1.0 / CELLS
SENSORS = np.array([2, 6, 10, 14, 18, 22])
T = np.linspace(0.0, 0.5, 21)
U0 = np.zeros(CELLS)
X = (np.arange(CELLS) + 0.5) * DX
TRUE = {"log_k": np.log(1.0 + 0.8 * np.exp(-(((X - 0.6) / 0.15) ** 2))), "power": np.array(4.0)}
SMOOTHNESS = 1e-3


def heat(u, p, t):
    """du/dt = d/dx (k du/dx) + heating at the left end; the right end is held at 0."""
    k = np.exp(p["log_k"])
    k_face = 0.5 * (k[1:] + k[:-1])  # conductivity between neighbouring cells
    flux = k_face * (u[1:] - u[:-1]) / DX  # heat flowing right-to-left across inner faces
    right = -k[-1] * u[-1] / (0.5 * DX)  # into the cold end
    inflow = np.concatenate([flux, [right]]) - np.concatenate([[0.0], flux])
    heating = np.concatenate([[p["power"]], np.zeros(CELLS - 1)])
    return (inflow + heating) / DX


def readings(p, reltol=1e-7):
    u = pz.odesolve(heat, U0, T, p, alg="auto", sensealg="adjoint", reltol=reltol, abstol=reltol * 1e-2)
    return u[1:, SENSORS]


def misfit(p, data, reltol=1e-7):
    penalty = SMOOTHNESS * np.sum(np.diff(p["log_k"]) ** 2) / DX
    return 0.5 * np.sum((readings(p, reltol) - data) ** 2) + penalty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="auto", choices=["auto", "numpy", "julia"])
    parser.add_argument("--noise", type=float, default=0.002)
    args = parser.parse_args()
    pz.set_engine(args.engine)
    print("engine:", pz.current_engine_name())

    truth = readings(TRUE)
    data = truth + np.random.default_rng(0).normal(0.0, args.noise, truth.shape)
    start = {"log_k": np.zeros(CELLS), "power": np.array(1.0)}

    # Finite differences need a tighter solve than the fit: their step is 1e-6.
    tight = lambda p: misfit(p, data, reltol=1e-11)  # noqa: E731
    (g,) = pz.gradient(tight, start)
    pz.crosscheck(tight, (start,), (g,), engines=(pz.current_engine_name(),))
    print(f"the adjoint gradient at the start agrees with finite differences (|g| = {np.linalg.norm(g['log_k']):.3g})")

    def as_dict(z):
        return {"log_k": z[:CELLS], "power": z[CELLS]}

    def loss_and_grad(z):  # data is a keyword argument: the misfit is traced once, not at every call
        value, (grad,) = pz.withgradient(misfit, as_dict(z), data=data)
        return float(value), np.append(grad["log_k"], grad["power"])

    t0 = time.perf_counter()
    z0 = np.append(start["log_k"], start["power"])
    res = minimize(loss_and_grad, z0, jac=True, method="L-BFGS-B", options=dict(maxiter=500, gtol=1e-8))
    fit = as_dict(res.x)
    print(f"L-BFGS-B: {res.nit} iterations, {res.nfev} loss and adjoint-gradient evaluations, {time.perf_counter() - t0:.1f} s")

    k_true, k_fit = np.exp(TRUE["log_k"]), np.exp(fit["log_k"])
    print("\n  x     k true   k fitted")
    for i in range(0, CELLS, 3):
        print(f"{X[i]:5.2f}  {k_true[i]:7.3f}  {k_fit[i]:9.3f}")
    rel = np.sqrt(np.mean((k_fit / k_true - 1.0) ** 2))
    print(f"\nheating power: true {float(TRUE['power']):.3f}, fitted {float(fit['power']):.3f}")
    print(f"conductivity recovered to {100 * rel:.1f}% (root mean square relative error)")
    residual = np.std(readings(fit) - data)
    print(f"residual {residual:.4f} against noise {args.noise}")
    assert res.success, res.message
    assert rel < 0.1 and abs(float(fit["power"]) / 4.0 - 1.0) < 0.05, "the fit should recover the rod"


if __name__ == "__main__":
    main()

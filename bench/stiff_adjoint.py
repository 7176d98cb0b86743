"""Stiff ODE gradients on the NumPy engine: forward sensitivities against the adjoint.

Three models, each a loss on an ODE solution and its gradient, by ``sensealg="forward"`` and
``"adjoint"`` through ``Rodas5P`` (SciPy's Radau here) and ``FBDF`` (SciPy's BDF):

- ``rob``: Robertson's kinetics with Arrhenius rates, three experiments at three temperatures,
  6 parameters (3 log rates, 3 activation energies), 40 log-spaced save times from 1e-4 to 1e5;
  ``reltol=1e-8``, ``abstol=1e-12``.
- ``hh``: a Hodgkin-Huxley neuron (4 states, 4 parameters) over 50 ms with a current step from
  5 to 45 ms (``tstops``), the membrane potential saved every 0.2 ms (251 times); tolerances 1e-8.
- ``plate``: a 12 x 12 plate (144 cells) heated by a pulsing spot, conductivity rising with
  temperature, insulated edges, cooling to the air: 4 parameters, 21 save times;
  ``reltol=1e-7``, ``abstol=1e-9``.

Prints, per model, one solve's time and, per solver and sensealg, the CPU milliseconds of a
gradient (the least of ``--repeats``), its largest difference to a reference gradient (forward
sensitivities through Rodas5P at 1000 times tighter tolerances) relative to the reference's
largest entry, and with ``--counts`` the backward solve's steps and evaluations beside the
forward solve's.  Run with ``OPENBLAS_NUM_THREADS=1``:

    python bench/stiff_adjoint.py [--models rob,hh,plate] [--algs Rodas5P,FBDF] [--repeats 3] [--counts]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import scipy.special

import pyzygote as pz

# --- Robertson's kinetics, three temperatures ---------------------------------------------------
TEMPS = np.array([0.9, 1.0, 1.1])  # relative to the reference temperature
ROB_T = np.concatenate([[0.0], np.logspace(-4, 5, 40)])
ROB_P = np.concatenate([np.log([0.04, 3e7, 1e4]), [2.0, 0.5, 1.0]])


def robertson(u: Any, p: Any, t: Any) -> Any:
    y1, y2, y3 = u
    k = np.exp(p[:3] - p[3:6] * (1.0 / p[6] - 1.0))  # p[6]: the temperature, not differentiated
    return np.array([-k[0] * y1 + k[2] * y2 * y3, k[0] * y1 - k[2] * y2 * y3 - k[1] * y2 * y2, k[1] * y2 * y2])


def rob_loss(q: Any, alg: str, sensealg: str, tol: float) -> Any:
    total = 0.0
    for T in TEMPS:
        u = pz.odesolve(robertson, np.array([1.0, 0.0, 0.0]), ROB_T, np.concatenate([q, [T]]), alg=alg, sensealg=sensealg, reltol=tol, abstol=1e-12)
        total = total + np.sum((u * np.array([1.0, 1e4, 1.0])) ** 2)
    return total


# --- Hodgkin-Huxley -----------------------------------------------------------------------------
def hodgkin_huxley(u: Any, p: Any, t: Any) -> Any:
    V, m, h, n = u
    g_na, g_k, g_l, amplitude = p
    current = np.where((t >= 5.0) & (t < 45.0), amplitude, 0.0)
    alpha_m, alpha_n = 1.0 / scipy.special.exprel(-(V + 40.0) / 10.0), 0.1 / scipy.special.exprel(-(V + 55.0) / 10.0)
    beta_m, alpha_h = 4.0 * np.exp(-(V + 65.0) / 18.0), 0.07 * np.exp(-(V + 65.0) / 20.0)
    beta_h, beta_n = 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0)), 0.125 * np.exp(-(V + 65.0) / 80.0)
    return np.array([
        current - g_na * m**3 * h * (V - 50.0) - g_k * n**4 * (V + 77.0) - g_l * (V + 54.387),
        alpha_m * (1 - m) - beta_m * m, alpha_h * (1 - h) - beta_h * h, alpha_n * (1 - n) - beta_n * n,
    ])  # fmt: skip


HH_U0, HH_T, HH_P = np.array([-65.0, 0.0529, 0.5961, 0.3177]), np.linspace(0.0, 50.0, 251), np.array([120.0, 36.0, 0.3, 10.0])


def hh_loss(p: Any, alg: str, sensealg: str, tol: float) -> Any:
    v = pz.odesolve(hodgkin_huxley, HH_U0, HH_T, p, alg=alg, sensealg=sensealg, reltol=tol, abstol=tol, tstops=[5.0, 45.0])[:, 0]
    return np.sum(v**2) / 1e3


# --- a heated plate, 12 x 12 cells --------------------------------------------------------------
NP = 12
_X, _Y = np.meshgrid(np.linspace(0, 1, NP), np.linspace(0, 1, NP), indexing="ij")
HEATER = np.exp(-((_X - 0.3) ** 2 + (_Y - 0.6) ** 2) / 0.02)
PLATE_T, PLATE_P = np.linspace(0.0, 2.0, 21), np.array([0.5, 0.3, 5.0, 0.8])


def plate(u: Any, p: Any, t: Any) -> Any:
    k = p[0] * (1.0 + p[1] * u)  # conductivity rising with temperature
    up = np.pad(u, 1, mode="edge")  # insulated edges
    lap = (up[2:, 1:-1] + up[:-2, 1:-1] + up[1:-1, 2:] + up[1:-1, :-2] - 4 * u) * (NP - 1) ** 2
    return k * lap + p[2] * HEATER * (1.0 + 0.5 * np.sin(3.0 * t)) - p[3] * u


def plate_loss(p: Any, alg: str, sensealg: str, tol: float) -> Any:
    U = pz.odesolve(plate, np.zeros((NP, NP)), PLATE_T, p, alg=alg, sensealg=sensealg, reltol=tol, abstol=1e-9)
    return np.sum(U[:, 3:9, 3:9] ** 2)


MODELS = {"rob": (rob_loss, ROB_P, 1e-8), "hh": (hh_loss, HH_P, 1e-8), "plate": (plate_loss, PLATE_P, 1e-7)}


def counting() -> dict[str, dict[str, int]]:
    """Sums of the stats of each kind of solve the NumPy engine makes (forward, adjoint), by kind."""
    from pyzygote.ode import sensitivity

    seen: dict[str, dict[str, int]] = {}
    real = sensitivity._solve

    def solve(fun: Any, t0: Any, t1: Any, y0: Any, saveat: Any, opts: Any, what: str, *a: Any, **kw: Any) -> Any:
        res = real(fun, t0, t1, y0, saveat, opts, what, *a, **kw)
        kind = seen.setdefault(what.split(" (")[0], {"solves": 0})
        kind["solves"] += 1
        for key, value in res.stats.items():
            kind[key] = kind.get(key, 0) + int(value or 0)
        return res

    sensitivity._solve = solve
    explicit = getattr(sensitivity, "integrate", None)

    def integrate(fun: Any, t0: Any, t1: Any, y0: Any, saveat: Any, alg: str, *a: Any, **kw: Any) -> Any:
        res = explicit(fun, t0, t1, y0, saveat, alg, *a, **kw)
        if alg == "Tsit5":  # here only the pieces of a stiff adjoint tried with the explicit pair
            kind = seen.setdefault("adjoint pieces tried explicitly (Tsit5)", {"solves": 0, "failed": 0})
            kind["solves"] += 1
            kind["failed"] += not res.success
            for key in ("nf", "naccept", "nreject"):
                kind[key] = kind.get(key, 0) + int(res.stats.get(key) or 0)
        return res

    if explicit is not None:
        sensitivity.integrate = integrate
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="rob,hh,plate")
    parser.add_argument("--algs", default="Rodas5P,FBDF")
    parser.add_argument("--modes", default="forward,adjoint")
    parser.add_argument("--repeats", type=int, default=3, help="timed gradients per row; the least CPU time is printed")
    parser.add_argument("--counts", action="store_true", help="print the steps and evaluations of each kind of solve")
    args = parser.parse_args()
    seen = counting() if args.counts else {}
    for name in args.models.split(","):
        loss, p0, tol = MODELS[name]
        (ref,) = pz.gradient(lambda q: loss(q, "Rodas5P", "forward", tol * 1e-3), p0)
        loss(p0, "Rodas5P", "forward", tol)
        start = time.process_time()
        loss(p0, "Rodas5P", "forward", tol)
        print(f"== {name}: one solve (Rodas5P) {1e3 * (time.process_time() - start):.0f} ms", flush=True)
        for alg in args.algs.split(","):
            for mode in args.modes.split(","):
                f = lambda q: loss(q, alg, mode, tol)  # noqa: E731
                pz.gradient(f, p0)  # traced and derived here
                times = []
                for _ in range(args.repeats):
                    seen.clear()
                    start = time.process_time()
                    (g,) = pz.gradient(f, p0)
                    times.append(time.process_time() - start)
                rel = float(np.max(np.abs(g - ref)) / np.max(np.abs(ref)))
                print(f"  {alg:8s} {mode:8s} {1e3 * min(times):9.0f} ms  max rel. diff {rel:.1e}", flush=True)
                for kind, stats in seen.items():
                    print(f"      {kind}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))


if __name__ == "__main__":
    main()

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

- ``bru``: with ``--layouts N``: a Brusselator on an N x N grid (5-point Laplacian, 2 N^2 states,
  3 parameters), stored species-first (``u`` of shape ``(2, N, N)``) and grid-first (``(N, N, 2)``):
  the same system, numbered so that its Jacobian's band is N^2 or 2N.  Per layout, the seconds of
  a solve with ``auto`` (LSODA), ``FBDF`` and SciPy's ``BDF`` given the ``jac_sparsity`` pattern
  (the peer, a plain SciPy call), and of a gradient by ``auto`` (its adjoint), by ``FBDF``'s adjoint
  and by ``auto``'s forward sensitivities (the least CPU time of ``--repeats``), with the
  gradients' largest difference to FBDF's forward sensitivities at 1000 times tighter tolerances.

Prints, per model, one solve's time and, per solver and sensealg, the CPU milliseconds of a
gradient (the least of ``--repeats``), its largest difference to a reference gradient (forward
sensitivities through Rodas5P at 1000 times tighter tolerances) relative to the reference's
largest entry, and with ``--counts`` the backward solve's steps and evaluations beside the
forward solve's.  Run with ``OPENBLAS_NUM_THREADS=1``:

    python bench/stiff_adjoint.py [--models rob,hh,plate] [--algs Rodas5P,FBDF] [--repeats 3] [--counts]
    python bench/stiff_adjoint.py --layouts 40 [--repeats 3]
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


# --- a Brusselator on a grid, species-first or grid-first ------------------------------------------
BRU_P, BRU_T, BRU_TOL = np.array([1.0, 3.0, 0.02]), np.linspace(0.0, 2.0, 11), (1e-6, 1e-8)


def _lap(a: Any, h2: float) -> Any:
    ap = np.pad(a, 1, mode="edge")  # no flux through the edges
    return (ap[2:, 1:-1] + ap[:-2, 1:-1] + ap[1:-1, 2:] + ap[1:-1, :-2] - 4 * a) * h2


def bru_rates(a: Any, b: Any, p: Any) -> tuple[Any, Any]:
    h2 = (a.shape[0] - 1) ** 2
    return p[0] + a * a * b - (p[1] + 1) * a + p[2] * _lap(a, h2), p[1] * a - a * a * b + p[2] * _lap(b, h2)


def bru_species_first(u: Any, p: Any, t: Any) -> Any:
    return np.stack(bru_rates(u[0], u[1], p))


def bru_grid_first(u: Any, p: Any, t: Any) -> Any:
    return np.stack(bru_rates(u[..., 0], u[..., 1], p), axis=-1)


def bru_u0(N: int, layout: str) -> np.ndarray:
    X, Y = np.meshgrid(np.linspace(0, 1, N), np.linspace(0, 1, N), indexing="ij")
    u = np.stack([1.0 + 0.5 * np.sin(2 * np.pi * X) * np.cos(np.pi * Y), 3.0 + 0.2 * X])
    return u if layout == "species" else np.moveaxis(u, 0, -1)


def bru_sparsity(N: int, layout: str) -> Any:
    """The Jacobian's pattern as a SciPy user writes it for ``jac_sparsity``."""
    import scipy.sparse as sp

    line = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(N, N), dtype=float)
    cell = (sp.kron(line, sp.eye(N)) + sp.kron(sp.eye(N), line)).astype(bool)  # the 5-point stencil
    species = np.ones((2, 2))  # each species of a cell reads both
    return (sp.kron(species, cell) if layout == "species" else sp.kron(cell, species)).astype(bool).tocsr()


def bru_layouts(N: int, repeats: int) -> None:
    from scipy.integrate import solve_ivp

    rel, ab = BRU_TOL

    def best(fn: Any) -> tuple[float, Any]:
        out, times = fn(), []  # traced and derived on this first call
        for _ in range(repeats):
            start = time.process_time()
            out = fn()
            times.append(time.process_time() - start)
        return min(times), out

    print(f"== bru: Brusselator on a {N} x {N} grid, {2 * N * N} states, reltol={rel:g}, abstol={ab:g}", flush=True)
    for layout, f in (("species", bru_species_first), ("grid", bru_grid_first)):
        u0 = bru_u0(N, layout)

        def loss(p: Any, alg: str, sensealg: str, scale: float = 1.0) -> Any:
            U = pz.odesolve(f, u0, BRU_T, p, alg=alg, sensealg=sensealg, reltol=rel * scale, abstol=ab * scale)  # noqa: B023
            return np.sum(U[-1] ** 2) / U[-1].size

        def peer() -> Any:
            rhs = lambda t, y: np.ravel(f(np.reshape(y, u0.shape), BRU_P, t))  # noqa: B023, E731
            sol = solve_ivp(rhs, (0.0, 2.0), np.ravel(u0), "BDF", t_eval=BRU_T, rtol=rel, atol=ab, jac_sparsity=bru_sparsity(N, layout))  # noqa: B023
            return sol.y[:, -1]

        line = [f"  {layout + '-first':14s} solve: "]
        for name, fn in (("auto", lambda: loss(BRU_P, "auto", "auto")), ("FBDF", lambda: loss(BRU_P, "FBDF", "auto")), ("SciPy BDF + jac_sparsity", peer)):
            line.append(f"{name} {best(fn)[0]:.2f} s")
        print(line[0] + ", ".join(line[1:]), flush=True)
        (ref,) = pz.gradient(lambda p: loss(p, "FBDF", "forward", 1e-3), BRU_P)  # noqa: B023
        line = [f"  {layout + '-first':14s} gradient: "]
        for alg, mode in (("auto", "auto"), ("FBDF", "adjoint"), ("auto", "forward")):
            seconds, (g,) = best(lambda: pz.gradient(lambda p: loss(p, alg, mode), BRU_P))  # noqa: B023
            line.append(f"{alg} {mode} {seconds:.2f} s ({np.max(np.abs(g - ref)) / np.max(np.abs(ref)):.0e})")
        print(line[0] + ", ".join(line[1:]), flush=True)


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
    parser.add_argument("--layouts", type=int, default=0, help="N: the Brusselator on an N x N grid in both layouts, instead")
    args = parser.parse_args()
    if args.layouts:
        bru_layouts(args.layouts, args.repeats)
        return
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

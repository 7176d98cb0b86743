"""Medium ODE models (10 to 30 states, 24 to 930 parameters): pyzygote's gradients against its peers, in one run.

Three fits, each a loss on an ODE solution and its gradient in all parameters:

- ``seir``: an age-structured SEIR epidemic, 5 age groups x (S, E, I, R, cumulative
  infections) = 25 states, a fixed contact matrix, 10 parameters (transmission, 5 age
  susceptibilities, latent and infectious rates, waning, seasonal amplitude); the loss
  compares weekly incidence per age group over 20 weeks.  Tsit5, rtol = atol = 1e-8.
- ``chem``: a stiff 10-species reaction network (Robertson-like core), 12 mass-action
  reactions with Arrhenius rates ``k = exp(log A - Ea / T(t))`` under a temperature ramp:
  24 parameters, 21 log-spaced save times.  Rodas5P on pyzygote (SciPy Radau on the NumPy
  engine), Kvaerno5 on diffrax, Radau for SciPy; rtol = 1e-6, atol = 1e-10.
- ``rnn``: a 30-unit rate network ``x' = -x + tanh(W x + b)`` fitted in W and b (930
  parameters) to a trajectory at 21 save times.  Tsit5, rtol = atol = 1e-6; pyzygote by
  its adjoint.  SciPy + finite differences would take 1,861 solves: its time is estimated
  from one solve.

Prints, per model, the median milliseconds per gradient, the ratios to SciPy + central
finite differences (for rnn, to its estimate) and to JAX, the first call's time
(tracing for pyzygote, compilation for JAX), and the largest difference to the reference
gradient (SciPy + FD, for rnn JAX's) relative to the reference's largest entry.  JAX runs
jitted with x64 (diffrax's RecursiveCheckpointAdjoint); peers not installed are reported as
skipped.

Run:  python bench/medium_ode.py [--repeats 7] [--models seir,chem,rnn]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np
from scipy.integrate import solve_ivp

import pyzygote as pz

Peer = tuple[str, "Callable[[np.ndarray], Any] | None"]


# --- SEIR, 5 age groups ---------------------------------------------------------------------
G = 5
POP = np.array([0.22, 0.25, 0.24, 0.18, 0.11])
CONTACT = np.array(
    [
        [7.0, 2.5, 2.0, 1.0, 0.5],
        [2.5, 9.0, 3.0, 1.2, 0.6],
        [2.0, 3.0, 6.0, 1.8, 0.8],
        [1.0, 1.2, 1.8, 4.0, 1.2],
        [0.5, 0.6, 0.8, 1.2, 3.0],
    ]
) / 10.0
SEIR_U0 = np.concatenate([POP * (1 - 1e-4), POP * 5e-5, POP * 5e-5, np.zeros(G), np.zeros(G)])
SEIR_T = np.arange(0.0, 141.0, 7.0)  # 20 weeks
SEIR_TRUE = np.array([0.45, 1.0, 0.9, 0.8, 1.1, 1.3, 1 / 4.0, 1 / 6.0, 1 / 120.0, 0.15])
SEIR_P0 = SEIR_TRUE * np.array([1.05, 0.97, 1.03, 0.95, 1.02, 1.04, 0.96, 1.05, 0.9, 1.2])
SEIR_TOL = (1e-8, 1e-8)


def _seir(u, p, t, xp, contact, pop):
    S, E, I, R = u[0:5], u[5:10], u[10:15], u[15:20]
    beta, susc, sigma, gamma, omega, amp = p[0], p[1:6], p[6], p[7], p[8], p[9]
    force = beta * (1.0 + amp * xp.cos(2 * np.pi * t / 365.0)) * susc * (contact @ (I / pop))
    infect = force * S
    return xp.concatenate([-infect + omega * R, infect - sigma * E, sigma * E - gamma * I, gamma * I - omega * R, sigma * E])


def seir(u, p, t):
    return _seir(u, p, t, np, CONTACT, POP)


def seir_loss_of(u):
    inc = np.diff(u[:, 20:25], axis=0) * 1e3  # weekly incidence per 1000
    return inc


# --- 10-species stiff network, Arrhenius rates -------------------------------------------------
# (reactants, products) per reaction, species 0..9
REACTIONS = [
    ((0,), (1,)),
    ((1, 1), (2, 1)),
    ((1, 2), (0, 2)),
    ((1,), (2,)),
    ((2, 3), (4,)),
    ((4,), (2, 3)),
    ((4,), (5,)),
    ((5, 0), (6,)),
    ((6,), (7, 1)),
    ((7,), (8,)),
    ((8, 1), (9,)),
    ((9,), (0, 3)),
]
NR, NS = len(REACTIONS), 10
K_REF = np.array([0.04, 3e7, 1e4, 0.5, 10.0, 1.0, 0.5, 2.0, 1.0, 0.3, 5.0, 0.1])
EA = np.array([2.0, 0.5, 1.0, 3.0, 1.5, 4.0, 2.5, 1.0, 2.0, 3.5, 0.8, 2.2])
CHEM_TRUE = np.concatenate([np.log(K_REF) + EA, EA])  # k = exp(logA - Ea / T), T = 1 at t = 0
CHEM_P0 = CHEM_TRUE + np.concatenate([np.full(NR, 0.05), np.full(NR, -0.03)])
CHEM_U0 = np.array([1.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
CHEM_T = np.concatenate([[0.0], np.logspace(-3, 2, 20)])
CHEM_TOL = (1e-6, 1e-10)


def _rates(u, p, t, xp):
    temp = 1.0 + 0.002 * t
    k = xp.exp(p[:NR] - p[NR:] / temp)
    terms = []
    for j, (reac, _) in enumerate(REACTIONS):
        r = k[j]
        for s in reac:
            r = r * u[s]
        terms.append(r)
    return terms


def _net(terms, xp):
    rows = []
    for s in range(NS):
        total = 0.0
        for j, (reac, prod) in enumerate(REACTIONS):
            c = prod.count(s) - reac.count(s)
            if c:
                total = total + c * terms[j]
        rows.append(total)
    return xp.stack([xp.asarray(r) * 1.0 for r in rows])


def chem(u, p, t):
    return _net(_rates(u, p, t, np), np)


# --- 30-unit rate network -------------------------------------------------------------------------
NU = 30
_rng = np.random.default_rng(11)
W_TRUE = _rng.standard_normal((NU, NU)) * 1.2 / np.sqrt(NU)
B_TRUE = 0.3 * _rng.standard_normal(NU)
RNN_TRUE = np.concatenate([W_TRUE.ravel(), B_TRUE])
RNN_P0 = RNN_TRUE + 0.05 * _rng.standard_normal(RNN_TRUE.size)
RNN_U0 = _rng.uniform(-1.0, 1.0, NU)
RNN_T = np.linspace(0.0, 10.0, 21)
RNN_TOL = (1e-6, 1e-6)


def rnn(u, p, t):
    return -u + np.tanh(np.reshape(p[: NU * NU], (NU, NU)) @ u + p[NU * NU :])


MODELS = {
    "seir": dict(f=seir, u0=SEIR_U0, t=SEIR_T, p_true=SEIR_TRUE, p0=SEIR_P0, tol=SEIR_TOL, alg="Tsit5", scipy="DOP853", jax="Tsit5"),
    "chem": dict(f=chem, u0=CHEM_U0, t=CHEM_T, p_true=CHEM_TRUE, p0=CHEM_P0, tol=CHEM_TOL, alg="Rodas5P", scipy="Radau", jax="Kvaerno5"),
    "rnn": dict(f=rnn, u0=RNN_U0, t=RNN_T, p_true=RNN_TRUE, p0=RNN_P0, tol=RNN_TOL, alg="Tsit5", scipy="RK45", jax="Tsit5"),
}


def observe(name: str, u):
    """What each loss compares: weekly incidence (SEIR), the state (the others)."""
    return seir_loss_of(u) if name == "seir" else u


def scipy_solution(m: dict, p: np.ndarray) -> np.ndarray:
    f, t = m["f"], m["t"]
    rtol, atol = m["tol"]
    sol = solve_ivp(lambda tt, u: f(u, p, tt), (t[0], t[-1]), m["u0"], method=m["scipy"], t_eval=t, rtol=rtol, atol=atol)
    return sol.y.T


def scipy_loss(name: str, m: dict, data: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda q: float(np.sum((observe(name, scipy_solution(m, q)) - data) ** 2))


def scipy_fd_gradient(name: str, m: dict, data: np.ndarray, eps: float = 1e-6) -> Callable[[np.ndarray], np.ndarray]:
    loss = scipy_loss(name, m, data)

    def grad(p: np.ndarray) -> np.ndarray:
        return np.array([(loss(p + eps * e) - loss(p - eps * e)) / (2 * eps) for e in np.eye(p.size)])

    return grad


def pyzygote_gradient(name: str, m: dict, data: np.ndarray, sensealg: str) -> Callable[[np.ndarray], np.ndarray]:
    f, u0, t, alg = m["f"], m["u0"], m["t"], m["alg"]
    rtol, atol = m["tol"]

    def loss(p):
        u = pz.odesolve(f, u0, t, p, alg=alg, sensealg=sensealg, reltol=rtol, abstol=atol)
        return np.sum((observe(name, u) - data) ** 2)

    return lambda p: pz.gradient(loss, p, engine="numpy")[0]


def jax_gradient(name: str, m: dict, data: np.ndarray) -> Callable[[np.ndarray], Any] | None:
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    rtol, atol = m["tol"]
    t = jnp.asarray(m["t"])

    if name == "seir":
        contact, pop = jnp.asarray(CONTACT), jnp.asarray(POP)

        def vf(tt, u, p):
            return _seir(u, p, tt, jnp, contact, pop)

        obs = lambda u: jnp.diff(u[:, 20:25], axis=0) * 1e3  # noqa: E731
    elif name == "chem":

        def vf(tt, u, p):
            return _net(_rates(u, p, tt, jnp), jnp)

        obs = lambda u: u  # noqa: E731
    else:

        def vf(tt, u, p):
            return -u + jnp.tanh(jnp.reshape(p[: NU * NU], (NU, NU)) @ u + p[NU * NU :])

        obs = lambda u: u  # noqa: E731

    solver = getattr(diffrax, m["jax"])()
    target = jnp.asarray(data)

    def loss(p):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf), solver, t[0], t[-1], 1e-3, jnp.asarray(m["u0"]), args=p,
            saveat=diffrax.SaveAt(ts=t), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=100_000,
        )
        return jnp.sum((obs(sol.ys) - target) ** 2)

    g = jax.jit(jax.grad(loss))
    return lambda p: np.asarray(g(jnp.asarray(p)).block_until_ready())


def timed(fn: Callable[[np.ndarray], Any], point: np.ndarray, repeats: int) -> tuple[float, float, np.ndarray]:
    """(first call ms, median ms of ``repeats`` further calls, the gradient)."""
    start = time.perf_counter()
    g = np.asarray(fn(point), dtype=float)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(point)
        times.append(time.perf_counter() - start)
    return 1e3 * first, 1e3 * statistics.median(times), g


def run_model(name: str, repeats: int) -> None:
    m = MODELS[name]
    data = observe(name, scipy_solution(m, m["p_true"]))
    p0 = m["p0"]
    n, k = m["u0"].size, p0.size
    print(f"\n== {name}: {n} states, {k} parameters, {len(m['t'])} save times, {m['alg']} (rtol, atol = {m['tol']}) ==")
    peers: list[Peer] = []
    estimate = None
    if k <= 64:
        peers.append((f"SciPy solve_ivp {m['scipy']} + central FD", scipy_fd_gradient(name, m, data)))
    else:
        loss = scipy_loss(name, m, data)
        _, one, _ = timed(lambda q: loss(q), p0, max(3, repeats))
        estimate = one * (2 * k + 1)
    senses = ["auto", "forward", "adjoint"] if name != "rnn" else ["auto", "adjoint"]
    for s in senses:
        peers.append((f"pyzygote NumPy, {m['alg']}, sensealg={s}", pyzygote_gradient(name, m, data, s)))
    peers.append((f"JAX + diffrax {m['jax']} (jit)", jax_gradient(name, m, data)))
    rows = []
    for label, fn in peers:
        if fn is None:
            rows.append((label, None))
            continue
        rows.append((label, timed(fn, p0, repeats)))
    ref = next((r[1][2] for r in rows if r[1] is not None and r[0].startswith("JAX")), None)
    if ref is None or k <= 64:
        ref = next(r[1][2] for r in rows if r[1] is not None)
    base = rows[0][1][1] if rows[0][1] is not None else None
    base_label = "SciPy+FD"
    if estimate is not None:
        print(f"SciPy solve_ivp {m['scipy']} + central FD: estimated {estimate:.0f} ms/grad ({2 * k + 1} solves of one solve's time)")
        base = estimate
    jax_ms = next((r[1][1] for r in rows if r[1] is not None and r[0].startswith("JAX")), None)
    print(f"{'peer':46s} {'ms/grad':>9s} {'vs ' + base_label:>11s} {'vs JAX':>8s} {'1st call ms':>12s}  max rel. diff")
    for label, r in rows:
        if r is None:
            print(f"{label:46s} skipped (not installed)")
            continue
        first, ms, g = r
        rel = float(np.max(np.abs(g - ref)) / np.max(np.abs(ref)))
        vs_base = f"{ms / base:10.3f}x" if base else " " * 11
        vs_jax = f"{ms / jax_ms:7.2f}x" if jax_ms else " " * 8
        print(f"{label:46s} {ms:9.2f} {vs_base} {vs_jax} {first:12.0f}  {rel:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per peer; the median is printed")
    parser.add_argument("--models", default="seir,chem,rnn", help="comma-separated: seir, chem, rnn")
    args = parser.parse_args()
    for name in args.models.split(","):
        run_model(name.strip(), args.repeats)


if __name__ == "__main__":
    main()

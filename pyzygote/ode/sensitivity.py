"""Derivatives of ODE solutions on the NumPy engine.

Names follow SciMLSensitivity.jl:

- ``"forward"``: forward sensitivity equations ``S' = J_u S + J_p`` for the
  full sensitivity matrix (like ``ForwardSensitivity``), cheapest for few
  states and parameters;
- ``"adjoint"``: the continuous adjoint ``lambda' = -J_u^T lambda`` solved backwards
  against the dense (interpolated) forward solution (like
  ``InterpolatingAdjoint``/``GaussAdjoint``);
- ``"backsolve"``: the same adjoint, re-solving the state backwards alongside
  it and resetting it to the forward solution at each save time (like
  ``BacksolveAdjoint`` with its default ``checkpointing=true``: little memory,
  can be unstable on stiff problems);
- ``"auto"``: forward when there are few directions, at most
  ``AUTO_FORWARD_DIRECTIONS`` differentiated entries k of ``u0`` and ``p``, or when the
  forward-sensitivity system is small, at most ``AUTO_FORWARD_EQUATIONS`` equations
  ``n (1 + k)`` for n states, or when an evaluation of the sensitivity system is
  estimated clearly cheaper than the adjoint's work (a vectorized right-hand side); else the adjoint.  (SciMLSensitivity's
  rule, ``len(u0) + len(p) <= 100``, suits Julia, whose forward mode carries all
  directions in one dual number; here each direction costs a tangent of the
  right-hand side at every step.)

>>> import numpy as np
>>> from pyzygote.ode.rhs import RHS
>>> rhs = RHS.trace(lambda u, p, t: -p * u, 1, 1)
>>> t = np.array([0.0, 1.0])
>>> ct = np.array([[0.0], [1.0]])
>>> g_u0, g_p = vjp(rhs, np.array([1.0]), np.array([1.0]), t, ct, Options("Tsit5", 1e-10, 1e-10), "adjoint")
>>> round(float(g_p[0]), 6), round(float(-np.exp(-1.0)), 6)
(-0.367879, -0.367879)
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pyzygote.errors import NonFiniteGradientError, SolverError
from pyzygote.ode import forward_memo
from pyzygote.ode.rhs import DENSE_JACOBIAN_UP_TO, RHS, sensitivity_jacobian
from pyzygote.ode.solvers import ALGORITHMS, Integration, algorithm, dense_matrix, integrate, largest_magnitudes, point_evaluator

__all__ = ["Options", "SENSEALGS", "solve_states", "forward_sensitivities", "vjp", "resolve_sensealg"]

SENSEALGS = ("auto", "forward", "adjoint", "backsolve")


@dataclass(frozen=True)
class Options:
    alg: str
    reltol: float
    abstol: float
    maxiters: int = 100_000
    tstops: tuple[float, ...] = ()  # times every solve steps to (SciML's tstops)


# Timed on this engine (Tsit5 and Rodas5P, 2 to 40 states and parameters): forward sensitivities
# were 2-3 times faster than the adjoint up to about 100 equations and 1.5-4 times slower from
# 200; a right-hand side with many operations (a 20-species network with 35 parameters) moves
# the crossing lower, as each direction repeats all of them.
AUTO_FORWARD_EQUATIONS = 150
# With few directions forward sensitivities win whatever the number of states: a 40-shell
# battery model (80 states, 4 parameters, user testing) took 0.11 s forward and 2.2 s by the
# adjoint with Rodas5P; a diffusion chain of 80 cells with 4 to 16 parameters, 0.06-0.14 s
# against 0.17-0.66 s with Tsit5 and Rodas5P.  The backward solve and its restarts at save
# times cost more than a few tangents per step.
AUTO_FORWARD_DIRECTIONS = 16
# Forward sensitivities hold n x k floats per save time, the adjoint n (and its dense output):
# with more directions than the above, "auto" takes the adjoint where they would exceed this.
# A 100-member ensemble (200 states and parameters) saved monthly for 300 years needed 1.2 GB of
# sensitivities (2.3 GB peak) where the adjoint took 106 MB (user testing).
AUTO_FORWARD_BYTES = 256 * 2**20


# SciMLSensitivity's sensealgs and the name of what computes the same gradient here.
_SCIML_NAMES = {
    "ForwardDiffSensitivity": "sensealg='forward'",
    "ForwardSensitivity": "sensealg='forward'",
    "GaussAdjoint": "sensealg='adjoint'",
    "InterpolatingAdjoint": "sensealg='adjoint' (a continuous adjoint against the interpolated forward solution)",
    "QuadratureAdjoint": "sensealg='adjoint' (a continuous adjoint against the interpolated forward solution)",
    "BacksolveAdjoint": "sensealg='backsolve'",
}


def resolve_sensealg(
    sensealg: str,
    n: int,
    m: int,
    k: int | None = None,
    *,
    rhs: Any = None,
    cols: tuple[int, ...] | None = None,
    saves: int | Callable[[], int] = 2,
    times: int | None = None,
    tstops: int = 0,
    alg: str | None = None,
    restarts_counted: bool = False,
) -> str:
    """The sensealg that runs for ``sensealg`` with n states, m parameters and k followed directions
    (all n + m by default); given the right-hand side ``rhs``, the directions ``cols`` and the number
    of save times at which an adjoint restarts (those the loss reads; or a function finding it, called
    only when the choice turns on it: following a program's values costs), ``"auto"`` also weighs what
    one evaluation of each system costs (a solve with ``tstops`` stops steps at least as often),
    and, given the number of save ``times``, what forward sensitivities would hold in memory.
    ``restarts_counted``: ``saves`` are the adjoint's restarts, counted from its cotangent (by
    :func:`vjp`); only then does a large implicit system with few directions weigh them."""
    if sensealg not in SENSEALGS:
        sciml = _SCIML_NAMES.get(str(sensealg).removesuffix("()").split("(")[0]) if isinstance(sensealg, str) else None
        hint = f" ({sensealg!r} is SciMLSensitivity's name; here it is {sciml})" if sciml else ""
        if isinstance(sensealg, str) and sensealg.strip().lower() in SENSEALGS:
            hint = f" (did you mean {sensealg.strip().lower()!r}? the names are lower case)"
        raise ValueError(f"unknown sensealg={sensealg!r}; choose one of {', '.join(SENSEALGS)}{hint}")
    if sensealg == "auto":
        from pyzygote.transforms.vjp import pullbacks_expected

        k = n + m if k is None else k
        # Forward sensitivities are solved once however many cotangents are pulled back; an
        # adjoint solve is repeated for each (pz.jacobian's rows: a 12-species mechanism's 14
        # rows took 192 s by adjoint, 15 s by forward sensitivities, in user testing).
        small = n * (1 + k) <= AUTO_FORWARD_EQUATIONS * pullbacks_expected()
        if small or (k <= AUTO_FORWARD_DIRECTIONS and not (_large_implicit(alg, n) and (not restarts_counted or _few_restarts(saves, k)))):
            return "forward"
        if _large_implicit(alg, n) and pullbacks_expected() == 1:
            return "adjoint"
        if times is not None and pullbacks_expected() == 1 and 8.0 * n * k * times > AUTO_FORWARD_BYTES:
            return "adjoint"
        cheaper = rhs is not None and cols is not None and _forward_is_cheaper(rhs, cols, saves, pullbacks_expected(), tstops)
        return "forward" if cheaper else "adjoint"
    return sensealg


def _large_implicit(alg: str | None, n: int) -> bool:
    """Whether an implicit solver (``auto`` too: its LSODA, or BDF for a large sensitivity system)
    factorizes a sparse state Jacobian (more than DENSE_STATE_JACOBIAN_UP_TO states).  Before
    pyzygote.ode.block_lu, forward sensitivities factorized the whole ``n (1 + k)``-equation system
    there, 7 to 50 times slower than the adjoint with 12 directions (2-D reaction-diffusion grids of
    162 to 1,800 states); with few directions ``auto`` now weighs the adjoint's restarts
    (AUTO_FORWARD_SAVES_PER_DIRECTION)."""
    from pyzygote.ode.rhs import DENSE_STATE_JACOBIAN_UP_TO

    if alg is None or n <= DENSE_STATE_JACOBIAN_UP_TO:
        return False
    return alg == "auto" or (alg in ALGORITHMS and algorithm(alg).stiff)


# A large implicit system with few directions takes forward sensitivities where the loss reads at
# least this many save times per direction (the adjoint's restarts), the adjoint where it reads
# fewer.  Forward sensitivities factorize one state block (pyzygote.ode.block_lu); on 2-D
# reaction-diffusion grids, where restarts are cheap, they were 1.4 to 7.7 times slower than the
# adjoint (196 states, 4 and 12 parameters, 7 to 61 saves read; 900 states, 12 parameters, 21 and
# 101 saves) and broke even at about 16 saves per direction (196 states, 12 parameters, 201
# saves; with 900 states and 201 saves forward was still 2 times slower, FBDF).  Where each restart
# meets a stiff transient again, the adjoint was 3.5 to 4 times slower (acceptance testing: 1-D
# diffusion with a stiff surface state, 201 states, 2 parameters, 101 saves read: 1.43 s against
# 0.41 s with Rodas5P, 1.86 s against 0.56 s with FBDF).
AUTO_FORWARD_SAVES_PER_DIRECTION = 16


def _few_restarts(saves: int | Callable[[], int], k: int) -> bool:
    """Whether an adjoint would restart at fewer than AUTO_FORWARD_SAVES_PER_DIRECTION save times per direction."""
    saves = saves() if callable(saves) else saves
    return saves < AUTO_FORWARD_SAVES_PER_DIRECTION * max(k, 1)


# The solver's own work per evaluation of the right-hand side (the stepper's arithmetic, the
# dense output the adjoint reads), and how many evaluations the adjoint makes per evaluation of
# a forward-sensitivity solve: the state once (the value, with dense output: forward_memo) and
# the backward solve, which restarts at each save time: with 41 save times it made about 3 times
# as many as one forward solve (Tsit5, 4 to 20 states), with 3 about as many.  A restart costs
# about a step: a solve stepping to many tstops (which the backward solve steps to as well) has
# at least as many steps, and its restarts weigh less (user testing: 301 yearly tstops, a loss
# on the last 120 monthly saves: 421 backward steps against 316 for the last state alone).
SOLVER_NS_PER_EVALUATION = 10_000.0
ADJOINT_STATE_SOLVES = 1.0
SAVES_PER_BACKWARD_SOLVE = 20.0
# The estimates are good to about 1.5 times (numpy's per-call cost differs between operations:
# a 12-state vectorized model's sensitivity system took 54 us where 37 were estimated), so
# forward sensitivities are taken only when estimated clearly cheaper.
FORWARD_MARGIN = 0.7


def _forward_is_cheaper(rhs: Any, cols: tuple[int, ...], saves: int | Callable[[], int], pullbacks: int, tstops: int = 0) -> bool:
    """Whether forward sensitivities along ``cols`` are estimated to cost less than ``pullbacks`` adjoint solves.

    Many directions alone do not decide it: a vectorized right-hand side (a generalized
    Lotka-Volterra community, ``u * (r + A @ u)``: 8 states, 72 parameters) carries all of them
    in a few numpy operations, and forward sensitivities were 2 to 3 times faster than the
    adjoint; one written entry by entry (a 20-species network, 35 rates) repeats each float
    operation per direction, and the adjoint was 3 to 6 times faster.
    """
    if getattr(rhs, "program", None) is None:  # a Julia right-hand side: no program to weigh
        return False
    f, sens, adj = rhs.evaluation_costs(cols)
    saves = saves() if callable(saves) else saves
    solver = SOLVER_NS_PER_EVALUATION
    forward = sens + solver
    backward = 1.0 + saves / max(SAVES_PER_BACKWARD_SOLVE, tstops + 1.0)
    adjoint = ADJOINT_STATE_SOLVES * (f + solver) + backward * (adj + solver)
    return forward <= FORWARD_MARGIN * pullbacks * adjoint


def _checked(res: Integration, what: str, alg: str | None = None, blame: Callable[[float], tuple[float, Any, str]] | None = None) -> Integration:
    """``res``, or a SolverError saying why it failed; ``blame(t)`` names the operation of the
    right-hand side whose derivative is not finite at time ``t``, for a solve of derivatives."""
    if not res.success:
        explicit = alg is not None and alg != "auto" and not algorithm(alg).stiff
        stiff = (
            f"an explicit solver ({alg}) may have met a stiff problem: try alg='Rodas5P' or 'FBDF', or "
            "alg='auto', which switches to a stiff method"
        )
        # A long span (10^4 orbits) or a singularity (r -> 0) is no stiffness (user testing).
        stiff = (
            " If the span is long (many periods or orbits), raise maxiters="
            + (f"; if the steps keep shrinking, {stiff}" if explicit else "")
            + "; if the state grew without bound where the solve stopped, the solution blows up before the "
            "end of the span (u' = u**2 does): shorten the span or check the model."
            if res.retcode == "MaxIters"
            else " The step size shrank to nothing: the solution may near a singularity of the right-hand side (a "
            "division by zero, such as r -> 0 under gravity) or blow up" + (f"; if not, {stiff}." if explicit else ".")
            if res.retcode == "DtLessThanMin" and "NaN or inf" not in res.message
            else ""
        )
        if what.startswith("solve of the derivative system") and res.retcode == "DtLessThanMin" and "NaN or inf" not in res.message:
            # User testing: a Hodgkin-Huxley Hessian through Rodas5P, whose rates are 0 / 0 at V = -40
            stiff = (
                " The ODE itself solves here: its derivatives, which this system holds, lose their precision near a "
                "removable singularity of f, and an implicit solver's error control can then give up. Write a rate such "
                "as x / (1 - np.exp(-x)) as 1 / scipy.special.exprel(-x), whose derivatives are exact at 0; or try "
                "alg='auto' or 'Tsit5', or a looser reltol."
            )
        nonfinite = "NaN or inf" in res.message
        derivative = _NOT_DIFFERENTIABLE if what != "ODE solve" and nonfinite else ""
        message = f"the {what} failed with retcode {res.retcode} at t = {res.t_reached:.6g}: {res.message.rstrip('.')}" + (f".{stiff}" if stiff else "")
        at, t_reached = len(message), res.t_reached
        if blame is None or not nonfinite:
            message += derivative
            raise SolverError(message if message.endswith(".") else message + ".", where=None, where_at=at)
        # the operation named, and what it is told with, when the message is read (see _DiagnosedLater)
        raise SolverError(message + ".", where=lambda: _diagnosis(blame(t_reached), derivative), where_at=at)
    return res


_NOT_DIFFERENTIABLE = (
    ". If the ODE itself solves at these values (pz.odesolve outside the gradient), it is a derivative of the "
    "right-hand side that is NaN or inf: f is not differentiable there (np.sqrt(x) or x ** 0.5 at x = 0, np.log "
    "at 0, np.abs at 0). Keep parameters off such points (fit log-parameters: np.exp(log_k)), or smooth f there"
)
_OVERFLOW = (
    ". The parameters (or the state) have reached values too large for float64, as a fit's line search can step to "
    "(10 ** log10_k at log10_k = 373): bound them (scipy.optimize.minimize's bounds=), or work in logs (np.exp(a - b) "
    "for np.exp(a) / np.exp(b))"
)


def _diagnosis(found: tuple[float, Any, str], derivative: str) -> str:
    """The sentence a SolverError for NaN or inf gains: the operation of f ``blame`` found, with
    advice for its kind (an overflow is no point where f is not differentiable: user testing)."""
    t, finding, state = found
    if not finding:
        return derivative
    named = f". At t = {t:.6g}, running f again at {state} and these parameters: {finding}"
    kind = getattr(finding, "kind", "")
    if kind == "overflow":
        return named + _OVERFLOW
    if kind == "value":  # f itself is not finite there: the value, not its derivative
        return named
    states = getattr(finding, "states", None)
    if states and derivative:
        # the state, not a parameter, is at the point: log-parameters would not move it
        which = ", ".join(f"u[{j}]" for j in states[:5]) + (" ..." if len(states) > 5 else "")
        entries = "entry" if len(states) == 1 else "entries"
        return (
            f"{named}. It is the state that sits at this singular point: f's derivative along state {entries} {which} "
            f"(flattened) is not finite at t = {t:.6g}, with a finite f. Derivatives along a direction that leaves "
            "such a state where it is (sensitivities to parameters, from a state that starts there) are taken as 0; "
            "this one is not. Keep the operand a little away from the point, np.maximum(c, 1e-12) ** h for a "
            "concentration c that starts at 0, or write f so that its derivative is finite there"
        )
    return derivative + named


# A failed solve is repeated with f watched (see _Sightings) only if it took at most this long:
# reading the message of a longer one would cost as much again.
REPLAY_UP_TO_SECONDS = 30.0


class _Sightings:
    """The last time and state (the first ``n`` entries) at which a failed solve's right-hand side
    (or Jacobian) returned NaN or inf from a finite state, found by solving again with both
    watched (:meth:`look`), so that the operation of f responsible can be named (user testing: a
    state a hair below 0 in x ** n made "the solution became NaN or infinite at t=2.21", with no
    word of the power).  The solve is repeated only when the error's message is read (watching
    every evaluation of a solve that succeeds made a small Tsit5 solve 1.6 times slower), and
    only if it took at most REPLAY_UP_TO_SECONDS."""

    def __init__(self, n: int):
        self.n, self.at = n, None
        self.replay: Callable[[], Any] | None = None

    def look(self) -> tuple[float, np.ndarray] | None:
        replay, self.replay = self.replay, None
        if replay is not None:
            replay()
        return self.at

    def watch(self, fun: Callable[[float, np.ndarray], Any] | None) -> Any:
        if fun is None:
            return None

        def watched(t: float, y: np.ndarray) -> Any:
            out = fun(t, y)
            entries = out if isinstance(out, np.ndarray) else getattr(out, "data", out)  # or a scipy.sparse Jacobian
            if not np.isfinite(np.sum(entries)):
                u = np.array(y[: self.n], dtype=float)
                if np.all(np.isfinite(u)):
                    self.at = (float(t), u)
            return out

        return watched


def _blame(
    rhs: RHS, p: np.ndarray, state_at: Callable[[float], np.ndarray] | None, seen: _Sightings | None = None
) -> Callable[[float], tuple[float, Any, str]]:
    """``blame`` for :func:`_checked`: the time and the first operation of ``rhs`` whose value or
    derivative is not finite at the state where the solve ``seen`` met NaN or inf, else at
    ``state_at(t)`` (user testing: the message listed np.sqrt, np.log and np.abs as examples
    where np.exp had overflowed)."""

    def at(t: float) -> tuple[float, Any, str]:
        from pyzygote.diagnose import first_nonfinite

        if seen is not None and seen.look() is not None:
            (t, u), state = seen.at, "the state where it returned NaN or inf"  # type: ignore[misc]
        elif state_at is not None:
            u, state = state_at(t), "the solution"
        else:
            return t, "", ""
        if not np.all(np.isfinite(u)):
            return t, "", state
        finding = first_nonfinite(rhs.program, [u, p, np.float64(t)], [True, True, False])
        if getattr(finding, "kind", "") == "derivative":
            finding.states = _singular_states(rhs, u, p, t)  # type: ignore[attr-defined]
        return t, finding, state

    return at


def _singular_states(rhs: RHS, u: np.ndarray, p: np.ndarray, t: float) -> list[int]:
    """The entries of the state along which f's derivative is not finite at ``(u, p, t)``: the
    state, not a parameter, sits at the singular point (a concentration dosed into the gut is 0
    at t0, where ``c ** 0.7`` has an infinite derivative: acceptance testing)."""
    try:
        with np.errstate(all="ignore"):
            J = dense_matrix(rhs.jacobian_u(u, p, t, exact=True))
    except Exception:  # noqa: BLE001 - a diagnosis must not replace the error it explains
        return []
    return [int(j) for j in np.flatnonzero(~np.all(np.isfinite(J), axis=0))]


def _state_by_solving(rhs: RHS, u0: np.ndarray, p: np.ndarray, t0: float, opts: Options) -> Callable[[float], np.ndarray]:
    def state(t: float) -> np.ndarray:
        if t == t0:
            return u0
        res = integrate(lambda tt, u: rhs(u, p, tt), float(t0), float(t), u0, np.array([t0, t]), opts.alg, opts.reltol, opts.abstol, maxiters=opts.maxiters, tstops=opts.tstops)
        return res.u[-1] if res.success else np.full_like(u0, np.nan)

    return state


def _jac(rhs: RHS, p: np.ndarray, opts: Options):  # type: ignore[no-untyped-def]
    if not algorithm(opts.alg).stiff and opts.alg != "auto":
        return None
    return lambda t, u: rhs.jacobian_u(u, p, t)


def _solve(
    fun: Any,
    t0: float,
    t1: float,
    y0: np.ndarray,
    saveat: np.ndarray,
    opts: Options,
    what: str,
    blame: Callable[[float], tuple[float, Any, str]] | None = None,
    seen: _Sightings | None = None,
    derivative: bool = False,
    value: Callable[[], Any] | None = None,
    **kw: Any,
) -> Integration:
    """Integrate with the user's solver settings; a failure raises SolverError naming ``what``.
    ``seen`` watches the right-hand side and the Jacobian for NaN or inf (see :class:`_Sightings`).

    A ``derivative`` system (sensitivities, an adjoint) is solved without numpy's floating-point
    warnings: its derivative terms compute parts that the rules discard (the derivative of
    ``np.sqrt(p)`` at 0 divides by 0), which are pyzygote's, not the user's (a RuntimeWarning
    failed such a gradient under ``-W error`` before its SolverError could say what it was), and a
    NaN or inf that remains fails the solve and is named.  Where something warned, ``value`` (the
    ODE alone, when the system also solves it) runs again with numpy's warnings as the user has
    them, as :func:`pyzygote.engines.numpy_engine._warning_as_the_value_would` does for programs."""
    def run(fun: Any, **kw: Any) -> Integration:
        return integrate(
            fun, float(t0), float(t1), y0, saveat, opts.alg, opts.reltol, opts.abstol, maxiters=opts.maxiters, tstops=opts.tstops, **kw
        )

    started = time.perf_counter()
    if derivative:
        warned: list[str] = []
        # only what the user's settings would report, once for the whole solve
        noted = {kind: "ignore" if how == "ignore" else "call" for kind, how in np.geterr().items()}
        with np.errstate(call=lambda kind, flag: warned.append(kind), **noted):
            res = run(fun, **kw)
        if warned and value is not None and res.success:
            value()
    else:
        res = run(fun, **kw)
    if seen is not None and not res.success and "NaN or inf" in res.message and time.perf_counter() - started <= REPLAY_UP_TO_SECONDS:
        def replay() -> Integration:  # for the diagnosis, when the message is read: as quiet as the solve
            with np.errstate(all="ignore") if derivative else contextlib.nullcontext():
                return run(seen.watch(fun), **{**kw, "jac": seen.watch(kw.get("jac")), "dense": False})

        seen.replay = replay
    return _checked(res, what, opts.alg, blame)


def solve_states(rhs: RHS, u0: np.ndarray, p: np.ndarray, t: np.ndarray, opts: Options, *, dense: bool = False) -> Integration:
    """The state at times ``t`` (``t[0]`` is the initial time); raises SolverError on failure."""
    fun = lambda tt, u: rhs(u, p, tt)  # noqa: E731
    if opts.alg == "auto" and rhs.n > DENSE_SENSITIVITY_LIMIT and rhs._structured_jacobian is not None:
        # A derived system (the tangent of a sensitivity system, in a Hessian) as for forward
        # sensitivities below: LSODA's dense Jacobian of an 80-cell heat equation's 1,760
        # tangent equations made a Hessian take 31 s, BDF's sparse one 0.5 s.
        opts = dataclasses.replace(opts, alg="FBDF")
    # A derived system (second derivatives integrate the tangent of the sensitivity equations)
    # is named as such: when its solve fails the ODE itself solved.
    derived = rhs._structured_jacobian is not None
    what = "ODE solve" if not derived else f"solve of the derivative system ({rhs.name}) that second derivatives integrate"
    seen = _Sightings(rhs.n)
    return _solve(fun, t[0], t[-1], u0, t, opts, what, _blame(rhs, p, None, seen), seen, derivative=derived, jac=_jac(rhs, p, opts), dense=dense)


def forward_sensitivities(
    rhs: RHS, u0: np.ndarray, p: np.ndarray, t: np.ndarray, opts: Options, cols: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """States ``U`` (T, n) and sensitivities ``S`` (T, n, k) = d u(t_i) / d (u0, p)[cols], k = len(cols) (all by default)."""
    n = rhs.n
    cols = rhs.columns(cols)
    k = len(cols)
    z0 = np.concatenate([u0, rhs.initial_sensitivities(cols)])
    g = rhs.sensitivity_rhs(cols)
    kw = {}
    if algorithm(opts.alg).stiff:
        kw["jac"] = lambda tt, z: rhs.sensitivity_system(cols).jacobian_u(z, p, tt)
    elif opts.alg == "auto":
        # LSODA takes only a dense Jacobian, which costs (n (1 + k))^3 to factorize; without
        # one, its stiff phase differenced the whole system, 100 times slower on a 45-cell heat
        # equation.  Large systems go to BDF, whose Newton steps use the sparse Jacobian.
        def jac(tt: float, z: np.ndarray) -> Any:
            return sensitivity_jacobian(rhs.jacobian_u(z[:n], p, tt), k)

        if rhs._structured_jacobian is None and rhs._coloured_jacobian() is not None:
            kw["jac"] = jac  # structural: LSODA gets the band of 1 + k copies of J's pattern
        elif n * (1 + k) > DENSE_SENSITIVITY_LIMIT:
            opts = dataclasses.replace(opts, alg="FBDF")
            kw["jac"] = jac
        else:
            kw["jac"] = lambda tt, z: dense_matrix(rhs.sensitivity_system(cols).jacobian_u(z, p, tt))
    seen = _Sightings(n)
    blame = _blame(rhs, p, _state_by_solving(rhs, u0, p, t[0], opts), seen)
    if opts.alg == "auto" or algorithm(opts.alg).scipy in ("LSODA", "BDF"):
        # The multistep solvers' sensitivities come out far less accurate than their tolerance
        # (user testing, a thermal-runaway reactor at reltol=1e-8: LSODA's 4e-4 and BDF's 3e-5
        # off, Rodas5P's 5e-7), so their system is solved at a tighter one: 1.4e-6 and 1e-6, at
        # 1.3 and 2.4 times the time (Robertson's kinetics: twice the BDF steps, 1,406 against
        # 702, given the Newton Jacobian's coupling block: RHS._newton_jacobian).
        # (not below SciPy's floor for rtol, where it warns: review)
        tight = max(opts.reltol / MULTISTEP_SENSITIVITY_TIGHTENING, 100 * np.finfo(float).eps)
        opts = dataclasses.replace(opts, reltol=min(opts.reltol, tight), abstol=opts.abstol / MULTISTEP_SENSITIVITY_TIGHTENING)
    value = lambda: _solve(lambda tt, u: rhs(u, p, tt), t[0], t[-1], u0, t, opts, "ODE solve", jac=_jac(rhs, p, opts))  # noqa: E731
    res = _solve(lambda tt, z: g(z, p, tt)[0], t[0], t[-1], z0, t, opts, "forward sensitivity solve", blame, seen, derivative=True, value=value, **kw)
    return res.u[:, :n], res.u[:, n:].reshape(len(t), n, k)


# Above this many equations, alg="auto" solves forward sensitivities with BDF (sparse Newton).
DENSE_SENSITIVITY_LIMIT = 1000
# The factor by which LSODA's and BDF's forward sensitivities tighten the user's tolerances.
MULTISTEP_SENSITIVITY_TIGHTENING = 100.0


def vjp(
    rhs: RHS, u0: np.ndarray, p: np.ndarray, t: np.ndarray, ct: np.ndarray, opts: Options, sensealg: str, cols: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(ct . du/du0, ct . du/dp)`` for the solution at times ``t``; entries outside ``cols`` may be left zero."""
    n, m = rhs.n, rhs.m
    cols = rhs.columns(cols)
    # the adjoint restarts at the save times with a cotangent (as pz.gradient chose it: rows_read)
    restarts = int(np.count_nonzero(np.any(ct[1:] != 0, axis=tuple(range(1, ct.ndim)))))
    # A large implicit system's gradient program holds this adjoint primitive (so that second
    # derivatives take the adjoint of the tangent system, pyzygote.primitives.ode); here, with its
    # restarts counted, it may still take forward sensitivities (AUTO_FORWARD_SAVES_PER_DIRECTION).
    mode = resolve_sensealg(sensealg, n, m, len(cols), rhs=rhs, cols=cols, saves=1 + restarts, times=len(t), tstops=len(opts.tstops), alg=opts.alg, restarts_counted=True)
    if mode == "forward":
        _, S = forward_sensitivities(rhs, u0, p, t, opts, cols)
        g = np.zeros(n + m)
        g[list(cols)] = np.einsum("ti,tik->k", ct, S)
        return g[:n], g[n:]
    if not np.all(np.isfinite(ct)):
        # An adjoint solve started from it fails as if the solver were at fault; say what it is.
        bad = np.unique(t[~np.all(np.isfinite(ct), axis=1)])
        head = (
            f"the derivative of the result with respect to the ODE solution contains NaN or inf at t = {bad[:5].tolist()}"
            f"{' ...' if bad.size > 5 else ''}, so the adjoint solve ({mode}) cannot start from it. "
        )
        err = NonFiniteGradientError(
            head + "Either the loss is not "
            "finite there (np.log of a solution that reached 0, as a Poisson likelihood's mean can at extreme parameters: "
            "bound the parameters, use np.log(np.maximum(u, tiny)), or solve for log-states; in a fit, catch "
            "pz.NonFiniteGradientError like pz.SolverError and return a large finite value such as 1e10, on which the line search "
            "steps back: on np.inf SciPy's L-BFGS-B stops and reports convergence), or the data it is compared with holds NaN: "
            "mask missing observations before the arithmetic, np.where(np.isnan(data), 0.0, u - data)"
        )
        # where pz.gradient can name the data that holds NaN, it goes there (pyzygote.api)
        err.data_at = len(head)  # type: ignore[attr-defined]
        raise err
    if mode == "adjoint":
        return _interpolating_adjoint(rhs, u0, p, t, ct, opts, cols)
    return _backsolve_adjoint(rhs, u0, p, t, ct, opts)


def _interpolating_adjoint(
    rhs: RHS, u0: np.ndarray, p: np.ndarray, t: np.ndarray, ct: np.ndarray, opts: Options, cols: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    # the solve that gave the value kept it (forward_memo), unless this pullback came without one
    fwd = forward_memo.recall(rhs, u0, p, t, opts) or solve_states(rhs, u0, p, t, opts, dense=True)
    adj = rhs.adjoint_rhs_joined()
    jacobian_u = _last_one(rhs.jacobian_u)  # a piece's start: the explicit estimate's, then Radau's first
    jac = _adjoint_jacobian(rhs, p, opts, jacobian_u)
    n, m = rhs.n, rhs.m
    state = np.zeros(n + m)
    dense = point_evaluator(fwd.dense)

    def fun(tt: float, y: np.ndarray) -> np.ndarray:
        return adj(dense(tt), y[:n], p, tt)[0]

    # The adjoint is linear and jumps by the cotangent at each save time: it is zero after the
    # last nonzero one, and integrates straight across save times without one (a loss on the
    # final state, sparse observations), each of which would otherwise restart the solver.
    marks = [0] + [i for i in range(1, len(t)) if np.any(ct[i])]
    h = None  # each restart carries the step size over
    scales = adjoint_scales(fwd.u, p, opts, largest_magnitudes(fwd.dense))
    # BDF's backward solve, restarting at order 1 at each save time, is less accurate than its
    # tolerance (Robertson's kinetics, 13 save times, reltol=1e-8: 2e-5 off with these tolerances,
    # 8e-7 with them tightened, 1.2e-6 with the state's abstol), as its forward sensitivities are.
    tighter = MULTISTEP_SENSITIVITY_TIGHTENING if opts.alg == "auto" or algorithm(opts.alg).scipy in ("LSODA", "BDF") else 1.0
    implicit = algorithm(opts.alg).stiff
    for a, b in reversed(list(zip(marks[:-1], marks[1:]))):
        state[:n] += ct[b]
        res = None
        if implicit and _explicit_steps(jacobian_u(dense(float(t[b])), p, float(t[b])), float(t[b]), float(t[a])) <= EXPLICIT_ADJOINT_STEPS:
            atol = adjoint_abstol(state[:n], scales, opts.reltol)
            with np.errstate(all="ignore"):  # a derivative system, as in _solve(derivative=True)
                res = integrate(fun, float(t[b]), float(t[a]), state, t[a : a + 1], "Tsit5", opts.reltol, atol, maxiters=EXPLICIT_ADJOINT_BUDGET, first_step=h, tstops=opts.tstops)
        if res is None or not res.success:
            tols = dataclasses.replace(opts, abstol=adjoint_abstol(state[:n], scales, opts.reltol, tighter))
            try:
                res = _solve(fun, t[b], t[a], state, t[a : a + 1], tols, _ADJOINT, _blame(rhs, p, dense), derivative=True, first_step=h, jac=jac(dense))
            except SolverError:
                # asked only of a failed last piece: a solve that succeeds takes no Jacobian more
                if a == 0 and _starts_at_a_singular_point(rhs, u0, p, float(t[0])):
                    return _first_piece_forward(rhs, u0, p, t[[0, b]], ct[0], state, opts, rhs.columns(cols))
                raise
        state, h = res.u[-1].copy(), res.last_step
    state[:n] += ct[0]
    return state[:n], state[n:]


def _starts_at_a_singular_point(rhs: RHS, u0: np.ndarray, p: np.ndarray, t0: float) -> bool:
    """Whether f is finite at the initial state but ``J_u`` is not (``c ** 0.7`` of a
    concentration dosed into the gut, 0 at t0): there the adjoint equation
    ``lambda' = -J_u^T lambda`` is infinite, integrably (``t ** (h - 1)``), and a backward solve
    cannot step onto t0 (acceptance testing: every solver's adjoint failed within 1e-10 of it)."""
    if getattr(rhs, "program", None) is None or rhs._structured_jacobian is not None:
        return False
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(rhs(u0, p, t0))):
            return False
        return not np.all(np.isfinite(dense_matrix(rhs.jacobian_u(u0, p, t0, exact=True))))


def _first_piece_forward(
    rhs: RHS, u0: np.ndarray, p: np.ndarray, span: np.ndarray, ct0: np.ndarray, state: np.ndarray, opts: Options, cols: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The adjoint's result when its last piece, back to t0 from the first save time with a
    cotangent, starts at a singular point (:func:`_starts_at_a_singular_point`): that piece by
    forward sensitivities instead, whose right-hand side is finite there (pyzygote.ode.singular).
    With ``[lambda, mu]`` (``state``) at ``span[1]`` and the sensitivities ``S`` to ``cols`` there,
    the gradient is ``lambda^T S`` plus ``mu`` and the cotangent ``ct0`` of ``u(t0)``, exactly as
    the backward solve would have made it.  Entries outside ``cols`` are left zero."""
    n = rhs.n
    _, S = forward_sensitivities(rhs, u0, p, span, opts, cols)
    g = np.zeros(n + rhs.m)
    g[list(cols)] = state[:n] @ S[-1]
    g[:n] += ct0
    g[n:] += state[n:]
    return g[:n], g[n:]


# An implicit solver's adjoint solves a piece between save times with the explicit Dormand-Prince
# pair (Tsit5's) first when its stability alone would not need more than this many steps there,
# and falls back to the implicit solver when the piece takes more than EXPLICIT_ADJOINT_BUDGET.
# Each save time's jump starts a transient that either solver must follow with steps small for
# accuracy, not stability, and there SciPy's Radau took about twice the steps, each costing some
# three explicit ones (bench/stiff_adjoint.py: a 144-cell plate's pieces, 983 Radau steps in
# 1.04 s or 566 explicit ones in 0.33 s; Hodgkin-Huxley's 251, 4,794 Radau steps in 1.5 s, or
# 216 pieces explicit and 34 by Radau, 2,943 steps in 0.95 s; gradients as accurate).  Where
# stability limits the explicit steps they number about the estimate (76 for 76 on a piece of
# bench/medium_ode.py's reaction network, which Radau crossed in a few), and a Radau step costs
# some three explicit ones while it takes ten or more on most pieces: hence 40, not more (at 200
# that network's adjoint took 130 to 150 ms instead of 110).
EXPLICIT_ADJOINT_STEPS = 40
EXPLICIT_ADJOINT_BUDGET = 500


def _explicit_steps(J: Any, t0: float, t1: float) -> float:
    """The steps an explicit solver's stability needs from t0 to t1, estimated with the largest
    row sum of ``|J|`` (``J_u`` at ``t0``, a bound on its eigenvalues) and the Dormand-Prince pair's
    stability interval, about 3.3 along the negative real axis (NaN, never small, if J is not finite)."""
    radius = float(np.max(np.asarray(abs(J).sum(axis=1)), initial=0.0))
    return radius * abs(t1 - t0) / 3.3


def adjoint_scales(U: np.ndarray, p: np.ndarray, opts: Options, stepped: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sizes of the states and of the parameters an adjoint solve measures its errors against
    (see :func:`adjoint_abstol`): each state's largest magnitude, saved or at the forward solve's
    steps (``stepped``), or ``abstol / reltol`` where that is larger (below it the forward solve
    itself is accurate only to ``abstol``); each parameter's magnitude, 1 for a parameter at 0.
    The saved states alone missed a pulse between save times 0 and 20: its state's scale was
    ``abstol / reltol``, 1e-8, not its peak of 400, and the gradient came out 1.6e-5 off at
    reltol=1e-6 (5e-9 with the state's abstol before the adjoint had its own)."""
    states = np.max(np.abs(U), axis=0, initial=0.0)
    if stepped is not None and stepped.shape == states.shape:
        states = np.maximum(states, stepped)
    states = states + opts.abstol / opts.reltol
    params = np.where(p != 0.0, np.abs(p), 1.0)
    return states, params


def adjoint_abstol(lam: np.ndarray, scales: tuple[np.ndarray, np.ndarray], reltol: float, tighter: float = 1.0) -> np.ndarray:
    """Absolute tolerances for an adjoint solve's ``[lambda, mu]`` from ``lambda`` where it starts.

    ``lambda_i`` is a derivative of the loss by the state ``u_i``, and ``mu_j`` by the parameter
    ``p_j``, so the user's ``abstol``, in the state's units, says nothing of their size: the same
    gradient scaled by 1e-12 came out 4e-4 off (Robertson's kinetics, Rodas5P, reltol=1e-8), and
    scaled by 1e6 its BDF solve failed; and where the state's ``abstol`` is far below the
    cotangent's size, the solver resolved the transient after every jump at a save time to that
    absolute accuracy (three quarters of a Robertson gradient's backward steps).  Here the error
    allowed in ``lambda_i`` moves the loss, over the state's own range ``s_i``, by ``reltol`` of
    ``L = sum_i |lambda_i| s_i`` (all n entries together), and that in ``mu_j`` moves it by
    ``reltol * L`` over a relative change of ``p_j``: both scale with the loss and with the units
    of ``u`` and ``p``.  ``tighter`` divides them (the multistep solvers', as their forward
    sensitivities' tolerances)."""
    states, params = scales
    size = max(float(np.abs(lam) @ states), np.finfo(float).tiny)
    return np.concatenate([reltol * size / (lam.size * states), reltol * size / params]) / tighter


def _last_one(fn: Callable[[np.ndarray, np.ndarray, float], Any]) -> Callable[[np.ndarray, np.ndarray, float], Any]:
    """``fn(u, p, t)`` remembering its last value, for callers that give the same ``u`` and ``p``
    at the same ``t`` (the forward solution and the parameters of one adjoint solve)."""
    last: list[Any] = [None, None]

    def at(u: np.ndarray, p: np.ndarray, t: float) -> Any:
        if last[0] != t:
            last[:] = [t, fn(u, p, t)]
        return last[1]

    return at


def _adjoint_jacobian(rhs: RHS, p: np.ndarray, opts: Options, jacobian_u: Callable[..., Any] | None = None) -> Any:
    """For implicit solvers, ``dense -> (t, y) -> d[lambda', mu']/d[lambda, mu]`` with ``lambda' = -J_u^T lambda``.

    Without it SciPy differenced the n + m columns (a 144-cell plate: 27 s a gradient with Radau,
    most of it there).  The block ``d mu'/d lambda = -J_p^T`` costs a tangent per parameter;
    as ``mu`` enters no derivative the Newton iteration on the block-triangular system converges
    without it, to the same solution, but an iteration later for ``mu``, which is under the
    error control (:func:`adjoint_abstol`): Robertson's kinetics (3 states, 7 parameters) made
    twice the LU factorizations and Jacobians with it left out.  So it is kept on the dense path
    (n + m up to ``DENSE_JACOBIAN_UP_TO``) for a right-hand side's own program, and left out of
    the sparse one, whose factorization it would fill, of LSODA's band (``auto`` on a structurally
    sparse f: :func:`adjoint_structure`), whose width it would make the whole system, and of
    derived systems (a Hessian's), whose Jacobians are assembled from blocks of f's.
    """
    if not algorithm(opts.alg).stiff and opts.alg != "auto":
        return lambda dense: None
    n, m = rhs.n, rhs.m
    jacobian_u = jacobian_u or rhs.jacobian_u
    if algorithm(opts.alg).scipy in ("Radau", "BDF") and n + m > DENSE_JACOBIAN_UP_TO:
        # Sparse: their Newton matrices are then factorized by splu, at the cost of the states'
        # block, not of all n + m equations (a dense LU was 7 of a 16 s gradient with 400
        # parameters, Rodas5P).
        from scipy.sparse import block_diag, csr_matrix

        from pyzygote.ode.block_lu import repeated

        def sparse_jac(forward: Any) -> Any:
            def at(tt: float, y: np.ndarray) -> Any:
                J = jacobian_u(forward(tt), p, tt)
                whole = block_diag([-csr_matrix(J).T, csr_matrix((m, m))], format="csc")
                # A derived system's copies of the state block (a Hessian's copies of the tangent
                # system) stay copies, transposed: Radau and BDF factorize one (pyzygote.ode.block_lu).
                groups = getattr(J, "groups", None)
                return whole if groups is None else repeated(whole, groups)

            return at

        return sparse_jac

    if opts.alg == "auto" and rhs._structured_jacobian is None and rhs._coloured_jacobian() is not None:
        # LSODA gets a band (its states renumbered where the numbering spreads it): the states'
        # block -J_u^T keeps the places of J_u's structure, the parameters' rows stay empty, as
        # on the sparse path.  The dense (n + m) Jacobian made a 30 x 30 two-species grid's
        # gradient take 2.7 s stored cell by cell, 4.8 s species-first (FBDF: 0.7 s).
        def banded_jac(forward: Any) -> Any:
            def at(tt: float, y: np.ndarray) -> Any:
                return adjoint_structure(jacobian_u(forward(tt), p, tt), m)

            return at

        return banded_jac

    with_p = rhs._structured_jacobian is None and m > 0

    def jac(forward: Any) -> Any:
        def at(tt: float, y: np.ndarray) -> np.ndarray:
            out = np.zeros((n + m, n + m))
            u = forward(tt)
            out[:n, :n] = -dense_matrix(jacobian_u(u, p, tt)).T
            if with_p:
                out[n:, :n] = -rhs.jacobian_p(u, p, tt).T
            return out

        return at

    return jac


def adjoint_structure(J: Any, m: int) -> Any:
    """``[[-J^T, 0], [0, 0]]`` ((n + m) square) for a StructuralJacobian ``J`` (n square), itself
    one: every place of J's structure kept, zero or not, so that LSODA's band holds at every point."""
    from pyzygote.ode.sparsity import StructuralJacobian

    n = J.shape[0]
    rows = J.tocsr()  # J^T's columns are J's rows; explicit zeros are kept
    indptr = np.concatenate([rows.indptr, np.full(m, rows.indptr[-1])])
    return StructuralJacobian((-rows.data, rows.indices, indptr), shape=(n + m, n + m))


_ADJOINT = (
    "adjoint solve (backwards in time, against the interpolated forward solution; where the forward "
    "solve succeeds and this fails, as SciPy's BDF can at tight tolerances, sensealg='forward' or "
    "another stiff solver such as alg='Rodas5P' gets through)"
)


def _backsolve_adjoint(rhs: RHS, u0: np.ndarray, p: np.ndarray, t: np.ndarray, ct: np.ndarray, opts: Options) -> tuple[np.ndarray, np.ndarray]:
    fwd = solve_states(rhs, u0, p, t, opts)
    g = rhs.backsolve_rhs()
    n, m = rhs.n, rhs.m
    # Where integrating backwards is unstable the re-solved state explodes (to 1e29 on a heat
    # equation), and a stiff solver crawls after it for minutes before the next save time's
    # drift check: stop as soon as it leaves the forward solution's range by this much.
    bound = _BACKSOLVE_GROWTH * (float(np.max(np.abs(fwd.u))) + opts.abstol)

    def guarded(tt: float, z: np.ndarray) -> np.ndarray:
        if not np.max(np.abs(z[:n])) <= bound:
            raise _Diverged(tt)
        return g(z, p, tt)[0]

    state = np.concatenate([fwd.u[-1], np.zeros(n + m)])
    h = None
    # Where the backward re-solve is unstable without leaving the forward range, a stiff solver
    # crawls (fuzzer: 100,000 steps, 54 s with Rodas5P, against 0.1 s for the adjoint): a
    # backward solve needing many times the forward solve's steps is stopped as unstable.
    budget = min(opts.maxiters, _BACKSOLVE_STEPS_PER_FORWARD_STEP * max(int(fwd.stats.get("naccept") or 0), 1) + 1000)
    back_opts = dataclasses.replace(opts, maxiters=budget)
    for i in range(len(t) - 1, 0, -1):
        # Re-solving the state backwards drifts off the trajectory (by 4% over an epidemic
        # curve); the forward solution at the save times puts it back, as SciMLSensitivity does.
        state[:n] = fwd.u[i]
        state[n : 2 * n] += ct[i]
        if t[i] == t[i - 1]:
            continue
        what = "backsolve adjoint solve (it re-solves the state backwards in time, which is unstable for dissipative or stiff problems: use sensealg='adjoint')"
        try:
            res = _solve(guarded, t[i], t[i - 1], state, t[i - 1 : i], back_opts, what, derivative=True, first_step=h)
        except SolverError as exc:
            if budget < opts.maxiters and "retcode MaxIters" in str(exc):
                raise SolverError(
                    f"sensealg='backsolve' is unstable for this problem: re-solving the state backwards in time took more than "
                    f"{budget} steps before t = {t[i - 1]:.6g}, where the forward solve took {fwd.stats.get('naccept')} in all "
                    "(dissipative or stiff dynamics grow when integrated backwards), so its gradient would not be trustworthy. "
                    "Use sensealg='adjoint' (which interpolates the forward solution) or 'forward'."
                ) from None
            raise
        except _Diverged as exc:
            raise SolverError(
                f"sensealg='backsolve' is unstable for this problem: the state it re-solves backwards in time grew "
                f"beyond {_BACKSOLVE_GROWTH:g} times the forward solution's largest entry at t = {exc.args[0]:.6g} "
                "(dissipative or stiff dynamics grow when integrated backwards), so its gradient would be wrong. "
                "Use sensealg='adjoint' (which interpolates the forward solution) or 'forward'."
            ) from None
        state, h = res.u[-1].copy(), res.last_step
        _check_drift(state[:n], fwd.u[i - 1], t[i - 1], opts)
    state[n : 2 * n] += ct[0]
    return state[n : 2 * n], state[2 * n :]


_BACKSOLVE_GROWTH = 1e6
_BACKSOLVE_STEPS_PER_FORWARD_STEP = 20


class _Diverged(Exception):
    """The state re-solved backwards left the forward solution's range (at time ``args[0]``)."""


# How far, in units of the solver's tolerance, the state re-solved backwards may stray from
# the forward solution: on well-behaved problems it stays within about 10, and where backwards
# integration is unstable (dissipative dynamics grow when reversed) it explodes by orders of magnitude.
BACKSOLVE_DRIFT_LIMIT = 1e4


def _check_drift(back: np.ndarray, fwd: np.ndarray, t: float, opts: Options) -> None:
    """Refuse a backsolve whose re-solved state has left the forward trajectory (its gradient would be garbage)."""
    drift = float(np.max(np.abs(back - fwd) / (opts.abstol + opts.reltol * np.abs(fwd)), initial=0.0))
    if not drift <= BACKSOLVE_DRIFT_LIMIT:
        raise SolverError(
            f"sensealg='backsolve' is unstable for this problem: the state it re-solves backwards in time "
            f"left the forward solution by {drift:.3g} times the tolerance at t = {t:.6g} (dissipative or stiff "
            "dynamics grow when integrated backwards), so its gradient would be wrong. Use sensealg='adjoint' "
            "(which interpolates the forward solution) or 'forward'."
        )

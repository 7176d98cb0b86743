"""ODE integration on the NumPy engine, with DifferentialEquations.jl's names.

Each solver name maps to the SciPy method that plays its part; the table is
what README documents.  :func:`integrate` steps SciPy's solver itself, so it
can enforce ``maxiters``, report the time reached when a solve fails, count
accepted and rejected steps, and keep the dense output for adjoints.

>>> import numpy as np
>>> res = integrate(lambda t, u: -u, 0.0, 1.0, np.array([1.0]), np.array([0.0, 1.0]), "Tsit5", 1e-10, 1e-10)
>>> res.retcode, round(float(res.u[-1, 0]), 8)
('Success', 0.36787944)
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from pyzygote.ode.lsoda_leak import release_work_arrays

if TYPE_CHECKING:
    from scipy.integrate import OdeSolution

__all__ = ["ALGORITHMS", "Algorithm", "Integration", "integrate", "algorithm", "check_solver_name", "runs_on_numpy"]


@dataclass(frozen=True)
class Algorithm:
    """A DifferentialEquations.jl solver name and what runs for it on each engine."""

    name: str
    julia: str  # the constructor PyZygoteODEExt.algorithm calls (a test keeps them equal)
    julia_package: str  # the package that exports it
    scipy: str  # the scipy.integrate class, imported when a solve first needs it
    stiff: bool
    note: str


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("Tsit5", "Tsit5()", "OrdinaryDiffEqTsit5", "RK45", False, "explicit RK 5(4); NumPy engine: Dormand-Prince 5(4) (RK45 tableau, own stepper)"),
        Algorithm("DP5", "DP5()", "OrdinaryDiffEqLowOrderRK", "RK45", False, "Dormand-Prince 5(4); NumPy engine: same tableau, own stepper"),
        Algorithm("Vern7", "Vern7()", "OrdinaryDiffEqVerner", "DOP853", False, "explicit RK 7(6); SciPy: DOP853"),
        Algorithm("Vern9", "Vern9()", "OrdinaryDiffEqVerner", "DOP853", False, "explicit RK 9(8); SciPy: DOP853"),
        Algorithm("Rodas5P", "Rodas5P()", "OrdinaryDiffEqRosenbrock", "Radau", True, "stiff Rosenbrock; SciPy: Radau IIA"),
        Algorithm("KenCarp4", "KenCarp4()", "OrdinaryDiffEqSDIRK", "Radau", True, "stiff ESDIRK; SciPy: Radau IIA"),
        Algorithm("FBDF", "FBDF()", "OrdinaryDiffEqBDF", "BDF", True, "stiff variable-order BDF; SciPy: BDF"),
        Algorithm(
            "auto",
            "AutoTsit5(Rosenbrock23())",
            "OrdinaryDiffEqTsit5",
            "LSODA",
            False,
            "switches to a stiff method when needed; SciPy: LSODA",
        ),
    )
}


_JULIA_SOLVER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_solver_name(name: Any) -> str:
    """``name`` if it can name a solver on some engine: one of :data:`ALGORITHMS`, or any
    other DifferentialEquations.jl solver name for the Julia engine (``"TRBDF2"``, ``"CVODE_BDF"``)."""
    if isinstance(name, str) and (name in ALGORITHMS or _JULIA_SOLVER_NAME.match(name)):
        return name
    raise ValueError(f"unknown solver alg={name!r}; known solvers: {', '.join(ALGORITHMS)}.{_did_you_mean(name)}")


def _did_you_mean(name: Any) -> str:
    cased = [a for a in ALGORITHMS if isinstance(name, str) and a.lower() == name.lower().removesuffix("()")]
    if cased:
        return f" Did you mean {cased[0]!r}? (solver names are case-sensitive, as in Julia, and take no parentheses)"
    return _nearest(name)


# pyzygote's solvers are adaptive; what to do for a fixed-step scheme (user testing: dt= and
# adaptive=False, diffrax's and torchdiffeq's fixed-step solvers, got no word of it).
FIXED_STEP = (
    "pyzygote's solvers are adaptive and choose every step, the first included: reltol and abstol set them (lower "
    "them for accuracy; tstops= makes the solver step to given times), and there is no fixed-step mode. For a fixed-step scheme (Euler or RK4 at "
    "a given dt), write its loop in numpy: it is traced and differentiated like any other code"
)

# Other tools' solver names, and the nearest solver the NumPy engine runs (user testing: diffrax's
# Dopri5 and Kvaerno5 and torchdiffeq's rk4 got no hint, where SciPy's RK45 did).  Names that are
# also OrdinaryDiffEq's (Euler, RK4, Kvaerno5, ...) still run on the Julia engine by name.
_DIFFRAX, _TORCHDIFFEQ, _JULIA, _SCIPY = "diffrax's", "torchdiffeq's", "DifferentialEquations.jl's", "SciPy's"
FOREIGN_SOLVERS: dict[str, tuple[str, str, bool]] = {  # name: (nearest here, whose name it is, fixed-step)
    "Dopri5": ("DP5", _DIFFRAX, False), "Dopri8": ("Vern9", _DIFFRAX, False), "Bosh3": ("Tsit5", _DIFFRAX, False),
    "Euler": ("Tsit5", f"{_DIFFRAX} and {_JULIA}", True), "Heun": ("Tsit5", f"{_DIFFRAX} and {_JULIA}", False),
    "Midpoint": ("Tsit5", f"{_DIFFRAX} and {_JULIA}", False), "Ralston": ("Tsit5", f"{_DIFFRAX} and {_JULIA}", False),
    "ImplicitEuler": ("FBDF", f"{_DIFFRAX} and {_JULIA}", False),
    "Kvaerno3": ("KenCarp4", f"{_DIFFRAX} and {_JULIA}", False), "Kvaerno4": ("KenCarp4", f"{_DIFFRAX} and {_JULIA}", False),
    "Kvaerno5": ("KenCarp4", f"{_DIFFRAX} and {_JULIA}", False), "KenCarp3": ("KenCarp4", f"{_DIFFRAX} and {_JULIA}", False),
    "KenCarp5": ("KenCarp4", f"{_DIFFRAX} and {_JULIA}", False),
    "RK4": ("Tsit5", _JULIA, False), "BS3": ("Tsit5", _JULIA, False), "BS5": ("Tsit5", _JULIA, False),
    "DP8": ("Vern9", _JULIA, False), "Vern6": ("Vern7", _JULIA, False), "Vern8": ("Vern9", _JULIA, False),
    "Rosenbrock23": ("Rodas5P", _JULIA, False), "Rodas4": ("Rodas5P", _JULIA, False), "Rodas5": ("Rodas5P", _JULIA, False),
    "TRBDF2": ("KenCarp4", _JULIA, False), "QNDF": ("FBDF", _JULIA, False), "CVODE_BDF": ("FBDF", _JULIA, False),
    "dopri5": ("DP5", _TORCHDIFFEQ, False), "dopri8": ("Vern9", _TORCHDIFFEQ, False), "bosh3": ("Tsit5", _TORCHDIFFEQ, False),
    "fehlberg2": ("Tsit5", _TORCHDIFFEQ, False), "adaptive_heun": ("Tsit5", _TORCHDIFFEQ, False),
    "euler": ("Tsit5", _TORCHDIFFEQ, True), "midpoint": ("Tsit5", _TORCHDIFFEQ, True), "rk4": ("Tsit5", _TORCHDIFFEQ, True),
    "heun3": ("Tsit5", _TORCHDIFFEQ, True), "explicit_adams": ("Tsit5", _TORCHDIFFEQ, True),
    "implicit_adams": ("Tsit5", _TORCHDIFFEQ, True), "fixed_adams": ("Tsit5", _TORCHDIFFEQ, True),
    "RK23": ("Tsit5", _SCIPY, False),
}  # fmt: skip


def _nearest(name: Any) -> str:
    """`` 'Dopri5' is diffrax's name: the nearest solver here is 'DP5' (...).`` or ``""``."""
    if not isinstance(name, str):
        return ""
    key = name.removesuffix("()")
    if key not in FOREIGN_SOLVERS:
        key = next((k for k in FOREIGN_SOLVERS if k.lower() == key.lower()), "")
    if not key:
        return ""
    nearest, whose, fixed = FOREIGN_SOLVERS[key]
    said = f" {name!r} is {whose} name: the nearest solver here is {nearest!r} ({ALGORITHMS[nearest].note})."
    return said + (f" {key} takes fixed steps; {FIXED_STEP}." if fixed else "")


def runs_on_numpy(name: str) -> bool:
    return name in ALGORITHMS


def algorithm(name: str) -> Algorithm:
    """The NumPy engine's solver for ``name``; a clear error for names only Julia knows."""
    if not isinstance(name, str) or name not in ALGORITHMS:
        same = [a.name for a in ALGORITHMS.values() if a.scipy == name]
        scipy = (
            f" {name!r} is SciPy's name: solver names here are DifferentialEquations.jl's, and "
            f"{' or '.join(repr(s) for s in same)} runs as SciPy's {name} on the NumPy engine."
            if same
            else ""
        )
        scipy = scipy or _did_you_mean(name)
        raise ValueError(
            f"unknown solver alg={name!r} for the NumPy engine; known solvers: {', '.join(ALGORITHMS)}.{scipy} "
            "On the Julia engine any solver that a loaded DifferentialEquations.jl solver package exports "
            "by name also works (engine='julia')."
        )
    return ALGORITHMS[name]


# SciPy's solve_ivp keywords, and what pyzygote (and DifferentialEquations.jl) calls them.
_SCIPY_KEYWORDS = {
    "rtol": "reltol", "atol": "abstol", "method": "alg (a DifferentialEquations.jl solver name)",
    "t_eval": "saveat (pz.solve) or the times t (pz.odesolve)", "args": "p",
    "dense_output": "sol(t) on pz.solve's solution", "first_step": None, "max_step": None, "jac": None,
    "events": None, "vectorized": None, "mxstep": "maxiters", "tfirst": None,
}  # fmt: skip
# diffrax's diffeqsolve keywords (not SciPy's: user testing found max_steps= called SciPy's).
_DIFFRAX_KEYWORDS = {"max_steps": "maxiters", "solver": "alg (a DifferentialEquations.jl solver name)"}

# DifferentialEquations.jl keywords without a counterpart, and what to do instead.
_NO_EVENTS = (
    "there are no callbacks or events: a dose that jumps the state is a chain of solves (solve to the "
    "dose time, add the dose to the last state, solve on from there; the gradient flows through the chain), "
    "and an input that switches at known times (an infusion) is a function of t with those times as tstops"
)
_SCIML_KEYWORDS = {
    "callback": _NO_EVENTS, "d_discontinuities": "here they are tstops", "dt": FIXED_STEP, "adaptive": FIXED_STEP,
    "dt0": FIXED_STEP, "stepsize_controller": "reltol= and abstol= set the adaptive steps",
}  # fmt: skip


def refuse_unknown_keywords(function: str, given: dict[str, Any], own: dict[str, str] | None = None) -> None:
    """A clear error for keywords ``function`` does not take, naming its own for SciPy's (and
    diffrax's); ``own`` replaces those tables with hints of its own, keyword by keyword (a
    nonlinear solve has no ``alg=`` to name for ``method=``)."""
    if not given:
        return
    hints = []
    for k in sorted(given):
        if own is not None:
            if k in own:
                hints.append(f"{k}=: {own[k]}")
        elif k in _SCIML_KEYWORDS:
            # dt= and adaptive=False share one explanation, said once
            same = [j for j in sorted(given) if _SCIML_KEYWORDS.get(j) == _SCIML_KEYWORDS[k]]
            if same[0] == k:
                hints.append(f"{'= and '.join(same)}=: {_SCIML_KEYWORDS[k]}")
        elif k == "events":
            hints.append(f"events= (SciPy's): {_NO_EVENTS}")
        elif k in _SCIPY_KEYWORDS:
            ours = _SCIPY_KEYWORDS[k]
            hints.append(f"{k}= is SciPy's; here it is {ours}" if ours else f"{k}= (SciPy's) has no counterpart here")
        elif k in _DIFFRAX_KEYWORDS:
            hints.append(f"{k}= is diffrax's; here it is {_DIFFRAX_KEYWORDS[k]}")
        elif k in ("saveat", "tspan") and function == "pz.odesolve":
            hints.append(
                f"{k}= belongs to pz.solve; pz.odesolve(f, u0, t, p) returns the solution at the times t, "
                "whose first entry is the initial time"
            )
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise TypeError(f"{function}() got unexpected keyword arguments {sorted(given)}{hint}")


@dataclass
class Integration:
    """What one integration produced."""

    t: np.ndarray
    u: np.ndarray  # (len(t), n), time-major
    retcode: str
    t_reached: float
    stats: dict[str, Any]
    message: str = ""
    dense: OdeSolution | None = field(default=None, repr=False)
    last_step: float | None = None  # a step size to start a following integration with

    @property
    def success(self) -> bool:
        return self.retcode == "Success"


class _NonFinite(Exception):
    pass


def dense_matrix(J: Any) -> np.ndarray:
    """A Jacobian as a numpy array (LSODA and the adjoint's Jacobian need one)."""
    return J.toarray() if hasattr(J, "toarray") else np.asarray(J)


def _finite(value: Any, what: str, t: float) -> Any:
    entries = value if isinstance(value, np.ndarray) else value.data  # or a scipy.sparse Jacobian
    if not np.all(np.isfinite(entries)):
        raise _NonFinite(f"the {what} returned NaN or inf at t={t:.6g}")
    return value


def integrate(
    fun: Callable[[float, np.ndarray], np.ndarray],
    t0: float,
    t1: float,
    u0: np.ndarray,
    saveat: np.ndarray | None,
    alg: str,
    reltol: float,
    abstol: float | np.ndarray,
    *,
    maxiters: int = 100_000,
    jac: Callable[[float, np.ndarray], np.ndarray] | None = None,
    dense: bool = False,
    first_step: float | None = None,
    tstops: Sequence[float] = (),
) -> Integration:
    """Integrate ``u' = fun(t, u)`` from t0 to t1 (either direction), saving at ``saveat``.

    ``saveat=None`` saves every step.  Never raises on a failed solve: the
    retcode says what happened.  ``first_step`` replaces the initial step-size
    selection (adjoint solves restart at every save time and reuse the last step).
    ``tstops`` are times the solver must step to, as SciML's ``tstops``: the
    integration restarts there, so a switch at such a time (a dose, an infusion
    that starts or stops) is never stepped over.
    """
    direction = 1.0 if t1 >= t0 else -1.0
    # Times closer than a few ulps count as one (0.3 and 0.1 * 3 from np.linspace): a piece
    # between them would be too short for any solver to step across.
    near = 8.0 * np.finfo(float).eps * max(1.0, abs(t0), abs(t1))
    if 0.0 < abs(t1 - t0) <= 2.0 * near:
        return _across_a_few_ulps(fun, t0, t1, u0, saveat)
    span = [s for s in _stops_near(tstops, t0, t1, 2.0 * near) if -near <= (s - t0) * direction <= (t1 - t0) * direction + near]
    if not span:
        return _integrate_span(fun, t0, t1, u0, saveat, alg, reltol, abstol, maxiters, jac, dense, first_step)
    # Stops at the ends too (an adjoint restarting at a save time that is a switch) make the
    # right-hand side see only times inside the span.
    stops: list[float] = []
    for s in sorted({float(s) for s in span}, key=lambda s: s * direction):
        if (s - t0) * direction > near and (t1 - s) * direction > near and (not stops or (s - stops[-1]) * direction > near):
            stops.append(s)
    bounds = [t0, *stops, t1]
    requested = None if saveat is None else np.asarray(saveat, dtype=float)
    pieces: list[Integration] = []
    u, step = np.asarray(u0, dtype=float), first_step
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        here = None
        if requested is not None:
            # A save time at a stop belongs to the piece that ends there; b itself is saved to
            # restart from, and dropped again if it was not asked for.
            after_a = (requested - a) * direction > 0 if i else np.ones(len(requested), dtype=bool)
            mine = requested[after_a & ((requested - b) * direction <= 0)]
            here = np.array(sorted({*mine.tolist(), b}, key=lambda s: s * direction))
        # The right-hand side sees times just inside the piece at its ends: a switch at a stop
        # (rate = where(t < 2.5, r, 0)) then belongs to the side being integrated, also backwards,
        # and also when the stop is a few ulps off the switch (3 * 0.1 for 0.3).
        lo, hi = a + 2.0 * near * direction, b - 2.0 * near * direction
        f = _clamped(fun, lo, hi)
        J = None if jac is None else _clamped(jac, lo, hi)
        left = maxiters - sum(int(p.stats["naccept"]) for p in pieces)  # one budget for the whole span
        if left < 1:
            none = dict.fromkeys(pieces[-1].stats, 0)
            empty = Integration(np.zeros(0), np.zeros((0, u.size)), "MaxIters", a, none, _budget_spent(maxiters, len(bounds) - 1))
            pieces.append(empty)
            break
        piece = _integrate_span(f, a, b, u, here, alg, reltol, abstol, left, J, dense, step)
        if not piece.success:
            if piece.retcode == "MaxIters":  # the piece saw what was left of the budget: name the user's maxiters
                piece = dataclasses.replace(piece, message=_budget_spent(maxiters, len(bounds) - 1))
            pieces.append(piece)
            break
        u, step = piece.u[-1], piece.last_step
        if requested is not None and b not in requested:
            piece = dataclasses.replace(piece, t=piece.t[:-1], u=piece.u[:-1])
        pieces.append(piece)
    return _joined(pieces, saveat is None, bounds if dense else None)


# The last tstops sorted, by identity: a solve's Options hold one tuple, which every piece of it
# (and every backward segment of its adjoint) passes again.
_SORTED_STOPS: tuple[Any, tuple[float, ...]] = ((), ())


def _stops_near(tstops: Sequence[float], t0: float, t1: float, margin: float) -> Sequence[float]:
    """The stops within ``margin`` of the span between t0 and t1 (at least those), found by
    bisection: an adjoint restarting at each of 3601 monthly save times scanned all 301 yearly
    tstops for each of its segments, 14% of its gradient."""
    global _SORTED_STOPS
    given, ordered = _SORTED_STOPS
    if given is not tstops:
        ordered = tuple(sorted(float(s) for s in tstops))
        if isinstance(tstops, tuple):  # not a list, which could change under the same identity
            _SORTED_STOPS = (tstops, ordered)
    low, high = min(t0, t1) - margin, max(t0, t1) + margin
    return ordered[bisect.bisect_left(ordered, low) : bisect.bisect_right(ordered, high)]


def _budget_spent(maxiters: int, pieces: int) -> str:
    return f"reached maxiters={maxiters} steps (counted over the whole solve, across its {pieces} pieces between tstops)"


def _clamped(fun: Callable[[float, np.ndarray], Any], lo: float, hi: float) -> Callable[[float, np.ndarray], Any]:
    low, high = min(lo, hi), max(lo, hi)
    return lambda t, u: fun(min(max(t, low), high), u)


def _joined(pieces: list[Integration], every_step: bool, bounds: list[float] | None) -> Integration:
    """One integration from consecutive pieces, each starting where the one before ended."""
    ts = [pieces[0].t] + [p.t[1:] if every_step else p.t for p in pieces[1:]]
    us = [pieces[0].u] + [p.u[1:] if every_step else p.u for p in pieces[1:]]
    stats: dict[str, Any] = {}
    for key in pieces[0].stats:
        values = [p.stats[key] for p in pieces]
        stats[key] = None if any(v is None for v in values) else sum(values)
    end = pieces[-1]
    dense_sol = None
    if bounds is not None and all(p.dense is not None for p in pieces):
        from pyzygote.ode.rk import DenseSolution

        dense_sol = DenseSolution(bounds[: len(pieces) + 1], [p.dense for p in pieces])
    return Integration(np.concatenate(ts), np.concatenate(us), end.retcode, end.t_reached, stats, end.message, dense_sol, end.last_step)


class _Line:
    """The dense output of :func:`_across_a_few_ulps`: ``u0 + (t - t0) du``."""

    def __init__(self, t0: float, u0: np.ndarray, du: np.ndarray):
        self.t0, self.u0, self.du = t0, u0, du

    def __call__(self, t: Any) -> np.ndarray:
        return self.u0 + (np.asarray(t, dtype=float) - self.t0) * self.du


def _across_a_few_ulps(fun: Callable[[float, np.ndarray], np.ndarray], t0: float, t1: float, u0: np.ndarray, saveat: np.ndarray | None) -> Integration:
    """A span of a few ulps (an adjoint restarting between save times 0.3 and 0.1 * 3, which
    np.unique keeps apart) in one Euler step, exact to rounding there: a solver's first step
    cannot be that small, and SciPy's and pyzygote's stepper reported DtLessThanMin (fuzzer)."""
    u0 = np.asarray(u0, dtype=float)
    du = np.asarray(fun(t0, u0), dtype=float)
    stats = {"nf": 1, "njacs": 0, "nlu": 0, "naccept": 1, "nreject": 0}
    if not np.all(np.isfinite(du)):
        return Integration(np.array([t0]), u0[None, :], "Unstable", t0, stats, f"the right-hand side returned NaN or inf at t={t0:.6g}")
    ts = np.array([t0, t1]) if saveat is None else np.asarray(saveat, dtype=float)
    line = _Line(t0, u0, du)
    us = np.array([line(tk) for tk in ts]).reshape(len(ts), u0.size)
    return Integration(ts, us, "Success", t1, stats, "", line, None)  # type: ignore[arg-type]


def largest_magnitudes(dense: Any) -> np.ndarray | None:
    """Each state's largest magnitude at the steps of a solve's dense output (its value at one
    end of each step, which each interpolant holds), or None for a dense output of a kind not
    known here.  An adjoint's tolerances are measured against these (a pulse between the save
    times is no smaller for being unsaved)."""
    values: list[np.ndarray] = []

    def walk(d: Any) -> bool:
        pieces = getattr(d, "pieces", None)
        if pieces is None:
            pieces = getattr(d, "interpolants", None)
        if pieces is not None:  # pyzygote's DenseSolution, SciPy's OdeSolution
            return all(walk(piece) for piece in pieces)
        for name, row in (("y_old", None), ("u0", None), ("D", 0)):  # RK, Radau; _Line; BDF
            value = getattr(d, name, None)
            if value is not None:
                values.append(np.abs(value if row is None else value[row]))
                return True
        yh = getattr(d, "yh", None)  # LSODA's Nordsieck array, y in its first column
        if yh is not None:
            values.append(np.abs(yh[:, 0]))
            return True
        return False

    if dense is None or not walk(dense) or not values:
        return None
    return np.max(np.array(values, dtype=float), axis=0)


def point_evaluator(dense: Any) -> Callable[[float], np.ndarray]:
    """``dense`` as a function of one float time, bitwise the same values.

    SciPy's ``OdeSolution`` of Radau steps pays for generality at each call (array conversion,
    ``np.searchsorted``, ``np.tile`` and ``np.cumprod`` for three powers): an adjoint through Radau
    reads the forward solution at every stage, 6,000 times a gradient of a 10-species network.
    Here the segment is found by bisection with the same side and the powers are multiplied in
    cumprod's order.  Other dense outputs are returned as they are."""
    import bisect

    from scipy.integrate import OdeSolution

    from pyzygote.ode.rk import DenseSolution, _StepInterpolant

    if type(dense) is DenseSolution and all(type(i) is _StepInterpolant for i in dense.pieces):
        return _step_point_evaluator(dense)
    if type(dense) is DenseSolution:
        # A solve with tstops: one dense output per piece between stops, each read as above (a
        # Hodgkin-Huxley adjoint through Radau with a stimulus's two stops spent a quarter of its
        # time in OdeSolution's per-call generality).
        return _pieces_point_evaluator(dense, [point_evaluator(piece) for piece in dense.pieces])
    try:
        from scipy.integrate._ivp.radau import RadauDenseOutput
    except ImportError:  # a SciPy that moved it
        return dense
    if type(dense) is not OdeSolution or not all(type(i) is RadauDenseOutput for i in dense.interpolants):
        return dense
    if not all(hasattr(i, a) for i in dense.interpolants for a in ("t_old", "h", "Q", "y_old", "order")):
        return dense
    keys = np.asarray(dense.ts_sorted, dtype=float).tolist()
    search = bisect.bisect_left if dense.side == "left" else bisect.bisect_right
    last, ascending = dense.n_segments - 1, dense.ascending
    pieces = [(i.t_old, i.h, i.Q, i.y_old, i.order) for i in dense.interpolants]

    def at(t: float) -> np.ndarray:
        if not isinstance(t, float) or t != t:
            return dense(t)
        segment = min(max(search(keys, t) - 1, 0), last)
        t_old, h, Q, y_old, order = pieces[segment if ascending else last - segment]
        x = (np.float64(t) - t_old) / h
        powers = [x]
        for _ in range(order):
            powers.append(powers[-1] * x)
        y = np.dot(Q, np.array(powers))
        y += y_old
        return y

    return at


def _pieces_point_evaluator(dense: Any, pieces: list[Callable[[float], np.ndarray]]) -> Callable[[float], np.ndarray]:
    """``DenseSolution.__call__`` with each piece replaced by its point evaluator: the same
    piece is chosen for each time, so the values are bitwise the same."""
    import bisect

    keys, sign, last = dense._keys, dense._sign, len(pieces) - 1

    def at(t: float) -> np.ndarray:
        if not isinstance(t, float):
            return dense(t)
        return pieces[min(max(bisect.bisect_left(keys, sign * t) - 1, 0), last)](t)

    return at


def _step_point_evaluator(dense: Any) -> Callable[[float], np.ndarray]:
    """:func:`point_evaluator` for pyzygote's own Runge-Kutta steps: ``DenseSolution.__call__``
    and ``_StepInterpolant.__call__`` in one function, the same arithmetic."""
    import bisect

    keys, sign, last = dense._keys, dense._sign, len(dense.pieces) - 1
    pieces = [(i.t_old, i.h, i.y_old, i.Q) for i in dense.pieces]

    def at(t: float) -> np.ndarray:
        if not isinstance(t, float):
            return dense(t)
        i = bisect.bisect_left(keys, sign * t) - 1
        t_old, h, y_old, Q = pieces[min(max(i, 0), last)]
        x = (t - t_old) / h
        return y_old + h * (Q @ np.array([x, x * x, x**3, x**4]))

    return at


_LAPACK: dict[tuple[str, str], Any] = {}


def _lapack(name: str, *arrays: np.ndarray) -> Any:
    """SciPy's LAPACK routine ``name`` for the dtypes of ``arrays`` (``get_lapack_funcs``, looked up once)."""
    key = (name, arrays[0].dtype.char, arrays[-1].dtype.char)
    fn = _LAPACK.get(key)
    if fn is None:
        from scipy.linalg.lapack import get_lapack_funcs

        (fn,) = get_lapack_funcs((name,), arrays)
        _LAPACK[key] = fn
    return fn


def _lean_dense_lu(solver: Any) -> None:
    """Radau's and BDF's dense LU factorization and solves, calling LAPACK's getrf and getrs as
    ``scipy.linalg.lu_factor`` and ``lu_solve`` do (same routines, same checks: bitwise the same
    steps) without their per-call wrapping (batch dispatch, array-API checks, a routine lookup).
    A 10-species network's gradient through Radau made 4,700 solves, a quarter of its time
    in that wrapping.  A solver whose Jacobian is sparse (splu) is left as it is."""
    from scipy.sparse import issparse

    if not (hasattr(solver, "lu") and hasattr(solver, "solve_lu")) or issparse(getattr(solver, "J", None)):
        return

    def lu(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        solver.nlu += 1
        if not (isinstance(A, np.ndarray) and A.ndim == 2 and A.size and A.dtype.char in "dD"):
            from scipy.linalg import lu_factor

            return lu_factor(A, overwrite_a=True)
        if not np.isfinite(A).all():
            raise ValueError("array must not contain infs or NaNs")  # lu_factor's check_finite
        lu_, piv, info = _lapack("getrf", A)(A, overwrite_a=True)
        if info < 0:
            raise ValueError(f"illegal value in {-info}th argument of internal getrf (lu_factor)")
        if info > 0:
            import warnings

            from scipy.linalg import LinAlgWarning

            warnings.warn(f"Diagonal number {info} is exactly zero. Singular matrix.", LinAlgWarning, stacklevel=2)
        return lu_, piv

    def solve_lu(LU: tuple[np.ndarray, np.ndarray], b: np.ndarray) -> np.ndarray:
        lu_, piv = LU
        if not (isinstance(b, np.ndarray) and b.ndim == 1 and b.size == lu_.shape[0] and b.dtype.char in "dD"):
            from scipy.linalg import lu_solve

            return lu_solve(LU, b, overwrite_b=True)
        if not np.isfinite(b).all():
            raise ValueError("array must not contain infs or NaNs")  # lu_solve's check_finite
        x, info = _lapack("getrs", lu_, b)(lu_, piv, b, trans=0, overwrite_b=True)
        if info != 0:
            raise ValueError(f"illegal value in {-info}th argument of internal gesv|posv")
        return x

    solver.lu, solver.solve_lu = lu, solve_lu


def _interpolation_not_finite(alg: str, t: float) -> str:
    # DOP853 (Vern7, Vern9) evaluates the right-hand side again for its dense output, between
    # accepted steps, where a state may stray outside f's domain although no step did (user
    # testing: a Hill term x ** n of a state a hair below 0 made a whole saved row NaN while
    # SciPy reported success).
    return (
        f"the solution interpolated near t={t:.6g} is NaN or inf although every step stayed finite: {alg}'s dense "
        "output evaluates the right-hand side again between steps (SciPy's DOP853 extra stages), and there it was "
        "not finite, as x ** n is for a state a hair below 0. Guard the right-hand side (np.maximum(x, 0.0) ** n), "
        "or use a solver whose interpolation needs no new evaluations (alg='Tsit5' or 'DP5')"
    )


_LSODA_MODULE = "scipy.integrate._ivp.lsoda"  # where SciPy's "lsoda: ..." UserWarning is raised from


@contextlib.contextmanager
def _lsoda_failures_unwarned(kind: str) -> Iterator[None]:
    """Inside, SciPy's LSODA does not warn of a failed step ("lsoda: Excess accuracy requested"):
    the failure is reported from its istate (:func:`_lsoda_failure`).  Only that warning, from
    SciPy's LSODA module, is dropped; the right-hand side's own warnings pass.

    It is dropped where it would be shown (warnings.showwarning), not with a filter: changing the
    filters (warnings.catch_warnings) resets every module's record of warnings already shown, so
    a warning of the right-hand side that Python shows once was shown again at every solve
    (review: 5 solves, 10 copies).  Where the user's filters make it an error (-W error), it is
    filtered instead.  (Process-wide either way: a solve in another thread meanwhile loses it too.)"""
    if kind != "LSODA":
        yield
        return
    if _lsoda_warning_is_an_error():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="lsoda: ", category=UserWarning, module=re.escape(_LSODA_MODULE))
            yield
        return
    shown = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if not (issubclass(category, UserWarning) and str(message).startswith("lsoda: ") and "scipy" in filename):
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = shown


def _lsoda_warning_is_an_error() -> bool:
    """Whether the first of the warning filters that matches SciPy's "lsoda: ..." UserWarning
    raises it (as Python matches them: message at its start, category, module, any line)."""
    for action, message, category, module, lineno in warnings.filters:
        if (
            (message is None or message.match("lsoda: "))
            and issubclass(UserWarning, category)
            and (module is None or module.match(_LSODA_MODULE))
            and lineno == 0
        ):
            return action == "error"
    return warnings.defaultaction == "error"


def _lsoda_failure(solver: Any) -> str:
    """Why LSODA stopped, from the istate its Fortran code returned (SciPy itself only says
    "Unexpected istate in LSODA"), with what to change where the user can."""
    integrator = getattr(getattr(solver, "_lsoda_solver", None), "_integrator", None)
    istate = getattr(integrator, "istate", None)
    said = getattr(integrator, "messages", {}).get(istate) if isinstance(istate, int) else None
    if not said:
        return "LSODA failed (istate unknown)" if istate is None else f"LSODA failed with istate={istate}"
    said = said.rstrip(". ")
    advice = _LSODA_ADVICE.get(istate, "")
    if istate == -5 and _lsoda_method(solver, current=True) == 1:
        advice = ": the functional iteration of its nonstiff (Adams) phase failed, at a step too long for a stiff system; try alg='Rodas5P' or alg='FBDF'"
    return f"LSODA stopped: {said[0].lower()}{said[1:]} (istate={istate}){advice}"


def _lsoda_method(solver: Any, current: bool = False) -> int | None:
    """The method of LSODA's last successful step (or, ``current``, of the step it was trying):
    1 nonstiff (Adams), 2 stiff (BDF), or None.

    A step size is carried to the next integration (an adjoint's next piece between save times,
    a solve's next piece between tstops) only from Adams: LSODA starts every integration with
    Adams and its functional iteration, which diverges at the stiff method's steps, and LSODA
    gives up (istate=-5) long before it would switch.  Robertson's kinetics' adjoint failed so
    at its second save time: the first piece ended stiff with a step of 1,171, and a new LSODA
    started with it, or with a hundredth of it, failed at its first step."""
    integrator = getattr(getattr(solver, "_lsoda_solver", None), "_integrator", None)
    iwork = getattr(integrator, "iwork", None)
    at = 19 if current else 18  # IWORK(20), MCUR, and IWORK(19), MUSED, in LSODA's documentation
    if not isinstance(iwork, np.ndarray) or iwork.size <= at or iwork[at] not in (1, 2):
        return None
    return int(iwork[at])


_LSODA_ADVICE = {
    -2: ": loosen reltol or abstol, or rescale the states, whose rounding error the tolerances asked to beat",
    -4: ": the right-hand side may jump (a switch, a kink); give the time in tstops, or use a stiff solver (alg='Rodas5P')",
    -5: ": the Newton iteration of the stiff phase failed; check the right-hand side for jumps, or try alg='Rodas5P'",
}


def _warn(message: str) -> None:
    from pyzygote.tracing import _user_stacklevel

    warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())


# LSODA factorizes a banded Jacobian in about n (lband + uband)^2 operations against n^3 / 3 for a
# dense one; past this fraction of the states as its width, the dense one is kept.
BANDED_WIDTH_AT_MOST = 0.25
# A band narrow enough as numbered is still renumbered when that makes it this many times narrower
# (a factorization costs about n width^2): the forward sensitivities of a 40 x 40 two-species grid
# stored grid-first, kron(J_u, I_3) numbered row by row, have a band 487 wide where renumbered, 3 + 1
# copies of J_u's pattern side by side, they have one 163 wide.
RENUMBERED_IF_NARROWER_BY = 2.0


def _lsoda_jacobian(jac: Callable[[float, np.ndarray], Any], t0: float, u0: np.ndarray) -> dict[str, Any]:
    """LSODA's ``jac`` (and ``lband``, ``uband`` when banded pays, and ``order`` when that band
    needs the states renumbered).  A large system's Jacobian comes sparse, with the entries its
    structure allows (:meth:`pyzygote.ode.rhs.RHS.jacobian_u`), the same at every point: when they
    lie in a narrow band, LSODA gets that band (a 40 x 40 heat grid, band 40 of 1,600 states: 4.5 s
    to solve with `auto` and the dense Jacobian, 0.2 s banded).  When they do not as numbered (a
    grid stored species-first), or when that makes the band RENUMBERED_IF_NARROWER_BY times
    narrower, the states are renumbered by reverse Cuthill-McKee (new state i is old
    ``order[i]``, :mod:`pyzygote.ode.band_order`), and ``jac`` takes and gives the renumbered
    system's.  LSODA takes no other sparse form.  Systems of dense Jacobians (at most
    DENSE_STATE_JACOBIAN_UP_TO states) are not looked at: that would cost them a Jacobian a solve."""
    from pyzygote.ode import rhs
    from pyzygote.ode.sparsity import StructuralJacobian

    dense = {"jac": lambda t, u: _finite(dense_matrix(jac(t, u)), "Jacobian", t)}
    n = len(u0)
    if n <= rhs.DENSE_STATE_JACOBIAN_UP_TO:
        return dense

    J0 = jac(t0, np.array(u0, dtype=float))
    if not isinstance(J0, StructuralJacobian) or J0.nnz == 0:
        return dense  # dense, or sparse with the places of its nonzero values (they may move)
    J0 = J0.tocoo()
    lband, uband = int(max(0, np.max(J0.row - J0.col))), int(max(0, np.max(J0.col - J0.row)))
    from pyzygote.ode.band_order import narrow_order

    width, order, position = lband + uband + 1, None, None
    narrow = narrow_order(J0.row, J0.col, n, min(BANDED_WIDTH_AT_MOST * n, width / RENUMBERED_IF_NARROWER_BY))
    if narrow is not None:
        order, lband, uband = narrow
        position = np.argsort(order)
    elif width > BANDED_WIDTH_AT_MOST * n:
        return dense

    def packed(t: float, v: np.ndarray) -> np.ndarray:
        J = jac(t, v if position is None else v[position]).tocoo()
        row, col = (J.row, J.col) if position is None else (position[J.row], position[J.col])
        band = uband + row - col
        if np.any(band < 0) or np.any(band > lband + uband):  # a pattern is fixed per system
            raise ValueError(f"the Jacobian at t={t:.6g} has entries outside its band (lband={lband}, uband={uband})")
        out = np.zeros((lband + uband + 1, n))
        out[band, col] = J.data
        return _finite(out, "Jacobian", t)

    banded = {"jac": packed, "lband": lband, "uband": uband}
    return banded if order is None else {**banded, "order": order}


def _integrate_span(
    fun: Callable[[float, np.ndarray], np.ndarray],
    t0: float,
    t1: float,
    u0: np.ndarray,
    saveat: np.ndarray | None,
    alg: str,
    reltol: float,
    abstol: float | np.ndarray,
    maxiters: int,
    jac: Callable[[float, np.ndarray], np.ndarray] | None,
    dense: bool,
    first_step: float | None,
) -> Integration:
    import scipy.integrate  # here, not at import: it is most of the time `import pyzygote` took

    kind = algorithm(alg).scipy
    method = getattr(scipy.integrate, kind)
    if kind == "RK45":
        from pyzygote.ode.rk import rk_integrate

        return rk_integrate(fun, t0, t1, u0, saveat, reltol, abstol, maxiters=maxiters, dense=dense, first_step=first_step)
    n_calls = [0]
    radau: list[Any] = [None]  # the Radau solver, once made

    def counted(t: float, u: np.ndarray) -> np.ndarray:
        n_calls[0] += 1
        at = radau[0]
        if at is None or t != at.t:
            return fun(t, u)
        # Given a Jacobian, Radau evaluates f at its current time only to refine the error
        # estimate of a step tried again, at y + error, which can leave f's domain: a central
        # amount dosed from 0, a hair below it, in c ** 0.7 (acceptance testing: every retry NaN,
        # the step shrank to 1e-308).  There f at y itself gives SciPy's first estimate, and
        # numpy's warning of the NaN is no concern of the user's.
        with np.errstate(all="ignore"):
            out = fun(t, u)
        return out if np.all(np.isfinite(out)) else at.f

    floor = 100 * np.finfo(float).eps
    if reltol < floor:
        # SciPy raises a reltol below its floor with a warning of its own that names its rtol;
        # said here in the user's words, once per place in their code
        _warn(
            f"reltol={reltol:g} is below {floor:.3g} (100 machine epsilons), the least SciPy's {kind}, which runs "
            f"alg={alg!r} on the NumPy engine, accepts: solved at reltol={floor:.3g}."
        )
        reltol = floor
    kwargs: dict[str, Any] = {"rtol": reltol, "atol": abstol}
    latest: list[Any] = [None]  # the groups of the last Jacobian given (pyzygote.ode.block_lu)
    if jac is not None and kind in ("Radau", "BDF"):

        def checked_jac(t: float, u: np.ndarray) -> Any:
            J = _finite(jac(t, u), "Jacobian", t)
            latest[0] = getattr(J, "groups", None)
            return J

        kwargs["jac"] = checked_jac
    order = None  # LSODA's renumbering of the states, when its band needs one
    if jac is not None and kind == "LSODA":  # dense, or banded in LAPACK's packed form
        kwargs.update(_lsoda_jacobian(jac, t0, u0))
        order = kwargs.pop("order", None)
    if first_step:
        kwargs["first_step"] = min(first_step, abs(t1 - t0))
    direction = 1.0 if t1 >= t0 else -1.0
    ts: list[float] = []
    us: list[np.ndarray] = []
    if saveat is None:
        ts.append(t0)
        us.append(np.array(u0, dtype=float))
        pending = np.empty(0)
    else:
        pending = np.asarray(saveat, dtype=float)
    k = 0
    while k < len(pending) and (pending[k] - t0) * direction <= 0:
        ts.append(float(pending[k]))
        us.append(np.array(u0, dtype=float))
        k += 1
    n = len(u0)
    # SciPy's methods do not expect NaN or inf at the start (DOP853's initial step becomes NaN
    # and it loops forever) or in a Jacobian (Radau and BDF raise from their LU factorization);
    # later NaN derivatives make them reject the step and shrink it, as OrdinaryDiffEq does.
    try:
        _finite(fun(t0, np.array(u0, dtype=float)), "right-hand side", t0)  # not counted in the stats
        if order is None:
            solver = method(counted, t0, np.array(u0, dtype=float), t1, **kwargs)
        else:
            from pyzygote.ode.band_order import Renumbered

            stepped, v0, kwargs["atol"] = Renumbered.problem(counted, u0, abstol, order)
            solver = Renumbered(method(stepped, t0, v0, t1, **kwargs), order)
        if kind == "Radau" and jac is not None and order is None:
            radau[0] = solver
        if kind in ("Radau", "BDF"):
            _lean_dense_lu(solver)
            if latest[0] is not None:
                from pyzygote.ode.block_lu import install

                install(solver, latest)
    except _NonFinite as exc:
        stats = {"nf": n_calls[0], "njacs": 0, "nlu": 0, "naccept": 0, "nreject": 0}
        return Integration(np.array(ts), np.array(us).reshape(len(us), n), "Unstable", t0, stats, str(exc), None, None)
    naccept = steps_called = 0
    attempts: int | None = 0
    segments: list[Any] = []
    seg_ts = [t0]
    retcode, message = "Success", ""
    # SciPy's explicit RK methods spend exactly n_stages evaluations per attempt.
    per_attempt = getattr(solver, "n_stages", None) if kind in ("RK45", "DOP853") else None
    # LSODA warns of a failed step (istate < 0) before it reports the failure, which is read
    # here from istate and said in the SolverError: the warning only repeated it, to the user.
    with _lsoda_failures_unwarned(kind):
        while solver.status == "running":
            if naccept >= maxiters:
                retcode, message = "MaxIters", f"reached maxiters={maxiters} steps"
                break
            before = n_calls[0]
            steps_called += 1
            try:
                msg = solver.step()
            except _NonFinite as exc:
                retcode, message = "Unstable", str(exc)
                break
            except ValueError as exc:  # Radau/BDF factorizing their own difference-quotient Jacobian
                if "infs or NaNs" not in str(exc):
                    raise
                retcode, message = "Unstable", f"the Jacobian became NaN or infinite near t={solver.t}"
                break
            if solver.status == "failed":
                retcode = "DtLessThanMin" if msg and "step size" in msg else "Failure"
                message = _lsoda_failure(solver) if kind == "LSODA" else msg or "solver failed"
                break
            naccept += 1
            if per_attempt and attempts is not None:
                attempts += (n_calls[0] - before) // per_attempt
            else:
                attempts = None
            if not np.all(np.isfinite(solver.y)):
                retcode, message = "Unstable", f"the solution became NaN or infinite at t={solver.t}"
                break
            interp = None
            if dense or (k < len(pending) and (pending[k] - solver.t) * direction <= 0 and pending[k] != solver.t):
                interp = solver.dense_output()
                if not np.all(np.isfinite(getattr(interp, "F", 0.0))):
                    retcode, message = "Unstable", _interpolation_not_finite(alg, float(solver.t))
                    break
            if dense:
                segments.append(interp)
                seg_ts.append(solver.t)
            while k < len(pending) and (pending[k] - solver.t) * direction <= 0:
                tk = float(pending[k])
                ts.append(tk)
                us.append(np.array(solver.y, dtype=float) if tk == solver.t else np.asarray(interp(tk), dtype=float))
                k += 1
                if not np.all(np.isfinite(us[-1])):
                    ts.pop(), us.pop()  # a failed solve keeps only the finite values it saved
                    retcode, message = "Unstable", _interpolation_not_finite(alg, tk)
                    break
            if retcode != "Success":
                break
            if saveat is None:
                ts.append(float(solver.t))
                us.append(np.array(solver.y, dtype=float))
    stats = {
        "nf": n_calls[0],
        "njacs": int(getattr(solver, "njev", 0)),
        "nlu": int(getattr(solver, "nlu", 0)),
        "naccept": naccept,
        "nreject": None if attempts is None else attempts - naccept,
    }
    u = np.array(us, dtype=float).reshape(len(us), n)
    # A failed solve's dense output is never read (the caller raises SolverError), and its last
    # steps may not advance t: OdeSolution would refuse them with a ValueError of its own.
    dense_sol = scipy.integrate.OdeSolution(seg_ts, segments) if dense and segments and retcode == "Success" else None
    last = getattr(solver, "step_size", None)
    t_end = float(solver.t)
    if kind == "LSODA":
        if _lsoda_method(solver) != 1:
            last = None
        release_work_arrays(solver, steps_called)
    return Integration(np.array(ts), u, retcode, t_end, stats, message, dense_sol, last or None)

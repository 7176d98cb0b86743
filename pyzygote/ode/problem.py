"""``ODEProblem`` and ``solve``, shaped like DifferentialEquations.jl's.

>>> import numpy as np, pyzygote as pz
>>> def lotka(u, p, t):
...     x, y = u
...     a, b, d, g = p
...     return np.array([a*x - b*x*y, -d*y + g*x*y])
>>> prob = pz.ODEProblem(lotka, u0=[1.0, 1.0], tspan=(0.0, 10.0), p=[1.5, 1.0, 3.0, 1.0])
>>> sol = pz.solve(prob, alg="Tsit5", saveat=np.linspace(0, 10, 101), reltol=1e-8, abstol=1e-8)
>>> sol.retcode, sol.u.shape
('Success', (101, 2))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from pyzygote.ode.rhs import RHS, captured_values, check_signature
from pyzygote.ode.solvers import Integration, algorithm, check_solver_name, integrate, refuse_unknown_keywords
from pyzygote.errors import CapturedTracerError, UnsupportedOperationError
from pyzygote.ode.layout import Layout, leaf_values
from pyzygote.primitives.ode import check_solver_options, check_times, check_tstops, warn_missing_tstops
from pyzygote.pytree import Static, flatten, unflatten
from pyzygote.tracer import Tracer

__all__ = ["ODEProblem", "ODESolution", "solve"]


def _read_only(tree: Any) -> Any:
    """``tree`` with read-only float64 array leaves; integer and boolean arrays (labels, masks)
    keep their type and other values (a string setting) stay as they are."""
    leaves, structure = flatten(tree)
    out = []
    for leaf in leaves:
        if isinstance(leaf, Static):
            out.append(leaf.value)
            continue
        labels = isinstance(leaf, np.ndarray) and leaf.dtype.kind in "biu"
        arr = np.array(leaf, dtype=leaf.dtype if labels else float)
        arr.setflags(write=False)
        out.append(arr)
    return unflatten(structure, out)


@dataclass(frozen=True)
class ODEProblem:
    """``u' = f(u, p, t)``, ``u(tspan[0]) = u0``; ``f`` is plain numpy code.

    ``tstops`` are times every solve of this problem steps to, as SciML's
    ``ODEProblem(f, u0, tspan, p; tstops)`` (a dosing schedule that belongs to the model);
    :func:`solve` adds its own.

    >>> import pyzygote as pz
    >>> prob = pz.ODEProblem(lambda u, p, t: -p[0] * u, [1.0], (0.0, 1.0), [2.0])
    >>> prob.remake(p=[3.0]).p
    array([3.])
    """

    f: Callable[..., Any]
    u0: Any
    tspan: tuple[float, float]
    p: Any = None
    tstops: Any = None

    def __post_init__(self) -> None:
        if not callable(self.f):
            raise TypeError(f"f must be a callable f(u, p, t), got {type(self.f).__name__}")
        check_signature(self.f)  # an argument order written for SciPy is told here, not first at solve
        if any(isinstance(v, Tracer) for v in flatten((self.u0, self.p))[0]):
            raise UnsupportedOperationError(
                "an ODEProblem is being differentiated: pz.solve and ODEProblem are not "
                "differentiable; use pz.odesolve(f, u0, t, p, ...) inside the differentiated function"
            )
        layout = Layout.of(self.u0, self.p)[0]  # the checks odesolve makes
        p = self.p  # None stays None: f gets it as odesolve gives it (see flat)
        if layout.p_tree == "*" and p is not None:  # one array (a list of numbers included)
            p = np.asarray(p, dtype=float)
        object.__setattr__(self, "u0", _read_only(np.asarray(self.u0, dtype=float)))
        object.__setattr__(self, "p", _read_only(p))
        try:
            if isinstance(self.tspan, str) or any(isinstance(v, (str, bytes)) for v in self.tspan):
                raise TypeError
            t0, t1 = (float(v) for v in self.tspan)
        except (TypeError, ValueError):
            raise ValueError(f"tspan must be a pair (t0, t1) of numbers, got {self.tspan!r}") from None
        if not (np.isfinite(t0) and np.isfinite(t1)) or t1 <= t0:
            raise ValueError(f"tspan must be finite with t0 < t1, got {self.tspan!r}")
        object.__setattr__(self, "tspan", (t0, t1))
        # Kept whole, not cut to tspan: remake(tspan=...) may reach the rest of a schedule.
        check_tstops(self.tstops, (-np.inf, np.inf))
        stops = None if self.tstops is None else np.unique(np.atleast_1d(np.asarray(self.tstops, dtype=float)))
        object.__setattr__(self, "tstops", None if stops is None else _read_only(stops))

    def remake(self, **changes: Any) -> "ODEProblem":
        """A copy with some of ``f``, ``u0``, ``tspan``, ``p``, ``tstops`` replaced."""
        unknown = set(changes) - {"f", "u0", "tspan", "p", "tstops"}
        if unknown:
            raise TypeError(f"remake got unknown fields {sorted(unknown)}; use f, u0, tspan, p, tstops")
        return replace(self, **changes)

    def flat(self) -> tuple[Layout, np.ndarray, np.ndarray]:
        """The layout of ``u0`` and ``p``, and both as flat vectors (see :mod:`pyzygote.ode.layout`)."""
        from pyzygote.julia.functions import is_julia_function

        return Layout.of(self.u0, self.p, keep_none=not is_julia_function(self.f))

    def rhs(self) -> RHS:
        layout = self.flat()[0]
        try:
            return RHS.trace(self.f, layout.n, layout.m, layout)
        except CapturedTracerError as exc:
            what = captured_values(self.f) or f"a {exc.dtype} value of shape {exc.shape}"
            raise UnsupportedOperationError(
                f"the right-hand side of this ODEProblem reads a value being differentiated from its closure "
                f"({what}), and pz.solve and ODEProblem "
                "are not differentiable: use pz.odesolve(f, u0, t, p, ...) inside the differentiated function, "
                "which differentiates the values a right-hand side captures as if they were in p"
            ) from None


@dataclass
class ODESolution:
    """Result of :func:`solve`: ``t`` (T,), ``u`` (T, *u0.shape) time-major, ``retcode``, ``stats``."""

    t: np.ndarray
    u: np.ndarray
    retcode: str
    stats: dict[str, Any]
    alg: str
    message: str = ""
    prob: ODEProblem | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def success(self) -> bool:
        return self.retcode == "Success"

    def __getitem__(self, index: Any) -> Any:
        # SciML's sol[i, j] is state i at time index j, and sol[j] the state at time j; numpy's
        # indexing of sol.u is time first: rather than guess which the user meant, say so.
        raise TypeError(
            "an ODESolution is not indexed as in DifferentialEquations.jl (where sol[i, j] is state i at the j-th "
            "time): index its arrays, sol.u[j] for the state at time sol.t[j] and sol.u[j, i] for state i there "
            "(time first, like SciPy's y.T and diffrax's ys)"
        )

    def __call__(self, t: Any) -> np.ndarray:
        """The solution at times ``t`` (a number or an array, any order), shape ``t.shape + u0.shape``.

        SciML's ``sol(t)``, computed by solving again with ``saveat`` at those times, with the same
        solver, tolerances and engine, instead of interpolating between saved steps: it costs one
        solve and is as accurate as the solve itself.

        >>> import numpy as np, pyzygote as pz
        >>> prob = pz.ODEProblem(lambda u, p, t: -p[0] * u, [1.0], (0.0, 1.0), [2.0])
        >>> sol = pz.solve(prob, "Tsit5", reltol=1e-10, abstol=1e-10, engine="numpy")
        >>> np.round(sol([0.5, 0.25])[:, 0], 6).tolist()
        [0.367879, 0.606531]
        """
        if self.prob is None:
            raise ValueError("this ODESolution was not made by pz.solve, so it cannot be evaluated at new times")
        if not self.success:
            raise ValueError(
                f"sol(t) needs a successful solve; this one ended with retcode {self.retcode!r} at t = {self.t[-1] if len(self.t) else self.prob.tspan[0]}"
            )
        given = np.asarray(t)
        if given.dtype.kind not in "iuf" or isinstance(t, (bool, np.bool_)):
            raise TypeError(f"sol(t) takes times (real numbers), got {t!r}")
        times = given.astype(np.float64)
        t0, t1 = self.prob.tspan
        if not np.all(np.isfinite(times)) or np.any(times < t0) or np.any(times > t1):
            raise ValueError(f"t must lie within tspan {self.prob.tspan}, got {t!r}")
        if times.size == 0:
            return np.empty(times.shape + np.shape(self.u)[1:])
        unique, position = np.unique(times.ravel(), return_inverse=True)
        again = solve(self.prob, self.alg, saveat=unique, **self.options)
        if not again.success:
            from pyzygote.errors import SolverError

            raise SolverError(f"solving again for sol(t) failed with retcode {again.retcode!r}: {again.message}")
        u = np.asarray(again.u)
        return u[position.ravel()].reshape(times.shape + u.shape[1:])

    def __repr__(self) -> str:
        return f"ODESolution(retcode={self.retcode!r}, alg={self.alg!r}, t: {self.t.shape}, u: {self.u.shape}, stats={self.stats})"


# A spacing that would save more times than this is a mistake (saveat=1e-12), not a request.
_MAX_SAVED = 10**7


def _saveat(saveat: Any, tspan: tuple[float, float]) -> np.ndarray | None:
    if saveat is None:
        return None
    t0, t1 = tspan
    if np.ndim(saveat) == 0:
        number = isinstance(saveat, (int, float, np.integer, np.floating)) and not isinstance(saveat, (bool, np.bool_))
        if not (number and np.isfinite(saveat) and saveat > 0):
            raise ValueError(f"a scalar saveat is a spacing and must be a positive finite number, got {saveat!r}")
        dt = float(saveat)
        steps = abs(t1 - t0) / dt
        # The grid t0, t0 + dt, ... before t1, then t1 itself: t1 that is a multiple of dt up to
        # rounding (0.1 * 7 is 0.7000000000000001) ends the grid, not a point beside it.
        whole = round(steps)
        count = whole if abs(steps - whole) <= 1e-9 * max(1.0, steps) else np.floor(steps) + 1
        if count + 1 > _MAX_SAVED:
            raise ValueError(
                f"saveat={saveat!r} saves {count + 1:.3g} times over tspan {tspan}; give a larger spacing "
                f"(at most {_MAX_SAVED:.0e} times) or an array of the times wanted"
            )
        return np.append(t0 + np.copysign(dt, t1 - t0) * np.arange(int(count)), t1)
    times = check_times(saveat, "saveat")
    if times[0] < t0 or times[-1] > t1:
        raise ValueError(f"saveat must lie within tspan {tspan}, got times from {times[0]} to {times[-1]}")
    return times


def solve(
    prob: ODEProblem,
    alg: str = "auto",
    *,
    saveat: Any = None,
    reltol: float = 1e-3,
    abstol: float = 1e-6,
    maxiters: int = 100_000,
    tstops: Any = None,
    engine: str | None = None,
    verbose: bool = True,
    **unknown: Any,
) -> ODESolution:
    """Solve an :class:`ODEProblem`; a failed solve is reported in ``retcode``, never hidden.

    ``saveat`` is an increasing array of times within ``tspan`` or a spacing;
    without it every step is saved.  ``tstops`` are times the solver steps to
    (SciML's), where the right-hand side switches, in addition to the problem's own.  For derivatives use :func:`pyzygote.odesolve`
    inside :func:`pyzygote.gradient` and friends.  A failed solve also raises a
    :class:`pyzygote.SolverWarning`, as DifferentialEquations.jl warns (``verbose=False`` silences it).

    >>> import numpy as np, pyzygote as pz
    >>> prob = pz.ODEProblem(lambda u, p, t: -p[0] * u, [1.0], (0.0, 1.0), [2.0])
    >>> sol = pz.solve(prob, "Tsit5", saveat=[0.0, 0.5, 1.0], reltol=1e-10, abstol=1e-10, engine="numpy")
    >>> sol.retcode, np.round(sol.u[:, 0], 6).tolist()
    ('Success', [1.0, 0.367879, 0.135335])
    """
    refuse_unknown_keywords("pz.solve", unknown)
    if not isinstance(prob, ODEProblem):
        raise TypeError(f"prob must be a pz.ODEProblem, got {type(prob).__name__}")
    check_solver_name(alg)
    reltol, abstol, maxiters = check_solver_options(reltol, abstol, maxiters)
    times = _saveat(saveat, prob.tspan)
    given = () if prob.tstops is None else tuple(prob.tstops)
    stops = check_tstops(given + check_tstops(tstops, (-np.inf, np.inf)), prob.tspan)
    from pyzygote.engines import current_engine_name

    options = dict(reltol=reltol, abstol=abstol, maxiters=maxiters, tstops=stops or None, engine=current_engine_name(engine))
    warn_missing_tstops(prob.f, prob.rhs(), prob.tspan, stops, leaf_values(prob.p))
    if options["engine"] == "julia":
        from pyzygote.julia.ode import solve_julia

        return _warn_if_failed(replace(solve_julia(prob, alg, times, reltol, abstol, maxiters, stops), options=options), verbose)
    algorithm(alg)  # the NumPy engine's solvers, before anything is traced or solved
    layout, u0, p = prob.flat()
    rhs = prob.rhs()
    res: Integration = integrate(
        lambda t, u: rhs(u, p, t),
        prob.tspan[0],
        prob.tspan[1],
        u0,
        times,
        alg,
        reltol,
        abstol,
        maxiters=maxiters,
        jac=(lambda t, u: rhs.jacobian_u(u, p, t)) if algorithm(alg).stiff or alg == "auto" else None,
        tstops=stops,
    )
    return _warn_if_failed(ODESolution(res.t, layout.states(res.u), res.retcode, res.stats, alg, res.message, prob, options), verbose)


def _warn_if_failed(sol: ODESolution, verbose: bool) -> ODESolution:
    if verbose and sol.retcode != "Success":
        import warnings

        from pyzygote.errors import SolverWarning

        reached = f" after t = {sol.t[-1]:.6g}, its last saved time," if sol.t.size else " before its first save time"
        warnings.warn(
            f"pz.solve: the solve failed with retcode {sol.retcode}{reached} (tspan {sol.prob.tspan}): {sol.message}. "
            "The solution holds the states up to where the solver stopped; check sol.retcode or sol.success "
            "(verbose=False silences this warning)",
            SolverWarning,
            stacklevel=3,
        )
    return sol

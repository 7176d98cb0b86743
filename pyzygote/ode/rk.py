"""A lean explicit Runge-Kutta stepper for small systems.

SciPy's ``solve_ivp`` spends most of a small system's time in per-step
bookkeeping on tiny arrays.  This stepper runs the Dormand-Prince 5(4) pair
(SciPy's ``RK45`` coefficients, with its 4th-order dense output) with one
preallocated stage array, the standard step-size controller, and dense
output only on steps that hold save times.

>>> import numpy as np
>>> res = rk_integrate(lambda t, u: -u, 0.0, 1.0, np.array([1.0]), np.array([1.0]), 1e-10, 1e-10)
>>> round(float(res.u[-1, 0]), 9) == round(float(np.exp(-1.0)), 9)
True
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Callable

import numpy as np
from scipy.integrate import RK45

__all__ = ["rk_integrate", "DenseSolution"]

_A, _B, _C, _E, _P = RK45.A, RK45.B, RK45.C, RK45.E, RK45.P
_STAGES = len(_B)
_ROWS = [(float(_C[s]), np.array(_A[s, :s])) for s in range(1, len(_B))]
_ERR_EXP = -1.0 / (RK45.error_estimator_order + 1)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


class DenseSolution:
    """Piecewise interpolant over accepted steps: ``sol(t)`` for t inside the solved span."""

    def __init__(self, ts: list[float], pieces: list[Callable[[Any], np.ndarray]]):
        self._sign = 1.0 if ts[-1] >= ts[0] else -1.0
        self._keys = [self._sign * t for t in ts]  # ascending, for bisect
        self.pieces = pieces

    def __call__(self, t: float) -> np.ndarray:
        i = bisect.bisect_left(self._keys, self._sign * t) - 1
        return self.pieces[min(max(i, 0), len(self.pieces) - 1)](t)


class _StepInterpolant:
    __slots__ = ("t_old", "h", "y_old", "Q")

    def __init__(self, t_old: float, h: float, y_old: np.ndarray, Q: np.ndarray):
        self.t_old, self.h, self.y_old, self.Q = t_old, h, y_old, Q

    def __call__(self, t: Any) -> np.ndarray:
        if isinstance(t, float):
            x = (t - self.t_old) / self.h
            return self.y_old + self.h * (self.Q @ np.array([x, x * x, x**3, x**4]))
        x = (np.asarray(t) - self.t_old) / self.h
        powers = np.stack([x, x * x, x**3, x**4])
        return (self.y_old[:, None] + self.h * (self.Q @ powers.reshape(4, -1))).reshape(self.y_old.shape + np.shape(t))


def _initial_step(f: Callable[..., np.ndarray], t0: float, t1: float, y: np.ndarray, f0: np.ndarray, rtol: float, atol: Any) -> float:
    """Hairer, Norsett & Wanner's starting step (Solving ODEs I, II.4)."""
    direction = 1.0 if t1 >= t0 else -1.0
    scale = atol + np.abs(y) * rtol
    d0, d1 = _rms(y / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, abs(t1 - t0))
    f1 = f(t0 + direction * h0, y + direction * h0 * f0)
    d2 = _rms((f1 - f0) / scale) / h0 if h0 > 0 else 0.0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / 5.0)
    return min(100 * h0, h1, abs(t1 - t0))


def _rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.dot(x, x)) / x.size) if x.size else 0.0


def rk_integrate(
    fun: Callable[[float, np.ndarray], np.ndarray],
    t0: float,
    t1: float,
    y0: np.ndarray,
    saveat: np.ndarray | None,
    rtol: float,
    atol: Any,
    *,
    maxiters: int = 100_000,
    dense: bool = False,
    first_step: float | None = None,
) -> Any:
    from pyzygote.ode.solvers import Integration

    y = np.array(y0, dtype=float)
    n = y.size
    direction = 1.0 if t1 >= t0 else -1.0
    nf = 0

    def f(t: float, u: np.ndarray) -> np.ndarray:
        nonlocal nf
        nf += 1
        return np.asarray(fun(t, u), dtype=float)

    K = np.empty((_STAGES + 1, n))
    K[0] = f(t0, y)
    usable = first_step and first_step > 10 * abs(np.nextafter(t0, direction * np.inf) - t0)
    h_abs = min(first_step, abs(t1 - t0)) if usable else _initial_step(f, t0, t1, y, K[0], rtol, atol)

    pending = np.empty(0) if saveat is None else np.asarray(saveat, dtype=float)
    ts: list[float] = []
    us: list[np.ndarray] = []
    k = 0
    if saveat is None:
        ts.append(t0)
        us.append(y.copy())
    while k < len(pending) and (pending[k] - t0) * direction <= 0:
        ts.append(float(pending[k]))
        us.append(y.copy())
        k += 1
    seg_ts, pieces = [t0], []
    t, naccept, nreject = t0, 0, 0
    retcode, message = "Success", ""
    if not np.all(np.isfinite(K[0])):  # not a step-size problem: say what it is
        retcode, message = "Unstable", f"the right-hand side returned NaN or inf at t={t0:.6g}"
    while retcode == "Success" and (t1 - t) * direction > 0:
        if naccept >= maxiters:
            retcode, message = "MaxIters", f"reached maxiters={maxiters} steps"
            break
        min_step = 10 * abs(math.nextafter(t, direction * math.inf) - t)  # numpy's is a ufunc call
        rejected = non_finite = False
        while True:
            if h_abs < min_step:
                why = " (every step tried met NaN or inf in the right-hand side)" if non_finite else ""
                retcode, message = "DtLessThanMin", f"required step size {h_abs:.3g} is below the minimum at t={t}{why}"
                break
            h = h_abs * direction
            t_new = t + h
            unclamped = h_abs
            if (t_new - t1) * direction > 0:
                t_new = t1
            h = t_new - t
            h_abs = abs(h)
            for s, (c, a) in enumerate(_ROWS, start=1):
                K[s] = f(t + c * h, y + (h * a) @ K[:s])
            y_new = y + (h * _B) @ K[:_STAGES]
            K[_STAGES] = f(t_new, y_new)
            scale = atol + np.maximum(np.abs(y), np.abs(y_new)) * rtol
            err = _rms((_E @ K) * h / scale)
            if not err == err or err == np.inf:
                # A trial step that met NaN or inf (a stage past a singularity, say) is rejected
                # with the largest cut, as SciPy's and OrdinaryDiffEq's steppers do.
                h_abs *= _MIN_FACTOR
                rejected = non_finite = True
                nreject += 1
                continue
            if err < 1 and not np.isfinite(y_new).all():
                retcode, message = "Unstable", f"the solution became NaN or infinite at t={t_new:.6g}"
                break
            non_finite = False
            if err < 1:
                factor = _MAX_FACTOR if err == 0 else min(_MAX_FACTOR, _SAFETY * err**_ERR_EXP)
                if rejected:
                    factor = min(1.0, factor)
                h_abs *= factor
                if t_new == t1:
                    # The last step, cut to end at t1 (to a few ulps, when the step before fell
                    # just short), is no guide for a following integration's first step.
                    h_abs = max(h_abs, unclamped)
                break
            h_abs *= max(_MIN_FACTOR, _SAFETY * err**_ERR_EXP)
            rejected = True
            nreject += 1
        if retcode != "Success":
            break
        naccept += 1
        need = k < len(pending) and (pending[k] - t_new) * direction <= 0
        interp = _StepInterpolant(t, h, y, K.T @ _P) if (dense or need) else None
        if dense:
            pieces.append(interp)
            seg_ts.append(t_new)
        while k < len(pending) and (pending[k] - t_new) * direction <= 0:
            tk = float(pending[k])
            ts.append(tk)
            us.append(y_new.copy() if tk == t_new else interp(tk))
            k += 1
        t, y = t_new, y_new
        K[0] = K[_STAGES]
        if saveat is None:
            ts.append(t)
            us.append(y.copy())
    stats = {"nf": nf, "njacs": 0, "nlu": 0, "naccept": naccept, "nreject": nreject}
    u = np.array(us, dtype=float).reshape(len(us), n)
    dense_sol = DenseSolution(seg_ts, pieces) if dense and pieces else None
    return Integration(np.array(ts), u, retcode, float(t), stats, message, dense_sol, h_abs)

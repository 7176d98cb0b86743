"""Nonlinear solves ``f(u, p) = 0`` as a differentiable primitive.

``nlsolve`` maps ``(u0, p)`` to a root ``u*`` of ``f(., p)`` found by Newton's method
from ``u0`` (NonlinearSolve.jl's ``NonlinearProblem(f, u0, p)``).  ``f`` is traced once,
as an ODE right-hand side is (:class:`pyzygote.ode.rhs.RHS`, with a ``t`` it ignores),
and its Jacobian ``df/du`` is the RHS's derived program.

Derivatives come from the implicit function theorem, as SciMLSensitivity's
``SteadyStateAdjoint``: ``f(u*(p), p) = 0`` gives ``J_u du + J_p dp = 0``, so the JVP
is ``du = -solve(J_u, J_p dp)``, written with traced primitives (the Jacobian
program, a JVP of f in p, ``solve``).  Reverse mode is its transpose
(``lambda = solve(J_u^T, ubar)``, ``pbar = -J_p^T lambda``), and second derivatives
differentiate the JVP again.  The root does not depend on where Newton started: the
derivative with respect to ``u0`` is zero.

>>> import numpy as np, pyzygote as pz
>>> root = lambda p: pz.nlsolve(lambda u, p: u ** 2 - p, np.array([1.0]), p)[0]
>>> round(float(root(np.array([2.0]))), 12), round(float(pz.grad(root)(np.array([2.0]))[0]), 12)
(1.414213562373, 0.353553390593)
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable

import numpy as np

from pyzygote.errors import NonFiniteODEInputError, SolverError
from pyzygote.ir import Aval
from pyzygote.ode.layout import Layout
from pyzygote.ode.rhs import RHS, with_lifted, wrapper_of
from pyzygote.ode.solvers import dense_matrix
from pyzygote.primitive import Primitive
from pyzygote.primitives.linalg import solve_p
from pyzygote.primitives.ode import _check_values, _naming_the_point, _short
from pyzygote.tracer import Tracer, as_operand

__all__ = ["nlsolve", "nlsolve_p", "NLOptions"]


@dataclasses.dataclass(frozen=True)
class NLOptions:
    """The stopping rules of a Newton solve (see :func:`nlsolve`)."""

    abstol: float
    reltol: float
    maxiters: int


# A Newton step no larger than this many machine epsilons of each entry of u cannot change u in
# float64: the root is as accurate as it can be, even where rounding keeps max|f| above abstol
# (residuals of size 1e6 cannot reach abstol=1e-12).
STEP_EPS = 4.0
# The rounding level of f's own evaluation at u is about eps * max_i sum_j |J_ij| |u_j|, the size
# of the terms that cancel in f (of 1/h^2 discretizations: 4 |u| / h^2); even the exact root,
# rounded to float64, leaves |f_i| up to eps/2 times that, and evaluating f adds eps/2 per
# rounding of terms that size.  Where the line search finds no decrease along a Newton step
# below reltol * max|u|, max|f| within ROUNDING_F times that level is a root (user testing: a
# Bratu problem with residuals scaled by 1/h^2 stalled at 1.6e-12, 0.2 to 0.4 times the level,
# against abstol = 1e-12); 8 covers some 16 roundings of the largest terms.
ROUNDING_F = 8.0
# The line search halves the step at most this many times (to 2^-30 of the Newton step).
HALVINGS = 30
# Armijo's sufficient decrease of 0.5 |f|^2: a fraction of what the linear model promises.
ARMIJO = 1e-4
# A multiple root: Newton converges to it linearly, each full step a roughly constant fraction of
# the one before ((m - 1) / m for multiplicity m), where near a simple root the ratio falls
# quadratically.  Refused when the last LINEAR_STEPS ratios of full steps all lie between
# LINEAR_RATIO and LINEAR_RATIO_MAX, within a factor LINEAR_SPREAD of each other, with the steps
# above ROUNDING_STEPS machine epsilons of max|u| (below, their ratios are rounding noise).  Steps
# that hardly shrink (ratios near 1) are Newton walking off, not converging.
LINEAR_RATIO = 0.25
LINEAR_RATIO_MAX = 0.95
LINEAR_SPREAD = 1.5
LINEAR_STEPS = 3
ROUNDING_STEPS = 1e3
# A Jacobian whose condition number, its rows and columns scaled, exceeds this is singular to
# working precision.
SINGULAR_CONDITION = 1e14
# The condition number is estimated from the LU that solves for the Newton step (LAPACK's dgecon,
# O(n^2) where an SVD is O(n^3) and took 7 of the 9 ms of an iteration at n = 300): a lower bound
# of the 1-norm condition number, which is at least 1/n of the 2-norm one the test above speaks
# of.  Where the estimate exceeds SINGULAR_CONDITION / (ESTIMATE_MARGIN * n), the singular values
# decide, as before; the margin covers an estimate below the true 1-norm condition number (the
# 2-norm one was at most 0.92 * n times LAPACK's estimate over 1,800 scaled random, graded,
# Kahan, tridiagonal and nearly rank-deficient matrices of 2 to 300 rows).
ESTIMATE_MARGIN = 100.0


def _out_aval(u0: Aval, p: Aval, **_: Any) -> Aval:
    return Aval(u0.shape, u0.dtype)


nlsolve_p = Primitive("nlsolve")
nlsolve_p.def_abstract_eval(_out_aval)


def nonfinite_residual(rhs: Any, u: np.ndarray, p: np.ndarray, r: np.ndarray, where: str = "") -> str:
    """The words a failure for f's NaN or inf at ``u`` gains: the entries of ``r = f(u, p)``
    that are not finite, and the first operation of f that made a non-finite value there, with
    its operands (:func:`pyzygote.diagnose.first_nonfinite`, which names it for a failed ODE
    solve too; user testing: a np.log of a negative P was not named)."""
    from pyzygote.diagnose import first_nonfinite

    shape = getattr(getattr(rhs, "layout", None), "u_shape", np.shape(u))
    bad = np.flatnonzero(~np.isfinite(np.ravel(r)))
    named = []
    for i in bad[:6]:
        at = np.unravel_index(int(i), shape) if len(shape) > 1 else (int(i),)
        named.append(f"f[{', '.join(str(int(k)) for k in at)}] = {float(np.ravel(r)[i])!r}")
    entries = ", ".join(named) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
    text = f" ({entries}{where})" if entries else ""
    program = getattr(rhs, "program", None)
    if program is None:  # a Julia function: its operations are not pyzygote's to run
        return text
    finding = first_nonfinite(program, [np.ravel(u), np.asarray(p, dtype=float), np.float64(0.0)], derivatives=False)
    if not finding:
        return text
    return f"{text}: running f again there, {finding}"


def _failed(what: str, iteration: int, u: np.ndarray, r: np.ndarray | None) -> SolverError:
    reached = "" if r is None or not np.all(np.isfinite(r)) else f", max|f| = {np.max(np.abs(r), initial=0.0):.3g}"
    return SolverError(f"pz.nlsolve failed: {what} (Newton iteration {iteration}{reached}, at u = {_short(u)}).")


def newton(rhs: Any, u0: np.ndarray, p: np.ndarray, opts: NLOptions) -> np.ndarray:
    """A root of ``rhs(., p, 0)`` by Newton's method from ``u0`` with a backtracking line search
    on ``0.5 |f|^2``; a :class:`pyzygote.SolverError` when there is none to be found from there,
    when the Jacobian at the root is singular (the root is not isolated: it has no derivative), or
    when Newton converged linearly to it (a multiple root, which has no derivative either).

    Converged at ``u`` when ``max|f(u)| <= abstol`` and the Newton step ``du`` computed there is
    small, ``max|du| <= reltol * max|u|``; or, whatever ``|f|``, when ``du`` is below rounding:
    ``|du_i| <= 4 eps |u_i|`` for every entry, or the line search finds no decrease along a ``du``
    with ``max|du| <= 4 eps max|u|``; or when the line search finds no decrease at all while
    ``max|f| <= abstol`` (``|f|`` is at its rounding floor, as at a root at ``u = 0``), or along a
    ``du`` with ``max|du| <= reltol * max|u|`` while ``max|f|`` is within ROUNDING_F times the
    rounding level of f's terms, ``eps * max_i sum_j |J_ij| |u_j|``."""
    u = np.array(u0, dtype=float)
    with np.errstate(all="ignore"):
        r = np.asarray(rhs(u, p, 0.0), dtype=float)
    if not np.all(np.isfinite(r)):
        raise _failed("f is NaN or inf at the starting point u0" + nonfinite_residual(rhs, u, p, r), 0, u, r)
    eps = np.finfo(float).eps
    steps: list[tuple[float, bool]] = []  # max|du| of each Newton step computed, and whether it was taken whole
    for iteration in range(1, opts.maxiters + 2):
        small_f = bool(np.max(np.abs(r), initial=0.0) <= opts.abstol)
        step, level = _newton_step(rhs, u, p, iteration, r, opts.abstol)
        size, scale = float(np.max(np.abs(step), initial=0.0)), float(np.max(np.abs(u), initial=0.0))
        if np.all(np.abs(step) <= STEP_EPS * eps * np.abs(u)):
            return u  # the step-size test: u cannot move in float64
        if small_f and size <= opts.reltol * scale:
            ratio = linear_convergence(steps + [(size, True)], scale)
            if ratio is not None:
                raise _failed(_linear_words(ratio), iteration, u, r)
            return u
        if iteration > opts.maxiters:
            ratio = linear_convergence(steps + [(size, True)], scale) if small_f else None
            hint = "" if ratio is None else f"; the last full Newton steps shrank linearly, by {ratio:.3g} each, as near a multiple root, which has no derivative"
            raise _failed(
                f"no convergence to max|f| <= abstol = {opts.abstol:g} with a Newton step max|du| <= reltol * max|u| "
                f"(reltol = {opts.reltol:g}; max|du| = {size:.3g}, max|u| = {scale:.3g}) within maxiters = {opts.maxiters} iterations{hint}",
                opts.maxiters,
                u,
                r,
            )
        found = _line_search(rhs, p, u, r, step, iteration)
        if found is None:
            if size <= STEP_EPS * eps * scale:
                # No decrease along a step below rounding of the largest entry: |f| is at its
                # rounding floor, while an entry converging to 0 keeps the entrywise test above
                # from ever passing (its steps are as small as itself).
                return u
            if small_f:
                # No decrease at all along a descent direction: |f| is rounding noise, within
                # abstol (a root at u = 0, where the relative step test cannot pass).
                return u
            if size <= opts.reltol * scale and np.max(np.abs(r), initial=0.0) <= ROUNDING_F * eps * level:
                # No decrease along a small step, |f| at the rounding level of its own terms
                # (see ROUNDING_F): converged, unless it converged linearly.
                ratio = linear_convergence(steps + [(size, True)], scale)
                if ratio is not None:
                    raise _failed(_linear_words(ratio), iteration, u, r)
                return u
            raise _failed(
                "the line search found no decrease of |f| along the Newton step, halved 30 times (a local minimum of "
                "|f| that is not a root, a start u0 too far from the root for Newton's step, or abstol below what "
                "rounding allows).  At a local minimum of |f| there may be no root for this p: past a fold (turning "
                "point) of the branch of roots, as for the Bratu problem u'' + lam exp(u) = 0 past lam = 3.51, two "
                "roots meet and vanish; follow the root by continuation in p from a value where it exists, each "
                "solve started from the last root, to see where it ends",
                iteration,
                u,
                r,
            )
        u, r, whole = found
        steps.append((size, whole))
    raise AssertionError("unreachable: the last iteration returns or raises")


def _linear_words(ratio: float) -> str:
    return (
        f"Newton converged linearly, each full step {ratio:.3g} times the one before, where it converges "
        "quadratically to a simple root: the root is (numerically) multiple, its Jacobian singular, and it has "
        "no derivative in p (u**2 - p at p = 0 has the root sqrt(p), whose derivative is infinite there)"
    )


def linear_convergence(steps: list[tuple[float, bool]], scale: float) -> float | None:
    """The last ratio of successive full Newton steps where the last LINEAR_STEPS ratios all lie
    between LINEAR_RATIO and LINEAR_RATIO_MAX, within a factor LINEAR_SPREAD of each other (linear
    convergence, as to a multiple root), each step taken whole
    (a damped step shortens the next one by its own factor) and above ROUNDING_STEPS machine
    epsilons of ``scale = max|u|``; None otherwise.  ``steps`` holds (max|du|, taken whole) of the
    Newton steps computed at successive iterates, the last one at the current point."""
    if len(steps) < LINEAR_STEPS + 1:
        return None
    last = steps[-(LINEAR_STEPS + 1) :]
    if not all(whole for _, whole in last[:-1]):
        return None
    sizes = [size for size, _ in last]
    if not min(sizes) > ROUNDING_STEPS * np.finfo(float).eps * scale:
        return None
    ratios = [b / a for a, b in zip(sizes, sizes[1:])]
    if all(LINEAR_RATIO < q < LINEAR_RATIO_MAX for q in ratios) and max(ratios) <= LINEAR_SPREAD * min(ratios):
        return ratios[-1]
    return None


def _scaled(J: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(rows, cols, S)``: ``S = J / rows[:, None] / cols[None, :]``, its rows, then its columns,
    scaled to a largest magnitude of 1; None where a row or a column of ``J`` is zero."""
    rows = np.max(np.abs(J), axis=1)
    if not np.all(rows > 0):
        return None
    S = J / rows[:, None]
    cols = np.max(np.abs(S), axis=0)
    if not np.all(cols > 0):
        return None
    return rows, cols, S / cols[None, :]


def scaled_condition(J: np.ndarray) -> float:
    """The condition number (ratio of extreme singular values) of ``J`` with its rows, then its
    columns, scaled to a largest magnitude of 1; inf where a row or a column is zero.  Equations
    and unknowns in different units (``1e8 * (u[0] - p[0])`` beside ``1e-8 * u[1]``) scale them,
    which changes ``J``'s own condition number but neither whether it is singular nor the
    accuracy of Newton's LU solve, so the singularity test uses this one."""
    scaled = _scaled(J)
    if scaled is None:
        return np.inf
    s = np.linalg.svd(scaled[2], compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else np.inf


def _scaled_step(J: np.ndarray, r: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The Newton step ``-J^{-1} r`` and an estimate of the scaled condition number of ``J``
    (:func:`scaled_condition`) no larger than its 1-norm one, both from one LU of the scaled
    ``S = J / rows / cols``: ``J x = b`` is ``S (cols * x) = b / rows``.  The estimate is the
    larger of LAPACK's (dgecon) and ``|S|_1 |y|_1 / |b / rows|_1`` for the step's own
    ``y = cols * x``, both lower bounds of ``|S|_1 |S^-1|_1``; inf where ``y`` is not finite.
    ``(None, inf)`` where a row or a column of ``J`` is zero or the LU meets a zero pivot (``S``
    is singular)."""
    from scipy.linalg.lapack import dgecon, dgetrf, dgetrs

    scaled = _scaled(J)
    if scaled is None:
        return None, np.inf
    rows, cols, S = scaled
    lu, piv, info = dgetrf(S)
    if info != 0:
        return None, np.inf  # info > 0: U[info-1, info-1] is exactly 0
    anorm = float(np.max(np.sum(np.abs(S), axis=0)))
    rcond, info = dgecon(lu, anorm)  # info = 1 (LAPACK >= 3.12): rcond NaN, inf or 0
    b = -r / rows
    with np.errstate(all="ignore"):
        y, _ = dgetrs(lu, piv, b)
        estimate = 1.0 / rcond if info == 0 and 0 < rcond < np.inf else np.inf
        b_norm = float(np.sum(np.abs(b)))
        if not np.all(np.isfinite(y)):
            estimate = np.inf
        elif b_norm > 0 and estimate < np.inf:
            estimate = max(estimate, anorm * float(np.sum(np.abs(y))) / b_norm)
        step = y / cols
    return step, (np.inf if np.isnan(estimate) else float(estimate))


def _newton_step(rhs: Any, u: np.ndarray, p: np.ndarray, iteration: int, r: np.ndarray, abstol: float) -> tuple[np.ndarray, float]:
    """The Newton step ``-J^{-1} f`` at ``u`` for ``J = df/du`` and the size of the terms of
    ``f`` there, ``max_i sum_j |J_ij| |u_j|`` (see ROUNDING_F); or a SolverError where ``J`` is
    not finite or singular to working precision: its scaled condition number
    (:func:`scaled_condition`) above SINGULAR_CONDITION, or a zero pivot in its LU.  The SVD is
    computed only where the LU's estimate of that condition number is within
    ``ESTIMATE_MARGIN * n`` of the threshold (see ESTIMATE_MARGIN).  A singular ``J`` where
    ``max|f|`` is neither within ``abstol`` nor at the rounding level of f's terms, with ``f``
    in directions ``J`` cannot change (:func:`stationary`), is a stationary point of ``|f|``
    that is not a root, and the message says so (user testing: ``u**2 - p`` at ``p = -1``, where
    there is no real root, was told "the root is not isolated")."""
    J = np.asarray(dense_matrix(rhs.jacobian_u(u, p, 0.0, exact=True)), dtype=float)
    with np.errstate(all="ignore"):
        level = float(np.max(np.abs(J) @ np.abs(u), initial=0.0))
    size_f = float(np.max(np.abs(r), initial=0.0))
    at_root = size_f <= abstol or size_f <= ROUNDING_F * np.finfo(float).eps * level
    where = " at the root" if at_root else ""
    if not np.all(np.isfinite(J)):
        raise _failed(f"the Jacobian df/du is NaN or inf{where}", iteration, u, r)
    step, estimate = _scaled_step(J, r)
    if step is not None and estimate <= SINGULAR_CONDITION / (ESTIMATE_MARGIN * len(u)):
        return step, level
    condition = scaled_condition(J)
    if step is None or not condition <= SINGULAR_CONDITION:
        why = "the root is not isolated, and has no derivative in p" if at_root else "the root is not isolated there, or f does not depend on some entry of u"
        shape = getattr(getattr(rhs, "layout", None), "u_shape", u.shape)
        pivot = "; its LU factorization met a zero pivot" if condition <= SINGULAR_CONDITION else ""
        if not at_root and stationary(J, r):
            why = (
                f"f has a stationary point here, where max|f| = {size_f:.3g} is not small: a minimum of |f| (or a saddle) "
                "that is not a root, f lying along directions df/du cannot change.  There may be no root for this p: past "
                "a fold (turning point) of the branch of roots, two roots meet and vanish, as those of u**2 - p do for "
                "p < 0.  Start elsewhere (u0), or follow the root by continuation in p from a value where it exists, "
                "each solve started from the last root"
            )
        raise _failed(
            f"the Jacobian df/du is singular{where} (condition number {condition:.3g} with its rows and columns scaled{pivot}): {why}"
            + dependent_equations(J, shape),
            iteration,
            u,
            r,
        )
    return step, level


# f lies along directions the Jacobian cannot change where at least this fraction of its norm
# (rows and columns of J scaled, f by the same rows) is in J's left null space: no step reduces
# |f| below sqrt(1 - 0.9^2) = 0.44 of itself to first order, and where J^T f = 0 (a stationary
# point of |f|) the fraction is 1.
STATIONARY = 0.9


def stationary(J: np.ndarray, r: np.ndarray) -> bool:
    """Whether ``r = f(u)`` lies (its fraction STATIONARY) in the left null space of a singular
    ``J = df/du``, rows and columns scaled as in :func:`dependent_equations` (zero ones left
    as they are): ``u`` is then near a stationary point of ``|f|``, which is not a root where
    ``|f|`` is not small."""
    rows = np.max(np.abs(J), axis=1)
    rows[rows == 0] = 1.0
    S = J / rows[:, None]
    cols = np.max(np.abs(S), axis=0)
    cols[cols == 0] = 1.0
    b = r / rows
    norm = float(np.linalg.norm(b))
    if not norm > 0:
        return False
    U, s, _ = np.linalg.svd(S / cols[None, :])
    null = U[:, s <= s[0] / SINGULAR_CONDITION] if s[0] > 0 else np.eye(len(b))
    return bool(np.linalg.norm(null.T @ b) >= STATIONARY * norm)


def dependent_equations(J: np.ndarray, shape: tuple[int, ...] = ()) -> str:
    """A sentence naming the combinations of f's equations that vanish to first order, the left
    null vectors of ``J = df/du`` (their rows and columns scaled as in :func:`scaled_condition`,
    then in reduced row echelon form, so disjoint ones come out apart), and, where one has a
    constant sign, the conserved quantity it is, with what to write: the steady state of a
    reaction network with conserved totals (R + Ra constant) is not isolated until one equation
    per conserved quantity is replaced by its conservation law (user testing).  "" if none is found.
    ``shape`` is u's (and f's) shape, for the names of entries."""
    n = J.shape[0]
    if J.ndim != 2 or J.shape != (n, n) or n == 0 or not np.all(np.isfinite(J)):
        return ""
    rows = np.max(np.abs(J), axis=1)
    rows[rows == 0] = 1.0
    S = J / rows[:, None]
    cols = np.max(np.abs(S), axis=0)
    cols[cols == 0] = 1.0
    U, s, _ = np.linalg.svd(S / cols[None, :])
    null = U[:, s <= s[0] / SINGULAR_CONDITION] if s[0] > 0 else np.eye(n)
    if null.shape[1] == 0:
        return ""
    W = _reduced_echelon((null / rows[:, None]).T)

    def name(i: int, of: str) -> str:
        at = np.unravel_index(i, shape) if len(shape) > 1 and int(np.prod(shape)) == n else (i,)
        return f"{of}[{', '.join(str(int(k)) for k in at)}]"

    def combination(w: np.ndarray, of: str) -> str:
        terms = []
        for i in np.flatnonzero(w)[:10]:
            c = float(w[i])
            coef = "" if abs(abs(c) - 1.0) < 1e-9 else f"{abs(c):.4g} * "
            terms.append(("- " if c < 0 else "+ ") + coef + name(int(i), of))
        more = " + ..." if np.count_nonzero(w) > 10 else ""
        return " ".join(terms).removeprefix("+ ").replace("- ", "-", 1 if terms and terms[0].startswith("- ") else 0) + more

    found, laws = [], []
    for w in W[:5]:
        support = np.flatnonzero(w)
        if len(support) == 1:
            found.append(f"{name(int(support[0]), 'f')} does not depend on u here (its row of df/du is 0)")
        elif np.all(w[support] > 0) or np.all(w[support] < 0):
            w = w if w[support[0]] > 0 else -w
            found.append(f"{combination(w, 'f')} is constant to first order in u (a conserved total, {combination(w, 'u')}, if it is 0 for every u)")
            laws.append((w, support))
        else:
            found.append(f"{combination(w, 'f')} is constant to first order in u")
    more = f" (and {len(W) - 5} more)" if len(W) > 5 else ""
    text = f". Its rows are linearly dependent ({len(W)} dependent combination{'s' if len(W) > 1 else ''} of f's equations): " + "; ".join(found) + more
    if laws:
        w, support = laws[0]
        text += (
            ". As in the steady state of a reaction network with conserved totals, f(u) = 0 does not fix these: replace one "
            f"equation per conserved quantity by its conservation law, e.g. {name(int(support[0]), 'f')} by "
            f"{combination(w, 'u')} - total (the total from the initial state, passed in p), and the root is isolated"
        )
    return text


def _reduced_echelon(A: np.ndarray) -> np.ndarray:
    """The rows of ``A`` (a basis of a subspace) replaced by the subspace's reduced row echelon
    basis (partial pivoting), each leading entry 1 and entries below 1e-9 of the largest 0."""
    A = np.array(A, dtype=float)
    k, n = A.shape
    row = 0
    for col in range(n):
        if row == k:
            break
        pivot = row + int(np.argmax(np.abs(A[row:, col])))
        if abs(A[pivot, col]) <= 1e-9 * np.max(np.abs(A), initial=0.0):
            continue
        A[[row, pivot]] = A[[pivot, row]]
        A[row] /= A[row, col]
        others = np.arange(k) != row
        A[others] -= np.outer(A[others, col], A[row])
        row += 1
    A[np.abs(A) <= 1e-9 * np.max(np.abs(A), axis=1, keepdims=True, initial=0.0)] = 0.0
    return A[:row]


def _line_search(rhs: Any, p: np.ndarray, u: np.ndarray, r: np.ndarray, step: np.ndarray, iteration: int) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """The point along ``step`` from ``u``, f there, and whether it is the whole step, where
    ``0.5 |f|^2`` has decreased by Armijo's rule, halving the step up to HALVINGS times; None
    where it has not (a SolverError where f was NaN or inf all along).  A trial point where f
    itself raises SolverError (an ODE solve or a pz.nlsolve inside f failing there: a shooting
    method's full step to a start whose solution blows up) is one where f is not finite: the
    step is halved, as for NaN."""
    merit = 0.5 * float(r @ r)
    t = 1.0
    finite = False
    failed: SolverError | None = None
    for _ in range(HALVINGS + 1):
        trial = u + t * step
        try:
            with np.errstate(all="ignore"):
                r_trial = np.asarray(rhs(trial, p, 0.0), dtype=float)
        except SolverError as exc:
            failed, finite = exc, False
        else:
            failed, finite = None, bool(np.all(np.isfinite(r_trial)))
            with np.errstate(over="ignore"):  # finite entries whose squares overflow: no decrease
                decreased = finite and 0.5 * float(r_trial @ r_trial) <= (1.0 - 2.0 * ARMIJO * t) * merit
            if decreased:
                return trial, r_trial, t == 1.0
        t *= 0.5
    if failed is not None:
        inner = str(failed).split(" This solve started from")[0].rstrip(".")
        raise _failed(f"f raised pz.SolverError along the whole Newton step, down to 2^-30 of it (the last: {inner})", iteration, u, r) from failed
    if not finite:
        full, at_full = u + step, ""
        try:
            with np.errstate(all="ignore"):
                r_full = np.asarray(rhs(full, p, 0.0), dtype=float)
        except SolverError:  # a solve inside f failing at the full step, though not at the last trial
            pass
        else:
            if not np.all(np.isfinite(r_full)):
                at_full = nonfinite_residual(rhs, full, p, r_full, " at the full step")
        raise _failed(
            f"f is NaN or inf along the whole Newton step (max|du| = {np.max(np.abs(step), initial=0.0):.3g}, against max|u| = "
            f"{np.max(np.abs(u), initial=0.0):.3g}), down to 2^-30 of it"
            + at_full
            + ". Start closer to the root (u0), or rescale the unknowns or equations so that f stays finite along Newton's "
            "steps (unknowns spanning many orders of magnitude in logs, np.exp(a - b) for np.exp(a) / np.exp(b))",
            iteration,
            u,
            r,
        )
    return None


@nlsolve_p.def_impl
@_naming_the_point
def _nlsolve_impl(u0: Any, p: Any, *, rhs: RHS, opts: NLOptions) -> np.ndarray:
    u0, p = np.asarray(u0, dtype=float), np.asarray(p, dtype=float)
    _check_values(u0, p, "pz.nlsolve", rhs)
    return newton(rhs, u0, p, opts)


def _nlsolve_jvp(primals: Any, tangents: Any, *, rhs: RHS, opts: NLOptions) -> Any:
    from pyzygote.transforms.evaluate import eval_program
    from pyzygote.transforms.jvp import jvp_eval

    u0, p = primals
    u = nlsolve_p.bind(u0, p, rhs=rhs, opts=opts)
    tp = tangents[1]
    if tp is None:
        return u, None  # the root does not depend on u0
    t = np.zeros(())
    # J_u du + J_p dp = 0 at the root: both products written with traced primitives, so that
    # this rule is differentiated again for second derivatives.
    (J,) = eval_program(rhs.jacobian_u_program(), u, p, t)
    _, (g,) = jvp_eval(rhs.program, [u, p, t], [None, tp, None])
    if g is None:
        return u, None
    return u, -solve_p.bind(J, g)


nlsolve_p.jvp = _nlsolve_jvp


def _residual_on_numpy(*, rhs: Any, **_: Any) -> bool:
    """The residual runs on the NumPy engine: it may call a Julia function, or solve an ODE
    with a solver only Julia has."""
    from pyzygote.engines import _runs_on_numpy

    return _runs_on_numpy(rhs.program)


nlsolve_p.on_numpy = _residual_on_numpy


@nlsolve_p.def_julia
def _nlsolve_julia(e: Any, u0: Any, p: Any, *, rhs: RHS, opts: NLOptions) -> str:
    from pyzygote.julia.codegen import julia_literal

    f = e.function(rhs.program)
    return f"PyZygote.nlsolve(PyZygote.Residual({f}), {u0}, {p}, {julia_literal(opts.abstol, np.float64)}, {julia_literal(opts.reltol, np.float64)}, {int(opts.maxiters)})"


# --- tracing f ----------------------------------------------------------------------------------
_RESIDUALS: "weakref.WeakKeyDictionary[Any, Callable[..., Any]]" = weakref.WeakKeyDictionary()
# A plain function keeps its wrapper in its own __dict__: the wrapper calls f, so a global
# WeakKeyDictionary's value would keep its key alive, and every closure made afresh per call of
# a loss (with the data it captured) would stay in memory for good (integration review: 50 calls
# kept 50 closures over 8 MB arrays).  f and its wrapper form a cycle the collector frees.
_WRAPPER_ATTRIBUTE = "_pyzygote_nlsolve_residual"


def _residual(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f(u, p)`` as the RHS machinery traces it, ``(u, p, t) -> f(u, p)``, with its result
    checked; kept per ``f`` so that its trace is cached as ``f``'s own would be.

    A plain function made afresh at each call that does what one seen before does (a lambda
    written in the call, inside a helper called in a loop) is traced as that one
    (:func:`pyzygote.same_function.earlier_equivalent`)."""
    from pyzygote.same_function import earlier_equivalent

    f = earlier_equivalent(f)

    def make() -> Callable[..., Any]:
        def residual(u: Any, p: Any, t: Any) -> Any:
            r = f(u, p)
            if r is None or isinstance(r, (dict, str, set)):
                raise TypeError(f"f of pz.nlsolve returned {r!r}; it must return the residual f(u, p), an array shaped like u0")
            r = as_operand(r)
            kind = np.dtype(r.dtype).kind
            if kind not in "fiu":
                what = {"b": "booleans (a comparison? see np.where)", "c": "complex numbers (pyzygote solves real systems: split them into real and imaginary parts)"}
                raise TypeError(f"f of pz.nlsolve returned {what.get(kind, f'an array of {r.dtype}')}; it must return the residual f(u, p) as real numbers shaped like u0")
            if tuple(np.shape(r)) != tuple(np.shape(u)):
                raise ValueError(
                    f"f of pz.nlsolve returned shape {tuple(np.shape(r))}, expected {tuple(np.shape(u))}, the shape of u0: "
                    "f(u, p) must return one residual per unknown (a square system)"
                )
            return r

        residual._pz_nlsolve = True  # type: ignore[attr-defined]  # its tracing errors speak of f(u, p), not of an ODE
        return residual

    return wrapper_of(f, _WRAPPER_ATTRIBUTE, _RESIDUALS, make)


def _check_two_arguments(f: Callable[..., Any]) -> None:
    """A TypeError before tracing where ``f`` cannot be called as ``f(u, p)``: an ODE right-hand
    side ``f(u, p, t)`` or a residual of ``u`` alone (user testing: Python's own message named a
    missing ``t`` without saying who called f how)."""
    import inspect

    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):
        return  # a builtin or an extension type without a signature: let the call tell
    try:
        signature.bind(None, None)
    except TypeError as exc:
        name = getattr(f, "__name__", type(f).__name__)
        raise TypeError(
            f"pz.nlsolve calls f(u, p) with two positional arguments, but {name}{signature} cannot be called so ({exc}). "
            "For an ODE right-hand side rhs(u, p, t), pass `lambda u, q: rhs(u, q, 0.0)`; for a residual g(u) of u alone, "
            "pass `lambda u, p: g(u)`"
        ) from None
    # Names decide only where both say it: f(p, u) with u and p swapped would solve for the wrong
    # vector silently; f(x, theta) or f(a, b) are taken as given.
    named = [q.name for q in signature.parameters.values() if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    if len(named) >= 2 and named[0] in _PARAMETER_NAMES and named[1] in _UNKNOWN_NAMES:
        name = getattr(f, "__name__", type(f).__name__)
        raise TypeError(
            f"pz.nlsolve calls f(u, p), the unknowns first, but {name}{signature} takes {named[0]!r} first and "
            f"{named[1]!r} second: pass `lambda u, p: f(p, u)`"
        )


_PARAMETER_NAMES = frozenset(("p", "params", "param", "parameters", "theta"))
_UNKNOWN_NAMES = frozenset(("u", "x", "y", "z", "state"))


def _check_u0(u0: Any) -> Any:
    if isinstance(u0, (list, tuple)) or (isinstance(u0, np.ndarray) and u0.dtype == object):
        try:
            u0 = as_operand(u0)  # traced entries in a list or an object array: one traced vector
        except (TypeError, ValueError) as exc:
            raise TypeError(f"u0 must be a 1-D array of floats (the starting guess): {exc}") from None
    if isinstance(u0, Tracer):
        if u0.dtype.kind != "f" or u0.ndim != 1:
            raise TypeError(f"u0 must be a 1-D array of floats (the starting guess), got a traced value of dtype {u0.dtype} and shape {u0.shape}")
        return u0
    arr = np.asarray(u0)
    if arr.dtype.kind != "f":
        raise TypeError(f"u0 must be a 1-D array of floats (the starting guess), got dtype {arr.dtype}: pass np.asarray(u0, dtype=float)")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"u0 must be a non-empty 1-D array of floats (the starting guess), got shape {arr.shape} (a scalar root: np.array([x0]))")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"u0 contains NaN or inf: {arr!r}")
    return arr.astype(float)


def _check_options(abstol: Any, reltol: Any, maxiters: Any) -> NLOptions:
    for name, v in (("abstol", abstol), ("reltol", reltol), ("maxiters", maxiters)):
        if isinstance(v, Tracer):
            raise TypeError(f"{name} of pz.nlsolve must be a number, not a traced value: pass it as a keyword argument or through a closure")
    number = isinstance(abstol, (int, float, np.integer, np.floating)) and not isinstance(abstol, (bool, np.bool_))
    if not (number and np.isfinite(abstol) and abstol > 0):
        raise ValueError(f"abstol must be a positive finite number (the largest max|f(u, p)| accepted at the root), got {abstol!r}")
    number = isinstance(reltol, (int, float, np.integer, np.floating)) and not isinstance(reltol, (bool, np.bool_))
    if not (number and np.isfinite(reltol) and 0 < reltol < 1):
        raise ValueError(f"reltol must be a number between 0 and 1 (the largest Newton step at the root, relative to max|u|), got {reltol!r}")
    whole = isinstance(maxiters, (int, np.integer, float, np.floating)) and not isinstance(maxiters, (bool, np.bool_))
    if not (whole and np.isfinite(maxiters) and maxiters == int(maxiters) and maxiters >= 1):
        raise ValueError(f"maxiters must be a positive integer (a number of Newton iterations), got {maxiters!r}")
    return NLOptions(float(abstol), float(reltol), int(maxiters))


# Other solvers' keywords (SciPy's root and fsolve, NonlinearSolve.jl's alg), and what nlsolve has
# instead: its own, not the ODE solvers' (user testing: method= was told "here it is alg", which
# nlsolve then refused).
_ABSTOL = "abstol, the largest max|f(u, p)| accepted at the root"
_RELTOL = "reltol, the largest Newton step at the root relative to max|u|, max|du| <= reltol * max|u|"
_ONE_METHOD = "pz.nlsolve has one method, Newton's with a backtracking line search; it takes no method= or alg= argument"
_KEYWORD_HINTS = {
    "method": _ONE_METHOD, "alg": _ONE_METHOD, "solver": _ONE_METHOD,
    "tol": f"the solve stops on two tolerances: {_ABSTOL}, and {_RELTOL}; both must hold",
    "xtol": f"here it is {_RELTOL}", "rtol": f"here it is {_RELTOL}", "xrtol": f"here it is {_RELTOL}",
    "ftol": f"here it is {_ABSTOL}", "fatol": f"here it is {_ABSTOL}", "atol": f"here it is {_ABSTOL}",
    "xatol": f"the step test is relative: {_RELTOL}",
    **{k: "here it is maxiters, the largest number of Newton iterations" for k in ("maxiter", "max_iter", "max_iters", "maxit", "maxfev", "max_nfev", "max_steps")},
    "jac": "there is none to pass: the Jacobian df/du is derived exactly from the trace of f",
    "fprime": "there is none to pass: the Jacobian df/du is derived exactly from the trace of f",
    "args": "here it is p, which f receives as its second argument, f(u, p)",
    "x0": "the starting guess is u0, the second positional argument: pz.nlsolve(f, u0, p)",
}  # fmt: skip


def nlsolve(f: Callable[..., Any], u0: Any, p: Any = None, *, abstol: float = 1e-12, reltol: float = 1e-10, maxiters: int = 100, **unknown: Any) -> Any:
    """A root ``u`` of ``f(u, p) = 0``, found by Newton's method from ``u0``.

    NonlinearSolve.jl's ``solve(NonlinearProblem(f, u0, p), NewtonRaphson())``: ``f`` is plain
    numpy code of ``(u, p)`` returning an array shaped like ``u``, traced once (as an ODE
    right-hand side is) with its exact Jacobian ``df/du``.  ``u0`` is a 1-D float array, ``p``
    an array, a dict or a tuple of arrays (as :func:`pyzygote.odesolve` takes), or None (or
    omitted), which ``f`` then receives as it is.  Each Newton
    step solves ``J_u du = -f``, then halves it until ``|f|`` decreases enough (Armijo's test on
    ``0.5 |f|^2``), also where ``f`` is NaN or raises :class:`pyzygote.SolverError` (an ODE solve
    inside ``f`` failing there).  The solve has converged at ``u`` when both ``max|f(u, p)| <= abstol`` and
    the Newton step ``du`` computed at ``u`` is small, ``max|du| <= reltol * max|u|`` (max-norms
    over all entries; ``u`` is returned, not ``u + du``): a residual below ``abstol`` alone is
    not enough, as ``f`` in small units (mol/L) is tiny far from its root.  Rounding floors end
    it too, whatever ``|f|``: a Newton step moving no entry of ``u`` by more than 4 machine
    epsilons of it, or a line search finding no decrease along a step below 4 epsilons of
    ``max|u|``; and so does a line search finding no decrease at all while ``max|f| <= abstol``
    (``|f|`` is rounding noise, as at a root at ``u = 0``, where the relative test cannot pass),
    or along a step below ``reltol * max|u|`` while ``max|f|`` is within 8 times the rounding
    level of f's terms, ``eps * max_i sum_j |J_ij| |u_j|`` (residuals divided by ``h**2``).
    NonlinearSolve.jl's default (``AbsNormSafeBestTerminationMode``, given the residual) stops on
    ``|f|`` alone, with ``abstol = eps^(4/5)``.  No convergence within ``maxiters`` iterations, a
    singular Jacobian (also at the root: a root that is not isolated has no derivative), a NaN in
    ``f``, or a multiple root (Newton's last three full steps each a roughly constant fraction,
    between 0.25 and 0.95, of the one before, as ``u**2`` gives 0.5) raise
    :class:`pyzygote.SolverError`.

    The result is differentiable in ``p`` and in traced values ``f`` reads from its closure, by
    the implicit function theorem (``du/dp = -J_u^{-1} J_p``), to any order; its derivative in
    ``u0`` is zero (the root does not depend on the start).

    >>> import numpy as np, pyzygote as pz
    >>> pz.nlsolve(lambda u, p: u ** 3 - p, np.array([1.0, 1.0]), np.array([8.0, 27.0]))
    array([2., 3.])
    """
    from pyzygote.julia.functions import is_julia_function
    from pyzygote.ode.solvers import refuse_unknown_keywords

    refuse_unknown_keywords("pz.nlsolve", unknown, _KEYWORD_HINTS)
    if not callable(f):
        raise TypeError(f"f must be a callable f(u, p) returning the residual, got {type(f).__name__}")
    if is_julia_function(f):
        raise TypeError(f"f of pz.nlsolve must be numpy code of (u, p); the Julia function {f!r} is not supported here")
    _check_two_arguments(f)
    u0 = _check_u0(u0)
    opts = _check_options(abstol, reltol, maxiters)
    try:
        # p omitted or None reaches f as None (as SciML's NullParameters and diffrax's args=None),
        # not as the empty vector the machinery carries (user testing: `if p is None:` never fired)
        layout, u0, q = Layout.of(u0, p, keep_none=True)
    except NonFiniteODEInputError as exc:  # the same words as inside a gradient (see _check_values)
        raise NonFiniteODEInputError(f"pz.nlsolve: {exc}") from None
    # Values being differentiated that f reads from its closure are parameters after p's entries.
    try:
        rhs, lifted = RHS.trace_lifting(_residual(f), layout)
    except (TypeError, IndexError, KeyError) as exc:
        if p is None and "NoneType" in str(exc) and hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note("p was not given (or was None), and f receives None for it: pass p as pz.nlsolve(f, u0, p)")
        raise
    return nlsolve_p.bind(u0, with_lifted(q, lifted), rhs=rhs, opts=opts)

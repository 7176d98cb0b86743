"""Name the SciPy function behind an error raised while tracing.

SciPy's functions (other than ``scipy.special``'s ufuncs) turn their arguments
into plain numpy arrays, which a traced value cannot become, so they fail deep
inside SciPy with an error about bools, sequences or object arrays.  This
module finds the SciPy function the traced code called and says what to write
instead.

>>> import numpy as np, scipy.special, pyzygote as pz
>>> try:
...     pz.gradient(lambda x: scipy.special.logsumexp(x), np.ones(2))
... except pz.UnsupportedOperationError as e:
...     print(str(e).split(":")[0])
scipy.special.logsumexp was called on a traced value
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

from pyzygote.distributions import written_out
from pyzygote.errors import UnsupportedOperationError

__all__ = ["scipy_error", "sparse_error"]

# Names of SciPy's decorators' inner functions, which do not say what the user called.
_WRAPPERS = frozenset({"wrapper", "wrapped", "inner", "decorated", "_wrapper", "<lambda>"})

_INSTEAD = {
    "logsumexp": (
        "m = np.max(x, axis=axis, keepdims=True); np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis)) "
        "(np.max(x) and no axis for all entries)"
    ),
    "softmax": "e = np.exp(x - np.max(x)); e / np.sum(e)",
    "log_softmax": "x - m - np.log(np.sum(np.exp(x - m))) with m = np.max(x)",
    "cho_solve": "np.linalg.solve(L.T, np.linalg.solve(L, b)) with L = np.linalg.cholesky(A)",
    "cho_factor": "L = np.linalg.cholesky(A)",
    "cholesky": "np.linalg.cholesky(A) (lower; scipy.linalg.cholesky is upper by default)",
    "solve_triangular": "np.linalg.solve(np.tril(L), b) (or np.triu for an upper factor)",
    "solve": "np.linalg.solve(A, b)",
    "inv": "np.linalg.inv(A)",
    "det": "np.linalg.det(A)",
    "logpdf": "the density written out, e.g. -0.5 * ((x - mu) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)",
    "cdf": "scipy.special.ndtr((x - mu) / s) for a normal distribution",
    "logcdf": "scipy.special.log_ndtr((x - mu) / s) for a normal distribution (precise in the lower tail)",
    "sf": "scipy.special.ndtr(-(x - mu) / s) for a normal distribution",
    "logsf": "scipy.special.log_ndtr(-(x - mu) / s) for a normal distribution",
    "ppf": "mu + s * scipy.special.ndtri(q) for a normal distribution",
    "solve_ivp": (
        "pz.odesolve(lambda u, p, t: f(t, u, *p), y0, t_eval, p, t0=t0), which solves and differentiates the ODE; "
        "its result is time-major, sol.y of solve_ivp transposed"
    ),
    "odeint": "pz.odesolve(lambda u, p, t: f(u, t, *p), y0, t, p), which solves and differentiates the ODE",
    "eigh": (
        "np.linalg.eigh(A); for the generalized problem eigh(K, M): L = np.linalg.cholesky(M); Li = np.linalg.inv(L); "
        "w, v = np.linalg.eigh(Li @ K @ Li.T); v = Li.T @ v"
    ),
    "qr": (
        "np.linalg.qr(A), the thin factors (scipy.linalg.qr(A, mode='economic')), signed so that R's diagonal is "
        "non-negative; np.linalg.qr(A, mode='r') for R alone"
    ),
    "polygamma": (
        "scipy.special.digamma(x) for n = 0, and for higher n the derivatives pyzygote takes of it "
        "(pz.grad(lambda t: scipy.special.digamma(t)) is polygamma(1, t))"
    ),
    "factorial": "scipy.special.gamma(n + 1.0), or np.exp(scipy.special.gammaln(n + 1.0)) for large n",
    "lu_factor": "np.linalg.solve(A, b), which factorizes A itself",
    "lu_solve": "np.linalg.solve(A, b)",
    "multigammaln": "d * (d - 1) / 4 * np.log(np.pi) + sum(scipy.special.gammaln(a + (1 - j) / 2) for j in range(1, d + 1))",
    "pdf": "np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * np.sqrt(2 * np.pi)) for a normal distribution (other densities written out alike)",
    "expm": (
        "pz.expm(A), the same matrix exponential (a stack of matrices too), traced and differentiable to any order "
        "(expm(A * t) @ x0 for a linear compartment model, expm(Q * t) for a Markov chain's transition probabilities)"
    ),
    "expm_frechet": (
        "pz.jvp(pz.expm, (A,), (E,))[1], the Frechet derivative L(A, E), traced (pz.expm's derivative; its transpose "
        "L(A.T, G) is what pz.grad computes)"
    ),
    **dict.fromkeys(("interp1d.__init__", "interp1d.__call__", "interp1d._evaluate"), (
        "np.interp(x, xp, fp), linear interpolation (interp1d's default kind) traced in x, in xp and in fp (as a table "
        "in an ODE's right-hand side, pass its knots as tstops); for kind='cubic', the cubic (Hermite) pieces written "
        "out, with i = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2) for each x's interval"
    )),
    "quad": (
        "np.trapezoid(f(s), s) over a fine grid s, or a Gauss-Legendre sum with nodes and weights from "
        "np.polynomial.legendre.leggauss(n), mapped to [a, b] (constants; f(s) is traced)"
    ),
    "solve_banded": (
        "np.linalg.solve(A, b) with A the dense banded matrix; for a tridiagonal ab (l_and_u = (1, 1)), "
        "A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[2, :-1], -1), that is np.diag(d) + np.diag(e, 1) + "
        "np.diag(e, -1) for a diagonal d and equal off-diagonals e"
    ),
    "solveh_banded": (
        "np.linalg.solve(A, b) with A the dense symmetric banded matrix; for a tridiagonal ab in upper form, "
        "A = np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[0, 1:], -1)"
    ),
}
# Splines and other smooth interpolants: np.interp is traced; a smooth curve is its cubic pieces written out.
_SMOOTH = (
    "np.interp(x, xp, fp), piecewise linear and traced in x, in xp and in fp; for a smooth curve, the cubic (Hermite) "
    "pieces written out, with i = np.clip(np.searchsorted(xp, x) - 1, 0, len(xp) - 2) for each x's interval"
)
_SMOOTH_INTERPOLANTS = ("CubicSpline", "PPoly", "_PPolyBase", "CubicHermiteSpline", "PchipInterpolator", "Akima1DInterpolator", "BSpline")
_INSTEAD.update(dict.fromkeys([f"{c}.{m}" for c in _SMOOTH_INTERPOLANTS for m in ("__init__", "__call__")], _SMOOTH))
_INSTEAD.update(dict.fromkeys(("make_interp_spline", "pchip_interpolate", "BSpline.construct_fast"), _SMOOTH))
# Root finders: pz.nlsolve, Newton's method differentiated by the implicit function theorem
# (user testing: Kepler's equation in a radial-velocity fit).
_NEWTON_STEPS = (
    "pz.nlsolve(f, u0, p), which finds a root of f(u, p) = 0 by Newton's method and differentiates it in p "
    "(and in traced values f reads from its closure) by the implicit function theorem, e.g. for Kepler's "
    "equation E - e sin E = M: E = pz.nlsolve(lambda E, p: E - p[0] * np.sin(E) - p[1], np.array([M]), "
    "np.array([e, M]))[0] (u0 is a 1-D start; for a bracket [a, b], start at its middle)"
)
_NEWTON_SYSTEM = (
    "pz.nlsolve(F, x0, p), which finds a root of F(x, p) = 0 (x0 a 1-D start, F returning an array shaped "
    "like x) by Newton's method with F's exact Jacobian, and differentiates it in p (and in traced values F "
    "reads from its closure) by the implicit function theorem; for fixed_point(g, x0), solve "
    "F(x, p) = g(x, p) - x"
)
_INSTEAD.update(dict.fromkeys(("brentq", "brenth", "bisect", "ridder", "toms748", "newton", "root_scalar", "halley"), _NEWTON_STEPS))
_INSTEAD.update(dict.fromkeys(("fsolve", "root", "fixed_point"), _NEWTON_SYSTEM))
# scipy.sparse: matrices and their solvers, for which dense numpy is the traced equivalent.
_SPARSE = (
    "a dense matrix: K = np.zeros_like(E, shape=(n, n)); np.add.at(K, (rows, cols), values) assembles it (repeated "
    "positions add, as in coo_matrix), and np.linalg.solve(K, f) replaces spsolve"
)


def sparse_error(x: Any) -> UnsupportedOperationError | None:
    """The error to raise when ``x``, a scipy.sparse matrix, meets a traced value in an operation
    (``sp.eye(n) - D * Lap`` with D traced; numpy takes the matrix for a 0-d object array), else None."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is None or not sparse.issparse(x):
        return None
    kind = type(x).__name__
    shape = "x".join(str(n) for n in getattr(x, "shape", ()))
    err = UnsupportedOperationError(
        f"a scipy.sparse matrix ({kind}, shape {shape}) met a traced value: pyzygote traces numpy's arrays, and "
        "scipy.sparse's matrices and their operations cannot hold traced entries. Write it with numpy: "
        f"{_SPARSE}; a constant sparse matrix becomes one with .toarray() (np.eye(n) - D * Lap.toarray())."
    )
    err._pyzygote_scipy = True  # type: ignore[attr-defined]  # told already: not renamed by scipy_error
    return err


# SciPy functions that call the user's code back: a traced value reaches them through a closure
# (odeint(lambda u, t: f(u, t, k), ...)), so it is not among their own arguments.
_CALLERS_BACK = frozenset(
    {"solve_ivp", "odeint", "quad", "minimize", "root", "fsolve", "least_squares", "leastsq", "curve_fit", "brentq", "brenth",
     "bisect", "ridder", "toms748", "newton", "root_scalar", "fixed_point", "minimize_scalar"}
)  # fmt: skip


def _public(module: str) -> str:
    return ".".join(p for p in module.split(".") if not p.startswith("_"))


def _called_as(module: str, qualname: str) -> str:
    """The name users call a SciPy function by: the shortest public module that exposes it
    (scipy.optimize.least_squares, defined in scipy.optimize._lsq.least_squares, whose public
    parts alone repeated the name: user testing), else the module's public parts and the name."""
    top = qualname.split(".")[0]
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        if parts[i - 1].startswith("_"):
            break
        exposed = getattr(sys.modules.get(".".join(parts[:i])), top, None)
        if exposed is not None and getattr(exposed, "__module__", None) == module:
            return f"{'.'.join(parts[:i])}.{qualname}"
    return f"{_public(module)}.{qualname}"


def _holds_tracer(value: Any, depth: int = 2) -> bool:
    from pyzygote.tracer import Tracer

    if isinstance(value, Tracer):
        return True
    if isinstance(value, np.ndarray) and value.dtype == object:  # what np.asarray made of one
        return any(isinstance(v, Tracer) for v in value.flat[:16])
    if depth and isinstance(value, (tuple, list)):
        return any(_holds_tracer(v, depth - 1) for v in value[:16])
    return False


def _scipy_entry(exc: BaseException) -> tuple[str, str, str | None, list[str]] | None:
    """The outermost SciPy function, in ``exc`` or what caused it, that received a traced value,
    the name of the scipy.stats distribution it is a method of (None for others), and the names
    of its arguments that hold traced values.  A method is named by its object's class
    (interp1d.__call__, not the base class _Interpolator1D that defines it)."""
    seen: set[int] = set()
    chain: BaseException | None = exc
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        tb: types.TracebackType | None = chain.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            module = frame.f_globals.get("__name__", "")
            if module.split(".")[0] == "scipy" and frame.f_code.co_name not in _WRAPPERS:
                if frame.f_code.co_name in _CALLERS_BACK or any(_holds_tracer(v) for v in frame.f_locals.values()):
                    code = frame.f_code
                    qualname = getattr(code, "co_qualname", code.co_name)
                    arguments = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
                    traced = [a for a in arguments if a != "self" and _holds_tracer(frame.f_locals.get(a))]
                    owner = frame.f_locals.get("self")
                    if module.startswith("scipy.stats"):
                        owner = getattr(owner, "dist", owner)  # a frozen distribution's
                        name = getattr(owner, "name", None)
                        return module, qualname, name if isinstance(name, str) else None, traced
                    cls = type(owner)
                    if "self" in arguments[:1] and "." in qualname and cls.__module__.split(".")[0] == "scipy":
                        module, qualname = cls.__module__, f"{cls.__qualname__}.{code.co_name}"
                    return module, qualname, None, traced
            tb = tb.tb_next
        chain = chain.__cause__ or chain.__context__
    return None


def _traced_special() -> list[str]:
    from pyzygote.numpy_api import supported_names

    return [n.rsplit(".", 1)[-1] for n in supported_names() if n.startswith("scipy.special.")]


def _advice(instead: str | None) -> str:
    if instead is None:
        return "Write this step with numpy functions."
    if instead.startswith(("pz.", "scipy.special.", "loc + s * scipy.special.")):
        return f"Use {instead}."
    return f"Write it with numpy: {instead}."


def _listed(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return ("its argument " if len(names) == 1 else "its arguments ") + (
        quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    )


def scipy_error(exc: BaseException) -> UnsupportedOperationError | None:
    """The error to raise instead of ``exc`` when SciPy code choked on a traced value, else None."""
    if getattr(exc, "_pyzygote_scipy", False):
        return None
    entry = _scipy_entry(exc)
    if entry is None:
        return None
    module, name, distribution, traced = entry
    method = name.rsplit(".", 1)[-1]
    instead = _SPARSE if module.startswith("scipy.sparse") else _INSTEAD.get(name, _INSTEAD.get(method))
    if distribution is not None:
        # the distribution's own formula, or the normal one's as an example of writing one out
        normal = written_out("norm", method)
        instead = written_out(distribution, method) or (
            f"the distribution's formula, with the scipy.special functions below (scipy.stats.norm.{method} is {normal})"
            if normal
            else None
        )
        name = f"{distribution}.{method}"
    called = f"{_public(module)}.{name}" if distribution is not None else _called_as(module, name)
    err = UnsupportedOperationError(
        f"{called} was called on a traced value: "
        + (f"{_listed(traced)} {'is' if len(traced) == 1 else 'are'} traced. " if traced else "")
        + "pyzygote traces numpy's functions, and SciPy's "
        "functions turn their arguments into plain numpy arrays, which a traced value cannot become. "
        + _advice(instead)
        + f" (scipy.special's {', '.join(_traced_special())} are traced; see README, 'What can be traced'.)"
    )
    err._pyzygote_scipy = True  # type: ignore[attr-defined]
    return err

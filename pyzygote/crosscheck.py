"""Cross-check gradients that another AD system produced (JAX, PyTorch, a hand derivation).

Give :func:`crosscheck` the function as numpy code, the point, and the
gradient you want to trust; it compares that gradient with independent
references: pyzygote's NumPy engine, its Julia engine (Zygote) when Julia is
set up, and central finite differences.  Upstream gradient bugs of the kind
this catches have been real: a gradient exactly twice the truth
(SciMLSensitivity #1181), adjoints disagreeing with finite differences (#1000).

>>> import numpy as np, pyzygote as pz
>>> f = lambda w, x: np.sum(np.tanh(x @ w) ** 2)
>>> w, x = np.array([0.5, -0.3]), np.array([[1.0, 2.0], [0.5, -1.0]])
>>> honest = pz.gradient(f, w, x)                      # stands in for jax.grad(f, (0, 1))(w, x)
>>> report = pz.crosscheck(f, (w, x), honest, engines=("numpy",))
>>> report.passed
True
>>> pz.crosscheck(f, (w, x), (2 * honest[0], honest[1]), engines=("numpy",))  # doctest: +ELLIPSIS
Traceback (most recent call last):
AssertionError: the gradient disagrees with ...
"""

from __future__ import annotations

import contextvars

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.errors import NonFiniteGradientError
from pyzygote.pytree import Static, flatten
from pyzygote.tracing import numpy_arguments
from pyzygote.subgradients import Kinks, changed_entries

__all__ = ["crosscheck", "CrossCheckReport"]


@dataclass
class CrossCheckReport:
    """Largest relative difference of the checked gradient to each reference.

    Each row is ``(reference, difference, tolerance, note)``; ``difference`` is ``None`` where
    the reference could not judge (the note says why).  A note starting with ``"entry"`` names
    an entry that disagrees with the reference by more than ``element_rtol`` of itself.
    """

    rows: list[tuple[str, float | None, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(diff is None or (diff <= tol and not note.startswith("entry")) for _, diff, tol, note in self.rows)

    def __str__(self) -> str:
        lines = [f"{'reference':40s} {'max rel. diff':>14s} {'tolerance':>10s}  verdict"]
        for name, diff, tol, note in self.rows:
            if diff is None:
                lines.append(f"{name:40s} {'-':>14s} {'-':>10s}  {note}")
            else:
                verdict = "agrees" if diff <= tol and not note.startswith("entry") else "DISAGREES"
                lines.append(f"{name:40s} {diff:14.2e} {tol:10.1e}  {verdict}" + (f": {note}" if note else ""))
        return "\n".join(lines + self.notes)


def _canonical(tree: Any) -> Any:
    """Gradients from any tool in one form, so that equal gradients compare equal.

    Leaves become numpy arrays (PyTorch tensors detached); lists, tuples and
    namedtuples become tuples (JAX and PyTorch return either); a sequence of
    scalars becomes a vector (pyzygote reads a list of numbers as one array,
    JAX as a list of leaves); dicts keep their keys; non-numeric leaves are None.
    """
    if isinstance(tree, dict):
        return {k: _canonical(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        items = tuple(_canonical(v) for v in tree)
        if items and all(isinstance(v, np.ndarray) and v.ndim == 0 for v in items):
            return np.stack(items)
        return items
    if tree is None or isinstance(tree, (str, bytes, bool, Static)):
        return None
    arr = _as_numpy(tree)
    if arr.dtype.kind == "V":  # JAX's float0: the gradient of an integer argument
        return None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"gradients must hold real numbers, got an array of dtype {arr.dtype}")
    return arr


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "requires_grad"):  # a PyTorch tensor, perhaps on a GPU
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
    arr = np.asarray(x)
    return arr.astype(np.float32) if arr.dtype.name == "bfloat16" else arr  # JAX's (ml_dtypes) bfloat16


def _leaves(canonical: Any) -> list[np.ndarray]:
    return [leaf for leaf in flatten(canonical)[0] if isinstance(leaf, np.ndarray)]


def _describe(canonical: Any) -> str:
    if isinstance(canonical, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(canonical[k])}" for k in sorted(canonical, key=repr)) + "}"
    if isinstance(canonical, tuple):
        return "(" + ", ".join(_describe(v) for v in canonical) + ")"
    return "None" if canonical is None else f"array{canonical.shape}"


# The default rtol against the engines for gradients of each precision (by dtype name, so that
# numpy, JAX and PyTorch dtypes, bfloat16 included, are all recognised).
_RTOL = {"float16": 1e-2, "bfloat16": 1e-2, "float32": 1e-4}


def _precision_rtol(grads: Any) -> float:
    """The tolerance of the most precise array: a float64 array is never held to float32's."""
    arrays = [leaf for leaf in flatten(grads)[0] if not isinstance(leaf, Static)]
    names = [str(getattr(leaf, "dtype", "float64")).replace("torch.", "") for leaf in arrays]
    return min((_RTOL.get(name, 1e-7) for name in names), default=1e-7)


# Unit roundoff of the precision each tolerance stands for.
_ROUNDOFF = {1e-7: float(np.finfo(np.float64).eps), 1e-4: float(np.finfo(np.float32).eps), 1e-2: float(np.finfo(np.float16).eps)}


# An ODE solve's gradient is as accurate as the solve: other AD systems and differences of
# adaptive solves agree with it to about this many times the solver's reltol (user testing:
# torchdiffeq at rtol=1e-6 within 2.4e-5 of the NumPy engine, differences within 3.8e-5).
# That bounds the allowance (user testing: at the default reltol=1e-3 that let a 9% error pass);
# within it, the allowance is this many times the error measured against the same gradient
# solved 100 times tighter, and at least 30 times reltol, for the other tool's own solver
# (diffrax at reltol=1e-3 was within 6e-3 of the tighter gradient, where pyzygote's was 8.8e-4).
_SOLVER_SLACK = 100.0
_MEASURED_SLACK = 20.0
_OTHER_SOLVER_SLACK = 30.0
_TIGHTER = 1e-2


def _solver_reltol(f: Callable[..., Any], args: tuple[Any, ...]) -> float | None:
    """The loosest ``reltol`` of the ODE solves in ``f`` (also inside a right-hand side or a pz.nlsolve residual) (``None`` without any, or when it cannot be traced)."""
    from pyzygote.ir import Program
    from pyzygote.ode.rhs import RHS
    from pyzygote.tracing import make_program

    try:
        prog = make_program(f, *args)
    except Exception:  # the engines' own calls report what is wrong with f
        return None
    found: list[float] = []

    def scan(p: Program) -> None:
        for eqn in p.eqns:
            opts = eqn.params.get("opts")
            if eqn.prim.name.startswith("odesolve") and opts is not None:
                found.append(float(opts.reltol))
            for value in eqn.params.values():
                # a right-hand side's or a residual's program (pz.nlsolve's f solving an ODE, an
                # ODE inside another's right-hand side) holds solves too
                inner = value if isinstance(value, Program) else getattr(value, "program", None) if isinstance(value, RHS) else None
                if isinstance(inner, Program):
                    scan(inner)

    scan(prog)
    return max(found) if found else None


def _tightened(f: Callable[..., Any]) -> Callable[..., Any]:
    """A new function object calling ``f``: traced (only) under ``tolerances_tightened``, its
    cached trace solves every ODE tighter while ``f``'s own traces stay as they are."""
    import functools

    @functools.wraps(f)
    def tightened(*args: Any) -> Any:
        return f(*args)

    return tightened


def _solving_tighter(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` called with its ODE solves ``1 / _TIGHTER`` times tighter (the differences' ``f``)."""
    from pyzygote.primitives.ode import tolerances_tightened

    def tighter(*args: Any) -> Any:
        with tolerances_tightened(_TIGHTER):
            return f(*args)

    return tighter


def _gradient_of(f: Callable[..., Any], args: tuple[Any, ...], engine: str, tight: bool) -> Any:
    import warnings

    from pyzygote.api import gradient
    from pyzygote.errors import RetraceWarning
    from pyzygote.primitives.ode import tolerances_tightened

    if not tight:
        return _canonical(gradient(f, *args, engine=engine))
    with warnings.catch_warnings(), tolerances_tightened(_TIGHTER):
        warnings.simplefilter("ignore", RetraceWarning)  # a new function object per check, by design
        return _canonical(gradient(f, *args, engine=engine))


def _solver_slack(f: Callable[..., Any], args: tuple[Any, ...], reltol: float) -> tuple[float, Callable[..., Any] | None, str]:
    """The allowance for the ODE solves' error in ``f``'s gradient, the function whose gradient
    the engines' rows then use (``f`` with its solves tighter), and a note saying so."""
    from pyzygote.errors import PyzygoteError

    tight = _tightened(f)
    try:
        loose = _gradient_of(f, args, "numpy", tight=False)
        exact = _gradient_of(tight, args, "numpy", tight=True)
    except (PyzygoteError, ArithmeticError, ValueError):  # a tighter solve that fails: the bound alone
        slack = _SOLVER_SLACK * reltol
        return slack, None, (
            f"(f solves an ODE at reltol={reltol:g}: its gradients are as accurate as the solve, so the default "
            f"tolerances are {_SOLVER_SLACK:g} times that; pass rtol= and fd_rtol= to hold them to others)"
        )
    pairs = _paired(loose, exact)
    scale = max((float(np.max(np.abs(r))) for _, _, r in pairs if r.size), default=0.0) or 1.0
    error = max((float(np.max(np.abs(c - r))) for _, c, r in pairs if c.size), default=0.0) / scale
    slack = min(_SOLVER_SLACK * reltol, max(_MEASURED_SLACK * error, _OTHER_SOLVER_SLACK * reltol))
    tight.numpy_gradient = exact  # type: ignore[attr-defined]  (the engines' row need not solve it again)
    # f's own gradient at its tolerances and its measured error, for _solve_error_hint
    tight.own_gradient, tight.solver_error, tight.reltol = loose, error, reltol  # type: ignore[attr-defined]
    capped = f" ({_SOLVER_SLACK:g} times reltol, the most allowed)" if slack < _MEASURED_SLACK * error else " (the other tool's solver errs too)"
    return slack, tight, (
        f"(f solves an ODE at reltol={reltol:g}; the references (engines and finite differences) solve it {1 / _TIGHTER:g} times tighter, "
        f"and its gradient at the given tolerances differs from theirs by {error:.1e} of its scale, so differences "
        f"up to {slack:.1e}{capped} count as the solver's error. To check more finely, "
        "solve at tighter tolerances, or pass rtol= and fd_rtol=)"
    )


def _noise_floors(f: Callable[..., Any], args: tuple[Any, ...], precision: float, eps: float) -> tuple[float, float]:
    """Differences below which gradients are equal within rounding, for AD and for central differences.

    At a stationary point (a fitted optimum) every entry of the gradient is rounding noise, so a
    relative comparison alone would report a disagreement.  AD gradients carry about
    ``u * |f| / |x|``; central differences ``u * |f| / eps`` (``u`` the unit roundoff).
    """
    try:
        value = float(np.abs(np.asarray(f(*args), dtype=np.float64)).max())
    except (TypeError, ValueError):
        value = 1.0
    xs = [np.abs(np.asarray(_as_numpy(leaf), dtype=np.float64)) for leaf in flatten(args)[0] if not isinstance(leaf, Static)]
    x_scale = max((float(x.max()) for x in xs if x.size), default=1.0)
    u = _ROUNDOFF.get(precision, float(np.finfo(np.float64).eps))
    size = max(1.0, value if np.isfinite(value) else 1.0)
    return 10.0 * u * size / max(1.0, x_scale), 10.0 * float(np.finfo(np.float64).eps) * size / eps


def _pairs(candidate: Any, reference: Any, path: str = "") -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The leaves of two gradients side by side, with their paths; where the reference is
    ``None`` (an integer or boolean argument: data), whatever the candidate holds is ignored."""
    if reference is None:
        return []
    same_kind = type(candidate) is type(reference) or (isinstance(candidate, np.ndarray) and isinstance(reference, np.ndarray))
    where = f"grads{path}"
    if isinstance(reference, dict) and isinstance(candidate, dict):
        if set(candidate) != set(reference):
            # user testing: a dict missing a key was told only by both structures printed in full
            missing = [k for k in reference if k not in candidate]
            extra = [k for k in candidate if k not in reference]
            raise _Mismatch(
                f"{where} "
                + "; ".join(
                    ([f"lacks the key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"] if missing else [])
                    + ([f"has the key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}, which the argument has not"] if extra else [])
                )
            )
        return [pair for k in sorted(reference, key=repr) for pair in _pairs(candidate[k], reference[k], f"{path}[{k!r}]")]
    if isinstance(reference, tuple) and same_kind:
        if len(candidate) != len(reference):
            raise _Mismatch(f"{where} has {len(candidate)} entr{'y' if len(candidate) == 1 else 'ies'} where the arguments have {len(reference)}")
        return [pair for i, (c, r) in enumerate(zip(candidate, reference)) for pair in _pairs(c, r, f"{path}[{i}]")]
    if isinstance(reference, np.ndarray) and same_kind:
        if candidate.shape != reference.shape:
            raise _Mismatch(f"{where} has shape {candidate.shape} where the argument has {reference.shape}")
        return [(path, candidate.astype(np.float64), reference.astype(np.float64))]
    raise _Mismatch(f"{where} is {_describe(candidate)} where the argument is {_describe(reference)}")


class _Mismatch(Exception):
    pass


def _paired(candidate: Any, reference: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    try:
        return _pairs(candidate, reference)
    except _Mismatch as mismatch:
        raise ValueError(
            "the gradient to check must have the structure and shapes of the function's arguments: "
            f"{mismatch}; got {_describe(candidate)}, expected {_describe(reference)} (integer and boolean numpy arrays "
            "are data: their entries may hold anything; a Python int is a number pyzygote differentiates, as "
            "pz.gradient does: pass np.int64(3) to make it data). To check the gradient with respect to some "
            "arguments only, give None for the others (data, as JAX's argnums leaves them out): "
            "crosscheck(f, (w, x), (grad_w, None))"
        ) from None


def _compare(
    candidate: Any, reference: Any, floor: float, rtol: float, element_rtol: float, element_floor: float
) -> tuple[float, str]:
    """The largest difference relative to the largest reference entry (differences below ``floor``
    count as agreement at ``rtol``), and a note naming the worst entry that differs from its reference
    by more than ``element_rtol`` of the reference, among entries larger than ``element_floor``."""
    pairs = _paired(candidate, reference)
    scale = max(max((float(np.max(np.abs(r))) for _, _, r in pairs if r.size), default=0.0), floor / rtol) or 1.0
    diff = max((float(np.max(np.abs(c - r))) / scale for _, c, r in pairs if c.size), default=0.0)
    worst, note = element_rtol, ""
    for path, c, r in pairs:
        bad = ~np.isfinite(c) & np.isfinite(r)
        if np.any(bad):  # named even where the reference is too small to judge relatively
            k = int(np.argmax(bad))
            at = tuple(int(i) for i in np.unravel_index(k, r.shape))
            return diff, f"{_entry(at, path)} is {c.flat[k]:.6g}, the reference {r.flat[k]:.6g}"
    # The entry named: the largest relative difference, where entries within a percent of it (a
    # gradient off by a common factor) go to the largest absolute difference, so that every
    # reference names the same entry for the same failure (user testing: the engine's row named
    # entry [0] of a doubled gradient, the finite differences' row entry [2], by rounding).
    found = []
    for path, c, r in pairs:
        judged = np.abs(r) > element_floor
        if not np.any(judged):
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(judged, np.abs(c - r) / np.abs(r), 0.0)
        rel = np.where(np.isnan(c) & judged, np.inf, rel)
        found.append((path, c, r, rel, np.where(judged & ~np.isnan(c), np.abs(c - r), np.inf)))
    top = max((float(np.max(rel)) for *_, rel, _ in found), default=0.0)
    if top > worst:
        best = -1.0
        for path, c, r, rel, gap in found:
            near = rel >= 0.99 * top
            if not np.any(near):
                continue
            k = int(np.argmax(np.where(near, gap, -1.0)))
            if gap.flat[k] > best:
                best = float(gap.flat[k])
                at = tuple(int(i) for i in np.unravel_index(k, r.shape))
                note = f"{_entry(at, path)} is {_told_apart(c.flat[k], r.flat[k])}"
    return diff, note


def _entry(at: tuple[int, ...], path: str) -> str:
    """``entry [2, 3] of argument 0``, or ``entry of argument 1 (a scalar)`` for a number (a note
    naming an entry that disagrees starts with "entry": the verdict reads it)."""
    return f"entry {list(at)} of {_argument(path)}" if at else f"entry of {_argument(path)} (a scalar)"


def _largest_difference(candidate: Any, reference: Any) -> str:
    """Where a gradient that disagrees overall differs most, for a row that names no entry."""
    best, note = -1.0, ""
    for path, c, r in _paired(candidate, reference):
        if not c.size:
            continue
        d = np.abs(c - r)
        k = int(np.nanargmax(d)) if np.any(np.isfinite(d)) else 0
        if d.flat[k] > best:
            best = float(d.flat[k])
            at = tuple(int(i) for i in np.unravel_index(k, r.shape))
            where = _entry(at, path) if at else f"{_argument(path)} (a scalar)"
            note = f"largest difference at {where}: {_told_apart(c.flat[k], r.flat[k])}"
    return note


def _told_apart(candidate: float, reference: float) -> str:
    """``"31.30673, the reference 31.30670"``: with the digits that show where two numbers
    differ (user testing: at six, a disagreement of 1e-6 printed the same number twice)."""
    digits = 6
    while digits < 17 and f"{candidate:.{digits}g}" == f"{reference:.{digits}g}" and candidate != reference:
        digits += 1
    return f"{candidate:.{digits}g}, the reference {reference:.{digits}g}"


# The caller's argument numbers when the gradients given for some arguments are None (those
# arguments are held as data, and the others numbered anew).
_ARGUMENT_NUMBERS: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar("pyzygote_crosscheck_arguments", default=None)


def _argument(path: str) -> str:
    """``[0]['w']`` as ``argument 0['w']``."""
    if not path:
        return "the gradient"
    head, _, rest = path[1:].partition("]")
    numbers = _ARGUMENT_NUMBERS.get()
    if numbers is not None and head.isdigit() and int(head) < len(numbers):
        head = str(numbers[int(head)])
    return f"argument {head}{rest}"


def _convention_hint(candidate: Any, reference: Any, rtol: float, reads_triangle: Callable[[str], bool]) -> str:
    """Why a disagreement of a square matrix's gradient may be a convention: JAX and PyTorch give
    functions that read one triangle of a symmetric matrix (cholesky, eigh) the symmetric part
    of the gradient (said only where the program reads one: ``reads_triangle`` of a path); a
    gradient that is the reference transposed is said to be (user testing: a transposed weight
    gradient was explained as the cholesky convention)."""
    for path, c, r in _paired(candidate, reference):
        scale = float(np.max(np.abs(r)) or 1.0)
        # A convention moves whole entries between the triangles: far more than noise, which
        # symmetrizing would also average away (user testing: 1e-6 noise in a square weight
        # matrix drew this hint while the error was a bias's sign).
        if not (c.ndim == 2 and c.shape[0] == c.shape[1] > 1) or np.allclose(c, r, rtol=0.0, atol=1e3 * rtol * scale):
            continue
        close = lambda a, b: np.allclose(a, b, rtol=10 * rtol, atol=10 * rtol * scale)  # noqa: E731
        if close((c + c.T) / 2.0, (r + r.T) / 2.0) and reads_triangle(path):
            return (
                f"\nThe gradients for {_argument(path)} agree once symmetrized: f reads one triangle of a "
                "symmetric matrix made from it (np.linalg.cholesky, eigh, eigvalsh), pyzygote, as numpy reads it, "
                "puts the gradient in that triangle, and JAX and PyTorch give its symmetric part. Compare "
                "(g + g.T) / 2, or write f on the symmetric part, e.g. f((A + A.T) / 2)."
            )
        if close(c, r.T):
            return (
                f"\nThe gradient for {_argument(path)} agrees once transposed: it is the reference's transpose "
                "(a weight stored the other way round, as torch.nn.Linear's (out, in) weight is for x @ W); compare g.T."
            )
    return ""


# Factors whose signs pyzygote fixes where LAPACK leaves them open: the outputs of each that
# depend on the signs (svd's U and Vt, eigh's eigenvectors; singular values and eigenvalues do not).
# qr is not one: its traced factors are numpy's, LAPACK's signs included.
_SIGNED_OUTPUTS = {"svd": ((0, 2), "np.linalg.svd"), "eigh": ((1,), "np.linalg.eigh's eigenvectors")}


def _signs_hint(f: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """Why finite differences of ``f`` can disagree with a correct gradient: ``f`` reads factors
    whose signs pyzygote fixes (README, Limits), while the differences run ``f`` as plain numpy,
    with LAPACK's signs, a different function of the point where ``f`` depends on them (found in
    review: a loss of np.linalg.qr's Q was judged DISAGREES, 1.5 off, when qr's signs were fixed too)."""
    from pyzygote.ir import Var
    from pyzygote.tracing import make_program

    try:
        prog = make_program(f, *args)
    except Exception:  # the engines' own calls report what is wrong with f
        return ""
    signed: dict[int, str] = {}
    for eqn in prog.eqns:
        if eqn.prim.name in _SIGNED_OUTPUTS:
            which, name = _SIGNED_OUTPUTS[eqn.prim.name]
            signed.update((eqn.outputs[k].uid, name) for k in which)
    read = [signed[a.uid] for e in prog.eqns for a in e.inputs if isinstance(a, Var) and a.uid in signed]
    read += [signed[a.uid] for a in prog.outputs if isinstance(a, Var) and a.uid in signed]
    if not read:
        return ""
    names = ", ".join(dict.fromkeys(read))
    return (
        f"\nf reads {names}, whose signs pyzygote fixes (the first entry of largest "
        "magnitude of each singular vector or eigenvector positive), where numpy leaves them to LAPACK. The finite "
        "differences run f as plain numpy, so where f depends on those signs they differentiate another function. "
        "Make f independent of them (U @ np.diag(s) @ Vt, v**2), or fix them in f as pyzygote does, and check again."
    )


# Primitives that read one triangle of their (symmetric) matrix argument.
_TRIANGLE_READERS = frozenset({"cholesky", "eigh"})


def _triangle_reader(f: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[str], bool]:
    """Whether the argument at a path of :func:`_pairs` (``[0]['A']``) reaches a primitive that
    reads one triangle of a matrix, in the program traced from ``f(*args)`` (traced once, when
    first asked; where the argument cannot be told apart, whether any argument does)."""
    from pyzygote.ir import Var
    from pyzygote.pytree import unflatten
    from pyzygote.tracing import make_program

    found: list[Any] = []

    def reads(path: str) -> bool:
        if not found:
            try:
                prog = make_program(f, *args)
            except Exception:  # the engines' own calls report what is wrong with f
                found.append(None)
                return False
            reaching: dict[Any, set[int]] = {v: {i} for i, v in enumerate(prog.inputs)}
            hit: set[int] = set()
            for eqn in prog.eqns:
                sources = set().union(*(reaching.get(a, set()) for a in eqn.inputs if isinstance(a, Var)))
                if eqn.prim.name in _TRIANGLE_READERS:
                    hit |= sources
                for v in eqn.outputs:
                    reaching[v] = sources
            leaves, tree = flatten(args)
            found.append((hit, unflatten(tree, list(range(len(leaves)))) if len(leaves) == len(prog.inputs) else None))
        if found[0] is None:
            return False
        hit, numbered = found[0]
        if numbered is None:
            return bool(hit)
        node = numbered
        try:
            for key in re.findall(r"\[([^\]]*)\]", path):
                node = node[int(key)] if isinstance(node, (tuple, list)) else next(v for k, v in node.items() if repr(k) == key)
        except (StopIteration, KeyError, IndexError, ValueError, TypeError):  # a key whose repr holds brackets
            return bool(hit)
        return any(i in hit for i in flatten(node)[0] if isinstance(i, int))

    return reads


def _with_data_arguments(f: Callable[..., Any], args: tuple[Any, ...], grads: tuple[Any, ...], **options: Any) -> CrossCheckReport:
    """:func:`crosscheck` of the arguments whose gradients are given, the others held as data."""
    if len(args) != len(grads):
        raise ValueError(f"grads must hold one entry per argument of f (None for data): got {len(grads)} for {len(args)} arguments")
    checked = tuple(i for i, g in enumerate(grads) if g is not None)
    if not checked:
        raise ValueError("grads is None for every argument: there is no gradient to check")
    # The data as the numpy arrays they hold, as the checked arguments are read: f closed over a
    # JAX array computed in float32 under the differences (user testing: its rounding let an entry
    # off by a factor of 2 pass as a kink), over a PyTorch tensor it crashed in np.mean.
    args = numpy_arguments(args)

    def with_data(*moving: Any) -> Any:
        full = list(args)
        for i, x in zip(checked, moving):
            full[i] = x
        return f(*full)

    outer = _ARGUMENT_NUMBERS.get()
    token = _ARGUMENT_NUMBERS.set(checked if outer is None else tuple(outer[i] for i in checked))
    try:
        return crosscheck(with_data, tuple(args[i] for i in checked), tuple(grads[i] for i in checked), **options)
    finally:
        _ARGUMENT_NUMBERS.reset(token)


def crosscheck(
    f: Callable[..., Any],
    args: Sequence[Any],
    grads: Sequence[Any],
    *,
    engines: Sequence[str] = ("numpy", "julia"),
    finite_differences: bool = True,
    rtol: float | None = None,
    fd_rtol: float | None = None,
    eps: float = 1e-6,
    raise_on_failure: bool = True,
    element_rtol: float = 0.1,
) -> CrossCheckReport:
    """Compare ``grads`` (one entry per argument, like ``pz.gradient``) with independent references.

    Differences are measured relative to the largest entry of each reference
    (so tiny entries do not dominate), or to rounding noise where the whole gradient
    is that small (at an optimum), within ``rtol`` against the engines and
    ``fd_rtol`` against finite differences: by default 1e-7 and 1e-5, loosened
    to 1e-4 when every array in ``grads`` is float32 and to 1e-2 when every
    array is float16 or bfloat16, and for the ODE solves in ``f`` (whose gradients are as
    accurate as the solve) to 30 times their loosest ``reltol``, or 20 times the error of
    ``f``'s gradient measured against the engines' references, which solve 100 times
    tighter, but at most 100 times ``reltol``.  Lower-precision
    gradients are compared with references computed in float64 at the same point, with
    differences within four times pyzygote's own rounding in that precision counted as
    agreement; a disagreement with central differences that they themselves change by
    (with twice the step) is reported as inconclusive.  ``grads`` may hold numpy, JAX or PyTorch
    arrays (tensors that require grad are detached).  Each entry larger than the
    references' rounding noise must also agree to ``element_rtol`` (10%) of
    itself, which catches a wrong sign or a missing term in an entry far
    smaller than the largest (a rate constant of 3e7 beside one of 0.04).
    Integer and boolean arguments are data: their gradients are not compared; nor are
    those of arguments whose entry in ``grads`` is None (held constant, as JAX's ``argnums``
    leaves them out: ``crosscheck(loss, (params, X, y), (g, None, None))``).
    Engines that are not available are reported as skipped.  With
    ``raise_on_failure`` an ``AssertionError`` carrying the report is raised
    when any reference disagrees.
    """
    from pyzygote.julia.setup import julia_is_set_up
    from pyzygote.testing import check_step, numerical_gradient

    eps = check_step(eps)
    for name, value in (("args", args), ("grads", grads)):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{name} must be a tuple with one entry per argument of f, got {type(value).__name__}")
    if isinstance(engines, str):
        raise TypeError(f"engines must be a tuple of engine names, e.g. ({engines!r},)")
    if any(g is None for g in grads):
        return _with_data_arguments(
            f, tuple(args), tuple(grads), engines=engines, finite_differences=finite_differences, rtol=rtol, fd_rtol=fd_rtol,
            eps=eps, raise_on_failure=raise_on_failure, element_rtol=element_rtol,
        )  # fmt: skip
    args = numpy_arguments(tuple(args))
    raw_grads = tuple(grads)
    grads = _canonical(raw_grads)
    precision = _precision_rtol(raw_grads)
    # Gradients in float32 (or less) are compared with references computed in float64 at the same
    # point, and their own rounding is measured: near an optimum, or through a factorization,
    # it can be far above u * |f| / |x| (user testing: a float32 Gaussian-process likelihood).
    # A float64 gradient at a float32 point is compared with references in float64 too, at the
    # point's float32 values exactly (user testing: float32 references and one-sided differences
    # mixing float32 and float64 evaluations passed an entry off by a factor of 2 as a 'kink').
    ref_args = _in_float64(args)
    solver = _solver_reltol(f, args) if rtol is None or fd_rtol is None else None
    slack, tight, notes = 0.0, None, []
    if solver is not None:
        slack, tight, note = _solver_slack(f, ref_args, solver)
        # said also where the allowance equals float32's (user testing: a float32 ODE loss at reltol=1e-6,
        # 5e-6 off by the solve, had only the float32 note, which read as the cause)
        if slack > 0.99 * min(precision if rtol is None else np.inf, max(1e-5, precision) if fd_rtol is None else np.inf):
            notes.append(note)
    rtol = max(precision, slack) if rtol is None else rtol
    fd_rtol = max(1e-5, precision, slack) if fd_rtol is None else fd_rtol
    for name, value in (("rtol", rtol), ("fd_rtol", fd_rtol), ("element_rtol", element_rtol)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not engines and not finite_differences:
        raise ValueError("nothing to compare with: give engines or finite_differences=True")
    report = CrossCheckReport(notes=notes)
    kinks = Kinks(f, ref_args, eps, _quietly, differences=finite_differences)
    triangle = _triangle_reader(f, args)
    hint = ""
    ad_floor, fd_floor = _noise_floors(f, args, precision, eps)
    fd_noise = fd_floor
    own = None  # pyzygote's own lower-precision gradient's distance from float64, relative
    if ref_args is not args and precision > 1e-7:
        noise, scale64 = _rounding_of(f, args, ref_args)
        if noise is not None:
            # relative to pyzygote's float64 gradient, not to the gradient checked (user testing: a
            # gradient twice too large halved the figure, which read as float32 rounding changing)
            own = noise / (scale64 or 1.0)
        if noise:
            ad_floor, fd_floor = max(ad_floor, 4.0 * noise), max(fd_floor, 4.0 * noise)
            # relative, as the table's column (user testing: an absolute 1.2e-4 beside a relative
            # 5e-6 read as float32 rounding far above the difference, where it was 3e-8 of the scale)
            notes.append(
                f"(the references are computed in float64 at the same point; pyzygote's own gradient in the "
                f"arguments' precision differs from its float64 gradient by up to {own:.1e} of that gradient's largest "
                f"entry ({scale64:.1e}), so differences below {4.0 * noise:.1e} count as rounding)"
            )
    for engine in engines:
        name = f"pyzygote {engine} engine" + (" (Zygote.jl)" if engine == "julia" else "")
        if engine == "julia" and not julia_is_set_up():
            report.rows.append((name, None, rtol, "skipped: Julia is not set up (pyzygote doctor)"))
            continue
        try:
            reuse = getattr(tight, "numpy_gradient", None) if engine == "numpy" else None
            reference = reuse if reuse is not None else _gradient_of(tight or f, ref_args, engine, tight=tight is not None)
        except NonFiniteGradientError as exc:
            reason = str(exc).split(" (where the function's value")[0].split(". ")[0]
            report.rows.append((name, None, rtol, f"no reference: its own gradient is not finite here ({reason})"))
            root = _root_of_zero(f, ref_args)
            if root and root not in report.notes:
                report.notes.append(root)
            continue
        except ValueError as exc:
            if "has_aux" not in str(exc):
                raise
            raise ValueError(
                "crosscheck needs f to return the loss alone (the gradients being checked are of one scalar); "
                "for a function returning (loss, aux), check crosscheck(lambda *a: f(*a)[0], args, grads)"
            ) from exc
        hint = hint or _convention_hint(grads, reference, rtol, triangle)
        row = _row(grads, reference, ad_floor, rtol, element_rtol, 100.0 * ad_floor)
        if not _agrees(row):
            row = _at_kinks(row, grads, reference, kinks, ad_floor, rtol, element_rtol)
            # within float32's precision: a float64 gradient computed in float32 is named here too
            # (user testing: 2.2e-7 off, a bare DISAGREES)
            if not _agrees(row) and row[0] is not None and row[0] <= _RTOL["float32"] and not row[2].startswith("entry"):
                if float32 := _float32_in_float64(grads, reference):
                    hint = hint or (
                        f"\n{float32[0].upper()}{float32[1:]}. It is as accurate as float32, not float64: pass it as "
                        "float32 (g.astype(np.float32)) to hold it to float32's tolerance, or compute it in float64."
                    )
        elif float32 := _float32_in_float64(grads, reference):
            row = (row[0], rtol, float32)
        report.rows.append((name, *row))
    # The differences solve f's ODEs as tightly as the engines' references: at f's own tolerance
    # their noise is about reltol / eps (user testing: an exact Hodgkin-Huxley gradient at
    # reltol=1e-7 judged DISAGREES by differences 1.1e-5 off).
    fd_f = f if tight is None else _solving_tighter(f)
    if finite_differences:
        fd = _canonical(_quietly(numerical_gradient, fd_f, *ref_args, eps=eps))
        name = f"central finite differences (eps={eps:g})"
        if _not_finite_at(fd, grads):
            # A step of eps left f's domain (a log of a diffusivity of 2e-9): steps of eps times
            # each entry stay inside it.
            fd = _where_not_finite(fd, _canonical(_quietly(functools.partial(numerical_gradient, relative=True), fd_f, *ref_args, eps=eps)))
        missing = _not_finite_at(fd, grads)
        if missing:
            report.rows.append((name, None, fd_rtol, f"no reference: f is not finite within the step of the point ({missing})"))
            finite_differences = False
    if finite_differences:
        largest = max((float(np.max(np.abs(y))) for y in _leaves(fd) if y.size), default=0.0)
        if fd_noise > fd_rtol * largest:
            # Every entry is within the differences' rounding noise (an optimum, or a flat f):
            # they can tell neither a right nor a wrong gradient.
            _paired(grads, fd)  # the structure check still applies
            report.rows.append((name, None, fd_rtol, (
                f"inconclusive: their rounding noise ({fd_noise:.1e}) is above fd_rtol ({fd_rtol:g}) times the "
                f"largest entry of their gradient ({largest:.1e})"
            )))
        else:
            row = _row(grads, fd, fd_floor, fd_rtol, element_rtol, 100.0 * fd_floor)
            if not _agrees(row):
                row = _at_kinks(row, grads, fd, kinks, fd_floor, fd_rtol, element_rtol)
            if row[0] is not None and not _agrees(row):
                row = _within_own_error(row, grads, fd, _quietly(numerical_gradient, fd_f, *ref_args, eps=2.0 * eps), fd_floor, fd_rtol, element_rtol)
            if row[0] is not None:
                hint = hint or _convention_hint(grads, fd, fd_rtol, triangle)
            if not _agrees(row):
                hint = hint or _signs_hint(f, args)
            report.rows.append((name, *row))
    if not report.passed:
        hint = hint or _likely_cause(report, precision, solver, own, grads, tight)
        if hint:  # in the report, which raise_on_failure=False returns, as in the error
            report.notes.append(hint.strip())
    if raise_on_failure and not report.passed:
        raise AssertionError(f"the gradient disagrees with an independent reference:\n{report}")
    if raise_on_failure and all(diff is None for _, diff, _, _ in report.rows):
        raise AssertionError(f"no reference could check the gradient:\n{report}")
    return report


def _float32_in_float64(grads: Any, reference: Any) -> str:
    """A float64 gradient every entry of which is a float32 number, where the reference's are not:
    computed in float32, about 6e-8 off, which the default rtol of 1e-7 lets pass (user testing)."""
    for path, c, r in _paired(grads, reference):
        try:
            if _dtype_at(grads, path) != np.float64:
                continue
        except (StopIteration, KeyError, IndexError, ValueError):  # a key whose repr holds brackets
            continue
        original = c
        nonzero = c[c != 0]
        if nonzero.size < 4 or not np.array_equal(nonzero, nonzero.astype(np.float32).astype(np.float64)):
            continue
        if np.sum(r != r.astype(np.float32).astype(np.float64)) < 4:
            continue
        scale = float(np.max(np.abs(r)))
        k = int(np.argmax(np.abs(original - r)))
        if abs(original.flat[k] - r.flat[k]) <= 10 * np.finfo(np.float64).eps * scale:
            continue
        at = tuple(int(i) for i in np.unravel_index(k, r.shape))
        return (
            f"{_entry(at, path)} is {c.flat[k]:.17g}, the reference {r.flat[k]:.17g}: every entry of this float64 "
            "gradient is a float32 number, so it was computed in float32 somewhere (a cast in a custom backward?)"
        )
    return ""


def _likely_cause(
    report: CrossCheckReport, precision: float, solver: float | None, own: float | None, grads: Any = None, tight: Any = None
) -> str:
    """A small disagreement that a correct gradient can have, named (user testing); ``own`` is how
    far pyzygote's own gradient in the arguments' precision is from the float64 one, relative;
    ``tight`` carries f's own gradient at its ODE tolerances (see _solver_slack)."""
    worst = max((diff for _, diff, _, _ in report.rows if diff is not None), default=None)
    if worst is None:
        return ""
    gap = _own_gradient_gap(grads, tight) if solver is not None else None
    if gap is not None:
        said = _solve_error_hint(gap, tight, worst, own if precision > 1e-7 else None)
        if said:
            return said
    if worst > (1e-2 if precision > 1e-7 else 1e-3):
        return ""
    measured = (
        f"this gradient differs by {gap:.1e} of the references' scale from pyzygote's own gradient of f at f's tolerances, "
        f"which is within {tight.solver_error:.1e} of the references: "
        if gap is not None
        else ""
    )
    looser = (
        f"f solves an ODE: {measured}if the gradient comes from a solve at looser tolerances than f's, it is only as "
        "accurate as that solve; solve both at the same tolerances, or pass rtol= of about 30 times the looser reltol."
    )
    if precision > 1e-7 and own is not None and worst > 20.0 * max(own, np.finfo(np.float32).eps):
        # user testing: a float32 gradient with an entry 1% off was excused as cancellation, where
        # pyzygote's own float32 gradient was 30 times closer
        return (
            f"\npyzygote's own gradient in the same precision is within {own:.1e} of the float64 reference, "
            f"far closer than this gradient's {worst:.1e}: float32 rounding in f does not explain the difference."
            + (f" {looser}" if solver is not None else "")
        )
    if precision > 1e-7:
        return (
            "\nA float32 gradient can be this far off where its computation cancels (x - mean(x) with a large "
            "offset), even where pyzygote's own float32 gradient happens not to: compare one computed in float64, "
            "or pass rtol= for what float32 allows there."
        )
    if solver is not None:
        return "\n" + looser
    return ""


def _own_gradient_gap(grads: Any, tight: Any) -> float | None:
    """How far ``grads`` is from f's own gradient at f's ODE tolerances, relative to the references'
    scale (None where that gradient was not measured, see _solver_slack)."""
    loose, exact = getattr(tight, "own_gradient", None), getattr(tight, "numpy_gradient", None)
    if loose is None or exact is None or grads is None:
        return None
    try:
        pairs = _paired(grads, loose)
    except ValueError:
        return None
    scale = max((float(np.max(np.abs(r))) for _, _, r in _paired(exact, exact) if r.size), default=0.0) or 1.0
    return max((float(np.max(np.abs(c - r))) for _, c, r in pairs if c.size), default=0.0) / scale


def _solve_error_hint(apart: float, tight: Any, worst: float, own: float | None) -> str:
    """Where the gradient is f's own gradient at f's ODE tolerances (pyzygote's, or another tool's
    solving as accurately; ``apart`` from it), its disagreement with the references is the solve's
    error, said so; else "".  User testing: at an optimum of a loss solved at reltol=1e-6, pyzygote's
    own gradient (3e-6) was DISAGREES, 1.0 off the reference (-0.015), and a multiple-shooting loss's
    own gradient 3e-4 off, both with a hint about solves at looser tolerances than f's, where none was."""
    error, reltol = tight.solver_error, tight.reltol
    if error < 0.5 * worst:
        return ""
    if apart > 0.1 * worst:
        # another gradient, which f's own at f's tolerances errs about as much as (another tool's at
        # the same tolerances, in a multiple-shooting case of user testing)
        return (
            f"\npyzygote's own gradient of f at f's tolerances differs from the references by {error:.1e} too (this "
            f"gradient is {apart:.1e} from it): at reltol={reltol:g} f's ODE solves err this much, so a gradient from a "
            "solve as accurate as f's can disagree this far. To check the gradient, solve f, and the solve it comes "
            f"from, at tighter tolerances (reltol={reltol * _TIGHTER:g})."
        )
    # the gradient is f's own (within a tenth of the disagreement), and f's own error is the disagreement
    text = (
        "\nThis gradient is pyzygote's own gradient of f at f's tolerances"
        + (f" (to {apart:.1e} of the references' scale)" if apart else "")
        + f", which differs by {error:.1e} from the references' (they solve {1 / _TIGHTER:g} times tighter): "
        f"the difference is the error of f's ODE solves at reltol={reltol:g}, not of the differentiation"
        + (f" (nor float32 rounding: pyzygote's own float32 gradient is within {own:.1e} of its float64 one)" if own is not None else "")
        + "."
    )
    if error >= 0.5:
        text += (
            " That error is as large as the gradient itself: near an optimum of f the gradient is close to zero, and "
            "what is left of it is the solve's error, so its direction is not to be trusted at this tolerance."
        )
    accept = f", or pass rtol= and fd_rtol= above {error:.1e} to accept the solve's error" if error < 0.5 else ""
    return text + f" To check the gradient, solve f at tighter tolerances (reltol={reltol * _TIGHTER:g}){accept}."


def _dtype_at(tree: Any, path: str) -> Any:
    """The dtype of the leaf of a canonical tree at a path of :func:`_pairs` (``[0]['w']``)."""
    for key in re.findall(r"\[([^\]]*)\]", path):
        tree = tree[int(key)] if isinstance(tree, tuple) else next(v for k, v in tree.items() if repr(k) == key)
    return getattr(tree, "dtype", None)


def _agrees(row: tuple[Any, float, str]) -> bool:
    return row[0] is not None and row[0] <= row[1] and not row[2].startswith("entry")


def _at_kinks(
    row: tuple[float, float, str], grads: Any, reference: Any, kinks: Kinks, floor: float, rtol: float, element_rtol: float
) -> tuple[float, float, str]:
    """A disagreement only at kinks or ties, where the gradient lies between the one-sided
    derivatives, is agreement: the reference there becomes the gradient's own choice."""
    bounds = kinks.bounds()
    if not kinks.separable:  # entries share a switch: only the pieces' convex combinations are valid
        return _in_tie_hull(row, grads, kinks, floor, rtol, element_rtol)
    if kinks.not_probed:
        return (*row[:2], row[2] + (
            " (f holds eigenvalues, singular values or Julia code, whose kinks are found by one-sided differences, "
            "which finite_differences=False turns off: pass finite_differences=True to accept a subgradient at one)"
        ))  # fmt: skip
    chosen: list[str] = []

    def adopt(c: Any, r: Any, b: Any, path: str = "") -> Any:
        if isinstance(r, dict):
            return {k: adopt(c[k], r[k], b[k], f"{path}[{k!r}]") for k in r}
        if isinstance(r, tuple):
            return tuple(adopt(x, y, z, f"{path}[{i}]") for i, (x, y, z) in enumerate(zip(c, r, b)))
        if not isinstance(r, np.ndarray) or not isinstance(b, np.ndarray):
            return r
        low, high = b
        slack = rtol * max(float(np.max(np.abs(r), initial=0.0)), 1e-300)
        inside = (c >= low - slack) & (c <= high + slack) & (np.abs(c - r) > slack)
        for k in np.flatnonzero(inside)[:3]:
            at = tuple(int(i) for i in np.unravel_index(int(k), r.shape))
            chosen.append(f"{_entry(at, path)} is {c.flat[k]:.6g}, between {low.flat[k] + 0.0:.6g} and {high.flat[k] + 0.0:.6g}")
        return np.where(inside, c, r)

    try:
        adopted = adopt(grads, reference, bounds)
    except (TypeError, IndexError, KeyError):  # structures that _paired reports on its own
        return row
    changed = changed_entries(grads, reference, adopted)
    count = sum(float(np.sum(m[0])) for m in _leaves(changed) if m.size)
    scale = max((float(np.max(np.abs(r))) for _, _, r in _paired(reference, reference) if r.size), default=0.0)
    if not chosen or not kinks.jointly_valid(changed, slack=rtol * scale * count):
        return _in_tie_hull(row, grads, kinks, floor, rtol, element_rtol)
    again = _row(grads, adopted, floor, rtol, element_rtol, 100.0 * floor)
    if not _agrees(again):
        return row
    return (
        again[0],
        rtol,
        "agrees at kinks or ties, where the one-sided derivatives differ and any value between them is a valid "
        "(sub)gradient: " + "; ".join(chosen),
    )


def _in_tie_hull(
    row: tuple[float, float, str], grads: Any, kinks: Kinks, floor: float, rtol: float, element_rtol: float
) -> tuple[float, float, str]:
    """A gradient that is a convex combination of the gradients of the pieces of ``f`` meeting at
    a tie (PyTorch's 2/3 to each of a median's three tied values, where JAX gives 2 to one) agrees:
    each piece's is a limit of gradients at nearby points.  Their one-sided derivatives cannot
    tell (moving one tied value either way leaves the median with another)."""
    from pyzygote.directional import convex_weights

    pieces = kinks.pieces()
    if not pieces or len(pieces) < 2:
        return row
    try:
        columns = [_paired(grads, piece) for piece in pieces]
    except ValueError:  # structures that _paired reports on its own
        return row
    point = np.concatenate([c.ravel() for _, c, _ in columns[0]])
    vertices = np.array([np.concatenate([r.ravel() for _, _, r in pairs]) for pairs in columns])
    lam = convex_weights(point, vertices)
    if lam is None:
        return row
    fit = functools.reduce(_add_trees, [_scaled_tree(piece, w) for piece, w in zip(pieces, lam)])
    again = _row(grads, fit, floor, rtol, element_rtol, 100.0 * floor)
    if not _agrees(again):
        return row
    distinct = len({v.tobytes() for v in vertices})
    return (
        again[0],
        rtol,
        f"agrees at a kink or tie: a convex combination of the gradients of the {distinct} pieces of f that meet here "
        "(one for each side its switches can take), each a limit of gradients at nearby points",
    )


def _scaled_tree(tree: Any, w: float) -> Any:
    if isinstance(tree, dict):
        return {k: _scaled_tree(v, w) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_scaled_tree(v, w) for v in tree)
    return tree * w if isinstance(tree, np.ndarray) else tree


def _add_trees(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: _add_trees(a[k], b[k]) for k in a}
    if isinstance(a, tuple):
        return tuple(_add_trees(x, y) for x, y in zip(a, b))
    return a + b if isinstance(a, np.ndarray) else a


def _root_of_zero(f: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """Why the engines' gradient is not finite where ``f`` takes a square root of 0 computed from
    the arguments (user testing: np.linalg.norm at 0 got only 'not finite' and 'no reference could
    check'): that is a kink, not a bug in the gradient checked, and no reference here judges it."""
    from pyzygote.ir import Literal, Var
    from pyzygote.tracing import make_program, to_input_array

    try:
        prog = make_program(f, *args)
        leaves = flatten(args)[0]
        if len(leaves) != len(prog.inputs):
            return ""
        env = {v.uid: to_input_array(x, "an argument") for v, x in zip(prog.inputs, leaves)}
        env.update((v.uid, c) for v, c in zip(prog.constvars, prog.consts))
        moving = {v.uid for v in prog.inputs}
        with np.errstate(all="ignore"):
            for eqn in prog.eqns:
                ins = [a.value if isinstance(a, Literal) else env[a.uid] for a in eqn.inputs]
                out = eqn.prim.impl(*ins, **eqn.params)
                outs = out if eqn.prim.multiple_results else (out,)
                env.update((v.uid, o) for v, o in zip(eqn.outputs, outs))
                if any(isinstance(a, Var) and a.uid in moving for a in eqn.inputs):
                    moving.update(v.uid for v in eqn.outputs)
                    if eqn.prim.name in ("sqrt", "cbrt") and np.any(np.asarray(ins[0]) == 0):
                        break
            else:
                return ""
    except Exception:  # the engines' own calls report what is wrong with f
        return ""
    return (
        f"f takes the {'square' if eqn.prim.name == 'sqrt' else 'cube'} root of 0 here (as np.linalg.norm of a zero vector "
        "does), where it is not differentiable (the norm at 0 is a kink: every vector of length at most 1 is a "
        "subgradient; PyTorch gives 0, JAX NaN), so the engines' gradient is not finite and crosscheck cannot judge a "
        "gradient at this point: check it at a nearby one."
    )


def _not_finite_at(reference: Any, grads: Any) -> str:
    """The first entry where ``reference`` is not finite and ``grads`` is, or ``""``."""
    for path, c, r in _paired(grads, reference):
        bad = ~np.isfinite(r) & np.isfinite(c)
        if np.any(bad):
            at = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), r.shape))
            return f"{_entry(at, path)}: {r.flat[int(np.argmax(bad))]}"
    return ""


def _where_not_finite(first: Any, second: Any) -> Any:
    """``first`` with its entries that are not finite taken from ``second``."""
    if isinstance(first, dict):
        return {k: _where_not_finite(v, second[k]) for k, v in first.items()}
    if isinstance(first, tuple):
        return tuple(_where_not_finite(a, b) for a, b in zip(first, second))
    if isinstance(first, np.ndarray):
        return np.where(np.isfinite(first), first, second)
    return first


def _quietly(differences: Callable[..., Any], f: Callable[..., Any], *args: Any, eps: float) -> Any:
    """Central differences call ``f`` on plain arrays many times: an inner transformation of a new
    function at each call (``pz.grad(lambda x: net(w, x))``, a PINN's) is traced at each, which is
    the differences' doing, not something to warn the user about."""
    import warnings

    from pyzygote.errors import RetraceWarning

    with warnings.catch_warnings(), np.errstate(all="ignore"):  # a step that leaves f's domain is handled
        warnings.simplefilter("ignore", RetraceWarning)
        return differences(f, *args, eps=eps)


def _in_float64(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with floating-point arrays and numbers of lower precision in float64 (``args``
    itself where there are none)."""
    from pyzygote.pytree import unflatten

    leaves, tree = flatten(args)
    low = lambda x: isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind == "f" and x.dtype.itemsize < 8  # noqa: E731
    if not any(low(x) for x in leaves):
        return args
    return unflatten(tree, [np.asarray(x, dtype=np.float64) if low(x) else x for x in leaves])


def _rounding_of(f: Callable[..., Any], args: tuple[Any, ...], args64: tuple[Any, ...]) -> tuple[float | None, float]:
    """How far pyzygote's gradient in the arguments' own precision is from its float64 gradient
    (None where that is not finite), and the float64 gradient's largest entry."""
    from pyzygote.api import gradient

    try:
        pairs = _paired(_canonical(gradient(f, *args, engine="numpy")), _canonical(gradient(f, *args64, engine="numpy")))
    except NonFiniteGradientError:
        return None, 0.0
    scale = max((float(np.max(np.abs(r))) for _, _, r in pairs if r.size), default=0.0)
    return max((float(np.max(np.abs(c - r))) for _, c, r in pairs if c.size), default=0.0), scale


def _within_own_error(
    row: tuple[float, float, str], grads: Any, fd: Any, fd2: Any, floor: float, rtol: float, element_rtol: float
) -> tuple[float | None, float, str]:
    """A disagreement with central differences that their own error explains is no verdict: that
    error is estimated by differences with twice the step (truncation grows fourfold with it, and
    rounding halves), and where the gradient agrees within three times it, the row says so."""
    error = max((float(np.max(np.abs(a - b))) for _, a, b in _paired(_canonical(fd2), fd) if a.size), default=0.0)
    if error <= floor:
        return row
    again = _row(grads, fd, 3.0 * error, rtol, element_rtol, 300.0 * error)
    if again[0] <= rtol and not again[2].startswith("entry"):
        return (
            None,
            rtol,
            f"inconclusive: the gradient differs from them by {row[0]:.1e} of its scale, within their own error "
            f"(with twice the step they change by {error:.1e})",
        )
    return row


def _row(grads: Any, reference: Any, floor: float, rtol: float, element_rtol: float, element_floor: float) -> tuple[float, float, str]:
    diff, note = _compare(grads, reference, floor, rtol, element_rtol, element_floor)
    if not note and not diff <= rtol:  # every entry within element_rtol, the whole not: say where
        note = _largest_difference(grads, reference)
    return diff, rtol, note

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

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.pytree import Static, flatten

__all__ = ["crosscheck", "CrossCheckReport"]


@dataclass
class CrossCheckReport:
    """Largest relative difference of the checked gradient to each reference."""

    rows: list[tuple[str, float | None, float, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(diff is None or diff <= tol for _, diff, tol, _ in self.rows)

    def __str__(self) -> str:
        lines = [f"{'reference':40s} {'max rel. diff':>14s} {'tolerance':>10s}  verdict"]
        for name, diff, tol, note in self.rows:
            if diff is None:
                lines.append(f"{name:40s} {'-':>14s} {'-':>10s}  skipped: {note}")
            else:
                verdict = "agrees" if diff <= tol else "DISAGREES"
                lines.append(f"{name:40s} {diff:14.2e} {tol:10.1e}  {verdict}")
        return "\n".join(lines)


def _leaves(tree: Any, keep_dtype: bool = False) -> list[np.ndarray]:
    leaves, _ = flatten(tree)
    arrays = [_as_numpy(leaf) for leaf in leaves if not isinstance(leaf, Static) and leaf is not None]
    for a in arrays:
        if a.dtype.kind not in "fiu":
            raise TypeError(f"gradients must hold real numbers, got an array of dtype {a.dtype}")
    return arrays if keep_dtype else [a.astype(np.float64) for a in arrays]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "requires_grad"):  # a PyTorch tensor, perhaps on a GPU
        x = x.detach().cpu()
    return np.asarray(x)


def _structure(tree: Any) -> Any:
    """A pytree's structure, lists and tuples alike (JAX and PyTorch return either)."""

    def same(t: Any) -> Any:
        if isinstance(t, tuple) and t and t[0] in ("list", "tuple"):
            return ("sequence", tuple(same(c) for c in t[1]))
        if isinstance(t, tuple) and t and t[0] == "namedtuple":
            return ("sequence", tuple(same(c) for c in t[2]))
        if isinstance(t, tuple) and t and t[0] == "dict":
            return ("dict", t[1], tuple(same(c) for c in t[2]))
        return t

    return same(flatten(tree)[1])


def _relative_difference(candidate: Any, reference: Any) -> float:
    a, b = _leaves(candidate), _leaves(reference)
    if _structure(candidate) != _structure(reference) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ValueError(
            "the gradient to check must have the structure and shapes of the function's arguments "
            f"(dict keys included): got shapes {[x.shape for x in a]}, expected {[y.shape for y in b]}"
        )
    scale = max((float(np.max(np.abs(y))) for y in b if y.size), default=0.0) or 1.0
    return max((float(np.max(np.abs(x - y))) / scale for x, y in zip(a, b) if x.size), default=0.0)


def crosscheck(
    f: Callable[..., Any],
    args: Sequence[Any],
    grads: Sequence[Any],
    *,
    engines: Sequence[str] = ("numpy", "julia"),
    finite_differences: bool = True,
    rtol: float | None = None,
    fd_rtol: float = 1e-5,
    eps: float = 1e-6,
    raise_on_failure: bool = True,
) -> CrossCheckReport:
    """Compare ``grads`` (one entry per argument, like ``pz.gradient``) with independent references.

    Differences are measured relative to the largest entry of each reference
    (so tiny entries do not dominate), within ``rtol`` against the engines:
    1e-7, or 1e-4 when ``grads`` holds float32 arrays.  ``grads`` may hold
    numpy, JAX or PyTorch arrays (tensors that require grad are detached).
    Engines that are not available are reported as skipped.  With
    ``raise_on_failure`` an ``AssertionError`` carrying the report is raised
    when any reference disagrees.
    """
    from pyzygote.api import gradient
    from pyzygote.julia.setup import julia_is_set_up
    from pyzygote.testing import numerical_gradient

    for name, value in (("args", args), ("grads", grads)):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{name} must be a tuple with one entry per argument of f, got {type(value).__name__}")
    if isinstance(engines, str):
        raise TypeError(f"engines must be a tuple of engine names, e.g. ({engines!r},)")
    args = tuple(args)
    grads = tuple(grads)
    if rtol is None:
        rtol = 1e-4 if any(a.dtype == np.float32 for a in _leaves(grads, keep_dtype=True)) else 1e-7
    report = CrossCheckReport()
    for engine in engines:
        name = f"pyzygote {engine} engine" + (" (Zygote.jl)" if engine == "julia" else "")
        if engine == "julia" and not julia_is_set_up():
            report.rows.append((name, None, rtol, "Julia is not set up (pyzygote doctor)"))
            continue
        report.rows.append((name, _relative_difference(grads, gradient(f, *args, engine=engine)), rtol, ""))
    if finite_differences:
        fd = numerical_gradient(f, *args, eps=eps)
        report.rows.append((f"central finite differences (eps={eps:g})", _relative_difference(grads, fd), fd_rtol, ""))
    if raise_on_failure and not report.passed:
        raise AssertionError(f"the gradient disagrees with an independent reference:\n{report}")
    return report

"""A right-hand side whose derivative in the state is infinite at an isolated point it starts from.

The indirect-response PK/PD model doses into the gut, so the central amount is exactly 0 at t0,
and its Hill term ``c ** h`` with ``h < 1`` has ``d/dc = h c ** (h - 1)``, infinite at c = 0
(acceptance testing: Rodas5P, FBDF and KenCarp4 refused to start, and every gradient failed at
t0).  f itself is finite there and the ODE well posed; only ``J_u`` is infinite, at that point.

* A Newton matrix need only approximate ``J_u`` (SciPy's Radau and BDF difference one when not
  given it; the error control, not the Newton matrix, sets the accuracy), so its non-finite
  entries are replaced by one-sided difference quotients of f (:func:`finite_newton_matrix`),
  where f is finite at the point and at the step.  Where f itself is not finite, nothing changes
  and the solve's error names the operation.
* Forward sensitivities integrate ``S' = J_u S + J_p E``.  At t0, ``S`` is 0 in every state the
  initial values do not depend on, and ``J_u S`` is ``inf * 0``.  A term ``J_ij S_jk`` with
  ``S_jk`` exactly 0 is a derivative along a zero direction, 0, as JAX's symbolic zeros make it
  (:func:`zero_aware_jvp`, which also makes ``c ** h`` along ``v`` 0 where ``c = ac / v`` stays 0); it
  is also the limit: ``u_j - u_j(t0)`` and ``S_jk`` grow
  alike (as t for the dose), and ``J_ij`` times that growth is the change of a finite f, which
  tends to 0 (``t ** (h - 1) * t``).  A term with ``S_jk`` nonzero and ``J_ij`` not finite stays
  not finite, and the solve fails as before.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Literal, Program


def _entries(J: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored values of ``J`` (a numpy array or a scipy.sparse CSC/CSR matrix) and their rows and columns."""
    if isinstance(J, np.ndarray):
        rows, cols = np.indices(J.shape)
        return J.reshape(-1), rows.reshape(-1), cols.reshape(-1)
    counts = np.diff(J.indptr)
    outer = np.repeat(np.arange(len(counts)), counts)
    if J.format == "csc":
        return J.data, J.indices, outer
    if J.format == "csr":
        return J.data, outer, J.indices
    coo = J.tocoo()
    return coo.data, coo.row, coo.col


def finite_newton_matrix(J: Any, f: Callable[[np.ndarray], np.ndarray], u: np.ndarray) -> Any:
    """``J`` (df/du at ``u``) with its NaN and inf entries replaced by one-sided difference
    quotients of ``f``: forward, else backward where f is not finite forward (sqrt(x) at 0 is
    defined only above); ``J`` unchanged if it is finite or f is not finite at ``u``, and an
    entry left as it was where neither quotient is finite (the solve then fails and says why)."""
    if np.all(np.isfinite(J if isinstance(J, np.ndarray) else J.data)):
        return J  # every Newton matrix of every implicit solve comes through here: nothing more
    data, rows, cols = _entries(J)
    bad = ~np.isfinite(data)
    with np.errstate(all="ignore"):
        f0 = np.asarray(f(u), dtype=float)
    if not np.all(np.isfinite(f0)):
        return J
    J = J.copy()
    data = _entries(J)[0]
    for j in np.unique(cols[bad]):
        at = bad & (cols == j)
        # the step of SciPy's num_jac: the square root of machine epsilon, relative to u_j
        step = np.sqrt(np.finfo(float).eps) * max(1.0, abs(float(u[j])))
        for h in (step, -step):
            v = np.array(u, dtype=float)
            v[j] += h
            with np.errstate(all="ignore"):
                column = (np.asarray(f(v), dtype=float) - f0) / (v[j] - u[j])
            if np.all(np.isfinite(column[rows[at]])):
                data[at] = column[rows[at]]
                break
    return J


def zero_aware_jvp(prog: Program, primals: Sequence[Any], tangents: Sequence[Any]) -> list[Any]:
    """The tangents of ``prog``'s outputs, as :func:`pyzygote.transforms.jvp.jvp_eval` gives them
    (``None`` for zero), except that an entry of an elementwise operation whose operands' tangents
    are all exactly 0 there has tangent 0, also where the operation's derivative is NaN or inf:
    ``c ** h`` at c = 0 along a direction that leaves c at 0 (``c = ac / v`` along v, with ac = 0),
    which ``jvp_eval`` makes ``0 * inf``, NaN.  A number of the program at a time: a fallback."""
    from pyzygote.primitives.elementwise import ELEMENTWISE

    env: dict[int, tuple[Any, Any]] = {v.uid: (x, t) for v, x, t in zip(prog.inputs, primals, tangents)}
    env.update((v.uid, (c, None)) for v, c in zip(prog.constvars, prog.consts))

    def read(a: Any) -> tuple[Any, Any]:
        return (a.value, None) if isinstance(a, Literal) else env[a.uid]

    with np.errstate(all="ignore"):
        for eqn in prog.eqns:
            xs, ts = zip(*(read(a) for a in eqn.inputs)) if eqn.inputs else ((), ())
            if all(t is None for t in ts):
                out, tout = eqn.prim.bind(*xs, **eqn.params), None
            else:
                if eqn.prim.jvp is None:
                    raise UnsupportedOperationError(f"primitive {eqn.prim.name} has no JVP rule")
                if eqn.prim.name not in ELEMENTWISE:
                    out, tout = eqn.prim.jvp(list(xs), list(ts), **eqn.params)
                else:
                    # one operand's contribution at a time (the rule is linear in the tangents),
                    # each 0 where that operand's tangent is 0
                    out, tout = eqn.prim.bind(*xs, **eqn.params), None
                    for i, t in enumerate(ts):
                        if t is None:
                            continue
                        alone = [None] * len(ts)
                        alone[i] = t
                        _, part = eqn.prim.jvp(list(xs), alone, **eqn.params)
                        if part is not None:
                            part = np.where(np.asarray(t) == 0, 0.0, part).astype(np.result_type(part))
                            tout = part if tout is None else tout + part
            outs = out if eqn.prim.multiple_results else (out,)
            touts = tout if eqn.prim.multiple_results and tout is not None else (tout,) * (len(outs) if tout is None else 1)
            for v, o, t in zip(eqn.outputs, outs, touts):
                env[v.uid] = (o, t if v.aval.is_float else None)
    return [read(a)[1] for a in prog.outputs]

"""ODE solving as differentiable primitives.

``odesolve`` maps ``(u0, p)`` to the solution at the save times.  Its JVP is
``odesolve_tangent``, linear in the tangents ``(du0, dp)`` and evaluated with
forward sensitivities; the transpose of that is ``odesolve_vjp``, which uses
the ``sensealg`` chosen by the user (forward sensitivities or a continuous
adjoint, see :mod:`pyzygote.ode.sensitivity`).  Second derivatives treat the
forward-sensitivity system as an ODE of its own.  On the Julia engine the same
equation becomes one ``solve`` call that Zygote differentiates through
SciMLSensitivity.

>>> import numpy as np, pyzygote as pz
>>> t = np.array([0.0, 1.0])
>>> loss = lambda k: pz.odesolve(lambda u, p, t: -p * u, np.array([1.0]), t, k, reltol=1e-10, abstol=1e-10)[-1, 0]
>>> round(float(pz.grad(loss)(np.array([1.0]))[0]), 6), round(float(-np.exp(-1.0)), 6)
(-0.367879, -0.367879)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, Callable, Iterator

import numpy as np

from pyzygote.errors import NonFiniteODEInputError, SolverError, TracerBoolError, UnsupportedOperationError
from pyzygote.ir import Aval, Var
from pyzygote.ode import forward_memo, sensitivity
from pyzygote.ode.layout import Layout, constant_entries, leaf_values
from pyzygote.ode.rhs import RHS, lifted_constant_entries, lifted_data, with_lifted
from pyzygote.ode.sensitivity import Options
from pyzygote.ode.solvers import algorithm, check_solver_name, runs_on_numpy
from pyzygote.primitive import Primitive, Undefined, aval_of, zeros
from pyzygote.tracer import Tracer

__all__ = ["odesolve", "check_times"]


def _out_aval(u0: Aval, p: Aval, *, t: np.ndarray, **_: Any) -> Aval:
    return Aval((len(t), u0.shape[0]), u0.dtype)


def _check_values(u0: np.ndarray, p: np.ndarray, solver: str | None = None, rhs: Any = None) -> None:
    """NaN or inf in the starting state or the parameters of a solve, refused, in the same words as
    a plain call (Layout.of): the entry named by u0's shape and p's keys, or as a value f reads from
    its closure (see Layout.locate_in_p).  User testing: inside pz.gradient a NaN weight of a nested
    dict p printed the whole flat vector (89 lines) and named no leaf.  A ``solver`` ("pz.nlsolve")
    prefixes the message.  A derived system (a Hessian's tangent system) names entries of its base's
    u0 and p by the base's layout, and the others as its directions."""
    for name, v in (("u0", u0), ("p", p)):
        if not np.all(np.isfinite(v)):
            flat = np.ravel(np.asarray(v, dtype=float))
            i = int(np.argwhere(~np.isfinite(flat))[0][0])
            while rhs is not None and getattr(rhs, "layout", None) is None and getattr(rhs, "base", None) is not None:
                if i >= (rhs.base.n if name == "u0" else rhs.base.m):
                    break
                rhs = rhs.base
            layout = getattr(rhs, "layout", None)
            if layout is None:
                what = "the directions of a derivative" if getattr(rhs, "base", None) is not None else "the flat vector the solver sees"
                leaf, at = f"{name} ({what})", [i]
            elif name == "p":
                leaf, at = layout.locate_in_p(i)
            else:
                # a derived system's state starts with its base's: i indexes into that
                leaf, at = "u0", ([int(j) for j in np.unravel_index(i, layout.u_shape)] if layout.u_shape else None)
            entry = f"entry {at} is" if at is not None else "it is"
            prefix = f"{solver}: " if solver else ""
            raise NonFiniteODEInputError(f"{prefix}{leaf} contains NaN or inf: {entry} {float(flat[i])!r}.")


def _naming_the_point(impl: Callable[..., Any]) -> Callable[..., Any]:
    """``impl`` of a solve primitive whose SolverError shows the starting state and parameters
    it was solved at (user testing: a fit whose line search stepped to absurd parameters ended
    in MaxIters with no word of them)."""

    @functools.wraps(impl)
    def solve(u0: Any, p: Any, *args: Any, **params: Any) -> Any:
        try:
            return impl(u0, p, *args, **params)
        except SolverError as e:
            if e.args and isinstance(e.args[0], str) and "This solve started from" not in e.args[0]:
                # p leaf by leaf, by its names, when it was a dict or other container (user testing: a
                # dict of 77 rates shown as one flat vector); else flat, as the solver sees it
                layout = getattr(params.get("rhs"), "layout", None)
                flat = np.ravel(np.asarray(p, dtype=float))
                m = layout.m if layout is not None else flat.size
                own, captured = flat[:m], flat[m:]
                named = layout.named_p(own) if layout is not None and m else None
                with_p = named or (f"p = {_short(own)}" if m else "p = None" if captured.size else "")
                if captured.size:
                    # values f reads from its closure, shown as such (user testing: the captured state
                    # of a backward Euler step, with p=None, read "with p = [1.38]")
                    with_p += f", and the values f reads from its closure (captured, not passed in p) = {_short(captured)}"
                with_p = f" with {with_p}" if with_p else ""
                e.args = (f"{e.args[0]} This solve started from u0 = {_short(u0)}{with_p}.", *e.args[1:])
            raise

    return solve


def _short(v: Any) -> str:
    """A vector as a message shows it: its first entries when it is long."""
    v = np.ravel(np.asarray(v, dtype=float))
    shown = ", ".join(f"{x:.6g}" for x in v[:8])
    return f"[{shown}]" if v.size <= 8 else f"[{shown}, ... ({v.size} entries)]"


# --- the solve ----------------------------------------------------------------------------
odesolve_p = Primitive("odesolve")
odesolve_p.def_abstract_eval(_out_aval)


@odesolve_p.def_impl
@_naming_the_point
def _odesolve_impl(
    u0: Any, p: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, fixed: tuple[int, ...] = (), for_adjoint: bool = False
) -> np.ndarray:
    u0, p = np.asarray(u0, dtype=float), np.asarray(p, dtype=float)
    _check_values(u0, p, rhs=rhs)
    if not for_adjoint:
        return sensitivity.solve_states(rhs, u0, p, t, opts).u
    # an adjoint will read this solution between save times: solved once, with dense output
    res = sensitivity.solve_states(rhs, u0, p, t, opts, dense=True)
    forward_memo.keep(rhs, u0, p, t, opts, res)
    return res.u


def _odesolve_jvp(primals: Any, tangents: Any, *, rhs: RHS, for_adjoint: bool = False, **params: Any) -> Any:
    u0, p = primals
    tu0, tp = (zeros(aval_of(x)) if g is None else g for x, g in zip(primals, tangents))
    # Only the directions with a tangent are followed: a constant u0, or constant entries
    # of p, cost nothing.
    wrt = (tangents[0] is not None, tangents[1] is not None)
    cols = _wanted_columns(rhs, wrt, params.get("fixed", ()))
    # the save times the program reads: found only if auto's choice turns on them
    saves = lambda: _saves_read(rhs, params["t"])  # noqa: E731
    mode = sensitivity.resolve_sensealg(params["sensealg"], rhs.n, rhs.m, len(cols), rhs=rhs, cols=cols, saves=saves, times=len(params["t"]), tstops=len(params["opts"].tstops), alg=params["opts"].alg)
    if mode == "forward":
        # One solve gives the states and their sensitivities; the tangent is a
        # contraction with them, so reverse mode needs no second solve.
        _warn_if_large(rhs, len(cols))
        U, S = odesolve_sens_p.bind(u0, p, rhs=rhs, cols=cols, **params)
        return U, np.einsum("tik,k->ti", S, _along(cols, rhs, tangents))
    ans = odesolve_p.bind(u0, p, rhs=rhs, **({"for_adjoint": True} if mode == "adjoint" else {}), **params)
    return ans, odesolve_tangent_p.bind(u0, p, tu0, tp, rhs=rhs, **params)


def _saves_read(rhs: RHS, t: np.ndarray) -> int:
    """The save times at which an adjoint for this solve would restart: those whose rows the
    program being differentiated reads (pyzygote.ode.rows_read), or all of them when the
    solve is not differentiated as an equation of a program."""
    from pyzygote.ode.rows_read import saves_read
    from pyzygote.transforms.jvp import equation_being_differentiated

    prog, eqn = equation_being_differentiated() or (None, None)
    if eqn is None or eqn.prim is not odesolve_p or eqn.params.get("rhs") is not rhs or eqn.params.get("t") is not t:
        return len(t)
    return saves_read(prog, eqn)


def _along(cols: tuple[int, ...], rhs: RHS, vectors: Any) -> Any:
    """The entries ``cols`` of ``concatenate(vectors)``, a ``None`` vector being absent from ``cols``."""
    v = [g for g in vectors if g is not None]
    if not v:
        return np.zeros(0)
    first = 0 if vectors[0] is not None else rhs.n
    picked = np.asarray(cols, dtype=np.int64) - first
    whole = np.concatenate(v)
    return whole if len(picked) == whole.shape[0] else whole[picked]


odesolve_p.jvp = _odesolve_jvp
odesolve_p.jvp_reads_uses = True  # the save times the loss reads weigh on sensealg="auto"

# --- states with their forward sensitivities (the "forward" sensealg) ------------------
odesolve_sens_p = Primitive("odesolve_sens", multiple_results=True)


# ``cols`` selects the directions of ``(u0, p)`` (indices into their concatenation) whose
# sensitivities are solved for: S has shape (len(t), n, len(cols)).


@odesolve_sens_p.def_abstract_eval
def _sens_aval(u0: Aval, p: Aval, *, cols: tuple[int, ...], **params: Any) -> tuple[Aval, Aval]:
    U = _out_aval(u0, p, **params)
    return U, Aval(U.shape + (len(cols),), u0.dtype)


@odesolve_sens_p.def_impl
@_naming_the_point
def _sens_impl(u0: Any, p: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, cols: tuple[int, ...], fixed: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    u0, p = np.asarray(u0, dtype=float), np.asarray(p, dtype=float)
    _check_values(u0, p, rhs=rhs)
    return sensitivity.forward_sensitivities(rhs, u0, p, t, opts, cols)


# --- the linearization used with adjoint sensealgs -------------------------------------------------------------------------------------
odesolve_tangent_p = Primitive("odesolve_tangent")
odesolve_tangent_p.def_abstract_eval(lambda u0, p, tu0, tp, **params: _out_aval(u0, p, **params))


@odesolve_tangent_p.def_impl
@_naming_the_point
def _tangent_impl(u0: Any, p: Any, tu0: Any, tp: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, fixed: tuple[int, ...] = ()) -> np.ndarray:
    u0, p = np.asarray(u0, dtype=float), np.asarray(p, dtype=float)
    _check_values(u0, p, rhs=rhs)
    # One directional sensitivity solved with the state: 2n equations, not n (n + m).
    z0 = np.concatenate([u0, np.asarray(tu0, dtype=float)])
    q = np.concatenate([p, np.asarray(tp, dtype=float)])
    return sensitivity.solve_states(rhs.tangent_system(), z0, q, t, opts).u[:, rhs.n :]


# Directions are solved together in one system of n (1 + k) equations, whose right-hand side
# takes all k columns in each operation (RHS.tangent_system).  The solver's own work per step
# grows with the equations, but less than k separate solves cost: a 6-subject PK/PD Hessian
# (21 directions of a 720-equation sensitivity system) went from 28 s to 3.6 s, a 30-cell heat
# equation's from 1.5 to 0.3 s with Tsit5 and 2.4 to 0.7 s with Rodas5P.
BATCH_EQUATIONS = 40_000
# LSODA takes a dense Jacobian, whose LU factorization grows with the cube of the equations: an
# 80-cell heat equation's Hessian took 539 s batched, 31 s one direction at a time.  (alg="auto"
# solves derived systems above sensitivity.DENSE_SENSITIVITY_LIMIT equations with BDF and a
# sparse Jacobian instead, so batches that large are solved together: 2.5 times faster for a
# 20-state, 31-parameter Hessian, fuzzer.)
BATCH_EQUATIONS_DENSE = 400


def _tangent_batch(args: Any, batched: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, fixed: tuple[int, ...] = ()) -> Any:
    u0, p, tu0, tp = args
    if batched[0] or batched[1]:
        return None  # a batch of primal points: one solve each
    k = len(tu0) if batched[2] else len(tp)
    size = rhs.n * (1 + k)
    dense = algorithm(opts.alg).scipy == "LSODA" and not (opts.alg == "auto" and size > sensitivity.DENSE_SENSITIVITY_LIMIT)
    if size > (BATCH_EQUATIONS_DENSE if dense else BATCH_EQUATIONS):
        return None  # one solve per direction: see BATCH_EQUATIONS
    u0, p = np.asarray(u0, dtype=float), np.asarray(p, dtype=float)
    _check_values(u0, p, rhs=rhs)
    # The k directions as the columns of S0 and D: one solve of n (1 + k) equations.
    S0 = np.asarray(tu0, dtype=float).T if batched[2] else np.repeat(np.asarray(tu0, dtype=float)[:, None], k, axis=1)
    D = np.asarray(tp, dtype=float).T if batched[3] else np.repeat(np.asarray(tp, dtype=float)[:, None], k, axis=1)
    z0, q = np.concatenate([u0, np.ravel(S0)]), np.concatenate([p, np.ravel(D)])
    Z = sensitivity.solve_states(rhs.tangent_system(k), z0, q, t, opts).u
    return np.moveaxis(np.reshape(Z[:, rhs.n :], (len(t), rhs.n, k)), 2, 0)


odesolve_tangent_p.batch = _tangent_batch


@odesolve_tangent_p.def_transpose
def _tangent_transpose(ct: Any, u0: Any, p: Any, tu0: Any, tp: Any, **params: Any) -> tuple[Any, ...]:
    if isinstance(u0, Undefined) or isinstance(p, Undefined):
        raise TypeError("odesolve_tangent is linear only in its tangents")
    # A tangent that is a constant (the zero of a constant u0) needs no cotangent: its
    # sensitivities are then left out of forward-mode products and second derivatives.
    wrt = (isinstance(tu0, Undefined), isinstance(tp, Undefined))
    ct_u0, ct_p = odesolve_vjp_p.bind(u0, p, ct, wrt=wrt, **params)
    return None, None, ct_u0 if wrt[0] else None, ct_p if wrt[1] else None


# --- second order --------------------------------------------------------------------------
# The forward-sensitivity system is itself an ODE in z = [u, vec(S)] (RHS.sensitivity_system),
# so the tangent of S is the tangent of an ordinary solve of that system.  odesolve_tangent and
# odesolve_vjp are contractions with S whatever the sensealg, and differentiate through it.
def _tangents(primals: Any, tangents: Any) -> list[Any]:
    return [zeros(aval_of(x)) if g is None else g for x, g in zip(primals, tangents)]


def _sens_jvp(
    primals: Any, tangents: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, cols: tuple[int, ...] | None = None, fixed: tuple[int, ...] = ()
) -> Any:
    u0, p = primals
    _warn_kinks_at_second_order(rhs)
    tu0, tp = _tangents(primals, tangents)
    cols = rhs.columns(cols)
    n, k = rhs.n, len(cols)
    system = rhs.sensitivity_system(cols)
    z0 = np.concatenate([u0, rhs.initial_sensitivities(cols)])
    tz0 = np.concatenate([tu0, np.zeros(n * k)])
    params = {"rhs": system, "t": t, "opts": opts, "sensealg": sensealg, **({"fixed": fixed} if fixed else {})}
    Z = odesolve_p.bind(z0, p, **params)
    tZ = odesolve_tangent_p.bind(z0, p, tz0, tp, **params)
    split = lambda z: (z[:, :n], np.reshape(z[:, n:], (len(t), n, k)))  # noqa: E731
    return split(Z), split(tZ)


# Both rules take their value from the same S as their tangent: no further solve.
def _tangent_jvp(primals: Any, tangents: Any, *, rhs: RHS, **params: Any) -> Any:
    u0, p, tu0, tp = primals
    a, b, c, d = _tangents(primals, tangents)
    (_, S), (_, dS) = _sens_jvp((u0, p), (a, b), rhs=rhs, **params)
    v = np.concatenate([tu0, tp])
    out = np.einsum("tik,k->ti", S, v)
    return out, np.einsum("tik,k->ti", S, np.concatenate([c, d])) + np.einsum("tik,k->ti", dS, v)


def gradient_directions_prefer_forward_mode(prog: Any, differentiated: set[int], directions: int) -> bool:
    """Whether a scalar loss's gradient in ``directions`` input entries is cheaper by forward mode
    over the whole program (one tangent solve carrying every direction) than by reverse mode.

    So when ``sensealg="auto"`` would take the adjoint for one of its solves (more than
    ``AUTO_FORWARD_DIRECTIONS`` followed entries of ``u0`` and ``p``) while the loss has at most
    that many parameters: a starting state computed from the parameters (a steady geotherm of 60
    cells from 5 parameters, user testing) made 65 directions of 5, and the adjoint took 370 ms a
    gradient where forward mode over the program took 115 ms.  ``differentiated`` holds the ids
    of the variables computed from the differentiated inputs.  A solve with an explicit sensealg
    keeps reverse mode, as asked.
    """
    from pyzygote.ode.rows_read import saves_read

    if directions > sensitivity.AUTO_FORWARD_DIRECTIONS:
        return False
    solves = [e for e in prog.eqns if e.prim.name.startswith("odesolve")]
    if not solves or any(e.prim is not odesolve_p or e.params["sensealg"] != "auto" for e in solves):
        return False
    # Tangents through the multistep solvers (LSODA, and BDF, which alg="auto" takes for large
    # systems) come out far less accurate than their tolerance, the adjoint's not (review: 8e-6
    # against 3e-8 at reltol=1e-8 on a 300-cell heat equation; 2.7e-6 against 3e-8 on a 60-cell
    # one; FBDF 1.1e-5 against 8e-8); forward mode would take them through every solve.
    if any(e.params["opts"].alg == "auto" or algorithm(e.params["opts"].alg).scipy in ("LSODA", "BDF") for e in solves):
        return False
    for e in solves:
        rhs = e.params["rhs"]
        wrt = (isinstance(e.inputs[0], Var) and e.inputs[0].uid in differentiated, isinstance(e.inputs[1], Var) and e.inputs[1].uid in differentiated)
        cols = _wanted_columns(rhs, wrt, e.params.get("fixed", ()))
        if len(cols) > directions and sensitivity.resolve_sensealg(
            "auto", rhs.n, rhs.m, len(cols), rhs=rhs, cols=cols, saves=lambda e=e: saves_read(prog, e), times=len(e.params["t"]), tstops=len(e.params["opts"].tstops), alg=e.params["opts"].alg
        ) == "adjoint" and not sensitivity._large_implicit(e.params["opts"].alg, rhs.n):
            return True
    return False


def _wanted_columns(rhs: RHS, wrt: tuple[bool, bool], fixed: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The directions of ``(u0, p)`` to follow: u0's if ``wrt[0]``, and p's entries but the ``fixed`` ones if ``wrt[1]``."""
    n, m = rhs.n, rhs.m
    held = set(fixed)
    return (tuple(range(n)) if wrt[0] else ()) + (tuple(n + i for i in range(m) if i not in held) if wrt[1] else ())


def _split_gradient(g: Any, rhs: RHS, cols: tuple[int, ...]) -> tuple[Any, Any]:
    """``(g_u0, g_p)`` from the entries ``g`` of the directions ``cols``, zeros for the others."""
    n, m = rhs.n, rhs.m
    if cols == tuple(range(n + m)):
        return g[:n], g[n:]
    # [g, zeros] read through the permutation that puts column j of g at position cols[j].
    where = np.full(n + m, len(cols), dtype=np.int64)
    where[list(cols)] = np.arange(len(cols))
    full = np.concatenate([g, np.zeros(1)])[where]
    return full[:n], full[n:]


def _vjp_jvp(primals: Any, tangents: Any, *, rhs: RHS, wrt: tuple[bool, bool], **params: Any) -> Any:
    u0, p, ct = primals
    a, b, dct = _tangents(primals, tangents)
    cols = _wanted_columns(rhs, wrt, params.get("fixed", ()))
    # the sensealg the gradient itself took (for an implicit solver, its size decides: _large_implicit;
    # a large one with few directions counts as the adjoint here, its save times not weighed)
    mode = sensitivity.resolve_sensealg(params["sensealg"], rhs.n, rhs.m, len(cols), alg=params["opts"].alg)
    if _second_order_by_adjoint(rhs.n, len(cols), params["opts"], mode):
        _warn_kinks_at_second_order(rhs)
        g = odesolve_vjp_p.bind(u0, p, ct, rhs=rhs, wrt=wrt, **params)
        h = odesolve_hvp_p.bind(u0, p, ct, a, b, dct, rhs=rhs, wrt=wrt, **{**params, "sensealg": mode, "opts": _hvp_options(params["opts"])})
        return g, (h[: rhs.n], h[rhs.n :])
    (_, S), (_, dS) = _sens_jvp((u0, p), (a, b), rhs=rhs, cols=cols, **params)
    g = np.einsum("ti,tik->k", ct, S)
    dg = np.einsum("ti,tik->k", dct, S) + np.einsum("ti,tik->k", ct, dS)
    return _split_gradient(g, rhs, cols), _split_gradient(dg, rhs, cols)


odesolve_sens_p.jvp = _sens_jvp
odesolve_tangent_p.jvp = _tangent_jvp


# --- second order by adjoint: Hessian-vector products without second-order sensitivities --------
# The tangent of odesolve_vjp(u0, p, ct) along (a, b, dct) is H v + S^T dct, with H the Hessian
# of sum(ct * u) in (u0, p), v = (a, b) and S the sensitivities: the gradient in (u0, p) of
# sum(dct * u + ct * s), s the tangent of u along v.  That is one adjoint solve of the tangent
# system [u, s] (2n states, parameters [p, b]), whose gradient's first halves are the answer.
# Forward over forward instead solves n x len(cols) second-order sensitivities per direction:
# a Hessian over a neural ODE's 354 weights (2 states) followed 708 columns through the network
# in each direction, where the adjoint needs one vector-Jacobian product of the tangent system.
odesolve_hvp_p = Primitive("odesolve_hvp")
odesolve_hvp_p.def_abstract_eval(lambda u0, p, ct, a, b, dct, **params: Aval((u0.shape[0] + p.shape[0],), u0.dtype))

# Second derivatives through an adjoint sensealg take the adjoint of the tangent system where
# forward over forward would follow at least this many second-order sensitivities (states x
# directions) per direction, and more than 16 directions.  Timed here: pyzygote's own RK stepper
# (Tsit5, DP5) gains from about 200 (a 2-state neural ODE with 122 weights: 0.55 s against 2.2 s),
# SciPy's DOP853 (Vern7, Vern9), Radau and BDF from about 400 (Vern7 broke even at 202 weights;
# Rodas5P with 20 states and 20 parameters at 400, 2.6 times faster with 40).
HVP_BY_ADJOINT_EQUATIONS = {"RK45": 200, "DOP853": 400, "Radau": 400, "BDF": 400}
HVP_BY_ADJOINT_COLUMNS = 16
# alg="auto": forward over forward goes through LSODA, which is quick on small systems (review: a
# 12-state diffusion in 36 directions, 432 second-order sensitivities per direction, 0.57 s against
# 1.0 s by the adjoint with Rodas5P) and slow on larger ones (20 states in 60: 5.6 s against 2.0 s).
HVP_BY_ADJOINT_AUTO = 800


def _second_order_by_adjoint(n: int, columns: int, opts: Options, mode: str) -> bool:
    """Whether second derivatives take the adjoint of the tangent system (:data:`odesolve_hvp_p`).
    Not with LSODA, which takes only dense Jacobians, of all the copies' equations: alg="auto"
    solves it with Rodas5P (:func:`_hvp_options`)."""
    if mode in ("adjoint", "backsolve") and sensitivity._large_implicit(opts.alg, n):
        # A sparse state Jacobian: both routes factorize one state block (pyzygote.ode.block_lu),
        # but forward over forward integrates n (1 + k)^2 equations where the copies of the
        # tangent system have 2 n k. 2-D reaction-diffusion grids of 196 and 400 states in 4 to
        # 12 parameters: 2.3 to 6.5 times faster by the adjoint, with Rodas5P and FBDF.
        return True
    least = HVP_BY_ADJOINT_AUTO if opts.alg == "auto" else HVP_BY_ADJOINT_EQUATIONS.get(algorithm(opts.alg).scipy)
    return mode in ("adjoint", "backsolve") and least is not None and columns > HVP_BY_ADJOINT_COLUMNS and n * columns >= least


def _hvp_options(opts: Options) -> Options:
    """alg="auto" solves the adjoint of the tangent system with Rodas5P, stiff or not: forward over
    forward through LSODA followed n x k second-order sensitivities per column.  A 100-cell heat
    equation's Hessian in 102 parameters (user testing) took 83 s that way and 18 s so; a neural
    ODE's in 352 weights, 28 s and 18 s, and closer to the exact Hessian (1.1e-7 against 3.9e-7
    at reltol=1e-7).  FBDF was faster on the heat equation (8 s) but 1.5e-6 off on the neural
    ODE: with many save times its adjoint is less accurate than its tolerance."""
    return dataclasses.replace(opts, alg="Rodas5P") if opts.alg == "auto" else opts


def _mask(rhs: RHS, wrt: tuple[bool, bool], fixed: tuple[int, ...]) -> np.ndarray:
    """1 at the entries of (u0, p) whose derivatives are wanted, 0 elsewhere."""
    mask = np.zeros(rhs.n + rhs.m)
    mask[list(_wanted_columns(rhs, wrt, fixed))] = 1.0
    return mask


def _on_the_tangent_system(u0: Any, p: Any, ct: Any, a: Any, b: Any, dct: Any) -> tuple[Any, Any, Any]:
    """The initial state, parameters and cotangent of the tangent system whose gradient holds ``H v + S^T dct``."""
    return np.concatenate([u0, a]), np.concatenate([p, b]), np.concatenate([dct, ct], axis=-1)


@odesolve_hvp_p.def_impl
@_naming_the_point
def _hvp_impl(
    u0: Any, p: Any, ct: Any, a: Any, b: Any, dct: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, wrt: tuple[bool, bool], fixed: tuple[int, ...] = ()
) -> np.ndarray:
    u0, p, ct, a, b, dct = (np.asarray(x, dtype=float) for x in (u0, p, ct, a, b, dct))
    _check_values(u0, p, rhs=rhs)
    z0, q, c = _on_the_tangent_system(u0, p, ct, a, b, dct)
    gz, gq = sensitivity.vjp(rhs.tangent_system(1), z0, q, t, c, opts, sensealg)
    return np.concatenate([gz[: rhs.n], gq[: rhs.m]]) * _mask(rhs, wrt, fixed)


def _hvp_batch(
    args: Any, batched: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, wrt: tuple[bool, bool], fixed: tuple[int, ...] = ()
) -> Any:
    """k directions as k copies of the tangent system in one adjoint solve (RHS.copies)."""
    if any(isinstance(x, Tracer) for x in args) or algorithm(opts.alg).scipy not in HVP_BY_ADJOINT_EQUATIONS:
        return None
    k = next(np.shape(x)[0] for x, flag in zip(args, batched) if flag)
    n, m = rhs.n, rhs.m
    U0, P, CT, A, B, DCT = (np.asarray(x, dtype=float) if flag else np.broadcast_to(np.asarray(x, dtype=float), (k, *np.shape(x))) for x, flag in zip(args, batched))
    for u0, p in zip(U0, P):
        _check_values(u0, p, rhs=rhs)
    # Copy j's state, parameters and cotangent: row j of Z0 (k, 2n) and Q (k, 2m), C[j] (times, 2n).
    Z0, Q, C = np.concatenate([U0, A], axis=1), np.concatenate([P, B], axis=1), np.concatenate([DCT, CT], axis=2)
    copies = rhs.tangent_system(1).copies(k)
    gz, gq = sensitivity.vjp(copies, np.ravel(Z0), np.ravel(Q), t, np.reshape(np.moveaxis(C, 0, 1), (len(t), k * 2 * n)), opts, sensealg)
    return np.concatenate([np.reshape(gz, (k, 2 * n))[:, :n], np.reshape(gq, (k, 2 * m))[:, :m]], axis=1) * _mask(rhs, wrt, fixed)


odesolve_hvp_p.batch = _hvp_batch


@odesolve_hvp_p.def_transpose
def _hvp_transpose(c: Any, u0: Any, p: Any, ct: Any, a: Any, b: Any, dct: Any, *, rhs: RHS, wrt: tuple[bool, bool], **params: Any) -> tuple[Any, ...]:
    if any(isinstance(x, Undefined) for x in (u0, p, ct)):
        raise TypeError("odesolve_hvp is linear only in its directions (a, b, dct)")
    n = rhs.n
    c = c * _mask(rhs, wrt, params.get("fixed", ()))
    # H is symmetric: its transpose is itself, applied to the cotangent.
    want = (isinstance(a, Undefined), isinstance(b, Undefined))
    h = odesolve_hvp_p.bind(u0, p, ct, c[:n], c[n:], zeros(aval_of(ct)), rhs=rhs, wrt=want, **params) if any(want) else None
    # S^T dct transposes to S c: the tangent of u along c.
    s = odesolve_tangent_p.bind(u0, p, c[:n], c[n:], rhs=rhs, **params) if isinstance(dct, Undefined) else None
    return None, None, None, h[:n] if want[0] else None, h[n:] if want[1] else None, s


def _hvp_jvp(primals: Any, tangents: Any, *, rhs: RHS, wrt: tuple[bool, bool], fixed: tuple[int, ...] = (), **params: Any) -> Any:
    """Third order: the output is the first halves of the tangent system's vector-Jacobian
    product, so its tangent is theirs (odesolve_vjp's rule, on the tangent system)."""
    n, m = rhs.n, rhs.m
    inner = _on_the_tangent_system(*primals)
    d = _tangents(primals, tangents)
    d_inner = _on_the_tangent_system(*d)
    (gz, gq), (tz, tq) = _vjp_jvp(inner, d_inner, rhs=rhs.tangent_system(1), wrt=(True, True), **params)
    mask = _mask(rhs, wrt, fixed)
    return np.concatenate([gz[:n], gq[:m]]) * mask, np.concatenate([tz[:n], tq[:m]]) * mask


odesolve_hvp_p.jvp = _hvp_jvp

# --- reverse mode: the sensealg's vector-Jacobian product ----------------------------------------
odesolve_vjp_p = Primitive("odesolve_vjp", multiple_results=True)
odesolve_vjp_p.def_abstract_eval(lambda u0, p, ct, **params: (u0, p))


# ``wrt``: whether the cotangents of u0 and of p are used (the other is returned as zeros).
@odesolve_vjp_p.def_impl
@_naming_the_point
def _vjp_impl(
    u0: Any, p: Any, ct: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, wrt: tuple[bool, bool], fixed: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    u0, p = np.asarray(u0, dtype=float), np.asarray(p, dtype=float)
    _check_values(u0, p, rhs=rhs)
    return sensitivity.vjp(rhs, u0, p, t, np.asarray(ct, dtype=float), opts, sensealg, _wanted_columns(rhs, wrt, fixed))


odesolve_vjp_p.jvp = _vjp_jvp


# --- the public function -------------------------------------------------------------------------
_TIMES_FROM_P = (
    "To fit a time scale T, solve on s = t / T with the right-hand side multiplied by T. To fit a lag or an "
    "onset, make the switch smooth in the right-hand side, e.g. dose * scipy.special.expit((t - p['lag']) / w): "
    "a hard switch (np.where(t >= p['lag'], ...)) has a zero derivative with respect to the lag"
)


def _traced(x: Any) -> bool:
    """Whether ``x`` is or holds a traced value: a list or tuple of them, or the object array numpy
    makes of them (np.array([s]) with s traced: user testing found it refused as "must be a 1-D
    array of finite times, got array([Tracer...])", which did not say why)."""
    if isinstance(x, Tracer):
        return True
    if isinstance(x, (list, tuple)):
        return any(_traced(v) for v in x)
    return isinstance(x, np.ndarray) and x.dtype == object and any(isinstance(v, Tracer) for v in x.flat)


def check_times(t: Any, name: str = "t") -> np.ndarray:
    if _traced(t):
        raise UnsupportedOperationError(f"{name} must be constant: differentiating with respect to save times is not supported. {_TIMES_FROM_P}")
    given = np.asarray(t)
    if given.dtype.kind not in "iuf" or isinstance(t, (bool, np.bool_)):
        raise TypeError(f"{name} must be an array of times (real numbers), got {t!r}")
    arr = given.astype(float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of times, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if arr.size > 1 and np.all(np.diff(arr) < 0):
        raise ValueError(
            f"{name} must be strictly increasing, and is decreasing: a solve backwards in time from t1 = {arr[0]:g} (a "
            "Riccati or costate equation) is the forward solve of v(s) = u(t1 - s): pz.odesolve(lambda v, p, s: "
            "-f(v, p, t1 - s), u_t1, t1 - t, p) with t1 - t increasing from 0, whose rows are u at the times t"
        )
    if arr.size > 1 and not np.all(np.diff(arr) > 0):
        raise ValueError(
            f"{name} must be strictly increasing (its first entry is the initial time). For repeated or "
            "unsorted measurement times tm: times, where = np.unique(np.concatenate([[t0], tm]), "
            "return_inverse=True); u = pz.odesolve(f, u0, times, p)[where[1:]]"
        )
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


def odesolve(
    f: Callable[..., Any],
    u0: Any,
    t: Any,
    p: Any = None,
    *,
    alg: str = "auto",
    sensealg: str = "auto",
    reltol: float = 1e-3,
    abstol: float = 1e-6,
    maxiters: int = 100_000,
    tstops: Any = None,
    t0: float | None = None,
    **unknown: Any,
) -> Any:
    """Solve ``u' = f(u, p, t)`` from ``u(t[0]) = u0``; the solution at times ``t``.

    Returns an array of shape ``(len(t), *u0.shape)`` (time-major, like SciPy's
    ``y.T`` and diffrax's ``ys``), differentiable with respect to ``u0`` and
    ``p`` inside any pyzygote transformation.  ``u0`` is an array of any shape;
    ``p`` an array of any shape or a dict, tuple or list of arrays and numbers,
    which ``f`` receives as given.  ``f`` is plain numpy code, traced once per
    problem layout.  Solver names and ``sensealg`` follow
    DifferentialEquations.jl and SciMLSensitivity.jl; the default tolerances
    are theirs (``reltol=1e-3, abstol=1e-6``).  ``tstops`` are times the solver
    must step to, as SciML's: put the times where ``f`` switches (a dose, an
    infusion that starts or stops) there, or an adaptive solver may step over the switch.
    ``t0`` is the initial time where it is not ``t[0]`` (a dose at 0, samples from 0.5 on):
    ``u(t0) = u0`` and the result holds the solution at the times ``t`` only, as SciML's
    ``tspan=(t0, t[-1])`` with ``saveat=t``.

    >>> import numpy as np, pyzygote as pz
    >>> u = pz.odesolve(lambda u, p, t: -u, np.array([1.0]), np.linspace(0, 1, 3), reltol=1e-9, abstol=1e-9)
    >>> np.round(u[:, 0], 6)
    array([1.      , 0.606531, 0.367879])
    """
    from pyzygote.ode.solvers import refuse_unknown_keywords

    refuse_unknown_keywords("pz.odesolve", unknown)
    if not callable(f):
        raise TypeError(f"f must be a callable f(u, p, t), got {type(f).__name__}")
    times = check_times(t)
    if t0 is not None:
        start = _initial_time(t0, times)
        if start < times[0]:
            settings = dict(alg=alg, sensealg=sensealg, reltol=reltol, abstol=abstol, maxiters=maxiters, tstops=tstops)
            return odesolve(f, u0, np.concatenate([[start], times]), p, **settings)[1:]
    check_solver_name(alg)
    sensitivity.resolve_sensealg(sensealg, 0, 0)
    reltol, abstol, maxiters = check_solver_options(reltol, abstol, maxiters)
    if _TIGHTENED.get() != 1.0:
        reltol, abstol = max(reltol * _TIGHTENED.get(), 1e-13), abstol * _TIGHTENED.get()
        maxiters *= 10
    stops = check_tstops(tstops, (float(times[0]), float(times[-1])))
    from pyzygote.julia.functions import is_julia_function

    given = p
    # f gets None for an absent p (a Julia f takes vectors: an empty one)
    layout, u0, p = Layout.of(u0, p, keep_none=not is_julia_function(f))
    leaves = leaf_values(given)
    try:
        # Values being differentiated that f reads from its closure come back as `lifted`:
        # parameters after p's entries (RHS.trace_lifting), differentiated as p's are.
        rhs, lifted = RHS.trace_lifting(f, layout)
    except (ValueError, IndexError, TypeError) as exc:
        if given is None and hasattr(exc, "add_note"):  # user testing: a cryptic einsum error
            exc.add_note(
                "pz.odesolve was called without p, its fourth argument, so the right-hand side got p=None: "
                "if it reads parameters, pass them, pz.odesolve(f, u0, t, p)"
            )
        raise
    m = layout.m
    # p's leaves being differentiated; lifted data (an index or a mask computed in the loss) are
    # constants, as such leaves of p are: a switching time they set has no derivative.
    differentiated = tuple(v is None for v in leaves)
    if given is None:  # p absent: one empty leaf, which is not differentiated
        differentiated = (False,) * len(layout.p_shapes)
    data = lifted_data(lifted)
    if lifted:
        p = with_lifted(p, lifted)
        leaves = (*leaves, *(None,) * len(lifted))
        differentiated += tuple(not d for d in data)
    if isinstance(p, Tracer) and rhs.program is not None and rhs.switches_at_a_time_set_by_p(differentiated):
        _warn_switching_time(f)
    if (isinstance(p, Tracer) or isinstance(u0, Tracer)) and rhs.program is not None and rhs.switches_on_the_state():
        _warn_state_switch(f)
    warn_missing_tstops(f, rhs, (float(times[0]), float(times[-1])), stops, leaves)
    if times.size == 1:
        # Nothing to integrate: the solution is u0. (OrdinaryDiffEq would get a zero-length tspan.)
        return layout.states(np.reshape(np.copy(u0), (1, -1)))
    opts = Options(alg, reltol, abstol, maxiters, stops)
    params = dict(rhs=rhs, t=times, opts=opts, sensealg=sensealg)
    fixed = constant_entries(given, layout) + lifted_constant_entries(m, lifted, data) if isinstance(p, Tracer) else ()
    if fixed:
        params["fixed"] = fixed
    if not isinstance(u0, Tracer) and not isinstance(p, Tracer) and _needs_julia(rhs, alg):
        # Julia code and Julia-only solvers cannot run on the NumPy engine, so even an
        # untraced call goes to Julia.
        from pyzygote.engines import get_engine
        from pyzygote.tracing import make_program

        prog = make_program(lambda a, b: odesolve_p.bind(a, b, **params), u0, p)
        return layout.states(get_engine("julia").evaluate(prog, [u0, p])[0])
    return layout.states(odesolve_p.bind(u0, p, **params))


def _initial_time(t0: Any, times: np.ndarray) -> float:
    if _traced(t0):
        raise UnsupportedOperationError(f"t0 must be constant: differentiating with respect to the initial time is not supported. {_TIMES_FROM_P}")
    if isinstance(t0, (bool, np.bool_)) or np.ndim(t0) != 0 or np.asarray(t0).dtype.kind not in "iuf":
        raise TypeError(f"t0 must be a number (the initial time), got {t0!r}")
    start = float(t0)
    if not np.isfinite(start) or start > times[0]:
        raise ValueError(f"t0 must be a finite time at or before t[0] = {times[0]:g}, got {start!r}")
    return start


# Forward sensitivities solve n (1 + n + m) equations; sensealg="auto" stays below 10100.
_LARGE_FORWARD = 20_000


def _warn_if_large(rhs: Any, k: int) -> None:
    size = rhs.n * (1 + k)
    if size > _LARGE_FORWARD and not getattr(rhs, "_warned_large", False):
        import warnings

        from pyzygote.tracing import _user_stacklevel

        rhs._warned_large = True
        warnings.warn(
            f"sensealg='forward' solves the {rhs.n} states with their sensitivities to {k} initial states and "
            f"parameters, {size} equations, which is slow (user testing saw minutes for 200 + 200); "
            "sensealg='adjoint' (or 'auto', which picks it above 150 equations and 16 directions) costs a "
            "backward solve of 2n + m equations",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _warn_switching_time(f: Any) -> None:
    from pyzygote.errors import SwitchingTimeWarning
    from pyzygote.tracing import _warn_once

    _warn_once(
        f,
        f"the right-hand side {getattr(f, '__qualname__', f)!r} switches at a time computed from p (it "
        "compares t with something that depends on p, as np.where(t >= p['t_on'], rate, 0.0) does). The "
        "derivative with respect to such a switching time is not computed where the right-hand side jumps "
        "there: it comes from the jump, which needs event handling, so the gradient with respect to the p "
        "entries that set it misses that part, and is 0 for an on/off switch (the others are right; a "
        "switch without a jump, np.where(t >= t_on, t - t_on, 0.0), is fine). To fit a switching time, "
        "make the switch smooth, e.g. "
        "scipy.special.expit((t - p['t_on']) / width) with a small width and tstops near it",
        SwitchingTimeWarning,
    )


def _warn_kinks_at_second_order(rhs: Any) -> None:
    """Second derivatives through a solve whose right-hand side has a kink in the state (fuzzer:
    a Hessian through p[1] * np.max(u) was 13% off, silently; its gradient is right)."""
    if rhs.program is None or getattr(rhs, "_warned_kinks", False) or not rhs.has_kinks_in_the_state():
        return
    rhs._warned_kinks = True
    import warnings

    from pyzygote.errors import StateSwitchWarning

    warnings.warn(
        f"second derivatives (pz.hessian, a jvp of a gradient) through a solve whose right-hand side {rhs!r} has a kink "
        "in the state (np.max, np.min, np.maximum, np.abs, np.clip, np.interp or a comparison of values computed from u): "
        "where the trajectory crosses the kink, the right-hand side's Jacobian jumps, and the second derivative misses the "
        "crossing's contribution, which needs event handling (gradients are right). If the trajectory crosses it, "
        "make the kink smooth (np.logaddexp(x / w, 0.0) * w for max(x, 0), scipy.special.expit for a step) or take "
        "central differences of pz.gradient. (A softplus written with np.maximum and np.abs is smooth but warns: "
        "write it as np.logaddexp(x, 0.0).)",
        StateSwitchWarning,
        stacklevel=2,
    )


def _warn_state_switch(f: Any) -> None:
    from pyzygote.errors import StateSwitchWarning
    from pyzygote.tracing import _warn_once

    _warn_once(
        f,
        f"the right-hand side {getattr(f, '__qualname__', f)!r} switches on the state (it compares or rounds "
        "a value computed from u, as np.where(u[0] < 1.0, p[0], p[1]) does). Where the trajectory crosses "
        "such a switch and the right-hand side jumps there, the derivative misses the crossing time's own "
        "sensitivity, which needs event handling: in user testing a gradient was 2.8 times the right one. "
        "A switch without a jump (np.where(u > 0, u, 0.0)) gives the right derivative; write it with "
        "np.maximum or np.clip and this warning goes. Otherwise make the switch smooth (scipy.special.expit"
        "((1.0 - u[0]) / width)), and check the gradient with pz.testing.check_grads",
        StateSwitchWarning,
    )


# More times than this are a table (np.interp of forcing data, whose kinks adaptive steps
# handle), not a schedule of switches.
_MAX_SCHEDULE = 100


def _among(times: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Whether each of ``times`` equals one of ``given`` to 1e-12 relative (vectorized: a forcing
    table has thousands of knots)."""
    ordered = np.sort(given)
    at = np.clip(np.searchsorted(ordered, times), 1, len(ordered) - 1) if len(ordered) > 1 else np.zeros(len(times), dtype=int)
    nearest = np.minimum(np.abs(times - ordered[at]), np.abs(times - ordered[at - 1] if len(ordered) > 1 else np.inf))
    return nearest <= 1e-12 * np.abs(times)


def warn_missing_tstops(f: Any, rhs: Any, span: tuple[float, float], stops: tuple[float, ...], leaves: Any = None) -> None:
    """Warn (once per function) when ``f`` switches at constant times inside ``span`` that are not
    ``stops``; ``leaves`` are the values of p's leaves (``None`` where traced, see :func:`leaf_values`)."""
    if getattr(rhs, "program", None) is None:
        return
    times = rhs.constant_switching_times(leaves, span)
    inside = times[(times > min(span)) & (times < max(span))]
    if inside.size == 0:
        return
    given = np.asarray(stops, dtype=float)
    missing = inside[~_among(inside, given)] if given.size else inside
    if missing.size == 0:
        return
    from pyzygote.errors import MissingTstopsWarning
    from pyzygote.tracing import _warn_once

    if inside.size > _MAX_SCHEDULE:
        # A table (forcing data read with np.interp): adaptive steps cross its kinks, at a cost in
        # accuracy that a fit feels (user testing: a 401-knot inflow, reltol=1e-8: the loss 2e-5 off,
        # the gradient 3e-6, L-BFGS-B ended ABNORMAL; with its knots as tstops, 1e-10 and converged).
        _warn_once(
            f,
            f"the right-hand side {getattr(f, '__qualname__', f)!r} reads a table whose {inside.size} knots lie inside "
            f"the span ({inside[0]:.6g} to {inside[-1]:.6g}; {missing.size} of them not among tstops), as np.interp of "
            "forcing data does. Adaptive steps across its kinks cost accuracy: in user testing a 401-knot inflow left "
            "the loss 2e-5 and its gradient 3e-6 off at reltol=1e-8, enough to stop L-BFGS-B. Pass the knots inside the "
            "span as tstops (tstops=knots[(knots > t0) & (knots < t1)]) for solutions and gradients good to the tolerance",
            MissingTstopsWarning,
        )
        return

    shown = ", ".join(f"{x:.6g}" for x in missing[:8]) + (", ..." if missing.size > 8 else "")
    wanted = np.unique(np.concatenate([given, inside]))
    # A long list (a yearly forcing table's 99 knots) is named by its ends, not printed whole.
    listed = repr(wanted.tolist()) if wanted.size <= 12 else f"[{wanted[0]:.6g}, {wanted[1]:.6g}, ..., {wanted[-1]:.6g}] ({wanted.size} times)"
    _warn_once(
        f,
        f"the right-hand side {getattr(f, '__qualname__', f)!r} switches at t = {shown} (it compares t, or a * t + "
        f"b, with constants or constant entries of p, or rounds such a value to whole numbers), and {'this time is' if missing.size == 1 else f'these {missing.size} times are'} not "
        "among tstops. An adaptive solver can step over a short pulse and still report success (in user "
        "testing an infusion schedule gave 1.22 mg instead of 16.05 mg). Pass the times where the right-hand "
        f"side switches as tstops, here tstops={listed}, to pz.odesolve, pz.solve or pz.ODEProblem (for a table "
        "read with np.interp, its knots inside the span); differences of the solution, such as a finite-difference "
        "check of its gradient, need them too",
        MissingTstopsWarning,
    )


def check_tstops(tstops: Any, span: tuple[float, float]) -> tuple[float, ...]:
    """``tstops`` as a sorted tuple of distinct finite times within ``span``, or a clear error."""
    if tstops is None:
        return ()
    if _traced(tstops):
        raise UnsupportedOperationError(
            "tstops must be constant times: a stop computed from a differentiated parameter (a dosing time or "
            f"lag being fitted) has no derivative through the solver's steps. {_TIMES_FROM_P}"
        )
    given = np.atleast_1d(np.asarray(tstops))
    if given.dtype.kind not in "iuf" or given.ndim != 1 or not np.all(np.isfinite(given)):
        raise ValueError(f"tstops must be a 1-D array of finite times (numbers), got {tstops!r}")
    stops = given.astype(float)
    # Times outside the solved span are left out, as OrdinaryDiffEq does: a whole dosing
    # schedule can be given while fitting its first part.
    low, high = min(span), max(span)
    return tuple(float(s) for s in np.unique(stops[(stops >= low) & (stops <= high)]))


# pz.crosscheck measures an ODE gradient's solver error against the same gradient solved tighter.
_TIGHTENED: "contextvars.ContextVar[float]" = contextvars.ContextVar("pyzygote_ode_tolerances", default=1.0)


@contextlib.contextmanager
def tolerances_tightened(factor: float) -> Iterator[None]:
    """Trace every ``pz.odesolve`` inside with its ``reltol`` and ``abstol`` times ``factor``
    (``reltol`` down to 1e-13) and ten times its ``maxiters``.  Traces are cached: call a
    function object that has not been traced yet.

    >>> import numpy as np, pyzygote as pz
    >>> decay = lambda k: pz.odesolve(lambda u, p, t: -p * u, np.ones(1), [0.0, 1.0], k)[-1, 0]
    >>> with tolerances_tightened(1e-6):
    ...     tight = decay(np.array([1.0]))
    >>> bool(abs(tight - np.exp(-1.0)) < 1e-8 < abs(decay(np.array([1.0])) - np.exp(-1.0)))
    True
    """
    token = _TIGHTENED.set(_TIGHTENED.get() * factor)
    try:
        yield
    finally:
        _TIGHTENED.reset(token)


def check_solver_options(reltol: Any, abstol: Any, maxiters: Any) -> tuple[float, float, int]:
    """The tolerances as positive finite floats and maxiters as a positive int, or a clear error."""
    for name, v in (("reltol", reltol), ("abstol", abstol), ("maxiters", maxiters)):
        if isinstance(v, Tracer):  # data read as a number: traced again with its value (api._trace_with_data)
            raise TracerBoolError(
                f"{name} of an ODE solve must be a number, not a traced value. pz.gradient and pz.grad differentiate "
                "every positional argument, as Zygote does: pass solver settings as keyword arguments "
                "(pz.gradient(loss, p, tol=1e-6)) or through a closure"
            )
    tols = []
    for name, tol in (("reltol", reltol), ("abstol", abstol)):
        ok = isinstance(tol, (int, float, np.integer, np.floating)) and not isinstance(tol, (bool, np.bool_))
        if not ok and np.ndim(tol) > 0:  # SciML takes one per state
            raise ValueError(f"{name} must be one positive number: a tolerance per state (which SciML takes) is not supported here, got {tol!r}")
        if not (ok and np.isfinite(tol) and tol > 0):
            raise ValueError(f"{name} must be a positive finite number, got {tol!r}")
        tols.append(float(tol))
    whole = isinstance(maxiters, (int, np.integer, float, np.floating)) and not isinstance(maxiters, (bool, np.bool_))
    if not (whole and np.isfinite(maxiters) and maxiters == int(maxiters) and maxiters >= 1):  # 1e5 is fine
        raise ValueError(f"maxiters must be a positive integer (a number of steps), got {maxiters!r}")
    return tols[0], tols[1], int(maxiters)


def _solve_on_numpy(*, rhs: Any, opts: Options, **_: Any) -> bool:
    """A solve the NumPy engine can run: one of its solvers, and a traced right-hand side that
    calls no Julia function."""
    from pyzygote.engines import _runs_on_numpy

    return rhs.program is not None and runs_on_numpy(opts.alg) and _runs_on_numpy(rhs.program)


for _prim in (odesolve_p, odesolve_sens_p, odesolve_tangent_p, odesolve_hvp_p, odesolve_vjp_p):
    _prim.on_numpy = _solve_on_numpy


def _needs_julia(rhs: Any, alg: str) -> bool:
    if rhs.program is None:
        return True
    if runs_on_numpy(alg):
        return False
    from pyzygote.engines import current_engine_name

    if current_engine_name(None) != "julia":
        algorithm(alg)  # the NumPy engine's error, naming its solvers
    return True


# --- Julia emission: one SciML solve; Zygote differentiates it through SciMLSensitivity ----------
def _julia_solve_args(e: Any, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str) -> tuple[str, str]:
    from pyzygote.julia.codegen import julia_literal

    if rhs.program is None:  # a pz.julia_function: it returns the derivative itself
        f = e.julia_object(rhs.f)
    else:
        f = f"PyZygote.FirstOutput({e.function(rhs.program)})"
    tols = f"{julia_literal(opts.reltol, np.float64)}, {julia_literal(opts.abstol, np.float64)}, {int(opts.maxiters)}"
    stops = e.const(np.asarray(opts.tstops, dtype=np.float64)) if opts.tstops else "Float64[]"
    return f"{e.const(np.asarray(t, dtype=np.float64))}, :{opts.alg}, :{sensealg}, {tols}, {stops}", f


@odesolve_p.def_julia
def _odesolve_julia(e: Any, u0: Any, p: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, **_: Any) -> str:
    rest, f = _julia_solve_args(e, rhs, t, opts, sensealg)
    return f"PyZygote.odesolve({f}, {u0}, {p}, {rest})"


@odesolve_sens_p.def_julia
def _sens_julia(e: Any, u0: Any, p: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, cols: tuple[int, ...], **_: Any) -> str:
    rest, f = _julia_solve_args(e, rhs, t, opts, sensealg)
    if cols == rhs.columns():
        return f"PyZygote.odesolve_sensitivities({f}, {u0}, {p}, {rest})"
    # ForwardDiff follows every direction; the program uses these (1-based) columns of S.
    return f"PyZygote.sensitivity_columns({e.const(np.asarray(cols, dtype=np.int64) + 1)}, {f}, {u0}, {p}, {rest})"


@odesolve_tangent_p.def_julia
def _tangent_julia(e: Any, u0: Any, p: Any, tu0: Any, tp: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, **_: Any) -> str:
    rest, f = _julia_solve_args(e, rhs, t, opts, sensealg)
    return f"PyZygote.odesolve_tangent({f}, {u0}, {p}, {tu0}, {tp}, {rest})"


@odesolve_hvp_p.def_julia
def _hvp_julia(e: Any, u0: Any, p: Any, ct: Any, a: Any, b: Any, dct: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, **_: Any) -> str:
    rest, f = _julia_solve_args(e, rhs, t, opts, sensealg)
    return f"PyZygote.odesolve_hvp({f}, {u0}, {p}, {ct}, {a}, {b}, {dct}, {rest})"


@odesolve_vjp_p.def_julia
def _vjp_julia(e: Any, u0: Any, p: Any, ct: Any, *, rhs: RHS, t: np.ndarray, opts: Options, sensealg: str, wrt: tuple[bool, bool], **_: Any) -> str:
    rest, f = _julia_solve_args(e, rhs, t, opts, sensealg)
    return f"PyZygote.odesolve_vjp({f}, {u0}, {p}, {ct}, {rest})"

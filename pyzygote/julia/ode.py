"""``pz.solve`` on the Julia engine: DifferentialEquations.jl's ``solve``.

The right-hand side's traced program is compiled like any other program
(:mod:`pyzygote.julia.engine`) and handed to ``PyZygote.solve_problem``
(``julia_src/ext/PyZygoteODEExt.jl``); a ``pz.julia_function`` right-hand side
is passed as it is.  Differentiated solves go through the ``odesolve``
primitive instead, whose Julia rule emits ``PyZygote.odesolve``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.julia import session
from pyzygote.julia.convert import from_julia, to_julia
from pyzygote.ode.solvers import runs_on_numpy

__all__ = ["solve_julia", "rhs_closure"]


def rhs_closure(prob: Any) -> tuple[Any, bool]:
    """The Julia callable for a problem's right-hand side (on flat vectors), and whether it is generated code."""
    from pyzygote.julia.functions import is_julia_function

    rhs = prob.rhs()
    if is_julia_function(prob.f):
        return prob.f._julia(), False
    from pyzygote.julia.engine import compiled

    return compiled(rhs.program).fn, True


def solve_julia(
    prob: Any, alg: str, saveat: np.ndarray | None, reltol: float, abstol: float, maxiters: int, tstops: tuple[float, ...] = ()
) -> Any:
    from pyzygote.engines import get_engine
    from pyzygote.ode.problem import ODESolution

    get_engine("julia")  # starts Julia, or fails fast with instructions
    session.load_ode_packages()
    if not runs_on_numpy(alg):
        session.load_extra_solvers()
    fn, generated = rhs_closure(prob)
    layout, u0, p = prob.flat()
    t0, t1 = prob.tspan
    with session.LOCK:
        t, u, retcode, counts = session.runtime_call(
            "solve_problem",
            fn,
            generated,
            to_julia(u0),
            to_julia(p),
            t0,
            t1,
            alg,
            None if saveat is None else to_julia(saveat),
            float(reltol),
            float(abstol),
            int(maxiters),
            to_julia(np.asarray(tstops, dtype=np.float64)),
            origin="program",
        )
        t = np.atleast_1d(from_julia(t, np.float64))
        u = layout.states(np.asarray(from_julia(u, np.float64)).reshape(len(t), layout.n))
        stats = dict(zip(("nf", "njacs", "nlu", "naccept", "nreject"), (int(c) for c in counts)))
        retcode = str(retcode)
    return ODESolution(t, u, retcode, stats, alg, "" if retcode == "Success" else f"Julia retcode {retcode}", prob)

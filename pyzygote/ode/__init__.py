"""ODE problems, solvers and sensitivities (see :mod:`pyzygote.ode.problem`)."""

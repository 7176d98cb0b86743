"""pyzygote: differentiate plain numpy code, with Zygote.jl or with numpy.

Write a function with numpy; pyzygote traces it into an IR and
differentiates it, on the embedded NumPy engine or on Julia's Zygote.

>>> import numpy as np, pyzygote as pz
>>> pz.gradient(lambda x: np.sum(np.tanh(x) ** 2), np.zeros(3))
(array([0., 0., 0.]),)
"""

from pyzygote import primitives as _primitives  # noqa: F401  (registers the rules)
from pyzygote.crosscheck import CrossCheckReport, crosscheck
from pyzygote.api import gradient, grad, hessian, jacobian, jvp, pullback, value_and_grad, withgradient
from pyzygote.engines import current_engine_name, engine, set_engine
from pyzygote.errors import (
    JuliaError,
    JuliaNotAvailableError,
    NonFiniteGradientError,
    NonFiniteODEInputError,
    PositionalDataWarning,
    PyzygoteError,
    SolverError,
    MissingTstopsWarning,
    RetraceWarning,
    StateSwitchWarning,
    SolverWarning,
    SwitchingTimeWarning,
    TracerBoolError,
    UnsupportedOperationError,
    ZeroGradientWarning,
)
from pyzygote.ir import Program
from pyzygote.julia.functions import julia_function, julia_include
from pyzygote.julia.session import start_julia
from pyzygote.ode.problem import ODEProblem, ODESolution, solve
from pyzygote.primitives.matrix_exponential import expm
from pyzygote.primitives.nonlinear import nlsolve
from pyzygote.primitives.ode import odesolve
from pyzygote.primitives.traced_indexing import take_public as take
from pyzygote.pytree import ravel
from pyzygote.random_draws import RandomDrawWarning
from pyzygote.tracing import clear_cache, make_program

__version__ = "0.1.0"

__all__ = [
    "gradient",
    "withgradient",
    "grad",
    "value_and_grad",
    "pullback",
    "jacobian",
    "hessian",
    "jvp",
    "make_program",
    "crosscheck",
    "CrossCheckReport",
    "ODEProblem",
    "ODESolution",
    "solve",
    "odesolve",
    "expm",
    "nlsolve",
    "take",
    "ravel",
    "clear_cache",
    "Program",
    "set_engine",
    "engine",
    "current_engine_name",
    "PyzygoteError",
    "TracerBoolError",
    "UnsupportedOperationError",
    "NonFiniteGradientError",
    "NonFiniteODEInputError",
    "JuliaNotAvailableError",
    "JuliaError",
    "SolverError",
    "PositionalDataWarning",
    "MissingTstopsWarning",
    "RandomDrawWarning",
    "RetraceWarning",
    "StateSwitchWarning",
    "SolverWarning",
    "SwitchingTimeWarning",
    "ZeroGradientWarning",
    "julia_function",
    "julia_include",
    "start_julia",
]

"""Exceptions raised by pyzygote.

>>> import pyzygote as pz
>>> issubclass(pz.TracerBoolError, TypeError)
True
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = [
    "PyzygoteError",
    "TracerBoolError",
    "UnsupportedOperationError",
    "NonFiniteGradientError",
    "NonFiniteODEInputError",
    "JuliaNotAvailableError",
    "JuliaError",
    "SolverError",
    "PositionalDataWarning",
    "ZeroGradientWarning",
]


class PyzygoteError(Exception):
    """Base class of pyzygote's own errors."""


class TracerBoolError(PyzygoteError, TypeError):
    """Python control flow (``if``, ``float()``, ``int()``) on a traced value."""


class UnsupportedOperationError(PyzygoteError, NotImplementedError):
    """A numpy function or construct that has no pyzygote rule."""


class CapturedTracerError(UnsupportedOperationError):
    """A function that pyzygote traces on its own read a value of the enclosing trace (a value
    being differentiated) from its closure, where that value cannot be lifted into its program.
    ``shape`` and ``dtype`` are the value's."""

    def __init__(self, message: str = "", shape: tuple[int, ...] = (), dtype: Any = None):
        super().__init__(message)
        self.shape, self.dtype = shape, dtype


class _DiagnosedLater(Exception):
    """An error whose message gains a sentence from ``where`` when it is first read: a line search
    that catches the error and steps back never pays for the diagnosis (a 20,000-operation
    loop's replay took 0.4 s).  The sentence goes into the message at ``where_at``."""

    def __init__(self, message: str = "", *, where: Callable[[], str] | None = None, where_at: int | None = None):
        super().__init__(message)
        self._where, self._where_at = where, len(message) if where_at is None else where_at

    def __str__(self) -> str:
        if self._where is not None:
            where, self._where = self._where, None
            try:
                found = where()
            except Exception:  # noqa: BLE001 - a diagnosis must not hide the error it explains
                found = ""
            text = super().__str__()
            self.args = (text[: self._where_at] + found + text[self._where_at :],)
        return super().__str__()

    def __repr__(self) -> str:
        # repr is built from args, which hold the diagnosis only once str has run: a traceback
        # shows str, but a log line or a notebook's repr of the caught error would miss it.
        str(self)
        return super().__repr__()


class NonFiniteGradientError(_DiagnosedLater, PyzygoteError, FloatingPointError):
    """A derivative came out NaN or infinite where the value was finite.

    ``where``, if given, finds where the first non-finite value starts (see ``_DiagnosedLater``).
    """


class NonFiniteODEInputError(_DiagnosedLater, PyzygoteError, ValueError):
    """The starting state or the parameters of an ODE solve, or of :func:`pyzygote.nlsolve`, hold
    NaN or inf.  Where the function computed them from its arguments, the message names the
    operation that made them so.  (One class for both solvers: they share p's handling, and a
    caller catching bad solver inputs need not know which solve it is; it is a ValueError.)"""


class JuliaNotAvailableError(PyzygoteError, RuntimeError):
    """The Julia engine was requested but Julia is not set up."""


class _TranslatesJulia:
    @property
    def original(self) -> Any:
        """juliacall's exception that this one translates (``None`` for one raised in Python).

        It holds Julia values, so it is kept in a holder that releases them in the main thread
        wherever this exception dies: Julia code run from a finalizer in another thread can
        hang (PythonCall.jl #578).
        """
        held = self.__dict__.get("_held_original")
        return None if held is None else held.value


class JuliaError(_TranslatesJulia, PyzygoteError, RuntimeError):
    """An exception raised inside Julia, with its message and the top of its stack."""


class SolverError(_DiagnosedLater, _TranslatesJulia, PyzygoteError, RuntimeError):
    """An ODE solve did not succeed (its retcode is not Success), or ``pz.nlsolve`` found no root
    (no convergence within maxiters, a singular Jacobian, NaN in f, a multiple root).  An ODE solve that met a derivative of the
    right-hand side that is not finite names, when its message is read, the operation of f where
    it starts (see ``_DiagnosedLater``)."""


class SolverWarning(UserWarning):
    """``pz.solve`` returned a solution whose retcode is not Success (a solve that gave up at
    ``maxiters``, or whose step size collapsed): it holds the states up to where the solver
    stopped.  DifferentialEquations.jl warns alike; ``verbose=False`` silences it, as there."""


class RetraceWarning(UserWarning):
    """The same code was traced again and again because it is a new function object at each
    call (a ``lambda`` written inside an objective or a loop): traces are cached per function
    object, so each call paid for tracing."""


class MissingTstopsWarning(UserWarning):
    """An ODE right-hand side switches at constant times (``np.where(t < 2.5, rate, 0.0)``)
    that are not among the solve's ``tstops``: an adaptive solver may step over a short pulse
    and still report success."""


class StateSwitchWarning(UserWarning):
    """An ODE right-hand side being differentiated switches on the state
    (``np.where(u[0] < 1.0, p[0], p[1])``): where the trajectory crosses the switch and the
    right-hand side jumps there, the derivative misses the crossing time's sensitivity, which
    needs event handling."""


class SwitchingTimeWarning(UserWarning):
    """An ODE right-hand side switches at a time computed from the parameters being
    differentiated (``np.where(t >= p["t_on"], ...)``): the derivative with respect to that
    time is not computed, because it needs event handling."""


class ZeroGradientWarning(UserWarning):
    """The value being differentiated depends on an argument only through operations that have
    no derivative (a comparison, ``np.argmax`` of one, ``np.floor(...).astype(int)``,
    ``np.sign``): its derivative with respect to that argument is zero wherever it is defined,
    and a fit by gradient stalls.  Warned once per traced function, naming the operations."""


class PositionalDataWarning(UserWarning):
    """``pz.jacobian`` was given a large array as a positional argument other than the first
    (data such as a grid ``x`` or observations ``y``, the SciPy idiom
    ``jac=lambda p, x, y: pz.jacobian(res, p, x, y)[0]``): every positional argument gets its
    Jacobian block, here one of more than a million entries, computed and thrown away.  Data
    passed as keyword arguments, or bound with ``functools.partial`` or a closure, get none.
    Warned once per function."""


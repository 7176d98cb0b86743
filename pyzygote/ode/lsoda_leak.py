"""Give back the work arrays that SciPy's LSODA keeps after a solve.

SciPy 1.17's LSODA (``solve_ivp(method="LSODA")``, the NumPy engine's ``alg="auto"``) takes
one more reference to its two work arrays at every step and never releases it, so every
solve's arrays stay allocated: about 10 KB per solve of 30 states (the arrays hold ``n**2``
numbers with a dense Jacobian), a megabyte or more per gradient of an adjoint with a hundred
states, which a fit of thousands of gradients turns into gigabytes (user testing).

Whether this SciPy leaks is measured once, on a tiny problem: the release below runs only if
a step adds exactly one reference, and on a solve only if the arrays hold exactly one extra
reference per step taken, so a SciPy that holds them for another reason is left alone.

>>> import numpy as np, scipy.integrate, sys
>>> s = scipy.integrate.LSODA(lambda t, y: -y, 0.0, np.ones(2), 1.0)
>>> for _ in range(3):
...     _ = s.step()
>>> release_work_arrays(s, 3)
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np

__all__ = ["release_work_arrays"]

_LEAKS: list[bool] = []


def _integrator(solver: Any) -> Any:
    return getattr(getattr(solver, "_lsoda_solver", None), "_integrator", None)


def _extra_references(arr: np.ndarray, like: np.ndarray) -> int:
    """References to ``arr`` beyond those of ``like``, an array held the same way by the caller."""
    return sys.getrefcount(arr) - sys.getrefcount(like)


def _leaks() -> bool:
    if not _LEAKS:
        import scipy.integrate

        try:
            solver = scipy.integrate.LSODA(lambda t, y: -y, 0.0, np.ones(2), 10.0)
            work = _integrator(solver).rwork
            before = sys.getrefcount(work)
            for _ in range(3):
                solver.step()
            _LEAKS.append(sys.getrefcount(work) - before == 3 and hasattr(ctypes, "pythonapi"))
        except Exception:  # another SciPy: nothing to release
            _LEAKS.append(False)
    return _LEAKS[0]


def release_work_arrays(solver: Any, steps: int) -> None:
    """After a finished LSODA solve of ``steps`` calls to ``solver.step()``, drop the references
    SciPy leaked to its work arrays (see the module's docstring); the solver is unusable after."""
    integrator = _integrator(solver)
    if steps <= 0 or integrator is None or not _leaks():
        return
    rwork, iwork = getattr(integrator, "rwork", None), getattr(integrator, "iwork", None)
    if not (isinstance(rwork, np.ndarray) and isinstance(iwork, np.ndarray)):
        return
    # The references SciPy holds by design go first; what is left beyond this frame's own is leaked.
    integrator.rwork = integrator.iwork = integrator.call_args = None
    fresh = np.empty(0)
    if _extra_references(rwork, fresh) != steps or _extra_references(iwork, fresh) != steps:
        return
    for arr in (rwork, iwork):
        for _ in range(steps):
            ctypes.pythonapi.Py_DecRef(ctypes.py_object(arr))

"""Python's cyclic garbage collector paused while programs are built.

Tracing and transforming a program allocate many small objects (equations,
variables, tracers) that all stay alive until the program is built, so each
collection the allocations trigger scans them all again, without finding
anything to free: a quarter of the first gradient of a 365-day loop
(5,000 operations) went there.  Running a program is not paused: solvers
make cyclic garbage (SciPy's step objects) that must be collected.

>>> import gc
>>> from pyzygote.gc_pause import gc_paused
>>> @gc_paused
... def build():
...     return gc.isenabled()
>>> build(), gc.isenabled()
(False, True)
"""

from __future__ import annotations

import functools
import gc
from typing import Any, Callable, TypeVar

__all__ = ["gc_paused"]

F = TypeVar("F", bound=Callable[..., Any])


def gc_paused(fn: F) -> F:
    """``fn`` run with the cyclic collector off (and back on after, if it was on)."""

    @functools.wraps(fn)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():  # nested, or the user turned it off
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused  # type: ignore[return-value]

"""Engine selection: ``"numpy"``, ``"julia"`` or ``"auto"``.

The default comes from ``pz.set_engine``, else the ``PYZYGOTE_ENGINE``
environment variable, else ``"auto"``: Julia when it is already set up on
this machine, otherwise the NumPy engine (with a one-time notice).  ``auto``
never starts a download.

>>> import pyzygote as pz
>>> with pz.engine("numpy"):
...     pz.current_engine_name()
'numpy'
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator

from pyzygote.engines.numpy_engine import NumpyEngine

__all__ = ["set_engine", "engine", "get_engine", "current_engine_name", "ENGINE_NAMES"]

ENGINE_NAMES = ("auto", "numpy", "julia")
_state = threading.local()
_global_choice: list[str | None] = [None]
_numpy_engine = NumpyEngine()
_auto_notice_shown = [False]
_thread_notice_shown = [False]
_long_notice_shown = [False]

# engine="auto" keeps programs longer than this (a loop unrolled by tracing) on the NumPy engine:
# Julia's compile time grows faster than a function's length (JuliaLang/julia#19158: 2.8 s for a
# function of 10,000 additions), and Zygote's compile time has been reported to grow worse still
# (TuringLang/Turing.jl#1754, a model of many statements).  Not yet timed on a real Julia;
# engine="julia" uses Julia for them anyway.
AUTO_JULIA_MAX_EQUATIONS = 5000


def _check(name: str, source: str = "engine") -> str:
    if name not in ENGINE_NAMES:
        raise ValueError(f"{source} must be one of {ENGINE_NAMES}, got {name!r}")
    return name


def set_engine(name: str) -> None:
    """Choose the default engine for this process."""
    _global_choice[0] = _check(name)


@contextlib.contextmanager
def engine(name: str) -> Iterator[None]:
    """Use an engine inside a ``with`` block (per thread)."""
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(_check(name))
    try:
        yield
    finally:
        stack.pop()


def _requested(name: str | None) -> str:
    if name is not None:
        return _check(name)
    stack = getattr(_state, "stack", None)
    if stack:
        return stack[-1]
    if _global_choice[0] is not None:
        return _global_choice[0]
    env = os.environ.get("PYZYGOTE_ENGINE")
    if env:
        return _check(env.strip().lower(), "the environment variable PYZYGOTE_ENGINE")
    return "auto"


def quiet() -> bool:
    """``PYZYGOTE_QUIET`` is set: no notices on stderr (which engine runs, Julia starting)."""
    return os.environ.get("PYZYGOTE_QUIET", "").lower() in ("1", "yes", "true")


def _runs_on_numpy(program: Any) -> bool:
    """Whether the NumPy engine can run ``program`` (each primitive's ``on_numpy`` rule: not a
    Julia function's call, nor a solve with one or with a solver only Julia has).  Asked of long
    programs only, once each."""
    known = program._compiled.get("runs on numpy")
    if known is None:
        known = program._compiled["runs on numpy"] = all(
            e.prim.on_numpy is None or e.prim.on_numpy(**e.params) for e in program.eqns
        )
    return known


def current_engine_name(name: str | None = None, program: Any = None) -> str:
    """The engine a call would use now (``auto`` resolved), for ``program`` when that is given."""
    requested = _requested(name)
    if requested != "auto":
        return requested
    from pyzygote.julia.setup import julia_is_set_up

    if julia_is_set_up():
        equations = None if program is None else len(program.eqns)
        if equations is not None and equations > AUTO_JULIA_MAX_EQUATIONS and _runs_on_numpy(program):
            if not _long_notice_shown[0]:
                _long_notice_shown[0] = True
                if not quiet():
                    print(
                        f"pyzygote: using the NumPy engine for a program of {equations} operations (a loop unrolled "
                        f"by tracing, say): engine='auto' sends programs above {AUTO_JULIA_MAX_EQUATIONS} to Julia "
                        "only when asked, since Julia compiles one function that long slowly; pass engine='julia' "
                        "to use it anyway",
                        file=sys.stderr,
                    )
            return "numpy"
        if threading.current_thread() is threading.main_thread():
            return "julia"
        # Julia runs only in the main thread (pyzygote.julia.session.check_thread).
        if not _thread_notice_shown[0]:
            _thread_notice_shown[0] = True
            if not quiet():
                print(
                    f"pyzygote: using the NumPy engine in thread {threading.current_thread().name!r}: the Julia engine "
                    "runs only in the main thread (PythonCall.jl issue #578)",
                    file=sys.stderr,
                )
        return "numpy"
    if not _auto_notice_shown[0]:
        _auto_notice_shown[0] = True
        if not quiet():
            print(
                "pyzygote: using the NumPy engine (Julia is not set up). "
                "Run `pyzygote setup-julia` to use Zygote.jl, or `pyzygote doctor` for details.",
                file=sys.stderr,
            )
    return "numpy"


def get_engine(name: str | None = None, program: Any = None) -> Any:
    resolved = current_engine_name(name, program)
    if resolved == "numpy":
        return _numpy_engine
    from pyzygote.julia.engine import julia_engine

    return julia_engine()

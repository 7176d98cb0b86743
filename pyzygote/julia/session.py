"""The Julia session: started lazily, once per process, used under one lock.

Julia starts the first time the Julia engine, :func:`pyzygote.julia_function`
or :func:`pyzygote.julia_include` needs it (or when you call
:func:`pyzygote.start_julia`).  Before ``juliacall`` is imported, these
defaults are set unless you set them yourself (environment variable or
``-X juliacall-...`` option):

``PYTHON_JULIACALL_HANDLE_SIGNALS=yes``
    Julia handles its own signals (GC safepoints and stack overflows are
    signals); the price is that Ctrl-C does not raise ``KeyboardInterrupt``
    while Julia runs and can end the whole process (PythonCall issues #347, #219).
``PYTHON_JULIACALL_THREADS=1``
    unless ``JULIA_NUM_THREADS`` is set.  pyzygote's generated code is
    serial, and multi-threaded JuliaCall is experimental; set ``auto`` to
    give your own Julia code every core.
``PYTHON_JULIACALL_OPTIMIZE=2``
    Julia's usual level, the one juliapkg precompiles packages at (a cache
    compiled at a lower level than the one requested is rejected, so ``3``
    recompiles every package).

Julia runs only in the main Python thread: a Julia garbage collection that
another Python thread sets off waits for the main thread forever (PythonCall
issue #578), so a call from another thread raises :class:`pyzygote.JuliaError`
at once, naming the NumPy engine or processes as the way to run in parallel.
Calls also hold one process-wide re-entrant lock.  Julia exceptions become
:class:`pyzygote.JuliaError` with the Julia message, the top of the Julia
stack and, for Zygote's classic failures, a hint.

>>> from pyzygote.julia import session
>>> session.is_running() in (True, False)
True
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from pyzygote.engines import quiet
from pyzygote.errors import JuliaError, JuliaNotAvailableError, SolverError

__all__ = [
    "start",
    "start_julia",
    "is_running",
    "runtime",
    "call",
    "new_module",
    "include_text",
    "include_file",
    "julia_versions",
    "load_ode_packages",
    "LOCK",
    "check_thread",
    "release_in_main_thread",
    "MainThreadValue",
    "ENV_DEFAULTS",
    "translate_error",
]

class _JuliaLock:
    """A re-entrant lock that refuses threads other than the main one (:func:`check_thread`).

    juliacall holds the GIL through a call, and Julia's garbage collector stops every Julia
    thread, the one that started Julia among them; from another Python thread, a collection
    (which compiling a new function nearly always sets off) waits for it forever (PythonCall
    issue #578, open for Julia 1.10 with juliacall 0.9).  Refusing is the only safe answer.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> "_JuliaLock":
        check_thread()
        self._lock.acquire()
        if _RELEASE_IN_MAIN:
            del _RELEASE_IN_MAIN[:]
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


def check_thread() -> None:
    """Raise :class:`pyzygote.JuliaError` outside the main Python thread.

    The main thread, not whichever thread first used pyzygote: juliacall starts Julia in the
    thread that imports it, and the advice for PyTorch users is to import juliacall first, in
    the main thread; a worker thread recorded as the owner would then be the one that hangs.
    """
    if threading.current_thread() is not threading.main_thread():
        raise JuliaError(
            f"the Julia engine runs only in the main Python thread ('{threading.main_thread().name}'; this is "
            f"{threading.current_thread().name!r}): a Julia garbage collection set off from another thread hangs the "
            "process (PythonCall.jl issue #578). In threads, use the NumPy engine (engine='numpy', or "
            "`with pz.engine('numpy'):`; engine='auto' does so there); for parallel Julia work, use processes "
            "(multiprocessing), each with its own Julia."
        )


LOCK = _JuliaLock()

# Julia values whose Python holders died in another thread, kept until the main thread
# next takes LOCK.  Releasing a Julia value runs Julia code (PythonCall's `_pyjl_dealloc`
# pushes to a Julia vector, which may allocate and so collect), and a collection set off
# from another thread hangs (PythonCall issue #578).
_RELEASE_IN_MAIN: list[tuple[Any, ...]] = []


def release_in_main_thread(*values: Any) -> None:
    """For finalizers of objects that hold Julia values: outside the main thread, keep the
    values alive until the main thread releases them (at its next call into Julia)."""
    try:
        elsewhere = threading.current_thread() is not threading.main_thread()
    except Exception:  # interpreter teardown: nothing is left to run Julia on
        return
    if elsewhere:
        _RELEASE_IN_MAIN.append(values)


class MainThreadValue:
    """A Julia value that is released in the main thread, wherever its holder dies.

    >>> held = MainThreadValue("a Julia value")
    >>> held.value
    'a Julia value'
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __del__(self, _release: Any = release_in_main_thread) -> None:
        _release(self.value)


RUNTIME_JL = Path(__file__).resolve().parent / "runtime.jl"
MAX_FRAMES = 12

# (variable, value, variables/options that, when set, mean "the user chose")
ENV_DEFAULTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("PYTHON_JULIACALL_HANDLE_SIGNALS", "yes", ("juliacall-handle-signals",)),
    ("PYTHON_JULIACALL_THREADS", "1", ("juliacall-threads", "JULIA_NUM_THREADS")),
    ("PYTHON_JULIACALL_OPTIMIZE", "2", ("juliacall-optimize",)),
)

_state: dict[str, Any] = {"jl": None, "juliacall": None, "rt": None, "error": None, "counter": 0}


def is_running() -> bool:
    return _state["rt"] is not None


def failed_to_start() -> bool:
    """Julia was started in this process and failed (juliacall cannot retry)."""
    return _state["error"] is not None


def _apply_env_defaults() -> dict[str, str]:
    applied = {}
    for var, value, others in ENV_DEFAULTS:
        if var in os.environ:
            continue
        if any(o in sys._xoptions or o in os.environ for o in others):
            continue
        os.environ[var] = value
        applied[var] = value
    return applied


def _warn_torch() -> None:
    if "torch" in sys.modules and "juliacall" not in sys.modules:
        warnings.warn(
            "torch was imported before Julia started. juliacall and torch loaded in this order can corrupt "
            "the heap and crash (PythonCall.jl issues #215 and #384). Start Julia first: call "
            "pz.start_julia() (or `import juliacall`) before `import torch`.",
            RuntimeWarning,
            stacklevel=4,
        )


def start() -> Any:
    """Start Julia (once) and load PyZygote; return the runtime module.

    Raises :class:`pyzygote.JuliaNotAvailableError` at once, without any
    download, when Julia is not set up (see ``pyzygote doctor``).
    """
    check_thread()
    rt = _state["rt"]
    if rt is not None:
        return rt
    with LOCK:
        if _state["rt"] is not None:
            return _state["rt"]
        if _state["error"] is not None:
            raise JuliaNotAvailableError(_state["error"])
        from pyzygote.julia.setup import julia_status, not_available_message

        status = julia_status(refresh=True)
        if not status.ok:
            raise JuliaNotAvailableError(not_available_message(status))
        _apply_env_defaults()
        _warn_torch()
        if not quiet():
            print(
                "pyzygote: starting Julia (the first start after installing precompiles packages and can take "
                "minutes; each new function then compiles on its first call)",
                file=sys.stderr,
                flush=True,
            )
        t0 = time.perf_counter()
        try:
            juliacall = _import_juliacall(status.mode)
        except Exception as exc:
            _state["error"] = (
                f"Julia failed to start: {type(exc).__name__}: {exc}\n"
                "Run `pyzygote doctor` to check the setup (this Python process cannot retry: restart it)."
            )
            raise JuliaNotAvailableError(_state["error"]) from exc
        jl = juliacall.Main
        _state["jl"], _state["juliacall"] = jl, juliacall
        # Releases left to the main thread happen at exit at the latest, before juliacall's
        # own exit hook (registered at its import: atexit runs the later one first) stops Julia.
        atexit.register(_RELEASE_IN_MAIN.clear)
        try:
            if not bool(jl.seval("isdefined(Main, :PyZygoteRuntime)")):
                jl.Base.include(jl, str(RUNTIME_JL))
            rt = jl.PyZygoteRuntime
        except Exception as exc:
            err = translate_error(exc, origin="start")
            _state["error"] = (
                "Julia started but pyzygote's Julia package PyZygote could not be loaded:\n"
                f"{err}\nRun `pyzygote doctor`; `pyzygote setup-julia` reinstalls the packages."
            )
            raise JuliaNotAvailableError(_state["error"]) from None
        _state["rt"] = rt
        if not quiet():
            print(f"pyzygote: Julia ready ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        return rt


def _import_juliacall(mode: str) -> Any:
    """Import juliacall with juliapkg forced offline: pyzygote never installs behind your back.

    The set-up check has already established that nothing needs installing;
    offline mode turns any disagreement into an error instead of a download.
    """
    if "juliacall" in sys.modules and hasattr(sys.modules["juliacall"], "Main"):
        return sys.modules["juliacall"]
    if mode != "juliapkg":
        import juliacall

        return juliacall
    import juliapkg
    import juliapkg.state

    # juliapkg reads its options (project, executable, offline) once, when first imported,
    # which may have happened under another environment (the set-up check imports it, and
    # so may a test that patches os.environ).  Read them again now, so that juliacall uses
    # the project and executable the set-up check has just approved.
    reset_state = getattr(juliapkg.state, "reset_state", None)
    if reset_state is not None and "juliacall" not in sys.modules:
        reset_state()
    previous = juliapkg.offline(None)
    juliapkg.offline(True)
    try:
        import juliacall
    finally:
        if not previous:
            juliapkg.offline(False)
    return juliacall


def runtime() -> Any:
    return start()


def start_julia() -> None:
    """Start Julia now (it otherwise starts on first use).

    Call it early, before ``import torch``, or to pay Julia's start-up cost at
    a moment of your choosing.  Raises :class:`pyzygote.JuliaNotAvailableError`
    when Julia is not set up.
    """
    start()


# --- errors -----------------------------------------------------------------------------
_HINTS: tuple[tuple[str, str], ...] = (
    (
        "Mutating arrays is not supported",
        "Zygote cannot differentiate code that writes into arrays (x[i] = ..., x .= ..., push!, "
        "copyto!, fill!). Build new arrays instead (broadcasting, map, comprehensions, vcat/hcat), "
        "or move the mutating part into a function with its own ChainRulesCore.rrule, or compute its "
        "derivative with Zygote.forwarddiff.",
    ),
    (
        "Can't differentiate foreigncall",
        "Zygote cannot see through a C call (ccall/foreigncall: some Base internals, in-place BLAS, "
        "random numbers, Python callbacks). Give the calling function a ChainRulesCore.rrule, mark it "
        "ChainRulesCore.@non_differentiable, or wrap non-differentiable parts in "
        "ChainRulesCore.ignore_derivatives.",
    ),
    (
        "Can't differentiate function execution in catch block",
        "Zygote cannot differentiate a try/catch whose catch branch ran. Check inputs instead of "
        "catching errors, or move the try/catch out of the differentiated function.",
    ),
    (
        "Can't differentiate",
        "Zygote reached a construct it cannot differentiate; see "
        "https://fluxml.ai/Zygote.jl/latest/limitations and give the function a ChainRulesCore.rrule.",
    ),
    (
        "Output is an array, so the gradient is not defined",
        "gradient needs a function returning one real number; use pz.jacobian, or pz.pullback with a "
        "chosen cotangent.",
    ),
    (
        "Output should be scalar",
        "gradient needs a function returning one real number; use pz.jacobian or pz.pullback.",
    ),
    (
        "Package PyZygote not found",
        "the Julia project lacks pyzygote's PyZygote package: run `pyzygote setup-julia`, or see "
        "`pyzygote doctor` for an offline project.",
    ),
)

_PROGRAM_NOTE = (
    "This error comes from the Julia code pyzygote generated for your numpy function. If the same call works "
    "with engine='numpy', it is a pyzygote bug: please report it with the program (print(pz.make_program(f, "
    "*args))), and use engine='numpy' meanwhile."
)


def hint_for(message: str) -> str | None:
    from pyzygote.julia.setup import FULL_PACKAGES, ODE_PACKAGES

    missing = re.search(r"Package (\w+) not found", message)
    if missing and missing.group(1) in {name for name, _, _ in FULL_PACKAGES}:
        return (
            f"{missing.group(1)} comes with the full install: run `pyzygote setup-julia --full` "
            "(or add it to your offline project, see `pyzygote doctor --full`)."
        )
    if missing and missing.group(1) in ODE_PACKAGES:
        return (
            f"{missing.group(1)} is one of the ODE packages pyzygote's juliapkg.json declares: run "
            "`pyzygote setup-julia` (or `Pkg.add` it to your offline project: Julia imports by name only the "
            "project's direct dependencies, whatever its manifest holds; see `pyzygote doctor`)."
        )
    unknown = re.search(r"no loaded solver package exports an ODE solver (\w+)\(\)", message)
    if unknown:
        from pyzygote.ode.solvers import FOREIGN_SOLVERS

        name = unknown.group(1)
        if name in FOREIGN_SOLVERS:  # another tool's name (user testing: diffrax's Dopri5 got no word)
            nearest, whose, _ = FOREIGN_SOLVERS[name]
            if "DifferentialEquations.jl" in whose:  # its own solver (DP8, Kvaerno5): its package is not loaded
                return (
                    f"{name!r} is a DifferentialEquations.jl solver from a solver package that is not loaded (load "
                    f"it in Julia before the call, where it is installed); the nearest that pyzygote loads is alg={nearest!r}."
                )
            return f"{name!r} is {whose} name; DifferentialEquations.jl's nearest is alg={nearest!r}."
    for needle, hint in _HINTS:
        if needle in message:
            return hint
    return None


def _frames(text: str, n: int) -> str:
    lines = text.splitlines()
    out: list[str] = []
    frames = 0
    for line in lines:
        if re.match(r"^\s*\[\d+\]", line):
            frames += 1
            if frames > n:
                out.append("  ...")
                break
        out.append(line)
    return "\n".join(out)


def translate_error(exc: BaseException, origin: str = "user") -> BaseException:
    """A :class:`pyzygote.JuliaError` for a Julia exception; other exceptions unchanged.

    Must run while holding :data:`LOCK` (formatting calls into Julia).
    ``origin`` is ``"program"`` for code pyzygote generated, ``"user"`` for
    Julia code you wrote, ``"start"`` while loading.
    """
    juliacall = _state["juliacall"]
    rt = _state["rt"]
    jl_error_type = getattr(juliacall, "JuliaError", None) if juliacall is not None else None
    if jl_error_type is not None and isinstance(exc, jl_error_type):
        jexc, bt = exc.args[0], (exc.args[1] if len(exc.args) > 1 else None)
        try:
            if rt is not None:
                kind = str(rt.errtype(jexc))
                message = str(rt.errmessage(jexc))
                stack = str(rt.errstack(bt, MAX_FRAMES)) if bt is not None else ""
            else:
                full = str(exc)
                message, _, rest = full.partition("\nStacktrace:")
                kind, stack = message.split(":", 1)[0], _frames(rest, MAX_FRAMES)
        except Exception:  # formatting must never hide the error
            kind, message, stack = "Exception", repr(exc), ""
    elif isinstance(exc, TypeError) and str(exc).startswith("Julia: "):
        # PythonCall raises TypeError for a MethodError of the called function itself.
        message = str(exc)[len("Julia: ") :]
        kind, stack = message.split(":", 1)[0], ""
    else:
        return exc
    # Most exceptions' showerror text already starts with "<Type>: " (MethodError,
    # UndefVarError, ArgumentError, LoadError, ...); ErrorException's is the bare message.
    body = message[len(kind) + 1 :].lstrip() if message.startswith(kind + ":") else message
    if kind == "SolverFailure":
        # PyZygote's ODE extension refuses to return a failed solve (see PyZygoteODEExt.jl).
        err = SolverError(f"the ODE solve on the Julia engine failed: {body}")
        err._held_original = MainThreadValue(exc)  # type: ignore[attr-defined]
        return err
    if kind == "NonlinearSolveFailure":
        # PyZygote's nlsolve found no root (see julia_src/src/nonlinear_solve.jl).
        err = SolverError(f"pz.nlsolve on the Julia engine failed: {body}")
        err._held_original = MainThreadValue(exc)  # type: ignore[attr-defined]
        return err
    hint = hint_for(message)
    text = f"Julia {kind}: {body}"
    if stack:
        text += f"\nJulia stacktrace (top):\n{stack}"
    if hint:
        text += f"\nHint: {hint}"
    if origin == "program" and "not found in current path" not in message:
        text += f"\n{_PROGRAM_NOTE}"
    err = JuliaError(text)
    err.julia_type = kind  # type: ignore[attr-defined]
    err.julia_message = message  # type: ignore[attr-defined]
    err.julia_stacktrace = stack  # type: ignore[attr-defined]
    err.hint = hint  # type: ignore[attr-defined]
    err._held_original = MainThreadValue(exc)  # type: ignore[attr-defined]
    return err


def call(fn: Any, *args: Any, origin: str = "user") -> Any:
    """``fn(*args)`` under the Julia lock, with Julia exceptions translated."""
    with LOCK:
        try:
            return fn(*args)
        except Exception as exc:
            err = translate_error(exc, origin)
            if err is exc:
                raise
        raise err


def runtime_call(name: str, *args: Any, origin: str = "user") -> Any:
    """Call ``PyZygoteRuntime.<name>(*args)``."""
    rt = start()
    return call(getattr(rt, name), *args, origin=origin)


def next_name(prefix: str) -> str:
    with LOCK:
        _state["counter"] += 1
        return f"{prefix}_{_state['counter']}"


def new_module(prefix: str, import_pyzygote: bool = False) -> Any:
    """A fresh Julia module (``PyZygoteRuntime.<prefix>_<n>``)."""
    return runtime_call("newmodule", next_name(prefix), bool(import_pyzygote), origin="start")


def include_text(module: Any, code: str, filename: str, origin: str = "user") -> Any:
    """Evaluate Julia source (any number of top-level expressions, any indentation) in ``module``.

    Uses ``Base.include_string``, so multi-line code, definitions and
    ``using`` work as in a file, and errors name ``filename``.
    """
    return runtime_call("include_text", module, code, filename, origin=origin)


def include_file(module: Any, path: str | os.PathLike[str]) -> Any:
    return runtime_call("include_file", module, os.fspath(path))


def load_ode_packages() -> None:
    """Load the ODE packages (once), which activates PyZygote's ODE extension.

    Raises :class:`pyzygote.JuliaError` with an installation hint when they are
    missing, and when the extension itself failed to load (Julia 1.10 only
    logs that, which would otherwise surface later as a ``MethodError``).
    """
    if _state.get("ode_loaded"):
        return
    from pyzygote.julia.setup import ODE_PACKAGES

    with LOCK:
        if not _state.get("ode_loaded"):
            include_text(runtime(), "import " + ", ".join(ODE_PACKAGES), "pyzygote_ode_packages", origin="start")
            include_text(runtime(), _CHECK_ODE_EXTENSION, "pyzygote_ode_extension", origin="start")
            _state["ode_loaded"] = True


def load_extra_solvers() -> None:
    """Load the ``setup-julia --full`` packages that are installed (DifferentialEquations.jl,
    Sundials.jl), once: PyZygote's ODE extension finds a solver outside pyzygote's table by
    name among the loaded solver packages (Sundials' ``CVODE_BDF``, ...).
    """
    if _state.get("extra_solvers_loaded"):
        return
    from pyzygote.julia.setup import FULL_PACKAGES, julia_status

    load_ode_packages()
    with LOCK:
        if not _state.get("extra_solvers_loaded"):
            direct = julia_status().direct_deps  # `import` needs a direct dependency of the project
            extra = [name for name, _, _ in FULL_PACKAGES if name in direct]
            if extra:
                include_text(runtime(), "import " + ", ".join(extra), "pyzygote_extra_solvers", origin="start")
            _state["extra_solvers_loaded"] = True


_CHECK_ODE_EXTENSION = """
if Base.get_extension(PyZygote, :PyZygoteODEExt) === nothing
    error("PyZygote's ODE extension did not load although its packages did; the error printed above says why")
end
"""


def julia_versions() -> dict[str, str]:
    """Julia's and the loaded packages' versions (starts Julia)."""
    return {str(k): str(v) for k, v in runtime_call("loaded_versions")}


def with_lock(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``fn`` holding the Julia lock (for code that reads Julia results)."""

    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return fn(*args, **kwargs)

    return locked

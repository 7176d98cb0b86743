"""The ``pyzygote`` command: ``pyzygote setup-julia`` and ``pyzygote doctor``.

``setup-julia`` installs Julia (if needed) and pyzygote's Julia packages
through juliapkg, with juliapkg's and Julia's progress output; ``--full`` also
installs DifferentialEquations.jl and Sundials.jl.  ``doctor`` reports versions, whether Julia is set
up (read from files, without starting Julia unless ``--check``), the active
engine, what to do about anything missing, and the Julia commands that
prepare a project for offline use.

>>> from pyzygote.cli import build_parser
>>> build_parser().parse_args(["setup-julia", "--full"]).full
True
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import sys
import time
from typing import Any, Sequence

__all__ = ["main", "build_parser", "doctor", "setup_julia"]


def _p(*args: Any) -> None:
    print(*args, flush=True)


def _version(name: str) -> str | None:
    from pyzygote.julia.setup import _dist_version

    return _dist_version(name)


def _engine_report(st: Any) -> tuple[str, str, str]:
    """(requested, where the request comes from, engine a call would use) without side effects."""
    from pyzygote import engines

    stack = getattr(engines._state, "stack", None)
    if stack:
        requested, source = stack[-1], "with pz.engine(...)"
    elif engines._global_choice[0] is not None:
        requested, source = engines._global_choice[0], "pz.set_engine(...)"
    elif os.environ.get("PYZYGOTE_ENGINE"):
        requested, source = os.environ["PYZYGOTE_ENGINE"].strip().lower(), "PYZYGOTE_ENGINE"
    else:
        requested, source = "auto", "default"
    if requested not in engines.ENGINE_NAMES:
        resolved = f"none: {requested!r} is not an engine ({', '.join(engines.ENGINE_NAMES)}), so every call raises ValueError"
    elif requested == "auto":
        resolved = "julia (Zygote.jl)" if st.ok else "numpy: the NumPy engine, because Julia is not set up"
    elif requested == "julia" and not st.ok:
        resolved = "julia requested, but Julia is not set up: calls will raise JuliaNotAvailableError"
    else:
        resolved = requested
    return requested, source, resolved


def doctor(check: bool = False, full: bool = False) -> int:
    """Print the diagnosis; with ``check``, also start Julia and compare both engines."""
    import numpy as np

    import pyzygote
    from pyzygote.julia import setup

    st = setup.julia_status(refresh=True)
    _p("pyzygote doctor")
    _p(f"  pyzygote    {pyzygote.__version__} ({os.path.dirname(pyzygote.__file__)})")
    _p(f"  Python      {platform.python_version()} ({sys.executable})")
    _p(f"  numpy       {np.__version__}")
    jc = st.juliacall_version
    _p(
        "  juliacall   "
        + (f"{jc} (needs PythonCall {st.pythoncall_required} in the Julia project)" if jc else "not installed")
    )
    _p(f"  juliapkg    {st.juliapkg_version or 'not installed'}")

    _p("")
    _p("Julia")
    _p(f"  set up:       {'yes' if st.ok else 'no'}")
    if st.mode == "juliacall-env":
        _p("  mode:         PYTHON_JULIACALL_EXE + PYTHON_JULIACALL_PROJECT (juliapkg is bypassed)")
    else:
        _p(f"  mode:         juliapkg{' (offline)' if st.offline else ''}")
    _p(f"  project:      {st.project or '-'}" + (f"  [{st.project_source}]" if st.project_source else ""))
    _p(f"  executable:   {st.executable or '-'}" + (f"  [{st.executable_source}]" if st.executable_source else ""))
    if st.executable_version:
        _p(f"                Julia {'.'.join(map(str, st.executable_version))} (its julia_version.h)")
    _p(f"  manifest:     {st.manifest or '-'}")
    if st.julia_version:
        _p(f"  Julia:        {st.julia_version} (recorded in the manifest)")
    names = ["PythonCall", "Zygote", "ChainRulesCore", "ForwardDiff", "PyZygote"]
    if st.manifest:
        for name in names:
            e = st.packages.get(name)
            if e is None:
                _p(f"  {name + ':':<13} not installed")
            else:
                where = f"  (developed from {e.path})" if e.path else ""
                _p(f"  {name + ':':<13} {e.version or '?'}{where}")
        state = ", ".join(f"{n} {st.package_version(n) or 'not installed'}" for n in setup.ODE_PACKAGES)
        _p(f"  ODE packages: {state}")
        indirect = [n for n in setup.ode_packages_missing(st) if n in st.packages]
        if indirect:
            _p(f"                ({', '.join(indirect)} not in the project's [deps]: ODE solves fail to import them)")
        extra = [n for n, _, _ in setup.FULL_PACKAGES]
        state = ", ".join(f"{n} {st.package_version(n) or 'not installed'}" for n in extra)
        _p(f"  Extra packages: {state}  (pyzygote setup-julia --full)")
    try:
        src = setup.julia_src_path()
        _p(f"  PyZygote source shipped with pyzygote: {src}" + ("" if (src / "Project.toml").is_file() else "  (MISSING!)"))
    except Exception as exc:  # a broken installation
        _p(f"  pyzygote's juliapkg.json cannot be read: {exc}")
    for prob in st.problems:
        _p(f"  problem: {prob}")
    for note in st.notes:
        _p(f"  note:    {note}")

    _p("")
    requested, source, resolved = _engine_report(st)
    _p("Engine")
    _p(f"  requested:    {requested}  [{source}]")
    _p(f"  active:       {resolved}")

    _p("")
    _p("What to do")
    from pyzygote.engines import ENGINE_NAMES

    bad_engine = requested not in ENGINE_NAMES
    if bad_engine:
        _p(f"  {source} is {requested!r}: set it to one of {', '.join(ENGINE_NAMES)}.")
    if st.ok:
        _p("  Nothing: the Julia engine is ready (engine='auto' uses it). `pyzygote doctor --check` starts it")
        _p("  and compares it with the NumPy engine.")
    else:
        for fix in st.fixes:
            _p(f"  {fix}")
        _p('  or keep the NumPy engine: engine="numpy", pz.set_engine("numpy") or PYZYGOTE_ENGINE=numpy')

    _p("")
    _p("Offline / HPC setup (an existing Julia; nothing is downloaded at run time)")
    project = st.project if (st.offline or st.mode == "juliacall-env") and st.project else "/path/to/pyzygote-julia-env"
    _p("  1. Prepare a Julia project once (with network, or with a depot that has the packages), e.g. in")
    _p("     `julia` (1.10 or 1.11):")
    for line in setup.offline_project_commands(project, full=full).splitlines():
        _p(f"         {line}")
    _p("  2. Point pyzygote at it (the project directory must be writable: juliapkg keeps a lock file and")
    _p("     pyjuliapkg/meta.json there):")
    _p("         export PYTHON_JULIAPKG_EXE=/path/to/julia")
    _p(f"         export PYTHON_JULIAPKG_PROJECT={project}")
    _p("         export PYTHON_JULIAPKG_OFFLINE=yes")
    _p("     For a read-only project set PYTHON_JULIACALL_EXE and PYTHON_JULIACALL_PROJECT instead (juliacall")
    _p("     then skips juliapkg). PYTHON_JULIACALL_SYSIMAGE=<file.so> loads a PackageCompiler system image.")
    _p("  3. `pyzygote doctor` should then say `set up: yes`.")

    if check and not bad_engine:
        _p("")
        return _check(st)
    return 1 if bad_engine else 0


def _check(st: Any) -> int:
    """Start Julia, show loaded versions, and compare a gradient on both engines."""
    import numpy as np

    import pyzygote as pz
    from pyzygote.julia import session

    _p("Check")
    if not st.ok:
        _p("  skipped: Julia is not set up")
        return 1
    t0 = time.perf_counter()
    try:
        session.start()
        versions = session.julia_versions()
    except Exception as exc:
        _p(f"  Julia did not start: {type(exc).__name__}: {exc}")
        return 1
    _p(f"  Julia started in {time.perf_counter() - t0:.1f} s")
    for name in ("julia", "PythonCall", "Zygote", "ChainRulesCore", "ForwardDiff", "PyZygote"):
        if name in versions:
            _p(f"  {name + ':':<16}{versions[name]}")

    def f(x: Any) -> Any:
        return np.sum(np.sin(x) * x**2)

    x = np.linspace(-1.0, 1.0, 5)
    try:
        t1 = time.perf_counter()
        gj = pz.gradient(f, x, engine="julia")[0]
        first = time.perf_counter() - t1
        t2 = time.perf_counter()
        pz.gradient(f, x, engine="julia")
        second = time.perf_counter() - t2
    except Exception as exc:
        _p(f"  gradient on the Julia engine failed: {type(exc).__name__}: {exc}")
        return 1
    gn = pz.gradient(f, x, engine="numpy")[0]
    agree = bool(np.allclose(gj, gn, rtol=1e-10, atol=1e-12))
    _p(f"  gradient: first call {first:.1f} s (compilation), second call {second * 1e3:.1f} ms")
    _p(f"  Julia and NumPy engines agree: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


def setup_julia(full: bool = False, force: bool = False, check: bool = True) -> int:
    """Install Julia and pyzygote's Julia packages with juliapkg (network; minutes)."""
    from pyzygote.julia import setup

    st = setup.julia_status(refresh=True)
    if st.juliacall_version is None:
        _p('juliacall is not installed. Install it with:  pip install "pyzygote[julia]"')
        return 1
    src = setup.julia_src_path()
    if not (src / "Project.toml").is_file():
        _p(f"pyzygote's Julia package is missing at {src}: this pyzygote installation is broken; reinstall it.")
        return 1
    if st.mode == "juliacall-env" or st.offline:
        why = "PYTHON_JULIACALL_EXE/PYTHON_JULIACALL_PROJECT are set" if st.mode == "juliacall-env" else (
            "juliapkg is in offline mode (PYTHON_JULIAPKG_OFFLINE=yes)"
        )
        _p(f"Not installing anything: {why}. Prepare the project yourself; `pyzygote doctor` prints the commands.")
        if st.ok and not full:
            _p("The project is already set up.")
            return 0
        _p("")
        _p(setup.offline_project_commands(st.project, full=full))
        return 0 if st.ok else 1

    import juliapkg

    if full:
        for name, uuid, version in setup.FULL_PACKAGES:
            _p(f"[pyzygote] adding {name} ({version}) to {st.project}/pyjuliapkg/juliapkg.json")
            juliapkg.add(name, uuid, version=version)
    _p(f"[pyzygote] installing Julia and pyzygote's Julia packages into {st.project}")
    _p("[pyzygote] this downloads Julia if needed and precompiles Zygote: expect several minutes the first time")
    kwargs: dict[str, Any] = {"force": force}
    bounds = os.environ.get("PYTHON_JULIACALL_CHECK_BOUNDS")
    if bounds and "julia_args" in inspect.signature(juliapkg.resolve).parameters:
        kwargs["julia_args"] = [f"--check-bounds={bounds}"]  # as juliacall does, so precompiled caches match
    t0 = time.perf_counter()
    try:
        juliapkg.resolve(**kwargs)
    except Exception as exc:
        _p(f"[pyzygote] juliapkg failed: {type(exc).__name__}: {exc}")
        return 1
    _p(f"[pyzygote] done in {time.perf_counter() - t0:.0f} s")
    st = setup.julia_status(refresh=True)
    if not st.ok:
        _p("[pyzygote] Julia is still not set up:")
        for prob in st.problems:
            _p(f"  - {prob}")
        return 1
    _p("[pyzygote] Julia is set up: engine='auto' now uses it.")
    if check:
        _p("")
        return _check(st)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyzygote", description="pyzygote's Julia engine: setup and diagnosis.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser(
        "setup-julia",
        help="install Julia and pyzygote's Julia packages (Zygote, ...) with juliapkg",
        description="Install Julia (if needed) and pyzygote's Julia packages through juliapkg. Needs network; "
        "the first run takes several minutes (download and precompilation).",
    )
    p_setup.add_argument(
        "--full",
        action="store_true",
        help="also install DifferentialEquations.jl and Sundials.jl, whose solvers (e.g. CVODE_BDF) then work by name",
    )
    p_setup.add_argument("--force", action="store_true", help="resolve again even if juliapkg thinks nothing changed")
    p_setup.add_argument("--no-check", dest="check", action="store_false", help="do not start Julia afterwards")
    p_doctor = sub.add_parser("doctor", help="report versions, the Julia setup and the active engine")
    p_doctor.add_argument("--check", action="store_true", help="also start Julia and compare both engines")
    p_doctor.add_argument("--full", action="store_true", help="include DifferentialEquations.jl and Sundials.jl in the offline commands")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "setup-julia":
        return setup_julia(full=args.full, force=args.force, check=args.check)
    return doctor(check=args.check, full=args.full)


if __name__ == "__main__":
    sys.exit(main())

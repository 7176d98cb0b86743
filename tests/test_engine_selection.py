"""Engine selection, the Julia set-up check, and the runtime's Python side (no Julia needed).

Julia is never started here: every environment is arranged so that either
Julia is "not set up" (and must fail fast, without network or subprocesses),
or a prepared project is described by files only (manifest, meta.json) to
exercise the set-up check, which must decide without running anything.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import pyzygote as pz
from pyzygote import engines
from pyzygote.julia import session, setup
from pyzygote.julia.convert import from_julia, results_from_julia, to_julia
from pyzygote.julia.functions import JuliaFunction, wrapper_source
from pyzygote.pytree import flatten

ROOT = Path(__file__).resolve().parent.parent
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JULIA_ENV = (
    "PYTHON_JULIAPKG_EXE",
    "PYTHON_JULIAPKG_PROJECT",
    "PYTHON_JULIAPKG_OFFLINE",
    "PYTHON_JULIACALL_EXE",
    "PYTHON_JULIACALL_PROJECT",
    "PYTHON_JULIACALL_BINDIR",
    "PYTHON_JULIACALL_SYSIMAGE",
    "PYZYGOTE_ENGINE",
)


def _toml(path: Path) -> dict[str, Any]:
    from pyzygote.julia.setup import _load_toml

    return _load_toml(path)


@pytest.fixture
def clean_engine_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No engine chosen, no notice shown yet, Julia not running (for this test)."""
    for var in JULIA_ENV:
        monkeypatch.delenv(var, raising=False)
    saved = engines._global_choice[0], engines._auto_notice_shown[0]
    engines._global_choice[0], engines._auto_notice_shown[0] = None, False
    monkeypatch.setattr(engines._state, "stack", [], raising=False)
    monkeypatch.setitem(session._state, "rt", None)
    monkeypatch.setitem(session._state, "error", None)
    yield
    engines._global_choice[0], engines._auto_notice_shown[0] = saved


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any socket connection or subprocess fails the test (and is recorded)."""
    attempts: list[str] = []

    def refuse_connect(self: Any, *args: Any, **kwargs: Any) -> None:
        attempts.append(f"connect {args}")
        raise AssertionError("network access attempted")

    def refuse_popen(*args: Any, **kwargs: Any) -> None:
        attempts.append(f"subprocess {args}")
        raise AssertionError("subprocess started")

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(subprocess, "Popen", refuse_popen)
    return attempts


@pytest.fixture
def no_julia(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_engine_state: None, no_network: list[str]) -> Path:
    """Offline juliapkg pointed at an empty project and a julia that does not exist."""
    project = tmp_path / "empty-project"
    project.mkdir()
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(project))
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(tmp_path / "no-such-julia"))
    monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    assert not setup.julia_is_set_up()
    return project


@pytest.fixture
def online_no_julia(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_engine_state: None, no_network: list[str]) -> Path:
    """juliapkg online (its normal mode) with a project it never resolved."""
    project = tmp_path / "never-resolved"
    project.mkdir()
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(project))
    assert not setup.julia_is_set_up()
    return project


# --- a prepared project, described by files only ----------------------------------------
def _fake_julia(tmp_path: Path) -> Path:
    """An executable file named julia. The set-up check must never run it."""
    exe = tmp_path / "bin" / "julia"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\necho 'this test must not run julia' >&2\nexit 1\n")
    exe.chmod(0o755)
    return exe


def _write_project(
    project: Path, *, pythoncall: str | None, omit: tuple[str, ...] = (), direct: tuple[str, ...] | None = None, pyzygote_deps: tuple[str, ...] | None = None,
    pyzygote_path: Path | None = None, pyzygote_extensions: dict[str, Any] | None = None,
) -> None:
    """A project and manifest as Julia 1.10's Pkg writes them; PyZygote's entry has its
    dependencies, weak dependencies and extensions only with ``pyzygote_deps`` (the extensions
    of julia_src/Project.toml unless ``pyzygote_extensions``)."""
    project.mkdir(parents=True, exist_ok=True)
    pkgs = {
        "PythonCall": (setup.PYTHONCALL_UUID, pythoncall or "0.9.34", None),
        "Zygote": (setup.ZYGOTE_UUID, "0.7.12", None),
        "ChainRulesCore": ("d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4", "1.26.1", None),
        "ForwardDiff": ("f6369f11-7733-5829-9624-2563aa707210", "1.4.5", None),
        "PyZygote": (setup.pyzygote_julia_uuid(), "0.1.0", str(pyzygote_path or setup.julia_src_path())),
    }
    pkgs = {k: v for k, v in pkgs.items() if k not in omit}
    direct = tuple(pkgs) if direct is None else direct
    (project / "Project.toml").write_text(
        "[deps]\n" + "".join(f'{n} = "{pkgs[n][0]}"\n' for n in direct if n in pkgs)
    )
    lines = ['julia_version = "1.10.9"', 'manifest_format = "2.0"', ""]
    for name, (uuid, version, path) in pkgs.items():
        lines += [f"[[deps.{name}]]", f'uuid = "{uuid}"', f'version = "{version}"']
        if path:
            lines.append(f"path = {json.dumps(path)}")
        if name == "PyZygote" and pyzygote_deps is not None:
            src = _toml(setup.julia_src_path() / "Project.toml")
            extensions = src["extensions"] if pyzygote_extensions is None else pyzygote_extensions
            lines.append("deps = [" + ", ".join(json.dumps(d) for d in pyzygote_deps) + "]")
            lines.append("weakdeps = " + json.dumps(sorted(src["weakdeps"])))
            if extensions:
                lines += ["", "    [deps.PyZygote.extensions]"]
                lines += [f"    {ext} = {json.dumps(triggers)}" for ext, triggers in extensions.items()]
        lines.append("")
    (project / "Manifest.toml").write_text("\n".join(lines))


_REAL_PATH_CONFLICT = setup._pyzygote_path_conflict


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_engine_state: None, no_network: list[str]) -> Path:
    """Offline juliapkg with PYTHON_JULIAPKG_EXE and a project holding every package."""
    if setup._juliacall_pinned_pythoncall() is None:
        pytest.skip("juliacall is not installed")
    project = tmp_path / "project"
    _write_project(project, pythoncall=setup._juliacall_pinned_pythoncall())
    # A clone of the repository tested with another checkout's editable install has two
    # pyzygote juliapkg.json files, which juliapkg would refuse to merge (see
    # test_two_copies_of_pyzygote_that_juliapkg_would_merge_are_not_set_up); not the point here.
    monkeypatch.setattr(setup, "_pyzygote_path_conflict", lambda: None)
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(_fake_julia(tmp_path)))
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(project))
    monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    return project


# --- engine selection ------------------------------------------------------------------------
def test_precedence_call_over_with_over_set_engine_over_env(monkeypatch: pytest.MonkeyPatch, clean_engine_state: None) -> None:
    monkeypatch.setenv("PYZYGOTE_ENGINE", "numpy")
    assert pz.current_engine_name() == "numpy"
    monkeypatch.setenv("PYZYGOTE_ENGINE", " Julia ")
    assert pz.current_engine_name() == "julia"
    pz.set_engine("numpy")
    assert pz.current_engine_name() == "numpy"
    with pz.engine("julia"):
        assert pz.current_engine_name() == "julia"
        assert pz.current_engine_name("numpy") == "numpy"
        with pz.engine("numpy"):
            assert pz.current_engine_name() == "numpy"
        assert pz.current_engine_name() == "julia"
    assert pz.current_engine_name() == "numpy"


def test_invalid_engine_names(monkeypatch: pytest.MonkeyPatch, clean_engine_state: None) -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        pz.set_engine("jax")
    with pytest.raises(ValueError):
        with pz.engine("torch"):
            pass
    monkeypatch.setenv("PYZYGOTE_ENGINE", "fortran")
    with pytest.raises(ValueError, match="the environment variable PYZYGOTE_ENGINE must be one of"):
        pz.current_engine_name()


def test_auto_uses_julia_when_set_up_without_notice(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup.julia_is_set_up()
    assert pz.current_engine_name() == "julia"
    assert capsys.readouterr().err == ""


def test_auto_keeps_long_programs_on_the_numpy_engine_with_one_notice(
    prepared: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop unrolled by tracing would be one very long Julia function, whose compilation grows
    faster than its length: engine='auto' runs it on the NumPy engine, saying so once; unless
    the program calls a Julia function, which only Julia runs."""
    from pyzygote import engines

    monkeypatch.setattr(engines, "_long_notice_shown", [False])
    monkeypatch.delenv("PYZYGOTE_QUIET", raising=False)
    limit = engines.AUTO_JULIA_MAX_EQUATIONS

    def loop(x, steps):  # 2 operations a step
        for _ in range(steps):
            x = x * 0.999 + 0.001
        return x

    short = pz.make_program(lambda x: loop(x, limit // 2), 1.0)
    long = pz.make_program(lambda x: loop(x, limit // 2 + 1), 1.0)
    assert len(short.eqns) <= limit < len(long.eqns)
    assert pz.current_engine_name(program=short) == "julia"
    assert capsys.readouterr().err == ""
    for _ in range(2):
        assert pz.current_engine_name(program=long) == "numpy"
        assert pz.current_engine_name("julia", program=long) == "julia"  # asked for
    err = capsys.readouterr().err
    assert err.count(f"program of {len(long.eqns)} operations") == 1 and "engine='julia'" in err
    double = pz.julia_function("x -> 2 .* x", result_shape=())
    calls_julia = pz.make_program(lambda x: double(loop(x, limit // 2 + 1)), 1.0)
    assert pz.current_engine_name(program=calls_julia) == "julia"
    solve = lambda k: pz.odesolve(lambda u, p, t: -p * u, np.ones(1), np.array([0.0, 1.0]), k, alg="CVODE_BDF")  # noqa: E731
    julia_solver = pz.make_program(lambda k: loop(solve(k)[-1, 0], limit // 2 + 1), 1.0)  # a solver only Julia has
    assert pz.current_engine_name(program=julia_solver) == "julia"
    # the same inside an nlsolve residual and an ODE right-hand side (was: the NumPy engine,
    # which cannot run them)
    in_residual = lambda q: pz.nlsolve(lambda u, p: double(u) - p, np.ones(1), q)[0]  # noqa: E731
    in_rhs = lambda k: pz.odesolve(lambda u, p, t: -double(p * u), np.ones(1), np.array([0.0, 1.0]), k)[-1, 0]  # noqa: E731
    julia_solver_in_residual = lambda q: pz.nlsolve(lambda u, p: solve(u)[-1] - p, np.ones(1), q)[0]  # noqa: E731
    double = pz.julia_function("x -> 2 .* x", result_shape=(1,))
    for nested in (
        pz.make_program(lambda k: loop(in_residual(np.reshape(k, (1,))), limit // 2 + 1), 1.0),
        pz.make_program(lambda k: loop(in_rhs(np.reshape(k, (1,))), limit // 2 + 1), 1.0),
        pz.make_program(lambda k: loop(julia_solver_in_residual(np.reshape(k, (1,))), limit // 2 + 1), 1.0),
    ):
        assert len(nested.eqns) > limit
        assert pz.current_engine_name(program=nested) == "julia"

    (g,) = pz.gradient(lambda x: loop(x, limit // 2 + 1), 1.0)  # traced, and run on the NumPy engine
    np.testing.assert_allclose(g, 0.999 ** (limit // 2 + 1), rtol=1e-12)


def test_auto_falls_back_to_numpy_with_exactly_one_notice(no_julia: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.array([1.0, 2.0])
    for _ in range(3):
        (g,) = pz.gradient(lambda v: np.sum(v**2), x)
        np.testing.assert_allclose(g, 2 * x)
    err = capsys.readouterr().err
    assert err.count("using the NumPy engine") == 1, err
    assert "pyzygote setup-julia" in err


def test_pyzygote_quiet_silences_the_notice(
    no_julia: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYZYGOTE_QUIET", "1")
    assert pz.current_engine_name() == "numpy"
    assert capsys.readouterr().err == ""


def test_engine_julia_without_julia_fails_fast(no_julia: Path, no_network: list[str]) -> None:
    had_juliacall = "juliacall" in sys.modules
    t0 = time.perf_counter()
    with pytest.raises(pz.JuliaNotAvailableError) as info:
        pz.gradient(lambda v: np.sum(v**2), np.ones(3), engine="julia")
    assert time.perf_counter() - t0 < 1.0
    msg = str(info.value)
    assert "not set up" in msg and "pyzygote doctor" in msg and "numpy" in msg
    assert no_network == []
    assert ("juliacall" in sys.modules) == had_juliacall  # never imported (importing starts Julia)


def test_engine_julia_online_without_resolve_suggests_setup(online_no_julia: Path, no_network: list[str]) -> None:
    t0 = time.perf_counter()
    with pz.engine("julia"), pytest.raises(pz.JuliaNotAvailableError) as info:
        pz.jacobian(lambda v: v * 2.0, np.ones(2))
    assert time.perf_counter() - t0 < 1.0
    assert "pyzygote setup-julia" in str(info.value)
    assert no_network == []


def test_importing_pyzygote_does_not_import_juliacall() -> None:
    code = "import sys, pyzygote; print('juliacall' in sys.modules, 'juliapkg' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- julia_function / julia_include without Julia ---------------------------------------
def test_julia_function_is_lazy_and_has_a_repr(no_julia: Path) -> None:
    f = pz.julia_function("(x, p) -> sum(abs2, x .- p) + sum(sin, x)")
    assert isinstance(f, JuliaFunction)
    assert repr(f) == "julia_function('(x, p) -> sum(abs2, x .- p) + sum(sin, x)')"
    with pytest.raises(TypeError, match="Julia source text"):
        pz.julia_function(lambda x: x)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda f, x, e: pz.gradient(f, x, engine=e),
        lambda f, x, e: pz.withgradient(f, x, engine=e),
        lambda f, x, e: pz.grad(f, engine=e)(x),
        lambda f, x, e: pz.value_and_grad(f, engine=e)(x),
        lambda f, x, e: pz.pullback(f, x, engine=e),
        lambda f, x, e: pz.jacobian(f, x, engine=e),
        lambda f, x, e: pz.hessian(f, x, engine=e),
        lambda f, x, e: pz.jvp(f, (x,), (x,), engine=e),
        lambda f, x, e: f(x, engine=e),
    ],
    ids=["gradient", "withgradient", "grad", "value_and_grad", "pullback", "jacobian", "hessian", "jvp", "call"],
)
def test_julia_function_on_numpy_engine_is_a_type_error(no_julia: Path, call: Any) -> None:
    f = pz.julia_function("x -> sum(abs2, x)")
    x = np.ones(3)
    with pytest.raises(TypeError, match="numpy engine"):
        call(f, x, "numpy")
    with pz.engine("numpy"), pytest.raises(TypeError, match="numpy engine"):
        call(f, x, None)
    with pytest.raises(pz.JuliaNotAvailableError, match="not set up"):
        call(f, x, None)  # auto, Julia not set up
    with pytest.raises(pz.JuliaNotAvailableError):
        call(f, x, "julia")


def test_julia_function_numpy_engine_from_set_engine_and_env(no_julia: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = pz.julia_function("x -> sum(x)")
    monkeypatch.setenv("PYZYGOTE_ENGINE", "numpy")
    with pytest.raises(TypeError, match="numpy engine"):
        pz.gradient(f, np.ones(2))
    monkeypatch.delenv("PYZYGOTE_ENGINE")
    pz.set_engine("numpy")
    with pytest.raises(TypeError, match="numpy engine"):
        pz.gradient(f, np.ones(2))


def test_julia_include_without_julia(no_julia: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pz.julia_include(tmp_path / "missing.jl")
    model = tmp_path / "model.jl"
    model.write_text("energy(x) = sum(abs2, x) / 2\n")
    with pytest.raises(pz.JuliaNotAvailableError):
        pz.julia_include(model)


def test_wrapper_source_rebuilds_pytrees() -> None:
    _, tree = flatten((np.ones(2), {"a": 1.0, "b": (np.ones(3),)}, [2.0, np.ones(1)]))
    src = wrapper_source(tree)
    assert src == "f -> (l1, l2, l3, l4, l5) -> outputs(f(l1, (; a = l2, b = (l3,)), (l4, l5)))"
    _, tree = flatten(())
    assert wrapper_source(tree) == "f -> () -> outputs(f())"


def test_dict_keys_must_be_julia_identifiers() -> None:
    for bad in ({"end": 1.0}, {"a b": 1.0}, {1: 1.0}):
        _, tree = flatten((bad,))
        with pytest.raises(TypeError, match="Julia identifiers"):
            wrapper_source(tree)
    # Python keywords that Julia allows as field names
    _, tree = flatten(({"lambda": 1.0, "class": 2.0},))
    assert "lambda = " in wrapper_source(tree) and "class = " in wrapper_source(tree)


# --- the set-up check (files only) --------------------------------------------------------
def test_prepared_offline_project_is_set_up(prepared: Path, no_network: list[str]) -> None:
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems
    assert st.offline and st.mode == "juliapkg"
    assert st.julia_version == "1.10.9"
    assert st.package_version("Zygote") == "0.7.12"
    assert st.executable and st.executable.endswith("julia")
    assert no_network == []


def test_missing_packages_are_reported(prepared: Path, tmp_path: Path) -> None:
    pc = setup._juliacall_pinned_pythoncall()
    _write_project(prepared, pythoncall=pc, omit=("PyZygote",))
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("PyZygote" in p for p in st.problems)
    _write_project(prepared, pythoncall=pc, direct=("PythonCall", "Zygote"))
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("direct dependencies" in p for p in st.problems)
    (prepared / "Manifest.toml").unlink()
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("no Manifest" in p for p in st.problems)


def test_pythoncall_must_match_juliacall(prepared: Path) -> None:
    _write_project(prepared, pythoncall="0.9.1")
    st = setup.julia_status(refresh=True)
    assert not st.ok
    assert any("PythonCall 0.9.1" in p and st.pythoncall_required in p for p in st.problems)


def test_offline_without_executable(prepared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(tmp_path / "nope" / "julia"))
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("PYTHON_JULIAPKG_EXE" in p for p in st.problems)
    assert any("pyzygote doctor" in f for f in st.fixes)


def test_juliacall_env_mode(prepared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_PROJECT", "PYTHON_JULIAPKG_OFFLINE"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(tmp_path / "bin" / "julia"))
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("set together" in p for p in st.problems)
    monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", str(prepared))
    st = setup.julia_status(refresh=True)
    assert st.ok and st.mode == "juliacall-env", st.problems


def test_juliacall_bindir_alone_is_passed_on(prepared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Found by the PythonCall review: PYTHON_JULIACALL_BINDIR without EXE and PROJECT was refused,
    but juliacall 0.9.34 passes it to Julia as --home whatever else is set (it must exist)."""
    monkeypatch.setenv("PYTHON_JULIACALL_BINDIR", str(tmp_path / "bin"))
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems
    assert any("--home" in note for note in st.notes)
    monkeypatch.setenv("PYTHON_JULIACALL_BINDIR", str(tmp_path / "missing"))
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("PYTHON_JULIACALL_BINDIR" in p and "does not exist" in p for p in st.problems)


def _julia_version_h(exe: Path, version: str) -> None:
    """The header an official Julia tarball (and juliaup) ships beside bin/julia."""
    major, minor, patch = version.split(".")
    header = exe.parent.parent / "include" / "julia" / "julia_version.h"
    header.parent.mkdir(parents=True, exist_ok=True)
    header.write_text(
        f'#ifndef JL_VERSION_H\n#define JL_VERSION_H\n#define JULIA_VERSION_STRING "{version}"\n'
        f"#define JULIA_VERSION_MAJOR {major}\n#define JULIA_VERSION_MINOR {minor}\n#define JULIA_VERSION_PATCH {patch}\n"
        "#define JULIA_VERSION_IS_RELEASE 1\n#endif\n"
    )


def test_the_julia_version_is_read_from_the_installation_without_running_it(tmp_path: Path, no_network: list[str]) -> None:
    exe = _fake_julia(tmp_path)
    assert setup.julia_version_of(str(exe)) is None
    _julia_version_h(exe, "1.10.9")
    link = tmp_path / "on-path" / "julia"
    link.parent.mkdir()
    link.symlink_to(exe)
    assert setup.julia_version_of(str(link)) == (1, 10, 9)  # a symlink on the PATH to the installation
    assert setup.julia_version_of(None) is None
    assert no_network == []


def test_the_manifest_is_the_one_julia_would_read(tmp_path: Path) -> None:
    """Base.manifest_names: JuliaManifest-vX.Y, Manifest-vX.Y (Julia >= 1.10.8, its own X.Y), then
    JuliaManifest, Manifest, whatever the project file is called."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "JuliaProject.toml").write_text("[deps]\n")
    assert setup._project_files(project) == (project / "JuliaProject.toml", None)
    (project / "Manifest.toml").write_text("")
    assert setup._project_files(project)[1] == project / "Manifest.toml"  # not only JuliaManifest.toml
    for v in ("1.9", "1.10", "1.11"):
        (project / f"Manifest-v{v}.toml").write_text("")
    assert setup._project_files(project, (1, 10, 9))[1] == project / "Manifest-v1.10.toml"
    assert setup._project_files(project, (1, 10, 4))[1] == project / "Manifest.toml"  # before versioned manifests
    assert setup._project_files(project, (1, 12, 1))[1] == project / "Manifest.toml"  # none for 1.12
    (project / "JuliaManifest-v1.11.toml").write_text("")
    assert setup._project_files(project, (1, 11, 2))[1] == project / "JuliaManifest-v1.11.toml"
    # the version unknown: the newest versioned manifest, by number (1.11 > 1.10 > 1.9), Julia's first
    assert setup._project_files(project)[1] == project / "JuliaManifest-v1.11.toml"
    (project / "JuliaManifest-v1.11.toml").unlink()
    assert setup._project_files(project)[1] == project / "Manifest-v1.11.toml"
    (project / "Manifest-v1.11.toml").unlink()
    assert setup._project_files(project)[1] == project / "Manifest-v1.10.toml"
    # but not one that no Julia pyzygote runs on reads (review: Manifest-v1.9.toml was taken)
    (project / "Manifest-v1.10.toml").unlink()
    assert setup._project_files(project)[1] == project / "Manifest.toml"


def test_a_manifest_for_another_julia_beside_the_projects_is_not_read(prepared: Path, tmp_path: Path) -> None:
    """Julia 1.10.9 reads Manifest.toml where the project also has a Manifest-v1.11.toml (left by
    Julia 1.11): the check read the newest versioned manifest whatever the Julia."""
    (prepared / "Manifest-v1.11.toml").write_text('julia_version = "1.11.5"\nmanifest_format = "2.0"\n\n[deps]\n')
    st = setup.julia_status(refresh=True)
    assert not st.ok and st.manifest == str(prepared / "Manifest-v1.11.toml")  # which Julia runs is unknown
    _julia_version_h(tmp_path / "bin" / "julia", "1.10.9")  # the prepared fixture's julia
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems
    assert st.executable_version == (1, 10, 9) and st.manifest == str(prepared / "Manifest.toml")
    assert not st.notes or not any("resolved by Julia" in n for n in st.notes)
    _julia_version_h(tmp_path / "bin" / "julia", "1.11.5")
    st = setup.julia_status(refresh=True)
    assert st.manifest == str(prepared / "Manifest-v1.11.toml") and not st.ok
    (prepared / "Manifest-v1.11.toml").unlink()
    st = setup.julia_status(refresh=True)
    assert st.ok and any("resolved by Julia 1.10.9 but the executable is Julia 1.11.5" in n for n in st.notes)
    _julia_version_h(tmp_path / "bin" / "julia", "1.12.1")
    st = setup.julia_status(refresh=True)
    assert st.ok and any("Julia 1.12.1" in n and "1.10.3 to 1.11.x" in n for n in st.notes)


def test_a_missing_system_image_is_not_set_up(prepared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """juliacall 0.9.34 reads PYTHON_JULIACALL_SYSIMAGE with check_exists=True and raises before
    Julia starts: engine='auto' would pick Julia and the first call would fail."""
    image = tmp_path / "pyzygote-sysimage.so"
    monkeypatch.setenv("PYTHON_JULIACALL_SYSIMAGE", str(image))
    st = setup.julia_status()
    assert not st.ok and any("PYTHON_JULIACALL_SYSIMAGE" in p and "does not exist" in p for p in st.problems)
    assert not setup.julia_is_set_up()
    image.write_bytes(b"")
    assert setup.julia_status(refresh=True).ok


def _meta_for(project: Path, exe: Path) -> dict[str, Any]:
    """What juliapkg's resolve records, for the juliapkg.json files it would read now."""
    import hashlib

    import juliapkg.deps as jdeps

    files = {}
    for fn in jdeps.deps_files():
        files[fn] = {"timestamp": os.path.getmtime(fn), "hash_sha256": hashlib.sha256(Path(fn).read_bytes()).hexdigest()}
    return {
        "meta_version": jdeps.META_VERSION,
        "dev": setup._juliapkg_dev_flag(),
        "version": "1.10.9",
        "executable": str(exe),
        "deps_files": files,
        "pkgs": [],
        "offline": False,
        "override_executable": None,
    }


def test_online_project_needs_a_current_resolve(prepared: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("juliapkg")
    import juliapkg.state

    exe = Path(os.environ["PYTHON_JULIAPKG_EXE"])
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE")
    monkeypatch.delenv("PYTHON_JULIAPKG_OFFLINE")
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("not installed Julia" in p for p in st.problems)
    assert any("pyzygote setup-julia" in f for f in st.fixes)

    # juliapkg computed its default deps file at import; make it this project's.
    monkeypatch.setitem(juliapkg.state.STATE, "deps", str(prepared / "pyjuliapkg" / "juliapkg.json"))
    meta = prepared / "pyjuliapkg" / "meta.json"
    meta.parent.mkdir()
    meta.write_text(json.dumps(_meta_for(prepared, exe)))
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems
    assert st.executable == str(exe) and st.executable_source == "juliapkg's last resolve"

    # a new juliapkg.json would make juliacall re-resolve (install): not set up
    (prepared / "pyjuliapkg" / "juliapkg.json").write_text('{"packages": {}}')
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("re-install" in p for p in st.problems)

    # an offline resolve stands: juliapkg re-resolves going from offline to online, but pyzygote
    # starts it offline (found by the PythonCall review: this was refused)
    (prepared / "pyjuliapkg" / "juliapkg.json").unlink()
    m = _meta_for(prepared, exe)
    m["offline"] = True
    meta.write_text(json.dumps(m))
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems


def test_julia_is_set_up_is_cached_and_refreshes(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert setup.julia_is_set_up()
    calls = []
    real = setup._compute_status
    monkeypatch.setattr(setup, "_compute_status", lambda: calls.append(1) or real())
    for _ in range(5):
        setup.julia_is_set_up()
    assert calls == []  # cached while nothing changes
    (prepared / "Manifest.toml").write_text("")  # touching the manifest invalidates...
    os.utime(prepared / "Manifest.toml", ns=(time.time_ns(), time.time_ns() + 10**9))
    # ...once the file stamps are looked at again (at most every _STAMP_TTL seconds, so that
    # engine="auto" costs no file system calls per gradient).
    monkeypatch.setattr(setup, "_STAMP_TTL", 0.0)
    assert not setup.julia_is_set_up()
    assert calls == [1]


# --- the session's Python side ------------------------------------------------------------------
def _juliacall_source() -> str:
    import importlib.util

    spec = importlib.util.find_spec("juliacall")
    if spec is None or spec.origin is None:
        pytest.skip("juliacall is not installed")
    return Path(spec.origin).read_text()


def test_env_defaults_are_real_juliacall_options() -> None:
    src = _juliacall_source()
    for var, _value, _others in session.ENV_DEFAULTS:
        name = var.removeprefix("PYTHON_JULIACALL_").lower()
        assert re.search(rf"\(\s*'{name}'", src), f"juliacall reads no option {name!r} ({var})"
    assert not re.search(r"\(\s*'optlevel'", src)  # PYTHON_JULIACALL_OPTLEVEL does not exist


def test_env_defaults_respect_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, _, _ in session.ENV_DEFAULTS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("JULIA_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTHON_JULIACALL_HANDLE_SIGNALS", "no")
    applied = session._apply_env_defaults()
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "no"
    assert applied == {"PYTHON_JULIACALL_THREADS": "1", "PYTHON_JULIACALL_OPTIMIZE": "2"}
    monkeypatch.delenv("PYTHON_JULIACALL_THREADS")
    monkeypatch.setenv("JULIA_NUM_THREADS", "4")
    assert "PYTHON_JULIACALL_THREADS" not in session._apply_env_defaults()


def test_juliapkg_reads_the_current_environment_when_julia_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """juliapkg reads its options once, at import; starting Julia must not use stale ones."""
    jstate = pytest.importorskip("juliapkg.state")
    if "juliacall" in sys.modules:
        pytest.skip("juliacall is already imported")
    saved = dict(jstate.STATE)
    try:
        monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "imported-under-this"))
        monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "no")
        jstate.reset_state()  # as when the set-up check (or a test) imported juliapkg earlier
        monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "current"))
        monkeypatch.setenv("PYTHON_JULIACALL_INIT", "no")  # import juliacall without starting Julia
        session._import_juliacall("juliapkg")
        assert jstate.STATE["project"] == str(tmp_path / "current")
        assert jstate.STATE["offline"] is False  # forced offline only while juliacall imported
    finally:
        sys.modules.pop("juliacall", None)
        jstate.STATE.clear()
        jstate.STATE.update(saved)


def test_torch_imported_first_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", type(sys)("torch"))
    if "juliacall" in sys.modules:
        monkeypatch.delitem(sys.modules, "juliacall")
    with pytest.warns(RuntimeWarning, match="torch was imported before Julia"):
        session._warn_torch()
    monkeypatch.setitem(sys.modules, "juliacall", type(sys)("juliacall"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session._warn_torch()


def test_translate_error_for_pythoncall_type_errors_and_hints() -> None:
    original = TypeError("Julia: MethodError: no method matching f(::Int64)")
    err = session.translate_error(original)
    assert isinstance(err, pz.JuliaError)
    assert err.julia_type == "MethodError" and "no method matching" in str(err)
    # juliacall's exception holds Julia values: kept in a holder that releases them in the main thread
    assert err.original is original and isinstance(err.__dict__["_held_original"], session.MainThreadValue)
    assert pz.JuliaError("raised in Python").original is None
    plain = ValueError("not from Julia")
    assert session.translate_error(plain) is plain
    assert "writes into arrays" in (session.hint_for("Mutating arrays is not supported -- called setindex!") or "")
    assert "C call" in (session.hint_for("Can't differentiate foreigncall expression $(Expr(:foreigncall))") or "")
    assert "try/catch" in (session.hint_for("Can't differentiate function execution in catch block at x.jl:3.") or "")
    ode_hint = session.hint_for("ArgumentError: Package OrdinaryDiffEqSDIRK not found in current path") or ""
    assert "pyzygote setup-julia`" in ode_hint and "direct dependencies" in ode_hint  # in the manifest is not enough
    assert "--full" in (session.hint_for("ArgumentError: Package DifferentialEquations not found in current path") or "")
    assert "jacobian" in (session.hint_for("Output is an array, so the gradient is not defined.") or "")
    dopri = "ArgumentError: no loaded solver package exports an ODE solver Dopri5() that needs no arguments;"
    assert "diffrax's name; DifferentialEquations.jl's nearest is alg='DP5'" in (session.hint_for(dopri) or "")
    # integration review: DP8 is DifferentialEquations.jl's own solver, whose package (OrdinaryDiffEqHighOrderRK)
    # OrdinaryDiffEq 7 does not load; it was told "DifferentialEquations.jl's name; DifferentialEquations.jl's nearest"
    dp8 = session.hint_for(dopri.replace("Dopri5", "DP8")) or ""
    assert "'DP8' is a DifferentialEquations.jl solver from a solver package that is not loaded" in dp8 and "alg='Vern9'" in dp8
    assert session.hint_for(dopri.replace("Dopri5", "MySolver")) is None
    assert session.hint_for("some other error") is None


# --- array conversion ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_to_julia_passes_arrays_without_copying(shape: tuple[int, ...], dtype: Any) -> None:
    # PythonCall wraps any strided numpy array (PyArray) and PyZygoteRuntime.jlarg makes the one copy
    a = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    for x in (a, a.T, a[..., ::-1], np.broadcast_to(a, (2,) + shape)[1]):
        assert to_julia(x) is x


def test_to_julia_scalars_and_byte_order() -> None:
    assert to_julia(np.array(1.5)) == 1.5 and type(to_julia(np.array(1.5))) is np.float64
    assert type(to_julia(np.array(1.5, dtype=np.float32))) is np.float32
    big = np.arange(3.0).astype(">f8")
    assert to_julia(big).dtype.isnative
    np.testing.assert_array_equal(to_julia(big), [0.0, 1.0, 2.0])


def test_from_julia() -> None:
    src = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    out = from_julia(src, np.float64, (2, 3))
    assert out.flags.c_contiguous and not np.shares_memory(out, src)
    np.testing.assert_array_equal(out, src)
    assert from_julia(np.array(2.0, dtype=np.float32), np.float32, ()) == np.float32(2.0)
    assert type(from_julia(np.array(2.0), np.float64, ())) is np.float64
    np.testing.assert_array_equal(from_julia(None, np.float32, (2,)), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="pyzygote bug"):
        from_julia(np.ones(3), np.float64, (2,))
    view = from_julia(src, np.float64, (2, 3), copy=False)
    assert np.shares_memory(view, src) and view.flags.f_contiguous


def test_results_from_julia_are_views_unless_they_could_alias() -> None:
    # Julia arrays reach numpy through the buffer protocol, as numpy arrays do here.
    const = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    fresh = np.asfortranarray(np.ones((2, 3)))
    spec = [(np.dtype(np.float64), (2, 3))]
    (out,) = results_from_julia([fresh], spec, "output", keep_apart=[const])
    assert np.shares_memory(out, fresh)
    (out,) = results_from_julia([const], spec, "output", keep_apart=[const])
    assert not np.shares_memory(out, const)
    np.testing.assert_array_equal(out, const)
    # a reshape of a constant shares its memory too (Julia's reshape of an Array does)
    (out,) = results_from_julia([const.reshape(3, 2, order="F")], [(np.dtype(np.float64), (3, 2))], "output", [const])
    assert not np.shares_memory(out, const)
    # Zygote gives x + y the same gradient array for both arguments
    g1, g2 = results_from_julia([fresh, fresh], spec * 2, "gradient")
    assert np.shares_memory(g1, fresh) and not np.shares_memory(g2, g1)
    g1[0, 0] = 5.0
    assert g2[0, 0] == 1.0
    # conversions that must copy anyway, nothing, and 0-d results
    (f32,) = results_from_julia([fresh], [(np.dtype(np.float32), (2, 3))], "gradient")
    assert f32.dtype == np.float32 and not np.shares_memory(f32, fresh)
    none, scalar = results_from_julia([None, np.array(2.0)], [(np.dtype(np.float64), (2,)), (np.dtype(np.float64), ())], "x")
    np.testing.assert_array_equal(none, np.zeros(2))
    assert type(scalar) is np.float64 and scalar == 2.0
    with pytest.raises(ValueError, match="pyzygote bug"):
        results_from_julia([fresh], [(np.dtype(np.float64), (3, 2))], "output")


def test_results_from_julia_are_views_whose_release_waits_for_the_main_thread() -> None:
    """The Julia audit: a view's Julia array is released by Julia code in whichever thread drops
    it, which outside the main thread can hang (PythonCall.jl #578).  Copying while other threads
    ran left a view made before them exposed, and copied every result in Jupyter (whose kernel
    runs threads); each view's base now defers the release instead."""
    import threading

    from pyzygote.julia.convert import _JuliaOwned

    fresh = np.asfortranarray(np.ones((2, 3)))
    spec = [(np.dtype(np.float64), (2, 3))]
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        (out,) = results_from_julia([fresh], spec, "output")
    finally:
        release.set()
        other.join()
    assert np.shares_memory(out, fresh) and isinstance(out.base, _JuliaOwned)
    np.testing.assert_array_equal(out, fresh)


# --- the command line ------------------------------------------------------------------------
def test_doctor_reports_numpy_engine_and_setup_steps(online_no_julia: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyzygote.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"Python      {sys.version.split()[0]}" in out
    assert f"numpy       {np.__version__}" in out
    assert "set up:       no" in out
    assert "active:       numpy: the NumPy engine" in out
    assert "pyzygote setup-julia" in out
    assert f'Pkg.develop(path=raw"{setup.julia_src_path()}")' in out
    assert "PYTHON_JULIAPKG_OFFLINE=yes" in out


def test_doctor_reports_an_unknown_engine_and_fails(
    online_no_julia: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the bad-input audit: PYZYGOTE_ENGINE=jaxx printed "active: jaxx" and exited 0 while
    every call raised."""
    from pyzygote.cli import main

    monkeypatch.setenv("PYZYGOTE_ENGINE", "jaxx")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "active:       none: 'jaxx' is not an engine" in out
    assert "PYZYGOTE_ENGINE is 'jaxx': set it to one of auto, numpy, julia." in out


def test_doctor_with_prepared_project(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyzygote.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "set up:       yes" in out and "active:       julia" in out
    assert "Zygote:       0.7.12" in out and "1.10.9" in out


def test_two_copies_of_pyzygote_that_juliapkg_would_merge_are_not_set_up(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """juliapkg merges the PyZygote entries of every juliapkg.json it reads, offline too, and
    raises ("'path' entries are not unique") where they differ: the source tree's json on
    sys.path (pytest puts the repository there) and an installed wheel's are both read by
    juliapkg before 0.1.28 (its deps_files kept every copy), so juliacall could not start
    although the set-up check said yes. Here deps_files returns both, as those versions do."""
    import juliapkg.deps as jdeps

    monkeypatch.setattr(setup, "_pyzygote_path_conflict", _REAL_PATH_CONFLICT)
    wheel = tmp_path / "site-packages" / "pyzygote"
    wheel.mkdir(parents=True)
    spec = setup.load_juliapkg_json()
    spec["packages"]["PyZygote"]["path"] = "julia_src"  # what setup.py writes into a wheel
    (wheel / "juliapkg.json").write_text(json.dumps(spec))
    ours = str(setup.juliapkg_json_path())
    monkeypatch.setattr(jdeps, "deps_files", lambda: [ours, str(wheel / "juliapkg.json")])
    st = setup.julia_status(refresh=True)
    assert not st.ok
    (problem,) = [p for p in st.problems if "PyZygote different paths" in p]
    assert str(setup.julia_src_path()) in problem and str(wheel / "julia_src") in problem
    monkeypatch.setattr(jdeps, "deps_files", lambda: [ours])
    assert setup.julia_status(refresh=True).ok


def test_ode_packages_must_be_direct_dependencies(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine imports the ODE packages from top-level code, which finds only the project's
    [deps]: OrdinaryDiffEq 7 brings OrdinaryDiffEqSDIRK into the manifest (through
    OrdinaryDiffEqBDF), so a project that did not add it has all four there and still fails at
    `import OrdinaryDiffEqSDIRK` (the julia-marked ODE tests skipped on the manifest alone)."""
    from pyzygote.cli import main

    declared = setup.load_juliapkg_json()["packages"]
    added = ("OrdinaryDiffEq", "OrdinaryDiffEqLowOrderRK", "SciMLSensitivity")
    with open(prepared / "Manifest.toml", "a") as fp:
        for name in setup.ODE_PACKAGES:
            fp.write(f'\n[[deps.{name}]]\nuuid = "{declared[name]["uuid"]}"\nversion = "1.0.0"\n')
    with open(prepared / "Project.toml", "a") as fp:
        fp.writelines(f'{name} = "{declared[name]["uuid"]}"\n' for name in added)
    st = setup.julia_status(refresh=True)
    assert st.ok and set(setup.ODE_PACKAGES) <= set(st.packages)
    assert setup.ode_packages_missing(st) == ["OrdinaryDiffEqSDIRK"]
    assert main(["doctor"]) == 0
    assert "(OrdinaryDiffEqSDIRK not in the project's [deps]" in capsys.readouterr().out
    from tests.test_julia_ode import _ode_packages_missing_reason

    assert "(OrdinaryDiffEqSDIRK)" in _ode_packages_missing_reason()
    with open(prepared / "Project.toml", "a") as fp:
        fp.writelines(f'{name} = "{declared[name]["uuid"]}"\n' for name in setup.ODE_PACKAGES if name not in added)
    assert setup.ode_packages_missing(setup.julia_status(refresh=True)) == []
    assert _ode_packages_missing_reason() == ""


def _run_one_julia_test(tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in JULIA_ENV and k != "PYZYGOTE_JULIA_TESTS"}
    env.update(PYTHONPATH=str(ROOT), **env_vars)
    test = "tests/test_julia_ode.py::test_decay_matches_closed_form_on_julia[Tsit5]"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_julia_tests_fail_instead_of_skipping_where_the_environment_names_a_julia(tmp_path: Path) -> None:
    """A run pointed at a Julia (as the julia-marked tests' real run is, through
    PYTHON_JULIAPKG_EXE) whose set-up check says no would have skipped every julia-marked test
    and passed: there they fail with the reason; elsewhere they still skip."""
    offline = dict(PYTHON_JULIAPKG_EXE=str(tmp_path / "no-julia"), PYTHON_JULIAPKG_OFFLINE="yes",
                   PYTHON_JULIAPKG_PROJECT=str(tmp_path / "project"))  # fmt: skip
    named = _run_one_julia_test(tmp_path, **offline)
    assert named.returncode == 1, named.stdout + named.stderr
    assert "1 error" in named.stdout and "Julia is not set up for pyzygote" in named.stdout
    assert "no-julia is not an executable" in named.stdout and "PYZYGOTE_JULIA_TESTS=optional" in named.stdout
    optional = _run_one_julia_test(tmp_path, PYZYGOTE_JULIA_TESTS="optional", **offline)
    assert optional.returncode == 0 and "1 skipped" in optional.stdout, optional.stdout + optional.stderr
    unnamed = _run_one_julia_test(tmp_path, PYTHON_JULIAPKG_PROJECT=str(tmp_path / "project"), PYTHON_JULIAPKG_OFFLINE="yes")
    assert unnamed.returncode == 0 and "1 skipped" in unnamed.stdout, unnamed.stdout + unnamed.stderr
    required = _run_one_julia_test(tmp_path, PYZYGOTE_JULIA_TESTS="required", PYTHON_JULIAPKG_PROJECT=str(tmp_path / "project"))
    assert required.returncode == 1 and "1 error" in required.stdout, required.stdout + required.stderr


def test_missing_ode_packages_fail_the_ode_tests_where_julia_tests_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.test_julia_ode as jode
    from tests import julia_gate

    monkeypatch.setattr(jode, "_ode_packages_missing_reason", lambda: "ODE packages not direct dependencies (X)")

    def marks(decorate: Any) -> dict[str, Any]:
        def test_an_ode() -> None:  # a named function: pytest's marks take lambdas as arguments
            pass

        return {m.name: m for m in decorate(test_an_ode).pytestmark}

    monkeypatch.setenv("PYZYGOTE_JULIA_TESTS", "required")
    required = marks(jode.julia)
    assert set(required) == {"julia", "julia_unavailable"}
    assert required["julia_unavailable"].kwargs["reason"] == "ODE packages not direct dependencies (X)"
    with pytest.raises(pytest.fail.Exception, match=r"\(X\) \(julia-marked tests are required here: PYZYGOTE_JULIA_TESTS=required\)"):
        julia_gate.skip_or_fail("ODE packages not direct dependencies (X)")
    monkeypatch.setenv("PYZYGOTE_JULIA_TESTS", "optional")
    optional = marks(jode.julia)
    assert set(optional) == {"julia", "skip"} and optional["skip"].kwargs["reason"].endswith("(X)")
    with pytest.raises(pytest.skip.Exception):
        julia_gate.skip_or_fail("ODE packages not direct dependencies (X)")


def test_doctor_console_script_in_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in JULIA_ENV}
    env.update(PYTHONPATH=str(ROOT), PYTHON_JULIAPKG_PROJECT=str(tmp_path), PYTHON_JULIAPKG_OFFLINE="yes")
    env["PYTHON_JULIAPKG_EXE"] = str(tmp_path / "no-julia")
    proc = subprocess.run([sys.executable, "-m", "pyzygote.cli", "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "set up:       no" in proc.stdout and "Offline / HPC setup" in proc.stdout


def test_setup_julia_offline_installs_nothing(no_julia: Path, capsys: pytest.CaptureFixture[str], no_network: list[str]) -> None:
    from pyzygote.cli import main

    if setup._dist_version("juliacall") is None:
        pytest.skip("juliacall is not installed")
    assert main(["setup-julia", "--full"]) == 1
    out = capsys.readouterr().out
    assert "offline mode" in out and "DifferentialEquations" in out
    assert no_network == []


# --- pyzygote/juliapkg.json ----------------------------------------------------------------------
def test_juliapkg_json_matches_julia_src() -> None:
    data = setup.load_juliapkg_json()
    pkgs = data["packages"]
    assert set(pkgs) >= {"PyZygote", "Zygote", "ChainRulesCore", "ForwardDiff"}
    for name, spec in pkgs.items():
        assert UUID_RE.match(spec["uuid"]), name
    assert pkgs["Zygote"]["uuid"] == setup.ZYGOTE_UUID
    assert pkgs["PyZygote"]["dev"] is True
    src = setup.julia_src_path()
    project = _toml(src / "Project.toml")
    assert project["name"] == "PyZygote"
    assert project["uuid"] == pkgs["PyZygote"]["uuid"]
    for name, uuid in project.get("deps", {}).items():
        if name in pkgs:
            assert pkgs[name]["uuid"] == uuid, name


def test_juliapkg_json_julia_compat() -> None:
    compat_mod = pytest.importorskip("juliapkg.compat")
    data = setup.load_juliapkg_json()
    compat = compat_mod.Compat.parse(data["julia"])
    V = compat_mod.Version
    assert V(1, 10, 0) in compat and V(1, 10, 9) in compat and V(1, 11, 5) in compat
    assert V(1, 9, 4) not in compat and V(2, 0, 0) not in compat
    assert compat & compat_mod.Compat.parse("^1.10.3")  # juliacall's own requirement
    for spec in data["packages"].values():
        if "version" in spec:
            assert compat_mod.Compat.parse(spec["version"])


def test_juliapkg_finds_the_json_and_the_julia_src_path() -> None:
    jdeps = pytest.importorskip("juliapkg.deps")
    ours = os.path.normcase(os.path.normpath(str(setup.juliapkg_json_path())))
    assert ours in jdeps.deps_files()
    _compat, pkgs = jdeps.find_requirements()
    spec = {p.name: p for p in pkgs}["PyZygote"]
    assert spec.dev is True
    assert Path(spec.path) == setup.julia_src_path()
    assert (Path(spec.path) / "Project.toml").is_file()
    assert spec.uuid == setup.pyzygote_julia_uuid()


def test_juliapkg_json_declares_the_ode_extension_triggers() -> None:
    """juliapkg.json installs what PyZygote's ODE extension needs; --full adds DifferentialEquations and Sundials."""
    declared = setup.load_juliapkg_json()["packages"]
    compat_mod = pytest.importorskip("juliapkg.compat")
    for name in setup.ODE_PACKAGES:
        assert UUID_RE.match(declared[name]["uuid"]), name
        assert compat_mod.Compat.parse(declared[name]["version"])
    assert [n for n, _, _ in setup.FULL_PACKAGES] == ["DifferentialEquations", "Sundials"]
    project = _toml(setup.julia_src_path() / "Project.toml")
    weak = project.get("weakdeps", {})
    exts = {ext: ([t] if isinstance(t, str) else t) for ext, t in project.get("extensions", {}).items()}
    assert set(exts["PyZygoteODEExt"]) == set(setup.ODE_PACKAGES)
    for name in setup.ODE_PACKAGES:
        assert weak[name] == declared[name]["uuid"], name
    assert (setup.julia_src_path() / "ext" / "PyZygoteODEExt.jl").is_file()


def test_compiling_loads_the_ode_packages_for_a_solve_nested_in_a_residual(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shooting method (pz.odesolve inside pz.nlsolve's residual) emits PyZygote.odesolve
    inside the residual's function, whose methods come with the ODE extension: the engine
    looked for solves among the program's own equations only, so a session whose first ODE
    was such a one failed with a MethodError (julia-marked test_nlsolve tests passed only
    after other files had loaded the packages). Julia is faked here: only the compile steps
    that decide what to load run."""
    from pyzygote.julia import engine as julia_engine

    loaded: list[str] = []
    monkeypatch.setattr(session, "load_ode_packages", lambda: loaded.append("ode"))
    monkeypatch.setattr(session, "load_extra_solvers", lambda: loaded.append("extra"))
    monkeypatch.setattr(session, "new_module", lambda *a, **k: "module")
    monkeypatch.setattr(session, "include_text", lambda *a, **k: "julia object")
    builds = {"getname": "builder", "build": ("fn", ())}
    monkeypatch.setattr(session, "runtime_call", lambda name, *a, **k: builds[name])

    def shooting(alg: str, rhs_of: Any = None) -> Any:
        def hit(x0: Any, q: Any) -> Any:
            rhs = rhs_of or (lambda x, _, t: x**2)
            return pz.odesolve(rhs, x0, (0.0, 1.0), None, alg=alg)[-1] - q

        return pz.make_program(lambda q: pz.nlsolve(hit, np.array([0.1]), q)[0], np.array([9.0]))

    compiled = julia_engine._compile(shooting("Tsit5"))
    assert loaded == ["ode"] and not compiled.calls_julia
    loaded.clear()
    julia_engine._compile(shooting("TRBDF2"))  # a solver only Julia has, found among the loaded packages
    assert loaded == ["ode", "extra"]
    loaded.clear()
    rate = pz.julia_function("x -> x .^ 2", result_shape=(1,))
    compiled = julia_engine._compile(shooting("Tsit5", lambda x, _, t: rate(x)))
    assert loaded == ["ode"] and compiled.calls_julia  # errors come from the user's Julia code


def test_failed_start_makes_auto_fall_back(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pz.current_engine_name() == "julia"
    session._state["error"] = "Julia failed to start: simulated"
    assert not setup.julia_is_set_up()
    assert pz.current_engine_name() == "numpy"
    assert "using the NumPy engine" in capsys.readouterr().err
    with pytest.raises(pz.JuliaNotAvailableError, match="simulated"):
        pz.gradient(lambda v: np.sum(v), np.ones(2), engine="julia")


def test_a_project_resolved_before_pyzygote_gained_a_dependency_is_not_set_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prepared: Path) -> None:
    """Found by the Julia audit: Julia loads a developed package's dependencies from the
    manifest, so a project resolved before julia_src depended on SpecialFunctions would fail at
    `using PyZygote`; the set-up check says to run Pkg.resolve() instead."""
    deps = tuple(setup._load_toml(setup.julia_src_path() / "Project.toml")["deps"])
    _write_project(prepared, pythoncall=setup._juliacall_pinned_pythoncall(), pyzygote_deps=tuple(d for d in deps if d != "SpecialFunctions"))
    setup._STAMPS.clear()
    st = setup.julia_status()
    assert not st.ok and any("before it depended on SpecialFunctions" in p and "Pkg.resolve()" in p for p in st.problems)
    _write_project(prepared, pythoncall=setup._juliacall_pinned_pythoncall(), pyzygote_deps=deps)
    setup._STAMPS.clear()
    assert setup.julia_status().ok


def test_a_project_developing_another_pyzygote_julia_package_is_not_set_up(tmp_path: Path, prepared: Path) -> None:
    """Offline juliapkg develops nothing: a project prepared with PyZygote from another copy of
    julia_src makes Julia load that code beside this pyzygote's runtime.jl and generated programs
    (julia-marked tests would test other Julia code).  A byte-identical copy is fine."""
    import shutil

    pc = setup._juliacall_pinned_pythoncall()
    copy = tmp_path / "elsewhere" / "julia_src"
    shutil.copytree(setup.julia_src_path(), copy, ignore=shutil.ignore_patterns("Manifest*.toml"))
    (copy / "docs-notes.md").write_text("not Julia code")  # other files do not count
    _write_project(prepared, pythoncall=pc, pyzygote_path=copy)
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems
    assert any("a copy of this pyzygote's" in n for n in st.notes)
    with open(copy / "src" / "PyZygote.jl", "a", encoding="utf-8") as fp:
        fp.write("\n# an older or newer PyZygote\n")
    st = setup.julia_status(refresh=True)
    assert not st.ok
    assert any(str(copy) in p and "differ" in p and "Pkg.develop(path=" in p for p in st.problems)
    (copy / "ext" / "PyZygoteODEExt.jl").unlink()  # a file missing is a difference too
    (copy / "src" / "PyZygote.jl").write_bytes((setup.julia_src_path() / "src" / "PyZygote.jl").read_bytes())
    assert not setup.julia_status(refresh=True).ok


def test_a_project_resolved_before_pyzygote_had_its_current_extensions_is_not_set_up(prepared: Path) -> None:
    """Julia 1.10 reads a package's extensions from its manifest entry (Base.insert_extension_triggers):
    a project resolved before PyZygoteODEExt existed, or with other triggers, never loads it, and
    the first ODE solve fails with 'the extension did not load' and no error above it."""
    deps = tuple(setup._load_toml(setup.julia_src_path() / "Project.toml")["deps"])
    pc = setup._juliacall_pinned_pythoncall()
    _write_project(prepared, pythoncall=pc, pyzygote_deps=deps)
    st = setup.julia_status(refresh=True)
    assert st.ok, st.problems
    assert st.packages["PyZygote"].extensions == {"PyZygoteODEExt": tuple(sorted(setup.ODE_PACKAGES))}
    _write_project(prepared, pythoncall=pc, pyzygote_deps=deps, pyzygote_extensions={})
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("package extensions" in p and "none" in p and "Pkg.resolve()" in p for p in st.problems)
    older = {"PyZygoteODEExt": ["OrdinaryDiffEq", "SciMLSensitivity"]}
    _write_project(prepared, pythoncall=pc, pyzygote_deps=deps, pyzygote_extensions=older)
    st = setup.julia_status(refresh=True)
    assert not st.ok and any("package extensions" in p for p in st.problems)
    one = {"PyZygoteODEExt": "OrdinaryDiffEq"}  # Pkg writes a single trigger as a string
    assert setup._extensions(one) == {"PyZygoteODEExt": ("OrdinaryDiffEq",)}


def test_julia_is_refused_outside_the_main_thread(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """PythonCall.jl #578: Julia entered from a second Python thread can hang the process, so
    the session refuses such calls before they reach Julia (here, before any Julia exists).
    The main thread, not the first to use pyzygote (the audit): juliacall starts Julia where it
    is imported, which the advice for PyTorch users puts in the main thread.  engine='auto'
    uses the NumPy engine in other threads."""
    import threading

    from pyzygote import engines
    from pyzygote.julia import session, setup

    assert session.call(lambda: 42) == 42  # the main thread
    seen: list[BaseException] = []
    picked: list[str] = []

    def other() -> None:
        for attempt in (lambda: session.call(lambda: 42), session.start, lambda: session.LOCK.__enter__()):
            try:
                attempt()
            except BaseException as exc:
                seen.append(exc)
        picked.append(engines.current_engine_name("auto"))

    monkeypatch.setattr(setup, "julia_is_set_up", lambda: True)
    monkeypatch.setattr(engines, "_thread_notice_shown", [False])
    monkeypatch.delenv("PYZYGOTE_QUIET", raising=False)
    t = threading.Thread(target=other, name="worker-1")
    t.start()
    t.join()
    assert len(seen) == 3 and all(isinstance(e, pz.JuliaError) for e in seen)
    assert "engine='numpy'" in str(seen[0]) and "#578" in str(seen[0]) and "'worker-1'" in str(seen[0])
    assert picked == ["numpy"] and "NumPy engine in thread 'worker-1'" in capsys.readouterr().err
    assert engines.current_engine_name("auto") == "julia"  # the main thread


def test_julia_values_dropped_in_another_thread_are_released_in_the_main_thread() -> None:
    """Releasing a Julia value runs Julia code (PythonCall's `_pyjl_dealloc`), which must not
    run outside the main thread (#578).  Holders that die in a worker thread (a compiled
    program, a pullback's Julia closure, a Julia function) leave their values to the main
    thread, which drops them the next time it takes the Julia lock."""
    import gc
    import threading
    import weakref

    from pyzygote.julia import engine, session
    from pyzygote.julia.functions import JuliaFunction

    class JuliaValue:  # stands for a juliacall object: only its lifetime matters here
        pass

    values = [JuliaValue() for _ in range(4)]
    alive = [weakref.ref(v) for v in values]
    holders = [
        engine.CompiledProgram(values[0], (), False, "", "f", values[1]),
        session.MainThreadValue(values[2]),
        JuliaFunction("x -> x"),
    ]
    holders[2]._fn = values[3]
    del values

    def drop() -> None:
        holders.clear()
        gc.collect()

    t = threading.Thread(target=drop)
    t.start()
    t.join()
    assert all(ref() is not None for ref in alive)  # not released in the worker
    with session.LOCK:
        pass
    gc.collect()
    assert all(ref() is None for ref in alive)  # released by the main thread


def test_views_of_julia_memory_dropped_in_another_thread_are_released_in_the_main_thread() -> None:
    """The Julia audit: a result made while one thread ran, handed to a thread pool and dropped
    there, released its Julia array in that thread.  Every view's base now defers that release;
    slices keep the base alive, so the last array over the memory decides."""
    import gc
    import threading
    import weakref

    from pyzygote.julia import session
    from pyzygote.julia.convert import _owned

    julia_memory = np.arange(6.0)  # stands for the juliacall array a view reads
    view = julia_memory.reshape(2, 3)
    alive = weakref.ref(view)
    result = _owned(view)
    part = result[1:]
    del view, result
    np.testing.assert_array_equal(part, [[3.0, 4.0, 5.0]])
    held = [part]
    del part
    t = threading.Thread(target=lambda: (held.clear(), gc.collect()))
    t.start()
    t.join()
    assert alive() is not None  # not released in the worker
    with session.LOCK:
        pass
    gc.collect()
    assert alive() is None


def test_julia_values_dropped_in_the_main_thread_are_released_at_once() -> None:
    import weakref

    from pyzygote.julia import session

    class JuliaValue:
        pass

    value = JuliaValue()
    alive = weakref.ref(value)
    held = session.MainThreadValue(value)
    del value, held
    assert alive() is None

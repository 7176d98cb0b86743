"""Whether Julia is set up for pyzygote, decided without starting Julia.

"Set up" means that starting the Julia engine needs no download and no
package installation:

* the Python package ``juliacall`` is installed (it is looked up, never
  imported: importing it starts Julia, and may install it);
* a Julia executable is known: ``PYTHON_JULIACALL_EXE`` (with
  ``PYTHON_JULIACALL_PROJECT``), ``PYTHON_JULIAPKG_EXE``, the executable
  recorded by juliapkg's last resolve, or, in juliapkg's offline mode, a
  ``julia`` on the ``PATH``;
* the Julia project juliacall will use has a manifest listing PythonCall
  (at juliacall's exact version), Zygote and PyZygote, with PythonCall and
  PyZygote direct dependencies of the project (the manifest Julia would read:
  a versioned one only for the executable's own version, which is read from
  the ``julia_version.h`` of its installation when there is one);
* unless juliapkg is offline (``PYTHON_JULIAPKG_OFFLINE=yes``), juliapkg's
  record of its last resolve (``<project>/pyjuliapkg/meta.json``) still
  matches the ``juliapkg.json`` files it would read now, so juliacall will
  not re-resolve (which installs packages).

The only check skipped is the Julia version stamp that juliapkg compares by
running ``julia --version``.

>>> from pyzygote.julia.setup import julia_status
>>> isinstance(julia_status().ok, bool)
True
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "JuliaStatus",
    "PackageEntry",
    "julia_status",
    "julia_is_set_up",
    "not_available_message",
    "juliapkg_json_path",
    "load_juliapkg_json",
    "julia_src_path",
    "pyzygote_julia_uuid",
    "FULL_PACKAGES",
    "ODE_PACKAGES",
    "ode_packages_missing",
    "REQUIRED_PACKAGES",
    "PYTHONCALL_UUID",
    "offline_project_commands",
]

PYTHONCALL_UUID = "6099a3de-0909-46bc-b1f4-468b9a2dfc0d"
ZYGOTE_UUID = "e88e6eb3-aa80-5325-afca-941959d7151f"

# Packages that `pyzygote setup-julia --full` adds on top of pyzygote/juliapkg.json
# (name, uuid, Julia compat), as direct dependencies of the project so that they can be
# loaded by name from Julia code (`pz.julia_function`, `pz.julia_include`).
FULL_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("DifferentialEquations", "0c46a032-eb83-5123-abaf-570d42b7fbaa", "7, 8"),
    # DifferentialEquations 8 (the one SciMLBase 3 admits) no longer brings Sundials' CVODE_BDF & co.
    ("Sundials", "c3572dad-4567-51f8-b174-8c6c989267f4", "4.19, 5, 6"),
)

# Declared in pyzygote/juliapkg.json.  Loading all of them activates PyZygote's ODE
# extension (julia_src/ext/PyZygoteODEExt.jl); the engine loads them before compiling a
# program that solves an ODE, so programs without one do not pay their load time.
ODE_PACKAGES = ("OrdinaryDiffEq", "OrdinaryDiffEqLowOrderRK", "OrdinaryDiffEqSDIRK", "SciMLSensitivity")

# Without these in the project's manifest the engine cannot run.
REQUIRED_PACKAGES = ("PythonCall", "Zygote", "PyZygote")
# These must also be direct dependencies of the project, or `import` fails.
DIRECT_PACKAGES = ("PythonCall", "PyZygote")


# --- pyzygote's own juliapkg.json ----------------------------------------------------
def juliapkg_json_path() -> Path:
    """The ``juliapkg.json`` shipped inside the pyzygote package."""
    return Path(__file__).resolve().parent.parent / "juliapkg.json"


def load_juliapkg_json() -> dict[str, Any]:
    with open(juliapkg_json_path(), encoding="utf-8") as fp:
        return json.load(fp)


def julia_src_path() -> Path:
    """Where the PyZygote Julia package is, resolved as juliapkg resolves ``path``.

    juliapkg joins a relative ``path`` to the directory of the json file that
    names it, so this is the directory that ``Pkg.develop`` will receive.
    """
    spec = load_juliapkg_json()["packages"]["PyZygote"]
    return Path(os.path.normpath(os.path.join(juliapkg_json_path().parent, spec["path"])))


def pyzygote_julia_uuid() -> str:
    return str(load_juliapkg_json()["packages"]["PyZygote"]["uuid"])


# --- option lookup, as juliapkg and juliacall read them -------------------------------
def _juliapkg_option(name: str) -> tuple[str | None, str]:
    """``-X juliapkg-<name>=...`` beats ``PYTHON_JULIAPKG_<NAME>``."""
    key = "juliapkg-" + name.lower().replace("_", "-")
    value = sys._xoptions.get(key)
    if value is not None:
        return (str(value) if value is not True else "yes"), f"-X {key}"
    env = "PYTHON_JULIAPKG_" + name.upper()
    return os.environ.get(env), env


def _juliacall_option(name: str, envkey: str | None = None) -> tuple[str | None, str]:
    """``-X juliacall-<name>=...`` beats ``PYTHON_JULIACALL_<NAME>``."""
    key = "juliacall-" + name.lower().replace("_", "-")
    value = sys._xoptions.get(key)
    if value is not None:
        return (str(value) if value is not True else "yes"), f"-X {key}"
    env = envkey or "PYTHON_JULIACALL_" + name.upper()
    return os.environ.get(env), env


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _juliacall_pinned_pythoncall() -> str | None:
    """The PythonCall version juliacall requires (``=0.9.34`` in its juliapkg.json)."""
    try:
        spec = importlib.util.find_spec("juliacall")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    fn = Path(list(spec.submodule_search_locations)[0]) / "juliapkg.json"
    try:
        with open(fn, encoding="utf-8") as fp:
            version = json.load(fp)["packages"]["PythonCall"]["version"]
    except (OSError, KeyError, ValueError):
        return None
    return str(version).lstrip("=").strip()


# --- manifests ------------------------------------------------------------------------
@dataclass
class PackageEntry:
    name: str
    uuid: str | None
    version: str | None
    path: str | None  # for developed packages, absolute
    deps: tuple[str, ...] | None = None  # the names the manifest resolved it with
    extensions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # extension -> its trigger packages


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as fp:
        return tomllib.load(fp)


def julia_version_of(exe: str | None) -> tuple[int, int, int] | None:
    """The version of the Julia installation that ``exe`` belongs to, read from the
    ``include/julia/julia_version.h`` it ships (official binaries, juliaup's), without running
    it; None where there is no such file (a launcher, a distribution's own layout)."""
    if not exe:
        return None
    header = Path(os.path.realpath(exe)).parent.parent / "include" / "julia" / "julia_version.h"
    try:
        text = header.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = dict(re.findall(r"^#define JULIA_VERSION_(MAJOR|MINOR|PATCH) (\d+)\s*$", text, flags=re.M))
    if len(found) < 3:
        return None
    return int(found["MAJOR"]), int(found["MINOR"]), int(found["PATCH"])


_VERSIONED_MANIFEST = re.compile(r"(?:Julia)?Manifest-v(\d+)\.(\d+)\.toml")
_READABLE_MINORS = ((1, 10), (1, 11))  # the Julias pyzygote runs on (1.10.3 to 1.11.x) that read one


def _project_files(project: Path, version: tuple[int, int, int] | None = None) -> tuple[Path | None, Path | None]:
    """The project file and manifest Julia ``version`` would use in ``project``.

    Julia's order (Base.manifest_names), whatever the project file is called:
    ``JuliaManifest-vX.Y.toml`` and ``Manifest-vX.Y.toml`` for its own X.Y (from 1.10.8),
    then ``JuliaManifest.toml``, ``Manifest.toml``.  With the version unknown, a versioned
    manifest for Julia 1.11 or 1.10 (the newest) is taken before an unversioned one.
    """
    for name in ("JuliaProject.toml", "Project.toml"):
        proj = project / name
        if proj.is_file():
            break
    else:
        return None, None
    names = ["JuliaManifest.toml", "Manifest.toml"]
    if version is None:
        # Only a Julia pyzygote can run (1.10, 1.11: _compare_julia_versions) reads a versioned
        # manifest here: a Manifest-v1.9.toml beside Manifest.toml is never read. JuliaManifest first.
        versioned = [
            ((int(m[1]), int(m[2])), not p.name.startswith("Julia"), p.name)
            for p in project.iterdir()
            if (m := _VERSIONED_MANIFEST.fullmatch(p.name)) and (int(m[1]), int(m[2])) in _READABLE_MINORS
        ]
        names = [name for _, _, name in sorted(versioned, key=lambda v: (tuple(-x for x in v[0]), v[1]))] + names
    elif version >= (1, 10, 8):
        names = [f"JuliaManifest-v{version[0]}.{version[1]}.toml", f"Manifest-v{version[0]}.{version[1]}.toml", *names]
    for name in names:
        if (project / name).is_file():
            return proj, project / name
    return proj, None


def _read_manifest(path: Path) -> tuple[str | None, dict[str, PackageEntry]]:
    data = _load_toml(path)
    table = data.get("deps") if isinstance(data.get("deps"), dict) else data  # format 2.0 vs 1.0
    out: dict[str, PackageEntry] = {}
    for name, entries in table.items():
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            continue
        e = entries[0]
        p = e.get("path")
        if p is not None and not os.path.isabs(p):
            p = os.path.normpath(os.path.join(path.parent, p))
        deps = e.get("deps")
        names = tuple(deps) if isinstance(deps, (list, dict)) else None
        out[name] = PackageEntry(name, e.get("uuid"), e.get("version"), p, names, _extensions(e.get("extensions")))
    return data.get("julia_version"), out


def _extensions(table: Any) -> dict[str, tuple[str, ...]]:
    """A package's extensions as Project.toml and manifests write them (a trigger alone is a string)."""
    if not isinstance(table, dict):
        return {}
    return {ext: tuple(sorted([t] if isinstance(t, str) else t)) for ext, t in table.items()}


# --- the status ------------------------------------------------------------------------
@dataclass
class JuliaStatus:
    """What pyzygote knows about the Julia installation, without starting Julia."""

    ok: bool = False
    juliacall_version: str | None = None
    juliapkg_version: str | None = None
    pythoncall_required: str | None = None
    mode: str = "juliapkg"  # or "juliacall-env" (PYTHON_JULIACALL_EXE + PYTHON_JULIACALL_PROJECT)
    offline: bool = False
    project: str | None = None
    project_source: str = ""
    executable: str | None = None
    executable_source: str = ""
    executable_version: tuple[int, int, int] | None = None  # from its julia_version.h, when found
    manifest: str | None = None
    julia_version: str | None = None
    packages: dict[str, PackageEntry] = field(default_factory=dict)
    direct_deps: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)  # why it is not set up
    notes: list[str] = field(default_factory=list)  # worth knowing, not blocking
    fixes: list[str] = field(default_factory=list)  # what to do

    def package_version(self, name: str) -> str | None:
        entry = self.packages.get(name)
        return None if entry is None else entry.version


def _juliapkg_project() -> tuple[str | None, str, bool, str | None]:
    """(project, how it was chosen, shared, problem) following juliapkg's rules."""
    project, key = _juliapkg_option("project")
    if project:
        if not os.path.isabs(project):
            return None, key, True, f"{key}={project} must be an absolute path (juliapkg refuses relative ones)"
        return project, key, True, None
    depot_path = os.environ.get("JULIA_DEPOT_PATH")
    if depot_path:
        depot = os.path.abspath(depot_path.split(";" if os.name == "nt" else ":")[0])
    else:
        depot = os.path.abspath(os.path.join(os.path.expanduser("~"), ".julia"))
    if sys.prefix != sys.base_prefix:
        return os.path.abspath(os.path.join(sys.prefix, "julia_env")), "juliapkg default for this virtual environment", False, None
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        return os.path.abspath(os.path.join(conda, "julia_env")), "juliapkg default for this conda environment", False, None
    return os.path.join(depot, "environments", "pyjuliapkg"), "juliapkg default (no virtual environment)", False, None


def _sha256(fn: str) -> str:
    with open(fn, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _norm(fn: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(fn)))


def _juliapkg_dev_flag() -> bool:
    spec = importlib.util.find_spec("juliapkg")
    if spec is None or not spec.submodule_search_locations:
        return False
    here = list(spec.submodule_search_locations)[0]
    return os.path.exists(os.path.join(here, "..", "..", "pyproject.toml"))


def _stale_meta_reason(meta: dict[str, Any], project: str) -> str | None:
    """Why juliapkg would re-resolve (install) despite its meta file, or None."""
    import juliapkg.deps as jdeps  # importing juliapkg neither starts nor downloads Julia
    import juliapkg.state as jstate

    if meta.get("meta_version") != getattr(jdeps, "META_VERSION", None):
        return "juliapkg's record of its last resolve was written by another juliapkg version"
    override, key = _juliapkg_option("exe")
    if override != meta.get("override_executable"):
        return f"{key} changed since juliapkg's last resolve"
    exe = meta.get("executable")
    if not exe or not os.path.exists(exe):
        return f"the Julia executable recorded by juliapkg ({exe}) no longer exists"
    # juliapkg re-resolves when it goes from offline to online, but pyzygote starts it offline
    # (see pyzygote.julia.session), so a resolve made offline stands.
    if bool(meta.get("dev")) != _juliapkg_dev_flag():
        return "juliapkg changed between a development and a regular install"
    files = set(jdeps.deps_files())
    files.discard(_norm(jstate.STATE["deps"]))  # juliapkg computed it at import; recompute for now
    own = os.path.join(project, "pyjuliapkg", "juliapkg.json")
    if os.path.isfile(own):
        files.add(_norm(own))
    recorded = meta.get("deps_files") or {}
    added = files.difference(recorded)
    removed = set(recorded).difference(files)
    if added:
        return "new juliapkg.json files appeared since the last resolve: " + ", ".join(sorted(added))
    if removed:
        return "juliapkg.json files disappeared since the last resolve: " + ", ".join(sorted(removed))
    for fn, info in recorded.items():
        if not os.path.isfile(fn) or _sha256(fn) != info.get("hash_sha256"):
            return f"{fn} changed since the last resolve"
    return None


def _pyzygote_path_conflict() -> str | None:
    """Why juliapkg would refuse the PyZygote entries of the juliapkg.json files it reads, or None.

    juliapkg merges every juliapkg.json it finds on ``sys.path`` each time it resolves, offline
    too (where it installs nothing), and raises where they give one package different paths.
    Two copies of pyzygote on ``sys.path`` (the source tree, whose json says ``../julia_src``,
    and an installed wheel, whose json says ``julia_src``) are both read by juliapkg before
    0.1.28, which keeps only the first copy of each directory name; an editable install of
    another checkout is read beside the source tree by 0.1.28 too (``editable_deps_files``).
    """
    import juliapkg.deps as jdeps  # importing juliapkg neither starts nor downloads Julia

    paths: dict[str, list[str]] = {}
    for fn in jdeps.deps_files():
        try:
            with open(fn, encoding="utf-8") as fp:
                spec = json.load(fp)["packages"]["PyZygote"]
            where = os.path.normcase(os.path.normpath(os.path.join(os.path.dirname(fn), spec["path"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        paths.setdefault(where, []).append(fn)
    if len(paths) < 2:
        return None
    named = "; ".join(f"{where} (in {', '.join(fns)})" for where, fns in sorted(paths.items()))
    return (
        f"juliapkg would refuse to start Julia: the juliapkg.json files on sys.path give PyZygote different "
        f"paths, {named}; keep one copy of pyzygote on sys.path (juliapkg 0.1.28 and later read only the first "
        "copy of a package directory)"
    )


def _compute_status() -> JuliaStatus:
    st = JuliaStatus()
    st.juliacall_version = _dist_version("juliacall")
    st.juliapkg_version = _dist_version("juliapkg")
    st.pythoncall_required = _juliacall_pinned_pythoncall()
    if not _has_module("juliacall"):
        st.problems.append("the Python package juliacall is not installed")
        st.fixes.append('pip install "pyzygote[julia]"   # installs juliacall and juliapkg')

    jc_exe, jc_exe_key = _juliacall_option("exe")
    jc_proj, jc_proj_key = _juliacall_option("project")
    jc_bindir, jc_bindir_key = _juliacall_option("home", envkey="PYTHON_JULIACALL_BINDIR")
    if jc_bindir:  # juliacall's --home, passed to Julia as it is, in either mode (juliacall 0.9.34)
        if os.path.isdir(jc_bindir):
            st.notes.append(f"{jc_bindir_key}={jc_bindir} is passed to Julia as its --home")
        else:
            st.problems.append(f"{jc_bindir_key}={jc_bindir} does not exist (juliacall refuses a missing one)")
    jc_sysimage, jc_sysimage_key = _juliacall_option("sysimage")
    if jc_sysimage and not os.path.exists(jc_sysimage):  # juliacall 0.9.34 raises before starting Julia
        st.problems.append(f"{jc_sysimage_key}={jc_sysimage} does not exist (juliacall refuses a missing system image)")
    if jc_exe or jc_proj:
        st.mode = "juliacall-env"
        if not (jc_exe and jc_proj):
            st.problems.append(f"{jc_exe_key} and {jc_proj_key} must be set together (juliacall refuses only one)")
        if jc_exe:
            found = shutil.which(jc_exe)
            st.executable, st.executable_source = found, jc_exe_key
            if found is None:
                st.problems.append(f"{jc_exe_key}={jc_exe} is not an executable")
        if jc_proj:
            st.project, st.project_source = os.path.abspath(jc_proj), jc_proj_key
            if not os.path.isdir(st.project):
                st.problems.append(f"{jc_proj_key}={jc_proj} does not exist")
    else:
        offline, offline_key = _juliapkg_option("offline")
        if offline not in (None, "yes", "no"):
            st.problems.append(f"{offline_key} must be yes or no, not {offline!r}")
        st.offline = offline == "yes"
        project, source, _shared, problem = _juliapkg_project()
        st.project, st.project_source = project, source
        if problem:
            st.problems.append(problem)
        override, override_key = _juliapkg_option("exe")
        if override:
            found = shutil.which(override)
            st.executable, st.executable_source = found, override_key
            if found is None:
                st.problems.append(f"{override_key}={override} is not an executable")
        meta: dict[str, Any] | None = None
        if project:
            meta_fn = os.path.join(project, "pyjuliapkg", "meta.json")
            if os.path.isfile(meta_fn):
                try:
                    with open(meta_fn, encoding="utf-8") as fp:
                        meta = json.load(fp)
                except (OSError, ValueError):
                    meta = None
        if st.executable is None and not override and meta and meta.get("executable"):
            if os.path.exists(meta["executable"]):
                st.executable, st.executable_source = meta["executable"], "juliapkg's last resolve"
        if st.offline:
            if st.executable is None and not override:
                ext = ".exe" if os.name == "nt" else ""
                cands = [os.path.join(project or "", "pyjuliapkg", "install", "bin", "julia" + ext)]
                found = next((c for c in cands if os.path.isfile(c)), None) or shutil.which("julia")
                if found:
                    st.executable, st.executable_source = found, "PATH (juliapkg offline mode)"
                    # juliapkg's find_julia, offline: a juliaup installation replaces the PATH
                    # search, and a julia is taken only if its version is within the merged
                    # "julia" compat of the juliapkg.json files (not checked here: that needs
                    # running it).  PYTHON_JULIAPKG_EXE is taken as it is.
                    via = "juliaup's installed versions" if shutil.which("juliaup") else "the julia on the PATH"
                    st.notes.append(
                        f"offline juliapkg will use {via} only if its version satisfies the Julia compat of the "
                        "juliapkg.json files (pyzygote's: " + str(load_juliapkg_json().get("julia", "any")) + "); "
                        "set PYTHON_JULIAPKG_EXE=/path/to/julia to choose it yourself"
                    )
                else:
                    st.problems.append(
                        "juliapkg is offline and no Julia executable is known: set PYTHON_JULIAPKG_EXE to a julia binary"
                    )
        elif not st.problems:
            if meta is None:
                st.problems.append(
                    f"juliapkg has not installed Julia and pyzygote's Julia packages for this environment yet (project {project})"
                )
            elif _has_module("juliapkg"):
                try:
                    reason = _stale_meta_reason(meta, project or "")
                except Exception as exc:  # a juliapkg we do not understand: be conservative
                    reason = f"could not compare with juliapkg's last resolve ({type(exc).__name__}: {exc})"
                if reason:
                    st.problems.append(f"starting Julia would re-install packages: {reason}")
            else:
                st.problems.append("the Python package juliapkg is not installed")

    if st.mode == "juliapkg" and _has_module("juliapkg"):
        try:
            conflict = _pyzygote_path_conflict()
        except Exception:  # a juliapkg we do not understand: juliacall will say what it finds
            conflict = None
        if conflict:
            st.problems.append(conflict)
    if st.mode == "juliapkg" and st.project and os.path.isdir(st.project) and not os.access(st.project, os.W_OK):
        st.problems.append(
            f"the Julia project {st.project} is not writable: juliapkg writes lock.pid and pyjuliapkg/meta.json "
            "there whenever juliacall starts (for a read-only project set PYTHON_JULIACALL_EXE and "
            "PYTHON_JULIACALL_PROJECT instead, which bypass juliapkg)"
        )
    if st.project and os.path.isdir(st.project):
        st.executable_version = julia_version_of(st.executable)
        proj_file, manifest = _project_files(Path(st.project), st.executable_version)
        if proj_file is None:
            if not st.problems:
                st.problems.append(f"the Julia project {st.project} has no Project.toml")
        elif manifest is None:
            st.problems.append(f"the Julia project {st.project} has no Manifest.toml (packages not installed)")
        else:
            st.manifest = str(manifest)
            try:
                st.julia_version, st.packages = _read_manifest(manifest)
                st.direct_deps = tuple(sorted((_load_toml(proj_file).get("deps") or {}).keys()))
            except Exception as exc:
                st.problems.append(f"could not read {manifest}: {type(exc).__name__}: {exc}")
            else:
                _check_packages(st)
                _compare_julia_versions(st)
    elif st.project and not st.problems:
        st.problems.append(f"the Julia project {st.project} does not exist")

    if st.problems and _has_module("juliacall"):
        if st.offline or st.mode == "juliacall-env":
            st.fixes.append("prepare the Julia project with the commands `pyzygote doctor` prints (offline setup)")
        else:
            st.fixes.append("pyzygote setup-julia   # installs Julia and the packages (several minutes, once)")
    st.ok = not st.problems
    return st


def _check_packages(st: JuliaStatus) -> None:
    missing = [p for p in REQUIRED_PACKAGES if p not in st.packages]
    if missing:
        st.problems.append(f"the Julia project {st.project} lacks " + ", ".join(missing))
    indirect = [p for p in DIRECT_PACKAGES if p in st.packages and p not in st.direct_deps]
    if indirect:
        st.problems.append(
            f"{', '.join(indirect)} must be direct dependencies of {st.project} (in its Project.toml [deps])"
        )
    if "Zygote" in st.packages and "Zygote" not in st.direct_deps:
        st.notes.append("Zygote is not a direct dependency of the project: Julia code cannot `using Zygote`")
    want = st.pythoncall_required
    have = st.package_version("PythonCall")
    if want and have and want != have:
        st.problems.append(
            f"the project has PythonCall {have} but juliacall {st.juliacall_version} needs PythonCall {want} exactly"
        )
    entry = st.packages.get("PyZygote")
    if entry is not None:
        try:
            expected_uuid = pyzygote_julia_uuid()
            src = julia_src_path()
        except Exception:  # a broken installation; reported by `pyzygote doctor`
            return
        if entry.uuid and entry.uuid != expected_uuid:
            st.problems.append(f"the project's PyZygote has uuid {entry.uuid}, pyzygote expects {expected_uuid}")
        if entry.path is None:
            st.notes.append("PyZygote in the project is not a developed (path) package; it may not match this pyzygote")
        elif not os.path.isdir(entry.path):
            st.problems.append(f"the project's PyZygote path {entry.path} does not exist")
        else:
            if os.path.realpath(entry.path) != os.path.realpath(src):
                theirs = _julia_package_files(Path(entry.path))
                if theirs is not None and theirs == _julia_package_files(src):
                    st.notes.append(f"the project develops PyZygote from {entry.path}, a copy of this pyzygote's {src}")
                else:
                    # Offline juliapkg develops nothing, so Julia would load that other PyZygote beside
                    # this pyzygote's runtime.jl and generated code: a version skew that fails late
                    # (an UndefVarError in a generated program) or, worse, runs other Julia code.
                    st.problems.append(
                        f"the project develops PyZygote from {entry.path}, whose Julia files differ from this "
                        f"pyzygote's {src}: run `using Pkg; Pkg.activate(raw\"{st.project}\"); "
                        f'Pkg.develop(path=raw"{src}")`'
                    )
                    return
            if entry.deps is None:
                return
            # Julia loads a developed package's dependencies from the manifest: one resolved
            # before julia_src gained a dependency fails at `using PyZygote`.
            src_project = _load_toml(Path(src) / "Project.toml")
            wanted = (src_project.get("deps") or {}).keys()
            new = sorted(set(wanted) - set(entry.deps))
            resolve = f'`using Pkg; Pkg.activate(raw"{st.project}"); Pkg.resolve()`'
            if new:
                st.problems.append(
                    f"the project resolved PyZygote before it depended on {', '.join(new)}: run {resolve} (it works "
                    "offline when the packages are installed; ForwardDiff already brings SpecialFunctions)"
                )
            # Julia 1.10 takes a package's extensions from its manifest entry: one resolved before
            # PyZygoteODEExt (or with other triggers) never loads it, and ODE solves fail.
            if entry.extensions != _extensions(src_project.get("extensions")):
                st.problems.append(
                    f"the project resolved PyZygote before its package extensions took their current form (the "
                    f"manifest has {entry.extensions or 'none'}): run {resolve}"
                )


def _compare_julia_versions(st: JuliaStatus) -> None:
    exe = st.executable_version
    if exe is None:
        return
    said = ".".join(map(str, exe))
    if st.julia_version and st.julia_version.split(".")[:2] != [str(exe[0]), str(exe[1])]:
        st.notes.append(
            f"the manifest was resolved by Julia {st.julia_version} but the executable is Julia {said}: packages "
            "resolved for another Julia may fail to load (re-resolve the project with this Julia)"
        )
    if not ((1, 10, 3) <= exe < (1, 12, 0)):
        st.notes.append(
            f"the executable is Julia {said}; pyzygote's and juliacall's juliapkg.json ask for 1.10.3 to 1.11.x "
            "(offline juliapkg only warns)"
        )


def _julia_package_files(root: Path) -> dict[str, bytes] | None:
    """The files that make a Julia package's code (Project.toml, src/ and ext/ sources), by
    relative path, or None when they cannot be read."""
    try:
        files = {"Project.toml": (root / "Project.toml").read_bytes()}
        for sub in ("src", "ext"):
            for fn in sorted((root / sub).rglob("*.jl")):
                files[fn.relative_to(root).as_posix()] = fn.read_bytes()
    except OSError:
        return None
    return files


def ode_packages_missing(status: JuliaStatus | None = None) -> list[str]:
    """The ODE packages the engine cannot load from the project: ``import`` from top-level
    code (``PyZygoteRuntime``) finds only the project's direct dependencies, so one that the
    manifest holds only as another package's dependency (OrdinaryDiffEq 7 brings
    OrdinaryDiffEqSDIRK through OrdinaryDiffEqBDF) fails with "Package ... not found"."""
    st = status or julia_status()
    return [name for name in ODE_PACKAGES if name not in st.direct_deps]


# --- cached entry points ------------------------------------------------------------------
_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()
_ENV_KEYS = (
    "PYTHON_JULIAPKG_EXE",
    "PYTHON_JULIAPKG_PROJECT",
    "PYTHON_JULIAPKG_OFFLINE",
    "PYTHON_JULIACALL_EXE",
    "PYTHON_JULIACALL_PROJECT",
    "PYTHON_JULIACALL_BINDIR",
    "PYTHON_JULIACALL_SYSIMAGE",
    "JULIA_DEPOT_PATH",
    "CONDA_PREFIX",
    "PATH",
)


# engine="auto" asks on every pz.gradient call: the project's files are looked at again
# only after this many seconds (or at once when the environment changes).
_STAMP_TTL = 2.0
_STAMPS: dict[str, Any] = {}


def _fingerprint() -> tuple[Any, ...]:
    env = tuple(os.environ.get(k) for k in _ENV_KEYS)
    xopts = tuple(sorted((k, str(v)) for k, v in sys._xoptions.items() if k.startswith(("juliapkg-", "juliacall-"))))
    outer = (env, xopts, tuple(sys.path))
    now = time.monotonic()
    if _STAMPS.get("outer") == outer and now - _STAMPS.get("time", -_STAMP_TTL) < _STAMP_TTL:
        return outer + (_STAMPS["stamps"],)
    project = os.environ.get("PYTHON_JULIACALL_PROJECT") or _juliapkg_project()[0] or ""
    stamps = []
    for rel in ("pyjuliapkg/meta.json", "Project.toml", "Manifest.toml", "JuliaManifest.toml"):
        try:
            stamps.append(os.stat(os.path.join(project, rel)).st_mtime_ns)
        except OSError:
            stamps.append(None)
    _STAMPS.update(outer=outer, time=now, stamps=tuple(stamps))
    return outer + (tuple(stamps),)


def julia_status(refresh: bool = False) -> JuliaStatus:
    """The current :class:`JuliaStatus` (recomputed when the environment or files change)."""
    key = _fingerprint()
    with _CACHE_LOCK:
        if not refresh and _CACHE.get("key") == key:
            return _CACHE["status"]
    status = _compute_status()
    with _CACHE_LOCK:
        _CACHE["key"], _CACHE["status"] = key, status
    return status


def julia_is_set_up() -> bool:
    """True when the Julia engine can start without downloading or installing anything.

    Never starts Julia, never touches the network; a running Julia counts as set up,
    a Julia that failed to start in this process does not.
    """
    from pyzygote.julia import session

    if session.is_running():
        return True
    if session.failed_to_start():
        return False  # the error was raised once; engine="auto" now uses numpy
    try:
        return julia_status().ok
    except Exception:  # pragma: no cover - never let the check itself break engine selection
        return False


def not_available_message(status: JuliaStatus | None = None, what: str = "the Julia engine") -> str:
    st = status or julia_status()
    lines = [f"{what} needs Julia, which is not set up for pyzygote:"]
    lines += [f"  - {p}" for p in st.problems]
    lines.append("To fix:")
    lines += [f"  {f}" for f in st.fixes] or ["  pyzygote setup-julia"]
    lines.append("  pyzygote doctor        # shows what is missing, and how to use an existing Julia offline")
    lines.append('Or use the NumPy engine: engine="numpy", pz.set_engine("numpy") or PYZYGOTE_ENGINE=numpy.')
    return "\n".join(lines)


def offline_project_commands(project: str | None = None, full: bool = False) -> str:
    """Julia code preparing a project for offline use (what `pyzygote doctor` prints)."""
    project = project or "/path/to/pyzygote-julia-env"
    pc = _juliacall_pinned_pythoncall() or "0.9.34"
    data = load_juliapkg_json()["packages"]
    others = [n for n in data if n != "PyZygote"]
    lines = [
        "using Pkg",
        f'Pkg.activate(raw"{project}")',
        f'Pkg.develop(path=raw"{julia_src_path()}")',
        f'Pkg.add(name="PythonCall", version="{pc}")   # exactly the version juliacall needs',
        "Pkg.add([" + ", ".join(f'"{n}"' for n in others) + "])",
    ]
    if full:
        lines.append("Pkg.add([" + ", ".join(f'"{n}"' for n, _, _ in FULL_PACKAGES) + "])")
    lines.append("Pkg.precompile()")
    return "\n".join(lines)

"""Build hook: ship the Julia package ``julia_src/`` inside pyzygote.

All metadata lives in pyproject.toml.  juliapkg resolves the ``path`` of a
package relative to the ``juliapkg.json`` that names it, so:

* in the source tree (``PYTHONPATH=.`` and editable installs, where juliapkg
  finds ``pyzygote/juliapkg.json`` through ``sys.path`` or the editable
  finder), ``"path": "../julia_src"`` names the repository's ``julia_src/``;
* in a wheel, ``julia_src/`` is copied to ``pyzygote/julia_src/`` and the
  wheel's ``pyzygote/juliapkg.json`` is rewritten to ``"path": "julia_src"``.

The sdist carries ``julia_src/`` (MANIFEST.in), so wheels built from it work too.
"""

from __future__ import annotations

import json
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
JULIA_SRC = os.path.join(HERE, "julia_src")


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n.startswith(".") or n.startswith("Manifest") or n.startswith("JuliaManifest")}
    return skip | {n for n in names if n in ("__pycache__", "build", "docs", "test")}


class BuildPyWithJulia(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the source tree's json already points at ../julia_src
        if not os.path.isfile(os.path.join(JULIA_SRC, "Project.toml")):
            raise RuntimeError(f"julia_src/Project.toml not found next to setup.py ({JULIA_SRC})")
        pkg_dir = os.path.join(self.build_lib, "pyzygote")
        dst = os.path.join(pkg_dir, "julia_src")
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        shutil.copytree(JULIA_SRC, dst, ignore=_ignore)
        json_fn = os.path.join(pkg_dir, "juliapkg.json")
        with open(json_fn, encoding="utf-8") as fp:
            deps = json.load(fp)
        deps["packages"]["PyZygote"]["path"] = "julia_src"
        os.remove(json_fn)  # never write through a hard link into the source tree
        with open(json_fn, "w", encoding="utf-8") as fp:
            json.dump(deps, fp, indent=4)
            fp.write("\n")


setup(cmdclass={"build_py": BuildPyWithJulia})

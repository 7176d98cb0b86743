"""Test configuration: tests marked ``julia`` need a real, set-up Julia.

Unless ``julia_is_set_up()`` (the same check pyzygote's ``engine="auto"`` uses)
is true they are skipped, with the reason; or, where the environment names a
Julia (``PYTHON_JULIAPKG_EXE``/``PYTHON_JULIACALL_EXE``) or
``PYZYGOTE_JULIA_TESTS=required``, they fail with it, so that a run meant to
test Julia cannot pass with none of them run (tests/julia_gate.py).  To run
them, set up Julia (``pyzygote setup-julia``) or point pyzygote at a prepared
project:

    PYTHON_JULIAPKG_EXE=/path/to/julia PYTHON_JULIAPKG_PROJECT=/path/to/project \\
    PYTHON_JULIAPKG_OFFLINE=yes python -m pytest tests -m julia

Unmarked tests run on the NumPy engine even where Julia is set up (see the
conftest.py beside pyproject.toml).
"""

from __future__ import annotations

import pytest

from tests.julia_gate import fail_if_unavailable, unavailable


def _julia_skip_reason() -> str | None:
    from pyzygote.julia.setup import julia_is_set_up, julia_status

    if julia_is_set_up():
        return None
    problems = "; ".join(julia_status().problems) or "unknown reason"
    return f"Julia is not set up for pyzygote ({problems}); see `pyzygote doctor`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    julia_items = [item for item in items if item.get_closest_marker("julia") is not None]
    if not julia_items:
        return
    reason = _julia_skip_reason()
    if reason is None:
        return
    mark = unavailable(reason)
    for item in julia_items:
        item.add_marker(mark)


def pytest_runtest_setup(item: pytest.Item) -> None:
    fail_if_unavailable(item)

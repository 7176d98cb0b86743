"""Unmarked tests and doctests check the NumPy engine, the reference.

Where Julia is set up, ``engine="auto"`` would pick Julia for them, so they run
with ``PYZYGOTE_ENGINE=numpy`` there; tests marked ``julia`` (tests/conftest.py)
and tests of engine selection (which clear the variable) choose for themselves.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _julia_is_set_up() -> bool:
    from pyzygote.julia.setup import julia_is_set_up

    return julia_is_set_up()


@pytest.fixture(autouse=True)
def _numpy_engine_for_unmarked_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _julia_is_set_up: bool
) -> None:
    if _julia_is_set_up and request.node.get_closest_marker("julia") is None:
        monkeypatch.setenv("PYZYGOTE_ENGINE", "numpy")

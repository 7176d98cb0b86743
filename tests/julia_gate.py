"""Whether a julia-marked test that cannot run is skipped or fails.

Skipping is right where nobody asked for Julia (this project's CI).  Where the environment
names a Julia (``PYTHON_JULIAPKG_EXE`` or ``PYTHON_JULIACALL_EXE``, environment variable or
``-X`` option), a run whose julia-marked tests all skip would read as a pass although none
ran (a set-up check that says "not set up", ODE packages missing from the project): there
they fail, with the same reason.  ``PYZYGOTE_JULIA_TESTS=required`` or ``optional`` decides
explicitly.
"""

from __future__ import annotations

import os

import pytest

CHOICES = ("required", "optional")


def julia_tests_required() -> bool:
    choice = os.environ.get("PYZYGOTE_JULIA_TESTS", "").strip().lower()
    if choice:
        if choice not in CHOICES:
            raise pytest.UsageError(f"PYZYGOTE_JULIA_TESTS must be one of {', '.join(CHOICES)}, not {choice!r}")
        return choice == "required"
    from pyzygote.julia.setup import _juliacall_option, _juliapkg_option

    return bool(_juliapkg_option("exe")[0] or _juliacall_option("exe")[0])


def unavailable(reason: str) -> pytest.MarkDecorator:
    """A skip with ``reason``, or, where Julia tests are required, a failure with it
    (the ``julia_unavailable`` mark, failed in tests/conftest.py's ``pytest_runtest_setup``)."""
    if julia_tests_required():
        return pytest.mark.julia_unavailable(reason=reason)
    return pytest.mark.skip(reason=reason)


def skip_or_fail(reason: str) -> None:
    """Inside a test: skip, or where Julia tests are required, fail."""
    if julia_tests_required():
        pytest.fail(f"{reason} (julia-marked tests are required here: {_why_required()})", pytrace=False)
    pytest.skip(reason)


def _why_required() -> str:
    if os.environ.get("PYZYGOTE_JULIA_TESTS"):
        return "PYZYGOTE_JULIA_TESTS=required"
    return "the environment names a Julia; PYZYGOTE_JULIA_TESTS=optional skips instead"


def fail_if_unavailable(item: pytest.Item) -> None:
    mark = item.get_closest_marker("julia_unavailable")
    if mark is not None:
        pytest.fail(f"{mark.kwargs['reason']} (julia-marked tests are required here: {_why_required()})", pytrace=False)

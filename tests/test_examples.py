"""The examples README points to run and reach their stated results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "script, expected",
    [
        ("differentiable_physics.py", "d(final height)/d(initial velocity) at v = 10 m/s: 1.0"),
        ("parameter_estimation.py", "estimated noise level"),
        ("material_properties.py", "conductivity recovered to"),
    ],
)
def test_example_runs_on_the_numpy_engine(script: str, expected: str) -> None:
    # Each example asserts its own result (exact derivative, fit consistent with the truth).
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--engine", "numpy"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout

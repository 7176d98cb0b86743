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
        ("rainfall_runoff.py", "Nash-Sutcliffe efficiency of the fit"),
    ],
)
def test_example_runs_on_the_numpy_engine(script: str, expected: str) -> None:
    # Each example asserts its own result (exact derivative, fit consistent with the truth).
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--engine", "numpy"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_the_readme_tour_runs_as_written() -> None:
    """README's tour is a script a user can paste (a README walkthrough found it used names it
    never defined); its first two lines give the values its comments state."""
    import numpy as np

    import pyzygote as pz

    readme = (EXAMPLES.parent / "README.md").read_text()
    start = readme.index("## A tour\n\n```python\n") + len("## A tour\n\n```python\n")
    tour = readme[start : readme.index("```\n", start)]
    scope: dict[str, object] = {}
    with pz.engine("numpy"):
        exec(compile(tour, "README.md (tour)", "exec"), scope)  # noqa: S102
        assert pz.gradient(lambda v: scope["simulate_trajectory"](v)[-1], 10.0) == (1.0,)  # type: ignore[operator]
    assert np.shape(scope["dW"]) == (3, 2) and np.shape(scope["g"]) == (3, 2)

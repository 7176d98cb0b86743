"""pz.crosscheck's notes say what they measure (acceptance testing, session 24)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pyzygote as pz


def test_the_float32_rounding_note_is_relative_to_the_float64_gradient_and_the_same_for_any_gradient_checked() -> None:
    """It was the rounding over the largest entry of the gradient checked (halved for one twice
    too large), beside an absolute difference called the scale."""
    x = (1e4 + np.random.default_rng(9).standard_normal(50)).astype(np.float32)
    f = lambda x: np.var(x)  # noqa: E731
    true = 2 * (x.astype(np.float64) - x.astype(np.float64).mean()) / len(x)
    (g32,), (g64,) = pz.gradient(f, x), pz.gradient(f, x.astype(np.float64))
    noise = np.max(np.abs(g32.astype(np.float64) - g64))
    pattern = r"differs from its float64 gradient by up to (\S+) of that gradient's largest entry \((\S+)\), so differences below (\S+) count"
    said = []
    for g in (true, 2 * true, 1.1 * true):
        report = pz.crosscheck(f, (x,), (g.astype(np.float32),), raise_on_failure=False)
        found = re.search(pattern, str(report))
        assert found, str(report)
        said.append(found.groups())
    assert said[0] == said[1] == said[2]
    relative, scale, below = (float(v) for v in said[0])
    assert scale == pytest.approx(np.max(np.abs(g64)), rel=0.06)  # printed to two digits
    assert relative == pytest.approx(noise / np.max(np.abs(g64)), rel=0.06)
    assert below == pytest.approx(4 * noise, rel=0.06)


def test_a_scalar_argument_is_named_as_one() -> None:
    x = np.linspace(0.5, 2.0, 4)
    f = lambda x, y: np.sum(x) * y  # noqa: E731
    report = pz.crosscheck(f, (x, 1.0), (np.ones_like(x), np.sum(x) * 1.05), finite_differences=False, raise_on_failure=False)
    assert "largest difference at argument 1 (a scalar): 5.25, the reference 5" in str(report), str(report)
    report = pz.crosscheck(f, (x, 1.0), (np.ones_like(x), -np.sum(x)), finite_differences=False, raise_on_failure=False)
    assert not report.passed and "entry of argument 1 (a scalar) is -5, the reference 5" in str(report), str(report)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the log of 0 below
def test_a_norm_at_zero_is_named_a_kink() -> None:
    with pytest.raises(AssertionError, match="no reference could check") as info:
        pz.crosscheck(lambda x: np.linalg.norm(x), (np.zeros(3),), (np.zeros(3),))
    assert "root of 0 here (as np.linalg.norm of a zero vector does)" in str(info.value)
    assert "kink" in str(info.value)
    report = pz.crosscheck(lambda x: np.sqrt(np.sum(x**2)) + np.sum(x), (np.zeros(3),), (np.ones(3),), raise_on_failure=False)
    assert "root of 0 here" in str(report), str(report)
    # a gradient that is not finite for another reason is not called a kink
    with pytest.raises(AssertionError) as info:
        pz.crosscheck(lambda x: np.sum(np.log(x)), (np.array([0.0, 1.0]),), (np.array([1.0, 1.0]),))
    assert "root of 0" not in str(info.value)

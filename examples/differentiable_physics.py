"""Differentiable physics: a thrown ball, written in plain numpy.

1. The gradient of the final height with respect to the initial velocity
   (the example of the article pyzygote grew from; the exact answer is 1.0).
2. Using that gradient to find the initial velocity that reaches a target
   height, by Newton's method on the squared miss.

Run:  python examples/differentiable_physics.py  [--engine numpy|julia|auto]
"""

from __future__ import annotations

import argparse

import numpy as np

import pyzygote as pz


def simulate_trajectory(initial_velocity, gravity=9.8, time=1.0):
    """Height of a ball thrown upwards, sampled at 100 times."""
    t = np.linspace(0.0, time, 100)
    height = initial_velocity * t - 0.5 * gravity * t**2
    return height


def final_height(v):
    return simulate_trajectory(v)[-1]


def solve_for_velocity(target: float, v0: float = 1.0, engine: str | None = None) -> float:
    """Newton's method on miss(v) = (h(v) - target)^2, with exact derivatives."""
    miss = lambda v: (final_height(v) - target) ** 2  # noqa: E731
    v = v0
    for step in range(20):
        (g,) = pz.gradient(miss, v, engine=engine)
        h = pz.hessian(miss, np.float64(v), engine=engine)
        v = v - g / float(h)
        if abs(float(final_height(v)) - target) < 1e-12:
            break
    return v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default=None, choices=["numpy", "julia", "auto"])
    parser.add_argument("--target", type=float, default=5.0, help="target final height in m")
    args = parser.parse_args()

    (dh_dv,) = pz.gradient(final_height, 10.0, engine=args.engine)
    print(f"d(final height)/d(initial velocity) at v = 10 m/s: {dh_dv}   (exact: 1.0)")

    print("\nWhat pyzygote traced (the IR shared by both engines):")
    print(pz.make_program(final_height, 10.0))

    v = solve_for_velocity(args.target, engine=args.engine)
    h = float(final_height(v))
    print(f"\nInitial velocity reaching {args.target} m after 1 s: v = {v:.12f} m/s")
    print(f"check: final height = {h:.12f} m   (closed form v = target + g/2 = {args.target + 4.9:.12f})")
    assert abs(dh_dv - 1.0) < 1e-12 and abs(h - args.target) < 1e-9


if __name__ == "__main__":
    main()

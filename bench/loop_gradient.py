"""A hand-written daily time-stepping loop: gradient of a rainfall-runoff model's fit.

Problem: the snow and soil-moisture bucket model of examples/rainfall_runoff.py, stepped day
by day over two years in a plain Python loop (about 20,000 scalar numpy operations), 5
parameters, loss = 1 - Nash-Sutcliffe efficiency against "observed" flows made with other
parameters.  Prints, per peer, the first gradient (tracing, derivation, compilation) and the
median milliseconds per gradient after it, with the ratio to central finite differences of
the numpy model measured in the same run.  PyTorch differentiates the same loop eagerly; JAX
is given the loop as `lax.scan` (the form JAX needs: its jit of the unrolled loop compiles
for minutes), so its row measures idiomatic JAX, not the same code.  Peers that are not
installed (or a Julia that is not set up) are skipped.

Run:  python bench/loop_gradient.py [--repeats 9]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from timing import compare, repeats_from_command_line

import pyzygote as pz

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from rainfall_runoff import DAYS, PET, RAIN, TEMP, TRUE, flows  # noqa: E402  (the example's model)

THETA = TRUE * np.array([1.2, 0.8, 1.3, 0.9, 1.1])  # where the gradient is taken
OBSERVED = flows(TRUE) * (1.0 + 0.05 * np.random.default_rng(7).standard_normal(DAYS))
SPREAD = np.sum((OBSERVED - np.mean(OBSERVED)) ** 2)


def loss(theta):
    return np.sum((flows(theta) - OBSERVED) ** 2) / SPREAD


def finite_difference_gradient(theta: np.ndarray) -> np.ndarray:
    h = 1e-6 * np.abs(theta)
    return np.array([(loss(theta + e) - loss(theta - e)) / (2 * e[i]) for i, e in enumerate(np.diag(h))])


def pyzygote_gradient(engine: str = "numpy") -> Callable[[np.ndarray], np.ndarray]:
    return pz.grad(loss, engine=engine)


def torch_gradient() -> Callable[[np.ndarray], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    rain, temp, pet, observed = (torch.tensor(a, dtype=torch.float64) for a in (RAIN, TEMP, PET, OBSERVED))

    def torch_loss(theta):
        fc, beta, k, cfmax, lp = theta
        zero = torch.zeros((), dtype=torch.float64)
        soil, snow, store, out = 0.5 * fc, zero, zero + 5.0, []
        for day in range(DAYS):
            snowfall = rain[day] / (1.0 + torch.exp(temp[day] / 0.5))
            melt = torch.minimum(snow + snowfall, cfmax * torch.clamp(temp[day], min=0.0))
            snow = snow + snowfall - melt
            inflow = rain[day] - snowfall + melt
            recharge = inflow * torch.clamp(soil / fc, 0.0, 1.0) ** beta
            soil = soil + inflow - recharge
            soil = soil - pet[day] * torch.clamp(soil / (lp * fc), max=1.0)
            store = store + recharge
            out.append(k * store)
            store = store - k * store
        return torch.sum((torch.stack(out) - observed) ** 2) / SPREAD

    def gradient(theta_np: np.ndarray) -> np.ndarray:
        theta = torch.tensor(theta_np, dtype=torch.float64, requires_grad=True)
        torch_loss(theta).backward()
        return theta.grad.numpy()

    return gradient


def jax_scan_gradient() -> Callable[[np.ndarray], Any] | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    forcing = (jnp.asarray(RAIN), jnp.asarray(TEMP), jnp.asarray(PET))

    def jax_loss(theta):
        fc, beta, k, cfmax, lp = theta

        def day(state, today):
            soil, snow, store = state
            rain, temp, pet = today
            snowfall = rain / (1.0 + jnp.exp(temp / 0.5))
            melt = jnp.minimum(snow + snowfall, cfmax * jnp.maximum(temp, 0.0))
            snow = snow + snowfall - melt
            inflow = rain - snowfall + melt
            recharge = inflow * jnp.clip(soil / fc, 0.0, 1.0) ** beta
            soil = soil + inflow - recharge
            soil = soil - pet * jnp.minimum(soil / (lp * fc), 1.0)
            store = store + recharge
            return (soil, snow, store - k * store), k * store

        _, q = jax.lax.scan(day, (0.5 * fc, jnp.float64(0.0), jnp.float64(5.0)), forcing)
        return jnp.sum((q - OBSERVED) ** 2) / SPREAD

    g = jax.jit(jax.grad(jax_loss))
    return lambda theta: g(jnp.asarray(theta)).block_until_ready()


def first_call_seconds(fn: Callable[[np.ndarray], Any] | None) -> str:
    if fn is None:
        return "skipped"
    start = time.perf_counter()
    fn(THETA)
    return f"{time.perf_counter() - start:.2f} s"


def main() -> None:
    repeats = repeats_from_command_line(__doc__, default=9)
    reference = finite_difference_gradient(THETA)
    from pyzygote.julia.setup import julia_is_set_up

    peers = [
        ("numpy loop + central FD (10 evaluations)", finite_difference_gradient),
        ("pyzygote NumPy engine, the same loop", pyzygote_gradient()),
        # engine='auto' keeps a program this long on the NumPy engine; its first call here is
        # the measurement of Julia's compile time that the limit lacks
        ("pyzygote Julia engine (engine='julia'), the same loop", pyzygote_gradient("julia") if julia_is_set_up() else None),
        ("PyTorch autograd, the same loop (eager)", torch_gradient()),
        ("JAX, the loop as lax.scan (jit)", jax_scan_gradient()),
    ]
    print("first gradient: " + ", ".join(f"{name.split(',')[0]} {first_call_seconds(fn)}" for name, fn in peers[1:]))
    compare(peers, THETA, reference, repeats, "FD")


if __name__ == "__main__":
    main()

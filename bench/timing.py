"""Timing and the comparison table shared by the benchmarks: each peer's median milliseconds
per gradient, its ratio to the first peer measured in the same run, and how far its gradient is
from a reference."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

Peer = tuple[str, "Callable[[np.ndarray], Any] | None"]


def median_ms(fn: Callable[[np.ndarray], Any], point: np.ndarray, repeats: int) -> float:
    fn(point)  # warm up: tracing, compilation, JIT
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(point)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def compare(peers: Sequence[Peer], point: np.ndarray, reference: np.ndarray, repeats: int, label: str) -> None:
    """Print one row per peer, with its time relative to the first peer's (``label``); a peer
    given as ``None`` (not installed, not set up) is skipped."""
    base = None
    print(f"{'peer':58s} {'ms/grad':>9s} {'vs ' + label:>12s}  max rel. diff to {label} gradient")
    for name, fn in peers:
        if fn is None:
            print(f"{name:58s} {'skipped (not installed / not set up)':>22s}")
            continue
        ms = median_ms(fn, point, repeats)
        base = base or ms
        g = np.asarray(fn(point), dtype=float)
        rel = float(np.max(np.abs(g - reference) / np.abs(reference)))
        print(f"{name:58s} {ms:9.2f} {ms / base:11.3f}x  {rel:.1e}")


def repeats_from_command_line(doc: str, default: int = 9) -> int:
    """The ``--repeats`` a benchmark script was run with (its docstring's first line is its help)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=default, help="timed calls per peer; the median is printed")
    return parser.parse_args().repeats

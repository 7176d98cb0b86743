"""Noticing random numbers drawn while a function is traced.

A trace records values, not calls, so numbers that ``np.random``, a
``Generator`` or Python's ``random`` draws inside a traced function would be the same on every later
call that reuses the trace.  numpy gives new numbers on each call; so, once a
trace is seen to have advanced a generator, pyzygote traces that function
afresh on every call and says so once.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> before = states([rng])
>>> _ = rng.normal()
>>> drew(before, states([rng]))
True
"""

from __future__ import annotations

import pickle
import random
from typing import Any, Iterable

import numpy as np

__all__ = ["states", "drew", "RandomDrawWarning"]


class RandomDrawWarning(UserWarning):
    """A traced function drew random numbers, so each call traces it again."""


def _bit_generator(obj: Any) -> Any:
    if isinstance(obj, np.random.Generator):
        return obj.bit_generator
    if isinstance(obj, np.random.RandomState):
        return obj._bit_generator
    if isinstance(obj, np.random.BitGenerator):
        return obj
    return None


def states(objects: Iterable[Any]) -> dict[int, bytes]:
    """The states of the generators among ``objects``, of numpy's global one and of Python's
    ``random`` module, by identity."""
    found: dict[int, bytes] = {id(random): pickle.dumps(random.getstate())}
    for obj in [np.random.mtrand._rand, *objects]:
        if isinstance(obj, np.random.RandomState) and id(obj) not in found:
            # with its cached second Gaussian, which a draw may use without advancing the bits
            found[id(obj)] = pickle.dumps(obj.get_state(legacy=False))
            continue
        bits = _bit_generator(obj)
        if bits is not None and id(bits) not in found:
            found[id(bits)] = pickle.dumps(bits.state)  # exact, and comparable when it holds arrays
    return found


def drew(before: dict[int, bytes], after: dict[int, bytes]) -> bool:
    """Whether any generator seen before advanced."""
    return any(after.get(k, v) != v for k, v in before.items())

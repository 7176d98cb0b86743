"""What every engine promises about the arrays it returns.

Each array a pyzygote transform returns is the caller's own: it shares memory
with no argument, no constant of the traced function, no other array of the
same result, and nothing pyzygote keeps for later (a pullback's residuals).
Zygote and numpy code both return aliases freely (the two gradients of
``x + y`` are one array; ``f(x) = x`` returns ``x``), and numpy arrays are
mutable, so writing into one gradient would otherwise change another or the
next call.  The check is by memory bounds, so only arrays that could overlap
are copied.

>>> import numpy as np
>>> from pyzygote.engines.results import unaliased
>>> g = np.ones(3)
>>> a, b = unaliased([g, g])
>>> a is g, np.shares_memory(a, b)
(True, False)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["unaliased", "arrays_in"]


def arrays_in(values: Iterable[Any]) -> list[np.ndarray]:
    """The numpy arrays among ``values`` (numbers and ``None`` cannot alias)."""
    return [v for v in values if isinstance(v, np.ndarray)]


def unaliased(values: Sequence[Any], keep_apart: Iterable[Any] = ()) -> tuple[Any, ...]:
    """``values``, with a copy of each array that may share memory with ``keep_apart`` or an earlier value."""
    seen = arrays_in(keep_apart)
    out = []
    for v in values:
        if isinstance(v, np.ndarray):
            if any(np.may_share_memory(v, other) for other in seen):
                v = v.copy()
            seen.append(v)
        out.append(v)
    return tuple(out)

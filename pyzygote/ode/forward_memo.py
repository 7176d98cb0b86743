"""The dense forward solution an adjoint will read, kept from the solve that gave the value.

In reverse mode an ODE solve runs twice on the NumPy engine: the forward program solves
for the value, and the backward program's adjoint needs the forward solution between
save times, so it solved again with dense output (about a tenth of an adjoint gradient's
time, measured on Lotka-Volterra communities and reaction networks of 4 to 20 species).  A solve whose derivative will be an adjoint
keeps its dense solution here instead, keyed by exactly what it solved, and the adjoint
takes it.  Few are kept, and only small ones: a solve whose backward pass never runs
(a jvp, a pullback never called) holds memory until it is pushed out.

>>> import numpy as np
>>> from pyzygote.ode.rhs import RHS
>>> from pyzygote.ode.sensitivity import Options, solve_states
>>> rhs, opts, t = RHS.trace(lambda u, p, t: -p * u, 1, 1), Options("Tsit5", 1e-8, 1e-8), np.array([0.0, 1.0])
>>> res = solve_states(rhs, np.ones(1), np.ones(1), t, opts, dense=True)
>>> keep(rhs, np.ones(1), np.ones(1), t, opts, res)
>>> recall(rhs, np.ones(1), np.ones(1), t, opts) is res, recall(rhs, np.ones(1), np.full(1, 2.0), t, opts)
(True, None)
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Any, Hashable

import numpy as np

__all__ = ["keep", "recall", "KEPT", "KEPT_VALUES"]

KEPT = 4  # solutions; a pz.jacobian's rows, pulled back one after another, read the same one
KEPT_VALUES = 4_000_000  # floats a kept solution may hold (32 MB), about steps x states x 6

_kept: collections.OrderedDict[Hashable, tuple[Any, Any]] = collections.OrderedDict()
_lock = threading.Lock()


def _key(rhs: Any, u0: np.ndarray, p: np.ndarray, t: np.ndarray, opts: Any) -> Hashable:
    arrays = (np.ascontiguousarray(u0, dtype=float), np.ascontiguousarray(p, dtype=float), np.ascontiguousarray(t, dtype=float))
    return (id(rhs), opts, *((a.shape, a.tobytes()) for a in arrays))


def keep(rhs: Any, u0: np.ndarray, p: np.ndarray, t: np.ndarray, opts: Any, res: Any) -> None:
    """Keep the dense solution ``res`` of ``rhs`` from ``u0`` with ``p`` at times ``t``."""
    steps = int(res.stats.get("naccept") or 0) + len(res.t)
    if res.dense is None or steps * np.size(u0) * 6 > KEPT_VALUES:
        return
    key = _key(rhs, u0, p, t, opts)
    with _lock:
        _kept[key] = (weakref.ref(rhs), res)
        _kept.move_to_end(key)
        while len(_kept) > KEPT:
            _kept.popitem(last=False)


def recall(rhs: Any, u0: np.ndarray, p: np.ndarray, t: np.ndarray, opts: Any) -> Any:
    """The solution :func:`keep` kept for exactly these arguments, or ``None``."""
    key = _key(rhs, u0, p, t, opts)
    with _lock:
        hit = _kept.get(key)
    if hit is None or hit[0]() is not rhs:  # an id reused by another right-hand side
        return None
    return hit[1]

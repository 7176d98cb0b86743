"""numpy <-> Julia array conversion for the Julia runtime (the array contract).

A numpy array of shape ``(a, b, c)`` is a Julia ``Array`` of size
``(a, b, c)`` with the same element at the same logical index; a numpy 0-d
array is a Julia scalar.  Arrays are handed to Julia column-major (a copy only
when the numpy array is not already Fortran-ordered), where
``PyZygoteRuntime.jlarg`` copies them into a Julia-owned ``Array``: Zygote
never sees a strided view of numpy memory, and later changes to the numpy
array cannot reach Julia.  Results come back as copies in C order, so they
never alias Julia memory.

>>> import numpy as np
>>> from pyzygote.julia.convert import to_julia
>>> to_julia(np.arange(6.0).reshape(2, 3)).flags.f_contiguous
True
>>> to_julia(np.array(2.5, dtype=np.float32))
np.float32(2.5)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_julia", "from_julia"]


def to_julia(a: Any) -> Any:
    """What to pass to PyZygoteRuntime for one argument (numpy scalar or F-ordered array)."""
    arr = np.asarray(a)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 0:
        return arr[()]
    return np.asfortranarray(arr)


def from_julia(value: Any, dtype: Any = None, shape: tuple[int, ...] | None = None, what: str = "result") -> Any:
    """A Julia result (array wrapper, number or None) as a fresh numpy array or numpy scalar.

    ``None`` (Zygote's "no gradient") becomes zeros when ``shape`` and
    ``dtype`` are known.  0-d results become numpy scalars, as numpy returns
    them from reductions.
    """
    if value is None:
        if shape is None or dtype is None:
            raise TypeError(f"Julia returned nothing for the {what}")
        arr = np.zeros(shape, dtype)
    else:
        arr = np.array(value, order="C", copy=True)
        if dtype is not None and arr.dtype != np.dtype(dtype):
            arr = arr.astype(dtype)
        if shape is not None and arr.shape != tuple(shape):
            if arr.size == int(np.prod(shape, dtype=np.int64)) and arr.ndim == 0:
                arr = arr.reshape(shape)
            else:
                raise ValueError(
                    f"the Julia engine returned shape {arr.shape} for the {what}, expected {tuple(shape)}; "
                    "this is a pyzygote bug: please report it, and use engine='numpy' meanwhile"
                )
    if arr.ndim == 0:
        return arr[()]
    return arr

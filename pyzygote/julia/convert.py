"""numpy <-> Julia array conversion for the Julia runtime (the array contract).

A numpy array of shape ``(a, b, c)`` is a Julia ``Array`` of size
``(a, b, c)`` with the same element at the same logical index; a numpy 0-d
array is a Julia scalar.

Inputs are passed as they are (only a non-native byte order is fixed, because
PythonCall cannot read it).  They arrive in Julia as zero-copy
``PythonCall.PyArray`` views with numpy's strides, C order included, and
``PyZygoteRuntime.jlarg`` copies each into a Julia-owned ``Array``: that is the
one copy on the way in.  Zygote never sees numpy memory, so later changes to a
numpy array cannot reach Julia.

Results come back in one of two ways:

* :func:`from_julia` copies (C order).  It is used where Julia may still hold
  the array: a pullback's closure, a user's ``pz.julia_function`` (which may
  return one of its globals).
* :func:`results_from_julia` returns zero-copy numpy views of Julia arrays
  (column-major strides, same logical indices) where nothing in Julia can read
  or write that memory again: fresh results of a generated program.  Their base
  hands the release of the Julia array to the main thread if the last view dies
  in another one (see :class:`_JuliaOwned`).  A result
  that shares memory with a program constant or with an earlier result of the
  same call is copied, so writing into one returned array never changes another
  or a later call.

>>> import numpy as np
>>> from pyzygote.julia.convert import to_julia
>>> x = np.arange(6.0).reshape(2, 3)
>>> to_julia(x) is x
True
>>> to_julia(np.array(2.5, dtype=np.float32))
np.float32(2.5)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from pyzygote.engines.results import unaliased
from pyzygote.julia.session import release_in_main_thread

__all__ = ["to_julia", "from_julia", "results_from_julia"]


def to_julia(a: Any) -> Any:
    """What to pass to PyZygoteRuntime for one argument (a numpy scalar or array)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf" or arr.dtype.itemsize > 8:
        # PythonCall reads numpy arrays only of these types; others would arrive as an iterable
        raise TypeError(
            f"the Julia engine takes boolean, integer and float16/32/64 arrays, got dtype {arr.dtype} "
            "(convert it with .astype(np.float64))"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 0:
        return arr[()]
    return arr


def from_julia(
    value: Any,
    dtype: Any = None,
    shape: tuple[int, ...] | None = None,
    what: str = "result",
    copy: bool = True,
) -> Any:
    """A Julia result (array wrapper, number or None) as a numpy array or numpy scalar.

    ``None`` (Zygote's "no gradient") becomes zeros when ``shape`` and
    ``dtype`` are known.  0-d results become numpy scalars, as numpy returns
    them from reductions.  With ``copy=False`` an array result is a view of
    the Julia array's memory (see :func:`results_from_julia` for when that is
    safe).
    """
    if value is None:
        if shape is None or dtype is None:
            raise TypeError(f"Julia returned nothing for the {what}")
        arr = np.zeros(shape, dtype)
    else:
        arr = np.array(value, order="C", copy=True) if copy else np.asarray(value)
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


class _JuliaOwned:
    """The base of a numpy view of a Julia array.  Releasing the view runs Julia code in the
    thread that drops it (PythonCall's `_pyjl_release_buffer` and `_pyjl_dealloc`), so when the
    last numpy array over this memory dies in another thread, the release waits for the main
    thread (:func:`pyzygote.julia.session.release_in_main_thread`)."""

    def __init__(self, view: np.ndarray):
        self._view = view
        self.__array_interface__ = view.__array_interface__

    # bound here: interpreter teardown may clear module globals before the last arrays die
    def __del__(self, _release: Any = release_in_main_thread) -> None:
        _release(self._view)


def results_from_julia(
    values: Sequence[Any],
    specs: Iterable[tuple[Any, tuple[int, ...]]],
    what: str,
    keep_apart: Sequence[Any] = (),
) -> tuple[Any, ...]:
    """Fresh Julia results as numpy views, copying any that could alias.

    ``specs`` gives the expected ``(dtype, shape)`` of each value.  A view is
    copied when it may share memory with an array in ``keep_apart`` (views of
    the program's constants; other values there are ignored) or with an
    earlier result: Zygote hands the same array to both arguments of
    ``x + y``, and a program may return a constant (see
    :mod:`pyzygote.engines.results`).
    """
    # Releasing a view's Julia array runs Julia code in whichever thread drops the array, and
    # Julia entered from a thread other than the main one can hang (PythonCall.jl #578): each
    # view's base hands its release to the main thread.
    arrays = [_owned(from_julia(value, dtype, shape, what, copy=False)) for value, (dtype, shape) in zip(values, specs)]
    return unaliased(arrays, keep_apart)


def _owned(a: Any) -> Any:
    """A view of Julia memory whose release waits for the main thread (numpy scalars are copies)."""
    return np.asarray(_JuliaOwned(a)) if isinstance(a, np.ndarray) else a

"""How numpy calls on traced values reach pyzygote's primitives.

Family modules register a handler per numpy ufunc or function with
:func:`implements`; the tracer's ``__array_ufunc__`` and
``__array_function__`` look handlers up here.  Handlers receive the call's
arguments as numpy would and must return tracers or numpy arrays.

>>> import numpy as np
>>> from pyzygote.numpy_api import is_supported
>>> is_supported(np.sin), is_supported(np.fft.fft)
(True, False)
"""

from __future__ import annotations

import difflib
import sys
from typing import Any, Callable

import numpy as np

from pyzygote.errors import UnsupportedOperationError

__all__ = ["HANDLERS", "implements", "implements_scipy_ufunc", "is_supported", "supported_names", "lookup"]

HANDLERS: dict[Any, Callable[..., Any]] = {}
# scipy.special's ufuncs by name: registered when first met, so that importing pyzygote does
# not import scipy.special (whoever calls one has imported it).
SCIPY_UFUNCS: dict[str, Callable[..., Any]] = {}


def implements(*funcs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler for numpy ufuncs/functions (or method names like ``"getitem"``)."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        for f in funcs:
            HANDLERS[f] = handler
        return handler

    return register


def implements_scipy_ufunc(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler for the ufunc ``scipy.special.<name>``."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        SCIPY_UFUNCS[name] = handler
        return handler

    return register


def _handler(func: Any) -> Callable[..., Any] | None:
    handler = HANDLERS.get(func)
    if handler is None and isinstance(func, np.ufunc) and func.__name__ in SCIPY_UFUNCS:
        special = sys.modules.get("scipy.special")
        if special is not None and getattr(special, func.__name__, None) is func:
            handler = HANDLERS[func] = SCIPY_UFUNCS[func.__name__]
    return handler


def is_supported(func: Any) -> bool:
    _load_families()
    return _handler(func) is not None


def _name(func: Any) -> str:
    if isinstance(func, str):
        return func
    if isinstance(func, np.ufunc) and getattr(np, func.__name__, None) is not func:
        return f"the ufunc {func.__name__} (not numpy's own; scipy.special's?)"
    mod = getattr(func, "__module__", None) or "numpy"
    # numpy's implementation modules (numpy._core.fromnumeric, ...) are private.
    public = ".".join(p for p in mod.split(".") if not p.startswith("_"))
    return f"{public}.{getattr(func, '__name__', repr(func))}"


def supported_names() -> list[str]:
    _load_families()
    scipy = {f"scipy.special.{name}" for name in SCIPY_UFUNCS}
    # scipy.special's ufuncs already met are also keys of HANDLERS: counted once, by name.
    met = set(map(id, SCIPY_UFUNCS.values()))
    return sorted({_name(f) for f, h in HANDLERS.items() if not isinstance(f, str) and id(h) not in met} | scipy)


_INSTEAD = {
    "polyfit": "np.linalg.lstsq(np.vander(x, deg + 1), y, rcond=None)[0] (the coefficients, highest power first, as polyfit gives them)",
    "piecewise": (
        "np.select([cond1, cond2], [f1(x), f2(x)], default) or nested np.where. numpy calls each function only where "
        "its condition holds; np.select evaluates each everywhere, and a derivative that is NaN or inf where its branch "
        "is not taken poisons the gradient, so keep each branch's input safe there: np.sqrt(np.where(x > 0, x, 1.0))"
    ),
    "eig": (
        "np.linalg.eigh(a) if a is symmetric (a general matrix's eigenvalues can be complex; eigh reads only the lower "
        "triangle, so a matrix that is not symmetric gets another matrix's eigenvalues). For the dominant eigenvalue "
        "and eigenvector of a non-negative matrix (a Leslie or next-generation matrix: the growth rate and the stable "
        "stage distribution), iterate v = a @ v / np.linalg.norm(a @ v) a fixed number of times and take "
        "v @ a @ v / (v @ v), with v as the eigenvector; the left eigenvector (reproductive values) the same way with a.T"
    ),
    **dict.fromkeys(("partition", "argpartition"), (
        "np.sort(x)[k] or np.sort(x)[-k:] for the k largest (np.argsort(x)[-k:] for their positions): a full sort, "
        "which pyzygote traces and differentiates (ties stable)"
    )),
    # user testing (optics, signal processing, a sampler's diagnostics)
    "unwrap": (
        "p + np.concatenate([[0.0], np.cumsum(-2 * np.pi * np.round(np.diff(p) / (2 * np.pi)))]) for a 1-D phase p "
        "(the same as numpy's away from jumps of exactly pi): the whole turns removed are piecewise constant, so the "
        "derivative is that of p"
    ),
    "angle": (
        "np.arctan2(y, x) for z = x + 1j * y, with the real and imaginary parts as real arrays (pyzygote traces real "
        "numbers only)"
    ),
    **dict.fromkeys(("histogram", "histogram2d", "histogramdd"), (
        "a kernel density, differentiable in the data: np.sum(np.exp(-0.5 * ((centers[:, None] - x[None, :]) / h) ** 2), "
        "axis=1) / (x.size * h * np.sqrt(2 * np.pi)) for bin centers and a bandwidth h (the counts themselves are "
        "piecewise constant in x: their derivative is 0 wherever it exists). Counts of data that are not "
        "differentiated can be computed outside the differentiated function and passed in"
    )),
    "sliding_window_view": (
        "x[np.arange(x.size - w + 1)[:, None] + np.arange(w)] for the windows of length w of a 1-D x (an array of "
        "shape (x.size - w + 1, w), traced like any indexing), or np.convolve(x, np.ones(w), 'valid') for moving sums"
    ),
    "choose": "np.take_along_axis(np.stack(choices, axis=-1), idx[..., None], axis=-1)[..., 0], or z[np.arange(n), idx] for np.choose(idx, z.T)",
    "eigvals": (
        "np.linalg.eigvalsh(a) if a is symmetric (a general matrix's eigenvalues can be complex; eigvalsh reads only "
        "the lower triangle, so a matrix that is not symmetric gets another matrix's eigenvalues). A product "
        "diag(s) @ C of positive s and a symmetric C (a next-generation matrix: susceptibilities times a symmetric "
        "contact matrix) has the eigenvalues of the symmetric diag(sqrt(s)) @ C @ diag(sqrt(s)): take its eigvalsh. "
        "For the spectral radius (the largest |eigenvalue|) of a non-negative matrix, iterate "
        "v = a @ v / np.linalg.norm(a @ v) a fixed number of times and take v @ a @ v / (v @ v). The largest real part "
        "of a general matrix (the stability of a community matrix) has no traced form: it can belong to a complex pair"
    ),
    **dict.fromkeys(("fft", "rfft"), (
        "a discrete Fourier transform in real arithmetic (pyzygote traces real numbers only): with k = np.arange(n), "
        "C = np.cos(2 * np.pi * np.outer(k, k) / n) and S = np.sin(2 * np.pi * np.outer(k, k) / n), the real part is "
        "C @ x and the imaginary part -S @ x (rfft keeps the first n // 2 + 1 rows; a matrix product: for moderate n)"
    )),
    **dict.fromkeys(("ifft", "irfft"), (
        "the inverse transform in real arithmetic (pyzygote traces real numbers only): for the full spectrum re + i im "
        "of length n, with C and S as for the forward transform (C = np.cos(2 * np.pi * np.outer(k, k) / n), S likewise "
        "with np.sin, k = np.arange(n)), the real signal is (C @ re - S @ im) / n; irfft's half spectrum first "
        "extended by its conjugate symmetry"
    )),
    **dict.fromkeys(("fft2", "fftn", "ifft2", "ifftn", "rfft2", "rfftn"), (
        "matrix products in real arithmetic along each axis, as for np.fft.fft (pyzygote traces real numbers only)"
    )),
    # user testing (a spectroscopist's line fits): the Faddeeva function is complex, and not traced
    "voigt_profile": (
        "a pseudo-Voigt (Thompson, Cox and Hastings 1987): with fG = 2 * sigma * np.sqrt(2 * np.log(2)) and fL = 2 * gamma, "
        "f = (fG**5 + 2.69269 * fG**4 * fL + 2.42843 * fG**3 * fL**2 + 4.47163 * fG**2 * fL**3 + 0.07842 * fG * fL**4 "
        "+ fL**5) ** 0.2, r = fL / f, eta = 1.36603 * r - 0.47719 * r**2 + 0.11116 * r**3, and eta * L + (1 - eta) * G "
        "for the Lorentzian L and Gaussian G of FWHM f (within about 1% of the Voigt profile); or the Gaussian and "
        "Lorentzian convolved on a fine, wide grid with np.convolve (exact to the grid's resolution)"
    ),
    "wofz": (
        "real arithmetic: pyzygote traces real numbers only. For the Voigt profile, see what pz says for "
        "scipy.special.voigt_profile (a pseudo-Voigt, or np.convolve of a Gaussian and a Lorentzian)"
    ),
}


def lookup(func: Any) -> Callable[..., Any]:
    handler = _handler(func)
    if handler is None:
        name = _name(func)
        names = supported_names()
        short = getattr(func, "__name__", str(func))
        close = difflib.get_close_matches(short, [n.rsplit(".", 1)[-1] for n in names], n=4, cutoff=0.7)
        # Full names: numpy.i0 is refused while scipy.special.i0 is traced, and "i0" alone says neither.
        close = [n for c in close for n in names if n.rsplit(".", 1)[-1] == c and n != name][:4]
        hint = f" Write it as {_INSTEAD[short]}." if short in _INSTEAD else ""
        similar = f" Similar ones that are traced: {', '.join(close)}." if close else ""
        raise UnsupportedOperationError(
            f"pyzygote cannot trace {name}: no rule is registered for it.{hint}{similar} "
            f"{len(names)} numpy and scipy.special functions are traced: "
            "pyzygote.numpy_api.supported_names() lists them (README: 'What can be traced')."
        )
    return handler


def _load_families() -> None:
    import pyzygote.primitives  # noqa: F401  (registers every family)

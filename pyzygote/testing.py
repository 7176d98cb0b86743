"""Assertions for cross-checking pyzygote's derivatives, in the style of ``numpy.testing``.

:func:`check_grads` compares pyzygote's forward mode (``jvp``), reverse mode
(``pullback``) and, with ``order=2``, its Hessian-vector products against
central finite differences along several random directions.  Finite
differences are always evaluated in float64 (float32 inputs are upcast before
calling ``f`` with plain numpy), so only pyzygote's side carries float32
rounding.  :func:`numerical_gradient` is a central-difference gradient with
pyzygote's calling convention, and :func:`assert_allclose_gradients`
compares two gradients (pytrees) leaf by leaf.

>>> import numpy as np
>>> from pyzygote.testing import check_grads, numerical_gradient
>>> check_grads(lambda x, y: np.sum(np.sin(x) * y), (np.array([0.1, 0.2]), 3.0), order=2)
>>> numerical_gradient(lambda x: np.sum(x ** 2), np.array([1.0, 2.0]))
(array([2., 4.]),)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.pytree import Static, describe, flatten, leaf_paths, structure, unflatten

__all__ = ["check_grads", "numerical_gradient", "numerical_jvp", "assert_allclose_gradients"]


def _float_leaves(tree: Any) -> tuple[list[Any], Any]:
    leaves, treedef = flatten(tree)
    return [leaf if isinstance(leaf, Static) else np.asarray(leaf, dtype=np.float64) for leaf in leaves], treedef


def is_data(leaf: Any) -> bool:
    """An integer or boolean numpy array (labels, masks): data with no derivative, as in ``pz.gradient``."""
    return isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind in "biu"


def check_step(eps: Any, name: str = "eps") -> float:
    """A finite-difference step: a positive finite number, or a ValueError naming it."""
    number = isinstance(eps, (int, float, np.integer, np.floating)) and not isinstance(eps, (bool, np.bool_))
    if not (number and np.isfinite(eps) and eps > 0):
        raise ValueError(f"{name} (the finite-difference step) must be a positive finite number, got {eps!r}")
    return float(eps)


def _real_leaves(leaves: list[Any], what: str) -> None:
    for leaf in leaves:
        if not isinstance(leaf, Static) and np.iscomplexobj(leaf):
            raise TypeError(f"{what} must be real: pyzygote differentiates real functions, got complex {leaf!r}")


def _call(f: Callable[..., Any], treedef: Any, leaves: list[Any]) -> list[np.ndarray]:
    out_leaves, _ = flatten(f(*unflatten(treedef, leaves)))
    return [np.asarray(o, dtype=np.float64) for o in out_leaves]


def numerical_jvp(f: Callable[..., Any], args: Sequence[Any], tangents: Sequence[Any], eps: float = 1e-6) -> list[np.ndarray]:
    """Central difference ``(f(x + eps t) - f(x - eps t)) / (2 eps)``, as a list of output leaves.

    >>> numerical_jvp(lambda x: x ** 2, (3.0,), (1.0,))[0].round(6)
    np.float64(6.0)
    """
    eps = check_step(eps)
    _real_leaves(flatten(tuple(args))[0] + flatten(tuple(tangents))[0], "args and tangents")
    leaves, treedef = _float_leaves(tuple(args))
    t_leaves, t_def = _float_leaves(tuple(tangents))
    if structure(t_def) != structure(treedef):
        raise ValueError(f"tangents must have the structure of args: {describe(treedef)}, got {describe(t_def)}")
    for path, x, t in zip(leaf_paths(treedef), leaves, t_leaves):
        if not isinstance(x, Static) and np.shape(x) != np.shape(t):
            raise ValueError(f"the tangent of args{path} has shape {np.shape(t)}, expected {np.shape(x)}")

    def shifted(sign: float) -> list[np.ndarray]:
        moved = [x if isinstance(x, Static) else x + sign * eps * t for x, t in zip(leaves, t_leaves)]
        return _call(f, treedef, moved)

    return [(p - m) / (2.0 * eps) for p, m in zip(shifted(1.0), shifted(-1.0))]


def numerical_gradient(f: Callable[..., Any], *args: Any, eps: float = 1e-6, relative: bool = False) -> tuple[Any, ...]:
    """Central-difference gradient of scalar ``f``: a tuple with one entry per argument, like ``pz.gradient``.

    Arguments may be pytrees; static leaves (strings, ``None``...) and integer or boolean
    arrays (labels, masks) get ``None``, as in ``pz.gradient``.  With ``relative`` each entry
    steps by ``eps`` times itself (``eps`` where it is 0), which stays inside the domain of a
    log of a small positive parameter (a diffusivity of 2e-9).

    >>> numerical_gradient(lambda p: p["a"] * p["b"], {"a": 2.0, "b": 5.0})
    ({'a': 5.0, 'b': 2.0},)
    >>> numerical_gradient(lambda d: float(np.log(d) * 1e-9), 2e-9, relative=True)[0]  # doctest: +ELLIPSIS
    0.49999...
    """
    eps = check_step(eps)
    if not callable(f):
        raise TypeError(f"numerical_gradient expected a function, got {type(f).__name__}")
    orig, treedef = flatten(tuple(args))
    _real_leaves(orig, "the arguments")
    leaves = [x if is_data(x) else leaf for x, leaf in zip(orig, _float_leaves(tuple(args))[0])]
    grads: list[Any] = []
    for k, x in enumerate(leaves):
        if isinstance(x, Static) or is_data(x):
            grads.append(None)
            continue
        g = np.zeros(x.shape)
        for i in range(x.size):
            vals = []
            step = eps * abs(float(x.flat[i])) if relative and x.flat[i] != 0 else eps
            for sign in (1.0, -1.0):
                xi = x.copy()
                xi.flat[i] += sign * step
                ys = _call(f, treedef, leaves[:k] + [xi] + leaves[k + 1 :])
                if len(ys) != 1 or ys[0].shape != ():
                    got = f"shape {ys[0].shape}" if len(ys) == 1 else f"{len(ys)} arrays"
                    raise ValueError(f"numerical_gradient needs a function returning one scalar, got {got}")
                (y,) = ys
                vals.append(float(y))
            g.flat[i] = (vals[0] - vals[1]) / (2.0 * step)
        is_py = isinstance(orig[k], (int, float)) and not isinstance(orig[k], np.generic)
        grads.append(float(g) if is_py else g)
    return tuple(unflatten(treedef, grads))


def assert_allclose_gradients(actual: Any, desired: Any, rtol: float = 1e-7, atol: float = 0.0, err_msg: str = "") -> None:
    """Assert two pytrees of derivatives have one structure, shapes, and close values.

    >>> assert_allclose_gradients(({"w": np.ones(2)}, 1.0), ({"w": np.ones(2)}, 1.0 + 1e-12))
    >>> assert_allclose_gradients(({"w": 1.0},), ((1.0,),))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    AssertionError: gradient structures differ
     ACTUAL: ({'w': an array},)
     DESIRED: ((an array,),)
    """
    for name, v in (("rtol", rtol), ("atol", atol)):
        number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        if not (number and np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a non-negative finite number, got {v!r}")
    a_leaves, a_def = flatten(actual)
    d_leaves, d_def = flatten(desired)
    if structure(a_def) != structure(d_def):
        raise AssertionError(
            f"gradient structures differ {err_msg}\n ACTUAL: {describe(a_def)}\n DESIRED: {describe(d_def)}"
        )
    for path, a, d in zip(leaf_paths(a_def), a_leaves, d_leaves):
        if isinstance(a, Static) or isinstance(d, Static):
            av = a.value if isinstance(a, Static) else a
            dv = d.value if isinstance(d, Static) else d
            if av is not dv and av != dv:
                raise AssertionError(f"gradient{path}: {av!r} != {dv!r} {err_msg}")
            continue
        if np.shape(a) != np.shape(d):
            raise AssertionError(f"gradient{path}: shape {np.shape(a)} != {np.shape(d)} {err_msg}")
        if np.iscomplexobj(a) or np.iscomplexobj(d):
            raise AssertionError(f"gradient{path} is complex; pyzygote's derivatives are real {err_msg}")
        # A NaN gradient matches nothing, not even a NaN reference: both are broken.
        np.testing.assert_allclose(
            np.asarray(a, dtype=np.float64),
            np.asarray(d, dtype=np.float64),
            rtol=rtol,
            atol=atol,
            equal_nan=False,
            err_msg=f"gradient{path} {err_msg}",
        )


def _inner(xs: Sequence[Any], ys: Sequence[Any]) -> float:
    return float(sum(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(xs, ys)))


def _norm(xs: Sequence[Any]) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in xs)))


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int = 1,
    modes: Sequence[str] = ("fwd", "rev"),
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    n_directions: int = 3,
    seed: int = 0,
    engine: str | None = None,
) -> None:
    """Check pyzygote's derivatives of ``f`` at ``args`` against central finite differences.

    ``"fwd"`` compares ``pz.jvp`` with finite differences along ``n_directions``
    random tangents; ``"rev"`` compares ``<pz.pullback(ct), t>`` with
    ``<ct, finite difference along t>`` for random ``ct`` and ``t``.  With
    ``order=2`` (scalar ``f`` only) it also compares Hessian-vector products of
    ``pz.hessian`` with finite differences of ``pz.gradient``.  Values are
    compared as ``|a - b| <= atol + rtol * |b|`` with ``atol`` defaulting to
    ``rtol`` times the largest finite-difference entry, or to the differences' rounding
    noise (``10 u |f| / eps``) where that is larger, as at a minimum.  Defaults: ``eps=1e-6``
    and ``rtol=1e-6`` in float64; ``rtol=2e-3`` if an input or output is
    float32, and ``eps=1e-3`` if an output is.  Where ``f`` solves an ODE, whose
    value is accurate to the solver's ``reltol``, ``rtol`` is at least 100 times
    that and the noise ``reltol |f| / eps``.

    >>> import numpy as np
    >>> check_grads(lambda x: np.sum(np.exp(x) * x[::-1]), (np.linspace(0.0, 1.0, 4),))
    >>> check_grads(np.floor, (1.0,))  # a jump: the difference quotient is huge  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    AssertionError: ...
    """
    import pyzygote as pz

    if not callable(f):
        raise TypeError(f"check_grads expected a function to check, got {type(f).__name__}")
    if order not in (1, 2):
        raise ValueError("order must be 1 or 2")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of f's arguments, e.g. check_grads(f, (x,)); got {type(args).__name__}")
    if isinstance(modes, str) or set(modes) - {"fwd", "rev"} or (not modes and order == 1):
        raise ValueError(f"modes must be a sequence of 'fwd' and 'rev' (empty only with order=2), e.g. ('rev',); got {modes!r}")
    if not (isinstance(n_directions, int) and n_directions >= 1):
        raise ValueError(f"n_directions must be a positive int, got {n_directions!r}")
    for name, v in (("eps", eps), ("rtol", rtol), ("atol", atol)):
        if v is not None and not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v >= 0 and (v > 0 or name != "eps")):
            raise ValueError(f"{name} must be a {'positive' if name == 'eps' else 'non-negative'} finite number, got {v!r}")
    args = tuple(args)
    leaves, treedef = flatten(args)
    single = any(np.asarray(x).dtype == np.float32 for x in leaves if not isinstance(x, Static))
    f64_leaves = [x if isinstance(x, Static) else np.asarray(x, np.float64) for x in leaves]
    outputs = [np.asarray(y) for y in flatten(f(*unflatten(treedef, f64_leaves)))[0]]
    if any(y.dtype.kind == "f" and not np.all(np.isfinite(y)) for y in outputs):
        raise ValueError(
            "f is NaN or infinite at args, where derivatives are meaningless and finite differences are NaN: "
            "check_grads needs a point where f is finite"
        )
    single_out = any(y.dtype == np.float32 for y in outputs)
    eps = (1e-3 if single_out else 1e-6) if eps is None else eps  # float32 outputs need a longer step
    single = single or single_out
    # An ODE solve is accurate to its reltol, and its finite differences carry that error over eps.
    from pyzygote.crosscheck import _SOLVER_SLACK, _solver_reltol

    solver = (_solver_reltol(f, args) if rtol is None or atol is None else None) or 0.0
    if solver > 1e-6:
        import warnings

        warnings.warn(
            f"f solves an ODE at reltol={solver:g}: its finite differences are noise of about reltol |f| / eps, "
            "so this check can tell little; solve at reltol=1e-8 or tighter to check its gradient",
            UserWarning,
            stacklevel=2,
        )
    rtol = max(2e-3 if single else 1e-6, _SOLVER_SLACK * solver) if rtol is None else rtol
    # Central differences carry rounding noise of about u |f| / eps: at a minimum, where the
    # derivative is itself about zero, that noise is all they show.
    size = max([float(np.max(np.abs(y), initial=0.0)) for y in outputs if y.dtype.kind == "f"] + [1.0])
    noise = max(10.0 * float(np.finfo(np.float32 if single_out else np.float64).eps), solver) * size / eps
    rng = np.random.default_rng(seed)

    def direction() -> tuple[Any, ...]:
        t = [x if isinstance(x, Static) else rng.standard_normal(np.shape(x)) for x in leaves]
        return tuple(unflatten(treedef, t))

    def close(actual: Sequence[Any], desired: Sequence[Any], what: str) -> None:
        a_leaves = tuple(np.asarray(a, np.float64) for a in actual)
        d_leaves = tuple(np.asarray(d, np.float64) for d in desired)
        scale = max([float(np.max(np.abs(d), initial=0.0)) for d in d_leaves] + [1e-300])
        tol = max(rtol * scale, noise) if atol is None else atol
        assert_allclose_gradients(a_leaves, d_leaves, rtol=rtol, atol=tol, err_msg=f"({what})")

    for _ in range(n_directions):
        t = direction()
        fd = numerical_jvp(f, args, t, eps)
        if "fwd" in modes:
            _, tout = pz.jvp(f, args, t, engine=engine)
            close(flatten(tout)[0], fd, "jvp vs central differences")
        if "rev" in modes:
            y, back = pz.pullback(f, *args, engine=engine)
            ct = [rng.standard_normal(np.shape(o)) for o in flatten(y)[0]]
            g = back(unflatten(flatten(y)[1], ct))
            g_leaves = [x for x in flatten(g)[0] if not isinstance(x, Static) and x is not None]
            t_leaves = [x for x in flatten(t)[0] if not isinstance(x, Static)]
            lhs, rhs = _inner(g_leaves, t_leaves), _inner(ct, fd)
            floor = noise * _norm(ct) * np.sqrt(sum(np.size(c) for c in ct)) if atol is None else atol
            tol = floor + rtol * max(_norm(g_leaves) * _norm(t_leaves), _norm(ct) * _norm(fd), 1e-300)
            if not abs(lhs - rhs) <= tol:
                raise AssertionError(
                    f"reverse mode disagrees with central differences: <pullback(ct), t> = {lhs!r} but "
                    f"<ct, central difference> = {rhs!r}, a difference of {abs(lhs - rhs):.3g} against a tolerance "
                    f"of {tol:.3g} (rtol={rtol:g})"
                )
    if order == 2:
        _check_hvp(f, args, leaves, treedef, rng, eps, rtol, atol, n_directions, engine, close)


def _check_hvp(f: Any, args: Any, leaves: Any, treedef: Any, rng: Any, eps: float, rtol: float, atol: Any, n: int, engine: Any, close: Any) -> None:
    """Hessian-vector products of the flattened function against differences of its gradient."""
    import pyzygote as pz

    slots = [i for i, x in enumerate(leaves) if not isinstance(x, Static)]
    arrays = [np.asarray(leaves[i]) for i in slots]
    sizes = np.cumsum([0] + [a.size for a in arrays])
    dtype = np.result_type(*arrays) if arrays else np.float64

    def flat_f(v: Any) -> Any:
        new = list(leaves)
        for k, i in enumerate(slots):
            new[i] = v[sizes[k] : sizes[k + 1]].reshape(arrays[k].shape)
        return f(*unflatten(treedef, new))

    v0 = np.concatenate([a.ravel() for a in arrays]).astype(dtype)
    h = pz.hessian(flat_f, v0, engine=engine)
    close([h], [h.T], "Hessian symmetry")
    for _ in range(n):
        u = rng.standard_normal(v0.shape)
        plus = pz.gradient(flat_f, (v0 + eps * u).astype(np.float64), engine=engine)[0]
        minus = pz.gradient(flat_f, (v0 - eps * u).astype(np.float64), engine=engine)[0]
        close([h @ u], [(plus - minus) / (2.0 * eps)], "Hessian-vector product vs differences of the gradient")

"""Kinks and ties: where a function's one-sided derivatives differ, any value between them is a
valid (sub)gradient.  PyTorch's ReLU'(0) is 0 where numpy's and JAX's ``maximum`` give 1/2;
``torch.max`` gives a tie to one entry where pyzygote splits it.  :func:`pyzygote.crosscheck`
uses :class:`Kinks` to accept either.

>>> import numpy as np
>>> kinks = Kinks(lambda x: np.sum(np.maximum(x, 0.0)), (np.array([0.0, 2.0]),))
>>> low, high = kinks.bounds()[0]
>>> low.tolist(), high.tolist()
([0.0, nan], [1.0, nan])
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pyzygote.pytree import flatten

__all__ = ["Kinks", "one_sided_differences", "changed_entries", "may_kink"]


def _canonical(tree: Any) -> Any:
    from pyzygote.crosscheck import _canonical as canonical

    return canonical(tree)


class Kinks:
    """Where ``f`` has a kink or a tie (``np.maximum(x, 0)`` at 0, a max over equal entries): its
    one-sided derivatives differ, and any value between them is a valid (sub)gradient (PyTorch's
    ReLU'(0) is 0, numpy's and JAX's 1/2).  Found on first use: read off the traced program
    exactly (:mod:`pyzygote.directional`), or where it holds code whose switches cannot be read
    (eigenvalues, Julia calls), from one-sided differences, unless ``differences`` is False."""

    def __init__(
        self, f: Callable[..., Any], args: tuple[Any, ...], eps: float = 1e-6, quietly: Callable[..., Any] | None = None,
        differences: bool = True,
    ):  # fmt: skip
        self.f, self.args, self.eps, self.differences = f, args, eps, differences
        # how the differences are run (crosscheck silences retrace and numpy warnings)
        self.quietly = quietly or (lambda differences, f, *args, eps: differences(f, *args, eps=eps))
        self._bounds: Any = None
        self._branches: Any = None
        self.exact = False  # the bounds were read off the program (else differences, or none)
        self._pieces: Any = False  # not yet looked for
        self.not_probed = False  # kinks may be there but were not looked for (differences off)

    @property
    def branches(self) -> "_Branches":
        if self._branches is None:
            self._branches = _Branches(self.f, self.args)
        return self._branches

    def bounds(self) -> Any:
        """Per entry, ``(low, high)`` of the one-sided derivatives where they differ, else NaN
        (everywhere NaN for a program without a kink or tie, or none at this point)."""
        if self._bounds is None:
            branches = self.branches
            if not branches.possible:  # no f evaluations: a smooth program has no kink anywhere
                self._bounds = self._nowhere()
            elif not branches.opaque and (exact := branches.exact_bounds()) is not None:
                self._bounds, self.exact = exact, True
            elif not self.differences:
                self._bounds, self.not_probed = self._nowhere(), True
            else:
                self._bounds = self._by_differences(branches)
        return self._bounds

    def _nowhere(self) -> Any:
        from pyzygote.pytree import unflatten

        leaves, tree = flatten(self.args)
        return _stacked(*(_canonical(tuple(unflatten(tree, [_floats(x, np.nan) for x in leaves]))) for _ in range(2)))

    def _by_differences(self, branches: "_Branches") -> Any:
        """One-sided differences with a step and half of it, where they part as much with both (a
        smooth f's part in proportion to the step) and the step moves a value across its switch."""
        (f1, b1), (f2, b2) = (self.quietly(one_sided_differences, self.f, *self.args, eps=h) for h in (self.eps, self.eps / 2))

        def interval(f1: Any, b1: Any, f2: Any, b2: Any, crossed: Any) -> Any:
            if isinstance(f1, dict):
                return {k: interval(f1[k], b1[k], f2[k], b2[k], None if crossed is None else crossed[k]) for k in f1}
            if isinstance(f1, tuple):
                return tuple(interval(*z, None if crossed is None else crossed[i]) for i, z in enumerate(zip(f1, b1, f2, b2)))
            if not isinstance(f1, np.ndarray):
                return f1
            gap1, gap2 = np.abs(f1 - b1), np.abs(f2 - b2)
            scale = max(float(np.max(np.abs(f2), initial=0.0)), float(np.max(np.abs(b2), initial=0.0)), 1e-300)
            kink = (gap2 > 0.75 * gap1) & (gap2 > 1e-6 * scale)
            if crossed is not None:  # and the step moves a value of the program across its kink
                kink &= crossed > 0
            return np.stack([np.where(kink, np.minimum(f2, b2), np.nan), np.where(kink, np.maximum(f2, b2), np.nan)])

        canonical = [_canonical(z) for z in (f1, b1, f2, b2)]
        crossed = None
        if any(np.any(np.isfinite(b)) for b in _leaves(interval(*canonical, None))):
            crossed = _canonical(branches.crossed(self.eps))  # only where the differences see a kink: it costs
        return interval(*canonical, crossed)

    @property
    def separable(self) -> bool:
        """Whether entries between their one-sided derivatives are valid independently (see
        :meth:`_Branches.separable`); True for bounds from differences, as before."""
        self.bounds()
        return not self.exact or self.branches.separable()

    def pieces(self) -> list[Any] | None:
        """Gradients of the smooth pieces of ``f`` that meet at a tie here (read off the program),
        or None; any convex combination of them is a valid (Clarke) subgradient."""
        if self._pieces is False:
            self.bounds()
            self._pieces = self.branches.pieces() if self.exact else None
        return self._pieces

    def jointly_valid(self, changed: Any, slack: float = 0.0) -> bool:
        """Whether the gradient's values at the kinks, together, lie between the one-sided
        derivatives along all of them at once: at a tie of two maxima, 1 for each is valid
        alone but not both (their sum, the derivative along both, is 1).  ``slack``: what the
        sum may be off by (the entries' own tolerance)."""
        masks = [leaf for leaf in flatten(changed)[0] if isinstance(leaf, np.ndarray)]
        direction_tree = _map_leaves(changed, lambda m: m[0])
        total = sum(float(np.sum(m[0] * m[1])) for m in masks)
        if self.exact:
            sides = self.branches.along(direction_tree)
            if sides is None:
                return False
            up, down = sides
            slack += 1e-12 * max(abs(up), abs(down), abs(total))
            return min(up, down) - slack <= total <= max(up, down) + slack
        try:
            base = float(np.asarray(self.f(*self.args), dtype=np.float64))
            h = self.eps / 2
            with np.errstate(all="ignore"):
                up = (float(np.asarray(self.f(*_moved(self.args, direction_tree, h)), dtype=np.float64)) - base) / h
                down = (base - float(np.asarray(self.f(*_moved(self.args, direction_tree, -h)), dtype=np.float64))) / h
        except (TypeError, ValueError):
            return False
        slack = max(slack, 1e-3 * max(abs(up), abs(down), abs(total), 1e-300))
        return min(up, down) - slack <= total <= max(up, down) + slack


def _floats(x: Any, fill: float) -> Any:
    """An array like the float argument ``x`` filled with ``fill``, None for any other argument."""
    if isinstance(x, (float, np.floating, np.ndarray)) and np.asarray(x).dtype.kind == "f":
        return np.full(np.shape(x), fill)
    return None


def _stacked(low: Any, high: Any) -> Any:
    if isinstance(low, dict):
        return {k: _stacked(low[k], high[k]) for k in low}
    if isinstance(low, tuple):
        return tuple(_stacked(a, b) for a, b in zip(low, high))
    return np.stack([low, high]) if isinstance(low, np.ndarray) else low


# Kinked or stepping at some points too: eigenvalues and singular values where two cross (the
# largest of a tie), the sign of a determinant, and code pyzygote cannot see into.  Which side
# of such a point a value is on cannot be read off the equation: these are taken on trust.
_OPAQUE = frozenset({"eigh", "svd", "julia_call"})


class _Branches:
    """The equations of the program traced from ``f(*args)`` at which it can have a kink or a tie:
    a maximum, minimum or absolute value, a comparison or rounding of a value computed from the
    arguments (other than in pyzygote's smooth compositions, np.logaddexp's stable form), a
    determinant's sign, eigenvalues or singular values, or code it cannot see into (Julia).
    :meth:`crossed` says which entries of the arguments, moved by a step, move such a value
    across its kink (or off a tie), which is what a kink at that point is."""

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...]):
        from pyzygote.ir import Program, Var
        from pyzygote.ode.rhs import _ELEMENTWISE_KINKS, _KINKS, RHS, _switches
        from pyzygote.tracer import SMOOTH
        from pyzygote.tracing import make_program

        self.args = args
        self.prog: Any = None
        self.found: list[Any] = []  # the equations whose side is read at each point
        self.opaque = False  # one whose side cannot be read: the differences alone judge
        self._base: float | None = None  # f's value, as the program computes it
        self.tied: list[tuple[int, int]] = []
        self.moves: dict[tuple[int, int], frozenset[Any]] = {}  # the switch entries each of those moves
        self._last_switches: frozenset[Any] = frozenset()  # (leaf, entry) moving a switch at this point (exact_bounds)
        try:
            self.prog = make_program(f, *args)
        except Exception:  # the engines' own calls report what is wrong with f
            self.opaque = True
            return
        smooth = frozenset({SMOOTH})

        def kinked(p: Program, eqn: Any) -> bool:
            name = eqn.prim.name
            if name in _ELEMENTWISE_KINKS and p.choices.get(eqn.outputs[0].uid) not in smooth:
                return True
            return _switches(p, eqn, smooth, _KINKS | {"detsign"}) or name in _OPAQUE

        def scan(p: Program, top: bool) -> None:
            moving = set(p.inputs)
            for eqn in p.eqns:
                if not any(isinstance(a, Var) and a in moving for a in eqn.inputs):
                    continue
                moving.update(eqn.outputs)
                if kinked(p, eqn):
                    if top and eqn.prim.name not in _OPAQUE:
                        self.found.append(eqn)
                    else:
                        self.opaque = True
                for value in eqn.params.values():  # a right-hand side's or a residual's program
                    inner = value if isinstance(value, Program) else getattr(value, "leaf_program", None) if isinstance(value, RHS) else None
                    if isinstance(inner, Program):
                        scan(inner, False)

        scan(self.prog, True)

    @property
    def possible(self) -> bool:
        return self.opaque or bool(self.found)

    def _leaves_and_tree(self) -> tuple[list[Any], Any] | None:
        from pyzygote.tracing import to_input_array

        leaves, tree = flatten(self.args)
        if self.prog is None or len(leaves) != len(self.prog.inputs):
            return None  # arguments the program does not take one by one
        return [to_input_array(x, "an argument") for x in leaves], tree

    def _sides_along(self, leaves: list[Any], direction: list[Any]) -> tuple[float, float, bool] | None:
        """The derivatives along ``direction`` from either side (``f'(x; d)`` and ``-f'(x; -d)``),
        and whether a switch at ``x`` took part, or None where ``f`` jumps there or a switch
        cannot be decided."""
        from pyzygote.directional import directional_derivative

        if self._base is None:
            self._base = directional_derivative(self.prog, leaves, [None] * len(leaves)).value
        base = self._base
        up = directional_derivative(self.prog, leaves, direction, record=True)
        down = directional_derivative(self.prog, leaves, [None if d is None else -d for d in direction], record=True)
        self._last_switches = up.switches | down.switches
        for side in (up, down):
            # a jump is no kink: no value between the sides is a derivative
            if not side.decided or not abs(side.value - base) <= 1e-9 * max(1.0, abs(base)):
                return None
        return up.derivative, -down.derivative, up.touched or down.touched

    def along(self, direction_tree: Any) -> tuple[float, float] | None:
        """:meth:`_sides_along` a direction in the structure ``_canonical`` gives the arguments."""
        found = self._leaves_and_tree()
        if found is None:
            return None
        leaves, tree = found
        zero = tuple(_map_leaves_of_args(self.args))
        moved = _moved(zero, direction_tree, 1.0)
        direction = [np.asarray(d, dtype=np.float64) if _floats(x, 0.0) is not None else None for d, x in zip(flatten(moved)[0], leaves)]
        try:
            sides = self._sides_along(leaves, direction)
        except Exception:  # an equation that cannot run this way: not judged
            return None
        return None if sides is None else sides[:2]

    def pieces(self) -> list[Any] | None:
        """The gradients of the pieces meeting at a tie here (see
        :func:`pyzygote.directional.piece_gradients`), each in the structure ``_canonical`` gives
        the arguments; None where there is none to find (call :meth:`exact_bounds` first)."""
        from pyzygote.directional import piece_gradients
        from pyzygote.pytree import unflatten

        found = self._leaves_and_tree()
        if found is None or not self.tied:
            return None
        leaves, tree = found
        try:
            grads = piece_gradients(self.prog, leaves, self.tied)
        except Exception:  # an equation that cannot run this way: not judged
            return None
        return None if not grads else [_canonical(tuple(unflatten(tree, g))) for g in grads]

    def separable(self) -> bool:
        """Whether each entry that moves a switch here moves one switch entry, which no other entry
        moves (a ReLU of a bias, a clip of an entry): then the valid gradients are exactly those
        with each such entry between its one-sided derivatives, independently; else the choices
        are shared (a ReLU of w0 + w1 at 0 takes the same side for both) and only a convex
        combination of the pieces' gradients is valid."""
        seen: set[Any] = set()
        for keys in self.moves.values():
            if len(keys) > 1 or keys & seen:
                return False
            seen |= keys
        return True

    def exact_bounds(self) -> Any:
        """:meth:`Kinks.bounds` read off the program: nothing evaluated by steps, and only where
        a switch of it sits at this point, the entries that move one; None where that cannot
        be done (then the differences judge)."""
        from pyzygote.directional import at_a_switch
        from pyzygote.pytree import unflatten

        found = self._leaves_and_tree()
        if found is None:
            return None
        leaves, tree = found
        ids = {id(e) for e in self.found}
        try:
            here = at_a_switch(self.prog, leaves, lambda e: id(e) in ids)
            lows, highs = [], []
            for k, x in enumerate(leaves):
                low, high = _floats(x, np.nan), _floats(x, np.nan)
                if low is not None and here:
                    for i in range(x.size):
                        e = np.zeros(x.shape)
                        e.flat[i] = 1.0
                        sides = self._sides_along(leaves, [e if j == k else None for j in range(len(leaves))])
                        if sides is not None and sides[2]:
                            self.tied.append((k, i))
                            self.moves[(k, i)] = self._last_switches
                        if sides is not None and sides[0] != sides[1]:
                            low.flat[i], high.flat[i] = min(sides[:2]), max(sides[:2])
                lows.append(low)
                highs.append(high)
        except Exception:  # an equation that cannot run this way: the differences judge
            return None
        return _stacked(_canonical(tuple(unflatten(tree, lows))), _canonical(tuple(unflatten(tree, highs))))

    def _sides(self, leaves: list[Any]) -> list[np.ndarray]:
        """Which side of its kink each equation of :attr:`found` is on, with the arguments' leaves."""
        from pyzygote.ir import Literal
        from pyzygote.tracing import to_input_array

        prog = self.prog
        env: dict[Any, Any] = {v: to_input_array(x, "an argument") for v, x in zip(prog.inputs, leaves)}
        env.update(zip(prog.constvars, prog.consts))
        found = {id(e) for e in self.found}
        sides = []
        for eqn in prog.eqns:
            ins = [a.value if isinstance(a, Literal) else env[a] for a in eqn.inputs]
            out = eqn.prim.impl(*ins, **eqn.params)
            outs = out if eqn.prim.multiple_results else (out,)
            env.update(zip(eqn.outputs, outs))
            if id(eqn) in found:
                name = eqn.prim.name
                if name in ("max", "min", "fmax", "fmin"):
                    side = np.sign(np.subtract(ins[0], ins[1]))
                elif name == "abs":
                    side = np.sign(ins[0])
                elif name in ("reduce_max", "reduce_min"):  # which entries are the extremum: a tie has several
                    pick = np.max if name == "reduce_max" else np.min
                    side = np.equal(ins[0], pick(ins[0], axis=eqn.params["axes"], keepdims=True))
                else:  # a comparison's, a rounding's or a sign's own value
                    side = np.asarray(outs[0])
                sides.append(np.asarray(side))
        return sides

    def crossed(self, eps: float) -> Any:
        """1 for each entry of the arguments that, moved by ``eps`` either way, changes a side in
        :meth:`_sides`, else 0, in the structure of :func:`one_sided_differences`; ``None`` where
        that cannot be told (an equation taken on trust, arguments the program does not take one
        by one, an evaluation that fails)."""
        from pyzygote.pytree import unflatten

        leaves, tree = flatten(self.args)
        if self.opaque or self.prog is None or len(leaves) != len(self.prog.inputs):
            return None
        try:
            with np.errstate(all="ignore"):
                base = self._sides(leaves)
                out: list[Any] = []
                for k, x in enumerate(leaves):
                    if not (isinstance(x, (float, np.floating, np.ndarray)) and np.asarray(x).dtype.kind == "f"):
                        out.append(None)
                        continue
                    x = np.asarray(x, dtype=np.float64)
                    hit = np.zeros(x.shape)
                    for i in range(x.size):
                        for sign in (1.0, -1.0):
                            moved = x.copy()
                            moved.flat[i] += sign * eps
                            sides = self._sides(leaves[:k] + [moved] + leaves[k + 1 :])
                            if any(not np.array_equal(a, b, equal_nan=True) for a, b in zip(base, sides)):
                                hit.flat[i] = 1.0
                                break
                    out.append(hit)
        except Exception:  # a step out of the program's domain: the differences alone judge
            return None
        return tuple(unflatten(tree, out))


def may_kink(f: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """Whether the program traced from ``f(*args)`` can have a kink or a tie anywhere (see
    :class:`_Branches`); True where ``f`` cannot be traced."""
    return _Branches(f, args).possible


def changed_entries(grads: Any, reference: Any, adopted: Any) -> Any:
    """The entries taken from the gradient (1), in the structure of the references, and what it holds there."""
    if isinstance(adopted, dict):
        return {k: changed_entries(grads[k], reference[k], adopted[k]) for k in adopted}
    if isinstance(adopted, tuple):
        return tuple(changed_entries(*z) for z in zip(grads, reference, adopted))
    if not isinstance(adopted, np.ndarray):
        return None
    return np.stack([(adopted != reference).astype(np.float64), np.asarray(grads, dtype=np.float64)])


def _moved(x: Any, d: Any, h: float) -> Any:
    """The arguments ``x`` moved by ``h`` along ``d`` (in the structure ``_canonical`` gives)."""
    if d is None:
        return x
    if isinstance(x, dict):
        return {k: _moved(x[k], d[k], h) for k in x}
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        if isinstance(d, np.ndarray):  # a list of numbers, compared as a vector
            return type(x)(xi + h * float(di) for xi, di in zip(x, d))
        return type(x)(_moved(a, b, h) for a, b in zip(x, d))
    if isinstance(x, (float, np.floating, np.ndarray)):
        return np.asarray(x, dtype=np.float64) + h * d if np.ndim(x) else x + h * float(d)
    raise TypeError(f"cannot move an argument of type {type(x).__name__}")


def one_sided_differences(f: Callable[..., Any], *args: Any, eps: float) -> tuple[Any, Any]:
    """Forward and backward differences of ``f`` with the step ``eps``, in the structure of the arguments."""
    from pyzygote.pytree import unflatten

    leaves, tree = flatten(args)
    base = float(np.asarray(f(*args), dtype=np.float64))
    forward, backward = [], []
    for k, x in enumerate(leaves):
        if not (isinstance(x, (float, np.floating, np.ndarray)) and np.asarray(x).dtype.kind == "f"):
            forward.append(None)
            backward.append(None)
            continue
        x = np.asarray(x, dtype=np.float64)
        fw, bw = np.zeros(x.shape), np.zeros(x.shape)
        for i in range(x.size):
            for sign, out in ((1.0, fw), (-1.0, bw)):
                moved = x.copy()
                moved.flat[i] += sign * eps
                value = float(np.asarray(f(*unflatten(tree, leaves[:k] + [moved] + leaves[k + 1 :])), dtype=np.float64))
                out.flat[i] = sign * (value - base) / eps
        forward.append(fw)
        backward.append(bw)
    return tuple(unflatten(tree, forward)), tuple(unflatten(tree, backward))



def _leaves(tree: Any) -> list[np.ndarray]:
    return [leaf for leaf in flatten(tree)[0] if isinstance(leaf, np.ndarray)]


def _map_leaves_of_args(args: tuple[Any, ...]) -> Any:
    """``args`` with every float leaf zero (the origin that :func:`_moved` moves along a direction)."""
    from pyzygote.pytree import unflatten

    leaves, tree = flatten(args)
    zero = [np.zeros(np.shape(x)) if _floats(x, 0.0) is not None and np.ndim(x) else 0.0 if _floats(x, 0.0) is not None else x for x in leaves]
    return unflatten(tree, zero)


def _map_leaves(tree: Any, fn: Callable[[np.ndarray], Any]) -> Any:
    if isinstance(tree, dict):
        return {k: _map_leaves(v, fn) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_map_leaves(v, fn) for v in tree)
    return fn(tree) if isinstance(tree, np.ndarray) else None



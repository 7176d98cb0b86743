"""Where a derivative stops being finite: the operation a NonFiniteGradientError points at.

A NaN in a gradient says little about its origin; the program that computed it does.  Run once
more with numpy, equation by equation, the first operation that depends on the differentiated
arguments and either makes a non-finite value from finite operands (``np.log(-1.0)``) or has a
non-finite local derivative there (``np.arccos`` at 1, ``np.arctan2`` at the origin, ``np.sqrt``
at 0 in the branch ``np.where`` discards) is named, with its operands.  It runs when a
NonFiniteGradientError's message is first read, and, for values only, when a gradient's NaN
value is warned about.

>>> import numpy as np, pyzygote as pz
>>> prog = pz.make_program(lambda e: np.arctan2(e * 0.0, e - 1.0) + e, 1.0)
>>> print(first_nonfinite(prog, [np.float64(1.0)]))
the derivative of np.arctan2 in its first operand is not finite at (0.0, 0.0)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pyzygote.ir import Literal, Program, Var

__all__ = ["first_nonfinite", "Finding"]


class Finding(str):
    """The sentence :func:`first_nonfinite` returns, and what it found: ``kind`` is "overflow" (a
    value beyond the largest float from finite, nonzero operands: ``10.0 ** 373``, ``np.exp(800)``),
    "value" (another non-finite value: ``np.log(0.0)``, ``np.sqrt(-1.0)``, ``1 / 0``) or
    "derivative" (a finite value whose local derivative is not finite), "" for nothing found."""

    kind: str = ""
    removable: bool = False  # a 0 / 0 with a finite limit, y / (exp(y) - 1): the sentence says how to write it

    def __new__(cls, text: str = "", kind: str = "", removable: bool = False) -> "Finding":
        made = super().__new__(cls, text)
        made.kind, made.removable = kind, removable
        return made

# What users wrote, for the primitives they reach through numpy's names or operators.
_SPELLED = {
    "atan2": "np.arctan2", "acos": "np.arccos", "asin": "np.arcsin", "atan": "np.arctan",
    "acosh": "np.arccosh", "asinh": "np.arcsinh", "atanh": "np.arctanh", "pow": "a power (** or np.power)",
    "div": "a division", "mul": "a product", "add": "a sum", "sub": "a difference", "sqrt": "np.sqrt",
    "cbrt": "np.cbrt", "log": "np.log", "log2": "np.log2", "log10": "np.log10", "log1p": "np.log1p",
    "exp": "np.exp", "exp2": "np.exp2", "expm1": "np.expm1", "tan": "np.tan", "sinh": "np.sinh",
    "cosh": "np.cosh", "hypot": "np.hypot", "rem": "np.mod", "einsum": "a product of arrays (@, np.dot, np.einsum)",
    "expm": "pz.expm", "expm_frechet": "pz.expm's derivative", "qr": "np.linalg.qr",
}  # fmt: skip


def first_nonfinite(prog: Program, arrays: Sequence[Any], wrt: Sequence[bool] | None = None, derivatives: bool = True) -> Finding:
    """A sentence naming the first operation of ``prog`` (run on ``arrays``) that makes a value or
    (with ``derivatives``) a local derivative non-finite while depending on the inputs ``wrt``
    marks; "" if none is found (or the program holds something only Julia runs).  Its ``kind``
    (see :class:`Finding`) tells an overflow from other non-finite values and derivatives."""
    flags = list(wrt) if wrt is not None else [True] * len(prog.inputs)
    env: dict[int, Any] = {v.uid: x for v, x in zip(prog.inputs, arrays)}
    env.update((v.uid, c) for v, c in zip(prog.constvars, prog.consts))
    moving = {v.uid for v, x, w in zip(prog.inputs, arrays, flags) if w and np.asarray(x).dtype.kind == "f"}
    reaching = _reaching_the_outputs(prog)
    made_by: dict[int, Any] = {}  # the equation that made a variable (a clamp feeding a singular point)
    met = Finding()  # a matrix function that met a non-finite entry, named if nothing else is

    def read(a: Any) -> Any:
        return a.value if isinstance(a, Literal) else env[a.uid]

    with np.errstate(all="ignore"):
        for eqn in prog.eqns:
            if eqn.prim.on_numpy is not None and not eqn.prim.on_numpy(**eqn.params):
                return Finding()
            ins = [read(a) for a in eqn.inputs]
            try:
                out = eqn.prim.bind(*ins, **eqn.params)
            except Exception:  # noqa: BLE001 - a diagnosis must not replace the error it explains
                return Finding()
            outs = out if eqn.prim.multiple_results else (out,)
            env.update((v.uid, o) for v, o in zip(eqn.outputs, outs))
            made_by.update((v.uid, eqn) for v in eqn.outputs)
            if not any(isinstance(a, Var) and a.uid in moving for a in eqn.inputs):
                continue
            moving.update(v.uid for v in eqn.outputs)
            if not any(v.uid in reaching for v in eqn.outputs):
                continue  # a value only compared (a mask): no derivative flows through it
            if not all(_finite(x) for x in ins):
                # made elsewhere: the NaN of the data, say, is named by the error itself; but a matrix
                # function spreads one non-finite entry of its input to every entry of its result and
                # derivative (pz.expm of a matrix with NaN written into a constant factor; with -inf,
                # its value stays finite and only the derivative is NaN), where no elementwise
                # operation was to blame (user testing: nothing, or an unrelated hint, was named)
                if derivatives and not met and eqn.prim.name in _MATRIX_FUNCTIONS:
                    met = _meets(_SPELLED.get(eqn.prim.name, eqn.prim.name), eqn, ins, outs, moving)
                continue
            name = _SPELLED.get(eqn.prim.name, eqn.prim.name)
            if eqn.prim.name == "polygamma":  # what users wrote: digamma, or a derivative pyzygote took of it
                name = "digamma" if eqn.params.get("order") == 0 else f"polygamma({eqn.params.get('order')}, x)"
            bad = next((o for o in outs if not _finite(o)), None)
            if bad is not None:
                pole = _pole(eqn.prim.name, ins, bad)
                if pole:
                    return Finding(f"{name} gives {_kind(bad)} at {_operands(ins, bad)}, {pole}", "value")
                if _overflowed(eqn.prim.name, ins, bad):
                    return Finding(
                        f"{name} gives {_kind(bad)} at {_operands(ins, bad)}, an overflow: the result is beyond the largest "
                        f"{np.asarray(bad).dtype} ({np.finfo(np.asarray(bad).dtype).max:.3g}) although the operands are finite",
                        "overflow",
                    )
                removable = _exprel_hint(eqn, ins, bad, made_by, read, moving)
                return Finding(f"{name} gives {_kind(bad)} at {_operands(ins, bad)}{removable}", "value", bool(removable))
            if not derivatives or eqn.prim.jvp is None or eqn.prim.name.startswith(("odesolve", "julia")):
                continue  # a solve's derivative is a solve of its own: too dear to try here
            for i, (a, x) in enumerate(zip(eqn.inputs, ins)):
                if not (isinstance(a, Var) and a.uid in moving and np.asarray(x).dtype.kind == "f"):
                    continue
                tangents: list[Any] = [None] * len(ins)
                tangents[i] = np.ones_like(x)
                try:
                    _, t = eqn.prim.jvp(ins, tangents, **eqn.params)
                except Exception:  # noqa: BLE001
                    continue
                bad = next((d for d in (t if eqn.prim.multiple_results else (t,)) if d is not None and not _finite(d)), None)
                if bad is not None:
                    ordinal = ("first", "second", "third")[i] if i < 3 else f"{i + 1}th"
                    which = "" if sum(isinstance(b, Var) and b.uid in moving for b in eqn.inputs) < 2 else f" in its {ordinal} operand"
                    clamp = _clamped(a, _entry(ins, bad), made_by, read, moving)
                    return Finding(f"the derivative of {name}{which} is not finite at {_operands(ins, bad)}{clamp}", "derivative")
    return met


# Matrix functions: every entry of their result depends on every entry of their operand.
_MATRIX_FUNCTIONS = frozenset({"expm", "solve", "inv", "det", "cholesky", "logabsdet", "eigh", "svd", "pinv", "qr"})


def _meets(name: str, eqn: Any, ins: Sequence[Any], outs: Sequence[Any], moving: set[int]) -> Finding:
    """The sentence for a matrix function ``eqn`` whose operand (one that depends on the
    arguments) holds NaN or inf that no operation on finite values made: its first such entry."""
    for i, (a, x) in enumerate(zip(eqn.inputs, ins)):
        if not (isinstance(a, Var) and a.uid in moving) or _finite(x):
            continue
        x = np.asarray(x)
        at = [int(j) for j in np.argwhere(~np.isfinite(x))[0]]
        which = f"its operand {i + 1}" if len(ins) > 1 else "its input"
        result = (
            "NaN in every entry of its result and derivative"
            if all(np.all(np.isnan(np.asarray(o))) for o in outs if np.asarray(o).dtype.kind == "f")
            else "a finite value there but not a finite derivative"
            if all(_finite(o) for o in outs)
            else "a non-finite result"
        )
        return Finding(
            f"{name} meets {_kind(x[tuple(at)])} in {which}, entry {at}: {result}. No operation "
            "made it from finite values: it came in with an argument, the data, or an array the function builds "
            "(np.nan or np.inf written into a constant)",
            "value",
        )
    return Finding()


# Where an operation's value is infinite at a point, said so (user testing: gammaln at -2.0 was
# called an overflow "beyond the largest float64", where the function has a pole).
_POLES = {
    "gammaln": "a pole: log|Gamma| is infinite at 0 and at each negative integer",
    "polygamma": "a pole: digamma and its derivatives are infinite at 0 and at each negative integer",
    "log": "a pole (a divide by zero): the logarithm of 0 is -inf",
    "log2": "a pole (a divide by zero): the logarithm of 0 is -inf",
    "log10": "a pole (a divide by zero): the logarithm of 0 is -inf",
    "log1p": "a pole (a divide by zero): np.log1p(-1.0) is -inf",
    "div": "a pole (a division by zero)",
}


def _pole(prim: str, ins: Sequence[Any], bad: Any) -> str:
    """The phrase for an infinite value of ``prim`` at one of its poles, "" elsewhere."""
    if prim not in _POLES or not ins:
        return ""
    at = _entry(ins, bad)
    if at is None:
        return ""
    b = np.asarray(bad)
    # scipy's digamma is NaN at its poles, where gammaln is inf
    if b.dtype.kind != "f" or not (np.isinf(b[at]) or (prim == "polygamma" and np.isnan(b[at]))):
        return ""
    x = [np.asarray(v)[at] if np.ndim(v) else np.asarray(v)[()] for v in ins]
    if prim in ("gammaln", "polygamma"):
        hit = x[0] <= 0 and x[0] == np.floor(x[0])
    elif prim == "log1p":
        hit = x[0] == -1
    elif prim == "div":
        hit = len(x) == 2 and x[1] == 0 and x[0] != 0
    else:
        hit = x[0] == 0
    return _POLES[prim] if hit else ""


# Operations that are not elementwise and give inf from finite operands only by overflowing.
_SUMS_AND_PRODUCTS = frozenset({"reduce_sum", "reduce_prod", "cumsum", "einsum"})


def _overflowed(prim: str, ins: Sequence[Any], bad: Any) -> bool:
    """Whether the first non-finite entry of ``bad`` (finite operands) is an overflow: +-inf, not
    NaN, from operands none of which is 0 there (np.log(0.0), 1 / 0 and 0.0 ** -1 are singular
    points, not overflows), or +-inf from a sum or product of arrays."""
    b = np.asarray(bad)
    if b.dtype.kind != "f":
        return False
    at = _entry(ins, bad)
    if at is None:
        return prim in _SUMS_AND_PRODUCTS and not np.any(np.isnan(b))
    if not np.isinf(b[at]):
        return False
    return all(bool(np.all((np.asarray(x)[at] if np.ndim(x) else np.asarray(x)) != 0)) for x in ins)


# A clamp's primitives: (what users wrote, the bound's side in np.clip)
_CLAMPS = {"max": ("np.maximum", "lower"), "fmax": ("np.fmax", "lower"), "min": ("np.minimum", "upper"), "fmin": ("np.fmin", "upper")}


def _clamped(a: Any, at: tuple[int, ...] | None, made_by: dict[int, Any], read: Callable[[Any], Any], moving: set[int]) -> str:
    """Where the operand ``a`` at entry ``at`` is a bound that np.maximum, np.minimum or np.clip
    put in place of a moving value (sqrt(maximum(x, 0)) at x < 0), a sentence saying so and what
    to write; "" otherwise.

    The clamped entry's derivative is 0 times the infinite derivative there, NaN in the chain
    rule. A select ("strong zero") in the clamp's transpose would make reverse mode give 0, but
    not forward mode, whose zero tangent meets the infinite derivative after the clamp (0 / 0 in
    sqrt's rule), nor the Julia engine, where Zygote differentiates the broadcast max.(x, 0.0)
    with ForwardDiff's dual numbers and multiplies the cotangent Inf by a Float64 partial 0.0:
    modes and engines would disagree, so the error stays and says where the clamp is."""
    if at is None:
        return ""
    for _ in range(2):  # np.clip is a minimum of a maximum: the outer clamp first, then the inner one
        eqn = made_by.get(a.uid) if isinstance(a, Var) else None
        if eqn is None or eqn.prim.name not in _CLAMPS or len(eqn.inputs) != 2:
            return ""
        values = [np.asarray(read(b)) for b in eqn.inputs]
        shaped = [np.broadcast_to(v, np.broadcast(*values).shape) for v in values]
        try:
            entry = [v[at] if v.ndim else v[()] for v in shaped]
        except IndexError:
            return ""
        held = [isinstance(b, Var) and b.uid in moving for b in eqn.inputs]
        result = max(entry) if eqn.prim.name in ("max", "fmax") else min(entry)
        for i in (0, 1):
            # a bound that does not depend on the arguments won against a value that does (at a
            # tie the derivative is half the infinite one: infinite, as the message says)
            if held[i] and not held[1 - i] and entry[1 - i] == result and entry[i] != result:
                spelled, side = _CLAMPS[eqn.prim.name]
                return (
                    f", where {spelled} (or np.clip's {side} bound) put the bound {float(entry[1 - i])!r} in place of "
                    f"{float(entry[i])!r}: the clamped entry's derivative is 0 times this infinite one, which is NaN, "
                    "not 0. Clamp a little away from the point where the derivative is infinite, "
                    "np.sqrt(np.maximum(x, np.finfo(float).tiny)) or np.arcsin(np.clip(s, -1 + 1e-12, 1 - 1e-12)), or "
                    "write the double where, np.where(x > 0, np.sqrt(np.where(x > 0, x, 1.0)), 0.0), which makes the "
                    "clamped entries' derivative exactly 0"
                )
        a = eqn.inputs[0] if held[0] and not held[1] else (eqn.inputs[1] if held[1] and not held[0] else None)
        if a is None:
            return ""
    return ""


def _exprel_hint(eqn: Any, ins: Sequence[Any], bad: Any, made_by: dict[int, Any], read: Callable[[Any], Any], moving: set[int]) -> str:
    """For a division giving 0 / 0 whose denominator is exp(y) - 1 (or 1 - exp(y), np.expm1(y),
    scaled), a sentence saying that this is a removable singularity and how scipy.special.exprel
    writes it; "" otherwise.  User testing: a Hodgkin-Huxley rate 0.1 * (V + 40) / (1 - np.exp(-(V + 40) / 10))
    at V = -40 got advice about NaN in data, which it had none of."""
    if eqn.prim.name != "div" or len(ins) != 2 or _kind(bad) != "NaN":
        return ""
    at = _entry(ins, bad)
    if at is None or any(float(np.asarray(x)[at] if np.ndim(x) else np.asarray(x)) != 0.0 for x in ins):
        return ""
    if not _exp_minus_one(eqn.inputs[1], made_by, read, moving):
        return ""
    return (
        ", a 0 / 0 of the form y / (exp(y) - 1), whose limit is finite (1 at y = 0) but whose formula is not: "
        "write it with scipy.special.exprel(y) = (exp(y) - 1) / y, which is exact at 0 with its derivatives, as "
        "y / (np.exp(y) - 1) = 1 / exprel(y) and 0.1 * (V + 40) / (1 - np.exp(-(V + 40) / 10)) = 1 / exprel(-(V + 40) / 10)"
    )


def _exp_minus_one(a: Any, made_by: dict[int, Any], read: Callable[[Any], Any], moving: set[int], depth: int = 0) -> bool:
    """Whether ``a`` is np.expm1(y), np.exp(y) - 1 or 1 - np.exp(y), negated or scaled by constants."""
    eqn = made_by.get(a.uid) if isinstance(a, Var) else None
    if eqn is None or depth > 4:
        return False
    name = eqn.prim.name
    if name == "expm1":
        return True
    if name == "neg":
        return _exp_minus_one(eqn.inputs[0], made_by, read, moving, depth + 1)
    if len(eqn.inputs) != 2:
        return False
    held = [isinstance(b, Var) and b.uid in moving for b in eqn.inputs]
    if name in ("mul", "div") and held.count(True) == 1:  # scaled by a constant (10 * (1 - exp(-x)))
        if name == "div" and not held[0]:
            return False  # c / (exp(y) - 1) is no longer the difference itself
        return _exp_minus_one(eqn.inputs[held.index(True)], made_by, read, moving, depth + 1)
    if name == "sub" and held.count(True) == 1:
        one = eqn.inputs[held.index(False)]
        other = eqn.inputs[held.index(True)]
        made = made_by.get(other.uid) if isinstance(other, Var) else None
        try:
            is_one = bool(np.all(np.asarray(read(one)) == 1.0))
        except Exception:  # noqa: BLE001
            return False
        return is_one and made is not None and made.prim.name == "exp"
    return False


def _reaching_the_outputs(prog: Program) -> set[int]:
    """The floating-point variables from which a derivative can reach an output: a comparison's
    boolean result carries none back to its operands."""
    reaching = {a.uid for a in prog.outputs if isinstance(a, Var) and a.aval.dtype.kind == "f"}
    for eqn in reversed(prog.eqns):
        if any(v.uid in reaching for v in eqn.outputs):
            reaching.update(a.uid for a in eqn.inputs if isinstance(a, Var) and a.aval.dtype.kind == "f")
    return reaching


def _finite(x: Any) -> bool:
    a = np.asarray(x)
    return a.dtype.kind != "f" or bool(np.all(np.isfinite(a)))


def _kind(x: Any) -> str:
    a = np.asarray(x)
    if np.any(np.isnan(a)):
        return "NaN"
    return "-inf" if np.any(np.isneginf(a)) else "inf"


def _entry(ins: Sequence[Any], bad: Any) -> tuple[int, ...] | None:
    """The index of the first non-finite entry of ``bad`` where the operation is elementwise, or None."""
    b = np.asarray(bad)
    shapes = {np.shape(x) for x in ins} - {()}
    if shapes <= {b.shape}:  # a sum of an array to a number is not elementwise
        return () if b.ndim == 0 else tuple(int(i) for i in np.argwhere(~np.isfinite(b))[0])
    return None


def _operands(ins: Sequence[Any], bad: Any) -> str:
    """The operands at the first non-finite entry of ``bad`` (elementwise operations), or their shapes."""
    b = np.asarray(bad)
    shapes = {np.shape(x) for x in ins} - {()}
    if shapes <= {b.shape}:
        at = () if b.ndim == 0 else tuple(int(i) for i in np.argwhere(~np.isfinite(b))[0])
        values = [np.asarray(x)[at] if np.ndim(x) else np.asarray(x)[()] for x in ins]
        where = "" if not at else f" (entry {list(at)})"
        shown = [repr(float(v)) if np.asarray(v).dtype.kind == "f" else repr(np.asarray(v).item()) for v in values]
        return (shown[0] if len(shown) == 1 else "(" + ", ".join(shown) + ")") + where
    return "operands of shapes " + ", ".join(str(np.shape(x)) for x in ins)

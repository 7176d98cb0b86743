"""Comparisons, logical operations and ``select`` (numpy's ``where``).

Comparisons produce boolean masks with no derivative; ``select`` is linear
in its two branches, so gradients flow only through the branch chosen.

>>> import numpy as np, pyzygote as pz
>>> relu = lambda x: np.sum(np.where(x > 0, x, 0.0))
>>> pz.gradient(relu, np.array([-1.0, 2.0]))[0]
array([0., 1.])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyzygote.errors import UnsupportedOperationError
from pyzygote.ir import Aval
from pyzygote.numpy_api import implements
from pyzygote.primitive import Primitive, Undefined, zeros
from pyzygote.primitives.elementwise import ELEMENTWISE, elementwise_aval, ufunc_handler
from pyzygote.primitives.shape import broadcast_operands, convert
from pyzygote.tracer import Tracer, as_operand, is_weak
from pyzygote.transforms.batch import elementwise_batch

__all__ = ["select", "COMPARISONS"]

COMPARISONS: dict[str, Primitive] = {}


def _predicate(name: str, ufunc: np.ufunc) -> Primitive:
    prim = Primitive(name)
    prim.def_abstract_eval(lambda *xs: elementwise_aval(*xs, out_dtype=np.bool_))
    prim.def_impl(ufunc)
    prim.jvp = lambda primals, tangents: (prim.bind(*primals), None)
    implements(ufunc)(ufunc_handler(ufunc, prim))
    COMPARISONS[name] = prim
    ELEMENTWISE[name] = prim
    return prim


lt_p = _predicate("lt", np.less)
le_p = _predicate("le", np.less_equal)
gt_p = _predicate("gt", np.greater)
ge_p = _predicate("ge", np.greater_equal)
eq_p = _predicate("eq", np.equal)
ne_p = _predicate("ne", np.not_equal)
and_p = _predicate("and", np.logical_and)
or_p = _predicate("or", np.logical_or)
xor_p = _predicate("xor", np.logical_xor)
not_p = _predicate("not", np.logical_not)
isnan_p = _predicate("isnan", np.isnan)
isinf_p = _predicate("isinf", np.isinf)
isfinite_p = _predicate("isfinite", np.isfinite)

# Comparisons go through PyZygote's value-only helpers: ForwardDiff 1 compares the partials
# of tied duals, which would flip masks inside jvp and hessian (see PyZygote.primal).
_JULIA_TEMPLATES = {
    "lt": "PyZygote.lt.({0}, {1})", "le": "PyZygote.le.({0}, {1})",
    "gt": "PyZygote.gt.({0}, {1})", "ge": "PyZygote.ge.({0}, {1})",
    "eq": "PyZygote.eq.({0}, {1})", "ne": "PyZygote.ne.({0}, {1})",
    "and": "{0} .& {1}", "or": "{0} .| {1}",
    "xor": "xor.({0}, {1})", "not": ".!{0}", "isnan": "isnan.({0})", "isinf": "isinf.({0})",
    "isfinite": "isfinite.({0})",
}  # fmt: skip
_LOGICAL = ("and", "or", "xor", "not")


def _julia_predicate(name: str) -> Any:
    def rule(e: Any, *xs: Any) -> str:
        if name in _LOGICAL:  # numpy's logical functions take any nonzero as True
            xs = tuple(x if x.aval.dtype == np.bool_ else e.bind(f"PyZygote.ne.({x}, 0)") for x in xs)
        return _JULIA_TEMPLATES[name].format(*xs)

    return rule


for _name in _JULIA_TEMPLATES:
    COMPARISONS[_name].def_julia(_julia_predicate(_name))

# --- select ----------------------------------------------------------------
select_p = Primitive("select")


@select_p.def_abstract_eval
def _select_aval(cond: Aval, x: Aval, y: Aval) -> Aval:
    if cond.dtype != np.bool_:
        raise TypeError(f"select needs a boolean condition, got {cond}")
    if x.dtype != y.dtype:
        raise TypeError(f"select branches must share a dtype, got {x} and {y}")
    return elementwise_aval(cond, x, y, out_dtype=x.dtype)


select_p.def_impl(np.where)
select_p.batch = elementwise_batch(np.where)


def _select_jvp(primals: Any, tangents: Any) -> Any:
    cond, x, y = primals
    _, tx, ty = tangents
    ans = select_p.bind(cond, x, y)
    if tx is None and ty is None:
        return ans, None
    out = Aval(np.shape(ans), ans.dtype)
    tx = zeros(out) if tx is None else tx
    ty = zeros(out) if ty is None else ty
    return ans, select_p.bind(*broadcast_operands(cond, tx, ty))


@select_p.def_transpose
def _select_transpose(ct: Any, cond: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
    from pyzygote.primitives.elementwise import unbroadcast

    zero = np.zeros((), dtype=ct.dtype)
    ct_x = unbroadcast(select_p.bind(*broadcast_operands(cond, ct, zero)), x.aval) if isinstance(x, Undefined) else None
    ct_y = unbroadcast(select_p.bind(*broadcast_operands(cond, zero, ct)), y.aval) if isinstance(y, Undefined) else None
    return None, ct_x, ct_y


select_p.jvp = _select_jvp
# PyZygote.select is ifelse on promoted branches (see PyZygote.jl for why).
select_p.def_julia(lambda e, c, x, y: f"PyZygote.select.({c}, {x}, {y})")


def select(cond: Any, x: Any, y: Any) -> Any:
    return select_p.bind(*broadcast_operands(cond, x, y))


@implements(np.where)
def _np_where(condition: Any, x: Any = None, y: Any = None) -> Any:
    if x is None or y is None:
        raise UnsupportedOperationError(
            "np.where(condition) with one argument returns data-dependent indices and cannot be "
            "traced; use np.where(condition, x, y)"
        )
    cond = convert(as_operand(condition), np.bool_)
    # Python numbers, and traced ones (weak: a Python float argument), do not widen float32
    dtype = np.result_type(*((0.0 if isinstance(v, Tracer) else v) if is_weak(v) else as_operand(v).dtype for v in (x, y)))
    return select(cond, convert(as_operand(x), dtype), convert(as_operand(y), dtype))


# --- scalar rules (pyzygote.transforms.scalarize) -------------------------------------
def _set_scalar_rules() -> None:
    from pyzygote.transforms.scalarize import elementwise

    templates = {
        "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})", "ge": "({0} >= {1})",
        "eq": "({0} == {1})", "ne": "({0} != {1})", "and": "({0} and {1})", "or": "({0} or {1})",
        "xor": "({0} != {1})", "not": "(not {0})", "isnan": "_m.isnan({0})",
        "isinf": "_m.isinf({0})", "isfinite": "_m.isfinite({0})",
    }  # fmt: skip
    for name, template in templates.items():
        COMPARISONS[name].scalar = elementwise(template)
    select_p.scalar = elementwise("({1} if {0} else {2})")
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):  # numpy's scalar comparisons (see elementwise)
        COMPARISONS[name].numpy_scalar = templates[name]
    select_p.numpy_scalar = "({1} if {0} else {2})"


_set_scalar_rules()


# numpy's bitwise ufuncs reach pyzygote when the traced operand is on the right
# (np.array([True, False]) | (x > 0)): on booleans they are the logical ones.
def _bitwise(op: str, logical: Any) -> Any:
    def handler(*xs: Any, **kwargs: Any) -> Any:
        from pyzygote.tracer import _booleans

        return logical(*_booleans(op, *xs), **kwargs)

    return handler


implements(np.bitwise_and)(_bitwise("&", np.logical_and))
implements(np.bitwise_or)(_bitwise("|", np.logical_or))
implements(np.bitwise_xor)(_bitwise("^", np.logical_xor))
implements(np.invert)(_bitwise("~", np.logical_not))

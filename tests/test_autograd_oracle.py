"""HIPS autograd as an independent oracle.

Each function is written once against a numpy module ``m`` and run as plain
numpy (traced by pyzygote) and as ``autograd.numpy`` (differentiated by
autograd).  Where autograd cannot run the numpy spelling (item assignment),
the autograd version is written separately.  Gradients and Hessian-vector
products must agree to 1e-10 relative.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

import numpy as np
import pytest

import pyzygote as pz

autograd = pytest.importorskip("autograd")
anp = pytest.importorskip("autograd.numpy")

RNG = np.random.default_rng(20240611)
X_DATA = RNG.standard_normal((5, 2))
Y_DATA = RNG.standard_normal(5)
M_CONST = RNG.standard_normal((3, 3))
B_CONST = RNG.standard_normal(3)
C_CONST = RNG.standard_normal((3, 4))
MASK = np.array([[True, False, True], [False, True, True]])


def mlp_loss(m: Any, x: Any) -> Any:
    w1, b1, w2 = x[:6].reshape(2, 3), x[6:9], x[9:12]
    hidden = m.tanh(m.dot(X_DATA, w1) + b1)
    return m.mean((hidden @ w2 - Y_DATA) ** 2)


def softplus(m: Any, x: Any) -> Any:
    stable = m.maximum(x, 0.0) + m.log1p(m.exp(-m.abs(x)))
    return m.sum(stable * m.log(1.0 + m.exp(x)))


def logsumexp(m: Any, x: Any) -> Any:
    x = x.reshape(2, 3)
    c = m.max(x, axis=1, keepdims=True)
    return m.sum(c + m.log(m.sum(m.exp(x - c), axis=1, keepdims=True)))


def norms(m: Any, x: Any) -> Any:
    return m.linalg.norm(x) + m.linalg.norm(x.reshape(2, 3), axis=1)[1] + m.sqrt(m.sum(x**2) + 1.0)


def solve_sum(m: Any, x: Any) -> Any:
    a = x.reshape(3, 3) + 3.0 * np.eye(3)
    return m.sum(m.linalg.solve(a, B_CONST) ** 2) + m.sum(m.linalg.solve(a, C_CONST) * C_CONST)


def inv_det(m: Any, x: Any) -> Any:
    a = x.reshape(3, 3) + 3.0 * np.eye(3)
    return m.sum(m.linalg.inv(a) * M_CONST) + m.log(m.abs(m.linalg.det(a))) + m.linalg.det(a) ** 2 / 100.0


def cholesky_slogdet(m: Any, x: Any) -> Any:
    a = x.reshape(3, 3)
    s = a @ a.T + np.eye(3)
    chol = m.linalg.cholesky(s)
    sign, logabs = m.linalg.slogdet(a + 3.0 * np.eye(3))
    return m.sum(chol * M_CONST) + m.linalg.slogdet(s)[1] + sign * logabs + m.sum(m.linalg.solve(chol, B_CONST) ** 2)


def eigh(m: Any, x: Any) -> Any:
    a = x.reshape(3, 3)
    w, v = m.linalg.eigh(a + a.T)
    return m.sum(w**3) + m.sum(v**2 * M_CONST) + m.sum((v * v[:1]) * M_CONST)  # sign-invariant in v


def einsums(m: Any, x: Any) -> Any:
    a = x.reshape(3, 3)
    return m.einsum("ij,jk->", a, M_CONST * a) + m.einsum("ij,ij->", a, a @ a) + m.sum(m.einsum("ij,j->i", a, B_CONST) ** 3)


def indexing(m: Any, x: Any) -> Any:
    a = x.reshape(3, 4)
    return m.sum(a[1:, ::2] ** 2) + m.sum(a[[0, 2, 0], 1] * a[-1, :3]) + a[2, 3] * a[0, 0] + m.sum(a[..., None, 1] * a[:, None, 2])


def where_branches(m: Any, x: Any) -> Any:
    return m.sum(m.where(x > 0, x**2 * m.sin(x), -x * m.exp(x)) + m.where(MASK.ravel(), x, 0.5 * x) ** 2)


def cumsum_prod(m: Any, x: Any) -> Any:
    a = x.reshape(2, 3)
    return m.sum(m.cumsum(a, axis=1) ** 2) + m.sum(m.cumsum(x) * x) + m.sum(m.prod(a, axis=0)) + m.prod(x[:4])


def clip_minmax(m: Any, x: Any) -> Any:
    return m.sum(m.clip(x, -0.5, 0.5) * x) + m.sum(m.maximum(x, 0.3) * m.minimum(x, -0.2)) + m.max(x**2) - m.min(x)


def hypot_arctan2(m: Any, x: Any) -> Any:
    u, v = x[:3], x[3:]
    return m.sum(m.hypot(u, v) * m.arctan2(u, v)) + m.sum(m.arctan2(v, 1.5) ** 2)


def broadcasting(m: Any, x: Any) -> Any:
    a = x.reshape(2, 3)
    col, row = a[:, :1], a[0]
    return m.sum(a * row + col / (1.0 + row**2) - a * 2.0) + m.sum((a[:, :, None] * a[:, None, :]) ** 2)


def reductions(m: Any, x: Any) -> Any:
    a = x.reshape(2, 3, 2)
    s = m.sum(a, axis=-1, keepdims=True)
    mean = m.mean(a, axis=(0, 2))
    mx = m.max(a, axis=-2)
    return m.sum(a * s) + m.sum(mean**3) + m.sum(mx * m.min(a, axis=1)) + m.sum(m.sum(a**2, axis=(1, 2)) ** 0.5)


def shapes(m: Any, x: Any) -> Any:
    a = x.reshape(2, 3, 2)
    t = m.transpose(a, (2, 0, 1))
    mv = m.moveaxis(a, 0, -1)
    st = m.stack([a[0], a[1] ** 2], axis=1)
    cat = m.concatenate([a[0], a[1] * 3.0, a[0] ** 2], axis=0)
    return m.sum(t * mv.reshape(2, 2, 3)) + m.sum(st**3) + m.sum(cat @ m.swapaxes(cat, 0, 1))


def transcendental(m: Any, x: Any) -> Any:
    return m.sum(m.sin(x) * m.exp(m.cos(x)) / m.cosh(x) + m.arctan(x) * m.tanh(x) + m.sinh(x) ** 2 + m.log(m.exp2(x)) + m.expm1(x) * m.log10(2.0 + x))


def powers(m: Any, x: Any) -> Any:
    pos = m.abs(x) + 0.5
    return m.sum(pos**1.5 + pos ** (x / 3.0) + 2.0**x + m.sqrt(pos) * pos ** (1.0 / 3.0) + x**3 - m.log2(pos) + m.reciprocal(pos))


def products(m: Any, x: Any) -> Any:
    u, v = x[:3], x[3:]
    return m.sum(m.outer(u, v) ** 2) + m.dot(u, v) * m.inner(u, u) + m.sum(m.tensordot(m.outer(u, v), M_CONST, axes=1))


def rational(m: Any, x: Any) -> Any:
    return m.sum(x / (1.0 + x**2)) * m.sum(1.0 / (2.0 + m.sin(x))) + m.sum(m.square(x) / (x - 3.0))


def triangles(m: Any, x: Any) -> Any:
    a = x.reshape(3, 3)
    return m.sum(m.tril(a) ** 2 * m.triu(a, 1)) + m.sum(m.diag(a) * m.diag(m.tril(a), -1).sum()) + m.trace(a @ a) + m.sum(m.diag(x[:3]) @ a)


def rearrange(m: Any, x: Any) -> Any:
    a = x.reshape(2, 3)
    return m.sum(a[:, ::-1] * a) + m.sum(m.roll(x, 2) * x**2) + m.sum(m.repeat(a, 2, axis=0) ** 3) + m.sum(m.squeeze(a[None, :, None, :]) * a)


def var_std(m: Any, x: Any) -> Any:
    mu = m.mean(x)
    var = m.mean((x - mu) ** 2)
    return var + m.sqrt(var) * m.sum(m.abs(x - mu))


def softmax_xent(m: Any, x: Any) -> Any:
    logits = x.reshape(2, 3)
    z = logits - m.max(logits, axis=-1, keepdims=True)
    logp = z - m.log(m.sum(m.exp(z), axis=-1, keepdims=True))
    onehot = np.eye(3)[[2, 0]]
    return -m.mean(m.sum(onehot * logp, axis=-1))


def abs_sign_floor(m: Any, x: Any) -> Any:
    return m.sum(m.abs(x) ** 3 + m.sign(x) * x**2 + m.floor(x * 3.0) * x + m.fmax(x, 0.1) * m.fmin(x, -0.1))


def setitem_np(x: Any) -> Any:
    y = np.zeros_like(x)
    y[0] = x[1] ** 2
    y[1:3] = np.sin(x[2:4])
    y[3:] = x[3:] * x[0]
    z = x.reshape(2, 3) * 1.0
    z[:, 1] = y[:2]
    return np.sum(y * x) + np.sum(z**2)


def setitem_ag(x: Any) -> Any:
    y = anp.concatenate([x[1:2] ** 2, anp.sin(x[2:4]), x[3:] * x[0]])
    z = x.reshape(2, 3)
    z = anp.stack([z[:, 0], y[:2], z[:, 2]], axis=1)
    return anp.sum(y * x) + anp.sum(z**2)


# name: (numpy version, autograd version, input size, input generator)
def _normal(n: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.standard_normal(n)


def _away_from_kinks(n: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Values away from 0, +-0.1, 0.3, -0.2, +-0.5 and multiples of 1/3 (kinks of the functions)."""

    def make(rng: np.random.Generator) -> np.ndarray:
        candidates = rng.uniform(-1.5, 1.5, 200)
        ok = candidates[
            (np.abs(candidates[:, None] - np.array([0.0, 0.1, -0.1, 0.3, -0.2, 0.5, -0.5])).min(axis=1) > 0.05)
            & (np.abs(candidates * 3 - np.round(candidates * 3)) > 0.1)
        ]
        return ok[:n]

    return make


def _single(f: Callable[..., Any], make: Any) -> tuple[Any, Any, Any]:
    return (lambda x: f(np, x)), (lambda x: f(anp, x)), make


ORACLE = {
    "mlp_loss": _single(mlp_loss, _normal(12)),
    "softplus": _single(softplus, _away_from_kinks(6)),
    "logsumexp": _single(logsumexp, _normal(6)),
    "norms": _single(norms, _normal(6)),
    "solve": _single(solve_sum, lambda rng: 0.3 * rng.standard_normal(9)),
    "inv_det": _single(inv_det, lambda rng: 0.3 * rng.standard_normal(9)),
    "cholesky_slogdet": _single(cholesky_slogdet, _normal(9)),
    "eigh": _single(eigh, _normal(9)),
    "einsum": _single(einsums, _normal(9)),
    "indexing": _single(indexing, _normal(12)),
    "setitem": (setitem_np, setitem_ag, _normal(6)),
    "where": _single(where_branches, _away_from_kinks(6)),
    "cumsum_prod": _single(cumsum_prod, _normal(6)),
    "clip_minmax": _single(clip_minmax, _away_from_kinks(6)),
    "hypot_arctan2": _single(hypot_arctan2, _away_from_kinks(6)),
    "broadcasting": _single(broadcasting, _normal(6)),
    "reductions": _single(reductions, lambda rng: rng.uniform(0.5, 2.0, 12)),
    "shapes": _single(shapes, _normal(12)),
    "transcendental": _single(transcendental, lambda rng: rng.uniform(-0.9, 0.9, 5)),
    "powers": _single(powers, _away_from_kinks(5)),
    "products": _single(products, _normal(6)),
    "rational": _single(rational, _normal(5)),
    "triangles": _single(triangles, _normal(9)),
    "rearrange": _single(rearrange, _normal(6)),
    "var_std": _single(var_std, _normal(7)),
    "softmax_xent": _single(softmax_xent, _normal(6)),
    "abs_sign_floor": _single(abs_sign_floor, _away_from_kinks(6)),
}


def assert_close(actual: Any, desired: Any, rtol: float = 1e-10) -> None:
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(desired)))))


@pytest.fixture(params=sorted(ORACLE), name="oracle")
def _oracle(request: Any) -> tuple[str, Any, Any, np.ndarray]:
    f_np, f_ag, make = ORACLE[request.param]
    x = make(np.random.default_rng(zlib.crc32(request.param.encode())))
    return request.param, f_np, f_ag, x


def test_values_agree(oracle: Any) -> None:
    _, f_np, f_ag, x = oracle
    assert_close(f_np(x), f_ag(x), rtol=1e-13)


def test_gradient_agrees(oracle: Any) -> None:
    _, f_np, f_ag, x = oracle
    (g,) = pz.gradient(f_np, x)
    assert_close(g, autograd.grad(f_ag)(x))
    value, (g2,) = pz.withgradient(f_np, x)
    assert_close(value, f_np(x), rtol=1e-13)
    np.testing.assert_array_equal(g2, g)


def test_hessian_vector_products_agree(oracle: Any) -> None:
    _, f_np, f_ag, x = oracle
    h = pz.hessian(f_np, x)
    assert h.shape == x.shape + x.shape
    rng = np.random.default_rng(3)
    for _ in range(2):
        v = rng.standard_normal(x.shape)
        hvp = autograd.grad(lambda y: anp.dot(autograd.grad(f_ag)(y), v))(x)
        assert_close(h @ v, hvp)
    assert_close(h, h.T)


def test_multi_argument_gradients_agree() -> None:
    def loss(m: Any, w: Any, b: Any, scale: Any) -> Any:
        return scale * m.sum(m.tanh(X_DATA @ w + b) ** 2) + m.sum(w**2) * b**2

    rng = np.random.default_rng(5)
    w, b, s = rng.standard_normal(2), 0.3, 1.7
    got = pz.gradient(lambda *a: loss(np, *a), w, b, s)
    for i, g in enumerate(got):
        assert_close(g, autograd.grad(lambda *a: loss(anp, *a), i)(w, b, s))
    assert isinstance(got[1], float) and isinstance(got[2], float)


def test_jacobian_agrees() -> None:
    def f(m: Any, x: Any) -> Any:
        return m.concatenate([m.sin(x) * x[0], m.cumsum(x) ** 2, (x[:2] @ M_CONST[:2])])

    x = np.random.default_rng(7).standard_normal(3)
    (jac,) = pz.jacobian(lambda x: f(np, x), x)
    assert jac.shape == (9, 3)
    assert_close(jac, autograd.jacobian(lambda x: f(anp, x))(x))
    # the forward-mode branch (more outputs than inputs) and the reverse branch agree
    (jac_t,) = pz.jacobian(lambda x: f(np, x)[:2], x)
    assert_close(jac_t, jac[:2])

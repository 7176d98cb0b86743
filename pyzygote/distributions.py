"""What to write for a ``scipy.stats`` distribution's method called on a traced value.

``scipy.stats`` turns its arguments into plain arrays, which a traced value cannot become, so
``scipy.stats.gamma.logsf(t, k, scale=theta)`` cannot be traced.  Its formula written with
numpy and the traced ``scipy.special`` functions can: this table gives it for the
distributions and methods likelihoods use most, with ``z = (x - loc) / scale``.

>>> print(written_out("gamma", "logsf"))
np.log(scipy.special.gammaincc(a, z)), with z = (x - loc) / s (s the scale)
"""

from __future__ import annotations

import re

__all__ = ["written_out"]

_LOG_2PI = "0.5 * np.log(2 * np.pi)"

# distribution name -> method -> formula; "z" is (x - loc) / scale, "s" the scale.  log(1 - e^-y)
# is log(-expm1(-y)) for small y and log1p(-exp(-y)) for large: each alone loses digits in the
# other's range.
_FORMULAS: dict[str, dict[str, str]] = {
    "norm": {
        "logpdf": f"-0.5 * z ** 2 - np.log(s) - {_LOG_2PI}",
        "pdf": "np.exp(-0.5 * z ** 2) / (s * np.sqrt(2 * np.pi))",
        "cdf": "scipy.special.ndtr(z)",
        "logcdf": "scipy.special.log_ndtr(z) (precise in the lower tail)",
        "sf": "scipy.special.ndtr(-z)",
        "logsf": "scipy.special.log_ndtr(-z)",
        "ppf": "loc + s * scipy.special.ndtri(q)",
    },
    "expon": {
        "logpdf": "-z - np.log(s)",
        "pdf": "np.exp(-z) / s",
        "cdf": "-np.expm1(-z)",
        "logcdf": "np.where(z < 0.5, np.log(-np.expm1(-z)), np.log1p(-np.exp(-z)))",
        "sf": "np.exp(-z)",
        "logsf": "-z",
    },
    "gamma": {
        "logpdf": "(a - 1) * np.log(z) - z - scipy.special.gammaln(a) - np.log(s)",
        "pdf": "np.exp((a - 1) * np.log(z) - z - scipy.special.gammaln(a)) / s",
        "cdf": "scipy.special.gammainc(a, z)",
        "logcdf": "np.log(scipy.special.gammainc(a, z))",
        "sf": "scipy.special.gammaincc(a, z)",
        "logsf": "np.log(scipy.special.gammaincc(a, z))",
    },
    "weibull_min": {
        "logpdf": "np.log(c / s) + (c - 1) * np.log(z) - z ** c",
        "pdf": "c / s * z ** (c - 1) * np.exp(-z ** c)",
        "cdf": "-np.expm1(-z ** c)",
        "logcdf": "np.where(z ** c < 0.5, np.log(-np.expm1(-z ** c)), np.log1p(-np.exp(-z ** c)))",
        "sf": "np.exp(-z ** c)",
        "logsf": "-z ** c",
    },
    "lognorm": {
        "logpdf": f"-0.5 * (np.log(z) / sigma) ** 2 - np.log(z * s * sigma) - {_LOG_2PI} (sigma is the shape, s = exp(mu))",
        "cdf": "scipy.special.ndtr(np.log(z) / sigma) (sigma is the shape, s = exp(mu))",
        "logcdf": "scipy.special.log_ndtr(np.log(z) / sigma)",
        "sf": "scipy.special.ndtr(-np.log(z) / sigma)",
        "logsf": "scipy.special.log_ndtr(-np.log(z) / sigma)",
    },
    "beta": {
        "logpdf": "(a - 1) * np.log(z) + (b - 1) * np.log1p(-z) - scipy.special.betaln(a, b) - np.log(s)",
        "cdf": "scipy.special.betainc(a, b, z)",
        "sf": "scipy.special.betainc(b, a, 1 - z)",
    },
    "t": {
        "logpdf": (
            "scipy.special.gammaln((df + 1) / 2) - scipy.special.gammaln(df / 2) - 0.5 * np.log(df * np.pi) "
            "- (df + 1) / 2 * np.log1p(z ** 2 / df) - np.log(s)"
        ),
        "cdf": "np.where(z > 0, 1 - 0.5 * tail, 0.5 * tail) with tail = scipy.special.betainc(df / 2, 0.5, df / (df + z ** 2))",
    },
    "cauchy": {"logpdf": "-np.log(np.pi * s * (1 + z ** 2))", "cdf": "0.5 + np.arctan(z) / np.pi"},
    "logistic": {
        "logpdf": "-z - 2 * np.logaddexp(0, -z) - np.log(s)",
        "cdf": "scipy.special.expit(z)",
        "logcdf": "scipy.special.log_expit(z)",
        "sf": "scipy.special.expit(-z)",
        "logsf": "scipy.special.log_expit(-z)",
    },
    "laplace": {"logpdf": "-np.abs(z) - np.log(2 * s)"},
    "poisson": {
        "logpmf": "scipy.special.xlogy(k, mu) - mu - scipy.special.gammaln(k + 1)",
        "pmf": "np.exp(scipy.special.xlogy(k, mu) - mu - scipy.special.gammaln(k + 1))",
        "cdf": "scipy.special.gammaincc(k + 1, mu) (differentiable in mu)",
        "sf": "scipy.special.gammainc(k + 1, mu)",
    },
    "binom": {
        "cdf": "scipy.special.betainc(n - k, k + 1, 1 - p) (differentiable in p)",
        "sf": "scipy.special.betainc(k + 1, n - k, p)",
        "logpmf": (
            "scipy.special.gammaln(n + 1) - scipy.special.gammaln(k + 1) - scipy.special.gammaln(n - k + 1) "
            "+ scipy.special.xlogy(k, p) + scipy.special.xlog1py(n - k, -p)"
        ),
    },
    "nbinom": {
        "logpmf": (
            "scipy.special.gammaln(k + n) - scipy.special.gammaln(n) - scipy.special.gammaln(k + 1) "
            "+ n * np.log(p) + scipy.special.xlog1py(k, -p)"
        ),
    },
}

_DISCRETE = {"poisson", "binom", "nbinom"}


def written_out(distribution: str, method: str) -> str | None:
    """The numpy formula of ``scipy.stats.<distribution>.<method>``, or None if not tabled."""
    formula = _FORMULAS.get(distribution, {}).get(method)
    if formula is None or distribution in _DISCRETE or not re.search(r"\bz\b", formula):
        return formula
    return f"{formula}, with z = (x - loc) / s (s the scale)"

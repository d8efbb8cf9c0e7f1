"""Planning and correcting paired comparisons: the power of a paired t-test, the number of pairs
it needs, and Holm's step-down adjustment for a family of comparisons.

A paired comparison of two assigners trained with the same seeds tests the mean of the
differences ``d_s``; with ``n`` pairs and a true mean ``delta`` its statistic follows a
noncentral t distribution with ``n - 1`` degrees of freedom and noncentrality
``delta * sqrt(n) / sd``. The power is the chance that the two-sided 95% interval excludes
zero, computed here by integrating over the chi-square law of the sample variance (no SciPy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gmaiou.paper.experiments.stats import t_critical

__all__ = ["holm_adjust", "pairs_needed", "paired_power"]


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def paired_power(pairs: int, delta: float, sd: float, points: int = 4001) -> float:
    """Power of the two-sided 5% paired t-test with ``pairs`` pairs against a true mean ``delta``.

    Args:
        pairs: number of paired differences, at least 2.
        delta: the true mean difference to detect (same units as ``sd``).
        sd: the standard deviation of one paired difference, > 0.
        points: quadrature points over the chi-square law of the variance.

    Returns:
        ``P(|T| > t_{0.975, n-1})`` for ``T`` noncentral t(``n - 1``, ``delta sqrt(n) / sd``).
    """
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {pairs!r}")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"the standard deviation of a difference must be > 0, got {sd!r}")
    if not math.isfinite(delta):
        raise ValueError(f"the difference to detect must be finite, got {delta!r}")
    df = pairs - 1
    crit = t_critical(df)
    ncp = abs(delta) * math.sqrt(pairs) / sd
    # V ~ chi2(df); T = (Z + ncp) / sqrt(V / df). Integrate P(|Z + ncp| > crit sqrt(V/df)) over V.
    upper = df + 12.0 * math.sqrt(2.0 * df) + 40.0
    v = np.linspace(upper / points, upper, points)
    log_density = (df / 2 - 1) * np.log(v) - v / 2 - (df / 2) * math.log(2) - math.lgamma(df / 2)
    density = np.exp(log_density)
    bound = crit * np.sqrt(v / df)
    reject = _normal_cdf(-bound - ncp) + 1.0 - _normal_cdf(bound - ncp)
    # Trapezoid rule; the mass below the first point is that of chi2(df) on [0, v0].
    step = v[1] - v[0]
    integral = float(np.sum((reject[1:] * density[1:] + reject[:-1] * density[:-1]) * step / 2))
    head = reject[0] * math.exp(
        (df / 2) * math.log(v[0] / 2) - math.lgamma(df / 2 + 1)
    )  # ∫_0^v0 of the density, for small v0
    return min(1.0, integral + float(head))


def pairs_needed(delta: float, sd: float, power: float = 0.8, most: int = 200) -> int:
    """The fewest pairs whose two-sided 5% paired t-test detects ``delta`` with ``power``.

    Raises ``ValueError`` if even ``most`` pairs do not reach it.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power!r}")
    for n in range(2, most + 1):
        if paired_power(n, delta, sd) >= power:
            return n
    raise ValueError(f"{most} pairs do not reach power {power} for {delta} with sd {sd}")


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    The ``k``-th smallest of ``m`` p-values is multiplied by ``m - k + 1``, made monotone
    non-decreasing along that order and capped at 1; a comparison is significant at level
    ``a`` for the family when its adjusted p-value is at most ``a``.
    """
    values = [float(p) for p in p_values]
    if any(not (0.0 <= p <= 1.0) for p in values):
        raise ValueError(f"p-values must lie in [0, 1], got {values}")
    m = len(values)
    order = sorted(range(m), key=lambda i: values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted

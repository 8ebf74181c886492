"""PGR and its uncertainty over seeds.

Confidence intervals are percentile bootstraps of the *mean over seeds*: resample the per-seed values with
replacement (10,000 resamples, fixed RNG seed so reports are reproducible) and take the 2.5 / 97.5
percentiles. Paired differences resample seeds jointly, so the split/seed noise shared by two strategies
cancels. With fewer than two defined values the interval is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

N_BOOTSTRAP = 10_000


def pgr(weak: float, ceiling: float, transfer: float) -> float | None:
    """Performance gap recovered; ``None`` where the gap is not positive (ceiling <= weak)."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (weak, ceiling, transfer)):
        return None
    gap = ceiling - weak
    if gap <= 0:
        return None
    return (transfer - weak) / gap


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n: int = N_BOOTSTRAP, seed: int = 0):
    """Percentile bootstrap CI of the mean of ``values``; ``None`` for fewer than two values."""
    import numpy as np

    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if vals.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = vals[rng.integers(0, vals.size, size=(n, vals.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def summarize(values: Sequence[float | None]) -> dict:
    """``{"mean", "median", "ci95", "per_seed", "n"}`` over the defined values (``None`` entries kept in
    ``per_seed`` but excluded from the statistics)."""
    import numpy as np

    defined = [float(v) for v in values if v is not None]
    return {
        "mean": float(np.mean(defined)) if defined else None,
        "median": float(np.median(defined)) if defined else None,
        "ci95": bootstrap_ci(defined),
        "per_seed": [None if v is None else float(v) for v in values],
        "n": len(defined),
    }


def paired_difference(a: Sequence[float | None], b: Sequence[float | None]) -> dict:
    """Per-seed ``a - b`` over seeds where both are defined, with a bootstrap CI and wins (a > b)."""
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    out = summarize(diffs)
    out["wins"] = sum(d > 0 for d in diffs)
    out["seeds"] = len(diffs)
    return out

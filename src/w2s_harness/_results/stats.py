"""PGR and its uncertainty over seeds, and why a seed is left out.

Confidence intervals are percentile bootstraps of the *mean over seeds*: resample the per-seed values with
replacement (10,000 resamples, fixed RNG seed so reports are reproducible) and take the 2.5 / 97.5
percentiles. Paired differences resample seeds jointly, so the split/seed noise shared by two strategies
cancels. With fewer than two defined values the interval is ``None``.

A seed whose value is undefined (``None`` or NaN) is *dropped* from the statistics, and every summary names the
dropped seeds with the reason (``{"seed": 3, "reason": "ceiling 0.712 <= weak 0.720 (no gap to recover)"}``),
so a mean over 7 of 10 seeds never passes for a mean over 10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

N_BOOTSTRAP = 10_000

#: ``na`` of a PGR summary whose row has no gap to recover: the weak model is at or above the ceiling on every
#: seed where both finished.
NO_GAP = "weak >= ceiling"
#: ``na`` of a PGR summary whose row recovers a gap on some seeds but not on the mean accuracies.
NO_GAP_ON_MEAN = "weak >= ceiling on the mean"


def undefined(v) -> bool:
    """``None`` or NaN: a value that does not enter a statistic."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def pgr(weak: float, ceiling: float, transfer: float) -> float | None:
    """Performance gap recovered; ``None`` where the gap is not positive (ceiling <= weak)."""
    if any(undefined(v) for v in (weak, ceiling, transfer)):
        return None
    gap = ceiling - weak
    if gap <= 0:
        return None
    return (transfer - weak) / gap


def acc_reason(value, what: str = "accuracy") -> str | None:
    """Why an accuracy (or another metric, ``what``) does not enter a statistic: ``"not finished"`` (``None``),
    ``"NaN accuracy"``; else ``None``."""
    if value is None:
        return "not finished"
    if undefined(value):
        return f"NaN {what}"
    return None


def pgr_per_seed(weak: Sequence, ceiling: Sequence, transfer: Sequence, *,
                 metric: str = "accuracy") -> tuple[list, list]:
    """Per-seed PGR from per-seed accuracies (or another metric: ``metric`` names it in the reasons, e.g.
    ``"AUROC"``), and per seed why it is ``None`` (``None`` where it is defined).

    Reasons: ``"not finished (transfer)"``, ``"NaN accuracy (weak)"`` (the stages named), or
    ``"ceiling 0.712 <= weak 0.720 (no gap to recover)"``."""
    values: list[float | None] = []
    reasons: list[str | None] = []
    for w, c, t in zip(weak, ceiling, transfer):
        issues: dict[str, list[str]] = {}
        for what, v in (("weak", w), ("ceiling", c), ("transfer", t)):
            r = acc_reason(v, metric)
            if r is not None:
                issues.setdefault(r, []).append(what)
        if issues:
            values.append(None)
            reasons.append("; ".join(f"{r} ({', '.join(whats)})" for r, whats in issues.items()))
        elif c <= w:
            values.append(None)
            reasons.append(f"ceiling {c:.3f} <= weak {w:.3f} (no gap to recover)")
        else:
            values.append(pgr(w, c, t))
            reasons.append(None)
    return values, reasons


def gap_na(weak: Sequence, ceiling: Sequence) -> str | None:
    """Why a row's PGR is not applicable although its stages finished: :data:`NO_GAP` when the ceiling is not
    above the weak model on any seed where both finished, :data:`NO_GAP_ON_MEAN` when it is on some seeds but not
    on the mean over those seeds; ``None`` otherwise (and when no seed has both)."""
    pairs = [(float(w), float(c)) for w, c in zip(weak, ceiling) if not undefined(w) and not undefined(c)]
    if not pairs:
        return None
    if all(c <= w for w, c in pairs):
        return NO_GAP
    if sum(c for _, c in pairs) <= sum(w for w, _ in pairs):
        return NO_GAP_ON_MEAN
    return None


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, n: int = N_BOOTSTRAP, seed: int = 0):
    """Percentile bootstrap CI of the mean of ``values``; ``None`` for fewer than two values."""
    import numpy as np

    vals = np.asarray([v for v in values if not undefined(v)], dtype=np.float64)
    if vals.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = vals[rng.integers(0, vals.size, size=(n, vals.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def summarize(values: Sequence[float | None], *, seeds: Sequence[int] | None = None,
              reasons: Sequence[str | None] | None = None) -> dict:
    """``{"mean", "median", "ci95", "per_seed", "n", "n_run", "dropped"}`` over the defined values.

    Undefined entries (``None`` or NaN) are kept in ``per_seed`` as ``None`` but excluded from the statistics;
    ``dropped`` names each one: ``{"seed": seeds[i], "reason": reasons[i]}`` (``seeds`` defaults to the positions,
    a missing reason to ``"undefined"`` / ``"NaN"``). ``n`` counts the defined values, ``n_run`` all of them."""
    import numpy as np

    seeds = list(range(len(values))) if seeds is None else list(seeds)
    if len(seeds) != len(values) or (reasons is not None and len(reasons) != len(values)):
        raise ValueError("summarize: seeds and reasons must have one entry per value")
    per_seed: list[float | None] = []
    dropped: list[dict] = []
    for i, v in enumerate(values):
        if undefined(v):
            per_seed.append(None)
            reason = reasons[i] if reasons is not None else None
            dropped.append({"seed": seeds[i], "reason": reason or ("undefined" if v is None else "NaN")})
        else:
            per_seed.append(float(v))
    defined = [v for v in per_seed if v is not None]
    return {
        "mean": float(np.mean(defined)) if defined else None,
        "median": float(np.median(defined)) if defined else None,
        "ci95": bootstrap_ci(defined),
        "per_seed": per_seed,
        "n": len(defined),
        "n_run": len(values),
        "dropped": dropped,
    }


def pair_reasons(name_a: str, reason_a: str | None, name_b: str, reason_b: str | None) -> str | None:
    """Why a seed drops out of the paired difference of rows ``a`` and ``b``: the rows' reasons, the row named
    unless both share it."""
    if reason_a is None and reason_b is None:
        return None
    if reason_a == reason_b:
        return reason_a
    return "; ".join(f"{name}: {r}" for name, r in ((name_a, reason_a), (name_b, reason_b)) if r is not None)


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], *, seeds: Sequence[int] | None = None,
                      reasons_a: Sequence[str | None] | None = None, reasons_b: Sequence[str | None] | None = None,
                      names: tuple[str, str] = ("a", "b")) -> dict:
    """Per-seed ``a - b`` over seeds where both are defined, with a bootstrap CI and wins (a > b).

    ``per_seed`` holds only the defined differences (in seed order); ``dropped`` names the other seeds with the
    rows' reasons (``reasons_a`` / ``reasons_b``, one per seed, as :func:`pgr_per_seed` gives them)."""
    n = len(a)
    reasons_a = list(reasons_a) if reasons_a is not None else [None] * n
    reasons_b = list(reasons_b) if reasons_b is not None else [None] * n
    diffs, why = [], []
    for x, y, ra, rb in zip(a, b, reasons_a, reasons_b):
        if undefined(x) or undefined(y):
            diffs.append(None)
            why.append(pair_reasons(names[0], (ra or "undefined") if undefined(x) else None,
                                    names[1], (rb or "undefined") if undefined(y) else None))
        else:
            diffs.append(x - y)
            why.append(None)
    out = summarize(diffs, seeds=seeds, reasons=why)
    defined = [d for d in out["per_seed"] if d is not None]
    out["per_seed"] = defined
    out["wins"] = sum(d > 0 for d in defined)
    out["seeds"] = len(defined)
    return out

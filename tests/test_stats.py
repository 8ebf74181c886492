"""PGR and bootstrap CI maths on known numbers."""

import numpy as np
import pytest

from w2s_harness._results.stats import (
    NO_GAP,
    NO_GAP_ON_MEAN,
    bootstrap_ci,
    gap_na,
    paired_difference,
    pgr,
    pgr_per_seed,
    summarize,
)


def test_pgr_known_values():
    assert pgr(0.78, 0.88, 0.80) == pytest.approx(0.2)
    assert pgr(0.6, 0.8, 0.8) == pytest.approx(1.0)
    assert pgr(0.6, 0.8, 0.5) == pytest.approx(-0.5)


@pytest.mark.parametrize("weak,ceiling", [(0.8, 0.8), (0.85, 0.8)])
def test_pgr_undefined_when_no_gap(weak, ceiling):
    assert pgr(weak, ceiling, 0.9) is None


def test_pgr_missing_value_is_none():
    assert pgr(None, 0.9, 0.8) is None
    assert pgr(0.7, float("nan"), 0.8) is None


def test_summarize_mean_median_and_none_handling():
    s = summarize([0.1, None, 0.3, 0.5])
    assert s["mean"] == pytest.approx(0.3)
    assert s["median"] == pytest.approx(0.3)
    assert s["n"] == 3
    assert s["per_seed"] == [0.1, None, 0.3, 0.5]
    lo, hi = s["ci95"]
    assert 0.1 <= lo < 0.3 < hi <= 0.5


def test_bootstrap_ci_matches_independent_percentile_bootstrap():
    vals = [0.2, 0.25, 0.3, 0.1, 0.4, 0.35, 0.22, 0.28, 0.31, 0.19]
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(vals), size=(10_000, len(vals)))
    means = np.asarray(vals)[idx].mean(axis=1)
    expected = np.quantile(means, [0.025, 0.975])
    assert bootstrap_ci(vals) == pytest.approx(list(expected))
    # the interval narrows like 1/sqrt(n): 4x the seeds -> about half the width
    wide = bootstrap_ci(vals)
    narrow = bootstrap_ci(vals * 4)
    assert (narrow[1] - narrow[0]) == pytest.approx((wide[1] - wide[0]) / 2, rel=0.15)


def test_ci_undefined_for_single_value():
    assert bootstrap_ci([0.3]) is None
    assert summarize([0.3])["ci95"] is None
    assert summarize([None, None])["mean"] is None


def test_paired_difference_counts_wins_and_skips_undefined():
    a = [0.4, 0.3, None, 0.5]
    b = [0.2, 0.35, 0.1, 0.4]
    d = paired_difference(a, b)
    assert d["seeds"] == 3
    assert d["wins"] == 2
    assert d["mean"] == pytest.approx((0.2 - 0.05 + 0.1) / 3)
    assert d["per_seed"] == pytest.approx([0.2, -0.05, 0.1])


def test_summarize_median_is_not_the_mean():
    s = summarize([0.1, 0.2, 0.3, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.5)
    assert s["median"] == pytest.approx(0.3)
    assert summarize([0.1, 0.9, 1.0, 0.2])["median"] == pytest.approx(0.55)  # even count: the middle two's mean


def test_summarize_names_dropped_seeds_and_counts():
    s = summarize([0.2, None, float("nan"), 0.4], seeds=[10, 11, 12, 13], reasons=[None, "not finished", None, None])
    assert (s["n"], s["n_run"]) == (2, 4)
    assert s["per_seed"] == [0.2, None, None, 0.4]  # NaN is stored as null: results.json stays strict JSON
    assert s["dropped"] == [{"seed": 11, "reason": "not finished"}, {"seed": 12, "reason": "NaN"}]
    assert s["mean"] == pytest.approx(0.3)


def test_pgr_per_seed_reasons():
    values, reasons = pgr_per_seed([0.7, 0.72, None, float("nan"), 0.7], [0.8, 0.712, 0.8, 0.8, None],
                                   [0.75, 0.75, 0.75, 0.75, None])
    assert values[0] == pytest.approx(0.5) and values[1:] == [None] * 4
    assert reasons == [None, "ceiling 0.712 <= weak 0.720 (no gap to recover)", "not finished (weak)",
                       "NaN accuracy (weak)", "not finished (ceiling, transfer)"]


def test_gap_na_every_seed_and_on_the_mean():
    assert gap_na([0.8, 0.8], [0.75, 0.8]) == NO_GAP
    assert gap_na([0.7, 0.8, 0.8], [0.75, 0.76, 0.77]) == NO_GAP_ON_MEAN
    assert gap_na([0.7, 0.8], [0.75, 0.79]) is None
    assert gap_na([None, 0.8], [0.9, None]) is None  # no seed has both: nothing to say about the gap


def test_paired_difference_names_dropped_seeds():
    d = paired_difference([0.4, None, None, 0.5], [0.2, 0.3, None, 0.4], seeds=[0, 1, 2, 3],
                          reasons_a=[None, "not finished (transfer)", "no gap", None],
                          reasons_b=[None, None, "no gap", None], names=("x", "y"))
    assert (d["n"], d["n_run"], d["seeds"], d["wins"]) == (2, 4, 2, 2)
    assert d["dropped"] == [{"seed": 1, "reason": "x: not finished (transfer)"}, {"seed": 2, "reason": "no gap"}]

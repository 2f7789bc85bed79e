"""The intervals and the verdict rule, on known cases and constructed differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from pxby_lib.stats import Interval, item_bootstrap, seed_interval, verdict


def test_seed_interval_is_the_student_t_interval():
    d = [0.02, 0.05, 0.03]
    iv = seed_interval(d, 0.95)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(d, ddof=1) / math.sqrt(3)  # 4.303 * sd / sqrt 3
    assert iv.n == 3 and iv.mean == pytest.approx(np.mean(d))
    assert (iv.lo, iv.hi) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    one = seed_interval([0.1])
    assert one.n == 1 and math.isnan(one.lo)
    assert seed_interval([0.1, None, float("nan"), 0.3]).n == 2  # missing runs left out


def test_item_bootstrap_on_a_known_case():
    rng = np.random.default_rng(0)
    # 200 items whose true means are N(0.5, 0.1); each item has 3 identical chunks, so the
    # chunks add no information: the interval must be that of 200 values, not of 600
    means = rng.normal(0.5, 0.1, 200)
    frame = pd.DataFrame({"item": np.repeat(np.arange(200), 3), "x": np.repeat(means, 3)})
    iv = item_bootstrap(frame, "x", resamples=4000, seed=1)
    se = means.std(ddof=1) / math.sqrt(200)
    assert iv.mean == pytest.approx(means.mean()) and iv.n == 200
    assert iv.hi - iv.lo == pytest.approx(2 * 1.96 * se, rel=0.1)  # not 1.96 * se / sqrt(3)
    assert item_bootstrap(frame, "x", resamples=500, seed=1) == item_bootstrap(frame, "x", 500, 1)
    # chunk-weighted: an item with more chunks weighs more, and nan values are left out
    uneven = pd.DataFrame({"item": [0, 0, 0, 1], "x": [1.0, 1.0, np.nan, 0.0]})
    assert item_bootstrap(uneven, "x").mean == pytest.approx(2 / 3)


@pytest.mark.parametrize(("lo", "hi", "kind", "expected"), [
    (0.01, 0.05, "better", "supported"),  # all above 0
    (-0.05, -0.01, "better", "contradicted"),  # all below 0: the other way round
    (-0.01, 0.015, "better", "equivalent"),  # straddles 0 within the margin
    (-0.01, 0.08, "better", "inconclusive"),  # straddles 0, wider than the margin
    (0.001, 0.005, "better", "supported"),  # small but above 0 (the claim says "better")
    (-0.015, 0.01, "same", "supported"),  # within +-margin: no difference
    (0.03, 0.06, "same", "contradicted"),  # outside the margin
    (-0.06, -0.021, "same", "contradicted"),
    (-0.01, 0.04, "same", "inconclusive"),  # partly outside
])
def test_verdict_rule_on_constructed_differences(lo, hi, kind, expected):
    assert verdict(Interval((lo + hi) / 2, lo, hi, 3), margin=0.02, kind=kind, min_seeds=3) == expected


def test_no_verdict_below_the_minimum_seeds():
    assert verdict(Interval(0.1, 0.05, 0.15, 2), 0.02, "better", min_seeds=3) == "no verdict"
    assert verdict(Interval(0.1, math.nan, math.nan, 1), 0.02, "same", min_seeds=1) == "no verdict"
    with pytest.raises(ValueError, match="'better' or 'same'"):
        verdict(Interval(0, -1, 1, 3), 0.02, "worse", 3)


def test_minimal_detectable_difference_is_the_80_percent_power_distance():
    """(t(0.975, n-1) + t(0.8, n-1)) * sd / sqrt(n): with 3 seeds 5.36 sd / sqrt(3); a
    true difference of that size would be detected (interval above 0) in ~80 % of
    replications of the 3-seed experiment."""
    import math

    from pxby_lib.stats import minimal_detectable_difference, seed_interval

    d = [0.01, 0.03, 0.02]
    assert minimal_detectable_difference(d) == pytest.approx((4.3027 + 1.0607) * 0.01 / math.sqrt(3), rel=1e-3)
    assert math.isnan(minimal_detectable_difference([0.1]))
    rng = np.random.default_rng(0)
    sd, n = 0.02, 3
    mdd = (4.3027 + 1.0607) * sd / math.sqrt(n)  # with the true sd
    detected = np.mean([seed_interval(rng.normal(mdd, sd, n)).lo > 0 for _ in range(4000)])
    assert 0.74 < detected < 0.86

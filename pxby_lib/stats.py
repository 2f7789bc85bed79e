"""Intervals and the verdict rule.

Two kinds of interval, for two questions:
- `item_bootstrap`: how precisely ONE run's score is measured on its chunks. The chunks
  of an item overlap in what they show (the same sprite, the same caption), so items,
  not chunks, are resampled: a percentile bootstrap over items of the chunk-weighted
  mean, seeded.
- `seed_interval`: how a difference between two rows varies over independent runs. The
  paired differences d_k = A_k - B_k over seeds k (same split for both rows at each seed)
  get a Student t interval: mean +- t(conf, n - 1) * sd / sqrt(n). It covers the variance
  of training (initialisation, order) and of the split, which one run cannot show.

`minimal_detectable_difference`: the smallest true difference that n seeds with the
observed spread would detect at the interval's level with 80 % power,
(t(conf, n-1) + t(power, n-1)) * sd / sqrt(n); a claim whose published effect is below it
cannot be settled by those seeds whatever the truth ('below resolution', not
'inconclusive').

`verdict` turns an interval into a word, by a rule fixed before any result (margins in
params.yaml, `claims`):
  a claim "A is better than B" (kind 'better', the interval of A - B oriented so that
  positive favours A):
    supported     lo > 0
    contradicted  hi < 0
    equivalent    -margin < lo and hi < margin (no difference as large as the margin)
    inconclusive  otherwise
  a claim "A and B do not differ" (kind 'same'):
    supported     -margin < lo and hi < margin
    contradicted  lo > margin or hi < -margin
    inconclusive  otherwise
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int  # items (bootstrap) or seeds (seed interval)

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.lo):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


def item_bootstrap(per_chunk: pd.DataFrame, column: str, resamples: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> Interval:
    """Mean of `column` over chunks, with a percentile interval from resampling items."""
    frame = per_chunk[["item", column]].dropna()
    if frame.empty:
        return Interval(math.nan, math.nan, math.nan, 0)
    grouped = frame.groupby("item")[column]
    sums, counts = grouped.sum().to_numpy(), grouped.count().to_numpy()  # per item
    mean = float(sums.sum() / counts.sum())
    if len(sums) < 2:
        return Interval(mean, math.nan, math.nan, len(sums))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(resamples, len(sums)))  # (R, n_items)
    boot = sums[picks].sum(1) / counts[picks].sum(1)  # (R,)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [tail, 1 - tail])
    return Interval(mean, float(lo), float(hi), len(sums))


def seed_interval(differences: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of per-seed differences with a t interval (nan bounds for fewer than 2)."""
    d = np.asarray([x for x in differences if x is not None and np.isfinite(x)], dtype=float)
    if len(d) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    if len(d) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return Interval(mean, mean - half, mean + half, len(d))


def minimal_detectable_difference(differences: Sequence[float], confidence: float = 0.95,
                                  power: float = 0.8) -> float:
    """The module docstring's MDD of paired per-seed differences (nan below 2 seeds)."""
    d = np.asarray([x for x in differences if x is not None and np.isfinite(x)], dtype=float)
    if len(d) < 2:
        return math.nan
    df = len(d) - 1
    t = scipy_stats.t.ppf(0.5 + confidence / 2, df) + scipy_stats.t.ppf(power, df)
    return float(t * d.std(ddof=1) / math.sqrt(len(d)))


def verdict(interval: Interval, margin: float, kind: str, min_seeds: int) -> str:
    """The rule of the module docstring; 'no verdict' below `min_seeds` seeds."""
    if kind not in ("better", "same"):
        raise ValueError(f"kind must be 'better' or 'same', got {kind!r}")
    if interval.n < min_seeds or math.isnan(interval.lo):
        return "no verdict"
    lo, hi = interval.lo, interval.hi
    within = -margin < lo and hi < margin
    if kind == "same":
        if within:
            return "supported"
        return "contradicted" if lo > margin or hi < -margin else "inconclusive"
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    return "equivalent" if within else "inconclusive"

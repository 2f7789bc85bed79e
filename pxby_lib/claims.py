"""The paper's claims, each checked by the same rule (`stats.verdict`), over seeds.

For every claim, the comparisons that test it, fixed here before any run: pairs of rows
(A, B), A claimed better than B ('better') or the two claimed alike ('same'). Each pair
is measured on two scores of every run: held-out centre accuracy (this project's honest
protocol, every test item) and paper-protocol BLEU (the paper's own metric). The
evidence is the paired difference A - B over the seeds both rows ran (seed k: the same
item split for both), with a t interval over seeds (`stats.seed_interval`); a pair with
fewer than `claims.min_seeds` common seeds gets no verdict, and says so.

A claim's verdict combines its pairs' verdicts on both scores (those with a verdict):
all the same word -> that word; different words -> 'mixed'; none -> 'no verdict'.

Choices made here, before the results: C4 compares the reference RNN with the one row of
each other family that has three seeds (SSM Bi depth 1, Attention depth 1), not with
the best rows (picking the best of noisy rows would favour whichever family has more
rows); C6 compares every row with the best baseline of each score (the highest mean
over seeds), the strongest thing the window gives for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pxby_lib.config import ClaimsConfig
from pxby_lib.stats import Interval, seed_interval, verdict

REF = "rnn_bi_pxby_conv_d81_s64_l2"
BEST_BASELINE = "best baseline"
SCORES = (("centre_acc", "held-out centre accuracy", "margin_centre_acc"),
          ("bleu", "paper-protocol BLEU", "margin_bleu"))
PARAMETER_LIMIT = 100_000


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    paper: str  # the paper's evidence
    kind: str  # 'better' | 'same' | 'count'
    pairs: tuple[tuple[str, str], ...] = ()


CLAIMS = (
    Claim("C1", "PxBy beats the centre embedding",
          "RNN Bi: BLEU 0.777 (PxBy, conv) vs 0.750 (Center)", "better",
          ((REF, "rnn_bi_center_d81_s64_l2"),)),
    Claim("C2", "the convolution in PxByEmbed helps",
          "the conv RNN is named best; BLEU 0.777 (conv) vs 0.779 (no conv)", "better",
          ((REF, "rnn_bi_pxby_noconv_d81_s64_l2"),)),
    Claim("C3", "bidirectional is slightly better than unidirectional",
          "BLEU: RNN 0.777 vs 0.776; SSM 0.771 vs 0.760", "better",
          ((REF, "rnn_uni_pxby_conv_d81_s64_l2"),
           ("ssm_bi_pxby_conv_d81_s64_l2", "ssm_uni_pxby_conv_d81_s64_l2"))),
    Claim("C4", "RNNs beat SSM and Attention",
          "best rows' BLEU: RNN 0.785, SSM 0.771, Attention 0.765", "better",
          ((REF, "ssm_bi_pxby_conv_d81_s64_l1"), (REF, "att_pxby_conv_d81_l1"))),
    Claim("C5", "embedding size (D 36/81/162), hidden state (32/64/128) and depth (1/2/3) "
          "matter little", "RNN rows' BLEU 0.775-0.785", "same",
          tuple((row, REF) for row in (
              "rnn_bi_pxby_conv_d36_s64_l2", "rnn_bi_pxby_conv_d162_s64_l2",
              "rnn_bi_pxby_conv_d81_s32_l2", "rnn_bi_pxby_conv_d81_s128_l2",
              "rnn_bi_pxby_conv_d81_s64_l1", "rnn_bi_pxby_conv_d81_s64_l3"))),
    Claim("C6", "the models generate better than what the window gives for free",
          "no baseline in the paper", "better", ()),  # pairs: every row vs BEST_BASELINE
    Claim("C7", "under 100k parameters", "stated for the models in the text", "count"),
)


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its pairs' verdicts (the module docstring's rule)."""
    words = {v for v in verdicts if v != "no verdict"}
    if not words:
        return "no verdict"
    return words.pop() if len(words) == 1 else "mixed"


def tally(verdicts: list[str]) -> str:
    """How many comparisons got each word, most frequent first: '25 contradicted, 1 inconclusive'."""
    counts = pd.Series(verdicts, dtype=object).value_counts(sort=False)
    counts = counts.sort_values(ascending=False, kind="stable")
    return ", ".join(f"{n} {word}" for word, n in counts.items())


def _values(scores: pd.DataFrame, row: str, score: str) -> dict[int, float]:
    """seed -> score of a row's runs (`scores`: columns row, seed, <score>...)."""
    sub = scores[scores["row"] == row]
    return dict(zip(sub["seed"].astype(int), sub[score].astype(float), strict=True))


def best_baseline(scores: pd.DataFrame, baselines: list[str], score: str) -> str | None:
    means = {b: scores.loc[scores["row"] == b, score].mean() for b in baselines}
    means = {b: m for b, m in means.items() if pd.notna(m)}
    return max(means, key=means.get) if means else None


def evaluate_claims(scores: pd.DataFrame, rows: list[str], baselines: list[str],
                    parameters: dict[str, int], cfg: ClaimsConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(details: one line per claim x pair x score, summary: one line per claim).

    `scores`: one line per run (row, seed) with columns centre_acc and bleu; `rows` the
    model rows of this dataset; `baselines` the baseline names in `scores`;
    `parameters` row -> trainable parameter count."""
    details = []
    for claim in CLAIMS:
        if claim.kind == "count":
            continue
        pairs = claim.pairs if claim.id != "C6" else tuple((r, BEST_BASELINE) for r in rows)
        for a, b in pairs:
            for score, label, margin_key in SCORES:
                b_row = best_baseline(scores, baselines, score) if b == BEST_BASELINE else b
                line = {"claim": claim.id, "a": a, "b": b_row or b, "score": label}
                if a not in rows or b_row is None or (b_row not in rows and b_row not in baselines):
                    details.append({**line, "seeds": 0, "difference": float("nan"),
                                    "lo": float("nan"), "hi": float("nan"),
                                    "verdict": "no verdict", "note": "row not run"})
                    continue
                va, vb = _values(scores, a, score), _values(scores, b_row, score)
                common = sorted(set(va) & set(vb))
                interval = seed_interval([va[k] - vb[k] for k in common], cfg.confidence)
                word = verdict(interval, getattr(cfg, margin_key), claim.kind, cfg.min_seeds)
                note = "" if word != "no verdict" else (
                    f"{len(common)} common seed(s) < {cfg.min_seeds}: no verdict")
                details.append({**line, "seeds": interval.n, "difference": interval.mean,
                                "lo": interval.lo, "hi": interval.hi, "verdict": word,
                                "note": note})
    details = pd.DataFrame(details)
    summary = []
    for claim in CLAIMS:
        if claim.kind == "count":
            counted = {r: parameters[r] for r in rows if r in parameters}
            under = sum(n < PARAMETER_LIMIT for n in counted.values())
            summary.append({"claim": claim.id, "text": claim.text, "paper": claim.paper,
                            "ours": f"true of {under} of {len(counted)} rows "
                                    f"(largest {max(counted.values()):,})",
                            "verdict": "supported" if under == len(counted) else "contradicted",
                            "comparisons": f"{len(counted)} rows counted"})
            continue
        mine = details[details["claim"] == claim.id]
        ours = "; ".join(
            f"{r.score}: {r.a} - {r.b} = {Interval(r.difference, r.lo, r.hi, r.seeds).text()} "
            f"({r.seeds} seeds)" for r in mine.itertuples() if r.seeds > 0) or "rows not run"
        summary.append({"claim": claim.id, "text": claim.text, "paper": claim.paper,
                        "ours": ours, "verdict": combine(list(mine["verdict"])),
                        "comparisons": tally(list(mine["verdict"]))})
    return details, pd.DataFrame(summary)


def claims_markdown(details: pd.DataFrame, summary: pd.DataFrame, cfg: ClaimsConfig,
                    dataset: str, short) -> str:
    """claims.md: the rule, the verdicts, then every comparison. `short` names rows."""
    lines = [
        f"# The paper's claims on `{dataset}`: verdicts over seeds", "",
        "Rule (fixed in params.yaml before the run, `pxby_lib/stats.py`): for each pair of rows "
        f"A, B, the paired difference A - B over seeds with a {cfg.confidence:.0%} t interval. "
        "A claim that A is better: supported if the interval is above 0, contradicted if below "
        f"0, equivalent if it lies within +-margin, else inconclusive. A claim of no difference: "
        "supported if the interval lies within +-margin, contradicted if it lies outside, else "
        f"inconclusive. Margins: held-out centre accuracy {cfg.margin_centre_acc}, paper BLEU "
        f"{cfg.margin_bleu}. Fewer than {cfg.min_seeds} seeds on a side: no verdict. A claim "
        "combines its comparisons: one word if they agree, else mixed.", "",
        "| claim | paper's evidence | verdict | comparisons |", "|---|---|---|---|",
    ]
    lines += [f"| {s.claim}: {s.text} | {s.paper} | **{s.verdict}** | {s.comparisons} |"
              for s in summary.itertuples()]
    lines += ["", "## Every comparison", "",
              "| claim | A | B | score | seeds | A - B [95% CI] | verdict |",
              "|---|---|---|---|---|---|---|"]
    for r in details.itertuples():
        diff = Interval(r.difference, r.lo, r.hi, r.seeds).text() if r.seeds else "-"
        lines.append(f"| {r.claim} | {short(r.a)} | {short(r.b)} | {r.score} | {r.seeds} | "
                     f"{diff} | {r.verdict}{' (' + r.note + ')' if r.note else ''} |")
    c7 = summary[summary["claim"] == "C7"]
    if len(c7):
        lines += ["", f"C7 (parameter counts): {c7['ours'].iloc[0]}."]
    return "\n".join(lines) + "\n"

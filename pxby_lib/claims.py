"""The paper's claims, each checked by the same rule (`stats.verdict`), over seeds, in two
tracks: the paper's training ('last': one target per sample) and training on every
position ('every', causal models only).

For every claim, the comparisons that test it, fixed here before any run: pairs of rows
(A, B), A claimed better than B ('better') or the two claimed alike ('same'). The paper
track compares the Table 1 rows; the every-position track compares their causal twins
(`EVERY_TWIN`: the same layers read left to right, trained on every position; a pair
whose row has no twin, such as C3's bidirectional rows, gets no verdict and says why).
Each pair is measured on the scores of `SCORES`: held-out centre accuracy (the generated
tokens of every test item), the held-out next-token NLL and accuracy (`nexttoken`: the
same seeded test positions for every row), and paper-protocol BLEU (the paper's own
metric, on items that are mostly training items). C6, whether the models beat what the
window gives for free, is judged on the held-out scores only. The evidence is the paired
difference A - B over the seeds both rows ran (seed k: the same item split and the same
test positions for both), oriented so that positive favours A (for NLL, lower is
better), with a t interval over seeds (`stats.seed_interval`) and the minimal detectable
difference of those seeds (`stats.minimal_detectable_difference`, 80 % power); a pair
with fewer than `claims.min_seeds` common seeds gets no verdict, and says so. Where the
paper publishes both rows' BLEU (the paper track), an inconclusive BLEU comparison whose
published effect is smaller than the MDD is 'below resolution': those seeds could not
have settled it whatever the truth.

A claim's verdict combines its pairs' verdicts on every score (those with a verdict):
all the same word -> that word; different words -> 'mixed'; none -> 'no verdict'.

C8 (this project's question, across the tracks): does the reference paper row (Bi,
'last') beat its every-position twin (Uni, 'every')? Held-out scores; each row's mean
training wall seconds per run (one thread each) stand beside it (the twin is judged at
its own stopping point: if it used no more than the reference, the comparison is at
most equal compute).

Choices made here, before the results: C4 compares the reference RNN with the one row of
each other family that has three seeds (SSM Bi depth 1, Attention depth 1), not with
the best rows (picking the best of noisy rows would favour whichever family has more
rows); C6 compares every row with the best baseline of each score (the best mean over
seeds), the strongest thing the window gives for free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pxby_lib.config import ClaimsConfig
from pxby_lib.stats import Interval, minimal_detectable_difference, seed_interval, verdict

REF = "rnn_bi_pxby_conv_d81_s64_l2"
BEST_BASELINE = "best baseline"
# score: (label, margin key of `claims`, higher is better)
SCORES = {"centre_acc": ("held-out centre accuracy", "margin_centre_acc", True),
          "next_nll": ("held-out next-token NLL", "margin_next_nll", False),
          "next_acc": ("held-out next-token accuracy", "margin_next_acc", True),
          "bleu": ("paper-protocol BLEU", "margin_bleu", True)}
HELDOUT = ("centre_acc", "next_nll", "next_acc")
PARAMETER_LIMIT = 100_000
TRACKS = {"last": "paper track (one target per sample)",
          "every": "every-position track (causal twins)"}
# the every-position twin of a paper-track row: its layers read left to right (RNN and SSM
# unidirectional, the Transformer masked with positions), trained on every position. C5's
# size rows have no twin yet (the budget): in that track C5 says "row not run".
EVERY_TWIN = {
    REF: "rnn_uni_pxby_conv_d81_s64_l2_every",
    "rnn_uni_pxby_conv_d81_s64_l2": "rnn_uni_pxby_conv_d81_s64_l2_every",
    "rnn_bi_center_d81_s64_l2": "rnn_uni_center_d81_s64_l2_every",
    "rnn_bi_pxby_noconv_d81_s64_l2": "rnn_uni_pxby_noconv_d81_s64_l2_every",
    "ssm_bi_pxby_conv_d81_s64_l1": "ssm_uni_pxby_conv_d81_s64_l1_every",
    "att_pxby_conv_d81_l1": "attc_pxby_conv_d81_l1_every",
}


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    paper: str  # the paper's evidence
    kind: str  # 'better' | 'same' | 'count'
    pairs: tuple[tuple[str, str], ...] = ()  # paper-track rows
    scores: tuple[str, ...] = tuple(SCORES)


CLAIMS = (
    Claim("C1", "PxBy beats the centre embedding",
          "RNN Bi: BLEU 0.777 (PxBy, conv) vs 0.750 (Center)", "better",
          ((REF, "rnn_bi_center_d81_s64_l2"),)),
    Claim("C2", "the convolution in PxByEmbed helps",
          "the conv RNN is named best; BLEU 0.777 (conv) vs 0.779 (no conv)", "better",
          ((REF, "rnn_bi_pxby_noconv_d81_s64_l2"),)),
    Claim("C3", "bidirectional is slightly better than unidirectional",
          "Table 1 BLEU: RNN 0.777 vs 0.777; SSM 0.771 vs 0.760", "better",
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
    Claim("C6", "the models predict better than what the window gives for free",
          "no baseline in the paper", "better", (), HELDOUT),  # every row vs BEST_BASELINE
    Claim("C7", "under 100k parameters", "stated for the models in the text", "count"),
)
C8 = Claim("C8", "training on one target per sample (the paper's Bi reference) beats "
           "training its causal twin on every position", "not in the paper", "better",
           ((REF, EVERY_TWIN[REF]),), HELDOUT)


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its pairs' verdicts (the module docstring's rule)."""
    words = {v for v in verdicts if v != "no verdict"}
    if not words:
        return "no verdict"
    return words.pop() if len(words) == 1 else "mixed"


def tally(verdicts: list[str]) -> str:
    """How many comparisons got each word, most frequent first: '25 contradicted, 1 inconclusive'."""
    if not verdicts:
        return "no comparison: rows not run"
    counts = pd.Series(verdicts, dtype=object).value_counts(sort=False)
    counts = counts.sort_values(ascending=False, kind="stable")
    return ", ".join(f"{n} {word}" for word, n in counts.items())


def _values(scores: pd.DataFrame, row: str, score: str) -> dict[int, float]:
    """seed -> score of a row's runs (`scores`: columns row, seed, <score>...)."""
    sub = scores[scores["row"] == row].dropna(subset=[score])
    return dict(zip(sub["seed"].astype(int), sub[score].astype(float), strict=True))


def best_baseline(scores: pd.DataFrame, baselines: list[str], score: str) -> str | None:
    """The baseline with the best mean over seeds on `score` (lowest NLL, highest else)."""
    means = {b: scores.loc[scores["row"] == b, score].mean() for b in baselines}
    means = {b: m for b, m in means.items() if pd.notna(m)}
    if not means:
        return None
    return (max if SCORES[score][2] else min)(means, key=means.get)


def _compare(claim: Claim, track: str, a: str, b: str, score: str, scores: pd.DataFrame,
             rows: list[str], baselines: list[str], published: dict[str, float],
             cfg: ClaimsConfig) -> dict:
    """One comparison line: A - B on `score` over the common seeds, oriented to favour A."""
    label, margin_key, higher = SCORES[score]
    b_row = best_baseline(scores, baselines, score) if b == BEST_BASELINE else b
    line = {"track": track, "claim": claim.id, "a": a, "b": b_row or b, "score": label,
            "seeds": 0, "difference": math.nan, "lo": math.nan, "hi": math.nan,
            "mdd": math.nan, "published": math.nan, "verdict": "no verdict", "note": ""}
    if a not in rows or b_row is None or (b_row not in rows and b_row not in baselines):
        return {**line, "note": "row not run"}
    va, vb = _values(scores, a, score), _values(scores, b_row, score)
    common = sorted(set(va) & set(vb))
    sign = 1.0 if higher else -1.0
    diffs = [sign * (va[k] - vb[k]) for k in common]
    interval = seed_interval(diffs, cfg.confidence)
    mdd = minimal_detectable_difference(diffs, cfg.confidence)
    word = verdict(interval, getattr(cfg, margin_key), claim.kind, cfg.min_seeds)
    note = "" if word != "no verdict" else f"{len(common)} common seed(s) < {cfg.min_seeds}: no verdict"
    effect = (published[a] - published[b_row]) if score == "bleu" and a in published \
        and b_row in published else math.nan
    if word == "inconclusive" and claim.kind == "better" and abs(effect) < mdd:
        word = "below resolution"
        note = (f"the published effect {effect:+.3f} is below what {interval.n} seeds resolve "
                f"(MDD {mdd:.3f})")
    return {**line, "seeds": interval.n, "difference": interval.mean, "lo": interval.lo,
            "hi": interval.hi, "mdd": mdd, "published": effect, "verdict": word, "note": note}


def evaluate_claims(scores: pd.DataFrame, rows: list[str], baselines: list[str],
                    parameters: dict[str, int], cfg: ClaimsConfig,
                    objective: dict[str, str] | None = None,
                    published: dict[str, float] | None = None,
                    seconds: dict[str, float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(details: one line per track x claim x pair x score, summary: per track x claim).

    `scores`: one line per run (row, seed) with a column per score of `SCORES` (nan where
    a run has none); `rows` the model rows of this dataset; `baselines` the baselines in
    `scores`; `parameters` row -> trainable parameter count; `objective` row -> 'last' or
    'every' (default 'last'); `published` row -> the paper's BLEU of that row (paper-track
    rows that Table 1 lists); `seconds` row -> mean training CPU seconds per run (C8)."""
    objective = objective or {}
    published = published or {}
    seconds = seconds or {}
    track_rows = {t: [r for r in rows if objective.get(r, "last") == t] for t in TRACKS}
    details = []
    for track in TRACKS:
        for claim in CLAIMS:
            if claim.kind == "count":
                continue
            if claim.id == "C6":
                pairs = [(r, BEST_BASELINE) for r in track_rows[track]]
            elif track == "last":
                pairs = list(claim.pairs)
            else:
                pairs = [(EVERY_TWIN.get(a), EVERY_TWIN.get(b)) for a, b in claim.pairs]
            for k, (a, b) in enumerate(pairs):
                for score in claim.scores:
                    if a is None or b is None or a == b:
                        a0, b0 = claim.pairs[k]
                        line = _compare(claim, track, a0, b0, score, scores, [], [], {}, cfg)
                        why = ("no every-position twins: the pair differs in direction, and a "
                               "bidirectional row cannot train on every position" if a == b
                               or (a is None and b is None and claim.id == "C3")
                               else "no every-position twin of this row (not run at this budget)")
                        details.append({**line, "note": why})
                        continue
                    pool = track_rows[track]
                    details.append(_compare(claim, track, a, b, score, scores, pool, baselines,
                                            published if track == "last" else {}, cfg))
    for a, b in C8.pairs:
        for score in C8.scores:
            line = _compare(C8, "both", a, b, score, scores, rows, baselines, {}, cfg)
            if a in seconds and b in seconds:
                line["note"] = (line["note"] + "; " if line["note"] else "") + (
                    f"training wall s per run: {seconds[a]:.0f} (A) vs {seconds[b]:.0f} (B)")
            details.append(line)
    details = pd.DataFrame(details)
    summary = []
    for track in TRACKS:
        for claim in CLAIMS:
            line = {"track": track, "claim": claim.id, "text": claim.text, "paper": claim.paper}
            if claim.kind == "count":
                counted = {r: parameters[r] for r in track_rows[track] if r in parameters}
                if not counted:
                    summary.append({**line, "ours": "rows not run", "verdict": "no verdict",
                                    "comparisons": "0 rows"})
                    continue
                under = sum(n < PARAMETER_LIMIT for n in counted.values())
                summary.append({**line, "ours": f"true of {under} of {len(counted)} rows "
                                                f"(largest {max(counted.values()):,})",
                                "verdict": "supported" if under == len(counted) else "contradicted",
                                "comparisons": f"{len(counted)} rows counted"})
                continue
            summary.append({**line, **_combined(details[(details["track"] == track)
                                                        & (details["claim"] == claim.id)])})
    summary.append({"track": "both", "claim": "C8", "text": C8.text, "paper": C8.paper,
                    **_combined(details[details["claim"] == "C8"])})
    return details, pd.DataFrame(summary)


def _combined(mine: pd.DataFrame) -> dict:
    ours = "; ".join(
        f"{r.score}: {r.a} - {r.b} = {Interval(r.difference, r.lo, r.hi, r.seeds).text()} "
        f"({r.seeds} seeds)" for r in mine.itertuples() if r.seeds > 0) or "rows not run"
    return {"ours": ours, "verdict": combine(list(mine["verdict"])),
            "comparisons": tally(list(mine["verdict"]))}


def claims_markdown(details: pd.DataFrame, summary: pd.DataFrame, cfg: ClaimsConfig,
                    dataset: str, short) -> str:
    """claims.md: the rule, the verdicts of both tracks side by side, C8, then every
    comparison. `short` names rows."""
    lines = [
        f"# The paper's claims on `{dataset}`: verdicts over seeds, in two tracks", "",
        "Rule (fixed in params.yaml before the runs, `pxby_lib/claims.py`, "
        "`pxby_lib/stats.py`): for each pair of rows A, B, the paired difference A - B over "
        f"seeds (positive favours A; for NLL lower is better) with a {cfg.confidence:.0%} t "
        "interval. A claim that A is better: supported if the interval is above 0, "
        "contradicted if below 0, equivalent if it lies within +-margin, else inconclusive, "
        "or below resolution where the paper's published BLEU effect is smaller than the "
        "minimal detectable difference of the seeds (MDD, 80 % power). A claim of no "
        "difference: supported if the interval lies within +-margin, contradicted if it lies "
        "outside, else inconclusive. Margins: held-out centre accuracy "
        f"{cfg.margin_centre_acc}, held-out next-token NLL {cfg.margin_next_nll} nats and "
        f"accuracy {cfg.margin_next_acc}, paper BLEU {cfg.margin_bleu}. Fewer than "
        f"{cfg.min_seeds} seeds on a side: no verdict. A claim combines its comparisons: one "
        "word if they agree, else mixed. C6 uses the held-out scores only. Paper track: the "
        "Table 1 rows, trained on one target per sample; every-position track: their causal "
        "twins trained on every position.", "",
        "| claim | paper's evidence | paper track | every-position track |", "|---|---|---|---|",
    ]
    by = {(s.track, s.claim): s for s in summary.itertuples()}
    for claim in CLAIMS:
        cells = []
        for track in TRACKS:
            s = by.get((track, claim.id))
            cells.append(f"**{s.verdict}** ({s.comparisons})" if s is not None else "-")
        lines.append(f"| {claim.id}: {claim.text} | {claim.paper} | {cells[0]} | {cells[1]} |")
    c8 = by.get(("both", "C8"))
    if c8 is not None:
        lines += ["", f"C8 ({C8.text}): **{c8.verdict}** ({c8.comparisons})."]
    lines += ["", "## Every comparison", "",
              "| track | claim | A | B | score | seeds | A vs B, + favours A [95% CI] | MDD | verdict |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in details.itertuples():
        diff = Interval(r.difference, r.lo, r.hi, r.seeds).text() if r.seeds else "-"
        mdd = f"{r.mdd:.3f}" if not math.isnan(r.mdd) else "-"
        lines.append(f"| {r.track} | {r.claim} | {short(r.a)} | {short(r.b)} | {r.score} | "
                     f"{r.seeds} | {diff} | {mdd} | {r.verdict}"
                     f"{' (' + r.note + ')' if r.note else ''} |")
    for track in TRACKS:
        c7 = by.get((track, "C7"))
        if c7 is not None:
            lines += ["", f"C7 (parameter counts, {TRACKS[track]}): {c7.ours}."]
    return "\n".join(lines) + "\n"

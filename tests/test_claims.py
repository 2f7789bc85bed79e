"""Claims: every comparison scored over seeds and combined into one verdict per claim."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pxby_lib.claims import BEST_BASELINE, CLAIMS, REF, combine, evaluate_claims, tally
from pxby_lib.config import ClaimsConfig

ROWS = sorted({r for c in CLAIMS for pair in c.pairs for r in pair} - {BEST_BASELINE})
CFG = ClaimsConfig()


def scores(shift: dict[str, float], seeds=(0, 1, 2), noise=0.002) -> pd.DataFrame:
    """Runs of every row: the reference at 0.30 / 0.75, others shifted, tiny seed noise."""
    rng = np.random.default_rng(0)
    lines = []
    for row in ROWS + ["baselines/copy", "baselines/count_window"]:
        for s in seeds if not row.startswith("ssm_bi_pxby_conv_d81_s64_l2") else (0,):
            base = shift.get(row, 0.0)
            lines.append({"row": row, "seed": s, "centre_acc": 0.30 + base + rng.normal(0, noise),
                          "bleu": 0.75 + base + rng.normal(0, noise)})
    return pd.DataFrame(lines)


def test_claims_follow_the_differences_they_are_built_from():
    shift = {"rnn_bi_center_d81_s64_l2": -0.05,  # C1: PxBy clearly better
             "rnn_bi_pxby_noconv_d81_s64_l2": +0.05,  # C2: the conv clearly hurts
             "baselines/copy": 0.10, "baselines/count_window": 0.20}  # C6: baselines win
    params = {r: 50_000 for r in ROWS} | {"ssm_uni_pxby_conv_d81_s64_l2": 160_000}
    details, summary = evaluate_claims(scores(shift), ROWS, ["baselines/copy", "baselines/count_window"],
                                       params, CFG)
    verdicts = dict(zip(summary["claim"], summary["verdict"], strict=True))
    assert verdicts["C1"] == "supported"
    assert verdicts["C2"] == "contradicted"
    assert verdicts["C5"] == "supported"  # the variants equal the reference within the margin
    assert verdicts["C6"] == "contradicted"  # every row below the best baseline
    # the tally counts the comparisons behind a verdict: C6 has one per row and score,
    # the single-seed rows' without a verdict
    c6 = details[details["claim"] == "C6"]["verdict"].value_counts()
    assert summary.set_index("claim").loc["C6", "comparisons"] == tally(list(details.loc[
        details["claim"] == "C6", "verdict"]))
    assert f"{c6['contradicted']} contradicted" in summary.set_index("claim").loc["C6", "comparisons"]
    assert verdicts["C7"] == "contradicted" and "true of" in summary.set_index("claim").loc["C7", "ours"]
    # a row with one seed gets no verdict, and the table says why
    ssm = details[details["a"] == "ssm_bi_pxby_conv_d81_s64_l2"]
    assert (ssm["verdict"] == "no verdict").all() and ssm["note"].str.contains("1 common seed").all()
    # C6 compares with the best baseline of each score: count_window here
    assert set(details.loc[details["claim"] == "C6", "b"]) == {"baselines/count_window"}
    c1 = details[(details["claim"] == "C1") & (details["score"] == "paper-protocol BLEU")].iloc[0]
    assert c1["a"] == REF and c1["seeds"] == 3 and c1["lo"] > 0 and abs(c1["difference"] - 0.05) < 0.01


def test_missing_rows_and_combination():
    details, summary = evaluate_claims(scores({}), [REF], [], {REF: 78_633}, CFG)
    assert (details["verdict"] == "no verdict").all()
    assert set(summary.loc[summary["claim"] != "C7", "verdict"]) == {"no verdict"}
    assert combine(["supported", "no verdict", "supported"]) == "supported"
    assert combine(["supported", "inconclusive"]) == "mixed"
    assert combine(["no verdict"]) == "no verdict"
    assert tally(["supported", "inconclusive", "supported", "no verdict"]) == (
        "2 supported, 1 inconclusive, 1 no verdict")

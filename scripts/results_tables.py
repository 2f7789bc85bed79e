"""The results tables of the README and docs/results.md, printed from the report files.

    python scripts/results_tables.py table1 pokemon   # docs/results.md, Pokemon
    python scripts/results_tables.py verdicts         # the README's verdict table

Numbers are the reports' own (reports/<ds>/table1.csv, claims.md): tests/test_project.py
checks that the README and docs/results.md quote exactly what this prints.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pxby_lib.claims import CLAIMS  # noqa: E402
from pxby_lib.report import short_name  # noqa: E402

CLAIM_WORDS = {"C1": "C1 PxBy beats the centre embedding", "C2": "C2 the convolution in PxByEmbed helps",
               "C3": "C3 bidirectional slightly better", "C4": "C4 RNNs beat SSM and Attention",
               "C5": "C5 D, state size and depth matter little",
               "C6": "C6 the models beat what the window gives for free",
               "C7": "C7 under 100k parameters"}


def _interval(row: pd.Series, score: str) -> str:
    if pd.isna(row[f"{score}_mean"]):
        return "n/a"
    if pd.isna(row[f"{score}_lo"]):
        return f"{row[f'{score}_mean']:.3f}"
    return f"{row[f'{score}_mean']:.3f} [{row[f'{score}_lo']:.3f}, {row[f'{score}_hi']:.3f}]"


def table1(ds: str) -> str:
    """Every row and baseline of reports/<ds>/table1.csv: seeds, epochs, the four verdict scores."""
    frame = pd.read_csv(ROOT / "reports" / ds / "table1.csv")
    lines = ["| row | seeds | epochs (capped) | paper BLEU | held-out centre acc | next-token NLL "
             "| next-token acc | one-step acc % |", "|---|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        baseline = r.row.startswith("baselines/")
        name = f"*{short_name(r.row)}*" if baseline else short_name(r.row) + ("" if r.seeds >= 3 else " †")
        epochs = "-" if baseline else f"{r.epochs} ({int(r.capped)} of {int(r.seeds)})"
        lines.append(f"| {name} | {int(r.seeds)} | {epochs} | {_interval(r, 'bleu')} | "
                     f"{_interval(r, 'centre_acc')} | {_interval(r, 'next_nll')} | "
                     f"{_interval(r, 'next_acc')} | {r.one_step_acc_mean:.1f} |")
    return "\n".join(lines)


def verdicts() -> str:
    """C1-C8 per dataset and track, quoted from reports/<ds>/claims.md."""
    cells = {}
    for ds in ("pokemon", "emoji"):
        for line in (ROOT / "reports" / ds / "claims.md").read_text().splitlines():
            if m := re.match(r"\| (C\d): [^|]*\| [^|]*\| (\*\*[a-z ]+\*\*[^|]*)\| (\*\*[a-z ]+\*\*[^|]*)\|", line):
                cells[ds, "last", m[1]], cells[ds, "every", m[1]] = m[2].strip(), m[3].strip()
            if m := re.match(r"C8 \(.*\): (\*\*[a-z ]+\*\* \(.*\))\.", line):
                cells[ds, "C8"] = m[1]
    lines = ["| claim | paper's evidence | Pokemon, paper track | Pokemon, every position | "
             "emoji, paper track | emoji, every position |", "|---|---|---|---|---|---|"]
    for c in CLAIMS:
        lines.append(f"| {CLAIM_WORDS[c.id]} | {c.paper} | " + " | ".join(
            cells[ds, track, c.id] for ds in ("pokemon", "emoji") for track in ("last", "every")) + " |")
    lines.append(f"| C8 the paper's training beats its every-position twin | not in the paper | - | "
                 f"{cells['pokemon', 'C8']} | - | {cells['emoji', 'C8']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "table1" and len(sys.argv) == 3:
        print(table1(sys.argv[2]))
    elif what == "verdicts":
        print(verdicts())
    else:
        sys.exit("usage: python scripts/results_tables.py table1 <dataset> | verdicts")

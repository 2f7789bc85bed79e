"""Wall time of every pipeline stage of the last `dvc repro`, per stage and per group.

    python scripts/stage_timings.py [--start EPOCH_SECONDS] [reports/notebooks]

The executed notebooks hold no timings (pxby_lib.notebooks strips them, so that a re-run
with the same results leaves git clean); `dvc repro` runs one stage at a time, so each
stage's wall time is the time between its executed notebook being written and the one
before it (`--start`: when the repro began, for the first stage). DVC's own work between
stages is counted in the stage after it. Per-run training seconds are in timings/.
"""

import argparse
from collections import defaultdict
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("root", nargs="?", default="reports/notebooks")
parser.add_argument("--start", type=float, help="epoch seconds when dvc repro started")
args = parser.parse_args()
notebooks = sorted(Path(args.root).rglob("*.ipynb"), key=lambda p: p.stat().st_mtime)
if not notebooks:
    raise SystemExit(f"no executed notebooks under {args.root}: run dvc repro first")
previous = args.start if args.start is not None else notebooks[0].stat().st_mtime
rows, groups = [], defaultdict(float)
for path in notebooks:
    stage = path.relative_to(args.root).with_suffix("").as_posix()
    written = path.stat().st_mtime
    seconds, previous = written - previous, written
    rows.append((stage, seconds))
    groups[stage.rsplit("/", 1)[0]] += seconds
width = max(len(s) for s, _ in rows)
print(f"| {'stage'.ljust(width)} | seconds |\n|{'-' * (width + 2)}|---------|")
for stage, seconds in rows:
    print(f"| {stage.ljust(width)} | {seconds:7.0f} |")
print("\n| group | minutes |\n|---|---|")
for group, seconds in groups.items():
    print(f"| {group} | {seconds / 60:.1f} |")
print(f"| total | {sum(groups.values()) / 60:.1f} |")

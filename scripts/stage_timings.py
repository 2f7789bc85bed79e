"""Wall time of every pipeline stage, per stage and per group, from the stages' own records.

    python scripts/stage_timings.py [timings] [--params params.yaml]

Every stage writes a timing record as one of its outputs (`pxby_lib.runs.write_timing`):
timings/<dataset>/<stage>.json (prepare, baselines, complete, report; the tour writes none) or
timings/<dataset>/<stage>/<row>.json (train, evaluate), with the stage's wall seconds and
each run's (the stage's own work inside its notebook: starting the notebook's kernel
adds about 10 s per stage, not counted). They are in git, so this works on a fresh clone after `dvc pull`. A record is
rewritten only when its stage's outputs change: the times are those of the runs that made
today's outputs (which may be different machines; the records name their CPU). Records
written before stage wall times were kept give the sum of their runs' seconds instead,
marked "runs". Records of stages that params.yaml no longer defines (a dataset or run
removed: their records persist) are listed apart and left out of the totals.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("root", nargs="?", default="timings", type=Path)
parser.add_argument("--params", default="params.yaml", help="which stages exist (its datasets and runs)")
args = parser.parse_args()
from pxby_lib.config import load_config  # noqa: E402  (after argparse: --help stays fast)

config = load_config(args.params)
defined = {f"{k}@{d}" for d in config.datasets for k in ("prepare", "baselines", "complete", "report")}
defined |= {f"{k}@{r}" for r in config.runs for k in ("train", "evaluate")}
records = sorted(args.root.glob("*/*.json")) + sorted(args.root.glob("*/*/*.json"))
if not records:
    raise SystemExit(f"no timing records under {args.root}: run `dvc pull` or `dvc repro` first")
rows, groups, orphans = [], defaultdict(float), []
for path in records:
    record = json.loads(path.read_text())
    parts = path.relative_to(args.root).with_suffix("").parts  # (ds, stage) or (ds, stage, row)
    ds, stage = parts[0], parts[1]
    name = f"{stage}@{ds}" if len(parts) == 2 else f"{stage}@{ds}-{parts[2]}"
    seconds, how = record.get("stage_seconds"), "stage"
    if seconds is None:
        seconds, how = sum(r.get("seconds") or 0.0 for r in record.get("runs", {}).values()), "runs"
    if name not in defined:
        orphans.append(name)
        continue
    rows.append((name, seconds, how))
    groups[f"{stage}@{ds}"] += seconds
width = max(len(s) for s, _, _ in rows)
print(f"| {'stage'.ljust(width)} | seconds | measured |\n|{'-' * (width + 2)}|---------|----------|")
for name, seconds, how in rows:
    print(f"| {name.ljust(width)} | {seconds:7.0f} | {how} |")
print("\n| group | minutes |\n|---|---|")
for group, seconds in sorted(groups.items()):
    print(f"| {group} | {seconds / 60:.1f} |")
print(f"| total | {sum(groups.values()) / 60:.1f} |")
if orphans:
    print(f"\nnot in {args.params} (left out): {', '.join(orphans)}")

"""Wall time of every pipeline stage, read from the executed notebooks' papermill metadata.

    python scripts/stage_timings.py [reports/notebooks]
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/notebooks")
rows = []
for path in sorted(root.rglob("*.ipynb")):
    meta = json.loads(path.read_text())["metadata"].get("papermill", {})
    if meta.get("duration") is not None:
        stage = path.relative_to(root).with_suffix("").as_posix().replace("/", "@")
        rows.append((stage, meta["duration"]))
if not rows:
    raise SystemExit(f"no executed notebooks under {root}: run dvc repro first")
width = max(len(s) for s, _ in rows)
print(f"| {'stage'.ljust(width)} | seconds |\n|{'-' * (width + 2)}|---------|")
for stage, seconds in rows:
    print(f"| {stage.ljust(width)} | {seconds:7.1f} |")
print(f"| {'total'.ljust(width)} | {sum(s for _, s in rows):7.1f} |")

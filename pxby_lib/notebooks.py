"""Executed notebooks that change in git only when their results change.

papermill writes timings into an executed notebook (its start, end and duration, per cell
and in all) and the kernel's stderr (progress lines, warnings naming machine paths) into
its outputs. `strip` removes exactly those, so a stage re-run with the same results
writes the same bytes: the executed notebooks stay in git as readable records
(`reports/notebooks/`), and a forced re-run leaves `git status` clean. What a stage
printed to stderr went to the terminal while it ran (papermill --stderr-file).

    python -m pxby_lib.notebooks strip reports/notebooks/train/rnn.ipynb [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pxby_lib.atomic import write_text

VOLATILE_CELL_KEYS = ("execution", "papermill")
VOLATILE_PAPERMILL_KEYS = ("start_time", "end_time", "duration", "input_path", "output_path",
                           "environment_variables", "version")


def strip_notebook(nb: dict) -> dict:
    """The notebook without timings, stderr outputs, machine-specific metadata and random
    cell ids (numbered instead)."""
    meta = nb.get("metadata", {})
    papermill = meta.get("papermill")
    if isinstance(papermill, dict):
        for key in VOLATILE_PAPERMILL_KEYS:
            papermill.pop(key, None)
    for i, cell in enumerate(nb.get("cells", [])):
        if "id" in cell:  # random ids (nbformat gives papermill's injected cell a new one)
            cell["id"] = f"cell-{i:02d}"
        for key in VOLATILE_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"]
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return nb


def strip(path: str | Path) -> None:
    path = Path(path)
    nb = strip_notebook(json.loads(path.read_text(encoding="utf-8")))
    write_text(path, json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "strip":
        print("usage: python -m pxby_lib.notebooks strip NOTEBOOK [...]", file=sys.stderr)
        return 2
    for path in argv[1:]:
        strip(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

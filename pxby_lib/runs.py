"""Where the files of a run go, and its timing record.

A run is one (row, seed) of one dataset: seed k splits the items (`PxByDataset.split`),
seeds the weights, the shuffling and the dropout. The train stage of a row trains its
seeds (`train.train_row`), the evaluate stage scores them, the baselines stage fits and
scores every baseline per seed (`scoring`); each runs its seeds in parallel workers
(`jobs.run_jobs`).

Layout (ds = dataset name, row = a `models` row or `baselines/<name>`, k = seed):
  artifacts/ds/                      the prepared dataset
  models/ds/row/s<k>/                last.pt, best.pt, history.csv
  eval/ds/row/s<k>/                  chunks_paper.csv, chunks_heldout.csv, summary.json
  eval/ds/row/sample.png             a generated sample (first seed, first test item)
  metrics/ds/row.json                scores averaged over seeds (`dvc metrics show`)
  timings/ds/<stage>.json            prepare, baselines, report: how long the stage took
  timings/ds/<stage>/row.json        train, evaluate: the stage and each of its runs
  reports/ds/                        Table 1, claims, compute, curves, figures
  .resume/ds/row/s<k>/               resume state of an interrupted training run

A stage writes its timing record itself, as one of its DVC outputs (`write_timing`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pxby_lib.atomic import write_text


def dataset_dir(root: Path, ds: str) -> Path:
    return root / "artifacts" / ds


def model_dir(root: Path, ds: str, row: str, seed: int) -> Path:
    return root / "models" / ds / row / f"s{seed}"


def eval_dir(root: Path, ds: str, row: str, seed: int | None = None) -> Path:
    base = root / "eval" / ds / row
    return base if seed is None else base / f"s{seed}"


def metrics_path(root: Path, ds: str, row: str) -> Path:
    return root / "metrics" / ds / f"{row}.json"


def timing_path(root: Path, ds: str, stage: str, row: str | None = None) -> Path:
    base = root / "timings" / ds
    return base / f"{stage}.json" if row is None else base / stage / f"{row}.json"


def report_dir(root: Path, ds: str) -> Path:
    return root / "reports" / ds


def resume_dir(root: Path, ds: str, row: str, seed: int) -> Path:
    return root / ".resume" / ds / row / f"s{seed}"


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def write_timing(path: Path, outputs: list[Path], record: dict[str, Any]) -> None:
    """A stage's timing record (an output of the stage, `persist` in dvc.yaml).

    Seconds are not reproducible, so the record is rewritten only when the stage's
    `outputs` changed (their sha256 is kept in the record): a forced re-run that
    reproduces the same bytes keeps the timing of the run that first made them, and
    leaves dvc.lock and git unchanged."""
    digest = file_digest(*sorted(outputs))
    if read_timing(path).get("outputs_sha256") == digest:
        return
    record = {"outputs_sha256": digest, **record}
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_timing(path: Path) -> dict[str, Any]:
    """A timing record, or {} where there is none (or it is not JSON)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def files_under(*paths: Path) -> list[Path]:
    """Every file of `paths` (folders walked), for `write_timing`'s digest."""
    return [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]


def load_histories(root: Path, ds: str, row: str, seeds: tuple[int, ...]):
    """The training logs of a row's seeds, one frame with a `seed` column."""
    import pandas as pd

    frames = [pd.read_csv(model_dir(root, ds, row, s) / "history.csv").assign(seed=s)
              for s in seeds if (model_dir(root, ds, row, s) / "history.csv").is_file()]
    if not frames:
        raise FileNotFoundError(f"no history.csv under {root / 'models' / ds / row}: train it")
    return pd.concat(frames, ignore_index=True)

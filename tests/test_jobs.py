"""A stage's seeds in parallel worker processes give the bytes one process gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pxby_lib.jobs import plan, run_jobs


def test_plan_shares_the_cores_by_the_parameters_not_the_machine():
    assert plan(2, 3) == (2, 1)  # three seeds on two cores: two workers, one thread each
    assert plan(2, 1) == (1, 2)  # one seed: one worker with both threads
    assert plan(1, 3) == (1, 1)
    assert plan(8, 3) == (3, 2)


def _square(x: int) -> int:
    return x * x


def test_results_come_back_in_job_order():
    jobs = [{"x": x} for x in (3, 1, 2)]
    assert run_jobs(_square, jobs, workers=1, threads=1) == [9, 1, 4]


@pytest.mark.slow
def test_parallel_training_equals_sequential_byte_for_byte(tmp_path):
    """Two seeds trained in two spawned workers == the same two trained in this process."""
    from test_train import TINY, tiny_items

    from pxby_lib.config import TrainConfig
    from pxby_lib.dataset import META_COLUMNS
    from pxby_lib.train import train_job

    for root in ("seq", "par"):  # a prepared dataset of tiny items under each root
        ds = tmp_path / root / "artifacts" / "tiny"
        ds.mkdir(parents=True)
        items = tiny_items(8)
        np.save(ds / "windows.npy", np.concatenate(items))
        np.save(ds / "offsets.npy", np.concatenate([[0], np.cumsum([len(w) for w in items])]))
        pd.DataFrame([{"item": k, "id": k, "name": f"i{k}", "n_tokens": len(w), "n_text": 0,
                       "n_image": len(w), "height": 4, "width": 3} for k, w in enumerate(items)],
                     columns=META_COLUMNS).to_csv(ds / "items.csv", index=False)
    schedule = TrainConfig(seq_len=16, sample_stride=8, batch_size=4, max_epochs=2, eval_every=1).__dict__

    def jobs(root):
        return [dict(root=str(tmp_path / root), ds="tiny", row="r", model=TINY.to_dict(),
                     schedule=schedule, seed=s, test_fraction=0.25, device="cpu") for s in (0, 1)]

    seq = run_jobs(train_job, jobs("seq"), workers=1, threads=1)
    par = run_jobs(train_job, jobs("par"), workers=2, threads=1)
    for summary in seq + par:  # wall seconds differ; everything else must not
        assert summary.pop("timing")["seconds"] > 0
    assert seq == par
    for seed in (0, 1):
        for name in ("last.pt", "best.pt", "history.csv"):
            a = tmp_path / "seq" / "models" / "tiny" / "r" / f"s{seed}" / name
            b = tmp_path / "par" / "models" / "tiny" / "r" / f"s{seed}" / name
            assert a.read_bytes() == b.read_bytes(), (seed, name)

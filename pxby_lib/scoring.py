"""The evaluate stage: score a trained row's runs with both protocols, per seed.

`evaluate_row` scores every seed of a trained row (its `evaluate.checkpoint`). Per run it
writes per-chunk tables and a summary (`runs.eval_dir`), per row the scores averaged over
seeds (`runs.metrics_path`, what `dvc metrics show` lists), the generated sample Figure 1
and the gallery draw (`write_sample`), and the stage's timing record. The baselines stage
(`baselines.evaluate_baselines`) scores the baselines with the same `score_run`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pxby_lib import runs
from pxby_lib.atomic import write_text
from pxby_lib.config import EvaluateConfig, StageConfig

PAPER_SCORES = ("hamming", "cosine", "bleu")


def score_run(predictor, dataset, seed: int, test_fraction: float, ev, seq_len: int, device,
              out: Path) -> dict[str, Any]:
    """Both protocols and the held-out next-token metric (its context `seq_len` windows)
    for one run (a model or a baseline): per-chunk CSVs and a summary."""
    import torch

    from pxby_lib.evaluate import evaluate_heldout, evaluate_paper, select_items
    from pxby_lib.nexttoken import heldout_positions, next_token_scores

    items = dataset.items()
    _, test_ids = dataset.split(seed, test_fraction)
    paper_ids = select_items(len(dataset), ev.max_items, ev.subset_seed)
    kw = dict(prompt_len=ev.prompt_len, gen_len=ev.gen_len, chunk_stride=ev.chunk_stride,
              batch_size=ev.batch_size, device=device, incremental=ev.incremental)
    paper_chunks, paper = evaluate_paper(predictor, items, paper_ids, **kw)
    heldout_chunks, heldout = evaluate_heldout(predictor, items, test_ids, **kw)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "chunks_paper.csv", paper_chunks.to_csv(index=False))
    write_text(out / "chunks_heldout.csv", heldout_chunks.to_csv(index=False))
    test_items = [items[int(i)] for i in test_ids]
    positions = heldout_positions([len(w) for w in test_items], ev.next_positions, seed)
    per_position, next_token = next_token_scores(predictor, test_items, positions, seq_len,
                                                  torch.device(device))
    per_position["item"] = test_ids[per_position["item"].to_numpy()]  # dataset item ids
    write_text(out / "next_token.csv", per_position.to_csv(index=False, float_format="%.6g"))
    return {"seed": seed, "paper": paper, "heldout": heldout, "next_token": next_token}


def write_sample(model, dataset, seed: int, test_fraction: float, ev: EvaluateConfig, device,
                 out: Path) -> None:
    """The first test item of `seed`, generated as Figure 1 is (8 generated / 32 true tokens
    after the prompt): `sample.png` (original | generated, generated tokens marked) and
    `sample.json` (the ids and the mask, for the gallery)."""
    from pxby_lib.atomic import atomic_path
    from pxby_lib.render import continuation_picture

    _, test_ids = dataset.split(seed, test_fraction)
    windows = dataset.item(int(test_ids[0]))
    windows = windows[: ev.sample_len] if ev.sample_len else windows
    picture, ids, generated = continuation_picture(model, windows, device=device,
                                                   prompt_len=ev.prompt_len, incremental=ev.incremental)
    with atomic_path(out / "sample.png") as tmp:
        picture.save(tmp, format="PNG")
    write_text(out / "sample.json", json.dumps({"item": int(test_ids[0]), "seed": seed,
                                               "ids": ids.tolist(),
                                               "generated": generated.astype(int).tolist()}) + "\n")


def say_scores(run: str, summary: dict) -> None:
    from pxby_lib.runtime import say

    say(f"{run}: paper BLEU {summary['paper']['bleu_mean']:.3f} ({summary['paper']['n_chunks']} "
        f"chunks), held-out centre accuracy {summary['heldout']['centre_acc_mean']:.3f} "
        f"({summary['heldout']['n_items']} items)")


def write_summary(out: Path, summary: dict) -> None:
    from pxby_lib.evaluate import summary_to_json

    summary_to_json(summary, out / "summary.json")


def evaluate_job(root: str, ds: str, row: str, seed: int, test_fraction: float, evaluate: dict,
                 seq_len: int, device: str, sample: bool) -> dict[str, Any]:
    """Score one trained (row, seed) run with both protocols."""
    from pxby_lib.checkpoint import load_model
    from pxby_lib.dataset import load_dataset
    from pxby_lib.runtime import numerics_record, resolve_device

    root_path, ev = Path(root), EvaluateConfig(**evaluate)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    model, meta = load_model(runs.model_dir(root_path, ds, row, seed) / f"{ev.checkpoint}.pt", device=dev)
    dataset = load_dataset(runs.dataset_dir(root_path, ds))
    out = runs.eval_dir(root_path, ds, row, seed)
    summary = score_run(model, dataset, seed, test_fraction, ev, seq_len, dev, out)
    last = meta["history"][-1]
    summary.update(one_step={"test_loss": last["test_loss"], "test_accuracy": last["test_accuracy"]},
                   checkpoint=ev.checkpoint, epoch=int(meta["epoch"]), steps=int(meta["steps"]),
                   stopped_by=meta["stopped_by"])
    write_summary(out, summary)
    say_scores(f"{row} s{seed}", summary)
    if sample:
        write_sample(model, dataset, seed, test_fraction, ev, dev, runs.eval_dir(root_path, ds, row))
    summary["timing"] = {"seconds": time.perf_counter() - t0, "device": str(dev), **numerics_record()}
    return summary


def evaluate_row(root: Path, cfg: StageConfig) -> list[dict]:
    """Score every seed of the stage's trained row. Generation runs one thread per worker:
    its small products are slower on two (measured 50x on a busy 2-core machine)."""
    from pxby_lib.jobs import plan, run_jobs

    row, ds, t0 = cfg.row, cfg.dataset_name, time.perf_counter()
    workers, _ = plan(cfg.compute.cores, len(row.seeds))
    jobs = [dict(root=str(root), ds=ds, row=row.name, seed=s,
                 test_fraction=cfg.dataset.test_fraction, evaluate=asdict(cfg.evaluate),
                 seq_len=cfg.train.seq_len, device=cfg.compute.device, sample=i == 0)
            for i, s in enumerate(row.seeds)]
    summaries = run_jobs(evaluate_job, jobs, workers, threads=1)
    timings = {f"s{s['seed']}": s.pop("timing") for s in summaries}
    write_metrics(root, ds, row.name, summaries)
    runs.write_timing(runs.timing_path(root, ds, "evaluate", row.name),
                      runs.files_under(runs.eval_dir(root, ds, row.name)),
                      {"stage_seconds": time.perf_counter() - t0, "workers": workers, "runs": timings})
    return summaries


def seed_mean_scores(summaries: list[dict]) -> dict[str, Any]:
    """The scores of a row averaged over its seeds, and nothing else: what `dvc metrics
    show` lists (short keys, so that a row fits in 200 columns). paper: the paper
    protocol; heldout: centre accuracy overall / on pixels / on caption text, character
    BLEU, next-token NLL (nats) and accuracy; next: one-step test accuracy (%) and loss of
    the training log. Counts, seeds, settings and the per-modality scores are in the
    per-run summaries (eval/<ds>/<row>/s<k>/summary.json)."""
    def mean(values):
        values = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.mean(values)) if values else None

    heldout = {"centre": "centre_acc", "pixel": "pixel_acc", "text": "text_acc", "text_bleu": "text_bleu"}
    return {
        "paper": {m: mean([s["paper"][f"{m}_mean"] for s in summaries]) for m in PAPER_SCORES},
        "heldout": {**{k: mean([s["heldout"][f"{m}_mean"] for s in summaries]) for k, m in heldout.items()},
                    "next_nll": mean([s["next_token"]["nll"] for s in summaries]),
                    "next_acc": mean([s["next_token"]["acc"] for s in summaries])},
        "next": {"acc": mean([s["one_step"]["test_accuracy"] for s in summaries]),
                 "loss": mean([s["one_step"]["test_loss"] for s in summaries])},
    }


def write_metrics(root: Path, ds: str, row: str, summaries: list[dict]) -> dict[str, Any]:
    from pxby_lib.evaluate import summary_to_json

    scores = seed_mean_scores(summaries)
    summary_to_json(scores, runs.metrics_path(root, ds, row))
    return scores

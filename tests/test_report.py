"""The report stage on a tiny real pipeline run in-process (the smoke profile's settings):
Table 1 with baselines and intervals, the claims, the compute table, curves, figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pxby_lib import baselines, complete, report, scoring
from pxby_lib.config import stage_config
from pxby_lib.prepare import prepare_dataset
from pxby_lib.runs import dataset_dir, report_dir, timing_path
from pxby_lib.train import train_row

ROOT = Path(__file__).resolve().parents[1]
PARAMS, PROFILE = ROOT / "params.yaml", ROOT / "profiles" / "smoke.yaml"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, raw_data) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    data = stage_config("prepare", PARAMS, PROFILE, dataset="pokemon").dataset
    prepare_dataset(raw_data, dataset_dir(root, "pokemon"), max_size=data.max_size,
                    max_chars=data.max_chars, limit_items=data.limit_items)
    baselines.evaluate_baselines(root, stage_config("baselines", PARAMS, PROFILE, dataset="pokemon"))
    for row in stage_config("report", PARAMS, PROFILE, dataset="pokemon").rows:
        train_row(root, stage_config("train", PARAMS, PROFILE, dataset="pokemon", row=row.name))
        scoring.evaluate_row(root, stage_config("evaluate", PARAMS, PROFILE, dataset="pokemon",
                                                row=row.name))
    complete.complete_dataset(root, stage_config("complete", PARAMS, PROFILE, dataset="pokemon"))
    return root


@pytest.mark.slow
def test_report_writes_every_artifact_from_the_runs(pipeline, tmp_path):
    cfg = stage_config("report", PARAMS, PROFILE, dataset="pokemon")
    written = report.write_report(pipeline, cfg)
    out = report_dir(pipeline, "pokemon")
    assert written["table1"] == out / "table1.md"
    for name in ("table1.md", "table1.csv", "table1.tex", "claims.md", "claims.csv", "compute.md",
                 "curves.csv", "completions.md", "figures/figure1_generation.png",
                 "figures/figure1_interleaved.png", "figures/figure2_training.png",
                 "figures/gallery.png", "figures/completions_paper.png",
                 "figures/completions_every.png", "figures/completions_baseline.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table1.csv")
    rows = [r.name for r in cfg.rows]
    names = [f"baselines/{n}" for n in cfg.baselines.names]
    assert table["row"].tolist() == rows + names  # the baselines under the rows
    assert table.loc[table.row.isin(names), "params"].isna().all()  # no parameter count
    three = table.set_index("row").loc["rnn_bi_pxby_conv_d81_s64_l2"]
    assert three.seeds == 3 and three.bleu_lo <= three.bleu_mean <= three.bleu_hi
    md = written["table1"].read_text()
    assert "†" in md  # the 1-seed row shows an item-bootstrap interval, marked
    assert "*baseline count_window*" in md and "(3 of 3 capped)" in md
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims["claim"]) == {"C1", "C2", "C3", "C4", "C5", "C6", "C8"}
    assert set(claims["track"]) == {"last", "every", "both"}
    assert "no verdict" in set(claims["verdict"])  # rows not run in this profile
    assert (claims.loc[claims.seeds >= 3, "verdict"] != "no verdict").all()
    assert set(claims["score"]) == {"held-out centre accuracy", "held-out next-token NLL",
                                    "held-out next-token accuracy", "paper-protocol BLEU"}
    assert claims.loc[claims.seeds >= 3, "mdd"].gt(0).all()
    text = written["claims"].read_text()
    assert "Rule (fixed in params.yaml" in text and "C7 (parameter counts" in text
    assert "| paper track | every-position track |" in text and "C8 (" in text
    assert "| next-token NLL | next-token acc |" in md  # the held-out next-token metric
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == ["run", "row", "seed", "family", "epoch", "test_loss", "test_accuracy"]
    assert curves["run"].nunique() == sum(len(r.seeds) for r in cfg.rows)
    compute = (out / "compute.md").read_text()
    assert "| threads |" in compute and "AVX2" in compute
    train_seconds = pd.read_csv(out / "table1.csv").set_index("row")["train_seconds_mean"]
    assert (train_seconds.loc[rows] > 0).all()  # read from the train stages' timing records
    with Image.open(out / "figures" / "gallery.png") as im:
        assert im.width > 600 and im.height > 200  # the original and 5 samples
    completions = (out / "completions.md").read_text()
    for track in ("paper", "every", "baseline"):  # each track's picked row, both modes
        assert f"| {track} |" in completions
    assert completions.count("| greedy |") == 3 and completions.count("| sampled |") == 3
    with Image.open(out / "figures" / "figure1_generation.png") as im:
        assert im.width > 6 * 150  # the truth and six completions side by side


@pytest.mark.slow
def test_the_report_reads_tables_and_samples_not_checkpoints(pipeline, tmp_path):
    """No hidden edges: Figure 1 and the gallery draw the samples the evaluate stages
    wrote; without a single checkpoint the report comes out the same."""
    import shutil

    cfg = stage_config("report", PARAMS, PROFILE, dataset="pokemon")
    copy = tmp_path / "copy"
    shutil.copytree(pipeline, copy)
    for checkpoint in copy.rglob("*.pt"):
        checkpoint.unlink()
    written = report.write_report(copy, cfg)
    reference = report.write_report(pipeline, cfg)
    for name in ("figure1_generation", "figure1_interleaved", "gallery", "completions_every",
                 "completions", "table1"):
        assert written[name].read_bytes() == reference[name].read_bytes(), name


@pytest.mark.slow
def test_the_report_is_deterministic_and_timings_keep_the_first_run(pipeline, tmp_path):
    import shutil

    cfg = stage_config("report", PARAMS, PROFILE, dataset="pokemon")
    out = report_dir(pipeline, "pokemon")
    report.write_report(pipeline, cfg)
    shutil.copytree(out, tmp_path / "a")
    report.write_report(pipeline, cfg)
    for f in sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()):
        assert (tmp_path / "a" / f).read_bytes() == (out / f).read_bytes(), f
    # re-training a row with the same settings reproduces its bytes, so its stage's timing
    # record (how long the runs that made them took) is kept, not rewritten
    record = timing_path(pipeline, "pokemon", "train", "rnn_bi_center_d81_s64_l2")
    before = record.read_bytes()
    train_row(pipeline, stage_config("train", PARAMS, PROFILE, dataset="pokemon",
                                     row="rnn_bi_center_d81_s64_l2"))
    assert record.read_bytes() == before
    timing = json.loads(before)
    assert timing["stage_seconds"] > 0 and timing["runs"]["s0"]["seconds"] > 0
    assert set(timing["runs"]) == {"s0", "s1", "s2"}

"""The report stage: Table 1, the claims, the compute table, the curves, the figures.

Inputs are tracked outputs of the other stages (`runs` says where they lie): every run's
evaluation summary, per-chunk tables and generated sample, its training log, the timing
records of the train and evaluate stages, the baselines' summaries, the dataset; and the
package's own copy of the paper's Table 1 (`paper_table1.csv`). It loads no model and
generates nothing: the figures draw what the evaluate and complete stages wrote.
`write_report` writes, into reports/<ds>/: table1.{md,csv,tex}, claims.{md,csv},
completions.md, compute.md, curves.csv and figures/ (Figure 1: completions of a test
sprite; one gallery of completions per track; the paper's interleaved Figure 1; Figure 2).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from pxby_lib import runs
from pxby_lib.atomic import write_text
from pxby_lib.claims import claims_markdown, evaluate_claims
from pxby_lib.completion_report import completion_figures, completions_markdown
from pxby_lib.config import StageConfig
from pxby_lib.figures import FAMILY_OF
from pxby_lib.stats import Interval, item_bootstrap, seed_interval

METRICS = ("hamming", "cosine", "bleu")
HELDOUT = ("centre_acc", "pixel_acc", "text_acc")


def paper_table() -> pd.DataFrame:
    """The published Table 1 (spec section 12), from the package's own copy."""
    with resources.files("pxby_lib").joinpath("paper_table1.csv").open() as f:
        return pd.read_csv(f, dtype={"conv": str})


def paper_key(cfg: dict) -> tuple:
    """The (type, direction, embedding, conv, D, state, depth) key of a model config."""
    family = FAMILY_OF[cfg["family"]]
    direction = "-" if family.startswith("Att") else ("Bi" if cfg["bidirectional"] else "Uni")
    embedding = "PxBy" if cfg["embedding"] == "pxby" else "Center"
    return (family, direction, embedding, "Y" if cfg["conv"] else "N",
            int(cfg["d_model"]), int(cfg["d_state"]), int(cfg["depth"]))


WORDS = {"rnn": "RNN", "ssm": "SSM", "att": "Att", "attc": "Att causal", "bi": "Bi", "uni": "Uni",
         "pxby": "PxBy", "center": "Center", "conv": "conv", "noconv": "no-conv",
         "every": "(every position)"}


def short_name(row: str) -> str:
    """A row in a few words: 'RNN Bi PxBy conv D81 state 64 depth 2', 'baseline copy'."""
    if row.startswith("baselines/"):
        return "baseline " + row.split("/", 1)[1]
    words = []
    for w in row.split("_"):
        if w in WORDS:
            words.append(WORDS[w])
        elif w[:1] in "dsl" and w[1:].isdigit():
            words.append({"d": f"D{w[1:]}", "s": f"state {w[1:]}", "l": f"depth {w[1:]}"}[w[0]])
        else:
            words.append(w)
    return " ".join(words)


# ----------------------------------------------------------------------------- collecting


def collect_runs(root: Path, ds: str, rows: dict[str, tuple[int, ...]]) -> pd.DataFrame:
    """One line per run (row, seed) that has an evaluation summary: its scores, how its
    training ended, its timing. `rows`: row (a model row or baselines/<name>) -> seeds."""
    lines = []
    for row, seeds in rows.items():
        for seed in seeds:
            path = runs.eval_dir(root, ds, row, seed) / "summary.json"
            if not path.is_file():
                continue
            s = json.loads(path.read_text())
            line = {"row": row, "seed": seed, "baseline": row.startswith("baselines/"),
                    "diagnostic": bool(s.get("diagnostic", False))}
            for m in METRICS:
                line[m] = s["paper"][f"{m}_mean"]
                line[f"{m}_std"] = s["paper"][f"{m}_std"]
            line["paper_chunks"], line["paper_items"] = s["paper"]["n_chunks"], s["paper"]["n_items"]
            for m in (*HELDOUT, "text_bleu"):
                line[m] = s["heldout"][f"{m}_mean"]
            line["heldout_chunks"], line["heldout_items"] = s["heldout"]["n_chunks"], s["heldout"]["n_items"]
            next_token = s.get("next_token", {})  # the held-out next-token metric (nexttoken)
            line["next_nll"] = next_token.get("nll", math.nan)
            line["next_acc"] = next_token.get("acc", math.nan)
            line["next_positions"] = next_token.get("n_positions", 0)
            line["one_step_acc"] = s["one_step"]["test_accuracy"]
            line["one_step_loss"] = s["one_step"]["test_loss"]
            line["epochs"], line["steps"] = s.get("epoch"), s.get("steps")
            line["stopped_by"] = s.get("stopped_by")
            stage = "baselines" if line["baseline"] else "evaluate"
            name = f"{row.split('/', 1)[-1]} s{seed}" if line["baseline"] else f"s{seed}"
            train_t = runs.read_timing(runs.timing_path(root, ds, "train", row)).get("runs", {}).get(f"s{seed}", {})
            eval_t = runs.read_timing(runs.timing_path(root, ds, stage, None if line["baseline"] else row)
                                      ).get("runs", {}).get(name, {})
            line["train_seconds"] = train_t.get("seconds")
            line["eval_seconds"] = eval_t.get("seconds")
            for key in ("device", "torch", "threads", "cpu_capability"):
                line[key] = train_t.get(key, eval_t.get(key))
            lines.append(line)
    return pd.DataFrame(lines)


def collect_histories(root: Path, ds: str, rows: dict[str, tuple[int, ...]],
                      families: dict[str, str]) -> pd.DataFrame:
    frames = []
    for row, seeds in rows.items():
        for seed in seeds:
            path = runs.model_dir(root, ds, row, seed) / "history.csv"
            if path.is_file():
                frames.append(pd.read_csv(path).assign(row=row, seed=seed, family=families[row]))
    if not frames:
        raise FileNotFoundError(f"no history.csv under {root / 'models' / ds}: run the train stages")
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- tables


def _fmt(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _pm(mean, std) -> str:
    return "n/a" if mean is None or (isinstance(mean, float) and math.isnan(mean)) else f"{mean:.3f} ± {std:.3f}"


def _over_seeds(root: Path, ds: str, runs_: pd.DataFrame, row: str, score: str,
                protocol: str, cfg) -> tuple[str, Interval]:
    """A row's score over seeds: mean [t interval over seeds] with >= min_seeds seeds,
    else the single run's mean [item-bootstrap interval] marked with a dagger."""
    mine = runs_[runs_["row"] == row]
    if mine[score].isna().all():
        return "n/a", Interval(math.nan, math.nan, math.nan, 0)
    if len(mine) >= cfg.min_seeds:
        iv = seed_interval(list(mine[score]), cfg.confidence)
        return f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]", iv
    seed = int(mine["seed"].iloc[0])
    name = "next_token.csv" if protocol == "next_token" else f"chunks_{protocol}.csv"
    chunks = pd.read_csv(runs.eval_dir(root, ds, row, seed) / name)
    iv = item_bootstrap(chunks, score, cfg.bootstrap, cfg.bootstrap_seed, cfg.confidence)
    return f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]†", iv


def table1(root: Path, cfg: StageConfig, runs_: pd.DataFrame, parameters: dict[str, int]) -> tuple[pd.DataFrame, str]:
    """Table 1 as a frame (every number, table1.csv) and as markdown (two tables)."""
    published = paper_table()
    published["key"] = list(zip(published.type, published.direction, published.embedding,
                                published.conv, published.input_dim, published.hidden_state,
                                published.depth, strict=True))
    ds = cfg.dataset_name
    claims = cfg.claims
    rows = [r.name for r in cfg.rows if (runs_["row"] == r.name).any()]
    baselines = [f"baselines/{n}" for n in cfg.baselines.names if (runs_["row"] == f"baselines/{n}").any()]
    records, first, second = [], [], []
    for row in rows + baselines:
        mine = runs_[runs_["row"] == row].sort_values("seed")
        seed0 = mine.iloc[0]
        rec = {"row": row, "seeds": len(mine), "first_seed": int(seed0.seed)}
        if row in cfg.models:
            model = cfg.models[row].model.to_dict()
            key = paper_key(model)
            rec.update(dict(zip(("type", "dir", "emb", "conv", "D", "state", "depth"), key, strict=True)))
            rec["params"] = parameters[row]
            match = published[published.key == key]
            if cfg.models[row].objective != "last":  # not the paper's training: no published twin
                match = match.iloc[0:0]
            for col in ("params_reference",) + tuple(f"{m}_{s}" for m in METRICS for s in ("mean", "std")):
                rec[f"paper_{col}"] = match[col].iloc[0] if len(match) else np.nan
            rec["epochs"] = ", ".join(str(int(e)) for e in mine["epochs"])
            rec["capped"] = int((mine["stopped_by"] == "cap").sum())
            rec["steps_mean"] = float(mine["steps"].mean())
            rec["train_seconds_mean"] = float(mine["train_seconds"].mean()) if mine["train_seconds"].notna().any() else np.nan
        for m in METRICS:
            rec[f"{m}_seed{int(seed0.seed)}"], rec[f"{m}_std_seed{int(seed0.seed)}"] = seed0[m], seed0[f"{m}_std"]
        text = {}
        for score, protocol in (("bleu", "paper"), ("centre_acc", "heldout"), ("pixel_acc", "heldout"),
                                ("text_acc", "heldout"), ("next_nll", "next_token"),
                                ("next_acc", "next_token")):
            text[score], iv = _over_seeds(root, ds, runs_, row, score, protocol, claims)
            rec[f"{score}_mean"], rec[f"{score}_lo"], rec[f"{score}_hi"] = iv.mean, iv.lo, iv.hi
        rec["one_step_acc_mean"] = float(mine["one_step_acc"].mean())
        records.append(rec)
        name = short_name(row)
        if row in cfg.models:
            first.append([name, rec["params"], *[_pm(seed0[m], seed0[f"{m}_std"]) for m in METRICS],
                          *[_pm(rec[f"paper_{m}_mean"], rec[f"paper_{m}_std"]) for m in METRICS]])
            stop = f"{rec['epochs']} ({rec['capped']} of {len(mine)} capped)"
            second.append([name, cfg.models[row].objective, len(mine), stop,
                           f"{rec['steps_mean']:.0f}", _fmt(rec["train_seconds_mean"], 0),
                           text["bleu"], text["centre_acc"], text["pixel_acc"], text["text_acc"],
                           text["next_nll"], text["next_acc"], f"{rec['one_step_acc_mean']:.1f}"])
        else:
            first.append([f"*{name}*", "-", *[_pm(seed0[m], seed0[f"{m}_std"]) for m in METRICS],
                          "-", "-", "-"])
            second.append([f"*{name}*", "-", len(mine), "-", "-", "-", text["bleu"],
                           text["centre_acc"], text["pixel_acc"], text["text_acc"],
                           text["next_nll"], text["next_acc"], f"{rec['one_step_acc_mean']:.1f}"])
    frame = pd.DataFrame(records)
    n = runs_.iloc[0]
    md = [
        f"# Table 1 on `{ds}`: ours beside the paper's, baselines below the rows", "",
        _context(cfg, n), "",
        f"## As published: paper protocol, mean ± sd over chunks, one run (seed {int(n.seed)})", "",
        _markdown(["row", "params", "Hamming (ours)", "Cosine (ours)", "BLEU (ours)",
                   "Hamming (paper)", "Cosine (paper)", "BLEU (paper)"], first), "",
        f"## Over seeds: mean [{claims.confidence:.0%} interval]", "",
        f"Interval over seeds (Student t) for rows with >= {claims.min_seeds} seeds; † marks a "
        f"single run, whose interval is an item bootstrap ({claims.bootstrap} resamples of the "
        "items: how precisely that one run is measured, not how runs vary). Epochs: per seed, "
        "with how many runs the cap stopped (`train.max_epochs`) rather than the patience rule. "
        "CPU s: training seconds per run (timings/). Objective: last (the paper's, one target "
        "per sample) or every (every position, causal rows). Next-token NLL (nats) and "
        "accuracy: the held-out next-token metric, the same seeded test positions for every "
        "row and baseline of a seed. One-step: test accuracy (%) of the next token, as in "
        "the training log.", "",
        _markdown(["row", "objective", "seeds", "epochs (capped)", "steps", "CPU s",
                   "paper BLEU", "held-out centre acc", "held-out pixel acc",
                   "held-out text acc", "next-token NLL", "next-token acc", "one-step acc"],
                  second),
    ]
    return frame, "\n".join(md) + "\n"


def _markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _context(cfg: StageConfig, first_run) -> str:
    data, train, ev = cfg.dataset, cfg.train, cfg.evaluate
    return (
        f"Dataset: `{data.source}` ({cfg.dataset_name}), max_size {data.max_size}, captions "
        f"capped at {data.max_chars} characters; seed k splits the items "
        f"{1 - data.test_fraction:.0%}/{data.test_fraction:.0%}. "
        f"Schedule: seq_len {train.seq_len}, sample stride {train.sample_stride}, batch "
        f"{train.batch_size}, AdamW lr {train.lr} wd {train.weight_decay}; evaluation every "
        f"{train.eval_every} epoch(s); stop after {train.patience} evaluations without a new best "
        f"test loss, at most {train.max_epochs} epochs (a row may set its own cap: the "
        f"every-position rows' is in Table 1's epochs column). Paper: 200 epochs, stride 32, seq_len "
        f"256, one unseeded run per row, on its 964-item dataset.\n"
        f"Paper protocol: the {ev.checkpoint} checkpoint, chunks of {ev.prompt_len} prompt + "
        f"{ev.gen_len} generated windows every {ev.chunk_stride} positions over "
        f"{'every item' if ev.max_items == 0 else str(int(first_run.paper_items)) + ' items (a seeded subset, the same for every run)'}"
        f" ({int(first_run.paper_chunks)} chunks); Hamming lower is better. Held-out protocol: "
        f"every test item of the run's seed ({int(first_run.heldout_items)} items, "
        f"{int(first_run.heldout_chunks)} chunks for seed {int(first_run.seed)}), centre tokens "
        f"only, per modality."
    )


def compute_markdown(runs_: pd.DataFrame) -> str:
    models = runs_[~runs_["baseline"]]
    header = ["row", "seed", "epochs", "stopped by", "steps", "train s", "eval s", "device",
              "torch", "threads", "cpu"]
    rows = [[short_name(r.row), r.seed, _fmt(r.epochs, 0), r.stopped_by, _fmt(r.steps, 0),
             _fmt(r.train_seconds, 0),
             _fmt(r.eval_seconds, 0), r.device, r.torch, r.threads, r.cpu_capability]
            for r in models.itertuples()]
    total_train = models["train_seconds"].sum()
    return ("# Compute per run\n\nWall seconds of the run that first produced each run's "
            "outputs (the train and evaluate stages' timing records, timings/<dataset>/: a "
            "re-run reproducing the same bytes keeps them). Training jobs "
            "of one stage run in parallel worker processes, so the stage takes less than the "
            f"sum. Sum over runs: training {total_train / 60:.0f} min.\n\n"
            + _markdown(header, rows) + "\n")


def curves(histories: pd.DataFrame) -> pd.DataFrame:
    """Every run's test loss and accuracy per epoch (the top-level `dvc plots`)."""
    out = histories[["row", "seed", "family", "epoch", "test_loss", "test_accuracy"]].copy()
    out.insert(0, "run", out["row"] + " s" + out["seed"].astype(str))
    return out


# ----------------------------------------------------------------------------- the stage


def write_report(root: Path, cfg: StageConfig) -> dict[str, Path]:
    """Every artifact of the report stage for the stage's dataset, into reports/<ds>/, and
    the stage's timing record; returns their paths."""
    import time

    from pxby_lib.figures import figure2
    from pxby_lib.models import build_model, count_parameters

    ds, t0 = cfg.dataset_name, time.perf_counter()
    out_dir = runs.report_dir(root, ds)
    model_rows = {r.name: r.seeds for r in cfg.rows}
    baseline_rows = {f"baselines/{n}": cfg.seeds for n in cfg.baselines.names}
    runs_ = collect_runs(root, ds, {**model_rows, **baseline_rows})
    if runs_.empty:
        raise FileNotFoundError(f"no evaluated runs under {root / 'eval' / ds}: run the pipeline")
    parameters = {r.name: count_parameters(build_model(r.model, context=cfg.train.seq_len))
                  for r in cfg.rows}
    written: dict[str, Path] = {}
    frame, md = table1(root, cfg, runs_, parameters)
    write_text(out_dir / "table1.csv", frame.to_csv(index=False, float_format="%.4f"))
    written["table1"] = out_dir / "table1.md"
    write_text(written["table1"], md)
    write_text(out_dir / "table1.tex", frame.to_latex(index=False, escape=True, float_format="%.3f"))

    ran = [r for r in model_rows if (runs_["row"] == r).any()]
    diagnostic = set(runs_.loc[runs_["diagnostic"], "row"])  # baselines.DIAGNOSTIC's, by their summaries
    baselines = [b for b in baseline_rows if (runs_["row"] == b).any() and b not in diagnostic]
    objective = {r.name: r.objective for r in cfg.rows}
    paper_bleu = frame.set_index("row")["paper_bleu_mean"] if "paper_bleu_mean" in frame else pd.Series()
    published = {r: float(v) for r, v in paper_bleu.items()
                 if pd.notna(v) and objective.get(r) == "last"}
    seconds = {r: float(v) for r, v in runs_.groupby("row")["train_seconds"].mean().items() if pd.notna(v)}
    details, summary = evaluate_claims(runs_, ran, baselines, parameters, cfg.claims, objective,
                                       published, seconds)
    write_text(out_dir / "claims.csv", details.merge(
        summary[["track", "claim", "verdict"]].rename(columns={"verdict": "claim_verdict"}),
        on=["track", "claim"], how="left").to_csv(index=False, float_format="%.4f"))
    written["claims"] = out_dir / "claims.md"
    write_text(written["claims"], claims_markdown(details, summary, cfg.claims, ds, short_name))
    write_text(out_dir / "compute.md", compute_markdown(runs_))

    families = {r.name: FAMILY_OF[r.model.family] for r in cfg.rows}
    histories = collect_histories(root, ds, model_rows, families)
    write_text(out_dir / "curves.csv", curves(histories).to_csv(index=False, float_format="%.5f"))
    figures = out_dir / "figures"
    family_rows = _one_row_per_family(cfg, runs_)
    one_step = (runs_[runs_["baseline"] & ~runs_["diagnostic"]].assign(name=lambda f: f["row"].str.split("/").str[1])
                .groupby("name", sort=False)[["one_step_loss", "one_step_acc"]].mean()
                .rename(columns={"one_step_loss": "test_loss", "one_step_acc": "test_accuracy"})
                .reset_index())
    written["figure2_training"] = figure2(histories, family_rows, one_step, figures / "figure2_training.png")
    written["figure1_interleaved"] = _figure1(root, cfg, ran, figures / "figure1_interleaved.png")
    written["gallery"] = _gallery(root, cfg, ran, figures / "gallery.png")
    written["completions"] = out_dir / "completions.md"
    write_text(written["completions"], completions_markdown(root, ds, cfg.claims.confidence, short_name))
    written.update(completion_figures(root, ds, cfg.complete.gallery, short_name, figures))
    runs.write_timing(runs.timing_path(root, ds, "report"), runs.files_under(out_dir),
                      {"stage_seconds": time.perf_counter() - t0})
    return written


def _one_row_per_family(cfg: StageConfig, runs_: pd.DataFrame) -> dict[str, str]:
    """Figure 2's rows: per family, the paper-track row with the most seeds (the reference
    for the RNNs). Figure 2 is the paper's figure, of rows trained the paper's way; the
    every-position rows' curves (the same one-step log) are in curves.csv and `dvc plots`."""
    chosen: dict[str, str] = {}
    counts = runs_.groupby("row")["seed"].nunique()
    paper = [r for r in cfg.rows if r.objective == "last"]
    for r in sorted(paper, key=lambda r: (r.name != cfg.report.reference, -counts.get(r.name, 0))):
        family = FAMILY_OF[r.model.family]
        if family not in chosen.values() and r.name in counts:
            chosen[r.name] = family
    return {row: f"{family} {short_name(row).split(' ', 1)[1]}" for row, family in chosen.items()}


def _figure1(root: Path, cfg: StageConfig, rows: list[str], path: Path) -> Path:
    """The paper's Figure 1 protocol (this project's Figure 1 is a completion,
    `complete.completion_figures`): the sample the evaluate stage wrote for the reference row (its first seed's
    first test item; the first row run on the dataset if the reference is not), 8
    generated tokens alternating with 32 true ones after the prompt, generated marked."""
    from pxby_lib.atomic import atomic_path
    from pxby_lib.dataset import load_dataset
    from pxby_lib.figures import with_header
    from pxby_lib.render import render_comparison

    if not rows:
        raise FileNotFoundError(f"no evaluated model row on {cfg.dataset_name}: run its evaluate stages")
    row = cfg.report.reference if cfg.report.reference in rows else rows[0]
    f = runs.eval_dir(root, cfg.dataset_name, row) / "sample.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: run evaluate@{cfg.dataset_name}-{row}")
    s = json.loads(f.read_text())
    ids = np.asarray(s["ids"])
    windows = load_dataset(runs.dataset_dir(root, cfg.dataset_name)).item(s["item"])
    picture = render_comparison(windows[: len(ids), 1, 1], ids, scale=8,
                                titles=(f"test item {s['item']}", "with generated tokens (marked)"),
                                generated=np.asarray(s["generated"], bool))
    picture = with_header(picture, [
        f"{short_name(row)}{' (the reference row)' if row == cfg.report.reference else ''}, "
        f"seed {s['seed']}, a test item of that seed:",
        f"after a prompt of {cfg.evaluate.prompt_len} true tokens, 8 generated tokens alternate "
        "with 32 true ones"])
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def _gallery(root: Path, cfg: StageConfig, rows: list[str], path: Path) -> Path:
    from pxby_lib.dataset import load_dataset
    from pxby_lib.figures import gallery
    from pxby_lib.render import render_item

    samples, item, length = [], None, 0
    for row in rows:  # the samples of one test item: the first row's (rows whose first seed
        f = runs.eval_dir(root, cfg.dataset_name, row) / "sample.json"  # differs show another)
        if f.is_file():
            s = json.loads(f.read_text())
            if item is not None and s["item"] != item:
                continue
            item, length = s["item"], len(s["ids"])
            samples.append((short_name(row), render_item(np.asarray(s["ids"]), scale=6,
                                                         generated=np.asarray(s["generated"], bool))))
    if item is None:
        raise FileNotFoundError(f"no eval/{cfg.dataset_name}/<row>/sample.json: run the evaluate stages")
    windows = load_dataset(runs.dataset_dir(root, cfg.dataset_name)).item(item)
    original = render_item(windows[:length], scale=6)  # as long as the samples
    title = (f"Interleaved samples of test item {item} (first seed): after a {cfg.evaluate.prompt_len}-"
             "token prompt, 8 generated tokens (marked) alternate with 32 true ones")
    return gallery(original, samples, path, title)

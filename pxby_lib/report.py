"""The paper's artifacts from tracked outputs: Table 1, Figure 1, Figure 2, a gallery.

Inputs (written by the pipeline): `metrics/<model>.json` (evaluate stage),
`models/<model>/{last.pt,history.csv}` (train stage), `eval/<model>/sample.png`,
`artifacts/dataset` (prepare stage), params.yaml. The published values are the
package's own copy of the paper's Table 1 (`paper_table1.csv`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from pxby_lib.atomic import atomic_path, write_text  # noqa: E402

FAMILY_OF = {"rnn": "RNN", "ssm": "SSM", "transformer": "Att", "transformer_causal": "Att+pos"}
FAMILY_COLOURS = {"RNN": "tab:blue", "SSM": "tab:green", "Att": "tab:red", "Att+pos": "tab:orange"}
METRICS = ("hamming", "cosine", "bleu")


@dataclass(frozen=True)
class ReportPaths:
    dataset: Path
    models: Path
    metrics: Path
    eval: Path
    out: Path

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    @property
    def table_md(self) -> Path:
        return self.out / "table1.md"


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


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=130, bbox_inches="tight",
                    metadata={"Software": None})
    plt.close(fig)
    return path


def _num(value) -> float:
    return np.nan if value is None else float(value)


def _pm(mean: float, std: float) -> str:
    return "n/a" if mean is None or (isinstance(mean, float) and math.isnan(mean)) else f"{mean:.3f} ± {std:.3f}"


def collect(paths: ReportPaths, params: dict) -> pd.DataFrame:
    """One row per configured model: config, parameter count, our metrics, the paper's."""
    from .checkpoint import read_checkpoint
    from .models import build_model, count_parameters

    published = paper_table()
    published["key"] = list(zip(published.type, published.direction, published.embedding,
                                published.conv, published.input_dim, published.hidden_state,
                                published.depth, strict=True))
    rows = []
    for name, cfg in params["models"].items():
        key = paper_key(cfg)
        row = dict(zip(("type", "dir", "emb", "conv", "D", "state", "depth"), key, strict=True))
        row["model"] = name
        row["params"] = count_parameters(build_model(cfg))
        metrics_file = paths.metrics / f"{name}.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        paper_stats = (metrics or {}).get("paper", {})
        for m in METRICS:
            row[f"{m}_mean"] = _num(paper_stats.get(f"{m}_mean"))
            row[f"{m}_std"] = _num(paper_stats.get(f"{m}_std"))
        held = (metrics or {}).get("heldout", {})
        for m in ("centre_acc", "pixel_acc", "text_acc", "text_bleu"):
            row[f"heldout_{m}"] = _num(held.get(f"{m}_mean"))
        row["n_chunks"] = (metrics or {}).get("paper", {}).get("n_chunks", 0)
        last = paths.models / name / "last.pt"
        if last.exists():
            ck = read_checkpoint(last)
            row["epochs"], row["best_epoch"] = ck["epoch"], ck["best_epoch"]
        match = published[published.key == key]
        for col in ("params_reference",) + tuple(f"{m}_{s}" for m in METRICS for s in ("mean", "std")):
            row[f"paper_{col}"] = match[col].iloc[0] if len(match) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def load_report_params(paths: ReportPaths, params_path: str | Path | None) -> dict:
    """params.yaml if given; else the models found in `paths.models` (their checkpoints
    carry their configs), so the notebook also runs on scratch outputs."""
    if params_path:
        return yaml.safe_load(Path(params_path).read_text())
    from .checkpoint import read_checkpoint

    models = {d.name: read_checkpoint(d / "last.pt")["model_config"]
              for d in sorted(paths.models.iterdir()) if (d / "last.pt").exists()}
    if not models:
        raise FileNotFoundError(f"no <model>/last.pt under {paths.models}: train a model first")
    return {"models": models}


def write_table1(paths: ReportPaths, params: dict) -> pd.DataFrame:
    """Write table1.csv (all numbers), table1.md and table1.tex (ours beside the paper's)."""
    df = collect(paths, params)
    write_text(paths.out / "table1.csv", df.to_csv(index=False, float_format="%.4f"))

    view = pd.DataFrame({
        "model": df.model, "type": df.type, "dir": df.dir, "emb": df.emb, "conv": df.conv,
        "D": df.D, "state": df.state, "depth": df.depth, "params": df.params,
        **{f"{m} (ours)": [_pm(a, b) for a, b in zip(df[f"{m}_mean"], df[f"{m}_std"], strict=True)]
           for m in METRICS},
        **{f"{m} (paper)": [_pm(a, b) for a, b in zip(df[f"paper_{m}_mean"], df[f"paper_{m}_std"], strict=True)]
           for m in METRICS},
        "held-out centre acc": df.heldout_centre_acc.map(lambda v: f"{v:.3f}"),
        "held-out pixel acc": df.heldout_pixel_acc.map(lambda v: f"{v:.3f}"),
        "held-out text acc": df.heldout_text_acc.map(lambda v: f"{v:.3f}"),
        "held-out text BLEU": df.heldout_text_bleu.map(lambda v: f"{v:.3f}"),
    })
    context = _context(paths, params) if "data" in params else ""
    md = "# Table 1: ours beside the paper's\n\n" + context + "\n" + view.to_markdown(index=False) + "\n"
    write_text(paths.table_md, md)
    tex = view.drop(columns=["model"]).to_latex(index=False, escape=True)
    write_text(paths.out / "table1.tex", tex.replace("±", r"$\pm$"))
    return df


def _context(paths: ReportPaths, params: dict) -> str:
    data, train, ev = params["data"], params["train"], params["evaluate"]
    n_items = len(pd.read_csv(paths.dataset / "items.csv")) if (paths.dataset / "items.csv").exists() else "?"
    return (
        f"Dataset: `{data['source']}`, {n_items} items, max_size {data['max_size']}, "
        f"captions capped at {data['max_chars']} characters, seeded {1 - data['test_fraction']:.0%}/"
        f"{data['test_fraction']:.0%} item split (seed {data['seed']}).\n"
        f"Schedule: {train['epochs']} epochs, seq_len {train['seq_len']}, stride {train['stride']}, "
        f"batch {train['batch_size']}, AdamW lr {train['lr']} wd {train['weight_decay']}, seed "
        f"{train['seed']}. Paper: 200 epochs, stride 32, on the paper's 964-item dataset.\n"
        f"Evaluation (paper protocol): {ev['checkpoint']} checkpoint, chunks of {ev['prompt_len']} prompt + "
        f"{ev['gen_len']} generated windows every {ev['chunk_stride']} positions, "
        f"{'all items' if ev['max_items'] == 0 else str(ev['max_items']) + ' items (seeded subset)'}; "
        "Hamming lower is better. Held-out columns: this project's protocol (test items only, "
        "centre tokens only, per modality).\n"
    )


def load_histories(paths: ReportPaths, params: dict) -> pd.DataFrame:
    frames = []
    for name, cfg in params["models"].items():
        f = paths.models / name / "history.csv"
        if f.exists():
            h = pd.read_csv(f)
            h["model"], h["family"] = name, FAMILY_OF[cfg["family"]]
            frames.append(h)
    if not frames:
        raise FileNotFoundError(f"no history.csv under {paths.models}: run the train stages")
    return pd.concat(frames, ignore_index=True)


def figure2_training(paths: ReportPaths, params: dict) -> Path:
    """Loss and accuracy per epoch: mean +- sd band per family, train solid, test dashed."""
    h = load_histories(paths, params)
    long = pd.concat([
        pd.DataFrame({"epoch": h.epoch, "family": h.family, "model": h.model, "split": split,
                      "loss": h[f"{prefix}loss"] if split == "test" else h["train_eval_loss"],
                      "accuracy": h[f"{prefix}accuracy"]})
        for split, prefix in (("train", "train_"), ("test", "test_"))
    ], ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        sns.lineplot(data=long, x="epoch", y=metric, hue="family", style="split",
                     style_order=["train", "test"], palette=FAMILY_COLOURS, errorbar="sd", ax=ax)
        ax.set(ylabel="accuracy (%)" if metric == "accuracy" else "cross-entropy loss")
    axes[0].set_title("Loss (train = eval-mode slice of the training set)")
    axes[1].set_title("Accuracy")
    counts = h.groupby("family").model.nunique().to_dict()
    fig.suptitle("Figure 2: training curves, mean ± sd over each family's rows " + str(counts))
    return _save_figure(fig, paths.figures / "figure2_training.png")


def figure1_generation(paths: ReportPaths, reference_model: str, *, item: int = 0,
                       device: str = "cpu", prompt_len: int = 64, truth_block: int = 32,
                       gen_block: int = 8) -> Path:
    """Figure 1: a generated sprite and caption beside the original (spec section 13).

    As published: after a `prompt_len` prompt, `gen_block` generated tokens alternate
    with `truth_block` ground-truth tokens over the item's full length (the reference's
    quirk of predicting before appending the preceding truth block is not copied).
    """
    from .checkpoint import load_model
    from .data import load_dataset
    from .evaluate import continuation_picture
    from .train import resolve_device

    dev = resolve_device(device)
    model, _ = load_model(paths.models / reference_model / "last.pt", device=dev)
    windows = load_dataset(paths.dataset).items[item]  # (L, 3, 3)
    picture = continuation_picture(model, windows, device=dev, prompt_len=prompt_len,
                                   truth_block=truth_block, gen_block=gen_block)
    path = paths.figures / "figure1_generation.png"
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def gallery(paths: ReportPaths, params: dict, columns: int = 5) -> Path:
    """One generated sample per model (eval/<model>/sample.png), labelled, in a grid."""
    names = [n for n in params["models"] if (paths.eval / n / "sample.png").exists()]
    if not names:
        raise FileNotFoundError(f"no eval/<model>/sample.png under {paths.eval}")
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        ax.imshow(Image.open(paths.eval / name / "sample.png"))
        ax.set_title(name, fontsize=7)
    fig.suptitle("Generated continuations of a held-out item (64-token prompt, greedy)")
    return _save_figure(fig, paths.figures / "gallery.png")

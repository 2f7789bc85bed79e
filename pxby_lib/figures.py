"""The report's figures: Figure 2 (training curves) and the gallery.

Figure 1 (a generated sprite beside the original) is drawn by `render`; everything here is
matplotlib/seaborn, saved with `save_figure` (atomic, no timestamp in the file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from pxby_lib.atomic import atomic_path  # noqa: E402

FAMILY_OF = {"rnn": "RNN", "ssm": "SSM", "transformer": "Att", "transformer_causal": "Att+pos"}
FAMILY_COLOURS = {"RNN": "tab:blue", "SSM": "tab:green", "Att": "tab:red", "Att+pos": "tab:orange"}
BASELINE_STYLES = {"most_frequent": ":", "copy": "-.", "count_pair": "--", "count_window": (0, (5, 1))}


def save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=130, bbox_inches="tight",
                    metadata={"Software": None})
    plt.close(fig)
    return path


def _long(histories: pd.DataFrame) -> pd.DataFrame:
    """One line per (run, epoch, split): loss and accuracy; train = the eval-mode slice."""
    return pd.concat([
        histories.assign(split="train", loss=histories.train_eval_loss,
                         accuracy=histories.train_accuracy),
        histories.assign(split="test", loss=histories.test_loss, accuracy=histories.test_accuracy),
    ], ignore_index=True)


def figure2(histories: pd.DataFrame, rows: dict[str, str], baselines: pd.DataFrame,
            path: Path) -> Path:
    """Loss and accuracy per epoch for one row per family (`rows`: row -> label), mean and
    a +-sd band over that row's seeds; train (eval-mode slice) solid, test dashed. Both
    panels put the baselines' one-step test loss and accuracy (mean over seeds) as grey
    horizontal lines: what the next position's window gives for free (`copy` has no
    loss: it gives no probabilities). `baselines`: columns name, test_loss, test_accuracy."""
    h = histories[histories["row"].isin(rows)].copy()
    h["model"] = h["row"].map(rows)
    long = _long(h)
    n_seeds = h.groupby("model")["seed"].nunique().to_dict()
    long["model"] = long["model"].map(lambda m: f"{m} ({n_seeds[m]} seeds)")
    palette = {f"{label} ({n_seeds[label]} seeds)": FAMILY_COLOURS[label.split()[0]]
               for label in rows.values() if label in n_seeds}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        sns.lineplot(data=long, x="epoch", y=metric, hue="model", style="split",
                     style_order=["train", "test"], palette=palette, errorbar="sd", ax=ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(ylabel="accuracy (%)" if metric == "accuracy" else "cross-entropy loss")
    for b in baselines.itertuples():
        style = {"color": "0.35", "lw": 1.2, "ls": BASELINE_STYLES.get(b.name, "-"),
                 "label": f"baseline: {b.name}"}
        axes[1].axhline(b.test_accuracy, **style)
        if pd.notna(b.test_loss):
            axes[0].axhline(b.test_loss, **style)
    handles, labels = axes[1].get_legend_handles_labels()
    for ax in axes:
        ax.get_legend().remove()
    axes[1].legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    axes[0].set_title("Loss (train = eval-mode slice of the training set)")
    axes[1].set_title("Accuracy")
    fig.suptitle("Figure 2: training curves, mean ± sd over seeds (one row per family); "
                 "grey: the baselines' one-step test loss and accuracy")
    fig.tight_layout()
    return save_figure(fig, path)


def _font(size: int = 14):
    return ImageFont.load_default(size=size)


def tile_sheet(tiles: Sequence[tuple[str, Image.Image]], columns: int = 4, title: str = "") -> Image.Image:
    """Labelled pictures in a grid of equal cells (as wide as the widest picture or label),
    each pasted at its own pixels (no resampling: all were drawn at one scale)."""
    font, pad, label_h = _font(16), 12, 24
    cell_w = max(max(im.width, math.ceil(font.getlength(label))) for label, im in tiles) + pad
    cell_h = max(im.height for _, im in tiles) + label_h + pad
    rows = -(-len(tiles) // columns)
    title_h = 40 if title else pad
    sheet = Image.new("RGB", (columns * cell_w + pad, title_h + rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black", font=_font(18))
    for k, (label, im) in enumerate(tiles):
        x = pad + (k % columns) * cell_w
        y = title_h + (k // columns) * cell_h
        draw.text((x, y), label, fill="black", font=font)
        sheet.paste(im, (x, y + label_h))
    return sheet


def gallery(original: Image.Image, samples: Sequence[tuple[str, Image.Image]], path: Path,
            title: str, columns: int = 4) -> Path:
    """The original once, then every row's generated sample, each under its label."""
    sheet = tile_sheet([("original", original), *samples], columns, title)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def with_header(picture: Image.Image, lines: Sequence[str], size: int = 16) -> Image.Image:
    """`picture` under a header of text lines, widened if a line is longer than it."""
    font, pad = _font(size), 8
    width = max(picture.width, *(math.ceil(font.getlength(line)) + 2 * pad for line in lines))
    header = pad + len(lines) * (size + 6)
    sheet = Image.new("RGB", (width, header + picture.height), "white")
    draw = ImageDraw.Draw(sheet)
    for k, line in enumerate(lines):
        draw.text((pad, pad + k * (size + 6)), line, fill="black", font=font)
    sheet.paste(picture, (0, header))
    return sheet

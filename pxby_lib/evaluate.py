"""Evaluation: the paper's Table 1 protocol (spec section 11) and an honest held-out one.

Paper protocol (`evaluate_paper`): every item, train and test alike, is cut into chunks
starting every 80 positions (wrapping inside the item); 64 true windows are the prompt,
16 windows are generated greedily and compared with the 16 true windows, flattened to
144 ids (Hamming, Cosine, BLEU of `metrics`). Reported as mean and sample std over chunks.

Held-out protocol (`evaluate_heldout`): the same chunks but on test items only (every
test item of the run's seed), scored on CENTRE tokens only (the generated id against the
true id, no padding zeros), overall and per modality (image pixels, caption characters)
using the true centres' part index.

Both take the dataset's items and the indices of the items to score; the `item` column
of their per-chunk tables is that dataset index. A "model" is anything mapping windows
(B, L, 3, 3) to logits (B, V): the baselines (`pxby_lib.baselines`) go through the same
code.

Chunks are generated in batches (`generate` over many prompts at once);
`evaluate_one_by_one` runs the same chunks one at a time, for the benchmark and a test.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from torch import nn
from tqdm.auto import tqdm

from pxby_lib.atomic import write_text
from pxby_lib.generate import generate, minimal_context
from pxby_lib.metrics import chunk_metrics, mean_std
from pxby_lib.sequence import part_index

PAPER_METRICS = ("hamming", "cosine", "bleu")
HELDOUT_METRICS = ("centre_acc", "centre_hamming", "pixel_acc", "text_acc", "text_bleu")
PART_IMAGE, PART_CAPTION = 1, 2  # values of sequence.part_index


def paper_chunks(items: Sequence[np.ndarray], item_ids: Sequence[int], prompt_len: int,
                 gen_len: int, chunk_stride: int) -> np.ndarray:
    """(N, 2) int64 rows (item, start): starts every `chunk_stride` positions of each of
    the items `item_ids` (indices into `items`, kept in the rows).

    A chunk covers positions (start + k) % L for k < prompt_len + gen_len, wrapping
    inside its item (short items wrap more than once).
    """
    if prompt_len < 1 or gen_len < 1 or chunk_stride < 1:
        raise ValueError(f"prompt_len, gen_len, chunk_stride must be >= 1, got {prompt_len}, "
                         f"{gen_len}, {chunk_stride}")
    item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    if len(item_ids) and (item_ids.min() < 0 or item_ids.max() >= len(items)):
        raise ValueError(f"item ids outside 0..{len(items) - 1}: pass indices into items")
    rows = [(int(i), s) for i in item_ids for s in range(0, len(items[i]), chunk_stride)]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def _chunk_batch(
    items: Sequence[np.ndarray], chunks: np.ndarray, prompt_len: int, gen_len: int
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Prompts (C, P, 3, 3), builder contexts, true windows (C, G, 3, 3) of some chunks."""
    prompts, contexts, truth = [], [], []
    for item, start in chunks:
        windows = items[item]  # (L, 3, 3)
        L = len(windows)
        if L == 0:
            raise ValueError(f"item {item} is empty: it has no windows to evaluate")
        prompt_pos = (start + np.arange(prompt_len)) % L
        true_pos = (start + prompt_len + np.arange(gen_len)) % L
        prompts.append(windows[prompt_pos])
        truth.append(windows[true_pos])
        # centres up to the prompt's last token, unrolled over the wrap (items end with '\n')
        centres = windows[:, 1, 1]
        contexts.append(minimal_context(centres[np.arange(start + prompt_len) % L]))
    return np.stack(prompts), contexts, np.stack(truth)


def generate_chunks(
    model: nn.Module,
    items: Sequence[np.ndarray],
    chunks: np.ndarray,
    *,
    prompt_len: int,
    gen_len: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    incremental: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy generation for every chunk: (generated ids (C, G), generated windows (C, G, 3, 3),
    true windows (C, G, 3, 3))."""
    model.to(device)
    ids, gen, truth = [], [], []
    starts = range(0, len(chunks), batch_size)
    for lo in tqdm(starts, desc="evaluate", disable=not progress):
        prompts, contexts, true_windows = _chunk_batch(
            items, chunks[lo : lo + batch_size], prompt_len, gen_len
        )
        result = generate(model, prompts, contexts, gen_len, device=device, incremental=incremental)
        ids.append(result.ids)
        gen.append(result.windows)
        truth.append(true_windows)
    if not ids:
        empty = np.zeros((0, gen_len, 3, 3), np.uint8)
        return np.zeros((0, gen_len), np.int64), empty, empty
    return np.concatenate(ids), np.concatenate(gen), np.concatenate(truth)


def _summarise(per_chunk: pd.DataFrame, metrics: Sequence[str]) -> dict:
    summary: dict = {"n_chunks": int(len(per_chunk)), "n_items": int(per_chunk["item"].nunique())}
    for name in metrics:
        mean, std = mean_std(per_chunk[name].to_numpy())
        summary[f"{name}_mean"], summary[f"{name}_std"] = mean, std
        summary[f"{name}_n"] = int(per_chunk[name].notna().sum())
    return summary


def evaluate_paper(
    model: nn.Module,
    items: Sequence[np.ndarray],
    item_ids: Sequence[int],
    *,
    prompt_len: int,
    gen_len: int,
    chunk_stride: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    incremental: bool = True,
    chunks: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The paper's Table 1 protocol over the items `item_ids` (train and test alike).

    Returns per_chunk (item, start, hamming, cosine, bleu) and a summary with the mean
    and sample std (ddof=1) of each metric, n_chunks and n_items. `chunks` ((N, 2) item,
    start) scores exactly those chunks instead (the benchmarks time subsets).
    """
    if chunks is None:
        chunks = paper_chunks(items, item_ids, prompt_len, gen_len, chunk_stride)
    chunks = np.asarray(chunks, dtype=np.int64).reshape(-1, 2)
    _, gen, truth = generate_chunks(
        model, items, chunks, prompt_len=prompt_len, gen_len=gen_len,
        batch_size=batch_size, device=device, progress=progress, incremental=incremental,
    )
    per_chunk = pd.DataFrame({"item": chunks[:, 0], "start": chunks[:, 1]})
    per_chunk = pd.concat([per_chunk, chunk_metrics(gen, truth)], axis=1)
    summary = {"protocol": "paper", **_summarise(per_chunk, PAPER_METRICS)}
    summary.update(prompt_len=prompt_len, gen_len=gen_len, chunk_stride=chunk_stride)
    return per_chunk, summary


def evaluate_one_by_one(model: nn.Module, items: Sequence[np.ndarray], item_ids: Sequence[int],
                        **kwargs) -> tuple[pd.DataFrame, dict]:
    """`evaluate_paper` one chunk per model call: the slow baseline of the benchmark."""
    kwargs["batch_size"] = 1
    return evaluate_paper(model, items, item_ids, **kwargs)


def text_bleu(hypothesis: np.ndarray, reference: np.ndarray) -> float:
    """Character BLEU of caption positions: nltk sentence_bleu, chars as tokens (each id as
    one token, the same thing since one id is one char), default weights, smoothed with
    SmoothingFunction().method1 (epsilon 0.1 for empty n-gram counts) because a chunk
    holds only a few caption characters and unsmoothed BLEU would be ~0 for most chunks;
    auto_reweigh=True so that fewer than 4 characters are scored on the n-gram orders they
    have (an exact match is then 1, not penalised for the missing 4-grams)."""
    hyp = [str(int(i)) for i in hypothesis]
    ref = [str(int(i)) for i in reference]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1,
                                   auto_reweigh=True))


def evaluate_heldout(
    model: nn.Module,
    items: Sequence[np.ndarray],
    item_ids: Sequence[int],
    *,
    prompt_len: int,
    gen_len: int,
    chunk_stride: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    incremental: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Honest protocol: held-out items (`item_ids`, the run's test items) only, centre
    tokens only, per modality.

    Per chunk: centre_acc (generated id == true id), centre_hamming (1 - centre_acc);
    n_image / pixel_acc on positions whose true token is in the image part; n_caption /
    text_acc / text_bleu (`text_bleu`) on caption positions (nan where a chunk has none).
    Summary: mean, sample std and non-nan count of each, plus pooled pixel and text
    accuracy over all positions (pixel_acc_pooled, text_acc_pooled).
    """
    chunks = paper_chunks(items, item_ids, prompt_len, gen_len, chunk_stride)
    gen_ids, _, truth = generate_chunks(
        model, items, chunks, prompt_len=prompt_len, gen_len=gen_len,
        batch_size=batch_size, device=device, progress=progress, incremental=incremental,
    )
    true_ids = truth[:, :, 1, 1].astype(np.int64)  # (C, G)
    parts = {int(i): part_index(items[i][:, 1, 1]) for i in np.unique(chunks[:, 0])}  # per item
    part = np.stack(
        [parts[int(i)][(s + prompt_len + np.arange(gen_len)) % len(items[i])] for i, s in chunks]
    ) if len(chunks) else np.zeros((0, gen_len), np.int8)  # (C, G)
    hit = gen_ids == true_ids  # (C, G)
    rows = []
    for c in range(len(chunks)):
        img, cap = part[c] == PART_IMAGE, part[c] == PART_CAPTION
        rows.append({
            "n_image": int(img.sum()),
            "pixel_acc": float(hit[c, img].mean()) if img.any() else math.nan,
            "n_caption": int(cap.sum()),
            "text_acc": float(hit[c, cap].mean()) if cap.any() else math.nan,
            "text_bleu": text_bleu(gen_ids[c, cap], true_ids[c, cap]) if cap.any() else math.nan,
        })
    per_chunk = pd.DataFrame({
        "item": chunks[:, 0],
        "start": chunks[:, 1],
        "centre_acc": hit.mean(axis=1),
        "centre_hamming": 1.0 - hit.mean(axis=1),
    })
    per_chunk = pd.concat([per_chunk, pd.DataFrame(rows, index=per_chunk.index)], axis=1)
    summary = {"protocol": "heldout", **_summarise(per_chunk, HELDOUT_METRICS)}
    n_img, n_cap = int((part == PART_IMAGE).sum()), int((part == PART_CAPTION).sum())
    summary["pixel_acc_pooled"] = float(hit[part == PART_IMAGE].mean()) if n_img else math.nan
    summary["text_acc_pooled"] = float(hit[part == PART_CAPTION].mean()) if n_cap else math.nan
    summary.update(n_image_positions=n_img, n_caption_positions=n_cap,
                   prompt_len=prompt_len, gen_len=gen_len, chunk_stride=chunk_stride)
    return per_chunk, summary


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN
    return value


def summary_to_json(summary: dict, path: str | Path) -> None:
    """Write a summary as JSON atomically (temp file in the same folder, then rename); nan -> null."""
    text = json.dumps(_jsonable(summary), indent=2, sort_keys=True, allow_nan=False)
    write_text(path, text + "\n")


def select_items(n_items: int, max_items: int, seed: int = 0) -> np.ndarray:
    """Indices of the items the paper protocol scores: all (max_items == 0, the paper) or a
    seeded, sorted subset of `max_items` (a cheaper profile; the same for every run)."""
    if max_items <= 0 or max_items >= n_items:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=max_items, replace=False))

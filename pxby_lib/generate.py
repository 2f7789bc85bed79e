"""Autoregressive generation of PxBy windows (spec section 10), batched over prompts.

Every step takes the model's logits on the WHOLE growing window sequence (the models
read all positions and classify from the last one), picks the next centre id, and
rebuilds that token's 3x3 window from the centre ids so far with
`sequence.WindowBuilder` (the dataset's own grid rules). The logits come from a
`models.stepper.Stepper`: by default one that keeps what does not change between steps
(embeddings, causal states; the same logits as the full forward to float rounding),
or, with incremental=False, the literal full re-run of the model at every step.

Sampling and batching: greedy decoding (temperature 0, the paper's setting) does not
depend on how rows are batched. For sampling, pass ONE torch.Generator per row: each row
then draws its Gumbel noise from its own generator, so a batched run equals running the
rows one by one with the same generators. A single shared generator also works, but the
draws then depend on the batch layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pxby_lib.models.stepper import make_stepper
from pxby_lib.sequence import WindowBuilder
from pxby_lib.tokenizer import PART_END_ID, ROW_SEP_ID

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class GenerationResult:
    ids: np.ndarray  # (B, n_new) int64 generated centre ids
    windows: np.ndarray  # (B, n_new, 3, 3) uint8 their windows


def minimal_context(centres: Sequence[int]) -> np.ndarray:
    """The shortest suffix of `centres` from which a WindowBuilder continues identically.

    A window only looks at the current row and the row above it within the same part,
    so the context can start at the previous row (or at the current part's start, after
    the last '\n'). Saves rebuilding a whole item per evaluation chunk.
    """
    centres = np.asarray(centres, dtype=np.int64)
    seps = np.flatnonzero((centres == ROW_SEP_ID) | (centres == PART_END_ID))
    ends = np.flatnonzero(centres == PART_END_ID)
    prev_row_start = seps[-2] + 1 if len(seps) >= 2 else 0
    part_start = ends[-1] + 1 if len(ends) else 0
    return centres[max(prev_row_start, part_start) :]


def row_generators(seed: int, n_rows: int) -> list[torch.Generator]:
    """One CPU generator per row, seeded seed, seed+1, ...: sampling independent of batching."""
    return [torch.Generator().manual_seed(seed + i) for i in range(n_rows)]


def _gumbel_noise(generator: GeneratorArg, rows: int, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise (rows, vocab) on CPU; argmax(logits/T + noise) samples softmax(logits/T)."""
    if generator is None or isinstance(generator, torch.Generator):
        uniform = torch.rand(rows, vocab, generator=generator, dtype=torch.float64)
    else:
        uniform = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in generator])
    uniform = uniform.clamp_(min=1e-300, max=1.0 - 1e-16)  # keep -log(-log(u)) finite
    return -torch.log(-torch.log(uniform))  # (rows, vocab)


def next_ids(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: GeneratorArg = None,
) -> torch.Tensor:
    """Pick one id per row from (B, V) logits: argmax, or a sample at `temperature` among the top_k."""
    logits = logits.detach().to("cpu", torch.float64)  # (B, V)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B,)
    scores = logits / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return (scores + _gumbel_noise(generator, *scores.shape)).argmax(dim=-1)  # (B,)


@torch.no_grad()
def _generate_slice(
    model: nn.Module,
    prompts: np.ndarray,
    contexts: Sequence[Sequence[int]],
    n_new: int,
    temperature: float,
    top_k: int | None,
    generator: GeneratorArg,
    device: torch.device,
    incremental: bool,
) -> GenerationResult:
    B, P = prompts.shape[:2]
    builders = [WindowBuilder(context=h) for h in contexts]
    prompts = torch.as_tensor(prompts, dtype=torch.long, device=device)  # (B, P, 3, 3)
    stepper = make_stepper(model, prompts, P + n_new, incremental)
    new_ids = np.zeros((B, n_new), dtype=np.int64)
    new_windows = np.zeros((B, n_new, 3, 3), dtype=np.uint8)
    for step in range(n_new):
        logits = stepper.logits()  # (B, V): model(windows so far)
        ids = next_ids(logits, temperature=temperature, top_k=top_k, generator=generator).numpy()
        for b, builder in enumerate(builders):
            new_windows[b, step] = builder.push(int(ids[b]))
        new_ids[:, step] = ids
        if step + 1 < n_new:
            stepper.append(torch.as_tensor(new_windows[:, step], dtype=torch.long, device=device))
    return GenerationResult(ids=new_ids, windows=new_windows)


def generate(
    model: nn.Module,
    prompts: np.ndarray,
    contexts: Sequence[Sequence[int]],
    n_new: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: GeneratorArg = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    incremental: bool = True,
) -> GenerationResult:
    """Generate n_new tokens after each prompt.

    prompts: (B, P, 3, 3) uint8 windows, all of the same length P.
    contexts[b]: centre ids of everything up to and including prompt b's last token
    (what the row's WindowBuilder needs: at least the prompt's centres, more if the
    prompt starts inside a part). generator: None, one torch.Generator, or one per row.
    batch_size: rows per model call (None = all B at once). incremental: keep what does
    not change between steps (`incremental.make_stepper`); False re-runs the whole model
    on the whole sequence at every step, the literal protocol (same ids, slower).
    """
    prompts = np.asarray(prompts)
    if prompts.ndim != 4 or prompts.shape[2:] != (3, 3):
        raise ValueError(f"prompts must be (B, P, 3, 3) windows, got shape {prompts.shape}")
    B, P = prompts.shape[:2]
    if P == 0:
        raise ValueError("prompts are empty (P = 0): the model needs at least one window")
    if len(contexts) != B:
        raise ValueError(f"got {len(contexts)} contexts for {B} prompts: pass one per prompt")
    per_row = generator is not None and not isinstance(generator, torch.Generator)
    if per_row and len(generator) != B:
        raise ValueError(f"got {len(generator)} generators for {B} prompts: pass one per row")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        step = B if not batch_size else batch_size
        parts = []
        for lo in range(0, B, max(step, 1)):
            hi = min(lo + step, B)
            parts.append(
                _generate_slice(
                    model,
                    prompts[lo:hi],
                    contexts[lo:hi],
                    n_new,
                    temperature,
                    top_k,
                    generator[lo:hi] if per_row else generator,
                    device,
                    incremental,
                )
            )
    finally:
        model.train(was_training)
    if not parts:  # B == 0
        return GenerationResult(np.zeros((0, n_new), np.int64), np.zeros((0, n_new, 3, 3), np.uint8))
    return GenerationResult(
        ids=np.concatenate([p.ids for p in parts]),
        windows=np.concatenate([p.windows for p in parts]),
    )


def generate_one(
    model: nn.Module,
    prompt: np.ndarray,
    context: Sequence[int],
    n_new: int,
    **kwargs,
) -> GenerationResult:
    """One prompt (P, 3, 3): returns ids (n_new,) and windows (n_new, 3, 3)."""
    result = generate(model, np.asarray(prompt)[None], [context], n_new, **kwargs)
    return GenerationResult(ids=result.ids[0], windows=result.windows[0])

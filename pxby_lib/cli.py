"""`pxby-generate` (also `python -m pxby_lib.cli`): generate from a trained checkpoint.

Three kinds of prompt, one of:
  --item I --dataset DIR   the item's first --prompt-len tokens (continues the item)
  --sprite FILE            the sprite's shape string and image part (image -> caption)
  --caption TEXT           the caption as one text part; items are cyclic (the caption's
                           '\\n' is followed by the shape string), so the model goes on
                           with a shape and an image (caption -> image)
Prints the caption of the result and, with --out, writes a picture (for --item: the
original beside the generated continuation).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pxby_lib.atomic import atomic_path
from pxby_lib.config import EvaluateConfig
from pxby_lib.generate import generate_one
from pxby_lib.sequence import decode_centres, encode_parts, shape_ids
from pxby_lib.tokenizer import PART_END_ID, encode_text


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pxby-generate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt) from training")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--item", type=int, help="index of a dataset item to continue")
    src.add_argument("--caption", help="caption text to prompt with (caption -> image)")
    src.add_argument("--sprite", help="sprite image file to prompt with (image -> caption)")
    p.add_argument("--dataset", default="artifacts/pokemon", help="dataset folder for --item")
    p.add_argument("--prompt-len", type=int, default=EvaluateConfig().prompt_len,
                   help="prompt tokens taken from --item (default: EvaluateConfig.prompt_len)")
    p.add_argument("--n-tokens", type=int, default=128, help="number of tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the paper)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest ids")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--out", help="write a PNG picture of the result here")
    p.add_argument("--scale", type=int, default=8, help="pixel size of the sprite in the picture")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return p


def _item_prompt(args) -> tuple[np.ndarray, np.ndarray]:
    """(prompt windows, original item centres) of --item."""
    from pxby_lib.dataset import load_dataset

    if not Path(args.dataset).exists():
        raise CliError(f"dataset {args.dataset} not found: build it (dvc repro) or pass --dataset")
    try:
        dataset = load_dataset(args.dataset)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(str(err)) from err
    if not 0 <= args.item < len(dataset):
        raise CliError(f"--item {args.item} is out of range: {args.dataset} has {len(dataset)} "
                       f"items, use 0..{len(dataset) - 1}")
    windows = dataset.item(args.item)  # (L, 3, 3)
    if not 1 <= args.prompt_len <= len(windows):
        raise CliError(f"--prompt-len {args.prompt_len} must be in 1..{len(windows)} "
                       f"(the length of item {args.item})")
    return windows[: args.prompt_len], windows[:, 1, 1]


def _sprite_prompt(path: str) -> np.ndarray:
    from pxby_lib.pixels import image_to_grid

    if not Path(path).is_file():
        raise CliError(f"--sprite {path} does not exist: pass an image file (PNG, GIF, ...)")
    try:
        grid = image_to_grid(path)  # (H, W) colour ids
    except (OSError, ValueError) as err:
        raise CliError(f"--sprite {path}: {err}") from err
    return encode_parts([shape_ids(*grid.shape)[None], grid])  # shape part + image part


def _caption_prompt(text: str) -> np.ndarray:
    ids, dropped = encode_text(text)
    if dropped:
        print(f"note: dropped characters without an id: {dict(dropped)}", file=sys.stderr)
    if len(ids) == 0:
        raise CliError(f"--caption {text!r} has no encodable characters (use a-z, 0-9, .,;:!'-)")
    return encode_parts([ids[None]])  # one text part, ending with '\n'


def _close_parts(ids: np.ndarray, n_parts: int) -> np.ndarray:
    """Keep ids up to the end of their n_parts-th part, closing missing parts with '\\n'."""
    ends = np.flatnonzero(ids == PART_END_ID)
    if len(ends) >= n_parts:
        return ids[: ends[n_parts - 1] + 1]
    return np.concatenate([ids, np.full(n_parts - len(ends), PART_END_ID, ids.dtype)])


def _save_png(image: Image.Image, path: str) -> None:
    """Write atomically: temp file in the same folder, then rename."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def run(args: argparse.Namespace) -> int:
    from pxby_lib.checkpoint import load_model
    from pxby_lib.render import render_comparison, render_item

    if args.n_tokens < 1:
        raise CliError(f"--n-tokens must be >= 1, got {args.n_tokens}")
    if args.temperature < 0:
        raise CliError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise CliError(f"--top-k must be >= 1, got {args.top_k}")
    if not Path(args.checkpoint).is_file():
        raise CliError(f"checkpoint {args.checkpoint} not found: train a model first "
                       "(dvc repro) or pass the path of an existing .pt file")

    original = None
    if args.item is not None:
        prompt, original = _item_prompt(args)
    elif args.sprite is not None:
        prompt = _sprite_prompt(args.sprite)
    else:
        prompt = _caption_prompt(args.caption)
    context = prompt[:, 1, 1].astype(np.int64)  # the prompt starts a part: it is its own context

    model, _ = load_model(args.checkpoint, device=args.device)
    generator = torch.Generator().manual_seed(args.seed)
    result = generate_one(model, prompt, context, args.n_tokens, temperature=args.temperature,
                          top_k=args.top_k, generator=generator, device=args.device)
    if args.caption is not None:  # generated shape + image, then the prompt caption
        sequence = np.concatenate([_close_parts(result.ids, 2), context])
    else:
        sequence = np.concatenate([context, result.ids])
    decoded = decode_centres(sequence)

    print(f"shape: {decoded.shape}")
    print(f"caption: {decoded.caption}")
    for problem in decoded.problems:
        print(f"note: {problem}", file=sys.stderr)
    if args.out:
        if original is not None:
            picture = render_comparison(original, sequence, scale=args.scale)
        else:
            picture = render_item(decoded, scale=args.scale, title="generated")
        _save_png(picture, args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as err:
        print(f"pxby-generate: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

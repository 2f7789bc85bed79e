"""`pxby-generate` (also `python -m pxby_lib.cli`): generate from a trained checkpoint.

Three kinds of prompt, one of:
  --item I --dataset DIR   the item's first --prompt-len tokens (continues the item)
  --sprite FILE            the sprite's shape string and image part (image -> caption)
  --caption TEXT           the caption as one text part; items are cyclic (the caption's
                           '\\n' is followed by the shape string), so the model goes on
                           with a shape and an image (caption -> image)
Prints which model (row, training seed), prompt and decoding made the result, then its
shape, image and caption; with --out, writes a picture (for --item: the original beside
the generated continuation). A user error is one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pxby_lib.atomic import atomic_path
from pxby_lib.checkpoint import FORMAT, load_model
from pxby_lib.config import EvaluateConfig
from pxby_lib.generate import generate_one
from pxby_lib.sequence import decode_centres, encode_parts, shape_ids
from pxby_lib.tokenizer import PART_END_ID, decode_text, encode_text

TRAINED = "a models/<dataset>/<row>/s<seed>/last.pt (or best.pt) made by training"


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line too, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pxby-generate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt) from training")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--item", type=int, help="index of a dataset item to continue")
    src.add_argument("--caption", help="caption text to prompt with (caption -> image)")
    src.add_argument("--sprite", help="sprite image file to prompt with (image -> caption)")
    p.add_argument("--dataset", default="artifacts/pokemon", help="dataset folder for --item")
    p.add_argument("--prompt-len", type=int, default=EvaluateConfig().prompt_len,
                   help="prompt tokens taken from --item (default: EvaluateConfig.prompt_len)")
    p.add_argument("--n-tokens", type=int, default=128, help="number of tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0 = greedy (the paper; tends to repeat the commonest colour), 1 = sample")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest ids")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--out", help="write a PNG picture of the result here")
    p.add_argument("--scale", type=int, default=8, help="pixel size of the sprite in the picture")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    return p


def _device(name: str) -> str:
    """--device, checked against this machine (not found out mid-way through torch.load)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise CliError(f"--device {name} is not a torch device: use --device cpu "
                       "(or cuda, cuda:0 on a machine with a GPU)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"--device {name}: this machine has no usable CUDA GPU "
                           "(torch.cuda.is_available() is False); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CliError(f"--device {name}: this machine has {count} CUDA GPU(s); use "
                           f"--device cuda:0 .. cuda:{count - 1} or --device cpu")
    elif device.type != "cpu" and not (device.type == "mps" and torch.backends.mps.is_available()):
        raise CliError(f"--device {name} is not available here: use --device cpu (or cuda)")
    return name


def _run_of(path: Path) -> tuple[str, str, int] | None:
    """(dataset, row, seed) of a path shaped models/<dataset>/<row>/s<seed>/<file>.pt."""
    p = path.parts
    if len(p) >= 5 and p[-5] == "models" and re.fullmatch(r"s\d+", p[-2]) and path.suffix == ".pt":
        return p[-4], p[-3], int(p[-2][1:])
    return None


def _restore_hint(path: Path, force: bool = False) -> str:
    """How to get a checkpoint back: `dvc pull` its stage's output (never a retrain first)."""
    run = _run_of(path)
    if run is None:
        return f"pass {TRAINED} (`dvc pull models` fetches the stored ones)"
    out, stage = path.parent.parent.as_posix(), f"train@{run[0]}-{run[1]}"
    have = sorted(p.parent.name for p in path.parent.parent.glob(f"s*/{path.name}"))
    return (f"`dvc pull {'--force ' if force else ''}{out}` fetches the stored copy (output of "
            f"the stage {stage}; `dvc repro {stage}` retrains it, hours)"
            + (f"; present here: {', '.join(have)}" if have and not force else ""))


def _checkpoint_path(name: str) -> Path:
    path = Path(name)
    if path.is_dir():
        found = sorted([*path.glob("*.pt"), *path.glob("s*/*.pt"), *path.glob("*/s*/*.pt")],
                       key=lambda p: (p.name != "last.pt", p))
        raise CliError(f"--checkpoint {name} is a folder: pass a .pt file"
                       + (f", e.g. {found[0]}" if found else f": {TRAINED}"))
    if not path.is_file():
        raise CliError(f"--checkpoint {name} does not exist: {_restore_hint(path)}")
    return path


def _describe(path: Path) -> tuple[str | None, str | None]:
    """(what a file that load_model refused is, its fix or None); what=None: it looks fine."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(512)
    restore = _restore_hint(path, force=True) if _run_of(path) else None
    if size == 0:
        return "an empty file (0 bytes)", restore
    if head.startswith(b"version https://git-lfs"):
        return "a git-lfs pointer, not the file itself", "`git lfs pull` fetches the file"
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return f"a truncated zip/torch file ({size} bytes, no zip directory at its end)", restore
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # e.g. pickled code objects: not opened, on purpose
            return f"a torch file that cannot be opened safely ({type(err).__name__})", None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            held = sorted(map(str, payload))[:6] if isinstance(payload, dict) else type(payload).__name__
            return f"a torch file without the {FORMAT} format (it holds {held})", None
        missing = [k for k in ("model_config", "model_state", "settings") if k not in payload]
        return (f"a {FORMAT} file without {missing}", None) if missing else (None, None)
    if head[:4] in (b"\x89PNG", b"GIF8") or head[:3] == b"\xff\xd8\xff":
        return "an image", "pass images with --sprite"
    if b"\0" not in head:
        text = head.decode("utf-8", "replace")
        if re.search(r"^\s*(-\s*)?(md5|outs|hash):", text, re.M):
            return "a DVC pointer file, not the data", "pass the path it tracks after `dvc pull`"
        return f"a text file ({size} bytes, starting {text.strip()[:30]!r})", None
    return f"a binary file that is not a torch zip ({size} bytes, starting {head[:8]!r})", None


def _load(path: Path, device: str) -> tuple[torch.nn.Module, dict]:
    """load_model, its errors translated: what the file is and what to do (never 'delete')."""
    try:
        return load_model(path, device=device)
    except (ValueError, KeyError, TypeError, RuntimeError) as err:  # RuntimeError: weights
        what, fix = _describe(path)
        if what is None:  # a well-formed checkpoint that still failed: say why, in short
            cause = err.__cause__ or err
            raise CliError(f"--checkpoint {path} failed to load on --device {device}: "
                           f"{type(cause).__name__}: {str(cause)[:200]}") from err
        raise CliError(f"--checkpoint {path} is not a pxby checkpoint: it is {what}; "
                       f"{fix or 'pass ' + TRAINED}") from err


def _model_words(path: Path, meta: dict) -> str:
    """'row (dataset), training seed k, epoch e: family, direction, embedding, sizes [path]'."""
    c, settings, run = meta.get("model_config", {}), meta.get("settings", {}), _run_of(path)
    recurrent = not str(c.get("family")).startswith("transformer")  # direction, state apply
    words = [str(c.get("family")), ("bidirectional" if c.get("bidirectional") else
                                    "unidirectional") if recurrent else "",
             f"{c.get('embedding')} embedding" + (" + conv" if c.get("conv") else ""),
             f"d_model {c.get('d_model')}", f"d_state {c.get('d_state')}" if recurrent else "",
             f"depth {c.get('depth')}", f"objective {settings.get('objective', 'last')}"]
    name = f"{run[1]} ({run[0]})" if run else path.name
    seed = settings.get("seed", run[2] if run else "unknown")
    epoch = f", epoch {meta['epoch']}" if "epoch" in meta else ""
    return f"{name}, training seed {seed}{epoch}: {', '.join(w for w in words if w)} [{path}]"


def _item_prompt(args) -> tuple[np.ndarray, np.ndarray, str]:
    """(prompt windows, original item centres, words) of --item."""
    from pxby_lib.dataset import load_dataset

    folder = Path(args.dataset)
    if not folder.exists():
        fix = (f"`dvc pull {folder.as_posix()}` fetches it (stage prepare@{folder.name}), or "
               if folder.parent.name == "artifacts" else "")
        raise CliError(f"--dataset {args.dataset} does not exist: {fix}pass --dataset "
                       "a prepared dataset folder (artifacts/<dataset>)")
    try:
        dataset = load_dataset(folder)
    except (FileNotFoundError, ValueError) as err:
        raise CliError(f"--dataset {args.dataset}: {err}") from err
    if not 0 <= args.item < len(dataset):
        raise CliError(f"--item {args.item} is out of range: {args.dataset} has {len(dataset)} "
                       f"items, use 0..{len(dataset) - 1}")
    windows = dataset.item(args.item)  # (L, 3, 3)
    if not 1 <= args.prompt_len <= len(windows):
        raise CliError(f"--prompt-len {args.prompt_len} must be in 1..{len(windows)} "
                       f"(the length of item {args.item})")
    name = dataset.meta["name"].iloc[args.item] if "name" in dataset.meta else "?"
    words = (f"item {args.item} ({name}) of {args.dataset}: its first {args.prompt_len} of "
             f"{len(windows)} tokens, continued")
    return windows[: args.prompt_len], windows[:, 1, 1], words


def _sprite_prompt(path: str) -> tuple[np.ndarray, str]:
    from pxby_lib.pixels import image_to_grid

    if not Path(path).is_file():
        raise CliError(f"--sprite {path} does not exist: pass an image file (PNG, GIF, ...)")
    try:
        grid = image_to_grid(path)  # (H, W) colour ids
    except (OSError, ValueError) as err:
        raise CliError(f"--sprite {path}: {str(err).removeprefix(f'{path}: ')}") from err
    words = f"sprite {path} ({grid.shape[0]}x{grid.shape[1]} colour grid): the model writes a caption"
    return encode_parts([shape_ids(*grid.shape)[None], grid]), words  # shape part + image part


def _caption_prompt(text: str) -> tuple[np.ndarray, str]:
    ids, dropped = encode_text(text)
    if len(ids) == 0:
        raise CliError(f"--caption {text!r} has no encodable characters (use a-z, 0-9, .,;:!'-)")
    if dropped:
        print(f"note: dropped characters without an id: {dict(dropped)}", file=sys.stderr)
    words = f"caption {decode_text(ids)!r}: the model writes a shape and an image"
    return encode_parts([ids[None]]), words  # one text part, ending with '\n'


def _close_parts(ids: np.ndarray, n_parts: int) -> np.ndarray:
    """Keep ids up to the end of their n_parts-th part, closing missing parts with '\\n'."""
    ends = np.flatnonzero(ids == PART_END_ID)
    if len(ends) >= n_parts:
        return ids[: ends[n_parts - 1] + 1]
    return np.concatenate([ids, np.full(n_parts - len(ends), PART_END_ID, ids.dtype)])


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _print_result(decoded, ran_out: str) -> None:
    """shape, image and caption in words; the decoding problems as one note line."""
    wrote = decode_text(np.concatenate(decoded.parts[0]), errors="replace") if decoded.parts else ""
    print(f"shape: {decoded.shape}" if decoded.shape else
          f"shape: not generated (the model wrote {_clip(wrote, 40)!r}, not '(H, W)')")
    grid = decoded.grid
    if grid is None or grid.size == 0:
        print("image: none generated")
    else:
        share = np.unique(grid, return_counts=True)[1].max() / grid.size
        print(f"image: {grid.shape[0]} x {grid.shape[1]} cells, the most frequent colour "
              f"fills {share:.0%}")
    print(f"caption: {decoded.caption}")
    if decoded.problems:
        problems = "; ".join(_clip(p, 80) for p in decoded.problems)
        print(f"note: not a well-formed item: {problems}{ran_out}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from pxby_lib.render import render_comparison, render_item

    for flag, value, low in (("--n-tokens", args.n_tokens, 1), ("--top-k", args.top_k, 1),
                             ("--temperature", args.temperature, 0)):
        if value is not None and value < low:
            raise CliError(f"{flag} must be >= {low}, got {value}")
    device = _device(args.device)
    path = _checkpoint_path(args.checkpoint)

    original = None
    if args.item is not None:
        prompt, original, prompt_words = _item_prompt(args)
    elif args.sprite is not None:
        prompt, prompt_words = _sprite_prompt(args.sprite)
    else:
        prompt, prompt_words = _caption_prompt(args.caption)
    context = prompt[:, 1, 1].astype(np.int64)  # the prompt starts a part: it is its own context

    model, meta = _load(path, device)
    generator = torch.Generator().manual_seed(args.seed)
    result = generate_one(model, prompt, context, args.n_tokens, temperature=args.temperature,
                          top_k=args.top_k, generator=generator, device=device)
    if args.caption is not None:  # generated shape + image, then the prompt caption
        sequence = np.concatenate([_close_parts(result.ids, 2), context])
        stopped = int((result.ids == PART_END_ID).sum()) < 2
    else:
        sequence = np.concatenate([context, result.ids])
        stopped = sequence[-1] != PART_END_ID

    print(f"model: {_model_words(path, meta)}")
    print(f"prompt: {prompt_words}")
    top_k = f", --top-k {args.top_k}" if args.top_k else ""
    print(f"decoding: {args.n_tokens} new tokens, " + (
        f"sampled at --temperature {args.temperature}{top_k}, --seed {args.seed}"
        if args.temperature else "greedy (--temperature 0, the paper's setting)"))
    if not args.temperature:
        print("note: greedy decoding tends to repeat the most frequent colour (a near-blank "
              "sprite); --temperature 1 samples instead")
    _print_result(decode_centres(sequence), f" (generation stopped at --n-tokens "
                  f"{args.n_tokens}: raise it to finish the item)" if stopped else "")
    if args.out:
        if original is not None:
            picture = render_comparison(original, sequence, scale=args.scale)
        else:
            picture = render_item(decode_centres(sequence), scale=args.scale, title="generated")
        with atomic_path(args.out) as tmp:  # temp file in the same folder, then rename
            picture.save(tmp, format="PNG")
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as err:
        print(f"pxby-generate: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

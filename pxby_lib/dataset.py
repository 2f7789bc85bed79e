"""The prepared dataset (`artifacts/<dataset>/`), its seeded item splits, training samples.

`load_dataset` reads what `prepare` wrote: every item's window sequence, concatenated
(`windows.npy`, with `offsets.npy`), and one row of metadata per item (`items.csv`).
`PxByDataset.split(seed, test_fraction)` is the seeded 90/10 split of ITEMS that seed k
of a run uses (spec section 6: the published split was unseeded and different per run;
here seed k of every row gets the same split, so rows are compared on the same items).
`WindowSamples` cuts the paper's training samples from a list of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

DATASET_FILES = ("windows.npy", "offsets.npy", "items.csv")
META_COLUMNS = ["item", "id", "name", "n_tokens", "n_text", "n_image", "height", "width"]


def split_items(n_items: int, test_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of item indices (train, test), as sklearn's train_test_split does it."""
    from sklearn.model_selection import train_test_split

    if n_items < 2:
        raise ValueError(f"split_items: need at least 2 items to split, got {n_items}")
    train, test = train_test_split(np.arange(n_items), test_size=test_fraction,
                                   random_state=seed)
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


@dataclass
class PxByDataset:
    windows: np.ndarray  # (N, 3, 3) uint8, all items concatenated
    offsets: np.ndarray  # (n_items + 1,) int64: item i is windows[offsets[i]:offsets[i+1]]
    meta: pd.DataFrame  # one row per item, META_COLUMNS (+ caption)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def item(self, i: int) -> np.ndarray:
        """Item i's window sequence (L, 3, 3), a view."""
        return self.windows[self.offsets[i] : self.offsets[i + 1]]

    def items(self, indices: Sequence[int] | np.ndarray | None = None) -> list[np.ndarray]:
        """The window sequences of the given items (default: all, in order)."""
        return [self.item(int(i)) for i in (range(len(self)) if indices is None else indices)]

    def split(self, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) item indices of seed `seed`."""
        return split_items(len(self), test_fraction, seed)


def load_dataset(path: str | Path) -> PxByDataset:
    """Read and validate a prepared dataset folder."""
    path = Path(path)
    missing = [f for f in DATASET_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset {path}: missing {missing}; prepare it first: "
                                "`dvc repro prepare@<dataset>`, or notebooks/01_prepare_data.ipynb "
                                "for scratch/")
    windows = np.load(path / "windows.npy")
    offsets = np.load(path / "offsets.npy").astype(np.int64)
    meta = pd.read_csv(path / "items.csv", keep_default_na=False)
    n = len(offsets) - 1
    problems = []
    if windows.ndim != 3 or windows.shape[1:] != (3, 3) or windows.dtype != np.uint8:
        problems.append(f"windows.npy is {windows.dtype} {windows.shape}, not uint8 (N, 3, 3)")
    if n < 1 or offsets[0] != 0 or offsets[-1] != len(windows) or (np.diff(offsets) <= 0).any():
        problems.append("offsets.npy does not cut windows.npy into non-empty items")
    if len(meta) != n or list(meta.columns[: len(META_COLUMNS)]) != META_COLUMNS:
        problems.append(f"items.csv has {len(meta)} rows / columns {list(meta.columns)}, "
                        f"expected {n} rows with {META_COLUMNS}")
    if problems:
        raise ValueError(f"dataset {path} is inconsistent: {'; '.join(problems)}; "
                         f"run `dvc repro prepare@<dataset>` again")
    return PxByDataset(windows, offsets, meta)


def check_seq_len(lengths: Sequence[int], seq_len: int, names: Sequence[str] | None = None) -> None:
    """Raise when seq_len exceeds every item (the samples would be pure repetition)."""
    if len(lengths) == 0:
        raise ValueError("no items: nothing to cut samples from")
    longest = int(np.argmax(lengths))
    if seq_len > lengths[longest]:
        who = names[longest] if names is not None else f"item {longest}"
        raise ValueError(f"seq_len {seq_len} is longer than every item: the longest, {who}, "
                         f"has {lengths[longest]} windows; lower train.seq_len")


class WindowSamples(torch.utils.data.Dataset):
    """The paper's samples: per item, starts = range(0, L, stride); indices
    (start + arange(seq_len + 1)) % L wrap inside the item. x = the first seq_len windows,
    y = the centre id of the window at index seq_len (one target per sample)."""

    def __init__(self, items: list[np.ndarray], seq_len: int = 256, stride: int = 32):
        if seq_len < 1 or stride < 1:
            raise ValueError(f"seq_len and stride must be >= 1, got {seq_len}, {stride}")
        lengths = [len(w) for w in items]
        check_seq_len(lengths, seq_len)
        self.seq_len, self.stride = seq_len, stride
        self.windows = np.concatenate(items).astype(np.uint8)  # (N, 3, 3)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tables, owners = [], []
        ramp = np.arange(seq_len + 1)
        for k, length in enumerate(lengths):
            starts = np.arange(0, length, stride)
            tables.append(offsets[k] + (starts[:, None] + ramp[None]) % length)  # (S, seq_len+1)
            owners.append(np.full(len(starts), k))
        self.index_table = np.concatenate(tables).astype(np.int32)  # (n_samples, seq_len+1)
        self.item_of_sample = np.concatenate(owners).astype(np.int64)  # (n_samples,)

    def __len__(self) -> int:
        return len(self.index_table)

    def batch(self, indices: Sequence[int] | np.ndarray, every: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, seq_len, 3, 3) int64 and its targets in one gather (the training hot path):
        y (B,) the centre after the last window, or with every=True (B, seq_len) the centre
        of the next window after EACH position (the last column is every=False's y)."""
        rows = self.windows[self.index_table[np.asarray(indices, dtype=np.int64)]]  # (B, seq_len+1, 3, 3)
        x = torch.from_numpy(rows[:, : self.seq_len]).long()
        y = rows[:, 1:, 1, 1] if every else rows[:, self.seq_len, 1, 1]  # (B, seq_len) or (B,)
        return x, torch.from_numpy(y).long()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range 0..{len(self) - 1}")
        x, y = self.batch([i % len(self)])
        return x[0], y[0]

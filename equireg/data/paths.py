"""A compact, fork-friendly table of file paths for folders with millions of images.

A Python list of 1.3M ``str`` is ~150 MB of separate objects; every DataLoader worker that touches them
bumps their reference counts and so, page by page, copies the whole list out of the memory it shares with
the parent. Here the paths live in two numpy arrays (UTF-8 bytes, relative to one root, and their offsets),
which workers read without writing, so the pages stay shared and nothing is re-pickled per epoch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


class PathTable:
    """Paths ``root/<relative>`` stored as one uint8 buffer plus int64 offsets (``len + 1`` of them)."""

    def __init__(self, root: str | Path, data: np.ndarray, offsets: np.ndarray) -> None:
        if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0 or offsets[-1] != data.shape[0]:
            raise ValueError("offsets must start at 0 and end at the buffer length")
        self.root = str(root)
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_relative(cls, root: str | Path, relative: Iterable[str]) -> PathTable:
        encoded = [p.encode("utf-8") for p in relative]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return cls(root, data, offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def relative(self, index: int) -> str:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.data[start:stop].tobytes().decode("utf-8")

    def __getitem__(self, index: int) -> str:
        return os.path.join(self.root, self.relative(index))

    def select(self, indices: Sequence[int] | np.ndarray) -> PathTable:
        """The paths at ``indices`` (in that order), gathered without a Python loop."""
        idx = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        offsets = np.zeros(idx.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # byte j of the new buffer comes from starts[k] + (j - offsets[k]) for the k whose range holds j
        shift = np.repeat(starts - offsets[:-1], lengths)
        data = self.data[np.arange(offsets[-1], dtype=np.int64) + shift]
        return PathTable(self.root, data, offsets)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

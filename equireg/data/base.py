"""The one batch interface shared by in-memory and folder datasets.

Every dataset yields ``(images, labels)`` with images float32 in [0, 1] of shape (B, 3, S, S) and labels int64,
from ``batches(...)``. The order of an epoch is a pure function of ``(seed, epoch)``, and rank ``r`` of
``world_size`` ranks reads its own contiguous slice of that permutation, so DDP ranks see disjoint data and
any run can be replayed exactly.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]
DatasetT = TypeVar("DatasetT", bound="ImageDataset")

_SEED_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: different (seed, epoch) pairs give unrelated streams
_MASK63 = (1 << 63) - 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch)``, independent of torch's global RNG."""
    mixed = ((int(seed) * _SEED_MIX) ^ (int(epoch) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)) & _MASK63
    return torch.Generator().manual_seed(mixed)


def epoch_indices(
    n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """Indices (int64) that rank ``rank`` reads in epoch ``epoch``.

    All ranks draw the same permutation of ``range(n)`` and take disjoint contiguous slices of length
    ``n // world_size``; the ``n % world_size`` trailing indices of the permutation are skipped so every
    rank runs the same number of steps (nothing is skipped with one rank).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
    per_rank = n // world_size
    return order[rank * per_rank : (rank + 1) * per_rank]


def batch_slices(n: int, batch_size: int, drop_last: bool) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of length ``batch_size`` (the last one shorter unless dropped)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield slice(start, min(start + batch_size, n))


def to_float_images(images: Tensor, device: torch.device | str | None) -> Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on ``device`` with 3 channels (grayscale is repeated).

    The uint8 tensor is moved first so a host-to-device copy moves 4x fewer bytes.
    """
    if device is not None:
        images = images.to(device, non_blocking=True)
    out = images.to(torch.float32).div_(255.0)
    if out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1).contiguous()
    return out


class ImageDataset(abc.ABC):
    """Labelled images with a deterministic, rank-sharded batch iterator.

    Subclasses hold ``labels`` (int64, N), ``classes`` (names) and ``image_size`` (S), and implement
    ``_select`` (a view on some indices) and ``batches``.
    """

    name: str
    classes: tuple[str, ...]
    labels: Tensor
    image_size: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    @abc.abstractmethod
    def in_memory(self) -> bool:
        """True when images live in one tensor and are batched without a DataLoader."""

    @abc.abstractmethod
    def _select(self: DatasetT, indices: Tensor) -> DatasetT:
        """A dataset of the same kind holding only ``indices`` (in that order)."""

    @abc.abstractmethod
    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> Iterator[Batch]:
        """Yield ``(images float32 [0,1] (B,3,S,S), labels int64 (B,))`` for one epoch of this rank."""

    def num_batches(self, batch_size: int, *, drop_last: bool = True, world_size: int = 1) -> int:
        """How many batches ``batches`` yields per rank with these settings."""
        per_rank = len(self) // world_size
        return per_rank // batch_size if drop_last else -(-per_rank // batch_size)

    def subset(self: DatasetT, n_or_indices: int | Sequence[int] | Tensor, *, seed: int = 0) -> DatasetT:
        """Keep ``n`` images drawn at random (deterministic in ``seed``) or exactly the given indices.

        Random rather than the first ``n``, because files are often stored sorted by class.
        """
        if isinstance(n_or_indices, int):
            return self._select(self._random_order(seed)[: self._check_count(n_or_indices)])
        indices = torch.as_tensor(n_or_indices, dtype=torch.long).flatten()
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise ValueError(f"subset indices must lie in [0, {len(self)}), got {int(indices.min())}..{int(indices.max())}")
        return self._select(indices)

    def split(self: DatasetT, n: int, *, seed: int = 0) -> tuple[DatasetT, DatasetT]:
        """Two disjoint random subsets: ``n`` images and all the others (e.g. pretrain / probe-train)."""
        order = self._random_order(seed)
        n = self._check_count(n)
        return self._select(order[:n]), self._select(order[n:])

    def _random_order(self, seed: int) -> Tensor:
        return torch.randperm(len(self), generator=torch.Generator().manual_seed(int(seed)))

    def _check_count(self, n: int) -> int:
        if not 0 <= n <= len(self):
            raise ValueError(f"asked for {n} images but {self.name} has {len(self)}")
        return n

    def __repr__(self) -> str:
        kind = "in-memory" if self.in_memory else "folder"
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.num_classes}, "
            f"image_size={self.image_size}, {kind})"
        )

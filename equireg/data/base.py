"""The one batch interface shared by in-memory and folder datasets.

Every dataset yields ``(images, labels)`` with images float32 in [0, 1] of shape (B, 3, S, S) and labels int64,
from ``batches(...)``. The order of an epoch is a pure function of ``(seed, epoch)``, and rank ``r`` of
``world_size`` ranks reads its own contiguous slice of that permutation, so DDP ranks see disjoint data and
any run can be replayed exactly.

Folder datasets can instead cut the training views themselves, from the full-resolution file
(``batches(..., crops=CropSpec(224))`` yields ``(CropBatch, labels)``): a RandomResizedCrop taken after a
pre-cut centre square could never reach the image's sides, and decoding once for both views halves the work.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TypeVar, Union

import torch
from torch import Tensor

Batch = tuple[Union[Tensor, "CropBatch"], Tensor]
DatasetT = TypeVar("DatasetT", bound="ImageDataset")

_SEED_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: different (seed, epoch) pairs give unrelated streams
_MASK63 = (1 << 63) - 1
_MASK64 = (1 << 64) - 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch)``, independent of torch's global RNG."""
    mixed = ((int(seed) * _SEED_MIX) ^ (int(epoch) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)) & _MASK63
    return torch.Generator().manual_seed(mixed)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for the random crops of image ``index`` in ``epoch``: the crops then depend on
    ``(seed, epoch, index)`` alone, not on the worker, the batch or the rank that happens to decode the file."""
    x = (int(seed) * _SEED_MIX + int(epoch) * 0xBF58476D1CE4E5B9 + int(index) * 0x94D049BB133111EB) & _MASK64
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64 finaliser
        x = ((x ^ (x >> shift)) * mult) & _MASK64
    return (x ^ (x >> 31)) & _MASK63


@dataclass(frozen=True)
class CropSpec:
    """Training views cut by the loader: RandomResizedCrop of the original image at ``size`` px, plus a flip.

    ``scale`` is the area fraction, ``ratio`` the aspect range (w/h, log-uniform), with torchvision's rule (10
    attempts, then the largest centred box in range); ``num_views`` is 2 for SSL pairs, 1 for linear evaluation.
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    num_views: int = 2

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"crop size must be >= 1, got {self.size}")
        if self.num_views not in (1, 2):
            raise ValueError(f"num_views must be 1 or 2, got {self.num_views}")
        if not (0.0 < self.scale[0] <= self.scale[1] <= 1.0):
            raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not (0.0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"crop ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p must be a probability in [0, 1], got {self.flip_p}")


@dataclass
class CropBatch:
    """Views of the same B images, cut by the loader (see :class:`CropSpec`).

    Attributes:
        view1, view2: float32 in [0, 1], (B, 3, S, S), already flipped where ``flip`` is 1. ``view2`` (and its
            box and flip) is None when the spec asked for one view.
        box1, box2: (B, 4) float, the crop actually taken as (centre y, centre x, height, width), fractions of
            the original image (the convention of ``ViewParams.crop``).
        flip1, flip2: (B,) float 0/1, horizontal flip after cropping.
    """

    view1: Tensor
    box1: Tensor
    flip1: Tensor
    view2: Tensor | None = None
    box2: Tensor | None = None
    flip2: Tensor | None = None

    def __len__(self) -> int:
        return int(self.view1.shape[0])

    @property
    def shape(self) -> torch.Size:
        """The shape of one view, (B, 3, S, S)."""
        return self.view1.shape

    @property
    def device(self) -> torch.device:
        return self.view1.device

    def __getitem__(self, rows: slice) -> CropBatch:
        """The views of some images (e.g. the b1 / b2 parts of a batch)."""
        return CropBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                            for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CropBatch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return CropBatch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


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


def batch_slices(n: int, batch_size: int, drop_last: bool, start_batch: int = 0) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of length ``batch_size`` (the last one shorter unless dropped),
    beginning with batch ``start_batch`` (a run resumed mid-epoch skips the batches it has seen for free)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    stop = n - n % batch_size if drop_last else n
    for start in range(start_batch * batch_size, stop, batch_size):
        yield slice(start, min(start + batch_size, n))


def to_float_images(images: Tensor, device: torch.device | str | None) -> Tensor:
    """uint8 (B, C, H, W) -> contiguous float32 in [0, 1] on ``device`` with 3 channels (grayscale is repeated).

    The uint8 tensor is moved first so a host-to-device copy moves 4x fewer bytes; a channels-last input (as
    folder workers produce) becomes contiguous in the same pass as the conversion.
    """
    if device is not None:
        images = images.to(device, non_blocking=True)
    out = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
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
        start_batch: int = 0,
        crops: CropSpec | None = None,
    ) -> Iterator[Batch]:
        """Yield ``(images float32 [0,1] (B,3,S,S), labels int64 (B,))`` for one epoch of this rank.

        ``start_batch`` skips the first batches of the epoch without reading them. ``crops`` (folder datasets
        only; see :attr:`cuts_crops`) yields ``(CropBatch, labels)`` with the views cut from the original files.
        """

    @property
    def cuts_crops(self) -> bool:
        """True when ``batches(crops=...)`` is supported (the loader cuts views from full-resolution files)."""
        return False

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

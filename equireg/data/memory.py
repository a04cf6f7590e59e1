"""Datasets held as one uint8 tensor, batched by indexing (no per-image Python transforms, no workers).

Small benchmarks (Fashion-MNIST, CIFAR, synthetic) fit in memory many times over; indexing a tensor is far
cheaper than a DataLoader with PIL transforms, and the view policies then augment whole batches at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from equireg.data.base import Batch, CropSpec, ImageDataset, batch_slices, epoch_indices, to_float_images

FitMode = Literal["pad", "resize"]


def fit_size(images: Tensor, size: int, mode: FitMode = "resize", chunk: int = 4096) -> Tensor:
    """Bring uint8 (N, C, H, W) images to (N, C, size, size).

    ``pad`` centres the image on a zero canvas (only when ``size >= H, W``: it keeps every pixel exact, which
    is why 28-px Fashion-MNIST goes to 32 px this way); ``resize`` uses antialiased bilinear resampling.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if size < 1:
        raise ValueError(f"image_size must be >= 1, got {size}")
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if mode == "pad":
        if size < h or size < w:
            raise ValueError(f"cannot pad {h}x{w} images down to {size}x{size}; use resize")
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(images, (left, size - w - left, top, size - h - top), value=0)
    if mode != "resize":
        raise ValueError(f"fit mode must be 'pad' or 'resize', got {mode!r}")
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].to(torch.float32)
        resized = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


class TensorImageDataset(ImageDataset):
    """Images as a uint8 tensor (N, C, H, W) with C in {1, 3}, plus int64 labels.

    Args:
        images: uint8 (N, C, S, S), already at the final size (see :func:`fit_size`).
        labels: int64 (N,), values in ``[0, len(classes))``.
        classes: class names, index = label.
        name: dataset name for messages.
    """

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str], name: str = "tensor") -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1|3, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be square, got {tuple(images.shape[-2:])}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(f"labels must lie in [0, {len(classes)}), got {int(labels.min())}..{int(labels.max())}")
        self.images = images
        self.labels = labels
        self.classes = tuple(classes)
        self.name = name
        self.image_size = int(images.shape[-1])

    @property
    def in_memory(self) -> bool:
        return True

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """Keep the uint8 images (and labels) on ``device``, e.g. a GPU, so batching never copies from host."""
        return TensorImageDataset(self.images.to(device), self.labels.to(device), self.classes, self.name)

    def _select(self, indices: Tensor) -> TensorImageDataset:
        indices = indices.to(self.images.device)
        return TensorImageDataset(self.images[indices], self.labels[indices], self.classes, self.name)

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
        if crops is not None:
            raise ValueError(f"{self.name} is held in memory: its views are cut by the view policy, not with crops=")
        order = epoch_indices(len(self), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
        order = order.to(self.images.device)
        for part in batch_slices(order.numel(), batch_size, drop_last, start_batch):
            idx = order[part]
            labels = self.labels[idx]
            yield to_float_images(self.images[idx], device), labels.to(device) if device is not None else labels

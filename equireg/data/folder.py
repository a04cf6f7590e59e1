"""Image folders (``root/<class>/<image>.jpg|png``), decoded with PIL in DataLoader workers.

Folders do not fit in memory in general, so decoding happens in worker processes; the batch order still
comes from :func:`equireg.data.base.epoch_indices`, so folders and tensors shard and replay identically.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from equireg.data.base import Batch, ImageDataset, batch_slices, epoch_indices, to_float_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def default_num_workers() -> int:
    """Leave one core to the training process; at most 4 workers."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def load_image(path: str | Path, size: int) -> Tensor:
    """Decode one file to uint8 (3, size, size): RGB, shorter side resized to ``size``, centre crop.

    Raises:
        ValueError: naming the file when PIL cannot decode it (truncated or not an image).
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
            if (new_w, new_h) != (w, h):
                img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"could not decode image file {path}: {exc}") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class _DecodeFiles(Dataset[tuple[Tensor, int]]):
    def __init__(self, paths: Sequence[str], labels: Sequence[int], size: int) -> None:
        self.paths, self.labels, self.size = list(paths), list(labels), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return load_image(self.paths[i], self.size), self.labels[i]


class ImageFolderDataset(ImageDataset):
    """Class-subfolder image dataset; classes are the sorted subfolder names.

    Args:
        root: folder holding one subfolder per class.
        image_size: output side S (shorter side resized to S, then centre crop).
        num_workers: DataLoader worker processes (default: cores - 1, at most 4).
        extensions: accepted file suffixes (case-insensitive).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 32,
        num_workers: int | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        name: str = "imagefolder",
    ) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image>.png)")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ValueError(f"image folder {root} has no class subfolders (expected {root}/<class>/<image>.png)")
        suffixes = tuple(e.lower() for e in extensions)
        paths: list[str] = []
        labels: list[int] = []
        for label, cls in enumerate(classes):
            for file in sorted((root / cls).rglob("*")):
                if file.is_file() and file.suffix.lower() in suffixes:
                    paths.append(str(file))
                    labels.append(label)
        if not paths:
            raise ValueError(f"image folder {root} has no images with suffix {'/'.join(suffixes)}")
        self._init(root, paths, torch.tensor(labels, dtype=torch.long), tuple(classes), image_size, num_workers, name)

    def _init(
        self,
        root: Path,
        paths: list[str],
        labels: Tensor,
        classes: tuple[str, ...],
        image_size: int,
        num_workers: int | None,
        name: str,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.root, self.paths, self.labels, self.classes = root, paths, labels, classes
        self.image_size, self.name = int(image_size), name
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)

    @property
    def in_memory(self) -> bool:
        return False

    def _select(self, indices: Tensor) -> ImageFolderDataset:
        new = object.__new__(ImageFolderDataset)
        idx = indices.tolist()
        new._init(
            self.root, [self.paths[i] for i in idx], self.labels[indices], self.classes,
            self.image_size, self.num_workers, self.name,
        )  # fmt: skip
        return new

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
        order = epoch_indices(len(self), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
        plan = [order[s].tolist() for s in batch_slices(order.numel(), batch_size, drop_last)]
        if not plan:
            return
        files = _DecodeFiles(self.paths, self.labels.tolist(), self.image_size)
        pin = device is not None and torch.device(device).type == "cuda"
        loader = DataLoader(files, batch_sampler=plan, num_workers=self.num_workers, pin_memory=pin)
        batch_iter = iter(loader)
        try:
            for images, labels in batch_iter:
                yield to_float_images(images, device), labels.to(device) if device is not None else labels
        except Exception as exc:
            # The traceback references the DataLoader iterator; left alone, the worker pool lives until garbage
            # collection, whose shutdown then waits out a 5 s timeout. The worker's message already carries
            # the original traceback and the file name, so drop the local one and stop the workers now.
            del batch_iter
            raise exc.with_traceback(None) from None

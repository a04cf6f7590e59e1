"""Image folders (``root/<class>/<image>.jpg|png``), decoded in persistent DataLoader workers.

Folders do not fit in memory in general, so decoding happens in worker processes; the batch order still
comes from :func:`equireg.data.base.epoch_indices`, so folders and tensors shard and replay identically.

- **Evaluation images** (``batches(...)``): torchvision's Resize(round(S / crop_ratio)) + CenterCrop(S), i.e.
  Resize(256) + CenterCrop(224) at 224 px.
- **Training crops** (``batches(..., crops=CropSpec(S))``): RandomResizedCrop + flip of the *original* file at
  S px, both views from one decode, reproducible from ``(seed, epoch, image index)`` whatever the worker count.
- **Scale.** Paths live in a :class:`PathTable` (two numpy arrays), workers persist across epochs and receive
  one small task per batch, and a resumed epoch starts at ``start_batch`` without reading the batches before it.
- **Feeding a GPU.** Batches come back as uint8 (4x fewer bytes than float), pinned when the target device is
  CUDA, and are copied on a side stream one batch ahead so the copy overlaps the previous step's compute.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

from equireg.data.base import (
    Batch, CropBatch, CropSpec, ImageDataset, batch_slices, epoch_indices, sample_seed, to_float_images,
)  # fmt: skip
from equireg.data.decode import _DECODE_ERRORS, check_crop_ratio, crop_views, eval_image, load_image, read_bytes
from equireg.data.paths import PathTable

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "default_num_workers", "load_image", "sort_class_names"]


def default_num_workers() -> int:
    """The cores this process may use (its CPU affinity, shared among the ``LOCAL_WORLD_SIZE`` ranks of the
    node that torchrun starts), less one for the training process itself."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, cores // ranks_here - 1)


def sort_class_names(names: Iterable[str]) -> list[str]:
    """Sorted class names; numerically when every name is an integer (ImageNet-V2's ``0 .. 999``), so that
    folder ``10`` gets index 10 rather than 2."""
    names = list(names)
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def list_class_folders(root: Path) -> list[str]:
    return sort_class_names(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))


def scan_files(root: Path, folders: Sequence[str], extensions: Sequence[str]) -> tuple[list[str], list[int]]:
    """Relative paths of the image files under each class folder (recursively, sorted) and the folder's position."""
    suffixes = tuple(e.lower() for e in extensions)
    relative: list[str] = []
    owner: list[int] = []
    for position, folder in enumerate(folders):
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                if name.lower().endswith(suffixes):
                    relative.append(os.path.join(rel_dir, name))
                    owner.append(position)
    return relative, owner


def class_indices(folders: Sequence[str], classes: Sequence[str], root: Path) -> np.ndarray:
    """Index of each folder's class in ``classes`` (the training split's list); unknown classes are an error."""
    index = {name: i for i, name in enumerate(classes)}
    missing = [f for f in folders if f not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"image folder {root} has classes that the training split lacks: {shown}")
    return np.array([index[f] for f in folders], dtype=np.int64)


@dataclass(frozen=True)
class _Task:
    """One batch for a worker: which images, and how to cut them (small, pickled once per batch)."""

    indices: np.ndarray
    seed: int
    epoch: int
    crops: CropSpec | None


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    try:
        yield
    except _DECODE_ERRORS as exc:
        raise ValueError(f"could not decode image file {path}: {exc}") from exc


class _FolderReader(Dataset[Any]):
    """What the workers hold: the path table, the labels and the image settings; it builds whole batches."""

    def __init__(self, paths: PathTable, labels: np.ndarray, image_size: int, crop_ratio: float) -> None:
        self.paths, self.labels, self.image_size, self.crop_ratio = paths, labels, image_size, crop_ratio

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:  # pragma: no cover - batches always go through __getitems__
        raise TypeError("_FolderReader reads whole batches (__getitems__)")

    def __getitems__(self, task: _Task) -> tuple[Tensor, ...]:
        labels = torch.from_numpy(self.labels[task.indices])
        n, size = len(task.indices), self.image_size
        if task.crops is None:
            images = _empty_batch((n, size, size, 3), torch.uint8)
            for k, i in enumerate(task.indices.tolist()):
                path = self.paths[i]
                with _naming(path):
                    eval_image(read_bytes(path), size, self.crop_ratio, images[k])
            return images.permute(0, 3, 1, 2), labels
        spec = task.crops
        views = _empty_batch((spec.num_views, n, spec.size, spec.size, 3), torch.uint8)
        boxes = torch.empty((spec.num_views, n, 4))
        flips = torch.empty((spec.num_views, n))
        for k, i in enumerate(task.indices.tolist()):
            path = self.paths[i]
            generator = torch.Generator().manual_seed(sample_seed(task.seed, task.epoch, i))
            with _naming(path):
                boxes[:, k], flips[:, k] = crop_views(read_bytes(path), spec, generator, views[:, k])
        return views.permute(0, 1, 4, 2, 3), boxes, flips, labels


def _empty_batch(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A batch buffer; inside a DataLoader worker it is allocated in shared memory (as torch's default collate
    does), so handing the batch to the main process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def _as_is(batch: Any) -> Any:
    """The collate function: workers already return whole batches."""
    return batch


class _Plan:
    """The batch sampler of a persistent DataLoader: the dataset swaps in each epoch's tasks before iterating."""

    def __init__(self, tasks: list[_Task] | None = None) -> None:
        self.tasks = tasks or []

    def __iter__(self) -> Iterator[_Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


def _build_batch(raw: tuple[Tensor, ...], device: torch.device | None) -> Batch:
    """Host uint8 tensors -> float views on ``device`` (non-blocking copies), as ``(images | CropBatch, labels)``."""
    labels = raw[-1] if device is None else raw[-1].to(device, non_blocking=True)
    if len(raw) == 2:
        return to_float_images(raw[0], device), labels
    views, boxes, flips = raw[:3]
    move = (lambda t: t) if device is None else (lambda t: t.to(device, non_blocking=True))
    parts: dict[str, Tensor] = {}
    for v, suffix in enumerate("12"[: views.shape[0]]):
        parts |= {f"view{suffix}": to_float_images(views[v], device), f"box{suffix}": move(boxes[v]),
                  f"flip{suffix}": move(flips[v])}  # fmt: skip
    return CropBatch(**parts), labels


def _tensors(batch: Batch) -> list[Tensor]:
    images, labels = batch
    if isinstance(images, CropBatch):
        return [t for t in vars(images).values() if t is not None] + [labels]
    return [images, labels]


def device_batches(
    raw_batches: Iterable[tuple[Tensor, ...]], device: torch.device | str | None,
    build: Callable[[tuple[Tensor, ...], torch.device | None], Batch] = _build_batch,
) -> Iterator[Batch]:
    """Move host batches to ``device``. On CUDA the copy (and uint8 -> float) of batch k+1 runs on a side stream
    while the caller computes on batch k; an event per batch makes the compute stream wait for its own data only."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda":
        yield from (build(raw, dev) for raw in raw_batches)
        return
    side = torch.cuda.Stream(dev)
    pending: tuple[Batch, torch.cuda.Event] | None = None
    for raw in raw_batches:
        with torch.cuda.stream(side):
            batch = build(raw, dev)
            ready = torch.cuda.Event()
            ready.record(side)
        if pending is not None:
            yield _hand_over(*pending, dev)
        pending = (batch, ready)
    if pending is not None:
        yield _hand_over(*pending, dev)


def _hand_over(batch: Batch, ready: torch.cuda.Event, device: torch.device) -> Batch:
    compute = torch.cuda.current_stream(device)
    compute.wait_event(ready)
    for t in _tensors(batch):
        t.record_stream(compute)  # the allocator must not reuse this memory until the compute stream is done
    return batch


class ImageFolderDataset(ImageDataset):
    """Class-subfolder image dataset.

    Args:
        root: folder holding one subfolder per class (files may sit in nested folders below it).
        image_size: side S of evaluation images and training crops.
        num_workers: decoding worker processes (default: this rank's cores - 1, see :func:`default_num_workers`).
        extensions: accepted file suffixes (case-insensitive).
        classes: the class list the labels index into (the training split's, so that a validation folder with
            fewer classes keeps the training indices); default: this folder's subfolders, sorted (numerically
            when all are integers).
        crop_ratio: evaluation images are resized to round(S / crop_ratio) on the shorter side, then centre
            cropped to S (0.875: Resize(256) + CenterCrop(224)).
        prefetch_factor: batches each worker prepares ahead.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 32,
        num_workers: int | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        name: str = "imagefolder",
        classes: Sequence[str] | None = None,
        crop_ratio: float = 0.875,
        prefetch_factor: int = 2,
    ) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image>.png)")
        folders = list_class_folders(root)
        if not folders:
            raise ValueError(f"image folder {root} has no class subfolders (expected {root}/<class>/<image>.png)")
        classes = tuple(folders if classes is None else classes)
        folder_labels = class_indices(folders, classes, root)
        relative, owner = scan_files(root, folders, extensions)
        if not relative:
            raise ValueError(f"image folder {root} has no images with suffix {'/'.join(extensions)}")
        labels = folder_labels[np.asarray(owner, dtype=np.int64)]
        self._init(root, PathTable.from_relative(root, relative), labels, classes, image_size, num_workers, name,
                   check_crop_ratio(crop_ratio), prefetch_factor)  # fmt: skip

    def _init(
        self, root: Path, paths: PathTable, labels: np.ndarray, classes: tuple[str, ...], image_size: int,
        num_workers: int | None, name: str, crop_ratio: float, prefetch_factor: int,
    ) -> None:  # fmt: skip
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.root, self.paths, self.classes, self.name = root, paths, classes, name
        self._labels_np = labels
        self.labels = torch.from_numpy(labels)
        self.image_size, self.crop_ratio, self.prefetch_factor = int(image_size), crop_ratio, prefetch_factor
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self._reader = _FolderReader(paths, labels, self.image_size, crop_ratio)
        self._loader: DataLoader[Any] | None = None
        self._loader_pinned = False
        self._plan = _Plan()
        self._busy = False

    @property
    def in_memory(self) -> bool:
        return False

    @property
    def cuts_crops(self) -> bool:
        return True

    def _select(self, indices: Tensor) -> ImageFolderDataset:
        new = object.__new__(ImageFolderDataset)
        idx = indices.numpy()
        new._init(self.root, self.paths.select(idx), self._labels_np[idx], self.classes, self.image_size,
                  self.num_workers, self.name, self.crop_ratio, self.prefetch_factor)  # fmt: skip
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
        start_batch: int = 0,
        crops: CropSpec | None = None,
    ) -> Iterator[Batch]:
        pin = device is not None and torch.device(device).type == "cuda"
        host = self.host_batches(batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed, epoch=epoch, rank=rank,
                                 world_size=world_size, start_batch=start_batch, crops=crops, pin=pin)  # fmt: skip
        yield from device_batches(host, device)

    def host_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        crops: CropSpec | None = None,
        pin: bool = False,
    ) -> Iterator[tuple[Tensor, ...]]:
        """The uint8 batches as the workers return them, before any copy or conversion: ``(images (B,3,S,S),
        labels)``, or with ``crops`` ``(views (V,B,3,S,S), boxes (V,B,4), flips (V,B), labels)``. For custom
        device pipelines and for measuring the decoders alone (``benchmarks/loader.py``)."""
        order = epoch_indices(len(self), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
        order_np = order.numpy()
        slices = batch_slices(len(order_np), batch_size, drop_last, start_batch)
        tasks = [_Task(order_np[part], seed, epoch, crops) for part in slices]
        if tasks:
            yield from self._run_tasks(tasks, pin)

    def _run_tasks(self, tasks: list[_Task], pin: bool) -> Iterator[tuple[Tensor, ...]]:
        if self.num_workers == 0:
            yield from (self._reader.__getitems__(task) for task in tasks)
            return
        shared = not self._busy  # a second iterator alive at the same time gets its own, short-lived workers
        loader = self._persistent_loader(pin, tasks) if shared else self._new_loader(_Plan(tasks), pin, False)
        try:
            yield from loader
        except Exception as exc:
            # The worker's message already names the file and carries its traceback; stop the workers now
            # (left to garbage collection, their shutdown waits out a 5 s timeout) and drop the local frames.
            if shared:
                self.close()
            raise exc.with_traceback(None) from None
        finally:
            if shared:
                self._busy = False

    def _new_loader(self, plan: _Plan, pin: bool, persistent: bool) -> DataLoader[Any]:
        return DataLoader(
            self._reader, batch_sampler=plan, num_workers=self.num_workers, collate_fn=_as_is, pin_memory=pin,
            persistent_workers=persistent, prefetch_factor=self.prefetch_factor,
        )  # type: ignore[arg-type]

    def _persistent_loader(self, pin: bool, tasks: list[_Task]) -> DataLoader[Any]:
        if self._loader is None or self._loader_pinned != pin:
            self.close()
            self._loader, self._loader_pinned = self._new_loader(self._plan, pin, True), pin
        self._plan.tasks = tasks
        self._busy = True
        return self._loader

    def close(self) -> None:
        """Stop the persistent decoding workers (they also stop when the dataset is garbage collected)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

"""CIFAR-10 / CIFAR-100 from the "python version" folders (``cifar-10-batches-py``, ``cifar-100-python``).

No download: CIFAR is not in any package registry this project can use, so the user points ``root=`` (or
``$EQUIREG_CIFAR10`` / ``$EQUIREG_CIFAR100``) at the unpacked folder or at its parent. The files are pickles:
only load copies you trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from equireg.data.memory import TensorImageDataset, fit_size

_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "env": "EQUIREG_CIFAR10",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "env": "EQUIREG_CIFAR100",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
    },
}


def _unpickle(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        obj = pickle.load(fh, encoding="bytes")
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a CIFAR batch dictionary")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: list[Any]) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def locate_cifar(variant: str, root: str | Path | None) -> Path:
    """The folder holding ``variant``'s batch files: ``root`` itself or ``root/<standard folder name>``."""
    layout = _LAYOUT[variant]
    if root is None:
        root = os.environ.get(layout["env"])
        if not root:
            raise FileNotFoundError(
                f"{variant} needs its data folder: pass root= (the unpacked {layout['folder']} folder or its "
                f"parent) or set ${layout['env']}"
            )
    base = Path(root).expanduser()
    candidates = [base, base / layout["folder"]]
    for folder in candidates:
        if (folder / layout["test"][0]).is_file():
            return folder
    raise FileNotFoundError(
        f"{variant} batch files ({layout['test'][0]}, ...) not found; looked in {', '.join(map(str, candidates))}"
    )


def load_cifar(
    variant: Literal["cifar10", "cifar100"],
    split: str = "train",
    root: str | Path | None = None,
    image_size: int = 32,
    label_type: Literal["fine", "coarse"] = "fine",
) -> TensorImageDataset:
    """Read one split of CIFAR-10/100 into an in-memory dataset (uint8 (N, 3, 32, 32), resized if asked)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if label_type not in ("fine", "coarse"):
        raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
    layout = _LAYOUT[variant]
    folder = locate_cifar(variant, root)
    label_key = "labels" if variant == "cifar10" else f"{label_type}_labels"
    images, labels = [], []
    for file in layout[split]:
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(f"{variant} file {path} is missing")
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise ValueError(f"{path} lacks 'data' or '{label_key}' (keys: {sorted(batch)})")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    meta_path = folder / layout["meta"]
    if meta_path.is_file():
        meta = _unpickle(meta_path)
        names_key = "label_names" if variant == "cifar10" else f"{label_type}_label_names"
        classes = _names(meta[names_key])
    else:
        count = 10 if variant == "cifar10" else (100 if label_type == "fine" else 20)
        classes = tuple(str(i) for i in range(count))
    pixels = torch.from_numpy(np.concatenate(images))
    return TensorImageDataset(
        fit_size(pixels, image_size, "resize"), torch.from_numpy(np.concatenate(labels)), classes, name=variant
    )


def cifar10(split: str = "train", root: str | Path | None = None, image_size: int = 32) -> TensorImageDataset:
    """CIFAR-10 (50k/10k, 10 classes) from ``cifar-10-batches-py``."""
    return load_cifar("cifar10", split, root, image_size)


def cifar100(
    split: str = "train",
    root: str | Path | None = None,
    image_size: int = 32,
    label_type: Literal["fine", "coarse"] = "fine",
) -> TensorImageDataset:
    """CIFAR-100 (50k/10k, 100 fine or 20 coarse classes) from ``cifar-100-python``."""
    return load_cifar("cifar100", split, root, image_size, label_type)

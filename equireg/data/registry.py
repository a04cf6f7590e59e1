"""The dataset registry: ``create_dataset(name, split, root, **kw)``; plug-ins via ``equireg.datasets``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equireg.data.base import ImageDataset
from equireg.data.cifar import cifar10, cifar100
from equireg.data.fashion_mnist import fashion_mnist
from equireg.data.folder import ImageFolderDataset
from equireg.data.synthetic import synthetic
from equireg.registry import Registry

DATASETS: Registry[ImageDataset] = Registry("dataset", entry_point_group="equireg.datasets")
register_dataset = DATASETS.register
SPLITS = ("train", "test")


def create_dataset(
    name: str, split: str = "train", root: str | Path | None = None, context: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ImageDataset:
    """Build a registered dataset. Factories take ``split`` and ``root`` (None = their default) and options;
    ``context`` (the run's ``image_size``) reaches them when they declare it (docs/plugins.md).

    Example: ``create_dataset("fashion-mnist", "test", image_size=32)``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return DATASETS.create(name, context, split=split, root=root, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching an fnmatch pattern."""
    return DATASETS.names(pattern)


def imagefolder(split: str = "train", root: str | Path | None = None, **kwargs: Any) -> ImageFolderDataset:
    """``root/<split>/<class>/*`` when ``root/<split>`` exists, else ``root/<class>/*`` (one folder)."""
    if root is None:
        raise ValueError("imagefolder needs root= (a folder of class subfolders, or of train/ and test/)")
    folder = Path(root).expanduser()
    if (folder / split).is_dir():
        folder = folder / split
    return ImageFolderDataset(folder, **kwargs)


register_dataset("fashion-mnist")(fashion_mnist)
register_dataset("cifar10")(cifar10)
register_dataset("cifar100")(cifar100)
register_dataset("imagefolder")(imagefolder)
register_dataset("synthetic")(synthetic)

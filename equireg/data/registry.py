"""The dataset registry: ``create_dataset(name, split, root, **kw)``; plug-ins via ``equireg.datasets``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from equireg.data.base import ImageDataset
from equireg.data.cifar import cifar10, cifar100
from equireg.data.fashion_mnist import fashion_mnist
from equireg.data.folder import ImageFolderDataset, list_class_folders
from equireg.data.rot3d import rot3d
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


SPLIT_FOLDERS = {"train": ("train",), "test": ("val", "test")}
"""Folder names per split, in order of preference: the evaluation split reads ``val/`` (ImageNet) or ``test/``."""


def split_folder(root: str | Path, split: str) -> tuple[Path, Path | None]:
    """The folder of ``split`` under ``root`` and the training folder whose classes index the labels.

    A root holding any of ``train/``, ``val/``, ``test/`` is a split layout and must hold the split asked for;
    a root of class folders only serves both splits (the test set is then the training images).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/train/<class>/<image>.jpg)")
    present = [name for names in SPLIT_FOLDERS.values() for name in names if (root / name).is_dir()]
    if not present:
        return root, None
    wanted = SPLIT_FOLDERS[split]
    found = next((root / name for name in wanted if (root / name).is_dir()), None)
    if found is None:
        need = " or ".join(f"{name}/" for name in wanted)
        have = ", ".join(f"{name}/" for name in present)
        raise FileNotFoundError(f"image folder {root} has {have} but no {need} for the {split} split "
                                f"(expected {root}/{wanted[0]}/<class>/<image>.jpg)")
    train = root / "train"
    return found, train if train.is_dir() else None


def imagefolder(
    split: str = "train", root: str | Path | None = None, image_size: int = 32, **kwargs: Any
) -> ImageFolderDataset:
    """``root/train/<class>/*`` and ``root/val|test/<class>/*`` (labels index the training classes), or
    ``root/<class>/*`` for both splits; ``image_size`` is the run's (views and evaluation images)."""
    if root is None:
        raise ValueError("imagefolder needs root= (a folder of train/ and val/ or test/, or of class subfolders)")
    folder, train = split_folder(root, split)
    if train is not None and train != folder and "classes" not in kwargs:
        kwargs["classes"] = list_class_folders(train)
    return ImageFolderDataset(folder, image_size=image_size, **kwargs)


register_dataset("fashion-mnist")(fashion_mnist)
register_dataset("cifar10")(cifar10)
register_dataset("cifar100")(cifar100)
register_dataset("imagefolder")(imagefolder)
register_dataset("synthetic")(synthetic)
register_dataset("rot3d")(rot3d)

"""Reading a rot3d folder: the registered ``rot3d`` dataset (an image folder per split) and the labels file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from equireg.data.folder import ImageFolderDataset
from equireg.data.rot3d.make import LABELS, MARKER

MAKE_HINT = "make one with `equireg data make rot3d --out {root}`"


def rot3d_root(root: str | Path | None) -> Path:
    """``root`` as a checked rot3d folder.

    Raises:
        FileNotFoundError: no ``root`` given, or it lacks the ``rot3d.json`` that ``equireg data make rot3d``
            writes; the message says how to make one.
    """
    if root is None:
        raise FileNotFoundError("dataset rot3d needs a folder (--data-root DIR); " + MAKE_HINT.format(root="DIR"))
    folder = Path(root).expanduser()
    if not (folder / MARKER).is_file() or not (folder / LABELS).is_file():
        raise FileNotFoundError(f"{folder} is not a rot3d folder (no {MARKER} or {LABELS}); "
                                + MAKE_HINT.format(root=folder))
    return folder


def rot3d(
    split: str = "train", root: str | Path | None = None, image_size: int = 32, crop_ratio: float = 1.0,
    **kwargs: Any,
) -> ImageFolderDataset:
    """The images of one split as classes = objects (``root/<split>/<object>/<view>.png``).

    Evaluation images are the whole frame resized to ``image_size`` (``crop_ratio`` 1: the camera already
    frames every object with a margin, a centre crop would only cut it). Other options are those of
    :class:`~equireg.data.folder.ImageFolderDataset` (``num_workers``, ...).
    """
    folder = rot3d_root(root)
    kwargs.setdefault("name", "rot3d")
    return ImageFolderDataset(folder / split, image_size=image_size, crop_ratio=crop_ratio, **kwargs)


@dataclass(frozen=True)
class Rot3dLabels:
    """Every image's labels, in the rows of ``labels.npz``: path (relative), split, object, view and rotation."""

    root: Path
    path: NDArray[np.str_]
    split: NDArray[np.str_]
    object: NDArray[np.int64]
    view: NDArray[np.int64]
    quaternion: NDArray[np.float64]
    rotation: NDArray[np.float64]
    object_names: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.path)

    def rows(self, split: str) -> NDArray[np.int64]:
        """Row indices of one split."""
        return np.flatnonzero(self.split == split)

    def files(self, rows: NDArray[np.int64] | None = None) -> list[Path]:
        rows = np.arange(len(self)) if rows is None else rows
        return [self.root / str(p) for p in self.path[rows]]


def load_labels(root: str | Path) -> Rot3dLabels:
    """The labels of a rot3d folder (``labels.npz`` is read without pickles)."""
    folder = rot3d_root(root)
    with np.load(folder / LABELS, allow_pickle=False) as data:
        arrays = {k: data[k] for k in ("path", "split", "object", "view", "quaternion", "rotation", "object_names")}
    return Rot3dLabels(root=folder, **arrays)

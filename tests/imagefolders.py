"""Tiny image folders for tests: class subfolders of small JPEG/PNG files with smooth, distinct content."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (H, W, 3): a random colour gradient (compresses well, survives JPEG)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    a, b, c = rng.uniform(0, 1, (3, 1, 1, 3))
    return np.clip(255 * (0.2 + 0.6 * (a * x + b * y + c) / 3), 0, 255).astype(np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 92} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(image).save(path, **options)
    return path


def write_classes(
    root: Path, classes: Sequence[str], per_class: int = 2, size: tuple[int, int] = (24, 32), suffix: str = ".jpg",
    seed: int = 0,
) -> Path:
    """``root/<class>/<i>.jpg`` for every class; each image differs (seeded by class position and i)."""
    for k, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{i}{suffix}", smooth_image(*size, seed=seed + 1000 * k + i))
    return root

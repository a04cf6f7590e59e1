"""Procedural labelled images for tests and for users without data.

Class ``k`` of ``C`` (C even) is an oriented grating plus an arrow, both at angle theta_k = pi * k / C, tinted
with hue ``k mod C/2``. Classes ``k`` and ``k + C/2`` share the tint and differ only by a 90 degree turn of
their pattern, so a representation that is invariant to rot90 cannot separate them, while one that is
equivariant can: the set is deliberately not rotation-invariant. Phase, frequency, arrow position, brightness
and pixel noise vary per image. Everything is generated on the CPU from ``seed`` alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from equireg.data.memory import TensorImageDataset

_SPLIT_OFFSET = {"train": 0, "test": 1_000_003}


def _hue_to_rgb(hue: Tensor) -> Tensor:
    """Saturated colours on the hue circle, hue in [0, 1): (N,) -> (N, 3) in [0.15, 1]."""
    angles = 2 * math.pi * (hue[:, None] - torch.tensor([0.0, 1 / 3, 2 / 3]))
    return 0.575 + 0.425 * torch.cos(angles)


def render_synthetic(labels: Tensor, num_classes: int, image_size: int, noise: float, gen: torch.Generator) -> Tensor:
    """uint8 (N, 3, S, S) images of the given labels (see module docstring)."""
    n, s = labels.shape[0], image_size
    theta = math.pi * labels.to(torch.float32) / num_classes
    theta = theta + (torch.rand(n, generator=gen) - 0.5) * (0.5 * math.pi / num_classes)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s - 0.5
    yy, xx = coords[None, :, None], coords[None, None, :]

    along = xx * cos - yy * sin  # axis of the pattern (y points down in images)
    across = xx * sin + yy * cos
    freq = 2.5 + 2.0 * torch.rand(n, 1, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    grating = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * across + phase)

    # an arrow: a bar along theta with a blob at its head, so a half turn is visible too
    offset = (torch.rand(n, 2, 1, 1, generator=gen) - 0.5) * 0.3
    ax = along - (offset[:, 1] * cos - offset[:, 0] * sin)
    ac = across - (offset[:, 1] * sin + offset[:, 0] * cos)
    bar = torch.exp(-0.5 * (ac / 0.05) ** 2) * (ax.abs() < 0.28).float()
    head = torch.exp(-0.5 * (((ax - 0.28) ** 2 + ac**2) / 0.09**2))
    arrow = torch.clamp(bar + head, max=1.0)

    half = max(1, num_classes // 2)
    tint = _hue_to_rgb((labels % half).to(torch.float32) / half)[:, :, None, None]
    brightness = 0.75 + 0.25 * torch.rand(n, 1, 1, 1, generator=gen)
    image = brightness * (tint * (0.25 + 0.45 * grating[:, None]) + 0.55 * arrow[:, None])
    image = image + noise * torch.randn(image.shape, generator=gen)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def synthetic(
    split: str = "train",
    root: str | None = None,
    num_samples: int | None = None,
    image_size: int = 32,
    num_classes: int = 10,
    noise: float = 0.05,
    seed: int = 0,
) -> TensorImageDataset:
    """A balanced synthetic dataset (default 5,000 train / 1,000 test images at 32 px, 10 classes).

    Args:
        split: 'train' or 'test' (different random streams from the same seed).
        root: not used (accepted for interface symmetry; must be None).
        num_samples: number of images.
        image_size: side in pixels (>= 8).
        num_classes: even number >= 2 (pairs of classes differ by a 90 degree turn).
        noise: std of additive Gaussian pixel noise in [0, 1] units.
        seed: generation seed.
    """
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if root is not None:
        raise ValueError("the synthetic dataset is generated, it takes no root")
    if num_classes < 2 or num_classes % 2:
        raise ValueError(f"num_classes must be an even number >= 2, got {num_classes}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    n = (5000 if split == "train" else 1000) if num_samples is None else int(num_samples)
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(int(seed) + _SPLIT_OFFSET[split])
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
    chunks = [
        render_synthetic(labels[i : i + 2048], num_classes, image_size, noise, gen) for i in range(0, n, 2048)
    ]
    classes = tuple(f"angle{round(180 * k / num_classes):03d}_hue{k % (num_classes // 2)}" for k in range(num_classes))
    return TensorImageDataset(torch.cat(chunks), labels, classes, name="synthetic")

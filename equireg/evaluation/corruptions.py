"""Deterministic, batched image corruptions with five severities, registered by name.

In the spirit of ImageNet-C (Hendrycks & Dietterich, 2019) but **not** ImageNet-C: a handful of corruptions
computed on the fly as tensor ops on any device, with severities scaled to the image size, so that small
datasets (CIFAR, STL) can be probed without a pre-rendered corrupted copy.

A corruption is ``fn(images, severity, generator) -> images``: ``images`` (B, C, H, W) float in [0, 1],
``severity`` an int (0 = unchanged, 1..5 increasingly strong), ``generator`` a ``torch.Generator`` on the
images' device that supplies all randomness. Add your own with ``@register_corruption("name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from equireg.registry import Registry

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]

CORRUPTIONS: Registry[Tensor] = Registry("corruption", entry_point_group="equireg.corruptions")
register_corruption = CORRUPTIONS.register

DEFAULT_CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast", "pixelate", "rotate")
MAX_SEVERITY = 5


def list_corruptions(pattern: str = "*") -> list[str]:
    return CORRUPTIONS.names(pattern)


def get_corruption(name: str) -> Corruption:
    """The corruption registered under ``name`` (unknown names raise an error listing the valid ones)."""
    return CORRUPTIONS.get(name)


def apply_corruption(
    corruption: str | Corruption, images: Tensor, severity: int, seed: int = 0
) -> Tensor:
    """Corrupt ``images`` reproducibly: the same seed, images and device give the same output."""
    fn = get_corruption(corruption) if isinstance(corruption, str) else corruption
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return fn(images, severity, generator)


def _param(values: Sequence[float], severity: int) -> float:
    """The severity's parameter (severity 1..5 indexes ``values``); anything else is a clear error."""
    if not isinstance(severity, int) or not 1 <= severity <= len(values):
        raise ValueError(f"severity must be an int in 0..{len(values)}, got {severity!r}")
    return values[severity - 1]


def _is_identity(severity: int) -> bool:
    if severity == 0:
        return True
    if not isinstance(severity, int) or not 1 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be an int in 0..{MAX_SEVERITY}, got {severity!r}")
    return False


@register_corruption("gaussian_noise")
def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Additive i.i.d. noise, std (0.08, 0.12, 0.18, 0.26, 0.38) as in ImageNet-C, clipped to [0, 1]."""
    if _is_identity(severity):
        return images
    std = _param((0.08, 0.12, 0.18, 0.26, 0.38), severity)
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + std * noise).clamp(0.0, 1.0)


def blur_sigma(severity: int, side: int) -> float:
    """Blur std in pixels: ImageNet-C's (1, 2, 3, 4, 6) at 224 px, scaled by sqrt(side / 224) so that small
    images are blurred visibly but not erased (32 px: 0.38 .. 2.3 px)."""
    return _param((1.0, 2.0, 3.0, 4.0, 6.0), severity) * math.sqrt(side / 224.0)


@register_corruption("gaussian_blur")
def gaussian_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Separable Gaussian blur with reflect padding (deterministic; the generator is unused)."""
    if _is_identity(severity):
        return images
    sigma = blur_sigma(severity, min(images.shape[-2:]))
    radius = max(1, math.ceil(3.0 * sigma))
    radius = min(radius, min(images.shape[-2:]) - 1)  # reflect padding needs pad < size
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.clamp(0.0, 1.0)


@register_corruption("contrast")
def contrast(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Shrink towards each image's mean by (0.4, 0.3, 0.2, 0.1, 0.05), as in ImageNet-C."""
    if _is_identity(severity):
        return images
    factor = _param((0.4, 0.3, 0.2, 0.1, 0.05), severity)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * factor + mean).clamp(0.0, 1.0)


def pixelate_block(severity: int, side: int) -> int:
    """Mosaic cell side in pixels: (2, 3, 4, 5, 6), times side / 224 for images larger than 224 px."""
    return max(2, round(_param((2.0, 3.0, 4.0, 5.0, 6.0), severity) * max(1.0, side / 224.0)))


@register_corruption("pixelate")
def pixelate(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Replace each k x k cell (anchored at the top-left; edge cells partial) by its mean.

    Integer cells, unlike ImageNet-C's fractional resize factors (0.6, 0.5, ...), degrade monotonically: with a
    0.6 factor the cells misalign with the pixel grid and severity 1 came out worse than severity 2.
    """
    if _is_identity(severity):
        return images
    h, w = images.shape[-2:]
    k = pixelate_block(severity, min(h, w))
    cells = F.avg_pool2d(images, k, stride=k, ceil_mode=True)  # partial edge cells average their own pixels
    return cells.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)[..., :h, :w]


@register_corruption("rotate")
def rotate(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Rotate each image by (5, 10, 15, 20, 25) degrees with a random sign per image; bilinear, with
    reflection padding so that the corruption is the rotation rather than black corners."""
    if _is_identity(severity):
        return images
    angle = math.radians(_param((5.0, 10.0, 15.0, 20.0, 25.0), severity))
    b, _, h, w = images.shape
    sign = torch.randint(0, 2, (b,), generator=generator, device=images.device).to(images.dtype) * 2 - 1
    theta = angle * sign
    cos, sin = torch.cos(theta), torch.sin(theta)
    aspect = w / h  # affine_grid works in [-1, 1]^2, so correct for non-square images
    zeros = torch.zeros_like(cos)
    mat = torch.stack(
        [torch.stack([cos, -sin / aspect, zeros], 1), torch.stack([sin * aspect, cos, zeros], 1)], 1
    )
    grid = F.affine_grid(mat, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

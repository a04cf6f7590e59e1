"""Batched image operations with per-sample parameters (float images in [0, 1], shape (B, C, H, W)).

Each function applies one kind of augmentation to the whole batch at once; a sample whose parameter is neutral
(factor 1, hue 0, sigma 0) comes out unchanged up to float rounding. The colour ops follow torchvision's
ColorJitter definitions (brightness and contrast blend with black and with the mean grey level, saturation with
the grey image, hue rotates the HSV hue circle), so factors mean what they mean there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as in PIL and torchvision


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def resized_crop(images: Tensor, boxes: Tensor, flips: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Crop normalised boxes (centre y, centre x, height, width; fractions of the image) and resize them.

    Bilinear sampling at output-pixel centres (``align_corners=False``) with coordinates clamped to the image
    (``padding_mode="border"``), so a whole-image crop at the input size returns the input. ``flips`` (B,)
    mirrors the output horizontally. Boxes are continuous, so the recorded parameters are exactly what was
    applied (no rounding to whole pixels).
    """
    b = images.shape[0]
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    cy, cx, h, w = boxes.unbind(-1)
    sign = 1.0 - 2.0 * flips.to(device=images.device, dtype=torch.float32)
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=torch.float32)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1]
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = 2.0 * cx - 1.0
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2.0 * cy - 1.0
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    grid = F.affine_grid(theta.to(dtype), [b, 1, out_size[0], out_size[1]], align_corners=False)
    out = F.grid_sample(images.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(images.dtype)


def grayscale(images: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB images."""
    r, g, b = images.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    return (images * _per_sample(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, images)
    mean = grayscale(images).mean(dim=(-2, -1), keepdim=True)
    return (f * images + (1.0 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, images)
    return (f * images + (1.0 - f) * grayscale(images)).clamp_(0.0, 1.0)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of the circle, in [-0.5, 0.5]) keeping HSV value and saturation.

    The hue in sextants is 2a + (x[a+1] - x[a+2]) / C with a the index of the largest channel and chroma
    C = max - min (continuous across ties, and any multiple of 6 is irrelevant). The rotated colour follows from
    value V, C and the new hue h: channel n (R, G, B for n = 5, 3, 1) is V - C * clip(2 - |k - 2|, 0, 1) with
    k = (n + h) mod 6, the closed form of HSV -> RGB.
    """
    value, top = images.max(dim=1, keepdim=True)
    chroma = value - images.min(dim=1, keepdim=True).values
    nxt = images.gather(1, torch.remainder(top + 1, 3))
    after = images.gather(1, torch.remainder(top + 2, 3))
    hue = (nxt - after).div_(torch.where(chroma > 0, chroma, torch.ones_like(chroma)))
    hue.add_(2.0 * top.to(images.dtype)).add_(6.0 * shift.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1))
    offsets = torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    k = torch.remainder(hue + offsets, 6.0)
    ramp = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    return ramp.mul_(chroma).neg_().add_(value).clamp_(0.0, 1.0)


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
COLOR_OP_NAMES = ("brightness", "contrast", "saturation", "hue")


def color_jitter(images: Tensor, factors: Tensor, order: Tensor, applied: Tensor) -> Tensor:
    """Apply brightness, contrast, saturation and hue in a per-sample order to the samples with ``applied``.

    ``factors`` (B, 4) in the order of :data:`COLOR_OP_NAMES`; ``order`` (B, 4) lists op indices by slot. Each
    (slot, op) pair touches only the samples that run that op in that slot, so the cost is that of four ops.
    """
    out = images.clone()
    applied = applied.to(images.device).bool()
    order = order.to(images.device)
    factors = factors.to(images.device)
    for slot in range(order.shape[1]):
        for op_index, op in enumerate(COLOR_OPS):
            idx = torch.nonzero(applied & (order[:, slot] == op_index)).squeeze(1)
            if idx.numel():
                out[idx] = op(out[idx], factors[idx, op_index])
    return out


def _on_subset(images: Tensor, mask: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Copy of ``images`` with ``fn`` applied to the samples in ``mask`` only (skipped samples cost nothing)."""
    idx = torch.nonzero(mask.to(images.device).bool()).squeeze(1)
    out = images.clone()
    if idx.numel():
        out[idx] = fn(images[idx])
    return out


def to_grayscale(images: Tensor, mask: Tensor) -> Tensor:
    """Replace the samples in ``mask`` by their luma repeated on all channels."""
    return _on_subset(images, mask, lambda x: grayscale(x).expand_as(x))


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalised 1-D Gaussian taps (B, K) at integer offsets; sigma > 0."""
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=sigma.dtype)
    taps = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    return taps / taps.sum(dim=1, keepdim=True)


def _filter_axis(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """Per-sample 1-D filter along ``dim`` (-1 or -2) with reflect padding, as a sum of shifted slices."""
    k = taps.shape[1]
    pad = k // 2
    padding = (pad, pad, 0, 0) if dim == -1 else (0, 0, pad, pad)
    padded = F.pad(x, padding, mode="reflect")
    size = x.shape[dim]
    out = torch.zeros_like(x)
    for t in range(k):
        out.add_(padded.narrow(dim, t, size) * taps[:, t].view(-1, 1, 1, 1))
    return out


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with per-sample sigma (B,), reflect padding; samples with sigma 0 are kept.

    Small kernels (3-9 taps at 32-96 px) make K shifted multiply-adds cheaper than a grouped convolution with
    one filter per sample and channel.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel_size must be a positive odd number, got {kernel_size}")
    if kernel_size // 2 >= min(images.shape[-2:]):
        raise ValueError(f"blur kernel_size {kernel_size} is too large for {tuple(images.shape[-2:])} images")
    sigma = sigma.to(device=images.device, dtype=images.dtype)
    mask = sigma > 0
    if kernel_size == 1:
        return images.clone()

    def blur(x: Tensor) -> Tensor:
        taps = gaussian_kernels(sigma[mask], kernel_size)
        return _filter_axis(_filter_axis(x, taps, -1), taps, -2)

    return _on_subset(images, mask, blur)


def solarize(images: Tensor, mask: Tensor, threshold: float) -> Tensor:
    """Invert pixels at or above ``threshold`` in the samples of ``mask``."""
    return _on_subset(images, mask, lambda x: torch.where(x >= threshold, 1.0 - x, x))

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
    dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    boxes = boxes.to(device=images.device, dtype=dtype)
    cy, cx, h, w = boxes.unbind(-1)
    sign = 1.0 - 2.0 * flips.to(device=images.device, dtype=dtype)
    # sampling grid in grid_sample's [-1, 1] coordinates, built per axis (cheaper than affine_grid's bmm):
    # output pixel centre u in [-1, 1] reads input coordinate (2 * centre - 1) + size * u (mirrored if flipped)
    u = (torch.arange(out_size[1], device=images.device, dtype=dtype) * 2 + 1) / out_size[1] - 1
    v = (torch.arange(out_size[0], device=images.device, dtype=dtype) * 2 + 1) / out_size[0] - 1
    grid_x = (w * sign)[:, None] * u + (2 * cx - 1)[:, None]
    grid_y = h[:, None] * v + (2 * cy - 1)[:, None]
    grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1)
    out = F.grid_sample(images.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(images.dtype)


def grayscale(images: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB images."""
    r, g, b = images.unbind(1)
    return (r * GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(1)


# The colour ops below work in place on as few fresh buffers as possible: on CPU, every new megabyte-sized
# tensor costs page faults (glibc maps such blocks afresh), which at 32 px dominates the arithmetic.


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    return (images * _per_sample(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, images)
    mean = grayscale(images).mean(dim=(-2, -1), keepdim=True)
    return (images * f).add_(mean * (1.0 - f)).clamp_(0.0, 1.0)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, images)
    return (images * f).add_(grayscale(images).mul_(1.0 - f)).clamp_(0.0, 1.0)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of the circle, in [-0.5, 0.5]) keeping HSV value and saturation.

    With value V = max, chroma C = V - min and the hue in sextants h (from whichever channel is largest), the
    rotated colour is channel n = V - C * clip(2 - |k - 2|, 0, 1), k = (n + h + 6 * shift) mod 6, n = 5, 3, 1
    for R, G, B (the closed form of HSV -> RGB). Branches are blended with 0/1 masks instead of ``torch.where``,
    which is several times slower than arithmetic on CPU.
    """
    r, g, b = images.unbind(1)
    value = torch.maximum(r, g)
    value = torch.maximum(value, b, out=value)
    chroma = torch.minimum(r, g)
    chroma = torch.minimum(chroma, b, out=chroma).neg_().add_(value)
    red_max = value == r
    green_max = (value == g).logical_and_(red_max.logical_not())
    blue_max = red_max.logical_or(green_max).logical_not_()
    # hue in sextants: (g - b) / C if red is largest, 2 + (b - r) / C if green, 4 + (r - g) / C if blue
    hue = (g - b).mul_(red_max)
    part = (b - r).add_(chroma, alpha=2.0).mul_(green_max)
    hue.add_(part)
    part = torch.sub(r, g, out=part).add_(chroma, alpha=4.0).mul_(blue_max)
    hue.add_(part).div_(torch.clamp_min(chroma, 1e-12, out=part))  # grey: 0 / tiny, and C = 0 hides the hue
    # k = (n + hue + 6 shift) mod 6 per channel; the +6 keeps it positive so frac() is the modulo
    offsets = torch.tensor([11.0, 9.0, 7.0], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    offsets = offsets + 6.0 * shift.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)
    k = (hue.unsqueeze(1) + offsets).mul_(1.0 / 6.0).frac_().mul_(6.0)
    ramp = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    return ramp.mul_(chroma.unsqueeze(1)).neg_().add_(value.unsqueeze(1)).clamp_(0.0, 1.0)


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _inverse_permutation(perm: Tensor) -> Tensor:
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return inverse


def color_jitter(images: Tensor, factors: Tensor, order: Tensor, applied: Tensor, inplace: bool = False) -> Tensor:
    """Apply brightness, contrast, saturation and hue in a per-sample order to the samples with ``applied``.

    ``factors`` (B, 4) in the order of :data:`COLOR_OPS` (brightness, contrast, saturation, hue); ``order`` (B, 4) lists op indices by slot.
    For each slot the batch is regrouped (one gather) so that the samples running the same op form one
    contiguous block, which that op then processes in place: four gathers and sixteen block ops in total,
    instead of a gather and a scatter per (slot, op) pair. The grouping is computed where ``order`` and ``applied``
    live: pass the host copies (``ViewParams.on_host()``) and no step waits for the device. ``inplace`` writes the
    result into ``images`` (the other ops of this module take the same flag).
    """
    b, device, skip = images.shape[0], images.device, len(COLOR_OPS)
    keys = torch.where(applied.bool()[:, None], order, torch.full_like(order, skip))
    factors = factors.to(device=device, dtype=images.dtype)
    rows = torch.arange(b)  # rows[i]: the sample held in row i of x (on the host, like keys)
    x = images
    for slot in range(keys.shape[1]):
        perm = torch.argsort(keys[:, slot], stable=True)  # samples grouped by the op they run in this slot
        x = x.index_select(0, _inverse_permutation(rows)[perm].to(device, non_blocking=True))
        rows = perm
        counts = torch.bincount(keys[perm, slot], minlength=skip + 1).tolist()
        perm_dev = perm.to(device, non_blocking=True)
        start = 0
        for op_index, op in enumerate(COLOR_OPS):
            n = counts[op_index]
            if n:
                block = x.narrow(0, start, n)
                block.copy_(op(block, factors[perm_dev[start : start + n], op_index]))
            start += n
    x = x.index_select(0, _inverse_permutation(rows).to(device, non_blocking=True))
    return images.copy_(x) if inplace else x


def _on_subset(images: Tensor, mask: Tensor, fn: Callable[[Tensor, Tensor], Tensor], inplace: bool) -> Tensor:
    """``images`` with ``fn(selected images, their indices)`` applied to the samples in ``mask`` only (skipped
    samples cost nothing). The selection is computed where ``mask`` lives (pass a host mask: no device wait)."""
    mask = mask.bool()
    if bool(mask.all()):  # no copy of the input first: fn makes a new tensor anyway
        every = torch.arange(images.shape[0], device=images.device)
        return images.copy_(fn(images, every)) if inplace else fn(images, every).contiguous()
    out = images if inplace else images.clone()
    idx = torch.nonzero(mask).squeeze(1).to(images.device, non_blocking=True)
    if idx.numel():
        out[idx] = fn(images[idx], idx)
    return out


def to_grayscale(images: Tensor, mask: Tensor, inplace: bool = False) -> Tensor:
    """Replace the samples in ``mask`` by their luma repeated on all channels."""
    return _on_subset(images, mask, lambda x, _: grayscale(x).expand_as(x), inplace)


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """Normalised 1-D Gaussian taps (B, K) at integer offsets; sigma > 0."""
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=sigma.dtype)
    taps = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    return taps / taps.sum(dim=1, keepdim=True)


def _filter_axis(images: Tensor, taps: Tensor, dim: int) -> Tensor:
    """Correlate every sample's channels with its 1-D ``taps`` (B, K) along ``dim`` (-1: x, -2: y), reflect-padded
    along that axis only: one grouped convolution with a filter per sample and channel (the batch is viewed as one
    image of B*C channels)."""
    b, c, h, w = images.shape
    k = taps.shape[1]
    pad = (k // 2, k // 2, 0, 0) if dim == -1 else (0, 0, k // 2, k // 2)
    weight = taps.repeat_interleave(c, dim=0).view(b * c, 1, *((1, k) if dim == -1 else (k, 1)))
    padded = F.pad(images, pad, mode="reflect")
    return F.conv2d(padded.reshape(1, b * c, *padded.shape[-2:]), weight, groups=b * c).view(b, c, h, w)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int, inplace: bool = False,
                  active: Tensor | None = None) -> Tensor:
    """Separable Gaussian blur with per-sample sigma (B,), reflect padding; samples with sigma 0 are kept.

    Each axis is padded and filtered on its own (a grouped convolution per axis), so the first pass does not also
    filter the rows the second pass's padding adds. K shifted multiply-adds, used before, took about 3x kornia's
    time at 23 taps (224 px); this form is level with it (docs/performance.md, "kornia").
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel_size must be a positive odd number, got {kernel_size}")
    if kernel_size // 2 >= min(images.shape[-2:]):
        raise ValueError(f"blur kernel_size {kernel_size} is too large for {tuple(images.shape[-2:])} images")
    mask = sigma > 0 if active is None else active  # ``active``: the host copy of sigma > 0 (no device wait)
    sigma = sigma.to(device=images.device, dtype=images.dtype)
    if kernel_size == 1:
        return images if inplace else images.clone()

    def blur(x: Tensor, idx: Tensor) -> Tensor:
        taps = gaussian_kernels(sigma[idx], kernel_size)
        return _filter_axis(_filter_axis(x, taps, -1), taps, -2)

    return _on_subset(images, mask, blur, inplace)


def solarize(images: Tensor, mask: Tensor, threshold: float, inplace: bool = False) -> Tensor:
    """Invert pixels at or above ``threshold`` in the samples of ``mask``."""

    def invert_bright(x: Tensor, _: Tensor) -> Tensor:
        bright = (x >= threshold).to(x.dtype)
        return bright.mul_(x.mul(-2.0).add_(1.0)).add_(x)  # x -> 1 - x where bright, without torch.where

    return _on_subset(images, mask, invert_bright, inplace)

"""Decoding one file into training crops or an evaluation image, as fast as a well-kept library allows.

- JPEGs go through libjpeg-turbo via ``simplejpeg`` (PIL for everything else, and for the rare JPEG that
  simplejpeg refuses). When every crop of a file will be shrunk at least 2x, 4x or 8x, the file is decoded at
  that reduced scale in the DCT domain, which skips most of the inverse DCT and colour conversion.
- Crops are resized with torch's uint8 bilinear kernel (antialiased, vectorised for channels-last RGB), which
  measured ~5x faster than PIL's resize on 224-px crops; only the crop region is resized.
- Boxes are sampled by torchvision's RandomResizedCrop rule (that of ``augment.views.sample_crop_boxes``), then
  rounded to the decoded image's pixel grid; the box reported is the one actually cut, as fractions of the image.
- Workers write (H, W, 3) rows, a plain memory copy; the batch is handed on as a channels-last (B, 3, H, W) view
  and made contiguous during the uint8 -> float conversion on the target device.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from equireg.data.base import CropSpec

try:  # optional: a libjpeg-turbo binding without PIL's per-image overhead
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency; PIL decodes everything without it
    simplejpeg = None

_JPEG_MAGIC = b"\xff\xd8"
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
REDUCTIONS = (8, 4, 2, 1)  # DCT-domain scales that are faster than a full decode (7/8, 3/4, ... are slower)


def read_bytes(path: str | Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _is_jpeg(data: bytes) -> bool:
    return simplejpeg is not None and data[:2] == _JPEG_MAGIC


def image_hw(data: bytes) -> tuple[int, int]:
    """(height, width) from the header alone."""
    if _is_jpeg(data):
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return int(height), int(width)
        except ValueError:
            pass  # let PIL try (and name the problem)
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    return int(height), int(width)


def decode_rgb(data: bytes, reduce: int = 1, hw: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (H', W', 3) RGB; JPEGs are decoded at about 1/``reduce`` of their size (``reduce`` in 1, 2, 4, 8).
    ``hw``: the size from the header, when the caller has already read it."""
    if _is_jpeg(data):
        height, width = hw or image_hw(data)
        try:
            return simplejpeg.decode_jpeg(
                data, colorspace="RGB", min_height=-(-height // reduce), min_width=-(-width // reduce)
            )
        except ValueError:
            pass  # e.g. an unusual colour space: PIL converts it (or raises a clear error)
    with Image.open(io.BytesIO(data)) as img:
        if reduce > 1 and img.format == "JPEG":
            img.draft("RGB", (-(-img.width // reduce), -(-img.height // reduce)))
        return np.array(img.convert("RGB"))  # a writable copy (torch.from_numpy warns on read-only arrays)


def _reduction(min_source_side: float, size: int) -> int:
    """The largest DCT reduction that still leaves ``min_source_side`` pixels >= ``size``."""
    return next(r for r in REDUCTIONS if r == 1 or min_source_side / r >= size)


def _resize(region: np.ndarray, height: int, width: int) -> Tensor:
    """uint8 (h, w, 3) -> uint8 (height, width, 3), antialiased bilinear (torchvision's tensor rule)."""
    x = torch.from_numpy(region).permute(2, 0, 1).unsqueeze(0).contiguous(memory_format=torch.channels_last)
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0)  # channels-last memory: a contiguous (H, W, 3) view, no copy


def sample_boxes(n: int, height: int, width: int, spec: CropSpec, generator: torch.Generator) -> np.ndarray:
    """(n, 4) boxes (cy, cx, h, w), fractions of an ``height`` x ``width`` image, by RandomResizedCrop's rule.

    The rule and the stream of uniforms are those of :func:`equireg.augment.views.sample_crop_boxes` (10
    attempts, then the largest centred box in the ratio range), drawn in one call and evaluated with Python
    floats: for one image, that function's tensor calls cost ~0.3 ms, a third of a JPEG decode.
    """
    attempts = 10
    u = torch.rand(n * (2 * attempts + 2), generator=generator).tolist()
    lo, hi = spec.scale
    log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    in_ratio = width / height
    if in_ratio < spec.ratio[0]:  # no attempt fits: the largest centred box whose aspect is in range
        fallback = (1.0, (width / spec.ratio[0]) / height)
    elif in_ratio > spec.ratio[1]:
        fallback = ((height * spec.ratio[1]) / width, 1.0)
    else:
        fallback = (1.0, 1.0)
    boxes = np.empty((n, 4))
    for i in range(n):
        w, h = fallback
        for a in range(attempts):
            area = lo + (hi - lo) * u[i * attempts + a]
            aspect = math.exp(log_lo + (log_hi - log_lo) * u[(n + i) * attempts + a])
            w_try, h_try = math.sqrt(area * aspect * height / width), math.sqrt(area / aspect * width / height)
            if w_try <= 1.0 and h_try <= 1.0:
                w, h = w_try, h_try
                break
        top, left = u[2 * n * attempts + i] * (1.0 - h), u[2 * n * attempts + n + i] * (1.0 - w)
        boxes[i] = (top + h / 2, left + w / 2, h, w)
    return boxes


def crop_views(data: bytes, spec: CropSpec, generator: torch.Generator, out: Tensor) -> tuple[Tensor, Tensor]:
    """Cut ``spec.num_views`` RandomResizedCrops of one encoded image into ``out`` (V, S, S, 3) uint8.

    Returns the boxes actually cut, (V, 4) float as (cy, cx, h, w) fractions of the image, and the flips (V,).
    """
    height, width = image_hw(data)
    boxes = sample_boxes(spec.num_views, height, width, spec, generator)
    flips = (torch.rand(spec.num_views, generator=generator) < spec.flip_p).float()
    smallest_side = float(np.minimum(boxes[:, 2] * height, boxes[:, 3] * width).min())
    image = decode_rgb(data, _reduction(smallest_side, spec.size), (height, width))
    dec_h, dec_w = image.shape[:2]
    cut = np.empty((spec.num_views, 4))
    for v, (cy, cx, bh, bw) in enumerate(boxes.tolist()):
        h_px = min(dec_h, max(1, round(bh * dec_h)))
        w_px = min(dec_w, max(1, round(bw * dec_w)))
        top = min(dec_h - h_px, max(0, round((cy - bh / 2) * dec_h)))
        left = min(dec_w - w_px, max(0, round((cx - bw / 2) * dec_w)))
        view = _resize(image[top : top + h_px, left : left + w_px], spec.size, spec.size)
        out[v].copy_(view.flip(1) if flips[v] else view)  # (numpy's negative-stride copy of RGB rows is 8x slower)
        cut[v] = ((top + h_px / 2) / dec_h, (left + w_px / 2) / dec_w, h_px / dec_h, w_px / dec_w)
    return torch.from_numpy(cut).float(), flips


def eval_image(data: bytes, size: int, crop_ratio: float, out: Tensor) -> None:
    """torchvision's ``Resize(round(size / crop_ratio))`` + ``CenterCrop(size)`` into ``out`` (S, S, 3) uint8.

    (Resize(256) + CenterCrop(224) at the default 224 px and ratio 0.875.)
    """
    height, width = image_hw(data)
    short = round(size / crop_ratio)
    image = decode_rgb(data, _reduction(min(height, width), short), (height, width))
    dec_h, dec_w = image.shape[:2]
    if dec_h <= dec_w:  # torchvision: the shorter side becomes ``short``, the other int(short * long / short_side)
        new_h, new_w = short, int(short * dec_w / dec_h)
    else:
        new_h, new_w = int(short * dec_h / dec_w), short
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    out.copy_(_resize(image, new_h, new_w)[top : top + size, left : left + size])


def load_image(path: str | Path, size: int, crop_ratio: float = 0.875) -> Tensor:
    """One file as an evaluation image: uint8 (3, size, size), see :func:`eval_image`.

    Raises:
        ValueError: naming the file when it cannot be read or decoded (truncated, not an image).
    """
    out = torch.empty((size, size, 3), dtype=torch.uint8)
    try:
        eval_image(read_bytes(path), size, crop_ratio, out)
    except _DECODE_ERRORS as exc:
        raise ValueError(f"could not decode image file {path}: {exc}") from exc
    return out.permute(2, 0, 1).contiguous()


def check_crop_ratio(crop_ratio: float) -> float:
    if not (0.0 < crop_ratio <= 1.0) or math.isnan(crop_ratio):
        raise ValueError(f"eval crop_ratio must lie in (0, 1], got {crop_ratio}")
    return float(crop_ratio)

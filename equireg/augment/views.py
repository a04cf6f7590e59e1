"""One augmented view: sample every parameter per sample, record it, apply it to the whole batch at once.

Splitting ``sample`` from ``apply`` is what makes the record trustworthy: the image a policy returns is
``apply(images, params)`` for the very ``params`` it returns, so re-applying a record reproduces the view, and
parameter statistics can be drawn without images (EquiMod standardises its parameter vector with them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from equireg.augment import ops
from equireg.augment.params import ViewParams


def _check_range(name: str, lo: float, hi: float, low_bound: float = 0.0) -> None:
    if not low_bound <= lo <= hi:
        raise ValueError(f"{name} must satisfy {low_bound} <= low <= high, got ({lo}, {hi})")


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


@dataclass(frozen=True)
class CropConfig:
    """RandomResizedCrop + horizontal flip: area fraction in ``scale``, aspect ratio w/h log-uniform in ``ratio``."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        _check_range("crop scale", *self.scale)
        if self.scale[1] > 1.0 or self.scale[1] <= 0.0:
            raise ValueError(f"crop scale must lie in (0, 1], got {self.scale}")
        _check_range("crop ratio", *self.ratio, low_bound=1e-6)
        _check_prob("flip_p", self.flip_p)

    @classmethod
    def full(cls) -> CropConfig:
        """The whole image, never flipped (geometry off)."""
        return cls(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)


@dataclass(frozen=True)
class PhotometricConfig:
    """Colour jitter (p, strengths as in torchvision), grayscale, Gaussian blur and solarize for one view."""

    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    random_order: bool = True
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: int | None = None  # None: the odd size nearest 10% of the output side, at least 3
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _check_prob(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} jitter strength must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue jitter must lie in [0, 0.5], got {self.hue}")
        _check_range("blur_sigma", *self.blur_sigma, low_bound=1e-6)
        if self.blur_kernel_size is not None and (self.blur_kernel_size < 1 or self.blur_kernel_size % 2 == 0):
            raise ValueError(f"blur_kernel_size must be a positive odd number, got {self.blur_kernel_size}")

    @classmethod
    def view1(cls, **overrides: object) -> PhotometricConfig:
        """BYOL / MoCo-v3 first view: blur always, never solarize."""
        return cls(**{"blur_p": 1.0, "solarize_p": 0.0, **overrides})  # type: ignore[arg-type]

    @classmethod
    def view2(cls, **overrides: object) -> PhotometricConfig:
        """BYOL / MoCo-v3 second view: blur 10% of the time, solarize 20%."""
        return cls(**{"blur_p": 0.1, "solarize_p": 0.2, **overrides})  # type: ignore[arg-type]

    @classmethod
    def off(cls) -> PhotometricConfig:
        """No photometric change at all (geometry-only views, e.g. for exactness tests)."""
        return cls(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)

    def kernel_size(self, side: int) -> int:
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        return max(3, int(0.1 * side) // 2 * 2 + 1)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def sample_crop_boxes(
    n: int, height: int, width: int, config: CropConfig, generator: torch.Generator | None, attempts: int = 10
) -> Tensor:
    """(n, 4) normalised boxes (cy, cx, h, w) following RandomResizedCrop's rule, vectorised over samples.

    Each sample tries ``attempts`` (area, aspect) draws and keeps the first that fits in the image; samples
    with none fall back to the largest centred box with an aspect ratio inside ``ratio``.
    """
    area = _uniform(n * attempts, *config.scale, generator).view(n, attempts)
    log_lo, log_hi = math.log(config.ratio[0]), math.log(config.ratio[1])
    aspect = torch.exp(_uniform(n * attempts, log_lo, log_hi, generator)).view(n, attempts)
    # pixel sizes w = sqrt(A * H * W * r), h = sqrt(A * H * W / r), as fractions of W and H
    w = torch.sqrt(area * aspect * height / width)
    h = torch.sqrt(area / aspect * width / height)
    fits = (w <= 1.0) & (h <= 1.0)
    first = torch.argmax(fits.int(), dim=1)  # first fitting attempt (0 when none fits; masked below)
    any_fit = fits.any(dim=1)
    w = w.gather(1, first[:, None]).squeeze(1)
    h = h.gather(1, first[:, None]).squeeze(1)

    in_ratio = width / height
    if in_ratio < config.ratio[0]:
        fb_w, fb_h = 1.0, (width / config.ratio[0]) / height
    elif in_ratio > config.ratio[1]:
        fb_w, fb_h = (height * config.ratio[1]) / width, 1.0
    else:
        fb_w, fb_h = 1.0, 1.0
    w = torch.where(any_fit, w, torch.full_like(w, fb_w))
    h = torch.where(any_fit, h, torch.full_like(h, fb_h))
    top = torch.rand(n, generator=generator) * (1.0 - h)
    left = torch.rand(n, generator=generator) * (1.0 - w)
    return torch.stack([top + h / 2, left + w / 2, h, w], dim=1)


class ViewAugmentation:
    """Crop + flip + photometrics for one view, with per-sample parameters (see :class:`ViewParams`).

    Args:
        crop: crop/flip settings.
        photometric: colour/blur/solarize settings (``PhotometricConfig.off()`` for none).
        output_size: side of the output view (default: the input's height).
    """

    def __init__(self, crop: CropConfig, photometric: PhotometricConfig, output_size: int | None = None) -> None:
        if output_size is not None and output_size < 1:
            raise ValueError(f"output_size must be >= 1, got {output_size}")
        self.crop = crop
        self.photometric = photometric
        self.output_size = output_size

    def out_side(self, images: Tensor) -> int:
        return self.output_size or int(images.shape[-2])

    def sample(
        self,
        n: int,
        image_hw: tuple[int, int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> ViewParams:
        """Draw all parameters of ``n`` views of images of size ``image_hw`` (on the CPU, then moved)."""
        cfg = self.photometric
        boxes = sample_crop_boxes(n, image_hw[0], image_hw[1], self.crop, generator)
        flip = (torch.rand(n, generator=generator) < self.crop.flip_p).float()

        jitter = (torch.rand(n, generator=generator) < cfg.jitter_p).float()
        factors = torch.stack(
            [
                _uniform(n, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness, generator),
                _uniform(n, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast, generator),
                _uniform(n, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation, generator),
                _uniform(n, -cfg.hue, cfg.hue, generator),
            ],
            dim=1,
        )
        neutral = torch.tensor([1.0, 1.0, 1.0, 0.0])
        color = torch.where(jitter.bool()[:, None], factors, neutral)
        identity_order = torch.arange(4).expand(n, 4)
        order = torch.argsort(torch.rand(n, 4, generator=generator), dim=1) if cfg.random_order else identity_order
        order = torch.where(jitter.bool()[:, None], order, identity_order)

        gray = (torch.rand(n, generator=generator) < cfg.grayscale_p).float()
        blur = torch.rand(n, generator=generator) < cfg.blur_p
        sigma = torch.where(blur, _uniform(n, *cfg.blur_sigma, generator), torch.zeros(n))
        solar = (torch.rand(n, generator=generator) < cfg.solarize_p).float()
        params = ViewParams(boxes, flip, jitter, color, order.contiguous(), gray, sigma, solar)
        return params.to(device) if device is not None else params

    def apply_geometry(self, images: Tensor, params: ViewParams) -> Tensor:
        """Crop, resize to the output side and flip. Inputs larger than the output are first downsized with
        antialiasing (boxes are fractions, so they keep their meaning) to avoid aliasing in the crop."""
        side = self.out_side(images)
        h, w = images.shape[-2:]
        if min(h, w) > side:
            factor = side / min(h, w)
            size = (max(side, round(h * factor)), max(side, round(w * factor)))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        return ops.resized_crop(images, params.crop, params.flip, (side, side))

    def apply_photometric(self, images: Tensor, params: ViewParams) -> Tensor:
        """Colour jitter, grayscale, blur, solarize (in that order, as in BYOL) with the recorded parameters.

        Which samples each op touches is read from the parameters' host copy, so no step waits for the device.
        Works on one private copy of ``images`` (the input is left untouched) so each op writes in place.
        """
        cfg, host = self.photometric, params.on_host()
        blur = host.blur_sigma > 0
        steps = (bool(host.jitter_applied.any()), bool(host.grayscale.any()), bool(blur.any()), bool(host.solarize.any()))
        x = images.clone()
        if steps[0]:
            x = ops.color_jitter(x, params.color, host.jitter_order, host.jitter_applied, inplace=True)
        if steps[1]:
            x = ops.to_grayscale(x, host.grayscale, inplace=True)
        if steps[2]:
            x = ops.gaussian_blur(x, params.blur_sigma, cfg.kernel_size(int(x.shape[-1])), inplace=True, active=blur)
        if steps[3]:
            x = ops.solarize(x, host.solarize, cfg.solarize_threshold, inplace=True)
        return x

    def apply(self, images: Tensor, params: ViewParams) -> Tensor:
        """The view of ``images`` (B, 3, H, W) float in [0, 1] under recorded ``params``."""
        check_images(images)
        if len(params) != images.shape[0]:
            raise ValueError(f"got {len(params)} parameter rows for {images.shape[0]} images")
        return self.apply_photometric(self.apply_geometry(images, params), params)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, ViewParams]:
        check_images(images)
        params = self.sample(images.shape[0], (int(images.shape[-2]), int(images.shape[-1])), generator, images.device)
        return self.apply(images, params), params

    def __repr__(self) -> str:
        return f"ViewAugmentation(crop={self.crop}, photometric={self.photometric}, output_size={self.output_size})"


def check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected RGB images of shape (B, 3, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")


def rank_rows(local_batch: int, rank: int, world_size: int) -> slice:
    """Rows of a global batch of ``world_size * local_batch`` samples that belong to ``rank``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    return slice(rank * local_batch, (rank + 1) * local_batch)


def vector_stats(
    augmentation: ViewAugmentation, image_hw: tuple[int, int] = (32, 32), num_samples: int = 65536, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Mean and std (std floored at 1e-6) of :meth:`ViewParams.vector` under ``augmentation``, for standardising
    EquiMod's parameter input. The parameters do not depend on image content, only on its aspect."""
    gen = torch.Generator().manual_seed(seed)
    vec = augmentation.sample(num_samples, image_hw, gen).vector()
    return vec.mean(0), vec.std(0).clamp_min(1e-6)


def view_pair(
    crop: CropConfig,
    output_size: int | None,
    view1: PhotometricConfig | None = None,
    view2: PhotometricConfig | None = None,
    photometric: bool = True,
) -> tuple[ViewAugmentation, ViewAugmentation]:
    """The two views' augmentations: BYOL's asymmetric photometrics by default, none when ``photometric=False``."""
    if photometric:
        p1, p2 = view1 or PhotometricConfig.view1(), view2 or PhotometricConfig.view2()
    else:
        p1 = p2 = PhotometricConfig.off()
    return ViewAugmentation(crop, p1, output_size), ViewAugmentation(crop, p2, output_size)

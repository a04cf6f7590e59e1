"""T_eq, SER's equivariant view pair: one shared crop, independent photometrics, known group elements.

Both views start from the same crop, so the geometric relation between them is exactly the relative group
element g = g2 · g1^-1, applied in image space with the same ``G.act`` code that moves token maps (rho_g).
With a scale factor in the group, both views get token-aligned sizes: view i has n_i = round(n0 · s_i) tokens
per side (n0 = S / token_stride) and side n_i · token_stride, and its recorded scale is exactly n_i / n0, so the
relative scale n_b / n_a maps view a's token grid onto view b's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from equireg.augment.params import ViewParams
from equireg.augment.views import CropConfig, PhotometricConfig, check_images, rank_rows, view_pair
from equireg.groups import Elements, Group, ScaleGroup


@dataclass
class EquivariantViews:
    """Output of :class:`EquivariantViewPolicy`.

    Attributes:
        view1, view2: (B, 3, h_i, w_i) views; sizes differ when the group scales.
        g1, g2: per-sample elements applied to the shared crop to make each view.
        g: the relative element g2 · g1^-1 (view1 -> view2), per sample.
        params1, params2: photometric (and the shared crop) parameters of each view.
        tokens: (n1, n2) tokens per side of the two views (side / token_stride).
    """

    view1: Tensor
    view2: Tensor
    g1: Elements
    g2: Elements
    g: Elements
    params1: ViewParams
    params2: ViewParams
    tokens: tuple[int, int]


def has_scale(group: Group) -> bool:
    return "scale" in group.param_names


def _scale_factor(group: Group) -> ScaleGroup:
    if isinstance(group, ScaleGroup):
        return group
    for factor in getattr(group, "factors", ()):
        if has_scale(factor):
            return _scale_factor(factor)
    raise ValueError(f"group {group.name!r} has no scale factor")


def _with_scale(group: Group, n: int, scale: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Raw elements of ``group``: every scale factor fixed to ``scale``, every other factor sampled per sample."""
    if isinstance(group, ScaleGroup):
        return torch.full((n, 1), float(scale), device=device)
    if not has_scale(group):
        return group.sample(n, generator=generator, device=device).tensor
    factors = getattr(group, "factors", None)
    if factors is None:
        raise ValueError(f"cannot fix the scale of group {group.name!r}: it is neither 'scale' nor a product")
    return group.join(*[_with_scale(f, n, scale, generator, device) for f in factors])


class EquivariantViewPolicy:
    """T_eq: shared crop -> per-view photometrics -> per-view group element, with the relative element.

    Args:
        group: the symmetry group G (its ``act`` makes the views).
        token_stride: backbone stride (pixels per token) at the equivariance layer; views with a scale factor
            get sides that are multiples of it.
        output_size: side S of the shared crop (default: the input side); must be a multiple of token_stride.
        crop_min, ratio, flip_p: the shared RandomResizedCrop + flip (as in T).
        shared_crop: False gives each view its own crop (then the views are no longer related by g alone).
        view1, view2: photometrics per view (default: T's view 1 and view 2).
        photometric: False turns all photometrics off.
    """

    def __init__(
        self,
        group: Group,
        token_stride: int = 1,
        output_size: int | None = None,
        crop_min: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        shared_crop: bool = True,
        view1: PhotometricConfig | None = None,
        view2: PhotometricConfig | None = None,
        photometric: bool = True,
    ) -> None:
        if token_stride < 1:
            raise ValueError(f"token_stride must be >= 1, got {token_stride}")
        if output_size is not None and output_size % token_stride:
            raise ValueError(f"output_size {output_size} must be a multiple of token_stride {token_stride}")
        self.group = group
        self.token_stride = int(token_stride)
        self.shared_crop = shared_crop
        crop = CropConfig(scale=(crop_min, 1.0), ratio=ratio, flip_p=flip_p)
        self.views = view_pair(crop, output_size, view1, view2, photometric)

    def token_sides(self, side: int, generator: torch.Generator | None = None) -> tuple[int, int]:
        """Tokens per side (n1, n2) of the two views: n0 = side / stride without scale, else round(n0 · s_i)."""
        if side % self.token_stride:
            raise ValueError(f"view side {side} must be a multiple of token_stride {self.token_stride}")
        n0 = side // self.token_stride
        if not has_scale(self.group):
            return n0, n0
        scale_group = _scale_factor(self.group)
        draws = scale_group.sample(2, generator=generator).tensor.view(-1).tolist()
        return tuple(max(1, math.floor(n0 * s + 0.5)) for s in draws)  # type: ignore[return-value]

    def _elements(self, n: int, n0: int, tokens: int, generator: torch.Generator | None, device: torch.device) -> Elements:
        if not has_scale(self.group):
            return self.group.sample(n, generator=generator, device=device)
        return self.group.wrap(_with_scale(self.group, n, tokens / n0, generator, device))

    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0, world_size: int = 1
    ) -> EquivariantViews:
        """The pair for ``images`` (B, 3, S, S); ``generator`` makes it reproducible.

        With ``world_size`` > 1 every per-sample draw is made for the global batch and rank ``rank`` keeps its
        rows; per-batch draws (the token sides of a scale group) are shared by all ranks, as in one process.
        """
        check_images(images)
        b = images.shape[0]
        total, rows, device = b * world_size, rank_rows(b, rank, world_size), images.device
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        aug1, aug2 = self.views
        p1 = aug1.sample(total, hw, generator)[rows].to(device)
        p2 = aug2.sample(total, hw, generator)[rows].to(device)
        crop1 = aug1.apply_geometry(images, p1)
        if self.shared_crop:
            p2.crop, p2.flip = p1.crop.clone(), p1.flip.clone()
            crop2 = crop1
        else:
            crop2 = aug2.apply_geometry(images, p2)
        x1, x2 = aug1.apply_photometric(crop1, p1), aug2.apply_photometric(crop2, p2)

        side = int(crop1.shape[-1])
        n1, n2 = self.token_sides(side, generator)
        n0 = side // self.token_stride
        g1 = self._elements(total, n0, n1, generator, device)[rows]
        g2 = self._elements(total, n0, n2, generator, device)[rows]
        scaled = has_scale(self.group)
        size1, size2 = (n1 * self.token_stride,) * 2, (n2 * self.token_stride,) * 2
        view1 = self.group.act(x1, g1, out_size=size1 if scaled else None)
        view2 = self.group.act(x2, g2, out_size=size2 if scaled else None)
        return EquivariantViews(view1, view2, g1, g2, g2 @ ~g1, p1, p2, (n1, n2))

    def __repr__(self) -> str:
        return (
            f"EquivariantViewPolicy(group={self.group.name!r}, token_stride={self.token_stride}, "
            f"shared_crop={self.shared_crop}, view1={self.views[0]!r}, view2={self.views[1]!r})"
        )


def split_batch(batch_size: int, ratio: float, min_b2: int = 1) -> tuple[int, int]:
    """Split a per-device batch into b1 invariance pairs and b2 equivariant pairs (b1 + b2 = batch_size).

    b2 = round(ratio · batch_size) (halves round up), at least ``min_b2`` when ratio > 0, at most the batch.
    SER uses ratio 0.01 at 256 per GPU, i.e. 3 images per device and 24 per step over 8 GPUs: enough there,
    but on a single small-batch run 2-3 images give the token-level InfoNCE only 1-2 other images as negatives
    and a very noisy gradient, so small-scale runs want a larger share (see docs/data.md).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"equivariant batch ratio must lie in [0, 1], got {ratio}")
    if min_b2 < 0:
        raise ValueError(f"min_b2 must be >= 0, got {min_b2}")
    if ratio == 0.0:
        return batch_size, 0
    b2 = min(batch_size, max(min_b2, math.floor(ratio * batch_size + 0.5)))
    return batch_size - b2, b2

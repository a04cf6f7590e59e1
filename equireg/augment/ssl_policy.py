"""The SSL view policy T: the BYOL / MoCo-v3 asymmetric pair of views, batched, with recorded parameters."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from equireg.augment.params import ViewParams
from equireg.data.base import CropBatch
from equireg.augment.views import CropConfig, PhotometricConfig, check_images, rank_rows, view_pair


def crop_records(crops: CropBatch) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(view, box, flip) of each of the loader's crops."""
    views = [(crops.view1, crops.box1, crops.flip1)]
    if crops.view2 is not None:
        assert crops.box2 is not None and crops.flip2 is not None
        views.append((crops.view2, crops.box2, crops.flip2))
    return views


class ViewPair(NamedTuple):
    """Two views of the same images and what was sampled for each (unpacks as a 4-tuple)."""

    view1: Tensor
    view2: Tensor
    params1: ViewParams
    params2: ViewParams


class SSLViewPolicy:
    """T: RandomResizedCrop(scale=(crop_min, 1), ratio 3/4..4/3) + hflip, then ColorJitter(0.4, 0.4, 0.2, 0.1)
    p=0.8, grayscale p=0.2, Gaussian blur (p 1.0 / 0.1, sigma 0.1..2) and solarize (p 0 / 0.2) for views 1 / 2.

    Every parameter is drawn per sample (no Python loop over samples) and returned as :class:`ViewParams`.

    Args:
        output_size: side of the views (default: the input side).
        crop_min: smallest crop area fraction (0.08 MoCo-v3 / BYOL, 0.2 AugSelf, 0.25 DINO globals).
        ratio: aspect-ratio range of the crops.
        flip_p: horizontal flip probability.
        view1, view2: photometric settings per view (default: the BYOL/MoCo-v3 pair).
        photometric: False turns all photometric ops off (geometry only), e.g. for tests.
    """

    def __init__(
        self,
        output_size: int | None = None,
        crop_min: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        view1: PhotometricConfig | None = None,
        view2: PhotometricConfig | None = None,
        photometric: bool = True,
    ) -> None:
        crop = CropConfig(scale=(crop_min, 1.0), ratio=ratio, flip_p=flip_p)
        self.views = view_pair(crop, output_size, view1, view2, photometric)

    @property
    def output_size(self) -> int | None:
        return self.views[0].output_size

    def __call__(
        self, images: Tensor | CropBatch, generator: torch.Generator | None = None, *, rank: int = 0,
        world_size: int = 1,
    ) -> ViewPair:
        """Two views of ``images`` (B, 3, H, W) float in [0, 1]; ``generator`` makes them reproducible. Given the
        loader's crops of the original files (a :class:`CropBatch`), only the photometrics are applied and the
        recorded boxes and flips become the views' crop parameters.

        With ``world_size`` > 1, parameters are drawn for the global batch of ``world_size * B`` images and rank
        ``rank`` keeps its rows, so a distributed run draws exactly what one process would for the whole batch.
        """
        if isinstance(images, CropBatch):
            return self.from_crops(images, generator, rank=rank, world_size=world_size)
        check_images(images)
        rows = rank_rows(images.shape[0], rank, world_size)
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        out = []
        for aug in self.views:  # view 1's draws, then view 2's
            params = aug.sample(images.shape[0] * world_size, hw, generator)[rows].to(images.device)
            out.append((aug.apply(images, params), params))
        (v1, p1), (v2, p2) = out
        return ViewPair(v1, v2, p1, p2)

    def from_crops(self, crops: CropBatch, generator: torch.Generator | None = None, *, rank: int = 0,
                   world_size: int = 1) -> ViewPair:
        """The photometrics of each view on the loader's crops; the crop parameters are the recorded ones."""
        if crops.view2 is None:
            raise ValueError("the T policy needs two crops per image (CropSpec(num_views=2))")
        out = []
        for aug, (view, box, flip) in zip(self.views, crop_records(crops)):
            params = aug.sample(len(crops) * world_size, (int(view.shape[-2]), int(view.shape[-1])), generator)
            params = params[rank_rows(len(crops), rank, world_size)].to(view.device)
            params.crop, params.flip = box.to(view.device).float(), flip.to(view.device).float()
            out.append((aug.apply_photometric(view, params), params))
        (v1, p1), (v2, p2) = out
        return ViewPair(v1, v2, p1, p2)

    def __repr__(self) -> str:
        return f"SSLViewPolicy(view1={self.views[0]!r}, view2={self.views[1]!r})"

"""Per-sample record of every random choice made for one view, and the targets built from it.

AugSelf predicts differences of these parameters between two views; EquiMod conditions a predictor on a fixed
vector of them. Recording the *effective* values (neutral when an op was skipped) makes both well defined:
a skipped colour jitter is factor 1 / hue 0, a skipped blur is sigma 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

VECTOR_FIELDS = (
    "crop_cy", "crop_cx", "crop_h", "crop_w", "flip",
    "jitter_applied", "order_0", "order_1", "order_2", "order_3",
    "brightness", "contrast", "saturation", "hue", "grayscale",
    "blur_applied", "blur_sigma", "solarize",
)  # fmt: skip
"""Column names of :meth:`ViewParams.vector` (EquiMod's 17 ImageNet parameters plus solarize, as in SER)."""


@dataclass
class ViewParams:
    """Everything sampled for one view, one row per sample (all tensors have leading size B).

    Attributes:
        crop: (B, 4) float, the crop box as (centre y, centre x, height, width), fractions of the input image.
        flip: (B,) float 0/1, horizontal flip after cropping.
        jitter_applied: (B,) float 0/1, whether colour jitter ran.
        color: (B, 4) float, effective (brightness, contrast, saturation, hue) factors (1, 1, 1, 0 if skipped).
        jitter_order: (B, 4) int64, op index (0 b, 1 c, 2 s, 3 h) run in each slot.
        grayscale: (B,) float 0/1.
        blur_sigma: (B,) float, 0 when no blur.
        solarize: (B,) float 0/1.
        host: the same parameters where they were drawn (the CPU), kept when the record is moved to a device:
            decisions that shape the computation (which samples jitter, blur, ...) read the host copy, so making a
            view never waits for the device.
    """

    crop: Tensor
    flip: Tensor
    jitter_applied: Tensor
    color: Tensor
    jitter_order: Tensor
    grayscale: Tensor
    blur_sigma: Tensor
    solarize: Tensor
    host: ViewParams | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.flip.shape[0])

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "host"}

    def on_host(self) -> ViewParams:
        """The host copy (this record itself when it lives on the CPU or no copy was kept)."""
        return self.host if self.host is not None else self

    def to(self, device: torch.device | str) -> ViewParams:
        moved = ViewParams(**{k: t.to(device, non_blocking=True) for k, t in self._tensors().items()})
        moved.host = self if self.crop.device.type == "cpu" else self.host
        return moved

    def __getitem__(self, index: slice | Tensor) -> ViewParams:
        part = ViewParams(**{k: t[index] for k, t in self._tensors().items()})
        part.host = self.host[index] if self.host is not None and not isinstance(index, Tensor) else None
        return part

    @staticmethod
    def cat(parts: list[ViewParams]) -> ViewParams:
        return ViewParams(**{k: torch.cat([p._tensors()[k] for p in parts]) for k in parts[0]._tensors()})

    @property
    def blur_applied(self) -> Tensor:
        return (self.blur_sigma > 0).float()

    def vector(self) -> Tensor:
        """(B, 18) float: the columns of :data:`VECTOR_FIELDS` (standardise with :func:`vector_stats`)."""
        return torch.cat(
            [
                self.crop,
                self.flip[:, None],
                self.jitter_applied[:, None],
                self.jitter_order.float(),
                self.color,
                self.grayscale[:, None],
                self.blur_applied[:, None],
                self.blur_sigma[:, None],
                self.solarize[:, None],
            ],
            dim=1,
        ).float()


def augself_targets(
    first: ViewParams,
    second: ViewParams,
    jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
    mirror_with_first_flip: bool = False,
) -> dict[str, Tensor]:
    """AugSelf's regression/classification targets omega(t1) - omega(t2) for a pair of views.

    Keys: ``crop`` (B, 4) differences of (centre y, centre x, height, width) with each view's x-centre mirrored
    (1 - cx) when that view was flipped; ``color`` (B, 4) differences of (factor - 1) / width of the jitter
    range (hue / width for hue), 0 when jitter was skipped; ``flip`` (B, 1) 1.0 when both views agree;
    ``blur`` (B, 1) difference of sigma; ``sol`` (B, 1) difference of the solarize flags.

    Args:
        jitter_strength: the (brightness, contrast, saturation, hue) jitter of the policy, for normalising.
        mirror_with_first_flip: reproduce the official AugSelf code, which mirrors *both* centres with the
            first view's flip mask (kept for comparisons; the default mirrors each view by its own flip).
    """
    def centres(p: ViewParams, flip: Tensor) -> Tensor:
        cx = torch.where(flip.bool(), 1.0 - p.crop[:, 1], p.crop[:, 1])
        return torch.stack([p.crop[:, 0], cx], dim=1)

    flip_2 = first.flip if mirror_with_first_flip else second.flip
    crop = torch.cat([centres(first, first.flip) - centres(second, flip_2), first.crop[:, 2:] - second.crop[:, 2:]], 1)
    widths = torch.tensor([2.0 * s for s in jitter_strength], device=first.color.device)
    widths = torch.where(widths > 0, widths, torch.ones_like(widths))
    neutral = torch.tensor([1.0, 1.0, 1.0, 0.0], device=first.color.device)
    color = ((first.color - neutral) - (second.color - neutral)) / widths
    return {
        "crop": crop,
        "color": color,
        "flip": (first.flip == second.flip).float()[:, None],
        "blur": (first.blur_sigma - second.blur_sigma)[:, None],
        "sol": (first.solarize - second.solarize)[:, None],
    }

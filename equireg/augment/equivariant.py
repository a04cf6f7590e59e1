"""T_eq, the equivariant view pair, as registered view policies: one shared crop, independent photometrics, and
known group elements relating the two views.

Both views start from the same crop, so the geometric relation between them is exactly the relative element
g = g2 · g1⁻¹, and the equivariance loss moves view 1's map into view 2's frame with ``views.group.act``. Two
policies ship (``equireg list`` shows them; ``@register_view_policy`` adds one):

* ``ser`` — SER's own views, exactly as the official code makes them (methods.md §7.1): per step and view one
  quarter-turn count k, one token-area factor s ~ U(0.7, 1.3) and one aspect r ~ log-U(3/4, 4/3), giving a token
  grid of round(√(A·r)) × round(√(A/r)) with A = (S/stride)²·s; per sample an R180 and a horizontal flip for view
  1, negated for view 2. Image op per view: R180, hflip, bicubic resize (no antialias) to stride × grid, rot90 by k.
  The relative element is therefore always one of the four D4 reflections plus an anisotropic rescale, an element
  of ``p4m_aniso``. The per-step draws are shared by all ranks of a distributed run (the official code draws them
  per GPU), so N ranks equal one process on the global batch.
* ``uniform`` — the general extension: each sample's element drawn uniformly from the configured group; with a
  scale factor, both views get token-aligned isotropic sizes (view i has n_i = round(n0 · s_i) tokens per side and
  records exactly n_i / n0).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from equireg.augment.params import ViewParams
from equireg.augment.views import CropConfig, PhotometricConfig, check_images, rank_rows, view_pair
from equireg.data.base import CropBatch
from equireg.groups import D4AxisScaleGroup, DihedralGroup, Elements, Group, ScaleGroup
from equireg.registry import Registry


@dataclass
class EquivariantViews:
    """Output of a view policy.

    Attributes:
        view1, view2: (B, 3, h_i, w_i) views; sizes differ when the policy rescales.
        group: the group of the recorded elements (``p4m_aniso`` for ``ser``; the configured group for ``uniform``).
        g1, g2: per-sample elements applied to the shared crop to make each view.
        g: the relative element g2 · g1⁻¹ (view1 -> view2), per sample.
        params1, params2: photometric (and the shared crop) parameters of each view.
    """

    view1: Tensor
    view2: Tensor
    group: Group
    g1: Elements
    g2: Elements
    g: Elements
    params1: ViewParams
    params2: ViewParams


class PairPolicy(ABC):
    """Base class of T_eq policies: ``__call__(images, generator, *, rank, world_size) -> EquivariantViews``.

    Factories receive the framework's context for the parameters they declare: ``group`` (the configured group),
    ``token_stride`` (pixels per map cell at the split layer), ``crop`` (the shared RandomResizedCrop) and
    ``output_size``. With ``world_size`` > 1 every per-sample draw is made for the global batch and rank ``rank``
    keeps its rows; per-step draws are shared by all ranks, as in one process.
    """

    name: ClassVar[str] = ""
    group: Group  # the group of the elements it records (set by each policy)

    def __init__(self, token_stride: int = 1, crop: CropConfig | None = None, output_size: int | None = None,
                 photometric: bool = True, view1: PhotometricConfig | None = None,
                 view2: PhotometricConfig | None = None) -> None:
        if token_stride < 1:
            raise ValueError(f"token_stride must be >= 1, got {token_stride}")
        if output_size is not None and output_size % token_stride:
            lower = max(token_stride, output_size // token_stride * token_stride)
            raise ValueError(
                f"data.image_size={output_size} is not a multiple of {token_stride}, the pixels per map cell at the "
                f"split layer: the equivariant views resize images to whole cell grids; use data.image_size={lower} "
                f"or {lower + token_stride}, or another --equiv-layer")
        self.token_stride = int(token_stride)
        self.views = view_pair(crop or CropConfig(), output_size, view1, view2, photometric)

    @abstractmethod
    def __call__(self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0,
                 world_size: int = 1) -> EquivariantViews: ...

    def shared_crop(self, images: Tensor | CropBatch, generator: torch.Generator | None, rank: int, world_size: int
                    ) -> tuple[Tensor, Tensor, ViewParams, ViewParams]:
        """One crop of each image (view 1's RandomResizedCrop + flip; with the loader's crops, its first one, as
        SER takes the loader's view 0) under two independent photometrics."""
        source = images.view1 if isinstance(images, CropBatch) else images
        check_images(source)
        b = source.shape[0]
        rows, hw = rank_rows(b, rank, world_size), (int(source.shape[-2]), int(source.shape[-1]))
        aug1, aug2 = self.views
        p1 = aug1.sample(b * world_size, hw, generator)[rows].to(source.device)
        p2 = aug2.sample(b * world_size, hw, generator)[rows].to(source.device)
        if isinstance(images, CropBatch):
            p1.crop, p1.flip = images.box1.to(source.device).float(), images.flip1.to(source.device).float()
        p2.crop, p2.flip = p1.crop.clone(), p1.flip.clone()
        crop = images.view1 if isinstance(images, CropBatch) else aug1.apply_geometry(images, p1)
        if crop.shape[-1] % self.token_stride or crop.shape[-2] != crop.shape[-1]:
            raise ValueError(f"view side {crop.shape[-1]} must be a multiple of token_stride {self.token_stride}")
        return aug1.apply_photometric(crop, p1), aug2.apply_photometric(crop, p2), p1, p2

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token_stride={self.token_stride}, view1={self.views[0]!r}, view2={self.views[1]!r})"


VIEW_POLICIES: Registry[PairPolicy] = Registry("view policy", entry_point_group="equireg.view_policies", base=PairPolicy)
register_view_policy = VIEW_POLICIES.register


def create_view_policy(name: str, context: dict[str, Any] | None = None, **kwargs: Any) -> PairPolicy:
    """Build a registered T_eq policy with the framework's ``context`` and the user's options."""
    return VIEW_POLICIES.create(name, context, **kwargs)


def list_view_policies(pattern: str = "*") -> list[str]:
    return VIEW_POLICIES.names(pattern)


def is_ser_group(group: Group) -> bool:
    """SER's own group: the built-in D4 (``p4m``/``d4``), alone or times ``scale`` (subclasses, e.g. plug-ins that
    change the action, are other groups)."""
    factors = getattr(group, "factors", (group,))
    d4 = [f for f in factors if type(f) is DihedralGroup and f.n_rot == 4 and f.reflections]
    return len(d4) == 1 and all(f is d4[0] or type(f) is ScaleGroup for f in factors)


def default_view_policy(group: Group) -> str:
    """``ser`` for SER's own group, ``uniform`` (the general extension) for every other group."""
    return "ser" if is_ser_group(group) else "uniform"


@register_view_policy("ser")
class SERPairPolicy(PairPolicy):
    """SER's official T_eq (see the module docstring).

    Args:
        group: the configured group; it must be SER's (p4m, alone or times scale).
        area: range of the token-area factor s (SER: 0.7–1.3).
        aspect: range of the grid's aspect ratio, drawn log-uniformly (SER: 3/4–4/3).
    """

    name = "ser"

    def __init__(self, group: Group, token_stride: int = 1, crop: CropConfig | None = None,
                 output_size: int | None = None, area: tuple[float, float] = (0.7, 1.3),
                 aspect: tuple[float, float] = (3 / 4, 4 / 3), photometric: bool = True) -> None:
        if not is_ser_group(group):
            raise ValueError(f"views.equivariant='ser' (SER's official views: every relative element is a D4 "
                             f"reflection) needs SER's group p4m or p4m*scale, got equiv.group={group.name!r}; use "
                             f"views.equivariant=uniform for other groups")
        if not (0 < area[0] <= area[1] and 0 < aspect[0] <= aspect[1]):
            raise ValueError(f"ser views need 0 < low <= high for area and aspect, got {area}, {aspect}")
        super().__init__(token_stride, crop, output_size, photometric)
        self.area, self.aspect = (float(area[0]), float(area[1])), (float(aspect[0]), float(aspect[1]))
        self.group = D4AxisScaleGroup()

    def grid(self, n0: int, generator: torch.Generator | None) -> tuple[int, int, int]:
        """(rows, cols, k) of one view: SER's ``get_params`` (Python's round, as the official code)."""
        s = self.area[0] + (self.area[1] - self.area[0]) * float(torch.rand(1, generator=generator))
        lo, hi = math.log(self.aspect[0]), math.log(self.aspect[1])
        r = math.exp(lo + (hi - lo) * float(torch.rand(1, generator=generator)))
        k = int(torch.randint(0, 4, (1,), generator=generator))
        target = n0 * n0 * s
        return max(1, round(math.sqrt(target * r))), max(1, round(math.sqrt(target / r))), k

    def render(self, x: Tensor, r180: Tensor, hflip: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """SER's image op: per-sample R180, per-sample hflip, bicubic resize to the grid, rot90 by k (the per-sample
        choices as masks on the images' device: no step reads them back)."""
        rows, cols, k = grid
        r180 = r180.to(x.device, non_blocking=True).view(-1, 1, 1, 1)
        hflip = hflip.to(x.device, non_blocking=True).view(-1, 1, 1, 1)
        y = torch.where(r180, torch.rot90(x, 2, dims=(-2, -1)), x)
        y = torch.where(hflip, torch.flip(y, dims=(-1,)), y)
        size = (rows * self.token_stride, cols * self.token_stride)
        if tuple(y.shape[-2:]) != size:
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False)
        return torch.rot90(y, k, dims=(-2, -1)) if k % 4 else y

    def element(self, r180: Tensor, hflip: Tensor, grid: tuple[int, int, int], n0: int) -> Elements:
        """The view's element relative to the crop: D = R^(k + 2·r180) M^hflip, then the axis scales of its grid."""
        rows, cols, k = grid
        code = (k + 2 * r180.long()) % 4 + 4 * hflip.long()
        sy, sx = (rows / n0, cols / n0) if k % 2 == 0 else (cols / n0, rows / n0)
        return self.group.wrap(self.group.join(code, torch.tensor(sy), torch.tensor(sx)))

    def __call__(self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0,
                 world_size: int = 1) -> EquivariantViews:
        x1, x2, p1, p2 = self.shared_crop(images, generator, rank, world_size)
        n0 = x1.shape[-1] // self.token_stride
        grids = self.grid(n0, generator), self.grid(n0, generator)
        rows, total = rank_rows(images.shape[0], rank, world_size), images.shape[0] * world_size
        r180 = (torch.rand(total, generator=generator) > 0.5)[rows]  # on the host, like the elements made from them
        hflip = (torch.rand(total, generator=generator) > 0.5)[rows]
        view1, view2 = self.render(x1, r180, hflip, grids[0]), self.render(x2, ~r180, ~hflip, grids[1])
        g1, g2 = self.element(r180, hflip, grids[0], n0), self.element(~r180, ~hflip, grids[1], n0)
        return EquivariantViews(view1, view2, self.group, g1, g2, g2 @ ~g1, p1, p2)


@register_view_policy("uniform")
class UniformPairPolicy(PairPolicy):
    """Per-sample elements drawn uniformly from ``group`` (token-aligned isotropic sizes with a scale factor).

    Args:
        group: the symmetry group G (its ``act`` makes the views).
        shared_crop: False gives each view its own crop (the views are then no longer related by g alone).
    """

    name = "uniform"

    def __init__(self, group: Group, token_stride: int = 1, crop: CropConfig | None = None,
                 output_size: int | None = None, shared_crop: bool = True, photometric: bool = True,
                 view1: PhotometricConfig | None = None, view2: PhotometricConfig | None = None) -> None:
        super().__init__(token_stride, crop, output_size, photometric, view1, view2)
        self.group = group
        self.is_shared = shared_crop

    def token_sides(self, side: int, generator: torch.Generator | None = None) -> tuple[int, int]:
        """Tokens per side (n1, n2) of the two views: n0 = side / stride without scale, else round(n0 · s_i)."""
        if side % self.token_stride:
            raise ValueError(f"view side {side} must be a multiple of token_stride {self.token_stride}")
        n0 = side // self.token_stride
        if not _has_scale(self.group):
            return n0, n0
        draws = _scale_factor(self.group).sample(2, generator=generator).tensor.view(-1).tolist()
        return tuple(max(1, math.floor(n0 * s + 0.5)) for s in draws)  # type: ignore[return-value]

    def _elements(self, n: int, n0: int, tokens: int, generator: torch.Generator | None, device: torch.device) -> Elements:
        if not _has_scale(self.group):
            return self.group.sample(n, generator=generator, device=device)
        return self.group.wrap(_with_scale(self.group, n, tokens / n0, generator, device))

    def _crops(self, images: Tensor, generator: torch.Generator | None, rank: int, world_size: int
               ) -> tuple[Tensor, Tensor, ViewParams, ViewParams]:
        if self.is_shared or isinstance(images, CropBatch):
            return self.shared_crop(images, generator, rank, world_size)
        check_images(images)
        rows, hw = rank_rows(images.shape[0], rank, world_size), (int(images.shape[-2]), int(images.shape[-1]))
        out = []
        for aug in self.views:
            p = aug.sample(images.shape[0] * world_size, hw, generator)[rows].to(images.device)
            out.append((aug.apply(images, p), p))
        return out[0][0], out[1][0], out[0][1], out[1][1]

    def __call__(self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0,
                 world_size: int = 1) -> EquivariantViews:
        x1, x2, p1, p2 = self._crops(images, generator, rank, world_size)
        total, rows, host = images.shape[0] * world_size, rank_rows(images.shape[0], rank, world_size), torch.device("cpu")
        side = int(x1.shape[-1])
        n1, n2 = self.token_sides(side, generator)
        n0 = side // self.token_stride
        g1 = self._elements(total, n0, n1, generator, host)[rows]  # elements stay on the host (see Group.act)
        g2 = self._elements(total, n0, n2, generator, host)[rows]
        scaled = _has_scale(self.group)
        size1, size2 = (n1 * self.token_stride,) * 2, (n2 * self.token_stride,) * 2
        view1 = self.group.act(x1, g1, out_size=size1 if scaled else None)
        view2 = self.group.act(x2, g2, out_size=size2 if scaled else None)
        return EquivariantViews(view1, view2, self.group, g1, g2, g2 @ ~g1, p1, p2)

    def __repr__(self) -> str:
        return f"UniformPairPolicy(group={self.group.name!r}, shared_crop={self.is_shared}, {super().__repr__()})"


def _has_scale(group: Group) -> bool:
    return "scale" in group.param_names


def _scale_factor(group: Group) -> ScaleGroup:
    if isinstance(group, ScaleGroup):
        return group
    for factor in getattr(group, "factors", ()):
        if _has_scale(factor):
            return _scale_factor(factor)
    raise ValueError(f"group {group.name!r} has no scale factor")


def _with_scale(group: Group, n: int, scale: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Raw elements of ``group``: every scale factor fixed to ``scale``, every other factor sampled per sample."""
    if isinstance(group, ScaleGroup):
        return torch.full((n, 1), float(scale), device=device)
    if not _has_scale(group):
        return group.sample(n, generator=generator, device=device).tensor
    factors = getattr(group, "factors", None)
    if factors is None:
        raise ValueError(f"cannot fix the scale of group {group.name!r}: it is neither 'scale' nor a product")
    return group.join(*[_with_scale(f, n, scale, generator, device) for f in factors])


def split_batch(batch_size: int, ratio: float) -> tuple[int, int]:
    """The one rule splitting a per-device batch into b1 SSL pairs and b2 equivariant pairs (b1 + b2 = batch).

    b2 = round(ratio · batch) as the official code computes it (Python's round), but at least 1 when ratio > 0 (so a
    small share still regularises); a share that leaves no b1 image is an error. SER uses ratio 0.01 at 256 per GPU, i.e. 3 images per device and
    24 per step over 8 GPUs: enough there, but on a single small-batch run 2-3 images give the token-level InfoNCE
    only 1-2 other images as negatives and a very noisy gradient, so small-scale runs want a larger share
    (see docs/data.md).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"equivariant batch ratio must lie in [0, 1], got {ratio}")
    if ratio == 0.0:
        return batch_size, 0
    b2 = max(1, round(ratio * batch_size))
    if b2 >= batch_size:
        raise ValueError(f"equiv.b2_ratio={ratio} gives {b2} equivariant images in a batch of {batch_size}; "
                         f"need at least 1 and fewer than the batch")
    return batch_size - b2, b2

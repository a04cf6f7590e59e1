"""E-SSL (Dangovski et al., ICLR 2022): 4-way rotation prediction on extra small crops.

Every image gets one extra small crop x̃ (RandomResizedCrop + flip + colour jitter + grayscale), used in all four
rotations R_r x̃, r ∈ {0°, 90°, 180°, 270°}; a head predicts r: L = CE(h(f(R_r x̃)), r), weight λ = 0.4
(methods.md §2.3). Defaults follow the official CIFAR-10 setting, the one for small images: crops of half the image
side with area scale (0.2, 1), head d→2048-LN-ReLU→2048-LN-ReLU→4. Decoupled as the others: f is the layer-k
vector through its own LayerNorm (the final embedding at the last layer). Each image thus has 2 + 4 = 6 views.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.augment import CropConfig, PhotometricConfig, ViewAugmentation
from equireg.augment.views import rank_rows
from equireg.equivariance.base import EquivarianceLoss, View, register_equiv_loss
from equireg.equivariance.context import StepContext
from equireg.equivariance.heads import mlp


def four_rotations(crops: Tensor) -> tuple[Tensor, Tensor]:
    """(4B, C, s, s) batch [R_0 x; R_90 x; R_180 x; R_270 x] (counter-clockwise) and its labels 0..3."""
    rotated = torch.cat([torch.rot90(crops, k, dims=(-2, -1)) for k in range(4)])
    labels = torch.arange(4, device=crops.device).repeat_interleave(crops.shape[0])
    return rotated, labels


@register_equiv_loss("essl")
class ESSLLoss(EquivarianceLoss):
    """CE(head(f(R_r x̃)), r) over all four rotations of one small crop per image.

    Args:
        in_channels: width of the layer-k representation.
        hidden_dim: the head's hidden width (2048).
        crop_size: side of the small crops (default: half the image side, a multiple of the ViT patch size).
        crop_scale: area range of the small crops ((0.2, 1.0) on CIFAR; (0.05, 0.14) at 96 px on ImageNet).
        image_size, backbone: context, to size the crops (half the image, a multiple of a ViT's patch).
        weight: λ (0.4).
    """

    reads = "vector"
    needs_full_images = True
    split_views = (View.ROT,)
    extra_views_per_image = 4

    def __init__(
        self,
        in_channels: int,
        image_size: int = 32,
        backbone: nn.Module | None = None,
        hidden_dim: int = 2048,
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        weight: float = 0.4,
    ) -> None:
        super().__init__(weight)
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"essl crop_size must be >= 1, got {crop_size}")
        self.head = mlp([in_channels, hidden_dim, hidden_dim, 4], norm="ln")
        if crop_size is None:  # half the image side, a multiple of a ViT's patch
            patch = int(getattr(backbone, "patch_size", 1) or 1)
            crop_size = max(patch, (image_size // 2) // patch * patch)
        self.crop_size = crop_size
        photometric = PhotometricConfig(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, blur_p=0.0)
        self.crops = ViewAugmentation(CropConfig(scale=tuple(crop_scale)), photometric, output_size=crop_size)  # type: ignore[arg-type]

    def extra_views(self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0,
                    world_size: int = 1) -> dict[str, Tensor]:
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        rows = rank_rows(images.shape[0], rank, world_size)
        params = self.crops.sample(images.shape[0] * world_size, hw, generator)[rows].to(images.device)
        return {View.ROT: four_rotations(self.crops.apply(images, params))[0]}

    def loss_from(self, representation: Tensor) -> Tensor:
        """CE of the head on representations (4B, d) ordered as :func:`four_rotations` orders its batch."""
        if representation.shape[0] % 4:
            raise ValueError(f"essl expects 4 rotations per crop, got a batch of {representation.shape[0]}")
        labels = torch.arange(4, device=representation.device).repeat_interleave(representation.shape[0] // 4)
        return F.cross_entropy(self.head(representation.float()), labels)

    def compute(self, ctx: StepContext) -> Tensor:
        return self.loss_from(ctx.representation(View.ROT))

"""STL (Yu et al., NeurIPS 2024): transformation representations learned from image pairs that share a transform.

Images come in aligned pairs (2i, 2i+1): both get the *same* crop and colour parameters for view 1 and for view 2,
while flip, blur and solarize are drawn independently (methods.md §2.4). With y1, y2 the two views' representations:

* transformation representation τ_i = T([y1_i; y2_i]) (MLP 2d→128→128);
* L_trans = InfoNCE(P_t(τ_2i), P_t(τ_2i+1)): τ must describe the transform, not the image;
* hypernetwork predictor ŷ2_i = W(τ_partner(i)) y1_i with W: Linear(128 → d·d, no bias), τ taken from the
  partner image; L_equi = InfoNCE(P_e(y2), P_e(ŷ2));
* STL's total is L_inv + 1.0·L_equi + 0.1·L_trans with τ = 0.2, so this loss returns L_equi + 0.1·L_trans
  (weight λ = 1) and the invariant objective supplies L_inv.

InfoNCE here is NT-Xent over the 2N set (gradient on both sides). Projectors P_e d→512→128, P_t 128→128→128.
Decoupled as the others: y is the layer-k vector through its own LayerNorm (the final embedding at the last layer).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from equireg.augment import ViewPair, ViewParams
from equireg.augment.views import rank_rows
from equireg.equivariance.base import EquivarianceLoss, register_equiv_loss
from equireg.equivariance.context import StepContext
from equireg.equivariance.heads import mlp
from equireg.objectives.losses.ntxent import NTXentLoss

ALIGNED_FIELDS = ("crop", "jitter_applied", "color", "jitter_order", "grayscale")
"""ViewParams fields shared by the two images of a pair; the rest (flip, blur, solarize) stay independent."""


def partner_index(n: int, device: torch.device | None = None) -> Tensor:
    """Index of each sample's pair partner: 0<->1, 2<->3, ..."""
    return torch.arange(n, device=device) ^ 1


def align_pairs(params: ViewParams) -> ViewParams:
    """Copy the aligned fields of sample 2i onto sample 2i+1."""
    n = len(params)
    if n % 2:
        raise ValueError(f"STL needs an even number of images per batch (aligned pairs), got {n}")
    source = torch.arange(n) // 2 * 2
    values = {f.name: getattr(params, f.name) for f in fields(ViewParams)}
    for name in ALIGNED_FIELDS:
        values[name] = values[name][source.to(values[name].device)].clone()
    return ViewParams(**values)


class AlignedPairPolicy:
    """Wraps a T policy (with ``views``: two :class:`ViewAugmentation`) so images 2i, 2i+1 share their transforms."""

    def __init__(self, policy: Any) -> None:
        augs = getattr(policy, "views", None)
        if augs is None or len(augs) != 2:
            raise ValueError(f"STL needs a T policy with two per-view augmentations (.views), got {policy!r}")
        self.policy = policy
        self.views = augs

    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0, world_size: int = 1
    ) -> ViewPair:
        """Views of ``images``; with ``world_size`` > 1 the parameters are drawn (and aligned) for the global batch
        and this rank keeps its rows, so pairs never straddle ranks as long as the local batch is even."""
        if images.shape[0] % 2:
            raise ValueError(f"STL needs an even number of images per batch (aligned pairs), got {images.shape[0]}")
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        rows = rank_rows(images.shape[0], rank, world_size)
        out = []
        for aug in self.views:
            params = align_pairs(aug.sample(images.shape[0] * world_size, hw, generator))[rows].to(images.device)
            out.append((aug.apply(images, params), params))
        return ViewPair(out[0][0], out[1][0], out[0][1], out[1][1])

    def __repr__(self) -> str:
        return f"AlignedPairPolicy({self.policy!r})"


@register_equiv_loss("stl")
class STLLoss(EquivarianceLoss):
    """L_equi + trans_weight · L_trans (see the module docstring).

    Args:
        in_channels: width d of the layer-k representation.
        trans_dim: width of the transformation representation τ (128).
        proj_hidden_dim, proj_dim: the equivariant projector P_e (512 → 128).
        temperature: InfoNCE temperature (0.2).
        trans_weight: weight of L_trans inside this loss (0.1).
    """

    needs_maps = False
    needs_pooled = True
    uses_equivariant_pair = False
    split_views = ("v1", "v2")
    follows_objective_defaults = False
    default_weight = 1.0

    def __init__(
        self,
        in_channels: int,
        trans_dim: int = 128,
        proj_hidden_dim: int = 512,
        proj_dim: int = 128,
        temperature: float = 0.2,
        trans_weight: float = 0.1,
    ) -> None:
        super().__init__()
        if trans_weight < 0:
            raise ValueError(f"stl trans_weight must be >= 0, got {trans_weight}")
        self.dim = in_channels
        self.transformation = mlp([2 * in_channels, trans_dim, trans_dim])
        self.hypernet = nn.Linear(trans_dim, in_channels * in_channels, bias=False)
        self.projector_equiv = mlp([in_channels, proj_hidden_dim, proj_dim])
        self.projector_trans = mlp([trans_dim, trans_dim, trans_dim])
        self.nt_xent = NTXentLoss(temperature)
        self.trans_weight = trans_weight

    def adapt_ssl_views(self, views: Any) -> Any:
        return AlignedPairPolicy(views)

    def parts(self, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor]:
        """(L_equi, L_trans) for representations (B, d) of aligned pairs (2i, 2i+1)."""
        if y1.shape[0] % 2:
            raise ValueError(f"STL needs an even batch of aligned pairs, got {y1.shape[0]}")
        y1, y2 = y1.float(), y2.float()
        tau = self.transformation(torch.cat([y1, y2], dim=1))
        weights = self.hypernet(tau[partner_index(len(tau), tau.device)]).view(-1, self.dim, self.dim)
        y2_hat = torch.bmm(weights, y1.unsqueeze(2)).squeeze(2)
        loss_equi = self.nt_xent(self.projector_equiv(y2), self.projector_equiv(y2_hat))
        t = self.projector_trans(tau)
        loss_trans = self.nt_xent(t[0::2], t[1::2])
        return loss_equi, loss_trans

    def loss_from(self, y1: Tensor, y2: Tensor) -> Tensor:
        loss_equi, loss_trans = self.parts(y1, y2)
        return loss_equi + self.trans_weight * loss_trans

    def compute(self, ctx: StepContext) -> Tensor:
        return self.loss_from(ctx.representation("v1"), ctx.representation("v2"))

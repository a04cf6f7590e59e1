"""STL (Yu et al., NeurIPS 2024): transformation representations learned from image pairs that share a transform.

Images come in aligned pairs (2i, 2i+1): both get the *same* crop and colour parameters for view 1 and for view 2,
while flip, blur and solarize are drawn independently (methods.md §2.4, §7.3). With y1, y2 the two views'
representations, both directions as the official ``model.py``:

* transformation representations τ₁₂ = T([y1; y2]) and τ₂₁ = T([y2; y1]) (MLP 2d→128→128, two calls);
* hypernetwork predictors with the partner's τ: ŷ1 = W(τ₂₁ of the partner)·y2, ŷ2 = W(τ₁₂ of the partner)·y1,
  W: Linear(128 → d·d, no bias); L_equi = NT-Xent(cat[P_e(y1), P_e(y2)], cat[P_e(ŷ1), P_e(ŷ2)]) (P_e runs on each
  of the four sets separately, four BatchNorm batches);
* L_trans = NT-Xent(P_t(cat[τ₁₂, τ₂₁] of the even images), P_t(cat[τ₁₂, τ₂₁] of the odd images)): τ must describe
  the transform, not the image; P_t runs on the even and on the odd images separately (two BatchNorm batches);
* STL's total is L_inv + 1.0·L_equi + 0.1·L_trans with τ = 0.2, so this loss returns L_equi + 0.1·L_trans
  (weight λ = 1) and the invariant objective supplies L_inv.

NT-Xent over the 2N set, gradient on both sides. Projectors P_e d→512→128, P_t 128→128→128; no Linear layer of T,
P_e or P_t has a bias (each is followed by a BatchNorm or is the last layer, as in the official ``load_mlp``).
Decoupled as the others: y is the layer-k vector (on a standard ViT the intermediate [CLS] through its own
LayerNorm; the final embedding at the last layer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from equireg.augment import ViewPair, ViewParams
from equireg.augment.views import rank_rows
from equireg.equivariance.base import EquivarianceLoss, View, register_equiv_loss
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
    values = params._tensors()
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
        weight: λ of the whole term (1.0, STL's weight of L_equi).
    """

    reads = "vector"
    needs_full_images = True
    split_views = (View.V1, View.V2)

    def __init__(
        self,
        in_channels: int,
        trans_dim: int = 128,
        proj_hidden_dim: int = 512,
        proj_dim: int = 128,
        temperature: float = 0.2,
        trans_weight: float = 0.1,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if trans_weight < 0:
            raise ValueError(f"stl trans_weight must be >= 0, got {trans_weight}")
        self.dim = in_channels
        bias_free = {"hidden_bias": False, "last_bias": False}
        self.transformation = mlp([2 * in_channels, trans_dim, trans_dim], **bias_free)
        self.hypernet = nn.Linear(trans_dim, in_channels * in_channels, bias=False)
        self.projector_equiv = mlp([in_channels, proj_hidden_dim, proj_dim], **bias_free)
        self.projector_trans = mlp([trans_dim, trans_dim, trans_dim], **bias_free)
        self.nt_xent = NTXentLoss(temperature)
        self.trans_weight = trans_weight

    def adapt_ssl_views(self, views: Any) -> Any:
        return AlignedPairPolicy(views)

    def predict(self, y: Tensor, tau: Tensor) -> Tensor:
        """W(τ of each sample's partner)·y for every sample."""
        weights = self.hypernet(tau[partner_index(len(tau), tau.device)]).view(-1, self.dim, self.dim)
        return torch.bmm(weights, y.unsqueeze(2)).squeeze(2)

    def parts(self, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor]:
        """(L_equi, L_trans) for representations (B, d) of aligned pairs (2i, 2i+1)."""
        if y1.shape[0] % 2:
            raise ValueError(f"STL needs an even batch of aligned pairs, got {y1.shape[0]}")
        y1, y2 = y1.float(), y2.float()
        tau_12 = self.transformation(torch.cat([y1, y2], dim=1))
        tau_21 = self.transformation(torch.cat([y2, y1], dim=1))
        y1_hat, y2_hat = self.predict(y2, tau_21), self.predict(y1, tau_12)
        p = self.projector_equiv
        loss_equi = self.nt_xent(torch.cat([p(y1), p(y2)]), torch.cat([p(y1_hat), p(y2_hat)]))
        even = self.projector_trans(torch.cat([tau_12[0::2], tau_21[0::2]]))
        odd = self.projector_trans(torch.cat([tau_12[1::2], tau_21[1::2]]))
        return loss_equi, self.nt_xent(even, odd)

    def loss_from(self, y1: Tensor, y2: Tensor) -> Tensor:
        loss_equi, loss_trans = self.parts(y1, y2)
        return loss_equi + self.trans_weight * loss_trans

    def compute(self, ctx: StepContext) -> Tensor:
        return self.loss_from(ctx.representation(View.V1), ctx.representation(View.V2))

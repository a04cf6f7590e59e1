"""EquiMod (Devillers & Lefort, ICLR 2023): predict the augmented view's embedding from the un-augmented one.

Three images per sample: x0 un-augmented, x1 and x2 the T views with parameter vectors t1, t2 (methods.md §2.2).
With y = g_eq(h) (MLP d→h→h→128, BN, last BN without affine), t̂ = g_t(standardised t) (Linear 18→128 + BN) and
the predictor ŷ_t = u([y0; t̂]) (Linear 256→128 + BN without affine), the loss is NT-Xent over the 2N set
[y_t; ŷ_t] with temperature τ_y = 0.2, averaged over t = 1, 2; λ = 1 (official ImageNet SimCLR setting).

The 18-d parameter vector (:meth:`ViewParams.vector`, EquiMod's 17 plus solarize as in SER) is standardised with
each view's own mean/std drawn from its T augmentation (:func:`vector_stats`), set by :meth:`EquiModLoss.bind`.
Decoupled as AugSelf: h is the layer-k vector through its own LayerNorm (the final embedding at the last layer)
for all three images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from equireg.augment import VECTOR_FIELDS, vector_stats
from equireg.equivariance.base import EquivarianceLoss, register_equiv_loss
from equireg.equivariance.context import StepContext
from equireg.equivariance.heads import mlp
from equireg.objectives.losses.ntxent import NTXentLoss


@register_equiv_loss("equimod")
class EquiModLoss(EquivarianceLoss):
    """½ Σ_t NT-Xent(g_eq(h_t), u([g_eq(h_0); g_t(t)])) (see the module docstring).

    Args:
        in_channels: width of the layer-k representation h.
        hidden_dim: hidden width of g_eq (default: in_channels, as SER's 384→384→384→128).
        proj_dim: width of y, t̂ and ŷ (128).
        temperature: τ_y of the NT-Xent (0.2).
        param_dim: length of the parameter vector (18).
    """

    needs_maps = False
    needs_pooled = True
    uses_equivariant_pair = False
    split_views = ("v1", "v2", "x0")
    extra_views_per_image = 1
    follows_objective_defaults = False
    default_weight = 1.0

    def __init__(
        self,
        in_channels: int,
        hidden_dim: int | None = None,
        proj_dim: int = 128,
        temperature: float = 0.2,
        param_dim: int = len(VECTOR_FIELDS),
    ) -> None:
        super().__init__()
        hidden = hidden_dim or in_channels
        self.g_eq = mlp([in_channels, hidden, hidden, proj_dim], last_norm="bn_no_affine")
        self.g_t = nn.Sequential(nn.Linear(param_dim, proj_dim), nn.BatchNorm1d(proj_dim))
        self.predictor = nn.Sequential(nn.Linear(2 * proj_dim, proj_dim), nn.BatchNorm1d(proj_dim, affine=False))
        self.nt_xent = NTXentLoss(temperature)
        # per-view standardisation of the parameter vector (row 0: view 1, row 1: view 2)
        self.register_buffer("param_mean", torch.zeros(2, param_dim))
        self.register_buffer("param_std", torch.ones(2, param_dim))

    def bind(self, backbone: nn.Module, image_size: int, ssl_views: Any) -> None:
        augs = getattr(ssl_views, "views", None)
        if augs is None or len(augs) != 2:
            return  # a custom policy without per-view augmentations: keep the identity standardisation
        for i, aug in enumerate(augs):
            mean, std = vector_stats(aug, (image_size, image_size), num_samples=16384)
            self.param_mean[i].copy_(mean)
            self.param_std[i].copy_(std)

    def extra_views(self, images: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return {"x0": images}  # the images as loaded are the un-augmented view

    def predict(self, y0: Tensor, params: Tensor, view: int) -> Tensor:
        """ŷ_t from y0 (B, proj_dim) and the raw parameter vectors (B, param_dim) of view ``view`` (0 or 1)."""
        t = (params.to(y0.device).float() - self.param_mean[view]) / self.param_std[view]
        return self.predictor(torch.cat([y0, self.g_t(t)], dim=1))

    def loss_from(self, h0: Tensor, h1: Tensor, h2: Tensor, params1: Tensor, params2: Tensor) -> Tensor:
        """The loss for representations of x0, x1, x2 (B, d) and the views' parameter vectors (B, param_dim)."""
        y0, y1, y2 = (self.g_eq(h.float()) for h in (h0, h1, h2))
        first = self.nt_xent(y1, self.predict(y0, params1, 0))
        second = self.nt_xent(y2, self.predict(y0, params2, 1))
        return 0.5 * (first + second)

    def compute(self, ctx: StepContext) -> Tensor:
        pair = ctx.ssl_pair
        return self.loss_from(
            ctx.representation("x0"), ctx.representation("v1"), ctx.representation("v2"),
            pair.params1.vector(), pair.params2.vector(),
        )

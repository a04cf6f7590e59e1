"""EquiMod (Devillers & Lefort, ICLR 2023): predict the augmented view's embedding from the un-augmented one.

Three images per sample: x0 un-augmented, x1 and x2 the T views with parameter vectors t1, t2 (methods.md §2.2, §7.3).
With y = g_eq(h) (MLP d→h→h→128, BN, last BN without affine), t̂ = g_t(standardised t) (Linear 18→128 + BN) and
the predictor ŷ_t = u([y0; t̂]) (Linear 256→128 + BN without affine), the loss is ONE NT-Xent over the 4N set
[y1; y2; ŷ1; ŷ2] (positive of y_t,i is ŷ_t,i; the other view's y and ŷ are negatives too) with τ_y = 0.2, λ = 1
(official ImageNet SimCLR setting). As in the official code, g_eq normalises x0, x1 and x2 as ONE batch of 3N,
g_t and the predictor run both views as one batch of 2N, and no Linear layer carries a bias.

The 18-d parameter vector (:meth:`ViewParams.vector`, EquiMod's 17 plus solarize as in SER) is standardised with ONE
mean/std for both views (EquiMod uses fixed ImageNet constants; ours are measured on the T policy's own parameter
distribution of both views pooled, since its crop coordinates are fractions of the image), so a given transform has
the same code in either view. Decoupled as AugSelf: h is the layer-k vector (on a standard ViT the intermediate
[CLS] through its own LayerNorm; the final embedding at the last layer) for all three images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from equireg.augment import VECTOR_FIELDS, vector_stats
from equireg.equivariance.base import EquivarianceLoss, View, register_equiv_loss
from equireg.equivariance.context import StepContext
from equireg.equivariance.heads import mlp
from equireg.objectives.losses.ntxent import NTXentLoss


def pooled_vector_stats(ssl_views: Any, image_size: int, num_samples: int = 16384) -> tuple[Tensor, Tensor]:
    """One mean/std of the parameter vector over both views of a T policy (its ``views`` augmentations)."""
    augs = getattr(ssl_views, "views", ())
    if len(augs) != 2:
        raise ValueError(f"equimod needs a T policy with two per-view augmentations (.views), got {ssl_views!r}")
    stats = [vector_stats(aug, (image_size, image_size), num_samples=num_samples, seed=i) for i, aug in enumerate(augs)]
    mean = 0.5 * (stats[0][0] + stats[1][0])
    second = 0.5 * sum(std.square() + m.square() for m, std in stats)
    return mean, (second - mean.square()).clamp_min(1e-12).sqrt().clamp_min(1e-6)


@register_equiv_loss("equimod")
class EquiModLoss(EquivarianceLoss):
    """NT-Xent over [g_eq(h1); g_eq(h2); ŷ1; ŷ2] with ŷ_t = u([g_eq(h0); g_t(t_t)]) (see the module docstring).

    Args:
        in_channels: width of the layer-k representation h.
        ssl_views, image_size: the T policy and image side, to measure the parameter standardisation (context).
        hidden_dim: hidden width of g_eq (default: in_channels, as SER's 384→384→384→128).
        proj_dim: width of y, t̂ and ŷ (128).
        temperature: τ_y of the NT-Xent (0.2).
        weight: λ (1.0).
    """

    reads = "vector"
    needs_full_images = True
    split_views = (View.V1, View.V2, View.X0)
    extra_views_per_image = 1

    def __init__(
        self,
        in_channels: int,
        ssl_views: Any = None,
        image_size: int = 32,
        hidden_dim: int | None = None,
        proj_dim: int = 128,
        temperature: float = 0.2,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        hidden = hidden_dim or in_channels
        param_dim = len(VECTOR_FIELDS)
        self.g_eq = mlp([in_channels, hidden, hidden, proj_dim], last_norm="bn_no_affine", hidden_bias=False,
                        last_bias=False)
        self.g_t = nn.Sequential(nn.Linear(param_dim, proj_dim, bias=False), nn.BatchNorm1d(proj_dim))
        self.predictor = nn.Sequential(nn.Linear(2 * proj_dim, proj_dim, bias=False),
                                       nn.BatchNorm1d(proj_dim, affine=False))
        self.nt_xent = NTXentLoss(temperature)
        mean, std = (torch.zeros(param_dim), torch.ones(param_dim)) if ssl_views is None else \
            pooled_vector_stats(ssl_views, image_size)
        self.register_buffer("param_mean", mean)
        self.register_buffer("param_std", std)

    def extra_views(self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0,
                    world_size: int = 1) -> dict[str, Tensor]:
        return {View.X0: images}  # the images as loaded are the un-augmented view

    def loss_from(self, h0: Tensor, h1: Tensor, h2: Tensor, params1: Tensor, params2: Tensor) -> Tensor:
        """The loss for representations of x0, x1, x2 (B, d) and the views' raw parameter vectors (B, 18)."""
        n = h0.shape[0]
        y0, y1, y2 = self.g_eq(torch.cat([h0, h1, h2]).float()).split(n)
        t = (torch.cat([params1, params2]).to(y0.device).float() - self.param_mean) / self.param_std
        y_hat = self.predictor(torch.cat([torch.cat([y0, y0]), self.g_t(t)], dim=1))
        return self.nt_xent(torch.cat([y1, y2]), y_hat)

    def compute(self, ctx: StepContext) -> Tensor:
        pair = ctx.ssl_pair
        return self.loss_from(
            ctx.representation(View.X0), ctx.representation(View.V1), ctx.representation(View.V2),
            pair.params1.vector(), pair.params2.vector(),
        )

"""SER's token-level equivariance loss (Soft Equivariance Regularization, methods.md §1.6).

For the equivariant pair (a, b) with relative element g = g_b·g_a⁻¹, the target-side map of view a is projected
and moved into b's frame, U = rho_g(P(F_a)), and compared token by token with V = P(F_b) from the online encoder.
Each online token v_j is an anchor; its positive is the aligned moved token u_j; its negatives are the tokens
of *other* images (other positions of the same image are masked out, as in the official code). The loss is
the mean over anchors of  log Σ_i m_ij exp(s_ij) − s_jj  with s = cos(u_i, v_j)/τ, symmetrised over a→b, b→a.

Differences from the released code, on purpose:
* the targets are gathered across ranks with a gradient-carrying all-gather; the official ``@no_grad`` gather
  made this loss a constant with no gradient (methods.md §1.9, caveat 1);
* one projector P serves both sides (it is trained through both); the teacher map F_a itself carries no
  gradient when it comes from a momentum encoder;
* ``same_image_negatives=True`` (a flagged deviation) also counts other positions of the same image as
  negatives, which rules out spatially constant maps; the default follows the paper's code, whose optimum
  also admits g-invariant (constant) maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg import distributed as dist
from equireg.equivariance.base import EquivarianceLoss, EquivBatch, register_equiv_loss
from equireg.groups import Elements, Group


_RANK_STRIDE = 1 << 30  # larger than any per-rank image count


def token_projector(in_channels: int, dim: int = 512) -> nn.Sequential:
    """SER's ``projector_equiv``: 1x1 conv d→dim, GELU, 1x1 conv dim→dim, no biases."""
    return nn.Sequential(
        nn.Conv2d(in_channels, dim, 1, bias=False), nn.GELU(), nn.Conv2d(dim, dim, 1, bias=False)
    )


def flatten_tokens(x: Tensor) -> tuple[Tensor, Tensor]:
    """(B, C, h, w) -> tokens (B·h·w, C) and the image index of each token."""
    b, c, h, w = x.shape
    tokens = x.permute(0, 2, 3, 1).reshape(b * h * w, c)
    owner = torch.arange(b, device=x.device).repeat_interleave(h * w)
    return tokens, owner


def token_info_nce(
    anchors: Tensor,
    anchor_owner: Tensor,
    targets: Tensor,
    target_owner: Tensor,
    positive_index: Tensor,
    temperature: float,
    same_image_negatives: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Mean (or sum) over anchors of −log softmax over targets at the positive; targets from the anchor's own
    image other than its positive are excluded unless ``same_image_negatives``."""
    a = F.normalize(anchors.float(), dim=1)
    t = F.normalize(targets.float(), dim=1)
    logits = a @ t.T / temperature  # (N_anchor, N_target)
    if not same_image_negatives:
        same = anchor_owner.unsqueeze(1) == target_owner.unsqueeze(0)
        not_positive = torch.ones_like(same)
        not_positive[torch.arange(len(a), device=a.device), positive_index] = False
        logits = logits.masked_fill(same & not_positive, float("-inf"))
    return F.cross_entropy(logits, positive_index, reduction=reduction)


class SERLoss(EquivarianceLoss):
    """Token-level InfoNCE between rho_g(P(F_a)) and P(F_b); see the module docstring."""

    def __init__(
        self,
        in_channels: int,
        proj_dim: int = 512,
        temperature: float = 0.5,
        same_image_negatives: bool = False,
        symmetric: bool = True,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.projector = token_projector(in_channels, proj_dim)
        self.temperature = temperature
        self.same_image_negatives = same_image_negatives
        self.symmetric = symmetric
        self.gather_distributed = gather_distributed

    def direction(self, online_b: Tensor, target_a: Tensor, g: Elements, group: Group) -> Tensor:
        """Loss with anchors in view b and the moved view-a targets (g moves a's frame onto b's)."""
        v = self.projector(online_b)
        u = group.act(self.projector(target_a), g, out_size=v.shape[-2:])
        anchors, owner = flatten_tokens(v)
        targets, target_owner = flatten_tokens(u)
        if not (self.gather_distributed and dist.is_distributed()):
            positive = torch.arange(len(anchors), device=anchors.device)
            return token_info_nce(anchors, owner, targets, target_owner, positive, self.temperature,
                                  self.same_image_negatives)
        # image ids made unique across ranks, so "same image" never matches another rank's image
        owner = owner + dist.rank() * _RANK_STRIDE
        targets, sizes = dist.gather_with_sizes(targets)
        target_owner, _ = dist.gather_with_sizes(target_owner + dist.rank() * _RANK_STRIDE)
        positive = torch.arange(len(anchors), device=anchors.device) + sum(sizes[: dist.rank()])
        total = token_info_nce(anchors, owner, targets, target_owner, positive, self.temperature,
                               self.same_image_negatives, reduction="sum")
        # scaled so that the mean over ranks (DDP's gradient averaging) is the global mean over anchors
        return total * dist.world_size() / sum(sizes)

    def forward(self, batch: EquivBatch) -> Tensor:
        (on_a, on_b), (tg_a, tg_b) = batch.online, batch.target
        loss = self.direction(on_b.feature_map, tg_a.feature_map, batch.g, batch.group)
        if not self.symmetric:
            return loss
        back = self.direction(on_a.feature_map, tg_b.feature_map, ~batch.g, batch.group)
        return 0.5 * (loss + back)


@register_equiv_loss("ser")
def ser(in_channels: int, **kwargs: object) -> SERLoss:
    """SER (ICLR 2026): token-level contrastive equivariance on the layer-k map."""
    return SERLoss(in_channels, **kwargs)  # type: ignore[arg-type]

"""SER's token-level equivariance loss (Soft Equivariance Regularization, methods.md §1.6).

For the equivariant pair (a, b) with relative element g = g_b·g_a⁻¹, the target-side map of view a is projected
and moved into b's frame, U = rho_g(P(F_a)), and compared token by token with V = P(F_b) from the online encoder.
Each online token v_j is an anchor; its positive is the aligned moved token u_j; its negatives are the tokens
of *other* images (other positions of the same image are masked out, as in the official code). The loss is
the mean over anchors of  log Σ_i m_ij exp(s_ij) − s_jj  with s = cos(u_i, v_j)/τ, symmetrised over a→b, b→a.

λ, τ and the directions follow the official run scripts per invariant objective (methods.md §1.6, §7.2): MoCo-v3
λ = 1.0, τ = 0.5; DINO λ = 0.3, τ = 0.4; Barlow Twins λ = 1.0, τ = 0.4 and one direction only (view a → view b);
other objectives (SimCLR, plug-ins: no SER run exists) λ = 1.0, τ = 0.5, both directions. This table is the one
place these defaults live.

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


OFFICIAL = {"moco": (1.0, 0.5, True), "dino": (0.3, 0.4, True), "barlow": (1.0, 0.4, False)}
"""objective -> (λ, τ_eq, both directions) of SER's released run scripts."""
OTHER = (1.0, 0.5, True)


@register_equiv_loss("ser")
class SERLoss(EquivarianceLoss):
    """SER (ICLR 2026): token-level InfoNCE between rho_g(P(F_a)) and P(F_b) on the layer-k map (module docstring).

    Args:
        in_channels: channels of the layer-k map.
        objective: the invariant objective's name; picks λ, τ and the directions of its official run.
        weight, temperature, symmetric: override the official values.
        proj_dim: width of the token projector P (512).
        same_image_negatives: also count other positions of the same image as negatives (a deviation).
    """

    cls_position = "after_equiv"

    def __init__(
        self,
        in_channels: int,
        objective: str = "",
        weight: float | None = None,
        temperature: float | None = None,
        symmetric: bool | None = None,
        proj_dim: int = 512,
        same_image_negatives: bool = False,
        gather_distributed: bool = True,
    ) -> None:
        lam, tau, both = OFFICIAL.get(objective, OTHER)
        super().__init__(lam if weight is None else weight)
        self.temperature = tau if temperature is None else float(temperature)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self.projector = token_projector(in_channels, proj_dim)
        self.same_image_negatives = same_image_negatives
        self.symmetric = both if symmetric is None else symmetric
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


@register_equiv_loss("ser_arch")
class ArchitectureControl(EquivarianceLoss):
    """SER's architecture with λ = 0: the late-[CLS] ViT and nothing else, so "SER vs baseline" can be split into the
    architecture's effect (this arm vs ``none``) and the loss's (``ser`` vs this arm) (methods.md §1.9, caveat 2).
    Every image gets the ordinary T pair; no loss term is added."""

    split_views = ()
    cls_position = "after_equiv"

    def __init__(self) -> None:
        super().__init__(weight=0.0)

    def compute(self, ctx: object) -> None:
        return None

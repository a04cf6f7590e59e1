"""SimCLR's NT-Xent loss (Chen et al., 2020) over 2N normalised projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.distributed import gather_with_sizes, rank
from equireg.objectives.losses._common import check_pair, check_temperature, rank_mean_scale, upcast


class NTXentLoss(nn.Module):
    """Normalised-temperature cross-entropy, the mean over all 2N anchors of

    ``ℓ(a) = -log( exp(s(a, a⁺)/τ) / Σ_{b ≠ a} exp(s(a, b)/τ) )``,

    where ``s`` is the cosine similarity, ``a⁺`` the other view of the same image and the sum runs over the 2N - 1
    other projections (the positive and 2N - 2 negatives); self-similarity is masked out. This is the paper's
    equation (mean over 2N anchors); google-research/simclr's code sums the two view directions instead, which is
    twice this value.

    Distributed: both views are gathered with gradient, so negatives come from every rank; each rank reports the mean
    over its own 2B anchors (rescaled for unequal batch sizes), and the mean over ranks equals the global loss.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True) -> None:
        super().__init__()
        check_temperature("NTXentLoss", "temperature", temperature)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Projections ``z1, z2`` (N, D) of the two views; row i of each comes from the same image."""
        check_pair("NTXentLoss", z1, z2)
        z1 = F.normalize(upcast(z1), dim=1)
        z2 = F.normalize(upcast(z2), dim=1)
        if self.gather_distributed:
            z1_all, sizes = gather_with_sizes(z1)
            z2_all, _ = gather_with_sizes(z2)
            offset = sum(sizes[: rank()]) if len(sizes) > 1 else 0
        else:
            z1_all, z2_all, sizes, offset = z1, z2, [z1.shape[0]], 0
        n_global, b = z1_all.shape[0], z1.shape[0]
        anchors = torch.cat([z1, z2], dim=0)  # (2B, D)
        candidates = torch.cat([z1_all, z2_all], dim=0)  # (2N, D): view-1 rows, then view-2 rows
        logits = anchors @ candidates.T / self.temperature
        local = torch.arange(b, device=z1.device) + offset
        self_index = torch.cat([local, local + n_global])
        positive_index = torch.cat([local + n_global, local])
        is_self = torch.zeros_like(logits, dtype=torch.bool)
        is_self[torch.arange(2 * b, device=z1.device), self_index] = True
        logits = logits.masked_fill(is_self, float("-inf"))
        loss_sum = F.cross_entropy(logits, positive_index, reduction="sum")
        return loss_sum * rank_mean_scale(sizes) / 2

"""MoCo-v3 contrastive loss (Chen, Xie & He, 2021): InfoNCE of online queries against momentum keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.distributed import gather_with_sizes, rank
from equireg.objectives.losses._common import check_pair, check_temperature, rank_mean_scale, upcast


class MoCoV3Loss(nn.Module):
    """Symmetrised MoCo-v3 loss ``ctr(q1, k2) + ctr(q2, k1)``.

    ``ctr(q, k) = 2τ · mean_i CE(q̂_i k̂ᵀ / τ, i)`` with ℓ2-normalised rows. Keys are gathered from every rank (no
    memory queue), so each query meets ``N_global - 1`` negative keys; query ``i`` of rank ``r`` has its positive at
    the global row ``offset_r + i``. The factor ``2τ`` is MoCo-v3's, which makes the gradient scale independent of τ.
    Keys normally come from the momentum encoder and carry no gradient; if they do, it is propagated correctly
    across ranks (the gather carries gradient).

    Distributed: each rank reports the mean over its own queries (rescaled when ranks hold different batch sizes),
    so the mean over ranks equals the single-process loss on the global batch.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True) -> None:
        super().__init__()
        check_temperature("MoCoV3Loss", "temperature", temperature)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def contrastive(self, q: Tensor, k: Tensor) -> Tensor:
        """One direction, ``ctr(q, k)``."""
        check_pair("MoCoV3Loss", q, k, ("q", "k"))
        q = F.normalize(upcast(q), dim=1)
        k = F.normalize(upcast(k), dim=1)
        if self.gather_distributed:
            k_all, sizes = gather_with_sizes(k)
            offset = sum(sizes[: rank()]) if len(sizes) > 1 else 0
        else:
            k_all, sizes, offset = k, [k.shape[0]], 0
        logits = q @ k_all.T / self.temperature
        labels = torch.arange(q.shape[0], device=q.device) + offset
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        return loss_sum * rank_mean_scale(sizes) * (2 * self.temperature)

    def forward(self, q1: Tensor, q2: Tensor, k1: Tensor, k2: Tensor) -> Tensor:
        """Queries ``q1, q2`` (online, predictor output) and keys ``k1, k2`` (momentum projector) of views 1 and 2."""
        return self.contrastive(q1, k2) + self.contrastive(q2, k1)

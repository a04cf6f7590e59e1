"""Barlow Twins redundancy-reduction loss (Zbontar et al., 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equireg.distributed import all_reduce_sum
from equireg.objectives.losses._common import check_pair, upcast


class BarlowTwinsLoss(nn.Module):
    """``L = Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij²`` with ``C = BN(z1)ᵀ BN(z2) / N``.

    BN is affine-free batch normalisation (biased variance, ``eps`` inside the square root, as
    ``nn.BatchNorm1d(affine=False)`` in training mode). With ``gather_distributed`` its statistics, the batch size
    ``N`` and ``C`` are all taken over the global batch through gradient-carrying all-reduces, so every rank computes
    the same global loss. The official code all-reduced ``C`` without gradient, which under DDP's gradient averaging
    scales the gradient by ``1 / world_size`` (the bug lightly fixed in its PR #1980); this implementation does not.
    """

    def __init__(self, lambda_offdiag: float = 0.0051, eps: float = 1e-5, gather_distributed: bool = True) -> None:
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"BarlowTwinsLoss: lambda_offdiag must be >= 0, got {lambda_offdiag}")
        self.lambda_offdiag = lambda_offdiag
        self.eps = eps
        self.gather_distributed = gather_distributed

    def _sum(self, t: Tensor) -> Tensor:
        return all_reduce_sum(t) if self.gather_distributed else t

    def cross_correlation(self, z1: Tensor, z2: Tensor) -> Tensor:
        """The (D, D) matrix ``C`` over the (global) batch."""
        check_pair("BarlowTwinsLoss", z1, z2)
        z1, z2 = upcast(z1), upcast(z2)
        d = z1.shape[1]
        count = z1.new_tensor([float(z1.shape[0])])
        sums = self._sum(torch.cat([z1.sum(0), z2.sum(0), count]))
        n = sums[-1].detach()
        if n.item() < 2:
            raise ValueError(f"BarlowTwinsLoss: batch normalisation needs at least 2 samples, got {int(n.item())}")
        c1, c2 = z1 - sums[:d] / n, z2 - sums[d : 2 * d] / n
        variances = self._sum(torch.cat([c1.pow(2).sum(0), c2.pow(2).sum(0)])) / n
        bn1 = c1 / torch.sqrt(variances[:d] + self.eps)
        bn2 = c2 / torch.sqrt(variances[d:] + self.eps)
        return self._sum(bn1.T @ bn2) / n

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Projector outputs ``z1, z2`` (N, D) of the two views."""
        c = self.cross_correlation(z1, z2)
        diagonal = torch.diagonal(c)
        on_diag = (1 - diagonal).pow(2).sum()
        off_diag = c.pow(2).sum() - diagonal.pow(2).sum()
        return on_diag + self.lambda_offdiag * off_diag

"""DINO self-distillation loss (Caron et al., 2021) with the teacher centre and temperature warm-up."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.distributed import all_reduce_sum, world_size
from equireg.objectives.losses._common import check_temperature, upcast


class DINOLoss(nn.Module):
    """Cross-entropy between the centred, sharpened teacher and the student over view pairs ``t ≠ s``.

    ``L = mean_{(t, s), t ≠ s} mean_i  Σ_k -P_t[i, k] log P_s[i, k]`` with
    ``P_t = softmax((g_ξ(x_t) - c) / τ_t)`` (no gradient) and ``P_s = softmax(g_θ(x_s) / τ_s)``. The teacher views
    are the first ``len(teacher)`` student views (DINO's global crops); extra student views are local crops.

    After the loss, in training mode, the centre moves as ``c ← m c + (1 - m) · mean(teacher outputs)``; the mean is
    over all teacher views and the global batch (an all-reduce when distributed, skipped otherwise).
    ``τ_t`` warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over the first ``warmup_frac`` of
    training (DINO does this per epoch; here ``progress`` in [0, 1] is continuous).
    """

    center: Tensor

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_frac: float = 0.1,
        center_momentum: float = 0.9,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"DINOLoss: out_dim must be >= 1, got {out_dim}")
        for name, value in (("student_temp", student_temp), ("teacher_temp", teacher_temp),
                            ("warmup_teacher_temp", warmup_teacher_temp)):
            check_temperature("DINOLoss", name, value)
        if not 0 <= warmup_frac <= 1:
            raise ValueError(f"DINOLoss: warmup_frac must be in [0, 1], got {warmup_frac}")
        if not 0 <= center_momentum <= 1:
            raise ValueError(f"DINOLoss: center_momentum must be in [0, 1], got {center_momentum}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_frac = warmup_frac
        self.center_momentum = center_momentum
        self.gather_distributed = gather_distributed
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_temperature(self, progress: float) -> float:
        """τ_t at training progress ``progress`` in [0, 1]."""
        if self.warmup_frac == 0 or progress >= self.warmup_frac:
            return self.teacher_temp
        frac = max(progress, 0.0) / self.warmup_frac
        return self.warmup_teacher_temp + frac * (self.teacher_temp - self.warmup_teacher_temp)

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor], progress: float) -> Tensor:
        """``student``: head outputs (B, K) per view; ``teacher``: teacher head outputs of the first views."""
        if len(teacher) < 1 or len(student) < len(teacher) or len(student) < 2:
            raise ValueError(f"DINOLoss: need >= 1 teacher view and >= max(2, teachers) student views, got "
                             f"{len(teacher)} teacher and {len(student)} student views")
        shape = tuple(teacher[0].shape)
        for t in (*student, *teacher):
            if t.dim() != 2 or tuple(t.shape) != shape or shape[1] != self.out_dim:
                raise ValueError(f"DINOLoss: every view must have shape (B, {self.out_dim}) with the same B, got "
                                 f"{[tuple(v.shape) for v in student]} and {[tuple(v.shape) for v in teacher]}")
        teacher_out = torch.stack([upcast(t.detach()) for t in teacher])  # (T, B, K)
        stats = torch.cat([teacher_out.sum(dim=(0, 1)), teacher_out.new_tensor([float(shape[0])])])
        if self.gather_distributed:
            stats = all_reduce_sum(stats)
        n_global = stats[-1].item()  # rows per view over all ranks that took part

        tau_t = self.teacher_temperature(progress)
        targets = F.softmax((teacher_out - self.center) / tau_t, dim=-1)
        loss_sum = teacher_out.new_zeros(())
        n_terms = 0
        for s_idx, s in enumerate(student):
            log_p = F.log_softmax(upcast(s) / self.student_temp, dim=-1)
            for t_idx in range(len(teacher)):
                if t_idx == s_idx:
                    continue
                loss_sum = loss_sum - (targets[t_idx] * log_p).sum()
                n_terms += 1
        # Per-rank value whose mean over ranks is the global-batch mean (equal batch sizes: the local mean).
        n_ranks = world_size() if self.gather_distributed else 1
        loss = loss_sum / n_terms * (n_ranks / n_global)

        if self.training:
            with torch.no_grad():
                batch_center = stats[:-1] / (len(teacher) * n_global)
                self.center.mul_(self.center_momentum).add_(batch_center.unsqueeze(0), alpha=1 - self.center_momentum)
        return loss

"""DINO (Caron et al., ICCV 2021): self-distillation from an EMA teacher with centring and sharpening."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from equireg.objectives.base import Objective, check_progress, resolve_preset
from equireg.objectives.heads import DINOHead
from equireg.objectives.losses import DINOLoss
from equireg.objectives.registry import register_objective


@register_objective("dino")
class DINOObjective(Objective):
    """Student head on the online embeddings, teacher = EMA copy of backbone + head, :class:`DINOLoss` between them.

    Defaults follow SER's DINO run (methods.md §1.7): head out_dim 65536 (hidden 2048, bottleneck 256),
    ``norm_last_layer=False``, last layer frozen for the first 1 % of training (1 epoch of 100), teacher EMA
    0.982 → 1 (DINO's own default is 0.996), teacher temperature 0.04 → 0.07 over the first 10 %, student
    temperature 0.1, centre momentum 0.9. ``preset="small"`` uses out_dim 4096, hidden 512, bottleneck 128.
    The teacher head is a separate copy: nothing is shared with the student (unlike SER's equivariance projector).
    """

    name = "dino"
    has_teacher = True
    crop_min = 0.25  # methods.md §7.2
    vit_settings = {"init": "ser", "drop_path_rate": 0.1}
    teacher_heads = ("head",)
    presets = {
        "paper": {"out_dim": 65536, "hidden_dim": 2048, "bottleneck_dim": 256},
        "small": {"out_dim": 4096, "hidden_dim": 512, "bottleneck_dim": 128},
    }

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int | None = None,
        hidden_dim: int | None = None,
        bottleneck_dim: int | None = None,
        norm_last_layer: bool = False,
        use_bn_in_head: bool = False,
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        warmup_teacher_temp: float = 0.04,
        warmup_frac: float = 0.1,
        center_momentum: float = 0.9,
        base_momentum: float = 0.982,
        freeze_last_layer_frac: float = 0.01,
        preset: str = "paper",
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, base_momentum)
        if not 0 <= freeze_last_layer_frac <= 1:
            raise ValueError(f"dino: freeze_last_layer_frac must be in [0, 1], got {freeze_last_layer_frac}")
        dims = resolve_preset("dino", self.presets, preset, out_dim=out_dim, hidden_dim=hidden_dim,
                              bottleneck_dim=bottleneck_dim)
        self.head = DINOHead(self.embed_dim, dims["out_dim"], hidden_dim=dims["hidden_dim"],
                             bottleneck_dim=dims["bottleneck_dim"], use_bn=use_bn_in_head,
                             norm_last_layer=norm_last_layer)
        self.criterion = DINOLoss(dims["out_dim"], student_temp=student_temp, teacher_temp=teacher_temp,
                                  warmup_teacher_temp=warmup_teacher_temp, warmup_frac=warmup_frac,
                                  center_momentum=center_momentum, gather_distributed=gather_distributed)
        self.freeze_last_layer_frac = freeze_last_layer_frac
        self.init_teacher(backbone)

    def loss(self, z1: Tensor, z2: Tensor, t1: Any, t2: Any, progress: float) -> Tensor:
        check_progress(progress)
        self._check_embeddings(self.name, z1, z2, self.embed_dim)
        e1, e2 = self._require_teacher_outputs(t1, t2)
        assert self.teacher is not None
        with torch.no_grad():
            teacher_out = [self.teacher["head"](e1), self.teacher["head"](e2)]
        return self.criterion([self.head(z1), self.head(z2)], teacher_out, progress)

    def after_backward(self, progress: float) -> None:
        """Drop the last layer's gradients early in training (DINO's ``cancel_gradients_last_layer``)."""
        if progress < self.freeze_last_layer_frac:
            for p in self.head.last_layer.parameters():
                p.grad = None

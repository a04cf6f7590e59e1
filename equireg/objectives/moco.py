"""MoCo-v3 (Chen, Xie & He, ICCV 2021): online projector + predictor against a momentum projector."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from equireg.objectives.base import Objective, check_progress, resolve_preset
from equireg.objectives.heads import MLPHead
from equireg.objectives.losses import MoCoV3Loss
from equireg.objectives.registry import register_objective


@register_objective("moco")
class MoCoV3Objective(Objective):
    """``L = ctr(q1, k2) + ctr(q2, k1)``, ``q = pred(proj(z))`` online, ``k = proj_ξ(f_ξ(x))`` momentum.

    Defaults are MoCo-v3's ViT recipe as SER ran it (methods.md §1.7, §3.1): projector d→4096→4096→256 with an
    affine-free last BN, predictor 256→4096→256 with last BN (set ``pred_last_bn=False`` for ResNets), τ = 0.2,
    momentum 0.99 → 1 (cosine). ``preset="small"`` shrinks the hidden widths to 1024 for CPU runs. The teacher is a
    copy of the backbone and the projector.
    """

    name = "moco"
    has_teacher = True
    crop_min = 0.08  # methods.md §7.2
    vit_settings = {"init": "moco", "freeze_patch_embed": True, "drop_path_rate": 0.0}
    teacher_heads = ("projector",)
    presets = {
        "paper": {"proj_hidden_dim": 4096, "proj_dim": 256, "pred_hidden_dim": 4096},
        "small": {"proj_hidden_dim": 1024, "proj_dim": 256, "pred_hidden_dim": 1024},
    }

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int | None = None,
        proj_dim: int | None = None,
        pred_hidden_dim: int | None = None,
        pred_last_bn: bool = True,
        temperature: float = 0.2,
        base_momentum: float = 0.99,
        preset: str = "paper",
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone, base_momentum)
        dims = resolve_preset("moco", self.presets, preset, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim,
                              pred_hidden_dim=pred_hidden_dim)
        out = dims["proj_dim"]
        self.projector = MLPHead(self.embed_dim, dims["proj_hidden_dim"], out, num_layers=3, last_bn=True)
        self.predictor = MLPHead(out, dims["pred_hidden_dim"], out, num_layers=2, last_bn=pred_last_bn)
        self.criterion = MoCoV3Loss(temperature=temperature, gather_distributed=gather_distributed)
        self.init_teacher(backbone)

    def loss(self, z1: Tensor, z2: Tensor, t1: Any, t2: Any, progress: float) -> Tensor:
        check_progress(progress)
        self._check_embeddings(self.name, z1, z2, self.embed_dim)
        e1, e2 = self._require_teacher_outputs(t1, t2)
        q1, q2 = self.predictor(self.projector(z1)), self.predictor(self.projector(z2))
        assert self.teacher is not None
        with torch.no_grad():
            k1, k2 = self.teacher["projector"](e1), self.teacher["projector"](e2)
        return self.criterion(q1, q2, k1, k2)

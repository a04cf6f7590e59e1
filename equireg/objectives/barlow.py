"""Barlow Twins (Zbontar et al., ICML 2021): cross-correlation of the two views' projections towards identity."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from equireg.objectives.base import Objective, check_progress, resolve_preset
from equireg.objectives.heads import MLPHead
from equireg.objectives.losses import BarlowTwinsLoss
from equireg.objectives.registry import register_objective


@register_objective("barlow")
class BarlowTwinsObjective(Objective):
    """Projector d→8192→8192→8192 (BN + ReLU, last Linear bare) and :class:`BarlowTwinsLoss` with λ = 0.0051.

    Defaults from facebookresearch/barlowtwins and SER's run (methods.md §1.7, §3.3). No teacher.
    ``preset="small"`` uses 1024-wide layers.
    """

    name = "barlow"
    has_teacher = False
    crop_min = 0.08  # methods.md §7.2
    vit_settings = {"init": "ser", "drop_path_rate": 0.0}
    presets = {
        "paper": {"proj_hidden_dim": 8192, "proj_dim": 8192},
        "small": {"proj_hidden_dim": 1024, "proj_dim": 1024},
    }

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int | None = None,
        proj_dim: int | None = None,
        proj_layers: int = 3,
        lambda_offdiag: float = 0.0051,
        preset: str = "paper",
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone)
        dims = resolve_preset("barlow", self.presets, preset, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim)
        self.projector = MLPHead(self.embed_dim, dims["proj_hidden_dim"], dims["proj_dim"], num_layers=proj_layers)
        self.criterion = BarlowTwinsLoss(lambda_offdiag=lambda_offdiag, gather_distributed=gather_distributed)

    def loss(self, z1: Tensor, z2: Tensor, t1: Any, t2: Any, progress: float) -> Tensor:
        check_progress(progress)
        self._check_embeddings(self.name, z1, z2, self.embed_dim)
        return self.criterion(self.projector(z1), self.projector(z2))

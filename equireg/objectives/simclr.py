"""SimCLR (Chen et al., ICML 2020): NT-Xent between the projections of two views, in-batch negatives."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from equireg.objectives.base import Objective, check_progress, resolve_preset
from equireg.objectives.heads import MLPHead
from equireg.objectives.losses import NTXentLoss
from equireg.objectives.registry import register_objective


@register_objective("simclr")
class SimCLRObjective(Objective):
    """Projector d→2048→128 (BN + ReLU on the hidden layer) and :class:`NTXentLoss`.

    τ = 0.2, the value E-SSL and EquiMod used for their ImageNet SimCLR baselines (methods.md §2.2, §2.3; SimCLR's
    own ImageNet default is 0.1, its CIFAR one 0.5). No teacher. ``preset="small"``: hidden 512.
    """

    name = "simclr"
    has_teacher = False
    crop_min = 0.08  # methods.md §7.2
    presets = {
        "paper": {"proj_hidden_dim": 2048, "proj_dim": 128},
        "small": {"proj_hidden_dim": 512, "proj_dim": 128},
    }

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int | None = None,
        proj_dim: int | None = None,
        proj_layers: int = 2,
        temperature: float = 0.2,
        preset: str = "paper",
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(backbone)
        dims = resolve_preset("simclr", self.presets, preset, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim)
        self.projector = MLPHead(self.embed_dim, dims["proj_hidden_dim"], dims["proj_dim"], num_layers=proj_layers)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)

    def loss(self, z1: Tensor, z2: Tensor, t1: Any, t2: Any, progress: float) -> Tensor:
        check_progress(progress)
        self._check_embeddings(self.name, z1, z2, self.embed_dim)
        return self.criterion(self.projector(z1), self.projector(z2))

"""Projection / prediction heads of the base objectives (separate from the losses so they can be reused)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


class MLPHead(nn.Sequential):
    """``num_layers`` Linear layers; hidden ones are Linear → [BN] → activation, the last is Linear → [BN].

    Linear layers carry a bias only in heads without any BN (``bn=False, last_bn=False``); a head with BN has
    bias-free Linear layers throughout, the last one included. That matches the official heads this covers:

    - MoCo-v3 projector: ``MLPHead(d, 4096, 256, num_layers=3, last_bn=True)`` (last BN affine-free);
    - MoCo-v3 ViT predictor: ``MLPHead(256, 4096, 256, num_layers=2, last_bn=True)``;
    - Barlow Twins projector: ``MLPHead(d, 8192, 8192, num_layers=3)`` (last Linear without BN or bias);
    - SimCLR projector: ``MLPHead(d, 2048, 128, num_layers=2)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        bn: bool = True,
        last_bn: bool = False,
        last_bn_affine: bool = False,
        activation: str = "relu",
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"MLPHead: num_layers must be >= 1, got {num_layers}")
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(f"MLPHead: dimensions must be >= 1, got in={in_dim} hidden={hidden_dim} out={out_dim}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLPHead: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        for i in range(num_layers):
            is_last = i == num_layers - 1
            with_bn = last_bn if is_last else bn
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=not (bn or with_bn)))
            if with_bn:
                layers.append(nn.BatchNorm1d(dims[i + 1], affine=last_bn_affine if is_last else True))
            if not is_last:
                layers.append(_ACTIVATIONS[activation]())
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim


class WeightNormLinear(nn.Module):
    """Bias-free linear layer ``W = g · v / ‖v‖`` (row-wise), i.e. weight normalisation with explicit parameters.

    Written out instead of ``torch.nn.utils.weight_norm`` (deprecated) or its parametrization so that deep copies
    for the teacher and EMA updates see two plain parameters, ``weight_v`` and ``weight_g``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))  # nn.Linear's default, as in DINO's last layer
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1))

    @property
    def weight(self) -> Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """DINO head: MLP (GELU) → bottleneck → ℓ2-normalise → weight-normed ``Linear(bottleneck, out_dim)``.

    ``norm_last_layer=True`` freezes the weight-norm gain at 1 (rows of unit norm), DINO's default that stabilises
    training; SER and DINO's ViT-S recipe use False. Hidden Linear layers use truncated-normal (std 0.02) init.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"DINOHead: num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        self.last_layer.weight_g.requires_grad_(not norm_last_layer)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))

"""Small MLPs shared by the comparison methods (their official shapes differ only in widths and norms)."""

from __future__ import annotations

from typing import Literal

from torch import nn

Norm = Literal["bn", "ln", "none"]


def _norm(kind: Norm, dim: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm1d(dim)
    if kind == "ln":
        return nn.LayerNorm(dim)
    return nn.Identity()


def mlp(
    dims: list[int],
    norm: Norm = "bn",
    last_norm: Literal["none", "bn", "bn_no_affine"] = "none",
    hidden_bias: bool = True,
    last_bias: bool = True,
) -> nn.Sequential:
    """Linear layers through ``dims``; hidden ones are Linear -> norm -> ReLU, the last is Linear [-> BN].

    E.g. AugSelf's heads ``mlp([2d, 512, 512, n], hidden_bias=False)``, E-SSL's ``mlp([d, h, h, 4], norm="ln")``,
    EquiMod's ``mlp([d, h, h, 128], last_norm="bn_no_affine", hidden_bias=False, last_bias=False)``. The official
    codebases leave out the bias of every Linear that a BatchNorm follows (it would be cancelled).
    """
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"mlp needs at least two positive widths, got {dims}")
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=last_bias if last else hidden_bias))
        if not last:
            layers += [_norm(norm, dims[i + 1]), nn.ReLU(inplace=True)]
        elif last_norm != "none":
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=last_norm == "bn"))
    return nn.Sequential(*layers)

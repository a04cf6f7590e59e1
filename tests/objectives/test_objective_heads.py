"""Head structure matches the official recipes; DINO's weight-normed last layer behaves as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equireg.objectives import DINOHead, MLPHead, WeightNormLinear


def _kinds(head: nn.Module) -> list[str]:
    return [type(m).__name__ for m in head.children()]


def test_moco_projector_layout() -> None:
    head = MLPHead(16, 32, 8, num_layers=3, last_bn=True)
    assert _kinds(head) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert all(lin.bias is None for lin in linears)  # every Linear is followed by BN
    assert not head[-1].affine and head[1].affine  # only the last BN is affine-free
    assert head(torch.randn(4, 16)).shape == (4, 8)


def test_barlow_and_simclr_projector_layout() -> None:
    barlow = MLPHead(16, 32, 32, num_layers=3)
    assert _kinds(barlow)[-1] == "Linear" and barlow[-1].bias is None  # last Linear bare, as in barlowtwins
    no_bn = MLPHead(16, 32, 8, num_layers=2, bn=False)
    assert _kinds(no_bn) == ["Linear", "ReLU", "Linear"] and no_bn[0].bias is not None
    assert _kinds(MLPHead(16, 99, 8, num_layers=1)) == ["Linear"]


def test_mlp_head_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        MLPHead(4, 4, 4, num_layers=0)
    with pytest.raises(ValueError, match="activation"):
        MLPHead(4, 4, 4, activation="tanh")


def test_weight_norm_linear_is_gain_times_unit_rows() -> None:
    layer = WeightNormLinear(5, 3)
    with torch.no_grad():
        layer.weight_g.copy_(torch.tensor([[1.0], [2.0], [0.5]]))
    x = torch.randn(4, 5)
    v = layer.weight_v
    expected = F.linear(x, layer.weight_g * v / v.norm(dim=1, keepdim=True))
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.weight.norm(dim=1), torch.tensor([1.0, 2.0, 0.5]))


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head(norm_last_layer: bool) -> None:
    head = DINOHead(16, out_dim=40, hidden_dim=32, bottleneck_dim=8, norm_last_layer=norm_last_layer)
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    assert head.last_layer.weight_g.requires_grad is (not norm_last_layer)
    x = torch.randn(3, 16)
    out = head(x)
    assert out.shape == (3, 40)
    bottleneck = F.normalize(head.mlp(x), dim=-1)
    torch.testing.assert_close(out, head.last_layer(bottleneck))
    # rows of the last layer start at unit norm, so outputs are cosines in [-1, 1]
    assert out.abs().max() <= 1 + 1e-6

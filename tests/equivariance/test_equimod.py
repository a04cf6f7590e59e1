"""EquiMod: the loss against a reference written from the official code (one NT-Xent over [y1; y2; ŷ1; ŷ2] as
loops, g_eq on x0, x1, x2 as one BatchNorm batch, g_t and the predictor on both views as one), the three views (x0
is the un-augmented image), one parameter standardisation, and training under every invariant objective."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from equireg.augment import SSLViewPolicy
from equireg.equivariance import EquiModLoss

from .reference import nt_xent_reference, train_briefly


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm1d) -> torch.Tensor:
    x = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    return x * bn.weight + bn.bias if bn.affine else x


def _mlp(layers: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Bias-free Linear / BatchNorm (training mode, written out) / ReLU layers on the batch ``x``."""
    for m in layers:
        if isinstance(m, torch.nn.Linear):
            assert m.bias is None  # no Linear of EquiMod's heads carries a bias
            x = x @ m.weight.T
        elif isinstance(m, torch.nn.BatchNorm1d):
            x = _bn(x, m)
        else:
            x = torch.relu(x)
    return x


def test_loss_matches_the_official_batching_and_the_4n_nt_xent() -> None:
    torch.manual_seed(0)
    n = 4
    loss = EquiModLoss(6, hidden_dim=8, proj_dim=5, temperature=0.3)
    for m in loss.modules():
        if isinstance(m, torch.nn.BatchNorm1d) and m.affine:
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
    loss.param_mean.normal_()
    loss.param_std.uniform_(0.5, 2.0)
    h0, h1, h2 = torch.randn(n, 6), torch.randn(n, 6), torch.randn(n, 6)
    t1, t2 = torch.randn(n, 18), torch.randn(n, 18)
    got = loss.loss_from(h0, h1, h2, t1, t2)
    y0, y1, y2 = _mlp(loss.g_eq, torch.cat([h0, h1, h2])).split(n)  # one batch of 3N
    t = (torch.cat([t1, t2]) - loss.param_mean) / loss.param_std  # one standardisation for both views
    y_hat = _mlp(loss.predictor, torch.cat([torch.cat([y0, y0]), _mlp(loss.g_t, t)], 1))  # one batch of 2N
    want = nt_xent_reference(torch.cat([y1, y2]), y_hat, 0.3)  # the 4N set [y1; y2; ŷ1; ŷ2]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # per-view batches (the earlier implementation) give a clearly different value
    per_view = _mlp(loss.g_eq, h1)
    assert (per_view - y1).abs().max() > 1e-2


def test_one_standardisation_for_both_views() -> None:
    """A given transform has the same code in either view: one mean/std over both views' parameter draws."""
    loss = EquiModLoss(4, ssl_views=SSLViewPolicy(), image_size=32, hidden_dim=4)
    assert loss.param_mean.shape == (18,) and torch.all(loss.param_std > 0)
    blur_col, sol_col = 15, 17  # view 1 always blurs, view 2 10% of the time; view 2 solarizes 20% of the time
    assert loss.param_mean[blur_col] == pytest.approx(0.55, abs=0.02)
    assert loss.param_mean[sol_col] == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError, match="two per-view augmentations"):
        EquiModLoss(4, ssl_views=object())


@pytest.mark.parametrize("objective", ["moco", "dino", "barlow", "simclr"])
def test_trains_with_every_objective(tmp_path: Path, objective: str) -> None:
    trainer = train_briefly(tmp_path, "equimod", objective, {"hidden_dim": 8, "proj_dim": 8})
    recipe = trainer.recipe
    assert recipe.views_per_image == 3
    images = torch.rand(4, 3, 16, 16)
    ctx = recipe.context(images, torch.Generator().manual_seed(0))
    assert torch.equal(ctx.views["x0"], images) and set(ctx.views) == {"v1", "v2", "x0"}

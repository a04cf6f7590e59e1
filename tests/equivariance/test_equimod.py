"""EquiMod: the loss against a reference NT-Xent over [y_t; ŷ_t] written as loops, the three views (x0 is the
un-augmented image), parameter standardisation, and a few training steps under every invariant objective."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from equireg.augment import SSLViewPolicy
from equireg.equivariance import EquiModLoss

from .reference import nt_xent_reference, train_briefly


def test_loss_matches_reference() -> None:
    torch.manual_seed(0)
    loss = EquiModLoss(6, hidden_dim=8, proj_dim=5, temperature=0.3).eval()
    loss.param_mean.normal_()
    loss.param_std.uniform_(0.5, 2.0)
    h0, h1, h2 = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    t1, t2 = torch.randn(4, 18), torch.randn(4, 18)
    got = loss.loss_from(h0, h1, h2, t1, t2)
    y0, y1, y2 = loss.g_eq(h0), loss.g_eq(h1), loss.g_eq(h2)
    want = []
    for view, (y, t) in enumerate(((y1, t1), (y2, t2))):
        t_std = (t - loss.param_mean[view]) / loss.param_std[view]
        y_hat = loss.predictor(torch.cat([y0, loss.g_t(t_std)], 1))
        want.append(nt_xent_reference(y, y_hat, 0.3))
    assert torch.allclose(got, 0.5 * (want[0] + want[1]), atol=1e-5)


def test_bind_standardises_with_each_views_statistics() -> None:
    loss = EquiModLoss(4, hidden_dim=4)
    loss.bind(torch.nn.Identity(), 32, SSLViewPolicy())
    # view 1 always blurs (blur_applied has no spread), view 2 solarizes 20% of the time
    blur_col, sol_col = 15, 17
    assert loss.param_mean[0, blur_col] == pytest.approx(1.0) and loss.param_mean[1, blur_col] == pytest.approx(0.1, abs=0.02)
    assert loss.param_mean[1, sol_col] == pytest.approx(0.2, abs=0.02) and torch.all(loss.param_std > 0)


@pytest.mark.parametrize("objective", ["moco", "dino", "barlow", "simclr"])
def test_trains_with_every_objective(tmp_path: Path, objective: str) -> None:
    trainer = train_briefly(tmp_path, "equimod", objective, {"hidden_dim": 8, "proj_dim": 8})
    recipe = trainer.recipe
    assert recipe.views_per_image == 3
    images = torch.rand(4, 3, 16, 16)
    ctx = recipe.context(images, torch.Generator().manual_seed(0))
    assert torch.equal(ctx.views["x0"], images) and set(ctx.views) == {"v1", "v2", "x0"}

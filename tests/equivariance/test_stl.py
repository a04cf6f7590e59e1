"""STL: aligned pairs share their transform, the three-term loss against a per-sample reference (hypernetwork
with the partner's transformation representation, NT-Xent written as loops), and training under every objective."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from equireg.augment import PhotometricConfig, SSLViewPolicy
from equireg.equivariance import STLLoss
from equireg.equivariance.stl import AlignedPairPolicy

from .reference import nt_xent_reference, train_briefly


def test_pairs_share_crop_and_colour_but_not_flip() -> None:
    policy = AlignedPairPolicy(SSLViewPolicy(view1=PhotometricConfig(blur_p=0.0), view2=PhotometricConfig(blur_p=0.0, solarize_p=0.0)))
    images = torch.rand(4, 3, 12, 12).repeat_interleave(2, 0)  # pairs of identical images
    out = policy(images, generator=torch.Generator().manual_seed(0))
    for p in (out.params1, out.params2):
        for name in ("crop", "color", "jitter_order", "grayscale", "jitter_applied"):
            assert torch.equal(getattr(p, name)[0::2], getattr(p, name)[1::2]), name
    flips = torch.cat([out.params1.flip, out.params2.flip])
    same_flip = torch.cat([out.params1.flip[0::2] == out.params1.flip[1::2], out.params2.flip[0::2] == out.params2.flip[1::2]])
    assert not bool(same_flip.all()) and flips.std() > 0  # flips are drawn independently
    for i in range(0, 8, 2):  # identical images with the same transform give the same view when flips agree
        if out.params1.flip[i] == out.params1.flip[i + 1]:
            assert torch.allclose(out.view1[i], out.view1[i + 1], atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        policy(torch.rand(3, 3, 8, 8))


def test_loss_matches_reference() -> None:
    torch.manual_seed(0)
    d = 5
    loss = STLLoss(d, trans_dim=6, proj_hidden_dim=7, proj_dim=4, temperature=0.3, trans_weight=0.1).eval()
    y1, y2 = torch.randn(6, d), torch.randn(6, d)
    got_equi, got_trans = loss.parts(y1, y2)
    tau = loss.transformation(torch.cat([y1, y2], 1))
    y2_hat = []
    for i in range(6):
        partner = i + 1 if i % 2 == 0 else i - 1
        w = loss.hypernet.weight @ tau[partner]  # Linear(128 -> d*d, no bias), row-major d x d
        y2_hat.append(w.view(d, d) @ y1[i])
    want_equi = nt_xent_reference(loss.projector_equiv(y2), loss.projector_equiv(torch.stack(y2_hat)), 0.3)
    t = loss.projector_trans(tau)
    want_trans = nt_xent_reference(t[[0, 2, 4]], t[[1, 3, 5]], 0.3)
    assert torch.allclose(got_equi, want_equi, atol=1e-5) and torch.allclose(got_trans, want_trans, atol=1e-5)
    assert torch.allclose(loss.loss_from(y1, y2), want_equi + 0.1 * want_trans, atol=1e-5)


@pytest.mark.parametrize("objective", ["moco", "dino", "barlow", "simclr"])
def test_trains_with_every_objective(tmp_path: Path, objective: str) -> None:
    trainer = train_briefly(tmp_path, "stl", objective, {"trans_dim": 8, "proj_hidden_dim": 8, "proj_dim": 8})
    assert trainer.recipe.views_per_image == 2 and isinstance(trainer.recipe.views, AlignedPairPolicy)


def test_ranks_draw_their_rows_of_the_global_batch() -> None:
    policy = AlignedPairPolicy(SSLViewPolicy(photometric=False))
    images = torch.rand(8, 3, 8, 8)
    whole = policy(images, generator=torch.Generator().manual_seed(2))
    for rank in range(2):
        part = policy(images[4 * rank: 4 * rank + 4], generator=torch.Generator().manual_seed(2), rank=rank, world_size=2)
        assert torch.allclose(part.view1, whole.view1[4 * rank: 4 * rank + 4], atol=1e-6)
        assert torch.equal(part.params2.crop, whole.params2.crop[4 * rank: 4 * rank + 4])

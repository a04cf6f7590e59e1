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


def _bn_mlp(layers: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A bias-free Linear-BN-ReLU-...-Linear MLP in training mode, with BatchNorm written out over the batch ``x``
    (biased variance, eps 1e-5, the module's affine weights)."""
    for m in layers:
        if isinstance(m, torch.nn.Linear):
            assert m.bias is None  # the official load_mlp has no biases
            x = x @ m.weight.T
        elif isinstance(m, torch.nn.BatchNorm1d):
            x = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + m.eps) * m.weight + m.bias
        else:
            x = torch.relu(x)
    return x


def test_loss_matches_reference_with_both_directions_and_the_official_batchnorm_batching() -> None:
    """methods.md §7.3: τ12 = T([y1; y2]) and τ21 = T([y2; y1]) (two BatchNorm batches); ŷ1 = W(τ21 of the
    partner) y2, ŷ2 = W(τ12 of the partner) y1; L_equi over cat[P(y1), P(y2)] vs cat[P(ŷ1), P(ŷ2)] with P run on
    each set alone; L_trans pairs cat[τ12, τ21] of the even images with those of the odd images, P_t run on each."""
    torch.manual_seed(0)
    d, n = 5, 6
    loss = STLLoss(d, trans_dim=6, proj_hidden_dim=7, proj_dim=4, temperature=0.3, trans_weight=0.1)
    for m in loss.modules():  # non-trivial BatchNorm affine weights, so batching mistakes show
        if isinstance(m, torch.nn.BatchNorm1d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
    y1, y2 = torch.randn(n, d), torch.randn(n, d)
    got_equi, got_trans = loss.parts(y1, y2)
    tau12 = _bn_mlp(loss.transformation, torch.cat([y1, y2], 1))
    tau21 = _bn_mlp(loss.transformation, torch.cat([y2, y1], 1))

    def apply(tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in range(n):
            partner = i + 1 if i % 2 == 0 else i - 1
            w = (loss.hypernet.weight @ tau[partner]).view(d, d)  # Linear(128 -> d*d, no bias), row-major d x d
            rows.append(w @ y[i])
        return torch.stack(rows)

    y1_hat, y2_hat = apply(tau21, y2), apply(tau12, y1)
    p = loss.projector_equiv
    want_equi = nt_xent_reference(torch.cat([_bn_mlp(p, y1), _bn_mlp(p, y2)]),
                                  torch.cat([_bn_mlp(p, y1_hat), _bn_mlp(p, y2_hat)]), 0.3)
    even = _bn_mlp(loss.projector_trans, torch.cat([tau12[0::2], tau21[0::2]]))
    odd = _bn_mlp(loss.projector_trans, torch.cat([tau12[1::2], tau21[1::2]]))
    want_trans = nt_xent_reference(even, odd, 0.3)
    torch.testing.assert_close(got_equi, want_equi, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_trans, want_trans, atol=1e-5, rtol=1e-5)
    # one BatchNorm batch for all of P_t's input gives a different L_trans: the batching is part of the method
    joint = _bn_mlp(loss.projector_trans, torch.cat([tau12[0::2], tau21[0::2], tau12[1::2], tau21[1::2]]))
    assert (nt_xent_reference(*joint.split(n), 0.3) - want_trans).abs() > 1e-3


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

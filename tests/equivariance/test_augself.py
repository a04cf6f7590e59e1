"""AugSelf: the symmetrised loss against a per-sample reference written from the official formula, the rotation
option, and a few training steps under every invariant objective."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from equireg.augment import SSLViewPolicy, ViewParams
from equireg.equivariance import AugSelfLoss, create_equiv_loss
from equireg.equivariance.augself import RotatedPairPolicy, rotate_by

from .reference import train_briefly


def _params(n: int, gen: torch.Generator) -> ViewParams:
    return ViewParams(
        crop=torch.rand(n, 4, generator=gen), flip=(torch.rand(n, generator=gen) < 0.5).float(),
        jitter_applied=torch.ones(n), color=torch.rand(n, 4, generator=gen) + 0.5,
        jitter_order=torch.stack([torch.randperm(4, generator=gen) for _ in range(n)]),
        grayscale=torch.zeros(n), blur_sigma=torch.rand(n, generator=gen), solarize=(torch.rand(n, generator=gen) < 0.5).float(),
    )


def reference_loss(loss: AugSelfLoss, y1: torch.Tensor, y2: torch.Tensor, p1: ViewParams, p2: ViewParams) -> torch.Tensor:
    """L = Σ_k w_k mean over both orders and samples of ℓ_k(φ_k([y_a; y_b]), ω_k(t_a) − ω_k(t_b)), with
    crop ω = (cy, cx mirrored when flipped, h, w), colour ω = (factor − neutral) / (2·strength), blur ω = σ, sol ω =
    the solarize flag; every regression task is MSE(tanh p, Δ) (the official SSObjective); flip: same flip, BCE."""
    strength = torch.tensor([0.4, 0.4, 0.2, 0.1])
    neutral = torch.tensor([1.0, 1.0, 1.0, 0.0])

    def omega(p: ViewParams, i: int, task: str) -> torch.Tensor:
        if task == "crop":
            cx = 1 - p.crop[i, 1] if p.flip[i] > 0 else p.crop[i, 1]
            return torch.stack([p.crop[i, 0], cx, p.crop[i, 2], p.crop[i, 3]])
        if task == "blur":
            return p.blur_sigma[i : i + 1]
        if task == "sol":
            return p.solarize[i : i + 1]
        return (p.color[i] - neutral) / (2 * strength)

    total = torch.zeros(())
    for task, weight in loss.weights.items():
        terms = []
        for (ya, yb, pa, pb) in ((y1, y2, p1, p2), (y2, y1, p2, p1)):
            for i in range(len(ya)):
                pred = loss.heads[task](torch.cat([ya, yb], 1))[i]
                if task == "flip":
                    target = (pa.flip[i] == pb.flip[i]).float()
                    terms.append(torch.nn.functional.binary_cross_entropy_with_logits(pred[0], target))
                else:
                    terms.append(((torch.tanh(pred) - (omega(pa, i, task) - omega(pb, i, task))) ** 2).mean())
        total = total + weight * torch.stack(terms).mean()
    return total


def test_loss_matches_reference() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    weights = {"crop": 1.0, "color": 0.5, "flip": 0.3, "blur": 0.2, "sol": 0.1}
    loss = AugSelfLoss(6, weights=weights, hidden_dim=8).eval()  # eval: BN fixed
    y1, y2 = torch.randn(5, 6), torch.randn(5, 6)
    p1, p2 = _params(5, gen), _params(5, gen)
    got = loss.loss_from(y1, y2, (p1, p2))
    assert torch.allclose(got, reference_loss(loss, y1, y2, p1, p2), atol=1e-5)


def test_rotation_option_rotates_views_and_predicts_the_difference() -> None:
    policy = SSLViewPolicy(photometric=False)
    images = torch.rand(6, 3, 8, 8)
    plain = policy(images, generator=torch.Generator().manual_seed(3))
    rotated = RotatedPairPolicy(policy)(images, generator=torch.Generator().manual_seed(3))
    r1, r2 = rotated.rotations
    for i in range(6):
        assert torch.equal(rotated.view1[i], torch.rot90(plain.view1[i], int(r1[i]), dims=(-2, -1)))
        assert torch.equal(rotated.view2[i], torch.rot90(plain.view2[i], int(r2[i]), dims=(-2, -1)))
    loss = AugSelfLoss(4, weights={"rot": 1.0}, hidden_dim=8)
    assert isinstance(loss.adapt_ssl_views(policy), RotatedPairPolicy)
    targets = loss.targets(rotated.params1, rotated.params2, rotated.rotations)["rot"]
    assert torch.equal(targets, (r1 - r2) % 4)
    assert torch.equal(rotate_by(images, torch.zeros(6, dtype=torch.long)), images)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="tasks"):
        create_equiv_loss("augself", in_channels=4, weights={"zoom": 1.0})
    with pytest.raises(ValueError, match="rotations"):
        AugSelfLoss(4, weights={"rot": 1.0}).loss_from(torch.randn(2, 4), torch.randn(2, 4), (None, None))  # type: ignore[arg-type]


@pytest.mark.parametrize("objective", ["moco", "dino", "barlow", "simclr"])
def test_trains_with_every_objective(tmp_path: Path, objective: str) -> None:
    trainer = train_briefly(tmp_path, "augself", objective, {"hidden_dim": 8, "weights": {"crop": 1.0, "color": 1.0, "flip": 1.0}})
    assert trainer.recipe.views_per_image == 2 and trainer.recipe.split_sizes(16) == (16, 0)


def test_final_layer_reads_the_final_embedding(tmp_path: Path) -> None:
    trainer = train_briefly(tmp_path, "augself", "moco", {"hidden_dim": 8}, **{"equiv.layer": 4})
    recipe = trainer.recipe
    ctx = recipe.context(torch.rand(4, 3, 16, 16), torch.Generator().manual_seed(0))
    assert ctx.final_layer and torch.equal(ctx.representation("v1"), ctx.online("v1").embedding)


def test_recipe_rejects_options_the_loss_does_not_have(tmp_path: Path) -> None:
    from equireg.recipe import build_recipe

    from .reference import tiny_run_config

    cfg = tiny_run_config(tmp_path, "augself", "moco", {"hidden_dim": 8}, **{"equiv.temperature": 0.3})
    with pytest.raises(ValueError, match="augself.*temperature"):
        build_recipe(cfg)
    # without the flag the method's own defaults apply (λ = 1, not SER's per-objective λ)
    recipe = build_recipe(tiny_run_config(tmp_path, "augself", "moco", {"hidden_dim": 8}, **{"equiv.layer": 2}))
    assert recipe.equiv_loss.weight == 1.0 and recipe.pair_policy is None


def test_rotated_policy_ranks_draw_their_rows_of_the_global_batch() -> None:
    policy = RotatedPairPolicy(SSLViewPolicy(photometric=False))
    images = torch.rand(6, 3, 8, 8)
    whole = policy(images, generator=torch.Generator().manual_seed(4))
    part = policy(images[3:], generator=torch.Generator().manual_seed(4), rank=1, world_size=2)
    assert torch.equal(part.rotations[0], whole.rotations[0][3:]) and torch.allclose(part.view2, whole.view2[3:], atol=1e-6)

"""What a run is, by default: the method's own ViT architecture, the objective's official crop scale and ViT
settings, SER's per-objective λ/τ/directions, the T_eq policy per group, and the record every run keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from equireg.config import resolve_config
from equireg.recipe import build_recipe

VIT = {"data.name": "synthetic", "data.image_size": 16, "data.kwargs": {"num_samples": 64},
       "backbone.name": "vit_test", "objective.preset": "small", "equiv.layer": 2, "train.device": "cpu"}


def _recipe(**overrides: Any):  # type: ignore[no-untyped-def]
    return build_recipe(resolve_config(overrides={**VIT, **overrides}))


@pytest.mark.parametrize(("loss", "position"), [
    ("none", "input"), ("ser", "after_equiv"), ("ser_arch", "after_equiv"), ("augself", "input"),
    ("equimod", "input"), ("essl", "input"), ("stl", "input"),
])
def test_each_method_runs_its_published_architecture(loss: str, position: str) -> None:
    """The baseline is a standard ViT ([CLS] at the input with its own positional slot); SER and its architecture
    control insert the [CLS] after block k; the comparison methods run on the standard ViT (methods.md §7.2)."""
    recipe = _recipe(**{"equiv.loss": loss, "equiv.kwargs": {}})
    assert recipe.backbone.cls_position == position and recipe.describe()["cls_position"] == position
    slots = recipe.backbone.vit.pos_embed.shape[1]
    assert slots == 16 + (position == "input")


def test_explicit_cls_position_wins_and_comparison_methods_then_pool_tokens() -> None:
    recipe = _recipe(**{"equiv.loss": "augself", "equiv.kwargs": {}, "backbone.cls_position": "after_equiv"})
    assert recipe.backbone.cls_position == "after_equiv"
    out = recipe.backbone.forward_split(torch.rand(2, 3, 16, 16))
    assert out.pooled is not None and out.pooled.shape == (2, 32)


def test_decoupled_methods_read_the_intermediate_cls_through_its_own_layernorm() -> None:
    recipe = _recipe(**{"equiv.loss": "augself", "equiv.kwargs": {}})
    backbone = recipe.backbone.eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        tokens = backbone._embed(x)
        for block in backbone.vit.blocks[:2]:
            tokens = block(tokens)
        torch.testing.assert_close(backbone.forward_split(x).pooled, backbone.norm_pooled(tokens[:, 0]))


@pytest.mark.parametrize(("objective", "crop_min", "init", "frozen", "drop_path"), [
    ("moco", 0.08, "moco", True, 0.0), ("dino", 0.25, "ser", False, 0.1), ("barlow", 0.08, "ser", False, 0.0),
    ("simclr", 0.08, "timm", False, 0.0),
])
def test_objective_official_settings(objective: str, crop_min: float, init: str, frozen: bool, drop_path: float) -> None:
    recipe = _recipe(**{"objective.name": objective})
    assert recipe.crop.scale == (crop_min, 1.0) and recipe.pair_policy.views[0].crop.scale == (crop_min, 1.0)
    vit = recipe.backbone
    assert (vit.init, vit.freeze_patch_embed, vit.drop_path_rate) == (init, frozen, drop_path)
    if recipe.objective.teacher_backbone is not None:  # the teacher never keeps stochastic depth
        from timm.layers import DropPath

        assert all(m.drop_prob == 0 for m in recipe.objective.teacher_backbone.modules() if isinstance(m, DropPath))
    assert _recipe(**{"objective.name": objective, "views.crop_min": 0.3}).crop.scale == (0.3, 1.0)


@pytest.mark.parametrize(("objective", "lam", "tau", "symmetric"), [
    ("moco", 1.0, 0.5, True), ("dino", 0.3, 0.4, True), ("barlow", 1.0, 0.4, False), ("simclr", 1.0, 0.5, True),
])
def test_ser_takes_its_official_run_per_objective(objective: str, lam: float, tau: float, symmetric: bool) -> None:
    loss = _recipe(**{"objective.name": objective}).equiv_loss
    assert (loss.weight, loss.temperature, loss.symmetric) == (lam, tau, symmetric)
    explicit = _recipe(**{"objective.name": objective, "equiv.weight": 0.7, "equiv.temperature": 0.2}).equiv_loss
    assert (explicit.weight, explicit.temperature) == (0.7, 0.2)


@pytest.mark.parametrize(("group", "policy"), [("p4m", "ser"), ("p4m*scale", "ser"), ("c4", "uniform"),
                                               ("flip", "uniform")])
def test_default_view_policy_per_group(group: str, policy: str) -> None:
    recipe = _recipe(**{"equiv.group": group})
    assert recipe.pair_policy.name == policy and recipe.describe()["view_policy"] == policy
    assert _recipe(**{"equiv.group": group, "views.equivariant": "uniform"}).pair_policy.name == "uniform"


def test_every_run_records_how_it_was_trained(tmp_path: Path) -> None:
    from equireg.engine import Trainer

    cfg = resolve_config(overrides={**VIT, "data.train_subset": 32, "optim.batch_size": 16, "optim.steps": 1,
                                    "train.precision": "fp32", "train.run_dir": str(tmp_path / "run")})
    Trainer(cfg, progress=False).fit()
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["cls_position"] == "after_equiv" and summary["view_policy"] == "ser"
    assert summary["views_per_image"] == 2 and summary["crop_min"] == 0.08 and summary["split_layer"] == 2


def test_one_equivariant_image_in_a_batchnorm_backbone_is_refused_before_training() -> None:
    cnn = {**VIT, "backbone.name": "resnet_test", "equiv.layer": None, "optim.batch_size": 64, "equiv.b2_ratio": 0.01}
    with pytest.raises(ValueError, match="cannot normalise a one-image batch: raise equiv.b2_ratio to at least 0.031"):
        build_recipe(resolve_config(overrides=cnn))
    assert build_recipe(resolve_config(overrides={**cnn, "equiv.b2_ratio": 0.04})).split_sizes(64) == (61, 3)
    assert build_recipe(resolve_config(overrides={**VIT, "optim.batch_size": 64, "equiv.b2_ratio": 0.01}))  # no BN

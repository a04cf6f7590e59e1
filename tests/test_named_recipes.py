"""The named recipes hold every hyperparameter of SER's official runs (methods.md §1.7, §3, §7.2): each value is
pinned here, and the built objects carry them."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from equireg.cli.main import app
from equireg.config import list_recipes, recipe_file, resolve_config
from equireg.recipe import build_recipe

COMMON = {  # 8 GPUs x 256 = 2048 per step; 100 epochs x 625 steps; 10 warm-up epochs; ViT-S/16 at 224 px; AMP
    "data.name": "imagefolder", "data.image_size": 224, "backbone.name": "vit_small_patch16_224",
    "optim.batch_size": 256, "optim.steps": 62_500, "optim.warmup_frac": 0.1, "train.precision": "bf16",
    "eval.linear_protocol": "paper", "objective.preset": "paper",
}
SER = {"equiv.loss": "ser", "equiv.group": "p4m", "equiv.layer": 3, "equiv.b2_ratio": 0.01,
       "views.equivariant": "ser", "views.kwargs.area": [0.7, 1.3], "views.kwargs.aspect": [0.75, 4 / 3]}
EXPECTED: dict[str, dict[str, Any]] = {
    "in1k-moco": {"objective.name": "moco", "objective.kwargs.temperature": 0.2,
                  "objective.kwargs.base_momentum": 0.99, "optim.lr": 2.4e-3, "optim.min_lr_ratio": 0.0,
                  "optim.weight_decay": 0.1, "optim.clip_grad": None, "views.crop_min": 0.08},
    "in1k-dino": {"objective.name": "dino", "objective.kwargs.base_momentum": 0.982,
                  "objective.kwargs.teacher_temp": 0.07, "objective.kwargs.warmup_teacher_temp": 0.04,
                  "objective.kwargs.warmup_frac": 0.1, "objective.kwargs.student_temp": 0.1,
                  "objective.kwargs.center_momentum": 0.9, "objective.kwargs.freeze_last_layer_frac": 0.01,
                  "optim.lr": 8e-4, "optim.min_lr_ratio": 0.0125, "optim.weight_decay": 0.04,
                  "optim.weight_decay_end": 0.4, "optim.clip_grad": 0.3, "views.crop_min": 0.25},
    "in1k-barlow": {"objective.name": "barlow", "objective.kwargs.lambda_offdiag": 0.0051, "optim.lr": 8e-4,
                    "optim.min_lr_ratio": 0.001, "optim.weight_decay": 0.1, "optim.clip_grad": 0.3,
                    "views.crop_min": 0.08},
}
SER_TERMS = {"in1k-moco-ser": {"equiv.weight": 1.0, "equiv.temperature": 0.5},
             "in1k-dino-ser": {"equiv.weight": 0.3, "equiv.temperature": 0.4},
             "in1k-barlow-ser": {"equiv.weight": 1.0, "equiv.temperature": 0.4, "equiv.kwargs.symmetric": False}}


def _value(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_the_shipped_recipes() -> None:
    assert list_recipes() == sorted([*EXPECTED, *SER_TERMS])


@pytest.mark.parametrize("name", sorted([*EXPECTED, *SER_TERMS]))
def test_every_value_of_the_official_run(name: str) -> None:
    base = name.removesuffix("-ser")
    expected = {**COMMON, **EXPECTED[base], **(SER | SER_TERMS[name] if name in SER_TERMS else {"equiv.loss": "none"})}
    cfg = resolve_config(recipe_file(name)).model_dump(mode="python")
    for key, value in expected.items():
        got = _value(cfg, key)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, (name, key, got, value)


@pytest.mark.parametrize("name", ["in1k-moco-ser", "in1k-dino-ser", "in1k-barlow-ser", "in1k-dino"])
def test_built_objects_carry_the_recipe(name: str) -> None:
    small = {"backbone.name": "vit_test", "data.name": "synthetic", "data.image_size": 16, "equiv.layer": 2,
             "objective.preset": "small"}  # same settings on a tiny model, so the test stays fast
    cfg = resolve_config(recipe_file(name), overrides=small)
    recipe = build_recipe(cfg)
    objective, backbone = recipe.objective, recipe.backbone
    assert recipe.crop.scale[0] == cfg.views.crop_min
    if cfg.objective.name == "moco":
        assert backbone.freeze_patch_embed and backbone.init == "moco" and backbone.drop_path_rate == 0.0
        assert objective.base_momentum == 0.99 and objective.criterion.temperature == 0.2
    if cfg.objective.name == "dino":
        assert backbone.drop_path_rate == 0.1 and objective.base_momentum == 0.982
    if name.endswith("-ser"):
        loss = recipe.equiv_loss
        assert (loss.weight, loss.temperature) == (cfg.equiv.weight, cfg.equiv.temperature)
        assert loss.symmetric == (cfg.objective.name != "barlow") and recipe.pair_policy.name == "ser"
        assert recipe.backbone.cls_position == "after_equiv"
    else:
        assert recipe.equiv_loss is None and recipe.backbone.cls_position == "input"


def test_cli_lists_shows_and_refuses_a_mix() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "recipes"])
    assert listed.exit_code == 0 and "in1k-moco-ser" in listed.output
    shown = runner.invoke(app, ["config", "show", "--recipe", "in1k-moco-ser", "--set", "optim.steps=10"])
    assert shown.exit_code == 0 and "lr: 0.0024" in shown.output and "steps: 10" in shown.output
    unknown = runner.invoke(app, ["config", "show", "--recipe", "in1k-nope"])
    assert unknown.exit_code == 2 and "unknown recipe 'in1k-nope'; shipped recipes: in1k-barlow" in unknown.output
    both = runner.invoke(app, ["config", "show", "--recipe", "in1k-moco", "--config", "x.yaml"])
    assert both.exit_code == 2 and "not both" in both.output

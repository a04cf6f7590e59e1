"""Config resolution: defaults < file < flags < --set, merging mappings, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from equireg.config import Config, ConfigError, config_to_yaml, resolve_config


def test_precedence_file_flags_sets(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 0.1\n  steps: 7\nequiv:\n  group: c4\n")
    cfg = resolve_config(f, {"optim.lr": 0.2}, ["optim.lr=0.3", "equiv.layer=2"])
    assert (cfg.optim.lr, cfg.optim.steps, cfg.equiv.group, cfg.equiv.layer) == (0.3, 7, "c4", 2)


def test_json_file_and_roundtrip(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"objective": {"name": "barlow"}}))
    cfg = resolve_config(f)
    assert cfg.objective.name == "barlow" and cfg.objective.preset == "small" and cfg.objective.kwargs == {}
    again = tmp_path / "again.yaml"
    again.write_text(config_to_yaml(cfg))
    assert resolve_config(again) == cfg


def test_mappings_merge_key_by_key() -> None:
    cfg = resolve_config(sets=["objective.kwargs.proj_dim=64"])
    assert cfg.objective.kwargs == {"proj_dim": 64} and cfg.objective.preset == "small"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["optim.lr_rate=1"], "optim.lr_rate: unknown key (allowed: batch_size"),
        (["optim.lr=-1"], "optim.lr: Input should be greater than 0"),
        (["train.precision=fp16"], "train.precision: Input should be 'bf16' or 'fp32'"),
        (["optim.steps=ten"], "optim.steps: Input should be a valid integer"),
        (["optim.batch_size=2", "equiv.b2_ratio=0.9"], "gives 2 equivariant images in a batch of 2"),
        (["bogus"], "--set expects key=value"),
    ],
)
def test_errors_name_the_field(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(sets=sets)
    assert message in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(listy)


def test_defaults_are_the_demo_recipe() -> None:
    cfg = Config()
    assert (cfg.data.name, cfg.backbone.name, cfg.objective.name, cfg.equiv.loss, cfg.equiv.group) == (
        "fashion-mnist", "resnet18", "moco", "ser", "p4m")


def test_demo_profile_only_for_demo_datasets() -> None:
    demo = resolve_config()
    assert (demo.data.train_subset, demo.data.probe_train_size, demo.equiv.b2_ratio) == (None, None, 0.25)
    assert (demo.optim.batch_size, demo.optim.steps) == (128, 640)
    assert demo.objective.preset == "small" and demo.train.checkpoint_every == 200
    user = resolve_config(overrides={"data.name": "imagefolder", "data.root": "/data/imagenet"})
    assert (user.data.train_subset, user.data.probe_train_size, user.equiv.b2_ratio) == (None, None, 0.01)
    assert (user.optim.batch_size, user.optim.steps) == (256, 800)
    assert user.objective.preset is None and user.train.checkpoint_every == 1000  # the factories' paper heads
    asked = resolve_config(overrides={"data.name": "cifar10"}, sets=["equiv.b2_ratio=0.1"])
    assert asked.equiv.b2_ratio == 0.1


def test_sources_name_every_layer(tmp_path: Path) -> None:
    from equireg.config import format_sources, resolve_config_with_sources

    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  steps: 7\ndata:\n  kwargs:\n    num_samples: 64\n")
    cfg, sources = resolve_config_with_sources(f, {"optim.lr": 0.2}, ["objective.kwargs.proj_dim=64"])
    assert sources["optim.steps"] == "file" and sources["data.kwargs.num_samples"] == "file"
    assert sources["optim.lr"] == "flag" and sources["objective.kwargs.proj_dim"] == "--set"
    assert sources["objective.preset"] == "demo" and sources["equiv.b2_ratio"] == "demo"
    assert sources["optim.warmup_frac"] == "default" and sources["data.kwargs.num_samples"] == "file"
    lines = format_sources(cfg, sources).splitlines()
    assert any(line.startswith("optim.lr: 0.2 ") and line.endswith("# flag") for line in lines)
    assert any(line.startswith("eval.robustness_severities: [1, 2, 3, 4, 5]") for line in lines)

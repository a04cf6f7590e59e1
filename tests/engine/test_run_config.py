"""The run directory's settings history: which differences a resume refuses, how the global batch is compared, and
that changes are appended to config_changes.jsonl while config.yaml stays as the run started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from equireg.config import config_to_yaml, resolve_config
from equireg.engine.run_config import (
    CHANGES_FILE,
    FREE_ON_RESUME,
    flatten,
    is_setting,
    record_changes,
    recorded_settings,
    refused_changes,
    setting_changes,
)


def test_flatten_nests_mappings_into_dotted_keys() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [2]}


@pytest.mark.parametrize("key, known", [
    ("optim", True), ("optim.steps", True), ("objective.kwargs.proj_dim", True), ("optim.steps.x", False),
    ("optim.stepz", False), ("nope", False), ("eval.knn_k", True),
])
def test_is_setting_knows_sections_fields_and_kwargs_entries(key: str, known: bool) -> None:
    assert is_setting(key) is known


def test_every_free_key_is_a_setting() -> None:
    assert all(is_setting(key) for key in FREE_ON_RESUME)


def test_changes_are_listed_in_config_order_as_old_to_new() -> None:
    old = resolve_config()
    new = resolve_config(overrides={"equiv.group": "c4", "optim.steps": 9, "objective.kwargs": {"proj_dim": 8}})
    changes = setting_changes(old, new, 1, 1)
    assert [str(c) for c in changes] == [
        "objective.kwargs.proj_dim: (absent) → 8", "equiv.group: p4m → c4", "optim.steps: 640 → 9"]


def test_the_batch_is_compared_as_the_global_batch() -> None:
    cfg = resolve_config(overrides={"optim.batch_size": 64})
    assert [str(c) for c in setting_changes(cfg, cfg, 2, 1)] == ["optim.batch_size: 64 x 2 ranks = 128 → 64"]
    half = resolve_config(overrides={"optim.batch_size": 32})
    same_global = setting_changes(cfg, half, 1, 2)  # 64 on 1 rank = 32 on 2 ranks: the same run
    assert [c.key for c in same_global] == ["train.ranks"] and not refused_changes(same_global, ())
    assert setting_changes(cfg, cfg, None, 4) == []  # a checkpoint without a recorded world size


def test_free_keys_pass_and_others_need_allow_change() -> None:
    old = resolve_config()
    new = resolve_config(overrides={"eval.knn_k": 5, "train.threads": 2, "data.root": "/x", "optim.lr": 1e-4,
                                    "backbone.name": "resnet50", "objective.kwargs": {"proj_dim": 8}})
    changes = setting_changes(old, new, 1, 1)
    assert [c.key for c in refused_changes(changes, ())] == [
        "backbone.name", "objective.kwargs.proj_dim", "optim.lr"]
    assert [c.key for c in refused_changes(changes, ("optim.lr", "objective"))] == ["backbone.name"]


def test_recorded_settings_are_the_last_record_else_config_yaml(tmp_path: Path) -> None:
    assert recorded_settings(tmp_path) == (None, None)
    first = resolve_config()
    (tmp_path / "config.yaml").write_text(config_to_yaml(first))
    assert recorded_settings(tmp_path) == (yaml.safe_load(config_to_yaml(first)), None)
    for step, steps in ((100, 900), (300, 1000)):
        new = resolve_config(overrides={"optim.steps": steps})
        record_changes(tmp_path, setting_changes(first, new, 1, 1), ("optim.steps",), step=step, world_size=2,
                       config=new)
    settings, world = recorded_settings(tmp_path)
    assert settings["optim"]["steps"] == 1000 and world == 2
    records = [json.loads(line) for line in (tmp_path / CHANGES_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == [100, 300] and all(r["time"] for r in records)
    assert records[0]["changes"] == [{"key": "optim.steps", "old": 640, "new": 900, "allowed_by": "--allow-change"}]
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["steps"] == 640  # history kept

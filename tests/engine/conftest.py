"""A tiny but complete run configuration (synthetic 16-px data, tiny backbone, narrow heads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from equireg.config import Config, resolve_config

TINY: dict[str, Any] = {
    "data.name": "synthetic",
    "data.image_size": 16,
    "data.train_subset": 96,
    "data.probe_train_size": 64,
    "data.test_size": 64,
    "data.kwargs": {"num_samples": 192},
    "backbone.name": "resnet_test",
    "objective.kwargs": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
    "equiv.kwargs": {"proj_dim": 16},
    "optim.batch_size": 32,
    "optim.steps": 4,
    "train.precision": "fp32",
    "train.log_every": 1,
    "train.checkpoint_every": 2,
    "train.deterministic": True,
    "eval.probe_epochs": 3,
    "eval.equiv_images": 16,
}


def tiny_config(run_dir: Path, **overrides: Any) -> Config:
    return resolve_config(overrides={**TINY, "train.run_dir": str(run_dir), **overrides})


@pytest.fixture
def tiny(tmp_path: Path):  # type: ignore[no-untyped-def]
    return lambda name="run", **kw: tiny_config(tmp_path / name, **kw)

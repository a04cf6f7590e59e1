"""`evaluate: [rotation]` in a bench spec: the rot3d folder comes from the cell's data or ``rotation_data_root``,
and a spec with neither fails before any cell runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from equireg.bench import BenchSpec, run_bench
from equireg.config import ConfigError

BASE: dict[str, Any] = {
    "data": {"name": "synthetic", "image_size": 16, "train_subset": None, "probe_train_size": None,
             "kwargs": {"num_samples": 64}},
    "backbone": {"name": "resnet_test"},
    "objective": {"kwargs": {"proj_hidden_dim": 16, "proj_dim": 8, "pred_hidden_dim": 16}},
    "optim": {"batch_size": 8, "steps": 1},
    "train": {"precision": "fp32", "checkpoint_every": 1, "device": "cpu"},
}


def _spec(base: dict[str, Any], **extra: Any) -> BenchSpec:
    return BenchSpec.model_validate({"name": "rot", "base": base, "methods": ["none"], "evaluate": ["rotation"],
                                     **extra})


def test_rotation_without_a_rot3d_folder_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="evaluates rotation.*set rotation_data_root"):
        run_bench(_spec(BASE), tmp_path / "out", write_reports=False, log=lambda _: None)
    assert not (tmp_path / "out" / "cells").exists()


def test_rotation_scores_land_in_the_cell_result(tmp_path: Path) -> None:
    pytest.importorskip("pybullet", reason="rot3d rendering needs the rot3d extra (pybullet)")
    from equireg.data.rot3d import Rot3dOptions, make_rot3d

    data = tmp_path / "rot3d"
    make_rot3d(data, Rot3dOptions(objects=2, train_views=4, test_views=2, size=16), workers=1)
    base = {**BASE, "data": {**BASE["data"], "name": "rot3d", "root": str(data), "kwargs": {"num_workers": 0}}}
    summary = run_bench(_spec(base), tmp_path / "out", write_reports=False, log=lambda _: None)
    assert summary.finished == ["moco-none-s0"], summary.failed
    result = json.loads((tmp_path / "out" / "cells" / "moco-none-s0" / "result.json").read_text())
    assert "embedding" in result["rotation"]
    assert {"identity_top1", "relative_r2", "relative_geodesic_deg"} <= set(result["rotation"]["embedding"])

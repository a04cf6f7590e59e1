"""`equireg data make rot3d` and its bad input (exit 2, one message, nothing left behind), then the rot3d set
through `equireg train --dataset rot3d` and `equireg eval rotation`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from equireg.cli.main import app
from equireg.evaluation.rotation import rotation_data_root
from rot3d_meshes import write_test_meshes

runner = CliRunner()
SMALL = ["--objects", "1", "--train-views", "2", "--test-views", "1", "--size", "16", "--workers", "1"]


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pybullet", reason="rot3d rendering needs the rot3d extra (pybullet)")
    return write_test_meshes(tmp_path_factory.mktemp("meshes"))


def _make(out: Path, meshes: Path, *extra: str) -> object:
    return runner.invoke(app, ["data", "make", "rot3d", "--out", str(out), "--meshes", str(meshes), *SMALL, *extra])


def _message(result: object) -> str:
    return " ".join(result.output.split())  # type: ignore[attr-defined]


def test_make_reports_what_was_kept_and_skipped(meshes: Path, tmp_path: Path) -> None:
    result = _make(tmp_path / "set", meshes)
    assert result.exit_code == 0, result.output
    text = _message(result)
    assert "screened 7 meshes" in text and "kept 1, skipped 1 broken, 1 thin, 4 symmetric" in text
    assert "render: 3/3" in text  # progress lines when stdout is not a terminal
    assert (tmp_path / "set" / "labels.npz").is_file()


def test_existing_folder_needs_overwrite(meshes: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    assert _make(out, meshes).exit_code == 0
    again = _make(out, meshes, "--size", "20")
    assert again.exit_code == 2 and "already exists; pass --overwrite" in _message(again)
    replaced = _make(out, meshes, "--size", "20", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "rot3d.json").read_text())["options"]["size"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_overwrite_never_replaces_a_folder_that_is_not_rot3d(meshes: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    result = _make(tmp_path, meshes, "--overwrite")
    assert result.exit_code == 2 and "is not a rot3d folder" in _message(result)
    assert (tmp_path / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("args, message", [
    (["--objects", "2"], "only 1 of 7 meshes pass the screen"),
    (["--size", "8"], "--size must be between 16 and 1024"),
    (["--color", "blue"], "--color must be 'fixed' or 'random'"),
    (["--train-views", "0"], "must be >= 1"),
    (["--workers", "0"], "--workers must be >= 1"),
])  # fmt: skip
def test_bad_input_exits_2_and_leaves_nothing(meshes: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = _make(tmp_path / "set", meshes, *args)
    assert result.exit_code == 2, result.output
    assert message in _message(result) and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_missing_pybullet_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pybullet_data", None)  # import fails as when it is not installed
    monkeypatch.setitem(sys.modules, "pybullet", None)
    result = runner.invoke(app, ["data", "make", "rot3d", "--out", str(tmp_path / "set")])
    assert result.exit_code == 2
    assert "pip install 'equireg[rot3d]'" in _message(result)
    assert list(tmp_path.iterdir()) == []


def test_train_and_probe_on_a_rot3d_set(tmp_path: Path) -> None:
    pytest.importorskip("pybullet", reason="rot3d rendering needs the rot3d extra (pybullet)")
    data = tmp_path / "rot3d"
    made = runner.invoke(app, ["data", "make", "rot3d", "--out", str(data), "--objects", "3", "--train-views", "6",
                               "--test-views", "2", "--size", "32", "--workers", "1"])
    assert made.exit_code == 0, made.output
    run_dir = tmp_path / "run"
    sets = {"data.train_subset": "null", "data.probe_train_size": "null", "train.precision": "fp32",
            "data.kwargs": "{num_workers: 0}",
            "objective.kwargs": "{proj_hidden_dim: 32, proj_dim: 16, pred_hidden_dim: 32}",
            "equiv.kwargs": "{proj_dim: 16}", "equiv.b2_ratio": "0.25"}
    trained = runner.invoke(app, [
        "train", "--dataset", "rot3d", "--data-root", str(data), "--backbone", "resnet_test", "--image-size", "16",
        "--steps", "2", "--batch-size", "16", "--run-dir", str(run_dir), "--no-eval",
        *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
    ])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    probed = runner.invoke(app, ["eval", "rotation", str(run_dir)])  # the data root comes from the run's config
    assert probed.exit_code == 0, probed.output
    saved = json.loads((run_dir / "eval" / "rotation.json").read_text())
    assert saved["step"] == 2 and saved["num_objects"] == 3
    assert len(saved["scores"]) == 2 and "embedding" in saved["scores"]
    assert any(re.fullmatch(r"layer-\d map", name) for name in saved["scores"])  # the split layer, pooled
    wrong = runner.invoke(app, ["eval", "rotation", str(run_dir), "--data-root", str(tmp_path)])
    assert wrong.exit_code == 2 and "is not a rot3d folder" in _message(wrong)


def test_runs_on_other_data_need_a_rot3d_folder() -> None:
    with pytest.raises(FileNotFoundError, match="trained on 'synthetic'.*--data-root DIR"):
        rotation_data_root("synthetic", None, None)

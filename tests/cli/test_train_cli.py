"""`equireg train` / `config show` / `eval` through typer: bad input exits 2 and leaves no run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from equireg.cli.main import app

runner = CliRunner()

TINY_SETS = [
    "--set", "data.name=synthetic", "--set", "data.image_size=16", "--set", "data.train_subset=96",
    "--set", "data.probe_train_size=64", "--set", "data.test_size=64",
    "--set", "data.kwargs={num_samples: 192}", "--set", "backbone.name=resnet_test",
    "--set", "objective.kwargs={proj_hidden_dim: 32, proj_dim: 16, pred_hidden_dim: 32}",
    "--set", "equiv.kwargs={proj_dim: 16}", "--set", "train.precision=fp32",
    "--set", "eval.probe_epochs=2", "--set", "eval.equiv_images=16",
]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "optim.lr_rate=1"], "optim.lr_rate: unknown key"),
        (["--steps", "0"], "optim.steps"),
        (["--set", "train.precision=fp16"], "'bf16' or 'fp32'"),
        (["--objective", "byol"], "unknown objective 'byol'"),
        (["--group", "p6"], "unknown group 'p6'"),
        (["--backbone", "resnet_test", "--equiv-layer", "9"], "valid"),
        (["--set", "data.name=nope"], "unknown dataset 'nope'"),
        (["--b2-ratio", "1.5"], "equiv.b2_ratio"),
    ],
)
def test_bad_input_exits_2_without_run_dir(tmp_path: Path, args: list[str], message: str) -> None:
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--batch-size", "32", *TINY_SETS, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not run_dir.exists()


def test_config_show_resolves_flags_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  lr: 0.5\nequiv:\n  group: c4\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg), "--group", "p4m"])
    assert result.exit_code == 0
    assert "lr: 0.5" in result.output and "group: p4m" in result.output


def test_train_then_eval(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--steps", "2", "--batch-size", "32", *TINY_SETS])
    assert result.exit_code == 0, result.output
    assert "linear probe top-1" in result.output
    assert json.loads((run_dir / "eval" / "linear.json").read_text())["top1"] >= 0
    knn = runner.invoke(app, ["eval", "knn", str(run_dir)])
    assert knn.exit_code == 0, knn.output
    missing = runner.invoke(app, ["eval", "linear", str(tmp_path / "nothing")])
    assert missing.exit_code == 2


def test_config_show_sources() -> None:
    result = runner.invoke(app, ["config", "show", "--sources", "--dataset", "imagefolder", "--set", "optim.lr=0.5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "data.name: imagefolder" in lines[0] and lines[0].endswith("# flag")
    assert any(line.startswith("equiv.b2_ratio: 0.01") and line.endswith("# default") for line in lines)
    assert any(line.startswith("optim.lr: 0.5") and line.endswith("# --set") for line in lines)

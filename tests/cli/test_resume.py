"""`equireg train --resume`: a setting that changes what the run trains is refused (exit 2, the differences listed,
nothing written); free settings pass; `--allow-change KEY` lets a deliberate change through and records it while
config.yaml keeps the settings the run started with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from equireg.cli.main import app
from equireg.engine.checkpoint import META, CheckpointManager

from .test_train_cli import TINY_SETS

runner = CliRunner()
BASE = ["--no-eval", "--batch-size", "32", *TINY_SETS, "--set", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run (checkpoints at steps 1 and 2)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--steps", "2", *BASE])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run, for tests that resume it."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _resume(run_dir: Path, *args: str) -> object:
    return runner.invoke(app, ["train", "--run-dir", str(run_dir), "--resume", "--no-eval", *args])


@pytest.mark.parametrize("args, listed", [
    (["--group", "c4"], "equiv.group: p4m → c4"),
    (["--backbone", "vit_test"], "backbone.name: resnet_test → vit_test"),
    (["--steps", "3"], "optim.steps: 2 → 3"),
    (["--set", "optim.warmup_frac=0.5"], "optim.warmup_frac: 0.05 → 0.5"),
    (["--objective", "simclr"], "objective.name: moco → simclr"),
    (["--equiv", "augself"], "equiv.loss: ser → augself"),
    (["--equiv-layer", "3"], "equiv.layer: null → 3"),
    (["--lr", "0.1"], "optim.lr: 0.002 → 0.1"),
    (["--set", "data.train_subset=32"], "data.train_subset: 96 → 32"),
    (["--set", "train.precision=bf16"], "train.precision: fp32 → bf16"),
    (["--set", "objective.kwargs.proj_dim=8"], "objective.kwargs.proj_dim: 16 → 8"),
], ids=["group", "backbone", "steps", "schedule", "objective", "loss", "layer", "lr", "data", "precision", "kwargs"])
def test_a_change_to_what_is_trained_is_refused(trained: Path, args: list[str], listed: str) -> None:
    before = _snapshot(trained)
    result = _resume(trained, *args)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "--resume would change what the run in" in text and listed in text
    assert f"--allow-change {listed.split(':')[0]}" in text
    assert "Traceback" not in result.output
    assert _snapshot(trained) == before  # nothing written


def test_the_global_batch_counts_the_ranks_it_was_trained_on(run: Path) -> None:
    """Trained on 2 ranks x 32 (as a checkpoint written under torchrun records it), resumed on one process."""
    state_file = CheckpointManager(run / "checkpoints").latest() / META  # type: ignore[operator]
    tree = json.loads(state_file.read_text())  # checkpoint.py's JSON tree: dict keys carry an "s:" prefix
    assert tree["__dict__"]["s:world_size"] == 1
    tree["__dict__"]["s:world_size"] = 2
    state_file.write_text(json.dumps(tree))
    result = _resume(run)
    assert result.exit_code == 2, result.output
    assert "optim.batch_size: 32 x 2 ranks = 64 → 32" in " ".join(result.output.split())
    ok = _resume(run, "--batch-size", "64")  # the same global batch on one rank
    assert ok.exit_code == 0, ok.output


def test_free_settings_change_without_asking_and_are_recorded(run: Path) -> None:
    original = (run / "config.yaml").read_text()
    result = _resume(run, "--set", "eval.knn_k=5", "--set", "train.threads=1", "--set", "train.log_every=5")
    assert result.exit_code == 0, result.output
    assert (run / "config.yaml").read_text() == original
    (record,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert {c["key"]: c["allowed_by"] for c in record["changes"]} == {  # the copy also moved the run
        "train.run_dir": "free", "train.threads": "free", "train.log_every": "free", "eval.knn_k": "free"}


def test_allow_change_lets_a_deliberate_change_through_and_records_it(run: Path) -> None:
    original = (run / "config.yaml").read_text()
    result = _resume(run, "--steps", "3", "--allow-change", "optim.steps")
    assert result.exit_code == 0, result.output
    assert CheckpointManager(run / "checkpoints").load_latest()["step"] == 3  # type: ignore[index]
    assert (run / "config.yaml").read_text() == original  # history is not rewritten
    assert yaml.safe_load(original)["optim"]["steps"] == 2
    (record,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and record["time"] and record["world_size"] == 1
    assert {"key": "optim.steps", "old": 2, "new": 3, "allowed_by": "--allow-change"} in record["changes"]
    again = _resume(run)  # the recorded settings are now the run's own: nothing to allow
    assert again.exit_code == 0, again.output
    assert len((run / "config_changes.jsonl").read_text().splitlines()) == 1
    evaluated = runner.invoke(app, ["eval", "knn", str(run)])  # evaluation reads the settings in force too
    assert evaluated.exit_code == 0, evaluated.output


def test_a_section_can_be_allowed_as_a_whole(run: Path) -> None:
    result = _resume(run, "--steps", "3", "--lr", "0.001", "--allow-change", "optim")
    assert result.exit_code == 0, result.output


def test_an_allowed_change_the_weights_do_not_fit_is_reported_not_raised(run: Path) -> None:
    result = _resume(run, "--backbone", "vit_test", "--allow-change", "backbone.name")
    assert result.exit_code == 2, result.output
    assert "does not fit the model these settings build" in " ".join(result.output.split())
    assert "Traceback" not in result.output

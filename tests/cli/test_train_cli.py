"""`equireg train` / `config show` / `eval` through typer: bad input exits 2 and leaves no run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
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


@pytest.mark.parametrize("args, lr", [
    ([], 0.5),  # the file over the default (0.002)
    (["--lr", "0.1"], 0.1),  # a flag over the file
    (["--lr", "0.1", "--set", "optim.lr=0.3"], 0.3),  # --set over the flag ...
    (["--set", "optim.lr=0.3", "--lr", "0.1"], 0.3),  # ... wherever it stands on the command line
], ids=["file", "flag", "set", "set-first"])
@pytest.mark.parametrize("command", ["config show", "train"])
def test_one_precedence_defaults_file_flags_set(tmp_path: Path, command: str, args: list[str], lr: float) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  lr: 0.5\nequiv:\n  group: c4\n")
    run_dir = tmp_path / "run"
    extra = ["--run-dir", str(run_dir), "--steps", "1", "--batch-size", "32", "--no-eval", *TINY_SETS]
    result = runner.invoke(app, [*command.split(), "--config", str(cfg), *args, *(extra if command == "train" else [])])
    assert result.exit_code == 0, result.output
    text = result.output if command == "config show" else (run_dir / "config.yaml").read_text()
    settings = yaml.safe_load(text)
    assert settings["optim"]["lr"] == lr and settings["equiv"]["group"] == "c4"


def test_config_show_takes_every_flag_of_train() -> None:
    from equireg.cli.train import FLAG_KEYS

    for flag in FLAG_KEYS:
        option = "--lambda" if flag == "equiv_weight" else "--" + flag.replace("_", "-")
        assert option in runner.invoke(app, ["config", "show", "--help"], terminal_width=200).output, option


def test_resume_reads_the_run_settings_then_flags_then_set(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--steps", "1", "--batch-size", "32",
                                "--no-eval", *TINY_SETS, "--set", "train.device=cpu"])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--resume", "--no-eval", "--device", "auto",
                                  "--set", "train.device=cpu", "--set", "eval.knn_k=3"])
    assert resumed.exit_code == 0, resumed.output
    (record,) = [json.loads(line) for line in (run_dir / "config_changes.jsonl").read_text().splitlines()]
    assert record["config"]["train"]["device"] == "cpu" and record["config"]["eval"]["knn_k"] == 3
    assert record["config"]["optim"]["batch_size"] == 32  # the rest is the run's own


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


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, at_step: int, env: dict[str, str] | None = None) -> None:
    """Make the trainer raise KeyboardInterrupt (Ctrl-C) when it reaches step ``at_step`` (0-based)."""
    from equireg.engine import Trainer

    original = Trainer.train_step

    def train_step(self, images, step):  # type: ignore[no-untyped-def]
        if step == at_step:
            for key, value in (env or {}).items():  # as torchrun would have set them (after the trainer started)
                monkeypatch.setenv(key, value)
            raise KeyboardInterrupt
        return original(self, images, step)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_ctrl_c_before_the_first_checkpoint_says_so_and_keeps_the_config(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    _interrupt_at(monkeypatch, 1)
    args = ["train", "--run-dir", str(run_dir), "--steps", "4", "--batch-size", "32", "--no-eval", *TINY_SETS,
            "--set", "train.checkpoint_every=2", "--set", "train.log_every=1"]
    result = runner.invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 130, result.output
    assert "nothing to resume" in text and "--resume" not in text
    assert f"equireg train --config {run_dir / 'config.yaml'}" in text
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]  # the settings, no logs of lost steps
    monkeypatch.undo()
    again = runner.invoke(app, ["train", "--config", str(run_dir / "config.yaml"), "--no-eval"])  # as advised
    assert again.exit_code == 0, again.output
    assert json.loads((run_dir / "train_summary.json").read_text())["steps"] == 4


@pytest.mark.parametrize("env, launcher", [
    ({}, "equireg train"),
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}, "torchrun --nproc-per-node 4 -m equireg train"),
    ({"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, "torchrun <the same torchrun options, on every node> -m equireg"),
], ids=["plain", "torchrun", "torchrun-multi-node"])
def test_ctrl_c_after_a_checkpoint_gives_the_resume_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            env: dict[str, str], launcher: str) -> None:
    run_dir = tmp_path / "run"
    _interrupt_at(monkeypatch, 2, env)
    args = ["train", "--run-dir", str(run_dir), "--steps", "4", "--batch-size", "32", "--no-eval", *TINY_SETS,
            "--set", "train.checkpoint_every=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert f"interrupted; resume with: {launcher}" in " ".join(result.output.split())
    assert f"--run-dir {run_dir} --resume" in " ".join(result.output.split())

"""`equireg eval`: a score asked for another group or layer gets its own file, the sizes the data could give are
reported and recorded, and --threads defaults to the run's train.threads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from equireg.cli.main import app

from .test_train_cli import TINY_SETS

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-step run evaluated by training's summary; its data asks for more probe images than there are."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    args = ["train", "--run-dir", str(run_dir), "--steps", "1", "--batch-size", "32", *TINY_SETS,
            "--set", "data.probe_train_size=5000", "--set", "train.threads=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "note: data.probe_train_size=5000 but only 96 images are available, using 96" in result.output
    return run_dir


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_another_group_or_layer_gets_its_own_file(run: Path) -> None:
    own = (run / "eval" / "equivariance.json").read_text()  # written by training's summary
    by_group = runner.invoke(app, ["eval", "equivariance", str(run), "--group", "c4"])
    assert by_group.exit_code == 0, by_group.output
    by_layer = runner.invoke(app, ["eval", "equivariance", str(run), "--layer", "1"])
    assert by_layer.exit_code == 0, by_layer.output
    assert (run / "eval" / "equivariance.json").read_text() == own
    c4 = json.loads((run / "eval" / "equivariance-c4-L2.json").read_text())  # resnet_test's default layer is 2
    assert c4["layer"] == 2 and set(c4["map_scores"]) == {"rot90"}
    assert json.loads((run / "eval" / "equivariance-p4m_scale-L1.json").read_text())["layer"] == 1
    assert f"wrote {run / 'eval' / 'equivariance-c4-L2.json'}" in " ".join(by_group.output.split())
    again = runner.invoke(app, ["eval", "equivariance", str(run)])  # the run's own setting: training's file
    assert again.exit_code == 0 and json.loads((run / "eval" / "equivariance.json").read_text())["layer"] == 2


def test_eval_reports_and_records_the_sizes_it_used(trained: Path) -> None:
    linear = json.loads((trained / "eval" / "linear.json").read_text())
    assert linear["data_sizes"] == {"pretrain": 96, "probe_train": 96, "test": 64}
    assert linear["data_clamped"] == ["data.probe_train_size=5000 but only 96 images are available, using 96"]
    summary = json.loads((trained / "train_summary.json").read_text())
    assert summary["data_sizes"]["probe_train"] == 96 and summary["data_clamped"] == linear["data_clamped"]


@pytest.mark.parametrize("args, threads", [([], 1), (["--threads", "2"], 2)], ids=["run's setting", "flag"])
def test_threads_default_to_the_run_setting(trained: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                            threads: int) -> None:
    used: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", used.append)
    result = runner.invoke(app, ["eval", "knn", str(trained), *args])
    assert result.exit_code == 0, result.output
    assert used == [threads]


def test_tensorboard_gets_the_settings_and_the_evaluation_results(trained: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "eval/linear/top1", "eval/linear/top5", "eval/equivariance/map_scores/rot90"} <= scalars
    (text,) = events.Tensors("settings/text_summary")
    assert "backbone:" in text.tensor_proto.string_val[0].decode() and text.step == 0
    (top1,) = events.Scalars("eval/linear/top1")
    assert top1.step == 1 and top1.value == json.loads((trained / "eval" / "linear.json").read_text())["top1"]


def test_train_summary_records_versions_and_device(trained: Path) -> None:
    import platform

    import timm

    import equireg

    env = json.loads((trained / "train_summary.json").read_text())["environment"]
    assert env == {"equireg": equireg.__version__, "torch": torch.__version__, "timm": timm.__version__,
                   "python": platform.python_version(), "device": "cpu"}


def test_a_centred_score_gets_its_own_file(run: Path) -> None:
    own = (run / "eval" / "equivariance.json").read_text()
    centred = runner.invoke(app, ["eval", "equivariance", str(run), "--center"])
    assert centred.exit_code == 0, centred.output
    assert (run / "eval" / "equivariance.json").read_text() == own
    result = json.loads((run / "eval" / "equivariance-centered.json").read_text())
    assert result["centered"] is True and result["map_scores"] != json.loads(own)["map_scores"]

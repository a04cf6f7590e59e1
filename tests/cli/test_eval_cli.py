"""`equireg eval` on a run trained on an ImageNet-layout folder: the paper's linear protocol saves the head that
the transfer-set commands then use; bad folders, a missing head and a missing device exit 2 with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from imagefolders import write_classes
from typer.testing import CliRunner

from equireg.cli.main import app

runner = CliRunner()
WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training step of a tiny ResNet on root/train + root/val (a class missing from val, as ImageNet-R)."""
    tmp = tmp_path_factory.mktemp("imagenet")
    write_classes(tmp / "data" / "train", WNIDS, per_class=4, size=(20, 24))
    write_classes(tmp / "data" / "val", WNIDS[:2], per_class=2, size=(20, 24), seed=7)
    run = tmp / "run"
    sets = [
        "data.name=imagefolder", f"data.root={tmp / 'data'}", "data.image_size=16", "data.kwargs={num_workers: 0}",
        "backbone.name=resnet_test", "objective.kwargs={proj_hidden_dim: 32, proj_dim: 16, pred_hidden_dim: 32}",
        "equiv.kwargs={proj_dim: 16}", "train.precision=fp32", "eval.linear_epochs=2", "eval.batch_size=4",
        "eval.linear_lrs=[0.1, 1.0]", "equiv.b2_ratio=0.25",  # 2 images: BatchNorm on 1x1 maps needs 2
    ]
    args = ["train", "--run-dir", str(run), "--steps", "1", "--batch-size", "8", "--no-eval", "--device", "cpu"]
    result = runner.invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    return run


def test_transfer_set_without_a_saved_head_names_the_command(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "imagenet-r", str(run_dir), "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "equireg eval linear" in " ".join(result.output.split())


def test_paper_protocol_then_transfer_sets(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "linear", str(run_dir), "--protocol", "paper", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "linear eval epoch 2/2" in result.output  # progress, also without a terminal
    linear = json.loads((run_dir / "eval" / "linear.json").read_text())
    assert linear["lrs"] == [0.1, 1.0] and linear["num_test"] == 4 and linear["num_classes"] == 3
    saved = torch.load(run_dir / "eval" / "linear_head.pt", weights_only=True)
    assert saved["protocol"] == "paper" and saved["classes"] == WNIDS

    sketch = tmp_path / "sketch"
    write_classes(sketch, WNIDS, per_class=1, size=(20, 24))
    result = runner.invoke(app, ["eval", "imagenet-sketch", str(run_dir), "--data-root", str(sketch)])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "eval" / "imagenet-sketch.json").read_text())["num_images"] == 3

    c_root = tmp_path / "c"
    write_classes(c_root / "fog" / "3", WNIDS[1:], per_class=1, size=(16, 16))
    alexnet = tmp_path / "alexnet.json"
    alexnet.write_text(json.dumps({"fog": [0.5, 0.6, 0.7, 0.8, 0.9]}))
    result = runner.invoke(app, ["eval", "imagenet-c", str(run_dir), "--data-root", str(c_root), "--alexnet", str(alexnet)])
    assert result.exit_code == 0, result.output
    saved_c = json.loads((run_dir / "eval" / "imagenet-c.json").read_text())
    assert saved_c["severities"] == {"fog": [3]} and saved_c["mce"] is not None


@pytest.mark.parametrize(
    "args, message",
    [
        (["imagenet-v2", "--data-root", "{tmp}/missing"], "imagenet-v2 expects DIR/<0..999>/<image>"),
        (["imagenet-c", "--data-root", "{tmp}"], "no severity folders 1-5"),
        (["imagenet-c", "--data-root", "{tmp}", "--alexnet", "{tmp}/none.json"], "--alexnet"),
        (["linear", "--protocol", "sgd"], "--protocol must be 'probe' or 'paper'"),
        (["knn", "--device", "cuda:7"], "CUDA is not available" if not torch.cuda.is_available() else "cuda"),
    ],
)
def test_eval_errors_exit_2(run_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "fog" / WNIDS[0]).mkdir(parents=True)
    if torch.cuda.is_available() and "--device" in args:
        pytest.skip("a GPU is present")
    result = runner.invoke(app, ["eval", args[0], str(run_dir), *[a.format(tmp=tmp_path) for a in args[1:]]])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_probe_protocol_head_serves_imagenet_v2(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "linear", str(run_dir), "--protocol", "probe"])
    assert result.exit_code == 0, result.output
    assert torch.load(run_dir / "eval" / "linear_head.pt", weights_only=True)["protocol"] == "probe"
    write_classes(tmp_path / "v2", ["0", "2"], per_class=2, size=(20, 24))
    result = runner.invoke(app, ["eval", "imagenet-v2", str(run_dir), "--data-root", str(tmp_path / "v2")])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "eval" / "imagenet-v2.json").read_text())["num_images"] == 4

"""`equireg export RUN --format timm --out FILE` on tiny trained runs: the printed call loads the file and gives the
run's embedding; user mistakes end in one line, exit 2, and no file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from equireg.cli.main import app
from equireg.config import resolve_config
from equireg.engine import Trainer
from equireg.export import read_metadata, load_run_backbone


def _train_tiny(run_dir: Path, backbone: str, **backbone_overrides: object) -> Path:
    overrides = {
        "data.name": "synthetic", "data.image_size": 16, "data.kwargs": {"num_samples": 64}, "data.train_subset": None,
        "data.probe_train_size": 8, "data.test_size": 8, "backbone.name": backbone, "optim.batch_size": 16,
        "optim.steps": 2, "objective.kwargs": {"proj_hidden_dim": 16, "proj_dim": 8, "pred_hidden_dim": 16},
        "equiv.kwargs": {"proj_dim": 8}, "train.precision": "fp32", "train.device": "cpu",
        "train.run_dir": str(run_dir), **{f"backbone.{k}": v for k, v in backbone_overrides.items()},
    }
    Trainer(resolve_config(overrides=overrides), progress=False).fit()
    return run_dir


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("runs") / "vit", "vit_test", cls_position="input")


def _export(run: Path, out: Path, *extra: str) -> object:
    return CliRunner().invoke(app, ["export", str(run), "--format", "timm", "--out", str(out), *extra])


def test_export_prints_a_timm_call_that_reproduces_the_run(vit_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "vit.safetensors"
    result = _export(vit_run, out)
    assert result.exit_code == 0, result.output
    code = result.output.split("load it with:\n", 1)[1]
    assert code.strip().startswith("import timm\nmodel = timm.create_model('vit_tiny_patch16_224', pretrained=True")
    namespace: dict = {}
    exec(code, namespace)
    backbone, _, step = load_run_backbone(vit_run)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(namespace["model"].eval()(images), backbone(images))
    meta = read_metadata(out)
    assert meta["cls_position"] == "input" and meta["split_layer"] == "3" and '"checkpoint_step": 2' in meta["run"]


def test_late_cls_run_exports_with_equireg_loader(tmp_path: Path) -> None:
    run = _train_tiny(tmp_path / "late", "vit_test", cls_position="after_equiv")
    result = _export(run, tmp_path / "late.pth")
    assert result.exit_code == 0, result.output
    assert "not a stock timm model (the [CLS] joins after block 3)" in result.output
    namespace: dict = {}
    exec(result.output.split("load it with:\n", 1)[1], namespace)
    backbone, _, _ = load_run_backbone(run)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(namespace["model"](images), backbone(images))


@pytest.mark.parametrize("case, message", [
    ("no run", "is not a run directory"),
    ("no checkpoint", "has no checkpoint yet"),
    ("format", "unknown export format 'onnx'; available: timm"),
    ("suffix", "unknown file type '.bin'"),
    ("missing dir", "does not exist"),
    ("out is a dir", "is a directory"),
])
def test_mistakes_exit_2_without_a_file(vit_run: Path, tmp_path: Path, case: str, message: str) -> None:
    run, out, extra = vit_run, tmp_path / "x.safetensors", []
    if case == "no run":
        run = tmp_path / "nothing"
    elif case == "no checkpoint":
        run = tmp_path / "fresh"
        run.mkdir()
        (run / "config.yaml").write_text((vit_run / "config.yaml").read_text())
    elif case == "format":
        extra = ["--format", "onnx"]
    elif case == "suffix":
        out = tmp_path / "x.bin"
    elif case == "missing dir":
        out = tmp_path / "no" / "x.safetensors"
    elif case == "out is a dir":
        out = tmp_path / "adir.safetensors"
        out.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = _export(run, out, *extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.strip().count("\n") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unwritable_destination(vit_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root may write anywhere: then only the failing write below applies
            result = _export(vit_run, locked / "x.safetensors")
            assert result.exit_code == 2 and "not writable" in result.output
            assert not list(locked.iterdir())
    finally:
        locked.chmod(0o700)
    # a write that fails midway (disk full, permissions changed): one line, exit 2, no file and no temporary
    import equireg.export as export_module

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export_module.os, "replace", refuse)
    result = _export(vit_run, tmp_path / "x.safetensors")
    assert result.exit_code == 2 and "cannot write (Permission denied)" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked"]

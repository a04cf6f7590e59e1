"""Every bad input in docs/errors.md, run through `equireg train`: a clear message, exit code 2, no run directory.

Each case names the flags it adds to a tiny synthetic run and a fragment its message must contain; the table in
docs/errors.md lists the same cases (``test_docs_table_lists_every_case`` keeps the two in step).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from equireg.cli.main import app
from equireg.groups import GROUPS
from equireg.groups.dihedral import DihedralGroup

runner = CliRunner()
DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"

TINY = {
    "data.image_size": 16, "data.train_subset": 96, "data.probe_train_size": 64, "data.test_size": 64,
    "backbone.name": "resnet_test", "objective.kwargs": "{proj_hidden_dim: 32, proj_dim: 16, pred_hidden_dim: 32}",
    "equiv.kwargs": "{proj_dim: 16}", "train.precision": "fp32", "optim.steps": 1, "optim.batch_size": 32,
    "equiv.b2_ratio": 0.25,  # the demo profile's share also on other datasets, so each case fails for its own reason
}
SYNTHETIC = {"data.name": "synthetic", "data.kwargs": "{num_samples: 192}"}


class SwappedComposition(DihedralGroup):
    """D4 whose composition is taken in the wrong order: a group, but its action is no longer a homomorphism."""

    def _compose(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return super()._compose(b, a)


# (id, CLI arguments, fragment of the message); "{data}" is replaced by the folder of generated bad data, "{run}" by
# a finished run, "{locked}" by a folder this process cannot write in
CASES: list[tuple[str, list[str], str]] = [
    # typos
    ("typo-in-key", ["--set", "optim.lr_rate=1"], "optim.lr_rate: unknown key (allowed: batch_size, steps, lr"),
    ("typo-in-section", ["--config", "{data}/typo.yaml"], "optm: unknown key (allowed: data, backbone, objective"),
    ("typo-in-flag", ["--lr-rate", "1"], "No such option: --lr-rate"),
    ("set-without-value", ["--set", "optim.lr"], "--set expects key=value, got 'optim.lr'"),
    # wrong types and values
    ("not-a-number", ["--set", "optim.lr=fast"], "optim.lr: Input should be a valid number"),
    ("flag-not-an-int", ["--steps", "many"], "Invalid value for '--steps'"),
    ("fraction-for-int", ["--set", "optim.batch_size=1.5"], "optim.batch_size: Input should be a valid integer"),
    ("kwargs-not-a-mapping", ["--set", "backbone.kwargs=3"], "backbone.kwargs: Input should be a valid dictionary"),
    ("negative-lr", ["--set", "optim.lr=-1"], "optim.lr: Input should be greater than 0"),
    ("unknown-precision", ["--set", "train.precision=fp16"], "train.precision: Input should be 'bf16' or 'fp32'"),
    ("b2-ratio-too-large", ["--set", "equiv.b2_ratio=1.5"], "equiv.b2_ratio: Input should be less than 1"),
    ("b2-share-fills-batch", ["--set", "optim.batch_size=2", "--set", "equiv.b2_ratio=0.9"],
     "gives 2 equivariant images in a batch of 2"),
    ("image-too-small", ["--set", "data.image_size=4"], "data.image_size: Input should be greater than or equal to 8"),
    ("image-size-off-the-patch-grid", ["--set", "backbone.name=vit_test", "--set", "data.image_size=18",
                                       "--set", "equiv.loss=none"],
     "image size 18 is not a multiple of 4 px, the patch size of this vit backbone; nearest sizes that work: 16, 20"),
    ("bad-group-option", ["--set", "equiv.group=scale", "--set", "equiv.group_kwargs={min_scale: 2}"],
     "scale range needs 0 < min_scale <= max_scale"),
    ("unknown-backbone-option", ["--set", "backbone.kwargs={depthh: 3}"], "does not accept these options"),
    ("unknown-objective-option", ["--set", "objective.kwargs={temprature: 0.1}"],
     "unexpected keyword argument 'temprature'"),
    ("unknown-device", ["--set", "train.device=tpu9"], "train.device='tpu9' is not a device"),
    ("cuda-without-gpu", ["--set", "train.device=cuda"], "CUDA is not available"),
    ("batch-larger-than-data", ["--set", "optim.batch_size=4096"], "smaller than one batch of 4096"),
    # out-of-range layers
    ("cnn-layer-out-of-range", ["--equiv-layer", "9"], "split layer 9 is out of range for this cnn backbone"),
    ("vit-layer-out-of-range", ["--set", "backbone.name=vit_test", "--equiv-layer", "99"],
     "split layer 99 is out of range for this vit backbone with 4 layers; valid layers: 1, 2, 3, 4"),
    ("layer-zero", ["--equiv-layer", "0"], "equiv.layer: Input should be greater than or equal to 1"),
    # unknown names
    ("unknown-objective", ["--set", "objective.name=byol"], "unknown objective 'byol'; registered objectives:"),
    ("unknown-group", ["--set", "equiv.group=p6"], "unknown group 'p6'; registered groups:"),
    ("unknown-backbone", ["--set", "backbone.name=resnet999"], "unknown backbone 'resnet999'; registered backbones:"),
    ("unknown-timm-model", ["--set", "backbone.name=timm:not_a_model"], "unknown timm model 'not_a_model'"),
    ("unknown-equiv-loss", ["--set", "equiv.loss=nope"], "unknown equivariance loss 'nope'"),
    ("unknown-dataset", ["--set", "data.name=mnist"], "unknown dataset 'mnist'; registered datasets:"),
    ("unknown-cls-position", ["--set", "backbone.cls_position=middle"], "Input should be 'input' or 'after_equiv'"),
    ("unknown-view-policy", ["--set", "views.equivariant=nope"], "unknown view policy 'nope'; registered view policies:"),
    # combinations that cannot be faithful
    ("ser-views-need-d4-reflections", ["--set", "equiv.group=c4", "--set", "views.equivariant=ser"],
     "needs SER's group p4m or p4m*scale, got equiv.group='c4'; use views.equivariant=uniform"),
    ("one-equivariant-image-with-batchnorm", ["--set", "equiv.b2_ratio=0.01"],
     "BatchNorm cannot normalise a one-image batch: raise equiv.b2_ratio"),
    ("stride-does-not-divide-image", ["--set", "data.image_size=12", "--equiv-layer", "2"],
     "data.image_size=12 is not a multiple of 8, the pixels per map cell at the split layer"),
    # config files and run directories
    ("missing-config-file", ["--config", "{data}/nope.yaml"], "does not exist"),
    ("invalid-yaml", ["--config", "{data}/broken.yaml"], "is not valid YAML"),
    ("yaml-not-a-mapping", ["--config", "{data}/list.yaml"], "must hold a mapping at the top level"),
    ("resume-without-checkpoint", ["--resume"], "--resume: no checkpoint in"),
    ("resume-changes-backbone", ["--run-dir", "{run}", "--resume", "--set", "backbone.name=vit_test"],
     "--resume would change what the run in"),
    ("allow-change-without-resume", ["--allow-change", "optim.steps"], "--allow-change only applies with --resume"),
    ("allow-change-unknown-key", ["--resume", "--allow-change", "optim.stepz"], "optim.stepz: not a setting"),
    ("run-dir-is-a-file", ["--run-dir", "{data}/typo.yaml"], "is a file; choose another --run-dir"),
    ("run-dir-under-a-file", ["--run-dir", "{data}/typo.yaml/run"], "lies under"),
    ("run-dir-unwritable", ["--run-dir", "{locked}/run"], "cannot write"),
    # missing or corrupt data
    ("fashion-mnist-missing", ["--set", "data.name=fashion-mnist", "--data-root", "{data}/nowhere"],
     "Fashion-MNIST train files not found"),
    ("fashion-mnist-not-idx", ["--set", "data.name=fashion-mnist", "--data-root", "{data}/fm-garbage"],
     "is not an IDX file (bad magic number)"),
    ("fashion-mnist-truncated", ["--set", "data.name=fashion-mnist", "--data-root", "{data}/fm-truncated"],
     "header announces (100, 28, 28) = 78400 values but the file holds 50"),
    ("fashion-mnist-bad-gzip", ["--set", "data.name=fashion-mnist", "--data-root", "{data}/fm-gzip"],
     "could not read dataset 'fashion-mnist'"),
    ("cifar-missing", ["--set", "data.name=cifar10", "--data-root", "{data}/nowhere"], "cifar10 batch files"),
    ("cifar-corrupt", ["--set", "data.name=cifar10", "--data-root", "{data}/cifar-garbage"],
     "could not read dataset 'cifar10'"),
    ("imagefolder-missing", ["--set", "data.name=imagefolder", "--data-root", "{data}/nowhere"], "does not exist"),
    ("imagefolder-empty", ["--set", "data.name=imagefolder", "--data-root", "{data}/empty"], "has no class subfolders"),
    ("imagefolder-missing-split", ["--set", "data.name=imagefolder", "--data-root", "{data}/train-only"],
     "has train/ but no val/ or test/ for the test split"),
    ("imagefolder-corrupt-image", ["--set", "data.name=imagefolder", "--data-root", "{data}/corrupt-images"],
     "could not decode image file"),
    ("rot3d-not-a-rot3d-folder", ["--set", "data.name=rot3d", "--data-root", "{data}/empty"],
     "is not a rot3d folder (no rot3d.json or labels.npz); make one with `equireg data make rot3d --out"),
    ("unknown-dataset-option", ["--set", "data.kwargs={num_sample: 5}"], "unexpected keyword argument 'num_sample'"),
    # a custom group that breaks a law
    ("group-breaks-a-law", ["--set", "equiv.group=swapped_d4"], "violates the action homomorphism law"),
]


def _write_idx(path: Path, dims: tuple[int, ...], payload: bytes) -> None:
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "i" * len(dims), *dims) + payload)


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-data")
    (root / "typo.yaml").write_text("optm:\n  lr: 0.1\n")
    (root / "broken.yaml").write_text("optim: [1, 2\n")
    (root / "list.yaml").write_text("- a\n- b\n")
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for folder in ("fm-garbage", "fm-truncated", "fm-gzip", "cifar-garbage", "empty"):
        (root / folder).mkdir()
    for stem in stems:
        (root / "fm-garbage" / stem).write_bytes(b"not an IDX file")
        _write_idx(root / "fm-truncated" / stem, (100, 28, 28) if "images" in stem else (100,), b"\0" * 50)
        (root / "fm-gzip" / f"{stem}.gz").write_bytes(b"\x1f\x8b broken gzip stream")
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        (root / "cifar-garbage" / name).write_bytes(b"not a pickle")
    for cls in ("a", "b"):  # decodable file names, undecodable content: found only when a batch is read
        (root / "corrupt-images" / cls).mkdir(parents=True)
        for i in range(40):
            (root / "corrupt-images" / cls / f"{i}.png").write_bytes(b"\x89PNG truncated")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "corrupt-images" / "a" / "0.png")
    (root / "train-only" / "train" / "a").mkdir(parents=True)  # ImageNet layout without val/
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "train-only" / "train" / "a" / "0.png")
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--no-eval", *_sets({**TINY, **SYNTHETIC})])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture
def swapped_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plug-in group registered without verification (as a third-party entry point would be)."""
    monkeypatch.setitem(GROUPS._factories, "swapped_d4", lambda: SwappedComposition(4, reflections=True,
                                                                                   name="swapped_d4"))


def _sets(values: dict[str, Any]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.mark.parametrize("case,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_a_clear_message(case: str, args: list[str], message: str, bad_data: Path,
                                                 trained_run: Path, locked_dir: Path | None, tmp_path: Path,
                                                 swapped_group: None) -> None:
    if "{locked}" in " ".join(args) and locked_dir is None:
        pytest.skip("no way to make a folder unwritable here (root on a filesystem without chattr +i)")
    places = {"{data}": bad_data, "{run}": trained_run, "{locked}": locked_dir}
    for key, value in places.items():
        args = [a.replace(key, str(value)) for a in args]
    base = TINY if any(a.startswith("data.name=") for a in args) else {**TINY, **SYNTHETIC}
    run_dir = tmp_path / "run"
    before = _files(bad_data) + _files(trained_run)
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir), "--no-eval", *_sets(base), *args])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, f"{case}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert " ".join(message.split()) in output, output
    assert "Traceback" not in result.output
    assert not run_dir.exists()
    assert _files(bad_data) + _files(trained_run) == before  # nothing written anywhere else either


def _files(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def test_docs_table_lists_every_case() -> None:
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(), flags=re.M))
    assert documented == {c[0] for c in CASES}

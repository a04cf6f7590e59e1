"""Training on an image folder: the loader cuts T's two crops of every original file, the T policy adds the
photometrics to them (keeping the recorded boxes), T_eq takes the first crop as its shared crop (SER's loader view
0), and losses that make their own views from whole images are refused before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from equireg.data import create_dataset
from equireg.data.base import CropBatch
from equireg.engine import Trainer
from imagefolders import write_classes

from .conftest import tiny_config


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    write_classes(root / "train", ["a", "b"], per_class=24, size=(40, 56))
    write_classes(root / "test", ["a", "b"], per_class=4, size=(40, 56))
    return root


def _cfg(tmp_path: Path, folder: Path, **extra: object):  # type: ignore[no-untyped-def]
    return tiny_config(tmp_path / "run", **{"data.name": "imagefolder", "data.root": str(folder),
                                             "data.kwargs": {"num_workers": 0}, "data.train_subset": None,
                                             "optim.batch_size": 16, "optim.steps": 2, "equiv.b2_ratio": 0.25, **extra})


def test_views_come_from_the_loaders_crops(tmp_path: Path, folder: Path) -> None:
    trainer = Trainer(_cfg(tmp_path, folder), progress=False)
    assert trainer.crops is not None and trainer.crops.scale == (0.08, 1.0) and trainer.crops.num_views == 2
    batch, _ = next(iter(trainer.dataset.batches(16, seed=0, crops=trainer.crops)))
    assert isinstance(batch, CropBatch) and batch.view1.shape == (16, 3, 16, 16)
    ctx = trainer.recipe.context(batch, torch.Generator().manual_seed(0))
    b1, b2 = trainer.recipe.split_sizes(16)
    # T kept the loader's boxes and flips and only recoloured its crops
    assert torch.equal(ctx.ssl_pair.params1.crop, batch.box1[:b1].float())
    assert torch.equal(ctx.ssl_pair.params2.flip, batch.flip2[:b1].float())
    # T_eq's shared crop is the loader's first crop of the b2 images, in both views
    assert torch.equal(ctx.pair.params1.crop, batch.box1[b1:].float())
    assert torch.equal(ctx.pair.params2.crop, batch.box1[b1:].float())
    result = trainer.fit()
    assert result.steps == 2 and torch.isfinite(torch.tensor(result.final_loss))


def test_losses_that_need_whole_images_are_refused(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(ValueError, match="makes its own views from whole images"):
        Trainer(_cfg(tmp_path, folder, **{"equiv.loss": "essl", "equiv.kwargs": {}}), progress=False)


def test_in_memory_data_keeps_cropping_in_the_view_policy(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path / "mem"), progress=False)
    assert trainer.crops is None and not create_dataset("synthetic", num_samples=8).cuts_crops

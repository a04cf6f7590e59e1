"""The three image sets of a run: pretraining images, the probe's training images (disjoint from them) and the test
set, from the run's data settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from equireg.data.base import ImageDataset
from equireg.data.registry import create_dataset

if TYPE_CHECKING:
    from equireg.config import Config


@dataclass
class Splits:
    """Pretraining images, the probe's training images (disjoint from them) and the test set."""

    pretrain: ImageDataset
    probe_train: ImageDataset
    test: ImageDataset
    clamped: list[str] = field(default_factory=list)  # one note per requested size the dataset could not give

    def sizes(self) -> dict[str, int]:
        """The sizes actually used (recorded in train_summary.json and eval/*.json)."""
        return {"pretrain": len(self.pretrain), "probe_train": len(self.probe_train), "test": len(self.test)}


def load_splits(cfg: Config) -> Splits:
    """Split the training set into ``data.train_subset`` pretraining images and the rest (seeded by the run's seed),
    take ``data.probe_train_size`` of the rest for the probe, and ``data.test_size`` test images. A size larger than
    what the dataset has is clamped and noted in ``Splits.clamped``.

    In-memory datasets store images at ``data.load_size`` (default: ``data.image_size``) and the views are cut at
    ``image_size``; image folders decode each file at full resolution instead and refuse ``load_size``."""
    from equireg.config import ConfigError

    d = cfg.data
    kwargs = dict(d.kwargs)
    size = d.load_size or d.image_size
    context = {"image_size": size}
    train = create_dataset(d.name, split="train", root=d.root, context=context, **kwargs)
    if not train.in_memory and size != d.image_size:
        raise ConfigError(f"data.load_size={d.load_size} applies to in-memory datasets; {d.name} decodes every file "
                          f"at full resolution and cuts views at data.image_size={d.image_size}, so leave it unset")
    test = create_dataset(d.name, split="test", root=d.root, context=context, **kwargs)
    if d.train_subset is not None and d.train_subset < len(train):
        pretrain, rest = train.split(d.train_subset, seed=cfg.train.seed)
    else:
        pretrain, rest = train, train
    asked = (("train_subset", d.train_subset, len(train)), ("probe_train_size", d.probe_train_size, len(rest)),
             ("test_size", d.test_size, len(test)))
    clamped = [f"data.{key}={want} but only {have} images are available, using {have}"
               for key, want, have in asked if want is not None and want > have]
    probe_train = rest if d.probe_train_size is None else rest.subset(min(d.probe_train_size, len(rest)), seed=1)
    if d.test_size is not None and d.test_size < len(test):
        test = test.subset(d.test_size, seed=2)
    return Splits(pretrain, probe_train, test, clamped)

"""The run's splits: in-memory datasets stored at data.load_size (views cut at image_size); folders refuse it."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagefolders import write_classes

from equireg.config import ConfigError, resolve_config
from equireg.data.splits import load_splits


def test_load_size_stores_in_memory_images_at_that_size() -> None:
    cfg = resolve_config(overrides={"data.name": "synthetic", "data.image_size": 16, "data.load_size": 24,
                                    "data.kwargs": {"num_samples": 20}, "data.train_subset": 10})  # fmt: skip
    splits = load_splits(cfg)
    assert splits.pretrain.image_size == 24 and splits.test.image_size == 24 and len(splits.pretrain) == 10


def test_load_size_is_refused_for_folders(tmp_path: Path) -> None:
    write_classes(tmp_path / "train", ["a", "b"], per_class=2)
    write_classes(tmp_path / "val", ["a", "b"], per_class=1)
    base = {"data.name": "imagefolder", "data.root": str(tmp_path), "data.image_size": 16}
    splits = load_splits(resolve_config(overrides=base))
    assert len(splits.pretrain) == 4 and len(splits.test) == 2 and splits.test.classes == ("a", "b")
    with pytest.raises(ConfigError, match="data.load_size=24 applies to in-memory datasets"):
        load_splits(resolve_config(overrides={**base, "data.load_size": 24}))


def test_the_run_image_size_reaches_every_builtin_dataset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Datasets get the run's image size as context for the parameter they declare (docs/plugins.md)."""
    from equireg.config import resolve_config
    from equireg.data.splits import load_splits
    from imagefolders import write_classes

    write_classes(tmp_path / "train", ["a", "b"], per_class=3, size=(20, 24))
    write_classes(tmp_path / "test", ["a", "b"], per_class=2, size=(20, 24))
    for name, extra in (("synthetic", {"data.kwargs": {"num_samples": 16}}),
                        ("imagefolder", {"data.root": str(tmp_path), "data.kwargs": {"num_workers": 0}})):
        cfg = resolve_config(overrides={"data.name": name, "data.image_size": 16, "data.train_subset": 4,
                                        "data.probe_train_size": 2, **extra})
        splits = load_splits(cfg)
        images, _ = next(iter(splits.test.batches(2, shuffle=False)))
        assert splits.test.image_size == 16 and images.shape[-1] == 16, name

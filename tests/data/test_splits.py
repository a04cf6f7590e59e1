"""load_splits: the sizes it could not give are reported, and the sizes it used are the ones recorded."""

from __future__ import annotations

from equireg.config import resolve_config
from equireg.data.splits import load_splits


def test_sizes_larger_than_the_dataset_are_clamped_and_reported() -> None:
    cfg = resolve_config(overrides={"data.name": "synthetic", "data.image_size": 16, "data.kwargs": {"num_samples": 40},
                                    "data.train_subset": 1000, "data.probe_train_size": 500, "data.test_size": 300})
    splits = load_splits(cfg)
    test_size = splits.sizes()["test"]
    assert splits.sizes() == {"pretrain": 40, "probe_train": 40, "test": test_size} and test_size < 300
    assert splits.clamped == [
        "data.train_subset=1000 but only 40 images are available, using 40",
        "data.probe_train_size=500 but only 40 images are available, using 40",
        f"data.test_size=300 but only {test_size} images are available, using {test_size}",
    ]


def test_sizes_within_the_dataset_are_not_reported() -> None:
    cfg = resolve_config(overrides={"data.name": "synthetic", "data.image_size": 16, "data.kwargs": {"num_samples": 40},
                                    "data.train_subset": 30, "data.probe_train_size": 5, "data.test_size": 4})
    splits = load_splits(cfg)
    assert splits.sizes() == {"pretrain": 30, "probe_train": 5, "test": 4} and splits.clamped == []

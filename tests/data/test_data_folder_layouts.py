"""Standard folder layouts: train/ + val/ (ImageNet) or test/, class indices shared across splits, numeric
class folders (ImageNet-V2), clear errors for a missing split, and the compact path table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagefolders import write_classes

from equireg.data import ImageFolderDataset, PathTable, create_dataset, default_num_workers, sort_class_names

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]


def _labels(ds: ImageFolderDataset) -> list[int]:
    return torch.cat([y for _, y in ds.batches(8, shuffle=False, drop_last=False)]).tolist()


def test_train_val_layout_maps_val_onto_training_indices(tmp_path: Path) -> None:
    write_classes(tmp_path / "train", WNIDS, per_class=1)
    write_classes(tmp_path / "val", [WNIDS[1], WNIDS[4]], per_class=2)  # fewer classes than train
    train = create_dataset("imagefolder", "train", root=tmp_path, image_size=8, num_workers=0)
    test = create_dataset("imagefolder", "test", root=tmp_path, image_size=8, num_workers=0)
    assert train.classes == test.classes == tuple(WNIDS)
    assert len(train) == 5 and len(test) == 4 and test.num_classes == 5
    assert _labels(test) == [1, 1, 4, 4] and test.labels.tolist() == [1, 1, 4, 4]


def test_train_test_layout(tmp_path: Path) -> None:
    write_classes(tmp_path / "train", ["a", "b"], per_class=2)
    write_classes(tmp_path / "test", ["a", "b"], per_class=1)
    test = create_dataset("imagefolder", "test", root=tmp_path, image_size=8, num_workers=0)
    assert test.root == tmp_path / "test" and len(test) == 2 and test.classes == ("a", "b")


def test_val_class_absent_from_train_is_named(tmp_path: Path) -> None:
    write_classes(tmp_path / "train", WNIDS[:2], per_class=1)
    write_classes(tmp_path / "val", [WNIDS[0], "n09999999"], per_class=1)
    with pytest.raises(ValueError, match="training split lacks: n09999999"):
        create_dataset("imagefolder", "test", root=tmp_path, num_workers=0)


@pytest.mark.parametrize(
    "present, split, message",
    [(["train"], "test", "has train/ but no val/ or test/ for the test split"),
     (["val"], "train", "has val/ but no train/ for the train split")],
)
def test_missing_split_is_an_error_naming_what_exists(tmp_path: Path, present: list[str], split: str, message: str) -> None:
    for name in present:
        write_classes(tmp_path / name, ["a", "b"], per_class=1)
    with pytest.raises(FileNotFoundError, match=message):
        create_dataset("imagefolder", split, root=tmp_path, num_workers=0)


def test_class_folders_only_serve_both_splits(tmp_path: Path) -> None:
    write_classes(tmp_path, ["cat", "dog"], per_class=2)
    train = create_dataset("imagefolder", "train", root=tmp_path, num_workers=0)
    test = create_dataset("imagefolder", "test", root=tmp_path, num_workers=0)
    assert train.classes == test.classes == ("cat", "dog") and len(train) == len(test) == 4


def test_numeric_class_folders_sort_numerically(tmp_path: Path) -> None:
    names = [str(i) for i in range(12)]
    write_classes(tmp_path, names, per_class=1, size=(8, 8))
    ds = ImageFolderDataset(tmp_path, image_size=8, num_workers=0)
    assert ds.classes == tuple(names)  # "10" after "9", not after "1"
    assert ds.labels.tolist() == list(range(12))
    assert sort_class_names(["b", "10", "2"]) == ["10", "2", "b"]  # mixed names stay lexicographic


def test_path_table_roundtrip_and_select() -> None:
    rel = ["a/1.jpg", "bé/ü.png", "c/d/e.JPEG", "z.jpg"]
    table = PathTable.from_relative("/data", rel)
    assert [table.relative(i) for i in range(len(table))] == rel and table[1] == "/data/bé/ü.png"
    picked = table.select(np.array([3, 1, 1]))
    assert [picked.relative(i) for i in range(3)] == ["z.jpg", "bé/ü.png", "bé/ü.png"]
    assert len(table.select(np.array([], dtype=np.int64))) == 0


def test_path_table_is_compact_at_scale() -> None:
    n = 200_000  # ImageNet-length relative paths, "n01440764/n01440764_10026.JPEG"
    table = PathTable.from_relative("/imagenet/train", (f"n{i % 1000:08d}/n{i % 1000:08d}_{i}.JPEG" for i in range(n)))
    assert table.nbytes < 40 * n  # ~30 bytes of text + 8 of offset per path; a list of str costs ~100
    sub = table.select(np.arange(n - 1, -1, -2))
    assert len(sub) == n // 2 and sub.relative(0) == f"n{(n - 1) % 1000:08d}/n{(n - 1) % 1000:08d}_{n - 1}.JPEG"


def test_folder_subset_keeps_paths_and_labels(tmp_path: Path) -> None:
    write_classes(tmp_path, ["a", "b", "c"], per_class=3, size=(8, 8))
    ds = ImageFolderDataset(tmp_path, image_size=8, num_workers=0)
    sub = ds.subset([8, 0, 4])
    assert isinstance(sub.paths, PathTable) and sub.labels.tolist() == [2, 0, 1]
    assert [sub.paths.relative(i) for i in range(3)] == ["c/2.jpg", "a/0.jpg", "b/1.jpg"]


def test_default_workers_follow_affinity_and_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_num_workers() == 31  # not capped at 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_num_workers() == 3

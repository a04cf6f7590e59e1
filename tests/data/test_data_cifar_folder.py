"""CIFAR pickle folders and image folders on fixtures written here, including a corrupt png and missing paths."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from equireg.data import ImageFolderDataset, create_dataset


def _dump(path: Path, obj: dict) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh)


@pytest.fixture()
def cifar10_parent(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A cifar-10-batches-py folder with byte keys like the official files, 2 images per batch."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, size=(12, 3072), dtype=np.uint8)
    for i in range(5):
        _dump(folder / f"data_batch_{i + 1}", {b"data": rows[2 * i : 2 * i + 2], b"labels": [i, 9 - i]})
    _dump(folder / "test_batch", {b"data": rows[10:], b"labels": [3, 4]})
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return tmp_path, rows


def test_cifar10_reads_batches_in_order(cifar10_parent: tuple[Path, np.ndarray]) -> None:
    parent, rows = cifar10_parent
    train = create_dataset("cifar10", "train", root=parent)
    assert len(train) == 10 and train.classes == tuple(f"c{i}" for i in range(10))
    # CIFAR rows are channel-major: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert torch.equal(train.images[3, 1, 0, :5], torch.from_numpy(rows[3, 1024:1029]))
    assert train.labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    test = create_dataset("cifar10", "test", root=parent / "cifar-10-batches-py")  # the folder itself works too
    assert test.labels.tolist() == [3, 4]
    assert create_dataset("cifar10", "test", root=parent, image_size=16).images.shape == (2, 3, 16, 16)


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.zeros((3, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        _dump(folder / split, {b"data": data, b"fine_labels": [5, 99, 0], b"coarse_labels": [1, 19, 0]})
    _dump(folder / "meta", {b"fine_label_names": [b"f%d" % i for i in range(100)],
                            b"coarse_label_names": [b"k%d" % i for i in range(20)]})  # fmt: skip
    fine = create_dataset("cifar100", "train", root=tmp_path)
    coarse = create_dataset("cifar100", "test", root=tmp_path, label_type="coarse")
    assert fine.num_classes == 100 and fine.labels.tolist() == [5, 99, 0]
    assert coarse.num_classes == 20 and coarse.labels.tolist() == [1, 19, 0] and coarse.classes[19] == "k19"


def test_cifar_missing_folder_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        create_dataset("cifar10", root=tmp_path / "none")
    monkeypatch.delenv("EQUIREG_CIFAR100", raising=False)
    with pytest.raises(FileNotFoundError, match="EQUIREG_CIFAR100"):
        create_dataset("cifar100")


def _write_png(path: Path, size: tuple[int, int], value: int) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for name, value in (("cat", 40), ("dog", 200)):
        (root / name).mkdir(parents=True)
        for i in range(3):
            _write_png(root / name / f"{i}.png", (20 + 4 * i, 12), value)  # non-square, varied sizes
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "dog" / "x.jpg")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_folder_batches(folder: Path) -> None:
    ds = create_dataset("imagefolder", root=folder, image_size=8, num_workers=0)
    assert ds.classes == ("cat", "dog") and len(ds) == 7 and not ds.in_memory
    batches = list(ds.batches(3, shuffle=False, drop_last=False))
    assert [b[0].shape for b in batches] == [(3, 3, 8, 8), (3, 3, 8, 8), (1, 3, 8, 8)]
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert torch.allclose(images[:3], torch.full_like(images[:3], 40 / 255))  # solid colour survives resizing


def test_folder_split_subfolders(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "images").rename(tmp_path / "train")
    (tmp_path / "data").mkdir()
    (tmp_path / "train").rename(tmp_path / "data" / "train")
    assert len(create_dataset("imagefolder", "train", root=tmp_path / "data", num_workers=0)) == 7


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_names_the_file(folder: Path, workers: int) -> None:
    bad = folder / "cat" / "broken.png"
    good = (folder / "cat" / "0.png").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated png: header fine, pixel data cut
    ds = ImageFolderDataset(folder, image_size=8, num_workers=workers)
    with pytest.raises(ValueError, match="broken.png"):
        list(ds.batches(2, shuffle=False, drop_last=False))


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_dataset("imagefolder", root=tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="root"):
        create_dataset("imagefolder")

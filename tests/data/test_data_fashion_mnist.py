"""Fashion-MNIST loading from IDX fixtures written here (gzipped and raw), sizing, and missing-file errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from equireg.data import create_dataset, parse_idx
from equireg.data.fashion_mnist import CLASSES, DEFAULT_ROOT, ENV_VAR


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written from the format description: 0, 0, type 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = _idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.fixture()
def fixture_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    _write_split(tmp_path, "train", images, labels, gz=True)
    _write_split(tmp_path, "t10k", images[:5], labels[:5], gz=False)  # raw files work as well
    return tmp_path, images, labels


def test_parse_idx_roundtrip_and_bad_magic() -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(_idx_bytes(array)), array)
    with pytest.raises(ValueError, match="bad magic"):
        parse_idx(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="holds"):
        parse_idx(_idx_bytes(array)[:-1])


def test_default_size_pads_exactly(fixture_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, images, labels = fixture_root
    ds = create_dataset("fashion-mnist", "train", root=root)
    assert len(ds) == 12 and ds.num_classes == 10 and ds.classes == CLASSES and ds.image_size == 32
    assert torch.equal(ds.labels, torch.as_tensor(labels, dtype=torch.long))
    # 2 px of zeros each side, the 28x28 centre untouched
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(images))
    assert int(ds.images[:, :, :2].sum()) == 0 and int(ds.images[:, :, :, 30:].sum()) == 0

    x, y = next(ds.batches(4, shuffle=False))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grayscale repeated to RGB
    assert torch.allclose(x[:, 0, 2:30, 2:30] * 255, torch.from_numpy(images[:4]).float())
    assert torch.equal(y, torch.as_tensor(labels[:4], dtype=torch.long))


def test_other_sizes_resize(fixture_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, images, _ = fixture_root
    ds = create_dataset("fashion-mnist", "test", root=root, image_size=16)
    assert len(ds) == 5 and ds.images.shape == (5, 1, 16, 16)
    expected = F.interpolate(torch.from_numpy(images[:5, None]).float(), size=16, mode="bilinear", antialias=True)
    assert (ds.images.float() - expected).abs().max() <= 0.5 + 1e-4  # rounding only


def test_env_var_is_used(fixture_root: tuple[Path, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(fixture_root[0]))
    assert len(create_dataset("fashion-mnist", "test")) == 5


def test_missing_files_say_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        create_dataset("fashion-mnist", root=missing)
    assert str(missing) in str(info.value) and "sudo apt-get install dataset-fashion-mnist" in str(info.value)
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        create_dataset("fashion-mnist", "test")
    with pytest.raises(ValueError, match="split"):
        create_dataset("fashion-mnist", "val", root=missing)


@pytest.mark.skipif(not (DEFAULT_ROOT / "t10k-labels-idx1-ubyte.gz").is_file(), reason="dataset-fashion-mnist absent")
def test_installed_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    ds = create_dataset("fashion-mnist", "test")
    assert len(ds) == 10_000 and torch.equal(torch.bincount(ds.labels), torch.full((10,), 1000))

"""Fashion-MNIST from IDX files (gzipped or raw), as installed by Debian's ``dataset-fashion-mnist``.

Clothes are photographed upright, so the data are not rotation-invariant: a good test bed for p4m
equivariance on a CPU. Images are 28x28 grayscale; the default 32 px is reached by zero padding (2 px per side,
the background is already black, so zero and edge padding coincide and no pixel is resampled); any other size is
an antialiased resize. Channels are repeated to 3 at batch time so RGB backbones and colour views work.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from equireg.data.memory import FitMode, TensorImageDataset, fit_size

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "EQUIREG_FASHION_MNIST"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_DTYPES = {0x08: np.uint8}


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX buffer (magic 0x0000 <dtype> <ndim>, big-endian int32 dims, then the values)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{source} is not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{source}: IDX value type 0x{dtype_code:02x} is not supported (expected 0x08, uint8)")
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">i4"))
    count = int(np.prod(dims)) if dims else 0
    values = np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=header)
    if values.size != count:
        raise ValueError(f"{source}: header announces {dims} = {count} values but the file holds {values.size}")
    return values.reshape(dims)


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def _read_idx_cached(path: str, mtime_ns: int) -> Tensor:
    raw = Path(path).read_bytes()
    data = gzip.decompress(raw) if path.endswith(".gz") else raw
    return torch.from_numpy(parse_idx(data, path).copy())


def resolve_root(root: str | Path | None) -> tuple[Path, list[str]]:
    """The folder to read and a description of where it came from (for error messages)."""
    if root is not None:
        return Path(root).expanduser(), [f"root={root}"]
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), [f"${ENV_VAR}={env}"]
    return DEFAULT_ROOT, [f"the default {DEFAULT_ROOT}"]


def load_fashion_mnist_arrays(split: str, root: str | Path | None = None) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels (N,) of ``split`` ('train' or 'test')."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder, origin = resolve_root(root)
    image_stem, label_stem = _FILES[split]
    image_file, label_file = _find(folder, image_stem), _find(folder, label_stem)
    if image_file is None or label_file is None:
        missing = image_stem if image_file is None else label_stem
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files not found: looked for {folder / missing}(.gz) ({origin[0]}). "
            f"Install them with `sudo apt-get install dataset-fashion-mnist` (into {DEFAULT_ROOT}), "
            f"or point root= or ${ENV_VAR} at a folder holding the IDX files."
        )
    images = _read_idx_cached(str(image_file), image_file.stat().st_mtime_ns)
    labels = _read_idx_cached(str(label_file), label_file.stat().st_mtime_ns)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST files disagree: images {tuple(images.shape)} in {image_file}, "
            f"labels {tuple(labels.shape)} in {label_file}"
        )
    return images.unsqueeze(1), labels.to(torch.long)


def fashion_mnist(
    split: str = "train", root: str | Path | None = None, image_size: int = 32, fit: FitMode | None = None
) -> TensorImageDataset:
    """Fashion-MNIST as an in-memory dataset.

    Args:
        split: 'train' (60k) or 'test' (10k).
        root: folder with the IDX files; default ``$EQUIREG_FASHION_MNIST`` or /usr/share/datasets/fashion-mnist.
        image_size: output side; 32 (default) pads 28 -> 32 with zeros, other sizes resize.
        fit: force 'pad' or 'resize' instead of that rule.
    """
    images, labels = load_fashion_mnist_arrays(split, root)
    mode: FitMode = fit or ("pad" if image_size == 32 else "resize")
    return TensorImageDataset(fit_size(images, image_size, mode), labels, CLASSES, name="fashion-mnist")

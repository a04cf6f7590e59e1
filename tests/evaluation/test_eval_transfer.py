"""ImageNet-C/-P/-R/-Sketch/-V2 on tiny folders with the real layouts, classified by a known rule: each class is
a solid grey level, and the classifier picks the nearest level, so the expected numbers are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imagefolders import write_image
from torch import Tensor, nn

from equireg.evaluation import LayoutError
from equireg.evaluation.transfer import FolderSettings, classification_set, imagenet_c, imagenet_p

CLASSES = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
LEVELS = torch.tensor([20.0, 70.0, 120.0, 170.0, 220.0]) / 255
SETTINGS = FolderSettings(image_size=8, batch_size=4, num_workers=0)


class NearestLevel(nn.Module):
    """Logits = -|mean intensity - level of class k|, plus ``bias`` (to test masking)."""

    def __init__(self, bias: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("bias", torch.zeros(len(CLASSES)) if bias is None else bias)

    def forward(self, images: Tensor) -> Tensor:
        return -(images.mean(dim=(1, 2, 3))[:, None] - LEVELS).abs() + self.bias


def _solid(path: Path, level_of: int, size: tuple[int, int] = (10, 12)) -> None:
    write_image(path, np.full((*size, 3), round(float(LEVELS[level_of]) * 255), dtype=np.uint8))


def test_imagenet_c_top1_and_mce(tmp_path: Path) -> None:
    for corruption in ("fog", "blur"):
        for severity in (1, 2):
            for k in (0, 2, 4):
                wrong = corruption == "blur" and severity == 2 and k != 0  # all look like class 0
                _solid(tmp_path / corruption / str(severity) / CLASSES[k] / "a.JPEG", 0 if wrong else k)
    result = imagenet_c(NearestLevel(), tmp_path, CLASSES, SETTINGS, {"blur": [0.5, 0.5, 0.5, 0.5, 0.5], "fog": 0.25})
    assert result.severities == {"blur": [1, 2], "fog": [1, 2]}
    assert result.top1["fog"] == [100.0, 100.0] and result.top1["blur"][0] == 100.0
    assert abs(result.top1["blur"][1] - 100 / 3) < 1e-4 and abs(result.mean_top1 - (300 + 100 / 3) / 4) < 1e-4
    assert result.corruption_error is not None and result.corruption_error["fog"] == 0.0
    assert abs(result.corruption_error["blur"] - 100 * (2 / 3) / 1.0) < 1e-4  # sum of errors / sum of AlexNet's
    assert abs(result.mce - (0 + 200 / 3) / 2) < 1e-4  # type: ignore[operator]
    assert imagenet_c(NearestLevel(), tmp_path, CLASSES, SETTINGS).mce is None


def _frames(folder: Path, levels: list[int]) -> None:
    for i, k in enumerate(levels):
        _solid(folder / f"{i:03d}.png", k)


def test_imagenet_p_flip_probability(tmp_path: Path) -> None:
    for perturbation in ("gaussian_noise", "rotate"):
        _frames(tmp_path / perturbation / CLASSES[1] / "seq0", [1, 1, 2, 2])
        _frames(tmp_path / perturbation / CLASSES[3] / "seq1", [3, 3, 3])
    result = imagenet_p(NearestLevel(), tmp_path, CLASSES, SETTINGS, {"rotate": 0.5})
    # rotate compares consecutive frames: 1 flip of 3, and 0 of 2; noise compares with the first frame: 2 of 3
    assert abs(result.flip_probability["rotate"] - 100 * (1 / 3 + 0) / 2) < 1e-4
    assert abs(result.flip_probability["gaussian_noise"] - 100 * (2 / 3 + 0) / 2) < 1e-4
    assert result.num_sequences == {"gaussian_noise": 2, "rotate": 2}
    assert result.flip_rate is not None and abs(result.mfr - (100 / 6) / 0.5) < 1e-4  # type: ignore[operator]


@pytest.mark.parametrize(
    "layout, message",
    [("video", "is a video, which equireg does not decode"), ("flat", "is not a sequence folder")],
)
def test_imagenet_p_layout_errors(tmp_path: Path, layout: str, message: str) -> None:
    folder = tmp_path / "rotate" / CLASSES[0]
    if layout == "video":
        folder.mkdir(parents=True)
        (folder / "v.mp4").write_bytes(b"\x00")
    else:
        _frames(folder, [0, 0])  # frames straight in the class folder
    with pytest.raises(LayoutError, match=f"{message}.*<perturbation>/<class>/<sequence>/<frame>"):
        imagenet_p(NearestLevel(), tmp_path, CLASSES, SETTINGS)


def test_imagenet_r_masks_logits_to_the_classes_present(tmp_path: Path) -> None:
    for k in (1, 3):
        _solid(tmp_path / CLASSES[k] / "a.jpg", k)
    biased = NearestLevel(bias=torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0]))  # always prefers class 4, absent here
    masked = classification_set("imagenet-r", biased, tmp_path, CLASSES, SETTINGS)
    sketch = classification_set("imagenet-sketch", biased, tmp_path, CLASSES, SETTINGS)
    assert masked.masked and masked.top1 == 100.0 and masked.num_images == 2 and masked.num_classes == 2
    assert not sketch.masked and sketch.top1 == 0.0 and sketch.top5 == 100.0


def test_imagenet_v2_numeric_folders_are_class_indices(tmp_path: Path) -> None:
    for k in (0, 2, 4):
        _solid(tmp_path / str(k) / "a.jpeg", k)
    result = classification_set("imagenet-v2", NearestLevel(), tmp_path, CLASSES, SETTINGS)
    assert result.top1 == 100.0 and result.num_images == 3
    _solid(tmp_path / "n01440764" / "b.jpeg", 0)
    with pytest.raises(LayoutError, match="not class indices.*<0..999>"):
        classification_set("imagenet-v2", NearestLevel(), tmp_path, CLASSES, SETTINGS)


def test_layout_errors_name_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist; imagenet-r expects DIR/<wnid>/<image>"):
        classification_set("imagenet-r", NearestLevel(), tmp_path / "missing", CLASSES, SETTINGS)
    _solid(tmp_path / "fog" / CLASSES[0] / "a.JPEG", 0)  # class folders without severity folders
    with pytest.raises(LayoutError, match="no severity folders 1-5.*<corruption>/<severity 1-5>/<class>"):
        imagenet_c(NearestLevel(), tmp_path, CLASSES, SETTINGS)
    _solid(tmp_path / "r" / "n09999999" / "a.jpg", 0)
    with pytest.raises(ValueError, match="training split lacks: n09999999"):
        classification_set("imagenet-r", NearestLevel(), tmp_path / "r", CLASSES, SETTINGS)

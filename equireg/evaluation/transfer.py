"""Robustness and transfer sets stored as folders: ImageNet-C, -P, -R, -Sketch and -V2.

Each takes an image classifier (frozen features + the run's saved linear head) and the training class list, and
maps the folder's classes onto the training indices:

| set | layout | metric |
|---|---|---|
| ImageNet-C | ``<corruption>/<severity 1-5>/<class>/<image>`` | top-1 per cell, mean top-1; CE and mCE with AlexNet errors |
| ImageNet-P | ``<perturbation>/<class>/<sequence>/<frame>`` (frames of each video) | flip probability; mFR with AlexNet |
| ImageNet-R | ``<wnid>/<image>`` (200 classes) | top-1/5 with the logits masked to the classes present |
| ImageNet-Sketch | ``<wnid>/<image>`` | top-1/5 |
| ImageNet-V2 | ``<0..999>/<image>`` (folder = training class index) | top-1/5 |

ImageNet-C and -P images are already 224-px centre crops, so they are only resized to the run's image size
(crop ratio 1); the others get Resize + CenterCrop (ratio 0.875).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from equireg.data.folder import ImageFolderDataset, list_class_folders
from equireg.evaluation._common import JsonResult, autocast, eval_mode, module_device, topk_correct

LAYOUTS = {
    "imagenet-c": "DIR/<corruption>/<severity 1-5>/<class>/<image>.JPEG",
    "imagenet-p": "DIR/<perturbation>/<class>/<sequence>/<frame>.jpg (each video's frames in one folder)",
    "imagenet-r": "DIR/<wnid>/<image>.jpg (a subset of the training classes)",
    "imagenet-sketch": "DIR/<wnid>/<image>.JPEG",
    "imagenet-v2": "DIR/<0..999>/<image>.jpeg (folder name = training class index)",
}
NOISE_PERTURBATIONS = ("gaussian_noise", "shot_noise", "speckle_noise")  # compared with the first frame
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")


class LayoutError(ValueError):
    """The folder does not have the set's layout; the message names the layout expected."""


def _layout_error(name: str, root: Path, problem: str) -> LayoutError:
    return LayoutError(f"{root} {problem}; {name} expects {LAYOUTS[name]}")


@dataclass
class FolderSettings:
    """How the folders are read: image side, batch size, decoding workers, device and autocast."""

    image_size: int
    batch_size: int = 256
    num_workers: int | None = None
    amp_dtype: torch.dtype | None = None


@torch.no_grad()
def predict_folder(
    classifier: nn.Module, dataset: ImageFolderDataset, settings: FolderSettings, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Logits' top-5 indices (N, 5) and labels (N,) in the folder's file order; ``mask`` (C,) bool keeps only
    those classes in the ranking (ImageNet-R's 200-class subset of a 1000-way head)."""
    device = module_device(classifier)
    tops, labels = [], []
    try:
        with eval_mode(classifier):
            for images, y in dataset.batches(settings.batch_size, shuffle=False, drop_last=False, device=device):
                with autocast(device, settings.amp_dtype):
                    logits = classifier(images).float()
                if mask is not None:
                    logits = logits.masked_fill(~mask.to(device), float("-inf"))
                tops.append(logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu())
                labels.append(y.cpu())
    finally:
        dataset.close()
    return torch.cat(tops), torch.cat(labels)


def _accuracy(top: Tensor, labels: Tensor) -> tuple[float, float]:
    hits = top == labels[:, None]
    return 100.0 * float(hits[:, :1].any(1).float().mean()), 100.0 * float(hits.any(1).float().mean())


@dataclass
class TransferResult(JsonResult):
    """Top-1/top-5 (percent) on a relabelled folder (ImageNet-R, -Sketch, -V2)."""

    name: str
    top1: float
    top5: float
    num_images: int
    num_classes: int
    masked: bool


def classification_set(
    name: str, classifier: nn.Module, root: str | Path, classes: Sequence[str], settings: FolderSettings,
    crop_ratio: float = 0.875,
) -> TransferResult:  # fmt: skip
    """ImageNet-R (``mask`` to the classes present), -Sketch or -V2 (numeric folders index the classes)."""
    root = Path(root)
    folders = _class_folders(name, root)
    index_classes: Sequence[str] = classes
    if name == "imagenet-v2":
        if not all(f.isdigit() for f in folders):
            raise _layout_error(name, root, "has class folders that are not class indices")
        index_classes = [str(i) for i in range(len(classes))]
    dataset = ImageFolderDataset(root, settings.image_size, settings.num_workers, classes=index_classes,
                                 crop_ratio=crop_ratio, name=name)  # fmt: skip
    mask = None
    if name == "imagenet-r":
        mask = torch.zeros(len(classes), dtype=torch.bool)
        mask[dataset.labels.unique()] = True
    top, labels = predict_folder(classifier, dataset, settings, mask)
    top1, top5 = _accuracy(top, labels)
    present = len(folders)
    return TransferResult(name, top1, top5, int(labels.shape[0]), present, mask is not None)


def _class_folders(name: str, root: Path) -> list[str]:
    if not root.is_dir():
        raise _layout_error(name, root, "does not exist")
    folders = list_class_folders(root)
    if not folders:
        raise _layout_error(name, root, "has no class folders")
    return folders


@dataclass
class CorruptionSetResult(JsonResult):
    """ImageNet-C: top-1 (percent) per corruption and severity; CE/mCE (percent) when AlexNet errors are given."""

    top1: dict[str, list[float]]
    severities: dict[str, list[int]]
    mean_top1: float
    corruption_error: dict[str, float] | None
    mce: float | None
    num_images: int


def imagenet_c(
    classifier: nn.Module, root: str | Path, classes: Sequence[str], settings: FolderSettings,
    alexnet_errors: dict[str, float | list[float]] | None = None, log: Callable[[str], None] | None = None,
) -> CorruptionSetResult:  # fmt: skip
    """Top-1 on every ``<corruption>/<severity>`` folder present, their mean, and with ``alexnet_errors``
    (error fractions per corruption: one per severity, or their mean) CE_c = sum_s E_c,s / sum_s AlexNet_c,s and
    mCE = mean_c CE_c over the corruptions both have (Hendrycks & Dietterich, 2019)."""
    root = Path(root)
    top1: dict[str, list[float]] = {}
    severities: dict[str, list[int]] = {}
    n_images = 0
    for corruption in _class_folders("imagenet-c", root):
        levels = sorted(int(d) for d in os.listdir(root / corruption) if d in {"1", "2", "3", "4", "5"})
        if not levels:
            raise _layout_error("imagenet-c", root / corruption, "has no severity folders 1-5")
        severities[corruption], top1[corruption] = levels, []
        for level in levels:
            dataset = ImageFolderDataset(root / corruption / str(level), settings.image_size, settings.num_workers,
                                         classes=classes, crop_ratio=1.0, name="imagenet-c")  # fmt: skip
            top, labels = predict_folder(classifier, dataset, settings)
            top1[corruption].append(_accuracy(top, labels)[0])
            n_images += int(labels.shape[0])
            if log is not None:
                log(f"imagenet-c {corruption} severity {level}: top-1 {top1[corruption][-1]:.2f}%")
    cells = [v for row in top1.values() for v in row]
    ce = None if alexnet_errors is None else corruption_errors(top1, severities, alexnet_errors)
    mce = None if not ce else sum(ce.values()) / len(ce)
    return CorruptionSetResult(top1, severities, sum(cells) / len(cells), ce, mce, n_images)


def corruption_errors(
    top1: dict[str, list[float]], severities: dict[str, list[int]], alexnet: dict[str, float | list[float]]
) -> dict[str, float]:
    """CE (percent) of each corruption that ``alexnet`` covers."""
    ce = {}
    for name, row in top1.items():
        reference = alexnet.get(name)
        if reference is None:
            continue
        errors = [1.0 - acc / 100.0 for acc in row]
        if isinstance(reference, (int, float)):
            ce[name] = 100.0 * (sum(errors) / len(errors)) / float(reference)
        else:
            ref = [float(reference[s - 1]) for s in severities[name]]
            ce[name] = 100.0 * sum(errors) / sum(ref)
    return ce


@dataclass
class FlipRateResult(JsonResult):
    """ImageNet-P: flip probability (percent) per perturbation; FR/mFR (percent) when AlexNet rates are given."""

    flip_probability: dict[str, float]
    mean_flip_probability: float
    flip_rate: dict[str, float] | None
    mfr: float | None
    num_sequences: dict[str, int]


def imagenet_p(
    classifier: nn.Module, root: str | Path, classes: Sequence[str], settings: FolderSettings,
    alexnet_flip: dict[str, float] | None = None, log: Callable[[str], None] | None = None,
) -> FlipRateResult:  # fmt: skip
    """Flip probability of the top-1 prediction along each frame sequence: consecutive frames, or each frame
    against the first for the noise perturbations (Hendrycks & Dietterich, 2019, difficulty 1)."""
    root = Path(root)
    flips: dict[str, float] = {}
    counts: dict[str, int] = {}
    for perturbation in _class_folders("imagenet-p", root):
        _refuse_videos(root / perturbation)
        dataset = ImageFolderDataset(root / perturbation, settings.image_size, settings.num_workers, classes=classes,
                                     crop_ratio=1.0, name="imagenet-p")  # fmt: skip
        sequences = [os.path.dirname(dataset.paths.relative(i)) for i in range(len(dataset))]
        top, _ = predict_folder(classifier, dataset, settings)
        flips[perturbation], counts[perturbation] = _flip_probability(
            top[:, 0], sequences, perturbation in NOISE_PERTURBATIONS, root / perturbation
        )
        if log is not None:
            log(f"imagenet-p {perturbation}: flip probability {flips[perturbation]:.2f}%")
    rates = None
    if alexnet_flip is not None:
        rates = {p: 100.0 * (fp / 100.0) / float(alexnet_flip[p]) for p, fp in flips.items() if p in alexnet_flip}
    mfr = None if not rates else sum(rates.values()) / len(rates)
    return FlipRateResult(flips, sum(flips.values()) / len(flips), rates, mfr, counts)


def _refuse_videos(folder: Path) -> None:
    for dirpath, _, files in os.walk(folder):
        video = next((f for f in files if f.lower().endswith(VIDEO_SUFFIXES)), None)
        if video is not None:
            raise _layout_error("imagenet-p", Path(dirpath) / video, "is a video, which equireg does not decode "
                                "(extract its frames first, e.g. ffmpeg -i v.mp4 v/%03d.png)")


def _flip_probability(pred: Tensor, sequences: list[str], against_first: bool, where: Path) -> tuple[float, int]:
    groups: dict[str, list[int]] = {}
    for i, seq in enumerate(sequences):
        groups.setdefault(seq, []).append(i)
    per_sequence = []
    for seq, rows in groups.items():
        if len(rows) < 2 or os.sep not in seq:
            raise _layout_error("imagenet-p", where / seq, "is not a sequence folder of two or more frames")
        p = pred[rows]
        ref = p[:1].expand(len(rows) - 1) if against_first else p[:-1]
        per_sequence.append(float((p[1:] != ref).float().mean()))
    return 100.0 * sum(per_sequence) / len(per_sequence), len(per_sequence)

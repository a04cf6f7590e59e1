"""Accuracy of a frozen backbone + classifier under corruptions of the test set.

The summary number, the mean corruption accuracy, is the plain mean of top-1 over every (corruption,
severity) cell. This follows the spirit of ImageNet-C's mCE but is not it: no AlexNet normalisation, and the
corruptions are the on-the-fly set of :mod:`equireg.evaluation.corruptions`, not the 15 published ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from equireg.evaluation._common import Batches, JsonResult, autocast, eval_mode, iterate_batches, resolve_device
from equireg.evaluation.corruptions import DEFAULT_CORRUPTIONS, Corruption, get_corruption


@dataclass
class RobustnessResult(JsonResult):
    """Top-1 in percent: ``top1[name][i]`` is the accuracy at ``severities[i]``."""

    clean_top1: float
    corruptions: list[str]
    severities: list[int]
    top1: dict[str, list[float]]
    mean_per_corruption: dict[str, float]
    mean_corruption_accuracy: float
    num_images: int
    seed: int


def corruption_seed(seed: int, name: str, severity: int, batch_index: int) -> int:
    """A stable 63-bit seed per (run seed, corruption, severity, batch), independent of evaluation order."""
    digest = hashlib.blake2b(f"{seed}/{name}/{severity}/{batch_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _as_logits_fn(classifier: object) -> Callable[[Tensor], Tensor]:
    predict = getattr(classifier, "predict", None)
    if callable(predict):
        return predict  # type: ignore[no-any-return]
    if callable(classifier):
        return classifier  # type: ignore[return-value]
    raise ValueError("classifier must map features to logits (a callable or an object with .predict)")


@torch.no_grad()
def robustness(
    backbone: nn.Module,
    classifier: object,
    test_batches: Batches,
    corruptions: Sequence[str] | dict[str, Corruption] = DEFAULT_CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> RobustnessResult:
    """Top-1 of ``classifier(backbone(corrupt(x)))`` per corruption and severity, plus the clean accuracy.

    Makes a single pass over ``test_batches`` (so a one-shot iterator works): every batch is corrupted at every
    (corruption, severity) in turn. Randomness is seeded per (seed, corruption, severity, batch index), so a
    result is reproducible for the same batching and device.

    Args:
        classifier: maps backbone embeddings to logits, e.g. a :class:`LinearProbeResult` (uses ``.predict``)
            or any callable.
        corruptions: registered names, or a mapping name -> corruption function.
    """
    fns = dict(corruptions) if isinstance(corruptions, dict) else {n: get_corruption(n) for n in corruptions}
    if not fns or not severities:
        raise ValueError("need at least one corruption and one severity")
    sev_list = [int(s) for s in severities]
    logits_fn = _as_logits_fn(classifier)
    dev = resolve_device(backbone, device)

    def correct(images: Tensor, labels: Tensor) -> int:
        with autocast(dev, amp_dtype):
            feats = backbone(images)
        pred = logits_fn(feats.float()).argmax(dim=1)
        return int((pred.to(labels.device) == labels).sum())

    clean = 0
    hits = {name: [0] * len(sev_list) for name in fns}
    total = 0
    with eval_mode(backbone):
        for b_idx, (images, labels) in enumerate(iterate_batches(test_batches, batch_size)):
            if labels is None:
                raise ValueError("robustness needs labelled batches")
            images, labels = images.to(dev).float(), labels.to(dev)
            total += images.shape[0]
            clean += correct(images, labels)
            for name, fn in fns.items():
                for i, severity in enumerate(sev_list):
                    gen = torch.Generator(device=images.device).manual_seed(
                        corruption_seed(seed, name, severity, b_idx)
                    )
                    hits[name][i] += correct(fn(images, severity, gen), labels)
    if total == 0:
        raise ValueError("no test batches")
    top1 = {name: [100.0 * h / total for h in row] for name, row in hits.items()}
    per_corruption = {name: sum(row) / len(row) for name, row in top1.items()}
    return RobustnessResult(
        clean_top1=100.0 * clean / total,
        corruptions=list(fns),
        severities=sev_list,
        top1=top1,
        mean_per_corruption=per_corruption,
        mean_corruption_accuracy=sum(per_corruption.values()) / len(per_corruption),
        num_images=total,
        seed=seed,
    )

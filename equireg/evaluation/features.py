"""Frozen-backbone feature extraction, the first step of linear probing and kNN evaluation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equireg.evaluation._common import Batches, autocast, eval_mode, iterate_batches, resolve_device


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    batches: Batches,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Embed every image with ``backbone(x) -> (B, D)`` in eval mode, without gradients.

    Args:
        backbone: maps images (B, C, H, W) to embeddings (B, D).
        batches: an iterable of ``(images, labels)`` batches, or whole tensors (see ``iterate_batches``).
        device: where to run; defaults to the backbone's device. Features always come back on the CPU in
            float32, so a large set does not have to fit in accelerator memory.
        amp_dtype: e.g. ``torch.bfloat16`` to run the backbone under autocast.
        batch_size: chunk size when ``batches`` is a whole tensor.

    Returns:
        ``(features (N, D) float32, labels (N,) int64)``; labels are empty when the data had none.
    """
    dev = resolve_device(backbone, device)
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    with eval_mode(backbone):
        for images, y in iterate_batches(batches, batch_size):
            with autocast(dev, amp_dtype):
                out = backbone(images.to(dev, non_blocking=True))
            if out.dim() != 2 or out.shape[0] != images.shape[0]:
                raise ValueError(f"backbone must return (B, D) embeddings, got shape {tuple(out.shape)}")
            feats.append(out.float().cpu())
            if y is not None:
                labels.append(y.long().cpu())
    if not feats:
        raise ValueError("no batches to extract features from")
    features = torch.cat(feats)
    label_tensor = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    if labels and label_tensor.shape[0] != features.shape[0]:
        raise ValueError("some batches had labels and some did not")
    return features, label_tensor

"""Shared plumbing for the evaluation code: batch iteration, device and autocast choice, JSON results.

Evaluation functions take data in whatever shape is at hand (a dataset's ``batches(...)`` iterator, a list of
``(images, labels)`` pairs, or whole tensors) so they do not depend on any dataset API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import Any, Union

import torch
from torch import Tensor, nn

# A whole set as one (images, labels) pair, a bare images tensor, or an iterable of batches where each batch is
# an (images, labels) pair or a bare images tensor.
Batches = Union[Tensor, tuple[Tensor, Tensor], Iterable[Any]]


def iterate_batches(data: Batches, batch_size: int = 256) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yield ``(images, labels_or_None)`` from any of the accepted data forms.

    A pair ``(images, labels)`` with a 4-D images tensor and a 1-D labels tensor is treated as a whole set and
    split into ``batch_size`` chunks; a 4-D tensor is an unlabelled set; anything else is an iterable of batches.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, Tensor):
        _check_images(data)
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size], None
        return
    if _is_whole_set(data):
        images, labels = data  # type: ignore[misc]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"images and labels disagree in length: {images.shape[0]} vs {labels.shape[0]}")
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]
        return
    for batch in data:  # type: ignore[union-attr]
        if isinstance(batch, Tensor):
            _check_images(batch)
            yield batch, None
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], Tensor):
            _check_images(batch[0])
            yield batch[0], torch.as_tensor(batch[1])
        else:
            raise ValueError(
                "expected batches of (images, labels) or images tensors of shape (B, C, H, W), "
                f"got an item of type {type(batch).__name__}"
            )


def _is_whole_set(data: object) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], Tensor)
        and isinstance(data[1], Tensor)
        and data[0].dim() == 4
        and data[1].dim() == 1
    )


def _check_images(images: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got shape {tuple(images.shape)}")


def module_device(module: nn.Module) -> torch.device:
    """The device of the first parameter or buffer (CPU for a module without any)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def resolve_device(module: nn.Module, device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else module_device(module)


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """bf16/fp16 autocast on ``device`` when ``amp_dtype`` is given, otherwise a no-op context."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode and restore its previous training flag afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of rows whose label is among the ``k`` highest scores, per k (k is capped at the class count)."""
    if logits.dim() != 2 or labels.dim() != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected scores (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top == labels.to(top.device).unsqueeze(1)
    return [int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


class JsonResult:
    """Mixin for result dataclasses: ``to_dict()`` drops fields marked ``metadata={"json": False}``."""

    def to_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self)
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.metadata.get("json", True)
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    return value

"""Input checks and the per-rank normalisation shared by the losses."""

from __future__ import annotations

import torch
from torch import Tensor


def check_pair(loss: str, a: Tensor, b: Tensor, names: tuple[str, str] = ("z1", "z2")) -> None:
    """Raise a ValueError unless ``a`` and ``b`` are (N, D) tensors of the same shape with N >= 1."""
    for name, t in zip(names, (a, b)):
        if t.dim() != 2 or t.shape[0] < 1:
            raise ValueError(f"{loss}: expected {name} of shape (N, D) with N >= 1, got {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{loss}: {names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def check_temperature(loss: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{loss}: {name} must be > 0, got {value}")


def rank_mean_scale(sizes: list[int]) -> float:
    """Factor turning a sum over this rank's anchors into the value this rank reports.

    ``sizes`` are the per-rank anchor counts that took part (one entry when the loss did not gather). The result,
    ``len(sizes) / sum(sizes)``, is ``1 / B`` for equal sizes, and in general makes the mean over ranks of the
    reported values equal the mean over all anchors of the global batch, which is what DDP's gradient averaging needs.
    """
    return len(sizes) / sum(sizes)


def upcast(t: Tensor) -> Tensor:
    """float16/bfloat16 → float32 (softmaxes over large logit sets are unsafe in half precision); others unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t

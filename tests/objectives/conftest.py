"""A tiny stand-in backbone with the backbone contract (``forward_split`` -> SplitOutput, ``embed_dim``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn


@dataclass
class SplitOutput:
    embedding: Tensor
    feature_map: Tensor | None
    pooled: Tensor | None


class TinyBackbone(nn.Module):
    """conv -> BN -> ReLU -> (feature map) -> mean pool -> linear (embedding)."""

    def __init__(self, embed_dim: int = 16, channels: int = 8) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.fc = nn.Linear(channels, embed_dim)

    def forward_split(self, x: Tensor) -> SplitOutput:
        fmap = self.stem(x)
        pooled = fmap.mean(dim=(2, 3))
        return SplitOutput(embedding=self.fc(pooled), feature_map=fmap, pooled=pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_split(x).embedding


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """One intra-op thread: on the shared 2-core machine two OpenMP threads made tiny ops ~100x slower
    (BatchNorm1d on 6x1024: 70 ms instead of 0.04 ms) because the second core is busy."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_backbone() -> TinyBackbone:
    return TinyBackbone()

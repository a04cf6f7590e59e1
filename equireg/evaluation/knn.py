"""Weighted k-nearest-neighbour classification of frozen features (the DINO evaluation).

Each test feature votes over its ``k`` most cosine-similar training features; a neighbour with similarity
``s`` adds ``exp(s / T)`` to its class. The ranking of the summed votes gives top-1 and top-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from equireg.evaluation._common import JsonResult, topk_correct


@dataclass
class KNNResult(JsonResult):
    """Accuracies in percent."""

    top1: float
    top5: float
    k: int
    temperature: float
    num_train: int
    num_test: int
    num_classes: int


def knn_votes(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    max_elements: int = 2**24,
) -> Tensor:
    """Class votes (N_test, num_classes) for every test feature.

    Test features are processed in chunks so that one similarity block holds at most ``max_elements``
    entries (about 64 MB in float32 by default) whatever the training-set size.
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float().to(train.device), dim=1)
    labels = train_labels.to(train.device, torch.long)
    k_eff = min(k, train.shape[0])
    chunk = max(1, max_elements // train.shape[0])
    votes = []
    for start in range(0, test.shape[0], chunk):
        sims = test[start : start + chunk] @ train.T
        top_sims, top_idx = sims.topk(k_eff, dim=1)
        weights = (top_sims / temperature).exp()
        block = torch.zeros(sims.shape[0], num_classes, device=train.device)
        block.scatter_add_(1, labels[top_idx], weights)
        votes.append(block)
    return torch.cat(votes)


@torch.no_grad()
def knn_classify(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    max_elements: int = 2**24,
) -> KNNResult:
    """Temperature-weighted cosine kNN (DINO defaults ``k=20, T=0.07``); top-5 uses ``min(5, num_classes)``.

    ``k`` larger than the training set is capped at its size.
    """
    for name, feats, labels in (("train", train_feats, train_labels), ("test", test_feats, test_labels)):
        if feats.dim() != 2 or labels.dim() != 1 or feats.shape[0] != labels.shape[0] or feats.shape[0] == 0:
            raise ValueError(
                f"{name} features must be (N, D) and labels (N,) with N > 0, got {tuple(feats.shape)} and "
                f"{tuple(labels.shape)}"
            )
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"train and test feature sizes differ: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    n_cls = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    votes = knn_votes(train_feats, train_labels, test_feats, n_cls, k, temperature, max_elements)
    c1, c5 = topk_correct(votes, test_labels.to(votes.device), (1, 5))
    n = test_feats.shape[0]
    return KNNResult(
        top1=100.0 * c1 / n,
        top5=100.0 * c5 / n,
        k=min(k, train_feats.shape[0]),
        temperature=temperature,
        num_train=train_feats.shape[0],
        num_test=n,
        num_classes=n_cls,
    )

"""Linear evaluation of frozen features: standardise with training statistics, fit one linear layer.

The protocol of the SER scripts (methods.md 1.7) trains the linear head with SGD over augmented images for
50 epochs; at small scale we fit on precomputed features instead, which is the usual cheap proxy (no
augmentation, so it is not numerically comparable with published ImageNet linear-probe numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.evaluation._common import JsonResult, topk_correct


class LinearClassifier(nn.Module):
    """``logits = W ((f - mean) / std) + b``: the standardisation travels with the layer, so the probe can be
    reused on new features (robustness evaluation) without carrying the statistics separately."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor, num_classes: int) -> None:
        super().__init__()
        if mean.dim() != 1 or mean.shape != std.shape:
            raise ValueError(f"mean and std must be (D,) vectors, got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())
        self.linear = nn.Linear(mean.shape[0], num_classes)

    @property
    def num_classes(self) -> int:
        return self.linear.out_features

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected features (N, {self.mean.shape[0]}), got {tuple(features.shape)}")
        return self.linear((features.to(self.mean.dtype) - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, features: Tensor) -> Tensor:
        """Logits without gradient, on the classifier's device."""
        return self(features.to(self.mean.device))


@dataclass
class LinearProbeResult(JsonResult):
    """Accuracies in percent; ``classifier`` (not serialised) maps raw features to logits."""

    top1: float
    top5: float
    train_top1: float
    num_train: int
    num_test: int
    num_classes: int
    epochs: int
    lr: float
    weight_decay: float
    optimizer: str
    classifier: LinearClassifier = field(repr=False, metadata={"json": False})

    def predict(self, features: Tensor) -> Tensor:
        return self.classifier.predict(features)


def standardisation_stats(features: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std; constant dimensions get std 1 so unseen test values stay finite."""
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    return mean, torch.where(std > eps, std, torch.ones_like(std))


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    optimizer: Literal["lbfgs", "adamw"] = "lbfgs",
    num_classes: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> LinearProbeResult:
    """Fit a linear classifier on frozen, standardised features and report test top-1/top-5 (percent).

    ``optimizer="lbfgs"`` (default) minimises the full-batch cross-entropy plus ``weight_decay/2 * ||W||^2``
    with L-BFGS for at most ``epochs`` iterations (``lr`` and ``batch_size`` unused: the line search sets the
    step). It is deterministic and fast while the features fit in memory (10k x 512, 10 classes: ~1 s on one
    CPU core). ``"adamw"`` runs mini-batch AdamW with a cosine schedule for ``epochs`` epochs (decoupled weight
    decay), for sets too large for full-batch steps. Top-5 uses ``min(5, num_classes)``.
    """
    _check_split("train", train_feats, train_labels)
    _check_split("test", test_feats, test_labels)
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"train and test feature sizes differ: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    if epochs < 1 or batch_size < 1 or lr <= 0 or weight_decay < 0:
        raise ValueError("epochs and batch_size must be >= 1, lr > 0 and weight_decay >= 0")
    if optimizer not in ("adamw", "lbfgs"):
        raise ValueError(f"optimizer must be 'adamw' or 'lbfgs', got {optimizer!r}")
    n_cls = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    dev = torch.device(device) if device is not None else train_feats.device
    x_train = train_feats.to(dev, torch.float32)
    y_train = train_labels.to(dev, torch.long)
    if int(y_train.min()) < 0 or int(y_train.max()) >= n_cls:
        raise ValueError(f"train labels must lie in [0, {n_cls})")

    mean, std = standardisation_stats(x_train)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = LinearClassifier(mean, std, n_cls).to(dev)
    z_train = (x_train - mean) / std
    if optimizer == "adamw":
        _fit_adamw(classifier.linear, z_train, y_train, epochs, lr, weight_decay, batch_size, generator)
    else:
        _fit_lbfgs(classifier.linear, z_train, y_train, epochs, weight_decay)
    classifier.eval()

    with torch.no_grad():
        train_correct = sum(
            topk_correct(classifier.linear(z_train[i : i + 4096]), y_train[i : i + 4096], (1,))[0]
            for i in range(0, z_train.shape[0], 4096)
        )
        top1, top5 = _evaluate(classifier, test_feats.to(dev), test_labels.to(dev))
    return LinearProbeResult(
        top1=top1,
        top5=top5,
        train_top1=100.0 * train_correct / z_train.shape[0],
        num_train=z_train.shape[0],
        num_test=test_feats.shape[0],
        num_classes=n_cls,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        classifier=classifier,
    )


def _check_split(name: str, feats: Tensor, labels: Tensor) -> None:
    if feats.dim() != 2 or labels.dim() != 1 or feats.shape[0] != labels.shape[0] or feats.shape[0] == 0:
        raise ValueError(
            f"{name} features must be (N, D) and labels (N,) with N > 0, got {tuple(feats.shape)} and "
            f"{tuple(labels.shape)}"
        )


def _evaluate(classifier: LinearClassifier, feats: Tensor, labels: Tensor, chunk: int = 4096) -> tuple[float, float]:
    c1 = c5 = 0
    for i in range(0, feats.shape[0], chunk):
        a, b = topk_correct(classifier(feats[i : i + chunk]), labels[i : i + chunk], (1, 5))
        c1, c5 = c1 + a, c5 + b
    return 100.0 * c1 / feats.shape[0], 100.0 * c5 / feats.shape[0]


def _fit_adamw(
    linear: nn.Linear,
    z: Tensor,
    y: Tensor,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    opt = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=weight_decay)
    n = z.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(z.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            for group in opt.param_groups:  # cosine decay to zero over all steps
                group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(linear(z[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1


def _fit_lbfgs(linear: nn.Linear, z: Tensor, y: Tensor, iterations: int, weight_decay: float) -> None:
    # The strong-Wolfe line search picks the step length, so the AdamW learning rate has no role here.
    opt = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(linear(z), y) + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)

"""The paper's linear evaluation: SGD linear heads on a frozen backbone, trained on augmented crops.

The protocol of DINO's ``eval_linear`` as SER's scripts configure it (methods.md 1.7): features are the
concatenated [CLS] tokens of the last 4 blocks, each through the final norm (ViT; ``avgpool`` off), or the pooled
last stage (CNN); SGD with momentum 0.9, no weight decay, cosine decay of the lr per epoch, 50 epochs on
RandomResizedCrop + flip views, Resize + CenterCrop validation. Several heads, one per learning rate of the
sweep, train in one pass over the data: one frozen forward feeds all of them, and the best head is reported.
Features are computed per batch and never stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.evaluation._common import JsonResult, autocast, eval_mode, module_device, topk_correct

DEFAULT_LRS = (1.0, 3.0, 10.0)  # multiplied by batch / 256, as in SER's config/eval.yaml


class FrozenFeatures(nn.Module):
    """What the linear heads read: for a ViT backbone, the [CLS] token after each of the last ``n_last_blocks``
    blocks, each through the final norm, concatenated; for any other backbone, its embedding (CNN: the pooled
    last stage). With SER's late [CLS], only blocks after its insertion carry one, and ``n_last_blocks`` is
    capped at their number."""

    def __init__(self, backbone: nn.Module, n_last_blocks: int = 4) -> None:
        super().__init__()
        if n_last_blocks < 1:
            raise ValueError(f"n_last_blocks must be >= 1, got {n_last_blocks}")
        self.backbone = backbone
        vit = getattr(backbone, "vit", None) if getattr(backbone, "family", None) == "vit" else None
        self.blocks: list[nn.Module] = []
        if vit is not None:
            with_cls = len(vit.blocks) - int(getattr(backbone, "cls_insert_after", 0))
            self.blocks = list(vit.blocks)[-min(n_last_blocks, with_cls) :]
            self.norm = vit.norm
        self._outputs: list[Tensor] = []

    @property
    def description(self) -> str:
        if self.blocks:
            return f"[CLS] of the last {len(self.blocks)} blocks"
        return "backbone embedding (pooled last stage)"

    def output_dim(self) -> int:
        width = int(getattr(self.backbone, "embed_dim"))
        return width * len(self.blocks) if self.blocks else width

    def forward(self, images: Tensor) -> Tensor:
        if not self.blocks:
            return self.backbone(images)
        self._outputs = []
        hooks = [b.register_forward_hook(lambda _m, _i, out: self._outputs.append(out)) for b in self.blocks]
        try:
            self.backbone(images)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.cat([self.norm(tokens[:, 0]) for tokens in self._outputs], dim=-1)


class ImageClassifier(nn.Module):
    """Images -> logits: frozen features followed by a linear head (what the transfer sets evaluate)."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images).float())


@dataclass
class LinearEvalResult(JsonResult):
    """Top-1/top-5 (percent) of the best head of the lr sweep, and every head's accuracy (same order as lrs)."""

    top1: float
    top5: float
    best_lr: float
    lrs: list[float]
    top1_per_lr: list[float]
    top5_per_lr: list[float]
    epochs: int
    batch_size: int
    num_train: int
    num_test: int
    num_classes: int
    feature_dim: int
    features: str
    optimizer: str = "sgd"
    head: nn.Linear = field(default=None, repr=False, metadata={"json": False})  # type: ignore[assignment]


def make_heads(dim: int, num_classes: int, count: int, seed: int) -> nn.ModuleList:
    """``count`` linear heads initialised as DINO's ``LinearClassifier`` (weights N(0, 0.01), bias 0)."""
    generator = torch.Generator().manual_seed(seed)
    heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(count))
    with torch.no_grad():
        for head in heads:
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
            head.bias.zero_()
    return heads


def linear_eval(
    features: FrozenFeatures,
    train_epoch: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
    test_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    num_classes: int,
    *,
    epochs: int = 50,
    batch_size: int = 256,
    lrs: Iterable[float] = DEFAULT_LRS,
    amp_dtype: torch.dtype | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> LinearEvalResult:
    """Train one head per lr (``lr * batch_size / 256``) in one pass per epoch; evaluate all; keep the best.

    Args:
        features: the frozen feature extractor (its backbone stays in eval mode, without gradients).
        train_epoch: ``epoch -> (images, labels)`` batches of augmented training views on the features' device.
        test_batches: ``() -> (images, labels)`` validation batches.
        lrs: base learning rates of the sweep, scaled by ``batch_size / 256``.
    """
    base = [float(lr) for lr in lrs]
    if not base or min(base) <= 0 or epochs < 1:
        raise ValueError(f"need at least one lr > 0 and epochs >= 1, got lrs={base}, epochs={epochs}")
    device = module_device(features.backbone)
    dim = features.output_dim()
    heads = make_heads(dim, num_classes, len(base), seed).to(device)
    scaled = [lr * batch_size / 256 for lr in base]
    optimizer = torch.optim.SGD([{"params": h.parameters(), "lr": lr} for h, lr in zip(heads, scaled)],
                                momentum=0.9, weight_decay=0.0)  # fmt: skip
    num_train = 0
    with eval_mode(features.backbone):
        for epoch in range(epochs):
            for group, lr in zip(optimizer.param_groups, scaled):  # cosine to 0, stepped per epoch (DINO)
                group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * epoch / epochs))
            seen, loss_sum = _train_one_epoch(features, heads, optimizer, train_epoch(epoch), device, amp_dtype)
            num_train = num_train or seen
            if log is not None:
                log(f"linear eval epoch {epoch + 1}/{epochs}: mean loss per head {loss_sum / max(seen, 1):.4f}")
        top1, top5, num_test = _evaluate_heads(features, heads, test_batches(), device, amp_dtype)
    best = max(range(len(base)), key=lambda i: (top1[i], top5[i]))
    return LinearEvalResult(
        top1=top1[best], top5=top5[best], best_lr=base[best], lrs=base, top1_per_lr=top1, top5_per_lr=top5,
        epochs=epochs, batch_size=batch_size, num_train=num_train, num_test=num_test, num_classes=num_classes,
        feature_dim=dim, features=features.description, head=heads[best].cpu(),
    )  # fmt: skip


def _frozen(features: FrozenFeatures, images: Tensor, device: torch.device, amp: torch.dtype | None) -> Tensor:
    with torch.no_grad(), autocast(device, amp):
        return features(images.to(device, non_blocking=True)).float()


def _train_one_epoch(
    features: FrozenFeatures, heads: nn.ModuleList, optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor]], device: torch.device, amp: torch.dtype | None,
) -> tuple[int, float]:  # fmt: skip
    seen, loss_sum = 0, 0.0
    for images, labels in batches:
        feats = _frozen(features, images, device, amp)
        labels = labels.to(device, non_blocking=True)
        # the heads are independent: the sum's gradient w.r.t. each head is that head's own loss gradient
        loss = torch.stack([F.cross_entropy(head(feats), labels) for head in heads]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += labels.shape[0]
        loss_sum += float(loss.detach()) * labels.shape[0] / len(heads)
    if seen == 0:
        raise ValueError("no training batches for the linear evaluation")
    return seen, loss_sum


@torch.no_grad()
def _evaluate_heads(
    features: FrozenFeatures, heads: nn.ModuleList, batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device, amp: torch.dtype | None,
) -> tuple[list[float], list[float], int]:  # fmt: skip
    c1, c5, n = [0] * len(heads), [0] * len(heads), 0
    for images, labels in batches:
        feats = _frozen(features, images, device, amp)
        labels = labels.to(device)
        for i, head in enumerate(heads):
            a, b = topk_correct(head(feats), labels, (1, 5))
            c1[i], c5[i] = c1[i] + a, c5[i] + b
        n += labels.shape[0]
    if n == 0:
        raise ValueError("no validation batches for the linear evaluation")
    return [100.0 * c / n for c in c1], [100.0 * c / n for c in c5], n


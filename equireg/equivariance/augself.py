"""AugSelf (Lee et al., NeurIPS 2021): predict the difference of the two views' augmentation parameters.

For each active task k a head φ_k reads the concatenated layer-k representations [y1; y2] of the two T views and
predicts ω_k(t1) − ω_k(t2) (methods.md §2.1); the loss is symmetrised by also feeding [y2; y1] against the
opposite differences, and L = Σ_k w_k · L_k:

* ``crop`` (4): Δ(centre y, centre x, height, width) of the crop boxes, x-centre mirrored when flipped;
* ``color`` (4): Δ of the normalised (brightness, contrast, saturation, hue) factors;
* ``blur`` (1): Δσ;  ``sol`` (1): Δ solarize flag;
* every regression task above is MSE(tanh p, Δ), as the official ``SSObjective`` does for all of them;
* ``flip`` (1): "same flip?" — BCE;  ``rot`` (4): (r1 − r2) mod 4 — cross-entropy; this option rotates both T
  views by random multiples of 90°.

Defaults follow the official ResNet-18 runs (``--ss-crop 1.0 --ss-color 1.0``, heads 2d→512→512→n with bias-free
hidden Linears + BN + ReLU and a biased last Linear, λ = 1). Decoupled as in SER's branch: y is the layer-k vector
(on a standard ViT the intermediate [CLS] through its own LayerNorm); at the last layer it is the final embedding
(the coupled setting).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.augment import ViewParams, augself_targets
from equireg.augment.views import rank_rows
from equireg.equivariance.base import EquivarianceLoss, View, register_equiv_loss
from equireg.equivariance.context import StepContext
from equireg.equivariance.heads import mlp

TASK_SIZES = {"crop": 4, "color": 4, "flip": 1, "blur": 1, "sol": 1, "rot": 4}


class RotatedViewPair(NamedTuple):
    """A T pair whose views were also rotated by ``rotations[i] * 90°`` (counter-clockwise), per sample."""

    view1: Tensor
    view2: Tensor
    params1: ViewParams
    params2: ViewParams
    rotations: tuple[Tensor, Tensor]


def rotate_by(images: Tensor, quarter_turns: Tensor) -> Tensor:
    """Rotate each square image by its own multiple of 90° (exact index permutation)."""
    out = images.clone()
    for k in (1, 2, 3):
        idx = torch.nonzero(quarter_turns == k).squeeze(1)
        if idx.numel():
            out[idx] = torch.rot90(images[idx], k, dims=(-2, -1))
    return out


class RotatedPairPolicy:
    """Wraps a T policy: after T, each view is rotated by an independent uniform multiple of 90°."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None, *, rank: int = 0, world_size: int = 1
    ) -> RotatedViewPair:
        """With ``world_size`` > 1 everything is drawn for the global batch and this rank keeps its rows."""
        dist_kw = {"rank": rank, "world_size": world_size} if world_size > 1 else {}
        pair = self.policy(images, generator=generator, **dist_kw)
        n = images.shape[0]
        rows = rank_rows(n, rank, world_size)
        r1 = torch.randint(0, 4, (n * world_size,), generator=generator)[rows].to(images.device)
        r2 = torch.randint(0, 4, (n * world_size,), generator=generator)[rows].to(images.device)
        return RotatedViewPair(rotate_by(pair.view1, r1), rotate_by(pair.view2, r2), pair.params1, pair.params2, (r1, r2))

    def __repr__(self) -> str:
        return f"RotatedPairPolicy({self.policy!r})"


REGRESSION_TASKS = ("crop", "color", "blur", "sol")


def augself_task_loss(task: str, prediction: Tensor, target: Tensor) -> Tensor:
    """The per-task loss of the official code (targets as built by :func:`augself_targets`)."""
    if task in REGRESSION_TASKS:
        return F.mse_loss(torch.tanh(prediction), target)
    if task == "flip":
        return F.binary_cross_entropy_with_logits(prediction, target)
    if task == "rot":
        return F.cross_entropy(prediction, target.long())
    raise ValueError(f"unknown AugSelf task {task!r}; expected one of {sorted(TASK_SIZES)}")


@register_equiv_loss("augself")
class AugSelfLoss(EquivarianceLoss):
    """Σ_k w_k · L_k(φ_k([y1; y2]), ω_k(t1) − ω_k(t2)), symmetrised over the view order (see module docstring).

    Args:
        in_channels: width of the layer-k representation y.
        weights: task -> weight w_k (tasks: crop, color, flip, blur, sol, rot); default crop 1.0, color 1.0.
        hidden_dim: width of the heads' two hidden layers (512 in the official code).
        jitter_strength: T's (brightness, contrast, saturation, hue) jitter, for normalising colour targets.
        mirror_with_first_flip: reproduce the official quirk that mirrors both x-centres with view 1's flip.
        weight: λ of the whole term (1.0).
    """

    reads = "vector"
    split_views = (View.V1, View.V2)

    def __init__(
        self,
        in_channels: int,
        weights: dict[str, float] | None = None,
        hidden_dim: int = 512,
        jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        mirror_with_first_flip: bool = False,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        weights = {"crop": 1.0, "color": 1.0} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(TASK_SIZES))
        if unknown or not weights:
            raise ValueError(f"augself weights must name tasks from {sorted(TASK_SIZES)}, got {sorted(weights)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"augself task weights must be >= 0, got {weights}")
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        self.heads = nn.ModuleDict(
            {k: mlp([2 * in_channels, hidden_dim, hidden_dim, TASK_SIZES[k]], hidden_bias=False) for k in self.weights}
        )
        self.jitter_strength = tuple(jitter_strength)
        self.mirror_with_first_flip = mirror_with_first_flip

    def adapt_ssl_views(self, views: Any) -> Any:
        return RotatedPairPolicy(views) if "rot" in self.weights else views

    def targets(self, first: ViewParams, second: ViewParams, rotations: tuple[Tensor, Tensor] | None) -> dict[str, Tensor]:
        t = augself_targets(first, second, self.jitter_strength, self.mirror_with_first_flip)  # type: ignore[arg-type]
        if rotations is not None:
            t["rot"] = torch.remainder(rotations[0] - rotations[1], 4)
        return t

    def loss_from(self, y1: Tensor, y2: Tensor, params: tuple[ViewParams, ViewParams],
                  rotations: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The loss for representations ``y1, y2`` (B, d) of views with recorded ``params``."""
        if "rot" in self.weights and rotations is None:
            raise ValueError("augself: the 'rot' task needs the views' rotations (use the RotatedPairPolicy views)")
        forward = self.targets(params[0], params[1], rotations)
        backward = self.targets(params[1], params[0], None if rotations is None else (rotations[1], rotations[0]))
        inputs = torch.cat([torch.cat([y1, y2], dim=1), torch.cat([y2, y1], dim=1)])
        total = y1.new_zeros(())
        for task, weight in self.weights.items():
            target = torch.cat([forward[task], backward[task]]).to(inputs.device)
            prediction = self.heads[task](inputs.float())
            total = total + weight * augself_task_loss(task, prediction, target.float() if task != "rot" else target)
        return total

    def compute(self, ctx: StepContext) -> Tensor:
        pair = ctx.ssl_pair
        rotations = getattr(pair, "rotations", None)
        return self.loss_from(ctx.representation(View.V1), ctx.representation(View.V2), (pair.params1, pair.params2),
                              rotations)

"""Shared helpers for the comparison-method tests: an NT-Xent written as loops from the equation, and a tiny run
that trains a loss a few steps under every invariant objective."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from equireg.config import Config, resolve_config

OBJECTIVE_KWARGS: dict[str, dict[str, Any]] = {
    "moco": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
    "barlow": {"proj_hidden_dim": 32, "proj_dim": 32},
    "simclr": {"proj_hidden_dim": 32, "proj_dim": 16},
}


def nt_xent_reference(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over the 2N anchors of −log(exp(s(x, x⁺)/τ) / Σ_{y ≠ x} exp(s(x, y)/τ)), s = cosine; x⁺ is the
    same-index row of the other set."""
    rows = [r for r in a] + [r for r in b]
    n = a.shape[0]
    total = torch.zeros((), dtype=a.dtype)
    for i, x in enumerate(rows):
        positive = rows[(i + n) % (2 * n)]
        sims = [torch.cosine_similarity(x, y, dim=0) / tau for j, y in enumerate(rows) if j != i]
        total = total - (torch.cosine_similarity(x, positive, dim=0) / tau - torch.logsumexp(torch.stack(sims), 0))
    return total / (2 * n)


def tiny_run_config(run_dir: Path, loss: str, objective: str, equiv_kwargs: dict[str, Any], **extra: Any) -> Config:
    """A 16-px synthetic run with a tiny ResNet, narrow heads and 2 steps."""
    return resolve_config(overrides={
        "data.name": "synthetic", "data.image_size": 16, "data.train_subset": 64, "data.probe_train_size": 32,
        "data.test_size": 32, "data.kwargs": {"num_samples": 128}, "backbone.name": "resnet_test",
        "objective.name": objective, "objective.kwargs": OBJECTIVE_KWARGS[objective],
        "equiv.loss": loss, "equiv.kwargs": equiv_kwargs, "optim.batch_size": 16, "optim.steps": 2,
        "train.precision": "fp32", "train.log_every": 1, "train.checkpoint_every": 2, "train.device": "cpu",
        "train.run_dir": str(run_dir), **extra,
    })


def train_briefly(run_dir: Path, loss: str, objective: str, equiv_kwargs: dict[str, Any], **extra: Any) -> Any:
    """Train 2 steps; returns the trainer after checking the loss stayed finite and the loss's modules learned."""
    from equireg.engine import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(tiny_run_config(run_dir, loss, objective, equiv_kwargs, **extra), progress=False)
    equiv = trainer.recipe.equiv_loss
    before = [p.detach().clone() for p in equiv.parameters()]
    result = trainer.fit()
    assert math.isfinite(result.final_loss)
    moved = [not torch.equal(b, p) for b, p in zip(before, equiv.parameters())]
    assert any(moved), "the equivariance loss's own parameters did not change"
    return trainer

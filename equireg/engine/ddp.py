"""Data-parallel training: the process group from torchrun's environment, synchronised BatchNorm, and views
whose random parameters are drawn for the *global* batch.

Why the views are drawn globally: with per-rank generators, a run on N ranks draws different crops, colours and
group elements than a single process on the same N·B images, so no single-process run reproduces it. Here every
rank seeds the same step generator and the recipe (``recipe.rank``/``recipe.world_size``) calls every view policy
with ``rank``/``world_size``: they sample the parameters of all N·B rows and keep the rank's rows
``[rank·B, (rank+1)·B)``. Sampling parameters costs
microseconds; only the rank's own rows are rendered. With
synchronised BatchNorm (the statistics of the global batch) and the gradient-carrying gathers of
:mod:`equireg.distributed`, one step on N ranks then equals one step of a single process on the global batch
(``tests/engine/test_distributed_train.py`` checks the weights).

CPU runs use gloo and :class:`GlobalBatchNorm` (``torch.nn.SyncBatchNorm`` only runs on accelerators); CUDA runs use
NCCL, one device per ``LOCAL_RANK`` and ``torch.nn.SyncBatchNorm``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from equireg import distributed as dist

__all__ = [
    "DistContext",
    "GlobalBatchNorm",
    "convert_batchnorm",
    "setup_distributed",
    "torchrun_world_size",
    "wrap_ddp",
]


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when absent)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {raw!r}") from None


@dataclass
class DistContext:
    """Where this process trains: its rank, the world size, its device, and whether it owns the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool

    def close(self) -> None:
        """Destroy the process group if :func:`setup_distributed` created it (idempotent)."""
        if self.owns_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        self.owns_group = False


def setup_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``).

    Uses an existing default group when there is one (e.g. created by a test harness); creates one with gloo for
    CPU and NCCL for CUDA when ``WORLD_SIZE > 1``; otherwise returns a single-process context. A CUDA device
    without an explicit index becomes ``cuda:LOCAL_RANK``.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if torch_dist.is_available() and torch_dist.is_initialized():
        return DistContext(dist.rank(), dist.world_size(), local_rank, device, owns_group=False)
    world = torchrun_world_size()
    if world <= 1:
        return DistContext(0, 1, local_rank, device, owns_group=False)
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
                         f"(torchrun --nproc-per-node N -m equireg train ...)")
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, init_method="env://",
                                  device_id=device if device.type == "cuda" else None)
    return DistContext(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank, device, owns_group=True)


# --- BatchNorm over the global batch ----------------------------------------------------------------------------


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the batch over all ranks, on any device.

    Each rank computes its local mean and centred sum of squares; one gradient-carrying gather combines them
    (Chan's parallel formula, numerically as stable as a two-pass variance). Without a process group, or in
    eval mode with running statistics, it is exactly ``BatchNorm``. Parameter and buffer names are those of
    ``nn.BatchNorm*d``, so checkpoints load into the plain modules.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C, ...) input, got {input.dim()}-d")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        use_batch_stats = self.training or self.running_mean is None
        if not (use_batch_stats and dist.is_distributed()):
            return super().forward(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        x = input.float()
        count = input.numel() // c
        mean_local = x.mean(dims)
        m2_local = (x - mean_local.view(shape)).square().sum(dims)
        stats = torch.cat([mean_local, m2_local, mean_local.new_tensor([float(count)])]).unsqueeze(0)
        every = dist.gather(stats)  # (world, 2C + 1), gradient flows back to every rank's rows
        counts = every[:, -1:].detach()
        total = counts.sum()
        mean = (counts * every[:, :c]).sum(0) / total
        m2 = every[:, c : 2 * c].sum(0) + (counts * (every[:, :c] - mean).square()).sum(0)
        var = m2 / total
        if self.training and self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = m2 / (total - 1).clamp_min(1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)  # type: ignore[union-attr]
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


_PLAIN_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``nn.BatchNorm{1,2,3}d`` with a synchronised one (``SyncBatchNorm`` on CUDA,
    :class:`GlobalBatchNorm` elsewhere), keeping weights, buffers and mode.

    Subclasses with extra behaviour (e.g. timm's ``BatchNormAct2d``) are left alone with a warning: swapping
    them would silently drop that behaviour.
    """
    if type(module) in _PLAIN_BN:
        bn: _BatchNorm = module  # type: ignore[assignment]
        cls = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        if bn.affine:
            new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        new.train(bn.training)
        return new
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        warnings.warn(f"{type(module).__name__} is not synchronised across ranks; its statistics stay per rank",
                      stacklevel=2)
    for name, child in module.named_children():
        new_child = convert_batchnorm(child, device)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel over ``module``'s parameters that require gradients (frozen teacher weights are
    skipped by DDP). ``find_unused_parameters`` is on because every recipe leaves some parameters without a
    gradient in a step (e.g. the backbone's ``norm_pooled``, used only by evaluation, or ``norm_equiv`` in a run
    without the equivariance loss)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

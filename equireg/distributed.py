"""Cross-rank helpers that keep gradients, and degrade to identities without a process group.

Why this module exists: the official SER code gathered its token sets with a ``@torch.no_grad`` all-gather, so its
equivariance loss never produced a gradient (methods.md §1.9, caveat 1), and lightly shipped several losses whose
gradient was off by ``1/world_size`` for the same reason. Every collective here that a loss uses is an autograd op
whose backward sums the incoming gradients over ranks. They are two small ``torch.autograd.Function``\ s over the
plain ``torch.distributed`` collectives rather than ``torch.distributed.nn.functional.all_gather``/``all_reduce``:
those compute the same thing but are deprecated (FutureWarning) since torch 2.13, their replacement lives in a
private module, and neither handles ranks holding different numbers of rows.

Gradient convention used by every loss in :mod:`equireg.objectives`: on each rank the loss returns a value whose
mean over ranks equals the single-process loss on the concatenated global batch. DistributedDataParallel averages
parameter gradients over ranks, so the applied gradient is then exactly the single-process gradient. Put differently,
the gradient that reaches a rank's local inputs is ``world_size`` times the single-process gradient of those rows;
``tests/test_distributed.py`` checks this on a 2-process gloo group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_mean",
    "all_reduce_sum",
    "gather",
    "gather_sizes",
    "gather_with_sizes",
    "is_distributed",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True when a default process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks in the default group (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """First-dimension sizes of every rank's tensor, in rank order (``[n]`` when not distributed).

    ``device`` must be one the backend can communicate on (CUDA for NCCL).
    """
    if not is_distributed():
        return [n]
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 with per-rank sizes; backward = sum of the gathered gradient over ranks, own rows."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, t: Tensor, sizes: list[int]) -> Tensor:  # type: ignore[override]
        me = rank()
        ctx.rows = (sum(sizes[:me]), sum(sizes[: me + 1]))  # type: ignore[attr-defined]
        n_max = max(sizes)
        padded = t.contiguous()
        if t.shape[0] < n_max:
            padded = torch.cat([padded, padded.new_zeros((n_max - t.shape[0], *t.shape[1:]))], dim=0)
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss may depend on these rows
        start, stop = ctx.rows  # type: ignore[attr-defined]
        return grad[start:stop], None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward = sum over ranks of the incoming gradient (each rank's loss uses the sum)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, t: Tensor) -> Tensor:  # type: ignore[override]
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def gather_with_sizes(t: Tensor) -> tuple[Tensor, list[int]]:
    """Gradient-carrying all-gather along dim 0, plus each rank's row count.

    Ranks may hold different numbers of rows: sizes are exchanged first and shorter tensors are zero-padded for the
    collective, then trimmed, so padding never reaches a loss. The backward pass sums, over ranks, the gradients
    that flow into this rank's rows (see the module docstring for what that means for a loss).
    """
    if t.dim() == 0:
        raise ValueError("gather expects a tensor with a batch dimension, got a 0-d tensor")
    if not is_distributed():
        return t, [t.shape[0]]
    sizes = gather_sizes(t.shape[0], t.device)
    return _GatherRows.apply(t, sizes), sizes


def gather(t: Tensor) -> Tensor:
    """Gradient-carrying all-gather, concatenated along dim 0 in rank order; identity when not distributed.

    Never replace this with ``torch.distributed.all_gather`` into fresh buffers under ``no_grad``: that silently
    cuts the gradient of everything computed from the gathered rows.
    """
    return gather_with_sizes(t)[0]


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum over ranks with gradient (the backward all-reduces the gradient); identity when not distributed."""
    if not is_distributed():
        return t
    return _AllReduceSum.apply(t)


def all_reduce_mean(t: Tensor) -> Tensor:
    """Mean over ranks with gradient; identity when not distributed."""
    if not is_distributed():
        return t
    return all_reduce_sum(t) / world_size()

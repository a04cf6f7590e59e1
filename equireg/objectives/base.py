"""The objective contract the training engine calls, and the teacher (momentum / EMA) machinery.

An objective owns its heads, its loss and, for methods with one, a teacher: a deep copy of the online backbone and of
the heads named in ``teacher_heads``, with ``requires_grad=False``. The online backbone itself is *not* owned: the
engine passes it to ``__init__`` (to read ``embed_dim`` and copy it) and to ``update_teacher``, and trains it
alongside ``objective.parameters_for_optimizer()``.

Student and teacher never share a tensor: SER's DINO code shared the equivariance projector between them and then
EMA-updated it with itself, shrinking it by ``m(2 - m)`` per step (methods.md §1.9, caveat 5). ``update_teacher``
refuses such pairs. The teacher backbone never keeps stochastic depth: official DINO builds its teacher without
drop-path, and MoCo's momentum encoder has none.

What the framework reads off an objective class before building anything (declared, never guessed): ``has_teacher``,
``crop_min`` (the official RandomResizedCrop scale floor, for T and T_eq's shared crop), ``vit_settings`` (what the
official code does to a ViT backbone: init, frozen patch projection, drop-path) and ``presets`` (named head sizes).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class SplitOutputLike(Protocol):
    """What objectives read from ``backbone.forward_split(x)`` (the backbones' ``SplitOutput``)."""

    embedding: Tensor
    feature_map: Tensor | None


def unwrap_module(module: nn.Module) -> nn.Module:
    """The plain module behind DistributedDataParallel / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def backbone_embed_dim(backbone: nn.Module) -> int:
    """``backbone.embed_dim`` with a clear error when the backbone does not follow the contract."""
    dim = getattr(unwrap_module(backbone), "embed_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"objective: the backbone must expose a positive int `embed_dim`, got {dim!r} "
                         f"on {type(backbone).__name__}")
    return dim


def cosine_momentum(base: float, progress: float) -> float:
    """``m = 1 - (1 - m0)(cos(π p) + 1) / 2``: ``m0`` at the start, 1 at the end (MoCo-v3, BYOL, DINO)."""
    check_progress(progress)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def check_progress(progress: float) -> None:
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be the fraction of training done, in [0, 1], got {progress}")


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``θ_teacher ← m θ_teacher + (1 - m) θ_student`` for every parameter, matched by name.

    Buffers are left alone: as in MoCo-v3 and DINO, the teacher runs in training mode and keeps its own BN statistics.
    """
    t_params = dict(teacher.named_parameters())
    s_params = dict(unwrap_module(student).named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(t_params) ^ set(s_params))[:5]
        raise ValueError(f"update_teacher: student and teacher parameters differ (e.g. {missing}); pass the same "
                         f"online module the objective was built from")
    t_list, s_list = [], []
    for name, t in t_params.items():
        s = s_params[name]
        if t is s or (t.numel() > 0 and t.data_ptr() == s.data_ptr()):
            raise ValueError(f"update_teacher: teacher parameter {name!r} shares storage with the student; an EMA "
                             f"would update it with itself (SER's DINO defect)")
        t_list.append(t)
        s_list.append(s.detach().to(dtype=t.dtype))
    if t_list:
        torch._foreach_lerp_(t_list, s_list, 1.0 - momentum)


class Objective(nn.Module):
    """Base class of the invariance objectives (see the module docstring for who owns what).

    Subclasses set the class attributes, build heads and loss in ``__init__``, call :meth:`init_teacher` when they
    have a teacher, and implement :meth:`loss`.
    """

    name: ClassVar[str] = ""
    has_teacher: ClassVar[bool] = False
    teacher_heads: ClassVar[tuple[str, ...]] = ()  # student head attributes the teacher copies
    crop_min: ClassVar[float] = 0.08  # RandomResizedCrop scale (crop_min, 1) of the official recipe
    vit_settings: ClassVar[Mapping[str, Any]] = {}  # ViTBackbone's init / freeze_patch_embed / drop_path_rate
    presets: ClassVar[Mapping[str, Mapping[str, int]]] = {}  # named head sizes ("paper", "small")

    def __init__(self, backbone: nn.Module, base_momentum: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: base_momentum must be in [0, 1], got {base_momentum}")
        self.embed_dim = backbone_embed_dim(backbone)
        self.base_momentum = base_momentum
        self.teacher: nn.ModuleDict | None = None

    # teacher -----------------------------------------------------------------------------------------------------
    def init_teacher(self, backbone: nn.Module) -> None:
        """Build the teacher as deep copies of ``backbone`` and of the heads in ``teacher_heads`` (call last)."""
        if not hasattr(unwrap_module(backbone), "forward_split"):
            raise ValueError(f"{type(self).__name__}: the backbone must implement forward_split(x)")
        parts = {"backbone": unwrap_module(backbone), **{k: getattr(self, k) for k in self.teacher_heads}}
        self.teacher = nn.ModuleDict({k: copy.deepcopy(m) for k, m in parts.items()})
        for p in self.teacher.parameters():
            p.requires_grad_(False)
            p.grad = None
        without_stochastic_depth(self.teacher)

    @property
    def teacher_backbone(self) -> nn.Module | None:
        """The teacher's backbone (the step context runs it without gradient); None without a teacher."""
        return None if self.teacher is None else self.teacher["backbone"]

    def momentum(self, progress: float) -> float:
        """Teacher momentum at ``progress`` in [0, 1] (cosine from ``base_momentum`` to 1; 1 without a teacher)."""
        return cosine_momentum(self.base_momentum, progress)

    def update_teacher(self, backbone: nn.Module, progress: float) -> None:
        """One EMA step of the teacher towards the online backbone and heads; a no-op without a teacher."""
        if self.teacher is None:
            return
        m = self.momentum(progress)
        ema_update_(self.teacher["backbone"], backbone, m)
        for key in self.teacher_heads:
            ema_update_(self.teacher[key], getattr(self, key), m)

    # training hooks ----------------------------------------------------------------------------------------------
    def loss(self, z1: Tensor, z2: Tensor, t1: Tensor | None, t2: Tensor | None, progress: float) -> Tensor:
        """Invariance loss from online embeddings ``z1, z2`` (B, D) and the teacher backbone's embeddings ``t1, t2``
        of the same views (None without a teacher)."""
        raise NotImplementedError

    def after_backward(self, progress: float) -> None:
        """Called by the engine between ``backward()`` and ``optimizer.step()``; no-op by default."""

    def parameters_for_optimizer(self) -> list[nn.Parameter]:
        """Trainable parameters owned by the objective (heads), excluding the teacher and frozen parameters.

        The online backbone is not included: the engine adds ``backbone.parameters()`` itself.
        """
        teacher_ids = {id(p) for p in self.teacher.parameters()} if self.teacher is not None else set()
        return [p for p in self.parameters() if p.requires_grad and id(p) not in teacher_ids]

    # helpers -----------------------------------------------------------------------------------------------------
    def _require_teacher_outputs(self, t1: Tensor | None, t2: Tensor | None) -> tuple[Tensor, Tensor]:
        if t1 is None or t2 is None:
            raise ValueError(f"{self.name}: loss() needs the teacher backbone's embeddings t1, t2 of the two views")
        return t1, t2

    @staticmethod
    def _check_embeddings(name: str, z1: Tensor, z2: Tensor, dim: int) -> None:
        if z1.dim() != 2 or z1.shape != z2.shape or z1.shape[1] != dim:
            raise ValueError(f"{name}: expected online embeddings z1, z2 of shape (B, {dim}), got {tuple(z1.shape)} "
                             f"and {tuple(z2.shape)}")


def without_stochastic_depth(module: nn.Module) -> None:
    """Set every drop-path probability in ``module`` to 0 (timm's ``DropPath`` modules)."""
    from timm.layers import DropPath

    for m in module.modules():
        if isinstance(m, DropPath):
            m.drop_prob = 0.0


def resolve_preset(objective: str, presets: dict[str, dict[str, int]], preset: str, **given: int | None) -> dict[str, int]:
    """Head sizes from ``presets[preset]``, overridden by every ``given`` value that is not None."""
    if preset not in presets:
        raise ValueError(f"{objective}: preset must be one of {sorted(presets)}, got {preset!r}")
    return {k: (given[k] if given.get(k) is not None else v) for k, v in presets[preset].items()}  # type: ignore[misc]

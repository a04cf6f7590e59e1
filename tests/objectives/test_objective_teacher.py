"""Momentum schedule, EMA teacher updates and the student/teacher separation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TinyBackbone

from equireg.objectives import create_objective, ema_update_
from equireg.objectives.base import cosine_momentum


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_cosine_momentum_endpoints() -> None:
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.982, 0.25) == pytest.approx(1 - 0.018 * (math.cos(math.pi / 4) + 1) / 2)
    with pytest.raises(ValueError, match="progress"):
        cosine_momentum(0.99, 1.5)


@pytest.mark.parametrize("name,m0", [("moco", 0.99), ("dino", 0.982), ("barlow", 1.0), ("simclr", 1.0)])
def test_objective_momentum_defaults(tiny_backbone: TinyBackbone, name: str, m0: float) -> None:
    obj = create_objective(name, backbone=tiny_backbone, preset="small")
    assert obj.momentum(0.0) == pytest.approx(m0)
    assert obj.momentum(1.0) == pytest.approx(1.0)
    assert obj.has_teacher is (obj.teacher is not None)


@pytest.mark.parametrize("name,head", [("moco", "projector"), ("dino", "head")])
def test_teacher_update_moves_towards_student(tiny_backbone: TinyBackbone, name: str, head: str) -> None:
    obj = create_objective(name, backbone=tiny_backbone, preset="small")
    assert obj.teacher is not None
    with torch.no_grad():  # make the student differ from its copy
        for p in list(tiny_backbone.parameters()) + list(getattr(obj, head).parameters()):
            p.add_(torch.randn_like(p))
    for teacher_part, student in (("backbone", tiny_backbone), (head, getattr(obj, head))):
        before = (_flat(obj.teacher[teacher_part]) - _flat(student)).norm()
        assert before > 0
    progress = 0.3
    m = obj.momentum(progress)
    old_teacher = _flat(obj.teacher["backbone"])
    obj.update_teacher(tiny_backbone, progress)
    # θ_t' - θ_s = m (θ_t - θ_s): the gap shrinks by exactly m, for the backbone and for the head copy
    torch.testing.assert_close(_flat(obj.teacher["backbone"]) - _flat(tiny_backbone),
                               m * (old_teacher - _flat(tiny_backbone)))
    after_head = (_flat(obj.teacher[head]) - _flat(getattr(obj, head))).norm()
    assert after_head < before


def test_teacher_gets_no_gradient_and_is_not_optimised(tiny_backbone: TinyBackbone) -> None:
    obj = create_objective("moco", backbone=tiny_backbone, preset="small")
    assert obj.teacher is not None
    teacher_ids = {id(p) for p in obj.teacher.parameters()}
    assert all(not p.requires_grad for p in obj.teacher.parameters())
    assert teacher_ids.isdisjoint(id(p) for p in obj.parameters_for_optimizer())
    assert {id(p) for p in obj.projector.parameters()} <= {id(p) for p in obj.parameters_for_optimizer()}
    student_ptrs = {p.data_ptr() for p in list(tiny_backbone.parameters()) + list(obj.projector.parameters())}
    assert student_ptrs.isdisjoint(p.data_ptr() for p in obj.teacher.parameters())

    x1, x2 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        t1, t2 = obj.teacher_backbone(x1), obj.teacher_backbone(x2)
    assert not t1.requires_grad
    loss = obj.loss(tiny_backbone(x1), tiny_backbone(x2), t1, t2, 0.0)
    loss.backward()
    assert all(p.grad is None for p in obj.teacher.parameters())
    assert all(p.grad is not None for p in obj.predictor.parameters())


def test_ema_refuses_shared_parameters() -> None:
    shared = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="shares storage"):
        ema_update_(shared, shared, 0.9)
    with pytest.raises(ValueError, match="differ"):
        ema_update_(torch.nn.Linear(3, 3), torch.nn.Sequential(torch.nn.Linear(3, 3)), 0.9)


def test_teacherless_objectives(tiny_backbone: TinyBackbone) -> None:
    obj = create_objective("barlow", backbone=tiny_backbone, preset="small")
    assert obj.teacher_backbone is None
    obj.update_teacher(tiny_backbone, 0.5)  # no-op
    assert len(obj.parameters_for_optimizer()) == len(list(obj.parameters()))


def test_teacher_never_keeps_stochastic_depth() -> None:
    """An EMA teacher made from a backbone with drop-path > 0 has drop-path 0 (official DINO; MoCo has none)."""
    from equireg.backbones import create_backbone

    backbone = create_backbone("vit_test", drop_path_rate=0.1)
    obj = create_objective("dino", backbone=backbone, preset="small")
    teacher = obj.teacher_backbone
    assert teacher is not None
    teacher.train()  # the teacher runs in training mode, like the student
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), teacher(x), atol=0, rtol=0)
    assert backbone.vit.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # the student keeps its drop-path

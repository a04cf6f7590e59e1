"""Registry, contract checks, and two training steps of every objective on a tiny stand-in backbone."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TinyBackbone

from equireg.objectives import Objective, create_objective, list_objectives, register_objective
from equireg.objectives.registry import OBJECTIVES
from equireg.registry import UnknownNameError

TINY = {
    "moco": {"proj_hidden_dim": 32, "proj_dim": 8, "pred_hidden_dim": 32},
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 8, "freeze_last_layer_frac": 0.0},
    "barlow": {"proj_hidden_dim": 32, "proj_dim": 32},
    "simclr": {"proj_hidden_dim": 32, "proj_dim": 8},
}
CROP_MIN = {"moco": 0.08, "dino": 0.25, "barlow": 0.08, "simclr": 0.08}  # methods.md §7.2


def _teacher(obj: Objective, x: torch.Tensor) -> torch.Tensor | None:
    if obj.teacher_backbone is None:
        return None
    with torch.no_grad():
        return obj.teacher_backbone(x)


def test_registry_lists_and_rejects() -> None:
    assert set(CROP_MIN) <= set(list_objectives())
    assert list_objectives("b*") == ["barlow"]
    with pytest.raises(UnknownNameError, match="moco"):
        create_objective("byol", backbone=TinyBackbone())


@pytest.mark.parametrize("name", sorted(TINY))
def test_two_training_steps(name: str) -> None:
    backbone = TinyBackbone()
    obj = create_objective(name, backbone=backbone, **TINY[name])
    assert obj.name == name
    assert type(obj).crop_min == CROP_MIN[name]
    params = list(backbone.parameters()) + obj.parameters_for_optimizer()
    opt = torch.optim.SGD(params, lr=0.05)
    start = [p.detach().clone() for p in params]
    teacher_start = [p.detach().clone() for p in obj.teacher.parameters()] if obj.teacher is not None else []
    for step in range(2):
        progress = step / 2
        x1, x2 = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
        t1, t2 = _teacher(obj, x1), _teacher(obj, x2)
        loss = obj.loss(backbone.forward_split(x1).embedding, backbone.forward_split(x2).embedding, t1, t2, progress)
        assert loss.dim() == 0 and math.isfinite(loss.item())
        opt.zero_grad()
        loss.backward()
        obj.after_backward(progress)
        opt.step()
        obj.update_teacher(backbone, progress)
    assert any(not torch.equal(a, p) for a, p in zip(start, params))
    if obj.teacher is not None:
        assert any(not torch.equal(a, p) for a, p in zip(teacher_start, obj.teacher.parameters()))


def test_dino_freezes_last_layer_early() -> None:
    backbone = TinyBackbone()
    obj = create_objective("dino", backbone=backbone, out_dim=32, hidden_dim=16, bottleneck_dim=8,
                           freeze_last_layer_frac=0.5)
    x1, x2 = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    loss = obj.loss(backbone(x1), backbone(x2), _teacher(obj, x1), _teacher(obj, x2), 0.1)
    loss.backward()
    assert obj.head.last_layer.weight_v.grad is not None
    obj.after_backward(0.6)
    assert obj.head.last_layer.weight_v.grad is not None
    obj.after_backward(0.1)
    assert obj.head.last_layer.weight_v.grad is None


def test_contract_errors() -> None:
    backbone = TinyBackbone()
    with pytest.raises(ValueError, match="embed_dim"):
        create_objective("simclr", backbone=torch.nn.Linear(3, 3))
    obj = create_objective("moco", backbone=backbone, **TINY["moco"])
    z = torch.randn(4, backbone.embed_dim)
    with pytest.raises(ValueError, match="teacher backbone's embeddings"):
        obj.loss(z, z, None, None, 0.0)
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        obj.loss(z[:, :3], z[:, :3], None, None, 0.0)
    with pytest.raises(ValueError, match="progress"):
        create_objective("simclr", backbone=backbone, **TINY["simclr"]).loss(z, z, None, None, 1.5)
    with pytest.raises(ValueError, match="preset"):
        create_objective("barlow", backbone=backbone, preset="huge")


def test_paper_preset_sizes() -> None:
    backbone = TinyBackbone()
    moco = create_objective("moco", backbone=backbone)
    assert [m.out_features for m in moco.projector if isinstance(m, torch.nn.Linear)] == [4096, 4096, 256]
    assert [m.out_features for m in moco.predictor if isinstance(m, torch.nn.Linear)] == [4096, 256]
    assert moco.criterion.temperature == 0.2
    simclr = create_objective("simclr", backbone=backbone)
    assert [m.out_features for m in simclr.projector if isinstance(m, torch.nn.Linear)] == [2048, 128]


def test_registry_takes_only_objective_classes() -> None:
    with pytest.raises(TypeError, match="subclass of Objective"):
        register_objective("test_function")(lambda backbone: None)


def test_register_custom_objective() -> None:
    @register_objective("test_mean_l2", override=True)
    class MeanL2(Objective):
        name = "test_mean_l2"

        def loss(self, z1, z2, t1, t2, progress):  # type: ignore[no-untyped-def]
            return (z1 - z2).pow(2).mean()

    try:
        obj = create_objective("test_mean_l2", backbone=TinyBackbone())
        assert isinstance(obj, MeanL2) and obj.teacher_backbone is None
    finally:
        OBJECTIVES._factories.pop("test_mean_l2", None)


@pytest.mark.parametrize("name", ["moco", "dino"])
def test_teacher_objectives_on_a_real_vit(name: str) -> None:
    backbones = pytest.importorskip("equireg.backbones")
    backbone = backbones.create_backbone("vit_mini_p4_32")
    obj = create_objective(name, backbone=backbone, **TINY[name])
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    t1, t2 = _teacher(obj, x1), _teacher(obj, x2)
    assert t1 is not None and not t1.requires_grad
    loss = obj.loss(backbone.forward_split(x1).embedding, backbone.forward_split(x2).embedding, t1, t2, 0.0)
    loss.backward()
    assert math.isfinite(loss.item())
    obj.update_teacher(backbone, 0.0)

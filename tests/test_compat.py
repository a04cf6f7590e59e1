"""The torchvision shim: import works, and a second call is harmless."""

from __future__ import annotations

from equireg.compat import ensure_torchvision_importable


def test_torchvision_and_timm_import() -> None:
    assert ensure_torchvision_importable() is True
    assert ensure_torchvision_importable() is True  # idempotent
    import timm
    import torchvision.ops.misc as misc

    assert hasattr(misc, "FrozenBatchNorm2d")
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    assert model.num_features == 512

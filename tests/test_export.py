"""Exported backbones load into timm (stock models through timm's own pretrained path, with no missing keys)
and give exactly equireg's embedding; the kinds stock timm cannot build load through equireg's timm module."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import equireg  # noqa: F401  (torchvision shim before timm)
import timm
from equireg.backbones import create_backbone
from equireg.export import (
    ExportError,
    LateClsVisionTransformer,
    build_timm_model,
    check_export,
    create_timm_model,
    load_snippet,
    read_metadata,
    save_export,
    timm_export,
)

STOCK = [
    ("vit_test", {"cls_position": "input"}, 16),
    ("vit_test", {"cls_position": "after_equiv", "split_layer": 4}, 16),  # [CLS] at the input, no position slot
    ("resnet_test", {}, 32),
    ("resnet_test", {"in_chans": 1}, 32),
]


def _trained_like(backbone: torch.nn.Module) -> torch.nn.Module:
    """Weights and BatchNorm statistics away from their initial values, so a mix-up cannot pass."""
    with torch.no_grad():
        for name, tensor in backbone.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor))
                if name.endswith("running_var"):
                    tensor.abs_()
    return backbone.eval()


@pytest.mark.parametrize("name, kwargs, size", STOCK)
def test_stock_models_load_through_timm_pretrained(tmp_path: Path, name: str, kwargs: dict, size: int,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    backbone = _trained_like(create_backbone(name, **kwargs))
    export = timm_export(backbone)
    assert export.stock_timm
    path = tmp_path / "backbone.safetensors"
    save_export(export, path, {"split_layer": backbone.split_layer})
    with caplog.at_level(logging.INFO, logger="timm"):
        model = timm.create_model(export.model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                  **export.kwargs).eval()
    assert not [r for r in caplog.records if "Missing keys" in r.getMessage() or "Unexpected" in r.getMessage()]
    fresh = timm.create_model(export.model_name, pretrained=False, **export.kwargs)
    result = fresh.load_state_dict(export.state_dict, strict=True)  # no missing, no unexpected keys
    assert not result.missing_keys and not result.unexpected_keys
    images = torch.randn(3, backbone.in_chans, size, size)
    with torch.no_grad():
        assert torch.equal(model(images), backbone(images))
    assert check_export(backbone, path, size) == 0.0


def test_printed_snippet_runs_and_matches(tmp_path: Path) -> None:
    backbone = _trained_like(create_backbone("vit_test", cls_position="input"))
    path = tmp_path / "vit.safetensors"
    export = timm_export(backbone)
    save_export(export, path, {})
    snippet = load_snippet(export, path)
    assert snippet.startswith("import timm\nmodel = timm.create_model('vit_tiny_patch16_224', pretrained=True, "
                              f"pretrained_cfg_overlay=dict(file={str(path)!r}), ")
    namespace: dict = {}
    exec(snippet, namespace)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(namespace["model"].eval()(images), backbone(images))


def test_late_cls_vit_is_a_timm_subclass_with_equal_features(tmp_path: Path) -> None:
    backbone = _trained_like(create_backbone("vit_test", cls_position="after_equiv", split_layer=2))
    export = timm_export(backbone)
    assert not export.stock_timm and export.cls_insert_after == 2
    path = tmp_path / "late.pth"  # the torch container this time
    save_export(export, path, {"cls_position": "after_equiv"})
    model = create_timm_model(path)
    assert isinstance(model, LateClsVisionTransformer) and isinstance(model, timm.models.VisionTransformer)
    assert "create_timm_model" in load_snippet(export, path) and "after block 2" in load_snippet(export, path)
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(images), backbone(images))
        # intermediates: before the insertion point there is no [CLS] to strip, after it there is
        early = backbone._run(images, tap=2, stop_at_tap=True)[0]
        late = backbone._run(images, tap=4, stop_at_tap=False)[0]
        maps = model.forward_intermediates(images, indices=[1, 3], output_fmt="NLC", intermediates_only=True)
    assert torch.equal(maps[0], early) and torch.equal(maps[1], late[:, 1:])
    # a grid other than the native one (scale views): positions resampled with the backbone's official rule
    other = torch.randn(2, 3, 12, 20)
    with torch.no_grad():
        assert torch.allclose(model(other), backbone(other), atol=1e-6)
    # built directly from the full architecture arguments, it loads the same file
    direct = LateClsVisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2, num_classes=0,
                                      dynamic_img_size=True, cls_insert_after=2)
    direct.load_state_dict(export.state_dict, strict=True)
    with torch.no_grad():
        assert torch.equal(direct.eval()(images), backbone(images))
    with pytest.raises(ValueError, match="cls_insert_after"):
        LateClsVisionTransformer(depth=4, embed_dim=32, num_heads=2, cls_insert_after=4)


def test_cifar_stem_resnet_and_metadata(tmp_path: Path) -> None:
    backbone = _trained_like(create_backbone("resnet18_cifar", split_layer=2))
    export = timm_export(backbone)
    assert not export.stock_timm and export.stem == "cifar"
    path = tmp_path / "r18.safetensors"
    save_export(export, path, {"split_layer": 2, "run": {"objective": "moco"}})
    meta = read_metadata(path)
    assert meta["equireg_version"] == equireg.__version__ and meta["split_layer"] == "2"
    assert meta["stem"] == "cifar" and meta["loader"] == "equireg.export.create_timm_model"
    assert meta["run"] == '{"objective": "moco"}'
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(create_timm_model(path)(images), backbone(images))
    assert type(build_timm_model(export.model_name, export.kwargs)).__name__ == "ResNet"


def test_unknown_backbone_and_suffix(tmp_path: Path) -> None:
    export = timm_export(create_backbone("resnet_test"))
    with pytest.raises(ExportError, match="unknown file type '.bin'"):
        save_export(export, tmp_path / "x.bin", {})
    assert not list(tmp_path.iterdir())
    with pytest.raises(ExportError, match="not one of equireg's timm backbones"):
        timm_export(torch.nn.Linear(2, 2))
    with pytest.raises(ExportError, match="not an equireg timm export"):
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        create_timm_model(tmp_path / "other.safetensors")


def test_docs_export_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python example of docs/backbones.md "Export to timm" runs as written (in a scratch folder)."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "backbones.md").read_text()
    section = doc.split("## Export to timm", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/backbones.md: Export to timm", "exec"), {"__name__": "docs_example"})
    assert (tmp_path / "backbone.safetensors").is_file() and (tmp_path / "late_cls.safetensors").is_file()

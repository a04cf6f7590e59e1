"""CNN wrapper: stages as split layers, the CIFAR stem, and equality with timm's own pooled features."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import equireg  # noqa: F401  (torchvision shim before timm)
import timm
from equireg.backbones import TimmCNNBackbone, create_backbone


def _eval(name: str = "resnet_test", **kwargs) -> TimmCNNBackbone:
    backbone = create_backbone(name, **kwargs)
    assert isinstance(backbone, TimmCNNBackbone)
    return backbone.eval()


def _reference_stages(model: nn.Module, x: Tensor) -> list[Tensor]:
    """ResNet stage outputs written out by hand: stem, max-pool, then layer1..layer4."""
    x = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    outputs = []
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(model, name)(x)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("stem, strides", [("imagenet", [4, 8, 16, 32]), ("cifar", [1, 2, 4, 8])])
def test_split_shapes_match_layer_info_at_every_stage(stem: str, strides: list[int]) -> None:
    backbone = _eval(stem=stem)
    assert [i.stride for i in backbone.layer_info()] == strides
    assert [i.channels for i in backbone.layer_info()] == [8, 16, 32, 64]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stages = _reference_stages(backbone.model, x)
        for info in backbone.layer_info():
            out = backbone.forward_split(x, info.index)
            assert out.feature_map.shape == (2, info.channels, 32 // info.stride, 32 // info.stride)
            torch.testing.assert_close(out.feature_map, stages[info.index - 1])
            torch.testing.assert_close(backbone.forward_map(x, info.index), stages[info.index - 1])
            assert out.pooled.shape == (2, info.channels)
            assert out.embedding.shape == (2, backbone.embed_dim) == (2, 64)


def test_embedding_equals_timm_pre_logits_features_for_the_same_weights() -> None:
    backbone = _eval()
    reference = timm.create_model("resnet18", pretrained=False, num_classes=0, layers=(1, 1, 1, 1),
                                  channels=(8, 16, 32, 64))
    reference.load_state_dict(backbone.model.state_dict())
    reference.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(x), pre_logits=True)
        torch.testing.assert_close(backbone(x), expected)
        torch.testing.assert_close(backbone.forward_split(x).embedding, expected)
        torch.testing.assert_close(expected, _reference_stages(reference, x)[-1].mean(dim=(2, 3)))


def test_cifar_stem_is_a_stride_one_3x3_conv_without_max_pool() -> None:
    backbone = _eval(stem="cifar")
    conv1 = backbone.model.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.padding == (1, 1)
    assert isinstance(backbone.model.maxpool, nn.Identity)
    assert backbone.forward_map(torch.randn(1, 3, 32, 32), 1).shape == (1, 8, 32, 32)


def test_default_split_is_the_stride_8_stage_unless_it_is_the_last() -> None:
    assert _eval().split_layer == 2  # strides 4, 8, 16, 32
    assert _eval(stem="cifar").split_layer == 2  # strides 1, 2, 4, 8: the middle stage


def test_forward_map_stops_after_stage_k() -> None:
    backbone = _eval(split_layer=2)
    ran: list[str] = []
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(backbone.model, name).register_forward_hook(lambda *_a, n=name: ran.append(n))
    backbone.forward_map(torch.randn(1, 3, 16, 16))
    assert ran == ["layer1", "layer2"]


def test_pooled_is_the_layer_normed_stage_average() -> None:
    backbone = _eval(split_layer=3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = backbone.forward_split(x)
        stage = _reference_stages(backbone.model, x)[2]
        mean = stage.mean(dim=(2, 3))
        torch.testing.assert_close(out.pooled, backbone.norm_pooled(mean))
        other = backbone.forward_split(x, layer=1).pooled  # no learned norm there: plain standardisation
    assert backbone.norm_pooled.normalized_shape == (32,)
    torch.testing.assert_close(other.mean(dim=1), torch.zeros(2), atol=1e-5, rtol=0)


def test_gradient_reaches_stages_up_to_k_from_the_map() -> None:
    backbone = create_backbone("resnet_test", split_layer=2)
    backbone.forward_map(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert backbone.model.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in backbone.model.layer2.parameters())
    assert all(p.grad is None for p in backbone.model.layer3.parameters())


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="valid layers: 1, 2, 3, 4"):
        create_backbone("resnet_test", split_layer=5)
    with pytest.raises(ValueError, match="valid layers"):
        _eval().forward_map(torch.randn(1, 3, 16, 16), layer=0)
    with pytest.raises(ValueError, match="stem must be one of"):
        create_backbone("resnet_test", stem="tiny")
    with pytest.raises(ValueError, match="num_classes"):
        create_backbone("resnet_test", num_classes=10)


def test_timm_resolver_wraps_other_cnns_and_deep_stems() -> None:
    deep = _eval("timm:resnet10t", stem="cifar", channels=(8, 8, 16, 16), in_chans=1)
    assert [i.stride for i in deep.layer_info()] == [1, 2, 4, 8]
    assert deep.model.conv1[0].stride == (1, 1)
    with torch.no_grad():
        assert deep.forward_map(torch.randn(1, 1, 16, 16), 2).shape == (1, 8, 8, 8)
    convnext = _eval("timm:convnext_atto", dims=(8, 16, 24, 32))
    assert [(i.channels, i.stride) for i in convnext.layer_info()] == [(8, 4), (16, 8), (24, 16), (32, 32)]
    assert convnext.split_layer == 2
    with torch.no_grad():
        out = convnext.forward_split(torch.randn(2, 3, 32, 32))
    assert out.feature_map.shape == (2, 16, 4, 4) and out.embedding.shape == (2, 32)
    with pytest.raises(ValueError, match="stem='cifar' needs a ResNet-style"):
        create_backbone("timm:convnext_atto", stem="cifar", dims=(8, 16, 24, 32))


def test_bf16_weight_gradients_stay_finite_when_a_stage_sees_one_pixel() -> None:
    """At 16 px the stride-2 conv entering stage 4 of ``resnet_test`` gets a 1x1 map; CPU's bf16 weight gradient
    for it holds uninitialised values (inf/NaN in some repetitions), so such training passes run in fp32."""
    torch.manual_seed(0)
    backbone = create_backbone("resnet_test")
    for _ in range(40):  # without the fp32 guard, about 1 repetition in 5 came back non-finite
        backbone.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = backbone.forward_split(torch.randn(128, 3, 16, 16), 4)
        out.embedding.float().square().mean().backward()
        assert out.embedding.dtype == torch.float32
        bad = [n for n, p in backbone.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, bad


def test_bf16_autocast_is_kept_where_no_stage_sees_one_pixel() -> None:
    backbone = create_backbone("resnet_test")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert backbone(torch.randn(2, 3, 32, 32)).dtype == torch.bfloat16  # stage 4 gets a 2x2 map
        assert backbone.forward_map(torch.randn(2, 3, 16, 16), 3).dtype == torch.bfloat16  # stops before stage 4
        with torch.no_grad():  # forward passes are right in bf16; only weight gradients are not
            assert backbone(torch.randn(2, 3, 16, 16)).dtype == torch.bfloat16

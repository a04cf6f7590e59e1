"""The equivariance score: exactly equivariant networks score 1, random CNNs clearly less, and the number
matches a reference written out with torch.rot90 / torch.flip."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.backbones import SplitOutput, create_backbone
from equireg.evaluation import element_linear_scale, equivariance_score, render_table
from equireg.evaluation.equivariance import zero_safe_cosine
from equireg.groups import create_group


class MapBackbone(nn.Module):
    """Backbone contract around a map network: embedding = linear head on the spatially pooled map."""

    def __init__(self, map_net: nn.Module, channels: int, embed_dim: int = 5) -> None:
        super().__init__()
        self.map_net = map_net
        self.head = nn.Linear(channels, embed_dim)

    def forward_map(self, x: Tensor, layer: int | None = None) -> Tensor:
        return self.map_net(x)

    def forward_split(self, x: Tensor, layer: int | None = None) -> SplitOutput:
        fmap = self.forward_map(x, layer)
        return SplitOutput(embedding=self.head(fmap.mean(dim=(2, 3))), feature_map=fmap, pooled=None)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_split(x).embedding


def random_cnn(bias: bool = False) -> nn.Module:
    """Plain CNN (one strided layer); its map is not equivariant to anything. Without biases, so that the raw
    cosine is not dominated by a constant vector shared by all positions (see the ``center`` test)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=bias), nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, bias=bias),
    )


class GroupAveraged(nn.Module):
    """F_avg(x) = mean_h rho_{h^-1} F(rho_h x): exactly equivariant for a finite group acting by permutations."""

    def __init__(self, net: nn.Module, group: object) -> None:
        super().__init__()
        self.net, self.group = net, group

    def forward(self, x: Tensor) -> Tensor:
        elements = self.group.elements()  # type: ignore[attr-defined]
        outs = [self.group.act(self.net(self.group.act(x, h)), ~h) for h in elements]  # type: ignore[attr-defined]
        return torch.stack(outs).mean(dim=0)


@pytest.fixture
def images() -> Tensor:
    return torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_zero_safe_cosine() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 0.0], [-1.0, -2.0], [1.0, 0.0]])
    torch.testing.assert_close(zero_safe_cosine(a, b), torch.tensor([1.0, 1.0, -1.0, 0.0]))


def test_element_linear_scale() -> None:
    scale = create_group("scale")
    assert element_linear_scale(scale, scale.generators()["scale"]) == pytest.approx(1.3, abs=0.005)
    assert element_linear_scale(scale, scale.make(scale=0.7)) == pytest.approx(0.7, abs=0.005)
    c8 = create_group("c8")
    assert element_linear_scale(c8, c8.make(rot=1)) == pytest.approx(1.0, abs=0.005)
    p4m = create_group("p4m")
    assert element_linear_scale(p4m, p4m.generators()["rot90"]) == 1.0


def test_group_averaged_network_scores_one_and_random_cnn_clearly_less(images: Tensor) -> None:
    p4m = create_group("p4m")
    cnn = random_cnn()
    plain = equivariance_score(MapBackbone(cnn, 12), images, p4m)
    averaged = equivariance_score(MapBackbone(GroupAveraged(cnn, p4m), 12), images, p4m)
    assert set(averaged.map_scores) == {"rot90", "flip"}
    for kind in ("rot90", "flip"):
        assert averaged.map_scores[kind] >= 0.999
        assert averaged.embedding_scores[kind] >= 0.999
        assert plain.map_scores[kind] <= averaged.map_scores[kind] - 0.1, plain.map_scores


def test_centering_removes_a_shared_offset_but_keeps_exact_equivariance(images: Tensor) -> None:
    p4m = create_group("p4m")
    biased = random_cnn(bias=True)
    raw = equivariance_score(MapBackbone(biased, 12), images, p4m)
    centred = equivariance_score(MapBackbone(biased, 12), images, p4m, center=True)
    averaged = equivariance_score(MapBackbone(GroupAveraged(biased, p4m), 12), images, p4m, center=True)
    assert centred.centered and not raw.centered
    for kind in ("rot90", "flip"):
        assert centred.map_scores[kind] <= raw.map_scores[kind] - 0.2, (raw.map_scores, centred.map_scores)
        assert averaged.map_scores[kind] >= 0.999 and averaged.embedding_scores[kind] >= 0.999


def reference_score(backbone: MapBackbone, x: Tensor, spatial) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Direct transcription of the definition for a grid-preserving transform T (here rot90 / flip)."""
    with torch.no_grad():
        m, m_t = backbone.forward_map(x), backbone.forward_map(spatial(x))
        cos = F.cosine_similarity(spatial(m), m_t, dim=1)  # (B, h, w)
        emb = F.cosine_similarity(backbone(x), backbone(spatial(x)), dim=1)
    return float(cos.mean(dim=(1, 2)).mean()), float(emb.mean())


def test_score_matches_reference_with_torch_rot90_and_flip(images: Tensor) -> None:
    backbone = MapBackbone(random_cnn(), 12)
    result = equivariance_score(backbone, images, create_group("p4m"), batch_size=4)  # two batches, 4 + 2
    rot = reference_score(backbone, images, lambda t: torch.rot90(t, 1, dims=(-2, -1)))
    flip = reference_score(backbone, images, lambda t: torch.flip(t, dims=(-1,)))
    assert result.map_scores["rot90"] == pytest.approx(rot[0], abs=1e-5)
    assert result.embedding_scores["rot90"] == pytest.approx(rot[1], abs=1e-5)
    assert result.map_scores["flip"] == pytest.approx(flip[0], abs=1e-5)
    assert result.embedding_scores["flip"] == pytest.approx(flip[1], abs=1e-5)
    assert result.num_images == 6


def test_several_elements_per_kind_are_averaged(images: Tensor) -> None:
    p4m = create_group("p4m")
    backbone = MapBackbone(random_cnn(), 12)
    turns = p4m.make(rot=torch.tensor([1, 2, 3]))
    result = equivariance_score(backbone, images, p4m, elements={"rot": turns}, with_embedding=False)
    expected = sum(
        reference_score(backbone, images, lambda t, k=k: torch.rot90(t, k, dims=(-2, -1)))[0] for k in (1, 2, 3)
    ) / 3
    assert result.map_scores["rot"] == pytest.approx(expected, abs=1e-5)
    assert len(result.elements["rot"]) == 3 and result.embedding_scores == {}


def test_scale_uses_token_aligned_resized_views(images: Tensor) -> None:
    scale = create_group("scale")
    pointwise = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1))  # linear per pixel: commutes with resizing
    exact = equivariance_score(MapBackbone(pointwise, 8), images, scale)
    assert exact.transformed_sizes["scale"] == [[21, 21]]  # round(1.3 * 16)
    assert exact.map_scores["scale"] >= 0.999
    strided = equivariance_score(MapBackbone(random_cnn(), 12), images, scale)
    assert strided.transformed_sizes["scale"] == [[20, 20]]  # map 8 cells -> round(10.4) = 10 cells of 2 px
    assert strided.map_scores["scale"] <= exact.map_scores["scale"] - 0.05


@pytest.mark.parametrize("head", ["trivial_conv", "group_pool"])
def test_escnn_p4m_network_scores_one(images: Tensor, head: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        escnn_nn = pytest.importorskip("escnn.nn", reason="escnn is not installed")
        from escnn import gspaces
    gspace = gspaces.flipRot2dOnR2(N=4)
    f_in = escnn_nn.FieldType(gspace, 3 * [gspace.trivial_repr])
    f_hid = escnn_nn.FieldType(gspace, 4 * [gspace.regular_repr])
    # regular fields also permute channels under g; the score's rho_g moves positions only, so end in
    # trivial fields (a conv to trivial fields, or pooling over each regular field)
    if head == "trivial_conv":
        f_out = escnn_nn.FieldType(gspace, 6 * [gspace.trivial_repr])
        last: nn.Module = escnn_nn.R2Conv(f_hid, f_out, 3, padding=1)
        channels = 6
    else:
        last = escnn_nn.GroupPooling(f_hid)
        channels = 4
    net = escnn_nn.SequentialModule(escnn_nn.R2Conv(f_in, f_hid, 3, padding=1), escnn_nn.ReLU(f_hid), last)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Tensor) -> Tensor:
            return self.net(escnn_nn.GeometricTensor(x, f_in)).tensor

    result = equivariance_score(MapBackbone(Wrapped(), channels), images, create_group("p4m"))
    for kind in ("rot90", "flip"):
        assert result.map_scores[kind] >= 0.999, result.map_scores
        assert result.embedding_scores[kind] >= 0.999


@pytest.mark.parametrize("name", ["resnet_test", "vit_test"])
def test_real_backbones_on_p4m_and_scale(name: str, images: Tensor) -> None:
    backbone = create_backbone(name)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    result = equivariance_score(backbone, x, create_group("p4m*scale"), layer=1)
    assert set(result.map_scores) == {"rot90", "flip", "scale"}
    for kind, score in result.map_scores.items():
        # raw cosines of random ReLU/LayerNorm maps are high (0.7-0.99) from the shared offset alone
        assert -1.0 <= score <= 1.0 and -1.0 <= result.embedding_scores[kind] <= 1.0
    centred = equivariance_score(backbone, x, create_group("p4m*scale"), layer=1, center=True)
    for kind, score in centred.map_scores.items():
        assert score < 0.8, (kind, score)  # random init: far from equivariant once the offset is removed
    stride = backbone.info(1).stride
    h, w = result.transformed_sizes["scale"][0]
    assert h % stride == 0 and h > 32
    payload = json.loads(result.to_json())
    assert payload["layer"] == 1 and payload["num_images"] == 3
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(render_table(result))
    assert "rot90" in console.export_text()


def test_bad_input(images: Tensor) -> None:
    backbone = MapBackbone(random_cnn(), 12)
    with pytest.raises(ValueError, match="no elements"):
        equivariance_score(backbone, images, create_group("p4m"), elements={})
    with pytest.raises(ValueError, match="max_images"):
        equivariance_score(backbone, images, create_group("p4m"), max_images=0)
    assert equivariance_score(backbone, images, create_group("p4m"), max_images=4).num_images == 4


def test_fixed_place_is_one_place_for_every_split_layer(images: Tensor) -> None:
    """The comparable mode scores every run at the same map (CNN: deepest map of at least 2x2; ViT: the final
    token map after the final norm), with rotations averaged over 90/180/270, so split layers do not matter."""
    from equireg.evaluation.equivariance import comparable_elements

    group = create_group("p4m*scale")
    elements = comparable_elements(group)
    assert len(elements["rotation"]) == 3 and len(elements["scale"]) == 4
    torch.manual_seed(0)
    cnn = create_backbone("resnet_test", split_layer=1).eval()  # 16 px: stage maps 4, 2, 1, 1 -> fixed at stage 2
    results = []
    for split in (1, 3):
        other = create_backbone("resnet_test", split_layer=split).eval()
        other.model.load_state_dict(cnn.model.state_dict())  # same network; only the split (and norm_pooled) differ
        results.append(equivariance_score(other, images, group, layer="fixed", elements=elements))
    assert results[0].fixed_layer == results[1].fixed_layer == 2
    assert results[0].map_scores == results[1].map_scores
    vit = create_backbone("vit_test").eval()
    res = equivariance_score(vit, images, group, layer="fixed", elements=elements)
    assert res.layer == "fixed" and res.fixed_layer is None and set(res.map_scores) == {"rotation", "flip", "scale"}
    p4m = create_group("p4m")
    exact = MapBackbone(GroupAveraged(random_cnn(), p4m), 12)
    exact.forward_final_map = lambda x, reference=None: exact.forward_map(x)  # type: ignore[method-assign]
    perfect = equivariance_score(exact, images, p4m, layer="fixed", elements=comparable_elements(p4m))
    assert perfect.map_scores["rotation"] >= 0.999 and perfect.map_scores["flip"] >= 0.999

"""SER's token-level InfoNCE against an explicit reference written from the official formula (methods.md §1.6),
its behaviour on exactly equivariant maps, and the gradient it must send into blocks 1..k."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from equireg.backbones import create_backbone
from equireg.equivariance import EquivBatch, SERLoss, create_equiv_loss, list_equiv_losses, token_info_nce
from equireg.groups import create_group


def reference_direction(u: torch.Tensor, v: torch.Tensor, tau: float, same_image_negatives: bool) -> torch.Tensor:
    """L = 1/N Σ_j [ log Σ_i m_ij exp(s_ij) − s_jj ], s_ij = <û_i, v̂_j>/τ over tokens of maps (B, C, h, w);
    m_ij = 0 when tokens i, j come from the same image and i != j (unless same-image negatives)."""
    b, c, h, w = u.shape
    tokens_u = [F.normalize(u[n, :, y, x], dim=0) for n in range(b) for y in range(h) for x in range(w)]
    tokens_v = [F.normalize(v[n, :, y, x], dim=0) for n in range(b) for y in range(h) for x in range(w)]
    owner = [n for n in range(b) for _ in range(h * w)]
    total = torch.zeros((), dtype=u.dtype)
    for j, vj in enumerate(tokens_v):
        terms = []
        for i, ui in enumerate(tokens_u):
            if not same_image_negatives and owner[i] == owner[j] and i != j:
                continue
            terms.append(torch.dot(ui, vj) / tau)
        total = total + torch.logsumexp(torch.stack(terms), 0) - torch.dot(tokens_u[j], vj) / tau
    return total / len(tokens_v)


@pytest.mark.parametrize("same_image_negatives", [False, True])
def test_token_info_nce_matches_reference(same_image_negatives: bool) -> None:
    u = torch.randn(3, 5, 2, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, 5, 2, 3, dtype=torch.float64, requires_grad=True)
    tau = 0.4
    from equireg.equivariance.ser import flatten_tokens

    (tu, ou), (tv, ov) = flatten_tokens(u), flatten_tokens(v)
    got = token_info_nce(tv, ov, tu, ou, torch.arange(len(tv)), tau, same_image_negatives)
    want = reference_direction(u, v, tau, same_image_negatives)
    assert torch.allclose(got.double(), want, atol=1e-5)
    g_got = torch.autograd.grad(got, (u, v))
    g_want = torch.autograd.grad(want, (u, v))
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a.double(), b, atol=1e-5)


def _batch(loss: SERLoss, a: torch.Tensor, b: torch.Tensor, g, group) -> EquivBatch:  # type: ignore[no-untyped-def]
    class Out:
        def __init__(self, m: torch.Tensor) -> None:
            self.feature_map, self.embedding, self.pooled = m, None, None

    return EquivBatch(group=group, g=g, online=(Out(a), Out(b)), target=(Out(a), Out(b)))


def test_symmetric_loss_is_the_mean_of_both_directions() -> None:
    group = create_group("p4m")
    loss = SERLoss(4, proj_dim=8, temperature=0.5)
    a, b = torch.randn(3, 4, 3, 3), torch.randn(3, 4, 3, 3)
    g = group.sample(3, generator=torch.Generator().manual_seed(0))
    sym = loss(_batch(loss, a, b, g, group))
    one = loss.direction(b, a, g, group)
    back = loss.direction(a, b, ~g, group)
    assert torch.allclose(sym, 0.5 * (one + back))
    # with P fixed, the a→b direction equals the reference on (rho_g P a, P b)
    with torch.no_grad():
        want = reference_direction(group.act(loss.projector(a), g).double(), loss.projector(b).double(), 0.5, False)
    assert torch.allclose(one.double(), want, atol=1e-5)


def test_equivariant_pairs_score_better_than_misaligned_ones() -> None:
    group = create_group("p4m")
    loss = SERLoss(6, proj_dim=16, temperature=0.2, same_image_negatives=True)
    a = torch.randn(4, 6, 4, 4)
    g = group.make(rot=torch.tensor([1, 2, 3, 1]), flip=torch.tensor([0, 1, 0, 1]))
    b = group.act(a, g)
    aligned = loss.direction(b, a, g, group)
    wrong = loss.direction(b, a, group.make(rot=torch.tensor([0, 0, 0, 0])), group)
    assert aligned < wrong
    assert aligned < math.log(4 * 16)  # better than chance over all tokens


def test_scale_pairs_land_on_the_other_grid() -> None:
    group = create_group("p4m*scale")
    loss = SERLoss(3, proj_dim=8)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 5, 5)
    g = group.make(rot=torch.tensor([1, 0]), scale=1.25)
    value = loss(_batch(loss, a, b, g, group))
    assert torch.isfinite(value)


@pytest.mark.parametrize("name, layer", [("vit_test", 2), ("resnet_test", 2)])
def test_equivariance_loss_alone_sends_gradient_into_blocks_before_k(name: str, layer: int) -> None:
    """The official code's no-grad gather made this gradient zero; ours must not."""
    backbone = create_backbone(name, split_layer=layer)
    info = backbone.info(layer)
    loss = create_equiv_loss("ser", in_channels=info.channels, proj_dim=16)
    group = create_group("p4m")
    x = torch.rand(4, 3, 16, 16)
    g = group.sample(4, generator=torch.Generator().manual_seed(1))
    out_a, out_b = backbone.forward_split(x), backbone.forward_split(group.act(x, g))
    value = loss(EquivBatch(group=group, g=g, online=(out_a, out_b), target=(out_a, out_b)))
    value.backward()
    grads = [p.grad for n, p in backbone.named_parameters() if p.requires_grad and p.grad is not None]
    assert grads and sum(float(g_.abs().sum()) for g_ in grads) > 0
    early = [p for n, p in backbone.named_parameters() if ("blocks.0." in n or "layer1" in n) and p.requires_grad]
    # some residual-branch weights start with zero gradient (timm zero-initialises the last BN gamma), so
    # check that the first block as a whole receives gradient
    assert early and sum(float(p.grad.abs().sum()) for p in early if p.grad is not None) > 0
    assert loss.projector[0].weight.grad is not None and loss.projector[0].weight.grad.abs().sum() > 0


def test_registry_and_bad_input() -> None:
    assert "ser" in list_equiv_losses()
    with pytest.raises(ValueError, match="unknown equivariance loss"):
        create_equiv_loss("nope", in_channels=4)
    with pytest.raises(ValueError, match="temperature"):
        SERLoss(4, temperature=0.0)

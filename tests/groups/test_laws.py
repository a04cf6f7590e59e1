"""Group laws and action laws for every registered group (a newly registered group is covered automatically),
plus parametric families and products. Exact groups must match bit for bit; interpolated groups within their
stated ``action_tolerance`` on smooth fields (see equireg.groups.verify)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equireg.groups import FiniteGroup, Group, create_group, list_groups, verify_group
from equireg.groups.verify import _central_disk, smooth_fields

from .strategies import elements

EXTRA = ["c2", "c3", "d2", "d6", "c8", "d8", "p4m*scale", "flip*scale", "c4*c2", "so2*scale"]
NAMES = list_groups() + EXTRA
EXACT_FAMILY = ["trivial", "flip", "c4", "p4m", "c2", "d2", "d4"]
B = 6

settings.register_profile("equireg", max_examples=25, deadline=None)
settings.load_profile("equireg")


@pytest.fixture(params=NAMES)
def group(request: pytest.FixtureRequest) -> Group:
    return create_group(request.param)


def test_verify_group_passes(group: Group) -> None:
    results = verify_group(group)
    assert {r.law for r in results} >= {"closure", "identity", "inverse", "associativity", "action homomorphism"}
    assert all(r.passed for r in results)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_algebraic_laws(name: str, data: st.DataObject) -> None:
    G = create_group(name)
    a, b, c = (data.draw(elements(G, B)) for _ in range(3))
    e = G.identity
    assert bool(((a @ b) @ c).equals(a @ (b @ c)).all()), "associativity"
    assert bool((a @ e).equals(a).all()) and bool((e @ a).equals(a).all()), "identity"
    assert bool((a @ ~a).equals(e).all()) and bool((~a @ a).equals(e).all()), "inverse"
    G.check_elements((a @ b).tensor)  # closure: the product is a valid element


def _fields(G: Group, seed: int, channels: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    if G.is_exact:
        return torch.randn(B, channels, size, size, generator=gen), torch.ones(size, size, dtype=torch.bool)
    return smooth_fields(B, channels, size, gen), _central_disk(size)


def _assert_close(G: Group, got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor) -> None:
    if G.is_exact:
        assert torch.equal(got, want)
    else:
        err = ((got - want).abs() * mask).amax() / want.abs().amax()
        assert err <= G.action_tolerance, f"relative error {err:.4f} > {G.action_tolerance}"


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), seed=st.integers(0, 10_000))
def test_action_is_homomorphism(name: str, data: st.DataObject, seed: int) -> None:
    G = create_group(name)
    g, h = data.draw(elements(G, B)), data.draw(elements(G, B))
    x, mask = _fields(G, seed)
    _assert_close(G, G.act(x, g @ h), G.act(G.act(x, h), g), mask)
    _assert_close(G, G.act(G.act(x, g), ~g), x, mask)
    _assert_close(G, G.act(x, G.identity), x, mask)


@pytest.mark.parametrize("name", [n for n in NAMES if isinstance(create_group(n), FiniteGroup)])
@given(data=st.data())
def test_regular_representation_is_homomorphism(name: str, data: st.DataObject) -> None:
    G = create_group(name)
    rho = G.representation("regular")
    g, h = data.draw(elements(G, B)), data.draw(elements(G, B))
    assert torch.equal(rho(g @ h), rho(g) @ rho(h))
    assert torch.equal(rho(G.identity), torch.eye(G.order))
    assert torch.equal(rho(~g), rho(g).transpose(-1, -2))  # permutation matrices: inverse = transpose
    # the fibre action is the same matrix applied per channel block
    x = torch.randn(B, 2 * G.order, 4, 4)
    moved = G.act_fibre(x, g.tensor, "regular")
    blocks = x.view(B, 2, G.order, 4, 4)
    want = torch.einsum("bij,bkjhw->bkihw", rho(g), blocks).reshape_as(x)
    assert torch.equal(moved, want)


@pytest.mark.parametrize("name", EXACT_FAMILY)
def test_exact_family_is_a_permutation(name: str) -> None:
    G = create_group(name)
    assert G.is_exact and G.action_tolerance == 0
    x = torch.randperm(2 * 9 * 9).float().view(1, 2, 9, 9).expand(G.order, -1, -1, -1)
    y = G.act(x, G.elements())
    for i in range(G.order):  # same multiset of values, channels kept apart: no interpolation, no float noise
        assert torch.equal(y[i].flatten(1).sort(1).values, x[i].flatten(1).sort(1).values)


def test_p4m_generators_match_torch_ops() -> None:
    G = create_group("p4m")
    x = torch.randn(2, 3, 5, 5)
    gens = G.generators()
    assert torch.equal(G.act(x, gens["rot90"]), torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.equal(G.act(x, gens["flip"]), torch.flip(x, dims=(-1,)))
    assert G.order == 8 and len({int(c) for c in G.elements().tensor}) == 8
    # non-abelian: r·m != m·r
    r, m = gens["rot90"], gens["flip"]
    assert not (r @ m == m @ r)

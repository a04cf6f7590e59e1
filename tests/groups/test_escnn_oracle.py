"""escnn as an oracle: native p4m equals GeometricTensor.transform on trivial and regular fields, exactly;
the bridge wraps escnn groups with escnn's own Cayley tables."""

from __future__ import annotations

import pytest
import torch

from equireg.groups import create_group, verify_group

escnn = pytest.importorskip("escnn", reason="escnn extra not installed (pip install 'equireg[escnn]')")

from equireg.groups.escnn_bridge import from_escnn, import_escnn  # noqa: E402

import_escnn()
from escnn import gspaces  # noqa: E402
from escnn import nn as enn  # noqa: E402
from escnn.group import cyclic_group, dihedral_group, so2_group  # noqa: E402


@pytest.fixture(scope="module")
def p4m_space():  # type: ignore[no-untyped-def]
    return gspaces.flipRot2dOnR2(N=4)


@pytest.mark.parametrize("fibre", ["trivial", "regular"])
def test_native_p4m_matches_escnn_transform(p4m_space, fibre: str) -> None:  # type: ignore[no-untyped-def]
    G = create_group("p4m")
    rep = p4m_space.trivial_repr if fibre == "trivial" else p4m_space.regular_repr
    field = enn.FieldType(p4m_space, 2 * [rep])
    x = torch.randn(1, field.size, 7, 7)
    bridge = from_escnn(p4m_space.fibergroup)
    for code in range(8):
        (element,) = bridge.to_escnn(torch.tensor([code]))
        want = enn.GeometricTensor(x, field).transform(element).tensor
        got = G.act(x, torch.tensor([code]), fibre=fibre)
        assert torch.equal(got, want), f"element {element} ({fibre})"


@pytest.mark.parametrize("factory, native", [(lambda: dihedral_group(4), "p4m"), (lambda: cyclic_group(4), "c4")])
def test_bridge_tables_match_native(factory, native: str) -> None:  # type: ignore[no-untyped-def]
    G = from_escnn(factory())
    assert torch.equal(G.cayley_table(), create_group(native).cayley_table())
    assert all(r.passed for r in verify_group(G))
    g = G.sample(5)
    assert G.from_escnn(G.to_escnn(g)) == g


def test_bridge_so2_and_odd_dihedral() -> None:
    so2 = from_escnn(so2_group())
    g = so2.sample(4, generator=torch.Generator().manual_seed(0))
    assert so2.from_escnn(so2.to_escnn(g)) == g
    assert all(r.passed for r in verify_group(so2))
    d3 = from_escnn(dihedral_group(3))
    assert d3.order == 6 and all(r.passed for r in verify_group(d3))

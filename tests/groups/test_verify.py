"""verify_group rejects broken groups and names the violated law; registration can enforce it; plug-ins
register through entry points."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from equireg.groups import GROUPS, DihedralGroup, GroupLawError, create_group, register_group, verify_group


class NonAssociative(DihedralGroup):
    """c3 with one Cayley entry corrupted: closure holds, associativity does not."""

    def __init__(self) -> None:
        super().__init__(3, reflections=False, name="broken-c3")
        self._table = self._table.clone()
        self._table[1, 1] = 0


class WrongAction(DihedralGroup):
    """c4 whose action ignores g and always turns a quarter: the algebra is fine, but rho(e) is not the identity."""

    def __init__(self) -> None:
        super().__init__(4, reflections=False, name="wrong-action")

    def _act_spatial(self, x, g, out_size):  # type: ignore[no-untyped-def]
        return torch.rot90(x, 1, dims=(-2, -1))


def test_broken_algebra_is_rejected_naming_the_law() -> None:
    with pytest.raises(GroupLawError, match="associativity") as info:
        verify_group(NonAssociative())
    assert info.value.law == "associativity" and "a=" in info.value.counterexample


def test_broken_action_is_rejected_naming_the_law() -> None:
    with pytest.raises(GroupLawError, match="action identity"):
        verify_group(WrongAction())
    report = verify_group(WrongAction(), raise_on_failure=False)
    failed = {r.law for r in report if not r.passed}
    assert "action identity" in failed and "associativity" not in failed


def test_registration_can_verify() -> None:
    with pytest.raises(GroupLawError, match="associativity"):
        register_group("broken-c3", verify=True)(NonAssociative)
    assert "broken-c3" not in GROUPS.names()

    @register_group("test-d3", verify=True, override=True)
    def d3() -> DihedralGroup:
        return DihedralGroup(3)

    assert create_group("test-d3").order == 6


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint(name="plugin-c5", value="equireg.groups.dihedral:DihedralGroup", group="equireg.groups")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [ep] if kw.get("group") == "equireg.groups" else real(**kw),
    )
    monkeypatch.setattr(GROUPS, "_entry_points_loaded", False)
    monkeypatch.setattr(GROUPS, "_factories", dict(GROUPS._factories))
    assert "plugin-c5" in GROUPS.names()
    assert create_group("plugin-c5", n=5).order == 10

"""Hypothesis strategies for group elements: integer codes for finite groups, seeded samples otherwise."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from equireg.groups import Elements, FiniteGroup, Group


def elements(group: Group, size: int) -> st.SearchStrategy[Elements]:
    """A batch of ``size`` elements; finite groups draw codes directly so Hypothesis can shrink them."""
    if isinstance(group, FiniteGroup):
        codes = st.lists(st.integers(0, group.order - 1), min_size=size, max_size=size)
        return codes.map(lambda c: Elements(group, torch.tensor(c, dtype=torch.int64)))
    return st.integers(0, 2**31 - 1).map(lambda s: group.sample(size, generator=torch.Generator().manual_seed(s)))

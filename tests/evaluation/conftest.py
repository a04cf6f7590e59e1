"""Evaluation tests run tiny tensor ops, which are far slower with 2 intra-op threads on a loaded 2-core
machine (thread hand-off dominates; measured ~100x on a 400x16 probe); use one thread here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

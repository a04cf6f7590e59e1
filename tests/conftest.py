"""Shared pytest configuration: slow tests are opt-in, and torch stays small and deterministic."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("EQUIREG_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow or EQUIREG_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)


def pytest_configure(config: pytest.Config) -> None:
    # unit tests run tiny ops, for which extra intra-op threads only add synchronisation (and oversubscribe the
    # 2-core CI machine when a test forks workers)
    torch.set_num_threads(1)

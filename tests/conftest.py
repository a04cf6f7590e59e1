"""Shared pytest configuration: slow tests are opt-in, and torch stays small and deterministic."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="module")
def locked_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A folder this process cannot create anything in: read-only by mode, or for root (whom modes do not stop)
    immutable (``chattr +i``, where the filesystem supports it). None when neither works here."""
    folder = tmp_path_factory.mktemp("locked")
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if immutable:
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    else:
        folder.chmod(0o555)
    try:
        (folder / "probe").mkdir()
        (folder / "probe").rmdir()
        locked = None
    except OSError:
        locked = folder
    yield locked
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)

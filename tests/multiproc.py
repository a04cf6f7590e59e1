"""A small harness for tests that need several processes on one machine (e.g. a 2-rank gloo group).

Workers are forked where the platform allows it (a fraction of a second, against ~10 s for spawn, which
re-imports torch in every child on the shared 2-core machine). A deadline turns a hung worker into a failure
instead of a hung test session, and a worker's exception is re-raised in the test process.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for a worker on a single node."""
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _as_torchrun_worker(rank: int, fn: Callable[..., Any], world_size: int, port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(torchrun_env(rank, world_size, port))
    fn(rank, *args)


def run_workers(fn: Callable[..., Any], world_size: int, args: tuple[Any, ...] = (), *, timeout: float = 120.0,
                torchrun: bool = False) -> None:
    """Run ``fn(rank, *args)`` in ``world_size`` processes and wait for all of them.

    With ``torchrun=True`` each worker first gets torchrun's environment variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_PORT``, ...), so code that joins the process group from the environment runs as under torchrun.
    """
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    if torchrun:
        target, full_args = _as_torchrun_worker, (fn, world_size, free_port(), args)
    else:
        target, full_args = fn, args
    ctx = mp.start_processes(target, args=full_args, nprocs=world_size, join=False, start_method=method)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):  # re-raises a worker's exception
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"{world_size} workers did not finish within {timeout:.0f} s")

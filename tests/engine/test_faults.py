"""Faults: a run killed with SIGKILL resumes to the uninterrupted weights, a crash while a checkpoint is written
leaves the previous one usable, and a diverging loss stops the CLI with a clear message and exit code 1.

The killed run is a real ``python -m equireg train`` subprocess; it runs single-threaded in deterministic CPU
mode, as do the reference and the resumed runs, so the weights must agree bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import equireg.engine.checkpoint as checkpoint_module
from equireg.cli.main import app
from equireg.config import resolve_config
from equireg.engine import CheckpointManager, Trainer, load_state
from multiproc import run_workers

from .conftest import TINY

STEPS, EVERY = 12, 3
RUN: dict[str, Any] = {**TINY, "optim.steps": STEPS, "train.checkpoint_every": EVERY, "train.threads": 1}


def _sets(overrides: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value) if isinstance(value, dict) else value}"]
    return args


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _latest_step(run_dir: Path) -> int:
    pointer = run_dir / "checkpoints" / "latest.json"
    try:
        return int(json.loads(pointer.read_text())["step"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _logged_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.csv").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return int(lines[-1].split(",", 1)[0]) if len(lines) > 1 and lines[-1][:1].isdigit() else 0


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights of the uninterrupted run."""
    threads = torch.get_num_threads()
    try:
        cfg = resolve_config(overrides={**RUN, "train.run_dir": str(tmp_path_factory.mktemp("ref") / "run")})
        trainer = Trainer(cfg, progress=False)
        trainer.fit()
        return {k: v.clone() for k, v in trainer.recipe.state_dict().items()}
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def single_thread() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path, reference: dict[str, torch.Tensor],
                                                       single_thread: None) -> None:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "equireg", "train", "--run-dir", str(run_dir), "--no-eval", *_sets(RUN)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    try:
        while _logged_step(run_dir) <= EVERY:  # kill in the middle of the second checkpoint interval
            assert proc.poll() is None, f"training exited early ({proc.returncode}): {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = _latest_step(run_dir)
    before = _rows(run_dir)
    logged = int(before[-1]["step"])
    assert saved < STEPS, "the run finished before it was killed"
    assert logged - saved <= EVERY  # lost work is bounded by the checkpoint interval

    result = CliRunner().invoke(app, ["train", "--run-dir", str(run_dir), "--resume", "--no-eval"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["resumed_from"] == saved and summary["steps"] == STEPS  # only steps after `saved` were redone
    after = _rows(run_dir)
    assert [int(r["step"]) for r in after] == list(range(1, STEPS + 1))  # each step logged exactly once
    assert after[:saved] == before[:saved]  # history up to the checkpoint kept as it was
    for old, new in zip(before[saved:logged], after[saved:logged]):  # redone steps reproduce the lost ones
        assert old["loss"] == new["loss"], (old, new)
    final = CheckpointManager(run_dir / "checkpoints").load_latest()
    assert final is not None and final["step"] == STEPS
    _assert_same_weights(final["recipe"], reference)


def _crash_during_second_checkpoint(rank: int, run_dir: str) -> None:
    """Train in a child process whose second checkpoint write dies halfway (SIGKILL after a partial file)."""
    torch.set_num_threads(1)
    real_save, calls = checkpoint_module.save_file, []

    def dying_save(tensors: dict[str, torch.Tensor], path: str) -> None:
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"\0" * 100)  # a torn write
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(tensors, path)

    checkpoint_module.save_file = dying_save  # type: ignore[assignment]
    cfg = resolve_config(overrides={**RUN, "train.run_dir": run_dir})
    Trainer(cfg, progress=False).fit()


def test_crash_while_writing_checkpoint_keeps_the_previous_one(tmp_path: Path, reference: dict[str, torch.Tensor],
                                                               single_thread: None) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(BaseException, match="signal|SIGKILL|exit"):
        run_workers(_crash_during_second_checkpoint, 1, (str(run_dir),), timeout=120)
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / f"step-{2 * EVERY:07d}.tmp").is_dir()  # the torn write happened
    manager = CheckpointManager(checkpoints)
    assert manager.latest() == checkpoints / f"step-{EVERY:07d}"
    assert load_state(manager.latest())["step"] == EVERY
    cfg = resolve_config(overrides={**RUN, "train.run_dir": str(run_dir)})
    resumed = Trainer(cfg, resume=True, progress=False)
    assert resumed.start_step == EVERY
    resumed.fit()
    assert not (checkpoints / f"step-{2 * EVERY:07d}.tmp").exists()
    _assert_same_weights(resumed.recipe.state_dict(), reference)


def test_diverging_loss_exits_1_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # lr 1e10 without warm-up: step 0 is finite, the weights then blow up and the loss of step 1 is NaN
    overrides = {**TINY, "optim.steps": 6, "optim.lr": 1e10, "optim.warmup_frac": 0.0, "train.checkpoint_every": 1}
    result = CliRunner().invoke(app, ["train", "--run-dir", str(run_dir), "--no-eval", *_sets(overrides)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "loss became nan at step 1" in text and "is intact" in text and "optim.lr" in text
    latest = CheckpointManager(run_dir / "checkpoints").load_latest()
    assert latest is not None and latest["step"] == 1
    assert all(bool(torch.isfinite(v).all()) for v in latest["recipe"].values() if v.is_floating_point())

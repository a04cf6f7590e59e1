"""Schedules, atomic checkpoints, a tiny training run, exact resume, NaN handling."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from equireg.engine import CheckpointManager, Trainer, TrainingDiverged, load_state, save_state, warmup_cosine
from equireg.engine.trainer import RunDirError


def test_warmup_cosine_endpoints() -> None:
    assert warmup_cosine(0, 100, 1.0, 0.1, warmup=10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 1.0, 0.1, warmup=10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 1.0, 0.1, warmup=10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 1.0, 0.1, warmup=10) == pytest.approx(0.1)
    mid = warmup_cosine(55, 100, 1.0, 0.0, warmup=10)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_checkpoint_roundtrip_and_pointer(tmp_path: Path) -> None:
    state = {"a": torch.randn(3, 2), "nested": {1: torch.arange(4), "s": "text", "t": (1, 2.5, None)}, "step": 7}
    save_state(state, tmp_path / "ck")
    back = load_state(tmp_path / "ck")
    assert torch.equal(back["a"], state["a"]) and torch.equal(back["nested"][1], state["nested"][1])
    assert back["nested"]["t"] == (1, 2.5, None) and back["step"] == 7 and back["nested"]["s"] == "text"
    mgr = CheckpointManager(tmp_path / "run", keep=2)
    for step in (1, 2, 3):
        mgr.save({"step": step, "w": torch.full((2,), float(step))}, step)
    assert mgr.load_latest()["step"] == 3
    assert sorted(p.name for p in (tmp_path / "run").glob("step-*")) == ["step-0000002", "step-0000003"]


def test_crash_while_writing_keeps_latest_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save({"step": 1, "w": torch.ones(2)}, 1)
    import equireg.engine.checkpoint as ck

    def exploding_save(tensors, path):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", exploding_save)
    with pytest.raises(OSError):
        mgr.save({"step": 2, "w": torch.zeros(2)}, 2)
    latest = mgr.load_latest()
    assert latest["step"] == 1 and torch.equal(latest["w"], torch.ones(2))
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 1


def test_tiny_run_writes_everything(tiny) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny()
    result = Trainer(cfg, progress=False).fit()
    run = Path(cfg.train.run_dir)
    assert result.steps == 4 and math.isfinite(result.final_loss)
    for name in ("config.yaml", "metrics.csv", "train_summary.json", "checkpoints/latest.json", "tensorboard"):
        assert (run / name).exists(), name
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and "loss_equiv" in rows[0] and len(rows) == 5
    with pytest.raises(RunDirError, match="--resume"):
        Trainer(cfg, progress=False)


def test_resume_matches_uninterrupted_run(tiny) -> None:  # type: ignore[no-untyped-def]
    straight = Trainer(tiny("straight"), progress=False)
    straight.fit()
    first = Trainer(tiny("resumed"), progress=False)
    first.fit(stop_after=2)
    second = Trainer(tiny("resumed"), resume=True, progress=False)
    assert second.start_step == 2
    second.fit()
    a, b = straight.recipe.state_dict(), second.recipe.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tiny, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    trainer = Trainer(tiny(), progress=False)
    trainer.fit(stop_after=2)
    good = trainer.checkpoints.load_latest()
    original = trainer.recipe.forward

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(*args, **kwargs)
        out.loss = out.loss * float("nan")
        return out

    resumed = Trainer(tiny(), resume=True, progress=False)
    monkeypatch.setattr(resumed.recipe, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 2"):
        resumed.fit()
    after = resumed.checkpoints.load_latest()
    assert after["step"] == good["step"] == 2


def test_a_run_directory_that_cannot_be_written_is_bad_input(tiny, locked_dir, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The early check asks os.access; a write that fails anyway (a read-only mount, an ACL) is reported the same."""
    if locked_dir is None:
        pytest.skip("no way to make a folder unwritable here")
    cfg = tiny(**{"train.run_dir": str(locked_dir / "run")})
    with pytest.raises(RunDirError, match="cannot write in"):
        Trainer(cfg, progress=False)
    monkeypatch.setattr("equireg.engine.trainer.os.access", lambda *args: True)  # let the early check pass
    trainer = Trainer(cfg, progress=False)
    with pytest.raises(RunDirError, match="cannot write the run directory .*/run: (Operation not permitted|Permission denied)"):
        trainer.fit()


def test_progress_is_one_line_per_logged_step_when_stdout_is_not_a_terminal(tiny, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    Trainer(tiny(**{"train.log_every": 2}), progress=True).fit()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert re.fullmatch(r"step 2/4  loss \S+ \(inv \S+, equiv \S+\)  lr \S+  \d+ img/s  ETA \d+:\d\d:\d\d",
                        lines[0]), lines[0]


def test_progress_is_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from equireg.engine.trainer import _Progress

    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    progress = _Progress(4, 0, enabled=True)
    progress.update(2, {"loss": 1.0, "lr": 0.1, "images_per_s": 5.0})
    progress.close()
    assert progress.bar and "step 2/4" not in capsys.readouterr().out

"""The GPU smoke benchmark, dry-run on the CPU with a tiny model: every measure reaches the table and the JSON, the
batch search handles out-of-memory errors, and `benchmarks/speed.py` takes --device."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke() -> ModuleType:
    return _load("gpu_smoke")


def test_dry_run_through_the_wrapper_writes_every_measure(tmp_path: Path) -> None:
    """benchmarks/gpu_smoke.sh -- --dry-run: the CPU rehearsal of the GPU run, table on stdout and JSON."""
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(BENCHMARKS / "gpu_smoke.sh"), "--timeout", "300", "--out", str(out), "--", "--dry-run"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)
    assert run.returncode == 0, run.stderr[-2000:]
    for measure in ("device", "recipe", "largest batch that fits", "steady images/s", "ms/step", "peak memory",
                    "loss", "SER wall vs baseline", "loader images/s", "total time"):
        assert f"| {measure} |" in run.stdout, measure
    data = json.loads(out.read_text())
    assert data["table"] in run.stdout
    assert data["config"]["model"] == "vit_test" and data["environment"]["device"] == "cpu"
    assert data["largest_batch"]["batch"] == 16 and data["largest_batch"]["lower_bound"]  # the dry run's cap
    steady = data["steady"]
    for key in ("images_per_s", "ms_per_step", "peak_memory_gib", "loss_first_mean", "loss_last_mean"):
        assert math.isfinite(steady[key]) and steady[key] > 0, key
    assert steady["steps"] == 8 and len(steady["losses"]) == 8 and isinstance(steady["loss_decreasing"], bool)
    overhead = data["ser_overhead"]
    assert overhead["rounds"] >= 3 and overhead["ratio_of_medians"] > 0 and overhead["median_of_round_ratios"] > 0
    loader = data["loader"]
    assert loader["images"] == 32 and loader["images_per_s"] > 0 and loader["image_size"] == 16


def test_wrapper_refuses_bad_options(tmp_path: Path) -> None:
    for args, message in ((["--bogus"], "unknown option --bogus"),
                          (["--wheelhouse", str(tmp_path / "none")], "is not a directory")):
        run = subprocess.run([str(BENCHMARKS / "gpu_smoke.sh"), *args], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr


def test_batch_search(smoke: ModuleType) -> None:
    far = float("inf")
    found = smoke.search_largest(lambda b: b <= 100, start=8, cap=4096, multiple=4, deadline=far)
    # doubling 8..128 (128 fails), then bisection: 96 fits, 112 and 104 fail, 100 fits
    assert [p["batch"] for p in found["probes"]] == [8, 16, 32, 64, 128, 96, 112, 104, 100]
    assert found["batch"] == 100 and found["first_failure"] == 104 and not found["lower_bound"]
    capped = smoke.search_largest(lambda b: True, start=8, cap=100, multiple=4, deadline=far)
    assert capped["batch"] == 96 and capped["first_failure"] is None and capped["lower_bound"]
    none = smoke.search_largest(lambda b: False, start=8, cap=100, multiple=4, deadline=far)
    assert none["batch"] == 0 and none["first_failure"] == 4
    timed = smoke.search_largest(lambda b: True, start=8, cap=100, multiple=4, deadline=0.0)
    assert timed["batch"] == 0 and timed["timed_out"] and not timed["probes"]


def test_out_of_memory_is_caught_during_the_search(smoke: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that runs out of memory is a failed probe, not a crash; other errors still surface."""
    from equireg.engine import Trainer

    real = Trainer.train_step

    def limited(self: Trainer, images: torch.Tensor, step: int):  # type: ignore[no-untyped-def]
        if images.shape[0] > 12:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, images, step)

    monkeypatch.setattr(Trainer, "train_step", limited)
    args = smoke.parse_args(["--dry-run", "--max-batch", "64"])
    result = smoke.largest_batch(args, smoke.Clock(60))
    # dry run: start 4, resolution 4: 4 and 8 fit, 16 runs out of memory, 12 fits
    assert [p["batch"] for p in result["probes"]] == [4, 8, 16, 12]
    assert result["batch"] == 12 and result["first_failure"] == 16 and not result["lower_bound"]
    # the steady run backs off by 10% (to the search resolution) when a fresh trainer no longer fits
    steady = smoke.steady_with_backoff(args, 16, smoke.Clock(60), log=lambda message: None)
    assert steady["batch"] == 12 and steady["steps"] == 8

    def broken(self: Trainer, images: torch.Tensor, step: int):  # type: ignore[no-untyped-def]
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(Trainer, "train_step", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        smoke.largest_batch(args, smoke.Clock(60))


def test_speed_takes_device(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    speed = _load("speed")
    monkeypatch.setattr(sys, "argv", ["speed.py", "overhead", "--backbones", "vit_test", "--batch", "8",
                                      "--repeats", "1", "--device", "cpu"])
    speed.main()
    out = capsys.readouterr().out
    assert "SER overhead per training step" in out and "| vit_test | SER official views b2=1% |" in out

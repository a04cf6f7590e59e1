"""The bench runner on a tiny spec: cells expand as documented, outputs are written, finished cells are skipped,
a killed cell resumes from its checkpoint, and a failing cell neither stops the matrix nor counts as finished."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from equireg.bench import BenchSpec, expand_cells, load_spec, run_bench
from equireg.bench.runner import RESULT_FILE
from equireg.config import ConfigError

TINY_BASE: dict[str, Any] = {
    "data": {"name": "synthetic", "image_size": 16, "train_subset": 64, "probe_train_size": 48, "test_size": 32,
             "kwargs": {"num_samples": 160}},
    "backbone": {"name": "resnet_test"},
    "objective": {"kwargs": {"proj_hidden_dim": 16, "proj_dim": 8, "pred_hidden_dim": 16}},
    "optim": {"batch_size": 16, "steps": 2},
    "train": {"precision": "fp32", "log_every": 1, "checkpoint_every": 1, "device": "cpu"},
    "eval": {"probe_epochs": 2, "equiv_images": 8, "robustness_severities": [1],
             "robustness_corruptions": ["gaussian_noise"]},
}


def tiny_spec(**overrides: Any) -> BenchSpec:
    data = {
        "name": "tiny", "base": TINY_BASE,
        "methods": ["none", {"ser": {"equiv": {"kwargs": {"proj_dim": 8}}}}, {"augself": {"equiv": {"kwargs": {"hidden_dim": 8}}}}],
        "layers": [2, 4], "objectives": ["moco"], "seeds": [0], "groups": ["p4m"],
        **overrides,
    }
    return BenchSpec.model_validate(data)


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cells_expand_as_documented() -> None:
    spec = tiny_spec(seeds=[0, 1], groups=["p4m", "c4"])
    ids = [c.id for c in expand_cells(spec)]
    # per seed: 1 baseline + ser x 2 layers x 2 groups + augself x 2 layers (no group: it does not use T_eq pairs)
    assert len(ids) == 2 * (1 + 4 + 2) and len(set(ids)) == len(ids)
    assert "moco-none-s0" in ids and "moco-ser-L2-c4-s1" in ids and "moco-augself-L4-s0" in ids
    base = next(c for c in expand_cells(spec) if c.method.loss == "none")
    assert base.eval_layers == [2, 4]


def test_spec_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a file nor a shipped spec"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "methods": ["ser"], "layerz": [1]}))
    with pytest.raises(ConfigError, match="layerz"):
        load_spec(bad)
    spec = tiny_spec(base={**TINY_BASE, "optim": {"batch_size": 16, "stepz": 2}})
    with pytest.raises(ConfigError, match="stepz"):
        run_bench(spec, tmp_path / "out", write_reports=False)


def test_shipped_specs_parse_and_validate(tmp_path: Path) -> None:
    for name in ("cpu", "gpu"):
        spec = load_spec(name)
        cells = expand_cells(spec)
        assert cells, name
        for cell in cells:
            cell.config(spec, tmp_path)  # every cell's run config is valid


def test_run_skip_and_outputs(tmp_path: Path) -> None:
    spec = tiny_spec(methods=["none", {"augself": {"equiv": {"kwargs": {"hidden_dim": 8}}}}], layers=[2])
    out = tmp_path / "bench"
    logs: list[str] = []
    summary = run_bench(spec, out, log=logs.append)
    assert sorted(summary.finished) == ["moco-augself-L2-s0", "moco-none-s0"] and not summary.failed
    for name in ("results.csv", "results.md", "layer_sweep.png", "accuracy_vs_equivariance.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    result = json.loads((out / "cells" / "moco-augself-L2-s0" / RESULT_FILE).read_text())
    assert result["views_per_image"] == 2 and result["params_equiv"] > 0
    assert set(result["linear"]) == {"top1", "top5"} and "mean" in result["robustness"]
    assert set(result["equivariance"]) == {"2"} and "rot90" in result["equivariance"]["2"]["map"]
    table = (out / "results.md").read_text()
    assert "| moco | augself | 2 |" in table and "equiv rot90" in table
    csv_rows = (out / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("cell,method") and len(csv_rows) == 3
    again = run_bench(spec, out, log=logs.append)
    assert not again.finished and sorted(again.skipped) == ["moco-augself-L2-s0", "moco-none-s0"]
    # a wider sweep later: the finished baseline is only scored at the new layer, not retrained
    wider = run_bench(tiny_spec(methods=["none"], layers=[1, 2]), out, log=logs.append, write_reports=False)
    assert wider.skipped == ["moco-none-s0"] and any("new layers [1]" in line for line in logs)
    base = json.loads((out / "cells" / "moco-none-s0" / RESULT_FILE).read_text())
    assert set(base["equivariance"]) == {"1", "2"}


def test_killed_cell_resumes_and_failed_cell_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from equireg.engine import Trainer

    spec = tiny_spec(methods=[{"ser": {"equiv": {"kwargs": {"proj_dim": 8}}}}], layers=[2], evaluate=["linear"])
    out = tmp_path / "bench"
    (cell,) = expand_cells(spec)
    # a run killed after its first checkpoint: a checkpoint exists, no result
    Trainer(cell.config(spec, out), progress=False).fit(stop_after=1)
    summary = run_bench(spec, out, log=lambda m: None)
    result = json.loads((out / "cells" / cell.id / RESULT_FILE).read_text())
    assert summary.finished == [cell.id] and result["train"]["resumed_from"] == 1

    # a cell that crashes is recorded, not finished, and retried next time
    spec2 = tiny_spec(methods=[{"ser": {"equiv": {"kwargs": {"proj_dim": 8}}}}], layers=[1], evaluate=["linear"])
    import equireg.bench.runner as runner

    real = runner._evaluate

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed during evaluation")

    monkeypatch.setattr(runner, "_evaluate", boom)
    failed = run_bench(spec2, out, log=lambda m: None, write_reports=False)
    (cid,) = failed.failed
    assert "killed during evaluation" in failed.failed[cid] and (out / "cells" / cid / "error.txt").is_file()
    assert not (out / "cells" / cid / RESULT_FILE).exists()
    monkeypatch.setattr(runner, "_evaluate", real)
    retried = run_bench(spec2, out, log=lambda m: None)
    assert retried.finished == [cid] and not (out / "cells" / cid / "error.txt").exists()
    # training had completed before the crash, so the retry only re-evaluates
    assert json.loads((out / "cells" / cid / RESULT_FILE).read_text())["train"]["resumed_from"] == 0


def test_adding_seeds_trains_only_the_new_cells(tmp_path: Path) -> None:
    """Seeds are a first-class axis: widening the seed list keeps the finished cells (ids carry the seed) and the
    report pools them with the new ones."""
    spec = tiny_spec(methods=["none", {"augself": {"equiv": {"kwargs": {"hidden_dim": 8}}}}], layers=[2],
                     evaluate=["linear"])
    out = tmp_path / "bench"
    first = run_bench(spec, out, log=lambda m: None)
    assert sorted(first.finished) == ["moco-augself-L2-s0", "moco-none-s0"]
    before = (out / "cells" / "moco-none-s0" / RESULT_FILE).stat().st_mtime_ns
    more = run_bench(tiny_spec(methods=spec.model_dump()["methods"], layers=[2], evaluate=["linear"], seeds=[0, 1]),
                     out, log=lambda m: None)
    assert sorted(more.finished) == ["moco-augself-L2-s1", "moco-none-s1"]
    assert sorted(more.skipped) == ["moco-augself-L2-s0", "moco-none-s0"]
    assert (out / "cells" / "moco-none-s0" / RESULT_FILE).stat().st_mtime_ns == before  # not retrained
    augself = next(line for line in (out / "results.md").read_text().splitlines() if "| augself |" in line)
    assert "| 2 |" in augself and " ± " in augself  # two seeds pooled: an interval now
    assert "[" in augself.split("| 2 |", 1)[1]  # the paired difference has an interval


def test_spec_typo_lists_the_valid_keys_on_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from equireg.cli.main import app

    cases = {
        "top level": ({"name": "x", "methods": ["ser"], "layerz": [1]}, "layerz: unknown key (valid keys: name,"),
        "method item": ({"name": "x", "methods": [{"label": "a", "loss": "ser", "overridez": {}}]},
                        "methods.0.overridez: unknown key (valid keys: label, loss, overrides)"),
        "two methods in one item": ({"name": "x", "methods": [{"ser": {}, "augself": {}}]}, "a method item is a name"),
        "unknown baseline": ({"name": "x", "methods": ["none", "ser"], "baseline": "nonee"},
                             "baseline 'nonee' is not one of the methods (none, ser)"),
    }
    for what, (data, expected) in cases.items():
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(data))
        result = CliRunner().invoke(app, ["bench", "run", str(path), "--out-dir", str(tmp_path / "out")])
        assert result.exit_code == 2, what
        assert expected in result.output and result.output.strip().count("\n") == 0, (what, result.output)
        assert not (tmp_path / "out").exists(), what
    # an override typo inside a method item is reported for its cell, on one line, before anything trains
    spec = tiny_spec(methods=[{"ser": {"equiv": {"wieght": 1.0}}}], layers=[2])
    expected = r"cell moco-ser-L2-p4m-s0: invalid configuration: equiv.wieght: unknown key"
    with pytest.raises(ConfigError, match=expected) as err:
        run_bench(spec, tmp_path / "out2", write_reports=False)
    assert "\n" not in str(err.value) and not (tmp_path / "out2").exists()
